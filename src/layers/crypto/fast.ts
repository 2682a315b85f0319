/**
 * The fast Crypto implementation, still without any native addon: libsodium's
 * WebAssembly build (libsodium-wrappers-sumo) plus node:crypto (OpenSSL).
 *
 * - Everything with a rejection rule (sign, verify, the noise-curve-ed DH) IS
 *   libsodium: crypto_sign_detached, crypto_sign_verify_detached,
 *   crypto_scalarmult_ed25519_noclamp, so it rejects exactly what the
 *   reference (sodium-native) rejects.
 * - The wasm functions are called directly on the emscripten module (not
 *   through the JS wrapper, whose per-call malloc/copy/free and argument
 *   checks cost more than a BLAKE2b of 64 bytes): one arena is allocated once
 *   and inputs are copied in with HEAPU8.set. 64-bit length arguments are
 *   passed as two i32 (low, high), as the wrapper does.
 * - Bulk ciphers use OpenSSL where it is faster (large messages):
 *   ChaCha20-Poly1305 AEAD, and secretstream through
 *     * node `chacha20-poly1305` when |m| mod 16 is 0 or 8: secretstream's MAC
 *       input is then exactly the IETF AEAD's over (tag block || m) — the
 *       `|m| mod 16` padding quirk coincides with pad-to-16 for those lengths;
 *     * node `chacha20` keystream + wasm Poly1305 otherwise;
 *   and libsodium's own wasm crypto_secretstream for small messages, where
 *   node:crypto's per-message cost (createCipheriv ~1.2 µs plus ~0.5 µs per
 *   update call) outweighs OpenSSL's faster ChaCha20 (thresholds: FastTuning).
 * - ed25519 sign moves to a cached node:crypto KeyObject for a secret key that
 *   is used more than once (OpenSSL signs ~30% faster than the wasm), after
 *   checking that the KeyObject's public key equals the libsodium key's
 *   second half (libsodium signs with that half as A).
 *
 * Never throws: rejections and malformed arguments of the nullable functions
 * answer null/false (types.ts). The functions whose type has no null
 * (blake2b, aeadEncrypt, secretboxSeal) answer an empty Uint8Array for a
 * malformed argument (outLen outside 1..64, key > 64 bytes, key/nonce of the
 * wrong size, a malformed secretstream state): nothing is computed over a
 * partial key; secretstreamInitPush with a malformed key pushes under a
 * random key nobody holds.
 *
 * Small outputs (65..4096 bytes) are views into shared slabs, like Node's
 * Buffer pool (see `emit`).
 */
import sodium from "libsodium-wrappers-sumo"
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  sign as nodeSign,
  type KeyObject
} from "node:crypto"
import { noble, randomBytes } from "./noble.js"
import type { CryptoImpl, KeyPair, SecretStreamPull, SecretStreamState } from "./types.js"
import { SECRETSTREAM_TAG_MESSAGE, SECRETSTREAM_TAG_REKEY } from "./types.js"

/** The raw emscripten module exported by libsodium-wrappers as `libsodium` (pointers are heap offsets). */
interface Wasm {
  HEAPU8: Uint8Array
  _malloc(n: number): number
  _free(p: number): void
  _crypto_generichash(out: number, outLen: number, inp: number, inLenLo: number, inLenHi: number, key: number, keyLen: number): number
  _crypto_hash_sha512(out: number, inp: number, inLenLo: number, inLenHi: number): number
  _crypto_sign_seed_keypair(pk: number, sk: number, seed: number): number
  _crypto_sign_detached(sig: number, sigLenP: number, m: number, mLenLo: number, mLenHi: number, sk: number): number
  _crypto_sign_verify_detached(sig: number, m: number, mLenLo: number, mLenHi: number, pk: number): number
  _crypto_scalarmult_ed25519_noclamp(q: number, n: number, p: number): number
  _crypto_aead_chacha20poly1305_ietf_encrypt(
    c: number, cLenP: number, m: number, mLenLo: number, mLenHi: number,
    ad: number, adLenLo: number, adLenHi: number, nsec: number, npub: number, k: number
  ): number
  _crypto_aead_chacha20poly1305_ietf_decrypt(
    m: number, mLenP: number, nsec: number, c: number, cLenLo: number, cLenHi: number,
    ad: number, adLenLo: number, adLenHi: number, npub: number, k: number
  ): number
  _crypto_secretbox_easy(c: number, m: number, mLenLo: number, mLenHi: number, n: number, k: number): number
  _crypto_secretbox_open_easy(m: number, c: number, cLenLo: number, cLenHi: number, n: number, k: number): number
  _crypto_core_hchacha20(out: number, inp: number, k: number, c: number): number
  _crypto_stream_chacha20_ietf_xor_ic(c: number, m: number, mLenLo: number, mLenHi: number, n: number, ic: number, k: number): number
  _crypto_onetimeauth_init(state: number, key: number): number
  _crypto_onetimeauth_update(state: number, inp: number, inLenLo: number, inLenHi: number): number
  _crypto_onetimeauth_final(state: number, out: number): number
  _crypto_secretstream_xchacha20poly1305_push(
    state: number, c: number, cLenP: number, m: number, mLenLo: number, mLenHi: number,
    ad: number, adLenLo: number, adLenHi: number, tag: number
  ): number
  _crypto_secretstream_xchacha20poly1305_pull(
    state: number, m: number, mLenP: number, tagP: number, c: number, cLenLo: number, cLenHi: number,
    ad: number, adLenLo: number, adLenHi: number
  ): number
  _crypto_secretstream_xchacha20poly1305_rekey(state: number): void
}

