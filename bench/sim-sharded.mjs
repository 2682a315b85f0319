// The largest simulated network that bootstraps within a time budget, split
// across worker threads of one process (one SimNetwork shard per thread).
// Usage: node --expose-gc --max-semi-space-size=64 bench/sim-sharded.mjs [nodes] [joinsPerVirtualSecond] [shards]
// (npm run bench:sim:sharded: 10,000 nodes, 200 joins per virtual second, 2 shards)
//
// The same network as bench/sim-scale.mjs (a bootstrapper + N persistent
// nodes joining at the given rate, latency 20 ms, jitter 10 ms, node i with
// seed i + 2), with node i on shard i % shards and the bootstrapper on shard
// 0. Every shard has its own clock (a VirtualClock; CLOCK=test: Effect's
// TestClock, the same simulation) and advances it in windows; at each
// window's end it sends the datagrams it sent to each other shard (SimShard
// in src/layers/transport/sim.ts) straight to that shard's thread, and it
// runs a window only once it holds every datagram that can arrive in it
// (see LAG below). The run is deterministic: the same arguments give the
// same datagram count. It ends when every node has bootstrapped (checked
// each virtual second). SHARD_STATS=1 prints each shard's time in its
// windows and waiting for the other shards.
import { MessageChannel, Worker, isMainThread, parentPort, workerData } from "node:worker_threads"
import { fileURLToPath } from "node:url"

const LATENCY = 20
const JITTER = 10
// A shard runs window w once it has the other shards' datagrams of window
// w - LAG: windows of LATENCY / (LAG + 1) (the smallest one-way delay is
// LATENCY), so shards may drift LAG windows apart (a GC pause in one does not
// stop the other at once). SHARD_LAG (default 1) sets LAG.
const LAG = Number(process.env.SHARD_LAG ?? 1)
const WINDOW = LATENCY / (LAG + 1)
// whole milliseconds that divide a second (the sim wakes on whole ms; fractional windows doubled the work)
if (!Number.isInteger(WINDOW) || 1000 % WINDOW !== 0) throw new Error(`SHARD_LAG=${LAG}: a window of ${WINDOW} ms; use 0, 1, 3, 4, 9 or 19`)
const ipOf = (i) => `20.${1 + ((i >> 16) & 0xff)}.${(i >> 8) & 0xff}.${i & 0xff}`
const BOOT_IP = "20.255.0.1"

const transfers = (p) => (p === null ? [] : [p.at.buffer, p.addr.buffer, p.ends.buffer, p.bytes.buffer])

