/**
 * The topic discovery core (spec: flock.md §7, §9.6): one per joined topic,
 * the state of the topic-discovery actor, as a deterministic state machine.
 * It aggregates the modes of its handles, runs the announce / lookup
 * refresh cycle as outputs, schedules the next refresh with jitter and
 * sleep detection, and tears down (unannounce) on destroy and suspend.
 * No DHT, no timers, no Math.random: time comes in as `now`, randomness
 * through the injected `random()`, "is this key connected?" through the
 * injected `isConnected` (the swarm core's per-key map), and what to do
 * comes out of `poll()`.
 *
 * One refresh cycle (§7.4), numbered:
 * 1. (first cycle of a discovery created while an older one for the same
 *    topic is tearing down) wait for `handlePredecessorDone`;
 * 2. server mode: `Listen` → the owner awaits the swarm's listen and calls
 *    `handleListened(now, cycle, ok)`;
 * 3. `Query { kind, clear, closestNodes }`: announce (server), else
 *    lookupAndUnannounce (we announced before), else lookup; the owner runs
 *    it, feeds each reply to `handleReply(cycle, peers)` (which returns the
 *    peers to hand to the swarm core, within the `limit` budget) and ends
 *    with `handleQueryDone(now, cycle, { ok, closestNodes })`;
 * 4. `RefreshSettled { cycle, ok }` settles every `refresh()` / `flushed()`
 *    waiting on it, and the next refresh is scheduled (10 min + 0–2 min).
 *
 * Flock only: after the first client-mode cycle of the discovery (and of
 * each resume) one follow-up lookup runs FOLLOW_UP_DELAY + 0..JITTER later
 * (its own cycle, kind "lookup", no listen, no announce, the refresh timer
 * untouched), so peers that joined in the same instant, whose announcements
 * landed after our first query, are found at once instead of 10 min later.
 * A `refresh()` during it replaces it; `flushed()` does not wait for it.
 *
 * A mode change cancels the running query (`CancelQuery`) and starts a new
 * cycle; the superseded one settles false. `destroy` / `suspend` cancel the
 * query and the timer, wait for the query to end, then `Unannounce` (if we
 * announced) at the closest nodes known before the abort merged with any
 * newer ones; the owner calls `handleUnannounced(now)` and
 * `TeardownDone { reason }` follows.
 */
import * as Data from "effect/Data"
import { copyBytes, toHex } from "../../protocol/encoding.js"
import {
  DELAY_GRACE_PERIOD,
  FOLLOW_UP_DELAY,
  FOLLOW_UP_JITTER,
  MAX_DISCOVERY_CACHE,
  REFRESH_INTERVAL,
  REFRESH_JITTER,
  TOPIC_LENGTH
} from "./constants.js"
import type { RelayAddress } from "./peer-info.js"

export const ERR_DISCOVERY_DESTROYED = "PeerDiscovery is destroyed"
export const ERR_NO_MODE = "Cannot refresh with neither client nor server option"

/**
 * A topic is a 32-byte key.
 * Quirk §15.2 #4: the reference's message says 32 bytes but never checks the length; we check it.
 */
export const isTopic = (topic: unknown): topic is Uint8Array => topic instanceof Uint8Array && topic.length === TOPIC_LENGTH

/** A DHT node a query reached (`id` is its node id when known). */
export interface ClosestNode {
  readonly host: string
  readonly port: number
  readonly id?: Uint8Array | null | undefined
}

export interface DiscoveredPeer {
  readonly publicKey: Uint8Array
  readonly relayAddresses: ReadonlyArray<RelayAddress>
  /**
   * Flock only: found by a query of a topic we announce (or announced and
   * have not unannounced yet), so the peer may have found us too and be
   * dialling us (the swarm core's loser hold, `LOSER_HOLD`).
   */
  readonly mutual?: boolean | undefined
}

export type QueryKind = "announce" | "lookup" | "lookupAndUnannounce"

export type TeardownReason = "destroy" | "suspend"

