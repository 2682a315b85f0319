// Connections by public key on 127.0.0.1: connect() → 'open' latency and the
// goodput of one encrypted stream, Omega vs the reference (hyperdht 6.34.0).
//
//   npm run bench:connect                  (builds first)
//   node bench/connect.mjs [N] [MiB] [R]   N dials per pairing (default 30),
//                                          MiB per goodput run (default 64),
//                                          R goodput runs per pairing (default 1)
//
// One process, one network shared by both implementations: a reference
// testnet of 10 persistent nodes (`hyperdht/testnet.js`, the usual local
// network of hyperdht's own tests), joined by four ordinary (default-option)
// nodes: an Omega server node, a reference server node, an Omega client node
// and a reference client node. One shared network is what makes the mixed
// rows (Omega client → reference server, reference client → Omega server)
// possible, and it gives every pairing the same DHT to look the server up
// in. Both ends of every connection (and the testnet) run in this process,
// so each figure includes the CPU of both ends.
//
// 1. Latency: each server node listens on one key pair; each dial is
//    `connect(serverKey, { keyPair: <fresh key pair> })` from the client node
//    of its kind, timed from the call to the client's 'open'. The four
//    pairings are interleaved dial by dial (the machine may be shared and its
//    speed drifts), one dial at a time; each connection is ended gracefully
//    and closed before the next dial. A dial that has not opened in 10 s, or
//    errors, is destroyed and counted as a failure (with its error code).
//    Both implementations cache the relay addresses of a server after a
//    successful dial, so the first dial of a pairing (a FIND_PEER lookup
//    through the DHT) is slower than the rest: it is shown in its own column,
//    and included in the statistics. In a cold process the first dial also
//    pays the first use of each side's connect code; WARM=1 first makes one
//    unrecorded dial per pairing to a second key pair on each server node
//    (compiled code, yet a relay cache still cold for the measured key).
// 2. Goodput: one fresh connection per pairing; the client writes MiB in
//    64 KiB chunks as fast as backpressure allows; timed from the first write
//    to the moment the server has read every byte (bounded by a 120 s
//    timeout). Omega↔Omega and reference↔reference, plus the mixed pairings
//    as extra rows.
import { createRequire } from "node:module"
import os from "node:os"
import { dgramClosedLoop } from "./lib/dgram-loop.mjs"

const require = createRequire(import.meta.url)
const { Gateway } = await import("../dist/index.js")
// OMEGA_CRYPTO=native: Omega with sodium-native signatures, hashes and DH (a
// measurement aid, bench/native-crypto.mjs): what the protocol code costs
// without the cost of crypto in WASM (Omega ships without native addons)
const { cryptoOptionsFromEnv } = await import("./native-crypto.mjs")
const cryptoOpts = await cryptoOptionsFromEnv()
const { default: HyperDHT } = await import("hyperdht")
const createTestnet = require("hyperdht/testnet.js")

const HOST = "127.0.0.1"
const TESTNET_SIZE = 10
const N = Number(process.argv[2] ?? 30)
const MIB = Number(process.argv[3] ?? 64)
const GOODPUT_RUNS = Number(process.argv[4] ?? 1)
const DIAL_TIMEOUT = 10_000
const CLOSE_TIMEOUT = 5_000
const GOODPUT_TIMEOUT = 120_000
const DESTROY_TIMEOUT = 10_000
const CHUNK = 64 * 1024
const SIZE = MIB * 1024 * 1024

if (!(N >= 1) || !(MIB > 0) || !(GOODPUT_RUNS >= 1)) {
  console.error("usage: node bench/connect.mjs [dials ≥ 1] [MiB > 0] [goodput runs ≥ 1]")
  process.exit(2)
}

// never hang: a hard bound on the whole run (dials, transfers, teardown)
const budget = 120_000 + 4 * N * (DIAL_TIMEOUT + CLOSE_TIMEOUT) + 4 * GOODPUT_RUNS * (GOODPUT_TIMEOUT + CLOSE_TIMEOUT) + 60_000
const watchdog = setTimeout(() => {
  console.error(`watchdog: the run took more than ${Math.round(budget / 1000)} s, exiting`)
  process.exit(3)
}, budget)
watchdog.unref()

const now = () => performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const noop = () => {}
const withTimeout = (p, ms, what) => {
  let t
  return Promise.race([p, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`timeout ${ms} ms: ${what}`)), ms)))]).finally(() => clearTimeout(t))
}
const hex = (b) => Buffer.from(b).toString("hex")
const codeOf = (err) => err?.code ?? err?._tag ?? (String(err?.message ?? err).startsWith("timeout") ? "TIMEOUT" : String(err?.message ?? err).slice(0, 40))

// ---- the network ---------------------------------------------------------------------------

