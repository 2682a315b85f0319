/**
 * A deterministic simulated network behind the `Transport` port
 * (../Transport.ts): virtual hosts with IPs, NATs and firewalls; links with
 * latency, jitter (=> reordering), loss and duplication; partitions and churn.
 *
 * Determinism: time is Effect's `Clock` (TestClock in tests: nothing is
 * delivered until the test advances time) and every random draw comes from a
 * seeded PRNG owned by the network (never `Math.random`), so a run with the
 * same seed and the same sequence of sends replays identically.
 *
 * Engine (no fiber per datagram):
 * - `send` is synchronous: it reads the time with the captured Clock's
 *   `currentTimeMillisUnsafe()`, updates the sender's NAT/firewall state,
 *   decides loss / duplication / delay with the PRNG and pushes the datagram
 *   into ONE binary heap per network ordered by (deliverAt, sequence number).
 * - ONE scheduler fiber per network waits for a wake-up signal, delivers every
 *   datagram whose deliverAt has passed (to the destination socket's push
 *   receiver, else its inbox) and arms the timer for the next one.
 * - The timer is a tiny fiber that only does `clock.sleep(d)` and then signals
 *   the scheduler (on a VirtualClock it is a callback of the clock's own,
 *   which runs the scheduler step directly). There is at most one armed timer. When a send schedules a
 *   datagram earlier than the armed deadline, the timer is replaced *inside
 *   the send call* (`Effect.runForkWith` starts fibers synchronously), so the
 *   TestClock already knows the new deadline when the test calls
 *   `TestClock.adjust` on the next line.
 * - Deadlines are rounded up to whole milliseconds for waking (a 1 ms timer
 *   resolution); the order inside one wake-up is still (deliverAt, seq), so
 *   sub-millisecond jitter still reorders. Scheduler work is therefore bounded
 *   by the number of distinct milliseconds with deliveries, not by datagrams.
 *
 * Receiver-side rules (NAT filtering, mapping expiry, partitions, dead hosts,
 * closed sockets) are evaluated when the datagram *arrives*, which is what
 * makes simultaneous-open holepunching behave as on real NATs.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { BindError, type BindOptions, bindScoped, type Datagram, type Endpoint, type OwnedSocket, type SocketStats, Transport } from "../Transport.js"
import { Inbox } from "./inbox.js"
import { internIpv4Endpoint, ipv4ToUint32, isDestinationPort, isUint16, uint32ToIPv4 } from "../../protocol/encoding.js"
import { Heap } from "../../util/heap.js"
import { virtualSchedule } from "../VirtualClock.js"

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/**
 * - `open`: public address = host ip:port, all inbound accepted.
 * - `firewalled`: public address = host ip:port, stateful firewall: inbound only
 *   from an endpoint (ip:port) this socket has sent to within the idle timeout.
 * - `consistent`: behind a NAT with its own public IP; endpoint-independent
 *   mapping (one public port per local socket, the same toward every
 *   destination, local port preserved when free) with address-and-port-dependent
 *   filtering.
 * - `random`: symmetric NAT: a different (PRNG-chosen) public port per
 *   (local socket, destination), inbound only from that destination.
 */
export type NatKind = "open" | "firewalled" | "consistent" | "random"

export interface LinkOptions {
  /** One-way delay in ms. Between two hosts: the mean of both hosts' values. Default 10. */
  readonly latency?: number
  /** Extra uniform delay in [0, jitter) ms (reorders datagrams). Mean of both hosts. Default 0. */
  readonly jitter?: number
  /** Probability that a datagram is lost, 0..1. Max of both hosts. Default 0. */
  readonly lossRate?: number
  /** Probability that a datagram is delivered twice, 0..1. Max of both hosts. Default 0. */
  readonly duplicateRate?: number
  /** Bigger datagrams are dropped ("oversize"). Sender's value. Default 65507. */
  readonly maxDatagramSize?: number
}

export interface SimNetworkOptions extends LinkOptions {
  /** PRNG seed; the same seed replays identically. Default 0x5eed. */
  readonly seed?: number | string
  /** NAT mapping / firewall state idle timeout in ms (no outbound traffic). Default 30000. */
  readonly mappingTimeout?: number
  /** Capacity of each socket's inbox; overflow is dropped ("overflow"). Default 4096. */
  readonly inboxCapacity?: number
  /**
   * Datagrams sent with a smaller IP TTL are not delivered ("ttl"), after
   * opening NAT and firewall state on the way out. Default 8: holepunch's
   * TTL-5 probes expire, as on an internet path; 1 models paths a few hops
   * long (a LAN, the NAT lab), on which they arrive.
   */
  readonly minDeliveryTtl?: number
  /** This network is one shard of a larger one (see `SimShard`). */
  readonly shard?: SimShard
}

/**
 * One shard of a network split across several `SimNetwork`s (for example one
 * per worker thread, to run a large simulation on several cores).
 *
 * A datagram to an address this network does not know, which `owner` maps to
 * another shard, is decided on the sending side as any other (the sender's
 * NAT or firewall state, loss, duplication, delay) and put in the outbox
 * instead of the in-flight heap, with its arrival time. The driver moves
 * outboxes to their shards (`takeOutbox`, then `inject` on the owner; the
 * batches are packed and transferable between threads) and advances every
 * shard's clock in windows no longer than the smallest one-way delay: a
 * datagram sent in one window then always arrives in a later one, so each
 * shard runs its window alone. (Shorter windows let shards drift apart by
 * as many windows as fit in that delay, less one: bench/sim-sharded.mjs.)
 * The receiving side (NAT filtering, dead hosts, closed sockets) is decided
 * on arrival, as always.
 *
 * Determinism: a shard's run is a function of its seed, its own inputs and
 * the injected batches. With shards advanced in lockstep and batches
 * injected in a fixed order (by source shard, then send order), a sharded
 * run replays identically.
 *
 * Limits: every shard must use the same network link defaults, and a host of
 * another shard is assumed to use them (the delay of a cross-shard datagram
 * is drawn from the sender's link and the defaults); partitions do not
 * apply across shards (kill/revive do, on the host's own shard).
 */
