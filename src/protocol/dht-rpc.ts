/**
 * dht-rpc wire messages (spec: dht-rpc.md §3), node ids (§4), internal
 * command / error numbers (§5) and round-trip tokens (§6).
 *
 * Everything here is a plain function: request/response encoding sits on the
 * hot path of every datagram, so there are no Effect generators and as few
 * allocations as the message shape allows. Decoders never throw; they go
 * through the sticky-error `Reader` and the caller checks the `Result`.
 */
import type * as Result from "effect/Result"
import type { CryptoImpl } from "../layers/crypto/types.js"
import {
  codec,
  decode,
  encode,
  ipv4Endpoint,
  Ipv4Endpoint,
  ipv4ToUint32,
  type Codec,
  type DecodeError,
  type EncodeError,
  type IPv4Address,
  type Reader,
  type Writer
} from "./encoding.js"

/** A BLAKE2b function with the shape of `CryptoImpl.blake2b` (libsodium generichash). */
export type Blake2b = CryptoImpl["blake2b"]

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/** Protocol version carried in the low nibble of byte 0. */
export const VERSION = 0b11
/** Byte 0 of a request: type 0, version 3. */
export const REQUEST_ID = (0 << 4) | VERSION
/** Byte 0 of a response: type 1, version 3. */
export const RESPONSE_ID = (1 << 4) | VERSION

/** Largest datagram a reference node can receive (libudx's 2048-byte receive buffer, §2). */
export const MAX_DATAGRAM_BYTES = 2048

/** Node ids, tokens and targets are all 32 bytes. */
export const ID_BYTES = 32
export const TOKEN_BYTES = 32
export const TARGET_BYTES = 32

/** dht-rpc internal command ids (sent with the internal flag set, §5). */
export const InternalCommand = {
  PING: 0,
  PING_NAT: 1,
  FIND_NODE: 2,
  DOWN_HINT: 3,
  DELAYED_PING: 4
} as const
export type InternalCommand = (typeof InternalCommand)[keyof typeof InternalCommand]

/** dht-rpc error codes carried in a response's `error` field (§5). 0 means no error. */
export const RpcErrorCode = {
  NONE: 0,
  UNKNOWN_COMMAND: 1,
  INVALID_TOKEN: 2
} as const
export type RpcErrorCode = (typeof RpcErrorCode)[keyof typeof RpcErrorCode]

/** Request flag bits (§3.2). */
export const RequestFlag = {
  ID: 1,
  TOKEN: 2,
  INTERNAL: 4,
  TARGET: 8,
  VALUE: 16
} as const

/** Response flag bits (§3.3). */
export const ResponseFlag = {
  ID: 1,
  TOKEN: 2,
  CLOSER_NODES: 4,
  ERROR: 8,
  VALUE: 16
} as const

// ---------------------------------------------------------------------------
// Message types
// ---------------------------------------------------------------------------

export interface Request {
  /** Transaction id, uint16. */
  readonly tid: number
  /** The receiver's address as the sender sees it. */
  readonly to: IPv4Address
  /** Sender's node id (persistent senders on their server socket only). */
  readonly id: Uint8Array | null
  /** Round-trip token previously issued by the receiver. */
  readonly token: Uint8Array | null
  /** True for dht-rpc internal commands, false for application commands. */
  readonly internal: boolean
  readonly command: number
  readonly target: Uint8Array | null
  /** Null when absent; an empty array is a present-but-empty value. */
  readonly value: Uint8Array | null
}

export interface Response {
  /** Transaction id copied from the request. */
  readonly tid: number
  /** The requester's address as the replier sees it. */
  readonly to: IPv4Address
  readonly id: Uint8Array | null
  readonly token: Uint8Array | null
  /** Empty when the flag is absent (an empty list is never flagged on encode). */
  readonly closerNodes: ReadonlyArray<IPv4Address>
  /** 0 when absent. */
  readonly error: number
  readonly value: Uint8Array | null
}

