/**
 * The node actor: one fiber owns a `DhtNode` core and reads a mailbox of
 * tagged messages (datagrams, user commands carrying a Deferred for the
 * reply, alarms). Between messages it sleeps until the core's next deadline
 * on Effect's Clock, so the same actor runs on real time and on TestClock.
 *
 * The core is a plain synchronous state machine, so a step can also run
 * directly, without the mailbox hop, whenever the actor is idle: a datagram
 * pushed by its socket, a command (`run`, `exec`). Steps never interleave on
 * one JS thread; a step asked for from inside another (an event listener)
 * goes through the mailbox. This keeps the per-datagram path to one plain
 * call (no fiber wake-up per packet) and lets a reply reach its consumer in
 * the step that received it.
 *
 * Queries are state inside the core. A user query is consumed either as a
 * Stream over its own result Queue (interrupting the consumer cancels the
 * query) or by callbacks (`runQuery`; the promise facade's GatewayQuery).
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { lookup } from "node:dns/promises"
import { Crypto } from "../../layers/Crypto.js"
import type { CryptoImpl } from "../../layers/crypto/types.js"
import { BindError, type BindOptions, type Datagram, type OwnedSocket, Transport, type UdpSocket } from "../../layers/Transport.js"
import { isIPv4 } from "../../protocol/encoding.js"
import { seededRandom } from "../../util/random.js"
import { type DhtEvent, DhtNode, type DhtNodeOptions, type NatClassification } from "./node.js"
import { type Query, QueryError, type QueryOptions } from "./query.js"
import { CLIENT, type IncomingResponse, RequestError, requestError, SERVER, type SocketKind } from "./rpc.js"

export type BootstrapEntry = string | number | { readonly host: string; readonly port: number }

/** The core options a node's configuration passes through unchanged. */
type CoreConfig = Pick<
  DhtNodeOptions,
  | "ephemeral"
  | "adaptive"
  | "firewalled"
  | "quickFirewall"
  | "concurrency"
  | "maxWindow"
  | "maxPingDelay"
  | "sendDownHints"
  | "downHintsRateLimit"
  | "requestRateLimit"
  | "k"
  | "nodes"
  | "filterNode"
  | "natSample"
  | "onRequest"
>

export interface NodeConfig extends CoreConfig {
  /** Bootstrap nodes: "host:port", "suggestedIP@hostname:port", {host, port} or a port on 127.0.0.1. */
  readonly bootstrap?: ReadonlyArray<BootstrapEntry>
  /** Server socket port: a number N tries N..N+4, a range [start, end) tries each; 0 = any. */
  readonly port?: number | readonly [number, number]
  /** Bind address (default 0.0.0.0). */
  readonly host?: string
  /** Bind any port when the candidates fail (default true). */
  readonly anyPort?: boolean
  /** Seed for the node's random choices (simulations); real nodes use Math.random. */
  readonly randomSeed?: number
}

export interface NodeStatus {
  readonly address: { readonly host: string; readonly port: number }
  readonly serverAddress: { readonly host: string; readonly port: number }
  readonly remoteAddress: { readonly host: string; readonly port: number } | null
  readonly id: Uint8Array | null
  readonly tableId: Uint8Array
  readonly tableSize: number
  readonly ephemeral: boolean
  readonly firewalled: boolean
  readonly bootstrapped: boolean
  readonly nat: {
    readonly host: string | null
    readonly port: number
    readonly randomized: boolean
    /** open / consistent / random / unknown (see NatClassification); learnt again after a network change. */
    readonly classification: NatClassification
    /** A network change's re-probe is running. */
    readonly resampling: boolean
  }
  readonly online: boolean
  readonly degraded: boolean
  readonly requests: { readonly total: number; readonly responses: number; readonly timeouts: number; readonly active: number }
  readonly dropped: number
}

type Message =
  | { readonly _tag: "Datagram"; readonly socket: SocketKind; readonly from: Datagram["from"]; readonly data: Uint8Array }
  | { readonly _tag: "Run"; readonly run: (node: DhtNode, now: number) => void }
  | { readonly _tag: "Wake" }

const WAKE: Message = { _tag: "Wake" }

const noStep = (): void => {}

/** An exception from a step run in a socket callback (a throwing event listener): raise it outside the node, like a throwing listener of a Node stream. */
const rethrowLater = (e: unknown): void => {
  setImmediate(() => {
    throw e
  })
}
const NETWORK_POLL_MS = 5000

export interface QueryReply extends IncomingResponse {}

