/**
 * Unit tests of the deterministic holepunch cores (src/actors/holepunch/):
 * NAT classification and advertised addresses (every rule of connect.md
 * §5.2, plus a differential run against the reference's lib/nat.js), the
 * sampling plan, each punch strategy's exact probe schedule (§6.7), first
 * probe wins / probe echo, exhaustion and destroy, the random-punch limiter,
 * matchAddress and the bogon ranges (against the reference's helpers), and
 * determinism under a seeded PRNG.
 */
import { createRequire } from "node:module"
import { afterEach, describe, expect, it, vi } from "vitest"
import {
  coerceFirewall,
  firstPublicAddress,
  firstVerified,
  isBogon,
  isConsistent,
  isPrivate,
  isRandomPunch,
  isReserved,
  isUnstable,
  matchAddress,
  capPace,
  FAST_PACE,
  MIN_PROBE_RATE,
  paceRate,
  parseIPv4,
  type PunchPace,
  RandomPunchLimiter,
  REFERENCE_PACE,
  type RemoteAddress,
  SAMPLING_DELAY_MAX,
  SAMPLING_DELAY_MIN,
  samplingDelay,
  shouldFastOpen,
  strategyFor,
  withVerified
} from "../src/actors/holepunch/decide.js"
import { NatAnalyzer, NatSamplingPlan } from "../src/actors/holepunch/nat.js"
import {
  BIRTHDAY_SOCKETS,
  type PunchAction,
  PunchCore,
  type PunchCoreOptions,
  RANDOM_PROBES
} from "../src/actors/holepunch/puncher.js"
import { FIREWALL_CONSISTENT, FIREWALL_OPEN, FIREWALL_RANDOM, FIREWALL_UNKNOWN } from "../src/protocol/connect.js"
import { seededRandom, xorshift32 } from "../src/util/random.js"

const UNKNOWN = FIREWALL_UNKNOWN
const OPEN = FIREWALL_OPEN
const CONSISTENT = FIREWALL_CONSISTENT
const RANDOM = FIREWALL_RANDOM

const requireRef = createRequire(import.meta.url)
const RefNat: new (dht: { firewalled: boolean }, session: null, socket: null) => {
  add(to: Addr, from: Addr): void
  freeze(): void
  unfreeze(): void
  firewall: number
  sampled: number
  addresses: Array<{ host: string; port: number }> | null
} = requireRef("hyperdht/lib/nat.js")
const RefHolepuncher: { matchAddress(a: ReadonlyArray<Addr>, b: ReadonlyArray<Addr>): Addr | null } =
  requireRef("hyperdht/lib/holepuncher.js")
const bogon: { isBogon(h: string): boolean; isPrivate(h: string): boolean; isReserved(h: string): boolean } =
  requireRef("bogon")

interface Addr {
  readonly host: string
  readonly port: number
}

const addr = (host: string, port: number): Addr => ({ host, port })
/** A distinct responding DHT node per index. */
const node = (i: number): Addr => addr(`10.1.${(i >> 8) & 255}.${i & 255}`, 49737)
/** Feed `to` samples from distinct nodes; returns the analyzer. */
const feed = (nat: NatAnalyzer, samples: ReadonlyArray<Addr>, first = 0): NatAnalyzer => {
  samples.forEach((to, i) => nat.add(to, node(first + i)))
  return nat
}
const plain = (as: ReadonlyArray<Addr> | null) => (as === null ? null : as.map((a) => ({ host: a.host, port: a.port })))

const A1 = addr("1.1.1.1", 1000)
const A2 = addr("1.1.1.1", 2000)
const A3 = addr("1.1.1.1", 3000)
const A4 = addr("1.1.1.1", 4000)
const B1 = addr("2.2.2.2", 1000)
const C1 = addr("3.3.3.3", 1000)
const D1 = addr("4.4.4.4", 1000)

// ---------------------------------------------------------------------------
// NAT classification
// ---------------------------------------------------------------------------

