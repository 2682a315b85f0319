/**
 * protomux framing and blind-relay messages (spec: connect.md §6.8).
 *
 * Each protomux frame is one secret-stream message:
 *
 * | frame   | bytes                                                                   |
 * |---------|-------------------------------------------------------------------------|
 * | open    | `00 01` uint(localId) string(protocol) optionalBuffer(id) [handshake]    |
 * | reject  | `00 02` uint(remoteId)                                                  |
 * | close   | `00 03` uint(localId)                                                   |
 * | batch   | `00 00` uint(channel) { buffer(uint(type) payload) | `00` uint(channel) }* |
 * | message | uint(channel) uint(type) payload                                        |
 *
 * blind-relay runs on protocol "blind-relay" (channel id = relay public key)
 * with message types 0 `pair` and 1 `unpair`.
 */
import * as Result from "effect/Result"
import {
  type Codec,
  codec,
  decode,
  DecodeError,
  encode,
  EncodeError,
  Reader,
  type Writer
} from "./encoding.js"

// ---------------------------------------------------------------------------
// protomux
// ---------------------------------------------------------------------------

/** Control-channel (channel 0) frame types. */
export const PROTOMUX_BATCH = 0
export const PROTOMUX_OPEN = 1
export const PROTOMUX_REJECT = 2
export const PROTOMUX_CLOSE = 3

/** Nested batches deeper than this are refused (a guard against stack exhaustion). */
export const MAX_BATCH_DEPTH = 8

export interface ProtomuxOpen {
  readonly _tag: "Open"
  /** The sender's id for the new channel (>= 1). */
  readonly localId: number
  readonly protocol: string
  /** Channel id; null when absent (encoded as length 0). */
  readonly id: Uint8Array | null
  /** Raw handshake bytes (the rest of the frame); empty when the protocol has none. */
  readonly handshake: Uint8Array
}

export interface ProtomuxReject {
  readonly _tag: "Reject"
  /** The channel id the peer used in its open frame. */
  readonly remoteId: number
}

export interface ProtomuxClose {
  readonly _tag: "Close"
  readonly localId: number
}

export interface ProtomuxMessage {
  readonly _tag: "Message"
  /** The sender's local channel id (>= 1). */
  readonly channel: number
  readonly type: number
  /** Message body (the rest of the frame, or of the batch entry). */
  readonly payload: Uint8Array
}

/** A control frame of a type this implementation (and the reference) ignores. */
export interface ProtomuxUnknownControl {
  readonly _tag: "UnknownControl"
  readonly type: number
  readonly payload: Uint8Array
}

export interface ProtomuxBatch {
  readonly _tag: "Batch"
  /** Entries in order; control entries are channel-0 frames (Open/Reject/Close/Batch/UnknownControl). */
  readonly frames: ReadonlyArray<ProtomuxFrame>
}

export type ProtomuxFrame =
  | ProtomuxOpen
  | ProtomuxReject
  | ProtomuxClose
  | ProtomuxMessage
  | ProtomuxBatch
  | ProtomuxUnknownControl

/** The channel a frame travels on (0 for control frames). */
export const frameChannel = (f: ProtomuxFrame): number => (f._tag === "Message" ? f.channel : 0)

const EMPTY = new Uint8Array(0)

const rawBytes = (w: Writer, b: Uint8Array, name: string): void => {
  if (!(b instanceof Uint8Array)) return w.fail(name, "value is not a Uint8Array")
  w.bytes(b)
}

