/**
 * The encrypted stream hyperdht runs over each UDX stream once the Noise IK
 * handshake is done (connect.md §3.3, §7): "secret-stream with a
 * pre-established handshake".
 *
 * Two layers live here:
 *
 * - `SecretStreamCore`: a plain, deterministic class (no Effect, no Node
 *   streams). It owns the secretstream push/pull states, the frame parser and
 *   the unordered-message counters, and talks to any transport through the
 *   small `RawStream` interface below. Time comes from an injectable
 *   `SecretStreamClock` (keepalive and inactivity timers).
 * - `SecretStream.make`: the Effect face (scoped), built on the core: a
 *   readable `Stream`, `write` with backpressure, unordered `send`/`messages`.
 *
 * The Node `Duplex` face (NoiseSecretStream-compatible) is in
 * ./secret-stream-node.ts.
 *
 * Wire summary (both directions are independent):
 *
 *   first frame  38 00 00 || streamId(own role)(32) || secretstream header(24)
 *   next frames  u24le(len) || secretstream_push(plaintext, tag MESSAGE)   (len = |plaintext| + 17)
 *   keepalive    an empty plaintext (frame `11 00 00` + 17 bytes)
 *   unordered    counter(8) || secretbox(msg, nonce = counter || 0 x16, sendKey(own role))
 *
 * Hot paths (write, incoming bytes) are plain synchronous code: one
 * secretstream operation and at most one copy per frame, no Effect per chunk.
 *
 * Supervision: a defect (an exception, not a bad frame: those close the
 * stream with their own typed errors) while the core processes what the raw
 * stream delivered (decrypting, or a handler of the face it calls) closes
 * the stream with a typed `StreamDefect` carrying the exception, destroys
 * the raw stream, and then rethrows to the raw stream's caller: the actor
 * that delivered the bytes (the UDX mux) logs and counts it.
 */
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { UdxStream } from "./udx.js"
import { Crypto } from "../../layers/Crypto.js"
import { sendKey as deriveSendKey, streamId as deriveStreamId } from "../../layers/crypto/derive.js"
import {
  type CryptoImpl,
  SECRETSTREAM_TAG_MESSAGE,
  type SecretStreamState
} from "../../layers/crypto/types.js"
import {
  FRAME_HEADER_BYTES,
  FrameParser,
  HEADER_MESSAGE_BYTES,
  MAX_PLAINTEXT_LENGTH,
  SECRETSTREAM_ABYTES,
  SECRETSTREAM_HEADER_BYTES,
  STREAM_ID_BYTES,
  UNORDERED_COUNTER_BYTES,
  UNORDERED_MIN_BYTES,
  incrementCounter,
  writeUint24le
} from "../../protocol/secret-stream.js"

export { MAX_PLAINTEXT_LENGTH } from "../../protocol/secret-stream.js"

/** hyperdht's `connectionKeepAlive` default (connect.md §7.4, §8.3). */
export const HYPERDHT_KEEP_ALIVE = 5000

// ---------------------------------------------------------------------------
// The transport contract
// ---------------------------------------------------------------------------

/**
 * Callbacks a `RawStream` delivers to its (single) consumer. Registered once
 * with `RawStream.attach`.
 */
export interface RawStreamHandlers {
  /**
   * Ordered bytes from the peer, in any chunking. The consumer does not keep
   * a reference to `bytes` after returning (the transport may reuse it).
   */
  onData(bytes: Uint8Array): void
  /** The peer ended its side (UDX END delivered). At most once, after the last `onData`. */
  onEnd(): void
  /** An earlier `write` returned false and the transport can take more now. */
  onDrain(): void
  /** One unordered datagram payload (UDX MESSAGE), as received. */
  onMessage(bytes: Uint8Array): void
  /**
   * The transport is closed (both sides ended, destroyed locally or remotely,
   * timed out...). `error` is set for abnormal closes (reset, timeout). At
   * most once; no callback follows it.
   */
  onClose(error?: unknown): void
}

/**
 * A reliable, ordered byte stream (a UDX stream in hyperdht; any duplex
 * works). The secret stream is its only consumer.
 *
 * Contract:
 * - `attach(handlers)` is called exactly once, by `SecretStreamCore.start()`,
 *   before anything else. Data, end, messages and close that arrive before
 *   `attach` must be buffered and delivered after it.
 * - Handlers may be called synchronously from any transport input, including
 *   from inside `write`/`end`/`destroy`/`sendMessage` (the core marks its own
 *   state before calling out and ignores callbacks after it closed).
 * - `write(bytes)` queues bytes in order; it is never called after `end()` or
 *   `destroy()`. Neither side mutates `bytes` afterwards. It returns false when
 *   the transport's buffer is above its high-water mark; the core then reports
 *   backpressure upward and waits for `onDrain` (it may still write, e.g. a
 *   keepalive). One frame may be split over two writes (prefix, body) when large.
 * - `end()` half-closes after every queued byte (UDX END). Called at most once.
 * - `destroy(error?)` aborts (UDX DESTROY). The core treats itself as closed at
 *   once; a later `onClose` is ignored.
 * - `sendMessage(bytes)` (optional) sends one unordered datagram (UDX MESSAGE),
 *   returning false if it could not (not connected, larger than the MSS).
 *   Without it the secret stream's `send` fails with `MessagesUnsupported`.
 * - `pause()` / `resume()` (optional, advisory) ask the transport to stop /
 *   restart `onData` delivery for read backpressure (UDX: stop / restart
 *   reporting consumed bytes so its receive window closes). Data delivered
 *   while paused is still processed.
 */
