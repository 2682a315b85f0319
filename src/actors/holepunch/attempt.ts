/**
 * One holepunch attempt, on either side (connect.md §5.2, §6): its pool
 * sockets, the NAT analysis of its first socket, the punch strategy, and
 * dht-rpc requests sent from its sockets (NAT-sampling pings and, on the
 * client, PEER_HOLEPUNCH).
 *
 * An actor: one fiber owns the state (the deterministic `PunchCore`,
 * `NatAnalyzer` and `NatSamplingPlan`) and reads a queue of tagged
 * messages: probes and dht-rpc responses from its sockets, timer wake-ups,
 * commands (start the strategy, stop). Its sockets hand datagrams to it
 * (probes: one byte or less), to the node's UDX mux (first byte 0xff), or
 * to the pending request they answer. Its lifetime is the fiber's: it ends
 * when the punch connects, is exhausted or is stopped, and then closes its
 * sockets (except the one a connection now uses, which stays until the
 * connection ends).
 *
 * Supervision: a defect in one of the actor's steps (the punch core, the
 * NAT analysis or the attempt's own code throwing while it handles a
 * message, a probe or a timer) ends the attempt with a typed
 * `ConnectionError`: code HOLEPUNCH_ABORTED (what hyperdht reports for a
 * punch that ends without a connection, so code that checks `err.code`
 * keeps working), the defect as its `cause`. It is logged through Effect's
 * logger, the attempt's sockets close, a strategy start still waiting is
 * answered (not started), and the dial running under `supervise` fails
 * with that error at once. The server's side sees the attempt ended and
 * aborts that handshake. Never a half-alive attempt.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import { BindError, type Datagram, type Endpoint, type OwnedSocket, type UdpSocket } from "../../layers/Transport.js"
import { mark } from "../../layers/trace.js"
import * as C from "../../protocol/connect.js"
import * as Rpc from "../../protocol/dht-rpc.js"
import type { IPv4Address } from "../../protocol/encoding.js"
import type { ConnectionHost } from "../session/host.js"
import { SERVER } from "../routing/rpc.js"
import type { UdxStream } from "../session/udx.js"
import { DEFAULT_LINGER } from "../session/udx-stream.js"
import { isUnstable, type RandomPunchGrant } from "./decide.js"
import { type ConnectionError, connectionError, type DialReport } from "./errors.js"
import { NatAnalyzer, NatSamplingPlan } from "./nat.js"
import { type PunchOutcome, PunchCore, type RemoteAddress } from "./puncher.js"

/** A dht-rpc response received on one of the attempt's sockets. */
export interface PoolResponse {
  readonly from: Endpoint
  readonly to: IPv4Address
  readonly error: number
  readonly value: Uint8Array | null
}

type Msg =
  | { readonly _tag: "Probe"; readonly socket: number; readonly from: Endpoint }
  | { readonly _tag: "Wake" }
  | { readonly _tag: "Start"; readonly done: Deferred.Deferred<boolean>; readonly grant: RandomPunchGrant | null }
  | { readonly _tag: "Sample" }
  | { readonly _tag: "PingResult"; readonly node: IPv4Address; readonly to: IPv4Address | null }
  | { readonly _tag: "AddSample"; readonly to: IPv4Address; readonly from: Endpoint }
  | { readonly _tag: "Remote"; readonly firewall: number; readonly addresses: ReadonlyArray<RemoteAddress> }
  | { readonly _tag: "SendProbe"; readonly to: Endpoint; readonly low: boolean; readonly sent: Deferred.Deferred<void> | null }
  | { readonly _tag: "Sync"; readonly done: Deferred.Deferred<void> }
  | { readonly _tag: "Freeze" }
  | { readonly _tag: "Stop" }

const PING = 0
/** Attempts per PEER_HOLEPUNCH request (3 retries), 1 s each. */
const HOLEPUNCH_TRIES = 4
const REQUEST_TIMEOUT = 1000

/** A message someone waits on until the actor has handled it (a probe sent, a sync): release the waiter. */
const answerBarrier = (m: Msg): void => {
  if (m._tag === "Sync") Deferred.doneUnsafe(m.done, Effect.void)
  else if (m._tag === "SendProbe" && m.sent !== null) Deferred.doneUnsafe(m.sent, Effect.void)
}