/** Size thresholds (bytes) where a bulk operation leaves the wasm for OpenSSL. */
export interface FastTuning {
  /** Secretstream messages with |m| mod 16 in {0, 8} longer than this use node `chacha20-poly1305`. */
  readonly secretstreamAeadMin: number
  /** Other secretstream messages longer than this use node `chacha20` + wasm Poly1305. */
  readonly secretstreamHybridMin: number
  /** ChaCha20-Poly1305 IETF messages longer than this use node `chacha20-poly1305`. */
  readonly aeadNodeMin: number
  /** Promote a secret key to a cached node:crypto KeyObject on its n-th sign (0: never). */
  readonly signKeyObjectAfter: number
}

/**
 * Crossovers measured on the project's 2-core machine (push+pull and
 * encrypt+decrypt, MB/s): secretstream wasm vs node AEAD 179/137 at 2 KiB,
 * 191/214 at 3 KiB; wasm vs node chacha20 + wasm Poly1305 191/186 at 3 KiB,
 * 204/224 at 4 KiB; AEAD wasm vs node 170/163 at 2 KiB, 200/245 at 3 KiB.
 */
export const defaultTuning: FastTuning = {
  secretstreamAeadMin: 2560,
  secretstreamHybridMin: 3584,
  aeadNodeMin: 2304,
  signKeyObjectAfter: 2
}

// ---- the wasm arena ----------------------------------------------------------

/** General data region; larger inputs get a temporary malloc. */
const DATA_SIZE = 256 * 1024

interface Arena {
  readonly w: Wasm
  readonly STATE: number // secretstream state: k(32) || nonce(12) || pad(8)
  readonly KEY: number // 32
  readonly NONCE: number // 24
  readonly PK: number // 32
  readonly SK: number // 64
  readonly SEED: number // 32
  readonly SCALAR: number // 64 (SHA-512 output, first half clamped)
  readonly SIG: number // 64
  readonly OUT: number // 64
  readonly POLYKEY: number // 32
  readonly POLYSTATE: number // 256
  readonly MAC: number // 16
  readonly TAGP: number // 8
  readonly ZERO: number // 64 zero bytes, never written
  readonly BLK: number // 64
  readonly DATA: number
}

let arenaPromise: Promise<Arena> | undefined

const loadArena = (): Promise<Arena> =>
  (arenaPromise ??= (async () => {
    await sodium.ready
    const w = (sodium as unknown as { libsodium: Wasm }).libsodium
    const slots = 17 * 64 + 256
    const base = w._malloc(slots + DATA_SIZE + 64)
    if (base === 0) throw new Error("libsodium wasm: cannot allocate the arena")
    const a = (base + 63) & ~63 // 64-byte aligned
    let o = a
    const slot = (n: number) => {
      const p = o
      o += Math.ceil(n / 64) * 64
      return p
    }
    const arena: Arena = {
      w,
      STATE: slot(64),
      KEY: slot(32),
      NONCE: slot(24),
      PK: slot(32),
      SK: slot(64),
      SEED: slot(32),
      SCALAR: slot(64),
      SIG: slot(64),
      OUT: slot(64),
      POLYKEY: slot(32),
      POLYSTATE: slot(256),
      MAC: slot(16),
      TAGP: slot(8),
      ZERO: slot(64),
      BLK: slot(64),
      DATA: slot(DATA_SIZE)
    }
    w.HEAPU8.fill(0, a, o)
    return arena
  })())

