/**
 * The dht-rpc node core (dht-rpc.md §4, §5, §9–§12): routing-table upkeep
 * (contacts, full-row eviction, liveness checks, down hints, the ping sweep
 * and refresh), bootstrap, NAT sampling, firewall detection, the ephemeral →
 * persistent transition, adaptive mode, health, suspend / wakeup.
 *
 * Deterministic and free of I/O: every input carries `now` (ms); datagrams
 * leave through the injected `transmit`; randomness comes from the injected
 * `random`. The driver (an Effect fiber, see ./driver.ts) feeds datagrams and
 * timer expiries in and performs the outputs, so the same core runs on real
 * UDP and on the simulated network, and is testable without either.
 */
import * as Result from "effect/Result"
import type { CryptoImpl } from "../../layers/crypto/types.js"
import * as Rpc from "../../protocol/dht-rpc.js"
import { encode, equalBytes, type IPv4Address, ipv4Address, ipv4Endpoint, type Ipv4Endpoint, Reader } from "../../protocol/encoding.js"
import type { RequestRateLimit } from "./limits.js"
import { NatSampler } from "./nat-sampler.js"
import { NoToken, Query, type QueryHost, type QueryNode, type QueryOptions } from "./query.js"
import {
  CLIENT,
  type IncomingRequest,
  type IncomingResponse,
  type NodeAddress,
  type OutRequest,
  type ReplyOptions,
  type RequestError,
  requestError,
  type RpcHost,
  RpcIo,
  SERVER,
  type SocketKind
} from "./rpc.js"
import { RoutingTable } from "./table.js"

export const TICK_INTERVAL = 5000
export const SLEEPING_INTERVAL = 3 * TICK_INTERVAL
export const STABLE_TICKS = 240
export const MORE_STABLE_TICKS = 3 * STABLE_TICKS
export const REFRESH_TICKS = 60
/**
 * Every this many refreshes (about 30 minutes when idle) the refresh query
 * also asks the bootstrap nodes. After a partition heals, each side's
 * routing tables have dropped the other side's nodes (their requests timed
 * out) and no query leads back across; the bootstrap nodes are the one
 * contact outside the table that joins the two again (bench/simday.mjs).
 */
export const REBOOTSTRAP_REFRESHES = 6
/**
 * The quick firewall test's PING_NAT: each attempt's timeout is four round
 * trips of the reply that triggered it, within these bounds (ms), with one
 * retry. The bootstrap waits for it (an open host is then found open at
 * ready()); a firewalled host, whose PING_NAT reply never arrives, waits at
 * most twice the timeout, and on a network of real size the lookup outlasts
 * it anyway.
 */
export const NAT_TEST_TIMEOUT_MIN = 25
export const NAT_TEST_TIMEOUT_MAX = 500
export const RECENT_NODE = 12
export const OLD_NODE = 360
/**
 * DELAYED_PING replies waiting for their time (each up to maxPingDelay,
 * 10 s): 1,024 in all, 16 per source address. Honest use is a handful at a
 * time (a peer checks its reachability with one or two); past the caps a
 * DELAYED_PING gets no answer, as one asking for too long a delay.
 */
export const MAX_DELAYED_PINGS = 1024
export const MAX_DELAYED_PINGS_PER_SOURCE = 16

const { PING, PING_NAT, FIND_NODE, DOWN_HINT, DELAYED_PING } = Rpc.InternalCommand

export interface TableNode {
  readonly id: Uint8Array
  readonly host: string
  readonly port: number
  /** host:port as the interned endpoint (what closer-node lists encode from). */
  readonly ep: Ipv4Endpoint
  to: IPv4Address | null
  added: number
  pinged: number
  seen: number
  sampled: number
  downHints: number
  /** Links of the node list (time order); null when not listed. */
  prev: TableNode | null
  next: TableNode | null
}

/** DhtNode.closerNodes' scratch arrays (one JS thread; filled and read within one call). */
const closestScratch: Array<TableNode> = []
const closerScratch: Array<Ipv4Endpoint> = []

/**
 * The table's nodes in time order, oldest first, as an intrusive doubly
 * linked list (the links live on the nodes, as in the reference): moving a
 * node to the end on every reply allocates nothing, where an ordered Map
 * costs about 50 bytes per node and a delete + insert per move.
 */
export class NodeList {
  head: TableNode | null = null
  tail: TableNode | null = null
  size = 0

  has(node: TableNode): boolean {
    return node.prev !== null || this.head === node
  }

  /** Append (the node must not be listed). */
  push(node: TableNode): void {
    node.prev = this.tail
    node.next = null
    if (this.tail !== null) this.tail.next = node
    else this.head = node
    this.tail = node
    this.size++
  }

  remove(node: TableNode): void {
    if (!this.has(node)) return
    if (node.prev !== null) node.prev.next = node.next
    else this.head = node.next
    if (node.next !== null) node.next.prev = node.prev
    else this.tail = node.prev
    node.prev = node.next = null
    this.size--
  }

  /** Move a listed node to the end (most recent). */
  touch(node: TableNode): void {
    if (this.tail === node) return
    this.remove(node)
    this.push(node)
  }

  /** Newest first. */
  latestFirst(): Array<TableNode> {
    const out: Array<TableNode> = []
    for (let n = this.tail; n !== null; n = n.prev) out.push(n)
    return out
  }
}

/**
 * What the node knows of its own reachability (the node-level counterpart
 * of hyperdht's firewall classes, connect.md §5.1): `open` when reachable at
 * `remoteAddress()`, `consistent` when its NAT samples agree on one public
 * host:port, `random` when they agree on the host only (a NAT that picks a
 * port per destination), `unknown` until the samples agree.
 */
export type NatClassification = "unknown" | "open" | "consistent" | "random"

/** The part of the node's view a network change may alter. */
interface NetworkView {
  readonly host: string | null
  readonly port: number
  readonly firewalled: boolean
}

export type DhtEvent =
  | { readonly _tag: "listening" }
  | { readonly _tag: "ready" }
  | { readonly _tag: "persistent" }
  | { readonly _tag: "ephemeral" }
  | { readonly _tag: "wakeup" }
  | { readonly _tag: "nat-update"; readonly host: string | null; readonly port: number }
  | { readonly _tag: "add-node"; readonly node: TableNode }
  | { readonly _tag: "remove-node"; readonly node: TableNode }
  | { readonly _tag: "network-update" }
  | { readonly _tag: "network-change"; readonly interfaces: ReadonlyArray<string> }
  | { readonly _tag: "suspend" }
  | { readonly _tag: "resume" }
  | { readonly _tag: "close" }
  /** The node's actor hit a defect: the node closed itself (the error says why). */
  | { readonly _tag: "failed"; readonly error: Error }