export interface NodeHandle {
  readonly core: DhtNode
  /** Run a synchronous step against the core inside the actor (the only way to touch it). */
  readonly run: <A>(f: (node: DhtNode, now: number) => A) => Effect.Effect<A>
  /**
   * The same as a plain call: the step runs at once when the actor is idle,
   * else right after its current step. For callback-driven callers (queries
   * whose replies are consumed by callbacks, the promise facade).
   */
  readonly exec: (f: (node: DhtNode, now: number) => void) => void
  readonly findNode: (target: Uint8Array, opts?: QueryOptions) => Stream.Stream<QueryReply, QueryError>
  readonly query: (
    args: { readonly target: Uint8Array; readonly command: number; readonly value?: Uint8Array | null },
    opts?: QueryOptions
  ) => Stream.Stream<QueryReply, QueryError>
  /** A query started inside the actor, returned with its result stream (for callers that need `closestReplies`). */
  readonly startQuery: (
    args: { readonly target: Uint8Array; readonly command: number; readonly internal?: boolean; readonly value?: Uint8Array | null },
    opts?: QueryOptions
  ) => Effect.Effect<{ readonly query: Query; readonly replies: Stream.Stream<QueryReply, QueryError> }, never, Scope.Scope>
  /**
   * Run a query to its end with replies handed to `onreply` as they arrive
   * (`stop()` ends it early, successfully); yields the finished Query (its
   * `closestReplies`, `successes`, ...). Interrupting destroys the query.
   */
  readonly runQuery: (
    args: { readonly target: Uint8Array; readonly command: number; readonly internal?: boolean; readonly value?: Uint8Array | null },
    opts: QueryOptions | undefined,
    onreply: (reply: QueryReply, stop: () => void) => void,
    /** Called with the query as it starts (to read it after a failure). */
    onstart?: (query: Query) => void
  ) => Effect.Effect<Query, QueryError>
  readonly request: (
    args: { readonly token?: Uint8Array | null; readonly command: number; readonly target?: Uint8Array | null; readonly value?: Uint8Array | null; readonly internal?: boolean },
    to: { readonly host: string; readonly port: number },
    opts?: {
      readonly retry?: boolean
      readonly socket?: SocketKind
      readonly timeout?: number
      /**
       * Called once the request is handed to the node's I/O (sent, or queued
       * behind its congestion window), inside the node's step: the rest of
       * the step (other sends) waits for it, so it should only hand over.
       */
      readonly onSent?: () => void
    }
  ) => Effect.Effect<IncomingResponse, RequestError>
  readonly ping: (to: { readonly host: string; readonly port: number }, opts?: { readonly size?: number; readonly retry?: boolean }) => Effect.Effect<IncomingResponse, RequestError>
  readonly addNode: (node: { readonly host: string; readonly port: number }) => Effect.Effect<void>
  readonly status: Effect.Effect<NodeStatus>
  readonly events: PubSub.PubSub<DhtEvent>
  /** Synchronous event listener (the promise facade); returns a function that removes it. */
  readonly onEvent: (listener: (e: DhtEvent) => void) => () => void
  /** Completes when the node has bootstrapped (event "ready"). */
  readonly ready: Effect.Effect<void>
  /** Calls `f` once the node has bootstrapped, at once if it has (`ready` for callback callers: no fiber). */
  readonly whenReady: (f: () => void) => void
  readonly suspend: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
  /**
   * Tell the node its host changed networks, as a change of its interface
   * addresses does (the node watches them every 5 s): for an owner that
   * knows of a move the addresses do not show (a mobile app told by the OS
   * that it switched networks, a migrated VM, a swapped router). The node
   * emits `network-change` and `network-update`, drops its NAT samples and
   * its reachability, probes its network again as at bootstrap, and emits
   * `nat-update` / `network-update` once its view settles if it changed;
   * listening servers re-announce (`DhtNode.networkChange`). dht-rpc has no
   * public counterpart (its `_onnetworkchange` runs on udx's interface
   * watcher only). Completes at once; `status.nat.resampling` says whether
   * the probe still runs.
   */
  readonly networkChange: Effect.Effect<void>
  readonly destroy: Effect.Effect<void>
  readonly sockets: () => { readonly server: UdpSocket; readonly client: UdpSocket }
  /**
   * Hand UDX packets (first byte 0xff) arriving on the node's sockets to `f`
   * before the DHT sees them (udx.md §2): `f` returns true when it consumed
   * the datagram. One check of the first byte per datagram; null removes it.
   */
  readonly setUdxReceiver: (f: ((socket: UdpSocket, d: Datagram) => boolean) | null) => void
  /** The node's lifetime: services built on the node (connections) live in it. */
  readonly scope: Scope.Scope
  readonly transport: Transport["Service"]
  readonly clock: Clock.Clock
}


const parseBootstrap = (e: BootstrapEntry): { host: string; port: number } | null => {
  if (typeof e === "number") return Number.isInteger(e) && e > 0 && e < 65536 ? { host: "127.0.0.1", port: e } : null
  if (typeof e === "object" && e !== null) return typeof e.host === "string" && Number.isInteger(e.port) ? { host: e.host, port: e.port } : null
  if (typeof e !== "string") return null
  const i = e.lastIndexOf(":")
  if (i <= 0) return null
  const port = Number(e.slice(i + 1))
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return null
  return { host: e.slice(0, i), port }
}

