/**
 * Unit tests of the small deterministic Flock cores (src/actors/flock/):
 * PeerInfo (§9.2, §11, §13), the bulk and retry timers (§9.3; the
 * counterparts of the reference's test/bulk-timer.js and
 * test/retry-timer.js, named after them), the shuffled dial queue (§9.5,
 * with a differential run against the reference's shuffled-priority-queue),
 * the dial policy (§9.4–§9.8) and the duplicate rule (§10, with a symmetry
 * property). Seeded randomness and explicit `now` throughout.
 *
 * The swarm core and the discovery core have their own files:
 * test/flock-swarm-core.test.ts and test/flock-discovery-core.test.ts.
 */
import { createRequire } from "node:module"
import { afterEach, describe, expect, it, vi } from "vitest"
import * as C from "../src/actors/flock/constants.js"
import { compareKeys, isExpectedInitiator, isStale, keepNewConnection, survivingDialer } from "../src/actors/flock/dedup.js"
import {
  canDialPinned,
  canDialQueued,
  DEFAULT_LIMITS,
  type DialState,
  inboundVerdict,
  outboundSaturated,
  pinnedCapacityFactor,
  pinnedDialDue,
  relayThroughFor,
  screenKey,
  shouldForceRelay,
  shouldRetry,
  withinMaxPeers
} from "../src/actors/flock/dial-policy.js"
import { PeerInfo, priorityFor } from "../src/actors/flock/peer-info.js"
import { DialQueue } from "../src/actors/flock/queue.js"
import { BulkTimer, defaultBackoffs, RetryTimer, selectBackoff } from "../src/actors/flock/retry.js"
import { toHex } from "../src/protocol/encoding.js"
import { seededRandom } from "../src/util/random.js"

const requireRef = createRequire(import.meta.url)

const key = (b: number, fill = 0): Uint8Array => {
  const k = new Uint8Array(32).fill(fill)
  k[0] = b
  return k
}

/** Drive a bulk timer to `until`, collecting [time, batch] for every non-empty release. */
const runBulk = <T>(t: BulkTimer<T>, from: number, until: number, out: Array<[number, Array<T>]>): number => {
  let now = from
  for (;;) {
    const d = t.nextDeadline()
    if (d > until) return until
    now = d
    const batch = t.handleTimeout(now)
    if (batch.length > 0) out.push([now, batch])
  }
}

// ---------------------------------------------------------------------------
// PeerInfo
// ---------------------------------------------------------------------------