// ---- helpers -------------------------------------------------------------------

const EMPTY = new Uint8Array(0)
const Z64 = new Uint8Array(64)

const isBytes = (x: unknown): x is Uint8Array => x instanceof Uint8Array

/** A plain Uint8Array over a node Buffer's bytes (no copy). */
const view = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength)

/**
 * Outputs of 65..4096 bytes are views into shared 32 KiB slabs, as Node's
 * Buffer pool does (an ArrayBuffer per small result costs more than a 1 KiB
 * secretstream message's Poly1305): read them through byteOffset/byteLength
 * and never transfer their `.buffer`. Up to 64 bytes V8 keeps typed arrays
 * on its own heap (cheap); larger outputs get their own ArrayBuffer.
 */
const SLAB_SIZE = 32 * 1024
const POOLED_MAX = 4096
let slab = new ArrayBuffer(SLAB_SIZE)
let slabOff = 0

const emit = (h: Uint8Array, p: number, n: number): Uint8Array => {
  if (n <= 64) return h.slice(p, p + n)
  let out: Uint8Array
  if (n <= POOLED_MAX) {
    if (slabOff + n > SLAB_SIZE) {
      slab = new ArrayBuffer(SLAB_SIZE)
      slabOff = 0
    }
    out = new Uint8Array(slab, slabOff, n)
    slabOff = (slabOff + n + 7) & ~7
  } else out = view(Buffer.allocUnsafeSlow(n))
  out.set(h.subarray(p, p + n))
  return out
}

const writeLe64 = (h: Uint8Array, p: number, v: number): void => {
  for (let i = 0; i < 8; i++) {
    h[p + i] = v & 0xff
    v = Math.floor(v / 256)
  }
}

/** secretstream: XOR the MAC into the inonce, bump the counter, rekey if asked or wrapped. */
const advance = (ar: Arena, st: SecretStreamState, mac: Uint8Array, macOff: number, tag: number): void => {
  const nonce = st.nonce
  for (let i = 0; i < 8; i++) nonce[4 + i]! ^= mac[macOff + i]!
  let wrapped = true
  for (let i = 0; i < 4; i++) {
    nonce[i] = (nonce[i]! + 1) & 0xff
    if (nonce[i] !== 0) {
      wrapped = false
      break
    }
  }
  if ((tag & SECRETSTREAM_TAG_REKEY) !== 0 || wrapped) {
    const h = ar.w.HEAPU8
    h.set(st.k, ar.STATE)
    h.set(nonce, ar.STATE + 32)
    ar.w._crypto_secretstream_xchacha20poly1305_rekey(ar.STATE)
    const h2 = ar.w.HEAPU8
    for (let i = 0; i < 32; i++) st.k[i] = h2[ar.STATE + i]!
    for (let i = 0; i < 12; i++) nonce[i] = h2[ar.STATE + 32 + i]!
    h2.fill(0, ar.STATE, ar.STATE + 52)
  }
}

interface SignEntry {
  /** The secret key's bytes when the KeyObject was made (a WeakMap entry lives as long as the caller's array). */
  readonly copy: Uint8Array
  uses: number
  key: KeyObject | null
  /** The KeyObject cannot stand in for libsodium (public half does not match, or OpenSSL refused it). */
  wasmOnly: boolean
}

/**
 * A node:crypto KeyObject for a libsodium secret key (seed || public key).
 * Imported as a JWK: OpenSSL derives the public key from the seed (~40 µs;
 * a PKCS#8 DER import of the same seed took ~350 µs, its decoder chain being
 * the cost), and exporting it back as a JWK is cheap, so the check that the
 * derived key equals the key's own public half (libsodium signs with the
 * stored half) costs ~1 µs. (The seed passes through a base64url string,
 * which cannot be wiped; the KeyObject holds the key for as long anyway.)
 */