/** Bind the server socket as dht-rpc does (§2): previous port, the candidates, then any port. */
const openServer = (
  transport: Transport["Service"],
  host: string | undefined,
  port: NodeConfig["port"],
  anyPort: boolean,
  previous: number
): OwnedSocket | BindError => {
  const candidates: Array<number> = []
  if (previous > 0) candidates.push(previous)
  if (Array.isArray(port)) for (let p = port[0]; p < port[1]; p++) candidates.push(p)
  else if (typeof port === "number" && port > 0) for (let p = port; p < port + 5 && p < 65536; p++) candidates.push(p)
  let firstError: BindError | null = null
  for (const p of candidates) {
    const r = transport.open(bindAt(host, p))
    if (!(r instanceof BindError)) return r
    firstError ??= r
    if (!anyPort) return r
  }
  if (firstError !== null && !anyPort) return firstError
  return transport.open(bindAt(host, 0))
}

/** Bind options for `port`, on `host` when one is configured. */
const bindAt = (host: string | undefined, port: number): BindOptions => (host !== undefined ? { host, port } : { port })

/** The socket pair a node is bound to. */
interface SocketPair {
  readonly server: OwnedSocket
  readonly client: OwnedSocket
}

/**
 * A node's alarm callback for the shared timer. Made at module level: a
 * closure made inside the class (a field initializer) would share the
 * initializer's context, which holds the actor, and the timer's pending
 * entries would then keep a closed node alive until their deadlines.
 */
const alarmCallback = (ref: { actor: NodeActor | null }) => (): void => ref.actor?.alarm()

/**
 * The node actor's state and its NodeHandle methods, as one object: a class
 * instead of a closure per method (a node used to keep about 35 closures and
 * their contexts; with thousands of nodes in a simulation that was the larger
 * part of a node's heap). Built by `makeNode`.
 */
class NodeActor implements NodeHandle {
  core!: DhtNode
  // The core is a plain state machine touched only in synchronous steps: the
  // actor loop's batch, or `exec`/push steps run directly when the loop is
  // idle. On one JS thread such steps never interleave; `busy` guards
  // re-entry from inside a step (event listeners), which then goes through
  // the mailbox instead. `alive` turns direct steps off once the actor ends.
  private busy = true // until the actor loop runs: the core does not exist yet
  alive = true
  // made on first use (1.4 KB a node): nothing can be subscribed before,
  // and a PubSub keeps no events for later subscribers anyway
  private pubsub: PubSub.PubSub<DhtEvent> | null = null
  private readonly listeners = new Set<(e: DhtEvent) => void>()
  private readyWaiters: Array<() => void> | null = null
  // The loop only ever blocks in Queue.takeAll (never raced, so nothing taken
  // is lost); timers are alarms that wake the node at the core's next
  // deadline. A stale alarm just causes a harmless extra wake-up.
  private armedAt = Infinity
  private wakePosted = false
  private destroyed = false
  /**
   * What the shared timer's callbacks hold instead of the actor: cut when the
   * node's scope closes (`detachTimers`), so a closed node is not kept alive
   * (with its sockets' objects and its core) until its last alarm's deadline
   * passes; the shared timer has no removal.
   */
  private readonly timerRef: { actor: NodeActor | null } = { actor: this }
  /** Every alarm's callback (one per node, not a closure per alarm); holds only `timerRef`. */
  private readonly alarmFn: () => void = alarmCallback(this.timerRef)
  interfaces = ""
  private socketPair: SocketPair
  /** Made by the actor fiber as it starts (`loop`), before anything can be queued. */
  private mailbox!: Queue.Queue<Message>
  /** The sockets' push receivers (`step` specialized: no closure per datagram). */
  private readonly pushServer = (d: Datagram): void => this.push(SERVER, d)
  private readonly pushClient = (d: Datagram): void => this.push(CLIENT, d)

  constructor(
    private readonly config: NodeConfig,
    readonly transport: Transport["Service"],
    readonly scope: Scope.Scope,
    readonly clock: Clock.Clock,
    private readonly readyLatch: Deferred.Deferred<void>,
    private readonly closedLatch: Deferred.Deferred<void>,
    sockets: SocketPair
  ) {
    this.socketPair = sockets
  }

  // ---- sockets (rebound on resume) ----

  /**
   * Push mode: the socket hands each datagram to the core at once when the
   * actor is idle (see `exec`), else to the mailbox (no reader fiber).
   */
  private push(kind: SocketKind, d: Datagram): void {
    const udx = this.udx
    if (udx !== null && d.data[0] === 0xff && udx(kind === SERVER ? this.socketPair.server : this.socketPair.client, d)) return
    if (this.busy || !this.alive) {
      Queue.offerUnsafe(this.mailbox, { _tag: "Datagram", socket: kind, from: d.from, data: d.data })
      return
    }
    this.busy = true
    try {
      const now = this.clock.currentTimeMillisUnsafe()
      this.core.onDatagram(now, kind, d.from, d.data)
      this.afterStep(now)
    } catch (e) {
      rethrowLater(e)
    } finally {
      this.busy = false
    }
  }

  private udx: ((socket: UdpSocket, d: Datagram) => boolean) | null = null

