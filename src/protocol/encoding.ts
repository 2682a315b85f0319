/**
 * compact-encoding primitives (spec: dht-rpc.md §1), written so that decoding
 * never throws and never reads out of bounds.
 *
 * A `Reader` carries a sticky error: the first failed read records a reason
 * and the offset, and every later read returns a neutral value (0, empty
 * bytes) without touching the buffer. Composite decoders therefore read
 * straight through and the caller checks `reader.failed` once at the end
 * (loops check it per iteration so that a hostile count cannot spin).
 *
 * A `Writer` works the same way for values that cannot be represented
 * (a uint above 2^53-1, a fixed32 of the wrong length, a malformed IPv4
 * string...): it records the reason and the top-level `encode` returns a
 * typed `EncodeError` instead of bytes.
 */
import * as Data from "effect/Data"
import * as Result from "effect/Result"

/** Why a decode failed. */
export type DecodeReason =
  | "OutOfBounds"
  | "UintTooLarge"
  | "ArrayTooLong"
  | "BadValue"
  | "TrailingBytes"

export class DecodeError extends Data.TaggedError("DecodeError")<{
  readonly codec: string
  readonly reason: DecodeReason
  readonly offset: number
  readonly detail: string
}> {
  override get message(): string {
    return `cannot decode ${this.codec}: ${this.reason} at byte ${this.offset}${this.detail ? ` (${this.detail})` : ""}`
  }
}

export class EncodeError extends Data.TaggedError("EncodeError")<{
  readonly codec: string
  readonly detail: string
}> {
  override get message(): string {
    return `cannot encode ${this.codec}: ${this.detail}`
  }
}

/**
 * Bounded intern tables for IPv4 text <-> uint32 (Reader.ipv4, Writer.ipv4,
 * endpointKey). Every closer-node list names 20 addresses, mostly hosts seen
 * before: a decoded host is then the same string object as last time (its
 * hash already computed, no new garbage), and encoding or keying it is one
 * Map lookup instead of a parse. Only valid addresses are entered; a table
 * that reaches HOST_TABLE_MAX entries starts over.
 */
const HOST_TABLE_MAX = 65536
let hostByIp = new Map<number, string>()
let ipByHost = new Map<string, number>()

/** The dotted quad of a uint32 IPv4 address (interned). */
export const uint32ToIPv4 = (v: number): string => {
  let host = hostByIp.get(v)
  if (host === undefined) {
    host = `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`
    if (hostByIp.size >= HOST_TABLE_MAX) hostByIp = new Map()
    hostByIp.set(v, host)
  }
  return host
}

/**
 * The uint32 of a strict dotted quad (four decimal octets 0..255 of 1 to 3
 * digits, no sign, no spaces), or -1. The one IPv4 text parser: parseIPv4,
 * isIPv4 and endpointKey are built on it.
 */
export const ipv4ToUint32 = (host: string): number => {
  if (typeof host !== "string") return -1
  const known = ipByHost.get(host)
  if (known !== undefined) return known
  if (host.length < 7 || host.length > 15) return -1
  let ip = 0
  let n = 0
  let digits = 0
  let parts = 0
  for (let i = 0; i <= host.length; i++) {
    const c = i === host.length ? 0x2e : host.charCodeAt(i)
    if (c === 0x2e) {
      if (digits === 0 || n > 255 || parts === 4) return -1
      ip = ip * 256 + n
      parts++
      n = 0
      digits = 0
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits === 3) return -1
      n = n * 10 + (c - 0x30)
      digits++
    } else {
      return -1
    }
  }
  if (parts !== 4) return -1
  if (ipByHost.size >= HOST_TABLE_MAX) ipByHost = new Map()
  ipByHost.set(host, ip)
  return ip
}

/** Largest element count `array(T)` accepts on decode (compact-encoding rule). */
export const MAX_ARRAY_LENGTH = 0x100000

const textDecoder = new TextDecoder("utf-8")
const textEncoder = new TextEncoder()
const EMPTY = new Uint8Array(0)

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

