/**
 * The Crypto service. Protocol code asks for `Crypto` and calls its plain
 * synchronous functions (see ./crypto/types.ts); which implementation sits
 * behind it is a Layer choice:
 *
 * - `Crypto.layerNoble`: @noble/* only, the portable baseline.
 * - `Crypto.layer`: the default (see `defaultImpl`).
 *
 * Every implementation passes the same byte-exact vectors.
 */
import { Context, Layer } from "effect"
import { noble } from "./crypto/noble.js"
import type { CryptoImpl } from "./crypto/types.js"

export type { CryptoImpl, KeyPair, SecretStreamPull, SecretStreamState } from "./crypto/types.js"
export { noble } from "./crypto/noble.js"

export class Crypto extends Context.Service<Crypto, CryptoImpl>()("omega/Crypto") {
  /** The portable baseline: @noble/hashes, @noble/curves, @noble/ciphers. */
  static readonly layerNoble: Layer.Layer<Crypto> = Layer.succeed(Crypto, noble)
  /** The default implementation. */
  static readonly layer: Layer.Layer<Crypto> = Crypto.layerNoble
  /** A fixed implementation (tests, benchmarks). */
  static readonly layerWith = (impl: CryptoImpl): Layer.Layer<Crypto> => Layer.succeed(Crypto, impl)
}
