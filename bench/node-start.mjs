// Phases of a process's first bootstrap on 127.0.0.1, Omega vs the reference:
// the bootstrapper (construction to ready), the construction of 50 nodes, and
// their wait until all are ready. Each round is a fresh child process per
// side (interleaved); medians are printed. Usage: node bench/node-start.mjs [rounds]
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

const ROUNDS = Number(process.argv[2] ?? 9)
const N = 50

if (process.argv[3] === "--child") {
  const kind = process.argv[4]
  const port = Number(process.argv[5])
  const { Gateway } = await import("../dist/index.js")
  const { makeFast } = await import("../dist/layers/crypto/fast.js")
  await makeFast()
  const { default: HyperDHT } = await import("hyperdht")
  const Impl = kind === "omega" ? Gateway : HyperDHT
  const t0 = performance.now()
  const boot = Impl.bootstrapper(port, "127.0.0.1", kind === "omega" ? { host: "127.0.0.1" } : undefined)
  await boot.ready()
  const t1 = performance.now()
  const nodes = Array.from({ length: N }, () => new Impl({ bootstrap: [`127.0.0.1:${port}`], host: "127.0.0.1" }))
  const t2 = performance.now()
  await Promise.all(nodes.map((x) => x.ready()))
  const t3 = performance.now()
  console.log(JSON.stringify({ boot: t1 - t0, construct: t2 - t1, ready: t3 - t2, total: t3 - t0 }))
  process.exit(0)
} else {
  const self = fileURLToPath(import.meta.url)
  const runs = { omega: [], reference: [] }
  for (let r = 0; r < ROUNDS; r++) {
    for (const kind of ["reference", "omega"]) {
      const port = 30000 + Math.floor(Math.random() * 20000)
      const out = execFileSync(process.execPath, [self, String(ROUNDS), "--child", kind, String(port)], { encoding: "utf8", timeout: 60_000 })
      runs[kind].push(JSON.parse(out.trim().split("\n").pop()))
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  console.log(`first bootstrapper + ${N} nodes of a process on 127.0.0.1, median of ${ROUNDS} processes per side, node ${process.version}`)
  console.log("phase (ms)".padEnd(40) + "reference".padStart(12) + "omega".padStart(12) + "ratio".padStart(10))
  for (const [name, k] of [["bootstrapper: construction to ready", "boot"], [`${N} nodes: construction`, "construct"], [`${N} nodes: construction to all ready`, "ready"], ["total", "total"]]) {
    const a = median(runs.reference.map((x) => x[k]))
    const b = median(runs.omega.map((x) => x[k]))
    console.log(name.padEnd(40) + a.toFixed(1).padStart(12) + b.toFixed(1).padStart(12) + `${(b / a).toFixed(2)}x`.padStart(10))
  }
}