export interface AttemptOptions {
  readonly initiator: boolean
  readonly remoteFirewall: number
  /** Advertised addresses of the peer so far. */
  readonly remoteAddresses?: ReadonlyArray<RemoteAddress>
  /**
   * Wait for `startSampling` before the NAT-sampling pings go out (default:
   * they go out at once). The client's first holepunch message is what the
   * server waits for; its pings follow it (`request`'s `onSent`).
   */
  readonly deferSampling?: boolean
  /**
   * Sample and classify our NAT even when the node believes it is reachable
   * (default: the node's belief; an unfirewalled node's attempt says OPEN).
   * A dial that punches said it was not OPEN: its class is what its pings show.
   */
  readonly sampleAnyway?: boolean
}

export class HolepunchAttempt {
  readonly nat: NatAnalyzer
  readonly plan: NatSamplingPlan
  readonly core: PunchCore
  readonly sockets: Array<OwnedSocket | null> = []
  /** Resolves when the punch ends: the connected socket and address, or null. */
  readonly outcome: Deferred.Deferred<{ readonly socket: UdpSocket; readonly address: Endpoint } | null>
  /** Resolves when the NAT analysis has finished (enough samples, or sampling gave up). */
  readonly analyzed: Deferred.Deferred<void>
  private readonly mailbox: Queue.Queue<Msg>
  /** Requests in flight by tid: who must answer, and the answer's slot. */
  private readonly pending = new Map<number, { readonly to: Endpoint; readonly done: (r: PoolResponse) => void }>()
  private nextTid: number
  private wakeArmed = Infinity
  private keep = -1
  private stopped = false
  private sampling = false
  /** The random-punch grant the strategy runs under (its pace; lowered as the punch slows down). */
  private grant: RandomPunchGrant | null = null
  /** The batch of messages the actor is handling (a strategy start in it is answered if a step fails). */
  private batch: ReadonlyArray<Msg> = []
  /** The typed error of a defect in a step (null while healthy or after a normal end). */
  private failedWith: ConnectionError | null = null
  /** Fails with `failedWith` when the attempt fails (never completes otherwise). */
  private readonly failedSignal: Deferred.Deferred<never, ConnectionError>
  remoteFirewall: number
  remoteAddresses: ReadonlyArray<RemoteAddress>

  constructor(
    readonly host: ConnectionHost,
    readonly options: AttemptOptions
  ) {
    this.remoteFirewall = options.remoteFirewall
    this.remoteAddresses = options.remoteAddresses ?? []
    this.nat = new NatAnalyzer({ firewalled: host.handle.core.firewalled || options.sampleAnyway === true })
    this.plan = new NatSamplingPlan(this.nat)
    this.core = new PunchCore({
      initiator: options.initiator,
      localFirewall: this.nat.firewall,
      remoteFirewall: options.remoteFirewall,
      remoteAddresses: this.remoteAddresses,
      random: host.random
    })
    this.outcome = Deferred.makeUnsafe()
    this.analyzed = Deferred.makeUnsafe()
    this.failedSignal = Deferred.makeUnsafe()
    this.mailbox = Effect.runSync(Queue.unbounded<Msg>())
    this.nextTid = Math.floor(host.random() * 0x10000)
  }

  /** Open the first pool socket and start the actor; null when no socket could be bound. */
  static make(host: ConnectionHost, options: AttemptOptions): HolepunchAttempt | null {
    const a = new HolepunchAttempt(host, options)
    if (a.openSocket(0) === null) return null
    host.spawn(a.run())
    if (options.deferSampling !== true) a.startSampling()
    return a
  }

  /** Start sampling our NAT (its first pings); once. */
  startSampling(): void {
    if (this.sampling) return
    this.sampling = true
    Queue.offerUnsafe(this.mailbox, { _tag: "Sample" })
  }

  /** The attempt's own socket (index 0). */
  get socket(): UdpSocket {
    return this.sockets[0]!
  }

  private openSocket(index: number): OwnedSocket | null {
    const local = this.host.handle.sockets().server.local
    const bind = local.host === "0.0.0.0" ? { port: 0 } : { host: local.host, port: 0 }
    const s = this.host.handle.transport.open(bind)
    if (s instanceof BindError) return null
    this.sockets[index] = s
    s.setReceiver((d) => this.onDatagram(index, s, d))
    return s
  }