export interface SimShard {
  /** This shard's index. */
  readonly index: number
  /** The shard that owns `ip` (an address this network does not know), or -1: unreachable. */
  readonly owner: (ip: string) => number
}

/**
 * The datagrams one shard sent to another in one window, packed for
 * `postMessage` (transfer the four arrays' buffers): datagram i arrives at
 * `at[i]` (ms on the shared virtual clock), from `addr[4i]:addr[4i+1]` to
 * `addr[4i+2]:addr[4i+3]` (IPv4 as uint32, `ipv4ToUint32`), and its bytes
 * are `bytes[ends[i-1] .. ends[i])` (from 0 for the first).
 */
export interface SimShardBatch {
  readonly count: number
  readonly at: Float64Array
  readonly addr: Uint32Array
  readonly ends: Uint32Array
  readonly bytes: Uint8Array
}

/** Builds one SimShardBatch: one copy of each datagram, no object per datagram. */
class BatchWriter {
  count = 0
  private used = 0
  at: Float64Array
  addr: Uint32Array
  ends: Uint32Array
  bytes: Uint8Array
  constructor(datagrams: number, bytes: number) {
    this.at = new Float64Array(datagrams)
    this.addr = new Uint32Array(4 * datagrams)
    this.ends = new Uint32Array(datagrams)
    this.bytes = new Uint8Array(bytes)
  }
  push(at: number, fromIp: number, fromPort: number, toIp: number, toPort: number, data: Uint8Array): void {
    const i = this.count
    if (i === this.at.length) {
      const at = new Float64Array(2 * i)
      at.set(this.at)
      this.at = at
      const addr = new Uint32Array(8 * i)
      addr.set(this.addr)
      this.addr = addr
      const ends = new Uint32Array(2 * i)
      ends.set(this.ends)
      this.ends = ends
    }
    const end = this.used + data.byteLength
    if (end > this.bytes.length) {
      const b = new Uint8Array(Math.max(2 * this.bytes.length, end))
      b.set(this.bytes.subarray(0, this.used))
      this.bytes = b
    }
    this.bytes.set(data, this.used)
    this.used = end
    this.at[i] = at
    this.addr[4 * i] = fromIp
    this.addr[4 * i + 1] = fromPort
    this.addr[4 * i + 2] = toIp
    this.addr[4 * i + 3] = toPort
    this.ends[i] = end
    this.count = i + 1
  }
  /** The batch (views of this writer's arrays, which it gives up). */
  finish(): SimShardBatch {
    const n = this.count
    return { count: n, at: this.at.subarray(0, n), addr: this.addr.subarray(0, 4 * n), ends: this.ends.subarray(0, n), bytes: this.bytes.subarray(0, this.used) }
  }
  get sizeHint(): readonly [number, number] {
    return [Math.max(64, this.count), Math.max(4096, this.used)]
  }
}

export interface SimHostOptions extends LinkOptions {
  /**
   * The host's own address. Default: allocated. Public hosts (`open`,
   * `firewalled`) get 20.x.y.z (not a bogon, so hyperdht treats it as public),
   * hosts behind a NAT get 10.a.b.c (private; one /24 per NAT).
   */
  readonly ip?: string
  /** Default "open". */
  readonly nat?: NatKind
  /** Public IP of this host's NAT (`consistent` / `random`); hosts passing the same publicIp share one NAT. */
  readonly publicIp?: string
  /** Name of a shared NAT (`consistent` / `random`); hosts with the same natGroup share one NAT. */
  readonly natGroup?: string
  /** Idle timeout for this host's firewall state or (new) NAT. Default: the network's. */
  readonly mappingTimeout?: number
  /** Capacity of each socket's inbox. Default: the network's. */
  readonly inboxCapacity?: number
}

type TransportService = Transport["Service"]

/** One virtual host: a `Transport` plus its addresses. */
export interface SimHost extends TransportService {
  /** The host's own (interface) address: public for open/firewalled, private behind a NAT. */
  readonly ip: string
  /** The address others see: `ip` for open/firewalled, the NAT's public IP otherwise. */
  readonly publicIp: string
  readonly nat: NatKind
}

export interface SimDropStats {
  /** Random link loss. */
  readonly loss: number
  /** Sender and receiver in different partition groups. */
  readonly partition: number
  /** Sender or receiver killed. */
  readonly dead: number
  /** Rejected by a stateful firewall or NAT (no mapping, expired mapping, filtered source). */
  readonly firewall: number
  /** Nothing bound on the destination port (or the destination host is gone). */
  readonly noSocket: number
  /** Destination address unknown, or a private address behind another NAT. */
  readonly unreachable: number
  /** Sent with a TTL below `minDeliveryTtl` (8): opened NAT/firewall state on the way out, then expired. */
  readonly ttl: number
  /** Bigger than the path's maxDatagramSize. */
  readonly oversize: number
  /** Destination socket inbox full. */
  readonly overflow: number
}

export interface SimNetworkStats {
  /** Datagrams accepted from sockets (after local validation). */
  readonly sent: number
  /** Datagrams placed into a destination inbox (duplicates included). */
  readonly delivered: number
  /** Extra copies created by duplication. */
  readonly duplicated: number
  /** Datagrams currently on the wire. sent + duplicated = delivered + dropped total + inFlight. */
  readonly inFlight: number
  readonly dropped: SimDropStats
  /** Sum of all drop reasons. */
  readonly droppedTotal: number
}

