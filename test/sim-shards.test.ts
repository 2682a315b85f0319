/**
 * A simulated network split into shards (SimShard in src/layers/transport/sim.ts):
 * here the shards share one thread and one TestClock, advanced in windows no
 * longer than the smallest one-way delay, with the outboxes moved at each
 * window's end, which is what bench/sim-sharded.mjs does with one worker
 * thread per shard.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { TestClock } from "effect/testing"
import { makeNode, type NodeHandle } from "../src/actors/routing/driver.js"
import { GatewayService } from "../src/api/GatewayService.js"
import { InvalidArgument } from "../src/api/keys.js"
import { Crypto } from "../src/layers/Crypto.js"
import { makeFast } from "../src/layers/crypto/fast.js"
import type { Datagram, UdpSocket } from "../src/layers/Transport.js"
import { Transport } from "../src/layers/Transport.js"
import { SimNetwork, type SimNetworkOptions, type SimNetworkService } from "../src/layers/transport/sim.js"

const bytes = (...xs: Array<number>) => new Uint8Array(xs)
const empty: ReadonlyArray<Datagram> = []
const poll = (s: UdpSocket) => Effect.raceFirst(s.receive, Effect.succeed(empty))

/** Shard 0 owns 20.0.x.x, 30.0.0.x (NAT public IPs) and 10.x.x.x (its NATs' LANs), shard 1 owns 20.1.x.x and 30.1.0.x. */
const ownerOf = (ip: string): number => (/^(20|30)\.0\.|^10\./.test(ip) ? 0 : /^(20|30)\.1\./.test(ip) ? 1 : -1)

const shards = (options: SimNetworkOptions = {}) =>
  Effect.gen(function*() {
    const a = yield* SimNetwork.make({ latency: 20, ...options, seed: `${options.seed ?? 1}/0`, shard: { index: 0, owner: ownerOf } })
    const b = yield* SimNetwork.make({ latency: 20, ...options, seed: `${options.seed ?? 1}/1`, shard: { index: 1, owner: ownerOf } })
    const nets: ReadonlyArray<SimNetworkService> = [a, b]
    /** One window: advance the clock, then hand each shard what the others sent it (by source shard, in send order). */
    const step = (ms: number) =>
      Effect.gen(function*() {
        yield* TestClock.adjust(ms)
        const outs = nets.map((n) => n.takeOutbox())
        nets.forEach((n, i) => {
          for (const o of outs) {
            const batch = o.get(i)
            if (batch !== undefined) n.inject(batch)
          }
        })
        yield* Effect.yieldNow // let a due scheduler run
      })
    const invariant = () => {
      const s = nets.map((n) => n.stats())
      const sum = (f: (x: (typeof s)[number]) => number) => s.reduce((acc, x) => acc + f(x), 0)
      assert.strictEqual(sum((x) => x.sent + x.duplicated), sum((x) => x.delivered + x.droppedTotal + x.inFlight), JSON.stringify(s))
    }
    return { a, b, step, invariant }
  })

