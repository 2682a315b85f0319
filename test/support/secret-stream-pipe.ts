/**
 * Test transports for the secret stream:
 * - `MemRaw` / `memRawPair`: in-memory `RawStream`s that record every write
 *   and message, deliver asynchronously (setImmediate), optionally split
 *   chunks at random boundaries, and apply write backpressure.
 * - `manualClock`: a `SecretStreamClock` driven by the test.
 * - `duplexPair`: two cross-connected Node Duplex streams with udx-like
 *   `send`/`trySend` + 'message' (the reference accepts any duplex).
 */
import { Duplex } from "node:stream"
import type { RawStream, RawStreamHandlers, SecretStreamClock } from "../../src/actors/session/secret-stream.js"

/** Small deterministic PRNG (mulberry32). */
export const prng = (seed: number) => {
  let a = seed >>> 0
  return (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const concatBytes = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

export interface MemRawOptions {
  /** write() returns false while more than this many bytes are undelivered (default: never). */
  readonly highWaterMark?: number
  /** Split each delivered chunk at random boundaries using this PRNG. */
  readonly split?: () => number
  /** Offer sendMessage (default true). */
  readonly messages?: boolean
}

/** One end of an in-memory raw stream. */
export class MemRaw implements RawStream {
  peer: MemRaw | null = null
  handlers: RawStreamHandlers | null = null
  readonly written: Array<Uint8Array> = []
  readonly sent: Array<Uint8Array> = []
  ended = false
  destroyed = false
  destroyError: unknown = undefined
  paused = false
  closed = false
  pauseCount = 0
  private readonly hwm: number
  private readonly split: (() => number) | undefined
  private inbox: Array<Uint8Array> = []
  private inboxEnd = false
  private peerEnded = false
  private scheduled = false
  private undelivered = 0
  private needDrain = false
  sendMessage?: (bytes: Uint8Array) => void

  constructor(options: MemRawOptions = {}) {
    this.hwm = options.highWaterMark ?? Infinity
    this.split = options.split
    if (options.messages !== false) {
      this.sendMessage = (bytes: Uint8Array) => {
        this.sent.push(bytes)
        const peer = this.peer
        if (peer !== null) setImmediate(() => peer.closed || peer.handlers?.onMessage(bytes))
      }
    }
  }

  attach(h: RawStreamHandlers): void {
    if (this.handlers !== null) throw new Error("attached twice")
    this.handlers = h
  }

  /** Everything written so far, concatenated. */
  get allWritten(): Uint8Array {
    return concatBytes(this.written)
  }

  write(bytes: Uint8Array): boolean {
    if (this.destroyed || this.ended) throw new Error("write after end/destroy")
    this.written.push(bytes)
    const peer = this.peer
    if (peer === null) return true
    this.undelivered += bytes.length
    peer.enqueue(bytes, this)
    if (this.undelivered > this.hwm) {
      this.needDrain = true
      return false
    }
    return true
  }

  end(): void {
    if (this.ended) throw new Error("end twice")
    this.ended = true
    this.peer?.enqueueEnd()
    this.maybeClose()
  }

  destroy(error?: unknown): void {
    if (this.destroyed) return
    this.destroyed = true
    this.destroyError = error
    const peer = this.peer
    setImmediate(() => {
      this.fireClose()
      if (peer !== null && !peer.closed) {
        peer.destroyed = true
        peer.fireClose(Object.assign(new Error("connection reset by peer"), { code: "ECONNRESET" }))
      }
    })
  }

  pause(): void {
    this.paused = true
    this.pauseCount++
  }

  resume(): void {
    this.paused = false
    this.schedule()
  }

  // ---- test controls ----

  /** Inject bytes as if the peer had written them. */
  inject(bytes: Uint8Array): void {
    this.enqueue(bytes, null)
  }
  injectEnd(): void {
    this.enqueueEnd()
  }
  injectMessage(bytes: Uint8Array): void {
    setImmediate(() => this.closed || this.handlers?.onMessage(bytes))
  }
  /** Close from the transport side. */
  injectClose(error?: unknown): void {
    setImmediate(() => this.fireClose(error))
  }

  // ---- internals ----

  private fireClose(error?: unknown): void {
    if (this.closed) return
    this.closed = true
    this.handlers?.onClose(error)
  }

  private enqueue(bytes: Uint8Array, from: MemRaw | null): void {
    if (this.split !== undefined && bytes.length > 1) {
      let o = 0
      while (o < bytes.length) {
        const n = 1 + Math.floor(this.split() * Math.min(bytes.length - o, 300))
        this.inbox.push(bytes.subarray(o, o + n))
        o += n
      }
    } else {
      this.inbox.push(bytes)
    }
    this.writers.push([from, bytes.length])
    this.schedule()
  }

  private readonly writers: Array<[MemRaw | null, number]> = []

  private enqueueEnd(): void {
    this.inboxEnd = true
    this.schedule()
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.pump()
    })
  }

  private pump(): void {
    while (this.inbox.length > 0 && !this.paused && !this.closed) {
      const chunk = this.inbox.shift()!
      // account the delivered bytes back to the writer (a chunk belongs to the oldest write)
      let n = chunk.length
      while (n > 0 && this.writers.length > 0) {
        const w = this.writers[0]!
        const take = Math.min(n, w[1])
        w[1] -= take
        n -= take
        if (w[0] !== null) w[0].delivered(take)
        if (w[1] === 0) this.writers.shift()
      }
      this.handlers?.onData(chunk)
    }
    if (this.inbox.length === 0 && this.inboxEnd && !this.peerEnded && !this.closed) {
      this.peerEnded = true
      this.handlers?.onEnd()
      this.maybeClose()
    }
  }

  private delivered(n: number): void {
    this.undelivered -= n
    if (this.needDrain && this.undelivered <= this.hwm) {
      this.needDrain = false
      setImmediate(() => this.closed || this.handlers?.onDrain())
    }
  }

  private maybeClose(): void {
    const peer = this.peer
    if (peer === null) return
    if (this.ended && this.peerEnded && peer.ended && peer.peerEnded) {
      setImmediate(() => {
        this.fireClose()
        peer.fireClose()
      })
    }
  }
}