export interface SimNetworkService {
  /** Add a virtual host; it is removed (and its sockets closed) when the scope closes. */
  readonly addHost: (options?: SimHostOptions) => Effect.Effect<SimHost, never, Scope.Scope>
  /**
   * Hosts in different groups cannot exchange datagrams (checked on arrival).
   * Hosts not listed form one more group together. Entries are host IPs or NAT
   * public IPs (= every host behind that NAT).
   */
  readonly partition: (groups: ReadonlyArray<ReadonlyArray<string>>) => Effect.Effect<void>
  /** Remove all partitions. */
  readonly heal: () => Effect.Effect<void>
  /** A killed host neither sends nor receives (sockets and NAT state are kept). Host IP or NAT public IP. */
  readonly kill: (ip: string) => Effect.Effect<void>
  readonly revive: (ip: string) => Effect.Effect<void>
  /** Network-wide loss rate, or one host's when `ip` is given. */
  readonly setLossRate: (rate: number, ip?: string) => Effect.Effect<void>
  /** Change link options network-wide, or for one host when `ip` is given. */
  readonly setLink: (options: LinkOptions, ip?: string) => Effect.Effect<void>
  readonly stats: () => SimNetworkStats
  /** Sharded networks: the datagrams sent to other shards since the last call, one batch per destination shard, in send order. */
  readonly takeOutbox: () => ReadonlyMap<number, SimShardBatch>
  /**
   * Sharded networks: datagrams from another shard (none may arrive before
   * this shard's current time). For a replayable run, inject each window's
   * batches in a fixed order (by source shard).
   */
  readonly inject: (batch: SimShardBatch) => void
}

// ---------------------------------------------------------------------------
// PRNG: sfc32 seeded through splitmix32 (fast, good enough, deterministic)
// ---------------------------------------------------------------------------

class Prng {
  private a: number
  private b: number
  private c: number
  private d: number
  constructor(seed: number | string) {
    let h = 0x811c9dc5
    const s = typeof seed === "number" ? `n:${seed}` : `s:${seed}`
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
    const split = () => {
      h = (h + 0x9e3779b9) | 0
      let z = h
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.a = split()
    this.b = split()
    this.c = split()
    this.d = split()
    for (let i = 0; i < 12; i++) this.next()
  }
  /** Uniform in [0, 1). */
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0
    this.d = (this.d + 1) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) | 0
    return (t >>> 0) / 4294967296
  }
}

// ---------------------------------------------------------------------------
// Internal model
// ---------------------------------------------------------------------------

const MAX_UDP_PAYLOAD = 65507
/** By default, datagrams sent with a TTL below this never reach the destination (holepunch probes use 5). */
const MIN_DELIVERY_TTL = 8
const EPHEMERAL_FIRST = 49152

const MODE_PUBLIC = 0 // to a public host's own ip (filter if firewalled)
const MODE_LAN = 1 // same host or same NAT: no translation, no filtering
const MODE_NAT = 2 // to a NAT's public ip: look up the mapping, filter

class Dgram implements Datagram {
  constructor(readonly from: Endpoint, readonly data: Uint8Array) {}
}

class Counters {
  sent = 0
  delivered = 0
  duplicated = 0
  loss = 0
  partition = 0
  dead = 0
  firewall = 0
  noSocket = 0
  unreachable = 0
  ttl = 0
  oversize = 0
  overflow = 0
}

/** Effective link parameters of a host (overrides merged with network defaults). */
interface Link {
  latency: number
  jitter: number
  lossRate: number
  duplicateRate: number
  maxDatagramSize: number
}

/** The link fields of an options object (a private, mutable copy). */
const linkOverrides = (o: LinkOptions): Partial<Link> => {
  const out: Partial<Link> = {}
  if (o.latency !== undefined) out.latency = o.latency
  if (o.jitter !== undefined) out.jitter = o.jitter
  if (o.lossRate !== undefined) out.lossRate = o.lossRate
  if (o.duplicateRate !== undefined) out.duplicateRate = o.duplicateRate
  if (o.maxDatagramSize !== undefined) out.maxDatagramSize = o.maxDatagramSize
  return out
}

/** Map<key, lastTouched>; expired entries are swept by a full scan whenever the size doubles. */
const sweepTimes = (m: Map<string, number>, now: number, timeout: number): void => {
  for (const [k, t] of m) if (now - t >= timeout) m.delete(k)
}

class SimSocket implements OwnedSocket {
  readonly local: Endpoint
  /** Pull mode's buffer, made when first needed (a pushed socket never makes one). */
  private inbox: Inbox | null = null
  sent = 0
  received = 0
  dropped = 0
  closed = false
  /** firewalled: destination "ip:port" -> last outbound time. */
  fw: Map<string, number> | undefined
  fwSweepAt = 64
  /** consistent: the socket's single mapping. */
  mapping: Mapping | undefined
  /** random: destination "ip:port" -> mapping. */
  randomMappings: Map<string, Mapping> | undefined
  randomSweepAt = 64

  receiver: ((d: Datagram) => void) | null = null

  setReceiver(f: ((d: Datagram) => void) | null): void {
    this.receiver = f
  }

  get receive(): Effect.Effect<ReadonlyArray<Datagram>> {
    return this.pullInbox().receive
  }

  /** Buffer a datagram for `receive`; false when full or closed. */
  offer(d: Datagram): boolean {
    return this.pullInbox().offer(d)
  }

  /** Closed: a waiting `receive` ends, buffered datagrams are dropped. */
  shutdown(): void {
    this.receiver = null
    this.inbox?.shutdown() // a later receive makes a shut one (`closed` is set)
  }

  private pullInbox(): Inbox {
    if (this.inbox === null) {
      this.inbox = new Inbox(this.host.inboxCapacity)
      if (this.closed) this.inbox.shutdown()
    }
    return this.inbox
  }

  get close(): Effect.Effect<void> {
    return Effect.sync(() => this.net.closeSocket(this))
  }

  constructor(readonly net: SimNet, readonly host: Host, readonly port: number) {
    this.local = { host: host.ip, port }
    if (host.kind === "firewalled") this.fw = new Map()
    else if (host.kind === "random") this.randomMappings = new Map()
  }

  send(to: Endpoint, data: Uint8Array, ttl?: number): void {
    if (this.closed || !(data instanceof Uint8Array) || data.byteLength > MAX_UDP_PAYLOAD || to === null || typeof to !== "object") {
      this.dropped++
      return
    }
    const port = to.port
    const host = to.host
    if (typeof host !== "string" || !isDestinationPort(port)) {
      this.dropped++
      return
    }
    this.net.route(this, host, port, data, ttl === undefined ? 64 : ttl)
  }

  stats(): SocketStats {
    return { sent: this.sent, received: this.received, dropped: this.dropped }
  }
}

