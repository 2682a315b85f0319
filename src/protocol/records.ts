/**
 * HyperDHT record and value encodings (spec: hyperdht-records.md §3.1–3.6,
 * §3.9, §3.12), the command / error / firewall constants (§1) and the
 * namespace and signable construction (§2, §4).
 *
 * The handshake / holepunch / noisePayload / holepunchPayload messages live in
 * `connect.ts`. Hashing is passed in (`Blake2b`), never imported here.
 */
import * as Result from "effect/Result"
import type { Blake2b } from "./dht-rpc.js"
import {
  codec,
  encode,
  EncodeError,
  uint,
  type Codec,
  type IPv4Address,
  type Reader,
  type Writer
} from "./encoding.js"

// ---------------------------------------------------------------------------
// Constants (§1)
// ---------------------------------------------------------------------------

/** HyperDHT application command ids (sent with the internal bit clear). */
export const Command = {
  PEER_HANDSHAKE: 0,
  PEER_HOLEPUNCH: 1,
  FIND_PEER: 2,
  LOOKUP: 3,
  ANNOUNCE: 4,
  UNANNOUNCE: 5,
  MUTABLE_PUT: 6,
  MUTABLE_GET: 7,
  IMMUTABLE_PUT: 8,
  IMMUTABLE_GET: 9,
  PLUGIN: 10
} as const
export type Command = (typeof Command)[keyof typeof Command]