const cleanup = [] // destroy in reverse order
const destroyAll = async () => {
  while (cleanup.length > 0) {
    const f = cleanup.pop()
    await withTimeout(Promise.resolve().then(f), DESTROY_TIMEOUT, "destroy").catch((e) => console.error(`teardown: ${e.message}`))
  }
}

const kinds = {
  omega: {
    name: "Omega",
    keyPair: () => Gateway.keyPair(),
    node: (bootstrap) => {
      const g = new Gateway({ bootstrap, host: HOST, ...cryptoOpts })
      g.on("error", noop)
      return g
    }
  },
  reference: {
    name: "reference",
    keyPair: () => HyperDHT.keyPair(),
    node: (bootstrap) => new HyperDHT({ bootstrap, host: HOST })
  }
}

/** Per server: remote public key (hex) → what to do with that connection (else: echo the end). */
const serverSocketHandlers = new Map()
const serverSockets = new Set()
const onServerConnection = (s) => {
  serverSockets.add(s)
  s.on("error", noop)
  s.on("close", () => serverSockets.delete(s))
  const h = serverSocketHandlers.get(hex(s.remotePublicKey))
  if (h !== undefined) return h(s)
  s.on("data", noop)
  s.on("end", () => s.end())
}

const t0 = now()
const testnet = await withTimeout(createTestnet(TESTNET_SIZE, { host: HOST }), 60_000, "testnet")
cleanup.push(() => testnet.destroy())
const bootstrap = testnet.bootstrap.map((b) => (typeof b === "string" ? b : `${b.host}:${b.port}`))

const nodes = {}
for (const role of ["server", "client"]) {
  for (const k of ["omega", "reference"]) {
    const n = kinds[k].node(bootstrap)
    cleanup.push(() => n.destroy())
    nodes[`${k}-${role}`] = n
  }
}
await withTimeout(Promise.all(Object.values(nodes).map((n) => n.ready())), 30_000, "client and server nodes ready")
const WARM = process.env.WARM === "1"
const servers = {}
const warmServers = {}
for (const k of ["omega", "reference"]) {
  const server = nodes[`${k}-server`].createServer(onServerConnection)
  await withTimeout(server.listen(kinds[k].keyPair()), 30_000, `${k} server listen`)
  servers[k] = server
  if (WARM) {
    const warm = nodes[`${k}-server`].createServer(onServerConnection)
    await withTimeout(warm.listen(kinds[k].keyPair()), 30_000, `${k} warm-up server listen`)
    warmServers[k] = warm
  }
}
const setupMs = now() - t0

// ---- one dial -------------------------------------------------------------------------------

/** End a connection gracefully and wait for its 'close' (destroyed after CLOSE_TIMEOUT). */
const closeSocket = async (s) => {
  if (s.destroyed) return
  const closed = new Promise((r) => s.once("close", r))
  s.end()
  await withTimeout(closed, CLOSE_TIMEOUT, "close").catch(() => s.destroy())
}

/** connect() → 'open' in ms, or throws (error or timeout); the socket is closed either way. */
const dialOnce = async (clientKind, serverKind, target = servers[serverKind]) => {
  const client = nodes[`${clientKind}-client`]
  const keyPair = kinds[clientKind].keyPair() // a fresh key pair per dial
  const start = now()
  const s = client.connect(target.publicKey, { keyPair })
  const opened = new Promise((resolve, reject) => {
    s.once("open", () => resolve(now() - start))
    s.once("error", reject)
    s.once("close", () => reject(new Error("closed before open")))
  })
  try {
    return await withTimeout(opened, DIAL_TIMEOUT, "open")
  } catch (err) {
    s.on("error", noop)
    s.destroy()
    throw err
  } finally {
    s.on("error", noop)
    s.on("data", noop)
    await closeSocket(s)
  }
}

// ---- one transfer ---------------------------------------------------------------------------

const chunk = Buffer.alloc(CHUNK, 0x5a)

