/**
 * The iterative Kademlia query (dht-rpc.md §8), as a deterministic state
 * machine over the node's RPC core: a LIFO of candidates, the `seen` map
 * (referrers / DONE / DOWN), the k closest successful replies, slow-request
 * accounting, down hints and the optional commit phase.
 *
 * Results leave through the `onreply` / `onend` callbacks supplied by the
 * owner (the node's driver turns them into an Effect Stream).
 */
import * as Data from "effect/Data"
import * as Rpc from "../../protocol/dht-rpc.js"
import { endpointKey, ipv4Endpoint, Ipv4Endpoint } from "../../protocol/encoding.js"
import { isLocalSource } from "./limits.js"
import type { IncomingResponse, NodeAddress, OutRequest, RequestError } from "./rpc.js"

export interface QueryNode {
  readonly id: Uint8Array | null
  readonly host: string
  readonly port: number
}

/** What the query needs from its node. */
export interface QueryHost {
  readonly k: number
  readonly concurrency: number
  tableId(): Uint8Array
  closest(target: Uint8Array, n: number): ReadonlyArray<QueryNode>
  bootstrapList(): ReadonlyArray<QueryNode>
  nodeId(host: string, port: number): Uint8Array | null
  /** The node id of an interned endpoint. */
  nodeIdOf(e: Ipv4Endpoint): Uint8Array
  /** The node with this id is in our routing table: we have heard from it ourselves. */
  heard(id: Uint8Array): boolean
  /** Whether `filterNode` can reject anything. */
  filtering(): boolean
  filterNode(node: { readonly host: string; readonly port: number; readonly id: Uint8Array }): boolean
  /** Create and send a request; null when the node is destroyed. */
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
  ): OutRequest | null
  /** Send a DOWN_HINT about `down` to `to`, if the per-tick rate limit allows. */
  downHint(to: NodeAddress, down: { readonly host: string; readonly port: number }, group: Set<OutRequest>): void
  /** Commit step: resolves with whether the commit succeeded. */
  commit(reply: IncomingResponse, query: Query, done: (err: unknown | null) => void): void
  /** Cancel an in-flight request of this query (its callbacks are already silenced). */
  cancel(req: OutRequest): void
  queryFinished(q: Query): void
}

export interface QueryOptions {
  readonly concurrency?: number
  readonly retries?: number
  readonly force?: boolean
  readonly nodes?: ReadonlyArray<{ readonly host: string; readonly port: number; readonly id?: Uint8Array | null }>
  readonly replies?: ReadonlyArray<{ readonly from: NodeAddress }>
  readonly onlyClosestNodes?: boolean
/** true: the default committer (send the same request with each closest reply's token). */
  readonly commit?: boolean | ((reply: IncomingResponse, query: Query, done: (err: unknown | null) => void) => void)
}

export class QueryError extends Data.TaggedError("QueryError")<{
  readonly reason: "TooFewNodes" | "CommitFailed" | "Destroyed" | "NodeDestroyed"
  /** The last commit error (CommitFailed). */
  readonly lastError?: unknown
}> {
  override get message(): string {
    switch (this.reason) {
      case "TooFewNodes":
        return "Too few nodes responded"
      case "CommitFailed":
        return `All commits failed: ${String(this.lastError)}`
      default:
        return `Query ${this.reason}`
    }
  }
}

/** The default commit step found no round-trip token in a closest reply (the write cannot be sent to that node). */
export class NoToken extends Data.TaggedError("NoToken")<{
  readonly to: { readonly host: string; readonly port: number }
}> {
  override get message(): string {
    return "No token received for closest node"
  }
}

/**
 * Distinct ports of one public host that a query contacts on the word of
 * other nodes' replies. A reply can name any address as a closer node: one
 * forged reply naming 20 ports of a victim host (ids ground to look close)
 * made a query send 120 requests there. Two, because honest closer-node
 * lists rarely hold more than one node of a host (node ids are hashes of
 * host and port, spread over the whole id space), and a host running many
 * nodes is still reached at two of them and through every node of it in
 * our own table (addresses from the table, the bootstrap list or the
 * caller are never refused). Local hosts (loopback, private ranges: local
 * testnets run hundreds of nodes on one address) are exempt.
 */
