// N peers join one topic: time to a full mesh, the duplicate connections
// the application saw and the dials made, Omega's Flock vs the reference
// hyperswarm, in one run on 127.0.0.1 (npm run bench:flock builds first).
//
//   node --expose-gc bench/flock.mjs [N] [rounds] [N2]
//     N       peers in the mesh rounds (default 10)
//     rounds  rounds per implementation and scenario, interleaved (default 3; medians shown)
//     N2      peers for the size round (default 50): mesh time and heap per peer
//
// One process. A reference testnet of 10 persistent DHT nodes
// (hyperdht/testnet.js) is the network; each peer has its own DHT node
// (Omega's Gateway for Flock, hyperdht for hyperswarm) joined to it.
// Scenarios, each peer calling join(topic, { server: true, client: true }):
//   - simultaneous: every node is made and ready first, then all N join in
//     one tick (N applications started together); the clock starts at the
//     joins. Every first query runs before the others' announcements land.
//   - spaced: peer i is made, its node awaited, it joins, then peer i+1 is
//     made (each joins once the previous peer's node is ready); the clock
//     starts at the first join.
// The clock runs until every peer holds exactly one open connection to
// every other peer ("full mesh"), bounded by 60 s. Counted:
//   - time to full mesh (ms), or "no mesh" when 60 s passed;
//   - duplicates surfaced: 'connection' events beyond the N·(N−1) a perfect
//     mesh needs (each is a connection the application was handed and then
//     lost to the dedup rule), counted 1 s after the mesh (or the bound);
//   - dials: outbound connection attempts (stats.connects.client.attempted).
// Size round: N2 peers, simultaneous, once per implementation; heap per
// peer = heapUsed after the mesh (after a GC when run with --expose-gc)
// minus before the peers were made, divided by N2.
import { createRequire } from "node:module"
import os from "node:os"

const require = createRequire(import.meta.url)
const { Gateway } = await import("../dist/index.js")
const { Flock } = await import("../dist/flock.js")
const { default: HyperDHT } = await import("hyperdht")
const Hyperswarm = require("hyperswarm")
const createTestnet = require("hyperdht/testnet.js")

const HOST = "127.0.0.1"
const N = Number(process.argv[2] ?? 10)
const ROUNDS = Number(process.argv[3] ?? 3)
const N2 = Number(process.argv[4] ?? 50)
const MESH_TIMEOUT = 60_000
process.env.OMEGA_BOOTSTRAP ??= "" // never the public nodes

const testnet = await createTestnet(10, { host: HOST })
const bootstrap = testnet.bootstrap
const hex = (b) => Buffer.from(b).toString("hex")
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const gc = () => {
  if (typeof globalThis.gc === "function") globalThis.gc()
}

const kinds = {
  omega: {
    name: "Flock (Omega)",
    make: () => {
      const dht = new Gateway({ bootstrap, host: HOST })
      dht.on("error", () => {})
      return { swarm: new Flock({ dht }), dht }
    }
  },
  reference: {
    name: "hyperswarm (reference)",
    make: () => {
      const dht = new HyperDHT({ bootstrap, host: HOST })
      return { swarm: new Hyperswarm({ dht }), dht }
    }
  }
}

/** Make one peer of `kind`, with its connection bookkeeping. */
const makePeer = (kind) => {
  const { swarm, dht } = kinds[kind].make()
  const p = { swarm, dht, live: new Map(), events: 0 }
  swarm.on("connection", (socket) => {
    socket.on("error", () => {})
    p.events++
    const remote = hex(socket.remotePublicKey)
    let set = p.live.get(remote)
    if (set === undefined) p.live.set(remote, (set = new Set()))
    set.add(socket)
    socket.on("close", () => set.delete(socket))
  })
  return p
}

/** One round: n peers of `kind` join `topic` ("simultaneous" or "spaced"); time to full mesh, duplicates, dials. */
const round = async (kind, n, topic, scenario, measureHeap = false) => {
  gc()
  const heap0 = process.memoryUsage().heapUsed
  const peers = []
  let t0
  if (scenario === "simultaneous") {
    for (let i = 0; i < n; i++) peers.push(makePeer(kind))
    await Promise.all(peers.map((p) => p.dht.ready().catch(() => {})))
    t0 = performance.now()
    for (const p of peers) p.swarm.join(topic, { server: true, client: true })
  } else {
    for (let i = 0; i < n; i++) {
      const p = makePeer(kind)
      peers.push(p)
      await p.dht.ready().catch(() => {})
      if (i === 0) t0 = performance.now()
      p.swarm.join(topic, { server: true, client: true })
    }
  }
  const spread = performance.now() - t0
  const meshed = () => peers.every((p) => p.live.size === n - 1 && [...p.live.values()].every((s) => s.size === 1))
  let ms = Infinity
  while (performance.now() - t0 < MESH_TIMEOUT) {
    if (meshed()) {
      ms = performance.now() - t0
      break
    }
    await sleep(5)
  }
  // let late duplicates show (a dial in flight when the mesh completed)
  await sleep(1000)
  const events = peers.reduce((s, p) => s + p.events, 0)
  const dials = peers.reduce((s, p) => s + (p.swarm.stats?.connects?.client?.attempted ?? 0), 0)
  const pairs = peers.reduce((s, p) => s + p.live.size, 0) / 2
  gc()
  const heapPerPeer = measureHeap ? (process.memoryUsage().heapUsed - heap0) / n : NaN
  await Promise.all(peers.map((p) => p.swarm.destroy().catch(() => {})))
  await Promise.all(peers.map((p) => p.dht.destroy().catch(() => {})))
  // duplicates: events beyond one per connected pair end (only meaningful counts when meshed)
  return { ms, duplicates: Math.max(0, events - 2 * pairs), events, pairs, dials, heapPerPeer, spread }
}