describe("NatAnalyzer: classification (§5.2)", () => {
  const fresh = () => new NatAnalyzer({ firewalled: true })

  it("stays UNKNOWN with fewer than 3 samples, whatever they say", () => {
    const nat = feed(fresh(), [A1, A1])
    expect(nat.firewall).toBe(UNKNOWN)
    expect(nat.addresses).toBe(null)
    expect(nat.sampled).toBe(2)
    expect(nat.finished).toBe(false)
    expect(feed(fresh(), [A1, A2]).firewall).toBe(UNKNOWN)
  })

  it("top host:port with >= 3 hits: CONSISTENT, finished at once", () => {
    const nat = feed(fresh(), [A1, A1, A1])
    expect(nat.firewall).toBe(CONSISTENT)
    expect(nat.addresses).toEqual([A1])
    expect(nat.finished).toBe(true)
    // a stray fourth sample does not change it, but is advertised as one of the first two
    nat.add(B1, node(9))
    expect(nat.firewall).toBe(CONSISTENT)
    expect(nat.addresses).toEqual([A1, B1])
  })

  it("top with exactly 1 hit: RANDOM (three different ports), finished only at 4 samples", () => {
    const nat = feed(fresh(), [A1, A2, A3])
    expect(nat.firewall).toBe(RANDOM)
    expect(nat.addresses).toEqual([{ host: "1.1.1.1", port: 0 }])
    expect(nat.finished).toBe(false)
    nat.add(A4, node(9))
    expect(nat.finished).toBe(true)
  })

  it("RANDOM advertises the most common host with port 0", () => {
    const nat = feed(fresh(), [B1, A1, addr("1.1.1.1", 2), addr("1.1.1.1", 3)])
    expect(nat.firewall).toBe(RANDOM)
    expect(nat.addresses).toEqual([{ host: "1.1.1.1", port: 0 }])
  })

  it("top 2 hits, one host: UNKNOWN at 3 samples, RANDOM at 4 (two bad ones)", () => {
    const nat = feed(fresh(), [A1, A1, A2])
    expect(nat.firewall).toBe(UNKNOWN)
    expect(nat.finished).toBe(false)
    nat.add(A3, node(9))
    expect(nat.firewall).toBe(RANDOM)
    expect(nat.finished).toBe(true)
  })

  it("top 2 hits on each of two hosts: CONSISTENT, both advertised", () => {
    const nat = feed(fresh(), [A1, A1, B1])
    expect(nat.firewall).toBe(UNKNOWN)
    nat.add(B1, node(9))
    expect(nat.firewall).toBe(CONSISTENT)
    expect(nat.addresses).toEqual([A1, B1])
  })

  it("top 2 hits, two hosts, second single: UNKNOWN up to 4 samples, RANDOM from 5", () => {
    const nat = feed(fresh(), [A1, A1, B1, C1])
    expect(nat.firewall).toBe(UNKNOWN)
    expect(nat.addresses).toBe(null)
    expect(nat.finished).toBe(true) // 4 samples are in: the analysis is finished, class UNKNOWN
    nat.add(D1, node(9))
    expect(nat.firewall).toBe(RANDOM)
    expect(nat.addresses).toEqual([{ host: "1.1.1.1", port: 0 }])
  })

  it("CONSISTENT advertises every host:port with >= 2 hits plus the first two regardless", () => {
    const nat = feed(fresh(), [A1, A1, A1, B1, B1, C1, C1, D1, A2])
    expect(nat.firewall).toBe(CONSISTENT)
    expect(nat.addresses).toEqual([A1, B1, C1])
    const two = feed(fresh(), [A1, A1, A1, B1, C1])
    expect(two.addresses).toEqual([A1, B1]) // C1 has 1 hit and the list already holds two
  })

  it("tallies stay in descending hit order; ties keep arrival order", () => {
    const nat = feed(fresh(), [A1, B1, B1, A1])
    expect(nat.tallies().full).toEqual([
      { ...B1, hits: 2 },
      { ...A1, hits: 2 }
    ])
    nat.add(A1, node(9))
    expect(nat.tallies().full.map((t) => t.host)).toEqual(["1.1.1.1", "2.2.2.2"])
    expect(nat.tallies().hosts).toEqual([
      { host: "1.1.1.1", port: 0, hits: 3 },
      { host: "2.2.2.2", port: 0, hits: 2 }
    ])
  })

  it("counts each responding node once", () => {
    const nat = fresh()
    expect(nat.add(A1, node(1))).toBe(true)
    expect(nat.add(A1, node(1))).toBe(false)
    expect(nat.add(A2, node(1))).toBe(false)
    expect(nat.sampled).toBe(1)
    expect(nat.hasSampleFrom(node(1))).toBe(true)
    expect(nat.hasSampleFrom(node(2))).toBe(false)
  })

  it("open shortcut: an unfirewalled DHT node is OPEN; finished at the first sample; no addresses", () => {
    const nat = new NatAnalyzer({ firewalled: false })
    expect(nat.firewall).toBe(OPEN)
    expect(nat.finished).toBe(false)
    nat.add(A1, node(1))
    expect(nat.firewall).toBe(OPEN)
    expect(nat.finished).toBe(true)
    expect(nat.addresses).toBe(null)
  })

  it("OPEN keeps the previously advertised addresses; a firewalled DHT demotes OPEN from the 3rd sample", () => {
    const nat = feed(new NatAnalyzer({ firewalled: true }), [A1, A1, A1])
    nat.setFirewalled(false)
    expect(nat.firewall).toBe(CONSISTENT) // consulted at the next sample only
    nat.add(B1, node(9))
    expect(nat.firewall).toBe(OPEN)
    expect(nat.addresses).toEqual([A1]) // left as they were, not recomputed from the new sample

    const open = new NatAnalyzer({ firewalled: false })
    open.setFirewalled(true)
    feed(open, [A1, A2])
    expect(open.firewall).toBe(OPEN) // < 3 samples on a firewalled node: no reclassification
    open.add(A3, node(9))
    expect(open.firewall).toBe(RANDOM)
  })

  it("freeze keeps class and addresses while samples still count; unfreeze reclassifies", () => {
    const nat = feed(fresh(), [A1, A2])
    nat.freeze()
    feed(nat, [A3, A4], 10)
    expect(nat.sampled).toBe(4)
    expect(nat.firewall).toBe(UNKNOWN)
    expect(nat.addresses).toBe(null)
    expect(nat.finished).toBe(true) // the min-samples latch still fires
    nat.unfreeze()
    expect(nat.firewall).toBe(RANDOM)
    expect(nat.addresses).toEqual([{ host: "1.1.1.1", port: 0 }])
  })

  it("endSampling and destroy finish the analysis", () => {
    const a = fresh()
    a.endSampling()
    expect(a.finished).toBe(true)
    expect(a.firewall).toBe(UNKNOWN)
    const b = fresh()
    b.destroy()
    expect(b.finished).toBe(true)
    expect(b.minSamples).toBe(0)
    expect(b.destroyed).toBe(true)
  })

  it("property: agrees with the reference lib/nat.js on random sample sequences (with freezes)", () => {
    const rnd = seededRandom(7)
    for (let run = 0; run < 400; run++) {
      const firewalled = rnd() < 0.9
      const ours = new NatAnalyzer({ firewalled })
      const ref = new RefNat({ firewalled }, null, null)
      const hosts = 1 + Math.floor(rnd() * 3)
      const ports = 1 + Math.floor(rnd() * 4)
      const n = Math.floor(rnd() * 10)
      for (let i = 0; i < n; i++) {
        const to = addr(`9.9.9.${Math.floor(rnd() * hosts)}`, 1000 + Math.floor(rnd() * ports))
        const from = node(Math.floor(rnd() * 12)) // repeats exercise the once-per-node rule
        const op = rnd()
        if (op < 0.08) {
          ours.freeze()
          ref.freeze()
        } else if (op < 0.12) {
          ours.unfreeze()
          ref.unfreeze()
        }
        ours.add(to, from)
        ref.add(to, from)
        expect([ours.firewall, ours.sampled, plain(ours.addresses)]).toEqual([ref.firewall, ref.sampled, plain(ref.addresses)])
      }
    }
  })
})

// ---------------------------------------------------------------------------
// Sampling plan
// ---------------------------------------------------------------------------