export const MAX_QUERY_PORTS_PER_HOST = 2
/**
 * Retries of a query's request to an address that only another node's
 * reply vouches for and that is not in our table (we never heard from it):
 * 3, so 4 sends over 4 s, instead of the reference's 5. With the per-host
 * cap, a forged reply gets at most 2 x 4 requests sent to a third party.
 * An honest node is rarely lost to it: at 10% loss each way a live node
 * misses all 4 round trips with probability 0.2%.
 */
export const UNHEARD_RETRIES = 3

const DONE: Array<NodeAddress> = []
const DOWN: Array<NodeAddress> = []

/** A query's key for an address: a number on the hot path, a string only for malformed ones. */
const keyOf = (a: { readonly host: string; readonly port: number }): number | string => {
  const k = endpointKey(a.host, a.port)
  return k >= 0 ? k : `${a.host}:${a.port}`
}

export class Query {
  readonly k: number
  concurrency: number
  readonly retries: number
  readonly force: boolean
  inflight = 0
  successes = 0
  errors = 0
  readonly closestReplies: Array<IncomingResponse> = []
  /** Requests in flight for this query (cancelled together). */
  readonly group = new Set<OutRequest>()
  done = false

  private slow = 0
  private slowdown = false
  /** By endpointKey(host, port) (or "host:port" for an address that has none). */
  private readonly seen = new Map<number | string, Array<NodeAddress>>()
  private readonly pending: Array<NodeAddress> = []
  /** Addresses queued per public host (MAX_QUERY_PORTS_PER_HOST). */
  private readonly hostPorts = new Map<string, number>()
  /** Addresses queued on the word of a reply only (UNHEARD_RETRIES). */
  private readonly vouched = new Set<number | string>()
  /** Closer nodes not contacted: their host already had MAX_QUERY_PORTS_PER_HOST addresses in this query. */
  capped = 0
  private fromTable = false
  private committing = false
  private onlyClosest = false
  private readonly commitFn: QueryOptions["commit"] | null
  private opened = false

  onreply: (reply: IncomingResponse) => void = () => {}
  onend: (error: QueryError | null) => void = () => {}

  constructor(
    private readonly host: QueryHost,
    readonly target: Uint8Array,
    readonly internal: boolean,
    readonly command: number,
    readonly value: Uint8Array | null,
    opts: QueryOptions = {}
  ) {
    this.k = host.k
    this.force = opts.force === true
    this.concurrency = opts.concurrency ?? host.concurrency
    this.retries = opts.retries === 0 ? 0 : (opts.retries ?? (internal && command === Rpc.InternalCommand.DOWN_HINT ? 3 : 5))
    this.commitFn = opts.commit === true ? true : (opts.commit ?? null)
    if (opts.nodes !== undefined) {
      for (let i = opts.nodes.length - 1; i >= 0; i--) {
        const n = opts.nodes[i]!
        this.addPending({ id: n.id ?? host.nodeId(n.host, n.port), host: n.host, port: n.port }, null)
      }
    } else if (opts.replies !== undefined) {
      for (let i = opts.replies.length - 1; i >= 0; i--) this.addPending(opts.replies[i]!.from, null)
    }
    if (opts.onlyClosestNodes === true) this.onlyClosest = true
  }

  get closestNodes(): Array<NodeAddress> {
    return this.closestReplies.map((r) => r.from)
  }

  /** Seed from the table and bootstrap nodes, then start reading. */
  start(): void {
    if (this.opened) return
    this.opened = true
    this.addFromTable()
    if (this.pending.length < this.k) {
      for (const n of this.host.bootstrapList()) this.addPending(n, null)
    }
    this.readMore()
  }

