/**
 * Node.js faces of the secret stream (connect.md §7), for the promise facade:
 *
 * - `NoiseSecretStream`: a `node:stream` Duplex compatible with
 *   `@hyperswarm/secret-stream`'s class in hyperdht mode (pre-established
 *   handshake): same constructor, events, properties and methods.
 * - `fromNodeDuplex`: adapts a Node or streamx duplex (a PassThrough pair, a
 *   udx-native stream, a TCP socket...) to the `RawStream` contract.
 */
import { Duplex } from "node:stream"
import { fastIfLoaded } from "../../layers/crypto/fast.js"
import { noble } from "../../layers/crypto/noble.js"
import type { CryptoImpl } from "../../layers/crypto/types.js"
import {
  PrematureClose,
  type RawStream,
  type RawStreamHandlers,
  SecretStreamCore,
  type SecretStreamClock,
  type SecretStreamEvents
} from "./secret-stream.js"

// ---------------------------------------------------------------------------
// Node duplex -> RawStream
// ---------------------------------------------------------------------------

/** What `fromNodeDuplex` needs: Node `Duplex` and streamx duplexes (udx-native) both fit. */
export interface NodeDuplexLike {
  on(event: string, listener: (...args: Array<any>) => void): unknown
  write(chunk: Uint8Array): boolean
  end(): unknown
  destroy(error?: Error): unknown
  pause?(): unknown
  resume?(): unknown
  /** udx-native: fire-and-forget unordered message. */
  trySend?(buffer: Uint8Array): unknown
  /** udx-native: unordered message, resolves when sent. */
  send?(buffer: Uint8Array): unknown
}

const asBuffer = (b: Uint8Array): Buffer =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)

/**
 * Wrap a duplex as a `RawStream`: 'data', 'end', 'drain', 'message',
 * 'error' and 'close' become the handlers (an 'error' closes at once with that
 * error); `sendMessage` uses `trySend` (or `send`) when the duplex has one.
 */
export const fromNodeDuplex = (d: NodeDuplexLike): RawStream => {
  const raw: {
    -readonly [K in keyof RawStream]: RawStream[K]
  } = {
    attach(h: RawStreamHandlers) {
      let closed = false
      d.on("data", (b: Uint8Array) => h.onData(b))
      d.on("end", () => h.onEnd())
      d.on("drain", () => h.onDrain())
      d.on("message", (m: Uint8Array) => h.onMessage(m))
      d.on("error", (e: unknown) => {
        if (closed) return
        closed = true
        h.onClose(e ?? new Error("raw stream error"))
      })
      d.on("close", () => {
        if (closed) return
        closed = true
        h.onClose()
      })
    },
    write: (b) => d.write(asBuffer(b)),
    end: () => {
      d.end()
    },
    destroy: (e) => {
      d.destroy(e instanceof Error ? e : undefined)
    }
  }
  if (typeof d.pause === "function") raw.pause = () => void d.pause!()
  if (typeof d.resume === "function") raw.resume = () => void d.resume!()
  if (typeof d.trySend === "function") {
    raw.sendMessage = (m) => {
      d.trySend!(asBuffer(m))
    }
  } else if (typeof d.send === "function") {
    raw.sendMessage = (m) => {
      const r = d.send!(asBuffer(m)) as { catch?: (f: () => void) => unknown } | undefined
      if (r !== undefined && r !== null && typeof r.catch === "function") r.catch(() => {})
    }
  }
  return raw
}

const isRawStream = (x: unknown): x is RawStream =>
  typeof x === "object" && x !== null && typeof (x as RawStream).attach === "function" &&
  typeof (x as RawStream).write === "function"

// ---------------------------------------------------------------------------
// NoiseSecretStream
// ---------------------------------------------------------------------------

/** The handshake as hyperdht passes it to `@hyperswarm/secret-stream`. */
export interface NoiseHandshakeResult {
  readonly tx: Uint8Array
  readonly rx: Uint8Array
  readonly hash: Uint8Array
  readonly publicKey: Uint8Array
  readonly remotePublicKey: Uint8Array
}

export interface NoiseSecretStreamOptions {
  /** The finished handshake; may be left out with `autoStart: false` and given to `start` later. */
  readonly handshake?: NoiseHandshakeResult
  /**
   * false: the stream is made before its transport and handshake exist
   * (hyperdht's connect returns the socket at once); `start(rawStream,
   * { handshake })` opens it. Writes made before are held until then.
   */
  readonly autoStart?: boolean
  /** Our public key before the handshake is known (`autoStart: false`). */
  readonly publicKey?: Uint8Array
  /** The peer's public key before the handshake is known (`autoStart: false`). */
  readonly remotePublicKey?: Uint8Array
  /** keepalive interval in ms (default 0 = off, as the reference class; hyperdht passes 5000). */
  readonly keepAlive?: number
  /** inactivity timeout in ms (default 0 = off). */
  readonly timeout?: number
  /** Deliver unordered messages as 'message' events (default true). */
  readonly enableSend?: boolean
  /** Drop zero-length messages (default: keepAlive > 0). */
  readonly filterZeroByteMessages?: boolean
  /** Crypto implementation (default: the fast one if loaded, else noble). */
  readonly crypto?: CryptoImpl
  readonly clock?: SecretStreamClock
  readonly testing?: {
    readonly header?: Uint8Array
    readonly initialCounter?: Uint8Array
    readonly counter?: Uint8Array
  }
}

