// Memory per open encrypted connection, Omega vs the reference (hyperdht 6.34.0).
//
//   npm run bench:conn-memory                 (builds first)
//   node --expose-gc bench/conn-memory.mjs [N] [C] [--only=omega|reference]
//                                             N connections (default 200),
//                                             C dials at once (default 10)
//
// Each implementation runs in its own child process (a clean heap and RSS
// baseline): a local testnet of 5 reference nodes (`hyperdht/testnet.js`) on
// 127.0.0.1, then a server node and a client node of the implementation under
// test, and 20 warm-up connections opened and destroyed (compiled code, relay
// caches). After a GC the baseline is taken; then N connections are opened from
// the client node to one server key (a fresh client key pair each), C at a
// time; on each the client writes a short line and the server echoes it. When
// every echo has arrived and the streams have settled (acks, timers), a GC,
// then the second reading. Per connection = (reading − baseline) / N, both
// ends of the connection included (both live in the process). Then every
// connection is closed and the nodes destroyed.
//
// Fields: heap (heapUsed), external (process.memoryUsage().external: memory
// held outside the JS heap, ArrayBuffers included), arrayBuffers (the
// ArrayBuffer part of it), rss. The last table gives Omega / reference.
import { execFile } from "node:child_process"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import { benchArgs } from "./lib/args.mjs"

const require = createRequire(import.meta.url)
const HOST = "127.0.0.1"
process.env.OMEGA_BOOTSTRAP ??= "" // never the public nodes

const { positional, flag, option } = benchArgs()
const only = option("only")
const child = flag("child")
const N = Number(positional[0] ?? 200)
const C = Number(positional[1] ?? 10)
const SETTLE_MS = 1500
const WARM = 20
const DIAL_TIMEOUT = 15_000

if (!(N >= 1) || !(C >= 1)) {
  console.error("usage: node --expose-gc bench/conn-memory.mjs [connections ≥ 1] [concurrency ≥ 1] [--only=omega|reference]")
  process.exit(2)
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const noop = () => {}
const gc = async () => {
  if (typeof globalThis.gc !== "function") throw new Error("run with node --expose-gc")
  for (let i = 0; i < 3; i++) {
    globalThis.gc()
    await sleep(20)
  }
}
const withTimeout = (p, ms, what) => {
  let t
  return Promise.race([p, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`timeout ${ms} ms: ${what}`)), ms)))]).finally(() => clearTimeout(t))
}

// ---------------------------------------------------------------- child: one implementation

