/**
 * UDX over a `UdpSocket`: demultiplexing, one session actor per stream, an
 * Effect API and a Node `Duplex` adapter (spec: udx.md §2, §4; the protocol
 * itself is the deterministic core in ./udx-stream.ts).
 *
 * - `UdxMux` is bound to one socket. `handle(datagram)` is synchronous: it
 *   consumes UDX packets addressed to a known stream id (pushing the
 *   datagram, as is, into that stream's mailbox with `Queue.offerUnsafe`) and
 *   returns false for everything else, so a DHT driver sharing the socket can
 *   call it first from its push receiver. In standalone mode the mux installs
 *   itself as the socket's receiver and forwards non-UDX datagrams to an
 *   optional fallback.
 * - Each stream is an actor: one fiber owns the `UdxStreamCore`, drains its
 *   mailbox with `Queue.takeAll` (datagrams and commands in one batch), runs
 *   due timers, then flushes once per batch (one ACK covers the batch, partial
 *   packets coalesce). Timers: after each batch the actor registers the
 *   core's next deadline in the mux's timer heap; ONE alarm fiber per mux
 *   sleeps until the earliest deadline and posts a wake-up message into each
 *   due session's mailbox (the loop never races `takeAll` against a sleep,
 *   and a busy mux forks one alarm per deadline change, not one per stream).
 * - Time is the Clock's monotonic time in fractional milliseconds, so the same
 *   actor runs on real time and on TestClock.
 * - Back-pressure: `write` returns once its chunk is queued, but waits while
 *   the bytes written and not yet sent exceed the high watermark (262 144).
 *   The receive window follows what the reader has consumed (flow control
 *   toward a slow reader).
 * - A packet for a stream that is not connected yet goes through the stream's
 *   `firewall` (udx.md §4): accepted packets connect the stream to their
 *   source (with the `remoteId` given at creation); rejected ones are dropped.
 *
 * Bad packets never throw: they are dropped and counted.
 *
 * Supervision: a defect (an exception) while a stream handles its batch
 * (its core, or the reader it hands data to, e.g. a secret stream
 * decrypting) closes that stream and only it: the mux's `defects` counts
 * it, it is logged through Effect's logger, and the stream is destroyed
 * with a `UdxError` EDEFECT carrying the exception (DESTROY to the peer;
 * the reader sees the error). One try/catch per batch, on the hot path
 * nothing else.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Duplex } from "node:stream"
import type { Datagram, Endpoint, UdpSocket } from "../../layers/Transport.js"
import { HIGH_WATERMARK, MTU_MAX, UdxError, UdxStreamCore, type UdxStreamEvents, type UdxStreamStats } from "./udx-stream.js"

export { UdxError, type UdxErrorCode, type UdxStreamStats } from "./udx-stream.js"

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

export interface UdxStreamConfig {
  /** The peer's stream id when known before the first packet (for the firewall path). */
  readonly remoteId?: number
  /**
   * Asked when a packet arrives for this stream while it is not connected:
   * return true to drop it; false connects the stream to the packet's source
   * on the socket it arrived on (needs `remoteId`). Default: drop.
   */
  readonly firewall?: (from: Endpoint, socket: UdpSocket) => boolean
  /**
   * false: a packet the firewall accepts does not connect the stream; it is
   * kept (a few) until the owner calls `connect` (hyperdht's client records
   * the server's first packet and connects once its handshake is done).
   */
  readonly connectOnFirewall?: boolean
  /** Base MTU (default 1200). */
  readonly mtu?: number
  /**
   * Probe the path MTU up to this size (max 1500). Default 1500, as the
   * shipped udx-native does; set it to `mtu` to stay at the base size.
   */
  readonly maxMtu?: number
  /** Receive window (bytes). Default 4 MiB. */
  readonly rwndMax?: number
  /** Write high watermark (bytes). Default 262 144. */
  readonly highWaterMark?: number
  /** HEARTBEAT interval while idle (ms); 0 = off (default). */
  readonly keepAlive?: number
  /** Keep acknowledging retransmissions at least this long after a clean close (ms). Default 15 000. */
  readonly linger?: number
  /** Pacing (default true). */
  readonly pacing?: boolean
  /** Congestion window cap (packets). */
  readonly maxCwnd?: number
  /** Send an ACK once this many DATA/END packets are unacknowledged. Default 32. */
  readonly ackEvery?: number
  /** How long (ms) a non-urgent ACK may wait for more packets to cover. Default 1. */
  readonly ackDelay?: number
}

export interface UdxMuxOptions {
  /** Install the mux as the socket's receiver (default true). */
  readonly standalone?: boolean
  /** Standalone mode: where non-UDX datagrams (and packets for unknown ids) go. */
  readonly fallback?: (datagram: Datagram) => void
  /** Defaults for every stream of this mux. */
  readonly defaults?: UdxStreamConfig
}