export interface RawStream {
  attach(handlers: RawStreamHandlers): void
  write(bytes: Uint8Array): boolean
  end(): void
  destroy(error?: unknown): void
  sendMessage?(bytes: Uint8Array): boolean | void
  pause?(): void
  resume?(): void
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/** The peer's first frame is not `streamId(peer role) || header` of exactly 56 bytes. */
export class InvalidHeader extends Data.TaggedError("InvalidHeader")<{ readonly detail: string }> {
  override get message(): string {
    return `secret-stream: invalid header (${this.detail})`
  }
}

/** A frame that cannot be a secretstream message (body shorter than 17 bytes). */
export class InvalidFrame extends Data.TaggedError("InvalidFrame")<{ readonly detail: string }> {
  override get message(): string {
    return `secret-stream: invalid frame (${this.detail})`
  }
}

/** A frame failed secretstream authentication. */
export class DecryptFailed extends Data.TaggedError("DecryptFailed")<{ readonly frameLength: number }> {
  override get message(): string {
    return `secret-stream: frame of ${this.frameLength} bytes failed authentication`
  }
}

/** A write above 16 777 198 bytes (one frame's limit). The stream stays usable. */
export class MessageTooLarge extends Data.TaggedError("MessageTooLarge")<{
  readonly length: number
  readonly max: number
}> {
  override get message(): string {
    return `secret-stream: a write of ${this.length} bytes exceeds the atomic write limit of ${this.max}`
  }
}

/** No raw bytes arrived for `timeout` ms (`setTimeout`). */
export class StreamTimeout extends Data.TaggedError("StreamTimeout")<{ readonly timeout: number }> {
  override get message(): string {
    return `secret-stream: timed out after ${this.timeout} ms without data`
  }
}

/** The unordered-message counter wrapped around to its initial value. */
export class NonceExhausted extends Data.TaggedError("NonceExhausted")<{}> {
  override get message(): string {
    return "secret-stream: unordered message nonce exhausted"
  }
}

/** Operation on a stream whose write side is ended or that is closed. */
export class StreamClosed extends Data.TaggedError("StreamClosed")<{ readonly detail: string }> {
  override get message(): string {
    return `secret-stream: ${this.detail}`
  }
}

/** `send` on a transport without unordered messages. */
export class MessagesUnsupported extends Data.TaggedError("MessagesUnsupported")<{}> {
  override get message(): string {
    return "secret-stream: the raw stream cannot send unordered messages"
  }
}

/** The raw stream closed before both directions ended, without an error. */
export class PrematureClose extends Data.TaggedError("PrematureClose")<{}> {
  override get message(): string {
    return "secret-stream: raw stream closed before the stream ended"
  }
}

/** The raw stream failed (reset, timeout, socket error). */
export class RawStreamFailed extends Data.TaggedError("RawStreamFailed")<{ readonly cause: unknown }> {
  override get message(): string {
    const c = this.cause
    return `secret-stream: raw stream failed${c instanceof Error ? `: ${c.message}` : ""}`
  }
}

/** `destroy(error)` called by the user with an error of its own. */
export class StreamDestroyed extends Data.TaggedError("StreamDestroyed")<{ readonly cause: unknown }> {
  override get message(): string {
    const c = this.cause
    return `secret-stream: destroyed${c instanceof Error ? `: ${c.message}` : ""}`
  }
}

/**
 * A defect (an exception: a bug in the stream's code or its crypto, or in a
 * handler it called with incoming data) while processing what the raw stream
 * delivered. The stream was closed; `cause` is the exception.
 */
export class StreamDefect extends Data.TaggedError("StreamDefect")<{ readonly cause: unknown }> {
  override get message(): string {
    const c = this.cause
    return `secret-stream: closed after a defect${c instanceof Error ? `: ${c.message}` : ""}`
  }
}

export type SecretStreamError =
  | InvalidHeader
  | InvalidFrame
  | DecryptFailed
  | MessageTooLarge
  | StreamTimeout
  | NonceExhausted
  | StreamClosed
  | MessagesUnsupported
  | PrematureClose
  | RawStreamFailed
  | StreamDestroyed
  | StreamDefect

const ERROR_TAGS: ReadonlySet<string> = new Set([
  "InvalidHeader",
  "InvalidFrame",
  "DecryptFailed",
  "MessageTooLarge",
  "StreamTimeout",
  "NonceExhausted",
  "StreamClosed",
  "MessagesUnsupported",
  "PrematureClose",
  "RawStreamFailed",
  "StreamDestroyed",
  "StreamDefect"
])

export const isSecretStreamError = (u: unknown): u is SecretStreamError =>
  typeof u === "object" && u !== null && u instanceof Error && ERROR_TAGS.has((u as { _tag?: unknown })._tag as string)

// ---------------------------------------------------------------------------
// Core
// ---------------------------------------------------------------------------

/** Result of a finished Noise handshake (connect.md §3.2–3.3) plus our role. */
export interface SecretStreamHandshake {
  readonly isInitiator: boolean
  /** Push key (first 32 bytes used). */
  readonly tx: Uint8Array
  /** Pull key (first 32 bytes used). */
  readonly rx: Uint8Array
  /** 64-byte Noise handshake hash. */
  readonly handshakeHash: Uint8Array
  readonly publicKey: Uint8Array
  readonly remotePublicKey: Uint8Array
}

/** Time source for the keepalive and inactivity timers. */
export interface SecretStreamClock {
  /** Milliseconds, monotonic. */
  now(): number
  setTimer(f: () => void, ms: number): unknown
  clearTimer(handle: unknown): void
}

/** Real timers (unref'd: they never keep the process alive). */
export const systemClock: SecretStreamClock = {
  now: () => performance.now(),
  setTimer: (f, ms) => {
    const t = setTimeout(f, ms) as unknown as { unref?: () => void }
    if (typeof t.unref === "function") t.unref()
    return t
  },
  clearTimer: (h) => clearTimeout(h as Parameters<typeof clearTimeout>[0])
}

export interface SecretStreamCoreOptions {
  /** Send an empty message after this many ms without writes; 0 = off (default 0; hyperdht uses 5000). */
  readonly keepAlive?: number
  /** Destroy with `StreamTimeout` after this many ms without raw data; 0 = off (default). */
  readonly timeout?: number
  /** Drop zero-length plaintexts instead of delivering them (default: keepAlive > 0, as the reference). */
  readonly filterZeroByteMessages?: boolean
  readonly clock?: SecretStreamClock
  /** Test-only injections for byte-exact vectors. */
  readonly testing?: {
    /** secretstream push header (24 bytes) instead of a random one. */
    readonly header?: Uint8Array
    /** Initial unordered counter (8 bytes) instead of a random one. */
    readonly initialCounter?: Uint8Array
    /** Current unordered counter (8 bytes; default = the initial one), to exercise the wrap. */
    readonly counter?: Uint8Array
  }
}

/** What the core tells its face. Called synchronously from raw-stream callbacks. */
export interface SecretStreamEvents {
  /** The peer's header frame arrived and was verified (optional). */
  onRemoteOpen?(): void
  /** A decrypted message. Return false to apply read backpressure (the core pauses the raw stream until `resume()`). */
  onData(plaintext: Uint8Array): boolean
  /** The peer ended its side: no more `onData`. */
  onEnd(): void
  /** A decrypted unordered message. */
  onMessage(message: Uint8Array): void
  /** A write that returned false can be followed by more now. */
  onDrain(): void
  /**
   * The stream is closed: null when both sides ended cleanly (or `destroy()`
   * without error), else the reason. Called once; nothing follows.
   */
  onClose(error: SecretStreamError | null): void
}

/** `true`: written; `false`: written, but wait for `onDrain`; an error: nothing was written. */
export type WriteResult = boolean | MessageTooLarge | StreamClosed

/** Frames this large or larger are written as two raw writes (prefix, body) instead of being copied. */
const LARGE_FRAME = 64 * 1024
/** Small frames of one batch are coalesced into raw writes of about this size. */
const COALESCE_BYTES = 64 * 1024

const EMPTY = new Uint8Array(0)

/** A fresh plain Uint8Array (never a Buffer view) with the same bytes. */
const plainCopy = (b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(b.length)
  out.set(b)
  return out
}

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  let d = 0
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!
  return d === 0
}

