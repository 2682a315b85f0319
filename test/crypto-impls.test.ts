/**
 * Differential tests: noble, fast (under its default thresholds and with each
 * bulk code path forced) and sodium-native as the oracle must agree byte for
 * byte, and on every accept/reject, for adversarial inputs. Deterministic
 * (seeded PRNG), bounded loops.
 */
import { ed25519 } from "@noble/curves/ed25519.js"
import { sha512 } from "@noble/hashes/sha2.js"
import sodium from "sodium-native"
import { beforeAll, describe, expect, it } from "vitest"
import { makeFast } from "../src/layers/crypto/fast.js"
import { noble, randomBytes } from "../src/layers/crypto/noble.js"
import type { CryptoImpl, SecretStreamState } from "../src/layers/crypto/types.js"
import { SECRETSTREAM_TAG_FINAL, SECRETSTREAM_TAG_MESSAGE, SECRETSTREAM_TAG_PUSH, SECRETSTREAM_TAG_REKEY } from "../src/layers/crypto/types.js"
import { xorshift32 } from "../src/util/random.js"

// sodium-native refuses generichash keys of 1..15 bytes (its JS wrapper and its C binding both
// assert crypto_generichash_KEYBYTES_MIN) although libsodium accepts 0..64: those are checked
// against noble only.

// ---- deterministic randomness ----------------------------------------------------------

const prng = (seed: number) => {
  const next = xorshift32(seed || 1)
  return {
    int: (n: number): number => next() % n,
    bytes: (n: number): Uint8Array => {
      const b = new Uint8Array(n)
      for (let i = 0; i < n; i += 4) {
        const v = next()
        b[i] = v & 0xff
        if (i + 1 < n) b[i + 1] = (v >>> 8) & 0xff
        if (i + 2 < n) b[i + 2] = (v >>> 16) & 0xff
        if (i + 3 < n) b[i + 3] = v >>> 24
      }
      return b
    }
  }
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")
const fromHex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "hex"))
const buf = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength)

// ---- implementations --------------------------------------------------------------------

let fast: CryptoImpl
/** fast with each secretstream / AEAD code path forced for every length. */
let forced: Array<{ label: string; impl: CryptoImpl }> = []
let all: Array<{ label: string; impl: CryptoImpl }> = []

beforeAll(async () => {
  fast = await makeFast()
  forced = [
    { label: "fast/wasm", impl: await makeFast({ secretstreamAeadMin: Infinity, secretstreamHybridMin: Infinity, aeadNodeMin: Infinity, signKeyObjectAfter: 0 }) },
    { label: "fast/hybrid", impl: await makeFast({ secretstreamAeadMin: Infinity, secretstreamHybridMin: -1, aeadNodeMin: -1, signKeyObjectAfter: 1 }) },
    { label: "fast/aead", impl: await makeFast({ secretstreamAeadMin: -1, secretstreamHybridMin: Infinity }) }
  ]
  all = [{ label: "noble", impl: noble }, { label: "fast", impl: fast }, ...forced]
})

// ---- ed25519 points -----------------------------------------------------------------

const Point = ed25519.Point
const L = Point.Fn.ORDER
const P = Point.Fp.ORDER

const leToBig = (b: Uint8Array): bigint => {
  let n = 0n
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!)
  return n
}
const bigToLe = (n: bigint, len = 32): Uint8Array => {
  const out = new Uint8Array(len)
  for (let i = 0; i < len; i++) {
    out[i] = Number(n & 0xffn)
    n >>= 8n
  }
  return out
}

/** libsodium's blocklist (ge25519_has_small_order), as listed in ed25519_ref10.c. */
const BLOCKLIST = [
  "0000000000000000000000000000000000000000000000000000000000000000", // 0 (order 4)
  "0100000000000000000000000000000000000000000000000000000000000000", // 1 (order 1)
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", // order 8
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", // order 8
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p-1 (order 2)
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p (=0, order 4)
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f" // p+1 (=1, order 1)
].map(fromHex)

