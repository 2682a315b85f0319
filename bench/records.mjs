/**
 * HyperDHT records latency: Omega vs the reference (hyperdht 6.34.0).
 *
 * For each side, in its own child process: a 25-node network on 127.0.0.1
 * (a bootstrapper + 24 persistent nodes of that implementation) and an
 * ephemeral client of the same implementation. Both children live through
 * the run, but only one works at a time: the parent asks them for one round
 * each in turn (the first side alternates), so that both sides are measured
 * on the same machine minute by minute (a shared host's speed drifts, and
 * two sides measured one after the other disagreed by up to 2x). After a
 * warm-up, RUNS rounds of:
 *
 *   announce            announce a fresh topic (lookup + commit to the closest nodes)
 *   lookup→first peer   time until the loop body sees the first lookup reply carrying the
 *                       announced peer (the query is then stopped, not timed)
 *   mutablePut          fresh key pair, seq 1 (query + commit)
 *   mutableGet          default options (latest: true, i.e. the whole query)
 *   immutablePut        fresh value (query + commit)
 *   immutableGet        until the first reply whose hash matches
 *
 * Every result is checked (peer found, seq/value read back), so a fast
 * failure cannot pass for a fast success.
 *
 *   npm run bench:records            (builds first)
 *   node bench/records.mjs [runs]    (default 30)
 *   node bench/records.mjs --no-matrix   (skip the client × nodes cross runs)
 *   node bench/records.mjs --side omega|reference [--client omega|reference] [runs]
 *                                    (one network, JSON out; the client defaults to the same kind)
 *   VW=n node bench/records.mjs      Omega nodes with n signature-check workers (default: the
 *                                    facade's, 2 on a machine with at least 2 cores)
 *   OMEGA_CRYPTO=native              Omega with sodium-native signatures and hashes (a
 *                                    measurement of the protocol code alone; see
 *                                    bench/native-crypto.mjs); OMEGA_CRYPTO=fast is its
 *                                    control (the same per-node runtime, default crypto)
 */
import { fork } from "node:child_process"
import { fileURLToPath } from "node:url"

const HOST = "127.0.0.1"
const NODES = 25
const OPS = ["announce", "lookup→first peer", "mutablePut", "mutableGet", "immutablePut", "immutableGet"]

const args = process.argv.slice(2)
const flag = (name) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : null
}
const side = flag("--side")
const clientSide = flag("--client") ?? side
const MATRIX = !args.includes("--no-matrix")
const RUNS = Number(args.filter((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--side") && !args[i - 1]?.startsWith("--client"))[0] ?? 30)
const WARMUP = 5

const randomPort = () => 20000 + Math.floor(Math.random() * 40000)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const now = () => performance.now()
const timeout = (p, ms, what) => {
  let t
  return Promise.race([p, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`timeout ${ms} ms: ${what}`)), ms)))]).finally(() => clearTimeout(t))
}

// ---- one side ----------------------------------------------------------------------------