  /** Stop: cancel in-flight requests; `onend` is not called again if already done. */
  destroy(reason?: QueryError | null): void {
    if (this.done) return
    this.done = true
    if (reason === undefined) reason = new QueryError({ reason: "Destroyed" })
    for (const req of [...this.group]) {
      req.onerror = () => {}
      req.onresponse = () => {}
      this.host.cancel(req)
    }
    this.host.queryFinished(this)
    this.onend(reason)
  }

  private addFromTable(): void {
    if (this.pending.length >= this.k) return
    this.fromTable = true
    for (const n of this.host.closest(this.target, this.k - this.pending.length)) {
      this.addPending({ id: n.id, host: n.host, port: n.port }, null)
    }
  }

  private compare(a: Uint8Array, b: Uint8Array): number {
    const t = this.target
    for (let i = 0; i < a.length; i++) {
      if (a[i] === b[i]) continue
      return (t[i]! ^ a[i]!) - (t[i]! ^ b[i]!)
    }
    return 0
  }

  isCloser(id: Uint8Array | null): boolean {
    if (this.closestReplies.length < this.k) return true
    if (id === null) return false
    return this.compare(id, this.closestReplies[this.closestReplies.length - 1]!.from.id!) < 0
  }

  private addPending(node: NodeAddress, ref: NodeAddress | null): boolean {
    return this.addPendingKeyed(keyOf(node), node.id, node, ref)
  }

  /** `addr` is keyOf(at); `at` becomes a pending NodeAddress only when queued. */
  private addPendingKeyed(addr: number | string, id: Uint8Array | null, at: { readonly host: string; readonly port: number; readonly id?: Uint8Array | null }, ref: NodeAddress | null): boolean {
    if (this.onlyClosest) return false
    const refs = this.seen.get(addr)
    const closer = this.isCloser(id)
    if (refs === DONE) return closer
    if (refs === DOWN) {
      if (ref !== null) this.host.downHint(ref, at, this.group)
      return closer
    }
    if (refs !== undefined) {
      if (ref !== null) refs.push(ref)
      return closer
    }
    if (!closer) return false
    if (!isLocalSource(at.host)) {
      const ports = this.hostPorts.get(at.host) ?? 0
      if (ref !== null && ports >= MAX_QUERY_PORTS_PER_HOST) {
        this.capped++
        return true
      }
      this.hostPorts.set(at.host, ports + 1)
    }
    if (ref !== null) this.vouched.add(addr)
    this.seen.set(addr, ref === null ? [] : [ref])
    this.pending.push(at.id === id ? (at as NodeAddress) : { id, host: at.host, port: at.port })
    return true
  }

  private readMore(): void {
    if (this.done || this.committing) return
    const concurrency = (this.slowdown ? 3 : this.concurrency) + this.slow
    while (this.inflight < concurrency && this.pending.length > 0) {
      const next = this.pending.pop()!
      if (next.id !== null && !this.isCloser(next.id)) continue
      this.visit(next)
      if (this.done) return
    }
    if (!this.fromTable && this.successes === 0 && this.errors === 0) this.slowdown = true
    if (this.pending.length > 0) return
    if (this.inflight === 0 || (this.slow === this.inflight && this.closestReplies.length >= this.k && !this.slowButCloser())) {
      if (!this.fromTable && this.successes < this.k / 4) {
        this.addFromTable()
        this.readMore()
        return
      }
      this.flush()
    }
  }

  /**
   * Omega policy (not wire-visible): the reference finishes as soon as every
   * in-flight request is slow and k replies are in, even when a slow request
   * goes to a node closer than the k-th reply; under packet loss that node is
   * usually alive and its answer is one retry away, so we wait for it (it
   * answers or finally times out). This keeps lookups exact on lossy links.
   */
  private slowButCloser(): boolean {
    for (const req of this.group) {
      if (req.oncycle === null && req.command === this.command && req.to.id !== null && this.isCloser(req.to.id)) return true
    }
    return false
  }

