/**
 * UDX packet layout (spec: udx.md §2–§3).
 *
 * Hot path: plain functions over bytes, no Effect, no closures per packet.
 *
 * ```
 * 0      1      2      3      4            8            12           16           20
 * | 0xff | 0x01 | type | doff |  id u32le  | rwnd u32le |  seq u32le | ack u32le  |
 * ```
 *
 * Payload = datagram[20 + doff ..]. For packets with the SACK flag the bytes
 * right after the header are SACK blocks `start u32le || end u32le` ([start, end)),
 * filling `H = doff` bytes when `0 < doff < len - 20`, else the whole rest of
 * the datagram.
 */
import { EncodeError } from "./encoding.js"
import * as Result from "effect/Result"

export const UDX_MAGIC = 0xff
export const UDX_VERSION = 0x01
export const UDX_HEADER_SIZE = 20
export const UDX_SACK_BLOCK_SIZE = 8
/** Most SACK blocks the reference puts in one packet (policy, not enforced here). */
export const UDX_MAX_SACK_BLOCKS = 50

/** Type flags (udx.md §3.1). 0 = pure ACK. */
export const UDX_DATA = 0x01
export const UDX_END = 0x02
export const UDX_SACK = 0x04
export const UDX_MESSAGE = 0x08
export const UDX_DESTROY = 0x10
export const UDX_HEARTBEAT = 0x20

export const UdxType = {
  DATA: UDX_DATA,
  END: UDX_END,
  SACK: UDX_SACK,
  MESSAGE: UDX_MESSAGE,
  DESTROY: UDX_DESTROY,
  HEARTBEAT: UDX_HEARTBEAT
} as const

const TYPE_NAMES: ReadonlyArray<readonly [number, string]> = [
  [UDX_DATA, "DATA"],
  [UDX_END, "END"],
  [UDX_SACK, "SACK"],
  [UDX_MESSAGE, "MESSAGE"],
  [UDX_DESTROY, "DESTROY"],
  [UDX_HEARTBEAT, "HEARTBEAT"]
]

/** Names of the known flags set in `type`, lowest bit first (for logs and tests). */
export const udxTypeNames = (type: number): Array<string> => {
  const out: Array<string> = []
  for (const [bit, name] of TYPE_NAMES) if ((type & bit) !== 0) out.push(name)
  return out
}

/** A SACK block: packets `start .. end-1` were received. */
export type SackBlock = readonly [start: number, end: number]

export interface UdxHeader {
  readonly type: number
  /** doff: bytes skipped after the header before the payload. */
  readonly dataOffset: number
  /** The receiver's stream id. */
  readonly id: number
  readonly rwnd: number
  readonly seq: number
  readonly ack: number
}

export interface UdxPacket extends UdxHeader {
  readonly _tag: "UdxPacket"
  /**
   * A view into the datagram (no copy). For non-SACK packets this is
   * `datagram[20 + doff ..]`. For SACK packets it is what follows the SACK
   * region: empty when doff is 0 (the blocks fill the rest), else
   * `datagram[20 + doff ..]`.
   */
  readonly payload: Uint8Array
  /** SACK blocks (only when `type & SACK`; otherwise a shared empty array). */
  readonly sacks: ReadonlyArray<SackBlock>
}

export type UdxDecodeErrorReason =
  /** Shorter than 20 bytes, or the first two bytes are not `ff 01` (udx.md §2 step 1). */
  | "NotUdx"
  /** `doff > len - 20` (udx.md §3.2): the receiver drops the packet. */
  | "DataOffsetOutOfRange"

export interface UdxDecodeError {
  readonly _tag: "UdxDecodeError"
  readonly reason: UdxDecodeErrorReason
  readonly detail: string
  /**
   * The parsed header when the packet is UDX but its doff is out of range:
   * a HEARTBEAT is still answered in that case (its check precedes the doff
   * rule, udx.md §3.2 / §5). Null for "NotUdx".
   */
  readonly header: UdxHeader | null
}