export type DiscoveryOutput = Data.TaggedEnum<{
  /** Await the swarm's `listen()`, then `handleListened(now, cycle, ok)`. */
  Listen: { readonly cycle: number }
  /** Run the query; replies to `handleReply(cycle, …)`, its end to `handleQueryDone(now, cycle, …)`. */
  Query: {
    readonly cycle: number
    readonly kind: QueryKind
    /** announce only: clear our older record first (the first announce of this discovery). */
    readonly clear: boolean
    readonly closestNodes: ReadonlyArray<ClosestNode> | null
  }
  /** Destroy the query of that cycle; still report its end with `handleQueryDone`. */
  CancelQuery: { readonly cycle: number }
  /** `unannounce(topic, keyPair, { closestNodes, onlyClosestNodes: true, force: true })`, then `handleUnannounced(now)` (errors ignored). */
  Unannounce: { readonly closestNodes: ReadonlyArray<ClosestNode> }
  /** Settle the `refresh()` / `flushed()` calls waiting on that cycle. */
  RefreshSettled: { readonly cycle: number; readonly ok: boolean }
  /** The last handle was destroyed: leave the topic (the swarm then destroys this discovery). */
  Leave: {}
  /** `destroy()` / `suspend()` finished. */
  TeardownDone: { readonly reason: TeardownReason }
}>

export const DiscoveryOutput = Data.taggedEnum<DiscoveryOutput>()

/**
 * What a refresh request (or `flushed()`) gets:
 * - Pending: wait for `RefreshSettled { cycle }`;
 * - Settled: known at once (`ok` undefined: skipped because suspended);
 * - Rejected: destroyed discovery or handle (`PeerDiscovery is destroyed`),
 *   or neither client nor server (`Cannot refresh with neither ...`).
 */
export type RefreshTicket = Data.TaggedEnum<{
  Pending: { readonly cycle: number }
  Settled: { readonly ok: boolean | undefined }
  Rejected: { readonly reason: "destroyed" | "handle-destroyed" | "no-mode" }
}>

export const RefreshTicket = Data.taggedEnum<RefreshTicket>()

export type HandleId = number

export interface HandleOptions {
  readonly server?: boolean | undefined
  readonly client?: boolean | undefined
  readonly limit?: number | undefined
}

export interface HandleState {
  readonly isClient: boolean
  readonly isServer: boolean
  readonly destroyed: boolean
}

export interface TopicDiscoveryOptions {
  readonly topic: Uint8Array
  /** Uniform in [0, 1): refresh jitter. */
  readonly random: () => number
  /** A connection (pending or open) to that hex key exists; default never. */
  readonly isConnected?: ((keyHex: string) => boolean) | undefined
  /** Created while the swarm is suspended. */
  readonly suspended?: boolean | undefined
  /** An older discovery of the same topic is tearing down: the first cycle waits for `handlePredecessorDone`. */
  readonly waitForPredecessor?: boolean | undefined
  readonly limit?: number | undefined
  /** The early follow-up lookup after the first client-mode cycle (Flock only); default true, false for the reference's schedule alone. */
  readonly followUp?: boolean | undefined
}

type CyclePhase = "predecessor" | "listen" | "query"

interface Cycle {
  readonly id: number
  phase: CyclePhase
  clear: boolean
  kind: QueryKind | null
  /** Cancelled by an abort (destroy / suspend): its error is swallowed. */
  aborted: boolean
  /** The early follow-up lookup (Flock only). */
  followUp: boolean
}

interface Teardown {
  readonly reasons: Set<TeardownReason>
  readonly nodesBefore: ReadonlyArray<ClosestNode> | null
  waitCycle: number | null
  unannouncing: boolean
}

interface Timer {
  readonly start: number
  readonly delay: number
  readonly deadline: number
}

interface Handle {
  isClient: boolean
  isServer: boolean
  destroyed: boolean
}

export class TopicDiscoveryCore {
  readonly topic: Uint8Array
  readonly topicKey: string
  isClient = false
  isServer = false
  /** Per-refresh budget of new peers (last writer wins). */
  limit: number

