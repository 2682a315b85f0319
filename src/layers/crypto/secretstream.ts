/**
 * libsodium crypto_secretstream_xchacha20poly1305 built from primitives
 * (connect.md §7.3), shared by the Crypto implementations: each supplies its
 * own ChaCha20 / HChaCha20 / Poly1305.
 *
 * Wire quirks kept on purpose: the block counter starts at 1, the first
 * keystream block after the Poly1305 key block encrypts the tag byte (block
 * counter 1) and the message starts at block counter 2; the MAC pads the
 * ciphertext with `|c| mod 16` zero bytes (not pad-to-16).
 */
import type { SecretStreamPull, SecretStreamState } from "./types.js"
import { SECRETSTREAM_TAG_MESSAGE, SECRETSTREAM_TAG_REKEY } from "./types.js"

export interface Poly1305Stream {
  update(data: Uint8Array): void
  digest(): Uint8Array
}

export interface StreamPrimitives {
  /** HChaCha20(key, input16) -> 32-byte subkey. */
  hchacha20(key: Uint8Array, input: Uint8Array): Uint8Array
  /** ChaCha20-IETF: XOR `data` with the keystream starting at block `counter`; writes into `out` (same length). */
  chacha20Xor(key: Uint8Array, nonce: Uint8Array, counter: number, data: Uint8Array, out: Uint8Array): void
  poly1305(key: Uint8Array): Poly1305Stream
  randomBytes(n: number): Uint8Array
}

const ZERO16 = new Uint8Array(16)
const ZERO64 = new Uint8Array(64)

const constantTimeEqual16 = (a: Uint8Array, aOff: number, b: Uint8Array): boolean => {
  let d = 0
  for (let i = 0; i < 16; i++) d |= a[aOff + i]! ^ b[i]!
  return d === 0
}

const lengths = (adLen: number, cLen: number): Uint8Array => {
  const out = new Uint8Array(16)
  const dv = new DataView(out.buffer)
  dv.setUint32(0, adLen >>> 0, true)
  dv.setUint32(4, Math.floor(adLen / 0x100000000), true)
  const total = 64 + cLen
  dv.setUint32(8, total >>> 0, true)
  dv.setUint32(12, Math.floor(total / 0x100000000), true)
  return out
}

export const makeSecretStream = (p: StreamPrimitives) => {
  const counterInc = (nonce: Uint8Array): boolean => {
    // 32-bit little-endian counter in nonce[0..4]; returns true when it wrapped to 0
    for (let i = 0; i < 4; i++) {
      nonce[i] = (nonce[i]! + 1) & 0xff
      if (nonce[i] !== 0) return false
    }
    return true
  }

  const rekey = (st: SecretStreamState): void => {
    const buf = new Uint8Array(40)
    buf.set(st.k, 0)
    buf.set(st.nonce.subarray(4, 12), 32)
    const out = new Uint8Array(40)
    p.chacha20Xor(st.k, st.nonce, 0, buf, out)
    st.k.set(out.subarray(0, 32))
    st.nonce.set(out.subarray(32, 40), 4)
    st.nonce[0] = 1
    st.nonce[1] = 0
    st.nonce[2] = 0
    st.nonce[3] = 0
  }

  const init = (key: Uint8Array, header: Uint8Array): SecretStreamState => {
    const k = p.hchacha20(key, header.subarray(0, 16))
    const nonce = new Uint8Array(12)
    nonce[0] = 1
    nonce.set(header.subarray(16, 24), 4)
    return { k, nonce }
  }

  const mac = (st: SecretStreamState, ad: Uint8Array, block: Uint8Array, c: Uint8Array): Uint8Array => {
    const block0 = new Uint8Array(64)
    p.chacha20Xor(st.k, st.nonce, 0, ZERO64, block0)
    const poly = p.poly1305(block0.subarray(0, 32))
    if (ad.length > 0) {
      poly.update(ad)
      const padAd = (16 - (ad.length % 16)) % 16
      if (padAd > 0) poly.update(ZERO16.subarray(0, padAd))
    }
    poly.update(block)
    poly.update(c)
    const padC = c.length % 16 // libsodium: (0x10 - 64 + mlen) & 0xf
    if (padC > 0) poly.update(ZERO16.subarray(0, padC))
    poly.update(lengths(ad.length, c.length))
    return poly.digest()
  }

  const finishMessage = (st: SecretStreamState, tag16: Uint8Array, tag: number): void => {
    for (let i = 0; i < 8; i++) st.nonce[4 + i]! ^= tag16[i]!
    const wrapped = counterInc(st.nonce)
    if ((tag & SECRETSTREAM_TAG_REKEY) !== 0 || wrapped) rekey(st)
  }

  const initPush = (key: Uint8Array, header?: Uint8Array) => {
    const h = header ?? p.randomBytes(24)
    return { state: init(key, h), header: h }
  }

  const push = (st: SecretStreamState, message: Uint8Array, tag = SECRETSTREAM_TAG_MESSAGE, ad: Uint8Array = ZERO16.subarray(0, 0)): Uint8Array => {
    const out = new Uint8Array(1 + message.length + 16)
    const block = new Uint8Array(64)
    block[0] = tag
    p.chacha20Xor(st.k, st.nonce, 1, block, block)
    out[0] = block[0]!
    const c = out.subarray(1, 1 + message.length)
    p.chacha20Xor(st.k, st.nonce, 2, message, c)
    const t = mac(st, ad, block, c)
    out.set(t, 1 + message.length)
    finishMessage(st, t, tag)
    return out
  }

  const initPull = (key: Uint8Array, header: Uint8Array): SecretStreamState | null => {
    if (key.length !== 32 || header.length !== 24) return null
    return init(key, header)
  }

  const pull = (st: SecretStreamState, input: Uint8Array, ad: Uint8Array = ZERO16.subarray(0, 0)): SecretStreamPull | null => {
    if (input.length < 17) return null
    const mlen = input.length - 17
    const block = new Uint8Array(64)
    block[0] = input[0]!
    p.chacha20Xor(st.k, st.nonce, 1, block, block)
    const tag = block[0]!
    block[0] = input[0]!
    const c = input.subarray(1, 1 + mlen)
    const t = mac(st, ad, block, c)
    if (!constantTimeEqual16(input, 1 + mlen, t)) return null
    const message = new Uint8Array(mlen)
    p.chacha20Xor(st.k, st.nonce, 2, c, message)
    finishMessage(st, t, tag)
    return { message, tag }
  }

  return { initPush, push, initPull, pull }
}
