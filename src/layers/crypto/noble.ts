/**
 * The portable baseline Crypto implementation: @noble/hashes, @noble/curves
 * and @noble/ciphers only. Reproduces libsodium's outputs and its rejections.
 */
import { chacha20, chacha20poly1305, hchacha } from "@noble/ciphers/chacha.js"
import { poly1305 } from "@noble/ciphers/_poly1305.js"
import { xsalsa20poly1305 } from "@noble/ciphers/salsa.js"
import { ed25519 } from "@noble/curves/ed25519.js"
import { blake2b } from "@noble/hashes/blake2.js"
import { sha512 } from "@noble/hashes/sha2.js"
import { randomBytes as nodeRandomBytes, randomFillSync } from "node:crypto"
import { copyBytes } from "../../protocol/encoding.js"
import { makeSecretStream } from "./secretstream.js"
import type { CryptoImpl, KeyPair } from "./types.js"

type EdPoint = ReturnType<typeof ed25519.Point.fromBytes>
const Point = ed25519.Point
const L = Point.Fn.ORDER

/**
 * CSPRNG bytes (node:crypto). Small requests (a node's table id, token
 * secrets, nonces) are served from a 4 KiB pool filled by one call: a call
 * per request cost ~9 µs, a measurable part of a node's start. Each request
 * gets its own copy and its bytes are wiped from the pool.
 */
export const randomBytes = (n: number): Uint8Array => {
  if (!(Number.isInteger(n) && n >= 0 && n <= POOLED_MAX)) {
    const b = nodeRandomBytes(n)
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
  }
  if (poolAt + n > pool.length) {
    randomFillSync(pool)
    poolAt = 0
  }
  const out = pool.slice(poolAt, poolAt + n)
  pool.fill(0, poolAt, poolAt + n)
  poolAt += n
  return out
}

const POOLED_MAX = 256
const pool = new Uint8Array(4096)
/** Bytes from here on are unused; the pool is filled when first used. */
let poolAt = pool.length

// ---- scalars and points -----------------------------------------------------

const leToBigInt = (b: Uint8Array): bigint => {
  let n = 0n
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!)
  return n
}

/** libsodium's sc25519_is_canonical: s < L. */
const isCanonicalScalar = (s: Uint8Array): boolean => leToBigInt(s) < L

/** libsodium's ge25519_is_canonical: the y encoding (sign bit ignored) is < p. */
export const isCanonicalPointEncoding = (b: Uint8Array): boolean => {
  // p = 2^255 - 19: the encoding is non-canonical iff y >= p, i.e. bytes 1..30 are 0xff,
  // byte 31 & 0x7f is 0x7f and byte 0 >= 0xed.
  let c = (b[31]! & 0x7f) ^ 0x7f
  for (let i = 30; i > 0; i--) c |= b[i]! ^ 0xff
  c = (c - 1) >> 8
  const d = (0xed - 1 - b[0]!) >> 8
  return !((c & d & 1) === 1)
}

const decodePoint = (b: Uint8Array): EdPoint | null => {
  if (b.length !== 32 || !isCanonicalPointEncoding(b)) return null
  try {
    return Point.fromBytes(b, false)
  } catch {
    return null
  }
}

/**
 * libsodium ge25519_has_small_order: the encoding (sign bit ignored) is one of
 * the small-order points' y values, canonical or not. Equivalent: the y value
 * reduced mod p is one of 0, 1, p-1 or the two order-8 y values.
 */
const SMALL_ORDER_Y = (() => {
  const ys = new Set<bigint>()
  const P = Point.Fp.ORDER
  // the 8-torsion points: identity and the points T with 8T = 0
  const t8 = Point.fromHex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", true)
  let q = Point.ZERO
  for (let i = 0; i < 8; i++) {
    ys.add(q.toAffine().y % P)
    q = q.add(t8)
  }
  return ys
})()

const hasSmallOrderEncoding = (b: Uint8Array): boolean => {
  const copy = copyBytes(b)
  copy[31]! &= 0x7f
  const y = leToBigInt(copy) % Point.Fp.ORDER
  return SMALL_ORDER_Y.has(y)
}

const clampedScalar = (seed: Uint8Array): bigint => {
  const d = sha512(seed)
  const a = d.subarray(0, 32)
  a[0]! &= 248
  a[31]! &= 127
  a[31]! |= 64
  return leToBigInt(a)
}

// ---- ed25519 ----------------------------------------------------------------

