// The NAT lab's worker: one process per namespace (`ip netns exec <ns> node
// agent.mjs <name>`), driven by the orchestrator (run.mjs) through JSON lines:
// a command `{ id, op, ... }` on stdin, its answer `{ id, ok, result | error }`
// on stdout; diagnostics go to stderr. Every wait is bounded.
//
// Both implementations live in each agent: Omega (dist/, `npm run build`) and
// the reference (hyperdht). Every node gets an explicit bootstrap list (the
// lab's bootstrapper); the default public lists are emptied.
//
// Ops:
//   infra       (core) bootstrapper + persistent nodes, each on its own address
//   relay       (core) a blind relay on its own address (reference: hyperdht +
//               blind-relay; Omega: BlindRelayServer)
//   udp-observe (core) plain-UDP observers that answer with the source they see
//   udp-inject  (core) unsolicited datagrams to an address, from a stranger
//               address and from an observer's address on another port
//   udp-probe / udp-collect   (home) the plain-UDP NAT check
//   serve / unserve           (home) a server node listening on a fresh key pair
//   dial                      (home) a client node's connect(), timed
//   selfcheck                 (home) a fresh node: what it concludes about itself
//   release                   destroy reused nodes
import dgram from "node:dgram"
import { createRequire } from "node:module"
import { performance } from "node:perf_hooks"
import readline from "node:readline"

process.env.OMEGA_BOOTSTRAP = ""
const require = createRequire(import.meta.url)
const { Gateway } = await import("../../dist/index.js")
// OMEGA_CRYPTO=native: Omega nodes with sodium-native signatures, hashes and Noise DH, a
// measurement aid that separates the protocol path's cost from the WASM crypto's (../native-crypto.mjs)
const { cryptoOptionsFromEnv } = await import("../native-crypto.mjs")
const cryptoOpts = await cryptoOptionsFromEnv()
const { BlindRelayServer } = await import("../../dist/api/blind-relay.js")
const HyperDHT = require("hyperdht")
require("hyperdht/lib/constants.js").BOOTSTRAP_NODES.length = 0
const BlindRelay = require("blind-relay")

const NAME = process.argv[2] ?? "agent"

// NATLAB_PROFILE=DIR: the client dials' windows (connect() to 'open', CLOCK_MONOTONIC µs, the clock of
// V8's CPU profiles), written to DIR/<agent>.windows.json at shutdown; with NATLAB_NODE_FLAGS="--cpu-prof
// --cpu-prof-dir=DIR" the samples of each agent's profile that fall in them are the dials' CPU
const PROFILE_DIR = process.env.NATLAB_PROFILE ?? ""
const windows = []
const monoUs = () => Number(process.hrtime.bigint() / 1000n)
const log = (...a) => process.stderr.write(`[${NAME}] ${a.join(" ")}\n`)

// NATLAB_TRACE=DIR: the instants (ms since the epoch) of Omega's step marks (src/layers/trace.ts: a
// dial's and a server's steps) and of every datagram an Omega socket sends or receives (node:dgram;
// the reference's udx-native sockets are not seen), written to DIR/<agent>.trace.json at shutdown as
// [t, label, t, label, ...]; bench/natlab/steps.mjs lines them up with the dials. With
// NATLAB_TRACE_CPU=1 each label also carries the process's CPU time then (process.cpuUsage, user +
// system µs) as `label|cpu`: steps.mjs then shows how much of each step the process spent working
const TRACE_DIR = process.env.NATLAB_TRACE ?? ""
const traced = []
if (TRACE_DIR !== "") {
  const now = () => performance.timeOrigin + performance.now()
  const withCpu = process.env.NATLAB_TRACE_CPU === "1"
  const record = withCpu
    ? (label) => {
      const t = now()
      const u = process.cpuUsage()
      traced.push(t, `${label}|${u.user + u.system}`)
    }
    : (label) => traced.push(now(), label)
  globalThis.__omegaTrace = record
  const send = dgram.Socket.prototype.send
  dgram.Socket.prototype.send = function (msg, ...rest) {
    record(`tx:${msg?.length}`)
    return send.call(this, msg, ...rest)
  }
  const emit = dgram.Socket.prototype.emit
  dgram.Socket.prototype.emit = function (event, ...args) {
    if (event === "message") record(`rx:${args[0]?.length}`)
    return emit.call(this, event, ...args)
  }
}