export type Message =
  | { readonly _tag: "Request"; readonly request: Request }
  | { readonly _tag: "Response"; readonly response: Response }

const NO_NODES: ReadonlyArray<IPv4Address> = Object.freeze([])

// ---------------------------------------------------------------------------
// Encoders / decoders (Writer / Reader level)
// ---------------------------------------------------------------------------

const isObject = (v: unknown): boolean => v !== null && typeof v === "object"

/** Write a request (byte 0 included). Unrepresentable fields record a Writer error. */
export const writeRequest = (w: Writer, m: Request): void => {
  if (!isObject(m)) return w.fail("request", "value is not a request")
  const id = m.id
  const token = m.token
  const target = m.target
  const value = m.value
  const flags =
    (id != null ? RequestFlag.ID : 0) |
    (token != null ? RequestFlag.TOKEN : 0) |
    (m.internal ? RequestFlag.INTERNAL : 0) |
    (target != null ? RequestFlag.TARGET : 0) |
    (value != null ? RequestFlag.VALUE : 0)
  w.ensure(10 + 32 * 3 + 9 + (value != null ? 9 + value.length : 0))
  w.uint8(REQUEST_ID)
  w.uint8(flags) // flags are < 0xfd, so their uint encoding is this single byte
  w.uint16(m.tid)
  w.ipv4Address(m.to)
  if (id != null) w.fixed(ID_BYTES, id, "id")
  if (token != null) w.fixed(TOKEN_BYTES, token, "token")
  w.uint(m.command)
  if (target != null) w.fixed(TARGET_BYTES, target, "target")
  if (value != null) w.buffer(value)
}

/** Read a request, byte 0 included (it must be 0x03). Unknown flag bits and trailing bytes are ignored. */
export const readRequest = (r: Reader): Request => {
  if (r.need(1)) {
    if (r.buf[r.pos] === REQUEST_ID) r.pos++
    else r.fail("BadValue", `byte 0 is 0x${r.buf[r.pos]!.toString(16)}, not a request (0x03)`)
  }
  const flags = r.uint()
  const tid = r.uint16()
  const to = r.ipv4Endpoint()
  const id = flags & RequestFlag.ID ? r.fixed32() : null
  const token = flags & RequestFlag.TOKEN ? r.fixed32() : null
  const internal = (flags & RequestFlag.INTERNAL) !== 0
  const command = r.uint()
  const target = flags & RequestFlag.TARGET ? r.fixed32() : null
  const value = flags & RequestFlag.VALUE ? r.buffer() : null
  return { tid, to, id, token, internal, command, target, value }
}

/** Write a response (byte 0 included). */
export const writeResponse = (w: Writer, m: Response): void => {
  if (!isObject(m)) return w.fail("response", "value is not a response")
  const id = m.id
  const token = m.token
  const closerNodes = m.closerNodes
  const error = m.error
  const value = m.value
  const hasNodes = closerNodes != null && closerNodes.length > 0
  const hasError = error != null && error !== 0
  const flags =
    (id != null ? ResponseFlag.ID : 0) |
    (token != null ? ResponseFlag.TOKEN : 0) |
    (hasNodes ? ResponseFlag.CLOSER_NODES : 0) |
    (hasError ? ResponseFlag.ERROR : 0) |
    (value != null ? ResponseFlag.VALUE : 0)
  w.ensure(10 + 64 + (hasNodes ? 9 + 6 * closerNodes.length : 0) + 9 + (value != null ? 9 + value.length : 0))
  w.uint8(RESPONSE_ID)
  w.uint8(flags)
  w.uint16(m.tid)
  w.ipv4Address(m.to)
  if (id != null) w.fixed(ID_BYTES, id, "id")
  if (token != null) w.fixed(TOKEN_BYTES, token, "token")
  if (hasNodes) w.ipv4AddressArray(closerNodes)
  if (hasError) w.uint(error)
  if (value != null) w.buffer(value)
}