  private readonly random: () => number
  private readonly isConnected: (keyHex: string) => boolean
  private isDestroyed = false
  private isSuspended: boolean
  private waitingPredecessor: boolean

  private readonly handles = new Map<HandleId, Handle>()
  private nextHandle = 1
  private clientHandles = 0
  private serverHandles = 0

  private firstAnnounce = true
  private unannounceNeeded = false
  private nodes: ReadonlyArray<ClosestNode> | null = null
  private readonly discovered = new Set<string>()
  private budget = Number.POSITIVE_INFINITY
  private cycles = 0
  private current: Cycle | null = null
  /** Cycles whose query was cancelled and has not reported its end yet. */
  private readonly draining = new Map<number, Cycle>()
  private timer: Timer | null = null
  /** No client-mode cycle has completed since creation / resume: the next one is followed up. */
  private followUpArmed: boolean
  private readonly followUpEnabled: boolean
  /** When the follow-up lookup is due, null when none. */
  private followUpAt: number | null = null
  private teardown: Teardown | null = null
  private tornDown = false

  private readonly out: Array<DiscoveryOutput> = []

  constructor(options: TopicDiscoveryOptions) {
    this.topic = options.topic
    this.topicKey = toHex(options.topic)
    this.random = options.random
    this.isConnected = options.isConnected ?? (() => false)
    this.isSuspended = options.suspended ?? false
    this.waitingPredecessor = options.waitForPredecessor ?? false
    this.limit = options.limit ?? Number.POSITIVE_INFINITY
    this.followUpEnabled = options.followUp ?? true
    this.followUpArmed = this.followUpEnabled
  }

  // -------------------------------------------------------------------------
  // Getters
  // -------------------------------------------------------------------------

  get destroyed(): boolean {
    return this.isDestroyed
  }

  get suspended(): boolean {
    return this.isSuspended
  }

  /** An unannounce will be needed on teardown (we announced, or a lookup-and-unannounce has not completed). */
  get needsUnannounce(): boolean {
    return this.unannounceNeeded
  }

  /** The closest nodes of the last successful query (the next query's seed). */
  get closestNodes(): ReadonlyArray<ClosestNode> | null {
    return this.nodes
  }

  /** The in-flight refresh cycle, null when none. */
  get refreshing(): number | null {
    return this.current === null ? null : this.current.id
  }

  /** A destroy or suspend is in progress. */
  get tearingDown(): boolean {
    return this.teardown !== null
  }

  /** Keys remembered from the current / last query (for the `limit` budget). */
  get discoveredKeys(): ReadonlySet<string> {
    return this.discovered
  }

  /** Some handle is in client mode (the modes the next refresh adopts; `isClient` is the running cycle's). */
  get wantsClient(): boolean {
    return this.clientHandles > 0
  }

  /** Some handle is in server mode. */
  get wantsServer(): boolean {
    return this.serverHandles > 0
  }

  get handleCount(): number {
    return this.handles.size
  }

  handle(id: HandleId): HandleState | undefined {
    const h = this.handles.get(id)
    return h === undefined ? undefined : { isClient: h.isClient, isServer: h.isServer, destroyed: h.destroyed }
  }

  // -------------------------------------------------------------------------
  // Outputs and timer
  // -------------------------------------------------------------------------

  poll(): DiscoveryOutput | undefined {
    return this.out.shift()
  }

  drain(): Array<DiscoveryOutput> {
    return this.out.splice(0, this.out.length)
  }

  /** When the refresh timer fires, +Infinity when none is set. */
  nextDeadline(): number {
    const t = this.timer === null ? Number.POSITIVE_INFINITY : this.timer.deadline
    return this.followUpAt !== null && this.followUpAt < t ? this.followUpAt : t
  }

  /** When the follow-up lookup is due (null: none scheduled). */
  get followUpDeadline(): number | null {
    return this.followUpAt
  }

