/**
 * Noise IK over Ed25519 with ChaChaPoly and BLAKE2b (connect.md §2–3):
 * `Noise_IK_Ed25519_ChaChaPoly_BLAKE2b`, the handshake HyperDHT relays
 * through DHT nodes. A plain deterministic state machine: no sockets, no
 * clock; randomness only through the ephemeral key pair, which callers may
 * inject (tests reproduce the reference transcript byte for byte).
 *
 *   initiator (client)                          responder (server)
 *   initiator(...) -> writeMessage1(payload) ->  readMessage1(msg1)
 *   readMessage2(msg2)                       <-  writeMessage2(payload)
 *
 * Both ends then hold `tx`, `rx` (32 bytes each) and the 64-byte handshake hash.
 */
import * as Data from "effect/Data"
import * as Result from "effect/Result"
import { copyBytes } from "../../protocol/encoding.js"
import type { CryptoImpl, KeyPair } from "./types.js"

export const PROTOCOL_NAME = "Noise_IK_Ed25519_ChaChaPoly_BLAKE2b"
const HASHLEN = 64
const BLOCKLEN = 128
const DHLEN = 32
const MAX_MESSAGE = 65535

export type NoiseErrorReason =
  | "InvalidKey" // a remote public key libsodium would reject (small order, not on curve...)
  | "DecryptFailed" // AEAD authentication failed
  | "MessageTooShort"
  | "MessageTooLong"
  | "WrongState" // a step called out of order

export class NoiseError extends Data.TaggedError("NoiseError")<{
  readonly reason: NoiseErrorReason
  readonly detail: string
}> {
  override get message(): string {
    return `noise handshake failed: ${this.reason}${this.detail ? ` (${this.detail})` : ""}`
  }
}

export interface NoiseSplit {
  /** Key for what we send (secret-stream push key). */
  readonly tx: Uint8Array
  /** Key for what we receive (secret-stream pull key). */
  readonly rx: Uint8Array
  readonly handshakeHash: Uint8Array
  readonly remotePublicKey: Uint8Array
}

interface Symmetric {
  h: Uint8Array
  ck: Uint8Array
  k: Uint8Array | null
  n: number
}

export interface NoiseState {
  readonly crypto: CryptoImpl
  readonly initiator: boolean
  readonly s: KeyPair
  readonly e: KeyPair
  /** Remote static key: known up front by the initiator, learned from msg1 by the responder. */
  rs: Uint8Array | null
  re: Uint8Array | null
  readonly sym: Symmetric
  step: 0 | 1 | 2
  split: NoiseSplit | null
}

const EMPTY = new Uint8Array(0)

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

// ---- HMAC / HKDF over BLAKE2b-512 -------------------------------------------

const hmac = (c: CryptoImpl, key: Uint8Array, data: ReadonlyArray<Uint8Array>): Uint8Array => {
  const k = key.length > BLOCKLEN ? c.blake2b(key, HASHLEN) : key
  const ipad = new Uint8Array(BLOCKLEN).fill(0x36)
  const opad = new Uint8Array(BLOCKLEN).fill(0x5c)
  for (let i = 0; i < k.length; i++) {
    ipad[i]! ^= k[i]!
    opad[i]! ^= k[i]!
  }
  const inner = c.blake2b([ipad, ...data], HASHLEN)
  return c.blake2b([opad, inner], HASHLEN)
}

const ONE = Uint8Array.of(1)
const TWO = Uint8Array.of(2)

const hkdf = (c: CryptoImpl, ck: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] => {
  const prk = hmac(c, ck, [ikm])
  const o1 = hmac(c, prk, [ONE])
  const o2 = hmac(c, prk, [o1, TWO])
  return [o1, o2]
}

// ---- symmetric state ----------------------------------------------------------

const nonce12 = (n: number): Uint8Array => {
  const out = new Uint8Array(12)
  new DataView(out.buffer).setUint32(4, n, true)
  return out
}

const mixHash = (c: CryptoImpl, st: Symmetric, data: Uint8Array): void => {
  st.h = c.blake2b([st.h, data], HASHLEN)
}

const mixKey = (c: CryptoImpl, st: Symmetric, dh: Uint8Array): void => {
  const [o1, o2] = hkdf(c, st.ck, dh)
  st.ck = o1
  st.k = o2.slice(0, 32)
  st.n = 0
}

const encryptAndHash = (c: CryptoImpl, st: Symmetric, plaintext: Uint8Array): Uint8Array => {
  const out = st.k === null ? copyBytes(plaintext) : c.aeadEncrypt(st.k, nonce12(st.n++), st.h, plaintext)
  mixHash(c, st, out)
  return out
}