describe("PeerInfo (§9.2, §13)", () => {
  it("starts as the reference's table says", () => {
    const p = new PeerInfo(key(1))
    expect(p.reconnecting).toBe(true)
    expect(p.proven).toBe(false)
    expect(p.connectedTime).toBe(-1)
    expect(p.disconnectedTime).toBe(0)
    expect(p.banned).toBe(false)
    expect(p.explicit).toBe(false)
    expect(p.waiting).toBe(false)
    expect(p.forceRelaying).toBe(false)
    expect(p.queued).toBe(false)
    expect(p.client).toBe(false)
    expect(p.server).toBe(true)
    expect(p.topics).toEqual([])
    expect(p.attempts).toBe(0)
    expect(p.priority).toBe(C.PRIORITY_NORMAL)
    expect(p.prioritized).toBe(true)
    expect(p.relayAddresses).toBe(null)
    expect(p.lastError).toBe(null)
  })

  it("priority by attempts: 0 NORMAL, 1 VERY_HIGH, 2 HIGH, 3 LOW, more VERY_LOW", () => {
    expect([0, 1, 2, 3, 4, 9].map(priorityFor)).toEqual([2, 4, 3, 1, 0, 0])
  })

  it("every close adds an attempt; a connection open >= 15 s resets first (fast retry)", () => {
    const p = new PeerInfo(key(1))
    p.disconnected(100)
    expect(p.attempts).toBe(1)
    expect(p.disconnectedTime).toBe(100)
    p.connected(1000)
    expect(p.proven).toBe(true)
    expect(p.connectedTime).toBe(1000)
    p.disconnected(1000 + C.MIN_CONNECTION_TIME - 1)
    expect(p.attempts).toBe(2)
    expect(p.connectedTime).toBe(-1)
    p.connected(50_000)
    p.disconnected(50_000 + C.MIN_CONNECTION_TIME)
    expect(p.attempts).toBe(1)
  })

  it("updatePriority refuses when banned, queued or past 3 attempts; a pinned peer is clamped to 3", () => {
    const p = new PeerInfo(key(1))
    p.attempts = 2
    expect(p.updatePriority()).toBe(true)
    expect(p.priority).toBe(C.PRIORITY_HIGH)
    p.queued = true
    p.attempts = 1
    expect(p.updatePriority()).toBe(false)
    expect(p.priority).toBe(C.PRIORITY_HIGH)
    p.queued = false
    p.ban(true)
    expect(p.updatePriority()).toBe(false)
    p.ban(false)
    p.attempts = 4
    expect(p.updatePriority()).toBe(false)
    p.explicit = true
    expect(p.updatePriority()).toBe(true)
    expect(p.attempts).toBe(3)
    expect(p.priority).toBe(C.PRIORITY_LOW)
    expect(p.prioritized).toBe(false)
  })

  it("reset clears client, proven and attempts", () => {
    const p = new PeerInfo(key(1))
    p.client = true
    p.proven = true
    p.attempts = 3
    p.reset()
    expect([p.client, p.proven, p.attempts]).toEqual([false, false, 0])
  })

  it("topic and peer get unslabbed in PeerInfo (swarm.js #28): key and topics are standalone 32-byte copies", () => {
    const slab = new Uint8Array(4096)
    slab.set(key(7), 100)
    slab.set(key(9, 3), 200)
    const p = new PeerInfo(slab.subarray(100, 132))
    expect(p.publicKey.buffer.byteLength).toBe(32)
    expect(p.key).toBe(toHex(key(7)))
    expect(p.addTopic(slab.subarray(200, 232))).toBe(true)
    expect(p.topics[0]!.buffer.byteLength).toBe(32)
    expect(p.topics[0]).toEqual(key(9, 3))
    slab.fill(0xff)
    expect(p.publicKey[0]).toBe(7)
  })

  it("a topic is associated once (the `topic` event fires the first time only)", () => {
    const p = new PeerInfo(key(1))
    expect(p.addTopic(key(2))).toBe(true)
    expect(p.addTopic(key(2))).toBe(false)
    expect(p.addTopic(key(3))).toBe(true)
    expect(p.topics.length).toBe(2)
    expect([...p.topicKeys()]).toEqual([toHex(key(2)), toHex(key(3))])
    expect(p.hasTopic(toHex(key(3)))).toBe(true)
  })

  it("shouldGC: not banned, queued, pinned or waiting", () => {
    const p = new PeerInfo(key(1))
    expect(p.shouldGC()).toBe(true)
    for (const f of ["banned", "queued", "explicit", "waiting"] as const) {
      p[f] = true
      expect(p.shouldGC()).toBe(false)
      p[f] = false
    }
  })

  it("ban reports whether it changed", () => {
    const p = new PeerInfo(key(1))
    expect(p.ban(true)).toBe(true)
    expect(p.ban(true)).toBe(false)
    expect(p.ban(false)).toBe(true)
  })
})

// ---------------------------------------------------------------------------
// Bulk timer (reference test/bulk-timer.js, interval 500 ms)
// ---------------------------------------------------------------------------