/** Read a response, byte 0 included (it must be 0x13). Unknown flag bits and trailing bytes are ignored. */
export const readResponse = (r: Reader): Response => {
  if (r.need(1)) {
    if (r.buf[r.pos] === RESPONSE_ID) r.pos++
    else r.fail("BadValue", `byte 0 is 0x${r.buf[r.pos]!.toString(16)}, not a response (0x13)`)
  }
  const flags = r.uint()
  const tid = r.uint16()
  const to = r.ipv4Endpoint()
  const id = flags & ResponseFlag.ID ? r.fixed32() : null
  const token = flags & ResponseFlag.TOKEN ? r.fixed32() : null
  const closerNodes = flags & ResponseFlag.CLOSER_NODES ? r.ipv4EndpointArray() : NO_NODES
  const error = flags & ResponseFlag.ERROR ? r.uint() : 0
  const value = flags & ResponseFlag.VALUE ? r.buffer() : null
  return { tid, to, id, token, closerNodes, error, value }
}

const writeMessage = (w: Writer, m: Message): void => {
  if (!isObject(m)) return w.fail("message", "value is not a message")
  if (m._tag === "Request") writeRequest(w, m.request)
  else if (m._tag === "Response") writeResponse(w, m.response)
  else w.fail("message", "unknown message tag")
}

const BAD_MESSAGE: Message = { _tag: "Request", request: { tid: 0, to: { host: "0.0.0.0", port: 0 }, id: null, token: null, internal: false, command: 0, target: null, value: null } }

/** Dispatch on byte 0: 0x03 request, 0x13 response, anything else fails with "BadValue". */
const readMessage = (r: Reader): Message => {
  if (!r.need(1)) return BAD_MESSAGE
  const type = r.buf[r.pos]!
  if (type === REQUEST_ID) return { _tag: "Request", request: readRequest(r) }
  if (type === RESPONSE_ID) return { _tag: "Response", response: readResponse(r) }
  r.fail("BadValue", `byte 0 is 0x${type.toString(16)}, neither a request (0x03) nor a response (0x13)`)
  return BAD_MESSAGE
}

// ---------------------------------------------------------------------------
// Codecs
// ---------------------------------------------------------------------------

export const request: Codec<Request> = codec("request", writeRequest, readRequest)
export const response: Codec<Response> = codec("response", writeResponse, readResponse)
export const message: Codec<Message> = codec("message", writeMessage, readMessage)

export const encodeRequest = (m: Request): Result.Result<Uint8Array, EncodeError> => encode(request, m)
export const encodeResponse = (m: Response): Result.Result<Uint8Array, EncodeError> => encode(response, m)
export const decodeRequest = (bytes: Uint8Array): Result.Result<Request, DecodeError> => decode(request, bytes)
export const decodeResponse = (bytes: Uint8Array): Result.Result<Response, DecodeError> => decode(response, bytes)
/** Decode one datagram as a request or a response, by its first byte. */
export const decodeMessage = (bytes: Uint8Array): Result.Result<Message, DecodeError> => decode(message, bytes)

// ---------------------------------------------------------------------------
// Node ids (§4)
// ---------------------------------------------------------------------------

/**
 * `nodeId(host, port) = BLAKE2b-256(ipv4(host) || uint16LE(port))`.
 * Returns null when `host` is not a dotted-quad IPv4 address or `port` is not a uint16.
 */
export const nodeId = (blake2b: Blake2b, host: string, port: number): Uint8Array | null => {
  const ip = ipv4ToUint32(host)
  if (ip < 0 || !Number.isInteger(port) || port < 0 || port > 0xffff) return null
  return nodeIdOfIp(blake2b, ip, port)
}