export interface UdxMuxStats {
  readonly streams: number
  /** UDX packets consumed for known streams. */
  readonly routed: number
  /** Datagrams that are not UDX (handed back / to the fallback). */
  readonly notUdx: number
  /** UDX packets for unknown ids (handed back / to the fallback). */
  readonly unknownId: number
  /** Packets dropped by a firewall (stream not connected). */
  readonly firewalled: number
  /** Defects (exceptions) caught around a stream core, its reader or its path watcher; each closed its stream (should stay 0). */
  readonly defects: number
}

export interface UdxStream {
  readonly id: number
  readonly remoteId: number | null
  readonly remote: Endpoint | null
  readonly connected: boolean
  /** The socket the stream sends from (the mux's own until connected on another). */
  readonly socket: UdpSocket
  /** Connect to the peer's stream (or re-point it to a new address / id), sending from `socket` (default: the current one). */
  connect(remoteId: number, remote: Endpoint, socket?: UdpSocket): Effect.Effect<void, UdxError>
  /** The same, synchronously (false when the stream is closed). */
  connectUnsafe(remoteId: number, remote: Endpoint, socket?: UdpSocket): boolean
  /**
   * Watch where a connected stream's packets come from: `f` is called for
   * each packet with its source and the socket it arrived on (a relayed
   * connection learning of a direct path, then confirming it). Only while
   * set; null stops it.
   */
  watchPath(f: ((from: Endpoint, socket: UdpSocket) => void) | null): void
  /** Incoming bytes in order; ends on the peer's END, fails on reset / timeout. Consume once. */
  readonly readable: Stream.Stream<Uint8Array, UdxError>
  /** Incoming unordered messages; ends when the stream closes. */
  readonly messages: Stream.Stream<Uint8Array>
  /** Queue bytes; waits while more than the high watermark is unsent. */
  write(chunk: Uint8Array): Effect.Effect<void, UdxError>
  /** Half close after everything written so far. */
  end(): Effect.Effect<void>
  /** Abort: DESTROY to the peer (if connected), close at once. */
  destroy(error?: UdxError): Effect.Effect<void>
  /** Send an unordered message (≤ mss bytes). */
  send(message: Uint8Array): Effect.Effect<void, UdxError>
  /** Same, fire-and-forget: false when it cannot be sent. */
  trySend(message: Uint8Array): boolean
  /** Completes when the stream has closed (for any reason). */
  readonly closed: Effect.Effect<void>
  /** Completes on a clean close (or local destroy), fails with the close error. */
  readonly done: Effect.Effect<void, UdxError>
  /** Completes when our END has been acknowledged. */
  readonly flushed: Effect.Effect<void, UdxError>
  stats(): UdxStreamStats
  // ---- synchronous face (Duplex adapter, promise facades) ----
  /** Queue bytes; false when above the high watermark (or closed). */
  writeUnsafe(chunk: Uint8Array): boolean
  endUnsafe(): void
  destroyUnsafe(error?: UdxError): void
  /** Call `f` once the unsent backlog is at or below the high watermark (or with the error on close). */
  onDrainUnsafe(f: (error: UdxError | null) => void): void
  /** Call `f` once our END is acknowledged (or with the error on close). */
  onFlushedUnsafe(f: (error: UdxError | null) => void): void
  /** Route data/end/close to a listener instead of `readable` (the Duplex adapter). */
  attachUnsafe(listener: UdxStreamListener): void
  /** Report bytes consumed by a listener (flow control). */
  consumedUnsafe(n: number): void
  readonly isClosed: boolean
  readonly error: UdxError | null
}

export interface UdxStreamListener {
  onData(chunk: Uint8Array): void
  onEnd(): void
  onClose(error: UdxError | null): void
  /** Messages go here instead of `messages` when present. */
  onMessage?(message: Uint8Array): void
}

export interface UdxMux {
  readonly socket: UdpSocket
  /**
   * Consume a UDX datagram for a known stream; false for anything else.
   * Synchronous, never throws. `socket` is the socket it arrived on when the
   * mux serves several (stream ids are looked up mux-wide, as one UDX
   * instance does over all its sockets, udx.md §2); default the mux's own.
   */
  handle(datagram: Datagram, socket?: UdpSocket): boolean
  /** Create a stream at once (plain code); `createStream` is its Effect. */
  createStreamUnsafe(localId: number, config?: UdxStreamConfig): UdxStream | UdxError
  /** A stream id not in use (random, never 0). */
  freeId(random?: () => number): number
  /** Create (register) a stream with our id; connect it with `stream.connect`. */
  createStream(localId: number, config?: UdxStreamConfig): Effect.Effect<UdxStream, UdxError>
  /** `createStream` + `connect`. */
  connect(localId: number, remoteId: number, remote: Endpoint, config?: UdxStreamConfig): Effect.Effect<UdxStream, UdxError>
  stats(): UdxMuxStats
}

// ---------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------

