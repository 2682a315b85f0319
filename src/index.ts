/**
 * `@omegajs/gateway`: the promise facade, shaped like hyperdht's API.
 *
 *   import GATEWAY from "@omegajs/gateway"        // CommonJS: const GATEWAY = require("@omegajs/gateway")
 *   const node = new GATEWAY()
 *   const keyPair = GATEWAY.keyPair()
 *   const bootstrapper = GATEWAY.bootstrapper(port, host)
 *
 * Everything this entry exports is plain: promises, events, async iterables,
 * thrown errors (each with `code` and `name`), key pairs as values. The
 * Effect face (the `Gateway` service and its Layers, the Effect versions of
 * `keyPair` and `hash`, connections, the protocol modules) is
 * `@omegajs/gateway/effect` (./effect.ts). The CommonJS entry is
 * ./index.cts.
 */
import { Gateway } from "./api/Gateway.js"

export {
  ConnectionPool,
  Gateway,
  GatewayServer,
  GatewaySocket,
  type GatewayConnectOptions,
  type GatewayKeyPair,
  type GatewayOptions,
  type GatewayStats,
  type RemoteKey
} from "./api/Gateway.js"
export type { ServerOptions } from "./api/server.js"
export type { ConnectionErrorCode, DialReport } from "./actors/holepunch/errors.js"
export * from "./api/errors.js"
export {
  GatewayAnnounce,
  type GatewayFindPeerResult,
  type GatewayImmutableGetResult,
  type GatewayImmutablePutResult,
  type GatewayLookupResult,
  type GatewayMutableGetResult,
  type GatewayMutablePutResult,
  type GatewayPeer,
  GatewayQuery
} from "./api/Gateway.js"
export { type BootstrapInfo, type BootstrapState, defaultBootstrap } from "./api/GatewayService.js"
export type { AnnounceOptions, WriteOutcome, WriteSummary } from "./api/records.js"
// the `crypto` option of a node (`Crypto.layerNoble`, `Crypto.layerWith(impl)`)
export { Crypto } from "./layers/Crypto.js"
export type { CryptoImpl, KeyPair } from "./layers/crypto/types.js"

/** `Gateway.keyPair(seed)`: an Ed25519 key pair (random without a seed), identical to hyperdht's. Throws InvalidSeed. */
export const keyPair = (seed?: Uint8Array): ReturnType<typeof Gateway.keyPair> => Gateway.keyPair(seed)

/** `Gateway.hash(data)`: BLAKE2b-256, hyperdht's `hash`. Throws InvalidArgument. */
export const hash = (data: Uint8Array): Buffer => Gateway.hash(data)

export default Gateway