export type UdxDecodeResult = UdxPacket | UdxDecodeError

const EMPTY_BYTES = new Uint8Array(0)
const NO_SACKS: ReadonlyArray<SackBlock> = Object.freeze([]) as ReadonlyArray<SackBlock>

const NOT_UDX: UdxDecodeError = Object.freeze({
  _tag: "UdxDecodeError",
  reason: "NotUdx",
  detail: "shorter than 20 bytes or no ff 01 marker",
  header: null
}) as UdxDecodeError

const u32 = (b: Uint8Array, p: number): number =>
  (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16)) + b[p + 3]! * 0x1000000

/**
 * Demultiplexing predicate (udx.md §2 step 1): at least 20 bytes starting with
 * `ff 01`. Whether the packet belongs to a stream is decided by its id
 * (`udxPacketId`) against the instance-wide stream table.
 */
export const isUdxPacket = (datagram: Uint8Array): boolean =>
  datagram.length >= UDX_HEADER_SIZE && datagram[0] === UDX_MAGIC && datagram[1] === UDX_VERSION

/** The receiver stream id (u32le at offset 4). Call only after `isUdxPacket`. */
export const udxPacketId = (datagram: Uint8Array): number => u32(datagram, 4)

/** Decode a datagram; never throws, never reads past the end. */
export const decodeUdxPacket = (buf: Uint8Array): UdxDecodeResult => {
  const len = buf.length
  if (len < UDX_HEADER_SIZE || buf[0] !== UDX_MAGIC || buf[1] !== UDX_VERSION) return NOT_UDX
  const type = buf[2]!
  const dataOffset = buf[3]!
  const id = u32(buf, 4)
  const rwnd = u32(buf, 8)
  const seq = u32(buf, 12)
  const ack = u32(buf, 16)
  const body = len - UDX_HEADER_SIZE
  if (dataOffset > body) {
    return {
      _tag: "UdxDecodeError",
      reason: "DataOffsetOutOfRange",
      detail: `data offset ${dataOffset} exceeds the ${body} byte(s) after the header`,
      header: { type, dataOffset, id, rwnd, seq, ack }
    }
  }
  let sacks = NO_SACKS
  let payload: Uint8Array
  if ((type & UDX_SACK) !== 0) {
    const region = dataOffset > 0 && dataOffset < body ? dataOffset : body
    const n = (region / UDX_SACK_BLOCK_SIZE) | 0
    const out: Array<SackBlock> = new Array<SackBlock>(n)
    let p = UDX_HEADER_SIZE
    for (let i = 0; i < n; i++) {
      out[i] = [u32(buf, p), u32(buf, p + 4)]
      p += UDX_SACK_BLOCK_SIZE
    }
    sacks = out
    payload = dataOffset === 0 ? EMPTY_BYTES : buf.subarray(UDX_HEADER_SIZE + dataOffset)
  } else {
    payload = buf.subarray(UDX_HEADER_SIZE + dataOffset)
  }
  return { _tag: "UdxPacket", type, dataOffset, id, rwnd, seq, ack, payload, sacks }
}

export const isUdxDecodeError = (r: UdxDecodeResult): r is UdxDecodeError => r._tag === "UdxDecodeError"

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

export interface UdxPacketInit {
  readonly type: number
  /** doff; the encoder writes this many zero bytes before the payload (MTU-probe padding). Default 0. */
  readonly dataOffset?: number
  readonly id: number
  readonly rwnd: number
  readonly seq: number
  readonly ack: number
  /** Payload after the header and padding. Not allowed together with SACK blocks. */
  readonly payload?: Uint8Array
  /** SACK blocks; only with the SACK type flag, doff 0 and no payload. */
  readonly sacks?: ReadonlyArray<SackBlock>
}

const isU32 = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 0xffffffff
const isU8 = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 0xff

