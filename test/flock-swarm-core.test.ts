/**
 * Rule tests of the Flock swarm core (src/actors/flock/swarm.ts): the
 * counterparts, at core level, of the reference tests in flock.md §16 whose
 * rule lives in the core (named after them: "swarm.js #13 ...", "firewall.js
 * #34 ...", "peer-join.js #37 ...", "dups.js #39 ...", "chaos.js #40 ..."),
 * plus the §16.1 additional checks and Flock's own rules (inbound cap,
 * closeConnections, bounded bans, flush bound).
 *
 * `Driver` runs one core on an explicit clock; `CoreNet` links several
 * cores through simulated connections (fixed per-pair latency, handshakes,
 * destroys) on a deterministic event loop. Seeded randomness throughout.
 */
import { describe, expect, it } from "vitest"
import { DEFAULT_MAX_BANNED_PEERS, DIAL_RACE_WINDOW, ERR_FIREWALLED, LOSER_HOLD, LOSER_HOLD_FLOOR } from "../src/actors/flock/constants.js"
import { compareKeys } from "../src/actors/flock/dedup.js"
import { DiscoveryOutput, TopicDiscoveryCore } from "../src/actors/flock/discovery.js"
import { type ConnId, SwarmCore, type SwarmCoreOptions, SwarmOutput } from "../src/actors/flock/swarm.js"
import { toHex } from "../src/protocol/encoding.js"
import { seededRandom } from "../src/util/random.js"

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

const key = (b: number, fill = 0): Uint8Array => {
  const k = new Uint8Array(32).fill(fill)
  k[0] = b
  return k
}
const topicKey = (b: number): Uint8Array => key(b, 0xee)
const ME = key(0x80)
const T1 = topicKey(1)
const T2 = topicKey(2)
/** The reference tests' timing: backoffs [100, 200, 300, 400], jitter 0. */
const TEST_TIMING = { backoffs: [100, 200, 300, 400] as const, jitter: 0 }
const L = 300

type Tag = SwarmOutput["_tag"]
type Out<T extends Tag> = Extract<SwarmOutput, { _tag: T }>

interface DriverOptions extends Partial<Omit<SwarmCoreOptions, "publicKey" | "random">> {
  readonly publicKey?: Uint8Array
  readonly seed?: number
  /** Answer every Dial at once with handleDialStarted (no user firewall). Default true. */
  readonly autoStart?: boolean
  /** A user firewall on the dial path: true rejects. */
  readonly firewall?: (remote: Uint8Array) => boolean
}

/** One SwarmCore on an explicit clock, every output recorded. */
class Driver {
  readonly core: SwarmCore
  now = 0
  readonly log: Array<SwarmOutput> = []
  /** `connecting` at each Update output. */
  readonly connectingAtUpdate: Array<number> = []
  firewallCalls = 0
  private readonly autoStart: boolean
  private readonly firewall: ((remote: Uint8Array) => boolean) | undefined

  constructor(options: DriverOptions = {}) {
    this.core = new SwarmCore({ ...options, publicKey: options.publicKey ?? ME, random: seededRandom(options.seed ?? 1) })
    this.autoStart = options.autoStart ?? true
    this.firewall = options.firewall
  }

  /** Run an input at the current time; the outputs it produced. */
  run(f: (core: SwarmCore, now: number) => unknown): Array<SwarmOutput> {
    const before = this.log.length
    f(this.core, this.now)
    this.pump()
    return this.log.slice(before)
  }

  pump(): void {
    for (let o = this.core.poll(); o !== undefined; o = this.core.poll()) {
      this.log.push(o)
      if (o._tag === "Update") this.connectingAtUpdate.push(this.core.connecting)
      if (o._tag !== "Dial") continue
      if (this.firewall !== undefined) {
        this.firewallCalls++
        if (this.firewall(o.peer.publicKey)) {
          this.core.handleDialFirewalled(this.now, o.id)
          continue
        }
      }
      if (this.autoStart) this.core.handleDialStarted(this.now, o.id)
    }
  }

  /** Advance the clock by `ms`, firing every deadline on the way. */
  advance(ms: number): void {
    const until = this.now + ms
    for (let d = this.core.nextDeadline(); d <= until; d = this.core.nextDeadline()) {
      this.now = Math.max(this.now, d)
      this.core.handleTimeout(this.now)
      this.pump()
    }
    this.now = until
  }

  of<T extends Tag>(tag: T, from = 0): Array<Out<T>> {
    return this.log.slice(from).filter((o): o is Out<T> => o._tag === tag)
  }

  dials(from = 0): Array<ConnId> {
    return this.of("Dial", from).map((d) => d.id)
  }

  lastDial(): ConnId {
    const d = this.dials()
    return d[d.length - 1]!
  }

  open(id: ConnId): Array<SwarmOutput> {
    return this.run((c, now) => c.handleOpened(now, id))
  }

  close(id: ConnId, failure?: { code: string | null; message: string }): Array<SwarmOutput> {
    return this.run((c, now) => c.handleClosed(now, id, failure))
  }

  find(publicKey: Uint8Array, topic: Uint8Array = T1): Array<SwarmOutput> {
    return this.run((c, now) => c.handlePeer(now, topic, { publicKey, relayAddresses: [{ host: "10.0.0.1", port: 49737 }] }))
  }
}

const FAIL = { code: "PEER_NOT_FOUND", message: "peer not found" }

// ---------------------------------------------------------------------------
// Several cores on a simulated network
// ---------------------------------------------------------------------------

interface Link {
  readonly dialer: Node
  readonly acceptor: Node
  readonly dialerId: ConnId
  acceptorId: ConnId | null
  openedAtDialer: boolean
  closedAtDialer: boolean
  closedAtAcceptor: boolean
}

interface Node {
  readonly index: number
  readonly publicKey: Uint8Array
  readonly hex: string
  readonly core: SwarmCore
  readonly links: Map<ConnId, Link>
  connectionEvents: number
  /** When each Connection output came. */
  readonly connectionTimes: Array<number>
  dialsStarted: number
}

interface CoreNetOptions extends Partial<Omit<SwarmCoreOptions, "publicKey" | "random">> {
  readonly nodes: number
  readonly seed: number
  /** One-way latency range; each pair gets a fixed latency in it. */
  readonly latency?: readonly [number, number]
  /**
   * The acceptor's processing time: its server opens the stream (the
   * header leaves for the dialer) when the dial arrives, its swarm core
   * sees the inbound this much later. 0: at once, and a stream the acceptor
   * refused at once never opens at the dialer.
   */
  readonly acceptDelay?: number
}

/**
 * SwarmCores linked by simulated connections: a Dial reaches the remote
 * after the pair's latency (`handleInbound`, "stale" = the existing
 * connection is open there), the dialer opens one latency later unless the
 * acceptor refused at once; a Destroy closes the link at that end at once
 * and at the other end one latency later.
 */
class CoreNet {
  now = 0
  readonly nodes: Array<Node> = []
  private readonly rnd: () => number
  private events: Array<{ at: number; seq: number; run: () => void }> = []
  private seq = 0
  private readonly latencies = new Map<string, number>()
  private readonly latency: readonly [number, number]
  private readonly acceptDelay: number

  constructor(options: CoreNetOptions) {
    this.rnd = seededRandom(options.seed)
    this.latency = options.latency ?? [5, 60]
    this.acceptDelay = options.acceptDelay ?? 0
    const { nodes, seed, latency, acceptDelay, ...coreOptions } = options
    void latency
    void acceptDelay
    for (let i = 0; i < nodes; i++) {
      const publicKey = new Uint8Array(32).map(() => Math.floor(this.rnd() * 256))
      const core = new SwarmCore({ ...coreOptions, publicKey, random: seededRandom(seed * 1000 + i + 1) })
      this.nodes.push({ index: i, publicKey, hex: toHex(publicKey), core, links: new Map(), connectionEvents: 0, connectionTimes: [], dialsStarted: 0 })
    }
  }

  random(): number {
    return this.rnd()
  }

  at(delay: number, run: () => void): void {
    this.events.push({ at: this.now + delay, seq: this.seq++, run })
  }

  input(node: Node, f: (core: SwarmCore, now: number) => unknown): void {
    f(node.core, this.now)
    this.pump(node)
  }

  runUntil(until: number): void {
    for (;;) {
      let best: { at: number; seq: number; run: () => void } | null = null
      for (const e of this.events) if (best === null || e.at < best.at || (e.at === best.at && e.seq < best.seq)) best = e
      let timerNode: Node | null = null
      let next = best === null ? Number.POSITIVE_INFINITY : best.at
      for (const n of this.nodes) {
        const d = n.core.nextDeadline()
        if (d < next) {
          next = d
          timerNode = n
        }
      }
      if (next > until) break
      this.now = Math.max(this.now, next)
      if (timerNode !== null) {
        timerNode.core.handleTimeout(this.now)
        this.pump(timerNode)
      } else {
        this.events = this.events.filter((e) => e !== best)
        best!.run()
      }
    }
    this.now = until
  }

