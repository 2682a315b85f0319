// Idle cost of a network of nodes on 127.0.0.1: process CPU per second while
// 25 persistent nodes (a bootstrapper + 24) sit idle after bootstrapping,
// Omega vs the reference hyperdht, each side in its own child process, sides
// alternating, medians printed as a ratio.
// Usage: node bench/idle.mjs [seconds per measurement (10)] [rounds (3)]
//        (builds nothing: run `npm run build` first, or `npm run bench:idle`)
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

const SECONDS = Number(process.argv[2] ?? 10)
const ROUNDS = Number(process.argv[3] ?? 3)
const NODES = 25
const HOST = "127.0.0.1"
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const child = async (kind, port) => {
  const Impl = kind === "omega" ? (await import("../dist/index.js")).Gateway : (await import("hyperdht")).default
  const boot = Impl.bootstrapper(port, HOST, { host: HOST })
  await boot.ready()
  const nodes = Array.from({ length: NODES - 1 }, () =>
    new Impl({ bootstrap: [`${HOST}:${port}`], host: HOST, ephemeral: false, ...(kind === "omega" ? {} : { firewalled: false }) })
  )
  await Promise.all(nodes.map((n) => n.ready()))
  await sleep(3000) // past the joins' own traffic
  const c0 = process.cpuUsage()
  await sleep(SECONDS * 1000)
  const c = process.cpuUsage(c0)
  const out = { kind, cpuMsPerSecond: (c.user + c.system) / 1000 / SECONDS }
  for (const n of nodes) await n.destroy()
  await boot.destroy()
  console.log(JSON.stringify(out))
  process.exit(0)
}

if (process.argv[4] === "--child") {
  await child(process.argv[5], Number(process.argv[6]))
} else {
  const runs = { omega: [], reference: [] }
  for (let r = 0; r < ROUNDS; r++) {
    for (const kind of r % 2 === 0 ? ["reference", "omega"] : ["omega", "reference"]) {
      const port = 30000 + Math.floor(Math.random() * 20000)
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), String(SECONDS), String(ROUNDS), "--child", kind, String(port)], { encoding: "utf8", timeout: 120_000 })
      runs[kind].push(JSON.parse(out.trim().split("\n").pop()).cpuMsPerSecond)
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const ref = median(runs.reference)
  const omega = median(runs.omega)
  console.log(`${NODES} idle persistent nodes on ${HOST}, CPU ms per second over ${SECONDS} s, median of ${ROUNDS}, node ${process.version}`)
  console.log(`reference ${ref.toFixed(1)}  omega ${omega.toFixed(1)}  ratio ${(omega / ref).toFixed(2)}x`)
}
