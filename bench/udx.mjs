// UDX throughput on 127.0.0.1 (run with `npm run bench:udx`, which builds first).
//
// In one process, measured in this run:
//   (1) the raw node:dgram loopback ceiling: two sockets, a closed loop of
//       WINDOW datagrams of 1180 bytes in flight, every datagram received
//       triggers one more send (datagrams/s and MB/s of payload);
//   (2) one 256 MiB stream, Omega <-> Omega and udx-native <-> udx-native;
//   (3) 16 parallel 16 MiB streams over one socket pair, both implementations.
// Goodput = application bytes delivered / wall time from the first write to
// the last byte read; CPU = process.cpuUsage() delta (user + system, both
// ends live in this process) per MB delivered.
//
// Both implementations run with their defaults: path MTU probing from 1200
// up to 1500 (1,472-byte UDP payloads once the search completes on
// loopback). A second Omega row stays at the 1200-byte base MTU. The dgram
// ceiling is measured at both payload sizes (1,472 and 1,152 + 28 header
// bytes = 1,180), and each Omega row is compared with the ceiling at its own
// packet size.
//
// Every case runs UDX_BENCH_RUNS times (cases interleaved: the machine may be
// shared and noisy); the table shows medians.
//
// Env: UDX_BENCH_SIZE_MIB (256), UDX_BENCH_PAR (16), UDX_BENCH_PAR_MIB (16),
//      UDX_BENCH_SECONDS (2, dgram ceiling), UDX_BENCH_RUNS (3),
//      UDX_BENCH_ONLY (comma list of case keys: dgram, dgram-base, native-1,
//      omega-1, omega-1-base, native-par, omega-par, omega-par-base)
import { Effect, Fiber, Stream } from "effect"
import { createRequire } from "node:module"
import { makeUdxMux } from "../dist/actors/session/udx.js"
import { UdpTransport } from "../dist/layers/transport/udp.js"
import { dgramClosedLoop } from "./lib/dgram-loop.mjs"

const require = createRequire(import.meta.url)
const UDX = require("udx-native")

const MiB = 1 << 20
const MB = 1e6
const HOST = "127.0.0.1"
const SIZE = Number(process.env.UDX_BENCH_SIZE_MIB ?? 256) * MiB
const PAR = Number(process.env.UDX_BENCH_PAR ?? 16)
const PAR_SIZE = Number(process.env.UDX_BENCH_PAR_MIB ?? 16) * MiB
const SECONDS = Number(process.env.UDX_BENCH_SECONDS ?? 2)
const RUNS = Number(process.env.UDX_BENCH_RUNS ?? 3)
const ONLY = process.env.UDX_BENCH_ONLY ? new Set(process.env.UDX_BENCH_ONLY.split(",")) : null
const SOCKET_BUF = 4 * MiB
const CHUNK = 64 * 1024
const chunk = new Uint8Array(CHUNK).fill(0x5a)

const delay = (ms) => new Promise((r) => setTimeout(r, ms))

/**
 * Let the event loop settle before a measurement. (No forced GC: a full
 * gc() before each run made the following runs slower, not fairer.)
 */
const settle = () => delay(100)

const measure = async (fn) => {
  await settle()
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  const bytes = await fn()
  const dt = (performance.now() - t0) / 1000
  const c = process.cpuUsage(c0)
  const cpuMs = (c.user + c.system) / 1000
  return { bytes, seconds: dt, mbps: bytes / MB / dt, cpuPerMB: cpuMs / (bytes / MB) }
}

// ---- (1) raw dgram ceiling ---------------------------------------------------
async function dgramCeiling(SIZE_D) {
  const r = await dgramClosedLoop({ size: SIZE_D, seconds: SECONDS, host: HOST, bufferSize: SOCKET_BUF, warmupMs: 500 })
  const rate = r.datagrams / r.seconds
  return { dgramsPerSec: rate, mbps: (rate * SIZE_D) / MB, cpuPerMB: r.cpuMs / ((r.datagrams * SIZE_D) / MB) }
}