/**
 * The secret stream state machine. Create, then `start()` (which attaches to
 * the raw stream and writes the header frame).
 */
export class SecretStreamCore {
  readonly isInitiator: boolean
  readonly publicKey: Uint8Array
  readonly remotePublicKey: Uint8Array
  readonly handshakeHash: Uint8Array

  private readonly crypto: CryptoImpl
  private readonly raw: RawStream
  private readonly events: SecretStreamEvents
  private readonly clock: SecretStreamClock
  private readonly pushState: SecretStreamState
  private readonly pullKey: Uint8Array
  private pullState: SecretStreamState | null = null
  private readonly headerFrame: Uint8Array
  private readonly remoteStreamId: Uint8Array
  private readonly parser = new FrameParser()
  private readonly sendKey: Uint8Array
  private readonly recvKey: Uint8Array
  private readonly counter: Uint8Array
  private readonly initialCounter: Uint8Array

  private filterZero: boolean
  private keepAliveMs = 0
  private timeoutMs = 0
  private keepAliveTimer: unknown = null
  private timeoutTimer: unknown = null
  private lastWrite = 0
  private lastRead = 0

  private started = false
  private readEnded = false
  private writeEnded = false
  private closedFlag = false
  private closeError: SecretStreamError | null = null
  private paused = false
  private drainPending = false

  /** Plaintext bytes written / delivered (statistics). */
  bytesWritten = 0
  bytesRead = 0

