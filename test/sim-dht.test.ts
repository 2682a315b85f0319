/**
 * DHT simulations on TestClock with the simulated network (Must-show of the
 * DHT node work): bootstrap, exact lookups, persistence timing, churn, loss
 * and determinism. Each node is a full Omega node actor on a simulated host.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeFast } from "../src/layers/crypto/fast.js"
import { toHex } from "../src/protocol/encoding.js"
import { VirtualClock } from "../src/layers/VirtualClock.js"
import { advance, buildNetwork, lookup, type SimDht, targetOf } from "./support/sim-dht.js"

const N = Number(process.env.SIM_NODES ?? 1000)

const lookups = (dht: SimDht, trials: number, salt: number) =>
  Effect.gen(function*() {
    const alive = dht.nodes.filter((n) => n.alive)
    let exact = 0
    const outcomes: Array<string> = []
    for (let i = 0; i < trials; i++) {
      const from = alive[(i * 37 + salt) % alive.length]!
      const r = yield* lookup(dht, from, targetOf(dht.crypto, i + salt * 1000))
      if (r.exact) exact++
      outcomes.push(`${r.exact ? 1 : 0}:${r.found}:${r.replies}`)
    }
    return { exact, outcomes }
  })

describe("DHT simulation on TestClock", () => {
  it.effect(`${N} nodes bootstrap; lookups of random targets return the true k closest`, () =>
    Effect.gen(function*() {
      const crypto = yield* Effect.promise(() => makeFast())
      const dht = yield* buildNetwork(crypto, N, { node: { ephemeral: false }, joinEvery: 50 })
      yield* advance(120_000)
      assert.strictEqual(dht.nodes.filter((n) => n.handle.core.bootstrapped).length, N + 1)
      assert.strictEqual(dht.nodes.filter((n) => n.handle.core.id !== null).length, N + 1)
      const { exact } = yield* lookups(dht, 100, 0)
      assert.isAtLeast(exact, 99)
    }), { timeout: 600_000 })

  it.effect("adaptive nodes turn persistent after the stable window and not before", () =>
    Effect.gen(function*() {
      const crypto = yield* Effect.promise(() => makeFast())
      const dht = yield* buildNetwork(crypto, 50, { seed: 2 })
      const joiners = dht.nodes.slice(1)
      yield* advance(60_000)
      assert.isTrue(joiners.every((n) => n.handle.core.bootstrapped))
      // STABLE_TICKS = 240 ticks of 5 s after bootstrap: nobody is persistent at 19 minutes
      yield* advance(18 * 60_000, 5_000)
      assert.isTrue(joiners.every((n) => n.handle.core.ephemeral), "persistent before the stable window")
      yield* advance(4 * 60_000, 5_000)
      const persistent = joiners.filter((n) => !n.handle.core.ephemeral).length
      assert.strictEqual(persistent, joiners.length)
      for (const n of joiners) assert.strictEqual(toHex(n.handle.core.id!), toHex(n.id))
    }), { timeout: 300_000 })

  it.effect("with 30% of the nodes killed mid-run, lookups still succeed", () =>
    Effect.gen(function*() {
      const crypto = yield* Effect.promise(() => makeFast())
      const dht = yield* buildNetwork(crypto, 300, { node: { ephemeral: false }, joinEvery: 20, seed: 3 })
      yield* advance(60_000)
      let killed = 0
      for (let i = 1; i < dht.nodes.length; i++) {
        if (i % 10 < 3) {
          const n = dht.nodes[i]!
          n.alive = false
          killed++
          yield* dht.net.kill(n.ip)
        }
      }
      assert.isAtLeast(killed / dht.nodes.length, 0.29)
      // Right after the kill every routing table still lists the dead 30%, so a
      // closer-node list of 20 can crowd out the last live ones (nodes ranked
      // just past 20th in every table are never named): lookups all complete
      // with k live nodes and miss at most two of the true k closest, one on
      // average at the very most. Down hints and liveness checks clean the
      // tables within ~2 minutes; from then on lookups are exact.
      const alive = dht.nodes.filter((n) => n.alive)
      let early = 0
      let earlyFound = 0
      let exact = 0
      for (let i = 0; i < 120; i++) {
        yield* advance(6_000)
        const from = alive[(i * 37 + 1) % alive.length]!
        const r = yield* lookup(dht, from, targetOf(crypto, i + 1000))
        if (i < 20) {
          assert.isAtLeast(r.found, 18, `lookup ${i} right after the kill`)
          earlyFound += r.found
          if (r.exact) early++
        } else if (r.exact) exact++
      }
      assert.isAtLeast(earlyFound / 20, 19.5)
      assert.isAtLeast(early, 15)
      assert.isAtLeast(exact, 99)
    }), { timeout: 300_000 })

  it.effect("with 10% loss requests are retried and lookups still succeed", () =>
    Effect.gen(function*() {
      const crypto = yield* Effect.promise(() => makeFast())
      const dht = yield* buildNetwork(crypto, 200, { node: { ephemeral: false }, joinEvery: 20, seed: 4, net: { lossRate: 0.1 } })
      yield* advance(90_000)
      assert.strictEqual(dht.nodes.filter((n) => n.handle.core.bootstrapped).length, 201)
      const { exact } = yield* lookups(dht, 100, 2)
      const retries = dht.nodes.reduce((s, n) => s + n.handle.core.io.stats.requests.retries, 0)
      assert.isAbove(dht.net.stats().dropped.loss, 1000)
      assert.isAbove(retries, 1000)
      assert.isAtLeast(exact, 99)
    }), { timeout: 300_000 })

  it.effect("the same seed gives the same result twice", () =>
    Effect.gen(function*() {
      const crypto = yield* Effect.promise(() => makeFast())
      const run = (seed: number) =>
        Effect.scoped(Effect.gen(function*() {
          const dht = yield* buildNetwork(crypto, 60, { node: { ephemeral: false }, joinEvery: 20, seed, net: { lossRate: 0.05, seed } })
          yield* advance(60_000)
          const { outcomes } = yield* lookups(dht, 20, 3)
          const tables = dht.nodes.map((n) => `${n.handle.core.table.size}:${toHex(n.handle.core.table.id).slice(0, 8)}`)
          return JSON.stringify({ outcomes, tables, stats: dht.net.stats(), io: dht.nodes.map((n) => n.handle.core.io.stats.requests) })
        }))
      const a = yield* run(11)
      const b = yield* run(11)
      const c = yield* run(12)
      assert.strictEqual(a, b)
      assert.notStrictEqual(a, c)
      // the same simulation on a VirtualClock (what the scale benchmarks use):
      // every lookup outcome, table, datagram and request count is the same
      const v = yield* run(11).pipe(Effect.provide(VirtualClock.layer()))
      assert.strictEqual(v, a)
    }), { timeout: 300_000 })
})