export interface DhtNodeOptions {
  readonly crypto: CryptoImpl
  /** Uniform [0, 1) source (seeded in simulations). */
  readonly random: () => number
  /** The table id and the token secrets; default the crypto service's CSPRNG (seeded in simulations). */
  readonly randomBytes?: (n: number) => Uint8Array
  /** Resolved bootstrap nodes. */
  readonly bootstrap?: ReadonlyArray<{ readonly host: string; readonly port: number }>
  /** Nodes to add at start. */
  readonly nodes?: ReadonlyArray<{ readonly host: string; readonly port: number }>
  /** true / false force ephemeral / persistent; undefined = adaptive. */
  readonly ephemeral?: boolean
  readonly adaptive?: boolean
  readonly firewalled?: boolean
  readonly quickFirewall?: boolean
  readonly concurrency?: number
  readonly maxWindow?: number
  readonly maxPingDelay?: number
  readonly sendDownHints?: boolean
  readonly downHintsRateLimit?: number
  /** Incoming request limits per source address and for the node (default DEFAULT_REQUEST_RATE_LIMIT, local sources exempt); false: none. */
  readonly requestRateLimit?: RequestRateLimit | false
  readonly k?: number
  readonly filterNode?: (node: { readonly host: string; readonly port: number; readonly id: Uint8Array }) => boolean
  /** Bootstrapper mode: a manual NAT sample of our public address (DHT.bootstrapper). */
  readonly natSample?: { readonly host: string; readonly port: number }
  /** Application (non-internal) request handler; return false when unhandled (→ UNKNOWN_COMMAND). */
  readonly onRequest?: (req: IncomingRequest, node: DhtNode) => boolean
  /** Datagrams out. */
  readonly transmit: (socket: SocketKind, to: { readonly host: string; readonly port: number }, data: Uint8Array, ttl: number) => void
  /** Local port of the server socket (PING_NAT value, firewall check). */
  readonly serverPort: number
}

const noop = (): void => {}

interface DelayedReply {
  readonly at: number
  readonly req: IncomingRequest
}

class Health {
  private window: Array<{ responses: number; timeouts: number; offline?: boolean; degraded?: boolean }> = []
  private head = -1
  private offlineTicks = 0
  private degradedTicks = 0
  private healthyTicks = 0
  online = true
  degraded = false

  private get tail(): number {
    return (this.head + 1) % 4
  }
  private get newest() {
    return this.window[this.head]
  }
  private get previous() {
    return this.window[(this.head - 1 + 4) % 4]
  }
  get responses(): number {
    const n = this.newest
    const p = this.previous
    return n === undefined || p === undefined ? 0 : n.responses - p.responses
  }
  get timeouts(): number {
    const n = this.newest
    const p = this.previous
    return n === undefined || p === undefined ? 0 : n.timeouts - p.timeouts
  }
  get timeoutsRate(): number {
    return this.timeouts === 0 ? 0 : this.timeouts / (this.responses + this.timeouts)
  }

  reset(): void {
    this.window = []
    this.head = -1
    this.offlineTicks = this.degradedTicks = this.healthyTicks = 0
    this.online = true
    this.degraded = false
  }

  /** Returns "online" | "degraded" | "offline" when a state is asserted, null when idle/cold. */
  update(responses: number, timeouts: number): "online" | "degraded" | "offline" | null {
    const oldest = this.window[this.tail]
    if (oldest?.degraded === true) this.degradedTicks--
    else if (oldest?.degraded === false) this.healthyTicks--
    this.head = this.tail
    this.window[this.head] = { responses, timeouts }
    if (this.window.length < 4 || this.responses + this.timeouts < 4) return null
    const newest = this.newest!
    newest.offline = this.responses === 0
    newest.degraded = !newest.offline && this.timeoutsRate > 0.5
    if (newest.offline) this.offlineTicks++
    else {
      this.offlineTicks = 0
      if (newest.degraded) this.degradedTicks++
      else this.healthyTicks++
    }
    if (!newest.offline) this.online = true
    else if (this.offlineTicks >= 2) this.online = false
    if (!this.online || this.healthyTicks === 4) this.degraded = false
    else if (this.degradedTicks === 4) this.degraded = true
    return this.online && !this.degraded ? "online" : this.degraded ? "degraded" : "offline"
  }
}

export class DhtNode implements RpcHost, QueryHost {
  readonly crypto: CryptoImpl
  private readonly nodeIds: Rpc.NodeIdCache
  readonly io: RpcIo
  table: RoutingTable<TableNode>
  /** The table's nodes in time order, oldest first. */
  readonly nodes = new NodeList()
  /**
   * The last `to` address a reply reported (how the remote saw us): nearly
   * every table node carries the same one, so equal addresses share one
   * object.
   */
  private lastTo: IPv4Address | null = null
  readonly events: Array<DhtEvent> = []
  readonly queries = new Set<Query>()

  bootstrapped = false
  ephemeral = true
  adaptive: boolean
  destroyed = false
  suspended = false
  online = true
  degraded = false
  readonly concurrency: number
  readonly maxPingDelay: number
  bootstrapNodes: Array<QueryNode>
  serverPort: number

  readonly random: () => number
  private nat = new NatSampler()
  private readonly quickFirewall: boolean
  private readonly forcePersistent: boolean
  private repinging = 0
  private checks = 0
  tick: number
  private refreshTicks: number
  private refreshes = 0
  private stableTicks: number
  private lastTick: number
  nextTick: number
  private lastHost: string | null = null
  private readonly filter: ((node: { readonly host: string; readonly port: number; readonly id: Uint8Array }) => boolean) | null
  private nonPersistentSamples: Array<string> = []
  private readonly sendDownHints: boolean
  private readonly downHintsRateLimit: number
  private downHintsSentPerTick = 0
  private delayed: Array<DelayedReply> = []
  /** Delayed replies waiting, by source host. */
  private readonly delayedBySource = new Map<string, number>()
  private readonly health = new Health()
  private readonly onAppRequest: ((req: IncomingRequest, node: DhtNode) => boolean) | null
  private readonly transmitFn: DhtNodeOptions["transmit"]
  /** Source hosts seen on the server socket while a firewall probe runs. */
  private probeHosts: Set<string> | null = null
  private now: number
  /** The `firewalled` option (default true): what a network change sets the flag back to. */
  private readonly initialFirewalled: boolean
  /** The bootstrapper's manual NAT sample (`natSample`): added again after a network change. */
  private readonly natSampleOption: { readonly host: string; readonly port: number } | null
  /** Network changes so far: a probe started before the latest one is superseded. */
  private resampleGen = 0
  /** While the re-probe after a network change runs: the view from before the change (else null). */
  private resampleBefore: NetworkView | null = null
  /** Requests that were in flight at the last network change: their replies are not NAT samples. */
  private staleRequests: WeakSet<OutRequest> | null = null
  /** A network change seen while suspended: re-probed on resume. */
  private resampleOnResume = false