describe("NatSamplingPlan (§5.2 autoSample)", () => {
  const nodes = (n: number) => Array.from({ length: n }, (_, i) => node(i))

  it("skips the 5 newest when >= 8 nodes are known and pings 4", () => {
    const plan = new NatSamplingPlan(new NatAnalyzer({ firewalled: true }))
    expect(plan.nextPings(nodes(10))).toEqual(nodes(10).slice(5, 9))
    expect(plan.pending).toBe(4)
    expect(plan.round).toBe(1)
    expect(plan.nextPings(nodes(10))).toEqual([]) // nothing more while the round runs
  })

  it("does not skip with fewer than 8 nodes", () => {
    const plan = new NatSamplingPlan(new NatAnalyzer({ firewalled: true }))
    expect(plan.nextPings(nodes(7))).toEqual(nodes(7).slice(0, 4))
  })

  it("a full round of answers finishes sampling without a retry", () => {
    const nat = new NatAnalyzer({ firewalled: true })
    const plan = new NatSamplingPlan(nat)
    const ns = nodes(12)
    const pings = plan.nextPings(ns)
    pings.forEach((p, i) => {
      plan.onPingResult(p, addr("5.5.5.5", 7000 + i))
      expect(plan.nextPings(ns)).toEqual([])
    })
    expect(nat.firewall).toBe(RANDOM)
    expect(nat.finished).toBe(true)
    expect(plan.done).toBe(true)
    expect(plan.givenUp).toBe(false)
    expect(plan.pingsSent).toBe(4)
  })

  it("a short round gets one more round on further nodes, then gives up", () => {
    const nat = new NatAnalyzer({ firewalled: true })
    const plan = new NatSamplingPlan(nat)
    const ns = nodes(12)
    const [n5, n6, n7, n8] = plan.nextPings(ns) as [Addr, Addr, Addr, Addr]
    plan.onPingResult(n5, A1)
    plan.onPingResult(n6, null)
    plan.onPingResult(n7, A1)
    expect(plan.nextPings(ns)).toEqual([]) // n8 still outstanding
    plan.onPingResult(n8, null)
    expect(nat.finished).toBe(false)
    // two samples in: the extra round asks for two more, skipping the 5 newest and everyone pinged
    expect(plan.nextPings(ns)).toEqual([node(9), node(10)])
    expect(plan.round).toBe(2)
    plan.onPingResult(node(9), null)
    plan.onPingResult(node(10), null)
    expect(plan.givenUp).toBe(true)
    expect(nat.finished).toBe(true)
    expect(nat.firewall).toBe(UNKNOWN)
    expect(plan.nextPings(ns)).toEqual([])
  })

  it("the extra round reads the node list it is given (it may have changed)", () => {
    const plan = new NatSamplingPlan(new NatAnalyzer({ firewalled: true }))
    const first = plan.nextPings(nodes(4))
    for (const p of first) plan.onPingResult(p, null)
    const later = [node(100), ...nodes(4), node(101)]
    expect(plan.nextPings(later)).toEqual([node(100), node(101)])
  })

  it("skips nodes that already contributed a sample by another path (a holepunch reply)", () => {
    const nat = new NatAnalyzer({ firewalled: true })
    nat.add(A1, node(5))
    const plan = new NatSamplingPlan(nat)
    expect(plan.nextPings(nodes(12))).toEqual([node(6), node(7), node(8)])
  })

  it("no nodes at all: both rounds are empty and sampling gives up at once", () => {
    const nat = new NatAnalyzer({ firewalled: true })
    const plan = new NatSamplingPlan(nat)
    expect(plan.nextPings([])).toEqual([])
    expect(plan.round).toBe(2)
    expect(plan.givenUp).toBe(true)
    expect(nat.finished).toBe(true)
  })

  it("too few nodes: the retry finds nobody new and gives up", () => {
    const nat = new NatAnalyzer({ firewalled: true })
    const plan = new NatSamplingPlan(nat)
    const ns = nodes(2)
    for (const p of plan.nextPings(ns)) plan.onPingResult(p, A1)
    expect(plan.givenUp).toBe(false)
    expect(plan.nextPings(ns)).toEqual([])
    expect(plan.givenUp).toBe(true)
    expect(nat.sampled).toBe(2)
  })

  it("retry: false gives up after the first round; stray results are ignored", () => {
    const nat = new NatAnalyzer({ firewalled: true })
    const plan = new NatSamplingPlan(nat, { retry: false })
    const pings = plan.nextPings(nodes(4))
    plan.onPingResult(node(77), A1) // never pinged
    expect(nat.sampled).toBe(0)
    for (const p of pings) plan.onPingResult(p, null)
    plan.onPingResult(pings[0]!, A1) // reported twice
    expect(nat.sampled).toBe(0)
    expect(plan.givenUp).toBe(true)
  })

  it("property: pings the same nodes, in the same order, as the reference autoSample", async () => {
    interface RefNode extends Addr {
      prev: RefNode | null
    }
    const RefNatSampling: new (
      dht: { firewalled: boolean; nodes: { length: number; latest: RefNode | null } },
      session: { ping(node: RefNode): Promise<{ to: Addr; from: Addr }> },
      socket: null
    ) => { autoSample(): void; analyzing: Promise<void>; firewall: number; sampled: number } = requireRef("hyperdht/lib/nat.js")
    const flush = () => new Promise<void>((r) => setImmediate(r))
    const rnd = seededRandom(31)
    for (let run = 0; run < 150; run++) {
      const list = nodes(Math.floor(rnd() * 14))
      const linked: Array<RefNode> = list.map((n) => ({ ...n, prev: null }))
      linked.forEach((n, i) => (n.prev = linked[i + 1] ?? null))
      const refPings: Array<Addr> = []
      const waiting = new Map<string, { ok: (v: { to: Addr; from: Addr }) => void; fail: () => void }>()
      const ref = new RefNatSampling(
        { firewalled: true, nodes: { length: list.length, latest: linked[0] ?? null } },
        {
          ping: (n) => {
            refPings.push(addr(n.host, n.port))
            return new Promise((ok, fail) => waiting.set(`${n.host}:${n.port}`, { ok, fail: () => fail(new Error("timeout")) }))
          }
        },
        null
      )
      let refFinished = false
      void ref.analyzing.then(() => (refFinished = true))
      const nat = new NatAnalyzer({ firewalled: true })
      const plan = new NatSamplingPlan(nat)
      ref.autoSample()
      const ours = plan.nextPings(list)
      await flush()
      while (waiting.size > 0) {
        expect(ours).toEqual(refPings)
        const keys = [...waiting.keys()]
        const key = keys[Math.floor(rnd() * keys.length)]!
        const w = waiting.get(key)!
        waiting.delete(key)
        const n = list.find((x) => `${x.host}:${x.port}` === key)!
        const to = rnd() < 0.3 ? null : addr("6.6.6.6", 1000 + Math.floor(rnd() * 2))
        if (to === null) w.fail()
        else w.ok({ to, from: n })
        plan.onPingResult(n, to)
        ours.push(...plan.nextPings(list))
        await flush()
      }
      expect(ours).toEqual(refPings)
      expect([nat.finished, nat.sampled, nat.firewall]).toEqual([refFinished, ref.sampled, ref.firewall])
    }
  })

  it("a destroyed analyzer wants no pings", () => {
    const nat = new NatAnalyzer({ firewalled: true })
    nat.destroy()
    const plan = new NatSamplingPlan(nat)
    expect(plan.nextPings(nodes(10))).toEqual([])
    expect(plan.done).toBe(true)
  })
})

// ---------------------------------------------------------------------------
// Punch core
// ---------------------------------------------------------------------------

interface Logged {
  readonly t: number
  readonly action: PunchAction
}

/**
 * Drive a core on a plain clock until `until` (or until it has no
 * deadline). OpenSocket requests are granted at once unless `openFails`
 * says otherwise.
 */
const run = (core: PunchCore, t0: number, opts: { until?: number; openFails?: (socket: number) => boolean } = {}) => {
  const until = opts.until ?? Number.POSITIVE_INFINITY
  const log: Array<Logged> = []
  let t = t0
  let endedAt: number | null = core.outcome === null ? null : t0
  for (;;) {
    for (let a = core.pollTransmit(t); a !== null; a = core.pollTransmit(t)) {
      log.push({ t, action: a })
      if (a._tag === "OpenSocket") {
        if (opts.openFails?.(a.socket)) core.socketOpenFailed(a.socket, t)
        else core.socketOpened(a.socket, t)
      }
    }
    if (endedAt === null && core.outcome !== null) endedAt = t
    const next = core.nextDeadline()
    if (!Number.isFinite(next) || next > until) break
    t = next
    core.onTimers(t)
  }
  return { log, endedAt, probes: log.flatMap((l) => (l.action._tag === "Probe" ? [{ t: l.t, ...l.action }] : [])) }
}

const V = (host: string, port: number, verified = true): RemoteAddress => ({ host, port, verified })
const core = (o: Partial<PunchCoreOptions>) =>
  new PunchCore({
    initiator: true,
    localFirewall: CONSISTENT,
    remoteFirewall: CONSISTENT,
    remoteAddresses: [V("8.8.8.8", 4000)],
    random: seededRandom(1),
    ...o
  })