describe("bulk timer (test/bulk-timer.js, interval 500)", () => {
  const INTERVAL = 500
  const WAIT = INTERVAL * 1.5 // the reference test's waitForCalls(1)

  it("bulk timer queue: two items added in the same tick are released together", () => {
    const t = new BulkTimer<number>(INTERVAL)
    t.add(1, 0)
    t.add(2, 0)
    const out: Array<[number, Array<number>]> = []
    runBulk(t, 0, WAIT, out)
    expect(out).toEqual([[2 * 330, [1, 2]]])
  })

  it("bulk timer queue (async): items added in different ticks before the first interval come out in one batch", () => {
    const t = new BulkTimer<number>(INTERVAL)
    t.add(1, 0)
    t.add(2, 1)
    const out: Array<[number, Array<number>]> = []
    runBulk(t, 0, WAIT, out)
    expect(out.map((b) => b[1])).toEqual([[1, 2]])
  })

  it("bulk timer queue different batch: items added one interval apart come out separately", () => {
    const t = new BulkTimer<number>(INTERVAL)
    const out: Array<[number, Array<number>]> = []
    t.add(1, 0)
    runBulk(t, 0, WAIT, out)
    t.add(2, WAIT)
    runBulk(t, WAIT, 2 * WAIT, out)
    expect(out.map((b) => b[1])).toEqual([[1], [2]])
  })

  it("bulk timer - nothing pending: idle ticks release nothing more", () => {
    const t = new BulkTimer<number>(INTERVAL)
    const out: Array<[number, Array<number>]> = []
    t.add(1, 0)
    runBulk(t, 0, WAIT, out)
    expect(out.length).toBe(1)
    runBulk(t, WAIT, 2 * WAIT, out)
    expect(out.length).toBe(1)
    expect(t.handleTimeout(10 * WAIT)).toEqual([])
  })

  it("bulk timer - clears interval when idle and restarts on add (reference HEAD)", () => {
    const t = new BulkTimer<number>(INTERVAL)
    expect(t.nextDeadline()).toBe(Infinity)
    t.add(1, 0)
    expect(t.nextDeadline()).toBe(330)
    const out: Array<[number, Array<number>]> = []
    runBulk(t, 0, WAIT, out)
    expect(t.nextDeadline()).toBe(Infinity)
    t.add(2, 1000)
    expect(t.nextDeadline()).toBe(1330)
    runBulk(t, 1000, 1000 + WAIT, out)
    expect(out).toEqual([
      [660, [1]],
      [1660, [2]]
    ])
    expect(t.nextDeadline()).toBe(Infinity)
  })

  it("tick is floor(0.66 × period), at least 1 ms", () => {
    expect(new BulkTimer(500).tick).toBe(330)
    expect(new BulkTimer(1001).tick).toBe(660)
    expect(new BulkTimer(0).tick).toBe(1)
  })

  it("property: every item waits (0.66P, 1.32P] and keeps add order within a batch", () => {
    const rnd = seededRandom(42)
    for (let run = 0; run < 50; run++) {
      const period = 50 + Math.floor(rnd() * 2000)
      const t = new BulkTimer<{ at: number; n: number }>(period)
      const added: Array<{ at: number; n: number }> = []
      let now = 0
      const released: Array<[number, { at: number; n: number }]> = []
      for (let i = 0; i < 40; i++) {
        const next = now + Math.floor(rnd() * period)
        // run the ticks due before the next add
        while (t.nextDeadline() <= next) {
          const d = t.nextDeadline()
          for (const item of t.handleTimeout(d)) released.push([d, item])
        }
        now = next
        const item = { at: now, n: i }
        added.push(item)
        t.add(item, now)
      }
      while (t.nextDeadline() < Infinity) {
        const d = t.nextDeadline()
        for (const item of t.handleTimeout(d)) released.push([d, item])
      }
      expect(released.length).toBe(added.length)
      expect(released.map((r) => r[1].n)).toEqual(added.map((a) => a.n))
      for (const [at, item] of released) {
        expect(at - item.at).toBeGreaterThan(t.tick)
        expect(at - item.at).toBeLessThanOrEqual(2 * t.tick)
      }
    }
  })

  it("a late handleTimeout runs one tick and schedules the next from now (no catch-up burst)", () => {
    const t = new BulkTimer<number>(INTERVAL)
    t.add(1, 0)
    expect(t.handleTimeout(5000)).toEqual([])
    expect(t.nextDeadline()).toBe(5330)
    expect(t.handleTimeout(5330)).toEqual([1])
  })

  it("clear returns the held items and idles; destroy ignores later adds", () => {
    const t = new BulkTimer<number>(INTERVAL)
    t.add(1, 0)
    t.handleTimeout(330)
    t.add(2, 331)
    expect(t.size).toBe(2)
    expect(t.clear().sort()).toEqual([1, 2])
    expect(t.nextDeadline()).toBe(Infinity)
    t.destroy()
    t.add(3, 1000)
    expect(t.size).toBe(0)
    expect(t.nextDeadline()).toBe(Infinity)
  })
})

// ---------------------------------------------------------------------------
// Retry timer (reference test/retry-timer.js: backoffs [50,150,250,350], jitter 20)
// ---------------------------------------------------------------------------