  /** Everything a pool socket receives (synchronous, never throws). */
  private onDatagram(index: number, socket: UdpSocket, d: Datagram): void {
    const data = d.data
    if (data.length <= 1) {
      Queue.offerUnsafe(this.mailbox, { _tag: "Probe", socket: index, from: d.from })
      return
    }
    if (data[0] === 0xff) {
      this.host.receiveUdx(socket, d)
      return
    }
    if (data[0] === Rpc.REQUEST_ID) {
      // a request to our punch socket (a relay forwarding the client's holepunch
      // message to where our handshake reply came from): the node serves it;
      // our server's answers name this socket themselves
      const from = d.from
      this.host.handle.exec((node, now) => node.onDatagram(now, SERVER, from, data))
      return
    }
    if (data[0] !== Rpc.RESPONSE_ID) return
    const m = Rpc.decodeMessage(data)
    if (Result.isFailure(m) || m.success._tag !== "Response") return
    const r = m.success.response
    const p = this.pending.get(r.tid)
    // a response from anyone but the node asked is ignored (it cannot cancel the request)
    if (p === undefined || p.to.host !== d.from.host || p.to.port !== d.from.port) return
    this.pending.delete(r.tid)
    p.done({ from: { host: d.from.host, port: d.from.port }, to: r.to, error: r.error, value: r.value })
  }

  /**
   * A request's bytes under a fresh tid, registered so that its response
   * (from `to` only, `onDatagram`) goes to `done`; null when it does not
   * encode. The caller sends it and removes the registration when it stops
   * waiting.
   */
  private prepare(
    to: Endpoint,
    args: { readonly internal: boolean; readonly command: number; readonly target: Uint8Array | null; readonly value: Uint8Array | null },
    done: (r: PoolResponse) => void
  ): { readonly tid: number; readonly bytes: Uint8Array } | null {
    const tid = this.nextTid = (this.nextTid + 1) & 0xffff
    const bytes = Rpc.encodeRequest({ tid, to: { host: to.host, port: to.port }, id: null, token: null, ...args })
    if (Result.isFailure(bytes)) return null
    this.pending.set(tid, { to, done })
    return { tid, bytes: bytes.success }
  }

  /**
   * A dht-rpc request from the attempt's socket `index` to `to`; fails
   * (None) after `tries` attempts of 1 s. Responses must come from `to`.
   */
  request(
    to: Endpoint,
    args: { readonly internal: boolean; readonly command: number; readonly target: Uint8Array | null; readonly value: Uint8Array | null },
    tries = HOLEPUNCH_TRIES,
    index = 0,
    /** Called once the first try's datagram is handed to the socket. */
    onSent?: () => void
  ): Effect.Effect<Option.Option<PoolResponse>> {
    return Effect.suspend(() => {
      const socket = this.sockets[index]
      if (socket === null || socket === undefined || this.stopped) return Effect.succeedNone
      const got = Deferred.makeUnsafe<PoolResponse>()
      const sent = this.prepare(to, args, (r) => Deferred.doneUnsafe(got, Effect.succeed(r)))
      if (sent === null) return Effect.succeedNone
      const { tid, bytes } = sent
      let first = onSent
      const once = Effect.suspend(() => {
        socket.send(to, bytes)
        if (first !== undefined) {
          const f = first
          first = undefined
          f()
        }
        return Deferred.await(got).pipe(Effect.timeoutOption(REQUEST_TIMEOUT))
      })
      const loop = (left: number): Effect.Effect<Option.Option<PoolResponse>> =>
        Effect.flatMap(once, (r) => (Option.isSome(r) || left <= 1 || this.stopped ? Effect.succeed(r) : loop(left - 1)))
      return loop(tries).pipe(Effect.ensuring(Effect.sync(() => this.pending.delete(tid))))
    })
  }

  /** Add a NAT sample from a response seen on the attempt's own socket. */
  addSample(to: IPv4Address, from: Endpoint): void {
    Queue.offerUnsafe(this.mailbox, { _tag: "AddSample", to, from })
  }

  /** The peer's latest state (its class and advertised addresses, with the verified ones). */
  updateRemote(firewall: number, addresses: ReadonlyArray<RemoteAddress>): void {
    this.remoteFirewall = firewall
    this.remoteAddresses = addresses
    Queue.offerUnsafe(this.mailbox, { _tag: "Remote", firewall, addresses })
  }