describe("PunchCore: consistent strategy", () => {
  const remote = [V("8.8.8.8", 4000), V("192.168.1.9", 4000, false), V("8.8.4.4", 4001)]
  const dests = (round: number) =>
    round === 4 || round === 8 ? ["8.8.8.8:4000", "192.168.1.9:4000", "8.8.4.4:4001"] : ["8.8.8.8:4000", "8.8.4.4:4001"]

  it("initiator: 10 rounds 1 s apart from t0, unverified addresses only in rounds 4 and 8, exhausted 1 s after round 10", () => {
    const c = core({ remoteAddresses: remote })
    expect(c.start(5000)).toBe(true)
    expect(c.strategy).toBe("consistent")
    expect(c.punching).toBe(true)
    const { probes, endedAt } = run(c, 5000)
    const byTime = new Map<number, Array<string>>()
    for (const p of probes) {
      expect([p.socket, p.ttl]).toEqual([0, 64])
      byTime.set(p.t, [...(byTime.get(p.t) ?? []), `${p.to.host}:${p.to.port}`])
    }
    expect([...byTime.keys()]).toEqual(Array.from({ length: 10 }, (_, i) => 5000 + 1000 * i))
    for (let r = 1; r <= 10; r++) expect(byTime.get(5000 + 1000 * (r - 1))).toEqual(dests(r))
    expect(probes.length).toBe(10 * 2 + 2)
    expect(endedAt).toBe(15000)
    expect(c.outcome).toEqual({ _tag: "Exhausted" })
    expect(c.punching).toBe(false)
    expect(c.stats).toMatchObject({ strategy: "consistent", rounds: 10, probesSent: 22, lowTtlProbes: 0, outcome: "Exhausted" })
  })

  it("non-initiator: waits 1 s before round 1, exhausted at t0 + 11 s", () => {
    const c = core({ initiator: false, remoteAddresses: remote })
    expect(c.start(0)).toBe(true)
    expect(c.pollTransmit(0)).toBe(null)
    expect(c.nextDeadline()).toBe(1000)
    const { probes, endedAt } = run(c, 0)
    expect(probes[0]!.t).toBe(1000)
    expect(probes.at(-1)!.t).toBe(10000)
    expect(endedAt).toBe(11000)
  })

  it("OPEN on either side is coerced to CONSISTENT", () => {
    expect(core({ localFirewall: OPEN, remoteFirewall: OPEN }).start(0)).toBe(true)
    const c = core({ localFirewall: OPEN, remoteFirewall: CONSISTENT })
    c.start(0)
    expect(c.strategy).toBe("consistent")
    expect(c.stats.localFirewall).toBe(CONSISTENT)
  })

  it("only unverified addresses: rounds 1-3 send nothing but still take their second", () => {
    const c = core({ remoteAddresses: [V("8.8.8.8", 4000, false)] })
    c.start(0)
    const { probes } = run(c, 0)
    expect(probes.map((p) => p.t)).toEqual([3000, 7000])
  })

  it("address updates feed later rounds", () => {
    const c = core({ remoteAddresses: [V("8.8.8.8", 4000)] })
    c.start(0)
    run(c, 0, { until: 1500 })
    c.updateRemote({ firewall: RANDOM, addresses: [V("8.8.8.8", 4000), V("7.7.7.7", 1)] })
    expect(c.stats.remoteFirewall).toBe(CONSISTENT) // the class no longer matters once started
    const { probes } = run(c, 2000, { until: 2000 })
    expect(probes.map((p) => p.to.host)).toEqual(["8.8.8.8", "7.7.7.7"])
  })

  it("late timers: one step per call, the next deadline counted from the actual time", () => {
    const c = core({})
    c.start(0)
    expect(c.pollTransmit(0)?._tag).toBe("Probe")
    c.onTimers(999) // early: nothing
    expect(c.nextDeadline()).toBe(1000)
    c.onTimers(3500) // late: runs round 2 only
    expect(c.stats.rounds).toBe(2)
    expect(c.nextDeadline()).toBe(4500)
    // pollTransmit runs a due step itself
    expect(c.pollTransmit(4500)?._tag).toBe("Probe")
    expect(c.stats.rounds).toBe(3)
  })
})

describe("PunchCore: random probes strategy", () => {
  const remote = [V("8.8.8.8", 4000, false), V("9.9.9.9", 5000), V("7.7.7.7", 6000)]

  it("1750 TTL-64 probes 20 ms apart to V.host on random ports in [1000, 65535]; exhausted 20 ms after the last", () => {
    const c = core({ remoteFirewall: RANDOM, remoteAddresses: remote, random: seededRandom(99) })
    expect(c.start(100)).toBe(true)
    expect(c.strategy).toBe("random-probes")
    expect(c.isRandom).toBe(true)
    const { probes, endedAt } = run(c, 100)
    expect(probes.length).toBe(RANDOM_PROBES)
    probes.forEach((p, i) => {
      expect(p.t).toBe(100 + 20 * i)
      expect(p.socket).toBe(0)
      expect(p.ttl).toBe(64)
      expect(p.to.host).toBe("9.9.9.9") // the first VERIFIED address
      expect(p.to.port).toBeGreaterThanOrEqual(1000)
      expect(p.to.port).toBeLessThanOrEqual(65535)
    })
    expect(new Set(probes.map((p) => p.to.port)).size).toBeGreaterThan(1500)
    expect(endedAt).toBe(100 + 20 * RANDOM_PROBES)
    expect(c.stats.target).toEqual({ host: "9.9.9.9", port: 5000 })
  })

  it("ports are 1000 + floor(random * 64536): both ends reachable, odd values clamped", () => {
    const values = [0, 0.5, 1 - 1e-12, 1.5, Number.NaN, -3]
    let i = 0
    const c = core({ remoteFirewall: RANDOM, random: () => values[i++ % values.length]! })
    c.start(0)
    const ports = run(c, 0, { until: 100 }).probes.map((p) => p.to.port)
    expect(ports).toEqual([1000, 1000 + 32268, 65535, 65535, 1000, 1000])
  })

  it("determinism: the same seed gives the same probe sequence, another seed another", () => {
    const seq = (seed: number) => {
      const c = core({ remoteFirewall: RANDOM, random: seededRandom(seed) })
      c.start(0)
      return run(c, 0).probes.map((p) => `${p.t}:${p.to.port}`)
    }
    expect(seq(42)).toEqual(seq(42))
    expect(seq(42)).not.toEqual(seq(43))
  })
})

describe("PunchCore: birthday strategy", () => {
  const target = V("8.8.8.8", 4000)

  it("opens sockets one at a time to 256 held, a TTL-5 probe from each; then cycles 1750 probes (first cycle TTL 5)", () => {
    const c = core({ localFirewall: RANDOM, remoteAddresses: [V("1.2.3.4", 1, false), target] })
    expect(c.start(0)).toBe(true)
    expect(c.strategy).toBe("birthday")
    const { log, probes, endedAt } = run(c, 0)
    // opening phase: OpenSocket(k), then Probe(k, V, 5), k = 1..255; socket 0 is not probed here
    const opening = log.slice(0, 2 * (BIRTHDAY_SOCKETS - 1))
    for (let k = 1; k < BIRTHDAY_SOCKETS; k++) {
      expect(opening[2 * (k - 1)]!.action).toEqual({ _tag: "OpenSocket", socket: k })
      expect(opening[2 * k - 1]!.action).toEqual({ _tag: "Probe", socket: k, to: { host: "8.8.8.8", port: 4000 }, ttl: 5 })
    }
    expect(c.heldSockets).toBe(256)
    // cycling phase: starts 100 ms after the last socket opened
    const cycle = probes.slice(BIRTHDAY_SOCKETS - 1)
    expect(cycle.length).toBe(RANDOM_PROBES)
    cycle.forEach((p, j) => {
      expect(p.t).toBe(100 + 20 * j)
      expect(p.socket).toBe(j % 256)
      expect(p.ttl).toBe(j < 256 ? 5 : 64)
      expect(p.to).toEqual({ host: "8.8.8.8", port: 4000 })
    })
    expect(endedAt).toBe(100 + 20 * RANDOM_PROBES)
    expect(c.outcome).toEqual({ _tag: "Exhausted" })
    expect(c.stats).toMatchObject({ probesSent: 255 + 1750, lowTtlProbes: 255 + 256, socketsHeld: 256 })
  })

  it("waits for each socket: the next OpenSocket only after socketOpened; wrong indices are refused", () => {
    const c = core({ localFirewall: RANDOM })
    c.start(0)
    expect(c.pollTransmit(0)).toEqual({ _tag: "OpenSocket", socket: 1 })
    expect(c.pollTransmit(0)).toBe(null)
    expect(c.socketOpened(2, 0)).toBe(false)
    expect(c.socketOpened(1, 10)).toBe(true)
    expect(c.socketOpened(1, 10)).toBe(false)
    expect(c.pollTransmit(10)).toEqual({ _tag: "Probe", socket: 1, to: { host: "8.8.8.8", port: 4000 }, ttl: 5 })
    expect(c.pollTransmit(10)).toEqual({ _tag: "OpenSocket", socket: 2 })
  })

  it("a socket that cannot be opened ends the opening phase: cycle over what is held", () => {
    const c = core({ localFirewall: RANDOM })
    c.start(0)
    const { probes } = run(c, 0, { openFails: (s) => s === 4 })
    expect(c.heldSockets).toBe(4)
    const cycle = probes.slice(3)
    expect(cycle.length).toBe(RANDOM_PROBES)
    expect(cycle.slice(0, 9).map((p) => `${p.socket}/${p.ttl}`)).toEqual(["0/5", "1/5", "2/5", "3/5", "0/64", "1/64", "2/64", "3/64", "0/64"])
  })
})