  constructor(
    handshake: SecretStreamHandshake,
    crypto: CryptoImpl,
    raw: RawStream,
    events: SecretStreamEvents,
    options: SecretStreamCoreOptions = {}
  ) {
    this.isInitiator = handshake.isInitiator
    this.publicKey = handshake.publicKey
    this.remotePublicKey = handshake.remotePublicKey
    this.handshakeHash = handshake.handshakeHash
    this.crypto = crypto
    this.raw = raw
    this.events = events
    this.clock = options.clock ?? systemClock
    if (handshake.tx.length < 32 || handshake.rx.length < 32 || handshake.handshakeHash.length === 0) {
      throw new TypeError("secret-stream: tx and rx must be at least 32 bytes and the handshake hash non-empty")
    }

    // plain, aligned copies: callers may hand us Node Buffers (pool views whose
    // `.slice` does not copy), and the crypto layer may view keys as words
    const hh = plainCopy(handshake.handshakeHash)
    const testHeader = options.testing?.header
    const { state, header } = crypto.secretstreamInitPush(
      plainCopy(handshake.tx.subarray(0, 32)),
      testHeader === undefined ? undefined : plainCopy(testHeader)
    )
    this.pushState = state
    this.pullKey = plainCopy(handshake.rx.subarray(0, 32))
    const frame = new Uint8Array(FRAME_HEADER_BYTES + HEADER_MESSAGE_BYTES)
    writeUint24le(frame, 0, HEADER_MESSAGE_BYTES)
    frame.set(deriveStreamId(crypto, hh, this.isInitiator), FRAME_HEADER_BYTES)
    frame.set(header.subarray(0, SECRETSTREAM_HEADER_BYTES), FRAME_HEADER_BYTES + STREAM_ID_BYTES)
    this.headerFrame = frame
    this.remoteStreamId = deriveStreamId(crypto, hh, !this.isInitiator)

    this.sendKey = deriveSendKey(crypto, hh, this.isInitiator)
    this.recvKey = deriveSendKey(crypto, hh, !this.isInitiator)
    const initial = options.testing?.initialCounter ?? crypto.randomBytes(UNORDERED_COUNTER_BYTES)
    this.initialCounter = plainCopy(initial.subarray(0, UNORDERED_COUNTER_BYTES))
    this.counter = plainCopy((options.testing?.counter ?? initial).subarray(0, UNORDERED_COUNTER_BYTES))

    this.keepAliveMs = Math.max(0, options.keepAlive ?? 0)
    this.timeoutMs = Math.max(0, options.timeout ?? 0)
    this.filterZero = options.filterZeroByteMessages ?? this.keepAliveMs > 0
  }

  // ---- state ------------------------------------------------------------------

  /** Closed (destroyed, failed, or both sides ended). */
  get closed(): boolean {
    return this.closedFlag
  }
  /** Why the stream closed (null while open or after a clean close). */
  get error(): SecretStreamError | null {
    return this.closeError
  }
  /** The peer's header frame was received and verified. */
  get remoteOpened(): boolean {
    return this.pullState !== null
  }
  get readableEnded(): boolean {
    return this.readEnded
  }
  get writableEnded(): boolean {
    return this.writeEnded
  }
  /** A write returned false and `onDrain` has not followed yet. */
  get needsDrain(): boolean {
    return this.drainPending
  }
  get keepAlive(): number {
    return this.keepAliveMs
  }
  get timeout(): number {
    return this.timeoutMs
  }

  // ---- lifecycle --------------------------------------------------------------

  /** Attach to the raw stream, write the header frame, arm the timers. Idempotent. */
  start(): void {
    if (this.started || this.closedFlag) return
    this.started = true
    this.raw.attach({
      onData: (b) => {
        try {
          this.handleData(b)
        } catch (e) {
          this.defect(e)
        }
      },
      onEnd: () => {
        try {
          this.handleEnd()
        } catch (e) {
          this.defect(e)
        }
      },
      onDrain: () => this.handleDrain(),
      onMessage: (m) => {
        try {
          this.handleMessage(m)
        } catch (e) {
          this.defect(e)
        }
      },
      onClose: (e) => this.handleRawClose(e)
    })
    if (this.closedFlag) return
    const now = this.clock.now()
    this.lastWrite = now
    this.lastRead = now
    if (!this.raw.write(this.headerFrame.slice())) this.drainPending = true
    if (this.keepAliveMs > 0) this.armKeepAlive(this.keepAliveMs)
    if (this.timeoutMs > 0) this.armTimeout(this.timeoutMs)
  }

  /** The exact first frame this side writes (59 bytes). */
  get header(): Uint8Array {
    return this.headerFrame
  }

  /** Half-close: ends the raw stream after every written frame. */
  end(): void {
    if (this.closedFlag || this.writeEnded) return
    this.writeEnded = true
    this.clearKeepAlive()
    this.raw.end()
    this.maybeFinish()
  }

  /**
   * Abort: closes at once (with `error` as the reason when given) and
   * destroys the raw stream.
   */
  destroy(error?: unknown): void {
    if (this.closedFlag) return
    const reason = error === undefined || error === null
      ? null
      : isSecretStreamError(error)
      ? error
      : new StreamDestroyed({ cause: error })
    // mark closed and destroy the raw stream before telling the face: the
    // face's callbacks may resume fibers synchronously
    this.markClosed(reason)
    this.raw.destroy(error === null ? undefined : error)
    this.events.onClose(reason)
  }

  // ---- writing ----------------------------------------------------------------