const decryptAndHash = (c: CryptoImpl, st: Symmetric, ciphertext: Uint8Array): Uint8Array | null => {
  let out: Uint8Array | null
  if (st.k === null) out = copyBytes(ciphertext)
  else {
    out = c.aeadDecrypt(st.k, nonce12(st.n), st.h, ciphertext)
    if (out === null) return null
    st.n++
  }
  mixHash(c, st, ciphertext)
  return out
}

const initSymmetric = (c: CryptoImpl, prologue: Uint8Array, responderStatic: Uint8Array): Symmetric => {
  const h = new Uint8Array(HASHLEN)
  h.set(new TextEncoder().encode(PROTOCOL_NAME))
  const st: Symmetric = { h, ck: h.slice(), k: null, n: 0 }
  mixHash(c, st, prologue)
  mixHash(c, st, responderStatic)
  return st
}

const doSplit = (c: CryptoImpl, state: NoiseState): NoiseSplit => {
  const [o1, o2] = hkdf(c, state.sym.ck, EMPTY)
  const k1 = o1.slice(0, 32)
  const k2 = o2.slice(0, 32)
  return {
    tx: state.initiator ? k1 : k2,
    rx: state.initiator ? k2 : k1,
    handshakeHash: state.sym.h,
    remotePublicKey: state.rs!
  }
}

const fail = (reason: NoiseErrorReason, detail = "") => Result.fail(new NoiseError({ reason, detail }))

// ---- public API ---------------------------------------------------------------------

export interface InitiatorOptions {
  readonly staticKeyPair: KeyPair
  readonly remoteStaticKey: Uint8Array
  readonly prologue: Uint8Array
  /**
   * The ephemeral key pair: injected by tests (a reference transcript), or
   * made ahead of time (`ConnectionHost.ephemeralKeyPair`); it must be fresh
   * and used for this handshake only. A new random one otherwise.
   */
  readonly ephemeralKeyPair?: KeyPair
}

export interface ResponderOptions {
  readonly staticKeyPair: KeyPair
  readonly prologue: Uint8Array
  /** As the initiator's: fresh, for this handshake only; a new random one otherwise. */
  readonly ephemeralKeyPair?: KeyPair
}

const freshEphemeral = (c: CryptoImpl, e: KeyPair | undefined): KeyPair => e ?? c.keyPair()!

export const initiator = (c: CryptoImpl, o: InitiatorOptions): NoiseState => ({
  crypto: c,
  initiator: true,
  s: o.staticKeyPair,
  e: freshEphemeral(c, o.ephemeralKeyPair),
  rs: o.remoteStaticKey,
  re: null,
  sym: initSymmetric(c, o.prologue, o.remoteStaticKey),
  step: 0,
  split: null
})

export const responder = (c: CryptoImpl, o: ResponderOptions): NoiseState => ({
  crypto: c,
  initiator: false,
  s: o.staticKeyPair,
  e: freshEphemeral(c, o.ephemeralKeyPair),
  rs: null,
  re: null,
  sym: initSymmetric(c, o.prologue, o.staticKeyPair.publicKey),
  step: 0,
  split: null
})

/** Initiator: `-> e, es, s, ss` + payload. */
export const writeMessage1 = (st: NoiseState, payload: Uint8Array): Result.Result<Uint8Array, NoiseError> => {
  if (!st.initiator || st.step !== 0) return fail("WrongState", "writeMessage1 is the initiator's first step")
  const c = st.crypto
  const rs = st.rs!
  mixHash(c, st.sym, st.e.publicKey)
  const es = c.dh(st.e.secretKey, rs)
  if (es === null) return fail("InvalidKey", "remote static key rejected")
  mixKey(c, st.sym, es)
  const encS = encryptAndHash(c, st.sym, st.s.publicKey)
  const ss = c.dh(st.s.secretKey, rs)
  if (ss === null) return fail("InvalidKey", "remote static key rejected")
  mixKey(c, st.sym, ss)
  const encP = encryptAndHash(c, st.sym, payload)
  const out = new Uint8Array(DHLEN + encS.length + encP.length)
  out.set(st.e.publicKey, 0)
  out.set(encS, DHLEN)
  out.set(encP, DHLEN + encS.length)
  if (out.length > MAX_MESSAGE) return fail("MessageTooLong", `${out.length} bytes`)
  st.step = 1
  return Result.succeed(out)
}