/** Body of a frame after the channel id: `uint(type) ...`. */
const writeFrameBody = (w: Writer, f: ProtomuxFrame, depth: number): void => {
  switch (f._tag) {
    case "Message":
      w.uint(f.type)
      rawBytes(w, f.payload, "payload")
      return
    case "Open":
      w.uint(PROTOMUX_OPEN)
      w.uint(f.localId)
      w.string(f.protocol)
      w.optionalBuffer(f.id)
      rawBytes(w, f.handshake, "handshake")
      return
    case "Reject":
      w.uint(PROTOMUX_REJECT)
      w.uint(f.remoteId)
      return
    case "Close":
      w.uint(PROTOMUX_CLOSE)
      w.uint(f.localId)
      return
    case "UnknownControl":
      if (f.type <= PROTOMUX_CLOSE) return w.fail("protomuxFrame", `control type ${f.type} is not unknown`)
      w.uint(f.type)
      rawBytes(w, f.payload, "payload")
      return
    case "Batch": {
      if (depth >= MAX_BATCH_DEPTH) return w.fail("protomuxFrame", "batches nested too deeply")
      if (!Array.isArray(f.frames)) return w.fail("protomuxFrame", "batch frames is not an array")
      w.uint(PROTOMUX_BATCH)
      const first = f.frames[0]
      let channel = first === undefined ? 0 : frameChannel(first)
      w.uint(channel)
      for (const entry of f.frames) {
        if (w.error !== null) return
        const ch = frameChannel(entry)
        if (ch !== channel) {
          w.uint(0)
          w.uint(ch)
          channel = ch
        }
        // Encode the entry body on its own to learn its length.
        const r = encode(entryCodec(depth + 1), entry)
        if (Result.isFailure(r)) return w.fail(r.failure.codec, r.failure.detail)
        if (r.success.length === 0) return w.fail("protomuxFrame", "empty batch entry")
        w.buffer(r.success)
      }
      return
    }
    default:
      return w.fail("protomuxFrame", "unknown frame tag")
  }
}

/** Decode the body after the channel id; consumes the reader to its end. */
const readFrameBody = (r: Reader, channel: number, depth: number): ProtomuxFrame => {
  const type = r.uint()
  if (channel !== 0) return { _tag: "Message", channel, type, payload: r.raw() }
  switch (type) {
    case PROTOMUX_OPEN: {
      const localId = r.uint()
      const protocol = r.string()
      const id = r.optionalBuffer()
      return { _tag: "Open", localId, protocol, id, handshake: r.raw() }
    }
    case PROTOMUX_REJECT: {
      const remoteId = r.uint()
      r.raw()
      return { _tag: "Reject", remoteId }
    }
    case PROTOMUX_CLOSE: {
      const localId = r.uint()
      r.raw()
      return { _tag: "Close", localId }
    }
    case PROTOMUX_BATCH:
      return readBatch(r, depth)
    default:
      return { _tag: "UnknownControl", type, payload: r.raw() }
  }
}

const readBatch = (r: Reader, depth: number): ProtomuxBatch => {
  const frames: Array<ProtomuxFrame> = []
  if (depth >= MAX_BATCH_DEPTH) {
    r.fail("BadValue", "batches nested too deeply")
    return { _tag: "Batch", frames }
  }
  let channel = r.uint()
  while (r.error === null && r.pos < r.end) {
    const len = r.uint()
    if (r.error !== null) break
    if (len === 0) {
      channel = r.uint()
      continue
    }
    // The reference clamps an entry that runs past the frame to the frame end.
    const end = Math.min(r.pos + len, r.end)
    const sub = new Reader(r.buf, r.pos, end)
    const entry = readFrameBody(sub, channel, depth + 1)
    if (sub.error !== null) {
      r.pos = sub.errorAt
      r.fail(sub.error, sub.errorDetail)
      break
    }
    frames.push(entry)
    r.pos = end
  }
  return { _tag: "Batch", frames }
}

const entryCodecs: Array<Codec<ProtomuxFrame>> = []
/** A batch entry: `uint(type) payload` (the channel is carried by the batch). */
const entryCodec = (depth: number): Codec<ProtomuxFrame> =>
  (entryCodecs[depth] ??= codec<ProtomuxFrame>(
    "protomuxFrame",
    (w, f) => writeFrameBody(w, f, depth),
    (r) => readFrameBody(r, 0, depth)
  ))

/**
 * A whole protomux frame (one secret-stream message). Decoding consumes every
 * byte (message payloads and open handshakes run to the frame end). The
 * reference silently ignores empty frames; decoding one here is an error, so
 * callers should skip them first.
 */
export const protomuxFrame: Codec<ProtomuxFrame> = codec<ProtomuxFrame>(
  "protomuxFrame",
  (w, f) => {
    if (f === null || typeof f !== "object") return w.fail("protomuxFrame", "value is not an object")
    const channel = frameChannel(f)
    if (f._tag === "Message" && channel === 0) return w.fail("protomuxFrame", "a message needs a channel id >= 1")
    w.uint(channel)
    writeFrameBody(w, f, 0)
  },
  (r) => readFrameBody(r, r.uint(), 0)
)

export const decodeProtomuxFrame = (bytes: Uint8Array): Result.Result<ProtomuxFrame, DecodeError> =>
  decode(protomuxFrame, bytes)