/** Median of the finite values; Infinity when more than half the rounds did not mesh. */
const median = (xs) => {
  const s = xs.slice().sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const f0 = (x) => (x === Infinity ? "no mesh" : Number.isFinite(x) ? x.toFixed(0) : "—")
const ratio = (a, b) => {
  if (a === Infinity && b === Infinity) return "neither meshed in 60 s"
  if (b === Infinity) return `< ${(a / MESH_TIMEOUT).toFixed(3)}x (reference: no mesh within 60 s)`
  if (a === Infinity) return "Omega: no mesh within 60 s"
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : "—"
}

const SCENARIOS = ["simultaneous", "spaced"]
const results = { simultaneous: { omega: [], reference: [] }, spaced: { omega: [], reference: [] } }
let t = 0
for (const scenario of SCENARIOS) {
  for (let r = 0; r < ROUNDS; r++) {
    for (const kind of r % 2 === 0 ? ["reference", "omega"] : ["omega", "reference"]) {
      const topic = Buffer.alloc(32, ++t)
      results[scenario][kind].push(await round(kind, N, topic, scenario))
      await sleep(200)
    }
  }
}
const size = {}
for (const kind of ["reference", "omega"]) {
  size[kind] = await round(kind, N2, Buffer.alloc(32, 200 + ++t), "simultaneous", true)
  await sleep(200)
}

const cores = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length
console.log(`flock mesh on ${HOST}: node ${process.version}, ${cores} cores; testnet of 10 nodes; hyperswarm ${require("hyperswarm/package.json").version}`)
for (const scenario of SCENARIOS) {
  const res = results[scenario]
  console.log("")
  console.log(
    scenario === "simultaneous"
      ? `${N} peers, nodes ready, all join one topic in one tick; ${ROUNDS} rounds (medians; every round in brackets)`
      : `${N} peers join one topic one after another (each once the previous peer's node is ready); ${ROUNDS} rounds (medians; every round in brackets)`
  )
  console.log("implementation".padEnd(24) + "full mesh ms".padStart(14) + "dups surfaced".padStart(15) + "dials".padStart(8))
  for (const kind of ["omega", "reference"]) {
    const rs = res[kind]
    const list = (f) => `[${rs.map((r) => f0(f(r))).join(", ")}]`
    console.log(
      kinds[kind].name.padEnd(24) +
        f0(median(rs.map((r) => r.ms))).padStart(14) +
        f0(median(rs.map((r) => r.duplicates))).padStart(15) +
        f0(median(rs.map((r) => r.dials))).padStart(8) +
        `   ms ${list((r) => r.ms)} dups ${list((r) => r.duplicates)} dials ${list((r) => r.dials)} pairs ${list((r) => r.pairs)}` +
        (scenario === "spaced" ? ` joins over ${list((r) => r.spread)} ms` : "")
    )
  }
  const mo = median(res.omega.map((r) => r.ms))
  const mr = median(res.reference.map((r) => r.ms))
  const dupO = median(res.omega.map((r) => r.duplicates))
  const dupR = median(res.reference.map((r) => r.duplicates))
  const dialO = median(res.omega.map((r) => r.dials))
  const dialR = median(res.reference.map((r) => r.dials))
  console.log(
    `ratio Omega / reference: full mesh ${ratio(mo, mr)}, duplicates surfaced ${f0(dupO)} vs ${f0(dupR)}, dials ${dialR > 0 ? (dialO / dialR).toFixed(2) + "x" : `${f0(dialO)} vs ${f0(dialR)}`}`
  )
}
console.log("")
console.log(`${N2} peers, nodes ready, all join one topic in one tick (one round each)`)
console.log("implementation".padEnd(24) + "full mesh ms".padStart(14) + "dups surfaced".padStart(15) + "dials".padStart(8) + "heap/peer KiB".padStart(15))
for (const kind of ["omega", "reference"]) {
  const r = size[kind]
  console.log(kinds[kind].name.padEnd(24) + f0(r.ms).padStart(14) + f0(r.duplicates).padStart(15) + f0(r.dials).padStart(8) + f0(r.heapPerPeer / 1024).padStart(15))
}
console.log(
  `ratio Omega / reference: full mesh ${ratio(size.omega.ms, size.reference.ms)}, heap per peer ${ratio(size.omega.heapPerPeer, size.reference.heapPerPeer)}` +
    (typeof globalThis.gc === "function" ? "" : " (run with --expose-gc for steadier heap figures)")
)
if (size.omega.ms === Infinity || size.reference.ms === Infinity) {
  console.log("note: heap per peer compares unequal states when only one side meshed (the meshed side holds N2−1 connections per peer)")
}

await testnet.destroy()
process.exit(0)