/** MiB/s of SIZE bytes client → server over one fresh connection, or throws. */
const transferOnce = async (clientKind, serverKind) => {
  const client = nodes[`${clientKind}-client`]
  const keyPair = kinds[clientKind].keyPair()
  const key = hex(keyPair.publicKey)
  let start = 0
  let failed = noop
  const failure = new Promise((_, rej) => (failed = rej))
  const received = new Promise((resolve) => {
    serverSocketHandlers.set(key, (s) => {
      let got = 0
      s.on("data", (d) => {
        got += d.length
        if (got >= SIZE) resolve(now())
      })
      s.on("end", () => {
        if (got < SIZE) failed(new Error(`server read ${got} of ${SIZE} bytes`))
        s.end()
      })
      s.on("error", (e) => failed(e))
    })
  })
  const s = client.connect(servers[serverKind].publicKey, { keyPair })
  s.on("data", noop)
  try {
    await withTimeout(
      new Promise((resolve, reject) => {
        s.once("open", resolve)
        s.once("error", reject)
      }),
      DIAL_TIMEOUT,
      "open"
    )
    s.on("error", (e) => failed(e))
    let cpu0 = null
    const pump = async () => {
      start = now()
      cpu0 = process.cpuUsage()
      for (let sent = 0; sent < SIZE; sent += CHUNK) {
        const part = SIZE - sent >= CHUNK ? chunk : chunk.subarray(0, SIZE - sent)
        if (!s.write(part)) {
          await new Promise((r, rej) => {
            s.once("drain", r)
            failure.catch(rej)
          })
        }
      }
    }
    pump().catch(failed)
    const end = await withTimeout(Promise.race([received, failure]), GOODPUT_TIMEOUT, `${MIB} MiB`)
    const cpu = process.cpuUsage(cpu0)
    return { rate: MIB / ((end - start) / 1000), cpuPerMiB: (cpu.user + cpu.system) / 1000 / MIB }
  } finally {
    failure.catch(noop)
    serverSocketHandlers.delete(key)
    s.on("error", noop)
    await closeSocket(s)
  }
}

// ---- the platform floor of goodput ------------------------------------------------------------

async function platformFloor() {
  // (1) node:dgram: a closed loop of 128 datagrams in flight between two
  // loopback sockets (each arrival triggers the next send), for 1 s
  const SIZE_D = 1472
  const loop = await dgramClosedLoop({ size: SIZE_D, seconds: 1, host: HOST })
  const dgramMs = loop.cpuMs / ((loop.datagrams * SIZE_D) / 1048576)
  // (2) the secret stream's AEAD (crypto_secretstream_xchacha20poly1305) as
  // Omega runs it: seal and open 64 MiB in 64 KiB frames
  const { makeFast } = await import("../dist/layers/crypto/fast.js")
  const fast = await makeFast()
  const key = new Uint8Array(32).fill(9)
  const frame = new Uint8Array(65536).fill(3)
  const { state, header } = fast.secretstreamInitPush(key)
  const pull = fast.secretstreamInitPull(key, header)
  const c2 = process.cpuUsage()
  for (let i = 0; i < 1024; i++) {
    const sealed = fast.secretstreamPush(state, frame)
    if (fast.secretstreamPull(pull, sealed) === null) throw new Error("AEAD open failed")
  }
  const c3 = process.cpuUsage(c2)
  return { dgram: dgramMs, aead: (c3.user + c3.system) / 1000 / 64 }
}

// ---- the runs -------------------------------------------------------------------------------

const pairings = [
  ["omega", "omega"],
  ["reference", "reference"],
  ["omega", "reference"],
  ["reference", "omega"]
]
const label = ([c, s]) => `${kinds[c].name} → ${kinds[s].name}`
const results = new Map(pairings.map((p) => [label(p), { times: [], dialCpu: [], first: null, failures: {}, rates: [], cpu: [], transferFailures: {} }]))
const fail = (bag, err) => {
  const c = codeOf(err)
  bag[c] = (bag[c] ?? 0) + 1
}

const warmFailures = {}
if (WARM) {
  for (const p of pairings) await dialOnce(p[0], p[1], warmServers[p[1]]).catch((err) => fail(warmFailures, err))
}

for (let i = 0; i < N; i++) {
  // rotate the order each round so that no pairing always goes first
  for (let j = 0; j < pairings.length; j++) {
    const p = pairings[(i + j) % pairings.length]
    const r = results.get(label(p))
    try {
      const c0 = process.cpuUsage()
      const ms = await dialOnce(...p)
      const c = process.cpuUsage(c0)
      r.times.push(ms)
      r.dialCpu.push((c.user + c.system) / 1000)
      if (i === 0) r.first = ms
    } catch (err) {
      fail(r.failures, err)
    }
  }
}

for (let run = 0; run < GOODPUT_RUNS; run++) {
  for (let j = 0; j < pairings.length; j++) {
    const p = pairings[(run + j) % pairings.length]
    const r = results.get(label(p))
    await sleep(100)
    try {
      const t = await transferOnce(...p)
      r.rates.push(t.rate)
      r.cpu.push(t.cpuPerMiB)
    } catch (err) {
      fail(r.transferFailures, err)
    }
  }
}

// ---- the table ------------------------------------------------------------------------------

const sorted = (xs) => [...xs].sort((a, b) => a - b)
const quantile = (xs, q) => {
  if (xs.length === 0) return NaN
  const s = sorted(xs)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]
}
const median = (xs) => {
  if (xs.length === 0) return NaN
  const s = sorted(xs)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : "—")
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : "—")
const failText = (bag) => {
  const e = Object.entries(bag)
  return e.length === 0 ? "0" : `${e.reduce((s, [, n]) => s + n, 0)} (${e.map(([c, n]) => `${c}×${n}`).join(", ")})`
}

