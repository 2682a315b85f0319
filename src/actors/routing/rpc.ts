/**
 * The dht-rpc I/O core (dht-rpc.md §2, §3, §5–§7): transaction ids, request
 * retransmission and timeouts, the congestion window, reply matching by tid,
 * round-trip tokens and reply encoding.
 *
 * A plain deterministic state machine: no sockets, no clock. Time comes in as
 * `now` (ms) on every input; datagrams go out through the `transmit` callback
 * (the owner queues them); timers are exposed as `nextDeadline()` and fired
 * by `onTimers(now)`.
 */
import * as Data from "effect/Data"
import * as Result from "effect/Result"
import type { CryptoImpl } from "../../layers/crypto/types.js"
import * as Rpc from "../../protocol/dht-rpc.js"
import { equalBytes, type IPv4Address } from "../../protocol/encoding.js"
import { DEFAULT_REQUEST_RATE_LIMIT, type RateLimitStats, RequestLimiter, type RequestRateLimit } from "./limits.js"

const NO_NODES: ReadonlyArray<{ readonly host: string; readonly port: number }> = Object.freeze([])

export const SERVER = 0
export const CLIENT = 1
export type SocketKind = typeof SERVER | typeof CLIENT

export const DEFAULT_MAX_WINDOW = 80
export const DRAIN_INTERVAL = 750
export const DEFAULT_TIMEOUT = 1000
const TOKEN_MEMO_MAX = 64

export interface NodeAddress {
  readonly host: string
  readonly port: number
  /** Validated node id (computed from the address), or null. */
  readonly id: Uint8Array | null
}

export type RequestErrorCode = "REQUEST_TIMEOUT" | "REQUEST_DESTROYED" | "IO_SUSPENDED" | "NODE_DESTROYED"

export class RequestError extends Data.TaggedError("RequestError")<{
  readonly code: RequestErrorCode
  readonly to: { readonly host: string; readonly port: number }
  readonly command: number
  readonly internal: boolean
}> {
  override get message(): string {
    return `${this.code}: ${this.internal ? "internal" : "app"} command ${this.command} to ${this.to.host}:${this.to.port}`
  }
}

/**
 * A RequestError without a captured stack: these are protocol outcomes
 * (timeouts, cancellations) raised from timers and query teardown, where a
 * stack names only our own loop and capturing it costs more than the rest of
 * the request (a cancelled lookup cancels up to `concurrency` requests).
 */
export const requestError = (
  code: RequestErrorCode,
  to: { readonly host: string; readonly port: number },
  command: number,
  internal: boolean
): RequestError => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return new RequestError({ code, to: { host: to.host, port: to.port }, command, internal })
  } finally {
    Error.stackTraceLimit = limit
  }
}

export interface IncomingRequest {
  readonly tid: number
  /** Sender; `port` may be replaced (PING_NAT). `id` is validated against the address. */
  from: { host: string; port: number; id: Uint8Array | null }
  /** Our address as the sender sees it. */
  readonly to: IPv4Address
  readonly token: Uint8Array | null
  readonly internal: boolean
  readonly command: number
  readonly target: Uint8Array | null
  readonly value: Uint8Array | null
  /** The socket it arrived on; replies leave through it unless overridden. */
  readonly socket: SocketKind
}

export interface IncomingResponse {
  readonly tid: number
  readonly from: NodeAddress
  /** Our address as the replier sees it. */
  readonly to: IPv4Address
  readonly token: Uint8Array | null
  readonly closerNodes: ReadonlyArray<IPv4Address>
  readonly error: number
  readonly value: Uint8Array | null
  readonly rtt: number
}

export interface OutRequest {
  readonly tid: number
  readonly to: NodeAddress
  readonly token: Uint8Array | null
  readonly internal: boolean
  readonly command: number
  readonly target: Uint8Array | null
  readonly value: Uint8Array | null
  socket: SocketKind
  ttl: number
  sent: number
  retries: number
  /** Fixed per-attempt timeout (ms); 0 = default. */
  timeout: number
  destroyed: boolean
  buffer: Uint8Array | null
  deadline: number
  timestamp: number
  /** A group (query session) that cancels its requests together. */
  group: Set<OutRequest> | null
  oncycle: ((req: OutRequest) => void) | null
  onresponse: (res: IncomingResponse, req: OutRequest) => void
  onerror: (err: RequestError, req: OutRequest) => void
}