  setUdxReceiver(f: ((socket: UdpSocket, d: Datagram) => boolean) | null): void {
    this.udx = f
  }

  /** Hand the sockets' datagrams to the node (closing a socket detaches its receiver). */
  attachReceivers(): void {
    this.socketPair.server.setReceiver(this.pushServer)
    this.socketPair.client.setReceiver(this.pushClient)
  }

  transmit(socket: SocketKind, to: Datagram["from"], data: Uint8Array, ttl: number): void {
    const sockets = this.socketPair
    const out = socket === SERVER ? sockets.server : sockets.client
    out.send(to, data, ttl || undefined)
  }

  // ---- steps ----

  /** Publish an event that does not come from the core. */
  private publish(e: DhtEvent): void {
    if (this.pubsub !== null) PubSub.publishUnsafe(this.pubsub, e)
    for (const l of this.listeners) l(e)
  }

  /**
   * Supervision: a defect in the actor's loop (a throwing step) closes the
   * node cleanly instead of leaving it half alive: the failure is logged and
   * published as a `failed` event with a typed NodeActorFailed, the core
   * fails everything in flight and its sockets close; the loop then runs on,
   * answering every later request with NODE_DESTROYED.
   */
  fail(cause: Cause.Cause<unknown>): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      this.busy = false
      const squashed = Cause.squash(cause)
      const error = new NodeActorFailed({ detail: squashed instanceof Error ? squashed.message : String(squashed), cause: squashed })
      yield* Effect.logError("DHT node actor failed; the node closes", cause)
      this.publish({ _tag: "failed", error })
      yield* Effect.catchCause(this.destroy, () => closePair(this.socketPair))
    })
  }

  private flushEvents(): void {
    const core = this.core
    if (core.events.length === 0) return
    const evs = core.events.splice(0, core.events.length)
    for (const e of evs) {
      if (e._tag === "ready") {
        Deferred.doneUnsafe(this.readyLatch, Exit.void)
        const waiters = this.readyWaiters
        this.readyWaiters = null
        if (waiters !== null) for (const f of waiters) f()
      }
      if (e._tag === "close") Deferred.doneUnsafe(this.closedLatch, Exit.void)
      if (this.pubsub !== null) PubSub.publishUnsafe(this.pubsub, e)
      for (const l of this.listeners) l(e)
    }
  }

  private handle(m: Message, now: number): void {
    const core = this.core
    if (m._tag === "Datagram") core.onDatagram(now, m.socket, m.from, m.data)
    else if (m._tag === "Run") {
      core.setTime(now)
      m.run(core, now)
    }
  }

  /**
   * A shared-timer alarm runs the due timers as a direct step when the actor
   * is idle (as a pushed datagram does): no mailbox hop and fiber wake-up per
   * timer, which in a simulation of thousands of mostly idle nodes was the
   * larger part of the run. Called by the node's one timer callback
   * (`alarmCallback`).
   */
  alarm(): void {
    // the armed alarm is due (this one, or another in the same batch): the
    // step below runs the due timers and arms the next deadline
    if (this.armedAt <= this.clock.currentTimeMillisUnsafe()) this.armedAt = Infinity
    if (this.busy || !this.alive) {
      Queue.offerUnsafe(this.mailbox, WAKE)
      return
    }
    try {
      this.step(noStep) // the step's afterStep runs the due timers
    } catch (e) {
      rethrowLater(e)
    }
  }

  private schedule(deadline: number): void {
    this.armedAt = deadline
    this.transport.schedule!(deadline, this.alarmFn)
  }

  private arm(deadline: number, now: number): Effect.Effect<void> {
    if (deadline >= this.armedAt || deadline === Infinity) return Effect.void
    if (this.transport.schedule !== undefined) {
      // the transport's shared timer: no fiber per alarm
      this.schedule(deadline)
      return Effect.void
    }
    this.armedAt = deadline
    return Effect.asVoid(
      Effect.forkIn(
        Effect.andThen(
          Effect.sleep(Math.max(0, deadline - now)),
          Effect.sync(() => {
            if (this.armedAt === deadline) this.armedAt = Infinity
            Queue.offerUnsafe(this.mailbox, WAKE)
          })
        ),
        this.scope,
        { startImmediately: true }
      )
    )
  }

  /**
   * After a direct step: due timers, events, and an earlier alarm if the step
   * moved the next deadline forward (with a shared-timer transport at once,
   * else by waking the loop, which arms it).
   */
  private afterStep(now: number): void {
    this.settle(now)
    const deadline = this.core.nextDeadline()
    if (deadline >= this.armedAt || deadline === Infinity) return
    if (this.transport.schedule !== undefined) this.schedule(deadline)
    else if (!this.wakePosted) {
      this.wakePosted = true
      Queue.offerUnsafe(this.mailbox, WAKE)
    }
  }

  /** The end of every step: the timers due by `now`, then the events the step produced. */
  private settle(now: number): void {
    const core = this.core
    if (core.nextDeadline() <= now) core.onTimers(now)
    this.flushEvents()
  }

  /** One direct step (the caller checked `!busy && alive`). */
  private step<A>(f: (node: DhtNode, now: number) => A): A {
    this.busy = true
    try {
      const now = this.clock.currentTimeMillisUnsafe()
      this.core.setTime(now)
      const a = f(this.core, now)
      this.afterStep(now)
      return a
    } finally {
      this.busy = false
    }
  }

  exec(f: (node: DhtNode, now: number) => void): void {
    if (this.busy || !this.alive) Queue.offerUnsafe(this.mailbox, { _tag: "Run", run: f })
    else this.step(f)
  }

  /**
   * The actor loop: arm the first alarm, then forever take the whole mailbox
   * and run it as one step. An Effect loop rather than a generator: a node
   * starts one, and its start was a visible part of a node's.
   */
  loop(mailbox: Queue.Queue<Message>): Effect.Effect<never> {
    this.mailbox = mailbox
    return Effect.andThen(
      this.arm(this.core.nextDeadline(), this.clock.currentTimeMillisUnsafe()),
      Effect.suspend(() => {
        this.busy = false
        return Effect.forever(Effect.flatMap(Queue.takeAll(mailbox), this.onBatch), { disableYield: true })
      })
    )
  }

  /** One mailbox batch as a step; then the alarm for the core's next deadline. */
  private readonly onBatch = (batch: ReadonlyArray<Message>): Effect.Effect<void> => {
    const now = this.clock.currentTimeMillisUnsafe()
    this.wakePosted = false
    this.busy = true
    try {
      for (const m of batch) this.handle(m, now)
      this.settle(now)
    } finally {
      this.busy = false
    }
    return this.arm(this.core.nextDeadline(), now)
  }

  /** network-change: compare the host's interface addresses with the last seen. */
  pollInterfaces(): void {
    const now = this.transport.localAddresses()
    const key = now.join(",")
    if (key === this.interfaces) return
    this.interfaces = key
    Queue.offerUnsafe(this.mailbox, { _tag: "Run", run: (node) => node.networkChange(now) })
  }

  /** Poll the interfaces every NETWORK_POLL_MS on the shared timer, until the node's scope closes. */
  pollEvery(schedule: NonNullable<Transport["Service"]["schedule"]>): void {
    const ref = this.timerRef
    schedule(this.clock.currentTimeMillisUnsafe() + NETWORK_POLL_MS, () => {
      const actor = ref.actor
      if (actor === null) return
      actor.pollInterfaces()
      actor.pollEvery(schedule)
    })
  }

  /** Set the bootstrap list and start the core (its bootstrap, NAT sampling, ...). */
  begin(bootstrapNodes: ReadonlyArray<{ readonly host: string; readonly port: number }>): void {
    this.exec((node, now) => {
      node.bootstrapNodes = bootstrapNodes.map((b) => ({ id: node.nodeId(b.host, b.port), host: b.host, port: b.port }))
      node.start(now)
    })
  }

  /** Cut the shared timer's callbacks off this node (its scope is closing). */
  detachTimers(): void {
    this.timerRef.actor = null
  }

  // ---- NodeHandle ----

  run<A>(f: (node: DhtNode, now: number) => A): Effect.Effect<A> {
    return Effect.suspend(() => {
      if (!this.busy && this.alive) return Effect.succeed(this.step(f))
      return Effect.flatMap(Deferred.make<A>(), (d) =>
        Effect.andThen(
          Effect.sync(() =>
            Queue.offerUnsafe(this.mailbox, {
              _tag: "Run",
              run: (node, now) => {
                Deferred.doneUnsafe(d, Exit.succeed(f(node, now)))
              }
            })
          ),
          Deferred.await(d)
        )
      )
    })
  }

  startQuery(
    args: { readonly target: Uint8Array; readonly command: number; readonly internal?: boolean; readonly value?: Uint8Array | null },
    opts?: QueryOptions
  ): Effect.Effect<{ readonly query: Query; readonly replies: Stream.Stream<QueryReply, QueryError> }, never, Scope.Scope> {
    return Effect.gen({ self: this }, function*() {
      const results = yield* Queue.unbounded<QueryReply, QueryError | Cause.Done>()
      const query = yield* this.run((node) => {
        const q =
          args.internal === true
            ? node.findNode(args.target, opts)
            : node.query({ target: args.target, command: args.command, value: args.value ?? null }, opts)
        q.onreply = (r) => {
          Queue.offerUnsafe(results, r)
        }
        q.onend = (err) => {
          if (err === null) Queue.endUnsafe(results)
          else Queue.failCauseUnsafe(results, Cause.fail(err))
        }
        q.start()
        return q
      })
      yield* Effect.addFinalizer(() => this.run(() => {
        if (!query.done) query.destroy(null)
      }))
      return { query, replies: Stream.fromQueue(results) }
    })
  }

  // A query consumed by a callback: no queue between the core and the
  // consumer, so a reply reaches it in the same step that received it
  // (first-match reads end the query right there). `stop()` ends the query
  // early, successfully; interruption destroys it.
  runQuery(
    args: { readonly target: Uint8Array; readonly command: number; readonly internal?: boolean; readonly value?: Uint8Array | null },
    opts: QueryOptions | undefined,
    onreply: (reply: QueryReply, stop: () => void) => void,
    onstart?: (query: Query) => void
  ): Effect.Effect<Query, QueryError> {
    return Effect.callback<Query, QueryError>((resume) => {
      let query: Query | null = null
      let cancelled = false
      this.exec((node) => {
        if (cancelled) return
        const q =
          args.internal === true
            ? node.findNode(args.target, opts)
            : node.query({ target: args.target, command: args.command, value: args.value ?? null }, opts)
        query = q
        if (onstart !== undefined) onstart(q)
        const stop = (): void => {
          if (!q.done) q.destroy(null)
        }
        q.onreply = (r) => {
          if (!q.done) onreply(r, stop)
        }
        q.onend = (err) => resume(err === null ? Effect.succeed(q) : Effect.fail(err))
        q.start()
      })
      return Effect.sync(() => {
        cancelled = true
        this.exec(() => {
          const q = query as Query | null
          if (q !== null && !q.done) {
            q.onend = () => {}
            q.destroy(null)
          }
        })
      })
    })
  }

  private queryStream(
    args: { readonly target: Uint8Array; readonly command: number; readonly internal?: boolean; readonly value?: Uint8Array | null },
    opts?: QueryOptions
  ): Stream.Stream<QueryReply, QueryError> {
    return Stream.unwrap(Effect.map(this.startQuery(args, opts), (s) => s.replies))
  }

  findNode(target: Uint8Array, opts?: QueryOptions): Stream.Stream<QueryReply, QueryError> {
    return this.queryStream({ target, command: 2, internal: true }, opts)
  }

  query(
    args: { readonly target: Uint8Array; readonly command: number; readonly value?: Uint8Array | null },
    opts?: QueryOptions
  ): Stream.Stream<QueryReply, QueryError> {
    return this.queryStream({ target: args.target, command: args.command, value: args.value ?? null }, opts)
  }

  request(
    args: { readonly token?: Uint8Array | null; readonly command: number; readonly target?: Uint8Array | null; readonly value?: Uint8Array | null; readonly internal?: boolean },
    to: { readonly host: string; readonly port: number },
    opts: { readonly retry?: boolean; readonly socket?: SocketKind; readonly timeout?: number; readonly onSent?: () => void } = {}
  ): Effect.Effect<IncomingResponse, RequestError> {
    return Effect.flatMap(Deferred.make<IncomingResponse, RequestError>(), (d) =>
      Effect.andThen(
        this.run((node) => {
          const r = node.directRequest(
            args,
            to,
            opts,
            (res) => Deferred.doneUnsafe(d, Exit.succeed(res)),
            (err) => Deferred.doneUnsafe(d, Exit.fail(err))
          )
          if (r === null) {
            Deferred.doneUnsafe(d, Exit.fail(requestError("NODE_DESTROYED", to, args.command, args.internal === true)))
          } else opts.onSent?.()
        }),
        Deferred.await(d)
      )
    )
  }

  ping(to: { readonly host: string; readonly port: number }, opts: { readonly size?: number; readonly retry?: boolean } = {}): Effect.Effect<IncomingResponse, RequestError> {
    return this.request(
      { internal: true, command: 0, value: opts.size !== undefined && opts.size > 0 ? new Uint8Array(opts.size) : null },
      to,
      opts.retry === false ? { retry: false } : {}
    )
  }

  addNode(n: { readonly host: string; readonly port: number }): Effect.Effect<void> {
    return this.run((node) => node.addNode(n))
  }

  get status(): Effect.Effect<NodeStatus> {
    return this.run((node): NodeStatus => {
      const sockets = this.socketPair
      const outgoing = node.firewalled ? sockets.client : sockets.server
      return {
        address: outgoing.local,
        serverAddress: sockets.server.local,
        remoteAddress: node.remoteAddress(),
        id: node.id,
        tableId: node.table.id,
        tableSize: node.table.size,
        ephemeral: node.ephemeral,
        firewalled: node.firewalled,
        bootstrapped: node.bootstrapped,
        nat: { host: node.host, port: node.port, randomized: node.randomized, classification: node.classification, resampling: node.resampling },
        online: node.online,
        degraded: node.degraded,
        requests: { ...node.io.stats.requests },
        dropped: node.io.stats.dropped
      }
    })
  }

  get events(): PubSub.PubSub<DhtEvent> {
    return (this.pubsub ??= Effect.runSync(PubSub.unbounded<DhtEvent>()))
  }

  onEvent(listener: (e: DhtEvent) => void): () => void {
    this.listeners.add(listener)
    return () => {
      this.listeners.delete(listener)
    }
  }

  get ready(): Effect.Effect<void> {
    return Deferred.await(this.readyLatch)
  }

  whenReady(f: () => void): void {
    if (Deferred.isDoneUnsafe(this.readyLatch)) f()
    else (this.readyWaiters ??= []).push(f)
  }

  get suspend(): Effect.Effect<void> {
    return this.run((node) => node.suspend())
  }

  get resume(): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      const prevServer = this.socketPair.server.local.port
      const prevClient = this.socketPair.client.local.port
      yield* closePair(this.socketPair)
      const pair = bindPairNow(this.transport, this.config, prevServer, prevClient)
      if (pair instanceof BindError) return yield* Effect.die(pair)
      this.socketPair = pair
      this.attachReceivers()
      yield* this.run((node, now) => {
        node.serverPort = this.socketPair.server.local.port
        node.resume(now)
      })
    })
  }

  get networkChange(): Effect.Effect<void> {
    return this.run((node) => {
      const addresses = this.transport.localAddresses()
      // what the interface poll compares with: it sees no second change
      this.interfaces = addresses.join(",")
      node.networkChange(addresses)
    })
  }

  /** The core fails everything in flight and ends its queries; the actor keeps answering (with NODE_DESTROYED) until the owning scope closes. */
  get destroy(): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      if (this.destroyed) return
      this.destroyed = true
      yield* this.run((node) => node.destroy())
      yield* closePair(this.socketPair)
    })
  }

  sockets(): SocketPair {
    return this.socketPair
  }
}