describe("PunchCore: paced random strategies (FAST_PACE and other paces)", () => {
  const remote = [V("9.9.9.9", 5000)]

  it("random probes at FAST_PACE: 1750 in bursts of 10 every 5 ms, then 300 one every 100 ms; exhausted one spacing after the last", () => {
    const c = core({ remoteFirewall: RANDOM, remoteAddresses: remote, random: seededRandom(7) })
    expect(c.start(100, FAST_PACE)).toBe(true)
    expect(c.probeRate).toBe(2000)
    const { probes, endedAt } = run(c, 100)
    expect(probes.length).toBe(1750 + 300)
    probes.slice(0, 1750).forEach((p, i) => expect(p.t).toBe(100 + 5 * Math.floor(i / 10)))
    // the 175th burst is the fast phase's last; the slow phase starts one fast spacing later
    const slowStart = 100 + 5 * 175
    probes.slice(1750).forEach((p, i) => expect(p.t).toBe(slowStart + 100 * i))
    expect(endedAt).toBe(slowStart + 100 * 300)
    expect(probes.every((p) => p.socket === 0 && p.ttl === 64 && p.to.host === "9.9.9.9")).toBe(true)
    // half the probes (and more) go to distinct ports: the birthday odds hold
    expect(new Set(probes.slice(0, 1750).map((p) => p.to.port)).size).toBeGreaterThan(1700)
  })

  it("probeRate follows the phases and is 0 once ended", () => {
    const c = core({ remoteFirewall: RANDOM, remoteAddresses: remote })
    expect(c.probeRate).toBe(0)
    c.start(0, FAST_PACE)
    run(c, 0, { until: 5 * 173 }) // 174 bursts of 10 sent
    expect(c.probeRate).toBe(2000)
    run(c, 5 * 173, { until: 5 * 174 }) // the fast phase's last burst
    expect(c.probeRate).toBe(10)
    c.destroy()
    expect(c.probeRate).toBe(0)
  })

  it("the birthday strategy at FAST_PACE: pace.sockets sockets, the cycle in bursts (first full cycle TTL 5)", () => {
    const pace: PunchPace = { phases: [{ probes: 100, every: 5, burst: 10 }, { probes: 3, every: 50, burst: 1 }], sockets: 32 }
    const c = core({ localFirewall: RANDOM, remoteAddresses: [V("8.8.8.8", 4000)] })
    expect(c.start(0, pace)).toBe(true)
    const { probes, endedAt } = run(c, 0)
    expect(c.heldSockets).toBe(32)
    const cycle = probes.slice(31)
    expect(cycle.length).toBe(103)
    cycle.slice(0, 100).forEach((p, j) => {
      expect(p.t).toBe(100 + 5 * Math.floor(j / 10))
      expect(p.socket).toBe(j % 32)
      expect(p.ttl).toBe(j < 32 ? 5 : 64)
    })
    expect(cycle.slice(100).map((p) => [p.t, p.socket])).toEqual([[150, 100 % 32], [200, 101 % 32], [250, 102 % 32]])
    expect(endedAt).toBe(300)
  })

  it("the reference pace is the default: start(now) and start(now, REFERENCE_PACE) send the same", () => {
    const seq = (pace?: PunchPace) => {
      const c = core({ remoteFirewall: RANDOM, random: seededRandom(3) })
      if (pace === undefined) c.start(0)
      else c.start(0, pace)
      return run(c, 0).probes.map((p) => `${p.t}:${p.to.port}`)
    }
    expect(seq(REFERENCE_PACE)).toEqual(seq())
  })

  it("a pace without probes ends the punch at once (Exhausted)", () => {
    const c = core({ remoteFirewall: RANDOM })
    expect(c.start(0, { phases: [], sockets: 256 })).toBe(true)
    expect(c.pollTransmit(0)).toBe(null)
    expect(c.outcome).toEqual({ _tag: "Exhausted" })
  })

  it("property: at any pace the first probe still connects the initiator, whichever phase it arrives in", () => {
    for (const at of [0, 3, 400, 900, 5000, 20_000]) {
      const c = core({ remoteFirewall: RANDOM, remoteAddresses: remote })
      c.start(0, FAST_PACE)
      run(c, 0, { until: at })
      expect(c.onProbeReceived(0, { host: "9.9.9.9", port: 1234 })).toBe(true)
      expect(c.outcome).toEqual({ _tag: "Connected", socket: 0, address: { host: "9.9.9.9", port: 1234 } })
      expect(c.pollTransmit(at + 1000)).toBe(null)
      expect(c.nextDeadline()).toBe(Number.POSITIVE_INFINITY)
    }
  })
})

describe("PunchCore: no strategy", () => {
  it.each([
    ["RANDOM / RANDOM", RANDOM, RANDOM, [V("8.8.8.8", 1)]],
    ["CONSISTENT / RANDOM without a verified address", CONSISTENT, RANDOM, [V("8.8.8.8", 1, false)]],
    ["RANDOM / CONSISTENT without a verified address", RANDOM, CONSISTENT, [V("8.8.8.8", 1, false)]],
    ["UNKNOWN local", UNKNOWN, CONSISTENT, [V("8.8.8.8", 1)]],
    ["UNKNOWN remote", CONSISTENT, UNKNOWN, [V("8.8.8.8", 1)]],
    ["no remote address", CONSISTENT, CONSISTENT, []]
  ] as const)("%s: start returns false and nothing is sent", (_, local, remote, addresses) => {
    const c = core({ localFirewall: local, remoteFirewall: remote, remoteAddresses: addresses })
    expect(c.start(0)).toBe(false)
    expect(c.strategy).toBe(null)
    expect(c.punching).toBe(false)
    expect(c.pollTransmit(0)).toBe(null)
    expect(c.nextDeadline()).toBe(Number.POSITIVE_INFINITY)
    expect(c.start(0)).toBe(false) // decided once
  })

  it("class updates before start decide; start is decided once", () => {
    const c = core({ localFirewall: UNKNOWN })
    expect(c.setLocalFirewall(CONSISTENT)).toBe(true)
    c.updateRemote({ firewall: RANDOM, addresses: [V("8.8.8.8", 1)] })
    expect(c.start(0)).toBe(true)
    expect(c.strategy).toBe("random-probes")
    expect(c.setLocalFirewall(RANDOM)).toBe(false)
    expect(c.start(0)).toBe(true)
  })
})

