// Largest simulated network that bootstraps in one process within a time budget.
// Usage: node --expose-gc [--max-semi-space-size=64] bench/sim-scale.mjs [nodes] [joinsPerVirtualSecond]
//
// Nodes join a bootstrapper at `joinsPerVirtualSecond` (default 20) on a
// TestClock-driven simulated network (latency 20 ms, jitter 10 ms); the run
// ends when every node has bootstrapped. `npm run bench:sim` runs 5000 nodes
// at 50 joins/s with a 64 MiB young generation: a simulation allocates a few
// short-lived objects per datagram, and V8's default semi-space (16 MiB)
// made scavenges a fifth of the run. IDLE=n adds n rounds of 10 idle virtual
// seconds after the bootstrap and prints the wall time of each.
// Time is a VirtualClock (TestClock's semantics, cheaper wake-ups); CLOCK=test
// runs the same simulation on Effect's TestClock (same datagram count).
import { Effect, Scope } from "effect"
import { TestClock } from "effect/testing"
import { VirtualClock } from "../dist/layers/VirtualClock.js"
import { makeNode } from "../dist/actors/routing/driver.js"
import { GatewayService } from "../dist/api/GatewayService.js"
import { Crypto } from "../dist/layers/Crypto.js"
import { makeFast } from "../dist/layers/crypto/fast.js"
import { SimNetwork } from "../dist/layers/transport/sim.js"
import { Transport } from "../dist/layers/Transport.js"

const onTestClock = process.env.CLOCK === "test"
const adjust = (ms) => (onTestClock ? TestClock.adjust(ms) : VirtualClock.adjust(ms))
const N = Number(process.argv[2] ?? 1000)
const JOIN_PER_SECOND = Number(process.argv[3] ?? 20)
const crypto = await makeFast()
const ipOf = (i) => `20.${1 + ((i >> 16) & 0xff)}.${(i >> 8) & 0xff}.${i & 0xff}`

const program = Effect.gen(function* () {
  const net = yield* SimNetwork.make({ latency: 20, jitter: 10, seed: 1 })
  const nodes = []
  const t0 = Date.now()
  const heap0 = process.memoryUsage().heapUsed
  const start = (ip, config, seed) => Effect.gen(function* () {
    const host = yield* net.addHost({ ip })
    const h = yield* makeNode({ ...config, randomSeed: seed }).pipe(Effect.provideService(Transport, host), Effect.provideService(Crypto, crypto))
    nodes.push(h)
  })
  yield* start("20.255.0.1", GatewayService.bootstrapperConfig(49737, "20.255.0.1"), 1)
  for (let i = 0; i < N; i++) {
    yield* start(ipOf(i + 1), { ephemeral: false, port: 49737, bootstrap: ["20.255.0.1:49737"] }, i + 2)
    if (i % JOIN_PER_SECOND === JOIN_PER_SECOND - 1) yield* adjust(1000)
  }
  const tBuilt = Date.now()
  let virtual = 0
  while (nodes.some((n) => !n.core.bootstrapped) && virtual < 600_000) { yield* adjust(1000); virtual += 1000 }
  const t1 = Date.now()
  if (global.gc) global.gc()
  const heap1 = process.memoryUsage().heapUsed
  const ready = nodes.filter((n) => n.core.bootstrapped).length
  const tables = nodes.reduce((s, n) => s + n.core.table.size, 0) / nodes.length
  console.log(JSON.stringify({ nodes: nodes.length, ready, buildMs: tBuilt - t0, bootstrapMs: t1 - t0, virtualAfterBuildMs: virtual, avgTable: Math.round(tables), heapPerNodeKB: Math.round((heap1 - heap0) / nodes.length / 1024), datagrams: net.stats().sent }))
  // IDLE=n: then n rounds of 10 idle virtual seconds, wall time of each
  const idleRounds = Number(process.env.IDLE ?? 0)
  if (idleRounds > 0) {
    const wall = []
    for (let r = 0; r < idleRounds; r++) {
      const s0 = net.stats().sent
      const w0 = Date.now()
      yield* adjust(10_000)
      wall.push({ wallMs: Date.now() - w0, datagrams: net.stats().sent - s0 })
    }
    console.log(JSON.stringify({ idlePer10VirtualSeconds: wall }))
  }
}).pipe(Effect.scoped, Effect.provide(onTestClock ? TestClock.layer() : VirtualClock.layer()))
await Effect.runPromise(program)
process.exit(0)