  /** The time of the input being processed (ms, the driver's clock). */
  get time(): number {
    return this.now
  }
  private started = false
  readonly queryHost: QueryHost

  constructor(options: DhtNodeOptions, now: number) {
    this.crypto = options.crypto
    this.nodeIds = Rpc.sharedNodeIdCache(options.crypto.blake2b)
    this.random = options.random
    // the table id and the token secrets: from the crypto service's CSPRNG
    // unless a seeded source is given (simulations); Math.random's state can
    // be recovered from its outputs, and secrets drawn from it could be too
    const randomBytes = options.randomBytes ?? options.crypto.randomBytes
    this.now = now
    this.transmitFn = options.transmit
    this.serverPort = options.serverPort
    this.table = new RoutingTable<TableNode>(randomBytes(32), options.k !== undefined ? { k: options.k } : undefined)
    // the node is its RPC layer's host and its queries' host (methods below:
    // no closures per node)
    this.io = new RpcIo(
      this,
      {
        random: this.random,
        randomBytes,
        ...(options.maxWindow !== undefined ? { maxWindow: options.maxWindow } : {}),
        ...(options.requestRateLimit !== undefined ? { requestRateLimit: options.requestRateLimit } : {}),
        ...(options.firewalled !== undefined ? { firewalled: options.firewalled } : {})
      },
      now
    )
    this.concurrency = options.concurrency ?? 10
    this.maxPingDelay = options.maxPingDelay ?? 10_000
    this.adaptive = typeof options.ephemeral !== "boolean" && options.adaptive !== false
    this.quickFirewall = options.quickFirewall !== false
    this.forcePersistent = options.ephemeral === false
    this.tick = this.randomOffset(100)
    this.refreshTicks = this.randomOffset(REFRESH_TICKS)
    this.stableTicks = this.adaptive ? STABLE_TICKS : 0
    this.lastTick = now
    this.nextTick = now + TICK_INTERVAL
    this.filter = options.filterNode ?? null
    this.sendDownHints = options.sendDownHints !== false
    this.downHintsRateLimit = options.downHintsRateLimit ?? 50
    this.onAppRequest = options.onRequest ?? null
    this.bootstrapNodes = (options.bootstrap ?? []).map((n) => ({ id: this.nodeId(n.host, n.port), host: n.host, port: n.port }))
    this.initialFirewalled = options.firewalled !== false
    this.natSampleOption = options.natSample ?? null
    if (options.natSample !== undefined) this.nat.add(options.natSample.host, options.natSample.port)
    if (options.nodes !== undefined) {
      for (let i = options.nodes.length - 1; i >= 0; i--) this.addNode(options.nodes[i]!)
    }
    this.queryHost = this
  }

  // ---- accessors ------------------------------------------------------------

  get firewalled(): boolean {
    return this.io.firewalled
  }
  get id(): Uint8Array | null {
    return this.ephemeral ? null : this.table.id
  }
  get host(): string | null {
    return this.nat.host
  }
  get port(): number {
    return this.nat.port
  }
  get randomized(): boolean {
    return this.nat.host !== null && this.nat.port === 0
  }

  /** Our reachability class, from the firewall check and the NAT samples (see NatClassification). */
  get classification(): NatClassification {
    if (!this.firewalled && this.remoteAddress() !== null) return "open"
    if (this.nat.host === null) return "unknown"
    return this.nat.port === 0 ? "random" : "consistent"
  }

  /** A network change's re-probe is running (the classification is being learnt again). */
  get resampling(): boolean {
    return this.resampleBefore !== null
  }

  /** Our public address when reachable and stable (dht-rpc remoteAddress()). */
  remoteAddress(): { host: string; port: number } | null {
    if (this.nat.host === null || this.nat.port === 0 || this.firewalled) return null
    if (this.serverPort !== this.nat.port) return null
    return { host: this.nat.host, port: this.serverPort }
  }

  /** Table nodes, most recently seen first. */
  toArray(limit?: number): Array<{ host: string; port: number }> {
    const all = this.nodes.latestFirst()
    return (limit === undefined ? all : all.slice(0, limit)).map((n) => ({ host: n.host, port: n.port }))
  }

  private randomOffset(n: number): number {
    return n - Math.floor(this.random() * 0.5 * n)
  }

  private emit(e: DhtEvent): void {
    this.events.push(e)
  }

  // ---- lifecycle -------------------------------------------------------------

  /** Start bootstrapping (the sockets are bound by the driver before this). */
  start(now: number): void {
    if (this.started) return
    this.started = true
    this.now = now
    this.emit({ _tag: "listening" })
    this.probeNetwork(true, false, () => {
      if (this.bootstrapped || this.destroyed) return
      this.bootstrapped = true
      this.emit({ _tag: "ready" })
    })
  }