const EMPTY = new Uint8Array(0)

/**
 * `@hyperswarm/secret-stream`-compatible Duplex over a raw stream with a
 * finished handshake. Events: 'open' and 'connect' (once, after start),
 * 'data', 'end', 'close', 'error', 'message' (unordered messages), 'drain'.
 */
export class NoiseSecretStream extends Duplex {
  readonly isInitiator: boolean
  /** The stream passed to the constructor or to `start` (Node duplex or RawStream); null before start. */
  rawStream: unknown
  publicKey: Uint8Array
  remotePublicKey: Uint8Array
  /** The Noise handshake hash (64 bytes; the same on both ends); null before start. */
  handshakeHash: Uint8Array | null = null
  /** Resolves true once open, false if destroyed first. */
  readonly opened: Promise<boolean>
  connected = false
  /** Slot for upper layers (as the reference). */
  userData: unknown = null

  private coreValue: SecretStreamCore | null = null
  private openedDone: ((v: boolean) => void) | null = null
  private pendingWrite: ((e?: Error | null) => void) | null = null
  private constructed: ((e?: Error | null) => void) | null = null
  private readonly enableSend: boolean
  private readonly opts: NoiseSecretStreamOptions

  constructor(isInitiator: boolean, rawStream: NodeDuplexLike | RawStream | null, opts: NoiseSecretStreamOptions) {
    super({ allowHalfOpen: true })
    if (typeof isInitiator !== "boolean") throw new Error("isInitiator should be a boolean")
    if (opts === undefined) throw new Error("options are required")
    const deferred = opts.autoStart === false
    if (!deferred && (opts.handshake === undefined || rawStream === null)) throw new Error("a pre-established handshake is required")
    this.isInitiator = isInitiator
    this.rawStream = rawStream
    this.opts = { ...opts }
    this.enableSend = opts.enableSend !== false
    this.publicKey = asBuffer(opts.handshake?.publicKey ?? opts.publicKey ?? EMPTY)
    this.remotePublicKey = asBuffer(opts.handshake?.remotePublicKey ?? opts.remotePublicKey ?? EMPTY)
    this.opened = new Promise<boolean>((resolve) => {
      this.openedDone = resolve
    })
    if (!deferred) this.start(rawStream!, { handshake: opts.handshake! })
  }

  /** The state machine underneath (statistics, rekeying, low-level writes); throws before start. */
  get core(): SecretStreamCore {
    if (this.coreValue === null) throw new Error("the secret stream has not started")
    return this.coreValue
  }

  /** True once `start` ran. */
  get started(): boolean {
    return this.coreValue !== null
  }