  /**
   * The refresh timer fired (§7.5). If far more than its delay has passed
   * (delay + 30 s: the machine slept), reschedule with the eager delay
   * (0–2 min) instead of refreshing now; otherwise refresh. Returns the
   * refresh ticket, or null when nothing was due or it was rescheduled.
   */
  handleTimeout(now: number): RefreshTicket | null {
    if (this.followUpAt !== null && now >= this.followUpAt) {
      this.followUpAt = null
      this.startFollowUp()
    }
    const t = this.timer
    if (t === null || now < t.deadline) return null
    this.timer = null
    if (now - t.start > t.delay + DELAY_GRACE_PERIOD) {
      this.scheduleRefresh(now, true)
      return null
    }
    return this.refresh(now)
  }

  // -------------------------------------------------------------------------
  // Handles (§7.2, §7.6)
  // -------------------------------------------------------------------------

  /**
   * A `join(topic, opts)`: add a handle and refresh with its modes
   * (defaults server and client true, limit ∞). Null handle when the
   * discovery is destroyed.
   */
  addHandle(now: number, options: HandleOptions = {}): { readonly handle: HandleId | null; readonly ticket: RefreshTicket } {
    if (this.isDestroyed) return { handle: null, ticket: RefreshTicket.Rejected({ reason: "destroyed" }) }
    const id = this.nextHandle++
    this.handles.set(id, { isClient: false, isServer: false, destroyed: false })
    const ticket = this.refreshHandle(now, id, {
      server: options.server ?? true,
      client: options.client ?? true,
      limit: options.limit ?? Number.POSITIVE_INFINITY
    })
    return { handle: id, ticket }
  }

  /**
   * `handle.refresh({ client, server, limit })`: modes default to the
   * handle's current ones, limit to ∞ (it overwrites the discovery's).
   */
  refreshHandle(now: number, id: HandleId, options: HandleOptions = {}): RefreshTicket {
    const h = this.handles.get(id)
    if (h === undefined || h.destroyed) return RefreshTicket.Rejected({ reason: "handle-destroyed" })
    const client = options.client ?? h.isClient
    const server = options.server ?? h.isServer
    if (!client && !server) return RefreshTicket.Rejected({ reason: "no-mode" })
    if (client !== h.isClient) {
      h.isClient = client
      this.clientHandles += client ? 1 : -1
    }
    if (server !== h.isServer) {
      h.isServer = server
      this.serverHandles += server ? 1 : -1
    }
    this.limit = options.limit ?? Number.POSITIVE_INFINITY
    return this.refresh(now)
  }

  /**
   * `handle.destroy()` (idempotent). The last handle gone: `Leave`. A
   * remaining client-only set of handles after we announced: refresh
   * (switching to lookup-and-unannounce). Returns that refresh's ticket, or
   * Settled when nothing else happens.
   */
  destroyHandle(now: number, id: HandleId): RefreshTicket {
    const h = this.handles.get(id)
    if (h === undefined || h.destroyed) return RefreshTicket.Settled({ ok: undefined })
    h.destroyed = true
    if (h.isClient) this.clientHandles--
    if (h.isServer) this.serverHandles--
    this.handles.delete(id)
    if (this.isDestroyed) return RefreshTicket.Settled({ ok: undefined })
    if (this.handles.size === 0) {
      this.out.push(DiscoveryOutput.Leave())
      return RefreshTicket.Settled({ ok: undefined })
    }
    if (this.serverHandles === 0 && this.unannounceNeeded) return this.refresh(now)
    return RefreshTicket.Settled({ ok: undefined })
  }

  // -------------------------------------------------------------------------
  // Refresh (§7.3, §7.4)
  // -------------------------------------------------------------------------