  /**
   * Encrypt `plaintext` into one frame and write it. `tag` other than MESSAGE
   * (e.g. REKEY) is for tests/rekeying; secret-stream itself only sends MESSAGE.
   */
  write(plaintext: Uint8Array, tag: number = SECRETSTREAM_TAG_MESSAGE): WriteResult {
    if (this.closedFlag || this.writeEnded || !this.started) return this.writeClosed()
    if (plaintext.length > MAX_PLAINTEXT_LENGTH) {
      return new MessageTooLarge({ length: plaintext.length, max: MAX_PLAINTEXT_LENGTH })
    }
    const body = this.crypto.secretstreamPush(this.pushState, plaintext, tag)
    this.bytesWritten += plaintext.length
    if (this.keepAliveMs > 0) this.lastWrite = this.clock.now()
    return this.writeBody(body)
  }

  /**
   * Several writes at once: each plaintext is its own frame, small frames are
   * coalesced into fewer raw writes. All-or-nothing on size errors.
   */
  writeBatch(plaintexts: ReadonlyArray<Uint8Array>): WriteResult {
    if (this.closedFlag || this.writeEnded || !this.started) return this.writeClosed()
    for (const p of plaintexts) {
      if (p.length > MAX_PLAINTEXT_LENGTH) return new MessageTooLarge({ length: p.length, max: MAX_PLAINTEXT_LENGTH })
    }
    let ok = true
    let pending: Array<Uint8Array> = []
    let pendingBytes = 0
    const flush = () => {
      if (pending.length === 0) return
      let out: Uint8Array
      if (pending.length === 1) {
        out = this.framed(pending[0]!)
      } else {
        out = new Uint8Array(pendingBytes)
        let o = 0
        for (const b of pending) {
          writeUint24le(out, o, b.length)
          out.set(b, o + FRAME_HEADER_BYTES)
          o += FRAME_HEADER_BYTES + b.length
        }
      }
      pending = []
      pendingBytes = 0
      if (!this.raw.write(out)) ok = false
    }
    for (const p of plaintexts) {
      const body = this.crypto.secretstreamPush(this.pushState, p, SECRETSTREAM_TAG_MESSAGE)
      this.bytesWritten += p.length
      if (body.length >= LARGE_FRAME) {
        flush()
        if (!this.writeLarge(body)) ok = false
      } else {
        pending.push(body)
        pendingBytes += FRAME_HEADER_BYTES + body.length
        if (pendingBytes >= COALESCE_BYTES) flush()
      }
    }
    flush()
    if (this.keepAliveMs > 0) this.lastWrite = this.clock.now()
    if (!ok) this.drainPending = true
    return ok
  }

  /** Send an empty message now (what the keepalive timer does). */
  sendKeepAlive(): void {
    if (this.closedFlag || this.writeEnded || !this.started) return
    this.write(EMPTY)
  }

  private writeClosed(): StreamClosed {
    return new StreamClosed({
      detail: this.closedFlag ? "stream is closed" : this.writeEnded ? "write after end" : "stream not started"
    })
  }

  private framed(body: Uint8Array): Uint8Array {
    const out = new Uint8Array(FRAME_HEADER_BYTES + body.length)
    writeUint24le(out, 0, body.length)
    out.set(body, FRAME_HEADER_BYTES)
    return out
  }

  private writeLarge(body: Uint8Array): boolean {
    const prefix = new Uint8Array(FRAME_HEADER_BYTES)
    writeUint24le(prefix, 0, body.length)
    const a = this.raw.write(prefix)
    const b = this.raw.write(body)
    return a && b
  }

  private writeBody(body: Uint8Array): boolean {
    const ok = body.length >= LARGE_FRAME ? this.writeLarge(body) : this.raw.write(this.framed(body))
    if (!ok) this.drainPending = true
    return ok
  }

  // ---- unordered messages -----------------------------------------------------

  /**
   * Send one unordered message (UDX MESSAGE): counter(8) || secretbox. The
   * counter is incremented first; reaching the initial value again destroys
   * the stream (`NonceExhausted`). `false`: the transport refused it (not
   * connected, larger than one datagram); delivery is never guaranteed.
   */
  send(message: Uint8Array): boolean | StreamClosed | MessagesUnsupported | NonceExhausted {
    if (this.closedFlag || !this.started) return this.writeClosed()
    const sendMessage = this.raw.sendMessage
    if (sendMessage === undefined) return new MessagesUnsupported()
    incrementCounter(this.counter)
    if (bytesEqual(this.counter, this.initialCounter)) {
      const e = new NonceExhausted()
      this.destroy(e)
      return e
    }
    const nonce = new Uint8Array(24)
    nonce.set(this.counter)
    const box = this.crypto.secretboxSeal(message, nonce, this.sendKey)
    const wire = new Uint8Array(UNORDERED_COUNTER_BYTES + box.length)
    wire.set(this.counter, 0)
    wire.set(box, UNORDERED_COUNTER_BYTES)
    return sendMessage.call(this.raw, wire) !== false
  }

  private handleMessage(wire: Uint8Array): void {
    if (this.closedFlag || wire.length < UNORDERED_MIN_BYTES) return
    const nonce = new Uint8Array(24)
    nonce.set(wire.subarray(0, UNORDERED_COUNTER_BYTES))
    const plain = this.crypto.secretboxOpen(wire.subarray(UNORDERED_COUNTER_BYTES), nonce, this.recvKey)
    if (plain === null) return
    this.events.onMessage(plain)
  }