  /**
   * The bootstrap's network probe (dht-rpc.md §11.2 step 3), also run after
   * a network change (`initial` false): a background FIND_NODE for our table
   * id, whose replies are NAT samples; the quick firewall test (a PING_NAT to
   * the first responder); then the network-state check, which needs the
   * quick test passed unless the node is forced persistent or `checkAnyway`.
   * At most two rounds (the second under the table id the first one set).
   * A probe superseded by a later network change stops (the bootstrap's
   * still ends: `done`).
   */
  private probeNetwork(initial: boolean, checkAnyway: boolean, done: () => void): void {
    const gen = this.resampleGen
    let first = this.firewalled && this.quickFirewall && !this.forcePersistent
    let testNat = checkAnyway
    // The quick test's PING_NAT may still be on its way when the bootstrap query
    // ends (a small or fast network): the reference then skips the firewall
    // check, and an open host stays "firewalled" until its next network check
    // (hyperdht#287). Here the end of the query waits for that PING_NAT to
    // settle, which its short timeout bounds (see NAT_TEST_TIMEOUT).
    let natTestPending = false
    let afterNatTest: (() => void) | null = null
    const onlyFirewall = !this.forcePersistent
    const natTestSettled = (passed: boolean): void => {
      natTestPending = false
      if (passed) testNat = true
      const f = afterNatTest
      afterNatTest = null
      f?.()
    }
    const iteration = (i: number): void => {
      const q = this.backgroundQuery(this.table.id)
      const prev = q.onreply
      q.onreply = (data) => {
        prev(data)
        if (!first || gen !== this.resampleGen) return
        first = false
        const value = new Uint8Array(2)
        value[0] = this.serverPort & 0xff
        value[1] = this.serverPort >>> 8
        natTestPending = true
        const sent = this.request(data.from, false, true, PING_NAT, null, value, null, () => natTestSettled(true), () => natTestSettled(false), (req) => {
          // one retry, each attempt a few round trips of the reply that led here
          req.retries = 1
          req.timeout = Math.min(NAT_TEST_TIMEOUT_MAX, Math.max(NAT_TEST_TIMEOUT_MIN, 4 * data.rtt))
        })
        if (sent === null) natTestPending = false
      }
      q.onend = () => {
        if (this.destroyed) return
        const decide = (): void => {
          if (this.destroyed) return
          if (gen !== this.resampleGen) return initial ? done() : undefined
          if ((initial && this.bootstrapped) || (!testNat && !this.forcePersistent)) return done()
          this.updateNetworkState(onlyFirewall, (ok) => {
            if (!ok || i >= 1) return done()
            iteration(i + 1)
          }, !initial)
        }
        if (natTestPending && !(initial && this.bootstrapped)) afterNatTest = decide
        else decide()
      }
      q.start()
    }
    iteration(0)
  }

  destroy(): void {
    if (this.destroyed) return
    this.destroyed = true
    this.nextTick = Infinity
    this.delayed = []
    this.delayedBySource.clear()
    this.io.destroy()
    for (const q of [...this.queries]) q.destroy()
    this.emit({ _tag: "close" })
  }

  suspend(): void {
    if (this.suspended || this.destroyed) return
    this.suspended = true
    this.nextTick = Infinity
    this.io.suspend()
    this.emit({ _tag: "suspend" })
  }

  resume(now: number): void {
    if (!this.suspended || this.destroyed) return
    this.now = now
    this.suspended = false
    this.lastTick = now
    this.nextTick = now + TICK_INTERVAL
    this.wakeup()
    this.io.resume(now)
    if (this.resampleOnResume) {
      // the network changed while suspended: the re-probe's query is the refresh
      this.resampleOnResume = false
      this.resample()
    } else {
      this.refresh()
    }
    this.emit({ _tag: "resume" })
  }

  /**
   * The host changed networks: its interface addresses changed (the driver
   * watches them), or its owner says so (`NodeHandle.networkChange`).
   *
   * Emits `network-change` and `network-update` at once, as dht-rpc does (a
   * HyperDHT server re-announces on `network-change`, so the nodes that
   * relay to it learn its new address). Unlike dht-rpc, whose NAT samples,
   * `firewalled` flag and persistent id outlive the change (its known nodes
   * are sampled again only after 30 minutes, so an open host that moved
   * behind a NAT goes on claiming to be open), the node then learns where it
   * stands again, as at bootstrap:
   *
   * - it drops its NAT samples (every table node is sampled again by its next
   *   reply; replies to requests sent before the change are never samples),
   *   and sets `firewalled` back to the option's value (default true);
   * - it re-runs the bootstrap's probe (a FIND_NODE for its id, the quick
   *   firewall test, the firewall check), which learns its public address
   *   from fresh replies and classifies it (open / consistent / random);
   * - when that settles it emits `nat-update` if its address changed (none
   *   are emitted while it re-samples), and `network-update` if its address
   *   or firewall state changed.
   *
   * A change that changed nothing (a new interface, the same public address)
   * keeps what it had: the same address and class, no `nat-update`, no
   * second `network-update`, and a persistent node stays persistent under the
   * same id. A persistent node whose id no longer names a reachable address
   * of it (it moved, or is not reachable any more) returns to ephemeral
   * (`ephemeral`); an adaptive node that moved starts its persistence
   * countdown again (~20 min, as after a start), a forced persistent one
   * becomes persistent again at once if it is reachable at its new address.
   */
  networkChange(interfaces: ReadonlyArray<string>): void {
    if (this.destroyed) return
    this.emit({ _tag: "network-change", interfaces })
    this.emit({ _tag: "network-update" })
    // not started yet: the bootstrap probes anyway
    if (!this.started) return
    if (this.suspended) this.resampleOnResume = true
    else this.resample()
  }

  /** Drop what the node learnt of its network and probe it again (see networkChange). */
  private resample(): void {
    const gen = ++this.resampleGen
    // a change during an earlier change's probe: compare with the view before both
    this.resampleBefore ??= { host: this.nat.host, port: this.nat.port, firewalled: this.firewalled }
    const wasOpen = !this.resampleBefore.firewalled
    this.nat = new NatSampler()
    if (this.natSampleOption !== null) this.nat.add(this.natSampleOption.host, this.natSampleOption.port)
    this.nonPersistentSamples = []
    this.lastTo = null
    for (let n = this.nodes.head; n !== null; n = n.next) n.sampled = 0
    const stale = new WeakSet<OutRequest>()
    for (const req of this.io.inflight.values()) stale.add(req)
    this.staleRequests = stale
    this.io.firewalled = this.initialFirewalled
    this.probeHosts = null
    this.lastHost = null
    // a node that was open checks its reachability whatever the quick test says
    this.probeNetwork(false, wasOpen, () => this.settleResample(gen))
  }

  /** The re-probe after a network change ended: keep or drop persistence, report what changed. */
  private settleResample(gen: number): void {
    if (gen !== this.resampleGen || this.destroyed) return
    const before = this.resampleBefore
    this.resampleBefore = null
    if (before === null) return
    // a persistent node's id must name an address it is reachable at
    if (!this.ephemeral) {
      const reachable = this.remoteAddress()
      if (reachable === null || !equalBytes(this.table.id, this.nodeId(reachable.host, reachable.port)!)) this.dropPersistence()
    }
    const moved = before.host !== this.nat.host || before.port !== this.nat.port
    if (moved) this.emit({ _tag: "nat-update", host: this.nat.host, port: this.nat.port })
    if (moved || before.firewalled !== this.firewalled) {
      // somewhere new: an adaptive node's persistence countdown starts again
      if (this.adaptive && this.ephemeral) this.stableTicks = STABLE_TICKS
      this.emit({ _tag: "network-update" })
    }
  }