export class Reader {
  buf: Uint8Array
  pos: number
  end: number
  /** First failure reason, or null while everything decoded fine. */
  error: DecodeReason | null = null
  errorAt = 0
  errorDetail = ""

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf
    this.pos = start
    this.end = end
  }

  get failed(): boolean {
    return this.error !== null
  }

  get remaining(): number {
    return this.end - this.pos
  }

  fail(reason: DecodeReason, detail = ""): void {
    if (this.error === null) {
      this.error = reason
      this.errorAt = this.pos
      this.errorDetail = detail
    }
    // stop every further read
    this.pos = this.end
  }

  /** Ensure n more bytes are available; records OutOfBounds otherwise. */
  need(n: number): boolean {
    if (this.error !== null) return false
    if (this.end - this.pos < n) {
      this.fail("OutOfBounds", `need ${n} byte(s), have ${this.end - this.pos}`)
      return false
    }
    return true
  }

  uint8(): number {
    if (!this.need(1)) return 0
    return this.buf[this.pos++]!
  }

  uint16(): number {
    if (!this.need(2)) return 0
    const b = this.buf
    const p = this.pos
    this.pos = p + 2
    return b[p]! | (b[p + 1]! << 8)
  }

  uint24(): number {
    if (!this.need(3)) return 0
    const b = this.buf
    const p = this.pos
    this.pos = p + 3
    return b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16)
  }

  uint32(): number {
    if (!this.need(4)) return 0
    const b = this.buf
    const p = this.pos
    this.pos = p + 4
    return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16)) + b[p + 3]! * 0x1000000
  }

  uint64(): number {
    if (!this.need(8)) return 0
    const lo = this.uint32()
    const hi = this.uint32()
    if (hi > 0x1fffff) {
      this.pos -= 8
      this.fail("UintTooLarge", "uint64 above 2^53-1")
      return 0
    }
    return hi * 0x100000000 + lo
  }

  /** Variable-length uint (compact-encoding `uint`). Accepts non-minimal forms. */
  uint(): number {
    if (!this.need(1)) return 0
    const a = this.buf[this.pos]!
    if (a <= 0xfc) {
      this.pos++
      return a
    }
    this.pos++
    if (a === 0xfd) return this.uint16()
    if (a === 0xfe) return this.uint32()
    return this.uint64()
  }

  /** Zig-zag signed int on top of `uint`. */
  int(): number {
    const n = this.uint()
    return n % 2 === 0 ? n / 2 : -(n + 1) / 2
  }

  bool(): boolean {
    return this.uint8() === 1
  }

  /** n raw bytes (a view into the input, not a copy). */
  fixed(n: number): Uint8Array {
    if (!this.need(n)) return EMPTY
    const out = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }

  fixed32(): Uint8Array {
    return this.fixed(32)
  }

  fixed64(): Uint8Array {
    return this.fixed(64)
  }

  /** `uint(len)` then len bytes; a zero length decodes to an empty array. */
  buffer(): Uint8Array {
    const len = this.uint()
    return this.fixed(len)
  }

  /** Like `buffer` but a zero length decodes to null. */
  optionalBuffer(): Uint8Array | null {
    const len = this.uint()
    if (len === 0 || this.error !== null) return null
    return this.fixed(len)
  }

  string(): string {
    const b = this.buffer()
    return b.length === 0 ? "" : textDecoder.decode(b)
  }

  /** Every byte left (compact-encoding `raw`). */
  raw(): Uint8Array {
    if (this.error !== null) return EMPTY
    const out = this.buf.subarray(this.pos, this.end)
    this.pos = this.end
    return out
  }

  ipv4(): string {
    if (!this.need(4)) return "0.0.0.0"
    const b = this.buf
    const p = this.pos
    this.pos = p + 4
    return uint32ToIPv4(((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0)
  }

  ipv4Address(): IPv4Address {
    const host = this.ipv4()
    const port = this.uint16()
    return { host, port }
  }

  /** `ipv4Address` as an interned `Ipv4Endpoint` (shared and frozen: the DHT message codec). */
  ipv4Endpoint(): Ipv4Endpoint {
    if (!this.need(6)) return ZERO_ENDPOINT
    const b = this.buf
    const p = this.pos
    this.pos = p + 6
    return Ipv4Endpoint.intern(((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0, b[p + 4]! | (b[p + 5]! << 8))
  }

  ipv4EndpointArray(): Array<Ipv4Endpoint> {
    const n = this.arrayLength(6)
    const out: Array<Ipv4Endpoint> = []
    for (let i = 0; i < n && this.error === null; i++) out.push(this.ipv4Endpoint())
    return out
  }

  ipv6(): string {
    if (!this.need(16)) return "0:0:0:0:0:0:0:0"
    const b = this.buf
    let p = this.pos
    let s = ""
    for (let i = 0; i < 8; i++) {
      if (i > 0) s += ":"
      s += ((b[p]! << 8) | b[p + 1]!).toString(16)
      p += 2
    }
    this.pos = p
    return s
  }

  ipv6Address(): IPv6Address {
    const host = this.ipv6()
    const port = this.uint16()
    return { host, port }
  }

  /** Reads the uint array count and validates it against the remaining bytes. */
  arrayLength(minItemBytes = 1): number {
    const n = this.uint()
    if (this.error !== null) return 0
    if (n > MAX_ARRAY_LENGTH) {
      this.fail("ArrayTooLong", `${n} items`)
      return 0
    }
    // A cheap plausibility check: each item needs at least minItemBytes.
    if (minItemBytes > 0 && n * minItemBytes > this.end - this.pos) {
      this.fail("OutOfBounds", `${n} items cannot fit in ${this.end - this.pos} byte(s)`)
      return 0
    }
    return n
  }

  array<A>(item: (r: Reader) => A, minItemBytes = 1): Array<A> {
    const n = this.arrayLength(minItemBytes)
    const out: Array<A> = []
    for (let i = 0; i < n && this.error === null; i++) out.push(item(this))
    return out
  }

  ipv4AddressArray(): Array<IPv4Address> {
    const n = this.arrayLength(6)
    const out: Array<IPv4Address> = []
    for (let i = 0; i < n && this.error === null; i++) out.push(this.ipv4Address())
    return out
  }
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

export class Writer {
  buf: Uint8Array
  pos = 0
  error: string | null = null
  errorCodec = ""

  constructor(initialSize = 256) {
    this.buf = new Uint8Array(initialSize)
  }

  get failed(): boolean {
    return this.error !== null
  }

  fail(codec: string, detail: string): void {
    if (this.error === null) {
      this.error = detail
      this.errorCodec = codec
    }
  }

  reset(): void {
    this.pos = 0
    this.error = null
    this.errorCodec = ""
  }

  private grow(n: number): void {
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
  }

  ensure(n: number): void {
    if (this.pos + n > this.buf.length) this.grow(n)
  }

  /** A copy of the bytes written so far. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.pos)
  }

  uint8(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > 0xff) return this.fail("uint8", `${n} is not a uint8`)
    this.ensure(1)
    this.buf[this.pos++] = n
  }

  uint16(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > 0xffff) return this.fail("uint16", `${n} is not a uint16`)
    this.ensure(2)
    const b = this.buf
    b[this.pos++] = n & 0xff
    b[this.pos++] = n >>> 8
  }

  uint24(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffff) return this.fail("uint24", `${n} is not a uint24`)
    this.ensure(3)
    const b = this.buf
    b[this.pos++] = n & 0xff
    b[this.pos++] = (n >>> 8) & 0xff
    b[this.pos++] = n >>> 16
  }

  uint32(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) return this.fail("uint32", `${n} is not a uint32`)
    this.ensure(4)
    const b = this.buf
    b[this.pos++] = n & 0xff
    b[this.pos++] = (n >>> 8) & 0xff
    b[this.pos++] = (n >>> 16) & 0xff
    b[this.pos++] = n >>> 24
  }

  uint64(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) return this.fail("uint64", `${n} is not an unsigned safe integer`)
    const hi = Math.floor(n / 0x100000000)
    this.uint32(n - hi * 0x100000000)
    this.uint32(hi)
  }

  uint(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) return this.fail("uint", `${n} is not an unsigned integer up to 2^53-1`)
    if (n <= 0xfc) {
      this.ensure(1)
      this.buf[this.pos++] = n
    } else if (n <= 0xffff) {
      this.ensure(3)
      this.buf[this.pos++] = 0xfd
      this.uint16(n)
    } else if (n <= 0xffffffff) {
      this.ensure(5)
      this.buf[this.pos++] = 0xfe
      this.uint32(n)
    } else {
      this.ensure(9)
      this.buf[this.pos++] = 0xff
      this.uint64(n)
    }
  }

  int(n: number): void {
    if (!Number.isSafeInteger(n)) return this.fail("int", `${n} is not a safe integer`)
    const z = n < 0 ? -2 * n - 1 : 2 * n
    if (!Number.isSafeInteger(z)) return this.fail("int", `${n} is out of range`)
    this.uint(z)
  }

  bool(b: boolean): void {
    this.ensure(1)
    this.buf[this.pos++] = b ? 1 : 0
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
  }

  fixed(n: number, b: Uint8Array, codec = `fixed${n}`): void {
    if (!(b instanceof Uint8Array)) return this.fail(codec, "value is not a Uint8Array")
    if (b.length !== n) return this.fail(codec, `expected ${n} bytes, got ${b.length}`)
    this.bytes(b)
  }

  fixed32(b: Uint8Array): void {
    this.fixed(32, b)
  }

  fixed64(b: Uint8Array): void {
    this.fixed(64, b)
  }

  buffer(b: Uint8Array): void {
    if (!(b instanceof Uint8Array)) return this.fail("buffer", "value is not a Uint8Array")
    this.uint(b.length)
    this.bytes(b)
  }

  optionalBuffer(b: Uint8Array | null): void {
    if (b === null || b.length === 0) return this.uint(0)
    this.buffer(b)
  }

  string(s: string): void {
    if (typeof s !== "string") return this.fail("string", "value is not a string")
    this.buffer(textEncoder.encode(s))
  }

  ipv4(host: string): void {
    const v = ipv4ToUint32(host)
    if (v < 0) return this.fail("ipv4", `${JSON.stringify(host)} is not a dotted-quad IPv4 address`)
    this.ensure(4)
    const b = this.buf
    b[this.pos++] = v >>> 24
    b[this.pos++] = (v >>> 16) & 0xff
    b[this.pos++] = (v >>> 8) & 0xff
    b[this.pos++] = v & 0xff
  }

  ipv4Address(a: IPv4Address): void {
    if (a instanceof Ipv4Endpoint) {
      this.ensure(6)
      const v = Ipv4Endpoint.ipOf(a)
      const port = a.port
      const b = this.buf
      let p = this.pos
      b[p++] = v >>> 24
      b[p++] = (v >>> 16) & 0xff
      b[p++] = (v >>> 8) & 0xff
      b[p++] = v & 0xff
      b[p++] = port & 0xff
      b[p++] = port >>> 8
      this.pos = p
      return
    }
    if (a === null || typeof a !== "object") return this.fail("ipv4Address", "value is not an address")
    this.ipv4(a.host)
    this.uint16(a.port)
  }

  ipv6(host: string): void {
    const groups = parseIPv6(host)
    if (groups === null) return this.fail("ipv6", `${JSON.stringify(host)} is not an IPv6 address`)
    this.ensure(16)
    for (const g of groups) {
      this.buf[this.pos++] = g >>> 8
      this.buf[this.pos++] = g & 0xff
    }
  }

  ipv6Address(a: IPv6Address): void {
    if (a === null || typeof a !== "object") return this.fail("ipv6Address", "value is not an address")
    this.ipv6(a.host)
    this.uint16(a.port)
  }

  array<A>(items: ReadonlyArray<A>, item: (w: Writer, v: A) => void): void {
    if (!Array.isArray(items)) return this.fail("array", "value is not an array")
    if (items.length > MAX_ARRAY_LENGTH) return this.fail("array", `${items.length} items exceed ${MAX_ARRAY_LENGTH}`)
    this.uint(items.length)
    for (let i = 0; i < items.length && this.error === null; i++) item(this, items[i]!)
  }

  ipv4AddressArray(items: ReadonlyArray<IPv4Address>): void {
    this.array(items, (w, a) => w.ipv4Address(a))
  }
}

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

export interface IPv4Address {
  readonly host: string
  readonly port: number
}

export interface IPv6Address {
  readonly host: string
  readonly port: number
}

/**
 * An IPv4 endpoint as the DHT message codec hands it out (`Reader.ipv4Endpoint`):
 * one shared, frozen object per address while it stays in a bounded intern
 * table, like the host strings. It carries what the per-datagram path would
 * otherwise derive again from the text for every closer node of every reply:
 * the address as a uint32, and a slot for the node id dht-rpc derives from
 * it. That state is in private fields, so to everything else (equality,
 * JSON, spread, inspection) the object is just `{ host, port }`.
 */
export class Ipv4Endpoint implements IPv4Address {
  readonly host: string
  readonly port: number
  readonly #ip: number
  /** The next interned endpoint of the same ip (another port). */
  #next: Ipv4Endpoint | null = null
  #id: Uint8Array | null = null
  #idBy: unknown = null

  /** Use `ipv4Endpoint` / `internIpv4Endpoint`: only interned endpoints skip work. */
  private constructor(ip: number, port: number) {
    this.host = uint32ToIPv4(ip)
    this.port = port
    this.#ip = ip
    Object.freeze(this)
  }

  /** The address as a uint32. */
  static ipOf(e: Ipv4Endpoint): number {
    return e.#ip
  }

  /** `endpointKey(host, port)`: `ip * 65536 + port`. */
  static keyOf(e: Ipv4Endpoint): number {
    return e.#ip * 65536 + e.port
  }

  /** The id memoized by `derive` (a function of the address alone), if any. */
  static memo(e: Ipv4Endpoint, derive: object): Uint8Array | null {
    return e.#idBy === derive ? e.#id : null
  }

  static setMemo(e: Ipv4Endpoint, derive: object, id: Uint8Array): void {
    e.#id = id
    e.#idBy = derive
  }

  /** @internal */
  static intern(ip: number, port: number): Ipv4Endpoint {
    const first = endpointByIp.get(ip)
    let chain = 0
    for (let e: Ipv4Endpoint | null = first ?? null; e !== null; e = e.#next) {
      if (e.port === port) return e
      chain++
    }
    const made = new Ipv4Endpoint(ip, port)
    // many ports behind one ip (a big NAT): the rest are not interned
    if (chain >= MAX_PORTS_PER_IP) return made
    if (first === undefined) {
      if (endpointByIp.size >= HOST_TABLE_MAX) endpointByIp = new Map()
      endpointByIp.set(ip, made)
    } else {
      made.#next = first.#next
      first.#next = made
    }
    return made
  }
}

/** A port: an integer 0..65535 (0: any port, when binding). */
export const isUint16 = (port: unknown): port is number => typeof port === "number" && port >= 0 && port <= 0xffff && port === Math.floor(port)

/** A port a datagram can go to: an integer 1..65535. */
export const isDestinationPort = (port: unknown): port is number => isUint16(port) && port !== 0

const MAX_PORTS_PER_IP = 8
let endpointByIp = new Map<number, Ipv4Endpoint>()
/** What a truncated address decodes to (the reader has failed by then). */
const ZERO_ENDPOINT = Ipv4Endpoint.intern(0, 0)

/** The interned endpoint of a uint32 address and a uint16 port (both unchecked). */
export const internIpv4Endpoint = (ip: number, port: number): Ipv4Endpoint => Ipv4Endpoint.intern(ip, port)

/** The interned endpoint of `host:port`, or null when `host` is not a strict dotted quad or `port` not a uint16. */
export const ipv4Endpoint = (host: string, port: number): Ipv4Endpoint | null => {
  if (!isUint16(port)) return null
  const ip = ipv4ToUint32(host)
  return ip < 0 ? null : Ipv4Endpoint.intern(ip, port)
}

/** Strict dotted-quad parse (ipv4ToUint32's rules) into its four octets, or null. */
export const parseIPv4 = (host: string): Array<number> | null => {
  const v = ipv4ToUint32(host)
  return v < 0 ? null : [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]
}

export const isIPv4 = (host: string): boolean => ipv4ToUint32(host) >= 0

/**
 * An IPv4 endpoint as one number, `ipv4 * 65536 + port` (< 2^48), for Map
 * keys on hot paths (no string building, no allocation); -1 when `host` is
 * not a strict dotted quad (ipv4ToUint32's rules) or `port` not a uint16.
 */
export const endpointKey = (host: string, port: number): number => {
  if (!isUint16(port)) return -1
  const ip = ipv4ToUint32(host)
  return ip < 0 ? -1 : ip * 65536 + port
}

/** Parse an IPv6 text address (hex groups, at most one '::'; no embedded IPv4, no zone). */
export const parseIPv6 = (host: string): Array<number> | null => {
  if (typeof host !== "string" || host.length < 2 || host.length > 39) return null
  const dbl = host.indexOf("::")
  if (dbl !== -1 && host.indexOf("::", dbl + 1) !== -1) return null
  const parseGroups = (s: string): Array<number> | null => {
    if (s === "") return []
    const parts = s.split(":")
    const out: Array<number> = []
    for (const p of parts) {
      if (p.length === 0 || p.length > 4 || !/^[0-9a-fA-F]+$/.test(p)) return null
      out.push(parseInt(p, 16))
    }
    return out
  }
  if (dbl === -1) {
    const g = parseGroups(host)
    return g !== null && g.length === 8 ? g : null
  }
  const head = parseGroups(host.slice(0, dbl))
  const tail = parseGroups(host.slice(dbl + 2))
  if (head === null || tail === null || head.length + tail.length > 7) return null
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail]
}

// ---------------------------------------------------------------------------
// Codecs
// ---------------------------------------------------------------------------

/** A compact-encoding codec: write into a Writer, read from a Reader. */
export interface Codec<A> {
  readonly name: string
  readonly encode: (w: Writer, value: A) => void
  readonly decode: (r: Reader) => A
}

export const codec = <A>(name: string, encode: (w: Writer, value: A) => void, decode: (r: Reader) => A): Codec<A> => ({
  name,
  encode,
  decode
})

let shared: Writer | null = new Writer(2048)

/**
 * Encode a value. Values that cannot be represented give an `EncodeError`.
 * Encoder exceptions (e.g. a field of the wrong type deep inside) are caught
 * and reported the same way, so nothing throws across this boundary.
 */
export const encode = <A>(c: Codec<A>, value: A): Result.Result<Uint8Array, EncodeError> => {
  // Reuse one scratch writer; a nested call (an encoder that encodes a
  // sub-value on its own) gets a fresh one.
  const w = shared ?? new Writer(256)
  shared = null
  w.reset()
  try {
    c.encode(w, value)
    if (w.error !== null) {
      const at = w.errorCodec === c.name ? c.name : `${c.name}.${w.errorCodec}`
      return Result.fail(new EncodeError({ codec: at, detail: w.error }))
    }
    return Result.succeed(w.finish())
  } catch (e) {
    return Result.fail(new EncodeError({ codec: c.name, detail: `invalid value (${String(e)})` }))
  } finally {
    w.reset()
    if (w.buf.length > 65536) w.buf = new Uint8Array(2048) // do not pin a huge scratch buffer
    shared = w
  }
}

export interface DecodeOptions {
  /** Reject trailing bytes after the value (default false: the reference ignores them). */
  readonly exact?: boolean
}

/** Decode a value; never throws. */
export const decode = <A>(c: Codec<A>, bytes: Uint8Array, options?: DecodeOptions): Result.Result<A, DecodeError> => {
  if (!(bytes instanceof Uint8Array)) {
    return Result.fail(new DecodeError({ codec: c.name, reason: "BadValue", offset: 0, detail: "input is not a Uint8Array" }))
  }
  const r = new Reader(bytes)
  let value: A
  try {
    value = c.decode(r)
  } catch (e) {
    // Decoders are written not to throw; this is a last line of defence.
    return Result.fail(new DecodeError({ codec: c.name, reason: "BadValue", offset: r.pos, detail: String(e) }))
  }
  if (r.error !== null) {
    return Result.fail(new DecodeError({ codec: c.name, reason: r.error, offset: r.errorAt, detail: r.errorDetail }))
  }
  if (options?.exact === true && r.pos !== r.end) {
    return Result.fail(new DecodeError({ codec: c.name, reason: "TrailingBytes", offset: r.pos, detail: `${r.end - r.pos} byte(s) left` }))
  }
  return Result.succeed(value)
}

/** Encode or throw: for tests and for values built by our own code that are known valid. */
export const encodeOrThrow = <A>(c: Codec<A>, value: A): Uint8Array => {
  const r = encode(c, value)
  if (Result.isFailure(r)) throw r.failure
  return r.success
}

// Primitive codecs, for composition and for the vectors.
export const uint = codec<number>("uint", (w, v) => w.uint(v), (r) => r.uint())
export const uint8 = codec<number>("uint8", (w, v) => w.uint8(v), (r) => r.uint8())
export const uint16 = codec<number>("uint16", (w, v) => w.uint16(v), (r) => r.uint16())
export const uint24 = codec<number>("uint24", (w, v) => w.uint24(v), (r) => r.uint24())
export const uint32 = codec<number>("uint32", (w, v) => w.uint32(v), (r) => r.uint32())
export const uint64 = codec<number>("uint64", (w, v) => w.uint64(v), (r) => r.uint64())
export const int = codec<number>("int", (w, v) => w.int(v), (r) => r.int())
export const bool = codec<boolean>("bool", (w, v) => w.bool(v), (r) => r.bool())
export const port = uint16
export const fixed32 = codec<Uint8Array>("fixed32", (w, v) => w.fixed32(v), (r) => r.fixed32())
export const fixed64 = codec<Uint8Array>("fixed64", (w, v) => w.fixed64(v), (r) => r.fixed64())
export const buffer = codec<Uint8Array>("buffer", (w, v) => w.buffer(v), (r) => r.buffer())
export const optionalBuffer = codec<Uint8Array | null>("optionalBuffer", (w, v) => w.optionalBuffer(v), (r) => r.optionalBuffer())
export const string = codec<string>("string", (w, v) => w.string(v), (r) => r.string())
export const raw = codec<Uint8Array>("raw", (w, v) => w.bytes(v), (r) => r.raw())
export const ipv4 = codec<string>("ipv4", (w, v) => w.ipv4(v), (r) => r.ipv4())
export const ipv4Address = codec<IPv4Address>("ipv4Address", (w, v) => w.ipv4Address(v), (r) => r.ipv4Address())
export const ipv6 = codec<string>("ipv6", (w, v) => w.ipv6(v), (r) => r.ipv6())
export const ipv6Address = codec<IPv6Address>("ipv6Address", (w, v) => w.ipv6Address(v), (r) => r.ipv6Address())
export const ipv4AddressArray = codec<ReadonlyArray<IPv4Address>>(
  "ipv4AddressArray",
  (w, v) => w.ipv4AddressArray(v),
  (r) => r.ipv4AddressArray()
)
export const array = <A>(item: Codec<A>, minItemBytes = 1): Codec<ReadonlyArray<A>> =>
  codec(
    `array(${item.name})`,
    (w, v) => w.array(v, item.encode),
    (r) => r.array(item.decode, minItemBytes)
  )

// ---------------------------------------------------------------------------
// hex helpers (tests, CLI, logs)
// ---------------------------------------------------------------------------

export const toHex = (b: Uint8Array): string => {
  let s = ""
  for (let i = 0; i < b.length; i++) s += (b[i]! < 16 ? "0" : "") + b[i]!.toString(16)
  return s
}

/** Parse hex; returns null for odd length or non-hex characters. */
export const fromHex = (s: string): Uint8Array | null => {
  if (typeof s !== "string" || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) return null
  const out = new Uint8Array(s.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(i * 2, i * 2 + 2), 16)
  return out
}

/**
 * A real copy of `b` (or of `b[start..end)`) as a plain Uint8Array. Unlike
 * `b.slice()`, this copies for Node Buffers too (Buffer#slice is a view).
 */
export const copyBytes = (b: Uint8Array, start?: number, end?: number): Uint8Array =>
  Uint8Array.prototype.slice.call(b, start, end)

/** `x` is a Uint8Array (of length `n` when given). */
export const isBytes = (x: unknown, n?: number): x is Uint8Array => x instanceof Uint8Array && (n === undefined || x.length === n)

export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