class Mapping {
  lastOut = 0
  /** The public endpoint receivers see. */
  readonly from: Endpoint
  /** consistent: allowed remote "ip:port" -> last outbound time. */
  allowed: Map<string, number> | undefined
  allowedSweepAt = 64
  constructor(readonly nat: Nat, readonly port: number, readonly socket: SimSocket, readonly dest: string | undefined) {
    if (dest === undefined) this.allowed = new Map()
    this.from = { host: nat.publicIp, port }
  }
}

class Nat {
  readonly byPort = new Map<number, Mapping>()
  readonly hosts = new Set<Host>()
  sweepAt = 256
  nextLanHost = 2
  constructor(
    readonly publicIp: string,
    readonly kind: "consistent" | "random",
    readonly timeout: number,
    readonly lanPrefix: number, // 10.a.b.0 as an int
    readonly group: string | undefined
  ) {}
}

class Host {
  alive = true
  removed = false
  group = 0
  readonly sockets = new Map<number, SimSocket>()
  nextPort = EPHEMERAL_FIRST
  readonly link: Link
  constructor(
    readonly ip: string,
    readonly kind: NatKind,
    readonly nat: Nat | undefined,
    readonly overrides: Partial<Link>,
    readonly inboxCapacity: number,
    readonly timeout: number,
    defaults: Link
  ) {
    this.link = { ...defaults }
    this.applyDefaults(defaults)
  }
  applyDefaults(d: Link): void {
    const o = this.overrides
    this.link.latency = o.latency ?? d.latency
    this.link.jitter = o.jitter ?? d.jitter
    this.link.lossRate = o.lossRate ?? d.lossRate
    this.link.duplicateRate = o.duplicateRate ?? d.duplicateRate
    this.link.maxDatagramSize = o.maxDatagramSize ?? d.maxDatagramSize
  }
  get publicIp(): string {
    return this.nat === undefined ? this.ip : this.nat.publicIp
  }
}

class InFlight {
  constructor(
    readonly at: number,
    readonly seq: number,
    readonly datagram: Dgram,
    readonly sender: Host,
    readonly target: Host | Nat,
    readonly port: number,
    readonly mode: number
  ) {}
}

class Timer {
  constructor(readonly at: number, readonly seq: number, readonly f: () => void) {}
}

function dieWith(message: string): never {
  throw new Error(`SimNetwork: ${message}`)
}

// ---------------------------------------------------------------------------
// The network engine (plain JS; Effects only at the edges)
// ---------------------------------------------------------------------------

class SimNet {
  readonly counters = new Counters()
  readonly heap = new Heap<InFlight>()
  readonly timers = new Heap<Timer>()
  private timerSeq = 0
  readonly prng: Prng
  readonly defaults: Link
  readonly timeout: number
  readonly inboxCapacity: number
  readonly minDeliveryTtl: number
  /** Every address: host ips (public and private) and NAT public ips. */
  readonly addrs = new Map<string, Host | Nat>()
  readonly natGroups = new Map<string, Nat>()
  readonly hosts = new Set<Host>()
  seq = 0
  closed = false
  readonly shard: SimShard | undefined
  private outbox = new Map<number, BatchWriter>()
  /** The last batch's size per destination shard (the next writer starts there). */
  private readonly outboxSize = new Map<number, readonly [number, number]>()
  /** Stands for the sender of an injected datagram (partition group 0). */
  private readonly remoteSender: Host
  private nextPublic = ipv4ToUint32("20.0.0.1")
  private nextLan = 1
  // scheduler / timer
  private waiter: ((effect: Effect.Effect<void>) => void) | undefined = undefined
  private pendingSignal = false
  armedAt = Infinity
  /** In tick(): sends and timers added meanwhile are armed for at its end. */
  private ticking = false
  private timer: Fiber.Fiber<void> | undefined = undefined
  private readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>
  private readonly fire: Effect.Effect<void>
  /** The clock's own callback timers when it is a VirtualClock (no fiber per wake-up). */
  private readonly virtualSchedule: ((at: number, f: (at: number) => void) => void) | undefined
  /** A VirtualClock wake-up: entries left from an earlier arming are stale. */
  private readonly fireAt = (at: number): void => {
    if (at !== this.armedAt || this.closed) return
    this.armedAt = Infinity
    this.tick()
  }
  /** Waits for a wake-up signal (no fork). */
  readonly waitSignal: Effect.Effect<void>

  constructor(readonly clock: Clock.Clock, context: Context.Context<never>, options: SimNetworkOptions) {
    this.prng = new Prng(options.seed ?? 0x5eed)
    this.defaults = {
      latency: options.latency ?? 10,
      jitter: options.jitter ?? 0,
      lossRate: options.lossRate ?? 0,
      duplicateRate: options.duplicateRate ?? 0,
      maxDatagramSize: options.maxDatagramSize ?? MAX_UDP_PAYLOAD
    }
    this.timeout = options.mappingTimeout ?? 30_000
    this.inboxCapacity = options.inboxCapacity ?? 4096
    this.minDeliveryTtl = options.minDeliveryTtl ?? MIN_DELIVERY_TTL
    this.shard = options.shard
    this.remoteSender = new Host("0.0.0.0", "open", undefined, {}, 0, this.timeout, this.defaults)
    this.runFork = Effect.runForkWith(context)
    this.virtualSchedule = virtualSchedule(clock)
    this.fire = Effect.sync(() => {
      this.timer = undefined
      this.armedAt = Infinity
      this.signal()
    })
    this.waitSignal = Effect.callback<void>((resume) => {
      if (this.pendingSignal) {
        this.pendingSignal = false
        resume(Effect.void)
        return
      }
      this.waiter = resume
      return Effect.sync(() => {
        this.waiter = undefined
      })
    })
  }

  signal(): void {
    const w = this.waiter
    if (w !== undefined) {
      this.waiter = undefined
      w(Effect.void)
    } else {
      this.pendingSignal = true
    }
  }