describe("retry timer (test/retry-timer.js)", () => {
  const BACKOFFS = [50, 150, 250, 350] as const
  const MAX_JITTER = 20
  const make = (seed = 1) => new RetryTimer<PeerInfo>({ backoffs: BACKOFFS, jitter: MAX_JITTER, random: seededRandom(seed) })
  /** Advance to `until`, returning how many peers were released. */
  const advance = (rt: RetryTimer<PeerInfo>, until: number): number => {
    let calls = 0
    while (rt.nextDeadline() <= until) calls += rt.handleTimeout(rt.nextDeadline()).length
    return calls
  }

  it("retry timer - proven peer reinsertion: released after the short timer, twice", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rt = make(seed)
      const p = new PeerInfo(key(1))
      const margin = 50
      expect(rt.add(p, 0)).toBe(true)
      let now = BACKOFFS[0] + MAX_JITTER + margin
      expect(advance(rt, now)).toBe(1)
      p.proven = true
      p.reconnect(true)
      p.attempts = 1
      expect(rt.add(p, now)).toBe(true)
      now += BACKOFFS[0] + MAX_JITTER + margin
      expect(advance(rt, now)).toBe(1)
    }
  })

  it("retry timer - forget unresponsive: a never-proven peer with 4 attempts is not scheduled", () => {
    const rt = make()
    const p = new PeerInfo(key(1))
    rt.add(p, 0)
    let now = 2 * (BACKOFFS[0] + MAX_JITTER)
    expect(advance(rt, now)).toBe(1)
    p.proven = false
    p.attempts = 4
    expect(rt.add(p, now)).toBe(false)
    now += 2 * (BACKOFFS[2] + MAX_JITTER)
    expect(advance(rt, now)).toBe(0)
    expect(rt.nextDeadline()).toBe(Infinity)
  })

  it("retry timer - does not retry banned peers", () => {
    const rt = make()
    const p = new PeerInfo(key(1))
    rt.add(p, 0)
    let now = 2 * (BACKOFFS[0] + MAX_JITTER)
    expect(advance(rt, now)).toBe(1)
    p.ban(true)
    expect(rt.add(p, now)).toBe(false)
    now += 2 * (BACKOFFS[2] + MAX_JITTER)
    expect(advance(rt, now)).toBe(0)
  })

  it("selection table (§9.3): proven S S M L, never proven S M L L, > 3 X only when pinned, none when banned or not reconnecting", () => {
    const sel = (attempts: number, proven: boolean, explicit = false, banned = false, reconnecting = true) =>
      selectBackoff({ attempts, proven, explicit, banned, reconnecting })
    expect([0, 1, 2, 3, 4].map((a) => sel(a, true))).toEqual(["S", "S", "M", "L", null])
    expect([0, 1, 2, 3, 4].map((a) => sel(a, false))).toEqual(["S", "M", "L", "L", null])
    expect(sel(4, false, true)).toBe("X")
    expect(sel(9, true, true)).toBe("X")
    expect(sel(1, true, true, true)).toBe(null)
    expect(sel(1, true, true, false, false)).toBe(null)
  })

  it("the peer goes to the selected bulk timer", () => {
    const rt = make()
    const p = new PeerInfo(key(1))
    p.attempts = 2
    rt.add(p, 0)
    expect(rt.timer("L").size).toBe(1)
    expect(rt.size).toBe(1)
    expect(rt.nextDeadline()).toBe(rt.timer("L").tick)
    expect(rt.clear()).toEqual([p])
    expect(rt.size).toBe(0)
  })

  it("default periods (§9.3 table): S 1000–2000, M 5000–6500, L 15000–17500, X 600000–720500", () => {
    const lo = new RetryTimer<PeerInfo>({ random: () => 0 })
    expect(lo.periods).toEqual([1000, 5000, 15000, 600000])
    const hi = new RetryTimer<PeerInfo>({ random: () => 0.999999 })
    expect(hi.periods).toEqual([2000, 6500, 17500, 720500])
    expect(defaultBackoffs(() => 0.5)).toEqual([1250, 5500, 16000, 660000])
  })

  it("the exact schedule under a test clock (§16.1): release times of the worked example with backoffs [100,200,300,400], jitter 0", () => {
    const rt = new RetryTimer<PeerInfo>({ backoffs: [100, 200, 300, 400], jitter: 0, random: seededRandom(3) })
    expect(rt.periods).toEqual([100, 200, 300, 400])
    const p = new PeerInfo(key(1))
    const releases: Array<number> = []
    let now = 0
    for (const attempts of [1, 2, 3]) {
      p.attempts = attempts
      rt.add(p, now)
      while (rt.nextDeadline() < Infinity) {
        now = rt.nextDeadline()
        if (rt.handleTimeout(now).length > 0) releases.push(now)
      }
    }
    // M (tick 132) twice, then L (tick 198) twice: each from an idle timer
    expect(releases).toEqual([264, 264 + 396, 264 + 396 + 396])
    p.attempts = 4
    expect(rt.add(p, now)).toBe(false)
  })
})