  /** Back to ephemeral (the id leaves the wire); an adaptive node checks again after STABLE_TICKS. */
  private dropPersistence(): void {
    if (this.ephemeral) return
    this.ephemeral = true
    this.io.ephemeral = true
    if (this.adaptive) this.stableTicks = STABLE_TICKS
    this.emit({ _tag: "ephemeral" })
  }

  // ---- inputs ------------------------------------------------------------------

  onDatagram(now: number, socket: SocketKind, from: { readonly host: string; readonly port: number }, data: Uint8Array): void {
    this.now = now
    if (this.probeHosts !== null && socket === SERVER) this.probeHosts.add(from.host)
    // 1-byte datagrams are holepunch probes, never dht-rpc
    if (data.length > 1) this.io.onDatagram(now, socket, from, data)
  }

  nextDeadline(): number {
    // a destroyed node runs no timers (its deadlines would stay in the past and re-arm forever)
    if (this.destroyed) return Infinity
    let next = Math.min(this.nextTick, this.io.nextDeadline())
    for (const d of this.delayed) if (d.at < next) next = d.at
    return next
  }

  /**
   * The time of the owner's own input (a query or request it starts, a
   * continuation it runs): requests made in that step take their deadlines
   * from it.
   */
  setTime(now: number): void {
    this.now = now
    this.io.setTime(now)
  }

  onTimers(now: number): void {
    this.now = now
    if (this.destroyed) return
    this.io.onTimers(now)
    if (this.delayed.length > 0) {
      const due = this.delayed.filter((d) => d.at <= now)
      if (due.length > 0) {
        this.delayed = this.delayed.filter((d) => d.at > now)
        for (const d of due) {
          const n = (this.delayedBySource.get(d.req.from.host) ?? 1) - 1
          if (n <= 0) this.delayedBySource.delete(d.req.from.host)
          else this.delayedBySource.set(d.req.from.host, n)
        }
        for (const d of due) this.io.sendReply(d.req.tid, d.req.target, 0, null, false, false, d.req.from, d.req.socket)
      }
    }
    // One tick per expiry however late it fires, as the reference's setInterval
    // (Node never replays missed intervals): after a sleep the single late tick
    // runs wakeup. Replaying the missed ticks would burn the stable countdown
    // that wakeup just reset (an adaptive node would turn persistent again at
    // once after a sleep longer than an hour) and burst ping sweeps/refreshes.
    if (this.nextTick <= now) {
      this.nextTick = now + TICK_INTERVAL
      this.onTick(now)
    }
  }

  // ---- requests ----------------------------------------------------------------

  request(
    to: NodeAddress,
    force: boolean,
    internal: boolean,
    command: number,
    target: Uint8Array | null,
    value: Uint8Array | null,
    group: Set<OutRequest> | null,
    onresponse: (res: IncomingResponse, req: OutRequest) => void,
    onerror: (err: RequestError, req: OutRequest) => void,
    setup?: (req: OutRequest) => void
  ): OutRequest | null {
    if (internal && !this.sendDownHints && command === DOWN_HINT) return null
    const req = this.io.createRequest(to, null, internal, command, target, value)
    if (req === null) return null
    req.onresponse = onresponse
    req.onerror = onerror
    if (group !== null) {
      req.group = group
      group.add(req)
    }
    if (setup !== undefined) setup(req)
    this.io.send(req, force)
    return req
  }

  /** A direct request with default retries (dht.request / dht.ping). */
  directRequest(
    args: {
      readonly token?: Uint8Array | null
      readonly internal?: boolean
      readonly command: number
      readonly target?: Uint8Array | null
      readonly value?: Uint8Array | null
    },
    to: { readonly host: string; readonly port: number },
    opts: { readonly retry?: boolean; readonly socket?: SocketKind; readonly timeout?: number; readonly ttl?: number },
    onresponse: (res: IncomingResponse) => void,
    onerror: (err: RequestError) => void
  ): OutRequest | null {
    const req = this.io.createRequest(
      { id: null, host: to.host, port: to.port },
      args.token ?? null,
      args.internal === true,
      args.command,
      args.target ?? null,
      args.value ?? null,
      opts.ttl ?? 0
    )
    if (req === null) return null
    if (opts.socket !== undefined) req.socket = opts.socket
    if (opts.retry === false) req.retries = 0
    if (opts.timeout !== undefined) req.timeout = opts.timeout
    req.onresponse = (res) => onresponse(res)
    req.onerror = (err) => onerror(err)
    this.io.send(req)
    return req
  }

  ping(to: { readonly host: string; readonly port: number }, opts: { readonly size?: number; readonly retry?: boolean }, onresponse: (res: IncomingResponse) => void, onerror: (err: RequestError) => void): OutRequest | null {
    const value = opts.size !== undefined && opts.size > 0 ? new Uint8Array(opts.size) : null
    return this.directRequest({ internal: true, command: PING, value }, to, opts.retry === false ? { retry: false } : {}, onresponse, onerror)
  }

  /** Ask `to` to reply after `delayMs` (DELAYED_PING). Fails fast (null) when the delay exceeds maxPingDelay. */
  delayedPing(to: { readonly host: string; readonly port: number }, delayMs: number, onresponse: (res: IncomingResponse) => void, onerror: (err: RequestError) => void): OutRequest | null {
    if (!(delayMs >= 0) || delayMs > this.maxPingDelay) return null
    const value = new Uint8Array(4)
    new DataView(value.buffer).setUint32(0, delayMs, true)
    return this.directRequest({ internal: true, command: DELAYED_PING, value }, to, { timeout: delayMs + 1000 }, onresponse, onerror)
  }

  // ---- replies for application handlers ----------------------------------------

  reply(req: IncomingRequest, value: Uint8Array | null, opts?: ReplyOptions): void {
    this.io.reply(req, 0, value, opts)
  }

  error(req: IncomingRequest, code: number, opts?: ReplyOptions): void {
    this.io.reply(req, code, null, opts)
  }

  relay(req: IncomingRequest, value: Uint8Array | null, to: { readonly host: string; readonly port: number }, socket?: SocketKind): void {
    this.io.relay(req, value, to, socket)
  }

  // ---- queries ----------------------------------------------------------------------

  findNode(target: Uint8Array, opts?: QueryOptions): Query {
    this.refreshTicks = REFRESH_TICKS
    return this.newQuery(target, true, FIND_NODE, null, opts)
  }