  // ---- reading ----------------------------------------------------------------

  /** Undo read backpressure (the face's buffer has room again). */
  resume(): void {
    if (!this.paused || this.closedFlag) return
    this.paused = false
    this.raw.resume?.()
  }

  private handleData(chunk: Uint8Array): void {
    if (this.closedFlag || this.readEnded) return
    if (this.timeoutMs > 0) this.lastRead = this.clock.now()
    const { frames, error } = this.parser.push(chunk)
    for (let i = 0; i < frames.length; i++) {
      if (this.closedFlag) return
      this.incoming(frames[i]!)
    }
    if (error !== null && !this.closedFlag) this.destroy(new InvalidFrame({ detail: error.message }))
  }

  private incoming(frame: Uint8Array): void {
    if (this.pullState === null) {
      if (frame.length !== HEADER_MESSAGE_BYTES) {
        this.destroy(new InvalidHeader({ detail: `header message of ${frame.length} bytes, expected ${HEADER_MESSAGE_BYTES}` }))
        return
      }
      if (!bytesEqual(frame.subarray(0, STREAM_ID_BYTES), this.remoteStreamId)) {
        this.destroy(new InvalidHeader({ detail: "stream id does not match the peer's role" }))
        return
      }
      const st = this.crypto.secretstreamInitPull(this.pullKey, plainCopy(frame.subarray(STREAM_ID_BYTES)))
      if (st === null) {
        this.destroy(new InvalidHeader({ detail: "secretstream header rejected" }))
        return
      }
      this.pullState = st
      this.events.onRemoteOpen?.()
      return
    }
    if (frame.length < SECRETSTREAM_ABYTES) {
      this.destroy(new InvalidFrame({ detail: `frame of ${frame.length} bytes is shorter than ${SECRETSTREAM_ABYTES}` }))
      return
    }
    const r = this.crypto.secretstreamPull(this.pullState, frame)
    if (r === null) {
      this.destroy(new DecryptFailed({ frameLength: frame.length }))
      return
    }
    const plain = r.message
    if (plain.length === 0 && this.filterZero) return
    this.bytesRead += plain.length
    if (this.events.onData(plain) === false && !this.paused && !this.closedFlag) {
      this.paused = true
      this.raw.pause?.()
    }
  }

  /**
   * Supervision (see the module's doc): a defect while processing incoming
   * data closes the stream with `StreamDefect`, then the exception goes on
   * to the raw stream's caller, whose supervisor logs and counts it.
   */
  private defect(e: unknown): never {
    if (!this.closedFlag) {
      try {
        this.destroy(new StreamDefect({ cause: e }))
      } catch {
        // the face failed again while closing: the stream is closed all the same
      }
    }
    throw e
  }

  private handleEnd(): void {
    if (this.closedFlag || this.readEnded) return
    this.readEnded = true
    this.events.onEnd()
    this.maybeFinish()
  }

  private handleDrain(): void {
    if (this.closedFlag || !this.drainPending) return
    this.drainPending = false
    this.events.onDrain()
  }

  private handleRawClose(error?: unknown): void {
    if (this.closedFlag) return
    if (error !== undefined && error !== null) {
      this.close(new RawStreamFailed({ cause: error }))
    } else if (this.readEnded && this.writeEnded) {
      this.close(null)
    } else {
      this.close(new PrematureClose())
    }
  }

  /** Both sides ended: the secret stream is done (the raw stream finishes on its own). */
  private maybeFinish(): void {
    if (this.readEnded && this.writeEnded && !this.closedFlag) this.close(null)
  }

  private close(error: SecretStreamError | null): void {
    if (this.closedFlag) return
    this.markClosed(error)
    this.events.onClose(error)
  }

  private markClosed(error: SecretStreamError | null): void {
    this.closedFlag = true
    this.closeError = error
    this.clearKeepAlive()
    this.clearTimeout()
  }

  // ---- timers -----------------------------------------------------------------

  /** Change the keepalive interval (0 = off). Also turns on zero-length filtering when > 0. */
  setKeepAlive(ms: number): void {
    this.clearKeepAlive()
    this.keepAliveMs = ms > 0 ? ms : 0
    if (this.keepAliveMs > 0) this.filterZero = true
    if (this.keepAliveMs > 0 && this.started && !this.closedFlag && !this.writeEnded) {
      this.lastWrite = this.clock.now()
      this.armKeepAlive(this.keepAliveMs)
    }
  }

  /** Change the inactivity timeout (0 = off). */
  setTimeout(ms: number): void {
    this.clearTimeout()
    this.timeoutMs = ms > 0 ? ms : 0
    if (this.timeoutMs > 0 && this.started && !this.closedFlag) {
      this.lastRead = this.clock.now()
      this.armTimeout(this.timeoutMs)
    }
  }

  private armKeepAlive(ms: number): void {
    this.keepAliveTimer = this.clock.setTimer(this.onKeepAliveTimer, ms)
  }