const putU32 = (b: Uint8Array, p: number, n: number): void => {
  b[p] = n & 0xff
  b[p + 1] = (n >>> 8) & 0xff
  b[p + 2] = (n >>> 16) & 0xff
  b[p + 3] = n >>> 24
}

/**
 * Write the 20-byte header at `offset` (no validation: for senders that build
 * headers from their own known-valid state). `target` must have room.
 */
export const writeUdxHeader = (target: Uint8Array, offset: number, h: UdxHeader): void => {
  target[offset] = UDX_MAGIC
  target[offset + 1] = UDX_VERSION
  target[offset + 2] = h.type
  target[offset + 3] = h.dataOffset
  putU32(target, offset + 4, h.id)
  putU32(target, offset + 8, h.rwnd)
  putU32(target, offset + 12, h.seq)
  putU32(target, offset + 16, h.ack)
}

const fail = (detail: string): Result.Result<Uint8Array, EncodeError> =>
  Result.fail(new EncodeError({ codec: "udxPacket", detail }))

/**
 * Encode a packet: header, then either SACK blocks or `dataOffset` zero bytes
 * followed by the payload. Unrepresentable values give an `EncodeError`.
 */
export const encodeUdxPacket = (p: UdxPacketInit): Result.Result<Uint8Array, EncodeError> => {
  if (p === null || typeof p !== "object") return fail("value is not an object")
  const dataOffset = p.dataOffset ?? 0
  if (!isU8(p.type)) return fail(`type ${String(p.type)} is not a uint8`)
  if (!isU8(dataOffset)) return fail(`dataOffset ${String(dataOffset)} is not a uint8`)
  if (!isU32(p.id)) return fail(`id ${String(p.id)} is not a uint32`)
  if (!isU32(p.rwnd)) return fail(`rwnd ${String(p.rwnd)} is not a uint32`)
  if (!isU32(p.seq)) return fail(`seq ${String(p.seq)} is not a uint32`)
  if (!isU32(p.ack)) return fail(`ack ${String(p.ack)} is not a uint32`)
  const payload = p.payload ?? EMPTY_BYTES
  if (!(payload instanceof Uint8Array)) return fail("payload is not a Uint8Array")
  const sacks = p.sacks ?? NO_SACKS
  if (!Array.isArray(sacks)) return fail("sacks is not an array")

  if ((p.type & UDX_SACK) !== 0) {
    if (dataOffset !== 0) return fail("a SACK packet must have dataOffset 0")
    if (payload.length !== 0) return fail("a SACK packet cannot carry a payload")
    const out = new Uint8Array(UDX_HEADER_SIZE + sacks.length * UDX_SACK_BLOCK_SIZE)
    writeUdxHeader(out, 0, { type: p.type, dataOffset, id: p.id, rwnd: p.rwnd, seq: p.seq, ack: p.ack })
    let q = UDX_HEADER_SIZE
    for (let i = 0; i < sacks.length; i++) {
      const block = sacks[i]
      if (!Array.isArray(block) || block.length !== 2) return fail(`sack block ${i} is not a [start, end] pair`)
      const start: unknown = block[0]
      const end: unknown = block[1]
      if (!isU32(start) || !isU32(end)) return fail(`sack block ${i} has a bound that is not a uint32`)
      putU32(out, q, start)
      putU32(out, q + 4, end)
      q += UDX_SACK_BLOCK_SIZE
    }
    return Result.succeed(out)
  }

  if (sacks.length !== 0) return fail("SACK blocks need the SACK type flag")
  const out = new Uint8Array(UDX_HEADER_SIZE + dataOffset + payload.length)
  writeUdxHeader(out, 0, { type: p.type, dataOffset, id: p.id, rwnd: p.rwnd, seq: p.seq, ack: p.ack })
  out.set(payload, UDX_HEADER_SIZE + dataOffset)
  return Result.succeed(out)
}