  query(args: { readonly target: Uint8Array; readonly command: number; readonly value?: Uint8Array | null }, opts?: QueryOptions): Query {
    this.refreshTicks = REFRESH_TICKS
    return this.newQuery(args.target, false, args.command, args.value ?? null, opts)
  }

  private newQuery(target: Uint8Array, internal: boolean, command: number, value: Uint8Array | null, opts?: QueryOptions): Query {
    const q = new Query(this.queryHost, target, internal, command, value, opts)
    this.queries.add(q)
    if (this.destroyed) q.destroy()
    return q
  }

  refresh(): void {
    const node = this.table.random(this.random)
    const rebootstrap = ++this.refreshes % REBOOTSTRAP_REFRESHES === 0 && this.bootstrapNodes.length > 0
    this.backgroundQuery(node !== null ? node.id : this.table.id, rebootstrap ? this.bootstrapNodes : undefined).start()
  }

  private backgroundQuery(target: Uint8Array, nodes?: ReadonlyArray<QueryNode>): Query {
    this.refreshTicks = REFRESH_TICKS
    const bg = Math.min(this.concurrency, Math.max(2, Math.floor(this.concurrency / 8)))
    const q = this.newQuery(target, true, FIND_NODE, null, nodes === undefined ? { concurrency: bg } : { concurrency: bg, nodes })
    q.onreply = () => {
      q.concurrency = this.io.inflight.size < 3 ? this.concurrency : bg
    }
    return q
  }

  // ---- RpcHost and QueryHost (internal: the RPC layer and queries call these) ----

  /** @internal */
  get k(): number {
    return this.table.k
  }
  /** The node id of an address (BLAKE2b of its IPv4 and port), null for a malformed one. */
  nodeId(host: string, port: number): Uint8Array | null {
    return this.nodeIds(host, port)
  }
  /** @internal */
  nodeIdOf(e: Ipv4Endpoint): Uint8Array {
    return this.nodeIds.of(e)
  }
  /** @internal */
  tableId(): Uint8Array {
    return this.table.id
  }
  /** @internal */
  heard(id: Uint8Array): boolean {
    return this.table.get(id) !== null
  }
  /** @internal */
  closest(target: Uint8Array, n?: number): Array<TableNode> {
    return this.table.closestByDistance(target, n)
  }
  /** @internal */
  closerNodes(target: Uint8Array): ReadonlyArray<Ipv4Endpoint> {
    // scratch arrays: the reply encoder reads the list at once and keeps nothing
    const nodes = this.table.closestByDistance(target, this.table.k, closestScratch)
    const out = closerScratch
    out.length = nodes.length
    for (let i = 0; i < nodes.length; i++) out[i] = nodes[i]!.ep
    nodes.length = 0
    return out
  }
  /** @internal */
  transmit(socket: SocketKind, to: { readonly host: string; readonly port: number }, data: Uint8Array, ttl: number): void {
    this.transmitFn(socket, to, data, ttl)
  }
  /** @internal */
  bootstrapList(): ReadonlyArray<QueryNode> {
    return this.bootstrapNodes
  }
  /** @internal */
  filtering(): boolean {
    return this.filter !== null
  }
  /** @internal */
  filterNode(node: { readonly host: string; readonly port: number; readonly id: Uint8Array }): boolean {
    return this.filter === null || this.filter(node)
  }
  /** @internal */
  downHint(to: NodeAddress, down: { readonly host: string; readonly port: number }, group: Set<OutRequest>): void {
    if (this.downHintsRateLimit !== -1 && this.downHintsSentPerTick >= this.downHintsRateLimit) return
    this.downHintsSentPerTick++
    // the value is the down node's address as the codec writes it (ipv4 + uint16le port)
    const value = encode(ipv4Address, down)
    if (Result.isFailure(value)) return
    this.request(to, false, true, DOWN_HINT, null, value.success, group, noop, noop)
  }
  /** @internal */
  commit(reply: IncomingResponse, q: Query, done: (err: unknown | null) => void): void {
    if (reply.token === null) return done(new NoToken({ to: { host: reply.from.host, port: reply.from.port } }))
    const r = this.directRequest(
      { token: reply.token, command: q.command, target: q.target, value: q.value },
      reply.from,
      {},
      () => done(null),
      (err) => done(err)
    )
    if (r === null) done(requestError("NODE_DESTROYED", reply.from, q.command, false))
  }
  /** @internal */
  cancel(req: OutRequest): void {
    this.io.destroyRequest(req, "REQUEST_DESTROYED")
  }
  /** @internal */
  queryFinished(q: Query): void {
    this.queries.delete(q)
  }

  // ---- NAT samples and contacts ----------------------------------------------------

  private natAdd(host: string, port: number): void {
    const ph = this.nat.host
    const pp = this.nat.port
    this.nat.add(host, port)
    this.natChanged(ph, pp)
  }

  /** nat-update when (host, port) changed from (ph, pp); while re-sampling after a network change, reported once it settles. */
  private natChanged(ph: string | null, pp: number): void {
    if (ph === this.nat.host && pp === this.nat.port) return
    if (this.resampleBefore !== null) return
    this.emit({ _tag: "nat-update", host: this.nat.host, port: this.nat.port })
  }

  private sampleBootstrapMaybe(from: { host: string; port: number }, to: IPv4Address): void {
    if (this.nonPersistentSamples.length >= Math.max(1, this.bootstrapNodes.length)) return
    const id = `${from.host}:${from.port}`
    if (this.nonPersistentSamples.includes(id)) return
    this.nonPersistentSamples.push(id)
    this.natAdd(to.host, to.port)
  }

  /**
   * A request or reply from the network: its sender as a contact, the `to`
   * it reports as a NAT sample (`sample`: a known node's, when it is due).
   * `stale`: a reply to a request sent before a network change, whose `to`
   * is never a sample (not even a new node's or an id-less responder's).
   */
  private addNodeFromNetwork(sample: boolean, from: { host: string; port: number; id: Uint8Array | null }, to: IPv4Address, stale = false): void {
    if (from.id === null) {
      if (this.filter !== null && !this.filter({ host: from.host, port: from.port, id: new Uint8Array(0) })) return
      if (!stale) this.sampleBootstrapMaybe(from, to)
      return
    }
    if (this.filter !== null && !this.filter({ host: from.host, port: from.port, id: from.id })) return
    const last = this.lastTo
    if (last !== null && last.port === to.port && last.host === to.host) to = last
    else this.lastTo = to
    const old = this.table.get(from.id)
    if (old !== null) {
      if (sample && (old.sampled === 0 || this.tick - old.sampled >= OLD_NODE)) {
        old.to = to
        old.sampled = this.tick
        this.natAdd(to.host, to.port)
      }
      old.pinged = old.seen = this.tick
      this.nodes.touch(old)
      return
    }
    this.insertNode({ id: from.id, host: from.host, port: from.port, ep: ipv4Endpoint(from.host, from.port)!, to: stale ? null : to, added: this.tick, pinged: this.tick, seen: this.tick, sampled: 0, downHints: 0, prev: null, next: null })
  }

