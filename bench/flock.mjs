// Peers join one topic: time to a full mesh, the duplicate connections the
// application saw, the dials made, memory and CPU per peer; Omega's Flock vs
// the reference hyperswarm, in one run on 127.0.0.1 (npm run bench:flock
// builds first).
//
//   node --expose-gc bench/flock.mjs [N] [rounds] [N2] [rounds2] [--only=size] [--bound=S]
//     N        peers in the 10-peer cases (default 10)
//     rounds   rounds per implementation in those cases, interleaved (default 2; medians shown)
//     N2       peers in the size case (default 50)
//     rounds2  rounds per implementation in the size case (default 2)
//     --only=size   run the size case alone (npm run bench:flock:50); --only=atonce,
//                   --only=refresh, --only=spaced: that case alone
//     --bound=S     the full-mesh bound of the N-peer cases, seconds (default 30;
//                   the reference's next lookup is 10 minutes away, so a longer
//                   bound changes nothing but the run time)
//     --testnet=K   testnet nodes for the N-peer cases (default 10)
//     --testnet2=K  testnet nodes for the size case (default 32)
//
// The network: a reference testnet of persistent DHT nodes
// (hyperdht/testnet.js) in this process: 10 nodes for the N-peer cases, 32
// for the size case. A DHT node answers a lookup with at most 20 of a
// topic's records, picked at random, and on a testnet only its nodes store
// records (the peers' nodes are ephemeral): with 10 nodes holding 49
// records, one lookup misses a peer now and then and the reference, which
// looks up once per join, stays a pair or two short of a mesh for 10
// minutes. With 32 nodes the 20 closest hold the records and a lookup
// draws from all of them. Every round runs in a fresh child
// process holding only that round's peers, each with its own DHT node
// (Omega's Gateway for Flock, hyperdht for hyperswarm) bootstrapped from the
// testnet: heap, RSS and CPU of a round are its peers' alone, and neither
// implementation inherits the other's garbage or warmed-up code. Every peer
// calls join(topic, { server: true, client: true }); every node is made and
// ready before the clock starts (DHT bootstrap is not the Flock's cost),
// except in the spaced case.
// Cases:
//   - at once: all N join in one tick (N applications started together).
//     Every first query runs before the others' announcements land, which
//     the reference only repairs at its 10-minute refresh.
//   - at once + refresh: as at once, then, when every discovery has
//     flushed, each calls discovery.refresh() (the reference's remedy for the
//     race: its second lookup finds everyone, so both ends of a pair dial).
//     "after last join" is from the refresh calls.
//   - spaced: peer i is made once peer i−1 has joined, and joins once its
//     node is ready (no wait for the previous announcement; the clock starts
//     at the first join, so later peers' node start-up is inside it).
//   - size (N2 peers): peer i joins once peer i−1's discovery has flushed
//     (discovery.flushed(): its announcement is stored on the DHT). This is
//     the fair workload for both: it is the order of arrival under which
//     the reference's design (one lookup at join, the next in 10 minutes)
//     finds every earlier peer, so both reach a full mesh; each side is
//     paced by its own announce, so a faster announce shows as a faster
//     mesh, and "after last join" isolates the dialling tail from pacing.
//     Joining in waves or at a fixed stagger shorter than an announce leaves
//     the reference without a mesh for 10 minutes, as the at-once case shows.
// Measured, from the first join:
//   - full mesh: every peer holds exactly one open connection to every other
//     peer and has received a message through it (each side writes one on
//     'connection'), bounded (--bound; 120 s for the size case); a median
//     over rounds counts a round without a mesh as infinite;
//   - duplicates surfaced: 'connection' events beyond the two per connected
//     pair (each is a connection the application was handed and then lost
//     to the dedup rule), counted 1 s after the mesh (or the bound);
//   - dials: outbound connection attempts (stats.connects.client.attempted);
//     extra dials = dials − connected pairs;
//   - size case only: heap per peer (heapUsed after a GC at the mesh minus
//     before the peers were made, / N2), RSS per peer (same, RSS), CPU ms
//     (user + system of the peers' process from the first join to the mesh;
//     the testnet's work is in the parent and not counted).
import { execFile } from "node:child_process"
import { createRequire } from "node:module"
import os from "node:os"
import { fileURLToPath } from "node:url"

const require = createRequire(import.meta.url)
const HOST = "127.0.0.1"
process.env.OMEGA_BOOTSTRAP ??= "" // never the public nodes

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const gc = () => {
  if (typeof globalThis.gc === "function") globalThis.gc()
}
const hex = (b) => Buffer.from(b).toString("hex")

// ---------------------------------------------------------------- child: one round