export interface ReplyOptions {
  readonly token?: boolean
  readonly closerNodes?: boolean
  readonly to?: { readonly host: string; readonly port: number }
  readonly socket?: SocketKind
}

export interface RpcStats {
  requests: { active: number; total: number; responses: number; timeouts: number; retries: number }
  commands: Array<{ tx: number; rx: number }>
  /** Datagrams dropped on receipt: too short, bad port, undecodable, unknown type, over a request rate limit. */
  dropped: number
  /** Requests dropped (and counted in `dropped`) over the per-source or the node's rate limit (`requestRateLimit`). */
  rateLimited: RateLimitStats
  /** Replies with no matching transaction: an unknown, spoofed or already answered tid (ignored). */
  unmatched: number
  /**
   * Requests carrying a token that is not ours for the sender's address:
   * stale (issued more than two secret rotations ago, 7.5–15 s), issued to
   * another address, or made up. Answered INVALID_TOKEN; the command does
   * not run.
   */
  invalidTokens: number
}

export interface RpcHost {
  readonly crypto: CryptoImpl
  /** `nodeId(host, port)` (dht-rpc.md §4), possibly memoized. */
  nodeId(host: string, port: number): Uint8Array | null
  /** Our table id (put on the wire when persistent and sending from the server socket). */
  tableId(): Uint8Array
  /** The closer-node list of a reply: the routing table's closest to `target` (read before the next call). */
  closerNodes(target: Uint8Array): ReadonlyArray<{ readonly host: string; readonly port: number }>
  transmit(socket: SocketKind, to: { readonly host: string; readonly port: number }, data: Uint8Array, ttl: number): void
  onRequest(req: IncomingRequest, external: boolean): void
  /** A reply matched `req` (already settled; its `onresponse` runs right after). */
  onResponse(res: IncomingResponse, external: boolean, req: OutRequest): void
  onTimeout(req: OutRequest): void
}

class CongestionWindow {
  private i = 0
  private total = 0
  private readonly window = [0, 0, 0, 0]
  constructor(private readonly maxWindow: number) {}
  clear(): void {
    this.i = 0
    this.total = 0
    this.window.fill(0)
  }
  isFull(): boolean {
    return this.total >= 2 * this.maxWindow || this.window[this.i]! >= this.maxWindow
  }
  isEmpty(): boolean {
    return this.total === 0
  }
  recv(): void {
    if (this.window[this.i]! > 0) {
      this.window[this.i]!--
      this.total--
    }
  }
  send(): void {
    this.total++
    this.window[this.i]!++
  }
  drain(): void {
    this.i = (this.i + 1) & 3
    this.total -= this.window[this.i]!
    this.window[this.i] = 0
  }
}

const noop = (): void => {}

export interface RpcOptions {
  readonly maxWindow?: number
  readonly firewalled?: boolean
  /** Incoming request limits (default DEFAULT_REQUEST_RATE_LIMIT; local sources exempt); false: none. */
  readonly requestRateLimit?: RequestRateLimit | false
  readonly random: () => number
  readonly randomBytes: (n: number) => Uint8Array
}

export class RpcIo {
  firewalled: boolean
  ephemeral = true
  suspended = false
  destroyed = false
  readonly inflight = new Map<number, OutRequest>()
  /** Incoming request rate limits (null: none). */
  readonly limiter: RequestLimiter | null
  readonly stats: RpcStats = {
    requests: { active: 0, total: 0, responses: 0, timeouts: 0, retries: 0 },
    commands: [
      { tx: 0, rx: 0 },
      { tx: 0, rx: 0 },
      { tx: 0, rx: 0 },
      { tx: 0, rx: 0 }
    ],
    dropped: 0,
    rateLimited: { source: 0, global: 0 },
    unmatched: 0,
    invalidTokens: 0
  }

  private tid: number
  /**
   * A lower bound of the in-flight requests' deadlines, so that the deadline
   * asked for after every step costs no scan: a request that ends early
   * leaves it stale, and the timer step it then causes (which finds nothing
   * due) recomputes it.
   */
  private earliest = Infinity
  private secrets: Rpc.TokenSecrets | null = null
  private readonly tokenMemo: readonly [Map<string, Uint8Array>, Map<string, Uint8Array>] = [new Map(), new Map()]
  private rotateIn = 10
  private readonly congestion: CongestionWindow
  private pending: Array<OutRequest> = []
  private pendingHead = 0
  nextDrain: number
  private now = 0
  private readonly randomBytes: (n: number) => Uint8Array