/**
 * The bootstrap list when no entry needs the network first (IPv4 literals,
 * no "suggestedIP@hostname"): resolved at once. Else null.
 */
const plainBootstrap = (entries: ReadonlyArray<BootstrapEntry>): Array<{ host: string; port: number }> | null => {
  const out: Array<{ host: string; port: number }> = []
  for (const entry of entries) {
    const parsed = parseBootstrap(entry)
    if (parsed === null) continue
    if (!isIPv4(parsed.host)) return null
    out.push(parsed)
  }
  return out
}

/** Resolve the bootstrap list: "suggestedIP@hostname" entries are pinged first, hostnames looked up. */
const resolveBootstrap = (actor: NodeActor, entries: ReadonlyArray<BootstrapEntry>): Effect.Effect<Array<{ host: string; port: number }>> =>
  Effect.gen(function*() {
    const out: Array<{ host: string; port: number }> = []
    for (const entry of entries) {
      const parsed = parseBootstrap(entry)
      if (parsed === null) continue
      let host = parsed.host
      let needLookup = !isIPv4(host)
      const at = host.indexOf("@")
      if (at !== -1) {
        const suggested = host.slice(0, at)
        const fallback = host.slice(at + 1)
        const pinged = yield* Effect.result(actor.ping({ host: suggested, port: parsed.port }))
        if (pinged._tag === "Success") {
          host = suggested
          needLookup = false
        } else {
          host = fallback
          needLookup = !isIPv4(host)
        }
      }
      if (needLookup) {
        const r = yield* Effect.result(Effect.tryPromise(() => lookup(host, { family: 4 })))
        if (r._tag === "Failure") continue
        host = r.success.address
      }
      out.push({ host, port: parsed.port })
    }
    return out
  })