if (isMainThread) {
  const N = Number(process.argv[2] ?? 1000)
  const RATE = Number(process.argv[3] ?? 50)
  const SHARDS = Number(process.argv[4] ?? 2)
  const MAX_VIRTUAL = 600_000
  const self = fileURLToPath(import.meta.url)
  const t0 = Date.now()
  // a MessageChannel per pair of shards: windows advance without the main thread
  const ports = Array.from({ length: SHARDS }, () => new Array(SHARDS).fill(null))
  for (let a = 0; a < SHARDS; a++) {
    for (let b = a + 1; b < SHARDS; b++) {
      const { port1, port2 } = new MessageChannel()
      ports[a][b] = port1
      ports[b][a] = port2
    }
  }
  const workers = Array.from({ length: SHARDS }, (_, index) => {
    const peers = ports[index]
    return new Worker(self, { workerData: { index, shards: SHARDS, n: N, rate: RATE, peers }, transferList: peers.filter((p) => p !== null) })
  })
  const pending = new Map()
  for (const w of workers) {
    w.on("message", (m) => {
      const r = pending.get(w)
      pending.delete(w)
      r(m)
    })
    w.on("error", (e) => {
      console.error(e)
      process.exit(1)
    })
  }
  const call = (w, msg, transfer) => new Promise((resolve) => {
    pending.set(w, resolve)
    w.postMessage(msg, transfer)
  })
  await Promise.all(workers.map((w) => call(w, { type: "init" })))
  const tInit = Date.now()
  // the shards run windows among themselves and report each virtual second
  const report = await Promise.all(workers.map((w) => call(w, { type: "run", maxVirtual: MAX_VIRTUAL })))
  const virtual = report[0].virtual
  const t1 = Date.now()
  const finals = await Promise.all(workers.map((w) => call(w, { type: "final" })))
  const sum = (k) => finals.reduce((a, x) => a + x[k], 0)
  console.log(JSON.stringify({
    nodes: N + 1,
    shards: SHARDS,
    ready: sum("ready"),
    bootstrapMs: t1 - t0,
    workerStartMs: tInit - t0,
    virtualMs: virtual,
    avgTable: Math.round(sum("tableSum") / (N + 1)),
    heapPerNodeKB: Math.round(sum("heapDelta") / (N + 1) / 1024),
    datagrams: sum("sent"),
    crossShard: sum("crossShard")
  }))
  for (const w of workers) await w.terminate()
  process.exit(0)
} else {
  const { Effect, Queue } = await import("effect")
  const { TestClock } = await import("effect/testing")
  const { VirtualClock } = await import("../dist/layers/VirtualClock.js")
  const onTestClock = process.env.CLOCK === "test"
  const { makeNode } = await import("../dist/actors/routing/driver.js")
  const { GatewayService } = await import("../dist/api/GatewayService.js")
  const { Crypto } = await import("../dist/layers/Crypto.js")
  const { makeFast } = await import("../dist/layers/crypto/fast.js")
  const { SimNetwork } = await import("../dist/layers/transport/sim.js")
  const { Transport } = await import("../dist/layers/Transport.js")
  const { index, shards, n, rate } = workerData
  const crypto = await makeFast()
  // owner of an address: node i (ip ipOf(i + 1)) is on shard i % shards, the bootstrapper on 0
  const owner = (ip) => {
    if (ip === BOOT_IP) return 0
    const p = ip.split(".").map(Number)
    if (p.length !== 4 || p[0] !== 20) return -1
    const i = ((p[1] - 1) << 16) + (p[2] << 8) + p[3] - 1
    return i >= 0 && i < n ? i % shards : -1
  }
  const inbox = Effect.runSync(Queue.unbounded())
  parentPort.on("message", (m) => Queue.offerUnsafe(inbox, m))
  // windows from the other shards: [window number, source shard, SimShardBatch or null, ready count or -1]
  const peers = workerData.peers
  const fromPeers = peers.map((p) => {
    if (p === null) return null
    const q = Effect.runSync(Queue.unbounded())
    p.on("message", (m) => Queue.offerUnsafe(q, m))
    return q
  })
  const ownerCache = new Map()
  const ownerOf = (ip) => {
    let o = ownerCache.get(ip)
    if (o === undefined) ownerCache.set(ip, (o = owner(ip)))
    return o
  }
  const program = Effect.gen(function*() {
    const net = yield* SimNetwork.make({ latency: LATENCY, jitter: JITTER, seed: 1 + index, shard: { index, owner: ownerOf } })
    const nodes = []
    const start = (ip, config, seed) => Effect.gen(function*() {
      const host = yield* net.addHost({ ip })
      const h = yield* makeNode({ ...config, randomSeed: seed }).pipe(Effect.provideService(Transport, host), Effect.provideService(Crypto, crypto))
      nodes.push(h)
    })
    const heap0 = process.memoryUsage().heapUsed
    let now = 0
    let next = 0 // next node index to start (among all nodes)
    let crossShard = 0
    while (true) {
      const m = yield* Queue.take(inbox)
      if (m.type === "init") {
        if (index === 0) yield* start(BOOT_IP, GatewayService.bootstrapperConfig(49737, BOOT_IP), 1)
        parentPort.postMessage({ type: "init" })
        continue
      }
      if (m.type === "final") {
        if (global.gc) global.gc()
        parentPort.postMessage({
          ready: nodes.filter((x) => x.core.bootstrapped).length,
          tableSum: nodes.reduce((s, x) => s + x.core.table.size, 0),
          heapDelta: process.memoryUsage().heapUsed - heap0,
          sent: net.stats().sent,
          crossShard
        })
        continue
      }
      // m.type === "run": windows until every node of every shard has bootstrapped
      const lastJoin = Math.floor((n - 1) / rate) * 1000
      const isSecond = (v) => (v * WINDOW) % 1000 === 0 && v * WINDOW > lastJoin
      const ownReady = new Map()
      let arrivals = []
      let w = 0
      let busy = 0
      let waited = 0
      while (now < m.maxVirtual) {
        for (const batch of arrivals) net.inject(batch)
        arrivals = []
        while (next < n && Math.floor(next / rate) * 1000 <= now) {
          if (next % shards === index) yield* start(ipOf(next + 1), { ephemeral: false, port: 49737, bootstrap: [`${BOOT_IP}:49737`] }, next + 2)
          next++
        }
        const until = now + WINDOW
        const b0 = performance.now()
        yield* (onTestClock ? TestClock.adjust(until - now) : VirtualClock.adjust(until - now))
        busy += performance.now() - b0
        now = until
        w++
        const ready = isSecond(w) ? nodes.filter((x) => x.core.bootstrapped).length : -1
        if (ready >= 0) ownReady.set(w, ready)
        const out = net.takeOutbox()
        for (let s = 0; s < shards; s++) {
          if (s === index) continue
          const p = out.get(s) ?? null
          if (p !== null) crossShard += p.count
          peers[s].postMessage([w, index, p, ready], transfers(p))
        }
        // the other shards' datagrams of window w - LAG: the next window
        // receives nothing sent later (LAG + 1 windows make the smallest
        // delay). Injected by source shard, then in send order: a fixed order.
        const v = w - LAG
        if (v < 1) continue
        const w0 = performance.now()
        let total = ownReady.get(v) ?? -1
        ownReady.delete(v)
        const got = new Array(shards).fill(null)
        for (const q of fromPeers) {
          if (q === null) continue
          const [pw, src, p, r] = yield* Queue.take(q)
          if (pw !== v) throw new Error(`shard ${index}: window ${pw} from shard ${src}, expected ${v}`)
          got[src] = p
          total += r
        }
        waited += performance.now() - w0
        for (const p of got) if (p !== null) arrivals.push(p)
        // every shard decides on the same counts (window v's), so all stop together
        if (isSecond(v) && total === n + 1) break
      }
      if (process.env.SHARD_STATS) console.error(JSON.stringify({ shard: index, windows: w, busyMs: Math.round(busy), waitMs: Math.round(waited) }))
      parentPort.postMessage({ virtual: now })
    }
  }).pipe(Effect.scoped, Effect.provide(onTestClock ? TestClock.layer() : VirtualClock.layer()))
  await Effect.runPromise(program)
}