  /** Make sure the scheduler wakes at `wakeAt` (whole ms) or earlier. */
  private wakeBy(wakeAt: number, now: number): void {
    // inside tick(), which arms once for the earliest remaining item at its end
    // (without this, sends during a tick re-armed the timer fiber again and again)
    if (wakeAt >= this.armedAt || this.closed || this.ticking) return
    if (this.timer !== undefined) {
      this.timer.interruptUnsafe()
      this.timer = undefined
    }
    const d = wakeAt - now
    if (d <= 0) {
      this.armedAt = Infinity
      this.signal()
      return
    }
    this.armedAt = wakeAt
    if (this.virtualSchedule !== undefined) {
      this.virtualSchedule(wakeAt, this.fireAt)
      return
    }
    this.timer = this.runFork(Effect.andThen(this.clock.sleep(Duration.millis(d)), this.fire))
  }

  /** A timer callback run by the scheduler at `at` (whole ms, rounded up). */
  schedule(at: number, f: () => void): void {
    if (this.closed) return
    const when = Math.ceil(at)
    this.timers.push(new Timer(when, this.timerSeq++, f))
    this.wakeBy(when, this.clock.currentTimeMillisUnsafe())
  }

  /**
   * Scheduler step: run everything due in time order (deliveries and timers;
   * at the same ms, deliveries first), then arm the clock for the next one.
   */
  tick(): void {
    const now = this.clock.currentTimeMillisUnsafe()
    const heap = this.heap
    const timers = this.timers
    let top = heap.peek()
    let t = timers.peek()
    this.ticking = true
    try {
      while ((top !== undefined && top.at <= now) || (t !== undefined && t.at <= now)) {
        if (top !== undefined && top.at <= now && (t === undefined || top.at <= t.at)) {
          heap.pop()
          this.deliver(top, now)
        } else {
          timers.pop()
          t!.f()
        }
        top = heap.peek()
        t = timers.peek()
      }
    } finally {
      this.ticking = false
      top = heap.peek()
      t = timers.peek()
    }
    const next = Math.min(top === undefined ? Infinity : Math.ceil(top.at), t === undefined ? Infinity : t.at)
    if (next !== Infinity) this.wakeBy(next, now)
  }

  shutdown(): void {
    this.closed = true
    if (this.timer !== undefined) {
      this.timer.interruptUnsafe()
      this.timer = undefined
    }
  }

  // ---- send path -----------------------------------------------------------

  route(sock: SimSocket, dstIp: string, dstPort: number, data: Uint8Array, ttl: number): void {
    const c = this.counters
    const h = sock.host
    if (this.closed || h.removed) {
      sock.dropped++
      return
    }
    sock.sent++
    c.sent++
    if (!h.alive) {
      c.dead++
      return
    }
    const now = this.clock.currentTimeMillisUnsafe()

    // resolve the destination
    const dst = this.addrs.get(dstIp)
    let mode = MODE_PUBLIC
    let target: Host | Nat | undefined = dst
    let remote = -1
    if (dst === undefined) {
      if (dstIp === "127.0.0.1") {
        target = h
        mode = MODE_LAN
      } else if (this.shard !== undefined) {
        const o = this.shard.owner(dstIp)
        if (o >= 0 && o !== this.shard.index) remote = o
      }
    } else if (dst === h) {
      mode = MODE_LAN
    } else if (dst instanceof Host) {
      if (dst.nat !== undefined) {
        if (dst.nat === h.nat) mode = MODE_LAN
        else target = undefined // a private address behind another NAT
      }
    } else {
      mode = MODE_NAT
    }

    // outbound translation + NAT/firewall state (also for ttl-limited probes)
    // the source address the receiver sees (shared, immutable Endpoint objects)
    let from: Endpoint = target === h && dstIp === "127.0.0.1" ? { host: dstIp, port: sock.port } : sock.local
    if (mode !== MODE_LAN) {
      const kind = h.kind
      if (kind === "firewalled") {
        const fw = sock.fw!
        fw.set(`${dstIp}:${dstPort}`, now)
        if (fw.size >= sock.fwSweepAt) {
          sweepTimes(fw, now, h.timeout)
          sock.fwSweepAt = Math.max(64, fw.size * 2)
        }
      } else if (kind === "consistent") {
        const m = this.consistentMapping(sock, now)
        m.lastOut = now
        const allowed = m.allowed!
        allowed.set(`${dstIp}:${dstPort}`, now)
        if (allowed.size >= m.allowedSweepAt) {
          sweepTimes(allowed, now, m.nat.timeout)
          m.allowedSweepAt = Math.max(64, allowed.size * 2)
        }
        from = m.from
      } else if (kind === "random") {
        const m = this.randomMapping(sock, `${dstIp}:${dstPort}`, now)
        m.lastOut = now
        from = m.from
      }
    }

    if (ttl < this.minDeliveryTtl) {
      c.ttl++
      return
    }
    if (remote >= 0) {
      this.sendRemote(remote, h.link, from, dstIp, dstPort, data, now)
      return
    }
    if (target === undefined) {
      c.unreachable++
      return
    }
    const sl = h.link
    if (data.byteLength > sl.maxDatagramSize) {
      c.oversize++
      return
    }

    // link parameters: the mean of both ends for delay, the max for loss/dup
    let latency = 0
    let jitter = 0
    let loss = 0
    let dup = 0
    if (target !== h) {
      let r: Host = h
      if (target instanceof Host) r = target
      else {
        const m = target.byPort.get(dstPort)
        if (m !== undefined) r = m.socket.host
      }
      const rl = r.link
      latency = (sl.latency + rl.latency) * 0.5
      jitter = (sl.jitter + rl.jitter) * 0.5
      loss = sl.lossRate > rl.lossRate ? sl.lossRate : rl.lossRate
      dup = sl.duplicateRate > rl.duplicateRate ? sl.duplicateRate : rl.duplicateRate
    }
    const prng = this.prng
    if (loss > 0 && prng.next() < loss) {
      c.loss++
      return
    }
    const copy = data.slice()
    let at = now + latency
    if (jitter > 0) at += prng.next() * jitter
    this.heap.push(new InFlight(at, this.seq++, new Dgram(from, copy), h, target, dstPort, mode))
    let wake = Math.ceil(at)
    if (dup > 0 && prng.next() < dup) {
      c.duplicated++
      let at2 = now + latency
      if (jitter > 0) at2 += prng.next() * jitter
      this.heap.push(new InFlight(at2, this.seq++, new Dgram(from, copy.slice()), h, target, dstPort, mode))
      const w2 = Math.ceil(at2)
      if (w2 < wake) wake = w2
    }
    if (wake < this.armedAt) this.wakeBy(wake, now)
  }