  /**
   * Refresh now: join the in-flight cycle when the aggregated modes are
   * unchanged, otherwise cancel it and start a new one.
   */
  refresh(now: number): RefreshTicket {
    if (this.isDestroyed) return RefreshTicket.Rejected({ reason: "destroyed" })
    const server = this.serverHandles > 0
    const client = this.clientHandles > 0
    if (this.isSuspended) return RefreshTicket.Settled({ ok: undefined })
    // a real refresh replaces a running follow-up lookup (which neither announces nor has waiters)
    if (this.current !== null && this.current.followUp) this.supersede(this.current)
    if (server === this.isServer && client === this.isClient) {
      if (this.current !== null) return RefreshTicket.Pending({ cycle: this.current.id })
    } else {
      if (this.current !== null) this.supersede(this.current)
      this.isServer = server
      this.isClient = client
    }
    return RefreshTicket.Pending({ cycle: this.startCycle() })
  }

  /** `flushed()` (§7.5), after the owner awaited the swarm's listen: the in-flight cycle, or true. */
  flushed(): RefreshTicket {
    return this.current === null || this.current.followUp ? RefreshTicket.Settled({ ok: true }) : RefreshTicket.Pending({ cycle: this.current.id })
  }

  /** The older discovery of this topic finished tearing down. */
  handlePredecessorDone(now: number): void {
    if (!this.waitingPredecessor) return
    this.waitingPredecessor = false
    const c = this.current
    if (c !== null && c.phase === "predecessor") this.proceed(c)
    if (this.teardown !== null) this.continueTeardown()
  }

  /** The swarm's `listen()` settled for that cycle. */
  handleListened(now: number, cycle: number, ok: boolean): void {
    const c = this.current
    if (c === null || c.id !== cycle || c.phase !== "listen") return
    if (!ok) {
      this.current = null
      this.settle(c, false)
      // Decision: a failed listen still schedules the next refresh (the reference then never refreshes again).
      this.scheduleRefresh(now, false)
      return
    }
    this.unannounceNeeded = true
    this.startQuery(c)
  }

  /**
   * A reply of the cycle's query: the peers to hand to the swarm core
   * (`handlePeer`), in order. Nothing in server-only mode, while inactive,
   * or for a superseded cycle. With a finite `limit`, at most that many
   * not-yet-connected peers per refresh (§9.6).
   */
  handleReply(cycle: number, peers: ReadonlyArray<DiscoveredPeer>): Array<DiscoveredPeer> {
    const c = this.current
    if (c === null || c.id !== cycle || c.phase !== "query") return []
    if (!this.isClient || !this.active()) return []
    // our record is (or may still be) on the DHT: the peers we find may be dialling us
    const mutual = this.isServer || this.unannounceNeeded
    const out: Array<DiscoveredPeer> = []
    for (const peer of peers) {
      if (this.budget < Number.POSITIVE_INFINITY) {
        const id = toHex(peer.publicKey)
        if (this.discovered.size < MAX_DISCOVERY_CACHE) this.discovered.add(id)
        if (this.budget <= 0) continue
        // a connection may change mid-query and the budget be overshot by one: accepted (§9.6)
        if (!this.isConnected(id)) this.budget--
      }
      out.push(mutual ? { publicKey: peer.publicKey, relayAddresses: peer.relayAddresses, mutual: true } : peer)
    }
    return out
  }

  /**
   * The cycle's query ended: `ok` false when it failed; `closestNodes` the
   * nodes it reached (the next query's seed, and the unannounce targets).
   */
  handleQueryDone(now: number, cycle: number, result: { readonly ok: boolean; readonly closestNodes?: ReadonlyArray<ClosestNode> | null | undefined }): void {
    const nodes = result.closestNodes ?? null
    const drained = this.draining.get(cycle)
    if (drained !== undefined) {
      this.draining.delete(cycle)
      if (drained.aborted) {
        // Decision: an aborted lookup-and-unannounce leaves the flag set so the teardown unannounces (the reference clears it and skips the unannounce).
        // an abort's cancellation error is swallowed; keep what the query reached
        if (nodes !== null && nodes.length > 0) this.nodes = copyNodes(nodes)
        this.settle(drained, true)
        if (this.teardown !== null && this.teardown.waitCycle === cycle) {
          this.teardown.waitCycle = null
          this.continueTeardown()
        }
      }
      return
    }
    const c = this.current
    if (c === null || c.id !== cycle || c.phase !== "query") return
    this.current = null
    if (c.followUp) {
      // the refresh timer set by the first cycle stands; a follow-up never clears the unannounce flag
      if (result.ok && nodes !== null) this.nodes = copyNodes(nodes)
      this.settle(c, result.ok)
      return
    }
    if (this.active()) {
      this.scheduleRefresh(now, false)
      if (this.followUpArmed && this.isClient) {
        this.followUpArmed = false
        this.followUpAt = now + FOLLOW_UP_DELAY + Math.round(this.random() * FOLLOW_UP_JITTER)
      }
    }
    if (result.ok) {
      if (nodes !== null) this.nodes = copyNodes(nodes)
      // the latest query was a lookup (-and-unannounce) that completed: nothing left announced
      if (c.kind !== "announce") this.unannounceNeeded = false
    }
    this.settle(c, result.ok)
  }