// ---------------------------------------------------------------------------
// Dial queue
// ---------------------------------------------------------------------------

describe("dial queue (shuffled priority queue, §9.5)", () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it("serves the highest priority first, each item once", () => {
    const q = new DialQueue<string>(seededRandom(5))
    expect(q.add("low", 1)).toBe(true)
    expect(q.add("top", 4)).toBe(true)
    expect(q.add("mid", 2)).toBe(true)
    expect(q.add("top", 0)).toBe(false)
    expect(q.length).toBe(3)
    expect(q.priorityOf("top")).toBe(4)
    expect([q.shift(), q.shift(), q.shift(), q.shift()]).toEqual(["top", "mid", "low", undefined])
  })

  it("remove and clear", () => {
    const q = new DialQueue<string>(seededRandom(5))
    for (const [i, s] of ["a", "b", "c", "d"].entries()) q.add(s, i % 2)
    expect(q.remove("b")).toBe(true)
    expect(q.remove("b")).toBe(false)
    expect(q.has("b")).toBe(false)
    expect(q.values().sort()).toEqual(["a", "c", "d"])
    expect(q.clear().sort()).toEqual(["a", "c", "d"])
    expect(q.length).toBe(0)
    expect(q.shift()).toBe(undefined)
  })

  it("within a priority level the pick is uniformly random", () => {
    const counts = new Map<string, number>()
    const rnd = seededRandom(11)
    for (let i = 0; i < 4000; i++) {
      const q = new DialQueue<string>(rnd)
      q.add("x", 0)
      for (const s of ["a", "b", "c", "d"]) q.add(s, 2)
      const first = q.shift()!
      counts.set(first, (counts.get(first) ?? 0) + 1)
    }
    expect([...counts.keys()].sort()).toEqual(["a", "b", "c", "d"])
    for (const n of counts.values()) expect(Math.abs(n - 1000)).toBeLessThan(150)
  })

  it("picks exactly what the reference shuffled-priority-queue picks for the same random stream", () => {
    const spq: () => { add(v: object): void; shift(): { name: string } | null; remove(v: object): unknown; length: number } =
      requireRef("shuffled-priority-queue")
    for (let seed = 1; seed <= 10; seed++) {
      const ops = seededRandom(seed * 7919)
      const streamA = seededRandom(seed)
      const streamB = seededRandom(seed)
      vi.spyOn(Math, "random").mockImplementation(streamB)
      const ref = spq()
      const ours = new DialQueue<{ name: string; priority: number }>(streamA)
      const live: Array<{ name: string; priority: number }> = []
      const refPicks: Array<string> = []
      const ourPicks: Array<string> = []
      for (let i = 0; i < 300; i++) {
        const r = ops()
        if (r < 0.5) {
          const item = { name: `p${i}`, priority: Math.floor(ops() * 5) }
          live.push(item)
          ref.add(item)
          ours.add(item, item.priority)
        } else if (r < 0.85) {
          refPicks.push(ref.shift()?.name ?? "-")
          ourPicks.push(ours.shift()?.name ?? "-")
          const idx = live.findIndex((x) => x.name === refPicks[refPicks.length - 1])
          if (idx >= 0) live.splice(idx, 1)
        } else if (live.length > 0) {
          const idx = Math.floor(ops() * live.length)
          const item = live.splice(idx, 1)[0]!
          ref.remove(item)
          ours.remove(item)
        }
        expect(ours.length).toBe(ref.length)
      }
      expect(ourPicks).toEqual(refPicks)
      vi.restoreAllMocks()
    }
  })
})

