/**
 * secret-stream wire layout (spec: connect.md §7.2, §7.6). Byte layout only:
 * the secretstream / secretbox crypto lives in the crypto layer.
 *
 * - Every message on the UDX byte stream is a frame `u24le(len) || body`.
 * - The first frame each side sends is the 56-byte header message
 *   `streamId(32) || secretstreamHeader(24)`.
 * - Unordered messages (UDX MESSAGE packets) are `counter(8) || box`, where
 *   box = `mac(16) || ciphertext` and the secretbox nonce is `counter || 0 x16`.
 */
import * as Data from "effect/Data"
import * as Result from "effect/Result"
import { type Codec, codec, decode, DecodeError, encode, EncodeError } from "./encoding.js"

/** Largest frame body a 3-byte length can describe. */
export const MAX_FRAME_LENGTH = 0xffffff
export const FRAME_HEADER_BYTES = 3
export const STREAM_ID_BYTES = 32
export const SECRETSTREAM_HEADER_BYTES = 24
/** Body length of the header message. */
export const HEADER_MESSAGE_BYTES = STREAM_ID_BYTES + SECRETSTREAM_HEADER_BYTES
/** secretstream overhead per message (tag byte + 16-byte MAC): a data frame body is plaintext + 17. */
export const SECRETSTREAM_ABYTES = 17
/** Largest plaintext one write may carry: 2^24 - 1 - 17. */
export const MAX_PLAINTEXT_LENGTH = MAX_FRAME_LENGTH - SECRETSTREAM_ABYTES

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

/** Write `n` as 3 little-endian bytes at `offset` (no validation). */
export const writeUint24le = (target: Uint8Array, offset: number, n: number): void => {
  target[offset] = n & 0xff
  target[offset + 1] = (n >>> 8) & 0xff
  target[offset + 2] = (n >>> 16) & 0xff
}

/** `u24le(body.length) || body`; a body above 2^24 - 1 bytes is an `EncodeError`. */
export const encodeFrame = (body: Uint8Array): Result.Result<Uint8Array, EncodeError> => {
  if (!(body instanceof Uint8Array)) {
    return Result.fail(new EncodeError({ codec: "secretStreamFrame", detail: "body is not a Uint8Array" }))
  }
  if (body.length > MAX_FRAME_LENGTH) {
    return Result.fail(
      new EncodeError({ codec: "secretStreamFrame", detail: `body of ${body.length} bytes exceeds ${MAX_FRAME_LENGTH}` })
    )
  }
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length)
  writeUint24le(out, 0, body.length)
  out.set(body, FRAME_HEADER_BYTES)
  return Result.succeed(out)
}

export type FrameErrorReason =
  /** A length prefix above the parser's configured maximum. */
  | "FrameTooLarge"
  /** A chunk that is not a Uint8Array. */
  | "InvalidChunk"

export class FrameError extends Data.TaggedError("SecretStreamFrameError")<{
  readonly reason: FrameErrorReason
  readonly detail: string
}> {
  override get message(): string {
    return `secret-stream framing: ${this.reason} (${this.detail})`
  }
}

export interface FramePushResult {
  /** Complete frame bodies, in order. */
  readonly frames: Array<Uint8Array>
  /** Set when the stream is unusable from here on (sticky: later pushes return it again). */
  readonly error: FrameError | null
}

export interface FrameParserOptions {
  /** Reject frames whose length prefix exceeds this (default and maximum 2^24 - 1). */
  readonly maxFrameLength?: number
}

/**
 * Incremental `u24le(len) || body` parser, fed arbitrary chunks (UDX packet
 * boundaries mean nothing). Never throws.
 *
 * A frame that lies entirely inside one chunk is returned as a view into that
 * chunk (no copy, as the reference does); a frame spanning chunks is copied.
 * Callers that keep frames must not reuse the chunk memory.
 */
export class FrameParser {
  private readonly max: number
  /** Length bytes seen so far (0..3) while reading a prefix. */
  private lenBytes = 0
  private len = 0
  /** Partial body when a frame spans chunks. */
  private partial: Uint8Array | null = null
  private filled = 0
  private inBody = false
  private failure: FrameError | null = null

  constructor(options?: FrameParserOptions) {
    const max = options?.maxFrameLength ?? MAX_FRAME_LENGTH
    this.max = Number.isInteger(max) && max >= 0 && max <= MAX_FRAME_LENGTH ? max : MAX_FRAME_LENGTH
  }

  /** The sticky error, if any. */
  get error(): FrameError | null {
    return this.failure
  }

  /** Bytes of the current incomplete frame received so far (prefix + body). */
  get pending(): number {
    return this.inBody ? FRAME_HEADER_BYTES + this.filled : this.lenBytes
  }

  push(chunk: Uint8Array): FramePushResult {
    const frames: Array<Uint8Array> = []
    if (this.failure !== null) return { frames, error: this.failure }
    if (!(chunk instanceof Uint8Array)) {
      this.failure = new FrameError({ reason: "InvalidChunk", detail: "chunk is not a Uint8Array" })
      return { frames, error: this.failure }
    }
    const n = chunk.length
    let off = 0
    while (off < n) {
      if (!this.inBody) {
        while (this.lenBytes < FRAME_HEADER_BYTES && off < n) {
          this.len |= chunk[off++]! << (8 * this.lenBytes)
          this.lenBytes++
        }
        if (this.lenBytes < FRAME_HEADER_BYTES) break
        if (this.len > this.max) {
          this.failure = new FrameError({
            reason: "FrameTooLarge",
            detail: `frame of ${this.len} bytes exceeds the limit of ${this.max}`
          })
          return { frames, error: this.failure }
        }
        this.inBody = true
        this.filled = 0
        this.partial = null
      }
      const missing = this.len - this.filled
      const available = n - off
      if (this.partial === null && missing <= available) {
        frames.push(chunk.subarray(off, off + missing))
        off += missing
        this.reset()
        continue
      }
      if (this.partial === null) this.partial = new Uint8Array(this.len)
      const take = missing <= available ? missing : available
      this.partial.set(chunk.subarray(off, off + take), this.filled)
      this.filled += take
      off += take
      if (this.filled === this.len) {
        frames.push(this.partial)
        this.reset()
      }
    }
    // A zero-length frame whose prefix ended exactly at the chunk end.
    if (this.inBody && this.len === 0) {
      frames.push(new Uint8Array(0))
      this.reset()
    }
    return { frames, error: null }
  }

