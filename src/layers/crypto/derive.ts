/**
 * Values derived with BLAKE2b across the protocol (connect.md §2.1, §3.3;
 * hyperdht-records.md §2): namespaces, targets, and the secrets hyperdht
 * derives from a finished Noise handshake.
 */
import * as Records from "../../protocol/records.js"
import type { CryptoImpl } from "./types.js"

const utf8 = new TextEncoder()

/** ns(name, id) = BLAKE2b-256( BLAKE2b-256(utf8(name)) || byte(id) ), for each id. */
export const namespace = (c: CryptoImpl, name: string, ids: ReadonlyArray<number>): Array<Uint8Array> => {
  const root = c.blake2b(utf8.encode(name))
  return ids.map((id) => c.blake2b([root, Uint8Array.of(id)]))
}

export type DhtNamespaces = Records.Namespaces

/** hyperswarm/dht namespaces, keyed by command name (ids are the command numbers); cached per implementation. */
export const dhtNamespaces = (c: CryptoImpl): DhtNamespaces => Records.namespaces(c.blake2b)

export interface SecretStreamNamespaces {
  readonly INITIATOR: Uint8Array
  readonly RESPONDER: Uint8Array
  readonly SEND: Uint8Array
}

const ssCache = new WeakMap<CryptoImpl["blake2b"], SecretStreamNamespaces>()

/** hyperswarm/secret-stream namespaces; cached per implementation. */
export const secretStreamNamespaces = (c: CryptoImpl): SecretStreamNamespaces => {
  const cached = ssCache.get(c.blake2b)
  if (cached !== undefined) return cached
  const [INITIATOR, RESPONDER, SEND] = namespace(c, "hyperswarm/secret-stream", [0, 1, 2])
  const ns = Object.freeze({ INITIATOR: INITIATOR!, RESPONDER: RESPONDER!, SEND: SEND! })
  ssCache.set(c.blake2b, ns)
  return ns
}

/** DHT target of a public key (server identity, mutable records): BLAKE2b-256(publicKey). */
export const target = (c: CryptoImpl, publicKey: Uint8Array): Uint8Array => Records.hash(c.blake2b, publicKey)

/** holepunchSecret = BLAKE2b-256(NS.PEER_HOLEPUNCH; key = handshakeHash). */
export const holepunchSecret = (c: CryptoImpl, handshakeHash: Uint8Array): Uint8Array =>
  c.blake2b(dhtNamespaces(c).PEER_HOLEPUNCH, 32, handshakeHash)

/** Secret-stream id of a role: BLAKE2b-256(NS_INITIATOR or NS_RESPONDER; key = handshakeHash). */
export const streamId = (c: CryptoImpl, handshakeHash: Uint8Array, initiator: boolean): Uint8Array => {
  const ns = secretStreamNamespaces(c)
  return c.blake2b(initiator ? ns.INITIATOR : ns.RESPONDER, 32, handshakeHash)
}

/** Unordered-message key of a role: BLAKE2b-256(NS_role || NS_SEND; key = handshakeHash). */
export const sendKey = (c: CryptoImpl, handshakeHash: Uint8Array, initiator: boolean): Uint8Array => {
  const ns = secretStreamNamespaces(c)
  return c.blake2b([initiator ? ns.INITIATOR : ns.RESPONDER, ns.SEND], 32, handshakeHash)
}

/** Holepunch address token: BLAKE2b-256(utf8(host); key = localSecret). */
export const addressToken = (c: CryptoImpl, localSecret: Uint8Array, host: string): Uint8Array =>
  c.blake2b(utf8.encode(host), 32, localSecret)

/** SecurePayload box (connect.md §6.4): nonce(24) || secretbox(plaintext). */
export const sealPayload = (c: CryptoImpl, key: Uint8Array, plaintext: Uint8Array, nonce?: Uint8Array): Uint8Array => {
  const n = nonce ?? c.randomBytes(24)
  const box = c.secretboxSeal(plaintext, n, key)
  const out = new Uint8Array(24 + box.length)
  out.set(n, 0)
  out.set(box, 24)
  return out
}

/** Opens a SecurePayload box; null when shorter than 41 bytes or not authentic. */
export const openPayload = (c: CryptoImpl, key: Uint8Array, sealed: Uint8Array): Uint8Array | null => {
  if (sealed.length < 41) return null
  return c.secretboxOpen(sealed.subarray(24), sealed.subarray(0, 24), key)
}