/** Responder: read msg1, learning the initiator's static key and payload. */
export const readMessage1 = (
  st: NoiseState,
  msg: Uint8Array
): Result.Result<{ readonly payload: Uint8Array; readonly remoteStaticKey: Uint8Array }, NoiseError> => {
  if (st.initiator || st.step !== 0) return fail("WrongState", "readMessage1 is the responder's first step")
  if (msg.length > MAX_MESSAGE) return fail("MessageTooLong", `${msg.length} bytes`)
  if (msg.length < DHLEN + DHLEN + 16 + 16) return fail("MessageTooShort", `${msg.length} bytes`)
  const c = st.crypto
  const re = copyBytes(msg, 0, DHLEN)
  mixHash(c, st.sym, re)
  const es = c.dh(st.s.secretKey, re)
  if (es === null) return fail("InvalidKey", "remote ephemeral key rejected")
  mixKey(c, st.sym, es)
  const rs = decryptAndHash(c, st.sym, msg.subarray(DHLEN, DHLEN + 48))
  if (rs === null) return fail("DecryptFailed", "static key")
  const ss = c.dh(st.s.secretKey, rs)
  if (ss === null) return fail("InvalidKey", "remote static key rejected")
  mixKey(c, st.sym, ss)
  const payload = decryptAndHash(c, st.sym, msg.subarray(DHLEN + 48))
  if (payload === null) return fail("DecryptFailed", "payload")
  st.re = re
  st.rs = rs
  st.step = 1
  return Result.succeed({ payload, remoteStaticKey: rs })
}

/** Responder: `<- e, ee, se` + payload; completes the handshake. */
export const writeMessage2 = (
  st: NoiseState,
  payload: Uint8Array
): Result.Result<{ readonly message: Uint8Array; readonly split: NoiseSplit }, NoiseError> => {
  if (st.initiator || st.step !== 1) return fail("WrongState", "writeMessage2 follows readMessage1")
  const c = st.crypto
  mixHash(c, st.sym, st.e.publicKey)
  const ee = c.dh(st.e.secretKey, st.re!)
  if (ee === null) return fail("InvalidKey", "remote ephemeral key rejected")
  mixKey(c, st.sym, ee)
  const se = c.dh(st.e.secretKey, st.rs!)
  if (se === null) return fail("InvalidKey", "remote static key rejected")
  mixKey(c, st.sym, se)
  const encP = encryptAndHash(c, st.sym, payload)
  const message = concat(st.e.publicKey, encP)
  if (message.length > MAX_MESSAGE) return fail("MessageTooLong", `${message.length} bytes`)
  st.step = 2
  st.split = doSplit(c, st)
  return Result.succeed({ message, split: st.split })
}

/** Initiator: read msg2; completes the handshake. */
export const readMessage2 = (
  st: NoiseState,
  msg: Uint8Array
): Result.Result<{ readonly payload: Uint8Array; readonly split: NoiseSplit }, NoiseError> => {
  if (!st.initiator || st.step !== 1) return fail("WrongState", "readMessage2 follows writeMessage1")
  if (msg.length > MAX_MESSAGE) return fail("MessageTooLong", `${msg.length} bytes`)
  if (msg.length < DHLEN + 16) return fail("MessageTooShort", `${msg.length} bytes`)
  const c = st.crypto
  const re = copyBytes(msg, 0, DHLEN)
  mixHash(c, st.sym, re)
  const ee = c.dh(st.e.secretKey, re)
  if (ee === null) return fail("InvalidKey", "remote ephemeral key rejected")
  mixKey(c, st.sym, ee)
  const se = c.dh(st.s.secretKey, re)
  if (se === null) return fail("InvalidKey", "remote ephemeral key rejected")
  mixKey(c, st.sym, se)
  const payload = decryptAndHash(c, st.sym, msg.subarray(DHLEN))
  if (payload === null) return fail("DecryptFailed", "payload")
  st.re = re
  st.step = 2
  st.split = doSplit(c, st)
  return Result.succeed({ payload, split: st.split })
}

/** Current handshake hash (for tests and transcripts). */
export const handshakeHash = (st: NoiseState): Uint8Array => st.sym.h

/**
 * An independent copy of a handshake state (its symmetric state is replaced,
 * never mutated in place): a client that sends one message 1 through several
 * relays reads each answer on a copy, so a bad answer cannot spoil the rest.
 */
export const clone = (st: NoiseState): NoiseState => ({ ...st, sym: { ...st.sym } })