  private readonly onKeepAliveTimer = (): void => {
    this.keepAliveTimer = null
    if (this.closedFlag || this.writeEnded || this.keepAliveMs === 0) return
    const idle = this.clock.now() - this.lastWrite
    const left = this.keepAliveMs - idle
    if (left > 1) {
      this.armKeepAlive(left)
      return
    }
    this.write(EMPTY)
    if (!this.closedFlag && this.keepAliveMs > 0 && this.keepAliveTimer === null) this.armKeepAlive(this.keepAliveMs)
  }

  private clearKeepAlive(): void {
    if (this.keepAliveTimer !== null) this.clock.clearTimer(this.keepAliveTimer)
    this.keepAliveTimer = null
  }

  private armTimeout(ms: number): void {
    this.timeoutTimer = this.clock.setTimer(this.onTimeoutTimer, ms)
  }

  private readonly onTimeoutTimer = (): void => {
    this.timeoutTimer = null
    if (this.closedFlag || this.timeoutMs === 0) return
    const left = this.timeoutMs - (this.clock.now() - this.lastRead)
    if (left > 1) {
      this.armTimeout(left)
      return
    }
    this.destroy(new StreamTimeout({ timeout: this.timeoutMs }))
  }

  private clearTimeout(): void {
    if (this.timeoutTimer !== null) this.clock.clearTimer(this.timeoutTimer)
    this.timeoutTimer = null
  }
}

// ---------------------------------------------------------------------------
// Effect face
// ---------------------------------------------------------------------------

export interface SecretStreamOptions extends SecretStreamCoreOptions {
  /**
   * keepalive in ms (default `HYPERDHT_KEEP_ALIVE` = 5000, as hyperdht; 0 = off).
   */
  readonly keepAlive?: number
  /** Decrypted bytes buffered for `readable` before the raw stream is paused (default 1 MiB). */
  readonly readableHighWaterMark?: number
  /** Unordered messages buffered for `messages`; newer ones are dropped when full (default 1024). */
  readonly messageBuffer?: number
}

export interface SecretStreamHandle {
  readonly isInitiator: boolean
  readonly publicKey: Uint8Array
  readonly remotePublicKey: Uint8Array
  readonly handshakeHash: Uint8Array
  /**
   * Decrypted messages in order (single consumer). Ends when the peer ends;
   * fails with the close reason when the stream fails.
   */
  readonly readable: Stream.Stream<Uint8Array, SecretStreamError>
  /** One frame; completes once the raw stream accepts more (backpressure). */
  write(chunk: Uint8Array): Effect.Effect<void, SecretStreamError>
  /** Several frames, coalesced into fewer raw writes; same backpressure. */
  writeAll(chunks: ReadonlyArray<Uint8Array>): Effect.Effect<void, SecretStreamError>
  /** Half-close our side. */
  readonly end: Effect.Effect<void>
  /** Abort (destroys the raw stream); `error` becomes the close reason. */
  destroy(error?: unknown): Effect.Effect<void>
  /** One unordered, unreliable message; false when the transport refused it (e.g. larger than a datagram). */
  send(message: Uint8Array): Effect.Effect<boolean, StreamClosed | MessagesUnsupported | NonceExhausted>
  /** Unordered messages received (single consumer); ends when the stream closes. */
  readonly messages: Stream.Stream<Uint8Array>
  /** Succeeds once the header frame is written (immediately: the handshake is pre-established). */
  readonly opened: Effect.Effect<void>
  /** Succeeds when both sides ended cleanly; fails with the reason otherwise. */
  readonly closed: Effect.Effect<void, SecretStreamError>
  /** Succeeds when the peer's header frame has been verified; fails if the stream closes first. */
  readonly remoteOpened: Effect.Effect<void, SecretStreamError>
  setKeepAlive(ms: number): Effect.Effect<void>
  setTimeout(ms: number): Effect.Effect<void>
  /** The underlying state machine (statistics, low-level writes). */
  readonly core: SecretStreamCore
}

/**
 * Start a secret stream over `raw` with a finished handshake. The stream is
 * destroyed when the scope closes (await `closed` first for a graceful end).
 */
