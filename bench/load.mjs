// Cost of loading the package: Omega's entry point vs the reference's
// (hyperdht), each in a fresh child process, sides alternating; medians.
// Usage: node bench/load.mjs [runs]   (default 5; run `npm run build` first)
//
//   load ms          wall time of the dynamic import (module loading, compiling, evaluating)
//   RSS / heap MB    growth of the process's RSS and JS heap (after GC) from the import
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

const RUNS = Number(process.argv[2] ?? 5)
const entry = {
  omega: new URL("../dist/index.js", import.meta.url).href,
  reference: "hyperdht"
}

if (process.argv[2] === "--child") {
  const spec = entry[process.argv[3]]
  globalThis.gc()
  const m0 = process.memoryUsage()
  const t0 = performance.now()
  await import(spec)
  const ms = performance.now() - t0
  for (let i = 0; i < 2; i++) {
    globalThis.gc()
    await new Promise((r) => setTimeout(r, 100))
  }
  const m1 = process.memoryUsage()
  console.log(JSON.stringify({ ms, rss: (m1.rss - m0.rss) / 1048576, heap: (m1.heapUsed - m0.heapUsed) / 1048576 }))
  process.exit(0)
}

const self = fileURLToPath(import.meta.url)
const runs = { omega: [], reference: [] }
for (let r = 0; r < RUNS; r++) {
  for (const side of r % 2 === 0 ? ["reference", "omega"] : ["omega", "reference"]) {
    const out = execFileSync(process.execPath, ["--expose-gc", self, "--child", side], { encoding: "utf8", timeout: 60_000 })
    runs[side].push(JSON.parse(out.trim().split("\n").pop()))
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
console.log(`loading the package in a fresh process, median of ${RUNS} runs, node ${process.version}`)
console.log("figure".padEnd(22) + "reference".padStart(12) + "omega".padStart(12) + "ratio".padStart(10))
for (const [name, k] of [["load ms", "ms"], ["RSS growth MB", "rss"], ["JS heap growth MB", "heap"]]) {
  const a = median(runs.reference.map((x) => x[k]))
  const b = median(runs.omega.map((x) => x[k]))
  console.log(name.padEnd(22) + a.toFixed(1).padStart(12) + b.toFixed(1).padStart(12) + `${(b / a).toFixed(2)}x`.padStart(10))
}