  // -------------------------------------------------------------------------
  // Teardown (§7.6)
  // -------------------------------------------------------------------------

  /**
   * Destroy (idempotent): "started" the first time, then "pending" until
   * `TeardownDone { reason: "destroy" }`, then "done".
   */
  destroy(now: number): "started" | "pending" | "done" {
    if (this.isDestroyed) return this.tornDown ? "done" : "pending"
    this.isDestroyed = true
    this.startTeardown("destroy")
    return "started"
  }

  /** Suspend: abort and unannounce; false when already suspended or destroyed. */
  suspend(now: number): boolean {
    if (this.isSuspended || this.isDestroyed) return false
    this.isSuspended = true
    this.startTeardown("suspend")
    return true
  }

  /** Resume: refresh at once (its ticket; errors are the owner's to ignore). Null when not suspended. */
  resume(now: number): RefreshTicket | null {
    if (!this.isSuspended) return null
    this.isSuspended = false
    this.followUpArmed = this.followUpEnabled
    return this.refresh(now)
  }

  // -------------------------------------------------------------------------
  // Internals
  // -------------------------------------------------------------------------

  private active(): boolean {
    return !this.isDestroyed && !this.isSuspended
  }

  private startCycle(): number {
    const c: Cycle = { id: ++this.cycles, phase: "predecessor", clear: false, kind: null, aborted: false, followUp: false }
    this.current = c
    if (!this.waitingPredecessor) this.proceed(c)
    return c.id
  }

  /** The follow-up lookup is due: run it unless a refresh is in flight (that one finds the same peers) or we left client mode. */
  private startFollowUp(): void {
    if (this.current !== null || !this.active() || !this.isClient || this.teardown !== null) return
    const c: Cycle = { id: ++this.cycles, phase: "query", clear: false, kind: "lookup", aborted: false, followUp: true }
    this.current = c
    // the tail of the first refresh: its `limit` budget and discovered keys carry on
    this.out.push(DiscoveryOutput.Query({ cycle: c.id, kind: "lookup", clear: false, closestNodes: this.nodes }))
  }

  private proceed(c: Cycle): void {
    c.clear = this.isServer && this.firstAnnounce
    if (c.clear) this.firstAnnounce = false
    if (this.isServer) {
      c.phase = "listen"
      this.out.push(DiscoveryOutput.Listen({ cycle: c.id }))
      return
    }
    this.startQuery(c)
  }

  private startQuery(c: Cycle): void {
    let budget = this.limit
    // Quirk §15.2 #1 (§9.6): the reference tests hex keys against a set of streams, so this never matches; we ask the connection map.
    if (budget < Number.POSITIVE_INFINITY && budget > 0) {
      for (const id of this.discovered) {
        if (!this.isConnected(id)) continue
        if (--budget === 0) break
      }
    }
    this.budget = budget
    this.discovered.clear()
    const kind: QueryKind = this.isServer ? "announce" : this.unannounceNeeded ? "lookupAndUnannounce" : "lookup"
    c.phase = "query"
    c.kind = kind
    this.out.push(DiscoveryOutput.Query({ cycle: c.id, kind, clear: kind === "announce" && c.clear, closestNodes: this.nodes }))
  }