  /** Stop reclassifying our NAT (the values were sent to the peer). */
  freeze(): void {
    Queue.offerUnsafe(this.mailbox, { _tag: "Freeze" })
  }

  /** Unstable: both sides RANDOM or our class unknown (connect.md §5.2). */
  get unstable(): boolean {
    return isUnstable(this.nat.firewall, this.remoteFirewall)
  }

  /**
   * A TTL-5 probe toward `to` (opens our NAT without reaching theirs);
   * completes once it has been handed to the socket (or the attempt has
   * ended), so a request sent next leaves after it, as the reference's
   * `await openSession()` orders them. On a short path the probe does reach
   * the peer, and its answer (a probe back) may connect the attempt.
   */
  openSession(to: Endpoint): Effect.Effect<void> {
    return this.barrier((done) => ({ _tag: "SendProbe", to, low: true, sent: done }))
  }

  /** A TTL-64 probe toward `to` (the server's fast open). */
  ping(to: Endpoint): void {
    Queue.offerUnsafe(this.mailbox, { _tag: "SendProbe", to, low: false, sent: null })
  }

  /**
   * Whether the attempt has connected, once the actor has handled every
   * message queued before this call (a probe that has already arrived
   * counts, even if the actor has not got to it yet). The client asks before
   * it sends its punch round: the server's answer to our open-session probe
   * may already have connected us, and a punch round then must not go out
   * (a server that refuses it, as hyperdht's does when its random-punch
   * budget is spent, closes the very socket we connected to).
   */
  connectedSoFar(): Effect.Effect<boolean> {
    return Effect.map(this.barrier((done) => ({ _tag: "Sync", done })), () => this.core.connected)
  }