describe("PunchCore: probes received", () => {
  it("initiator: the first probe wins (socket and source recorded), later ones are ignored, nothing more is sent", () => {
    const c = core({ localFirewall: RANDOM })
    c.start(0)
    run(c, 0, { until: 500 })
    expect(c.onProbeReceived(37, addr("8.8.8.8", 4000))).toBe(true)
    expect(c.outcome).toEqual({ _tag: "Connected", socket: 37, address: { host: "8.8.8.8", port: 4000 } })
    expect(c.connected).toBe(true)
    expect(c.onProbeReceived(0, addr("8.8.8.8", 9))).toBe(false)
    expect(c.outcome).toEqual({ _tag: "Connected", socket: 37, address: { host: "8.8.8.8", port: 4000 } })
    expect(c.pollTransmit(10_000)).toBe(null)
    expect(c.nextDeadline()).toBe(Number.POSITIVE_INFINITY)
    expect(c.stats.probesReceived).toBe(1)
    c.destroy()
    expect(c.outcome?._tag).toBe("Connected") // the first outcome stays
    expect(c.destroyed).toBe(true)
  })

  it("initiator: a probe before start (fast open) connects, and start then declines", () => {
    const c = core({})
    expect(c.onProbeReceived(0, addr("8.8.8.8", 4000))).toBe(true)
    expect(c.start(0)).toBe(false)
  })

  it("probes on sockets not held are ignored", () => {
    const c = core({})
    expect(c.onProbeReceived(1, addr("8.8.8.8", 4000))).toBe(false)
    expect(c.onProbeReceived(-1, addr("8.8.8.8", 4000))).toBe(false)
    expect(c.outcome).toBe(null)
  })

  it("non-initiator: answers each probe with a TTL-64 probe from the same socket, before and during the punch", () => {
    const c = core({ initiator: false, localFirewall: RANDOM })
    expect(c.onProbeReceived(0, addr("5.5.5.5", 1))).toBe(false)
    expect(c.pollTransmit(0)).toEqual({ _tag: "Probe", socket: 0, to: { host: "5.5.5.5", port: 1 }, ttl: 64 })
    c.start(0)
    run(c, 0, { until: 0 }) // opens all birthday sockets
    expect(c.onProbeReceived(200, addr("5.5.5.5", 2))).toBe(false)
    expect(c.onProbeReceived(200, addr("5.5.5.5", 3))).toBe(false)
    expect(c.pollTransmit(0)).toEqual({ _tag: "Probe", socket: 200, to: { host: "5.5.5.5", port: 2 }, ttl: 64 })
    expect(c.pollTransmit(0)).toEqual({ _tag: "Probe", socket: 200, to: { host: "5.5.5.5", port: 3 }, ttl: 64 })
    expect(c.outcome).toBe(null)
    expect(c.stats.echoes).toBe(3)
  })

  it("caller probes: open-session (TTL 5) and ping (TTL 64), refused once ended", () => {
    const c = core({})
    expect(c.openSession(addr("8.8.8.8", 4000))).toBe(true)
    expect(c.ping(addr("8.8.8.8", 4001))).toBe(true)
    expect(c.ping(addr("8.8.8.8", 4001), 3)).toBe(false) // socket 3 not held
    expect([c.pollTransmit(0), c.pollTransmit(0)]).toEqual([
      { _tag: "Probe", socket: 0, to: { host: "8.8.8.8", port: 4000 }, ttl: 5 },
      { _tag: "Probe", socket: 0, to: { host: "8.8.8.8", port: 4001 }, ttl: 64 }
    ])
    c.destroy()
    expect(c.ping(addr("8.8.8.8", 4001))).toBe(false)
  })
})

describe("PunchCore: destroy", () => {
  it("mid-punch: outcome Destroyed, queued actions dropped, no deadline, late sockets refused", () => {
    const c = core({ localFirewall: RANDOM })
    c.start(0)
    expect(c.pollTransmit(0)?._tag).toBe("OpenSocket")
    c.destroy()
    expect(c.outcome).toEqual({ _tag: "Destroyed" })
    expect(c.socketOpened(1, 0)).toBe(false)
    expect(c.pollTransmit(0)).toBe(null)
    expect(c.nextDeadline()).toBe(Number.POSITIVE_INFINITY)
    expect(c.onProbeReceived(0, addr("8.8.8.8", 1))).toBe(false)
  })

  it("after exhaustion: the outcome stays Exhausted", () => {
    const c = core({})
    c.start(0)
    run(c, 0)
    c.destroy()
    expect(c.outcome).toEqual({ _tag: "Exhausted" })
  })

  it("before start: Destroyed, and start declines", () => {
    const c = core({})
    c.destroy()
    expect(c.start(0)).toBe(false)
    expect(c.outcome).toEqual({ _tag: "Destroyed" })
  })
})

describe("PunchCore: properties", () => {
  it("consistent: 10 probes per verified address + 2 per unverified, for any address mix", () => {
    const next = xorshift32(2024)
    for (let k = 0; k < 50; k++) {
      const n = 1 + (next() % 6)
      const addresses = Array.from({ length: n }, (_, i) => V(`8.8.${k}.${i}`, 1000 + i, (next() & 1) === 1))
      const verified = addresses.filter((a) => a.verified).length
      const initiator = (next() & 1) === 1
      const c = core({ initiator, remoteAddresses: addresses })
      expect(c.start(0)).toBe(true)
      const { probes, endedAt } = run(c, 0)
      expect(probes.length).toBe(10 * verified + 2 * (n - verified))
      expect(endedAt).toBe(initiator ? 10_000 : 11_000)
    }
  })

  it("initiator: whenever the first probe arrives, it wins and the core goes quiet", () => {
    const rnd = seededRandom(5)
    for (let k = 0; k < 30; k++) {
      const local = rnd() < 0.5 ? RANDOM : CONSISTENT
      const c = core({ localFirewall: local, remoteFirewall: local === RANDOM ? CONSISTENT : RANDOM })
      c.start(0)
      const at = Math.floor(rnd() * 30_000)
      run(c, 0, { until: at })
      const socket = Math.floor(rnd() * c.heldSockets)
      expect(c.onProbeReceived(socket, addr("8.8.8.8", 4000))).toBe(true)
      expect(c.outcome).toEqual({ _tag: "Connected", socket, address: { host: "8.8.8.8", port: 4000 } })
      expect(run(c, at).log).toEqual([])
    }
  })
})