const PASS_THROUGH: ReadonlyArray<keyof CoreConfig> = [
  "ephemeral", "adaptive", "firewalled", "quickFirewall", "concurrency", "maxWindow", "maxPingDelay",
  "sendDownHints", "downHintsRateLimit", "requestRateLimit", "k", "nodes", "filterNode", "natSample", "onRequest"
]

/**
 * Start a DHT node actor in the current scope. With a bootstrap list of IPv4
 * literals it starts at once; "suggestedIP@hostname" entries and hostnames
 * are resolved first (the node's sockets and actor already run meanwhile).
 */
export const makeNode = (config: NodeConfig = {}): Effect.Effect<NodeHandle, BindError, Transport | Crypto | Scope.Scope> =>
  Effect.contextWith((context: Context.Context<Transport | Crypto | Scope.Scope>) => {
    const actor = openNode(context, config)
    if (actor instanceof BindError) return Effect.fail(actor)
    const entries = config.bootstrap ?? []
    const plain = plainBootstrap(entries)
    if (plain !== null) {
      actor.begin(plain)
      return Effect.succeed(actor)
    }
    return Effect.map(resolveBootstrap(actor, entries), (nodes) => {
      actor.begin(nodes)
      return actor
    })
  })

/**
 * Start a DHT node now, in the scope of `context`, when its bootstrap list
 * needs no resolving (IPv4 literals, see `makeNode`); null when it does.
 * Plain code: no Effect runs on this path but the actor fiber's start and
 * the registration of its finalizers (a node's start used to be about 480
 * Effect function calls, run cold by the first nodes of a process).
 */