  /** Queue `msg` and wait until the actor has handled it (at once when the attempt has ended). */
  private barrier(msg: (done: Deferred.Deferred<void>) => Msg): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.stopped) return Effect.void
      const done = Deferred.makeUnsafe<void>()
      if (!Queue.offerUnsafe(this.mailbox, msg(done))) return Effect.void
      return Deferred.await(done)
    })
  }

  /**
   * Start the punch strategy, a random one at the pace of `grant` (the
   * node's random-punch limiter's; without one, the reference's pace); false
   * when none applies.
   */
  start(grant: RandomPunchGrant | null = null): Effect.Effect<boolean> {
    return Effect.suspend(() => {
      if (this.stopped) return Effect.succeed(false)
      const done = Deferred.makeUnsafe<boolean>()
      Queue.offerUnsafe(this.mailbox, { _tag: "Start", done, grant })
      return Deferred.await(done)
    })
  }

  /** Stop the attempt (its sockets close unless a connection uses one). */
  stop(): void {
    if (this.stopped) return
    Queue.offerUnsafe(this.mailbox, { _tag: "Stop" })
  }

  get punching(): boolean {
    return this.core.punching
  }

  get ended(): boolean {
    return this.stopped
  }

  /** The typed error the attempt failed with after a defect in one of its steps; null otherwise. */
  get failure(): ConnectionError | null {
    return this.failedWith
  }

  /**
   * Run `effect` (a dial's punch protocol) under the attempt's supervision:
   * when the attempt fails with a defect, `effect` is interrupted, whatever
   * it was waiting for (a reply, the strategy's start, the outcome), and
   * fails with the attempt's typed error, carrying `report()` when given.
   */
  supervise<A, E>(effect: Effect.Effect<A, E>, report?: () => DialReport): Effect.Effect<A, E | ConnectionError> {
    const failed = (): Effect.Effect<never, ConnectionError> | null => {
      const f = this.failedWith
      if (f === null) return null
      return Effect.fail(report === undefined ? f : connectionError(f.code, f.detail, report(), f.cause))
    }
    return Effect.raceFirst(Deferred.await(this.failedSignal), effect).pipe(
      Effect.matchEffect({
        onFailure: (e): Effect.Effect<A, E | ConnectionError> => failed() ?? Effect.fail(e),
        onSuccess: (a): Effect.Effect<A, ConnectionError> => failed() ?? Effect.succeed(a)
      })
    )
  }

  // ---- the actor ----------------------------------------------------------------------------

  private now(): number {
    return this.host.handle.clock.currentTimeMillisUnsafe()
  }

  private run(): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      while (!this.stopped) {
        const batch = yield* Queue.takeAll(this.mailbox)
        this.batch = batch
        const now = this.now()
        for (const m of batch) this.handle(m, now)
        this.drive(now)
        for (const m of batch) answerBarrier(m)
        this.batch = []
      }
    }).pipe(
      Effect.catchCause((cause) => this.fail(cause)),
      Effect.ensuring(Effect.sync(() => this.finish()))
    )
  }

  /** A step failed (see the module's doc): the typed error, the log; `finish` settles the rest. */
  private fail(cause: Cause.Cause<unknown>): Effect.Effect<void> {
    if (Cause.hasInterruptsOnly(cause)) return Effect.void
    return Effect.suspend(() => {
      const defect = Cause.squash(cause)
      const what = defect instanceof Error ? defect.message : String(defect)
      this.failedWith = connectionError("HOLEPUNCH_ABORTED", `the holepunch attempt failed with a defect: ${what}`, undefined, defect)
      try {
        this.core.destroy()
      } catch {
        // the core itself is broken: the attempt ends without it
      }
      return Effect.logError(`holepunch attempt failed with a defect (${this.options.initiator ? "client" : "server"} side); it closes`, cause)
    })
  }

  private handle(m: Msg, now: number): void {
    switch (m._tag) {
      case "Probe":
        this.core.onProbeReceived(m.socket, { host: m.from.host, port: m.from.port })
        return
      case "Start": {
        this.core.setLocalFirewall(this.nat.firewall)
        if (m.grant !== null) this.grant = m.grant
        Deferred.doneUnsafe(m.done, Effect.succeed(m.grant === null ? this.core.start(now) : this.core.start(now, m.grant.pace)))
        return
      }
      case "Sample":
        this.sample()
        return
      case "PingResult":
        this.plan.onPingResult(m.node, m.to)
        this.checkAnalysis()
        if (!this.plan.done) this.sample()
        return
      case "AddSample":
        this.nat.add(m.to, m.from)
        this.checkAnalysis()
        return
      case "Remote":
        this.core.updateRemote({ firewall: m.firewall, addresses: m.addresses })
        return
      case "SendProbe":
        if (m.low) this.core.openSession({ host: m.to.host, port: m.to.port })
        else this.core.ping({ host: m.to.host, port: m.to.port })
        return
      case "Freeze":
        this.nat.freeze()
        return
      case "Sync":
        return
      case "Stop":
        this.core.destroy()
        return
      case "Wake":
        return
    }
  }

  private checkAnalysis(): void {
    if (this.nat.finished || this.plan.done) Deferred.doneUnsafe(this.analyzed, Effect.void)
  }

  /** Ping the next nodes of the sampling plan from our socket (one try each, 1 s). */
  private sample(): void {
    const nodes = this.host.handle.core.toArray()
    const pings = this.plan.nextPings(nodes)
    this.checkAnalysis()
    if (pings.length > 0) mark(this.options.initiator ? "sample" : "S.sample")
    for (const node of pings) this.samplePing(node)
  }

  /**
   * One sampling PING from our socket, one try: the answer (the address the
   * node saw) or, after REQUEST_TIMEOUT (`ConnectionHost.after`: the
   * transport's shared timer), none comes to the mailbox as a PingResult.
   * No fiber or Deferred per ping: the answer is handed over in the step
   * that received it, and it cancels the timer.
   */
  private samplePing(node: IPv4Address): void {
    let settled = false
    let cancelTimer: (() => void) | null = null
    const result = (to: IPv4Address | null): void => {
      if (settled) return
      settled = true
      cancelTimer?.()
      Queue.offerUnsafe(this.mailbox, { _tag: "PingResult", node, to })
    }
    const socket = this.sockets[0]
    if (socket === null || socket === undefined || this.stopped) return result(null)
    const sent = this.prepare(node, { internal: true, command: PING, target: null, value: null }, (r) => result(r.to))
    if (sent === null) return result(null)
    const { tid, bytes } = sent
    const entry = this.pending.get(tid)
    socket.send(node, bytes)
    cancelTimer = this.host.after(REQUEST_TIMEOUT, () => {
      if (this.pending.get(tid) === entry) this.pending.delete(tid)
      result(null)
    })
  }

  /** Send what the core asks for, open birthday sockets, arm the next timer, settle the outcome. */
  private drive(now: number): void {
    const core = this.core
    for (;;) {
      const a = core.pollTransmit(now)
      if (a === null) break
      if (a._tag === "Probe") {
        const s = this.sockets[a.socket]
        if (s !== null && s !== undefined) s.send(a.to, C.HOLEPUNCH_PROBE, a.ttl)
      } else if (this.openSocket(a.socket) !== null) core.socketOpened(a.socket, now)
      else core.socketOpenFailed(a.socket, now)
    }
    // a punch past its fast phase gives the probe rate it no longer uses back to the node
    if (this.grant !== null && core.isRandom) this.host.randomPunches.lower(this.grant, core.probeRate)
    const outcome = core.outcome
    if (outcome !== null) return this.settle(outcome)
    const deadline = core.nextDeadline()
    if (deadline < this.wakeArmed) {
      this.wakeArmed = deadline
      this.host.spawn(
        Effect.andThen(
          Effect.sleep(Math.max(0, deadline - now)),
          Effect.sync(() => {
            if (this.wakeArmed === deadline) this.wakeArmed = Infinity
            Queue.offerUnsafe(this.mailbox, { _tag: "Wake" })
          })
        )
      )
    }
  }

  private settle(outcome: PunchOutcome): void {
    if (outcome._tag === "Connected") {
      this.keep = outcome.socket
      const s = this.sockets[outcome.socket]!
      Deferred.doneUnsafe(this.outcome, Effect.succeed({ socket: s, address: outcome.address }))
    }
    this.stopped = true
  }

  private finish(): void {
    this.stopped = true
    try {
      this.nat.destroy()
    } catch {
      // a broken analysis must not keep the sockets open
    }
    Deferred.doneUnsafe(this.analyzed, Effect.void)
    Deferred.doneUnsafe(this.outcome, Effect.succeed(null))
    if (this.failedWith !== null) Deferred.doneUnsafe(this.failedSignal, Effect.fail(this.failedWith))
    // a strategy start the actor never got to (a step failed first) is answered: not started
    const left = this.batch
    this.batch = []
    for (const m of left) {
      if (m._tag === "Start") Deferred.doneUnsafe(m.done, Effect.succeed(false))
      answerBarrier(m)
    }
    for (;;) {
      const next = Queue.takeUnsafe(this.mailbox)
      if (next === undefined || next._tag !== "Success") break
      if (next.value._tag === "Start") Deferred.doneUnsafe(next.value.done, Effect.succeed(false))
      answerBarrier(next.value)
    }
    Queue.shutdownUnsafe(this.mailbox)
    this.pending.clear()
    for (let i = 0; i < this.sockets.length; i++) {
      const s = this.sockets[i]
      if (s === null || s === undefined) continue
      if (i === this.keep) {
        this.keepSocket(i)
        continue
      }
      this.sockets[i] = null
      this.host.spawn(s.close)
    }
  }

  /** True when `socket` is one of the attempt's sockets. */
  owns(socket: UdpSocket): boolean {
    return this.sockets.some((s) => s === socket)
  }

  /** A connection now runs over `socket` (the server learned it from the client's first packet): keep it, stop the rest. */
  adopt(socket: UdpSocket): void {
    const i = this.sockets.findIndex((s) => s === socket)
    if (i >= 0 && this.keep < 0) {
      this.keep = i
      if (this.stopped) this.keepSocket(i)
    }
    this.stop()
  }

  /** The connection's socket: datagrams now go to the mux only; closed with the connection. */
  private keepSocket(i: number): void {
    const s = this.sockets[i]
    if (s === null || s === undefined) return
    s.setReceiver((d) => {
      if (d.data.length > 1 && d.data[0] === 0xff) this.host.receiveUdx(s, d)
    })
  }

  /**
   * Close the kept socket once `udx` has closed and lingered (its last
   * acknowledgements and retransmissions still need the socket after the
   * encrypted socket closes).
   */
  releaseAfter(udx: UdxStream): void {
    this.host.spawn(Effect.andThen(Effect.andThen(udx.closed, Effect.sleep(DEFAULT_LINGER + 1000)), Effect.sync(() => this.release())))
  }

  /** Close the socket a connection kept (call when the connection ends). */
  release(): void {
    if (this.keep < 0) return
    const s = this.sockets[this.keep]
    this.sockets[this.keep] = null
    this.keep = -1
    if (s !== null && s !== undefined) this.host.spawn(s.close)
  }
}