/** `nodeId` of a valid uint32 address and uint16 port. */
const nodeIdOfIp = (blake2b: Blake2b, ip: number, port: number): Uint8Array => {
  const pre = new Uint8Array(6)
  pre[0] = ip >>> 24
  pre[1] = (ip >>> 16) & 0xff
  pre[2] = (ip >>> 8) & 0xff
  pre[3] = ip & 0xff
  pre[4] = port & 0xff
  pre[5] = port >>> 8
  return blake2b(pre, 32)
}

/**
 * `nodeId` memoized on the interned endpoint (`Ipv4Endpoint`). Every
 * closer-node list names up to 20 nodes whose ids a query must derive,
 * mostly the same few hundred addresses again and again; a hit is a field
 * read instead of an IPv4 parse, a Map lookup and a BLAKE2b. The ids handed
 * out are shared: callers treat node ids as immutable values. The memo is
 * bounded by the endpoint intern table.
 */
export interface NodeIdCache {
  (host: string, port: number): Uint8Array | null
  /** The id of an interned endpoint. */
  of(e: Ipv4Endpoint): Uint8Array
}

export const makeNodeIdCache = (blake2b: Blake2b): NodeIdCache => {
  const of = (e: Ipv4Endpoint): Uint8Array => {
    const hit = Ipv4Endpoint.memo(e, blake2b)
    if (hit !== null) return hit
    const id = nodeIdOfIp(blake2b, Ipv4Endpoint.ipOf(e), e.port)
    Ipv4Endpoint.setMemo(e, blake2b, id)
    return id
  }
  const cache = (host: string, port: number): Uint8Array | null => {
    const e = ipv4Endpoint(host, port)
    return e === null ? null : of(e) // null: what nodeId says of an invalid address
  }
  return Object.assign(cache, { of })
}

const sharedNodeIdCaches = new WeakMap<Blake2b, NodeIdCache>()

/** One NodeIdCache per BLAKE2b implementation, shared by every node in the process. */
export const sharedNodeIdCache = (blake2b: Blake2b): NodeIdCache => {
  let cache = sharedNodeIdCaches.get(blake2b)
  if (cache === undefined) sharedNodeIdCaches.set(blake2b, (cache = makeNodeIdCache(blake2b)))
  return cache
}

// ---------------------------------------------------------------------------
// Round-trip tokens (§6)
// ---------------------------------------------------------------------------

const textEncoder = new TextEncoder()

/** `token = BLAKE2b-256(utf8(host); key = secret)`. The port is deliberately not included. */
export const token = (blake2b: Blake2b, secret: Uint8Array, host: string): Uint8Array =>
  blake2b(textEncoder.encode(host), 32, secret)

/** The two token secrets: `[secret0, secret1]`. Replies use secret1; verification accepts either. */
export type TokenSecrets = readonly [Uint8Array, Uint8Array]

/** Two fresh random 32-byte secrets. */
export const makeTokenSecrets = (randomBytes: (n: number) => Uint8Array): TokenSecrets => [randomBytes(32), randomBytes(32)]

/** One rotation: `new0 = old1`, `new1 = BLAKE2b-256(old0)`. */
export const rotateTokenSecrets = (blake2b: Blake2b, secrets: TokenSecrets): TokenSecrets => [
  secrets[1],
  blake2b(secrets[0], 32)
]

/** The token a reply carries for a requester at `host` (made with secret1). */
export const issueToken = (blake2b: Blake2b, secrets: TokenSecrets, host: string): Uint8Array =>
  token(blake2b, secrets[1], host)

const constantTimeEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  let d = 0
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!
  return d === 0
}

/** True when `tok` equals the token for `host` under secret1 or secret0. */
export const verifyToken = (blake2b: Blake2b, secrets: TokenSecrets, tok: Uint8Array, host: string): boolean => {
  if (!(tok instanceof Uint8Array) || tok.length !== TOKEN_BYTES) return false
  return constantTimeEqual(tok, token(blake2b, secrets[1], host)) || constantTimeEqual(tok, token(blake2b, secrets[0], host))
}