const CMD_WRITE = 1
const CMD_END = 2
const CMD_DESTROY = 3
const CMD_SEND = 4
const CMD_CONSUMED = 5
const CMD_CONNECT = 6
const CMD_WAKE = 7
const NO_MAIL: ReadonlyArray<Mail> = []
/** Packets kept per unconnected stream (see `connectOnFirewall`). */
const MAX_EARLY_PACKETS = 32

class Cmd {
  constructor(
    readonly kind: number,
    readonly data: Uint8Array | null,
    readonly n: number,
    readonly error: UdxError | null
  ) {}
}
const END_CMD = new Cmd(CMD_END, null, 0, null)

type Mail = Datagram | Cmd

const u32 = (b: Uint8Array, p: number): number => (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0

const closedError = (): UdxError => new UdxError({ code: "ECLOSED", detail: "the stream is closed" })

/** One stream: the core, its mailbox and the shared state between the actor and callers. */
class Session implements UdxStreamEvents, UdxStream {
  readonly core: UdxStreamCore
  remote: Endpoint | null = null
  remoteId: number | null
  /** Routing-level: packets are accepted (set synchronously by connect / firewall). */
  connected = false
  isClosed = false
  error: UdxError | null = null
  /** A defect closed the stream (`Mux.fault`). */
  failed = false
  private endCalled = false
  /** Bytes of WRITE commands in the mailbox. */
  mailboxBytes = 0
  /** Core's unsent bytes, as of the last batch. */
  backlog = 0
  /** The deadline this session is registered for in the mux's timer heap (Infinity = none). */
  wakeAt = Infinity
  /**
   * Run a due wake-up as a step at once (set by the actor); false when it
   * cannot (the mailbox holds work, a step is running, the stream ended):
   * the wake-up then goes through the mailbox.
   */
  wakeDirect: ((at: number) => boolean) | null = null
  private drainWaiters: Array<(error: UdxError | null) => void> = []
  private flushWaiters: Array<(error: UdxError | null) => void> = []
  private listener: UdxStreamListener | null = null
  private consumedPending = 0
  private readonly consumeThreshold: number
  readonly highWaterMark: number
  /** Let go once the stream is connected (it is only asked before): its closure may hold a whole dial. */
  firewall: ((from: Endpoint, socket: UdpSocket) => boolean) | null
  socket: UdpSocket
  /** Packets the firewall accepted before the stream could connect (replayed by `connect`). */
  early: Array<Datagram> = []
  /** An accepted first packet connects the stream to its source (false: the owner connects it). */
  readonly connectOnFirewall: boolean
  /** See `watchPath`. */
  pathWatcher: ((from: Endpoint, socket: UdpSocket) => void) | null = null
  private readonly closedDeferred = Deferred.makeUnsafe<void>()
  private readonly doneDeferred = Deferred.makeUnsafe<void, UdxError>()
  private readonly flushedDeferred = Deferred.makeUnsafe<void, UdxError>()
  /**
   * The queues behind `readable` and `messages`, made on first use: a stream
   * read through a listener (the Duplex, the secret stream) never needs them
   * (two queues and their streams were about 2.5 KB of every stream).
   */
  private rq: Queue.Queue<Uint8Array, UdxError | Cause.Done> | null = null
  private mq: Queue.Queue<Uint8Array, Cause.Done> | null = null
  private readableStream: Stream.Stream<Uint8Array, UdxError> | null = null

  constructor(
    readonly id: number,
    config: UdxStreamConfig,
    readonly mux: Mux,
    readonly mailbox: Queue.Queue<Mail>,
    now: number
  ) {
    this.remoteId = config.remoteId ?? null
    this.firewall = config.firewall ?? null
    this.socket = mux.socket
    this.connectOnFirewall = config.connectOnFirewall !== false
    this.highWaterMark = config.highWaterMark ?? HIGH_WATERMARK
    const rwndMax = config.rwndMax ?? 4_194_304
    this.consumeThreshold = Math.max(1, Math.min(65_536, Math.floor(rwndMax / 8)))
    this.core = new UdxStreamCore(
      {
        localId: id,
        transmit: (b) => {
          const r = this.remote
          if (r !== null) this.socket.send(r, b)
        },
        events: this,
        autoFlush: false,
        manualConsume: true,
        rwndMax,
        highWaterMark: this.highWaterMark,
        ...(config.mtu !== undefined ? { mtu: config.mtu } : {}),
        maxMtu: config.maxMtu ?? MTU_MAX,
        ...(config.keepAlive !== undefined ? { keepAlive: config.keepAlive } : {}),
        ...(config.linger !== undefined ? { linger: config.linger } : {}),
        ...(config.pacing !== undefined ? { pacing: config.pacing } : {}),
        ...(config.maxCwnd !== undefined ? { maxCwnd: config.maxCwnd } : {}),
        ...(config.ackEvery !== undefined ? { ackEvery: config.ackEvery } : {}),
        ...(config.ackDelay !== undefined ? { ackDelay: config.ackDelay } : {})
      },
      now
    )
  }

  private readQueue(): Queue.Queue<Uint8Array, UdxError | Cause.Done> {
    let q = this.rq
    if (q === null) {
      q = Effect.runSync(Queue.unbounded<Uint8Array, UdxError | Cause.Done>())
      this.rq = q
      if (this.isClosed) {
        if (this.error !== null) Queue.failCauseUnsafe(q, Cause.fail(this.error))
        else Queue.endUnsafe(q)
      }
    }
    return q
  }

  private messageQueue(): Queue.Queue<Uint8Array, Cause.Done> {
    let q = this.mq
    if (q === null) {
      q = Effect.runSync(Queue.dropping<Uint8Array, Cause.Done>(1024))
      this.mq = q
      if (this.isClosed) Queue.endUnsafe(q)
    }
    return q
  }

  get readable(): Stream.Stream<Uint8Array, UdxError> {
    let r = this.readableStream
    if (r === null) {
      r = Stream.fromQueue(this.readQueue()).pipe(
        Stream.mapArray((chunks) => {
          let n = 0
          for (let i = 0; i < chunks.length; i++) n += chunks[i]!.length
          this.consumedUnsafe(n)
          return chunks
        })
      )
      this.readableStream = r
    }
    return r
  }
  get messages(): Stream.Stream<Uint8Array> {
    return Stream.fromQueue(this.messageQueue())
  }
  get closed(): Effect.Effect<void> {
    return Deferred.await(this.closedDeferred)
  }
  get done(): Effect.Effect<void, UdxError> {
    return Deferred.await(this.doneDeferred)
  }
  get flushed(): Effect.Effect<void, UdxError> {
    return Deferred.await(this.flushedDeferred)
  }

  // ---- events from the core (inside the actor) ----

  onData(chunk: Uint8Array): void {
    const l = this.listener
    if (l !== null) l.onData(chunk)
    else Queue.offerUnsafe(this.readQueue(), chunk)
  }
  onEnd(): void {
    const l = this.listener
    if (l !== null) l.onEnd()
    else Queue.endUnsafe(this.readQueue())
  }
  onMessage(message: Uint8Array): void {
    const l = this.listener
    if (l !== null && l.onMessage !== undefined) l.onMessage(message)
    else Queue.offerUnsafe(this.messageQueue(), message)
  }
  onDrain(): void {
    // handled after each batch (mailbox bytes count too)
  }
  onClose(error: UdxError | null): void {
    this.isClosed = true
    this.error = error
    this.connected = this.core.lingering
    const rq = this.rq
    if (rq !== null) {
      if (error !== null) Queue.failCauseUnsafe(rq, Cause.fail(error))
      else Queue.endUnsafe(rq)
    }
    if (this.mq !== null) Queue.endUnsafe(this.mq)
    const err = error ?? closedError()
    for (const w of this.drainWaiters.splice(0)) w(err)
    if (!this.core.localEnded) {
      Deferred.doneUnsafe(this.flushedDeferred, Exit.fail(err))
      for (const w of this.flushWaiters.splice(0)) w(err)
    }
    Deferred.doneUnsafe(this.closedDeferred, Exit.void)
    Deferred.doneUnsafe(this.doneDeferred, error === null ? Exit.void : Exit.fail(error))
    const l = this.listener
    if (l !== null) l.onClose(error)
  }

  /** After every batch: release writers and flush waiters. */
  afterBatch(): void {
    this.backlog = this.core.queuedBytes
    if (this.drainWaiters.length > 0 && this.mailboxBytes + this.backlog <= this.highWaterMark) {
      for (const w of this.drainWaiters.splice(0)) w(null)
    }
    if (this.core.localEnded && !Deferred.isDoneUnsafe(this.flushedDeferred)) {
      Deferred.doneUnsafe(this.flushedDeferred, Exit.void)
      for (const w of this.flushWaiters.splice(0)) w(null)
    }
  }

  command(m: Cmd, now: number): void {
    const core = this.core
    switch (m.kind) {
      case CMD_WRITE:
        this.mailboxBytes -= m.data!.length
        core.write(now, m.data!)
        break
      case CMD_END:
        core.end(now)
        break
      case CMD_DESTROY:
        core.destroy(now, m.error)
        break
      case CMD_SEND:
        core.sendMessage(now, m.data!)
        break
      case CMD_CONSUMED:
        core.consumed(now, m.n)
        break
      case CMD_CONNECT:
        core.connect(now, m.n)
        break
    }
  }

  // ---- synchronous face ----

  writeUnsafe(chunk: Uint8Array): boolean {
    if (this.isClosed || this.endCalled) return false
    if (chunk.length === 0) return this.mailboxBytes + this.backlog <= this.highWaterMark
    this.mailboxBytes += chunk.length
    Queue.offerUnsafe(this.mailbox, new Cmd(CMD_WRITE, chunk, 0, null))
    return this.mailboxBytes + this.backlog <= this.highWaterMark
  }
  endUnsafe(): void {
    if (this.isClosed || this.endCalled) return
    this.endCalled = true
    Queue.offerUnsafe(this.mailbox, END_CMD)
  }
  destroyUnsafe(error?: UdxError): void {
    if (this.isClosed) return
    Queue.offerUnsafe(this.mailbox, new Cmd(CMD_DESTROY, null, 0, error ?? null))
  }
  onDrainUnsafe(f: (error: UdxError | null) => void): void {
    if (this.isClosed) f(this.error ?? closedError())
    else if (this.mailboxBytes + this.backlog <= this.highWaterMark) f(null)
    else this.drainWaiters.push(f)
  }
  onFlushedUnsafe(f: (error: UdxError | null) => void): void {
    if (this.core.localEnded) f(null)
    else if (this.isClosed) f(this.error ?? closedError())
    else this.flushWaiters.push(f)
  }
  attachUnsafe(listener: UdxStreamListener): void {
    this.listener = listener
    // hand over whatever already arrived
    while (this.rq !== null) {
      const exit = Queue.takeUnsafe(this.rq)
      if (exit === undefined) break
      if (exit._tag === "Success") listener.onData(exit.value)
      else break
    }
    if (this.core.remoteEnded) listener.onEnd()
    if (this.isClosed) listener.onClose(this.error)
  }
  consumedUnsafe(n: number): void {
    if (n <= 0 || this.isClosed) return
    this.consumedPending += n
    if (this.consumedPending >= this.consumeThreshold) {
      Queue.offerUnsafe(this.mailbox, new Cmd(CMD_CONSUMED, null, this.consumedPending, null))
      this.consumedPending = 0
    }
  }
  trySend(message: Uint8Array): boolean {
    if (this.isClosed || !this.connected || message.length > this.core.mss) return false
    Queue.offerUnsafe(this.mailbox, new Cmd(CMD_SEND, message, 0, null))
    return true
  }
  stats(): UdxStreamStats {
    return this.core.stats()
  }

  // ---- Effect face ----

  connect(remoteId: number, remote: Endpoint, socket?: UdpSocket): Effect.Effect<void, UdxError> {
    return Effect.suspend(() => {
      if (this.isClosed) return Effect.fail(this.error ?? closedError())
      this.connectUnsafe(remoteId, remote, socket)
      return Effect.void
    })
  }
  watchPath(f: ((from: Endpoint, socket: UdpSocket) => void) | null): void {
    this.pathWatcher = f
  }
  connectUnsafe(remoteId: number, remote: Endpoint, socket?: UdpSocket): boolean {
    if (this.isClosed) return false
    if (socket !== undefined) this.socket = socket
    this.remoteId = remoteId >>> 0
    this.remote = { host: remote.host, port: remote.port }
    this.connected = true
    this.firewall = null
    Queue.offerUnsafe(this.mailbox, new Cmd(CMD_CONNECT, null, remoteId >>> 0, null))
    if (this.early.length > 0) {
      const early = this.early
      this.early = []
      for (const d of early) Queue.offerUnsafe(this.mailbox, d)
    }
    return true
  }
  write(chunk: Uint8Array): Effect.Effect<void, UdxError> {
    return Effect.suspend(() => {
      if (this.isClosed) return Effect.fail(this.error ?? closedError())
      if (this.endCalled) return Effect.fail(new UdxError({ code: "ECLOSED", detail: "write after end" }))
      if (this.writeUnsafe(chunk)) return Effect.void
      return Effect.callback<void, UdxError>((resume) => {
        this.onDrainUnsafe((e) => resume(e === null ? Effect.void : Effect.fail(e)))
      })
    })
  }
  end(): Effect.Effect<void> {
    return Effect.sync(() => this.endUnsafe())
  }
  destroy(error?: UdxError): Effect.Effect<void> {
    return Effect.sync(() => this.destroyUnsafe(error))
  }
  send(message: Uint8Array): Effect.Effect<void, UdxError> {
    return Effect.suspend(() => {
      if (this.isClosed) return Effect.fail(this.error ?? closedError())
      if (message.length > this.core.mss) {
        return Effect.fail(new UdxError({ code: "EMSGSIZE", detail: `message of ${message.length} bytes exceeds the ${this.core.mss}-byte limit` }))
      }
      if (!this.connected) return Effect.fail(new UdxError({ code: "ECLOSED", detail: "the stream is not connected" }))
      Queue.offerUnsafe(this.mailbox, new Cmd(CMD_SEND, message, 0, null))
      return Effect.void
    })
  }
}

class Mux implements UdxMux {
  readonly sessions = new Map<number, Session>()
  routed = 0
  notUdx = 0
  unknownId = 0
  firewalled = 0
  defects = 0

  private readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>

  constructor(
    readonly socket: UdpSocket,
    readonly scope: Scope.Scope,
    readonly clock: Clock.Clock,
    context: Context.Context<never>,
    readonly defaults: UdxStreamConfig
  ) {
    this.runFork = Effect.runForkWith(context)
  }

  now(): number {
    return Number(this.clock.monotonicTimeNanosUnsafe()) / 1e6
  }

  // ---- timers: one heap and one alarm fiber per mux ----
  // Sessions register their next deadline; the alarm fiber sleeps until the
  // earliest one and posts a wake-up into every due session's mailbox.
  // Entries are lazily invalidated (a session's `wakeAt` must still match).
  private readonly heapAt: Array<number> = []
  private readonly heapSession: Array<Session> = []
  private alarmAt = Infinity
  private alarm: Fiber.Fiber<void> | undefined = undefined
  closed = false

  schedule(s: Session, deadline: number, now: number): void {
    if (deadline === Infinity || deadline >= s.wakeAt) return
    s.wakeAt = deadline
    this.heapPush(deadline, s)
    if (deadline < this.alarmAt) this.armAlarm(deadline, now)
  }

  private armAlarm(deadline: number, now: number): void {
    if (this.closed) return
    if (this.alarm !== undefined) this.alarm.interruptUnsafe()
    this.alarmAt = deadline
    this.alarm = this.runFork(
      Effect.andThen(
        this.clock.sleep(Duration.millis(Math.max(0, deadline - now))),
        Effect.sync(() => this.onAlarm(deadline))
      )
    )
  }

  /** Stop the timer (the mux's scope is closing). */
  shutdown(): void {
    this.closed = true
    if (this.alarm !== undefined) this.alarm.interruptUnsafe()
    this.alarm = undefined
    this.alarmAt = Infinity
  }

  private onAlarm(deadline: number): void {
    this.alarm = undefined
    this.alarmAt = Infinity
    // the sleep elapsed: it is at least `deadline` (clocks may round a hair below)
    const now = Math.max(this.now(), deadline)
    while (this.heapAt.length > 0 && this.heapAt[0]! <= now) {
      const at = this.heapAt[0]!
      const s = this.heapPop()
      if (s.wakeAt === at) {
        s.wakeAt = Infinity
        if (s.wakeDirect === null || !s.wakeDirect(at)) Queue.offerUnsafe(s.mailbox, new Cmd(CMD_WAKE, null, at, null))
      }
    }
    if (this.heapAt.length > 0) {
      const next = this.heapAt[0]!
      if (next < this.alarmAt) this.armAlarm(next, now)
    }
  }

  private heapPush(at: number, s: Session): void {
    const A = this.heapAt
    const S = this.heapSession
    let i = A.length
    A.push(at)
    S.push(s)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (A[p]! <= at) break
      A[i] = A[p]!
      S[i] = S[p]!
      i = p
    }
    A[i] = at
    S[i] = s
  }

  private heapPop(): Session {
    const A = this.heapAt
    const S = this.heapSession
    const top = S[0]!
    const lastAt = A.pop()!
    const lastS = S.pop()!
    const n = A.length
    if (n > 0) {
      let i = 0
      while (true) {
        const l = 2 * i + 1
        if (l >= n) break
        const r = l + 1
        const c = r < n && A[r]! < A[l]! ? r : l
        if (A[c]! >= lastAt) break
        A[i] = A[c]!
        S[i] = S[c]!
        i = c
      }
      A[i] = lastAt
      S[i] = lastS
    }
    return top
  }

  handle(d: Datagram, socket?: UdpSocket): boolean {
    const data = d.data
    if (data.length < 20 || data[0] !== 0xff || data[1] !== 0x01) {
      this.notUdx++
      return false
    }
    const s = this.sessions.get(u32(data, 4))
    if (s === undefined) {
      this.unknownId++
      return false
    }
    if (!s.connected) {
      if (s.isClosed) {
        this.unknownId++
        return false
      }
      let accept = false
      if (s.firewall !== null) {
        try {
          accept = s.firewall(d.from, socket ?? this.socket) === false
        } catch {
          accept = false
        }
      }
      if (!accept) {
        this.firewalled++
        return true
      }
      if (s.remoteId === null || !s.connectOnFirewall) {
        // accepted before the peer's id is known (a client whose server
        // answered faster than the handshake reply): kept for `connect`
        if (s.early.length < MAX_EARLY_PACKETS) s.early.push(d)
        else this.firewalled++
        return true
      }
      s.connectUnsafe(s.remoteId, d.from, socket)
    } else if (s.pathWatcher !== null) {
      try {
        s.pathWatcher(d.from, socket ?? this.socket)
      } catch (e) {
        this.fault(s, e, this.now())
        return true
      }
    }
    this.routed++
    Queue.offerUnsafe(s.mailbox, d)
    return true
  }

  freeId(random: () => number = Math.random): number {
    for (let i = 0; i < 64; i++) {
      const id = Math.floor(random() * 0x100000000) >>> 0
      if (id !== 0 && !this.sessions.has(id)) return id
    }
    let id = 1
    while (this.sessions.has(id)) id++
    return id
  }

  createStreamUnsafe(localId: number, config?: UdxStreamConfig): UdxStream | UdxError {
    const id = localId >>> 0
    if (this.closed) return new UdxError({ code: "EDESTROYED", detail: "the UDX mux was closed" })
    if (this.sessions.has(id)) return new UdxError({ code: "EIDINUSE", detail: `stream id ${id} is in use` })
    const cfg = config === undefined ? this.defaults : { ...this.defaults, ...config }
    const s = new Session(id, cfg, this, Effect.runSync(Queue.unbounded<Mail>()), this.now())
    this.sessions.set(id, s)
    // one fiber, started here and tied to the mux's scope (closing it interrupts the actor)
    Fiber.runIn(this.runFork(this.actor(s)), this.scope)
    return s
  }

  createStream(localId: number, config?: UdxStreamConfig): Effect.Effect<UdxStream, UdxError> {
    return Effect.suspend(() => {
      const id = localId >>> 0
      if (this.sessions.has(id)) return Effect.fail(new UdxError({ code: "EIDINUSE", detail: `stream id ${id} is in use` }))
      const cfg = config === undefined ? this.defaults : { ...this.defaults, ...config }
      return Effect.flatMap(
        Queue.unbounded<Mail>(),
        (mailbox) => {
          if (this.sessions.has(id)) return Effect.fail(new UdxError({ code: "EIDINUSE", detail: `stream id ${id} is in use` }))
          const s = new Session(id, cfg, this, mailbox, this.now())
          this.sessions.set(id, s)
          return Effect.as(Effect.forkIn(this.actor(s), this.scope, { startImmediately: true }), s as UdxStream)
        }
      )
    })
  }

  connect(localId: number, remoteId: number, remote: Endpoint, config?: UdxStreamConfig): Effect.Effect<UdxStream, UdxError> {
    return Effect.tap(this.createStream(localId, config), (s) => s.connect(remoteId, remote))
  }

  stats(): UdxMuxStats {
    return {
      streams: this.sessions.size,
      routed: this.routed,
      notUdx: this.notUdx,
      unknownId: this.unknownId,
      firewalled: this.firewalled,
      defects: this.defects
    }
  }

  /**
   * Supervision (see the module's doc): a defect closed stream `s`. Counted,
   * logged, the stream destroyed with EDEFECT; its actor then ends. Safe to
   * call from the actor's step or from the receive path.
   */
  fault(s: Session, defect: unknown, now: number): void {
    if (s.failed) return
    s.failed = true
    this.defects++
    const what = defect instanceof Error ? defect.message : String(defect)
    const error = new UdxError({ code: "EDEFECT", detail: `a defect while processing stream ${s.id}: ${what}`, cause: defect })
    try {
      s.core.destroy(now, error)
    } catch {
      // the core itself is broken: its face closes without it (below)
    }
    if (!s.isClosed) {
      try {
        s.onClose(error)
      } catch {
        // the reader failed again while closing: the stream is closed all the same
      }
    }
    // the actor's loop sees `failed` and ends
    Queue.offerUnsafe(s.mailbox, new Cmd(CMD_WAKE, null, now, null))
    this.runFork(Effect.logError(`UDX stream ${s.id} failed with a defect; it closes`, Cause.die(defect)))
  }

  /** The session actor. */
  private actor(s: Session): Effect.Effect<void> {
    const mux = this
    const core = s.core
    const mailbox = s.mailbox
    let lastNow = 0
    const step = (batch: ReadonlyArray<Mail>, wakeAt: number): number => {
      // monotonic, and at least the deadline of any wake-up (given or in the batch)
      let now = mux.now()
      if (now < lastNow) now = lastNow
      if (wakeAt > now) now = wakeAt
      for (let i = 0; i < batch.length; i++) {
        const m = batch[i]!
        if (m instanceof Cmd && m.kind === CMD_WAKE && m.n > now) now = m.n
      }
      lastNow = now
      // one try per batch: a defect closes this stream only (`fault`)
      try {
        for (let i = 0; i < batch.length; i++) {
          const m = batch[i]!
          if (m instanceof Cmd) s.command(m, now)
          else core.onPacket(now, m.data)
        }
        if (core.nextDeadline() <= now) core.onTimers(now)
        core.flush(now)
        s.afterBatch()
      } catch (e) {
        mux.fault(s, e, now)
      }
      return now
    }
    // A timer wake-up (pacing, delayed ACK, RTO) for a session with nothing
    // in its mailbox runs here and now, in the mux's alarm: no mailbox hop
    // and fiber resume per timer (with 16 paced streams, thousands a second).
    // Anything queued keeps the wake-up behind it, so packets are still
    // processed before the timers they may cancel.
    let stepping = false
    s.wakeDirect = (at) => {
      if (stepping || core.finished || s.failed || Queue.sizeUnsafe(mailbox) > 0) return false
      stepping = true
      let now: number
      try {
        now = step(NO_MAIL, at)
      } finally {
        stepping = false
      }
      // the loop (blocked on the empty mailbox) ends the actor when the core finished
      if (core.finished || s.failed) Queue.offerUnsafe(mailbox, new Cmd(CMD_WAKE, null, now, null))
      else mux.schedule(s, core.nextDeadline(), now)
      return true
    }
    const loop = Effect.gen(function*() {
      while (!core.finished && !s.failed) {
        let batch: ReadonlyArray<Mail> = yield* Queue.takeAll(mailbox)
        stepping = true
        let now: number
        try {
          now = step(batch, 0)
        } finally {
          stepping = false
        }
        // not held (with its datagrams) by the suspended loop until the next batch
        batch = NO_MAIL
        if (core.finished || s.failed) break
        mux.schedule(s, core.nextDeadline(), now)
      }
    })
    return loop.pipe(
      Effect.ensuring(
        Effect.sync(() => {
          if (!core.closed) {
            const now = mux.now()
            try {
              core.destroy(now, new UdxError({ code: "EDESTROYED", detail: "the UDX mux was closed" }))
            } catch (e) {
              mux.fault(s, e, now)
            }
          }
          if (mux.sessions.get(s.id) === s) mux.sessions.delete(s.id)
          s.connected = false
          s.wakeDirect = null
          Queue.shutdownUnsafe(mailbox)
        })
      )
    )
  }
}