export const makeNodeNow = (context: Context.Context<Transport | Crypto | Scope.Scope>, config: NodeConfig = {}): NodeHandle | BindError | null => {
  const plain = plainBootstrap(config.bootstrap ?? [])
  if (plain === null) return null
  const actor = openNode(context, config)
  if (actor instanceof BindError) return actor
  actor.begin(plain)
  return actor
}

/** Bind, build and start a node actor in the context's scope (its core not started: `begin`). */
const openNode = (context: Context.Context<Transport | Crypto | Scope.Scope>, config: NodeConfig): NodeActor | BindError => {
  const transport = Context.get(context, Transport)
  const scope = Context.get(context, Scope.Scope)
  const clock = Context.get(context, Clock.Clock)
  const sockets = bindPairNow(transport, config, 0, 0)
  if (sockets instanceof BindError) return sockets
  const actor = new NodeActor(config, transport, scope, clock, Deferred.makeUnsafe(), Deferred.makeUnsafe(), sockets)
  try {
    actor.core = new DhtNode(coreOptions(config, Context.get(context, Crypto), actor, sockets), clock.currentTimeMillisUnsafe())
  } catch (e) {
    // options the core cannot take (a malformed `nodes` entry, ...): nothing stays open
    Effect.runFork(closePair(sockets))
    throw e
  }
  actor.attachReceivers()
  // network-change: watch the host's interface addresses (every 5 s)
  actor.interfaces = transport.localAddresses().join(",")
  const schedule = transport.schedule
  if (schedule !== undefined) actor.pollEvery(schedule)
  const run = Effect.runForkWith(context)
  // The actor fiber starts here and runs until it waits for its mailbox. It
  // ties itself to the scope first (as forkIn does), then registers the
  // node's finalizer, which therefore runs before the fiber's own: the node
  // is destroyed (its sockets closed), its fiber interrupted and its timers
  // detached. The finalizer's Effect is made when it runs.
  run(Effect.withFiber((fiber) => {
    Fiber.runIn(fiber, scope)
    return Effect.andThen(
      Scope.addFinalizer(
        scope,
        Effect.suspend(() =>
          Effect.andThen(
            Effect.ignore(Effect.timeoutOption(actor.destroy, 1000)),
            Effect.andThen(
              Fiber.interrupt(fiber),
              Effect.suspend(() => {
                actor.alive = false
                actor.detachTimers()
                // (closed by destroy unless it timed out; closing is idempotent)
                return closePair(actor.sockets())
              })
            )
          )
        )
      ),
      Effect.flatMap(Queue.unbounded<Message>(), (mailbox) => {
        const supervised: Effect.Effect<never> = actor.loop(mailbox).pipe(
          Effect.catchCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.andThen(actor.fail(cause), Effect.suspend(() => supervised))))
        )
        return supervised
      })
    )
  }))
  if (schedule === undefined) {
    Fiber.runIn(run(Effect.forever(Effect.andThen(Effect.sleep(NETWORK_POLL_MS), Effect.sync(() => actor.pollInterfaces())))), scope)
  }
  return actor
}