describe("PunchCore: differential against the reference Holepuncher (fake timers, same Math.random)", () => {
  afterEach(() => {
    vi.useRealTimers()
    vi.restoreAllMocks()
  })

  interface Sent {
    readonly t: number
    readonly socket: number
    readonly host: string
    readonly port: number
    readonly ttl: number
  }

  /** Run the reference strategy to its end; returns every probe sent and when it gave up. */
  const reference = async (o: { initiator: boolean; local: number; remote: number; addresses: Array<RemoteAddress>; seed: number }) => {
    vi.useFakeTimers({ now: 0 })
    vi.spyOn(Math, "random").mockImplementation(seededRandom(o.seed))
    const sent: Array<Sent> = []
    let sockets = 0
    const dht = {
      firewalled: true,
      nodes: { length: 0, latest: null },
      stats: { punches: { consistent: 0, random: 0 } },
      _randomPunches: 0,
      _lastRandomPunch: 0,
      _socketPool: {
        acquire: () => {
          const index = sockets++
          return {
            socket: {
              send: (_b: Uint8Array, port: number, host: string, ttl: number) => {
                sent.push({ t: Date.now(), socket: index, host, port, ttl })
                return Promise.resolve(true)
              }
            },
            release: () => {},
            onholepunchmessage: () => {}
          }
        }
      }
    }
    const Holepuncher = requireRef("hyperdht/lib/holepuncher.js")
    const p = new Holepuncher(dht, null, o.initiator, o.remote)
    p.nat.firewall = o.local
    p.updateRemote({ punching: true, firewall: o.remote, addresses: o.addresses, verified: null })
    p.remoteAddresses = o.addresses.map((a) => ({ ...a }))
    let abortedAt: number | null = null
    p.onabort = () => (abortedAt = Date.now())
    const started: boolean = await p.punch()
    await vi.advanceTimersByTimeAsync(60_000)
    return { started, sent, abortedAt }
  }

  const ours = (o: { initiator: boolean; local: number; remote: number; addresses: Array<RemoteAddress>; seed: number }) => {
    const c = new PunchCore({
      initiator: o.initiator,
      localFirewall: o.local,
      remoteFirewall: o.remote,
      remoteAddresses: o.addresses,
      random: seededRandom(o.seed)
    })
    const started = c.start(0)
    const { probes, endedAt } = run(c, 0)
    return {
      started,
      sent: probes.map((p) => ({ t: p.t, socket: p.socket, host: p.to.host, port: p.to.port, ttl: p.ttl })),
      abortedAt: started ? endedAt : null
    }
  }

  const cases: Array<[string, { initiator: boolean; local: number; remote: number; addresses: Array<RemoteAddress>; seed: number }]> = [
    ["consistent, initiator", { initiator: true, local: CONSISTENT, remote: OPEN, addresses: [V("8.8.8.8", 1), V("10.0.0.2", 2, false), V("8.8.4.4", 3)], seed: 1 }],
    ["consistent, non-initiator", { initiator: false, local: OPEN, remote: CONSISTENT, addresses: [V("10.0.0.2", 2, false), V("8.8.8.8", 1)], seed: 1 }],
    ["random probes", { initiator: true, local: CONSISTENT, remote: RANDOM, addresses: [V("8.8.8.8", 1, false), V("9.9.9.9", 0)], seed: 77 }],
    ["birthday", { initiator: false, local: RANDOM, remote: CONSISTENT, addresses: [V("9.9.9.9", 4000)], seed: 5 }],
    ["double random", { initiator: true, local: RANDOM, remote: RANDOM, addresses: [V("9.9.9.9", 4000)], seed: 5 }]
  ]

  it.each(cases)("%s: the same probes, at the same times, from the same sockets, and the same end", async (_, o) => {
    const ref = await reference(o)
    const mine = ours(o)
    expect(mine.started).toBe(ref.started)
    expect(mine.sent.length).toBe(ref.sent.length)
    expect(mine.sent).toEqual(ref.sent)
    expect(mine.abortedAt).toBe(ref.abortedAt)
  })
})

// ---------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------

describe("decisions", () => {
  it("coerceFirewall / isConsistent", () => {
    expect([UNKNOWN, OPEN, CONSISTENT, RANDOM].map(coerceFirewall)).toEqual([UNKNOWN, CONSISTENT, CONSISTENT, RANDOM])
    expect([UNKNOWN, OPEN, CONSISTENT, RANDOM].map(isConsistent)).toEqual([false, true, true, false])
  })

  it("isUnstable: both RANDOM or own UNKNOWN", () => {
    const table: Array<[number, number, boolean]> = [
      [RANDOM, RANDOM, true],
      [UNKNOWN, CONSISTENT, true],
      [UNKNOWN, UNKNOWN, true],
      [RANDOM, CONSISTENT, false],
      [CONSISTENT, RANDOM, false],
      [RANDOM, UNKNOWN, false],
      [OPEN, RANDOM, false]
    ]
    for (const [l, r, want] of table) expect(isUnstable(l, r)).toBe(want)
    expect(isRandomPunch(CONSISTENT, RANDOM)).toBe(true)
    expect(isRandomPunch(RANDOM, OPEN)).toBe(true)
    expect(isRandomPunch(OPEN, CONSISTENT)).toBe(false)
  })

  it("strategyFor covers the §6.7 table", () => {
    expect(strategyFor(CONSISTENT, CONSISTENT, false)).toBe("consistent")
    expect(strategyFor(OPEN, CONSISTENT, false)).toBe("consistent")
    expect(strategyFor(CONSISTENT, RANDOM, true)).toBe("random-probes")
    expect(strategyFor(OPEN, RANDOM, true)).toBe("random-probes")
    expect(strategyFor(CONSISTENT, RANDOM, false)).toBe(null)
    expect(strategyFor(RANDOM, OPEN, true)).toBe("birthday")
    expect(strategyFor(RANDOM, CONSISTENT, false)).toBe(null)
    expect(strategyFor(RANDOM, RANDOM, true)).toBe(null)
    expect(strategyFor(UNKNOWN, CONSISTENT, true)).toBe(null)
    expect(strategyFor(CONSISTENT, UNKNOWN, true)).toBe(null)
  })

  it("withVerified / firstVerified: a verified host stays verified across updates", () => {
    const first = withVerified([addr("1.1.1.1", 1), addr("2.2.2.2", 2)], "2.2.2.2", [])
    expect(first.map((a) => a.verified)).toEqual([false, true])
    const second = withVerified([addr("2.2.2.2", 3), addr("1.1.1.1", 1)], null, first)
    expect(second).toEqual([V("2.2.2.2", 3), V("1.1.1.1", 1, false)])
    expect(firstVerified(second)).toEqual(V("2.2.2.2", 3))
    expect(firstVerified(withVerified(null, "2.2.2.2", second))).toBe(null)
  })

  it("samplingDelay: twice the handshake's round trip, within its bounds", () => {
    expect(samplingDelay(30)).toBe(60)
    expect(samplingDelay(0)).toBe(SAMPLING_DELAY_MIN)
    expect(samplingDelay(2)).toBe(SAMPLING_DELAY_MIN)
    expect(samplingDelay(5000)).toBe(SAMPLING_DELAY_MAX)
    expect(samplingDelay(Number.NaN)).toBe(SAMPLING_DELAY_MAX)
    expect(samplingDelay(-5)).toBe(SAMPLING_DELAY_MIN)
  })

  it("shouldFastOpen: consistent/open with the client's remoteAddress among ours", () => {
    const ours = [addr("1.1.1.1", 1000), addr("2.2.2.2", 1000)]
    expect(shouldFastOpen(CONSISTENT, ours, addr("2.2.2.2", 1000))).toBe(true)
    expect(shouldFastOpen(OPEN, ours, addr("1.1.1.1", 1000))).toBe(true)
    expect(shouldFastOpen(CONSISTENT, ours, addr("2.2.2.2", 1001))).toBe(false)
    expect(shouldFastOpen(RANDOM, ours, addr("1.1.1.1", 1000))).toBe(false)
    expect(shouldFastOpen(CONSISTENT, null, addr("1.1.1.1", 1000))).toBe(false)
    expect(shouldFastOpen(CONSISTENT, ours, null)).toBe(false)
  })

  it("matchAddress: longest dotted prefix up to 3 octets, else the first 2-/1-octet match, else null", () => {
    const local = [addr("192.168.122.238", 0)]
    const r1 = addr("192.168.0.23", 1)
    const r2 = addr("192.168.122.1", 2)
    const r3 = addr("10.0.0.1", 3)
    expect(matchAddress(local, [r3, r1, r2])).toBe(r2)
    expect(matchAddress(local, [r3, r1])).toBe(r1)
    expect(matchAddress(local, [r3, addr("192.1.1.1", 4), addr("192.2.2.2", 5)])).toEqual(addr("192.1.1.1", 4))
    expect(matchAddress(local, [r3])).toBe(null)
    expect(matchAddress(local, [])).toBe(null)
    // local addresses outer: a 3-octet match for the first local address wins over a better later one
    expect(matchAddress([addr("10.0.0.9", 0), ...local], [r2, r3])).toBe(r3)
  })

  it("property: matchAddress agrees with the reference on random address sets", () => {
    const next = xorshift32(11)
    const ip = () => [10, 192, 172][next() % 3] + "." + (next() % 3) + "." + (next() % 3) + "." + (next() % 3)
    for (let k = 0; k < 2000; k++) {
      const local = Array.from({ length: next() % 3 }, (_, i) => addr(ip(), i))
      const remote = Array.from({ length: next() % 4 }, (_, i) => addr(ip(), 100 + i))
      expect(matchAddress(local, remote)).toBe(RefHolepuncher.matchAddress(local, remote))
    }
  })

  it("bogon ranges: private, reserved, and their union match the reference", () => {
    const samples = [
      "10.1.2.3", "100.63.255.255", "100.64.0.1", "100.127.255.255", "100.128.0.0", "127.0.0.1", "169.254.1.1",
      "169.253.1.1", "172.15.0.1", "172.16.0.1", "172.31.255.255", "172.32.0.0", "192.168.1.1", "192.169.0.1",
      "0.1.2.3", "192.0.0.8", "192.0.1.1", "192.0.2.55", "198.17.0.1", "198.18.0.1", "198.19.255.255", "198.20.0.0",
      "198.51.100.7", "198.51.101.7", "203.0.113.9", "203.0.114.9", "223.255.255.255", "224.0.0.1", "239.1.1.1",
      "240.0.0.1", "255.255.255.255", "8.8.8.8", "1.1.1.1"
    ]
    const next = xorshift32(3)
    for (let k = 0; k < 3000; k++) samples.push([next() & 255, next() & 255, next() & 255, next() & 255].join("."))
    for (const h of samples) {
      expect([h, isPrivate(h), isReserved(h), isBogon(h)]).toEqual([h, bogon.isPrivate(h), bogon.isReserved(h), bogon.isBogon(h)])
    }
  })

  it("non-IPv4 strings count as reserved, never private; firstPublicAddress skips bogons", () => {
    expect(parseIPv4("1.2.3")).toBe(null)
    expect(parseIPv4("1.2.3.256")).toBe(null)
    expect(parseIPv4("::1")).toBe(null)
    expect(isReserved("example.org")).toBe(true)
    expect(isPrivate("example.org")).toBe(false)
    const fallback = addr("5.5.5.5", 5)
    expect(firstPublicAddress([addr("192.168.1.2", 1), addr("0.0.0.0", 2), addr("8.8.8.8", 3)], fallback)).toEqual(addr("8.8.8.8", 3))
    expect(firstPublicAddress([addr("10.0.0.2", 1)], fallback)).toBe(fallback)
  })
})