/** The two implementations behind one interface. */
const implementations = {
  async omega() {
    const { Gateway } = await import("../dist/index.js")
    // OMEGA_CRYPTO=native: Omega's signatures and hashes by sodium-native (bench/native-crypto.mjs);
    // OMEGA_CRYPTO=fast: the same per-node runtime with the default crypto (the control)
    const { cryptoOptionsFromEnv } = await import("./native-crypto.mjs")
    const cryptoOpts = await cryptoOptionsFromEnv()
    return {
      name: "Omega",
      hash: (b) => Gateway.hash(b),
      keyPair: () => Gateway.keyPair(),
      async bootstrapper() {
        for (let i = 0; i < 8; i++) {
          const port = randomPort()
          const node = Gateway.bootstrapper(port, HOST, { host: HOST, ...cryptoOpts })
          node.on("error", () => {})
          try {
            await node.ready()
            return { node, port }
          } catch {
            await node.destroy().catch(() => {})
          }
        }
        throw new Error("no bootstrapper port")
      },
      node(bootPort, persistent) {
        const g = new Gateway({ bootstrap: [`${HOST}:${bootPort}`], host: HOST, ephemeral: !persistent, ...cryptoOpts, ...(process.env.VW ? { verifyWorkers: Number(process.env.VW) } : {}) })
        g.on("error", () => {})
        return g
      },
      async announce(c, topic, kp) {
        const r = await c.announce(topic, kp, [{ host: "10.0.0.1", port: 1000 }]).finished()
        return r.accepted
      },
      async lookupFirst(c, topic, pk) {
        for await (const r of c.lookup(topic)) {
          if (r.peers.some((p) => Buffer.from(p.publicKey).equals(pk))) return now()
        }
        return null
      },
      async mutablePut(c, kp, value) {
        return (await c.mutablePut(kp, value, { seq: 1 })).accepted
      },
      async mutableGet(c, pk) {
        const r = await c.mutableGet(pk)
        return r === null ? null : Buffer.from(r.value)
      },
      async immutablePut(c, value) {
        const r = await c.immutablePut(value)
        return { hash: r.hash, stored: r.accepted }
      },
      async immutableGet(c, hash) {
        const r = await c.immutableGet(hash)
        return r === null ? null : Buffer.from(r.value)
      }
    }
  },
  async reference() {
    const { default: HyperDHT } = await import("hyperdht")
    return {
      name: "reference",
      hash: (b) => HyperDHT.hash(b),
      keyPair: () => HyperDHT.keyPair(),
      async bootstrapper() {
        for (let i = 0; i < 8; i++) {
          const port = randomPort()
          const node = HyperDHT.bootstrapper(port, HOST, { host: HOST })
          try {
            await node.ready()
            return { node, port }
          } catch {
            await node.destroy().catch(() => {})
          }
        }
        throw new Error("no bootstrapper port")
      },
      node(bootPort, persistent) {
        return new HyperDHT({
          bootstrap: [`${HOST}:${bootPort}`],
          host: HOST,
          port: randomPort(),
          ...(persistent ? { ephemeral: false, firewalled: false } : { ephemeral: true })
        })
      },
      async announce(c, topic, kp) {
        const q = c.announce(topic, kp, [{ host: "10.0.0.1", port: 1000 }])
        await q.finished()
        return q.closestReplies.length
      },
      async lookupFirst(c, topic, pk) {
        for await (const r of c.lookup(topic)) {
          if (r.peers.some((p) => p.publicKey.equals(pk))) return now()
        }
        return null
      },
      async mutablePut(c, kp, value) {
        return (await c.mutablePut(kp, value, { seq: 1 })).closestNodes.length
      },
      async mutableGet(c, pk) {
        const r = await c.mutableGet(pk)
        return r === null ? null : r.value
      },
      async immutablePut(c, value) {
        const r = await c.immutablePut(value)
        return { hash: r.hash, stored: r.closestNodes.length }
      },
      async immutableGet(c, hash) {
        const r = await c.immutableGet(hash)
        return r === null ? null : r.value
      }
    }
  }
}

/**
 * One side's network and client. `round(i)` runs the six operations once
 * (round numbers below WARMUP are not recorded); `close()` reports.
 */
