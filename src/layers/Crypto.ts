/**
 * The Crypto service. Protocol code asks for `Crypto` and calls its plain
 * synchronous functions (see ./crypto/types.ts); which implementation sits
 * behind it is a Layer choice:
 *
 * - `Crypto.layerNoble`: @noble/* only, the portable baseline.
 * - `Crypto.layerFast`: libsodium's WASM build plus node:crypto (no native
 *   addon). The default: `npm run bench:crypto` measured it at 0.45–1.5x the
 *   native reference per figure (geometric mean 0.69x) against noble's 0.06x.
 * - `Crypto.layer`: the default, i.e. `layerFast`.
 *
 * Every implementation passes the same byte-exact vectors.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { fastIfLoaded, makeFast } from "./crypto/fast.js"
import { noble } from "./crypto/noble.js"
import type { CryptoImpl } from "./crypto/types.js"

export type { CryptoImpl, KeyPair, SecretStreamPull, SecretStreamState } from "./crypto/types.js"
export { noble } from "./crypto/noble.js"

export class Crypto extends Context.Service<Crypto, CryptoImpl>()("omega/Crypto") {
  /** The portable baseline: @noble/hashes, @noble/curves, @noble/ciphers. */
  static readonly layerNoble: Layer.Layer<Crypto> = Layer.succeed(Crypto, noble)
  /** libsodium WASM + node:crypto (loads the WASM module once). */
  static readonly layerFast: Layer.Layer<Crypto> = Layer.effect(Crypto, Effect.promise(() => makeFast()))
  /** The default implementation, loaded once per process (chosen by bench/crypto.mjs). */
  static readonly loadDefault = (): Promise<CryptoImpl> => makeFast()
  /** The default implementation if it is already loaded, else null (no wait). */
  static readonly defaultIfLoaded = (): CryptoImpl | null => fastIfLoaded()
  /** The default implementation as a layer. */
  static readonly layer: Layer.Layer<Crypto> = Layer.effect(Crypto, Effect.promise(() => Crypto.loadDefault()))
  /** A fixed implementation (tests, benchmarks). */
  static readonly layerWith = (impl: CryptoImpl): Layer.Layer<Crypto> => Layer.succeed(Crypto, impl)
}
