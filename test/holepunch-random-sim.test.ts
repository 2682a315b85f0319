/**
 * Random punches (one randomizing NAT) on the deterministic simulated
 * network (connect.md §6.5 step 10.2, §6.7), with the node's random-punch
 * budget (`RandomPunchLimiter`) instead of the reference's one punch per
 * 20 s:
 *
 * - speed over seeds: consistent <-> random in both directions, fresh
 *   nodes, seeds 1-8: every dial opens punched, within 1.5 s of virtual
 *   time, the median within 0.8 s (the sim's links have 20 ms latency +
 *   jitter; a consistent <-> consistent punch opens in ~0.3 s);
 * - reused nodes: one server node and one client node, 10 dials 1 s apart
 *   (each connection closed before the next): every one opens punched;
 * - concurrent: three random-NAT clients dial one consistent server at once
 *   (three random punches on the server node at a time): all open;
 * - the reference's rule (`randomPunchInterval` set): the second dial of a
 *   reused pair 1 s later is refused (HOLEPUNCH_ABORTED), as hyperdht does.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  advanceUntil,
  beginDial,
  buildConnectSim,
  connect,
  type ConnectSim,
  listen,
  type NatKind,
  outcomeOf,
  serverSocketOf,
  type SimDial,
  type SimPeer,
  type SimServer
} from "./support/connect-sim.js"

const lines: Array<string> = []
afterAll(() => {
  if (lines.length > 0) console.log(["holepunch-random-sim (virtual ms)", ...lines].join("\n"))
})

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? Number.NaN : s[Math.floor((s.length - 1) / 2)]!
}

/** Close both ends of an opened dial and let the close settle. */
const closeDial = (d: SimDial) =>
  Effect.gen(function*() {
    const s = serverSocketOf(d)
    d.socket.destroy()
    s?.destroy()
    yield* advanceUntil(() => false, 200, 50)
  })

const describeOutcome = (d: SimDial): string => {
  const o = outcomeOf(d)
  if (o.ok) return `${o.path}/${o.serverPath} ${o.ms} ms`
  return `${o.code} after ${o.ms} ms (${o.report?.attempts.map((a) => `${a.path}: ${a.outcome}`).join("; ") ?? ""})`
}

/** Reused nodes: `n` dials from one client node to one server, `gapMs` apart. */
const reusedDials = (sim: ConnectSim, client: SimPeer, server: SimServer, n: number, gapMs: number) =>
  Effect.gen(function*() {
    const out: Array<SimDial> = []
    for (let i = 0; i < n; i++) {
      const { dial, outcome } = yield* connect(sim, client, server, { maxMs: 60_000 })
      out.push(dial)
      if (outcome.ok) yield* closeDial(dial)
      yield* advanceUntil(() => false, gapMs, 50)
    }
    return out
  })

describe("random punches on the simulated network: speed", () => {
  for (const [serverNat, clientNat] of [["consistent", "random"], ["random", "consistent"]] as const) {
    it.effect(`${serverNat} server <- ${clientNat} client, fresh nodes, seeds 1-8: all punched, each within 1.5 s, median within 0.8 s`, () =>
      Effect.gen(function*() {
        const times: Array<number> = []
        const bad: Array<string> = []
        for (let seed = 1; seed <= 8; seed++) {
          const o = yield* Effect.scoped(Effect.gen(function*() {
            const sim = yield* buildConnectSim({ seed, nodes: 12 })
            const sp = yield* sim.addPeer(serverNat, { name: "server" })
            const cp = yield* sim.addPeer(clientNat, { name: "client" })
            const server = yield* listen(sp)
            const { outcome } = yield* connect(sim, cp, server, { maxMs: 60_000 })
            return outcome
          }))
          if (!o.ok || o.path !== "punched") bad.push(`seed ${seed}: ${o.ok ? o.path : o.code}`)
          else times.push(o.ms)
        }
        lines.push(`${serverNat} <- ${clientNat}, seeds 1-8: ${times.join(", ")} (median ${median(times)})`)
        assert.deepStrictEqual(bad, [])
        assert.isAtMost(Math.max(...times), 1_500, "slowest dial")
        assert.isAtMost(median(times), 800, "median dial")
      }), { timeout: 120_000 })
  }
})

