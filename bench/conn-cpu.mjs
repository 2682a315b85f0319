// CPU per connection, Omega vs the reference (hyperdht 6.34.0), on 127.0.0.1.
//
//   npm run bench:conn-cpu                       (builds first)
//   node bench/conn-cpu.mjs [N] [--only=omega|reference]
//                                                N dials per implementation (default 200)
//   OMEGA_CRYPTO=native node bench/conn-cpu.mjs  Omega's signatures, hashes and Noise DH
//                                                on sodium-native (a measurement aid,
//                                                bench/native-crypto.mjs): what crypto in
//                                                WASM costs per connection
//
// Each implementation runs in its own child process, and a local testnet of
// 6 reference nodes (`hyperdht/testnet.js`) runs in a process of its own, so
// the child's CPU is only its two nodes': a server node listening on N + 10
// key pairs (announced before the measurement) and a client node. Ten
// warm-up dials first (compiled code); then N dials one after another, each
// to a server key not dialled before (so each looks the server up with
// FIND_PEER, as a first dial does) with a fresh client key pair, each ended
// gracefully and closed before the next. Per dial: the process's CPU (user +
// system, both ends of the connection) from `connect()` to the client's
// 'close', and the time from `connect()` to 'open'. Medians over the N dials;
// the last line is Omega / reference.
//
// Both nodes run on one host, so the connection's path is direct (no NAT, no
// holepunch); the NAT lab (bench/natlab) measures the punched paths, where a
// dial's steps also meet other processes' work on a shared core.
import { execFile, spawn } from "node:child_process"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import { benchArgs } from "./lib/args.mjs"

const require = createRequire(import.meta.url)
const HOST = "127.0.0.1"
process.env.OMEGA_BOOTSTRAP ??= "" // never the public nodes

const { positional, option } = benchArgs()
const only = option("only")
const childImpl = option("child")
const N = Number(positional[0] ?? 200)
const WARM = 10
const DIAL_TIMEOUT = 10_000

if (!(N >= 1)) {
  console.error("usage: node bench/conn-cpu.mjs [dials >= 1] [--only=omega|reference]")
  process.exit(2)
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const withTimeout = (p, ms, what) => {
  let t
  return Promise.race([p, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`timeout ${ms} ms: ${what}`)), ms)))]).finally(() => clearTimeout(t))
}

/** The testnet in a process of its own; resolves to its bootstrap list and a stop function. */
const startTestnet = () =>
  new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ["-e", `
      const createTestnet = require(${JSON.stringify(require.resolve("hyperdht/testnet.js"))})
      createTestnet(6, { host: ${JSON.stringify(HOST)} }).then((t) => {
        process.stdout.write(JSON.stringify(t.bootstrap) + "\\n")
        process.stdin.on("end", () => t.destroy().then(() => process.exit(0)))
        process.stdin.resume()
      })
    `], { stdio: ["pipe", "pipe", "inherit"] })
    p.once("error", reject)
    p.stdout.once("data", (d) => {
      const list = JSON.parse(String(d)).map((b) => (typeof b === "string" ? b : `${b.host}:${b.port}`))
      resolve({ bootstrap: list, stop: () => p.stdin.end() })
    })
  })

const runChild = async (impl) => {
  const { Gateway } = await import("../dist/index.js")
  const { default: HyperDHT } = await import("hyperdht")
  const { cryptoOptionsFromEnv } = await import("./native-crypto.mjs")
  const cryptoOpts = impl === "omega" ? await cryptoOptionsFromEnv() : {}
  const testnet = await withTimeout(startTestnet(), 60_000, "testnet")
  const node = () => {
    if (impl === "reference") return new HyperDHT({ bootstrap: testnet.bootstrap, host: HOST })
    const g = new Gateway({ bootstrap: testnet.bootstrap, host: HOST, ...cryptoOpts })
    g.on("error", () => {})
    return g
  }
  const keyPair = () => (impl === "omega" ? Gateway.keyPair() : HyperDHT.keyPair())
  const serverNode = node()
  const clientNode = node()
  await withTimeout(Promise.all([serverNode.ready(), clientNode.ready()]), 30_000, "nodes ready")
  const servers = []
  for (let i = 0; i < N + WARM; i++) {
    const s = serverNode.createServer((c) => {
      c.on("error", () => {})
      c.on("data", () => {})
      c.on("end", () => c.end())
    })
    await withTimeout(s.listen(keyPair()), 30_000, "listen")
    servers.push(s)
  }
  const dial = async (server) => {
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    const s = clientNode.connect(server.publicKey, { keyPair: keyPair() })
    s.on("data", () => {})
    const closed = new Promise((resolve) => s.once("close", resolve))
    try {
      await withTimeout(new Promise((resolve, reject) => {
        s.once("open", resolve)
        s.once("error", reject)
      }), DIAL_TIMEOUT, "open")
    } catch (e) {
      s.on("error", () => {})
      s.destroy()
      await closed
      return { ok: false, code: e.code ?? e.message }
    }
    const openMs = performance.now() - t0
    s.on("error", () => {})
    s.end()
    await withTimeout(closed, DIAL_TIMEOUT, "close").catch(() => s.destroy())
    const c = process.cpuUsage(c0)
    return { ok: true, openMs, cpuMs: (c.user + c.system) / 1000 }
  }
  for (let i = 0; i < WARM; i++) await dial(servers[N + i])
  const rows = []
  for (let i = 0; i < N; i++) rows.push(await dial(servers[i]))
  const ok = rows.filter((r) => r.ok)
  const out = {
    impl: impl === "omega" && process.env.OMEGA_CRYPTO === "native" ? "omega (native crypto)" : impl,
    dials: N,
    ok: ok.length,
    openMs: median(ok.map((r) => r.openMs)),
    cpuMs: median(ok.map((r) => r.cpuMs)),
    failures: rows.filter((r) => !r.ok).map((r) => r.code)
  }
  await Promise.all([clientNode.destroy(), serverNode.destroy()])
  testnet.stop()
  process.stdout.write(JSON.stringify(out) + "\n")
  process.exit(0)
}

if (childImpl !== undefined) await runChild(childImpl)
else {
  const self = fileURLToPath(import.meta.url)
  const impls = only !== undefined ? [only] : ["omega", "reference"]
  const results = {}
  for (const impl of impls) {
    const stdout = await new Promise((resolve, reject) =>
      execFile(process.execPath, [self, String(N), `--child=${impl}`], { timeout: 600_000, maxBuffer: 1 << 20 }, (err, out) => (err ? reject(err) : resolve(out)))
    )
    results[impl] = JSON.parse(stdout.trim().split("\n").pop())
  }
  console.log(`CPU per connection on ${HOST}: ${N} dials each, a fresh server key (FIND_PEER) and client key pair per dial`)
  console.log("| implementation | ok | connect() → 'open' (median) | CPU per dial and close, both ends (median) |")
  console.log("|---|---|---|---|")
  for (const r of Object.values(results)) console.log(`| ${r.impl} | ${r.ok}/${r.dials} | ${r.openMs.toFixed(2)} ms | ${r.cpuMs.toFixed(2)} ms |`)
  if (results.omega !== undefined && results.reference !== undefined) {
    console.log(`Omega / reference: open ${(results.omega.openMs / results.reference.openMs).toFixed(2)}, CPU ${(results.omega.cpuMs / results.reference.cpuMs).toFixed(2)}`)
  }
  for (const r of Object.values(results)) if (r.failures.length > 0) console.log(`${r.impl} failures: ${r.failures.join(", ")}`)
}