const keyPair = (seed?: Uint8Array): KeyPair | null => {
  const s = seed ?? randomBytes(32)
  if (!(s instanceof Uint8Array) || s.length !== 32) return null
  const publicKey = ed25519.getPublicKey(s)
  const secretKey = new Uint8Array(64)
  secretKey.set(s, 0)
  secretKey.set(publicKey, 32)
  return { publicKey, secretKey }
}

const sign = (message: Uint8Array, secretKey: Uint8Array): Uint8Array | null => {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== 64) return null
  return ed25519.sign(message, secretKey.subarray(0, 32))
}

const BASE = Point.BASE

const verify = (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean => {
  if (!(signature instanceof Uint8Array) || signature.length !== 64) return false
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) return false
  if (!(message instanceof Uint8Array)) return false
  const R = signature.subarray(0, 32)
  const S = signature.subarray(32, 64)
  if (!isCanonicalScalar(S)) return false
  if (hasSmallOrderEncoding(R)) return false
  if (hasSmallOrderEncoding(publicKey)) return false
  const A = decodePoint(publicKey)
  if (A === null) return false
  const hBytes = sha512.create().update(R).update(publicKey).update(message).digest()
  const h = leToBigInt(hBytes) % L
  const s = leToBigInt(S)
  // cofactorless check, as libsodium: encode(sB - hA) == R
  const Rcheck = BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(h))
  const enc = Rcheck.toBytes()
  let d = 0
  for (let i = 0; i < 32; i++) d |= enc[i]! ^ R[i]!
  return d === 0
}

const dh = (secretKey: Uint8Array, remotePublicKey: Uint8Array): Uint8Array | null => {
  if (!(secretKey instanceof Uint8Array) || secretKey.length < 32) return null
  if (!(remotePublicKey instanceof Uint8Array) || remotePublicKey.length !== 32) return null
  if (hasSmallOrderEncoding(remotePublicKey)) return null
  const P = decodePoint(remotePublicKey)
  if (P === null || P.isSmallOrder() || !P.isTorsionFree()) return null
  const n = clampedScalar(secretKey.subarray(0, 32)) % L
  if (n === 0n) return null
  const Q = P.multiply(n)
  if (Q.is0()) return null
  return Q.toBytes()
}

// ---- hashes -----------------------------------------------------------------

const blake2bImpl = (input: Uint8Array | ReadonlyArray<Uint8Array>, outLen = 32, key?: Uint8Array): Uint8Array => {
  const opts = key !== undefined && key.length > 0 ? { dkLen: outLen, key } : { dkLen: outLen }
  if (input instanceof Uint8Array) return blake2b(input, opts)
  const h = blake2b.create(opts)
  for (const part of input) h.update(part)
  return h.digest()
}

// ---- ciphers ----------------------------------------------------------------

const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574])
const u32 = (b: Uint8Array): Uint32Array =>
  b.byteOffset % 4 === 0 ? new Uint32Array(b.buffer, b.byteOffset, b.length / 4) : new Uint32Array(copyBytes(b).buffer)

const hchacha20 = (key: Uint8Array, input: Uint8Array): Uint8Array => {
  const out = new Uint32Array(8)
  hchacha(SIGMA, u32(key), u32(input), out)
  return new Uint8Array(out.buffer)
}

const secretstream = makeSecretStream({
  hchacha20,
  chacha20Xor: (key, nonce, counter, data, out) => {
    chacha20(key, nonce, data, out, counter)
  },
  poly1305: (key) => {
    const h = poly1305.create(key)
    return {
      update: (d) => {
        h.update(d)
      },
      digest: () => h.digest()
    }
  },
  randomBytes
})

export const noble: CryptoImpl = {
  name: "noble",
  randomBytes,
  blake2b: blake2bImpl,
  sha512: (input) => sha512(input),
  keyPair,
  sign,
  verify,
  dh,
  aeadEncrypt: (key, nonce, ad, plaintext) => chacha20poly1305(key, nonce, ad).encrypt(plaintext),
  aeadDecrypt: (key, nonce, ad, ciphertext) => {
    if (ciphertext.length < 16) return null
    try {
      return chacha20poly1305(key, nonce, ad).decrypt(ciphertext)
    } catch {
      return null
    }
  },
  secretboxSeal: (message, nonce, key) => xsalsa20poly1305(key, nonce).encrypt(message),
  secretboxOpen: (box, nonce, key) => {
    if (box.length < 16 || nonce.length !== 24 || key.length !== 32) return null
    try {
      return xsalsa20poly1305(key, nonce).decrypt(box)
    } catch {
      return null
    }
  },
  secretstreamInitPush: secretstream.initPush,
  secretstreamPush: secretstream.push,
  secretstreamInitPull: secretstream.initPull,
  secretstreamPull: secretstream.pull
}