const runRound = async ({ kind, n, scenario, boundMs, topic, bootstrap }) => {
  let make
  if (kind === "omega") {
    const { Gateway } = await import("../dist/index.js")
    const { Flock } = await import("../dist/flock.js")
    make = () => {
      const dht = new Gateway({ bootstrap, host: HOST })
      dht.on("error", () => {})
      return { swarm: new Flock({ dht }), dht }
    }
  } else {
    const { default: HyperDHT } = await import("hyperdht")
    const Hyperswarm = require("hyperswarm")
    make = () => {
      const dht = new HyperDHT({ bootstrap, host: HOST })
      return { swarm: new Hyperswarm({ dht }), dht }
    }
  }
  const topicBuf = Buffer.from(topic, "hex")
  const hello = Buffer.from("hello")

  gc()
  const mem0 = process.memoryUsage()
  const peers = []
  const makePeer = () => {
    const { swarm, dht } = make()
    const p = { swarm, dht, live: new Map(), events: 0 }
    swarm.on("connection", (socket) => {
      socket.on("error", () => {})
      p.events++
      const link = { socket, got: false }
      const remote = hex(socket.remotePublicKey)
      let set = p.live.get(remote)
      if (set === undefined) p.live.set(remote, (set = new Set()))
      set.add(link)
      socket.on("data", () => {
        link.got = true
      })
      socket.on("close", () => set.delete(link))
      socket.write(hello)
    })
    peers.push(p)
    return p
  }
  if (scenario !== "spaced") {
    for (let i = 0; i < n; i++) makePeer()
    await Promise.all(peers.map((p) => p.dht.ready().catch(() => {})))
  }

  const cpu0 = process.cpuUsage()
  let t0 = performance.now()
  const bounded = (promise) => Promise.race([promise, sleep(Math.max(0, boundMs - (performance.now() - t0)))])
  if (scenario === "atonce") {
    for (const p of peers) p.swarm.join(topicBuf, { server: true, client: true })
  } else if (scenario === "refresh") {
    const ds = peers.map((p) => p.swarm.join(topicBuf, { server: true, client: true }))
    await bounded(Promise.all(ds.map((d) => d.flushed().catch(() => {}))))
    for (const d of ds) d.refresh().catch(() => {})
  } else if (scenario === "spaced") {
    for (let i = 0; i < n; i++) {
      const p = makePeer()
      await p.dht.ready().catch(() => {})
      if (i === 0) t0 = performance.now()
      p.swarm.join(topicBuf, { server: true, client: true })
    }
  } else {
    for (let i = 0; i < n; i++) {
      const d = peers[i].swarm.join(topicBuf, { server: true, client: true })
      if (i < n - 1) await bounded(d.flushed().catch(() => {}))
    }
  }
  const lastJoinMs = performance.now() - t0

  const livePairs = () => peers.reduce((s, p) => s + [...p.live.values()].filter((set) => set.size > 0).length, 0) / 2
  const meshed = () =>
    peers.every((p) => {
      let k = 0
      for (const set of p.live.values()) {
        if (set.size === 0) continue
        if (set.size !== 1) return false
        for (const link of set) if (!link.got) return false
        k++
      }
      return k === n - 1
    })
  let ms = null
  while (performance.now() - t0 < boundMs) {
    if (meshed()) {
      ms = performance.now() - t0
      break
    }
    await sleep(5)
  }
  const cpu = process.cpuUsage(cpu0)
  const cpuMs = (cpu.user + cpu.system) / 1000
  gc()
  const mem1 = process.memoryUsage()
  // let late duplicates show (a dial in flight when the mesh completed)
  await sleep(1000)
  const events = peers.reduce((s, p) => s + p.events, 0)
  const dials = peers.reduce((s, p) => s + (p.swarm.stats?.connects?.client?.attempted ?? 0), 0)
  const pairs = livePairs()
  return {
    ms,
    lastJoinMs,
    events,
    pairs,
    duplicates: Math.max(0, events - 2 * pairs),
    dials,
    extraDials: dials - pairs,
    heapPerPeer: (mem1.heapUsed - mem0.heapUsed) / n,
    rssPerPeer: (mem1.rss - mem0.rss) / n,
    externalPerPeer: (mem1.external + mem1.arrayBuffers - mem0.external - mem0.arrayBuffers) / n,
    cpuMs
  }
}

const childArg = process.argv.find((a) => a.startsWith("--child="))
if (childArg !== undefined) {
  const cfg = JSON.parse(childArg.slice("--child=".length))
  const result = await runRound(cfg)
  process.stdout.write(`${JSON.stringify(result)}\n`)
  process.exit(0)
}

// ---------------------------------------------------------------- parent: the testnet and the table

