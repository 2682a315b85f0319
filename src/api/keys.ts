/**
 * Key pairs and hashing as the seed API exposes them (`Gateway.keyPair(seed)`,
 * `Gateway.hash(data)`), with typed errors for misuse.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import { Crypto } from "../layers/Crypto.js"
import { fastIfLoaded } from "../layers/crypto/fast.js"
import { noble } from "../layers/crypto/noble.js"
import type { CryptoImpl, KeyPair } from "../layers/crypto/types.js"

export class InvalidSeed extends Data.TaggedError("InvalidSeed")<{ readonly detail: string }> {
  get code(): "INVALID_ARGUMENT" {
    return "INVALID_ARGUMENT"
  }
  override get message(): string {
    return `invalid key pair seed: ${this.detail} (expected a 32-byte Uint8Array)`
  }
}

/** An argument the API cannot take (a malformed topic, key, port, bootstrap entry, ...): returned or thrown before anything is sent. */
export class InvalidArgument extends Data.TaggedError("InvalidArgument")<{ readonly argument: string; readonly detail: string }> {
  get code(): "INVALID_ARGUMENT" {
    return "INVALID_ARGUMENT"
  }
  override get message(): string {
    return `invalid ${this.argument}: ${this.detail}`
  }
}

const describe = (x: unknown): string =>
  x instanceof Uint8Array ? `${x.length} bytes` : x === null ? "null" : typeof x

/** Ed25519 key pair from a 32-byte seed (random without one); identical to hyperdht's keyPair(seed). */
export const keyPairWith = (c: CryptoImpl, seed?: Uint8Array): Result.Result<KeyPair, InvalidSeed> => {
  if (seed !== undefined && seed !== null && !(seed instanceof Uint8Array && seed.length === 32)) {
    return Result.fail(new InvalidSeed({ detail: `got ${describe(seed)}` }))
  }
  const kp = c.keyPair(seed ?? undefined)
  return kp === null ? Result.fail(new InvalidSeed({ detail: `got ${describe(seed)}` })) : Result.succeed(kp)
}

/** Effect form, using the Crypto service. */
export const keyPair = (seed?: Uint8Array): Effect.Effect<KeyPair, InvalidSeed, Crypto> =>
  Effect.flatMap(Crypto, (c) => Effect.fromResult(keyPairWith(c, seed)))

/** BLAKE2b-256, hyperdht's `hash`. */
export const hashWith = (c: CryptoImpl, data: Uint8Array): Result.Result<Uint8Array, InvalidArgument> =>
  data instanceof Uint8Array
    ? Result.succeed(c.blake2b(data))
    : Result.fail(new InvalidArgument({ argument: "data", detail: `expected a Uint8Array, got ${describe(data)}` }))

/**
 * The implementation the synchronous facade helpers use: the fast one once
 * it has loaded (any node start loads it), else the noble baseline. Both
 * give identical results.
 */
export const facadeCrypto = (): CryptoImpl => fastIfLoaded() ?? noble

/** A Node Buffer over the same bytes (no copy): what hyperdht's API hands out. */
export const asBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength)