const cores = typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length
console.log(`connections on ${HOST}: node ${process.version}, ${cores} cores (${os.cpus()[0]?.model?.trim() ?? "?"}), hyperdht ${require("hyperdht/package.json").version}`)
console.log(`network: reference testnet of ${TESTNET_SIZE} nodes + 4 client/server nodes (Omega and reference), set up in ${(setupMs / 1000).toFixed(1)} s`)
console.log("")
console.log(`connect() → 'open' latency (ms), ${N} dials per pairing, fresh client key pair each, interleaved; timeout ${DIAL_TIMEOUT / 1000} s${WARM ? `; after 1 warm-up dial per pairing to another key (failures: ${failText(warmFailures)})` : ""}`)
const lat = ["pairing (client → server)", "median", "p95", "min", "max", "first", "ok", "CPU ms", "failures"]
const w = [30, 9, 9, 9, 9, 9, 6, 8]
console.log(lat.map((h, i) => (i === 0 ? h.padEnd(w[0]) : i < lat.length - 1 ? h.padStart(w[i]) : "  " + h)).join(""))
for (const p of pairings) {
  const r = results.get(label(p))
  const cells = [median(r.times), quantile(r.times, 0.95), Math.min(...r.times), Math.max(...r.times), r.first ?? NaN]
  console.log(label(p).padEnd(w[0]) + cells.map((x, i) => f1(r.times.length ? x : NaN).padStart(w[i + 1])).join("") + `${r.times.length}/${N}`.padStart(w[6]) + f1(r.dialCpu.length ? median(r.dialCpu) : NaN).padStart(w[7]) + "  " + failText(r.failures))
}
console.log("CPU ms: median process CPU (user + system) of one dial's whole life, connect() to 'close' after a graceful end, both ends and the testnet's relaying (all in this process)")
const oo = results.get(label(pairings[0]))
const rr = results.get(label(pairings[1]))
console.log(
  `ratio Omega / reference (Omega→Omega vs reference→reference): median ${ratio(median(oo.times), median(rr.times))}, p95 ${ratio(quantile(oo.times, 0.95), quantile(rr.times, 0.95))}, first ${ratio(oo.first, rr.first)}`
)
console.log("")
console.log(`goodput, ${MIB} MiB client → server over one connection, 64 KiB writes with backpressure${GOODPUT_RUNS > 1 ? `, median of ${GOODPUT_RUNS} runs` : ""}`)
console.log("pairing (client → server)".padEnd(w[0]) + "MiB/s".padStart(10) + "CPU ms/MiB".padStart(12) + "  failures")
for (const p of pairings) {
  const r = results.get(label(p))
  console.log(label(p).padEnd(w[0]) + f1(median(r.rates)).padStart(10) + f1(median(r.cpu)).padStart(12) + "  " + failText(r.transferFailures))
}
console.log(`ratio Omega / reference (Omega↔Omega vs reference↔reference): ${ratio(median(oo.rates), median(rr.rates))}`)
// Both ends of a transfer share this process's one JavaScript thread, so
// goodput is set by CPU per MiB. Whatever the protocol code does, a pure-JS
// implementation pays, per MiB, at least the node:dgram cost of sending and
// receiving its datagrams and the AEAD of the secret stream at both ends: the
// floor below, measured now. reference CPU/MiB ÷ floor = the best goodput
// ratio a pure-JS stack could reach here with protocol code that cost nothing.
const floor = await platformFloor()
console.log(
  `platform floor per MiB: node:dgram send+receive of 1,472-byte datagrams ${f1(floor.dgram)} ms + secret-stream AEAD (seal + open, 64 KiB frames, Omega's Crypto) ${f1(floor.aead)} ms = ${f1(floor.dgram + floor.aead)} ms; ` +
    `bound on the Omega / reference goodput ratio: ${ratio(median(rr.cpu), floor.dgram + floor.aead)} (reference ${f1(median(rr.cpu))} CPU ms/MiB, Omega ${f1(median(oo.cpu))})`
)

const statsLine = (name, st) =>
  `${name} client node: punches ${Object.entries(st.punches).map(([k, v]) => `${k} ${v}`).join(", ")}; relaying ${st.relaying.attempts} attempts, ${st.relaying.successes} successes`
console.log("")
console.log(statsLine("Omega", nodes["omega-client"].stats))
console.log(statsLine("reference", nodes["reference-client"].stats))

// ---- teardown -------------------------------------------------------------------------------

for (const s of serverSockets) s.destroy()
for (const k of ["omega", "reference"]) cleanup.push(() => servers[k].close()) // servers close before their nodes
await destroyAll()
process.exit(0)