// ---------------------------------------------------------------------------
// Dial policy
// ---------------------------------------------------------------------------

const state = (s: Partial<DialState> = {}): DialState => ({
  destroyed: false,
  suspended: false,
  connecting: 0,
  clientConnections: 0,
  serverConnections: 0,
  allConnections: 0,
  pinnedCount: 0,
  ...s
})

describe("dial policy (§9.4–§9.8)", () => {
  it("defaults: maxPeers 64, maxParallel 3, client/server caps ∞", () => {
    expect(DEFAULT_LIMITS).toEqual({ maxPeers: 64, maxParallel: 3, maxClientConnections: Infinity, maxServerConnections: Infinity })
  })

  it("pinned capacity factor 1 / 2 / 3 / 4 for 0 / 1 / 2–3 / ≥4 pinned peers", () => {
    expect([0, 1, 2, 3, 4, 5, 100].map(pinnedCapacityFactor)).toEqual([1, 2, 3, 3, 4, 4, 4])
  })

  it("withinMaxPeers: factor × allConnections < maxPeers (4+ pinned: topic dialling stops at 16 connections)", () => {
    expect(withinMaxPeers(state({ allConnections: 63 }), DEFAULT_LIMITS)).toBe(true)
    expect(withinMaxPeers(state({ allConnections: 64 }), DEFAULT_LIMITS)).toBe(false)
    expect(withinMaxPeers(state({ allConnections: 15, pinnedCount: 4 }), DEFAULT_LIMITS)).toBe(true)
    expect(withinMaxPeers(state({ allConnections: 16, pinnedCount: 4 }), DEFAULT_LIMITS)).toBe(false)
    expect(withinMaxPeers(state({ allConnections: 31, pinnedCount: 1 }), DEFAULT_LIMITS)).toBe(true)
    expect(withinMaxPeers(state({ allConnections: 32, pinnedCount: 1 }), DEFAULT_LIMITS)).toBe(false)
    expect(withinMaxPeers(state({ allConnections: 22, pinnedCount: 3 }), DEFAULT_LIMITS)).toBe(false)
  })

  it("pinned dials need a free slot only; queued dials also maxPeers and maxClientConnections", () => {
    const limits = { ...DEFAULT_LIMITS, maxPeers: 2, maxClientConnections: 1 }
    expect(canDialPinned(state({ connecting: 2 }), limits)).toBe(true)
    expect(canDialPinned(state({ connecting: 3 }), limits)).toBe(false)
    expect(canDialPinned(state({ suspended: true }), limits)).toBe(false)
    expect(canDialPinned(state({ destroyed: true }), limits)).toBe(false)
    expect(canDialPinned(state({ allConnections: 5, clientConnections: 5 }), limits)).toBe(true)
    expect(canDialQueued(state(), limits)).toBe(true)
    expect(canDialQueued(state({ allConnections: 2 }), limits)).toBe(false)
    expect(canDialQueued(state({ clientConnections: 1, allConnections: 1 }), limits)).toBe(false)
    expect(outboundSaturated(state({ clientConnections: 1, allConnections: 1 }), limits)).toBe(true)
    expect(outboundSaturated(state(), limits)).toBe(false)
  })

  it("pinned gate: attempts < 5 and attempts × 1 s since the disconnect; reconnect(false) respected (§15.2 #10)", () => {
    const p = { attempts: 2, disconnectedTime: 10_000, reconnecting: true }
    expect(pinnedDialDue(p, 11_999)).toBe(false)
    expect(pinnedDialDue(p, 12_000)).toBe(true)
    expect(pinnedDialDue({ ...p, attempts: 5 }, 1e9)).toBe(false)
    expect(pinnedDialDue({ ...p, attempts: 0, disconnectedTime: 0 }, 0)).toBe(true)
    expect(pinnedDialDue({ ...p, reconnecting: false }, 1e9)).toBe(false)
  })

  it("retry (§9.4): never suspended/destroyed; pinned always; else iff a topic is still joined", () => {
    const topicPeer = { explicit: false, topicKeys: () => ["aa", "bb"] }
    const joined = (t: string) => t === "bb"
    expect(shouldRetry({ destroyed: false, suspended: false }, topicPeer, joined)).toBe(true)
    expect(shouldRetry({ destroyed: false, suspended: false }, topicPeer, () => false)).toBe(false)
    expect(shouldRetry({ destroyed: false, suspended: true }, topicPeer, joined)).toBe(false)
    expect(shouldRetry({ destroyed: true, suspended: false }, topicPeer, joined)).toBe(false)
    expect(shouldRetry({ destroyed: false, suspended: false }, { explicit: true, topicKeys: () => [] }, () => false)).toBe(true)
  })

  it("inbound cap (issue 19): new inbound refused at maxServerConnections unless it replaces an inbound one", () => {
    const limits = { ...DEFAULT_LIMITS, maxServerConnections: 2 }
    expect(inboundVerdict(state({ serverConnections: 1 }), limits, false)).toBe("accept")
    expect(inboundVerdict(state({ serverConnections: 2 }), limits, false)).toBe("server-limit")
    expect(inboundVerdict(state({ serverConnections: 2 }), limits, true)).toBe("accept")
    expect(inboundVerdict(state({ suspended: true }), limits, false)).toBe("destroyed")
    expect(inboundVerdict(state({ serverConnections: 1e6 }), DEFAULT_LIMITS, false)).toBe("accept")
  })

  it("firewall screen (§9.7): own key and known banned peers are refused without asking", () => {
    expect(screenKey("aa", "aa", undefined)).toBe("self")
    expect(screenKey("aa", "bb", { banned: true })).toBe("banned")
    expect(screenKey("aa", "bb", { banned: false })).toBe("ask")
    expect(screenKey("aa", "bb", undefined)).toBe("ask")
  })

  it("force relay (§9.8) after each of the four hole-punch codes, only with a relay configured", () => {
    for (const code of ["HOLEPUNCH_ABORTED", "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS", "CANNOT_HOLEPUNCH", "REMOTE_NOT_HOLEPUNCHABLE"]) {
      expect(shouldForceRelay(code, true)).toBe(true)
      expect(shouldForceRelay(code, false)).toBe(false)
    }
    expect(shouldForceRelay("PEER_NOT_FOUND", true)).toBe(false)
    expect(shouldForceRelay(null, true)).toBe(false)
    expect(C.FORCE_RELAY_CODES.size).toBe(4)
  })

  it("relayThrough: a function gets force as-is; static keys only when forced or our NAT is randomized", () => {
    expect(relayThroughFor(null, true, true)).toBe(null)
    expect(relayThroughFor(undefined, true, true)).toBe(null)
    expect(relayThroughFor("k", false, false)).toBe(null)
    expect(relayThroughFor("k", true, false)).toBe("k")
    expect(relayThroughFor(["k", "j"], false, true)).toEqual(["k", "j"])
    expect(relayThroughFor((force: boolean) => (force ? "f" : "n"), false, true)).toBe("n")
    expect(relayThroughFor((force: boolean) => (force ? "f" : "n"), true, false)).toBe("f")
  })
})