  /** Destroy a random open connection from the end that holds it. */
  killRandom(): void {
    const open: Array<[Node, ConnId]> = []
    for (const n of this.nodes) for (const id of n.core.connections) open.push([n, id])
    if (open.length === 0) return
    const [node, id] = open[Math.floor(this.rnd() * open.length)]!
    this.closeLink(node.links.get(id)!, node)
  }

  /** Pair → number of connections seen from either end; a "!" entry marks a pair whose ends disagree. */
  pairs(): Map<string, number> {
    const pairs = new Map<string, number>()
    for (const n of this.nodes) {
      for (const id of n.core.connections) {
        const link = n.links.get(id)!
        const other = link.dialer === n ? link.acceptor : link.dialer
        const pair = n.index < other.index ? `${n.index}-${other.index}` : `${other.index}-${n.index}`
        pairs.set(pair, (pairs.get(pair) ?? 0) + 1)
        const back = other.core.connectionTo(n.publicKey)
        if (back === undefined || back.phase !== "open" || other.links.get(back.id) !== link) pairs.set(`${pair}!`, 1)
      }
    }
    return pairs
  }

  private latencyOf(a: Node, b: Node): number {
    const k = a.index < b.index ? `${a.index}-${b.index}` : `${b.index}-${a.index}`
    let l = this.latencies.get(k)
    if (l === undefined) {
      l = this.latency[0] + Math.floor(this.rnd() * (this.latency[1] - this.latency[0]))
      this.latencies.set(k, l)
    }
    return l
  }

  private pump(node: Node): void {
    for (let o = node.core.poll(); o !== undefined; o = node.core.poll()) {
      if (o._tag === "Dial") {
        if (!node.core.handleDialStarted(this.now, o.id)) continue
        node.dialsStarted++
        const target = this.nodes.find((n) => n.hex === o.peer.key)!
        const link: Link = { dialer: node, acceptor: target, dialerId: o.id, acceptorId: null, openedAtDialer: false, closedAtDialer: false, closedAtAcceptor: false }
        node.links.set(o.id, link)
        this.at(this.latencyOf(node, target), () => this.arrive(link))
      } else if (o._tag === "Destroy") {
        const link = node.links.get(o.id)
        if (link !== undefined) this.closeLink(link, node)
      } else if (o._tag === "Connection") {
        node.connectionEvents++
        node.connectionTimes.push(this.now)
      }
    }
  }

  private arrive(link: Link): void {
    if (link.closedAtDialer) return
    const acc = link.acceptor
    // the dialer's handshake reaches the acceptor's server (its swarm is told before the stream exists)
    this.input(acc, (c, now) => c.noteHandshake(now, link.dialer.publicKey))
    const open = () =>
      this.at(this.latencyOf(link.dialer, acc), () => {
        if (link.closedAtDialer) return
        link.openedAtDialer = true
        this.input(link.dialer, (c, now) => c.handleOpened(now, link.dialerId))
      })
    const accept = () => {
      if (link.closedAtAcceptor) return
      const id = acc.core.handleInbound(this.now, link.dialer.publicKey, (existing) => acc.core.connection(existing)?.phase === "open")
      link.acceptorId = id
      acc.links.set(id, link)
      this.pump(acc)
    }
    if (this.acceptDelay === 0) {
      accept()
      if (!link.closedAtAcceptor) open()
      return
    }
    // the stream opens at the dialer whatever the acceptor's swarm decides later
    open()
    // a close from the dialer that reached the acceptor first ends it there (closedAtAcceptor)
    this.at(this.acceptDelay, accept)
  }

  private closeLink(link: Link, by: Node): void {
    const lat = this.latencyOf(link.dialer, link.acceptor)
    const closeDialer = () => {
      if (link.closedAtDialer) return
      link.closedAtDialer = true
      this.input(link.dialer, (c, now) => c.handleClosed(now, link.dialerId, link.openedAtDialer ? null : { code: "DUPLICATE", message: "closed" }))
    }
    const closeAcceptor = () => {
      if (link.closedAtAcceptor) return
      link.closedAtAcceptor = true
      const id = link.acceptorId
      if (id !== null) this.input(link.acceptor, (c, now) => c.handleClosed(now, id))
    }
    if (by === link.dialer) {
      closeDialer()
      this.at(lat, closeAcceptor)
    } else {
      closeAcceptor()
      this.at(lat, closeDialer)
    }
  }
}

// ---------------------------------------------------------------------------
// Outbound lifecycle, stats, update (swarm.js, stats.js, update.js)
// ---------------------------------------------------------------------------

describe("outbound lifecycle (§6)", () => {
  it("swarm.js #8 one server, one client - first connection: a discovered peer is dialled and connects (client = true)", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    const out = d.find(key(1))
    const dial = out.find((o): o is Out<"Dial"> => o._tag === "Dial")!
    expect(dial.peer.publicKey).toEqual(key(1))
    expect(dial.relayAddresses).toEqual([{ host: "10.0.0.1", port: 49737 }])
    expect(dial.forceRelay).toBe(false)
    expect(d.core.hasConnection(key(1))).toBe(true)
    const opened = d.open(dial.id)
    const conn = opened.find((o): o is Out<"Connection"> => o._tag === "Connection")!
    expect(conn.peer.client).toBe(true)
    expect(conn.direction).toBe("outbound")
    expect(conn.peer.proven).toBe(true)
    expect(conn.peer.connectedTime).toBe(d.now)
    expect(d.core.connections.has(dial.id)).toBe(true)
  })

  it("update.js #43 connecting: an update shows 1 during the dial, a later one 0", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    expect(d.core.connecting).toBe(0)
    d.find(key(1))
    expect(d.connectingAtUpdate).toEqual([1])
    d.open(d.lastDial())
    expect(d.connectingAtUpdate).toEqual([1, 0])
    expect(d.core.stats.updates).toBe(2)
  })

  it("stats.js #41 connectionsOpened and connectionsClosed: client attempted/opened/closed, server opened/closed", () => {
    const client = new Driver(TEST_TIMING)
    client.run((c) => c.joinTopic(T1))
    client.find(key(1))
    const id = client.lastDial()
    client.open(id)
    expect(client.core.stats.connects.client).toEqual({ attempted: 1, opened: 1, closed: 0 })
    client.close(id)
    expect(client.core.stats.connects.client).toEqual({ attempted: 1, opened: 1, closed: 1 })

    const server = new Driver({ ...TEST_TIMING, publicKey: key(1) })
    let sid = 0
    server.run((c, now) => (sid = c.handleInbound(now, ME)))
    expect(server.core.stats.connects.server).toEqual({ opened: 1, closed: 0, refused: 0 })
    server.close(sid)
    expect(server.core.stats.connects.server).toEqual({ opened: 1, closed: 1, refused: 0 })
  })

  it("a failed dial counts as closed, adds an attempt and keeps why it failed (PeerInfo.lastError)", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    d.close(d.lastDial(), FAIL)
    const p = d.core.peer(key(1))!
    expect(p.attempts).toBe(1)
    expect(p.lastError).toEqual(FAIL)
    expect(p.waiting).toBe(true)
    expect(d.core.stats.connects.client).toEqual({ attempted: 1, opened: 0, closed: 1 })
    expect(d.core.connecting).toBe(0)
  })

  it("swarm.js #10 single reconnect: after the remote ends the first connection, the client redials (proven → S)", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    d.open(d.lastDial())
    d.advance(50)
    d.close(d.lastDial())
    expect(d.core.peer(key(1))!.attempts).toBe(1)
    const before = d.log.length
    d.advance(2 * 66)
    expect(d.dials(before).length).toBe(1)
    d.open(d.lastDial())
    expect(d.of("Connection").length).toBe(2)
  })

  it("swarm.js #11 maximum reconnects: a client destroying every connection sees >1 and <5 within 4 × L", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    let handled = 0
    const end = d.now + 4 * L
    while (d.now < end) {
      const conns = d.of("Connection")
      if (conns.length > handled) {
        handled = conns.length
        d.close(conns[conns.length - 1]!.id)
      }
      const dials = d.dials()
      const last = dials[dials.length - 1]!
      if (d.core.connection(last)?.phase === "connecting") d.open(last)
      else d.advance(1)
    }
    const n = d.of("Connection").length
    expect(n).toBeGreaterThan(1)
    expect(n).toBeLessThan(5)
    expect(n).toBe(4)
  })

  it("swarm.js #12 banned peer does not reconnect: ban in the connection handler, destroy → one connection over 2 × L", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    const id = d.lastDial()
    d.open(id)
    const bans = d.run((c, now) => c.banPeer(now, key(1), true))
    expect(bans).toEqual([SwarmOutput.Ban({ peer: d.core.peer(key(1))!, reason: "manual" })])
    expect(d.core.connections.has(id)).toBe(true) // banning never closes
    d.close(id)
    d.advance(2 * L)
    expect(d.of("Connection").length).toBe(1)
    expect(d.dials().length).toBe(1)
    expect(d.core.stats.manualBans).toBe(1)
    expect(d.core.stats.bannedPeers).toBe(0)
  })

  it("swarm.js #14 topic multiplexing: one connection whose PeerInfo lists both topics", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => {
      c.joinTopic(T1)
      c.joinTopic(T2)
    })
    d.find(key(1), T1)
    d.find(key(1), T2)
    d.open(d.lastDial())
    d.find(key(1), T1)
    expect(d.dials().length).toBe(1)
    const p = d.core.peer(key(1))!
    expect(p.topics).toEqual([T1, T2])
    expect(d.of("Topic").map((t) => t.topic)).toEqual([T1, T2])
  })

  it("swarm.js #15 one server, two clients: the server accepts one connection from each client (client = false)", () => {
    const d = new Driver({ ...TEST_TIMING, publicKey: key(1) })
    const ids: Array<ConnId> = []
    d.run((c, now) => ids.push(c.handleInbound(now, key(2)), c.handleInbound(now, key(3))))
    const conns = d.of("Connection")
    expect(conns.map((c) => c.peer.key)).toEqual([toHex(key(2)), toHex(key(3))])
    expect(conns.every((c) => c.peer.client === false && c.direction === "inbound")).toBe(true)
    expect(d.core.serverConnections).toBe(2)
    expect(d.core.connections.size).toBe(2)
  })

  it("swarm.js #16 (core part) leaving a topic keeps existing connections; its peers are no longer retried", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    const id = d.lastDial()
    d.open(id)
    expect(d.run((c, now) => c.leaveTopic(now, T1))).toEqual([])
    expect(d.core.connections.has(id)).toBe(true)
    d.close(id)
    d.advance(4 * L)
    expect(d.dials().length).toBe(1)
    expect(d.core.peers.size).toBe(0)
  })

  it("rediscovery (§9.1): a failed peer gets a clean slate, a proven one keeps its history, a connected one only gains the topic", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => {
      c.joinTopic(T1)
      c.joinTopic(T2)
    })
    // never connected: attempts back to 0, dialled again at once
    d.find(key(1))
    d.close(d.lastDial(), FAIL)
    const failed = d.core.peer(key(1))!
    expect(failed.attempts).toBe(1)
    d.find(key(1))
    expect(failed.attempts).toBe(0)
    expect(d.core.connectionTo(key(1))?.phase).toBe("connecting")
    // proven (last connection outbound) and still prioritized: keeps attempts 1 (VERY_HIGH)
    d.find(key(2))
    d.open(d.lastDial())
    d.close(d.lastDial())
    const proven = d.core.peer(key(2))!
    d.find(key(2))
    expect(proven.attempts).toBe(1)
    expect(proven.priority).toBe(4)
    expect(d.core.connectionTo(key(2))?.phase).toBe("connecting")
    // connected: gains the topic, nothing else
    d.find(key(3), T1)
    d.open(d.lastDial())
    const dials = d.dials().length
    d.find(key(3), T2)
    expect(d.dials().length).toBe(dials)
    expect(d.core.peer(key(3))!.topics.length).toBe(2)
  })

  it("our own key is never a peer (§9.1 step 1)", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    expect(d.find(ME)).toEqual([])
    expect(d.core.peers.size).toBe(0)
  })
})

