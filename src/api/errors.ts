/**
 * Every error class a user of the package can meet, in one module (the
 * package root re-exports it). Each is an `Error` whose `name` is its class
 * name and whose `_tag` is the same string (Effect's `catchTag`); those that
 * hyperdht or dht-rpc report carry the reference's `code` string
 * (`NODE_DESTROYED`, `PEER_NOT_FOUND`, `REQUEST_TIMEOUT`, ...), so code
 * written against hyperdht that checks `err.code` keeps working.
 *
 * Where the reference has no code, the facade's own failures carry one in
 * the same style (`INVALID_ARGUMENT`, `WRITE_REJECTED`, `VALUE_TOO_LARGE`);
 * the lower layers' errors say what happened in `reason` or `detail`.
 */
import * as Data from "effect/Data"

/** An operation on a destroyed node (hyperdht's NODE_DESTROYED). */
export class GatewayDestroyed extends Data.TaggedError("GatewayDestroyed")<{}> {
  get code(): "NODE_DESTROYED" {
    return "NODE_DESTROYED"
  }
  override get message(): string {
    return "NODE_DESTROYED: Node destroyed"
  }
}

export { InvalidArgument, InvalidSeed } from "./keys.js"
export { ValueTooLarge, WriteRejected } from "./records.js"
export { ConnectionError, type ConnectionErrorCode } from "../actors/holepunch/errors.js"
export { NoToken, QueryError } from "../actors/routing/query.js"
export { NodeActorFailed } from "../actors/routing/driver.js"
export { RequestError, type RequestErrorCode } from "../actors/routing/rpc.js"
export { BlindRelayError, RelayAborted } from "../actors/session/blind-relay.js"
export { ProtomuxError } from "../actors/session/protomux.js"
export {
  DecryptFailed,
  InvalidFrame,
  InvalidHeader,
  MessagesUnsupported,
  MessageTooLarge,
  NonceExhausted,
  PrematureClose,
  RawStreamFailed,
  StreamClosed,
  StreamDefect,
  StreamDestroyed,
  StreamTimeout
} from "../actors/session/secret-stream.js"
export { UdxError, type UdxErrorCode } from "../actors/session/udx-stream.js"
export { NoiseError } from "../layers/crypto/noise.js"
export { BindError } from "../layers/Transport.js"
export { DecodeError, EncodeError } from "../protocol/encoding.js"
// exported under its error name ("SecretStreamFrameError"), which is also its `_tag`
export { FrameError as SecretStreamFrameError } from "../protocol/secret-stream.js"
