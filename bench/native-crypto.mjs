// A measurement aid, not a product path: Omega's Crypto service with its
// signature and hash functions answered by sodium-native (the reference's own
// native libsodium binding, a devDependency). Omega ships without native
// addons; benchmarks use this to separate what Omega's protocol code costs
// from what its pure-JS/WASM crypto costs (bench/records.mjs OMEGA_CRYPTO=native).
// The Noise DH too (connect benchmark). Everything else (ciphers) stays the
// fast implementation's.
import { createRequire } from "node:module"
import { makeFast } from "../dist/layers/crypto/fast.js"

const require = createRequire(import.meta.url)
const sodium = require("sodium-native")

const bytes = (n) => {
  const b = Buffer.allocUnsafe(n)
  return new Uint8Array(b.buffer, b.byteOffset, n)
}
const buf = (u) => (Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength))

export const makeNativeCrypto = async () => {
  const fast = await makeFast()
  return {
    ...fast,
    name: "sodium-native (measurement only)",
    blake2b(input, outLen = 32, key) {
      const out = bytes(outLen)
      if (Array.isArray(input)) sodium.crypto_generichash_batch(buf(out), input.map(buf), key ? buf(key) : undefined)
      else sodium.crypto_generichash(buf(out), buf(input), key ? buf(key) : undefined)
      return out
    },
    sha512(input) {
      const out = bytes(64)
      sodium.crypto_hash_sha512(buf(out), buf(input))
      return out
    },
    keyPair(seed) {
      if (seed !== undefined && seed.length !== 32) return null
      const publicKey = bytes(32)
      const secretKey = bytes(64)
      if (seed === undefined) sodium.crypto_sign_keypair(buf(publicKey), buf(secretKey))
      else sodium.crypto_sign_seed_keypair(buf(publicKey), buf(secretKey), buf(seed))
      return { publicKey, secretKey }
    },
    sign(message, secretKey) {
      if (secretKey.length !== 64) return null
      const sig = bytes(64)
      sodium.crypto_sign_detached(buf(sig), buf(message), buf(secretKey))
      return sig
    },
    // Ed25519 DH as noise-curve-ed computes it (connect.md §2.2): the clamped
    // SHA-512 seed scalar times the peer's point, by libsodium's noclamp mult
    dh(secretKey, remotePublicKey) {
      if (secretKey.length < 32 || remotePublicKey.length !== 32) return null
      const d = bytes(64)
      sodium.crypto_hash_sha512(buf(d), buf(secretKey.subarray(0, 32)))
      const a = d.subarray(0, 32)
      a[0] &= 248
      a[31] &= 127
      a[31] |= 64
      const out = bytes(32)
      try {
        sodium.crypto_scalarmult_ed25519_noclamp(buf(out), buf(a), buf(remotePublicKey))
      } catch {
        return null
      }
      return out
    },
    verify(signature, message, publicKey) {
      if (signature.length !== 64 || publicKey.length !== 32) return false
      return sodium.crypto_sign_verify_detached(buf(signature), buf(message), buf(publicKey))
    }
  }
}

/**
 * The Gateway options a benchmark's Omega nodes take from OMEGA_CRYPTO:
 * "native" this sodium-native Crypto (a node runtime of its own), "fast"
 * the default crypto in the same kind of runtime (the control), else none.
 */
export const cryptoOptionsFromEnv = async () => {
  const mode = process.env.OMEGA_CRYPTO
  if (mode !== "native" && mode !== "fast") return {}
  const { Crypto } = await import("../dist/layers/Crypto.js")
  return { crypto: mode === "native" ? Crypto.layerWith(await makeNativeCrypto()) : Crypto.layer }
}