  private visit(to: NodeAddress): void {
    this.inflight++
    const retries = this.force
      ? 0
      : this.retries > UNHEARD_RETRIES && to.id !== null && this.vouched.has(keyOf(to)) && !this.host.heard(to.id)
        ? UNHEARD_RETRIES
        : this.retries
    const req = this.host.request(
      to,
      this.force,
      this.internal,
      this.command,
      this.target,
      this.value,
      this.group,
      (res, r) => this.onvisit(res, r),
      (err, r) => this.onerror(err, r),
      (r) => {
        r.retries = retries
        r.oncycle = (rq) => this.oncycle(rq)
      }
    )
    if (req === null) this.destroy(new QueryError({ reason: "NodeDestroyed" }))
  }

  private dec(req: OutRequest): void {
    if (req.oncycle === null) this.slow--
    else req.oncycle = null
    this.inflight--
  }

  private oncycle(req: OutRequest): void {
    req.oncycle = null
    this.slow++
    this.readMore()
  }

  private onvisit(m: IncomingResponse, req: OutRequest): void {
    this.dec(req)
    this.seen.set(keyOf(req.to), DONE)
    if (this.committing || this.done) return
    if (m.error === 0) this.successes++
    else this.errors++
    if (m.error === 0 && m.from.id !== null && this.isCloser(m.from.id)) this.pushClosest(m)
    const own = this.host.tableId()
    const filtering = this.host.filtering()
    const closer = m.closerNodes
    for (let i = 0; i < closer.length; i++) {
      const a = closer[i]!
      // decoded addresses are interned endpoints (key and id without a parse
      // or a lookup); a node object only for what is queued
      const n = a instanceof Ipv4Endpoint ? a : ipv4Endpoint(a.host, a.port)
      if (n === null) continue
      const id = this.host.nodeIdOf(n)
      if (filtering && !this.host.filterNode({ id, host: n.host, port: n.port })) continue
      if (equal(id, own)) continue
      if (!this.addPendingKeyed(Ipv4Endpoint.keyOf(n), id, n, m.from)) break
    }
    if (!this.fromTable && this.successes + this.errors >= this.concurrency) this.slowdown = false
    if (m.error === 0) this.onreply(m)
    this.readMore()
  }

  private onerror(err: RequestError, req: OutRequest): void {
    const addr = keyOf(req.to)
    const refs = this.seen.get(addr)
    if (err.code === "REQUEST_TIMEOUT") {
      this.seen.set(addr, DOWN)
      if (refs !== undefined && refs !== DONE && refs !== DOWN) {
        for (const ref of refs) this.host.downHint(ref, req.to, this.group)
      }
    }
    this.dec(req)
    this.errors++
    this.readMore()
  }

  private pushClosest(m: IncomingResponse): void {
    const list = this.closestReplies
    list.push(m)
    for (let i = list.length - 2; i >= 0; i--) {
      const prev = list[i]!
      const cmp = this.compare(prev.from.id!, m.from.id!)
      if (cmp < 0) break
      if (cmp === 0) {
        list.splice(i + 1, 1)
        break
      }
      list[i + 1] = prev
      list[i] = m
    }
    if (list.length > this.k) list.pop()
  }

  private flush(): void {
    if (this.committing) return
    this.committing = true
    if (this.commitFn === null || this.commitFn === undefined || this.commitFn === false) {
      this.finish(null)
      return
    }
    const replies = [...this.closestReplies]
    if (replies.length === 0) {
      this.finish(new QueryError({ reason: "TooFewNodes" }))
      return
    }
    let pending = replies.length
    let success = 0
    let lastError: unknown = null
    const commit = this.commitFn === true ? (r: IncomingResponse, q: Query, d: (e: unknown | null) => void) => this.host.commit(r, q, d) : this.commitFn
    for (const r of replies) {
      let settled = false
      commit(r, this, (err) => {
        if (settled) return
        settled = true
        if (err === null) success++
        else lastError = err
        if (--pending === 0) this.finish(success > 0 ? null : new QueryError({ reason: "CommitFailed", lastError }))
      })
    }
  }

  private finish(err: QueryError | null): void {
    if (this.done) return
    this.done = true
    this.host.queryFinished(this)
    this.onend(err)
  }
}

const equal = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