  /** Open the stream over `rawStream` with the finished handshake (once; later calls are ignored). */
  start(
    rawStream: NodeDuplexLike | RawStream,
    params: {
      readonly handshake: NoiseHandshakeResult
      /**
       * Emit an initiator's 'open' in this call, not on the next tick: for an
       * owner whose listeners have been attached since before (a dial's
       * socket, started on a datagram long after connect() returned it), so
       * that 'open' does not wait for the rest of the step that started it.
       */
      readonly openNow?: boolean
    }
  ): void {
    if (this.coreValue !== null || this.destroyed) return
    const opts = this.opts
    const h = params.handshake
    this.rawStream = rawStream
    this.publicKey = asBuffer(h.publicKey)
    this.remotePublicKey = asBuffer(h.remotePublicKey)
    this.handshakeHash = asBuffer(h.hash)
    const raw = isRawStream(rawStream) ? rawStream : fromNodeDuplex(rawStream)
    const events: SecretStreamEvents = {
      onData: (plain) => this.push(asBuffer(plain)),
      onEnd: () => {
        this.push(null)
      },
      onMessage: (m) => {
        if (this.enableSend) this.emit("message", asBuffer(m))
      },
      onDrain: () => {
        const cb = this.pendingWrite
        if (cb === null) return
        this.pendingWrite = null
        cb(null)
      },
      onClose: (error) => {
        if (this.destroyed) return
        // as the reference: a raw close before both ends is a destroy without error
        if (error === null) return // both sides ended: Node closes us on its own
        this.destroy(error instanceof PrematureClose ? undefined : error)
      }
    }
    const crypto = opts.crypto ?? fastIfLoaded() ?? noble
    this.coreValue = new SecretStreamCore(
      {
        isInitiator: this.isInitiator,
        tx: h.tx,
        rx: h.rx,
        handshakeHash: h.hash,
        publicKey: h.publicKey,
        remotePublicKey: h.remotePublicKey
      },
      crypto,
      raw,
      events,
      {
        keepAlive: opts.keepAlive ?? 0,
        timeout: opts.timeout ?? 0,
        ...(opts.filterZeroByteMessages !== undefined ? { filterZeroByteMessages: opts.filterZeroByteMessages } : {}),
        ...(opts.clock !== undefined ? { clock: opts.clock } : {}),
        ...(opts.testing !== undefined ? { testing: opts.testing } : {})
      }
    )
    this.coreValue.start()
    const constructed = this.constructed
    this.constructed = null
    if (constructed !== null) constructed(null)
    // A responder's stream is handed to a server's 'connection' listeners
    // (deferred out of the node's step) before it opens, as hyperdht's are:
    // its 'open' waits one turn of the event loop, so a listener attached in
    // 'connection' sees it. The initiator's opens on the next tick, or at
    // once with `openNow`.
    const emitOpen = () => {
      if (this.destroyed || this.coreValue === null || this.coreValue.closed) return
      this.resolveOpened(true)
      this.emit("open")
      this.emit("connect")
    }
    if (!this.isInitiator) setImmediate(emitOpen)
    else if (params.openNow !== true) process.nextTick(emitOpen)
    else {
      try {
        emitOpen()
      } catch (e) {
        // a listener that throws does not throw into the caller's step: rethrown, uncaught, as
        // from an event emitted on the next tick
        process.nextTick(() => {
          throw e
        })
      }
    }
  }

  /**
   * Destroying a stream that never started: Node waits for construction
   * before it destroys, so construction ends here (nothing is started).
   */
  override destroy(error?: Error): this {
    const pending = this.constructed
    if (pending === null) return super.destroy(error)
    this.constructed = null
    super.destroy(error)
    pending(null)
    return this
  }

  /** Node holds writes and reads until construction ends: here, until `start`. */
  override _construct(callback: (error?: Error | null) => void): void {
    if (this.coreValue !== null || this.destroyed) callback(null)
    else this.constructed = callback
  }

  get keepAlive(): number {
    return this.coreValue?.keepAlive ?? this.opts.keepAlive ?? 0
  }

  get timeout(): number {
    return this.coreValue?.timeout ?? this.opts.timeout ?? 0
  }

  /** Plaintext bytes written / read so far. */
  get rawBytesWritten(): number {
    return this.coreValue?.bytesWritten ?? 0
  }
  get rawBytesRead(): number {
    return this.coreValue?.bytesRead ?? 0
  }

  setKeepAlive(ms: number): void {
    if (this.coreValue !== null) this.coreValue.setKeepAlive(ms || 0)
    else (this.opts as { keepAlive?: number }).keepAlive = ms || 0
  }

  setTimeout(ms: number): void {
    if (this.coreValue !== null) this.coreValue.setTimeout(ms || 0)
    else (this.opts as { timeout?: number }).timeout = ms || 0
  }

  sendKeepAlive(): void {
    this.coreValue?.sendKeepAlive()
  }

  /** Unordered message; false when it could not be sent (not open, closed, no message support, nonce exhausted). */
  send(buffer: Uint8Array): boolean {
    return this.coreValue !== null && this.coreValue.send(buffer) === true
  }

  /** Unordered message, fire and forget. */
  trySend(buffer: Uint8Array): void {
    this.coreValue?.send(buffer)
  }

  override _read(): void {
    this.coreValue?.resume()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (error?: Error | null) => void): void {
    const r = this.core.write(chunk)
    if (r === true) cb(null)
    else if (r === false) this.pendingWrite = cb
    else cb(r)
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, cb: (error?: Error | null) => void): void {
    const r = this.core.writeBatch(chunks.map((c) => c.chunk))
    if (r === true) cb(null)
    else if (r === false) this.pendingWrite = cb
    else cb(r)
  }

  override _final(cb: (error?: Error | null) => void): void {
    this.core.end()
    cb(null)
  }

  override _destroy(error: Error | null, cb: (error?: Error | null) => void): void {
    this.coreValue?.destroy(error ?? undefined)
    this.resolveOpened(false)
    const pending = this.pendingWrite
    this.pendingWrite = null
    if (pending !== null) pending(error ?? new Error("Stream destroyed"))
    cb(error)
  }

  private resolveOpened(v: boolean): void {
    const done = this.openedDone
    if (done === null) return
    this.openedDone = null
    if (v) this.connected = true
    done(v)
  }
}