const openSide = async (which, clientWhich) => {
  const impl = await implementations[which]()
  const cimpl = clientWhich === which ? impl : await implementations[clientWhich]()
  const all = []
  const boot = await impl.bootstrapper()
  all.push(boot.node)
  const nodes = []
  for (let i = 0; i < NODES - 1; i++) nodes.push(impl.node(boot.port, true))
  all.push(...nodes)
  await timeout(Promise.all(nodes.map((n) => n.ready())), 60_000, "nodes ready")
  const client = cimpl.node(boot.port, false)
  all.push(client)
  await timeout(client.ready(), 30_000, "client ready")
  await sleep(2000) // let the tables settle
  const persistent = nodes.filter((n) => !n.ephemeral).length + 1

  const samples = Object.fromEntries(OPS.map((op) => [op, []]))
  const stored = { announce: [], mutablePut: [], immutablePut: [] }
  const failures = []
  const time = async (op, i, f, { endAt = null } = {}) => {
    const t0 = now()
    const r = await timeout(f(), 30_000, op)
    const t1 = endAt !== null ? endAt(r) ?? now() : now()
    if (i >= WARMUP) samples[op].push(t1 - t0)
    return r
  }
  const round = async (i) => {
    const tag = `${which} ${i} ${Math.random()}`
    const topic = cimpl.hash(Buffer.from(`topic ${tag}`))
    const kp = cimpl.keyPair()
    const n1 = await time("announce", i, () => cimpl.announce(client, topic, kp))
    // timed until the loop body sees the peer (stopping the query afterwards is not counted)
    const found = await time("lookup→first peer", i, () => cimpl.lookupFirst(client, topic, kp.publicKey), { endAt: (at) => at })
    if (found === null) failures.push(`lookup ${i}: peer not found`)
    const mkp = cimpl.keyPair()
    const mvalue = Buffer.from(`mutable ${tag}`)
    const n2 = await time("mutablePut", i, () => cimpl.mutablePut(client, mkp, mvalue))
    const mgot = await time("mutableGet", i, () => cimpl.mutableGet(client, mkp.publicKey))
    if (mgot === null || !Buffer.from(mgot).equals(mvalue)) failures.push(`mutableGet ${i}: ${mgot}`)
    const ivalue = Buffer.from(`immutable ${tag}`)
    const { hash, stored: n3 } = await time("immutablePut", i, () => cimpl.immutablePut(client, ivalue))
    const igot = await time("immutableGet", i, () => cimpl.immutableGet(client, hash))
    if (igot === null || !Buffer.from(igot).equals(ivalue)) failures.push(`immutableGet ${i}: ${igot}`)
    if (i >= WARMUP) {
      stored.announce.push(n1)
      stored.mutablePut.push(n2)
      stored.immutablePut.push(n3)
    }
  }
  const close = async () => {
    const mem = process.memoryUsage().rss
    await Promise.all(all.map((n) => timeout(n.destroy(), 10_000, "destroy").catch(() => {})))
    return { side: impl.name, client: cimpl.name, persistent, runs: samples.announce.length, samples, stored, failures, rssMB: Math.round(mem / 1e6) }
  }
  return { round, close }
}

// ---- parent: run both sides, print the table ---------------------------------------------------

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const pos = (s.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return s[lo] + (s[hi] - s[lo]) * (pos - lo)
}

/**
 * A side in a child process of its own, driven round by round over IPC, so
 * that the parent can interleave the two sides' rounds: the machine's speed
 * drifts over minutes (shared host), and two sides measured one after the
 * other would each see a different machine.
 */
const child = (which, clientWhich = which) =>
  new Promise((resolve, reject) => {
    const p = fork(fileURLToPath(import.meta.url), ["--side", which, "--client", clientWhich, "--serve"], { stdio: ["ignore", "inherit", "inherit", "ipc"] })
    let waiting = { resolve: () => {}, reject }
    p.on("message", (m) => {
      if (m.error) waiting.reject(new Error(`${which} side: ${m.error}`))
      else waiting.resolve(m)
    })
    p.on("exit", (code) => {
      if (code !== 0) waiting.reject(new Error(`${which} side exited with ${code}`))
    })
    const ask = (msg) =>
      new Promise((res, rej) => {
        waiting = { resolve: res, reject: rej }
        p.send(msg)
      })
    waiting = {
      resolve: () => resolve({ round: (i) => ask({ round: i }), close: () => ask({ close: true }) }),
      reject
    }
  })

/** Run the sides' rounds interleaved (which side goes first alternates); their reports. */
const interleaved = async (sides) => {
  const cs = []
  for (const [which, clientWhich] of sides) cs.push(await child(which, clientWhich))
  for (let i = 0; i < WARMUP + RUNS; i++) {
    const order = i % 2 === 0 ? cs : [...cs].reverse()
    for (const c of order) await c.round(i)
  }
  const out = []
  for (const c of cs) out.push(await c.close())
  return out
}