// ---------------------------------------------------------------------------
// Retry schedule (§9.3) and PeerInfo GC (§11)
// ---------------------------------------------------------------------------

describe("retries and garbage collection (§9.3, §9.4, §11)", () => {
  it("the worked example: a never-proven peer costs 4 dials at priorities N, VH, H, L, then is forgotten", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    const times: Array<number> = [d.now]
    const priorities: Array<number> = [d.core.peer(key(1))!.priority]
    for (let i = 0; i < 3; i++) {
      d.close(d.lastDial(), FAIL)
      const before = d.dials().length
      while (d.dials().length === before) d.advance(1)
      times.push(d.now)
      priorities.push(d.core.peer(key(1))!.priority)
    }
    d.close(d.lastDial(), FAIL)
    expect(priorities).toEqual([2, 4, 3, 1])
    // M, L, L from idle bulk timers: 2 × floor(0.66 P)
    expect(times).toEqual([0, 264, 264 + 396, 264 + 396 + 396])
    expect(d.core.peers.size).toBe(0)
    d.advance(10_000)
    expect(d.dials().length).toBe(4)
  })

  it("the 15 s fast-retry rule (§16.1): a healthy connection's close retries on S at VERY_HIGH", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    const p = d.core.peer(key(1))!
    p.attempts = 2 // history before the healthy connection
    d.open(d.lastDial())
    d.advance(15_000)
    d.close(d.lastDial())
    expect(p.attempts).toBe(1)
    expect(d.core.retryTimer.timer("S").size).toBe(1)
    d.advance(132)
    expect(d.dials().length).toBe(2)
    expect(p.priority).toBe(4)
  })

  it("swarm.js #24 peer-discovery object deleted when the connection closes (server): peers back to 0", () => {
    const d = new Driver({ ...TEST_TIMING, publicKey: key(1) })
    let id = 0
    d.run((c, now) => (id = c.handleInbound(now, key(2))))
    expect(d.core.peers.size).toBe(1)
    d.close(id)
    expect(d.core.peers.size).toBe(0)
  })

  it("swarm.js #25 peer-discovery object deleted when the connection closes (client): zero backoffs, retries run out, peers 0", () => {
    const d = new Driver({ backoffs: [0, 0, 0, 0], jitter: 0 })
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    d.open(d.lastDial())
    d.close(d.lastDial())
    for (let i = 0; i < 10 && d.core.peers.size > 0; i++) {
      d.advance(5)
      const last = d.lastDial()
      if (d.core.connection(last) !== undefined) d.close(last, FAIL)
    }
    expect(d.core.peers.size).toBe(0)
    expect(d.dials().length).toBe(4) // attempts 1 (S), 2 (M), 3 (L), then 4: given up
  })

  it("a retry released while a connection exists, or already queued, is dropped", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    d.close(d.lastDial(), FAIL)
    const p = d.core.peer(key(1))!
    expect(p.waiting).toBe(true)
    let inbound = 0
    d.run((c, now) => (inbound = c.handleInbound(now, key(1))))
    d.advance(2 * L)
    expect(p.waiting).toBe(false)
    expect(d.dials().length).toBe(1)
    d.close(inbound)
    expect(d.core.peers.size).toBe(0)
  })

  it("reconnect(false) stops retries", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    d.run((c) => c.setReconnect(key(1), false))
    d.close(d.lastDial(), FAIL)
    d.advance(4 * L)
    expect(d.dials().length).toBe(1)
  })
})

// ---------------------------------------------------------------------------
// Limits (§9.5) and the inbound cap (issue 19)
// ---------------------------------------------------------------------------

describe("limits (§9.5)", () => {
  it("maxParallel: at most 3 dials at once, the next one when a slot frees", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    for (let i = 1; i <= 5; i++) d.find(key(i))
    expect(d.dials().length).toBe(3)
    expect(d.core.queueLength).toBe(2)
    d.open(d.dials()[0]!)
    expect(d.dials().length).toBe(4)
    d.close(d.dials()[1]!, FAIL)
    expect(d.dials().length).toBe(5)
  })

  it("maxPeers counts every connection (both directions, pending included)", () => {
    const d = new Driver({ ...TEST_TIMING, maxPeers: 2 })
    d.run((c, now) => c.handleInbound(now, key(9)))
    d.run((c) => c.joinTopic(T1))
    for (let i = 1; i <= 3; i++) d.find(key(i))
    expect(d.dials().length).toBe(1)
    expect(d.core.allConnections).toBe(2)
  })

  it("maxClientConnections caps queued dials", () => {
    const d = new Driver({ ...TEST_TIMING, maxClientConnections: 2 })
    d.run((c) => c.joinTopic(T1))
    for (let i = 1; i <= 4; i++) d.find(key(i))
    for (const id of d.dials()) d.open(id)
    expect(d.dials().length).toBe(2)
    expect(d.core.clientConnections).toBe(2)
  })

  it("pinned capacity factor (§16.1): one pinned peer halves the room for topic dials; pinned dials bypass maxPeers", () => {
    const d = new Driver({ ...TEST_TIMING, maxPeers: 4 })
    d.run((c, now) => c.joinPeer(now, key(50)))
    d.open(d.lastDial())
    d.run((c) => c.joinTopic(T1))
    for (let i = 1; i <= 4; i++) d.find(key(i))
    for (const id of d.dials()) if (d.core.connection(id)?.phase === "connecting") d.open(id)
    // factor 2: 2 × allConnections < 4 → at most 2 connections, the pinned one included
    expect(d.core.allConnections).toBe(2)
    // a second pinned peer is dialled although maxPeers is reached
    d.run((c, now) => c.joinPeer(now, key(51)))
    expect(d.of("Dial").some((o) => o.peer.key === toHex(key(51)))).toBe(true)
  })

  it("inbound cap (issue 19): maxServerConnections refuses new peers, at the handshake and at hand-over", () => {
    const d = new Driver({ ...TEST_TIMING, maxServerConnections: 1 })
    d.run((c, now) => c.handleInbound(now, key(1)))
    expect(d.core.screenHandshake(key(2))).toBe("server-limit")
    expect(d.core.screenHandshake(key(1))).toBe("ask") // a known connection: a duplicate, not a new peer
    let refused = 0
    const out = d.run((c, now) => (refused = c.handleInbound(now, key(2))))
    expect(out).toEqual([SwarmOutput.Destroy({ id: refused, reason: "server-limit" })])
    expect(d.core.stats.connects.server.refused).toBe(1)
    expect(d.core.peers.has(toHex(key(2)))).toBe(false)
  })
})