/** A node's actor hit a defect and the node closed itself (issue 21: never half alive). */
export class NodeActorFailed extends Data.TaggedError("NodeActorFailed")<{ readonly detail: string; readonly cause?: unknown }> {
  override get name(): string {
    return "NodeActorFailed"
  }
  override get message(): string {
    return `The DHT node's actor failed and the node closed: ${this.detail}`
  }
  get code(): string {
    return "NODE_DESTROYED"
  }
}

/**
 * Bind a node's server and client sockets (previous ports first). Binding is
 * synchronous (`Transport.open`); a server socket bound before the client
 * failed is closed again.
 */
const bindPairNow = (transport: Transport["Service"], config: NodeConfig, prevServer: number, prevClient: number): SocketPair | BindError => {
  const server = openServer(transport, config.host, config.port ?? 0, config.anyPort !== false, prevServer)
  if (server instanceof BindError) return server
  let client = transport.open(bindAt(config.host, prevClient))
  if (client instanceof BindError && prevClient !== 0) client = transport.open(bindAt(config.host, 0))
  if (client instanceof BindError) {
    Effect.runFork(server.close)
    return client
  }
  return { server, client }
}

/** Close both sockets of a pair (their close Effects are made when it runs). */
const closePair = (pair: SocketPair): Effect.Effect<void> => Effect.suspend(() => Effect.andThen(pair.server.close, pair.client.close))

/** The core's options: the configuration's pass-through keys, the crypto, the random source and the actor's transmit. */
const coreOptions = (config: NodeConfig, crypto: CryptoImpl, actor: NodeActor, sockets: SocketPair): DhtNodeOptions => {
  const random = config.randomSeed !== undefined ? seededRandom(config.randomSeed) : Math.random
  const options: { -readonly [K in keyof DhtNodeOptions]: DhtNodeOptions[K] } = {
    crypto,
    random,
    transmit: (socket, to, data, ttl) => actor.transmit(socket, to, data, ttl),
    serverPort: sockets.server.local.port
  }
  for (let i = 0; i < PASS_THROUGH.length; i++) {
    const key = PASS_THROUGH[i]!
    const v = config[key]
    if (v !== undefined) (options as Record<string, unknown>)[key] = v
  }
  if (config.randomSeed !== undefined) {
    options.randomBytes = (n: number) => {
      const b = new Uint8Array(n)
      for (let i = 0; i < n; i++) b[i] = Math.floor(random() * 256)
      return b
    }
  }
  return options
}

export { QueryError, RequestError }