// ---- udx-native ---------------------------------------------------------------
async function nativeRun(streams, perStream) {
  const udx = new UDX()
  const sa = udx.createSocket()
  const sb = udx.createSocket()
  sa.bind(0, HOST)
  sb.bind(0, HOST)
  const pa = sa.address().port
  const pb = sb.address().port
  const pairs = []
  for (let i = 0; i < streams; i++) {
    const a = udx.createStream(1000 + i)
    const b = udx.createStream(2000 + i)
    a.connect(sa, 2000 + i, pb, HOST)
    b.connect(sb, 1000 + i, pa, HOST)
    pairs.push({ a, b })
  }
  const r = await measure(() =>
    Promise.all(
      pairs.map(
        ({ a, b }) =>
          new Promise((resolve, reject) => {
            let got = 0
            b.on("data", (d) => {
              got += d.length
            })
            b.on("end", () => {
              b.end()
              resolve(got)
            })
            b.on("error", reject)
            a.on("error", reject)
            let sent = 0
            const pump = () => {
              while (sent < perStream) {
                sent += CHUNK
                if (!a.write(chunk)) return void a.once("drain", pump)
              }
              a.end()
            }
            pump()
          })
      )
    ).then((xs) => xs.reduce((s, x) => s + x, 0))
  )
  await Promise.all(pairs.map(({ a, b }) => Promise.all([a, b].map((s) => (s.destroyed ? null : new Promise((res) => s.once("close", res)))))))
  await sa.close()
  await sb.close()
  return r
}

// ---- Omega -----------------------------------------------------------------------
// Everything (actors, writers, readers) runs in ONE Effect runtime: a nested
// Effect.runPromise would put the writers/readers on a second scheduler.
const omegaRun = (streams, perStream, config) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const transport = yield* UdpTransport.makeWith({ recvBufferSize: SOCKET_BUF, sendBufferSize: SOCKET_BUF, inboxCapacity: 65536 })
        const sa = yield* transport.bind({ host: HOST })
        const sb = yield* transport.bind({ host: HOST })
        const ma = yield* makeUdxMux(sa, { defaults: config })
        const mb = yield* makeUdxMux(sb, { defaults: config })
        const pairs = []
        for (let i = 0; i < streams; i++) {
          const a = yield* ma.connect(1000 + i, 2000 + i, sb.local)
          const b = yield* mb.connect(2000 + i, 1000 + i, sa.local)
          pairs.push({ a, b })
        }
        const one = ({ a, b }) =>
          Effect.gen(function*() {
            const writer = Effect.gen(function*() {
              for (let sent = 0; sent < perStream; sent += CHUNK) yield* a.write(chunk)
              yield* a.end()
            })
            const w = yield* Effect.forkChild(writer, { startImmediately: true })
            let got = 0
            yield* Stream.runForEachArray(b.readable, (cs) =>
              Effect.sync(() => {
                for (let i = 0; i < cs.length; i++) got += cs[i].length
              }))
            yield* b.end()
            yield* Fiber.join(w)
            return got
          })
        yield* Effect.promise(() => settle())
        const c0 = process.cpuUsage()
        const t0 = performance.now()
        const counts = yield* Effect.all(pairs.map(one), { concurrency: "unbounded" })
        const seconds = (performance.now() - t0) / 1000
        const c = process.cpuUsage(c0)
        const bytes = counts.reduce((s, x) => s + x, 0)
        const r = { bytes, seconds, mbps: bytes / MB / seconds, cpuPerMB: (c.user + c.system) / 1000 / (bytes / MB) }
        yield* Effect.all(pairs.flatMap(({ a, b }) => [a.closed, b.closed]), { concurrency: "unbounded" }).pipe(Effect.timeout("5 seconds"), Effect.ignore)
        const st = pairs.map(({ a }) => a.stats())
        r.retransmits = st.reduce((s, x) => s + x.retransmits, 0)
        r.packets = st.reduce((s, x) => s + x.dataPacketsSent, 0)
        r.drops = sa.stats().dropped + sb.stats().dropped
        return r
      })
    )
  )