// ---------------------------------------------------------------------------
// Firewall and bans (§9.7; firewall.js, swarm.js #30 #31)
// ---------------------------------------------------------------------------

describe("firewall and bans (§9.7)", () => {
  it("swarm.js #31 ban stat and event: a client-side firewall rejecting everything emits Ban (Peer is firewalled), bannedPeers 1", () => {
    const d = new Driver({ ...TEST_TIMING, firewall: () => true })
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    expect(d.firewallCalls).toBe(1)
    const bans = d.of("Ban")
    expect(bans.length).toBe(1)
    expect(bans[0]!.peer.publicKey).toEqual(key(1))
    expect(bans[0]!.reason).toBe("firewalled")
    expect(ERR_FIREWALLED).toBe("Peer is firewalled")
    expect(d.core.stats.bannedPeers).toBe(1)
    expect(d.core.stats.connects.client.attempted).toBe(0)
    expect(d.core.connecting).toBe(0)
    expect(d.of("Connection").length).toBe(0)
  })

  it("firewall.js #33 firewalled client - bad server is rejected: the firewall sees the server's key, no connection", () => {
    const seen: Array<string> = []
    const d = new Driver({ ...TEST_TIMING, firewall: (k) => (seen.push(toHex(k)), true) })
    d.run((c) => c.joinTopic(T1))
    d.find(key(7))
    expect(seen).toEqual([toHex(key(7))])
    expect(d.of("Update").length).toBe(0)
    d.advance(5 * L)
    expect(d.dials().length).toBe(1)
    expect(d.core.peer(key(7))!.banned).toBe(true)
  })

  it("firewall.js #32 firewalled server - bad client is rejected / swarm.js #30: the ban holds in both directions after the firewall relaxes", () => {
    const d = new Driver({ ...TEST_TIMING, publicKey: key(1) })
    expect(d.core.screenHandshake(key(2))).toBe("ask")
    d.run((c, now) => c.handleFirewallRejected(now, key(2)))
    expect(d.core.stats.bannedPeers).toBe(1)
    expect(d.of("Ban").map((b) => b.reason)).toEqual(["firewalled"])
    // relaxed user firewall: never asked again, the handshake is refused by the ban
    expect(d.core.screenHandshake(key(2))).toBe("banned")
    // and we do not dial it either when a topic yields it
    d.run((c) => c.joinTopic(T1))
    d.find(key(2))
    expect(d.dials().length).toBe(0)
    expect(d.of("Connection").length).toBe(0)
  })

  it("firewall.js #34 rejection does not trigger a retry cascade: over 5 × L of client retries the server asks its firewall once", () => {
    const client = new Driver({ ...TEST_TIMING, publicKey: key(1) })
    const server = new Driver({ ...TEST_TIMING, publicKey: key(2) })
    let asked = 0
    client.run((c) => c.joinTopic(T1))
    client.find(key(2))
    const end = client.now + 5 * L
    while (client.now < end) {
      const last = client.lastDial()
      if (client.core.connection(last)?.phase === "connecting") {
        const s = server.core.screenHandshake(key(1))
        if (s === "ask") {
          asked++
          server.run((c, now) => c.handleFirewallRejected(now, key(1)))
        }
        client.close(last, { code: "PEER_CONNECTION_FAILED", message: "rejected" })
      }
      client.advance(1)
    }
    expect(asked).toBe(1)
    expect(client.dials().length).toBe(4)
    expect(server.of("Connection").length).toBe(0)
  })

  it("our own key is refused at the handshake", () => {
    const d = new Driver()
    expect(d.core.screenHandshake(ME)).toBe("self")
  })

  it("manual unban (§15.2 #9 counterpart): ban(false) lets the PeerInfo be collected again", () => {
    const d = new Driver({ ...TEST_TIMING, publicKey: key(1) })
    let id = 0
    d.run((c, now) => (id = c.handleInbound(now, key(2))))
    d.run((c, now) => c.banPeer(now, key(2), true))
    d.close(id)
    expect(d.core.peers.size).toBe(1)
    d.run((c, now) => c.banPeer(now, key(2), false))
    expect(d.core.peers.size).toBe(0)
  })

  it("banned PeerInfos are bounded (§15.2 #8): past maxBannedPeers the oldest ban is forgotten", () => {
    expect(DEFAULT_MAX_BANNED_PEERS).toBe(1024)
    const d = new Driver({ ...TEST_TIMING, maxBannedPeers: 3 })
    for (let i = 1; i <= 5; i++) d.run((c, now) => c.handleFirewallRejected(now, key(i)))
    expect(d.core.peers.size).toBe(3)
    expect([...d.core.peers.keys()]).toEqual([3, 4, 5].map((i) => toHex(key(i))))
    expect(d.core.screenHandshake(key(1))).toBe("ask")
    expect(d.core.screenHandshake(key(5))).toBe("banned")
  })
})

// ---------------------------------------------------------------------------
// Force relay (§9.8)
// ---------------------------------------------------------------------------

describe("force relay (§9.8)", () => {
  for (const code of ["HOLEPUNCH_ABORTED", "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS", "CANNOT_HOLEPUNCH", "REMOTE_NOT_HOLEPUNCHABLE"]) {
    it(`${code} before open switches the peer to relaying and retries it fast (attempts 1, VERY_HIGH)`, () => {
      const d = new Driver({ ...TEST_TIMING, relayConfigured: true })
      d.run((c) => c.joinTopic(T1))
      d.find(key(1))
      d.close(d.lastDial(), FAIL)
      d.advance(2 * L)
      d.close(d.lastDial(), { code, message: "punch failed" })
      const p = d.core.peer(key(1))!
      expect(p.forceRelaying).toBe(true)
      expect(p.attempts).toBe(1)
      d.advance(2 * L)
      const dials = d.of("Dial")
      expect(dials.length).toBe(3)
      expect(dials[2]!.forceRelay).toBe(true)
      expect(p.priority).toBe(4)
    })
  }

  it("no relay configured, another code, or after open: no switch", () => {
    const noRelay = new Driver(TEST_TIMING)
    noRelay.run((c) => c.joinTopic(T1))
    noRelay.find(key(1))
    noRelay.close(noRelay.lastDial(), { code: "HOLEPUNCH_ABORTED", message: "x" })
    expect(noRelay.core.peer(key(1))!.forceRelaying).toBe(false)

    const d = new Driver({ ...TEST_TIMING, relayConfigured: true })
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    d.close(d.lastDial(), FAIL)
    expect(d.core.peer(key(1))!.forceRelaying).toBe(false)
    d.advance(2 * L)
    d.open(d.lastDial())
    d.close(d.lastDial(), { code: "HOLEPUNCH_ABORTED", message: "x" })
    expect(d.core.peer(key(1))!.forceRelaying).toBe(false)
  })
})

// ---------------------------------------------------------------------------
// Duplicates (§10; swarm.js #13 #18, dups.js #39)
// ---------------------------------------------------------------------------