  private reset(): void {
    this.inBody = false
    this.lenBytes = 0
    this.len = 0
    this.partial = null
    this.filled = 0
  }
}

// ---------------------------------------------------------------------------
// Header message (first frame)
// ---------------------------------------------------------------------------

export interface SecretStreamHeader {
  /** H256(role namespace; key = handshakeHash) of the sender's role. */
  readonly streamId: Uint8Array
  /** crypto_secretstream header (24 bytes). */
  readonly header: Uint8Array
}

/** The 56-byte header message body: streamId(32) || secretstream header(24). */
export const headerMessage: Codec<SecretStreamHeader> = codec<SecretStreamHeader>(
  "secretStreamHeader",
  (w, v) => {
    if (v === null || typeof v !== "object") return w.fail("secretStreamHeader", "value is not an object")
    w.fixed(STREAM_ID_BYTES, v.streamId, "streamId")
    w.fixed(SECRETSTREAM_HEADER_BYTES, v.header, "header")
  },
  (r) => {
    const streamId = r.fixed(STREAM_ID_BYTES)
    const header = r.fixed(SECRETSTREAM_HEADER_BYTES)
    return { streamId, header }
  }
)

/** Parse a header message body; it must be exactly 56 bytes (else OutOfBounds / TrailingBytes). */
export const parseHeaderMessage = (body: Uint8Array): Result.Result<SecretStreamHeader, DecodeError> =>
  decode(headerMessage, body, { exact: true })

/** The complete first frame: `38 00 00 || streamId || header` (59 bytes). */
export const encodeHeaderFrame = (v: SecretStreamHeader): Result.Result<Uint8Array, EncodeError> => {
  const body = encode(headerMessage, v)
  return Result.isFailure(body) ? body : encodeFrame(body.success)
}

// ---------------------------------------------------------------------------
// Unordered messages (UDX MESSAGE payloads)
// ---------------------------------------------------------------------------

export const UNORDERED_COUNTER_BYTES = 8
export const SECRETBOX_MAC_BYTES = 16
export const SECRETBOX_NONCE_BYTES = 24
/** The receiver ignores datagrams shorter than this (counter + MAC). */
export const UNORDERED_MIN_BYTES = UNORDERED_COUNTER_BYTES + SECRETBOX_MAC_BYTES

export interface UnorderedMessage {
  /** 8-byte little-endian counter (also the nonce prefix). */
  readonly counter: Uint8Array
  /** crypto_secretbox_easy output: mac(16) || ciphertext. */
  readonly box: Uint8Array
}

export const unorderedMessage: Codec<UnorderedMessage> = codec<UnorderedMessage>(
  "unorderedMessage",
  (w, v) => {
    if (v === null || typeof v !== "object") return w.fail("unorderedMessage", "value is not an object")
    w.fixed(UNORDERED_COUNTER_BYTES, v.counter, "counter")
    if (!(v.box instanceof Uint8Array)) return w.fail("box", "value is not a Uint8Array")
    if (v.box.length < SECRETBOX_MAC_BYTES) return w.fail("box", `a secretbox is at least ${SECRETBOX_MAC_BYTES} bytes`)
    w.bytes(v.box)
  },
  (r) => {
    const counter = r.fixed(UNORDERED_COUNTER_BYTES)
    if (r.remaining < SECRETBOX_MAC_BYTES) {
      r.fail("OutOfBounds", `a secretbox is at least ${SECRETBOX_MAC_BYTES} bytes`)
      return { counter, box: new Uint8Array(0) }
    }
    const box = r.raw()
    return { counter, box }
  }
)

/** Split a received MESSAGE payload; fails for fewer than 24 bytes (the receiver drops those). */
export const parseUnorderedMessage = (wire: Uint8Array): Result.Result<UnorderedMessage, DecodeError> =>
  decode(unorderedMessage, wire)

export const encodeUnorderedMessage = (v: UnorderedMessage): Result.Result<Uint8Array, EncodeError> =>
  encode(unorderedMessage, v)

/** The 24-byte secretbox nonce for a counter: `counter(8) || 0 x16`. Null if the counter is not 8 bytes. */
export const unorderedNonce = (counter: Uint8Array): Uint8Array | null => {
  if (!(counter instanceof Uint8Array) || counter.length !== UNORDERED_COUNTER_BYTES) return null
  const nonce = new Uint8Array(SECRETBOX_NONCE_BYTES)
  nonce.set(counter)
  return nonce
}

/**
 * Little-endian increment in place (libsodium `sodium_increment`), done
 * before each send. Returns false when the counter wrapped to all zeros.
 */
export const incrementCounter = (counter: Uint8Array): boolean => {
  for (let i = 0; i < counter.length; i++) {
    const v = (counter[i]! + 1) & 0xff
    counter[i] = v
    if (v !== 0) return true
  }
  return false
}