describe("random punches on the simulated network: one node, many punches", () => {
  const pairs: ReadonlyArray<readonly [NatKind, NatKind]> = [["consistent", "random"], ["random", "consistent"]]
  for (const [serverNat, clientNat] of pairs) {
    it.effect(`reused nodes (${serverNat} server <- ${clientNat} client), 10 dials 1 s apart: 10/10 punched`, () =>
      Effect.gen(function*() {
        const sim = yield* buildConnectSim({ seed: 21, nodes: 12 })
        const sp = yield* sim.addPeer(serverNat, { name: "server" })
        const cp = yield* sim.addPeer(clientNat, { name: "client" })
        const server = yield* listen(sp)
        const dials = yield* reusedDials(sim, cp, server, 10, 1000)
        lines.push(`reused ${serverNat} <- ${clientNat}: ${dials.map(describeOutcome).join(" | ")}`)
        const ok = dials.filter((d) => outcomeOf(d).ok && outcomeOf(d).path === "punched").length
        assert.strictEqual(ok, 10, dials.map(describeOutcome).join("\n"))
        // every punch gave its grant back
        assert.strictEqual(sp.conn.randomPunches.active, 0, "server grants held")
        assert.strictEqual(cp.conn.randomPunches.active, 0, "client grants held")
        assert.deepStrictEqual(sim.livelocks, [])
      }), { timeout: 120_000 })
  }

  it.effect("three random-NAT clients dial one consistent server at once: three concurrent random punches on the server node, all open", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 22, nodes: 12 })
      const sp = yield* sim.addPeer("consistent", { name: "server" })
      const clients = [
        yield* sim.addPeer("random", { name: "c1" }),
        yield* sim.addPeer("random", { name: "c2" }),
        yield* sim.addPeer("random", { name: "c3" })
      ]
      const server = yield* listen(sp)
      const dials = clients.map((c) => beginDial(sim, c, server))
      let peak = 0
      yield* advanceUntil(() => {
        peak = Math.max(peak, sp.conn.randomPunches.active)
        return dials.every((d) => d.openedAt !== null || d.failedAt !== null)
      }, 30_000, 10)
      // the server learns each path from its client's first packet
      yield* advanceUntil(() => dials.every((d) => d.failedAt !== null || serverSocketOf(d) !== null), 5_000, 10)
      lines.push(`concurrent: ${dials.map(describeOutcome).join(" | ")} (peak ${peak} random punches on the server)`)
      for (const d of dials) {
        assert.isTrue(outcomeOf(d).ok, describeOutcome(d))
        assert.strictEqual(outcomeOf(d).serverPath, "punched", describeOutcome(d))
      }
      assert.strictEqual(server.connections.length, 3)
      assert.isAtLeast(peak, 2, "random punches overlapped on the server node")
      assert.isAtMost(Math.max(...dials.map((d) => outcomeOf(d).ms)), 1_500)
      assert.isAtMost(sp.conn.randomPunches.probeRate, sp.conn.randomPunches.maxProbeRate)
    }), { timeout: 120_000 })

  it.effect("a server with one random punch at a time answers the second client TRY_LATER, keeps its handshake, and both dials open", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 23, nodes: 12 })
      const sp = yield* sim.addPeer("consistent", { name: "server", host: { randomPunchBudget: { limit: 1 } } })
      const clients = [yield* sim.addPeer("random", { name: "c1" }), yield* sim.addPeer("random", { name: "c2" })]
      const server = yield* listen(sp)
      const dials = clients.map((c) => beginDial(sim, c, server))
      yield* advanceUntil(() => dials.every((d) => d.openedAt !== null || d.failedAt !== null), 30_000, 10)
      lines.push(`try later: ${dials.map(describeOutcome).join(" | ")} (server answered TRY_LATER ${sp.conn.stats.punches.tryLater} times)`)
      for (const d of dials) assert.isTrue(outcomeOf(d).ok, describeOutcome(d))
      assert.isAtLeast(sp.conn.stats.punches.tryLater, 1, "the second punch was deferred")
      // the deferred one came back after its back-off (1–2 s), not after the reference's 10–20 s
      assert.isAtMost(Math.max(...dials.map((d) => outcomeOf(d).ms)), 6_000)
      // the server's punches end once it learns each path from its client's first packet
      yield* advanceUntil(() => sp.conn.randomPunches.active === 0, 5_000, 10)
      assert.strictEqual(sp.conn.randomPunches.active, 0, "server grants given back")
    }), { timeout: 120_000 })

  it.effect("the reference's rule (randomPunchInterval 20 s): the second dial of a reused pair, 1 s later, is refused", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 21, nodes: 12 })
      const sp = yield* sim.addPeer("consistent", { name: "server", host: { randomPunchInterval: 20_000 } })
      const cp = yield* sim.addPeer("random", { name: "client", host: { randomPunchInterval: 20_000 } })
      const server = yield* listen(sp)
      const dials = yield* reusedDials(sim, cp, server, 2, 1000)
      lines.push(`reference rule: ${dials.map(describeOutcome).join(" | ")}`)
      assert.isTrue(outcomeOf(dials[0]!).ok, describeOutcome(dials[0]!))
      // the reference's pace: 20 ms per probe, so the first punch is slower than ours
      assert.isFalse(outcomeOf(dials[1]!).ok, describeOutcome(dials[1]!))
      assert.strictEqual(outcomeOf(dials[1]!).code, "HOLEPUNCH_ABORTED")
    }), { timeout: 120_000 })
})