export const make = (
  raw: RawStream,
  handshake: SecretStreamHandshake,
  options: SecretStreamOptions = {}
): Effect.Effect<SecretStreamHandle, never, Crypto | Scope.Scope> =>
  Effect.gen(function*() {
    const crypto = yield* Crypto
    const hwm = options.readableHighWaterMark ?? 1024 * 1024
    const readQueue = yield* Queue.unbounded<Uint8Array, SecretStreamError | Cause.Done>()
    const messageQueue = yield* Queue.dropping<Uint8Array, Cause.Done>(Math.max(1, options.messageBuffer ?? 1024))
    const closedD = yield* Deferred.make<void, SecretStreamError>()
    const remoteOpenedD = yield* Deferred.make<void, SecretStreamError>()
    let buffered = 0
    const drainWaiters = new Set<(e: Effect.Effect<void, SecretStreamError>) => void>()

    const events: SecretStreamEvents = {
      onRemoteOpen: () => {
        Deferred.doneUnsafe(remoteOpenedD, Effect.void)
      },
      onData: (plain) => {
        buffered += plain.length
        Queue.offerUnsafe(readQueue, plain)
        return buffered < hwm
      },
      onEnd: () => {
        Queue.endUnsafe(readQueue)
      },
      onMessage: (m) => {
        Queue.offerUnsafe(messageQueue, m)
      },
      onDrain: () => {
        if (drainWaiters.size === 0) return
        const ws = Array.from(drainWaiters)
        drainWaiters.clear()
        for (const w of ws) w(Effect.void)
      },
      onClose: (error) => {
        if (error === null) Queue.endUnsafe(readQueue)
        else Queue.failCauseUnsafe(readQueue, Cause.fail(error))
        Queue.endUnsafe(messageQueue)
        Deferred.doneUnsafe(closedD, error === null ? Effect.void : Effect.fail(error))
        Deferred.doneUnsafe(
          remoteOpenedD,
          Effect.fail(error ?? new StreamClosed({ detail: "closed before the peer's header arrived" }))
        )
        const ws = Array.from(drainWaiters)
        drainWaiters.clear()
        const failure = Effect.fail(error ?? new StreamClosed({ detail: "stream is closed" }))
        for (const w of ws) w(failure)
      }
    }

    const core = new SecretStreamCore(handshake, crypto, raw, events, {
      ...options,
      keepAlive: options.keepAlive ?? HYPERDHT_KEEP_ALIVE
    })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        core.destroy()
        Queue.endUnsafe(readQueue)
        Queue.endUnsafe(messageQueue)
      })
    )
    core.start()

    const awaitDrain: Effect.Effect<void, SecretStreamError> = Effect.callback<void, SecretStreamError>((resume) => {
      if (core.closed) {
        resume(Effect.fail(core.error ?? new StreamClosed({ detail: "stream is closed" })))
        return
      }
      if (!core.needsDrain) {
        resume(Effect.void)
        return
      }
      drainWaiters.add(resume)
      return Effect.sync(() => {
        drainWaiters.delete(resume)
      })
    })

    const afterWrite = (r: WriteResult): Effect.Effect<void, SecretStreamError> =>
      r === true ? Effect.void : r === false ? awaitDrain : Effect.fail(r)

    // one pull hands over every buffered chunk (batching), then lifts read backpressure
    const pull = Effect.map(Queue.takeAll(readQueue), (chunks) => {
      for (let i = 0; i < chunks.length; i++) buffered -= chunks[i]!.length
      if (buffered < hwm) core.resume()
      return chunks
    })

    const handle: SecretStreamHandle = {
      isInitiator: core.isInitiator,
      publicKey: core.publicKey,
      remotePublicKey: core.remotePublicKey,
      handshakeHash: core.handshakeHash,
      readable: Stream.fromPull(Effect.succeed(pull)),
      write: (chunk) => Effect.suspend(() => afterWrite(core.write(chunk))),
      writeAll: (chunks) => Effect.suspend(() => afterWrite(core.writeBatch(chunks))),
      end: Effect.sync(() => core.end()),
      destroy: (error) => Effect.sync(() => core.destroy(error)),
      send: (message) =>
        Effect.suspend(() => {
          const r = core.send(message)
          return typeof r === "boolean" ? Effect.succeed(r) : Effect.fail(r)
        }),
      messages: Stream.fromQueue(messageQueue),
      opened: Effect.void,
      closed: Deferred.await(closedD),
      remoteOpened: Deferred.await(remoteOpenedD),
      setKeepAlive: (ms) => Effect.sync(() => core.setKeepAlive(ms)),
      setTimeout: (ms) => Effect.sync(() => core.setTimeout(ms)),
      core
    }
    return handle
  })

/** The Effect API namespace. */
export const SecretStream = { make } as const

// ---------------------------------------------------------------------------
// Omega UDX stream as the raw stream
// ---------------------------------------------------------------------------

/**
 * A `RawStream` over an Omega UDX stream (src/actors/session/udx.ts): the
 * transport hyperdht connections use. Read backpressure follows `pause` /
 * `resume` by holding back the consumed-bytes reports, so the UDX receive
 * window closes while the reader is paused.
 */
export const fromUdxStream = (udx: UdxStream): RawStream => {
  let handlers: RawStreamHandlers | null = null
  let paused = false
  let held = 0
  let waitingForDrain = false
  return {
    attach: (h) => {
      handlers = h
      udx.attachUnsafe({
        onData: (chunk) => {
          if (paused) held += chunk.length
          else udx.consumedUnsafe(chunk.length)
          h.onData(chunk)
        },
        onEnd: () => h.onEnd(),
        onClose: (error) => (error === null ? h.onClose() : h.onClose(error)),
        onMessage: (m) => h.onMessage(m)
      })
    },
    write: (bytes) => {
      const ok = udx.writeUnsafe(bytes)
      if (!ok && !waitingForDrain) {
        waitingForDrain = true
        udx.onDrainUnsafe(() => {
          waitingForDrain = false
          handlers?.onDrain()
        })
      }
      return ok
    },
    end: () => udx.endUnsafe(),
    destroy: () => udx.destroyUnsafe(),
    sendMessage: (bytes) => udx.trySend(bytes),
    pause: () => {
      paused = true
    },
    resume: () => {
      paused = false
      if (held > 0) {
        udx.consumedUnsafe(held)
        held = 0
      }
    }
  }
}