/**
 * Bind UDX to a socket. Streams live in the current scope: closing it
 * destroys every open stream (DESTROY to the peer) and detaches the mux.
 */
export const makeUdxMux = (socket: UdpSocket, options: UdxMuxOptions = {}): Effect.Effect<UdxMux, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const clock = yield* Clock.Clock
    const context = yield* Effect.context<never>()
    const mux = new Mux(socket, scope, clock, context, options.defaults ?? {})
    yield* Effect.addFinalizer(() => Effect.sync(() => mux.shutdown()))
    if (options.standalone !== false) {
      const fallback = options.fallback
      socket.setReceiver((d) => {
        if (!mux.handle(d) && fallback !== undefined) fallback(d)
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => socket.setReceiver(null)))
    }
    return mux
  })

// ---------------------------------------------------------------------------
// Node Duplex adapter
// ---------------------------------------------------------------------------

/**
 * A Node `Duplex` over a UDX stream: `write()` returns false while more than
 * the high watermark is unsent ('drain' follows), 'end' on the peer's END,
 * 'finish' once our END is acknowledged, 'close' when the stream closes,
 * 'error' on reset / timeout. Messages: `send` / `trySend`, and incoming ones
 * as 'message' events.
 */
export class UdxDuplex extends Duplex {
  private pushed = 0
  private reported = 0