  constructor(private readonly host: RpcHost, options: RpcOptions, now: number) {
    this.firewalled = options.firewalled !== false
    this.congestion = new CongestionWindow(options.maxWindow ?? DEFAULT_MAX_WINDOW)
    const limit = options.requestRateLimit ?? DEFAULT_REQUEST_RATE_LIMIT
    this.limiter = limit === false ? null : new RequestLimiter(limit)
    if (this.limiter !== null) this.stats.rateLimited = this.limiter.stats
    this.tid = Math.floor(options.random() * 65536) & 0xffff
    this.randomBytes = options.randomBytes
    this.now = now
    this.nextDrain = now + DRAIN_INTERVAL
  }

  /** The socket requests currently leave from. */
  get outgoingSocket(): SocketKind {
    return this.firewalled ? CLIENT : SERVER
  }

  // ---- tokens ----------------------------------------------------------------

  token(host: string, i: 0 | 1): Uint8Array {
    if (this.secrets === null) this.secrets = Rpc.makeTokenSecrets(this.randomBytes)
    // a token depends only on (secret, host): memoized until the secrets rotate
    const memo = this.tokenMemo[i]
    let tok = memo.get(host)
    if (tok === undefined) {
      tok = Rpc.token(this.host.crypto.blake2b, this.secrets[i], host)
      if (memo.size >= TOKEN_MEMO_MAX) memo.clear()
      memo.set(host, tok)
    }
    return tok
  }

  private tokenValid(tok: Uint8Array, host: string): boolean {
    return equalBytes(tok, this.token(host, 1)) || equalBytes(tok, this.token(host, 0))
  }

  // ---- outgoing requests ------------------------------------------------------

  createRequest(
    to: NodeAddress,
    token: Uint8Array | null,
    internal: boolean,
    command: number,
    target: Uint8Array | null,
    value: Uint8Array | null,
    ttl = 0
  ): OutRequest | null {
    if (this.destroyed) return null
    if (this.tid === 65536) this.tid = 0
    const tid = this.tid++
    const req: OutRequest = {
      tid,
      to,
      token,
      internal,
      command,
      target,
      value,
      socket: this.outgoingSocket,
      ttl,
      sent: 0,
      retries: 3,
      timeout: 0,
      destroyed: false,
      buffer: null,
      deadline: Infinity,
      timestamp: this.now,
      group: null,
      oncycle: null,
      onresponse: noop,
      onerror: noop
    }
    // a wrapped-around tid still in flight is replaced, as the reference's
    // first-match scan would never reach the older one either
    const clash = this.inflight.get(tid)
    if (clash !== undefined) this.destroyRequest(clash, "REQUEST_DESTROYED")
    this.inflight.set(tid, req)
    if (internal && command < this.stats.commands.length) this.stats.commands[command]!.tx++
    this.stats.requests.active++
    this.stats.requests.total++
    return req
  }

  send(req: OutRequest, force = false): void {
    if (req.destroyed) return
    if (req.buffer === null) req.buffer = this.encodeRequest(req, req.token, req.value, req.to, req.socket)
    if (req.buffer === null) {
      this.destroyRequest(req, "REQUEST_DESTROYED")
      return
    }
    if (this.nextDrain <= this.now) this.catchUpDrains(this.now)
    if (!force && this.congestion.isFull()) {
      this.pending.push(req)
      return
    }
    this.sendNow(req)
  }

  private sendNow(req: OutRequest): void {
    if (req.destroyed) return
    req.sent++
    this.congestion.send()
    this.host.transmit(req.socket, req.to, req.buffer!, req.ttl)
    const d = this.now + (req.timeout || DEFAULT_TIMEOUT)
    req.deadline = d
    if (d < this.earliest) this.earliest = d
  }

  destroyRequest(req: OutRequest, code: RequestErrorCode): void {
    if (req.destroyed) return
    req.destroyed = true
    req.deadline = Infinity
    if (this.inflight.get(req.tid) === req) this.inflight.delete(req.tid)
    else return
    if (req.group !== null) req.group.delete(req)
    this.stats.requests.active--
    this.congestion.recv()
    req.onerror(requestError(code, req.to, req.command, req.internal), req)
  }