  /** Add a node by address (id computed from it). */
  addNode(n: { readonly host: string; readonly port: number }): void {
    const id = this.nodeId(n.host, n.port)
    if (id === null) return
    this.insertNode({ id, host: n.host, port: n.port, ep: ipv4Endpoint(n.host, n.port)!, to: null, added: this.tick, pinged: 0, seen: 0, sampled: 0, downHints: 0, prev: null, next: null })
  }

  private insertNode(node: TableNode): void {
    if (this.nodes.has(node) || equalBytes(node.id, this.table.id)) return
    node.added = node.pinged = node.seen = this.tick
    const previous = this.table.get(node.id)
    const r = this.table.add(node)
    if (r === "full") {
      this.onFullRow(node, this.table.row(node.id))
      return
    }
    if (previous !== null) this.nodes.remove(previous)
    this.nodes.push(node)
    if (node.to !== null && node.sampled === 0) {
      node.sampled = this.tick
      this.natAdd(node.to.host, node.to.port)
    }
    this.emit({ _tag: "add-node", node })
  }

  private removeNode(node: TableNode): void {
    if (!this.nodes.has(node)) return
    this.table.remove(node.id)
    this.nodes.remove(node)
    this.emit({ _tag: "remove-node", node })
  }

  private onFullRow(newNode: TableNode, row: number): void {
    if (!this.bootstrapped || this.repinging >= 3) return
    let oldest: TableNode | null = null
    for (const node of this.table.rowNodes(row)) {
      if (node.pinged === this.tick) continue
      if (oldest === null || oldest.pinged > node.pinged || (oldest.pinged === node.pinged && oldest.added > node.added)) oldest = node
    }
    if (oldest === null) return
    if (this.tick - oldest.pinged < RECENT_NODE && this.tick - oldest.added > OLD_NODE) return
    this.repingAndSwap(newNode, oldest)
  }

  private repingAndSwap(newNode: TableNode, oldNode: TableNode): void {
    const lastSeen = oldNode.seen
    oldNode.pinged = this.tick
    this.repinging++
    const swap = (): void => {
      this.repinging--
      this.removeNode(oldNode)
      this.insertNode(newNode)
    }
    this.request({ id: null, host: oldNode.host, port: oldNode.port }, false, true, PING, null, null, null, () => {
      if (oldNode.seen <= lastSeen) return swap()
      this.repinging--
    }, swap)
  }

  private check(node: TableNode): void {
    node.pinged = this.tick
    const lastSeen = node.seen
    this.checks++
    this.request({ id: null, host: node.host, port: node.port }, false, true, PING, null, null, null, () => {
      this.checks--
      if (node.seen <= lastSeen) this.removeNode(node)
    }, () => {
      this.checks--
      this.removeNode(node)
    })
  }

  // ---- incoming --------------------------------------------------------------------

  /** @internal */
  onRequest(req: IncomingRequest, external: boolean): void {
    if (req.from.id !== null) this.addNodeFromNetwork(!external, req.from, req.to)
    if (req.internal) {
      switch (req.command) {
        case PING:
          this.io.sendReply(req.tid, req.target, 0, null, false, false, req.from, req.socket)
          return
        case DELAYED_PING: {
          if (req.value === null || req.value.length < 4) return
          const v = req.value
          const delay = (v[0]! | (v[1]! << 8) | (v[2]! << 16)) + v[3]! * 0x1000000
          if (delay > this.maxPingDelay) return
          const waiting = this.delayedBySource.get(req.from.host) ?? 0
          if (this.delayed.length >= MAX_DELAYED_PINGS || waiting >= MAX_DELAYED_PINGS_PER_SOURCE) return
          this.delayedBySource.set(req.from.host, waiting + 1)
          this.delayed.push({ at: this.now + delay, req })
          return
        }
        case PING_NAT: {
          if (req.value === null || req.value.length < 2) return
          const port = req.value[0]! | (req.value[1]! << 8)
          if (port === 0) return
          req.from.port = port
          this.io.sendReply(req.tid, req.target, 0, null, false, false, req.from, req.socket)
          return
        }
        case FIND_NODE:
          if (req.target === null) return
          this.io.sendReply(req.tid, req.target, 0, null, false, true, req.from, req.socket)
          return
        case DOWN_HINT: {
          if (req.value === null || req.value.length < 6) return
          if (this.checks < 10) {
            // its node id: the memoized id of the address the value names
            const node = this.table.get(this.nodeIds.of(new Reader(req.value).ipv4Endpoint()))
            if (node !== null && (node.pinged < this.tick || node.downHints === 0)) {
              node.downHints++
              this.check(node)
            }
          }
          this.io.sendReply(req.tid, req.target, 0, null, false, false, req.from, req.socket)
          return
        }
      }
      this.io.sendReply(req.tid, req.target, Rpc.RpcErrorCode.UNKNOWN_COMMAND, null, false, req.target !== null, req.from, req.socket)
      return
    }
    const handled = this.onAppRequest !== null && this.onAppRequest(req, this)
    if (!handled) {
      this.io.sendReply(req.tid, req.target, Rpc.RpcErrorCode.UNKNOWN_COMMAND, null, false, req.target !== null, req.from, req.socket)
    }
  }

  /** @internal */
  onResponse(res: IncomingResponse, external: boolean, req: OutRequest): void {
    // a reply to a request sent before a network change says where we were: no NAT sample
    const stale = this.staleRequests !== null && this.staleRequests.has(req)
    this.addNodeFromNetwork(!external && !stale, { host: res.from.host, port: res.from.port, id: res.from.id }, res.to, stale)
  }

  /** @internal */
  onTimeout(req: OutRequest): void {
    if (req.to.id === null) return
    const node = this.table.get(req.to.id)
    if (node !== null) this.removeNode(node)
  }

  // ---- ticks -------------------------------------------------------------------------