  /** The send path's tail for a host of another shard (its link: the defaults). */
  private sendRemote(shard: number, sl: Link, from: Endpoint, dstIp: string, dstPort: number, data: Uint8Array, now: number): void {
    const c = this.counters
    if (data.byteLength > sl.maxDatagramSize) {
      c.oversize++
      return
    }
    const rl = this.defaults
    const latency = (sl.latency + rl.latency) * 0.5
    const jitter = (sl.jitter + rl.jitter) * 0.5
    const loss = sl.lossRate > rl.lossRate ? sl.lossRate : rl.lossRate
    const dup = sl.duplicateRate > rl.duplicateRate ? sl.duplicateRate : rl.duplicateRate
    const prng = this.prng
    if (loss > 0 && prng.next() < loss) {
      c.loss++
      return
    }
    let out = this.outbox.get(shard)
    if (out === undefined) {
      const [n, bytes] = this.outboxSize.get(shard) ?? [64, 4096]
      this.outbox.set(shard, (out = new BatchWriter(n, bytes)))
    }
    const fromIp = ipv4ToUint32(from.host)
    const toIp = ipv4ToUint32(dstIp)
    let at = now + latency
    if (jitter > 0) at += prng.next() * jitter
    out.push(at, fromIp, from.port, toIp, dstPort, data)
    if (dup > 0 && prng.next() < dup) {
      c.duplicated++
      let at2 = now + latency
      if (jitter > 0) at2 += prng.next() * jitter
      out.push(at2, fromIp, from.port, toIp, dstPort, data)
    }
  }

  takeOutbox(): ReadonlyMap<number, SimShardBatch> {
    const out = new Map<number, SimShardBatch>()
    for (const [shard, w] of this.outbox) {
      this.outboxSize.set(shard, w.sizeHint)
      out.set(shard, w.finish())
    }
    this.outbox = new Map()
    return out
  }

  inject(batch: SimShardBatch): void {
    if (this.closed || batch.count === 0) return
    const c = this.counters
    const now = this.clock.currentTimeMillisUnsafe()
    const { at, addr, ends, bytes } = batch
    let wake = Infinity
    let start = 0
    for (let i = 0; i < batch.count; i++) {
      const end = ends[i]!
      const arrival = at[i]!
      if (!(arrival >= now)) dieWith(`an injected datagram arrives at ${arrival}, before the shard's time ${now}`)
      const data = bytes.slice(start, end)
      start = end
      const target = this.addrs.get(uint32ToIPv4(addr[4 * i + 2]!))
      // a private address is not reachable from another shard
      if (target === undefined || (target instanceof Host && target.nat !== undefined)) {
        c.unreachable++
        continue
      }
      // source endpoints: shared (interned) as local ones are
      const from = internIpv4Endpoint(addr[4 * i]!, addr[4 * i + 1]!)
      this.heap.push(new InFlight(arrival, this.seq++, new Dgram(from, data), this.remoteSender, target, addr[4 * i + 3]!, target instanceof Host ? MODE_PUBLIC : MODE_NAT))
      const w = Math.ceil(arrival)
      if (w < wake) wake = w
    }
    if (wake < this.armedAt) this.wakeBy(wake, now)
  }

  private consistentMapping(sock: SimSocket, now: number): Mapping {
    let m = sock.mapping
    const nat = sock.host.nat!
    if (m !== undefined && now - m.lastOut < nat.timeout) return m
    if (m !== undefined) nat.byPort.delete(m.port)
    // endpoint-independent mapping; preserve the local port when free
    let port = sock.port
    if (nat.byPort.has(port)) port = this.freeNatPort(nat, now, false)
    m = new Mapping(nat, port, sock, undefined)
    nat.byPort.set(port, m)
    sock.mapping = m
    return m
  }

  private randomMapping(sock: SimSocket, dest: string, now: number): Mapping {
    const mappings = sock.randomMappings!
    let m = mappings.get(dest)
    const nat = sock.host.nat!
    if (m !== undefined && now - m.lastOut < nat.timeout) return m
    if (m !== undefined) {
      nat.byPort.delete(m.port)
      mappings.delete(dest)
    }
    if (mappings.size >= sock.randomSweepAt) {
      for (const [k, x] of mappings) {
        if (now - x.lastOut >= nat.timeout) {
          mappings.delete(k)
          if (nat.byPort.get(x.port) === x) nat.byPort.delete(x.port)
        }
      }
      sock.randomSweepAt = Math.max(64, mappings.size * 2)
    }
    m = new Mapping(nat, this.freeNatPort(nat, now, true), sock, dest)
    nat.byPort.set(m.port, m)
    mappings.set(dest, m)
    return m
  }

  /** A free public port on `nat`: PRNG-chosen (random NAT) or sequential-ish (consistent NAT). */
  private freeNatPort(nat: Nat, now: number, random: boolean): number {
    if (nat.byPort.size >= nat.sweepAt) {
      this.sweepNat(nat, now)
      nat.sweepAt = Math.max(256, nat.byPort.size * 2)
    }
    if (random) {
      for (let i = 0; i < 64; i++) {
        const p = 1024 + Math.floor(this.prng.next() * (65536 - 1024))
        if (!nat.byPort.has(p)) return p
      }
    }
    for (let p = EPHEMERAL_FIRST, i = 0; i < 65536 - 1024; i++, p = p >= 65535 ? 1024 : p + 1) {
      if (!nat.byPort.has(p)) return p
    }
    this.sweepNat(nat, now)
    // exhausted: reuse the least recently used mapping's port
    let oldest: Mapping | undefined
    for (const m of nat.byPort.values()) if (oldest === undefined || m.lastOut < oldest.lastOut) oldest = m
    if (oldest === undefined) return EPHEMERAL_FIRST
    this.dropMapping(oldest)
    return oldest.port
  }