describe("SimNetwork shards", () => {
  it.effect("a datagram to another shard's host arrives after the same delay as on one network, and the reply too", () =>
    Effect.gen(function*() {
      const { a, b, step, invariant } = yield* shards()
      const x = yield* (yield* a.addHost({ ip: "20.0.0.1" })).bind({ port: 1000 })
      const y = yield* (yield* b.addHost({ ip: "20.1.0.1" })).bind({ port: 2000 })
      x.send(y.local, bytes(1, 2, 3))
      assert.strictEqual(a.stats().sent, 1)
      yield* step(10) // t = 10: handed to shard 1
      assert.deepStrictEqual(yield* poll(y), [])
      yield* step(9) // t = 19
      assert.deepStrictEqual(yield* poll(y), [])
      yield* step(1) // t = 20
      const got = yield* poll(y)
      assert.strictEqual(got.length, 1)
      assert.deepStrictEqual(Array.from(got[0]!.data), [1, 2, 3])
      assert.deepStrictEqual(got[0]!.from, { host: "20.0.0.1", port: 1000 })
      y.send(got[0]!.from, bytes(9))
      for (let i = 0; i < 19; i++) yield* step(1)
      assert.deepStrictEqual(yield* poll(x), [])
      yield* step(1) // t = 40
      assert.deepStrictEqual((yield* poll(x)).map((d) => d.data[0]), [9])
      assert.strictEqual(b.stats().delivered + a.stats().delivered, 2)
      invariant()
    }))

  it.effect("unknown and private addresses of another shard are unreachable; a NAT filters across shards as on one network", () =>
    Effect.gen(function*() {
      const { a, b, step, invariant } = yield* shards()
      const natted = yield* a.addHost({ nat: "consistent", publicIp: "30.0.0.1" })
      const sn = yield* natted.bind()
      const y = yield* (yield* b.addHost({ ip: "20.1.0.1" })).bind()
      const z = yield* (yield* b.addHost({ ip: "20.1.0.2" })).bind()
      y.send({ host: "20.9.0.1", port: 1 }, bytes(0)) // no shard owns it
      y.send({ host: natted.ip, port: sn.local.port }, bytes(0)) // a private address on shard 0: unreachable there
      sn.send(y.local, bytes(1)) // opens the mapping toward y only
      yield* step(20)
      yield* step(1)
      assert.strictEqual(b.stats().dropped.unreachable, 1)
      assert.strictEqual(a.stats().dropped.unreachable, 1)
      const [hello] = yield* poll(y)
      assert.strictEqual(hello!.from.host, "30.0.0.1")
      y.send(hello!.from, bytes(2)) // a reply: passes the NAT
      z.send(hello!.from, bytes(3)) // unsolicited: filtered on arrival, on shard 0
      yield* step(20)
      yield* step(1)
      assert.deepStrictEqual((yield* poll(sn)).map((d) => d.data[0]), [2])
      assert.strictEqual(a.stats().dropped.firewall, 1)
      invariant()
    }))

  it.effect("an injected datagram from the past is refused", () =>
    Effect.gen(function*() {
      const { b } = yield* shards()
      yield* TestClock.adjust(100)
      const exit = yield* Effect.exit(Effect.sync(() => b.inject({ count: 1, at: Float64Array.of(50), addr: Uint32Array.of(0x14000001, 1, 0x14010001, 1), ends: Uint32Array.of(1), bytes: bytes(1) })))
      assert.isTrue(exit._tag === "Failure")
    }))

  it.effect("with jitter, loss and duplication, the same seeds replay the same traces", () =>
    Effect.gen(function*() {
      const run = (seed: number) =>
        Effect.scoped(Effect.gen(function*() {
          const { a, b, step, invariant } = yield* shards({ seed, latency: 15, jitter: 30, lossRate: 0.1, duplicateRate: 0.1 })
          const trace: Array<string> = []
          const sockets: Array<UdpSocket> = []
          for (let i = 0; i < 16; i++) {
            const net = i % 2 === 0 ? a : b
            const s = yield* (yield* net.addHost({ ip: `20.${i % 2}.0.${i + 1}` })).bind({ port: 1000 })
            sockets.push(s)
          }
          let t = 0
          for (let round = 0; round < 40; round++) {
            if (round < 10) {
              for (let i = 0; i < 16; i++) sockets[i]!.send(sockets[(i * 5 + round * 3 + 1) % 16]!.local, bytes(1, i, round))
            }
            yield* step(15)
            t += 15
            for (const s of sockets) {
              for (const d of yield* poll(s)) {
                trace.push(`${t} ${s.local.host} <- ${d.from.host} ${Array.from(d.data).join(",")}`)
                if (d.data[0] === 1) s.send(d.from, bytes(2, ...d.data.subarray(1)))
              }
            }
          }
          invariant()
          assert.strictEqual(a.stats().inFlight + b.stats().inFlight, 0)
          return trace
        }))
      const one = yield* run(1)
      const again = yield* run(1)
      const other = yield* run(2)
      assert.isAbove(one.length, 150)
      assert.isTrue(one.some((l) => / 20\.0\..* <- 20\.1\./.test(l)) && one.some((l) => / 20\.1\..* <- 20\.0\./.test(l)))
      assert.deepStrictEqual(one, again)
      assert.notDeepEqual(one, other)
    }))

  it.effect("DHT nodes split over two shards bootstrap, with the same datagram count on a second run", () =>
    Effect.gen(function*() {
      const crypto = yield* Effect.promise(() => makeFast())
      const run = Effect.scoped(Effect.gen(function*() {
        const { a, b, step } = yield* shards({ latency: 20, jitter: 10 })
        const nodes: Array<NodeHandle> = []
        const start = (net: SimNetworkService, ip: string, config: Parameters<typeof makeNode>[0], seed: number) =>
          Effect.gen(function*() {
            const host = yield* net.addHost({ ip })
            nodes.push(yield* makeNode({ ...config, randomSeed: seed }).pipe(Effect.provideService(Transport, host), Effect.provideService(Crypto, crypto)))
          })
        const bootConfig = GatewayService.bootstrapperConfig(49737, "20.0.255.1")
        if (bootConfig instanceof InvalidArgument) return assert.fail(bootConfig.message)
        yield* start(a, "20.0.255.1", bootConfig, 1)
        for (let i = 0; i < 60; i++) {
          yield* start(i % 2 === 0 ? a : b, `20.${i % 2}.0.${i + 1}`, { ephemeral: false, port: 49737, bootstrap: ["20.0.255.1:49737"] }, i + 2)
        }
        let t = 0
        while (nodes.some((n) => !n.core.bootstrapped) && t < 60_000) {
          yield* step(20)
          t += 20
        }
        const tables = nodes.map((n) => n.core.table.toArray().map((x) => x.host))
        return { ready: nodes.filter((n) => n.core.bootstrapped).length, t, sent: a.stats().sent + b.stats().sent, tables }
      }))
      const first = yield* run
      const second = yield* run
      assert.strictEqual(first.ready, 61)
      // tables span both shards
      assert.isTrue(first.tables.every((hosts) => hosts.length > 0))
      assert.isTrue(first.tables.slice(1).some((hosts) => hosts.some((h) => h.startsWith("20.0.")) && hosts.some((h) => h.startsWith("20.1."))))
      assert.deepStrictEqual(second, first)
    }), 60_000)
})