// ---- run ------------------------------------------------------------------------------
const want = (k) => ONLY === null || ONLY.has(k)
const fmt = (x, d = 1) => (x === undefined || Number.isNaN(x) ? "-" : x.toFixed(d))
const median = (xs) => {
  const v = xs.filter((x) => x !== undefined).sort((a, b) => a - b)
  return v.length === 0 ? undefined : v.length % 2 === 1 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2
}

const cases = [
  ["dgram", "node:dgram closed loop, 1472 B datagrams", () => dgramCeiling(1472)],
  ["dgram-base", "node:dgram closed loop, 1180 B datagrams", () => dgramCeiling(1180)],
  ["native-1", "udx-native <-> udx-native, 1 stream (default)", () => nativeRun(1, SIZE)],
  ["omega-1", "Omega <-> Omega, 1 stream (default: PMTU probing to 1500)", () => omegaRun(1, SIZE, {})],
  ["omega-1-base", "Omega <-> Omega, 1 stream (base MTU 1200, no probing)", () => omegaRun(1, SIZE, { maxMtu: 1200 })],
  ["native-par", `udx-native <-> udx-native, ${PAR} streams (default)`, () => nativeRun(PAR, PAR_SIZE)],
  ["omega-par", `Omega <-> Omega, ${PAR} streams (default: PMTU probing to 1500)`, () => omegaRun(PAR, PAR_SIZE, {})],
  ["omega-par-base", `Omega <-> Omega, ${PAR} streams (base MTU 1200, no probing)`, () => omegaRun(PAR, PAR_SIZE, { maxMtu: 1200 })]
].filter(([k]) => want(k))

console.log(
  `node ${process.version}, ${SIZE / MiB} MiB single stream, ${PAR} x ${PAR_SIZE / MiB} MiB parallel, ${RUNS} interleaved runs (medians), Omega socket buffers ${SOCKET_BUF / MiB} MiB`
)
const samples = new Map(cases.map(([k]) => [k, []]))
for (let run = 1; run <= RUNS; run++) {
  for (const [key, label, fn] of cases) {
    const r = await fn()
    samples.get(key).push(r)
    const extra = r.dgramsPerSec !== undefined
      ? ` (${Math.round(r.dgramsPerSec).toLocaleString("en-US")} datagrams/s)`
      : r.retransmits !== undefined
      ? `, ${r.retransmits} retransmits / ${r.packets} data packets, ${r.drops} local drops`
      : ""
    console.log(`run ${run}: ${label}: ${fmt(r.mbps)} MB/s, ${fmt(r.cpuPerMB, 2)} CPU ms/MB${extra}`)
  }
}
const med = new Map(
  [...samples].map(([k, rs]) => [k, { mbps: median(rs.map((r) => r.mbps)), cpuPerMB: median(rs.map((r) => r.cpuPerMB)), dgramsPerSec: median(rs.map((r) => r.dgramsPerSec)) }])
)
console.log("")
for (const k of ["dgram", "dgram-base"]) {
  const c = med.get(k)
  if (c) console.log(`dgram ceiling (${k === "dgram" ? 1472 : 1180} B): ${Math.round(c.dgramsPerSec).toLocaleString("en-US")} datagrams/s, ${fmt(c.mbps)} MB/s, ${fmt(c.cpuPerMB, 2)} CPU ms/MB`)
}
console.log("| case | goodput MB/s | CPU ms/MB | goodput vs udx-native | CPU/MB vs udx-native | goodput vs dgram ceiling |")
console.log("|---|---:|---:|---:|---:|---:|")
for (const [key, label] of cases) {
  const r = med.get(key)
  const ceiling = med.get(key.endsWith("-base") ? "dgram-base" : "dgram")
  const ref = key.startsWith("omega") ? med.get(key.includes("par") ? "native-par" : "native-1") : undefined
  console.log(
    `| ${label} | ${fmt(r.mbps)} | ${fmt(r.cpuPerMB, 2)} | ${ref ? fmt(r.mbps / ref.mbps, 2) + "x" : "-"} | ${ref ? fmt(r.cpuPerMB / ref.cpuPerMB, 2) + "x" : "-"} | ${ceiling ? fmt(r.mbps / ceiling.mbps, 2) + "x" : "-"} |`
  )
}
process.exit(0)