describe("duplicate connections (§10)", () => {
  it("keep existing: keep-alive on it, the new one destroyed as a duplicate", () => {
    // we are larger: the connection we dial survives
    const d = new Driver({ ...TEST_TIMING, publicKey: key(0xf0) })
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    const out = d.run((c, now) => c.handleInbound(now, key(1)))
    const dup = out.find((o): o is Out<"Destroy"> => o._tag === "Destroy")!
    expect(out).toEqual([SwarmOutput.KeepAlive({ id: d.lastDial() }), SwarmOutput.Destroy({ id: dup.id, reason: "duplicate" })])
    expect(d.core.connectionTo(key(1))!.id).toBe(d.lastDial())
  })

  it("keep new: the existing dial is destroyed, the new inbound held and accepted once the old one's close is processed", () => {
    const d = new Driver({ ...TEST_TIMING, publicKey: key(0x01) })
    d.run((c) => c.joinTopic(T1))
    d.find(key(0xf0))
    const dial = d.lastDial()
    let inbound = 0
    const out = d.run((c, now) => (inbound = c.handleInbound(now, key(0xf0))))
    expect(out).toEqual([SwarmOutput.Destroy({ id: dial, reason: "duplicate" })])
    expect(d.core.connection(inbound)!.phase).toBe("held")
    const after = d.close(dial, { code: "DUPLICATE", message: "Duplicate connection" })
    const conn = after.filter((o): o is Out<"Connection"> => o._tag === "Connection")
    expect(conn.map((c) => c.id)).toEqual([inbound])
    expect(d.core.connectionTo(key(0xf0))!.id).toBe(inbound)
    // the losing dial's retry is dropped: a connection exists
    d.advance(4 * L)
    expect(d.dials().length).toBe(1)
  })

  it("a held winner that closes first is forgotten", () => {
    const d = new Driver({ ...TEST_TIMING, publicKey: key(0x01) })
    d.run((c) => c.joinTopic(T1))
    d.find(key(0xf0))
    const dial = d.lastDial()
    let inbound = 0
    d.run((c, now) => (inbound = c.handleInbound(now, key(0xf0))))
    d.close(inbound)
    const after = d.close(dial)
    expect(after.some((o) => o._tag === "Connection")).toBe(false)
    expect(d.core.connection(inbound)).toBe(undefined)
  })

  it("swarm.js #18 correct deduplication when a client connection is destroyed: the stale connection is replaced by the redial", () => {
    const server = new Driver({ ...TEST_TIMING, publicKey: key(0xf0) })
    let first = 0
    server.run((c, now) => (first = c.handleInbound(now, key(1))))
    // the client lost the first connection and redials before the server noticed
    let second = 0
    const out = server.run((c, now) => (second = c.handleInbound(now, key(1), (id) => id === first)))
    expect(out).toEqual([SwarmOutput.Destroy({ id: first, reason: "duplicate" })])
    const after = server.close(first)
    expect(after.filter((o) => o._tag === "Connection").length).toBe(1)
    expect(server.core.connectionTo(key(1))!.id).toBe(second)
    expect(server.of("Connection").length).toBe(2)
  })

  it("swarm.js #13 simple deduplication / #9 two servers - first connection: two swarms in both modes end with one connection event each", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const net = new CoreNet({ nodes: 2, seed, ...TEST_TIMING })
      const [a, b] = net.nodes as [Node, Node]
      for (const n of net.nodes) net.input(n, (c) => c.joinTopic(T1))
      net.at(Math.floor(net.random() * 30), () => net.input(a, (c, now) => c.handlePeer(now, T1, { publicKey: b.publicKey })))
      net.at(Math.floor(net.random() * 30), () => net.input(b, (c, now) => c.handlePeer(now, T1, { publicKey: a.publicKey })))
      net.runUntil(20_000)
      expect(a.connectionEvents).toBe(1)
      expect(b.connectionEvents).toBe(1)
      expect(net.pairs()).toEqual(new Map([["0-1", 2]]))
      // the survivor was dialled by the larger key
      const dialer = a.core.connectionTo(b.publicKey)!.direction === "outbound" ? a : b
      const other = dialer === a ? b : a
      expect(compareKeys(dialer.publicKey, other.publicKey) > 0 || dialer.dialsStarted + other.dialsStarted === 1).toBe(true)
    }
  })

  it("property (§16.1): simultaneous dials converge on the connection dialled by the larger key, both ends agree", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const net = new CoreNet({ nodes: 2, seed, ...TEST_TIMING, latency: [20, 80] })
      const [a, b] = net.nodes as [Node, Node]
      for (const n of net.nodes) net.input(n, (c) => c.joinTopic(T1))
      // both find each other within less than one latency: both dial
      net.input(a, (c, now) => c.handlePeer(now, T1, { publicKey: b.publicKey }))
      net.input(b, (c, now) => c.handlePeer(now, T1, { publicKey: a.publicKey }))
      net.runUntil(20_000)
      const larger = compareKeys(a.publicKey, b.publicKey) > 0 ? a : b
      const smaller = larger === a ? b : a
      expect(larger.core.connectionTo(smaller.publicKey)!.direction).toBe("outbound")
      expect(smaller.core.connectionTo(larger.publicKey)!.direction).toBe("inbound")
      expect(a.connectionEvents).toBe(1)
      expect(b.connectionEvents).toBe(1)
      expect(net.pairs()).toEqual(new Map([["0-1", 2]]))
    }
  })

  it("dups.js #39 many servers: ten swarms end up connected to the other nine, one connection per pair", () => {
    for (const seed of [1, 2, 3]) {
      const net = new CoreNet({ nodes: 10, seed, ...TEST_TIMING })
      for (const n of net.nodes) net.input(n, (c) => c.joinTopic(T1))
      for (const n of net.nodes) {
        for (const m of net.nodes) {
          if (n === m) continue
          net.at(Math.floor(net.random() * 200), () => net.input(n, (c, now) => c.handlePeer(now, T1, { publicKey: m.publicKey })))
        }
      }
      net.runUntil(30_000)
      for (const n of net.nodes) expect(n.core.connections.size).toBe(9)
      const pairs = net.pairs()
      expect(pairs.size).toBe(45)
      for (const v of pairs.values()) expect(v).toBe(2)
    }
  })

  it("chaos.js #40 recovers after random disconnections: 10 swarms, 15 topics, 30 kills in 10 s, fully reconnected 45 s later", () => {
    const BACKOFFS = [100, 1000, 10_000, 10_000] as const
    for (const seed of [7, 8]) {
      const net = new CoreNet({ nodes: 10, seed, backoffs: BACKOFFS, jitter: 0 })
      const expected = new Map<Node, Set<string>>(net.nodes.map((n) => [n, new Set<string>()]))
      for (let t = 0; t < 15; t++) {
        const topic = topicKey(100 + t)
        const count = Math.round(net.random() * 10)
        const members = new Set<Node>()
        for (let i = 0; i < count; i++) members.add(net.nodes[Math.floor(net.random() * 10)]!)
        for (const n of members) {
          net.input(n, (c) => c.joinTopic(topic))
          for (const m of members) if (m !== n) expected.get(n)!.add(m.hex)
        }
        for (const n of members) {
          for (const m of members) {
            if (m === n) continue
            net.at(Math.floor(net.random() * 500), () => net.input(n, (c, now) => c.handlePeer(now, topic, { publicKey: m.publicKey })))
          }
        }
      }
      const check = () => {
        for (const [n, peers] of expected) {
          expect(n.core.connections.size).toBe(peers.size)
          for (const id of n.core.connections) expect(peers.has(n.core.connection(id)!.peer.key)).toBe(true)
        }
        for (const [pair, v] of net.pairs()) expect([pair, v]).toEqual([pair.replace("!", ""), 2])
      }
      net.runUntil(5000)
      check()
      const events = () => net.nodes.reduce((n, x) => n + x.connectionEvents, 0)
      const before = events()
      expect(before).toBeGreaterThan(0)
      for (let i = 0; i < 30; i++) net.at(Math.floor(net.random() * 10_000), () => net.killRandom())
      net.runUntil(5000 + 45_000)
      check()
      // the kills happened and were repaired by redials (each redial is one event per end)
      expect(events() - before).toBeGreaterThanOrEqual(2 * 20)
    }
  })
})

// ---------------------------------------------------------------------------
// Pinned peers (peer-join.js)
// ---------------------------------------------------------------------------

describe("pinned peers (§5.3; peer-join.js)", () => {
  it("peer-join.js #35 join peer: connects to a public key and reconnects after the streams end", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c, now) => c.joinPeer(now, key(1)))
    expect(d.dials().length).toBe(1)
    expect(d.core.explicitPeers.size).toBe(1)
    d.open(d.lastDial())
    d.close(d.lastDial())
    while (d.dials().length < 2) d.advance(1)
    d.open(d.lastDial())
    expect(d.of("Connection").length).toBe(2)
    expect(d.core.peer(key(1))!.relayAddresses).toBe(null)
  })

  it("peer-join.js #36 join peer - attempt to connect to self is a no-op", () => {
    const d = new Driver(TEST_TIMING)
    const out = d.run((c, now) => c.joinPeer(now, ME))
    expect(out).toEqual([])
    expect(d.core.queueLength).toBe(0)
    expect(d.core.peers.size).toBe(0)
    expect(d.core.explicitPeers.size).toBe(0)
  })

  it("peer-join.js #37 leave peer - will stop reconnecting: the open connection survives, once ended nothing redials", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c, now) => c.joinPeer(now, key(1)))
    const id = d.lastDial()
    d.open(id)
    expect(d.run((c, now) => c.leavePeer(now, key(1)))).toEqual([])
    expect(d.core.connections.has(id)).toBe(true)
    d.close(id)
    d.advance(10_000)
    expect(d.dials().length).toBe(1)
    expect(d.core.peers.size).toBe(0)
  })

  it("peer-join.js #38 leave peer - no memory leak if the other side closed first: peers, explicitPeers, connections reach 0", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c, now) => c.joinPeer(now, key(1)))
    d.open(d.lastDial())
    d.close(d.lastDial()) // the remote went away
    d.run((c, now) => c.leavePeer(now, key(1)))
    for (let i = 0; i < 2000 && d.core.peers.size > 0; i++) {
      d.advance(1)
      const last = d.lastDial()
      if (d.core.connection(last)?.phase === "connecting") d.close(last, FAIL)
    }
    expect(d.core.peers.size).toBe(0)
    expect(d.core.explicitPeers.size).toBe(0)
    expect(d.core.connections.size).toBe(0)
  })

  it("pinned loop (§9.5): attempts × 1 s after the disconnect, at most 4 attempts, ignores maxPeers", () => {
    const d = new Driver({ ...TEST_TIMING, maxPeers: 0 })
    d.run((c, now) => c.joinPeer(now, key(1)))
    expect(d.dials().length).toBe(1)
    d.close(d.lastDial(), FAIL)
    const p = d.core.peer(key(1))!
    // still queued from joinPeer, but maxPeers 0 blocks queued dials; the pinned loop waits 1 s
    d.advance(999)
    d.find(key(2)) // any event that runs the dial loop
    expect(d.dials().length).toBe(1)
    d.advance(1)
    d.find(key(3))
    expect(d.of("Dial").map((o) => o.peer.key)).toEqual([toHex(key(1)), toHex(key(1))])
    expect(p.attempts).toBe(1)
  })

  it("reconnect(false) on a pinned peer stops the pinned loop too (§15.2 #10)", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c, now) => c.joinPeer(now, key(1)))
    d.run((c) => c.setReconnect(key(1), false))
    d.close(d.lastDial(), FAIL)
    d.advance(5000)
    d.run((c, now) => c.handleNetworkChange(now))
    expect(d.dials().length).toBe(1)
  })

  it("a pinned peer that keeps failing is clamped to 3 attempts and retried on X", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c, now) => c.joinPeer(now, key(1)))
    const p = d.core.peer(key(1))!
    for (let i = 0; i < 4; i++) {
      d.close(d.lastDial(), FAIL)
      const before = d.dials().length
      for (let j = 0; j < 5000 && d.dials().length === before; j++) d.advance(1)
    }
    expect(p.attempts).toBeLessThanOrEqual(4)
    expect(d.core.peers.size).toBe(1)
    expect(d.dials().length).toBe(5)
  })
})