// ---------------------------------------------------------------------------
// Duplicate rule
// ---------------------------------------------------------------------------

describe("duplicate rule (§10)", () => {
  it("compareKeys is bytewise", () => {
    expect(compareKeys(key(1), key(2))).toBeLessThan(0)
    expect(compareKeys(key(2), key(1))).toBeGreaterThan(0)
    expect(compareKeys(key(2), key(2))).toBe(0)
    expect(compareKeys(new Uint8Array([1]), new Uint8Array([1, 0]))).toBeLessThan(0)
    expect(isExpectedInitiator(key(9), key(3))).toBe(true)
  })

  it("stale = read and written at least one raw byte", () => {
    expect(isStale({ rawBytesRead: 1, rawBytesWritten: 1 })).toBe(true)
    expect(isStale({ rawBytesRead: 1, rawBytesWritten: 0 })).toBe(false)
    expect(isStale({ rawBytesRead: 0, rawBytesWritten: 5 })).toBe(false)
  })

  it("a stale existing connection is replaced; otherwise the new inbound is kept iff the remote key is larger", () => {
    expect(keepNewConnection({ localKey: key(9), remoteKey: key(3), existingStale: true })).toBe(true)
    expect(keepNewConnection({ localKey: key(9), remoteKey: key(3), existingStale: false })).toBe(false)
    expect(keepNewConnection({ localKey: key(3), remoteKey: key(9), existingStale: false })).toBe(true)
  })

  it("property: both ends of a simultaneous dial keep the same connection, the one dialled by the larger key", () => {
    const rnd = seededRandom(2024)
    for (let i = 0; i < 500; i++) {
      const a = new Uint8Array(32).map(() => Math.floor(rnd() * 256))
      const b = new Uint8Array(32).map(() => Math.floor(rnd() * 256))
      if (i % 50 === 0) b.set(a.subarray(0, 31)) // shared prefixes too
      if (compareKeys(a, b) === 0) continue
      // A holds its pending dial A→B and receives B→A; B holds B→A and receives A→B
      const aKeepsBA = keepNewConnection({ localKey: a, remoteKey: b, existingStale: false })
      const bKeepsAB = keepNewConnection({ localKey: b, remoteKey: a, existingStale: false })
      const aSurvivor = aKeepsBA ? "B→A" : "A→B"
      const bSurvivor = bKeepsAB ? "A→B" : "B→A"
      expect(aSurvivor).toBe(bSurvivor)
      expect(aSurvivor).toBe(survivingDialer(a, b) === a ? "A→B" : "B→A")
    }
  })
})