/** HyperDHT error codes (payload errors and the dht-rpc error field's application range). */
export const ErrorCode = {
  NONE: 0,
  ABORTED: 1,
  VERSION_MISMATCH: 2,
  TRY_LATER: 3,
  SEQ_REUSED: 16,
  SEQ_TOO_LOW: 17
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/** NAT / firewall classification used in the Noise and holepunch payloads. */
export const Firewall = {
  UNKNOWN: 0,
  OPEN: 1,
  CONSISTENT: 2,
  RANDOM: 3
} as const
export type Firewall = (typeof Firewall)[keyof typeof Firewall]

/** Default HyperDHT port (§1.4). */
export const DEFAULT_PORT = 49737

/** Default bootstrap list, `suggestedIP@dnsName:port` (§1.4). */
export const DEFAULT_BOOTSTRAP: ReadonlyArray<string> = Object.freeze([
  "88.99.3.86@node1.hyperdht.org:49737",
  "142.93.90.113@node2.hyperdht.org:49737",
  "138.68.147.8@node3.hyperdht.org:49737"
])

// ---------------------------------------------------------------------------
// Record types
// ---------------------------------------------------------------------------

/** `peer` record (§3.2). */
export interface Peer {
  readonly publicKey: Uint8Array
  readonly relayAddresses: ReadonlyArray<IPv4Address>
}

/** `announce` value of ANNOUNCE / UNANNOUNCE (§3.3). */
export interface Announce {
  readonly peer: Peer | null
  readonly refresh: Uint8Array | null
  readonly signature: Uint8Array | null
  /** 0 when absent; the flag is written only for a non-zero bump. */
  readonly bump: number
}

/** LOOKUP reply value with the records kept as raw `peer` encodings (§3.4). */
export interface LookupRawReply {
  readonly peers: ReadonlyArray<Uint8Array>
  readonly bump: number
}

/** LOOKUP reply value with the records decoded (§3.4). */
export interface LookupReply {
  readonly peers: ReadonlyArray<Peer>
  readonly bump: number
}

/** Hashed (never sent): `seq uint ‖ value buffer` (§3.5). */
export interface MutableSignable {
  readonly seq: number
  readonly value: Uint8Array
}

export interface MutablePutRequest {
  readonly publicKey: Uint8Array
  readonly seq: number
  readonly value: Uint8Array
  readonly signature: Uint8Array
}

export interface MutableGetResponse {
  readonly seq: number
  readonly value: Uint8Array
  readonly signature: Uint8Array
}

/** PLUGIN request value (§3.9). */
export interface PluginRequest {
  readonly plugin: string
  readonly version: number
  readonly command: number
  readonly value: Uint8Array | null
}

/** `hyperdht-address` connect address (§3.12). `nodes` null means the flag is clear. */
export interface HyperdhtAddress {
  readonly key: Uint8Array
  readonly nodes: ReadonlyArray<IPv4Address> | null
}

const isObject = (v: unknown): boolean => v !== null && typeof v === "object"

// ---------------------------------------------------------------------------
// peer (§3.2) and FIND_PEER reply value
// ---------------------------------------------------------------------------

const writePeer = (w: Writer, m: Peer): void => {
  if (!isObject(m)) return w.fail("peer", "value is not a peer record")
  w.fixed(32, m.publicKey, "publicKey")
  w.ipv4AddressArray(m.relayAddresses)
}

const readPeer = (r: Reader): Peer => {
  const publicKey = r.fixed32()
  const relayAddresses = r.ipv4AddressArray()
  return { publicKey, relayAddresses }
}

export const peer: Codec<Peer> = codec("peer", writePeer, readPeer)

/** FIND_PEER reply value: a single `peer` record, no count. */
export const findPeerReply: Codec<Peer> = codec("findPeerReply", writePeer, readPeer)

// ---------------------------------------------------------------------------
// announce (§3.3)
// ---------------------------------------------------------------------------

export const AnnounceFlag = { PEER: 1, REFRESH: 2, SIGNATURE: 4, BUMP: 8 } as const

const writeAnnounce = (w: Writer, m: Announce): void => {
  if (!isObject(m)) return w.fail("announce", "value is not an announce record")
  const bump = m.bump ?? 0
  const flags =
    (m.peer != null ? AnnounceFlag.PEER : 0) |
    (m.refresh != null ? AnnounceFlag.REFRESH : 0) |
    (m.signature != null ? AnnounceFlag.SIGNATURE : 0) |
    (bump !== 0 ? AnnounceFlag.BUMP : 0)
  w.uint8(flags)
  if (m.peer != null) writePeer(w, m.peer)
  if (m.refresh != null) w.fixed(32, m.refresh, "refresh")
  if (m.signature != null) w.fixed(64, m.signature, "signature")
  if (bump !== 0) w.uint(bump)
}

const readAnnounce = (r: Reader): Announce => {
  const flags = r.uint()
  const p = flags & AnnounceFlag.PEER ? readPeer(r) : null
  const refresh = flags & AnnounceFlag.REFRESH ? r.fixed32() : null
  const signature = flags & AnnounceFlag.SIGNATURE ? r.fixed64() : null
  const bump = flags & AnnounceFlag.BUMP ? r.uint() : 0
  return { peer: p, refresh, signature, bump }
}

export const announce: Codec<Announce> = codec("announce", writeAnnounce, readAnnounce)

// ---------------------------------------------------------------------------
// lookupRawReply (§3.4)
// ---------------------------------------------------------------------------

/** Smallest `peer` encoding: 32-byte key and an empty relay list. */
const MIN_PEER_BYTES = 33

const writeLookupRaw = (w: Writer, m: LookupRawReply): void => {
  if (!isObject(m)) return w.fail("lookupRawReply", "value is not a lookup reply")
  w.array(m.peers, (w2, rec) => {
    if (!(rec instanceof Uint8Array)) return w2.fail("lookupRawReply", "record is not a Uint8Array")
    w2.bytes(rec)
  })
  w.uint(m.bump ?? 0)
}

/** Each record is validated as a `peer` encoding and returned as a view of its bytes. */
const readLookupRaw = (r: Reader): LookupRawReply => {
  const n = r.arrayLength(MIN_PEER_BYTES)
  const peers: Array<Uint8Array> = []
  for (let i = 0; i < n && !r.failed; i++) {
    const start = r.pos
    readPeer(r)
    if (!r.failed) peers.push(r.buf.subarray(start, r.pos))
  }
  const bump = r.remaining > 0 ? r.uint() : 0
  return { peers, bump }
}

/** LOOKUP reply with raw records (how a storing node sends what it stored). */
export const lookupRawReply: Codec<LookupRawReply> = codec("lookupRawReply", writeLookupRaw, readLookupRaw)

const writeLookup = (w: Writer, m: LookupReply): void => {
  if (!isObject(m)) return w.fail("lookupReply", "value is not a lookup reply")
  w.array(m.peers, writePeer)
  w.uint(m.bump ?? 0)
}

const readLookup = (r: Reader): LookupReply => {
  const peers = r.array(readPeer, MIN_PEER_BYTES)
  const bump = r.remaining > 0 ? r.uint() : 0
  return { peers, bump }
}

/** LOOKUP reply with decoded records (same bytes as `lookupRawReply`). */
export const lookupReply: Codec<LookupReply> = codec("lookupReply", writeLookup, readLookup)

// ---------------------------------------------------------------------------
// Mutable / immutable records (§3.5, §3.6)
// ---------------------------------------------------------------------------

const writeMutableSignable = (w: Writer, m: MutableSignable): void => {
  if (!isObject(m)) return w.fail("mutableSignable", "value is not a mutable signable")
  w.uint(m.seq)
  w.buffer(m.value)
}

export const mutableSignable: Codec<MutableSignable> = codec("mutableSignable", writeMutableSignable, (r) => {
  const seq = r.uint()
  const value = r.buffer()
  return { seq, value }
})

export const mutablePutRequest: Codec<MutablePutRequest> = codec(
  "mutablePutRequest",
  (w, m) => {
    if (!isObject(m)) return w.fail("mutablePutRequest", "value is not a mutable put request")
    w.fixed(32, m.publicKey, "publicKey")
    w.uint(m.seq)
    w.buffer(m.value)
    w.fixed(64, m.signature, "signature")
  },
  (r) => {
    const publicKey = r.fixed32()
    const seq = r.uint()
    const value = r.buffer()
    const signature = r.fixed64()
    return { publicKey, seq, value, signature }
  }
)

export const mutableGetResponse: Codec<MutableGetResponse> = codec(
  "mutableGetResponse",
  (w, m) => {
    if (!isObject(m)) return w.fail("mutableGetResponse", "value is not a mutable get response")
    w.uint(m.seq)
    w.buffer(m.value)
    w.fixed(64, m.signature, "signature")
  },
  (r) => {
    const seq = r.uint()
    const value = r.buffer()
    const signature = r.fixed64()
    return { seq, value, signature }
  }
)

/** MUTABLE_GET request value: the minimum sequence number, a `uint`. */
export const mutableGetRequest: Codec<number> = codec("mutableGetRequest", uint.encode, uint.decode)

// ---------------------------------------------------------------------------
// pluginRequest (§3.9)
// ---------------------------------------------------------------------------

export const pluginRequest: Codec<PluginRequest> = codec(
  "pluginRequest",
  (w, m) => {
    if (!isObject(m)) return w.fail("pluginRequest", "value is not a plugin request")
    const hasValue = m.value != null
    w.string(m.plugin)
    w.uint(m.version)
    w.uint(m.command)
    w.uint8(hasValue ? 1 : 0)
    if (m.value != null) w.buffer(m.value)
  },
  (r) => {
    const plugin = r.string()
    const version = r.uint()
    const command = r.uint()
    const flags = r.uint()
    const value = flags & 1 ? r.buffer() : null
    return { plugin, version, command, value }
  }
)

// ---------------------------------------------------------------------------
// hyperdht-address (§3.12)
// ---------------------------------------------------------------------------

export const hyperdhtAddress: Codec<HyperdhtAddress> = codec(
  "hyperdhtAddress",
  (w, m) => {
    if (!isObject(m)) return w.fail("hyperdhtAddress", "value is not an address")
    w.fixed(32, m.key, "key")
    w.uint8(m.nodes != null ? 1 : 0)
    if (m.nodes != null) w.ipv4AddressArray(m.nodes)
  },
  (r) => {
    const key = r.fixed32()
    const flags = r.remaining > 0 ? r.uint() : 0
    const nodes = flags & 1 ? r.ipv4AddressArray() : null
    return { key, nodes }
  }
)

// ---------------------------------------------------------------------------
// Targets, namespaces and signables (§2, §4)
// ---------------------------------------------------------------------------

const textEncoder = new TextEncoder()

/** `hash(x)` = BLAKE2b-256(x): FIND_PEER / mutable targets (of a public key) and immutable targets (of the value). */
export const hash = (blake2b: Blake2b, input: Uint8Array): Uint8Array => blake2b(input, 32)

/** The string whose hash roots every HyperDHT namespace. */
export const NAMESPACE_NAME = "hyperswarm/dht"

export interface Namespaces {
  readonly ANNOUNCE: Uint8Array
  readonly UNANNOUNCE: Uint8Array
  readonly MUTABLE_PUT: Uint8Array
  readonly PEER_HANDSHAKE: Uint8Array
  readonly PEER_HOLEPUNCH: Uint8Array
  readonly PLUGIN: Uint8Array
}

/** BLAKE2b-256(utf8("hyperswarm/dht")). */
export const namespaceRoot = (blake2b: Blake2b): Uint8Array => blake2b(textEncoder.encode(NAMESPACE_NAME), 32)

/** `NS[id] = BLAKE2b-256(root ‖ byte(id))`. */
export const namespace = (blake2b: Blake2b, id: number, root: Uint8Array = namespaceRoot(blake2b)): Uint8Array =>
  blake2b([root, Uint8Array.of(id & 0xff)], 32)

const nsCache = new WeakMap<Blake2b, Namespaces>()

/** The HyperDHT namespaces, computed once per BLAKE2b function. */
export const namespaces = (blake2b: Blake2b): Namespaces => {
  const cached = nsCache.get(blake2b)
  if (cached !== undefined) return cached
  const root = namespaceRoot(blake2b)
  const ns: Namespaces = Object.freeze({
    ANNOUNCE: namespace(blake2b, Command.ANNOUNCE, root),
    UNANNOUNCE: namespace(blake2b, Command.UNANNOUNCE, root),
    MUTABLE_PUT: namespace(blake2b, Command.MUTABLE_PUT, root),
    PEER_HANDSHAKE: namespace(blake2b, Command.PEER_HANDSHAKE, root),
    PEER_HOLEPUNCH: namespace(blake2b, Command.PEER_HOLEPUNCH, root),
    PLUGIN: namespace(blake2b, Command.PLUGIN, root)
  })
  nsCache.set(blake2b, ns)
  return ns
}

const signable64 = (ns: Uint8Array, digest: Uint8Array): Uint8Array => {
  const out = new Uint8Array(64)
  out.set(ns, 0)
  out.set(digest, 32)
  return out
}

const check32 = (name: string, b: unknown): EncodeError | null =>
  b instanceof Uint8Array && b.length === 32
    ? null
    : new EncodeError({ codec: "annSignable", detail: `${name} must be 32 bytes` })

/**
 * The 64-byte announce / unannounce signable (§4.1):
 * `ns ‖ BLAKE2b-256(target ‖ nodeId ‖ token ‖ peerEncoding ‖ (refresh or nothing))`.
 * Pass `namespaces(blake2b).ANNOUNCE` or `.UNANNOUNCE` as `ns`, and the exact
 * `peer` encoding as sent. Fails when a fixed-size part has the wrong length.
 */
export const annSignable = (
  blake2b: Blake2b,
  target: Uint8Array,
  nodeId: Uint8Array,
  token: Uint8Array,
  peerEncoding: Uint8Array,
  refresh: Uint8Array | null,
  ns: Uint8Array
): Result.Result<Uint8Array, EncodeError> => {
  const bad =
    check32("target", target) ??
    check32("nodeId", nodeId) ??
    check32("token", token) ??
    (refresh !== null ? check32("refresh", refresh) : null) ??
    check32("ns", ns) ??
    (peerEncoding instanceof Uint8Array
      ? null
      : new EncodeError({ codec: "annSignable", detail: "peerEncoding must be a Uint8Array" }))
  if (bad !== null) return Result.fail(bad)
  const parts = refresh !== null ? [target, nodeId, token, peerEncoding, refresh] : [target, nodeId, token, peerEncoding]
  return Result.succeed(signable64(ns, blake2b(parts, 32)))
}

/**
 * The 64-byte mutable-put signable (§4.2):
 * `NS.MUTABLE_PUT ‖ BLAKE2b-256(uint(seq) ‖ buffer(value))`.
 */
export const mutableSignable64 = (
  blake2b: Blake2b,
  seq: number,
  value: Uint8Array
): Result.Result<Uint8Array, EncodeError> =>
  Result.map(encode(mutableSignable, { seq, value }), (inner) =>
    signable64(namespaces(blake2b).MUTABLE_PUT, blake2b(inner, 32))
  )