  private sweepNat(nat: Nat, now: number): void {
    for (const m of nat.byPort.values()) if (now - m.lastOut >= nat.timeout) this.dropMapping(m)
  }

  dropMapping(m: Mapping): void {
    if (m.nat.byPort.get(m.port) === m) m.nat.byPort.delete(m.port)
    const s = m.socket
    if (s.mapping === m) s.mapping = undefined
    if (m.dest !== undefined && s.randomMappings?.get(m.dest) === m) s.randomMappings.delete(m.dest)
  }

  // ---- delivery ------------------------------------------------------------

  private deliver(e: InFlight, now: number): void {
    const c = this.counters
    let sock: SimSocket | undefined
    let r: Host
    const target = e.target
    if (target instanceof Host) {
      r = target
      sock = r.sockets.get(e.port)
      if (e.mode === MODE_PUBLIC && r.kind === "firewalled" && sock !== undefined) {
        const from = e.datagram.from
        const t = sock.fw!.get(`${from.host}:${from.port}`)
        if (t === undefined || now - t >= r.timeout) {
          c.firewall++
          return
        }
      }
    } else {
      const m = target.byPort.get(e.port)
      if (m === undefined || now - m.lastOut >= target.timeout) {
        c.firewall++
        return
      }
      const from = e.datagram.from
      const key = `${from.host}:${from.port}`
      if (m.dest !== undefined) {
        if (m.dest !== key) {
          c.firewall++
          return
        }
      } else {
        const t = m.allowed!.get(key)
        if (t === undefined || now - t >= target.timeout) {
          c.firewall++
          return
        }
      }
      sock = m.socket
      r = sock.host
    }
    if (e.sender.group !== r.group) {
      c.partition++
      return
    }
    if (!r.alive) {
      c.dead++
      return
    }
    if (sock === undefined || sock.closed || r.removed) {
      c.noSocket++
      return
    }
    if (sock.receiver !== null) {
      sock.received++
      c.delivered++
      sock.receiver(e.datagram)
    } else if (sock.offer(e.datagram)) {
      sock.received++
      c.delivered++
    } else {
      sock.dropped++
      c.overflow++
    }
  }

  // ---- hosts & sockets -------------------------------------------------------

  addHost(options: SimHostOptions): Host {
    if (this.closed) dieWith("the network is closed")
    const kind: NatKind = options.nat ?? "open"
    if (kind !== "open" && kind !== "firewalled" && kind !== "consistent" && kind !== "random") dieWith(`unknown nat kind ${String(kind)}`)
    const checkIp = (ip: string, what: string) => {
      if (ipv4ToUint32(ip) < 0) dieWith(`${what} ${ip} is not an IPv4 address`)
    }
    let nat: Nat | undefined
    if (kind === "consistent" || kind === "random") {
      if (options.natGroup !== undefined) nat = this.natGroups.get(options.natGroup)
      if (options.publicIp !== undefined) {
        checkIp(options.publicIp, "publicIp")
        const existing = this.addrs.get(options.publicIp)
        if (existing instanceof Host) dieWith(`publicIp ${options.publicIp} is a host address`)
        if (nat !== undefined && existing !== nat) dieWith(`natGroup ${options.natGroup} has public ip ${nat.publicIp}, not ${options.publicIp}`)
        nat = existing
      }
      if (nat !== undefined) {
        if (nat.kind !== kind) dieWith(`NAT ${nat.publicIp} is ${nat.kind}, cannot add a ${kind} host`)
        if (options.natGroup !== undefined && nat.group !== undefined && nat.group !== options.natGroup) {
          dieWith(`NAT ${nat.publicIp} belongs to natGroup ${nat.group}`)
        }
      } else {
        const publicIp = options.publicIp ?? this.allocPublic()
        const lanPrefix = (10 << 24 >>> 0) + this.nextLan++ * 256
        nat = new Nat(publicIp, kind, options.mappingTimeout ?? this.timeout, lanPrefix, options.natGroup)
        this.addrs.set(publicIp, nat)
        if (options.natGroup !== undefined) this.natGroups.set(options.natGroup, nat)
      }
    } else if (options.natGroup !== undefined || options.publicIp !== undefined) {
      dieWith(`natGroup/publicIp need nat "consistent" or "random", not "${kind}"`)
    }
    let ip = options.ip
    if (ip !== undefined) {
      checkIp(ip, "ip")
      if (this.addrs.has(ip)) dieWith(`ip ${ip} is already in use`)
    } else if (nat !== undefined) {
      do {
        if (nat.nextLanHost > 254) dieWith(`NAT ${nat.publicIp}: LAN full`)
        ip = uint32ToIPv4(nat.lanPrefix + nat.nextLanHost++)
      } while (this.addrs.has(ip))
    } else {
      ip = this.allocPublic()
    }
    const host = new Host(ip, kind, nat, linkOverrides(options), options.inboxCapacity ?? this.inboxCapacity, options.mappingTimeout ?? this.timeout, this.defaults)
    this.addrs.set(ip, host)
    this.hosts.add(host)
    nat?.hosts.add(host)
    return host
  }

  private allocPublic(): string {
    while (true) {
      const n = this.nextPublic++
      const last = n & 255
      if (last === 0 || last === 255) continue
      const ip = uint32ToIPv4(n)
      if (!this.addrs.has(ip)) return ip
    }
  }

  removeHost(host: Host): void {
    host.removed = true
    for (const s of host.sockets.values()) this.closeSocket(s)
    this.hosts.delete(host)
    if (this.addrs.get(host.ip) === host) this.addrs.delete(host.ip)
    const nat = host.nat
    if (nat !== undefined) {
      nat.hosts.delete(host)
      if (nat.hosts.size === 0) {
        if (this.addrs.get(nat.publicIp) === nat) this.addrs.delete(nat.publicIp)
        if (nat.group !== undefined && this.natGroups.get(nat.group) === nat) this.natGroups.delete(nat.group)
      }
    }
  }