// ---------------------------------------------------------------------------
// Flush (§5.5; swarm.js #19)
// ---------------------------------------------------------------------------

describe("flush (§5.5)", () => {
  const flushed = (d: Driver, id: number) => d.of("Flushed").find((f) => f.flush === id)?.result

  it("nothing queued or pending: settles true at once", () => {
    const d = new Driver(TEST_TIMING)
    let id = 0
    d.run((c, now) => (id = c.beginFlush(now)))
    expect(flushed(d, id)).toBe(true)
  })

  it("settles true once every peer queued before it was processed (opened, failed, skipped)", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    for (let i = 1; i <= 5; i++) d.find(key(i))
    let id = 0
    d.run((c, now) => (id = c.beginFlush(now)))
    expect(flushed(d, id)).toBe(undefined)
    const dials = d.dials()
    d.open(dials[0]!)
    d.close(dials[1]!, FAIL)
    d.find(key(9)) // queued after the flush: not waited for
    d.open(dials[2]!)
    const more = d.dials().slice(3)
    for (const m of more) if (d.core.connection(m)?.peer.key !== toHex(key(9))) d.open(m)
    expect(flushed(d, id)).toBe(true)
  })

  it("swarm.js #19 flush when max connections reached: maxPeers 1 → flush still resolves", () => {
    const d = new Driver({ ...TEST_TIMING, maxPeers: 1 })
    d.run((c) => c.joinTopic(T1))
    for (let i = 1; i <= 3; i++) d.find(key(i))
    d.open(d.lastDial())
    let id = 0
    d.run((c, now) => (id = c.beginFlush(now)))
    expect(flushed(d, id)).toBe(true)
    expect(d.core.queueLength).toBe(2)
  })

  it("a pending flush settles true when the last dial ends with the limits saturated", () => {
    const d = new Driver({ ...TEST_TIMING, maxPeers: 1 })
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    d.find(key(2))
    let id = 0
    d.run((c, now) => (id = c.beginFlush(now)))
    expect(flushed(d, id)).toBe(undefined)
    d.open(d.lastDial())
    expect(flushed(d, id)).toBe(true)
  })

  it("destroy settles pending flushes false; a flush after destroy is false", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    let id = 0
    d.run((c, now) => (id = c.beginFlush(now)))
    const out = d.run((c, now) => c.destroy(now))
    expect(flushed(d, id)).toBe(false)
    expect(out).toContainEqual(SwarmOutput.Destroy({ id: d.lastDial(), reason: "destroyed" }))
    let late = 0
    d.run((c, now) => (late = c.beginFlush(now)))
    expect(flushed(d, late)).toBe(false)
  })

  it("a flush always settles: false after flushTimeout (issue 19)", () => {
    const d = new Driver({ ...TEST_TIMING, flushTimeout: 5000 })
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    let id = 0
    d.run((c, now) => (id = c.beginFlush(now)))
    expect(d.core.nextDeadline()).toBe(5000)
    d.advance(5000)
    expect(flushed(d, id)).toBe(false)
    expect(d.core.pendingFlushes).toBe(0)
  })

  it("a pinned dial in flight does not hold a flush (decision: only queued dials count)", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c, now) => c.joinPeer(now, key(1)))
    const pinnedDial = d.core.connectionTo(key(1))
    expect(pinnedDial?.phase).toBe("connecting")
    expect(d.core.queueLength).toBe(0)
    let id = 0
    d.run((c, now) => (id = c.beginFlush(now)))
    expect(flushed(d, id)).toBe(true)
  })
})

// ---------------------------------------------------------------------------
// Network changes, suspend/resume, destroy (§12, §5.9, §5.8; suspend.js)
// ---------------------------------------------------------------------------

describe("network, suspend, destroy", () => {
  it("network change (§16.1): keep-alive on every connection, pending or open, then refresh every topic", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    d.find(key(2))
    d.open(d.dials()[0]!)
    const out = d.run((c, now) => c.handleNetworkChange(now))
    expect(out).toEqual([
      SwarmOutput.KeepAlive({ id: d.dials()[0]! }),
      SwarmOutput.KeepAlive({ id: d.dials()[1]! }),
      SwarmOutput.RefreshTopics()
    ])
  })

  it("network update (§16.1): only the rising edge of online counts", () => {
    const d = new Driver(TEST_TIMING)
    expect(d.run((c, now) => c.handleNetworkUpdate(now, true))).toEqual([])
    expect(d.run((c, now) => c.handleNetworkUpdate(now, false))).toEqual([])
    expect(d.run((c, now) => c.handleNetworkUpdate(now, true))).toEqual([SwarmOutput.RefreshTopics()])
    expect(d.run((c, now) => c.handleNetworkUpdate(now, true))).toEqual([])
  })

  it("suspend.js #42 suspend + resume: connections destroyed, no retry while suspended; resume + rediscovery reconnects", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    const id = d.lastDial()
    d.open(id)
    const out = d.run((c, now) => c.suspend(now))
    expect(out).toEqual([SwarmOutput.Destroy({ id, reason: "suspended" })])
    d.close(id)
    expect(d.core.peers.size).toBe(0) // not retried, collected
    expect(d.run((c, now) => c.handleNetworkChange(now))).toEqual([])
    let refused = 0
    const inbound = d.run((c, now) => (refused = c.handleInbound(now, key(3))))
    expect(inbound).toEqual([SwarmOutput.Destroy({ id: refused, reason: "destroyed" })])
    d.advance(2000)
    d.run((c, now) => c.resume(now))
    d.find(key(1)) // the discovery's refresh on resume
    d.open(d.lastDial())
    expect(d.of("Connection").length).toBe(2)
  })

  it("suspend drops queued and waiting peers; resume redials pinned peers (§16.1)", () => {
    // maxClientConnections 0: queued dials never run, pinned dials do
    const d = new Driver({ ...TEST_TIMING, maxClientConnections: 0 })
    d.run((c) => c.joinTopic(T1))
    d.run((c, now) => c.joinPeer(now, key(50)))
    d.find(key(1))
    expect(d.core.queueLength).toBe(2)
    d.close(d.lastDial(), FAIL) // the pinned dial fails: waiting for a retry
    const waiting = d.core.peer(key(50))!
    expect(waiting.waiting).toBe(true)
    d.run((c, now) => c.suspend(now))
    expect(d.core.queueLength).toBe(0)
    expect(waiting.waiting).toBe(false)
    expect(d.core.retryTimer.size).toBe(0)
    expect([...d.core.peers.keys()]).toEqual([toHex(key(50))])
    d.advance(5000)
    const before = d.dials().length
    d.run((c, now) => c.resume(now))
    expect(d.of("Dial", 0).slice(before).map((o) => o.peer.key)).toEqual([toHex(key(50))])
  })

  it("suspend settles pending flushes false", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    let id = 0
    d.run((c, now) => (id = c.beginFlush(now)))
    d.run((c, now) => c.suspend(now))
    expect(d.of("Flushed")).toEqual([SwarmOutput.Flushed({ flush: id, result: false })])
  })

  it("destroy: every connection destroyed, no more dials or retries (§15.2 #7: not relying on the DHT's teardown)", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    let inbound = 0
    d.run((c, now) => (inbound = c.handleInbound(now, key(2))))
    const out = d.run((c, now) => c.destroy(now))
    expect(out.filter((o) => o._tag === "Destroy").length).toBe(2)
    d.close(d.lastDial(), FAIL)
    d.close(inbound)
    d.advance(10 * L)
    d.find(key(3))
    expect(d.dials().length).toBe(1)
    expect(d.core.nextDeadline()).toBe(Infinity)
  })

  it("a dial cancelled while the user firewall runs: handleDialStarted says no, the slot is freed, no attempt counted", () => {
    const d = new Driver({ ...TEST_TIMING, autoStart: false })
    d.run((c) => c.joinTopic(T1))
    d.find(key(1))
    const id = d.lastDial()
    expect(d.core.connecting).toBe(1)
    d.run((c, now) => c.suspend(now))
    expect(d.core.handleDialStarted(d.now, id)).toBe(false)
    d.close(id)
    expect(d.core.connecting).toBe(0)
    expect(d.core.stats.connects.client.attempted).toBe(0)
    expect(d.core.peer(key(1))?.attempts ?? 0).toBe(0)
  })
})