  private encodeRequest(
    req: OutRequest,
    token: Uint8Array | null,
    value: Uint8Array | null,
    to: { readonly host: string; readonly port: number },
    socket: SocketKind
  ): Uint8Array | null {
    const withId = !this.ephemeral && socket === SERVER
    const r = Rpc.encodeRequest({
      tid: req.tid,
      to: { host: to.host, port: to.port },
      id: withId ? this.host.tableId() : null,
      token,
      internal: req.internal,
      command: req.command,
      target: req.target,
      value
    })
    return Result.isSuccess(r) ? r.success : null
  }

  // ---- replies and relays ------------------------------------------------------

  reply(req: IncomingRequest, error: number, value: Uint8Array | null, opts: ReplyOptions = {}): void {
    if (this.destroyed) return
    const socket = opts.socket ?? req.socket
    const to = opts.to ?? req.from
    const withToken = error === 0 ? opts.token !== false : opts.token === true
    const withNodes = opts.closerNodes !== false && req.target !== null
    this.sendReply(req.tid, req.target, error, value, withToken, withNodes, to, socket)
  }

  /** Reply as dht-rpc's internal `sendReply(error, value, token, closerNodes)` does. */
  sendReply(
    tid: number,
    target: Uint8Array | null,
    error: number,
    value: Uint8Array | null,
    withToken: boolean,
    withNodes: boolean,
    to: { readonly host: string; readonly port: number },
    socket: SocketKind
  ): void {
    const withId = !this.ephemeral && socket === SERVER
    // the encoder reads host and port only: no copies of the table's nodes or of `to`
    const closerNodes = target !== null && withNodes ? this.host.closerNodes(target) : NO_NODES
    const r = Rpc.encodeResponse({
      tid,
      to,
      id: withId ? this.host.tableId() : null,
      token: withToken ? this.token(to.host, 1) : null,
      closerNodes,
      error,
      value
    })
    if (Result.isSuccess(r)) this.host.transmit(socket, to, r.success, 0)
  }

  /** Forward a request with a new value and no token, keeping its tid (hyperdht relaying). */
  relay(req: IncomingRequest, value: Uint8Array | null, to: { readonly host: string; readonly port: number }, socket?: SocketKind): void {
    if (this.destroyed) return
    const s = socket ?? req.socket
    const withId = !this.ephemeral && s === SERVER
    const r = Rpc.encodeRequest({
      tid: req.tid,
      to: { host: to.host, port: to.port },
      id: withId ? this.host.tableId() : null,
      token: null,
      internal: req.internal,
      command: req.command,
      target: req.target,
      value
    })
    if (Result.isSuccess(r)) this.host.transmit(s, to, r.success, 0)
  }

  // ---- incoming -----------------------------------------------------------------

  private validateId(id: Uint8Array | null, host: string, port: number): Uint8Array | null {
    if (id === null) return null
    const expected = this.host.nodeId(host, port)
    return expected !== null && equalBytes(expected, id) ? expected : null
  }

  /** The time of an input that is not a datagram or a timer (a request made by the owner). */
  setTime(now: number): void {
    this.now = now
  }

  onDatagram(now: number, socket: SocketKind, from: { readonly host: string; readonly port: number }, data: Uint8Array): void {
    this.now = now
    if (data.length < 2 || !(from.port > 0 && from.port < 65536) || this.suspended || this.destroyed) {
      this.stats.dropped++
      return
    }
    const type = data[0]
    if (type !== Rpc.REQUEST_ID && type !== Rpc.RESPONSE_ID) {
      this.stats.dropped++
      return
    }
    // over a rate limit: dropped before it is decoded (counted in `rateLimited`)
    if (type === Rpc.REQUEST_ID && this.limiter !== null && !this.limiter.allow(from.host, now)) {
      this.stats.dropped++
      return
    }
    const decoded = Rpc.decodeMessage(data)
    if (Result.isFailure(decoded)) {
      this.stats.dropped++
      return
    }
    const external = socket !== this.outgoingSocket
    const m = decoded.success
    if (m._tag === "Request") {
      const q = m.request
      const req: IncomingRequest = {
        tid: q.tid,
        from: { host: from.host, port: from.port, id: this.validateId(q.id, from.host, from.port) },
        to: q.to,
        token: q.token,
        internal: q.internal,
        command: q.command,
        target: q.target,
        value: q.value,
        socket
      }
      if (req.token !== null && !this.tokenValid(req.token, req.from.host)) {
        this.stats.invalidTokens++
        this.reply(req, Rpc.RpcErrorCode.INVALID_TOKEN, null, { token: true })
        return
      }
      this.host.onRequest(req, external)
      return
    }
    const r = m.response
    const req = this.inflight.get(r.tid)
    if (req === undefined || req.destroyed) {
      this.stats.unmatched++
      return
    }
    const res: IncomingResponse = {
      tid: r.tid,
      from: { host: from.host, port: from.port, id: this.validateId(r.id, from.host, from.port) },
      to: r.to,
      token: r.token,
      closerNodes: r.closerNodes,
      error: r.error,
      value: r.value,
      rtt: now - req.timestamp
    }
    this.inflight.delete(r.tid)
    req.destroyed = true
    req.deadline = Infinity
    if (req.group !== null) req.group.delete(req)
    this.congestion.recv()
    if (req.internal && req.command < this.stats.commands.length) this.stats.commands[req.command]!.rx++
    this.stats.requests.active--
    this.stats.requests.responses++
    this.host.onResponse(res, external, req)
    req.onresponse(res, req)
  }