// A stray error in a library callback must not end the agent: log it, go on.
process.on("uncaughtException", (err) => log("uncaught:", err?.stack ?? err))
process.on("unhandledRejection", (err) => log("unhandled rejection:", err?.stack ?? err))

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const withTimeout = (p, ms, what) => {
  let t
  return Promise.race([p, new Promise((_, rej) => (t = setTimeout(() => rej(Object.assign(new Error(`timeout after ${ms} ms: ${what}`), { code: "TIMEOUT" })), ms)))]).finally(() => clearTimeout(t))
}
const hex = (b) => (b ? Buffer.from(b).toString("hex") : null)
const round = (x, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits

// ---------------------------------------------------------------------------
// Implementations
// ---------------------------------------------------------------------------

let bootstrap = []

const IMPL = {
  omega: {
    make: (opts) => {
      const n = new Gateway({ bootstrap, ...cryptoOpts, ...opts })
      n.on("error", (e) => log("omega node error:", e?.message ?? e))
      return n
    },
    keyPair: () => Gateway.keyPair(),
    bootstrapper: (port, host) => {
      const n = Gateway.bootstrapper(port, host, { host })
      n.on("error", (e) => log("omega bootstrapper error:", e?.message ?? e))
      return n
    }
  },
  ref: {
    make: (opts) => {
      const n = new HyperDHT({ bootstrap, ...opts })
      n.on("error", (e) => log("reference node error:", e?.message ?? e))
      return n
    },
    keyPair: () => HyperDHT.keyPair(),
    bootstrapper: (port, host) => HyperDHT.bootstrapper(port, host, { host })
  }
}

const impl = (name) => {
  const i = IMPL[name]
  if (!i) throw new Error(`unknown implementation ${name}`)
  return i
}

/** What a node says about itself: hyperdht's getters, and the class they amount to. */
const selfReport = (node) => {
  let remote = null
  try {
    remote = node.remoteAddress?.() ?? null
  } catch {
    remote = null
  }
  const firewalled = node.firewalled
  const randomized = node.randomized
  const host = node.host ?? null
  const port = node.port ?? 0
  const cls = !firewalled ? "open" : randomized ? "random" : host !== null && port > 0 ? "consistent" : "unknown"
  return { class: cls, firewalled, randomized, host, port, remote: remote ? `${remote.host}:${remote.port}` : null }
}

const stats = (node) => {
  const s = node.stats ?? {}
  return {
    punches: { ...(s.punches ?? {}) },
    relaying: { ...(s.relaying ?? {}) }
  }
}
const delta = (after, before) => {
  const out = {}
  for (const group of ["punches", "relaying"]) {
    for (const [k, v] of Object.entries(after[group] ?? {})) {
      if (typeof v !== "number") continue
      const d = v - (before[group]?.[k] ?? 0)
      if (d !== 0) out[`${group}.${k}`] = d
    }
  }
  return out
}

const destroyNode = async (node) => {
  if (!node) return
  await withTimeout(Promise.resolve().then(() => node.destroy()), 10_000, "destroy").catch((e) => log("destroy:", e.message))
}

/** The remote UDP address of an encrypted socket's raw stream (both implementations). */
const remoteOf = (socket) => {
  const raw = socket.rawStream
  const host = socket.remoteHost ?? raw?.remoteHost ?? null
  const port = socket.remotePort ?? raw?.remotePort ?? 0
  return host ? `${host}:${port}` : null
}

/**
 * The path a connection took. Omega's sockets say it (`path`). For the
 * reference it is read from where its raw stream ended up: connected to a
 * relay's address (relayed), over one of the DHT node's own sockets (direct;
 * lan when the remote is a private address), or over another socket (a
 * holepuncher's pool socket: punched).
 */
const pathOf = (implName, node, socket, remote) => {
  if (implName === "omega") return socket.path ?? null
  const host = remote ? remote.split(":")[0] : null
  if (host !== null && relayHosts.includes(host)) return "relayed"
  const via = socket.rawStream?.socket ?? null
  const own = [node.io?.serverSocket, node.io?.clientSocket].filter(Boolean)
  if (via !== null && own.length > 0 && !own.includes(via)) return "punched"
  if (host !== null && (host.startsWith("192.168.") || host.startsWith("10."))) return "lan"
  return "direct"
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

const infra = []
const relays = []
const servers = new Map() // handle -> { node, server, conns, reuse, before }
const reused = new Map() // "server:impl" / "client:impl" -> node
const udp = { observers: [], stranger: null, probe: null, received: [] }
let relayHosts = []
let handles = 0

const getNode = async (role, implName, reuse, opts = {}) => {
  const key = `${role}:${implName}`
  if (reuse && reused.has(key)) return { node: reused.get(key), fresh: false }
  const node = impl(implName).make(opts)
  const t0 = performance.now()
  await withTimeout(node.ready(), 20_000, `${implName} ${role} node ready`)
  const readyMs = round(performance.now() - t0)
  if (reuse) reused.set(key, node)
  return { node, fresh: true, readyMs }
}

// ---------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------

const ops = {
  hello: async () => ({ name: NAME, pid: process.pid, node: process.version }),

  setBootstrap: async ({ list, relayHosts: rh }) => {
    bootstrap = list
    relayHosts = rh ?? []
    return { bootstrap }
  },

  // bootstrapper + persistent nodes, each bound to its own address
  infra: async ({ impl: which, port, bootstrapper, nodes }) => {
    const implOf = (i) => (which === "mixed" ? (i % 2 === 0 ? "ref" : "omega") : which)
    const boot = impl(which === "omega" ? "omega" : "ref").bootstrapper(port, bootstrapper)
    infra.push(boot)
    await withTimeout(boot.ready(), 15_000, "bootstrapper ready")
    bootstrap = [`${bootstrapper}:${port}`]
    const made = nodes.map((host, i) => {
      const n = impl(implOf(i)).make({ host, port, ephemeral: false, firewalled: false, anyPort: false })
      infra.push(n)
      return { n, host, impl: implOf(i) }
    })
    await withTimeout(Promise.all(made.map((m) => m.n.ready())), 30_000, "persistent nodes ready")
    return { bootstrap, nodes: made.map((m) => ({ host: m.host, impl: m.impl, ...selfReport(m.n) })) }
  },

  // an Omega node started with `relay: true`: it announces its relay under the relay topic
  "auto-relay": async ({ host, port }) => {
    const node = impl("omega").make({ host, port, ephemeral: false, firewalled: false, anyPort: false, relay: true })
    infra.push(node)
    await withTimeout(node.ready(), 20_000, "auto-relay node ready")
    const t0 = performance.now()
    while (node.relay === null || node.relay.announces === 0) {
      if (performance.now() - t0 > 20_000) throw new Error("the auto relay did not announce itself within 20 s")
      await sleep(100)
    }
    return { publicKey: hex(node.relay.publicKey), host, announcedMs: Math.round(performance.now() - t0) }
  },

  relay: async ({ impl: which, host, port }) => {
    const node = impl(which).make({ host, port, ephemeral: false, firewalled: false, anyPort: false })
    infra.push(node)
    await withTimeout(node.ready(), 20_000, "relay node ready")
    if (which === "omega") {
      const relay = new BlindRelayServer(node)
      relays.push(relay)
      const server = await withTimeout(relay.listen(), 20_000, "Omega relay listening")
      return { publicKey: hex(server.publicKey), host }
    }
    const relay = new BlindRelay.Server({ createStream: (opts) => node.createRawStream({ ...opts, framed: true }) })
    relays.push(relay)
    const server = node.createServer((socket) => {
      socket.on("error", () => {})
      relay.accept(socket, { id: socket.remotePublicKey })
    })
    await withTimeout(server.listen(), 20_000, "reference relay listening")
    return { publicKey: hex(server.publicKey), host }
  },

  "udp-observe": async ({ observers, port, stranger }) => {
    for (const host of observers) {
      const s = dgram.createSocket("udp4")
      s.on("error", (e) => log("observer:", e.message))
      s.on("message", (msg, rinfo) => {
        s.send(JSON.stringify({ seen: `${rinfo.address}:${rinfo.port}`, by: `${host}:${port}` }), rinfo.port, rinfo.address)
      })
      await new Promise((res, rej) => {
        s.once("error", rej)
        s.bind(port, host, res)
      })
      udp.observers.push({ host, s })
    }
    // the stranger and an observer's other port: sources the home never sent to
    for (const [host, p] of [[stranger, port + 2], [observers[0], port + 1]]) {
      const s = dgram.createSocket("udp4")
      s.on("error", (e) => log("injector:", e.message))
      await new Promise((res, rej) => {
        s.once("error", rej)
        s.bind(p, host, res)
      })
      udp.observers.push({ host: `${host}:${p}`, s, injector: true })
    }
    return { observers: observers.map((h) => `${h}:${port}`) }
  },

  "udp-inject": async ({ to }) => {
    const [host, port] = [to.split(":")[0], Number(to.split(":")[1])]
    const sent = []
    for (const o of udp.observers.filter((o) => o.injector)) {
      for (let i = 0; i < 3; i++) o.s.send(`unsolicited from ${o.host}`, port, host)
      sent.push(o.host)
    }
    return { sent }
  },

  "udp-probe": async ({ observers }) => {
    const s = dgram.createSocket("udp4")
    udp.probe = s
    udp.received = []
    const seen = new Map()
    s.on("error", (e) => log("probe:", e.message))
    s.on("message", (msg, rinfo) => {
      const from = `${rinfo.address}:${rinfo.port}`
      try {
        const j = JSON.parse(msg.toString())
        if (j.seen && observers.includes(from)) {
          seen.set(from, j.seen)
          return
        }
      } catch {
        // not an observer's answer
      }
      udp.received.push(from)
    })
    await new Promise((res) => s.bind(0, "0.0.0.0", res))
    const local = s.address().port
    for (let attempt = 0; attempt < 5 && seen.size < observers.length; attempt++) {
      for (const o of observers) if (!seen.has(o)) s.send("probe", Number(o.split(":")[1]), o.split(":")[0])
      await sleep(200)
    }
    return { localPort: local, seen: observers.map((o) => seen.get(o) ?? null) }
  },

  "udp-collect": async ({ waitMs = 300 }) => {
    await sleep(waitMs)
    const received = [...new Set(udp.received)]
    udp.probe?.close()
    udp.probe = null
    return { received }
  },

  // a server node (fresh, or the reused one) listening on a fresh key pair, echoing what it reads
  serve: async ({ impl: which, reuse = false, relayThrough = null, holepunch }) => {
    const { node, readyMs } = await getNode("server", which, reuse)
    const before = stats(node)
    const conns = []
    const opts = {}
    if (relayThrough) opts.relayThrough = relayThrough === "auto" ? "auto" : Buffer.from(relayThrough, "hex")
    if (holepunch === false) opts.holepunch = false
    const server = node.createServer(opts, (socket) => {
      const c = { socket, path: null, remote: null, opened: false, error: null }
      conns.push(c)
      // the path and address while the socket is up (read again when the server is closed)
      const look = () => {
        c.opened = true
        c.remote = remoteOf(socket) ?? c.remote
        c.path = pathOf(which, node, socket, c.remote) ?? c.path
      }
      if (socket.rawStream) look()
      socket.on("open", look)
      socket.on("data", (d) => {
        look()
        socket.write(d)
      })
      socket.on("error", (e) => {
        if (!c.opened) c.error = e?.code ?? e?.message ?? String(e)
      })
      socket.on("end", () => socket.end())
    })
    const kp = impl(which).keyPair()
    const t0 = performance.now()
    await withTimeout(server.listen(kp), 20_000, "listen")
    const handle = ++handles
    servers.set(handle, { node, server, conns, reuse, before, which })
    return { handle, publicKey: hex(kp.publicKey), readyMs, listenMs: round(performance.now() - t0), nat: selfReport(node) }
  },

  unserve: async ({ handle }) => {
    const s = servers.get(handle)
    if (!s) throw new Error(`no server ${handle}`)
    servers.delete(handle)
    const d = delta(stats(s.node), s.before)
    const nat = selfReport(s.node)
    const conns = s.conns.map((c) => ({ path: c.path, remote: c.remote, opened: c.opened, error: c.error }))
    await withTimeout(s.server.close(), 10_000, "server close").catch((e) => log("server close:", e.message))
    if (!s.reuse) await destroyNode(s.node)
    return { connections: conns, stats: d, nat }
  },

  // a client node (fresh, or the reused one) dials `key`; timed from connect() to 'open'
  dial: async ({ impl: which, key, reuse = false, relayThrough = null, timeoutMs = 30_000 }) => {
    let got
    try {
      got = await getNode("client", which, reuse)
    } catch (e) {
      return { ok: false, code: "NODE_NOT_READY", message: e.message }
    }
    const { node, readyMs } = got
    const before = stats(node)
    const opts = { keyPair: impl(which).keyPair() }
    if (relayThrough) opts.relayThrough = relayThrough === "auto" ? "auto" : Buffer.from(relayThrough, "hex")
    const t0 = performance.now()
    const t0Epoch = performance.timeOrigin + t0
    const w0 = monoUs()
    const cpu0 = process.cpuUsage()
    let cpuMs = null
    const socket = node.connect(Buffer.from(key, "hex"), opts)
    let openMs = null
    let echoMs = null
    let error = null
    try {
      await withTimeout(
        new Promise((resolve, reject) => {
          socket.once("open", () => {
            openMs = performance.now() - t0
            const cpu = process.cpuUsage(cpu0)
            cpuMs = (cpu.user + cpu.system) / 1000
            if (PROFILE_DIR !== "") windows.push({ impl: which, from: w0, to: monoUs() })
            resolve()
          })
          socket.once("error", reject)
          socket.once("close", () => reject(Object.assign(new Error("closed before open"), { code: "CLOSED" })))
        }),
        timeoutMs,
        "open"
      )
      const t1 = performance.now()
      socket.write(Buffer.from("natlab ping"))
      await withTimeout(
        new Promise((resolve, reject) => {
          socket.once("data", () => resolve())
          socket.once("error", reject)
        }),
        10_000,
        "echo"
      )
      echoMs = performance.now() - t1
    } catch (e) {
      error = e
    }
    socket.on("error", () => {})
    const remote = remoteOf(socket)
    const d = delta(stats(node), before)
    const result = {
      ok: error === null,
      openMs: openMs === null ? null : round(openMs),
      // this process's CPU (user + system) from connect() to 'open': the client's side of the dial
      cpuMs: cpuMs === null ? null : round(cpuMs, 2),
      echoMs: echoMs === null ? null : round(echoMs),
      failMs: error === null ? null : round(performance.now() - t0),
      code: error === null ? null : (error.code ?? error.name ?? "ERROR"),
      message: error === null ? null : String(error.message ?? error).slice(0, 300),
      report: error?.report ?? null,
      path: openMs !== null ? pathOf(which, node, socket, remote) : null,
      remote,
      stats: d,
      readyMs: readyMs ?? null,
      nat: selfReport(node),
      // wall-clock instants (ms since the epoch, sub-ms) of connect() and 'open', to line up with packet captures
      at: { connect: round(t0Epoch, 3), open: openMs === null ? null : round(t0Epoch + openMs, 3) }
    }
    // end gracefully (bounded), so the server side sees a clean close
    if (error === null) {
      socket.end()
      await withTimeout(new Promise((r) => socket.once("close", r)), 2000, "close").catch(() => {})
    }
    socket.destroy()
    if (!reuse) await destroyNode(node)
    return result
  },

  // a fresh node: what it concludes about itself at ready() and `waitMs` later
  selfcheck: async ({ impl: which, waitMs = 3000 }) => {
    const node = impl(which).make({})
    const t0 = performance.now()
    try {
      await withTimeout(node.ready(), 20_000, "ready")
      const atReady = { ms: round(performance.now() - t0), ...selfReport(node) }
      await sleep(waitMs)
      const later = { ms: round(performance.now() - t0), ...selfReport(node) }
      return { atReady, later }
    } finally {
      await destroyNode(node)
    }
  },

  release: async () => {
    for (const [k, n] of reused) {
      reused.delete(k)
      await destroyNode(n)
    }
    return { released: true }
  },

  shutdown: async () => {
    for (const s of servers.values()) await withTimeout(s.server.close(), 5000, "close").catch(() => {})
    for (const [, n] of reused) await destroyNode(n)
    for (const r of relays) await withTimeout(Promise.resolve().then(() => r.close()), 5000, "relay close").catch(() => {})
    for (const n of infra.reverse()) await destroyNode(n)
    for (const o of udp.observers) o.s.close()
    if (PROFILE_DIR !== "") (await import("node:fs")).writeFileSync(`${PROFILE_DIR}/${NAME}.windows.json`, JSON.stringify(windows))
    if (TRACE_DIR !== "") (await import("node:fs")).writeFileSync(`${TRACE_DIR}/${NAME}.trace.json`, JSON.stringify(traced))
    setTimeout(() => process.exit(0), 50)
    return { bye: true }
  }
}

// ---------------------------------------------------------------------------
// The JSON-lines loop (commands run one at a time, in order)
// ---------------------------------------------------------------------------

const reply = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`)
const rl = readline.createInterface({ input: process.stdin })
let chain = Promise.resolve()
rl.on("line", (line) => {
  if (!line.trim()) return
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch {
    return reply({ id: null, ok: false, error: "bad json" })
  }
  chain = chain.then(async () => {
    const f = ops[cmd.op]
    if (!f) return reply({ id: cmd.id, ok: false, error: `unknown op ${cmd.op}` })
    try {
      reply({ id: cmd.id, ok: true, result: await f(cmd) })
    } catch (e) {
      reply({ id: cmd.id, ok: false, error: e?.message ?? String(e), code: e?.code ?? null })
    }
  })
})
// the orchestrator went away: leave
rl.on("close", () => {
  log("stdin closed, exiting")
  setTimeout(() => process.exit(0), 200)
})
reply({ id: 0, ok: true, result: { ready: NAME } })