  /** A mode change replaces the in-flight cycle: a running query is cancelled and fails; an earlier phase yields quietly. */
  private supersede(c: Cycle): void {
    this.current = null
    if (c.phase === "query") {
      this.draining.set(c.id, c)
      this.out.push(DiscoveryOutput.CancelQuery({ cycle: c.id }))
      this.settle(c, false)
    } else {
      this.settle(c, true)
    }
  }

  private settle(c: Cycle, ok: boolean): void {
    this.out.push(DiscoveryOutput.RefreshSettled({ cycle: c.id, ok }))
  }

  private scheduleRefresh(now: number, eager: boolean): void {
    const jitter = Math.round(this.random() * REFRESH_JITTER)
    const delay = eager ? jitter : REFRESH_INTERVAL + jitter
    this.timer = { start: now, delay, deadline: now + delay }
  }

  private startTeardown(reason: TeardownReason): void {
    if (this.teardown !== null) {
      this.teardown.reasons.add(reason)
      return
    }
    this.timer = null
    this.followUpAt = null
    const td: Teardown = { reasons: new Set([reason]), nodesBefore: this.nodes, waitCycle: null, unannouncing: false }
    this.teardown = td
    const c = this.current
    if (c !== null) {
      this.current = null
      c.aborted = true
      if (c.phase === "query") {
        this.draining.set(c.id, c)
        this.out.push(DiscoveryOutput.CancelQuery({ cycle: c.id }))
        td.waitCycle = c.id
      } else {
        this.settle(c, true)
      }
    }
    this.continueTeardown()
  }

  private continueTeardown(): void {
    const td = this.teardown
    if (td === null || this.waitingPredecessor || td.waitCycle !== null || td.unannouncing) return
    // resumed meanwhile (suspend only): nothing to unannounce
    if (this.active()) return this.finishTeardown()
    if (this.unannounceNeeded) {
      const nodes = mergeNodes(td.nodesBefore, this.nodes)
      if (nodes.length > 0) {
        td.unannouncing = true
        this.out.push(DiscoveryOutput.Unannounce({ closestNodes: nodes }))
        return
      }
      this.unannounceNeeded = false
    }
    this.finishTeardown()
  }

  /** The teardown's unannounce settled (success or not). */
  handleUnannounced(now: number): void {
    const td = this.teardown
    if (td === null || !td.unannouncing) return
    td.unannouncing = false
    this.unannounceNeeded = false
    this.finishTeardown()
  }

  private finishTeardown(): void {
    const td = this.teardown
    if (td === null) return
    this.teardown = null
    if (this.isDestroyed) this.tornDown = true
    for (const reason of td.reasons) this.out.push(DiscoveryOutput.TeardownDone({ reason }))
  }

  /** Destroy finished (`TeardownDone { reason: "destroy" }` was emitted). */
  get destroyedFully(): boolean {
    return this.tornDown
  }
}

/** Standalone copies of the node ids (never views into a larger receive buffer). */
const copyNodes = (nodes: ReadonlyArray<ClosestNode>): ReadonlyArray<ClosestNode> =>
  nodes.map((n) => (n.id ? { host: n.host, port: n.port, id: copyBytes(n.id) } : { host: n.host, port: n.port }))

/**
 * The unannounce targets: the nodes known before the abort, plus any newer
 * node (with an id) not among them.
 */
export const mergeNodes = (
  before: ReadonlyArray<ClosestNode> | null,
  after: ReadonlyArray<ClosestNode> | null
): ReadonlyArray<ClosestNode> => {
  if (before === null) return after ?? []
  if (after === null || after === before) return before
  const merged = before.slice()
  const ids = new Set<string>()
  for (const n of before) if (n.id) ids.add(toHex(n.id))
  for (const n of after) {
    if (!n.id) continue
    const hex = toHex(n.id)
    if (ids.has(hex)) continue
    ids.add(hex)
    merged.push(n)
  }
  return merged
}