export const encodeProtomuxFrame = (frame: ProtomuxFrame): Result.Result<Uint8Array, EncodeError> =>
  encode(protomuxFrame, frame)

// Constructors (plain data; encode with `encodeProtomuxFrame`).
export const openFrame = (
  localId: number,
  protocol: string,
  id: Uint8Array | null,
  handshake: Uint8Array = EMPTY
): ProtomuxOpen => ({ _tag: "Open", localId, protocol, id, handshake })
export const rejectFrame = (remoteId: number): ProtomuxReject => ({ _tag: "Reject", remoteId })
export const closeFrame = (localId: number): ProtomuxClose => ({ _tag: "Close", localId })
export const messageFrame = (channel: number, type: number, payload: Uint8Array): ProtomuxMessage => ({
  _tag: "Message",
  channel,
  type,
  payload
})
export const batchFrame = (frames: ReadonlyArray<ProtomuxFrame>): ProtomuxBatch => ({ _tag: "Batch", frames })

// ---------------------------------------------------------------------------
// blind-relay
// ---------------------------------------------------------------------------

export const BLIND_RELAY_PROTOCOL = "blind-relay"
export const BLIND_RELAY_PAIR = 0
export const BLIND_RELAY_UNPAIR = 1

export interface Pair {
  /** True for the side that owns the relay (chose the token). */
  readonly isInitiator: boolean
  /** 32-byte pairing token. */
  readonly token: Uint8Array
  /** UDX stream id: the peer's own stream (request) or the relay-side stream (answer). */
  readonly id: number
  readonly seq: number
}

export interface Unpair {
  readonly token: Uint8Array
}

/**
 * The flags byte is a compact-encoding 7-bit bitfield: one byte in practice;
 * a lead byte fd/fe/ff announces 2/4/8 bytes whose first byte holds the bits
 * (the reference decoder accepts that form, so we do too).
 */
const readFlags = (r: Reader): number => {
  const lead = r.uint8()
  if (lead <= 0xfc) return lead
  const n = lead === 0xfd ? 2 : lead === 0xfe ? 4 : 8
  const b = r.fixed(n)
  return b.length > 0 ? b[0]! : 0
}

export const pair: Codec<Pair> = codec<Pair>(
  "pair",
  (w, m) => {
    w.uint8(m.isInitiator ? 1 : 0)
    w.fixed32(m.token)
    w.uint(m.id)
    w.uint(m.seq)
  },
  (r) => {
    const flags = readFlags(r)
    const token = r.fixed32()
    const id = r.uint()
    const seq = r.uint()
    return { isInitiator: (flags & 1) !== 0, token, id, seq }
  }
)

export const unpair: Codec<Unpair> = codec<Unpair>(
  "unpair",
  (w, m) => {
    w.uint8(0)
    w.fixed32(m.token)
  },
  (r) => {
    readFlags(r)
    return { token: r.fixed32() }
  }
)

export type BlindRelayMessage =
  | { readonly _tag: "Pair"; readonly pair: Pair }
  | { readonly _tag: "Unpair"; readonly unpair: Unpair }

/** Decode a blind-relay channel message by protomux type (0 pair, 1 unpair). */
export const decodeBlindRelayMessage = (type: number, payload: Uint8Array): Result.Result<BlindRelayMessage, DecodeError> => {
  if (type === BLIND_RELAY_PAIR) return Result.map(decode(pair, payload), (p) => ({ _tag: "Pair" as const, pair: p }))
  if (type === BLIND_RELAY_UNPAIR) {
    return Result.map(decode(unpair, payload), (u) => ({ _tag: "Unpair" as const, unpair: u }))
  }
  return Result.fail(new DecodeError({ codec: "blindRelay", reason: "BadValue", offset: 0, detail: `unknown message type ${type}` }))
}

/** A complete protomux message frame carrying a blind-relay message on `channel`. */
export const encodeBlindRelayMessage = (
  channel: number,
  m: BlindRelayMessage
): Result.Result<Uint8Array, EncodeError> => {
  const body = m._tag === "Pair" ? encode(pair, m.pair) : encode(unpair, m.unpair)
  if (Result.isFailure(body)) return body
  return encodeProtomuxFrame(messageFrame(channel, m._tag === "Pair" ? BLIND_RELAY_PAIR : BLIND_RELAY_UNPAIR, body.success))
}