describe("RandomPunchLimiter", () => {
  it("reference(): one at a time, then 20 s after the last one ended, at the reference's pace", () => {
    const l = RandomPunchLimiter.reference()
    expect(l.acquire(0)?.pace).toEqual(REFERENCE_PACE)
    l.abandon()
    expect(l.isLimited(0)).toBe(false) // a virtual clock at 0 is not "just after" a punch
    expect(l.tryAcquire(0)).toBe(true)
    expect(l.tryAcquire(1)).toBe(false)
    expect(l.active).toBe(1)
    l.release(5000)
    expect(l.active).toBe(0)
    expect(l.lastEnded).toBe(5000)
    expect(l.readyAt()).toBe(25_000)
    expect(l.tryAcquire(24_999)).toBe(false)
    expect(l.tryAcquire(25_000)).toBe(true)
  })

  it("abandon frees the slot without starting the interval; defer starts it", () => {
    const l = new RandomPunchLimiter({ interval: 1000, limit: 2 })
    expect(l.tryAcquire(0)).toBe(true)
    expect(l.tryAcquire(0)).toBe(true)
    expect(l.tryAcquire(0)).toBe(false)
    l.abandon()
    expect(l.tryAcquire(0)).toBe(true)
    l.abandon()
    l.abandon()
    l.abandon() // never below zero
    expect(l.active).toBe(0)
    l.defer(100)
    expect(l.isLimited(1099)).toBe(true)
    expect(l.isLimited(1100)).toBe(false)
  })
})

describe("RandomPunchLimiter: the node's budget (default)", () => {
  it("back to back: no interval, a grant right after the last one ended", () => {
    const l = new RandomPunchLimiter()
    const a = l.acquire(0)!
    expect(a.pace).toEqual(FAST_PACE)
    l.release(10, a)
    const b = l.acquire(10)
    expect(b).not.toBe(null)
    expect(l.active).toBe(1)
  })

  it("concurrent punches up to the probe-rate budget; a slowed punch gives its rate back; at most `limit` at once", () => {
    const l = new RandomPunchLimiter()
    const grants = [0, 1, 2, 3].map(() => l.acquire(0)!)
    expect(grants.every((g) => g.rate === 2000)).toBe(true)
    expect(l.probeRate).toBe(8000)
    expect(l.acquire(0)).toBe(null)
    l.lower(grants[0]!, 10)
    const capped = l.acquire(0)!
    expect(capped.rate).toBe(1800) // 1990 left: bursts of 9 every 5 ms
    expect(capped.pace.phases[0]).toEqual({ probes: 1750, every: 5, burst: 9 })
    expect(capped.pace.phases[1]).toEqual(FAST_PACE.phases[1])
    for (const g of grants) l.lower(g, 0)
    l.lower(capped, 0)
    for (let i = l.active; i < 8; i++) expect(l.acquire(0)).not.toBe(null)
    expect(l.active).toBe(8)
    expect(l.acquire(0)).toBe(null)
  })

  it("birthday punches reserve their sockets: four at once, a fifth refused (a random-probes one still granted)", () => {
    const l = new RandomPunchLimiter({ maxProbeRate: Infinity })
    const b = [0, 1, 2, 3].map(() => l.acquire(0, true)!)
    expect(b.every((g) => g.sockets === 256)).toBe(true)
    expect(l.sockets).toBe(1024)
    expect(l.acquire(0, true)).toBe(null)
    const r = l.acquire(0, false)!
    expect(r.sockets).toBe(1)
    l.release(5, b[0])
    l.release(5, r)
    expect(l.acquire(5, true)?.pace.sockets).toBe(256)
  })

  it("fewer sockets left than a full birthday: the punch gets what is left (at least 64)", () => {
    const l = new RandomPunchLimiter({ maxSockets: 300, maxProbeRate: Infinity })
    expect(l.acquire(0, true)?.sockets).toBe(256)
    expect(l.isLimited(0, true)).toBe(true) // 44 left
    const l2 = new RandomPunchLimiter({ maxSockets: 400, maxProbeRate: Infinity })
    l2.acquire(0, true)
    expect(l2.acquire(0, true)?.pace.sockets).toBe(144)
  })

  it("release and abandon are idempotent per grant; neither frees another punch's grant", () => {
    const l = new RandomPunchLimiter()
    const a = l.acquire(0)!
    const b = l.acquire(0)!
    l.release(1, a)
    l.release(2, a)
    l.abandon(a)
    expect(l.active).toBe(1)
    expect(l.probeRate).toBe(b.rate)
  })

  it("capPace: bursts shrink first, then the spacing grows; never below one probe per step", () => {
    expect(capPace(FAST_PACE, 10_000)).toEqual(FAST_PACE)
    expect(paceRate(capPace(FAST_PACE, 1000))).toBe(1000)
    const slow = capPace(FAST_PACE, MIN_PROBE_RATE)
    expect(slow.phases[0]).toEqual({ probes: 1750, every: 20, burst: 1 })
    expect(slow.phases[1]).toEqual(FAST_PACE.phases[1])
    expect(paceRate(slow)).toBeLessThanOrEqual(MIN_PROBE_RATE)
  })
})