export const memRawPair = (options: MemRawOptions = {}): [MemRaw, MemRaw] => {
  const a = new MemRaw(options)
  const b = new MemRaw(options)
  a.peer = b
  b.peer = a
  return [a, b]
}

/** A clock the test advances by hand. */
export interface ManualClock extends SecretStreamClock {
  advance(ms: number): void
  readonly pending: number
}

export const manualClock = (): ManualClock => {
  let now = 0
  let nextId = 1
  const timers = new Map<number, { at: number; f: () => void }>()
  return {
    now: () => now,
    setTimer: (f, ms) => {
      const id = nextId++
      timers.set(id, { at: now + ms, f })
      return id
    },
    clearTimer: (h) => {
      timers.delete(h as number)
    },
    advance(ms: number) {
      const target = now + ms
      for (;;) {
        let best: [number, { at: number; f: () => void }] | null = null
        for (const e of timers) if (e[1].at <= target && (best === null || e[1].at < best[1].at)) best = e
        if (best === null) break
        timers.delete(best[0])
        now = best[1].at
        best[1].f()
      }
      now = target
    },
    get pending() {
      return timers.size
    }
  }
}

/** Resolve after the macrotask queue has run `n` times (lets setImmediate deliveries settle). */
export const ticks = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r))
}

// ---------------------------------------------------------------------------
// Node duplex pair (udx-like)
// ---------------------------------------------------------------------------

export class PipeEnd extends Duplex {
  peer!: PipeEnd
  private blockedWriter: (() => void) | null = null
  /** Unordered messages this end sent. */
  readonly sentMessages: Array<Uint8Array> = []
  /** Bytes written into this end. */
  bytesWritten = 0

  constructor() {
    super({ allowHalfOpen: true })
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.bytesWritten += chunk.length
    if (this.peer.destroyed) return cb(null)
    if (this.peer.push(chunk)) cb(null)
    else this.peer.blockedWriter = () => cb(null)
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.peer.push(null)
    cb(null)
  }

  override _read(): void {
    const w = this.blockedWriter
    if (w === null) return
    this.blockedWriter = null
    w()
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    const natural = this.writableFinished && this.readableEnded
    const peer = this.peer
    if (!natural) {
      setImmediate(() => {
        if (!peer.destroyed) peer.destroy(Object.assign(new Error("connection reset by peer"), { code: "ECONNRESET" }))
      })
    }
    cb(err)
  }

  trySend(buffer: Uint8Array): void {
    this.sentMessages.push(buffer)
    const peer = this.peer
    setImmediate(() => {
      if (!peer.destroyed) peer.emit("message", Buffer.from(buffer))
    })
  }

  send(buffer: Uint8Array): Promise<boolean> {
    this.trySend(buffer)
    return Promise.resolve(true)
  }
}

export const duplexPair = (): [PipeEnd, PipeEnd] => {
  const a = new PipeEnd()
  const b = new PipeEnd()
  a.peer = b
  b.peer = a
  return [a, b]
}