  private onTick(now: number): void {
    if (now - this.lastTick > SLEEPING_INTERVAL && !this.suspended) this.wakeup()
    else this.tick++
    this.lastTick = now
    if (!this.bootstrapped || this.suspended) return
    // (not while a network change's probe runs: two firewall probes at once would spoil each other)
    if (this.adaptive && this.ephemeral && this.resampleBefore === null && --this.stableTicks <= 0) {
      if (this.lastHost === this.nat.host) this.stableTicks = MORE_STABLE_TICKS
      else this.updateNetworkState(false, noop)
    }
    if ((this.tick & 7) === 0) this.pingSome()
    if (((this.tick & 63) === 0 && this.nodes.size < this.table.k) || --this.refreshTicks <= 0) this.refresh()
    this.downHintsSentPerTick = 0
    const h = this.health.update(this.io.stats.requests.responses, this.io.stats.requests.timeouts)
    if (h === "online") this.setOnline()
    else if (h === "degraded") this.setDegraded()
    else if (h === "offline") this.setOffline()
  }

  private setOnline(): void {
    if (this.online && !this.degraded) return
    this.online = true
    this.degraded = false
    this.emit({ _tag: "network-update" })
  }
  private setDegraded(): void {
    if (this.degraded) return
    this.online = true
    this.degraded = true
    this.emit({ _tag: "network-update" })
  }
  private setOffline(): void {
    if (!this.online) return
    this.online = false
    this.degraded = false
    this.emit({ _tag: "network-update" })
  }

  private pingSome(): void {
    let cnt = this.io.inflight.size > 2 ? 3 : 5
    let oldest = this.nodes.head
    if (oldest === null) {
      this.refresh()
      return
    }
    if (this.tick - oldest.pinged < RECENT_NODE) cnt = 2
    while (cnt-- > 0) {
      if (oldest === null || this.tick === oldest.pinged) continue
      const next: TableNode | null = oldest.next
      this.check(oldest)
      oldest = next
    }
  }

  private wakeup(): void {
    this.tick += 2 * OLD_NODE
    this.tick += 8 - (this.tick & 7) - 2
    this.stableTicks = MORE_STABLE_TICKS
    this.refreshTicks = 1
    this.lastHost = null
    this.health.reset()
    this.setOnline()
    if (this.adaptive && !this.ephemeral) {
      this.ephemeral = true
      this.io.ephemeral = true
      this.emit({ _tag: "ephemeral" })
    }
    this.emit({ _tag: "wakeup" })
  }

  // ---- network state: firewall probe and persistence (§11.4) -------------------------

  /**
   * `afterChange`: the probe after a network change, which also runs for a
   * persistent node (whose id must then name its new address, or it goes
   * back to ephemeral; a forced persistent one is persistent again at once).
   */
  private updateNetworkState(onlyFirewall: boolean, cb: (ok: boolean) => void, afterChange = false): void {
    if (!this.ephemeral && !afterChange) return cb(false)
    if (onlyFirewall && !this.firewalled) return cb(false)
    const gen = this.resampleGen
    const host = this.nat.host
    const port = this.nat.port
    if (!onlyFirewall) {
      this.stableTicks = MORE_STABLE_TICKS
      this.lastHost = host
    }
    if (host === null || port === 0) return cb(false)
    const sampler = this.firewalled ? new NatSampler() : this.nat
    const proceed = (firewalled: boolean): void => {
      // a probe from before a network change speaks of the old network
      if (firewalled || this.destroyed || gen !== this.resampleGen) return cb(false)
      this.io.firewalled = false
      if ((!this.ephemeral && !afterChange) || host !== this.nat.host || port !== this.nat.port) return cb(false)
      if (sampler.host !== host || sampler.port === 0) return cb(false)
      const id = this.nodeId(sampler.host, sampler.port)!
      const wasEphemeral = this.ephemeral
      // an adaptive persistent node that moved: its id named the old address, and
      // the new one has yet to prove stable (as after a wakeup)
      if (this.adaptive && !this.ephemeral && !equalBytes(this.table.id, id)) this.dropPersistence()
      if (!onlyFirewall) {
        this.ephemeral = false
        this.io.ephemeral = false
      }
      if (sampler !== this.nat) {
        const ph = this.nat.host
        const pp = this.nat.port
        this.nonPersistentSamples = []
        this.nat = sampler
        this.natChanged(ph, pp)
      }
      if (!equalBytes(this.table.id, id)) {
        const nodes = this.table.toArray()
        this.table = new RoutingTable<TableNode>(id, { k: this.table.k })
        for (const node of nodes) {
          if (equalBytes(node.id, id)) continue
          if (this.table.add(node) === "full") this.nodes.remove(node)
        }
        if (this.bootstrapped) this.refresh()
      }
      if (!this.ephemeral && wasEphemeral) this.emit({ _tag: "persistent" })
      cb(true)
    }
    if (this.firewalled) this.checkIfFirewalled(sampler, proceed)
    else proceed(false)
  }

  private checkIfFirewalled(sampler: NatSampler, cb: (firewalled: boolean) => void): void {
    const targets: Array<NodeAddress> = []
    for (const n of this.nodes.latestFirst()) {
      if (targets.length >= 5) break
      targets.push({ id: n.id, host: n.host, port: n.port })
    }
    if (targets.length < 5) for (const b of this.bootstrapNodes) targets.push(b)
    if (targets.length === 0) return cb(true)
    const hosts = new Set<string>()
    this.probeHosts = hosts
    const value = new Uint8Array(2)
    value[0] = this.serverPort & 0xff
    value[1] = this.serverPort >>> 8
    const replies: Array<IncomingResponse> = []
    let missing = targets.length
    const finish = (): void => {
      if (this.probeHosts === hosts) this.probeHosts = null
      let count = 0
      for (const res of replies) {
        if (hosts.has(res.from.host)) {
          count++
          sampler.add(res.to.host, res.to.port)
        }
      }
      if (count < (targets.length >= 5 ? 3 : 1)) return cb(true)
      if (sampler.host === null || this.nat.host !== sampler.host) return cb(true)
      if (sampler.port === 0 || sampler.port !== this.serverPort) return cb(true)
      cb(false)
    }
    const settle = (): void => {
      if (--missing === 0) finish()
    }
    for (const t of targets) {
      const req = this.request(t, false, true, PING_NAT, null, value, null, (res) => {
        replies.push(res)
        settle()
      }, settle)
      if (req === null) {
        if (this.probeHosts === hosts) this.probeHosts = null
        return cb(true)
      }
    }
  }
}

export { CLIENT, SERVER }
export type { SocketKind }