  closeSocket(s: SimSocket): void {
    if (s.closed) return
    s.closed = true
    const h = s.host
    if (h.sockets.get(s.port) === s) h.sockets.delete(s.port)
    if (s.mapping !== undefined) this.dropMapping(s.mapping)
    if (s.randomMappings !== undefined) for (const m of [...s.randomMappings.values()]) this.dropMapping(m)
    s.shutdown()
  }

  /** Bind a socket on `host` (Transport.open). */
  open(host: Host, options: BindOptions | undefined): SimSocket | BindError {
    const port = this.bindPort(host, options)
    if (typeof port === "string") return new BindError({ host: options?.host ?? host.ip, port: options?.port ?? 0, detail: port })
    const s = new SimSocket(this, host, port)
    host.sockets.set(port, s)
    return s
  }

  /** Pick the port for a bind, or a reason it cannot be bound. */
  bindPort(host: Host, options: BindOptions | undefined): number | string {
    if (this.closed || host.removed) return "host removed"
    const bindHost = options?.host
    if (bindHost !== undefined && bindHost !== "0.0.0.0" && bindHost !== host.ip && bindHost !== "127.0.0.1") {
      return "EADDRNOTAVAIL"
    }
    const port = options?.port ?? 0
    if (!isUint16(port)) return "invalid port"
    if (port !== 0) return host.sockets.has(port) ? "EADDRINUSE" : port
    for (let i = 0; i < 65536 - EPHEMERAL_FIRST; i++) {
      const p = host.nextPort
      host.nextPort = p >= 65535 ? EPHEMERAL_FIRST : p + 1
      if (!host.sockets.has(p)) return p
    }
    return "no free port"
  }

  /** Resolve an IP (host or NAT public IP) to hosts. */
  resolve(ip: string): ReadonlyArray<Host> {
    const a = this.addrs.get(ip)
    if (a === undefined) return dieWith(`unknown address ${ip}`)
    return a instanceof Host ? [a] : [...a.hosts]
  }

  stats(): SimNetworkStats {
    const c = this.counters
    const dropped: SimDropStats = {
      loss: c.loss,
      partition: c.partition,
      dead: c.dead,
      firewall: c.firewall,
      noSocket: c.noSocket,
      unreachable: c.unreachable,
      ttl: c.ttl,
      oversize: c.oversize,
      overflow: c.overflow
    }
    let total = 0
    for (const v of Object.values(dropped)) total += v
    return { sent: c.sent, delivered: c.delivered, duplicated: c.duplicated, inFlight: this.heap.size, dropped, droppedTotal: total }
  }
}

// ---------------------------------------------------------------------------
// Effect surface
// ---------------------------------------------------------------------------

const makeHost = (net: SimNet, options: SimHostOptions): Effect.Effect<SimHost, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => net.addHost(options)),
      (host) => Effect.sync(() => net.removeHost(host))
    ),
    (host): SimHost => {
      const addresses: ReadonlyArray<string> = [host.ip]
      return {
        ip: host.ip,
        publicIp: host.publicIp,
        nat: host.kind,
        localAddresses: () => addresses,
        schedule: (at, f) => net.schedule(at, f),
        open: (options) => net.open(host, options),
        bind: (options) => bindScoped(() => net.open(host, options))
      }
    }
  )

const make = (options: SimNetworkOptions = {}): Effect.Effect<SimNetworkService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Clock.Clock
    const context = yield* Effect.context<never>()
    const net = new SimNet(clock, context, options)
    const scheduler = Effect.forever(Effect.andThen(net.waitSignal, Effect.sync(() => net.tick())))
    yield* Effect.forkScoped(scheduler, { startImmediately: true })
    yield* Effect.addFinalizer(() => Effect.sync(() => net.shutdown()))
    const forHosts = (ip: string | undefined, f: (h: Host) => void) =>
      Effect.sync(() => {
        const hosts = ip === undefined ? net.hosts : net.resolve(ip)
        for (const h of hosts) f(h)
      })
    const setLink = (link: LinkOptions, ip?: string) =>
      ip === undefined
        ? Effect.sync(() => {
          const d = net.defaults
          if (link.latency !== undefined) d.latency = link.latency
          if (link.jitter !== undefined) d.jitter = link.jitter
          if (link.lossRate !== undefined) d.lossRate = link.lossRate
          if (link.duplicateRate !== undefined) d.duplicateRate = link.duplicateRate
          if (link.maxDatagramSize !== undefined) d.maxDatagramSize = link.maxDatagramSize
          for (const h of net.hosts) h.applyDefaults(d)
        })
        : forHosts(ip, (h) => {
          Object.assign(h.overrides, linkOverrides(link))
          h.applyDefaults(net.defaults)
        })
    const service: SimNetworkService = {
      addHost: (hostOptions) => makeHost(net, hostOptions ?? {}),
      partition: (groups) =>
        Effect.sync(() => {
          const resolved = groups.map((g) => g.flatMap((ip) => net.resolve(ip)))
          for (const h of net.hosts) h.group = 0
          resolved.forEach((g, i) => {
            for (const h of g) h.group = i + 1
          })
        }),
      heal: () => forHosts(undefined, (h) => {
        h.group = 0
      }),
      kill: (ip) => forHosts(ip, (h) => {
        h.alive = false
      }),
      revive: (ip) => forHosts(ip, (h) => {
        h.alive = true
      }),
      setLossRate: (rate, ip) => setLink({ lossRate: rate }, ip),
      setLink,
      stats: () => net.stats(),
      takeOutbox: () => net.takeOutbox(),
      inject: (batch) => net.inject(batch)
    }
    return service
  })

export class SimNetwork extends Context.Service<SimNetwork, SimNetworkService>()("omega/SimNetwork") {
  /** Build a network in the current scope (closing the scope stops its scheduler). */
  static readonly make = make
  /** A simulated network (one per test / simulation). */
  static readonly layer = (options: SimNetworkOptions = {}): Layer.Layer<SimNetwork> => Layer.effect(SimNetwork, make(options))
  /** One virtual host's `Transport` on the network in context. */
  static readonly host = (options: SimHostOptions = {}): Layer.Layer<Transport, never, SimNetwork> =>
    Layer.effect(Transport, SimNetwork.use((net) => net.addHost(options)))
}