const runChild = async (kind) => {
  const createTestnet = require("hyperdht/testnet.js")
  let makeNode
  let keyPair
  if (kind === "omega") {
    const { Gateway } = await import("../dist/index.js")
    makeNode = (bootstrap) => {
      const g = new Gateway({ bootstrap, host: HOST })
      g.on("error", noop)
      return g
    }
    keyPair = () => Gateway.keyPair()
  } else {
    const { default: HyperDHT } = await import("hyperdht")
    makeNode = (bootstrap) => new HyperDHT({ bootstrap, host: HOST })
    keyPair = () => HyperDHT.keyPair()
  }
  const testnet = await withTimeout(createTestnet(5, { host: HOST }), 60_000, "testnet")
  const bootstrap = testnet.bootstrap.map((b) => (typeof b === "string" ? b : `${b.host}:${b.port}`))
  const serverNode = makeNode(bootstrap)
  const clientNode = makeNode(bootstrap)
  await withTimeout(Promise.all([serverNode.ready(), clientNode.ready()]), 30_000, "nodes ready")
  const serverSockets = []
  const server = serverNode.createServer((s) => {
    serverSockets.push(s)
    s.on("error", noop)
    s.on("data", (d) => s.write(d))
  })
  const serverKey = keyPair()
  await withTimeout(server.listen(serverKey), 30_000, "listen")

  // warm up: WARM connections opened and closed (compiled code, relay cache), not counted
  const dial = () =>
    new Promise((resolve, reject) => {
      const s = clientNode.connect(serverKey.publicKey, { keyPair: keyPair() })
      s.on("error", reject)
      s.once("data", () => resolve(s))
      s.once("open", () => s.write(Buffer.from("hello")))
    })
  for (let i = 0; i < WARM; i++) {
    const warm = await withTimeout(dial(), DIAL_TIMEOUT, "warm-up dial")
    warm.destroy()
  }
  await sleep(1000)
  serverSockets.length = 0

  await gc()
  const mem0 = process.memoryUsage()
  const clients = []
  const paths = {}
  let next = 0
  const worker = async () => {
    while (next < N) {
      next++
      const s = await withTimeout(dial(), DIAL_TIMEOUT, "dial")
      s.on("error", noop)
      clients.push(s)
      paths[s.path ?? "?"] = (paths[s.path ?? "?"] ?? 0) + 1
    }
  }
  const t0 = performance.now()
  await Promise.all(Array.from({ length: C }, worker))
  const openMs = performance.now() - t0
  await sleep(SETTLE_MS)
  await gc()
  const mem1 = process.memoryUsage()
  const per = (f) => (mem1[f] - mem0[f]) / N
  const result = {
    kind,
    n: N,
    serverSockets: serverSockets.length,
    paths,
    openMs,
    heap: per("heapUsed"),
    heapTotal: per("heapTotal"),
    external: per("external"),
    arrayBuffers: per("arrayBuffers"),
    rss: per("rss")
  }
  for (const s of clients) s.destroy()
  await sleep(200)
  await Promise.all([server.close().catch(noop)])
  await Promise.all([clientNode.destroy(), serverNode.destroy()].map((p) => withTimeout(p, 10_000, "destroy").catch(noop)))
  await withTimeout(testnet.destroy(), 10_000, "testnet destroy").catch(noop)
  return result
}

if (child) {
  const kind = only
  runChild(kind).then(
    (r) => {
      process.stdout.write(JSON.stringify(r) + "\n")
      process.exit(0)
    },
    (e) => {
      console.error(e)
      process.exit(1)
    }
  )
} else {
  const self = fileURLToPath(import.meta.url)
  const runKind = (kind) =>
    new Promise((resolve, reject) => {
      execFile(process.execPath, ["--expose-gc", self, String(N), String(C), `--only=${kind}`, "--child"], { maxBuffer: 1 << 20, timeout: 300_000 }, (err, stdout, stderr) => {
        if (err) return reject(new Error(`${kind}: ${err.message}\n${stderr}`))
        const line = stdout.trim().split("\n").pop()
        resolve(JSON.parse(line))
      })
    })
  const kinds = only !== undefined ? [only] : ["omega", "reference"]
  const results = {}
  for (const k of kinds) results[k] = await runKind(k)
  const kb = (b) => (b / 1024).toFixed(1).padStart(9)
  console.log(`memory per open connection (both ends), ${N} connections, ${C} dials at once, after GC, minus the baseline; KiB`)
  console.log(`${"".padEnd(10)}${"heap".padStart(9)}${"external".padStart(9)}${"arrBufs".padStart(9)}${"rss".padStart(9)}   paths / open time`)
  for (const k of kinds) {
    const r = results[k]
    console.log(`${k.padEnd(10)}${kb(r.heap)}${kb(r.external)}${kb(r.arrayBuffers)}${kb(r.rss)}   ${JSON.stringify(r.paths)} in ${(r.openMs / 1000).toFixed(1)} s`)
  }
  if (results.omega && results.reference) {
    const o = results.omega
    const r = results.reference
    const ratio = (a, b) => (b > 0 ? (a / b).toFixed(2) : "n/a").padStart(9)
    console.log(`${"ratio".padEnd(10)}${ratio(o.heap, r.heap)}${ratio(o.external, r.external)}${ratio(o.arrayBuffers, r.arrayBuffers)}${ratio(o.rss, r.rss)}   (Omega / reference)`)
  }
  console.log(JSON.stringify({ bench: "conn-memory", n: N, concurrency: C, ...results }))
}
