// The CPU of the client's dials in a lab run, from V8 CPU profiles: the samples
// of an agent's profile that fall between a dial's connect() and its 'open'.
//
//   NATLAB_PROFILE=DIR NATLAB_NODE_FLAGS="--cpu-prof --cpu-prof-dir=DIR --cpu-prof-interval 100" \
//     node bench/natlab/run.mjs --modes fresh --pairings cons-cons --dirs oo,rr --self 0 --n 60
//   node bench/natlab/profile.mjs DIR/<profile>.cpuprofile DIR/<client home>.windows.json omega|ref [TOP]
//
// Prints, per dial (the first left out), the self time of the TOP functions and
// the time by file. Pass the windows of the client's agent; the server's agent's
// profile with the same windows shows the server's work during those dials (the
// windows are CLOCK_MONOTONIC, one clock for every process). The profiler
// slows the dials down (about twice at a 50 µs interval): compare shares, not
// absolute times.
import { readFileSync } from "node:fs"

const [file, windowsFile, impl, topArg] = process.argv.slice(2)
if (impl === undefined) {
  console.error("usage: node bench/natlab/profile.mjs PROFILE WINDOWS omega|ref [TOP]")
  process.exit(2)
}
const top = Number(topArg ?? 40)
const p = JSON.parse(readFileSync(file, "utf8"))
const windows = JSON.parse(readFileSync(windowsFile, "utf8")).filter((w) => w.impl === impl).slice(1)
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const short = (url) => url.replace(/.*\/(node_modules\/|dist\/)/, "$1")
const key = (n) => `${n.callFrame.functionName || "(anonymous)"} ${short(n.callFrame.url)}:${n.callFrame.lineNumber}`
const fileOf = (n) => short(n.callFrame.url).replace(/^(node_modules\/[^/]+).*/, "$1") || n.callFrame.functionName
const self = new Map()
const byFile = new Map()
let sampled = 0
let t = p.startTime
let w = 0
for (let i = 0; i < p.samples.length && w < windows.length; i++) {
  t += p.timeDeltas[i]
  while (w < windows.length && windows[w].to < t) w++
  if (w >= windows.length || t < windows[w].from) continue
  const us = p.timeDeltas[i + 1] ?? p.timeDeltas[i]
  const n = byId.get(p.samples[i])
  sampled += us
  self.set(key(n), (self.get(key(n)) ?? 0) + us)
  byFile.set(fileOf(n), (byFile.get(fileOf(n)) ?? 0) + us)
}
const wall = windows.reduce((s, x) => s + x.to - x.from, 0)
const per = (us) => (us / 1000 / Math.max(1, windows.length)).toFixed(3).padStart(8)
console.log(`${impl}: ${windows.length} dials, per dial: ${per(wall)} ms from connect() to 'open', ${per(sampled)} ms sampled (idle included)`)
console.log("\nself time per dial (ms)")
for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(per(us), k)
console.log("\nby file per dial (ms)")
for (const [k, us] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(per(us), k)