// ---------------------------------------------------------------------------
// Topics (issue 19)
// ---------------------------------------------------------------------------

describe("topics (issue 19)", () => {
  it("leave(topic, { closeConnections }) closes only the connections that topic needed", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c) => {
      c.joinTopic(T1)
      c.joinTopic(T2)
    })
    d.find(key(1), T1) // only T1
    d.find(key(2), T1)
    d.find(key(2), T2) // T1 and T2
    d.run((c, now) => c.joinPeer(now, key(3)))
    d.find(key(3), T1) // pinned
    for (const id of d.dials()) d.open(id)
    const closed = d.run((c, now) => c.leaveTopic(now, T1, { closeConnections: true }))
    expect(closed).toEqual([SwarmOutput.Destroy({ id: d.core.connectionTo(key(1))!.id, reason: "left-topic" })])
  })

  it("an inbound peer that shares a topic gains it (Topic output once)", () => {
    const d = new Driver(TEST_TIMING)
    d.run((c, now) => c.handleInbound(now, key(1)))
    const out = d.run((c, now) => {
      c.handleTopicShared(now, key(1), T1)
      c.handleTopicShared(now, key(1), T1)
    })
    expect(out).toEqual([SwarmOutput.Topic({ peer: d.core.peer(key(1))!, topic: T1 })])
  })
})

// ---------------------------------------------------------------------------
// The tie-break loser's hold (Flock only; issue 19: no duplicate surfaced)
// ---------------------------------------------------------------------------