const withSign = (b: Uint8Array): Uint8Array => {
  const c = b.slice()
  c[31]! ^= 0x80
  return c
}

/** The 8-torsion points. */
const T8 = Point.fromBytes(BLOCKLIST[3]!, true)
const torsion = Array.from({ length: 8 }, (_, k) => (k === 0 ? Point.ZERO : T8.multiplyUnsafe(BigInt(k))))

/** Every small-order encoding: the blocklist with both sign bits, and the torsion points' own encodings. */
const SMALL_ORDER: Array<Uint8Array> = (() => {
  const seen = new Map<string, Uint8Array>()
  for (const b of [...BLOCKLIST, ...torsion.map((t) => t.toBytes())]) {
    for (const e of [b, withSign(b)]) seen.set(hex(e), e)
  }
  return [...seen.values()]
})()

/** y >= p (non-canonical), both sign bits: y = p + k for k = 0..18. */
const NON_CANONICAL: Array<Uint8Array> = (() => {
  const out: Array<Uint8Array> = []
  for (let k = 0n; k < 19n; k++) {
    const e = bigToLe(P + k)
    out.push(e, withSign(e))
  }
  return out
})()

const scalarOf = (seed: Uint8Array): bigint => ed25519.utils.getExtendedPublicKey(seed).scalar
const hashScalar = (...parts: Array<Uint8Array>): bigint => {
  const h = sha512.create()
  for (const p of parts) h.update(p)
  return leToBig(h.digest()) % L
}

/** A signature under the public key A' = aB + T (torsion added) made with a, nonce from r. */
const signWithTorsion = (seed: Uint8Array, T: typeof T8, msg: Uint8Array, rSeed: Uint8Array) => {
  const a = scalarOf(seed)
  const A2 = Point.BASE.multiply(a).add(T).toBytes()
  const r = (leToBig(rSeed) % (L - 1n)) + 1n
  const R = Point.BASE.multiply(r).toBytes()
  const h = hashScalar(R, A2, msg)
  const S = (r + h * a) % L
  const sig = new Uint8Array(64)
  sig.set(R, 0)
  sig.set(bigToLe(S), 32)
  return { sig, publicKey: A2, h }
}