const positional = process.argv.slice(2).filter((a) => !a.startsWith("--"))
const flag = (name) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split("=")[1]
const N = Number(positional[0] ?? 10)
const ROUNDS = Number(positional[1] ?? 2)
const N2 = Number(positional[2] ?? 50)
const ROUNDS2 = Number(positional[3] ?? 2)
const ONLY = flag("only")
const BOUND = Number(flag("bound") ?? 30) * 1000
const SIZE_BOUND = 120_000
const TESTNET = Number(flag("testnet") ?? 10)
const TESTNET2 = Number(flag("testnet2") ?? 32)

const createTestnet = require("hyperdht/testnet.js")
const testnets = new Map()
const bootstrapOf = async (size) => {
  if (!testnets.has(size)) testnets.set(size, await createTestnet(size, { host: HOST }))
  return testnets.get(size).bootstrap.map((b) => ({ host: b.host, port: b.port }))
}
const self = fileURLToPath(import.meta.url)

const child = (cfg) =>
  new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--expose-gc", self, `--child=${JSON.stringify(cfg)}`],
      { maxBuffer: 1 << 24, timeout: cfg.boundMs + 120_000, env: { ...process.env, OMEGA_BOOTSTRAP: "" } },
      (err, stdout, stderr) => {
        const line = stdout.trim().split("\n").pop()
        try {
          resolve(JSON.parse(line))
        } catch {
          reject(new Error(`round ${cfg.kind}/${cfg.scenario} failed: ${err?.message ?? ""} ${stderr.slice(-2000)}`))
        }
      }
    )
  })