  constructor(readonly udx: UdxStream) {
    super({ allowHalfOpen: true, writableHighWaterMark: 16_384, readableHighWaterMark: 65_536 })
    udx.attachUnsafe({
      onData: (chunk) => {
        this.pushed += chunk.length
        this.push(chunk)
      },
      onEnd: () => {
        this.push(null)
      },
      onClose: (error) => {
        if (error !== null) this.destroy(error)
      },
      onMessage: (message) => {
        this.emit("message", message)
      }
    })
  }

  override _write(chunk: Uint8Array, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.udx.isClosed) {
      callback(this.udx.error ?? closedError())
      return
    }
    if (this.udx.writeUnsafe(chunk)) callback()
    else this.udx.onDrainUnsafe((e) => callback(e))
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.udx.endUnsafe()
    this.udx.onFlushedUnsafe((e) => callback(e))
  }

  override _read(): void {
    // everything handed to push() and no longer buffered was consumed
    const consumed = this.pushed - this.readableLength - this.reported
    if (consumed > 0) {
      this.reported += consumed
      this.udx.consumedUnsafe(consumed)
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.udx.isClosed) this.udx.destroyUnsafe()
    callback(error)
  }

  /** Send an unordered message; rejects when it cannot be sent. */
  send(message: Uint8Array): Promise<void> {
    return this.udx.trySend(message)
      ? Promise.resolve()
      : Promise.reject(this.udx.error ?? new UdxError({ code: "EMSGSIZE", detail: "message not sent (closed, unconnected or too large)" }))
  }

  /** Send an unordered message, ignoring failures. */
  trySend(message: Uint8Array): void {
    this.udx.trySend(message)
  }
}

/** Wrap a UDX stream as a Node `Duplex` (use it instead of `readable`, not alongside). */
export const toDuplex = (stream: UdxStream): UdxDuplex => new UdxDuplex(stream)