if (side !== null && args.includes("--serve")) {
  // driven by the parent: "ready", then one reply per round, the report on close
  const s = await openSide(side, clientSide)
  process.on("message", async (m) => {
    try {
      if (m.round !== undefined) {
        await s.round(m.round)
        process.send({ done: m.round })
      } else if (m.close) {
        const r = await s.close()
        process.send(r, () => process.exit(0))
      }
    } catch (e) {
      process.send({ error: String(e?.stack ?? e) }, () => process.exit(1))
    }
  })
  process.send({ ready: true })
} else if (side !== null) {
  const s = await openSide(side, clientSide)
  for (let i = 0; i < WARMUP + RUNS; i++) await s.round(i)
  process.stdout.write(JSON.stringify(await s.close()) + "\n")
  process.exit(0)
} else {
  const [omega, ref] = await interleaved([["omega", "omega"], ["reference", "reference"]])
  const f = (x) => (x < 10 ? x.toFixed(2) : x.toFixed(1)).padStart(7)
  console.log(`\nHyperDHT records latency, ${NODES}-node network per side on ${HOST}, ${RUNS} runs (after ${WARMUP} warm-up), ms`)
  console.log(`Omega: ${omega.persistent} persistent nodes, rss ${omega.rssMB} MB; reference: ${ref.persistent} persistent nodes, rss ${ref.rssMB} MB\n`)
  console.log(`${"operation".padEnd(20)} | ${"Omega med".padStart(9)} | ${"Omega p95".padStart(9)} | ${"ref med".padStart(9)} | ${"ref p95".padStart(9)} | ${"med ratio".padStart(9)} | ${"p95 ratio".padStart(9)}`)
  console.log(`${"-".repeat(20)}-|-${"-".repeat(9)}-|-${"-".repeat(9)}-|-${"-".repeat(9)}-|-${"-".repeat(9)}-|-${"-".repeat(9)}-|-${"-".repeat(9)}`)
  for (const op of OPS) {
    const om = quantile(omega.samples[op], 0.5)
    const op95 = quantile(omega.samples[op], 0.95)
    const rm = quantile(ref.samples[op], 0.5)
    const rp95 = quantile(ref.samples[op], 0.95)
    console.log(`${op.padEnd(20)} | ${f(om).padStart(9)} | ${f(op95).padStart(9)} | ${f(rm).padStart(9)} | ${f(rp95).padStart(9)} | ${(om / rm).toFixed(2).padStart(8)}x | ${(op95 / rp95).toFixed(2).padStart(8)}x`)
  }
  const avg = (xs) => (xs.reduce((s, x) => s + x, 0) / xs.length).toFixed(1)
  console.log(`\nwrites reached (mean closest nodes): Omega announce ${avg(omega.stored.announce)} / mutablePut ${avg(omega.stored.mutablePut)} / immutablePut ${avg(omega.stored.immutablePut)} accepted;` +
    ` reference ${avg(ref.stored.announce)} / ${avg(ref.stored.mutablePut)} / ${avg(ref.stored.immutablePut)} closest replies`)
  const fails = [...omega.failures.map((x) => `Omega ${x}`), ...ref.failures.map((x) => `reference ${x}`)]
  if (MATRIX) {
    // where does the time go: the same runs with the client of the other implementation
    const [omegaOnRef, refOnOmega] = await interleaved([["reference", "omega"], ["omega", "reference"]])
    fails.push(...omegaOnRef.failures.map((x) => `Omega client / reference nodes ${x}`), ...refOnOmega.failures.map((x) => `reference client / Omega nodes ${x}`))
    console.log(`\nmedians (ms) by client × nodes: which side's cost is it?`)
    console.log(`${"operation".padEnd(20)} | ${"Ω cl/Ω nodes".padStart(12)} | ${"Ω cl/ref nodes".padStart(14)} | ${"ref cl/Ω nodes".padStart(14)} | ${"ref cl/ref nodes".padStart(16)}`)
    console.log(`${"-".repeat(20)}-|-${"-".repeat(12)}-|-${"-".repeat(14)}-|-${"-".repeat(14)}-|-${"-".repeat(16)}`)
    for (const op of OPS) {
      const m = (r) => f(quantile(r.samples[op], 0.5))
      console.log(`${op.padEnd(20)} | ${m(omega).padStart(12)} | ${m(omegaOnRef).padStart(14)} | ${m(refOnOmega).padStart(14)} | ${m(ref).padStart(16)}`)
    }
  }
  console.log(fails.length === 0 ? "all reads verified (peer found, values read back)" : `FAILURES:\n  ${fails.join("\n  ")}`)
}