describe("loser's hold (Flock only)", () => {
  const WINNER = key(0xf0)
  const mutual = (d: Driver, publicKey: Uint8Array) =>
    d.run((c, now) => c.handlePeer(now, T1, { publicKey, relayAddresses: [{ host: "10.0.0.1", port: 49737 }], mutual: true }))
  /** A loser (key 0x01) that found the winner mutually and whose dial opened at t = 10. */
  const heldLoser = (options: DriverOptions = {}) => {
    const d = new Driver({ ...TEST_TIMING, publicKey: key(0x01), ...options })
    d.run((c) => c.joinTopic(T1))
    expect(mutual(d, WINNER).filter((o) => o._tag === "Dial").length).toBe(1)
    d.advance(10)
    const id = d.lastDial()
    const out = d.open(id)
    return { d, id, out }
  }

  it("the loser dials at once; its opened outbound is held (no Connection, not in connections, dial slot free) and surfaced when LOSER_HOLD has passed, the winner's handshake having reached us", () => {
    const d = new Driver({ ...TEST_TIMING, publicKey: key(0x01) })
    d.run((c) => c.joinTopic(T1))
    mutual(d, WINNER)
    d.advance(5)
    // the winner is dialling us too: its handshake reached our server before our dial opened
    d.run((c, now) => c.noteHandshake(now, WINNER))
    d.advance(5)
    const id = d.lastDial()
    const out = d.open(id)
    expect(out.filter((o) => o._tag === "Connection")).toEqual([])
    expect(d.core.connections.size).toBe(0)
    expect(d.core.connecting).toBe(0)
    expect(d.core.heldConnections).toBe(1)
    expect(d.core.hasConnection(WINNER)).toBe(true)
    expect(d.core.connectionTo(WINNER)!.phase).toBe("on-hold")
    expect(d.core.nextDeadline()).toBe(10 + LOSER_HOLD)
    d.advance(LOSER_HOLD - 1)
    expect(d.of("Connection")).toEqual([])
    d.advance(1)
    expect(d.of("Connection")).toEqual([SwarmOutput.Connection({ id, peer: d.core.peer(WINNER)!, direction: "outbound" })])
    expect(d.core.connections.has(id)).toBe(true)
    expect(d.core.connectionTo(WINNER)!.phase).toBe("open")
    expect(d.core.peer(WINNER)!.client).toBe(true)
    expect(d.core.heldConnections).toBe(0)
    expect(d.core.stats.connects.client).toEqual({ attempted: 1, opened: 1, closed: 0 })
    d.advance(10_000)
    expect(d.of("Connection").length).toBe(1)
  })

  it("no sign of the winner dialling: the hold is LOSER_HOLD_FLOOR, however long our dial took; a handshake from the winner during it extends it to LOSER_HOLD", () => {
    // dial started at 0, opened at 10: held until 10 + FLOOR
    const { d, id } = heldLoser()
    expect(d.core.nextDeadline()).toBe(10 + LOSER_HOLD_FLOOR)
    d.advance(LOSER_HOLD_FLOOR - 1)
    expect(d.of("Connection")).toEqual([])
    d.advance(1)
    expect(d.of("Connection")).toEqual([SwarmOutput.Connection({ id, peer: d.core.peer(WINNER)!, direction: "outbound" })])
    // the same, but the winner's handshake arrives 20 ms after our open: the full hold
    const h = heldLoser()
    h.d.advance(20)
    h.d.run((c, now) => c.noteHandshake(now, WINNER))
    expect(h.d.core.nextDeadline()).toBe(10 + LOSER_HOLD)
    h.d.advance(LOSER_HOLD - 20 - 1)
    expect(h.d.of("Connection")).toEqual([])
    h.d.advance(1)
    expect(h.d.of("Connection").length).toBe(1)
    // a handshake from another key, or one older than the hold, changes nothing
    const o = new Driver({ ...TEST_TIMING, publicKey: key(0x01) })
    o.run((c) => c.joinTopic(T1))
    o.run((c, now) => c.noteHandshake(now, WINNER))
    o.advance(LOSER_HOLD + 1)
    mutual(o, WINNER)
    o.run((c, now) => c.noteHandshake(now, key(0x02)))
    o.advance(10)
    o.open(o.lastDial())
    expect(o.core.nextDeadline()).toBe(LOSER_HOLD + 1 + 10 + LOSER_HOLD_FLOOR)
  })

  it("the winner's inbound during the hold replaces the held outbound silently: the application sees only the inbound", () => {
    const { d, id } = heldLoser()
    d.advance(5)
    d.run((c, now) => c.noteHandshake(now, WINNER))
    d.advance(LOSER_HOLD / 2 - 5)
    let inbound = -1
    const out = d.run((c, now) => {
      inbound = c.handleInbound(now, WINNER, () => true)
    })
    expect(out).toEqual([SwarmOutput.Destroy({ id, reason: "duplicate" })])
    expect(d.core.heldConnections).toBe(0)
    // the hold's deadline passing changes nothing: the held one is being destroyed
    d.advance(LOSER_HOLD)
    expect(d.of("Connection")).toEqual([])
    const closed = d.close(id, { code: null, message: "Duplicate connection" })
    expect(closed.filter((o) => o._tag === "Connection")).toEqual([
      SwarmOutput.Connection({ id: inbound, peer: d.core.peer(WINNER)!, direction: "inbound" })
    ])
    expect([...d.core.connections]).toEqual([inbound])
    d.advance(10_000)
    expect(d.of("Connection").length).toBe(1)
    // the retry the close scheduled found the connection and was dropped
    expect(d.dials().length).toBe(1)
  })

  it("a remote close during the hold (the winner's dial was under way) is never surfaced; the winner's inbound that follows is", () => {
    const { d, id } = heldLoser()
    d.advance(20)
    const out = d.close(id, { code: null, message: "Duplicate connection" })
    expect(out.filter((o) => o._tag === "Connection")).toEqual([])
    expect(d.core.heldConnections).toBe(0)
    expect(d.core.hasConnection(WINNER)).toBe(false)
    expect(d.core.stats.connects.client).toEqual({ attempted: 1, opened: 1, closed: 1 })
    // the winner's own dial lands (before the retry the close scheduled)
    d.advance(20)
    const inbound = d.run((c, now) => c.handleInbound(now, WINNER))
    expect(inbound.filter((o) => o._tag === "Connection").map((o) => (o as Out<"Connection">).direction)).toEqual(["inbound"])
    d.advance(10_000)
    expect(d.of("Connection").length).toBe(1)
    expect(d.dials().length).toBe(1)
  })

  it("§10 dial race: the winner's own outbound younger than DIAL_RACE_WINDOW (or still connecting) is not taken for stale; older, it is", () => {
    for (const [age, replaced] of [[-1, false], [0, false], [DIAL_RACE_WINDOW - 1, false], [DIAL_RACE_WINDOW, true]] as const) {
      const w = new Driver({ ...TEST_TIMING, publicKey: WINNER })
      w.run((c) => c.joinTopic(T1))
      mutual(w, key(0x01))
      const dial = w.lastDial()
      if (age >= 0) {
        w.open(dial)
        w.advance(age)
      }
      const out = w.run((c, now) => c.handleInbound(now, key(0x01), () => true))
      const destroyed = out.filter((o): o is Out<"Destroy"> => o._tag === "Destroy").map((o) => o.id)
      if (replaced) expect(destroyed).toEqual([dial])
      else expect(destroyed.length === 1 && destroyed[0] !== dial).toBe(true)
    }
    // the loser's side is unchanged: the winner's inbound replaces its outbound, stale or not
    const { d, id } = heldLoser()
    expect(d.run((c, now) => c.handleInbound(now, WINNER, () => false))).toEqual([SwarmOutput.Destroy({ id, reason: "duplicate" })])
  })

  it("no hold for the winner, for a peer not found through a topic we announce, or with loserHold 0", () => {
    const w = new Driver({ ...TEST_TIMING, publicKey: WINNER })
    w.run((c) => c.joinTopic(T1))
    mutual(w, key(0x01))
    expect(w.open(w.lastDial()).filter((o) => o._tag === "Connection").length).toBe(1)
    const l = new Driver({ ...TEST_TIMING, publicKey: key(0x01) })
    l.run((c) => c.joinTopic(T1))
    l.find(WINNER)
    expect(l.open(l.lastDial()).filter((o) => o._tag === "Connection").length).toBe(1)
    const off = heldLoser({ loserHold: 0 })
    expect(off.out.filter((o) => o._tag === "Connection").length).toBe(1)
    expect(off.d.core.heldConnections).toBe(0)
  })

  it("a flush counts a held connection as pending: settles when it is surfaced, or when it closed unsurfaced", () => {
    const { d } = heldLoser()
    d.run((c, now) => c.beginFlush(now))
    expect(d.of("Flushed")).toEqual([])
    d.advance(LOSER_HOLD)
    expect(d.of("Flushed").map((f) => f.result)).toEqual([true])
    const h = heldLoser()
    h.d.run((c, now) => c.beginFlush(now))
    h.d.close(h.id, { code: null, message: "Duplicate connection" })
    expect(h.d.of("Flushed").map((f) => f.result)).toEqual([true])
  })

  it("suspend, destroy and leaveTopic({ closeConnections }) during the hold destroy the held connection: never surfaced", () => {
    for (const end of [
      (c: SwarmCore, now: number) => c.suspend(now),
      (c: SwarmCore, now: number) => c.destroy(now),
      (c: SwarmCore, now: number) => void c.leaveTopic(now, T1, { closeConnections: true })
    ]) {
      const { d, id } = heldLoser()
      const out = d.run(end)
      expect(out.filter((o) => o._tag === "Destroy").map((o) => (o as Out<"Destroy">).id)).toEqual([id])
      expect(d.core.heldConnections).toBe(0)
      d.advance(LOSER_HOLD * 2)
      d.close(id)
      expect(d.of("Connection")).toEqual([])
    }
  })

  it("refresh(): a discovery's explicit refresh (after its join phase) marks its peers mutual, and the loser's dial to them is held", () => {
    const disc = new TopicDiscoveryCore({ topic: T1, random: seededRandom(5), followUp: false })
    disc.addHandle(0)
    const listen = disc.drain().find((o): o is Extract<DiscoveryOutput, { _tag: "Listen" }> => o._tag === "Listen")!
    disc.handleListened(0, listen.cycle, true)
    disc.drain()
    disc.handleQueryDone(50, listen.cycle, { ok: true })
    disc.drain()
    // later, the application calls discovery.refresh()
    const ticket = disc.refresh(1000)
    expect(ticket._tag).toBe("Pending")
    const cycle = (ticket as { cycle: number }).cycle
    disc.handleListened(1000, cycle, true)
    expect(disc.drain().some((o) => o._tag === "Query" && o.kind === "announce")).toBe(true)
    const found = disc.handleReply(cycle, [{ publicKey: WINNER, relayAddresses: [] }])
    expect(found[0]!.mutual).toBe(true)
    const d = new Driver({ ...TEST_TIMING, publicKey: key(0x01) })
    d.run((c) => c.joinTopic(T1))
    d.advance(1000)
    expect(d.run((c, now) => c.handlePeer(now, T1, found[0]!)).filter((o) => o._tag === "Dial").length).toBe(1)
    expect(d.open(d.lastDial()).filter((o) => o._tag === "Connection")).toEqual([])
    expect(d.core.heldConnections).toBe(1)
    d.advance(LOSER_HOLD)
    expect(d.of("Connection").length).toBe(1)
  })

  it("spaced joins: only the newcomer (the loser) dials; nobody dials it, so its connection is surfaced LOSER_HOLD_FLOOR after it opened, with no dial delay", () => {
    const net = new CoreNet({ nodes: 2, seed: 3, ...TEST_TIMING, latency: [20, 21] })
    const [a, b] = net.nodes as [Node, Node]
    const loser = compareKeys(a.publicKey, b.publicKey) < 0 ? a : b
    const winner = loser === a ? b : a
    for (const n of net.nodes) net.input(n, (c) => c.joinTopic(T1))
    net.input(loser, (c, now) => c.handlePeer(now, T1, { publicKey: winner.publicKey, mutual: true }))
    expect(loser.dialsStarted).toBe(1)
    net.runUntil(10_000)
    // the winner accepts at 20; the loser's stream opens at 40 and is surfaced at 40 + FLOOR
    expect(winner.connectionTimes).toEqual([20])
    expect(loser.connectionTimes).toEqual([40 + LOSER_HOLD_FLOOR])
  })

  it("both dial, the winner's swarm slow to see our connection (its dial under way): the loser sees its held outbound closed by the remote before the hold ends", () => {
    // one-way 20 ms; the acceptor's swarm sees an inbound 30 ms after its server opened it
    const net = new CoreNet({ nodes: 2, seed: 3, ...TEST_TIMING, latency: [20, 21], acceptDelay: 30 })
    const [a, b] = net.nodes as [Node, Node]
    const loser = compareKeys(a.publicKey, b.publicKey) < 0 ? a : b
    const winner = loser === a ? b : a
    for (const n of net.nodes) net.input(n, (c) => c.joinTopic(T1))
    // the loser dials first; the winner dials 25 ms later, before it saw the loser's connection (at 50)
    net.input(loser, (c, now) => c.handlePeer(now, T1, { publicKey: winner.publicKey, mutual: true }))
    net.at(25, () => net.input(winner, (c, now) => c.handlePeer(now, T1, { publicKey: loser.publicKey, mutual: true })))
    net.runUntil(39)
    net.runUntil(41)
    // the loser's stream opened at 40: held
    expect(loser.core.connectionTo(winner.publicKey)?.phase).toBe("on-hold")
    net.runUntil(10_000)
    // the winner kept its own dial; the loser's held outbound closed at 70 (< 40 + LOSER_HOLD), never surfaced
    expect(loser.connectionEvents).toBe(1)
    expect(winner.connectionEvents).toBe(1)
    expect(loser.core.connectionTo(winner.publicKey)!.direction).toBe("inbound")
    expect(winner.core.connectionTo(loser.publicKey)!.direction).toBe("outbound")
    const pairs = net.pairs()
    expect([...pairs.entries()]).toEqual([[a.index < b.index ? `${a.index}-${b.index}` : `${b.index}-${a.index}`, 2]])
  })

  it("ten swarms that find each other mutually in random order within 400 ms, both ends dialling, each acceptor's swarm slow by just under LOSER_HOLD_FLOOR: full mesh, exactly nine Connection events each", () => {
    // the floor's bound: the winner's DESTROY trails the header that opened us by its processing time
    const run = (seed: number, loserHold: number | undefined) => {
      const net = new CoreNet({ nodes: 10, seed, ...TEST_TIMING, latency: [5, 60], acceptDelay: LOSER_HOLD_FLOOR - 1, ...(loserHold !== undefined ? { loserHold } : {}) })
      for (const n of net.nodes) net.input(n, (c) => c.joinTopic(T1))
      for (const n of net.nodes) {
        for (const m of net.nodes) {
          if (n === m) continue
          net.at(Math.floor(net.random() * 400), () => net.input(n, (c, now) => c.handlePeer(now, T1, { publicKey: m.publicKey, mutual: true })))
        }
      }
      net.runUntil(30_000)
      return net
    }
    let surfacedWithoutHold = 0
    for (const seed of [1, 2, 3, 4, 5]) {
      const net = run(seed, undefined)
      for (const n of net.nodes) {
        expect(n.core.connections.size).toBe(9)
        expect(n.connectionEvents).toBe(9)
      }
      const pairs = net.pairs()
      expect(pairs.size).toBe(45)
      for (const v of pairs.values()) expect(v).toBe(2)
      // the same run without the hold surfaces duplicates (the test sees them)
      surfacedWithoutHold += run(seed, 0).nodes.reduce((s, n) => s + n.connectionEvents, 0) - 90
    }
    expect(surfacedWithoutHold).toBeGreaterThan(0)
  })
})
