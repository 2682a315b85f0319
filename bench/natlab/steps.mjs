// Where a dial's time goes inside the Omega processes: the step marks
// (src/layers/trace.ts) and the datagrams of a lab run made with `--trace`,
// lined up with each dial's connect() and 'open' instants (results.jsonl, `at`).
//
//   node bench/natlab/run.mjs --trace --modes fresh --pairings cons-cons --dirs oo --self 0 --n 20 --out OUT
//   node bench/natlab/steps.mjs OUT [MIN_MS]
//
// Per cell, and per side that runs Omega (C: the client's process, S: the
// server's), every step between two consecutive events of that process (a
// mark, or a datagram sent `tx:<bytes>` / received `rx:<bytes>`), with its
// median start after connect() and its median length, in ms, in the order
// the steps happen; steps shorter than MIN_MS (default 0.05) or seen in
// fewer than 60% of the dials are left out. A step's length is the process's
// time between the two events: its own work, and any time it waited for the
// CPU or for a datagram. The marks `*.start` → `*` around message 1, message
// 2 (client) and S.m1, S.m2 (server) are Noise's crypto; their sum is printed
// per side. The first dial of each cell is left out (cold code).
//
// With NATLAB_TRACE_CPU=1 in the environment of the run, each event also
// carries the process's CPU time, and a column `cpu ms` shows the median CPU
// the process spent in each step: a step much longer than its CPU waited
// (for a datagram, or for the core another process held).
import { existsSync, readdirSync, readFileSync } from "node:fs"
import path from "node:path"

const dir = process.argv[2]
const minMs = Number(process.argv[3] ?? 0.05)
if (dir === undefined) {
  console.error("usage: node bench/natlab/steps.mjs OUTDIR [MIN_MS] (a run made with --trace)")
  process.exit(2)
}
const traceDir = path.join(dir, "trace")
if (!existsSync(traceDir)) {
  console.error(`no traces in ${traceDir}: run the lab with --trace`)
  process.exit(2)
}
/** agent name -> [t, label][] in time order */
const traces = new Map()
for (const f of readdirSync(traceDir)) {
  const m = /^(.+)\.trace\.json$/.exec(f)
  if (m === null) continue
  const flat = JSON.parse(readFileSync(path.join(traceDir, f), "utf8"))
  const evs = []
  for (let i = 0; i + 1 < flat.length; i += 2) {
    // `label|cpu` with NATLAB_TRACE_CPU=1: the process's CPU time (µs) at the event
    const bar = flat[i + 1].lastIndexOf("|")
    evs.push(bar < 0 ? [flat[i], flat[i + 1], null] : [flat[i], flat[i + 1].slice(0, bar), Number(flat[i + 1].slice(bar + 1))])
  }
  traces.set(m[1], evs)
}
const lines = readFileSync(path.join(dir, "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
const dials = lines.filter((r) => r.kind === "dial" && r.ok && r.at?.connect != null && r.at?.open != null)

const median = (a) => {
  const s = [...a].sort((x, y) => x - y)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
/** The events of `agent` in [from, to]. */
const window = (agent, from, to) => {
  const evs = traces.get(agent) ?? []
  let lo = 0
  let hi = evs.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (evs[mid][0] < from) lo = mid + 1
    else hi = mid
  }
  const out = []
  for (let i = lo; i < evs.length && evs[i][0] <= to; i++) out.push(evs[i])
  return out
}
const CRYPTO = new Set(["msg1.start→msg1", "m2.start→m2", "S.m1.start→S.m1", "S.m2.start→S.m2"])

const cells = new Map()
const seenCell = new Set()
for (const r of dials) {
  const cell = `${r.mode} | ${r.pairing} | ${r.dir}${r.relay ? ` via ${r.relay}` : ""}`
  if (!seenCell.has(cell)) {
    seenCell.add(cell)
    continue
  }
  if (!cells.has(cell)) cells.set(cell, { n: 0, sides: { C: new Map(), S: new Map() } })
  const c = cells.get(cell)
  c.n++
  const sides = [["C", r.client, r.clientImpl], ["S", r.server, r.serverImpl]]
  for (const [side, agent, impl] of sides) {
    if (impl !== "omega") continue
    const evs = window(agent, r.at.connect - 0.2, r.at.open + 0.5)
    const seen = new Set()
    for (let i = 1; i < evs.length; i++) {
      const key = `${evs[i - 1][1]}→${evs[i][1]}`
      if (seen.has(key)) continue
      seen.add(key)
      const steps = c.sides[side]
      if (!steps.has(key)) steps.set(key, { at: [], ms: [], cpu: [] })
      steps.get(key).at.push(evs[i - 1][0] - r.at.connect)
      steps.get(key).ms.push(evs[i][0] - evs[i - 1][0])
      if (evs[i][2] !== null && evs[i - 1][2] !== null) steps.get(key).cpu.push((evs[i][2] - evs[i - 1][2]) / 1000)
    }
  }
}

for (const [cell, c] of cells) {
  for (const side of ["C", "S"]) {
    const steps = [...c.sides[side]].filter(([, s]) => s.ms.length >= 0.6 * c.n)
    if (steps.length === 0) continue
    const rows = steps
      .map(([key, s]) => ({ key, at: median(s.at), ms: median(s.ms), cpu: s.cpu.length > 0 ? median(s.cpu) : null }))
      .sort((a, b) => a.at - b.at)
    const crypto = rows.filter((x) => CRYPTO.has(x.key)).reduce((a, x) => a + x.ms, 0)
    const withCpu = rows.some((x) => x.cpu !== null)
    console.log(`\n${cell}: ${side === "C" ? "client" : "server"} (${c.n} dials; Noise crypto steps ${crypto.toFixed(2)} ms)`)
    console.log(withCpu ? "| at | step | ms | cpu ms |" : "| at | step | ms |")
    console.log(withCpu ? "|---|---|---|---|" : "|---|---|---|")
    for (const x of rows) {
      if (x.ms < minMs) continue
      const cpu = withCpu ? ` ${x.cpu === null ? "—" : x.cpu.toFixed(3)} |` : ""
      console.log(`| ${x.at.toFixed(2)} | ${x.key} | ${x.ms.toFixed(3)} |${cpu}`)
    }
  }
}