const nativeVerify = (sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean => sodium.crypto_sign_verify_detached(buf(sig), buf(msg), buf(pk))

const nativeDh = (secretKey: Uint8Array, remote: Uint8Array): Uint8Array | null => {
  const d = Buffer.alloc(64)
  sodium.crypto_hash_sha512(d, buf(secretKey.subarray(0, 32)))
  d[0]! &= 248
  d[31]! &= 127
  d[31]! |= 64
  const q = Buffer.alloc(32)
  try {
    sodium.crypto_scalarmult_ed25519_noclamp(q, d.subarray(0, 32), buf(remote))
    return Uint8Array.from(q)
  } catch {
    return null
  }
}

const nativeKeyPair = (seed: Uint8Array) => {
  const pk = Buffer.alloc(32)
  const sk = Buffer.alloc(64)
  sodium.crypto_sign_seed_keypair(pk, sk, buf(seed))
  return { publicKey: Uint8Array.from(pk), secretKey: Uint8Array.from(sk) }
}

const nativeSign = (msg: Uint8Array, sk: Uint8Array): Uint8Array => {
  const sig = Buffer.alloc(64)
  sodium.crypto_sign_detached(sig, buf(msg), buf(sk))
  return Uint8Array.from(sig)
}

/** verify by every implementation and the oracle; they must agree. Returns the verdict. */
const verifyAll = (sig: Uint8Array, msg: Uint8Array, pk: Uint8Array, what: string): boolean => {
  const expected = nativeVerify(sig, msg, pk)
  for (const { label, impl } of all) {
    const got = impl.verify(sig, msg, pk)
    if (got !== expected) throw new Error(`${label} verify=${got}, sodium-native=${expected}: ${what} sig=${hex(sig)} pk=${hex(pk)} msg=${hex(msg)}`)
  }
  return expected
}

describe("ed25519 verify: noble, fast and sodium-native agree on adversarial inputs", () => {
  it("valid signatures, sign outputs and key pairs", () => {
    const r = prng(1)
    for (let i = 0; i < 40; i++) {
      const seed = r.bytes(32)
      const kp = nativeKeyPair(seed)
      const msg = r.bytes(r.int(300))
      const sig = nativeSign(msg, kp.secretKey)
      for (const { label, impl } of all) {
        const ours = impl.keyPair(seed)!
        expect([label, hex(ours.publicKey), hex(ours.secretKey)]).toEqual([label, hex(kp.publicKey), hex(kp.secretKey)])
        // three times: the fast implementation moves a reused key to a node:crypto KeyObject
        for (let k = 0; k < 3; k++) expect([label, hex(impl.sign(msg, kp.secretKey)!)]).toEqual([label, hex(sig)])
      }
      expect(verifyAll(sig, msg, kp.publicKey, "valid")).toBe(true)
    }
  })

  it("sign follows libsodium for a secret key whose public half is not its own, and for keys mutated in place", () => {
    const r = prng(14)
    const a = nativeKeyPair(r.bytes(32))
    const b = nativeKeyPair(r.bytes(32))
    const mixed = new Uint8Array(64)
    mixed.set(a.secretKey.subarray(0, 32), 0)
    mixed.set(b.publicKey, 32) // libsodium signs with the stored half as A
    const msg = r.bytes(64)
    const expected = hex(nativeSign(msg, mixed))
    for (const { label, impl } of [{ label: "fast", impl: fast }, ...forced]) {
      for (let k = 0; k < 4; k++) expect([label, hex(impl.sign(msg, mixed)!)]).toEqual([label, expected])
      // the same array object holding another key: no stale cached KeyObject
      const sk = a.secretKey.slice()
      for (let k = 0; k < 3; k++) impl.sign(msg, sk)
      sk.set(b.secretKey)
      expect([label, hex(impl.sign(msg, sk)!)]).toEqual([label, hex(nativeSign(msg, b.secretKey))])
      expect([label, hex(impl.sign(msg, sk)!)]).toEqual([label, hex(nativeSign(msg, b.secretKey))])
    }
  })

  it("small-order R and A (libsodium blocklist, both sign bits) are rejected, incl. the trivially forgeable ones", () => {
    const r = prng(2)
    const kp = nativeKeyPair(r.bytes(32))
    const msg = r.bytes(32)
    const valid = nativeSign(msg, kp.secretKey)
    for (const small of SMALL_ORDER) {
      // small-order R with the valid S, and with S = 0
      for (const S of [valid.subarray(32), new Uint8Array(32)]) {
        const sig = new Uint8Array(64)
        sig.set(small, 0)
        sig.set(S, 32)
        expect(verifyAll(sig, msg, kp.publicKey, "small R")).toBe(false)
      }
      // small-order A: the valid signature, and R = A' = small-order with S = 0 (sB - hA = 0 = R for the identity)
      expect(verifyAll(valid, msg, small, "small A")).toBe(false)
      for (const R of SMALL_ORDER) {
        const sig = new Uint8Array(64)
        sig.set(R, 0)
        expect(verifyAll(sig, msg, small, "small R and A, S = 0")).toBe(false)
      }
    }
  })

  it("non-canonical S (S + L, L, 2^256 - 1) is rejected", () => {
    const r = prng(3)
    for (let i = 0; i < 30; i++) {
      const kp = nativeKeyPair(r.bytes(32))
      const msg = r.bytes(r.int(100))
      const sig = nativeSign(msg, kp.secretKey)
      const S = leToBig(sig.subarray(32))
      for (const bad of [S + L, L, (1n << 256n) - 1n, S + 2n * L]) {
        const s2 = sig.slice()
        s2.set(bigToLe(bad, 32), 32)
        expect(verifyAll(s2, msg, kp.publicKey, "non-canonical S")).toBe(false)
      }
    }
  })

  it("non-canonical public keys and R values (y >= p) and random 32-byte keys", () => {
    const r = prng(4)
    const kp = nativeKeyPair(r.bytes(32))
    const msg = r.bytes(48)
    const valid = nativeSign(msg, kp.secretKey)
    for (const enc of NON_CANONICAL) {
      expect(verifyAll(valid, msg, enc, "non-canonical A")).toBe(false)
      const sig = valid.slice()
      sig.set(enc, 0)
      expect(verifyAll(sig, msg, kp.publicKey, "non-canonical R")).toBe(false)
    }
    for (let i = 0; i < 100; i++) verifyAll(valid, msg, r.bytes(32), "random A")
  })

  it("random bit flips of valid signatures, messages and keys", () => {
    const r = prng(5)
    for (let i = 0; i < 20; i++) {
      const kp = nativeKeyPair(r.bytes(32))
      const msg = r.bytes(1 + r.int(200))
      const sig = nativeSign(msg, kp.secretKey)
      for (let j = 0; j < 12; j++) {
        const s2 = sig.slice()
        const bit = r.int(512)
        s2[bit >> 3]! ^= 1 << (bit & 7)
        verifyAll(s2, msg, kp.publicKey, "flipped sig bit")
        const m2 = msg.slice()
        const mb = r.int(msg.length * 8)
        m2[mb >> 3]! ^= 1 << (mb & 7)
        expect(verifyAll(sig, m2, kp.publicKey, "flipped msg bit")).toBe(false)
        const k2 = kp.publicKey.slice()
        const kb = r.int(256)
        k2[kb >> 3]! ^= 1 << (kb & 7)
        verifyAll(sig, msg, k2, "flipped key bit")
      }
    }
  })

  it("public keys with a torsion component (A + T8, A + T4, A + T2): accepted exactly when the cofactorless equation holds", () => {
    const r = prng(6)
    const seed = r.bytes(32)
    for (const [T, order] of [
      [torsion[1]!, 8n],
      [torsion[2]!, 4n],
      [torsion[4]!, 2n]
    ] as const) {
      let accepted = 0
      let rejected = 0
      for (let i = 0; i < 48; i++) {
        const msg = r.bytes(16 + r.int(64))
        const { sig, publicKey, h } = signWithTorsion(seed, T, msg, r.bytes(64))
        const ok = verifyAll(sig, msg, publicKey, `A + T (order ${order})`)
        // sB - hA' = R - hT: equal to R iff h is a multiple of T's order
        expect(ok).toBe(h % order === 0n)
        if (ok) accepted++
        else rejected++
      }
      expect(rejected).toBeGreaterThan(0)
      expect(accepted).toBeGreaterThan(0)
    }
    // R with a torsion component never verifies cofactorless
    const kp = nativeKeyPair(seed)
    for (let i = 0; i < 16; i++) {
      const msg = r.bytes(32)
      const a = scalarOf(seed)
      const rr = (leToBig(r.bytes(64)) % (L - 1n)) + 1n
      const R2 = Point.BASE.multiply(rr).add(torsion[1 + r.int(7)]!).toBytes()
      const S = (rr + hashScalar(R2, kp.publicKey, msg) * a) % L
      const sig = new Uint8Array(64)
      sig.set(R2, 0)
      sig.set(bigToLe(S), 32)
      expect(verifyAll(sig, msg, kp.publicKey, "R + T")).toBe(false)
    }
  })
})

describe("dh (noise-curve-ed): noble, fast and sodium-native crypto_scalarmult_ed25519_noclamp agree", () => {
  it("on small-order, non-canonical, torsioned, random and valid points", () => {
    const r = prng(7)
    const secrets = Array.from({ length: 3 }, () => nativeKeyPair(r.bytes(32)).secretKey)
    const valid = Array.from({ length: 8 }, () => nativeKeyPair(r.bytes(32)).publicKey)
    const torsioned = valid.slice(0, 4).flatMap((A) => torsion.slice(1).map((T) => Point.fromBytes(A).add(T).toBytes()))
    const points: Array<[string, Uint8Array]> = [
      ...SMALL_ORDER.map((p) => ["small order", p] as [string, Uint8Array]),
      ...NON_CANONICAL.map((p) => ["non-canonical", p] as [string, Uint8Array]),
      ...torsioned.map((p) => ["A + T", p] as [string, Uint8Array]),
      ...valid.map((p) => ["valid", p] as [string, Uint8Array]),
      ...valid.map((p) => ["valid, sign flipped (-A)", withSign(p)] as [string, Uint8Array]),
      ...Array.from({ length: 40 }, () => ["random", r.bytes(32)] as [string, Uint8Array])
    ]
    let accepted = 0
    for (const sk of secrets) {
      for (const [what, p] of points) {
        const expected = nativeDh(sk, p)
        for (const { label, impl } of all) {
          const got = impl.dh(sk, p)
          if ((got === null ? null : hex(got)) !== (expected === null ? null : hex(expected))) {
            throw new Error(`${label} dh on ${what} ${hex(p)}: ${got && hex(got)} vs sodium-native ${expected && hex(expected)}`)
          }
        }
        if (what.startsWith("valid")) expect(expected).not.toBeNull()
        if (what !== "random" && !what.startsWith("valid")) expect(expected).toBeNull()
        if (expected !== null) accepted++
      }
    }
    expect(accepted).toBeGreaterThanOrEqual(secrets.length * valid.length * 2)
    // malformed arguments answer null, never throw
    for (const { impl } of all) {
      expect(impl.dh(new Uint8Array(16), valid[0]!)).toBeNull()
      expect(impl.dh(secrets[0]!, new Uint8Array(31))).toBeNull()
    }
  })
})

// ---- secretstream ---------------------------------------------------------------------

const nativeState = (st: SecretStreamState): Buffer => {
  const b = Buffer.alloc(52)
  b.set(st.k, 0)
  b.set(st.nonce, 32)
  return b
}
const stateHex = (st: SecretStreamState): string => hex(st.k) + hex(st.nonce)
const nativeStateHex = (b: Buffer): string => b.subarray(0, 44).toString("hex")

describe("secretstream: every implementation pushes and pulls the same stream", () => {
  it("random lengths 0..70000 with PUSH / REKEY / FINAL tags and additional data, implementations swapped per message", () => {
    const r = prng(8)
    const key = r.bytes(32)
    const header = r.bytes(24)
    const push = noble.secretstreamInitPush(key, header).state
    const pull = fast.secretstreamInitPull(key, header)!
    const nPush = nativeState(push)
    const nPull = nativeState(pull)
    expect(nativeStateHex(nPush)).toBe(stateHex(push))
    const tags = [SECRETSTREAM_TAG_MESSAGE, SECRETSTREAM_TAG_MESSAGE, SECRETSTREAM_TAG_MESSAGE, SECRETSTREAM_TAG_PUSH, SECRETSTREAM_TAG_REKEY, SECRETSTREAM_TAG_FINAL]
    const lengthOf = (): number => {
      switch (r.int(6)) {
        case 0:
          return r.int(64)
        case 1:
          return r.int(4096)
        case 2:
          return 16 * r.int(4375) // multiple of 16 up to 70000
        case 3:
          return 16 * r.int(4375) + 8
        case 4:
          return 1024 * (1 + r.int(68)) + r.int(3) - 1
        default:
          return r.int(70001)
      }
    }
    for (let i = 0; i < 180; i++) {
      const n = lengthOf()
      const msg = r.bytes(n)
      const tag = tags[r.int(tags.length)]!
      const ad = r.int(4) === 0 ? r.bytes(r.int(40)) : undefined
      const pusher = all[r.int(all.length)]!
      const puller = all[r.int(all.length)]!
      const ct = pusher.impl.secretstreamPush(push, msg, tag, ad)
      const ref = Buffer.alloc(n + 17)
      sodium.crypto_secretstream_xchacha20poly1305_push(nPush, ref, buf(msg), ad === undefined ? null : buf(ad), tag)
      if (hex(ct) !== ref.toString("hex")) throw new Error(`${pusher.label} push #${i} (n=${n}, tag=${tag}) differs from sodium-native`)
      expect(stateHex(push)).toBe(nativeStateHex(nPush))

      if (r.int(5) === 0) {
        // a forged message is refused by everyone and leaves the state untouched
        const bad = ct.slice()
        const bit = r.int(bad.length * 8)
        bad[bit >> 3]! ^= 1 << (bit & 7)
        const before = stateHex(pull)
        for (const { label, impl } of all) {
          expect([label, impl.secretstreamPull(pull, bad, ad)]).toEqual([label, null])
          expect(stateHex(pull)).toBe(before)
        }
        if (ad !== undefined && ad.length > 0) expect(fast.secretstreamPull(pull, ct)).toBeNull()
        expect(() => sodium.crypto_secretstream_xchacha20poly1305_pull(Buffer.from(nPull), Buffer.alloc(n), Buffer.alloc(1), buf(bad), ad === undefined ? null : buf(ad))).toThrow()
      }
      const got = puller.impl.secretstreamPull(pull, ct, ad)
      if (got === null) throw new Error(`${puller.label} pull #${i} (n=${n}) of ${pusher.label}'s message failed`)
      expect(got.tag).toBe(tag)
      expect(got.message.length).toBe(n)
      expect(hex(got.message) === hex(msg)).toBe(true)
      const m2 = Buffer.alloc(n)
      const t2 = Buffer.alloc(1)
      sodium.crypto_secretstream_xchacha20poly1305_pull(nPull, m2, t2, buf(ct), ad === undefined ? null : buf(ad))
      expect(t2[0]).toBe(tag)
      expect(stateHex(pull)).toBe(nativeStateHex(nPull))
    }
  })

  it("the counter wraps to a rekey identically", () => {
    const r = prng(9)
    for (const { label, impl } of all) {
      const { state } = impl.secretstreamInitPush(r.bytes(32), r.bytes(24))
      state.nonce.set([0xfe, 0xff, 0xff, 0xff], 0)
      const ns = nativeState(state)
      for (const n of [10, 5000, 65536, 3]) {
        const msg = r.bytes(n)
        const ct = impl.secretstreamPush(state, msg)
        const ref = Buffer.alloc(n + 17)
        sodium.crypto_secretstream_xchacha20poly1305_push(ns, ref, buf(msg), null, 0)
        expect([label, hex(ct)]).toEqual([label, ref.toString("hex")])
        expect(stateHex(state)).toBe(nativeStateHex(ns))
      }
    }
  })

  it("results stay intact: pooled small outputs never alias later ones", () => {
    const r = prng(12)
    const key = r.bytes(32)
    const header = r.bytes(24)
    const { state } = fast.secretstreamInitPush(key, header)
    const msgs = Array.from({ length: 40 }, (_, i) => r.bytes(65 + ((i * 997) % 4000)))
    const cts = msgs.map((m) => fast.secretstreamPush(state, m))
    const boxes = msgs.map((m) => fast.secretboxSeal(m, header, key))
    const pull = noble.secretstreamInitPull(key, header)!
    cts.forEach((ct, i) => {
      expect(hex(noble.secretstreamPull(pull, ct)!.message)).toBe(hex(msgs[i]!))
      expect(hex(noble.secretboxOpen(boxes[i]!, header, key)!)).toBe(hex(msgs[i]!))
    })
  })

  it("keeps working after another user of libsodium-wrappers grows the wasm memory", async () => {
    const lib: any = (await import("libsodium-wrappers-sumo")).default
    await lib.ready
    const before = lib.libsodium.HEAPU8.buffer.byteLength
    lib.crypto_generichash(32, new Uint8Array(before + (8 << 20))) // forces memory.grow
    expect(lib.libsodium.HEAPU8.buffer.byteLength).toBeGreaterThan(before)
    const r = prng(13)
    const key = r.bytes(32)
    const header = r.bytes(24)
    const { state } = fast.secretstreamInitPush(key, header)
    const pull = noble.secretstreamInitPull(key, header)!
    for (const n of [10, 1024, 5000, 65536]) {
      const m = r.bytes(n)
      expect(hex(noble.secretstreamPull(pull, fast.secretstreamPush(state, m))!.message)).toBe(hex(m))
    }
    const kp = fast.keyPair(r.bytes(32))!
    expect(fast.verify(fast.sign(key, kp.secretKey)!, key, kp.publicKey)).toBe(true)
    expect(hex(fast.blake2b(key))).toBe(hex(noble.blake2b(key)))
  })

  it("rejects short and malformed input without throwing", () => {
    for (const { label, impl } of all) {
      const st = impl.secretstreamInitPull(new Uint8Array(32), new Uint8Array(24))!
      expect([label, impl.secretstreamPull(st, new Uint8Array(16))]).toEqual([label, null])
      expect(impl.secretstreamInitPull(new Uint8Array(31), new Uint8Array(24))).toBeNull()
      expect(impl.secretstreamInitPull(new Uint8Array(32), new Uint8Array(23))).toBeNull()
    }
  })
})

// ---- BLAKE2b, AEAD, secretbox ---------------------------------------------------------------

const nativeGenerichash = (input: Uint8Array, outLen: number, key: Uint8Array): Uint8Array => {
  const out = Buffer.alloc(outLen)
  if (key.length === 0) sodium.crypto_generichash(out, buf(input))
  else sodium.crypto_generichash(out, buf(input), buf(key))
  return Uint8Array.from(out)
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

describe("BLAKE2b (crypto_generichash): random outLen 16..64 and keys 0..64 bytes", () => {
  it("agrees with sodium-native (keys 0 and 16..64) and noble (every key length)", () => {
    const r = prng(10)
    for (let i = 0; i < 400; i++) {
      const outLen = 16 + r.int(49)
      const keyLen = i < 65 ? i : r.int(65)
      const key = r.bytes(keyLen)
      const nParts = r.int(4)
      const parts = Array.from({ length: nParts + 1 }, () => r.bytes(r.int(i % 50 === 0 ? 300000 : 300)))
      const input = nParts === 0 ? parts[0]! : parts
      const whole = concat(parts)
      const expected = keyLen === 0 || keyLen >= 16 ? hex(nativeGenerichash(whole, outLen, key)) : hex(noble.blake2b(whole, outLen, key))
      for (const { label, impl } of all) {
        const got = impl.blake2b(input, outLen, keyLen === 0 && r.int(2) === 0 ? undefined : key)
        if (hex(got) !== expected) throw new Error(`${label} blake2b outLen=${outLen} keyLen=${keyLen} parts=${nParts + 1}`)
      }
    }
    // the default is BLAKE2b-256 unkeyed; sha512 too
    const m = r.bytes(100)
    const sha = Buffer.alloc(64)
    sodium.crypto_hash_sha512(sha, buf(m))
    for (const { impl } of all) {
      expect(hex(impl.blake2b(m))).toBe(hex(nativeGenerichash(m, 32, new Uint8Array(0))))
      expect(hex(impl.sha512(m))).toBe(sha.toString("hex"))
    }
  })
})

describe("ChaCha20-Poly1305 IETF and secretbox around the wasm / OpenSSL thresholds", () => {
  it("agree with sodium-native and reject forgeries", () => {
    const r = prng(11)
    const lengths = [0, 1, 15, 16, 17, 1000, 2047, 2048, 2049, 4096, 5000, 65536, 300000]
    for (const n of lengths) {
      const key = r.bytes(32)
      const nonce = r.bytes(12)
      const ad = r.bytes(r.int(3) * 20)
      const msg = r.bytes(n)
      const ref = Buffer.alloc(n + 16)
      sodium.crypto_aead_chacha20poly1305_ietf_encrypt(ref, buf(msg), buf(ad), null, buf(nonce), buf(key))
      const n24 = r.bytes(24)
      const box = Buffer.alloc(n + 16)
      sodium.crypto_secretbox_easy(box, buf(msg), buf(n24), buf(key))
      for (const { label, impl } of all) {
        const ct = impl.aeadEncrypt(key, nonce, ad, msg)
        expect([label, n, hex(ct)]).toEqual([label, n, ref.toString("hex")])
        expect(hex(impl.aeadDecrypt(key, nonce, ad, ct)!)).toBe(hex(msg))
        const bad = ct.slice()
        bad[r.int(bad.length)]! ^= 1 << r.int(8)
        expect([label, n, impl.aeadDecrypt(key, nonce, ad, bad)]).toEqual([label, n, null])
        expect(hex(impl.secretboxSeal(msg, n24, key))).toBe(box.toString("hex"))
        expect(hex(impl.secretboxOpen(box, n24, key)!)).toBe(hex(msg))
        const badBox = Uint8Array.from(box)
        badBox[r.int(badBox.length)]! ^= 1 << r.int(8)
        expect(impl.secretboxOpen(badBox, n24, key)).toBeNull()
      }
    }
    for (const { impl } of [{ impl: fast }, ...forced]) {
      expect(impl.aeadDecrypt(new Uint8Array(32), new Uint8Array(12), new Uint8Array(0), new Uint8Array(15))).toBeNull()
      expect(impl.aeadDecrypt(new Uint8Array(31), new Uint8Array(12), new Uint8Array(0), new Uint8Array(40))).toBeNull()
      expect(impl.secretboxOpen(new Uint8Array(15), new Uint8Array(24), new Uint8Array(32))).toBeNull()
      expect(impl.blake2b(new Uint8Array(1), 65).length).toBe(0)
      expect(impl.keyPair(new Uint8Array(31))).toBeNull()
      expect(impl.sign(new Uint8Array(1), new Uint8Array(63))).toBeNull()
      expect(impl.verify(new Uint8Array(63), new Uint8Array(1), new Uint8Array(32))).toBe(false)
    }
  })
})

describe("randomBytes (pooled for small requests)", () => {
  it("gives fresh, independent arrays of the asked length across pool refills, and large requests too", () => {
    const seen = new Set<string>()
    const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
    for (let i = 0; i < 600; i++) {
      const n = [32, 24, 12, 1, 256][i % 5]!
      const b = randomBytes(n)
      expect(b).toBeInstanceOf(Uint8Array)
      expect(b.length).toBe(n)
      // its own buffer, not a view into the pool
      expect(b.byteOffset).toBe(0)
      expect(b.buffer.byteLength).toBe(n)
      if (n >= 12) {
        expect(seen.has(hex(b))).toBe(false)
        seen.add(hex(b))
      }
    }
    // writing to one output changes no later output
    const a = randomBytes(32)
    a.fill(0xaa)
    expect(hex(randomBytes(32))).not.toBe("aa".repeat(32))
    const big = randomBytes(5000)
    expect(big.length).toBe(5000)
    expect(big.some((x) => x !== 0)).toBe(true)
    expect(randomBytes(0).length).toBe(0)
  })
})