const names = { omega: "Flock (Omega)", reference: "hyperswarm (reference)" }
const median = (xs) => {
  const s = xs.filter((x) => x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
// a round without a mesh counts as +Infinity (so a median is "no mesh" when half or more missed)
const meshMs = (r) => (r.ms === null ? Infinity : r.ms)
const f0 = (x) => (x === Infinity ? "no mesh" : Number.isFinite(x) ? x.toFixed(0) : "—")
const kib = (x) => (Number.isFinite(x) ? (x / 1024).toFixed(0) : "—")
const x2 = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : "—")
const meshRatio = (a, b, boundMs) => {
  const s = boundMs / 1000
  if (a === Infinity && b === Infinity) return `neither meshed within ${s} s`
  if (b === Infinity) return `< ${(a / boundMs).toFixed(4)}x (reference: no full mesh within ${s} s)`
  if (a === Infinity) return `Omega: no full mesh within ${s} s`
  return x2(a, b)
}

const CASES = [
  { id: "atonce", n: N, rounds: ROUNDS, boundMs: BOUND, title: `${N} peers, nodes ready, all join one topic in one tick` },
  {
    id: "refresh",
    n: N,
    rounds: ROUNDS,
    boundMs: BOUND,
    title: `${N} peers, nodes ready, all join in one tick, then all call discovery.refresh() once every discovery has flushed`
  },
  { id: "spaced", n: N, rounds: ROUNDS, boundMs: BOUND, title: `${N} peers join one after another (each made and ready once the previous one joined)` },
  {
    id: "flushed",
    n: N2,
    rounds: ROUNDS2,
    boundMs: SIZE_BOUND,
    testnet: TESTNET2,
    size: true,
    title: `${N2} peers, nodes ready, peer i joins once peer i-1's discovery has flushed`
  }
].filter((c) => ONLY === undefined || (ONLY === "size" ? c.size : c.id === ONLY))

const cores = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length
console.log(
  `flock mesh on ${HOST}: node ${process.version}, ${cores} cores, load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}; ` +
    `testnet of ${TESTNET} nodes (${TESTNET2} for ${N2} peers); hyperswarm ${require("hyperswarm/package.json").version}, hyperdht ${require("hyperdht/package.json").version}; one child process per round`
)
let t = 0
for (const c of CASES) {
  const res = { omega: [], reference: [] }
  const bootstrap = await bootstrapOf(c.testnet ?? TESTNET)
  for (let r = 0; r < c.rounds; r++) {
    for (const kind of r % 2 === 0 ? ["reference", "omega"] : ["omega", "reference"]) {
      const topic = hex(Buffer.alloc(32, ++t))
      res[kind].push(await child({ kind, n: c.n, scenario: c.id, boundMs: c.boundMs, topic, bootstrap }))
      await sleep(200)
    }
  }
  console.log("")
  console.log(`${c.title}; testnet of ${c.testnet ?? TESTNET} nodes; ${c.rounds} rounds (medians; every round in brackets)`)
  // [header, value of a round, format, JSON key (KiB values converted)]
  const cols = [
    ["full mesh ms", (r) => meshMs(r), f0, "fullMeshMs"],
    ["after last join", (r) => (r.ms === null ? Infinity : r.ms - r.lastJoinMs), f0, "afterLastJoinMs"],
    ["dups surfaced", (r) => r.duplicates, f0, "duplicatesSurfaced"],
    ["dials", (r) => r.dials, f0, "dials"],
    ["extra dials", (r) => r.extraDials, f0, "extraDials"],
    ["pairs", (r) => r.pairs, f0, "pairs"]
  ]
  if (c.size)
    cols.push(
      ["heap/peer KiB", (r) => r.heapPerPeer, kib, "heapPerPeerKiB"],
      ["rss/peer KiB", (r) => r.rssPerPeer, kib, "rssPerPeerKiB"],
      ["cpu ms", (r) => r.cpuMs, f0, "cpuMs"]
    )
  console.log("implementation".padEnd(24) + cols.map(([h]) => h.padStart(h.length + 2)).join(""))
  const summary = {}
  for (const kind of ["omega", "reference"]) {
    const rs = res[kind]
    const med = Object.fromEntries(cols.map(([h, get]) => [h, median(rs.map(get))]))
    summary[kind] = med
    console.log(names[kind].padEnd(24) + cols.map(([h, , fmt]) => fmt(med[h]).padStart(h.length + 2)).join(""))
  }
  for (const kind of ["omega", "reference"]) {
    const rs = res[kind]
    const list = (get, fmt = f0) => `[${rs.map((r) => fmt(get(r))).join(", ")}]`
    console.log(
      `  ${kind.padEnd(10)} mesh ms ${list(meshMs)} dups ${list((r) => r.duplicates)} dials ${list((r) => r.dials)} pairs ${list((r) => r.pairs)}` +
        ` last join at ${list((r) => r.lastJoinMs)} ms` +
        (c.size ? ` heap/peer KiB ${list((r) => r.heapPerPeer, kib)} rss/peer KiB ${list((r) => r.rssPerPeer, kib)} cpu ms ${list((r) => r.cpuMs)}` : "")
    )
  }
  const o = summary.omega
  const ref = summary.reference
  const noMesh = ref["full mesh ms"] === Infinity
  let line =
    `ratio Omega / reference: full mesh ${meshRatio(o["full mesh ms"], ref["full mesh ms"], c.boundMs)}` +
    `, duplicates surfaced ${f0(o["dups surfaced"])} vs ${f0(ref["dups surfaced"])}` +
    `, dials ${f0(o.dials)} vs ${f0(ref.dials)} (extra ${f0(o["extra dials"])} vs ${f0(ref["extra dials"])})`
  const meshedRounds = (kind) => res[kind].filter((r) => r.ms !== null).length
  for (const kind of ["omega", "reference"])
    if (meshedRounds(kind) < c.rounds) line += `; ${kind} meshed in ${meshedRounds(kind)} of ${c.rounds} rounds`
  if (noMesh) line += `; reference reached ${f0(ref.pairs)} of ${(c.n * (c.n - 1)) / 2} pairs (median)`
  if (c.size)
    line +=
      `, heap per peer ${x2(o["heap/peer KiB"], ref["heap/peer KiB"])}, RSS per peer ${x2(o["rss/peer KiB"], ref["rss/peer KiB"])}` +
      `, CPU ${x2(o["cpu ms"], ref["cpu ms"])}` +
      (noMesh || o["full mesh ms"] === Infinity ? " (memory compares unequal states: one side did not mesh)" : "")
  console.log(line)
  const js = (x) => (x === Infinity ? null : Number.isFinite(x) ? Math.round(x * 10) / 10 : null)
  for (const kind of ["omega", "reference"])
    console.log(
      JSON.stringify({
        bench: "flock",
        case: c.id,
        impl: kind,
        n: c.n,
        testnet: c.testnet ?? TESTNET,
        boundMs: c.boundMs,
        median: Object.fromEntries(cols.map(([h, , , key]) => [key, js(key.endsWith("KiB") ? summary[kind][h] / 1024 : summary[kind][h])])),
        rounds: res[kind].map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, js(v)])))
      })
    )
  const ratio = (k) => (Number.isFinite(o[k]) && Number.isFinite(ref[k]) && ref[k] > 0 ? Math.round((o[k] / ref[k]) * 1000) / 1000 : null)
  console.log(
    JSON.stringify({
      bench: "flock",
      case: c.id,
      ratio: {
        fullMesh: ratio("full mesh ms"),
        fullMeshUpperBound: noMesh && Number.isFinite(o["full mesh ms"]) ? Math.round((o["full mesh ms"] / c.boundMs) * 10000) / 10000 : null,
        ...(c.size ? { heapPerPeer: ratio("heap/peer KiB"), rssPerPeer: ratio("rss/peer KiB"), cpu: ratio("cpu ms") } : {})
      }
    })
  )
}

for (const testnet of testnets.values()) await testnet.destroy()
process.exit(0)
