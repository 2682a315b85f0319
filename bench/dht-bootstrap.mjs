// Bootstrap of N nodes on 127.0.0.1: wall time and memory per node, Omega vs
// the reference hyperdht, each in its own child process, printed as ratios.
// Usage: npm run bench:dht   (or: node bench/dht-bootstrap.mjs [N] [rounds])
// WARM=1: each child first bootstraps one node off its own bootstrapper and
// destroys both (first-call compilation out of the figures, for both sides).
// WARM_BATCHES=k: k batches of N nodes instead of one node (steady state).
// The "second batch" rows: N more nodes off the same bootstrapper after the
// measured ones (the marginal cost of a node once its code is compiled).
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

const N = Number(process.argv[2] ?? 50)
const ROUNDS = Number(process.argv[3] ?? 3)
const self = fileURLToPath(import.meta.url)

const child = async (kind, n, port) => {
  // load each library (and Omega's WASM crypto) before measuring: the figures
  // are per node, not the one-off cost of loading code
  const { Gateway } = await import("../dist/index.js")
  const { makeFast } = await import("../dist/layers/crypto/fast.js")
  await makeFast()
  const { default: HyperDHT } = await import("hyperdht")
  // WARM=1: one node first; WARM_BATCHES=k: k batches of n nodes first (the
  // JIT's tiers need more than one batch to reach steady state)
  const warmNodes = process.env.WARM_BATCHES ? Number(process.env.WARM_BATCHES) * n : process.env.WARM === "1" ? 1 : 0
  if (warmNodes > 0) {
    const Impl = kind === "omega" ? Gateway : HyperDHT
    const wb = Impl.bootstrapper(port + 1, "127.0.0.1", kind === "omega" ? { host: "127.0.0.1" } : undefined)
    await wb.ready()
    for (let done = 0; done < warmNodes; done += n) {
      const ws = Array.from({ length: Math.min(n, warmNodes - done) }, () => new Impl({ bootstrap: [`127.0.0.1:${port + 1}`], host: "127.0.0.1" }))
      await Promise.all(ws.map((w) => w.ready()))
      for (const w of ws) await w.destroy()
    }
    await wb.destroy()
  }
  global.gc()
  const mem0 = process.memoryUsage()
  const t0 = performance.now()
  let boot, nodes
  if (kind === "omega") {
    boot = Gateway.bootstrapper(port, "127.0.0.1", { host: "127.0.0.1" })
    await boot.ready()
  } else {
    boot = HyperDHT.bootstrapper(port, "127.0.0.1")
    await boot.ready()
  }
  const Impl = kind === "omega" ? Gateway : HyperDHT
  const batch = async () => {
    const xs = Array.from({ length: n }, () => new Impl({ bootstrap: [`127.0.0.1:${port}`], host: "127.0.0.1" }))
    await Promise.all(xs.map((x) => x.ready()))
    return xs
  }
  const settled = async () => {
    global.gc()
    await new Promise((r) => setTimeout(r, 200))
    global.gc()
    return process.memoryUsage()
  }
  nodes = await batch()
  const ms = performance.now() - t0
  const mem1 = await settled()
  const tables = nodes.reduce((s, x) => s + x.toArray().length, 0) / n
  // a second batch of n nodes off the same bootstrapper: the marginal cost of
  // a node once the code it runs is compiled
  const t2 = performance.now()
  const more = await batch()
  const ms2 = performance.now() - t2
  const mem2 = await settled()
  const out = { kind, n, ms, heapPerNode: (mem1.heapUsed - mem0.heapUsed) / n, rssPerNode: (mem1.rss - mem0.rss) / n, externalPerNode: (mem1.external + mem1.arrayBuffers - mem0.external - mem0.arrayBuffers) / n, avgTable: tables, ms2, heapPerNode2: (mem2.heapUsed - mem1.heapUsed) / n }
  for (const x of more) await x.destroy()
  for (const x of nodes) await x.destroy()
  await boot.destroy()
  console.log(JSON.stringify(out))
  process.exit(0)
}

if (process.argv[4] === "--child") {
  await child(process.argv[5], N, Number(process.argv[6]))
} else {
  const runs = { omega: [], reference: [] }
  for (let r = 0; r < ROUNDS; r++) {
    for (const kind of ["reference", "omega"]) {
      const port = 30000 + Math.floor(Math.random() * 20000)
      const out = execFileSync(process.execPath, ["--expose-gc", self, String(N), String(ROUNDS), "--child", kind, String(port)], { encoding: "utf8", timeout: 120_000 })
      runs[kind].push(JSON.parse(out.trim().split("\n").pop()))
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const fig = (kind, k) => median(runs[kind].map((x) => x[k]))
  const rows = [
    ["bootstrap wall time (ms)", "ms", 1],
    ["memory per node: RSS (KB)", "rssPerNode", 1024],
    ["memory per node: JS heap (KB)", "heapPerNode", 1024],
    ["second batch: wall time (ms)", "ms2", 1],
    ["second batch: JS heap per node (KB)", "heapPerNode2", 1024],
    ["average routing table size", "avgTable", 1]
  ]
  console.log(`bootstrap of ${N} nodes + 1 bootstrapper on 127.0.0.1, median of ${ROUNDS} runs, node ${process.version}`)
  console.log("figure".padEnd(38) + "reference".padStart(12) + "omega".padStart(12) + "ratio".padStart(10))
  for (const [name, k, div] of rows) {
    const a = fig("reference", k) / div
    const b = fig("omega", k) / div
    console.log(name.padEnd(38) + a.toFixed(1).padStart(12) + b.toFixed(1).padStart(12) + `${(b / a).toFixed(2)}x`.padStart(10))
  }
}