const buildKeyObject = (secretKey: Uint8Array): KeyObject | null => {
  const seed = Buffer.from(secretKey.subarray(0, 32))
  const pub = Buffer.from(secretKey.subarray(32, 64)).toString("base64url")
  try {
    const ko = createPrivateKey({ key: { kty: "OKP", crv: "Ed25519", d: seed.toString("base64url"), x: pub }, format: "jwk" })
    return ko.export({ format: "jwk" }).x === pub ? ko : null
  } catch {
    return null
  } finally {
    seed.fill(0)
  }
}

// ---- the implementation ------------------------------------------------------------

const build = (ar: Arena, tuning: FastTuning): CryptoImpl => {
  const w = ar.w
  const { STATE, KEY, NONCE, PK, SK, SEED, SCALAR, SIG, OUT, POLYKEY, POLYSTATE, MAC, TAGP, ZERO, BLK, DATA } = ar

  /** A heap region of n bytes: the arena's data region, or a temporary malloc (0 when out of memory). */
  const region = (n: number): number => {
    if (n <= DATA_SIZE) return DATA
    try {
      return w._malloc(n)
    } catch {
      return 0
    }
  }
  const release = (p: number): void => {
    if (p !== DATA && p !== 0) w._free(p)
  }

  // ---- hashes ----

  const blake2b = (input: Uint8Array | ReadonlyArray<Uint8Array>, outLen = 32, key?: Uint8Array): Uint8Array => {
    if (!Number.isInteger(outLen) || outLen < 1 || outLen > 64) return new Uint8Array(0)
    const keyLen = key === undefined ? 0 : key.length
    if (keyLen > 64) return new Uint8Array(0)
    if (keyLen > 0 && !isBytes(key)) return new Uint8Array(0)
    let total = 0
    if (isBytes(input)) total = input.length
    else if (Array.isArray(input)) {
      for (let i = 0; i < input.length; i++) {
        const part = input[i]
        if (!isBytes(part)) return new Uint8Array(0)
        total += part.length
      }
    } else return new Uint8Array(0)
    const p = region(total + keyLen)
    if (p === 0) return noble.blake2b(input, outLen, key)
    const h = w.HEAPU8
    if (isBytes(input)) h.set(input, p)
    else {
      let o = p
      for (let i = 0; i < input.length; i++) {
        const part = input[i]!
        h.set(part, o)
        o += part.length
      }
    }
    if (keyLen > 0) h.set(key!, p + total)
    w._crypto_generichash(OUT, outLen, p, total, 0, keyLen > 0 ? p + total : 0, keyLen)
    const out = h.slice(OUT, OUT + outLen)
    if (keyLen > 0) h.fill(0, p + total, p + total + keyLen)
    release(p)
    return out
  }

  const sha512 = (input: Uint8Array): Uint8Array => {
    if (!isBytes(input)) return new Uint8Array(0)
    const p = region(input.length)
    if (p === 0) return noble.sha512(input)
    const h = w.HEAPU8
    h.set(input, p)
    w._crypto_hash_sha512(OUT, p, input.length, 0)
    const out = h.slice(OUT, OUT + 64)
    release(p)
    return out
  }

  // ---- ed25519 ----

  const keyPair = (seed?: Uint8Array): KeyPair | null => {
    const s = seed ?? randomBytes(32)
    if (!isBytes(s) || s.length !== 32) return null
    const h = w.HEAPU8
    h.set(s, SEED)
    w._crypto_sign_seed_keypair(PK, SK, SEED)
    const publicKey = h.slice(PK, PK + 32)
    const secretKey = h.slice(SK, SK + 64)
    h.fill(0, SK, SK + 64)
    h.fill(0, SEED, SEED + 32)
    return { publicKey, secretKey }
  }

  const signCache = new WeakMap<Uint8Array, SignEntry>()
  const promoteAfter = tuning.signKeyObjectAfter

  const wasmSign = (message: Uint8Array, secretKey: Uint8Array): Uint8Array | null => {
    const p = region(message.length)
    if (p === 0) return noble.sign(message, secretKey)
    const h = w.HEAPU8
    h.set(message, p)
    h.set(secretKey, SK)
    w._crypto_sign_detached(SIG, 0, p, message.length, 0, SK)
    h.fill(0, SK, SK + 64)
    release(p)
    return h.slice(SIG, SIG + 64)
  }

  /** The cached KeyObject standing in for `secretKey` (same array object, same bytes), built on its n-th use. */
  const keyObjectFor = (secretKey: Uint8Array): KeyObject | null => {
    let e = signCache.get(secretKey)
    if (e !== undefined) {
      let d = 0
      for (let i = 0; i < 64; i++) d |= e.copy[i]! ^ secretKey[i]!
      if (d !== 0) {
        // the caller rewrote the array in place: forget the old key
        e.copy.fill(0)
        e = undefined
      }
    }
    if (e === undefined) {
      e = { copy: Uint8Array.prototype.slice.call(secretKey), uses: 0, key: null, wasmOnly: false }
      signCache.set(secretKey, e)
    }
    if (e.key === null && !e.wasmOnly && ++e.uses >= promoteAfter) {
      e.key = buildKeyObject(secretKey)
      if (e.key === null) e.wasmOnly = true
    }
    return e.key
  }

  const sign = (message: Uint8Array, secretKey: Uint8Array): Uint8Array | null => {
    if (!isBytes(secretKey) || secretKey.length !== 64 || !isBytes(message)) return null
    if (promoteAfter > 0) {
      const ko = keyObjectFor(secretKey)
      if (ko !== null) {
        try {
          return view(nodeSign(null, message, ko))
        } catch {
          // OpenSSL refused: libsodium below
        }
      }
    }
    return wasmSign(message, secretKey)
  }

  const verify = (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean => {
    if (!isBytes(signature) || signature.length !== 64) return false
    if (!isBytes(publicKey) || publicKey.length !== 32) return false
    if (!isBytes(message)) return false
    const p = region(message.length)
    if (p === 0) return noble.verify(signature, message, publicKey)
    const h = w.HEAPU8
    h.set(message, p)
    h.set(signature, SIG)
    h.set(publicKey, PK)
    const ok = w._crypto_sign_verify_detached(SIG, p, message.length, 0, PK) === 0
    release(p)
    return ok
  }

  const dh = (secretKey: Uint8Array, remotePublicKey: Uint8Array): Uint8Array | null => {
    if (!isBytes(secretKey) || secretKey.length < 32) return null
    if (!isBytes(remotePublicKey) || remotePublicKey.length !== 32) return null
    const h = w.HEAPU8
    h.set(secretKey.subarray(0, 32), SEED)
    w._crypto_hash_sha512(SCALAR, SEED, 32, 0)
    h[SCALAR] = h[SCALAR]! & 248
    h[SCALAR + 31] = (h[SCALAR + 31]! & 127) | 64
    h.set(remotePublicKey, PK)
    const rc = w._crypto_scalarmult_ed25519_noclamp(OUT, SCALAR, PK)
    h.fill(0, SCALAR, SCALAR + 64)
    h.fill(0, SEED, SEED + 32)
    return rc === 0 ? h.slice(OUT, OUT + 32) : null
  }

  // ---- ChaCha20-Poly1305 IETF ----

  const aeadMin = tuning.aeadNodeMin

  const aeadEncrypt = (key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array => {
    if (!isBytes(key) || key.length !== 32 || !isBytes(nonce) || nonce.length !== 12) return new Uint8Array(0)
    if (!isBytes(plaintext) || !isBytes(ad)) return new Uint8Array(0)
    const n = plaintext.length
    if (n > aeadMin) {
      const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 })
      if (ad.length > 0) c.setAAD(ad)
      const body = c.update(plaintext)
      c.final()
      const out = new Uint8Array(n + 16)
      out.set(body, 0)
      out.set(c.getAuthTag(), n)
      return out
    }
    const p = region(n + ad.length + n + 16)
    if (p === 0) return noble.aeadEncrypt(key, nonce, ad, plaintext)
    const h = w.HEAPU8
    const adP = p + n
    const cP = adP + ad.length
    h.set(plaintext, p)
    h.set(ad, adP)
    h.set(key, KEY)
    h.set(nonce, NONCE)
    w._crypto_aead_chacha20poly1305_ietf_encrypt(cP, 0, p, n, 0, adP, ad.length, 0, 0, NONCE, KEY)
    h.fill(0, KEY, KEY + 32)
    const out = emit(h, cP, n + 16)
    release(p)
    return out
  }

  const aeadDecrypt = (key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null => {
    if (!isBytes(key) || key.length !== 32 || !isBytes(nonce) || nonce.length !== 12) return null
    if (!isBytes(ciphertext) || ciphertext.length < 16 || !isBytes(ad)) return null
    const n = ciphertext.length - 16
    if (n > aeadMin) {
      const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 })
      if (ad.length > 0) d.setAAD(ad)
      d.setAuthTag(ciphertext.subarray(n))
      const body = d.update(ciphertext.subarray(0, n))
      try {
        d.final()
      } catch {
        return null
      }
      return view(body)
    }
    const p = region(n + 16 + ad.length + n)
    if (p === 0) return noble.aeadDecrypt(key, nonce, ad, ciphertext)
    const h = w.HEAPU8
    const adP = p + n + 16
    const mP = adP + ad.length
    h.set(ciphertext, p)
    h.set(ad, adP)
    h.set(key, KEY)
    h.set(nonce, NONCE)
    const rc = w._crypto_aead_chacha20poly1305_ietf_decrypt(mP, 0, 0, p, n + 16, 0, adP, ad.length, 0, NONCE, KEY)
    h.fill(0, KEY, KEY + 32)
    const out = rc === 0 ? emit(h, mP, n) : null
    release(p)
    return out
  }

  // ---- secretbox ----

  const secretboxSeal = (message: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array => {
    if (!isBytes(key) || key.length !== 32 || !isBytes(nonce) || nonce.length !== 24 || !isBytes(message)) return new Uint8Array(0)
    const n = message.length
    const p = region(n + n + 16)
    if (p === 0) return noble.secretboxSeal(message, nonce, key)
    const h = w.HEAPU8
    const cP = p + n
    h.set(message, p)
    h.set(key, KEY)
    h.set(nonce, NONCE)
    w._crypto_secretbox_easy(cP, p, n, 0, NONCE, KEY)
    h.fill(0, KEY, KEY + 32)
    const out = emit(h, cP, n + 16)
    release(p)
    return out
  }

  const secretboxOpen = (box: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array | null => {
    if (!isBytes(box) || box.length < 16 || !isBytes(nonce) || nonce.length !== 24 || !isBytes(key) || key.length !== 32) return null
    const n = box.length - 16
    const p = region(box.length + n)
    if (p === 0) return noble.secretboxOpen(box, nonce, key)
    const h = w.HEAPU8
    const mP = p + box.length
    h.set(box, p)
    h.set(key, KEY)
    h.set(nonce, NONCE)
    const rc = w._crypto_secretbox_open_easy(mP, p, box.length, 0, NONCE, KEY)
    h.fill(0, KEY, KEY + 32)
    const out = rc === 0 ? emit(h, mP, n) : null
    release(p)
    return out
  }

  // ---- secretstream ----

  const initState = (key: Uint8Array, header: Uint8Array): SecretStreamState => {
    const h = w.HEAPU8
    h.set(key, KEY)
    h.set(header.subarray(0, 16), BLK)
    w._crypto_core_hchacha20(OUT, BLK, KEY, 0)
    h.fill(0, KEY, KEY + 32)
    const k = h.slice(OUT, OUT + 32)
    h.fill(0, OUT, OUT + 32)
    const nonce = new Uint8Array(12)
    nonce[0] = 1
    nonce.set(header.subarray(16, 24), 4)
    return { k, nonce }
  }

  const secretstreamInitPush = (key: Uint8Array, header?: Uint8Array) => {
    const hd = header ?? randomBytes(24)
    // a malformed key or header is our own bug: push under a random key nobody holds rather than a weak one
    if (!isBytes(key) || key.length !== 32 || !isBytes(hd) || hd.length !== 24) {
      return { state: { k: randomBytes(32), nonce: randomBytes(12) }, header: isBytes(hd) ? hd : randomBytes(24) }
    }
    return { state: initState(key, hd), header: hd }
  }

  const secretstreamInitPull = (key: Uint8Array, header: Uint8Array): SecretStreamState | null => {
    if (!isBytes(key) || key.length !== 32 || !isBytes(header) || header.length !== 24) return null
    return initState(key, header)
  }

  const validState = (st: SecretStreamState): boolean =>
    typeof st === "object" && st !== null && isBytes(st.k) && st.k.length === 32 && isBytes(st.nonce) && st.nonce.length === 12

  const loadState = (h: Uint8Array, st: SecretStreamState): void => {
    h.set(st.k, STATE)
    h.set(st.nonce, STATE + 32)
  }
  const storeState = (h: Uint8Array, st: SecretStreamState): void => {
    const k = st.k
    const nonce = st.nonce
    for (let i = 0; i < 32; i++) k[i] = h[STATE + i]!
    for (let i = 0; i < 12; i++) nonce[i] = h[STATE + 32 + i]!
    h.fill(0, STATE, STATE + 52)
  }

  /** Poly1305 over `data` streamed through the arena (the state sits in POLYSTATE). */
  const polyUpdate = (data: Uint8Array): void => {
    let o = 0
    while (o < data.length) {
      const len = Math.min(DATA_SIZE, data.length - o)
      w.HEAPU8.set(o === 0 && len === data.length ? data : data.subarray(o, o + len), DATA)
      w._crypto_onetimeauth_update(POLYSTATE, DATA, len, 0)
      o += len
    }
  }

  /** The secretstream MAC: Poly1305(ad || pad16 || block || c || pad(|c| mod 16) || le64 |ad| || le64 (64 + |c|)). */
  const streamMac = (polyKey: Uint8Array, ad: Uint8Array, block: Uint8Array, c: Uint8Array): void => {
    let h = w.HEAPU8
    h.set(polyKey.subarray(0, 32), POLYKEY)
    w._crypto_onetimeauth_init(POLYSTATE, POLYKEY)
    if (ad.length > 0) {
      polyUpdate(ad)
      const padAd = (16 - (ad.length & 15)) & 15
      if (padAd > 0) w._crypto_onetimeauth_update(POLYSTATE, ZERO, padAd, 0)
    }
    h = w.HEAPU8
    h.set(block, BLK)
    w._crypto_onetimeauth_update(POLYSTATE, BLK, 64, 0)
    polyUpdate(c)
    h = w.HEAPU8
    const padC = c.length & 15
    h.fill(0, BLK, BLK + padC)
    writeLe64(h, BLK + padC, ad.length)
    writeLe64(h, BLK + padC + 8, 64 + c.length)
    w._crypto_onetimeauth_update(POLYSTATE, BLK, padC + 16, 0)
    w._crypto_onetimeauth_final(POLYSTATE, MAC)
    h.fill(0, POLYKEY, POLYKEY + 32)
    h.fill(0, POLYSTATE, POLYSTATE + 256)
  }

  const TAGBLOCK = new Uint8Array(64)
  const iv16 = (nonce: Uint8Array): Uint8Array => {
    const iv = new Uint8Array(16) // block counter 0 (LE) || 12-byte nonce
    iv.set(nonce, 4)
    return iv
  }
  const aeadPath = (n: number) => n > tuning.secretstreamAeadMin && ((n & 15) === 0 || (n & 15) === 8)
  const hybridPath = (n: number) => n > tuning.secretstreamHybridMin

  const secretstreamPush = (st: SecretStreamState, message: Uint8Array, tag = SECRETSTREAM_TAG_MESSAGE, ad: Uint8Array = EMPTY): Uint8Array => {
    if (!validState(st) || !isBytes(message) || !isBytes(ad)) return new Uint8Array(0)
    const n = message.length
    if (aeadPath(n)) {
      const c = createCipheriv("chacha20-poly1305", st.k, st.nonce, { authTagLength: 16 })
      if (ad.length > 0) c.setAAD(ad)
      TAGBLOCK[0] = tag
      const b1 = c.update(TAGBLOCK)
      const body = c.update(message)
      c.final()
      const mac = c.getAuthTag()
      const out = view(Buffer.allocUnsafeSlow(n + 17))
      out[0] = b1[0]!
      out.set(body, 1)
      out.set(mac, n + 1)
      advance(ar, st, mac, 0, tag)
      return out
    }
    if (hybridPath(n)) {
      const c = createCipheriv("chacha20", st.k, iv16(st.nonce))
      const b0 = c.update(Z64)
      TAGBLOCK[0] = tag
      const b1 = c.update(TAGBLOCK)
      const body = c.update(message)
      streamMac(b0, ad, b1, body)
      b0.fill(0)
      const out = view(Buffer.allocUnsafeSlow(n + 17))
      out[0] = b1[0]!
      out.set(body, 1)
      const h = w.HEAPU8
      for (let i = 0; i < 16; i++) out[n + 1 + i] = h[MAC + i]!
      advance(ar, st, out, n + 1, tag)
      return out
    }
    const p = region(n + ad.length + n + 17)
    if (p === 0) return noble.secretstreamPush(st, message, tag, ad)
    const h = w.HEAPU8
    const adP = p + n
    const cP = adP + ad.length
    h.set(message, p)
    h.set(ad, adP)
    loadState(h, st)
    w._crypto_secretstream_xchacha20poly1305_push(STATE, cP, 0, p, n, 0, adP, ad.length, 0, tag & 0xff)
    storeState(h, st)
    const out = emit(h, cP, n + 17)
    release(p)
    return out
  }

  const secretstreamPull = (st: SecretStreamState, input: Uint8Array, ad: Uint8Array = EMPTY): SecretStreamPull | null => {
    if (!validState(st) || !isBytes(input) || input.length < 17 || !isBytes(ad)) return null
    const n = input.length - 17
    if (aeadPath(n)) {
      // the tag block's ciphertext is keystream block 1 with byte 0 from the wire: take it from the wasm
      const h = w.HEAPU8
      h.set(st.k, KEY)
      h.set(st.nonce, NONCE)
      w._crypto_stream_chacha20_ietf_xor_ic(BLK, ZERO, 64, 0, NONCE, 1, KEY)
      h.fill(0, KEY, KEY + 32)
      const block = h.slice(BLK, BLK + 64)
      const tag = block[0]! ^ input[0]!
      block[0] = input[0]!
      const mac = input.subarray(1 + n)
      const d = createDecipheriv("chacha20-poly1305", st.k, st.nonce, { authTagLength: 16 })
      if (ad.length > 0) d.setAAD(ad)
      d.setAuthTag(mac)
      d.update(block)
      const body = d.update(input.subarray(1, 1 + n))
      try {
        d.final()
      } catch {
        return null
      }
      advance(ar, st, mac, 0, tag)
      return { message: view(body), tag }
    }
    if (hybridPath(n)) {
      const ch = createCipheriv("chacha20", st.k, iv16(st.nonce))
      const b0 = ch.update(Z64)
      const block = ch.update(Z64)
      const tag = block[0]! ^ input[0]!
      block[0] = input[0]!
      const c = input.subarray(1, 1 + n)
      const mac = input.subarray(1 + n)
      streamMac(b0, ad, block, c)
      b0.fill(0)
      const h = w.HEAPU8
      let d = 0
      for (let i = 0; i < 16; i++) d |= h[MAC + i]! ^ mac[i]!
      if (d !== 0) return null
      const message = view(ch.update(c))
      advance(ar, st, mac, 0, tag)
      return { message, tag }
    }
    const p = region(input.length + ad.length + n)
    if (p === 0) return noble.secretstreamPull(st, input, ad)
    const h = w.HEAPU8
    const adP = p + input.length
    const mP = adP + ad.length
    h.set(input, p)
    h.set(ad, adP)
    loadState(h, st)
    const rc = w._crypto_secretstream_xchacha20poly1305_pull(STATE, mP, 0, TAGP, p, input.length, 0, adP, ad.length, 0)
    let result: SecretStreamPull | null = null
    if (rc === 0) {
      storeState(h, st)
      result = { message: emit(h, mP, n), tag: h[TAGP]! }
    } else h.fill(0, STATE, STATE + 52)
    release(p)
    return result
  }

  return {
    name: "fast",
    randomBytes,
    blake2b,
    sha512,
    keyPair,
    sign,
    verify,
    dh,
    aeadEncrypt,
    aeadDecrypt,
    secretboxSeal,
    secretboxOpen,
    secretstreamInitPush,
    secretstreamPush,
    secretstreamInitPull,
    secretstreamPull
  }
}

let defaultImpl: Promise<CryptoImpl> | undefined
let loadedDefault: CryptoImpl | null = null

/** The shared default instance if it has finished loading, else null (synchronous callers). */
export const fastIfLoaded = (): CryptoImpl | null => loadedDefault

/**
 * The fast implementation (name "fast"). Loads libsodium's wasm once; the
 * default-tuned instance is shared. `tuning` (tests, benchmarks) moves the
 * thresholds between the wasm and the OpenSSL code paths.
 */
export const makeFast = (tuning?: Partial<FastTuning>): Promise<CryptoImpl> => {
  const made =
    tuning === undefined
      ? (defaultImpl ??= loadArena().then((ar) => (loadedDefault = build(ar, defaultTuning))))
      : loadArena().then((ar) => build(ar, { ...defaultTuning, ...tuning }))
  // a failed load (no WebAssembly, out of memory) is not cached: a later call retries
  return made.catch((e: unknown) => {
    arenaPromise = undefined
    defaultImpl = undefined
    throw e
  })
}