  // ---- timers -----------------------------------------------------------------------

  nextDeadline(): number {
    let next = this.nextDrain
    if (this.pendingHead >= this.pending.length && this.congestion.isEmpty()) {
      // Idle: a drain would change nothing but the count toward the next
      // rotation of the token secrets, so only that drain needs a wake-up;
      // the ones skipped run (as no-ops) in order before the next send or
      // timer (catchUpDrains). An idle node wakes every 7.5 s, not 750 ms.
      next = this.secrets === null ? Infinity : this.nextDrain + (this.rotateIn - 1) * DRAIN_INTERVAL
    }
    return this.earliest < next ? this.earliest : next
  }

  onTimers(now: number): void {
    this.now = now
    if (this.destroyed) return
    // request timeouts, oldest deadline first
    const due: Array<OutRequest> = []
    for (const req of this.inflight.values()) if (req.deadline <= now) due.push(req)
    due.sort((a, b) => a.deadline - b.deadline || a.tid - b.tid)
    for (const req of due) {
      if (req.destroyed || req.deadline > now) continue
      req.deadline = Infinity
      const cycle = req.oncycle
      if (cycle !== null) cycle(req)
      if (req.destroyed) continue
      if (req.sent > req.retries) {
        this.stats.requests.timeouts++
        this.destroyRequest(req, "REQUEST_TIMEOUT")
        this.host.onTimeout(req)
      } else {
        this.stats.requests.retries++
        this.send(req)
      }
    }
    // the bound is exact again (until a request it stands for ends early)
    let earliest = Infinity
    for (const req of this.inflight.values()) if (req.deadline < earliest) earliest = req.deadline
    this.earliest = earliest
    this.catchUpDrains(now)
  }

  /** Run every drain due by `now`, in order (see nextDeadline). */
  private catchUpDrains(now: number): void {
    while (this.nextDrain <= now) {
      this.nextDrain += DRAIN_INTERVAL
      this.drain()
    }
  }

  private drain(): void {
    if (this.secrets !== null && --this.rotateIn === 0) {
      this.rotateIn = 10
      this.secrets = Rpc.rotateTokenSecrets(this.host.crypto.blake2b, this.secrets)
      this.tokenMemo[0].clear()
      this.tokenMemo[1].clear()
    }
    this.congestion.drain()
    while (!this.congestion.isFull()) {
      if (this.pendingHead >= this.pending.length) {
        this.pending = []
        this.pendingHead = 0
        return
      }
      const p = this.pending[this.pendingHead++]!
      this.sendNow(p)
    }
    if (this.pendingHead > 1024 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead)
      this.pendingHead = 0
    }
  }

  /** Fail every in-flight request (suspend / destroy). */
  clear(code: RequestErrorCode): void {
    for (const req of [...this.inflight.values()]) this.destroyRequest(req, code)
    this.pending = []
    this.pendingHead = 0
  }

  suspend(): void {
    this.suspended = true
    this.clear("IO_SUSPENDED")
    this.congestion.clear()
  }

  resume(now: number): void {
    this.now = now
    this.suspended = false
    this.nextDrain = now + DRAIN_INTERVAL
  }

  destroy(): void {
    if (this.destroyed) return
    this.clear("REQUEST_DESTROYED")
    this.destroyed = true
  }
}