describe("constants (§14)", () => {
  it("match the spec's table", () => {
    expect([C.DEFAULT_MAX_PEERS, C.DEFAULT_MAX_PARALLEL]).toEqual([64, 3])
    expect([C.DEFAULT_MAX_CLIENT_CONNECTIONS, C.DEFAULT_MAX_SERVER_CONNECTIONS]).toEqual([Infinity, Infinity])
    expect(C.PINNED_CAPACITY_FACTORS).toEqual([1, 2, 3, 4])
    expect([C.PINNED_MAX_ATTEMPTS, C.PINNED_BACKOFF_PER_ATTEMPT]).toEqual([5, 1000])
    expect(C.BACKOFF_JITTER).toBe(500)
    expect([C.BACKOFF_S_BASE, C.BACKOFF_S_SPREAD, C.BACKOFF_M_BASE, C.BACKOFF_M_SPREAD]).toEqual([1000, 500, 5000, 1000])
    expect([C.BACKOFF_L_BASE, C.BACKOFF_L_SPREAD, C.BACKOFF_X_BASE, C.BACKOFF_X_SPREAD]).toEqual([15000, 2000, 600000, 120000])
    expect(C.BULK_TICK_FACTOR).toBe(0.66)
    expect(C.MIN_CONNECTION_TIME).toBe(15000)
    expect([C.PRIORITY_VERY_LOW, C.PRIORITY_LOW, C.PRIORITY_NORMAL, C.PRIORITY_HIGH, C.PRIORITY_VERY_HIGH]).toEqual([0, 1, 2, 3, 4])
    expect([C.REFRESH_INTERVAL, C.REFRESH_JITTER, C.DELAY_GRACE_PERIOD, C.MAX_DISCOVERY_CACHE]).toEqual([600000, 120000, 30000, 64])
    expect([C.HANDSHAKE_CLEAR_WAIT, C.DHT_RECORD_LIFETIME, C.CONNECTION_KEEP_ALIVE]).toEqual([10000, 1200000, 5000])
  })
})

describe("chooseRelay (§9.8)", () => {
  const k1 = new Uint8Array(32).fill(1)
  const k2 = new Uint8Array(32).fill(2)
  it("a function gets (force, flock); static keys only when forced or our NAT is randomized; a list is picked with the injected random", async () => {
    const { chooseRelay } = await import("../src/actors/flock/dial-policy.js")
    const self = {}
    const calls: Array<[boolean, unknown]> = []
    expect(chooseRelay((force: boolean, s: unknown) => (calls.push([force, s]), k1), true, false, () => 0, self)).toBe(k1)
    expect(calls).toEqual([[true, self]])
    expect(chooseRelay(k1, false, false, () => 0)).toBeNull()
    expect(chooseRelay(k1, true, false, () => 0)).toBe(k1)
    expect(chooseRelay(k1, false, true, () => 0)).toBe(k1)
    expect(chooseRelay([k1, k2], true, false, () => 0.99)).toBe(k2)
    expect(chooseRelay([k1, k2], true, false, () => 0)).toBe(k1)
    expect(chooseRelay(undefined, true, true, () => 0)).toBeNull()
  })
})
