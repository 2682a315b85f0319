// A simulated day: a HyperDHT network on the simulated network and a virtual
// clock, under continuous churn, loss with reordering and duplication, and a
// partition that heals, with a steady workload whose outcomes are checked.
//
// Usage: node --expose-gc bench/simday.mjs [nodes] [hours]
//   (`npm run simday`: 1000 nodes, 24 hours). Environment: SEED (default 1),
//   CHURN (fraction of the nodes replaced over the run, default 0.3), LOSS
//   (default 0.05), DUP (duplication rate, default 0.01).
//
// The network: `nodes` persistent HyperDHT nodes and a bootstrapper on open
// hosts (latency 20 ms + jitter 10 ms, so datagrams reorder; every link loses
// LOSS and duplicates DUP of its datagrams; datagrams above 2048 bytes are
// dropped), plus connection peers (servers and clients with ConnectionHosts)
// behind open hosts, firewalls and NATs.
//
// Faults over the run:
// - churn: at uniformly random times, CHURN x nodes are killed (their host
//   goes dead, then the node is destroyed without a goodbye) and each is
//   replaced at once by a new node on a new host (adaptive, as a real node:
//   ephemeral until it has been stable and reachable);
// - a partition: from 45% to 55% of the run, 20% of the nodes and of the
//   peers (an island) cannot exchange datagrams with the rest; then it heals.
//
// The workload (Poisson arrivals at fixed rates; origins are random live
// bootstrapped nodes):
// - lookup: FIND_NODE of a random target; it succeeds when its closest
//   replies hold at least 18 of the true 20 closest persistent live nodes on
//   the origin's side of the partition (`exact` counts all 20);
// - topic lookup: LOOKUP of an announced topic; succeeds when a reply names
//   the announcer's key;
// - announce: each topic is re-announced every 10 minutes by its node (as
//   hyperswarm refreshes); a topic whose node died moves to another node,
//   which announces it at once;
// - mutable put / immutable put: succeed when a closest node accepted; each
//   is read back one second later from another node ("read after put");
// - mutable get / immutable get: a random record written earlier (any age)
//   read from a random node: succeeds with the latest value that was put;
// - connection: a client dials a server's public key (createServer/connect),
//   both ends write a known byte sequence and end; every chunk is checked at
//   its offset as it arrives. A stream delivers everything in order, or fails
//   with a typed error; a gap, a reordering or an early end is counted as
//   lost bytes (the goal is 0).
//
// During the partition, an operation whose target lives on the other side
// (a record or topic last written there, or whose holders are mostly there,
// a server there) is counted apart ("cross"); after the heal, reads of a
// record last written on the island during the partition are counted apart
// too ("island-written"): such records sit on the island's closest nodes,
// not the network's. Operations started in the 10 minutes after the heal,
// while the two sides' routing tables merge again, are counted apart as
// well ("healing"). The merge itself comes from the DHT nodes' refreshes,
// which every sixth time also ask the bootstrap nodes
// (REBOOTSTRAP_REFRESHES in src/actors/routing/node.ts): without that, the
// two sides stayed two networks after the heal.
//
// Output: one JSON line per simulated hour and a total; then a markdown table.
import { Effect, Exit, Scope } from "effect"
import { pathToFileURL } from "node:url"

export const FIND_NODE = 2
const MIN = 60_000
const HOUR = 60 * MIN
const BOOT_IP = "20.255.0.1"
const BOOT_PORT = 49737

export const defaults = {
  nodes: 1000,
  hours: 24,
  seed: 1,
  churn: 0.3,
  loss: 0.05,
  duplicate: 0.01,
  latency: 20,
  jitter: 10,
  /** Island share and the partition's window as fractions of the run. */
  partition: { island: 0.2, from: 0.45, to: 0.55 },
  /** Operations per simulated minute. */
  rates: { lookup: 6, topicLookup: 3, mutablePut: 1, mutableGet: 2, immutablePut: 1, immutableGet: 2, connection: 0.5 },
  topics: 20,
  announceEvery: 10 * MIN,
  mutableKeys: 40,
  /** Bytes each way per connection. */
  streamBytes: 64 * 1024,
  servers: ["open", "consistent", "firewalled", "consistent", "random", "open"],
  clients: ["consistent", "open", "firewalled", "consistent", "open", "firewalled"],
  /** Virtual ms for the network to settle before the workload starts. */
  settle: 2 * MIN,
  /** Virtual ms after which an operation that has not finished counts as failed. */
  opTimeout: 2 * MIN,
  /** Print per-hour lines (JSON) as the run goes. */
  log: (line) => console.log(line)
}

// ---- small deterministic helpers ----------------------------------------------------------

/** mulberry32: the workload's own seeded PRNG. */
const prng = (seed) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const hex = (b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")
const equal = (a, b) => a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0
const ipOf = (i) => `20.${1 + ((i >> 16) & 0xff)}.${(i >> 8) & 0xff}.${i & 0xff}`

const cmpDistance = (target) => (a, b) => {
  for (let i = 0; i < 32; i++) {
    const x = a[i] ^ target[i]
    const y = b[i] ^ target[i]
    if (x !== y) return x - y
  }
  return 0
}

/** Crypto whose random bytes and key pairs come from a seed (a run replays identically). */
const seededCrypto = (base, seed) => {
  const random = prng(seed * 2654435761 + 12345)
  const randomBytes = (n) => {
    const b = new Uint8Array(n)
    for (let i = 0; i < n; i++) b[i] = Math.floor(random() * 256)
    return b
  }
  return { ...base, name: `${base.name}+seeded`, randomBytes, keyPair: (s) => base.keyPair(s ?? randomBytes(32)) }
}

/** One turn of Node's event loop: stream callbacks (process.nextTick, setImmediate) run. */
const flushNode = Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))

// ---- counters ----------------------------------------------------------------------------

export const KINDS = ["lookup", "topicLookup", "announce", "mutablePut", "mutableReadAfterPut", "mutableGet", "immutablePut", "immutableReadAfterPut", "immutableGet", "connection"]
const CLASSES = ["normal", "cross", "islandWritten", "healing"]
/** After the heal, the window in which the two sides' routing tables are still merging. */
const HEAL_WINDOW = 10 * MIN

const newCounters = () => {
  const ops = {}
  for (const k of KINDS) {
    ops[k] = {}
    for (const c of CLASSES) ops[k][c] = { attempts: 0, ok: 0 }
  }
  return {
    ops,
    /** Lookups whose closest replies were exactly the true 20 closest. */
    exact: 0,
    /** Operations whose origin node was killed while they ran (not counted as attempts). */
    aborted: 0,
    /** Failure reasons (kind: reason -> count). */
    failures: {},
    streams: { opened: 0, completed: 0, failed: 0, bytesSent: 0, bytesReceived: 0, bytesLost: 0, undeliveredOnFailure: 0, gaps: 0 },
    churn: { killed: 0, started: 0 }
  }
}

const diffCounters = (a, b) => {
  const out = newCounters()
  for (const k of KINDS) for (const c of CLASSES) {
    out.ops[k][c].attempts = a.ops[k][c].attempts - b.ops[k][c].attempts
    out.ops[k][c].ok = a.ops[k][c].ok - b.ops[k][c].ok
  }
  out.exact = a.exact - b.exact
  out.aborted = a.aborted - b.aborted
  for (const k of Object.keys(a.streams)) out.streams[k] = a.streams[k] - b.streams[k]
  for (const k of Object.keys(a.churn)) out.churn[k] = a.churn[k] - b.churn[k]
  return out
}

const cloneCounters = (c) => JSON.parse(JSON.stringify(c))

const rate = (o) => (o.attempts === 0 ? null : Math.round((o.ok / o.attempts) * 10000) / 100)

// ---- the simulation -------------------------------------------------------------------------

/**
 * The simulated day as an Effect (run it with `lib.VirtualClock.layer()` and a Scope).
 * `lib` holds the implementation's modules (dist/ for the bench, src/ for the test).
 */
export const simulateDay = (lib, options = {}) =>
  Effect.gen(function*() {
    const o = { ...defaults, ...options, rates: { ...defaults.rates, ...options.rates }, partition: { ...defaults.partition, ...options.partition } }
    const { Records } = lib
    const clock = yield* lib.VirtualClock
    const now = () => clock.currentTimeMillisUnsafe()
    const random = prng(o.seed * 7 + 3)
    const pick = (list) => list[Math.floor(random() * list.length)]
    const crypto = seededCrypto(yield* Effect.promise(() => lib.makeFast()), o.seed)
    const net = yield* lib.SimNetwork.make({ latency: o.latency, jitter: o.jitter, lossRate: o.loss, duplicateRate: o.duplicate, maxDatagramSize: 2048, seed: o.seed })
    const outer = yield* Effect.scope
    const counters = newCounters()
    const wall0 = Date.now()
    const bootstrap = [`${BOOT_IP}:${BOOT_PORT}`]
    let seeds = o.seed * 7919
    let nextIp = 1

    // -- nodes ------------------------------------------------------------------------------
    /** Every DHT node ever started: { ip, port, handle, scope, alive, island, startedAt }. */
    const dht = []
    const startNode = (ip, config) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(outer)
        const host = yield* net.addHost({ ip }).pipe(Scope.provide(scope))
        const handle = yield* lib.makeGateway({ ...config, randomSeed: ++seeds }).pipe(
          Effect.provideService(lib.Transport, host),
          Effect.provideService(lib.Crypto, crypto),
          Scope.provide(scope),
          Effect.orDie
        )
        const node = { ip, port: handle.sockets().server.local.port, handle, scope, alive: true, island: false, startedAt: now() }
        dht.push(node)
        return node
      })
    const boot = lib.GatewayService.bootstrapperConfig(BOOT_PORT, BOOT_IP)
    const bootNode = yield* startNode(BOOT_IP, boot)
    for (let i = 0; i < o.nodes; i++) {
      yield* startNode(ipOf(nextIp++), { ephemeral: false, port: 49737, bootstrap })
      if (i % 50 === 49) yield* clock.adjust(1000)
    }
    while (dht.some((n) => n.alive && !n.handle.core.bootstrapped) && now() < 10 * MIN) yield* clock.adjust(1000)

    // -- connection peers ---------------------------------------------------------------------
    const peers = []
    const addPeer = (nat, role, index) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(outer)
        const host = yield* net.addHost({ nat }).pipe(Scope.provide(scope))
        const handle = yield* lib.makeGateway({ bootstrap, ephemeral: true, randomSeed: ++seeds }).pipe(
          Effect.provideService(lib.Transport, host),
          Effect.provideService(lib.Crypto, crypto),
          Scope.provide(scope),
          Effect.orDie
        )
        const conn = yield* lib.connectionHost(handle, crypto, { effectTimers: true, random: prng(++seeds) })
        const keyPair = crypto.keyPair(crypto.blake2b(new TextEncoder().encode(`simday ${o.seed} ${role} ${index}`)))
        const peer = { name: `${role}${index}/${nat}`, role, nat, host, handle, conn, keyPair, island: false, server: null }
        peers.push(peer)
        return peer
      })
    for (let i = 0; i < o.servers.length; i++) yield* addPeer(o.servers[i], "server", i)
    for (let i = 0; i < o.clients.length; i++) yield* addPeer(o.clients[i], "client", i)
    for (let t = 0; t < 60_000 && peers.some((p) => !p.handle.core.bootstrapped); t += 100) {
      yield* clock.adjust(100)
      yield* flushNode
    }

    // -- streams: every chunk checked at its offset as it arrives ----------------------------
    /** Active connections by `${clientKey}>${serverKey}`. */
    const conns = new Map()
    let connIds = 0
    const servers = peers.filter((p) => p.role === "server")
    const clients = peers.filter((p) => p.role === "client")

    /** A reader of one direction: counts bytes, compares each chunk with the expected bytes at its offset. */
    const reader = (expected) => {
      // good: the bytes that arrived in order and intact before the first wrong one
      const r = { received: 0, good: 0, ended: false, gap: false }
      r.onData = (chunk) => {
        counters.streams.bytesReceived += chunk.length
        if (!r.gap) {
          const want = expected.subarray(r.received, r.received + chunk.length)
          if (want.length === chunk.length && equal(want, chunk)) r.good += chunk.length
          else r.gap = true
        }
        r.received += chunk.length
      }
      return r
    }

    const attach = (socket, sendBytes, recv) => {
      socket.on("data", recv.onData)
      socket.on("end", () => {
        recv.ended = true
      })
      socket.opened.then((open) => {
        if (!open || socket.destroyed) return
        for (let i = 0; i < sendBytes.length; i += 16_384) socket.write(sendBytes.subarray(i, Math.min(sendBytes.length, i + 16_384)))
        counters.streams.bytesSent += sendBytes.length
        socket.end()
      })
    }

    for (const s of servers) {
      const core = new lib.ServerCore(s.conn, {}, (socket) => {
        socket.on("error", () => {})
        const c = conns.get(`${hex(socket.remotePublicKey)}>${hex(s.keyPair.publicKey)}`)
        if (c === undefined || c.serverSocket !== null) {
          socket.destroy()
          return
        }
        c.serverSocket = socket
        attach(socket, c.down, c.atServer)
        socket.on("error", (e) => {
          if (c.serverError === null) c.serverError = e
        })
      })
      s.server = core
      const fiber = yield* Effect.forkChild(core.listen(s.keyPair), { startImmediately: true })
      for (let t = 0; t < 60_000 && fiber.pollUnsafe() === undefined; t += 100) {
        yield* clock.adjust(100)
        yield* flushNode
      }
    }

    // -- partition ------------------------------------------------------------------------------
    const runMs = o.hours * HOUR
    const partitionFrom = Math.round(o.settle + runMs * o.partition.from)
    const partitionTo = Math.round(o.settle + runMs * o.partition.to)
    let partitioned = false
    let partitionedAt = -1
    let healedAt = -1
    /** Where the run stands, for failure reasons: before, during or after the partition. */
    const phase = () => (partitioned ? "partitioned" : healedAt < 0 ? "before partition" : now() - healedAt < 10 * MIN ? "healed < 10 min ago" : "healed")
    /** Operations started in the heal window are counted apart ("healing"). */
    const normal = () => (!partitioned && healedAt >= 0 && now() - healedAt < HEAL_WINDOW ? "healing" : "normal")
    const sideOf = (x) => (partitioned ? x.island : false)

    // -- records and topics ---------------------------------------------------------------------
    const home = (writer) => ({ island: partitioned ? writer.island : false, during: partitioned })
    /** The class of a read of something written by `written` (see the header). */
    const classOf = (origin, written) => {
      if (partitioned) return origin.island !== written.island ? "cross" : "normal"
      if (written.during && written.island) return "islandWritten"
      return normal()
    }
    const topics = []
    for (let i = 0; i < o.topics; i++) {
      topics.push({
        topic: crypto.blake2b(new TextEncoder().encode(`simday topic ${o.seed} ${i}`)),
        keyPair: crypto.keyPair(crypto.blake2b(new TextEncoder().encode(`simday announcer ${o.seed} ${i}`))),
        node: null,
        nextAt: 0,
        /** The last successful announce: { at, island, during }. */
        written: null,
        busy: false
      })
    }
    const mutables = []
    for (let i = 0; i < o.mutableKeys; i++) {
      // seq: the last seq put; okSeq: the last one a node accepted; values: every value put, by seq (a failed put may still be stored somewhere)
      mutables.push({ keyPair: crypto.keyPair(crypto.blake2b(new TextEncoder().encode(`simday mutable ${o.seed} ${i}`))), seq: -1, okSeq: -1, values: new Map(), written: null, busy: false })
    }
    const immutables = []

    // -- operation bookkeeping ------------------------------------------------------------------
    const liveNodes = () => dht.filter((n) => n.alive && n.handle.core.bootstrapped)
    const origin = () => pick(liveNodes())
    const fail = (kind, reason) => {
      const f = (counters.failures[kind] ??= {})
      f[reason] = (f[reason] ?? 0) + 1
    }
    const count = (kind, cls, ok, reason) => {
      counters.ops[kind][cls].attempts++
      if (ok) counters.ops[kind][cls].ok++
      else fail(`${kind}/${cls}`, `${reason} (${phase()})`)
    }
    /** Run an operation from `node` in a fiber; `done(exit)` books it unless the node died meanwhile. */
    const spawn = (node, effect, done) =>
      Effect.forkChild(
        Effect.flatMap(Effect.exit(Effect.timeoutOption(effect, o.opTimeout)), (exit) =>
          Effect.sync(() => {
            if (!node.alive) {
              counters.aborted++
              return
            }
            done(exit)
          })),
        { startImmediately: true }
      )
    const reasonOf = (exit) => {
      if (Exit.isSuccess(exit)) return "no result"
      const e = exit.cause.reasons.find((r) => r._tag === "Fail")?.error ?? exit.cause.reasons[0]
      return e?.code ?? e?._tag ?? String(e)
    }
    const timedOut = (exit) => Exit.isSuccess(exit) && exit.value._tag === "None"

    /** The true k closest persistent live nodes to `target` on `from`'s side, excluding `from`. */
    const trueClosest = (target, from, k = 20) => {
      const side = sideOf(from)
      return dht
        .filter((n) => n.alive && n !== from && n.handle.core.id !== null && sideOf(n) === side)
        .map((n) => n.handle.core.id)
        .sort(cmpDistance(target))
        .slice(0, k)
        .map(hex)
    }

    const lookup = (from) => {
      const target = crypto.randomBytes(32)
      const cls = normal()
      let query = null
      return spawn(from, from.handle.runQuery({ target, command: FIND_NODE, internal: true }, undefined, () => {}, (q) => (query = q)), (exit) => {
        if (!Exit.isSuccess(exit) || exit.value._tag === "None" || query === null) return count("lookup", cls, false, timedOut(exit) ? "timeout" : reasonOf(exit))
        const got = query.closestReplies.map((r) => hex(r.from.id))
        const want = trueClosest(target, from)
        const found = got.filter((h) => want.includes(h)).length
        if (cls === "normal" && found === want.length && got.length === want.length) counters.exact++
        count("lookup", cls, found >= Math.min(18, want.length), `found ${found} of ${want.length}`)
      })
    }

    const topicLookup = (from) => {
      const live = topics.filter((t) => t.written !== null && now() - t.written.at < 15 * MIN)
      if (live.length === 0) return Effect.void
      const t = pick(live)
      const cls = classOf(from, t.written)
      const key = t.keyPair.publicKey
      let seen = false
      return spawn(from, from.handle.runQuery({ target: t.topic, command: lib.LOOKUP }, undefined, (r, stop) => {
        const x = Records.lookupResultOf(r)
        if (x !== null && x.peers.some((p) => equal(p.publicKey, key))) {
          seen = true
          stop()
        }
      }), (exit) => count("topicLookup", cls, seen, timedOut(exit) ? "timeout" : Exit.isSuccess(exit) ? "announcer not found" : reasonOf(exit)))
    }

    const announce = (t) => {
      if (t.node === null || !t.node.alive) t.node = origin()
      const from = t.node
      t.busy = true
      return spawn(from, Records.announce(from.handle, t.topic, t.keyPair), (exit) => {
        t.busy = false
        const ok = Exit.isSuccess(exit) && exit.value._tag === "Some"
        count("announce", "normal", ok, timedOut(exit) ? "timeout" : reasonOf(exit))
        if (ok) t.written = { at: now(), ...home(from) }
      })
    }

    const mutableRead = (kind, m, from) => {
      const cls = classOf(from, m.written)
      const seq = m.okSeq
      return spawn(from, Records.mutableGet(from.handle, m.keyPair.publicKey), (exit) => {
        const got = Exit.isSuccess(exit) && exit.value._tag === "Some" ? exit.value.value : null
        const put = got === null ? undefined : m.values.get(got.seq)
        const ok = got !== null && got.seq >= seq && put !== undefined && equal(got.value, put)
        count(kind, cls, ok, timedOut(exit) ? "timeout" : got === null ? (Exit.isSuccess(exit) ? "not found" : reasonOf(exit)) : got.seq < seq ? "old seq" : "wrong value")
      })
    }

    const mutablePut = (from) => {
      const free = mutables.filter((m) => !m.busy)
      if (free.length === 0) return Effect.void
      const m = pick(free)
      const seq = m.seq + 1
      const value = crypto.randomBytes(64 + Math.floor(random() * 900))
      m.busy = true
      m.seq = seq
      m.values.set(seq, value)
      return spawn(from, Records.mutablePut(from.handle, m.keyPair, value, { seq }), (exit) => {
        m.busy = false
        const ok = Exit.isSuccess(exit) && exit.value._tag === "Some"
        count("mutablePut", "normal", ok, timedOut(exit) ? "timeout" : reasonOf(exit))
        if (!ok) return
        m.okSeq = seq
        m.written = { at: now(), ...home(from) }
        pending.push({ at: now() + 1000, run: () => mutableRead("mutableReadAfterPut", m, pick(liveNodes())) })
      })
    }

    const immutableRead = (kind, rec, from) => {
      const cls = classOf(from, rec.written)
      return spawn(from, Records.immutableGet(from.handle, rec.hash), (exit) => {
        const got = Exit.isSuccess(exit) && exit.value._tag === "Some" ? exit.value.value : null
        const ok = got !== null && equal(got.value, rec.value)
        count(kind, cls, ok, timedOut(exit) ? "timeout" : got === null ? (Exit.isSuccess(exit) ? "not found" : reasonOf(exit)) : "wrong value")
      })
    }

    const immutablePut = (from) => {
      const value = crypto.randomBytes(64 + Math.floor(random() * 900))
      return spawn(from, Records.immutablePut(from.handle, value), (exit) => {
        const ok = Exit.isSuccess(exit) && exit.value._tag === "Some"
        count("immutablePut", "normal", ok, timedOut(exit) ? "timeout" : reasonOf(exit))
        if (!ok) return
        const rec = { hash: exit.value.value.hash, value, written: { at: now(), ...home(from) } }
        immutables.push(rec)
        pending.push({ at: now() + 1000, run: () => immutableRead("immutableReadAfterPut", rec, pick(liveNodes())) })
      })
    }

    /** Work due at a given time (reads after puts). */
    const pending = []

    // -- connections ----------------------------------------------------------------------------
    const connection = () => {
      const pairs = []
      for (const c of clients) for (const s of servers) {
        if (c.nat === "random" && s.nat === "random") continue
        if (conns.has(`${hex(c.keyPair.publicKey)}>${hex(s.keyPair.publicKey)}`)) continue
        pairs.push([c, s])
      }
      if (pairs.length === 0) return
      const [client, server] = pick(pairs)
      const id = ++connIds
      const up = lib.patternBytes(o.streamBytes, id * 2 + 1)
      const down = lib.patternBytes(o.streamBytes, id * 2 + 2)
      const socket = lib.dial(client.conn, server.keyPair.publicKey, client.keyPair)
      const c = {
        id,
        key: `${hex(client.keyPair.publicKey)}>${hex(server.keyPair.publicKey)}`,
        client,
        server,
        cls: partitioned && client.island !== server.island ? "cross" : normal(),
        startedAt: now(),
        openedAt: -1,
        socket,
        serverSocket: null,
        up,
        down,
        atServer: reader(up),
        atClient: reader(down),
        clientError: null,
        serverError: null
      }
      conns.set(c.key, c)
      socket.on("error", (e) => {
        if (c.clientError === null) c.clientError = e
      })
      socket.once("open", () => {
        c.openedAt = now()
        counters.streams.opened++
      })
      attach(socket, up, c.atClient)
    }

    /** Settle the connections that finished, failed or ran out of time. */
    const checkConnections = () => {
      for (const c of conns.values()) {
        const done = c.atServer.ended && c.atClient.ended
        const error = c.clientError ?? c.serverError
        const age = now() - c.startedAt
        const notOpened = c.openedAt < 0
        const expired = notOpened ? age > o.opTimeout : age > o.opTimeout + 2 * MIN
        if (!done && error === null && !expired) continue
        conns.delete(c.key)
        const gaps = (c.atServer.gap ? 1 : 0) + (c.atClient.gap ? 1 : 0)
        counters.streams.gaps += gaps
        const complete = c.atServer.good === c.up.length && c.atClient.good === c.down.length
        if (done) {
          // both directions ended without an error: every byte must be there, in order
          counters.streams.bytesLost += (c.up.length - c.atServer.good) + (c.down.length - c.atClient.good)
          if (complete && gaps === 0) counters.streams.completed++
          count("connection", c.cls, complete && gaps === 0, gaps > 0 ? "bytes out of order" : "stream ended early")
        } else if (notOpened) {
          count("connection", c.cls, false, error !== null ? `dial: ${error.code ?? error.name}` : "dial: no answer in time")
        } else {
          // failed with a typed error (or stalled): what arrived must still be an intact prefix
          counters.streams.failed++
          counters.streams.bytesLost += (c.atServer.received - c.atServer.good) + (c.atClient.received - c.atClient.good)
          counters.streams.undeliveredOnFailure += (c.up.length - c.atServer.good) + (c.down.length - c.atClient.good)
          count("connection", c.cls, false, error !== null ? `stream: ${error.code ?? error.name}` : "stream: stalled")
        }
        c.socket.destroy()
        c.serverSocket?.destroy()
      }
    }

    // -- churn ------------------------------------------------------------------------------------
    const kills = []
    const churnCount = Math.round(o.nodes * o.churn)
    for (let i = 0; i < churnCount; i++) kills.push(o.settle + random() * runMs)
    kills.sort((a, b) => a - b)
    const replace = Effect.gen(function*() {
      const victims = dht.filter((n) => n.alive && n !== bootNode)
      if (victims.length === 0) return
      const v = pick(victims)
      v.alive = false
      yield* net.kill(v.ip)
      yield* Scope.close(v.scope, Exit.void)
      counters.churn.killed++
      const n = yield* startNode(ipOf(nextIp++), { port: 49737, bootstrap })
      counters.churn.started++
      return n
    })

    // -- the run ------------------------------------------------------------------------------------
    const setupWallMs = Date.now() - wall0
    o.log?.(JSON.stringify({ setup: { nodes: dht.length, peers: peers.length, virtualMs: now(), wallMs: setupWallMs } }))
    const t0 = now()
    yield* clock.adjust(Math.max(0, o.settle - t0))
    const start = o.settle
    const end = start + runMs
    const nextOf = {}
    const perMinute = o.rates
    const expo = (ratePerMinute) => (ratePerMinute > 0 ? -Math.log(1 - random()) * MIN / ratePerMinute : Infinity)
    for (const k of Object.keys(perMinute)) nextOf[k] = start + expo(perMinute[k])
    topics.forEach((t, i) => (t.nextAt = start + (i * o.announceEvery) / topics.length))
    let killIndex = 0
    let hourMark = start + HOUR
    let last = cloneCounters(counters)
    let wallMark = Date.now()
    const hours = []
    const memory = () => ({ heapMB: Math.round(process.memoryUsage().heapUsed / 1048576), rssMB: Math.round(process.memoryUsage().rss / 1048576) })
    let peakHeap = 0
    let peakRss = 0

    const fire = (k) =>
      Effect.gen(function*() {
        if (k === "connection") return connection()
        const from = origin()
        if (from === undefined) return
        if (k === "lookup") yield* lookup(from)
        else if (k === "topicLookup") yield* topicLookup(from)
        else if (k === "mutablePut") yield* mutablePut(from)
        else if (k === "immutablePut") yield* immutablePut(from)
        else if (k === "mutableGet") {
          const written = mutables.filter((m) => m.written !== null && !m.busy)
          if (written.length > 0) yield* mutableRead("mutableGet", pick(written), from)
        } else if (k === "immutableGet") {
          if (immutables.length > 0) yield* immutableRead("immutableGet", pick(immutables), from)
        }
      })

    while (now() < end) {
      const t = now()
      if (!partitioned && healedAt < 0 && t >= partitionFrom) {
        const island = []
        const candidates = dht.filter((n) => n.alive && n !== bootNode)
        for (const n of candidates) if (random() < o.partition.island) n.island = true
        for (const p of peers) if (random() < o.partition.island) p.island = true
        // one server and one client on the island at least, and the same on the main side
        if (!servers.some((s) => s.island)) servers[1].island = true
        if (!clients.some((c) => c.island)) clients[0].island = true
        if (servers.every((s) => s.island)) servers[0].island = false
        if (clients.every((c) => c.island)) clients[1].island = false
        for (const n of candidates) if (n.island) island.push(n.ip)
        for (const p of peers) if (p.island) island.push(p.host.publicIp)
        yield* net.partition([island])
        partitioned = true
        partitionedAt = t
      } else if (partitioned && t >= partitionTo) {
        yield* net.heal()
        partitioned = false
        healedAt = t
      }
      while (killIndex < kills.length && kills[killIndex] <= t) {
        killIndex++
        yield* replace
      }
      for (const k of Object.keys(nextOf)) {
        while (nextOf[k] <= t) {
          nextOf[k] += expo(perMinute[k])
          yield* fire(k)
        }
      }
      for (const tp of topics) {
        if (tp.nextAt <= t && !tp.busy) {
          tp.nextAt = t + o.announceEvery
          yield* announce(tp)
        } else if (tp.node !== null && !tp.node.alive && !tp.busy) {
          tp.nextAt = t + o.announceEvery
          yield* announce(tp)
        }
      }
      for (let i = pending.length - 1; i >= 0; i--) {
        if (pending[i].at <= t) {
          const p = pending[i]
          pending.splice(i, 1)
          yield* p.run()
        }
      }
      checkConnections()
      // next wake-up: small steps while streams are open (their events need Node's event loop)
      let next = Math.min(hourMark, end, t + 1000, kills[killIndex] ?? Infinity, partitioned ? partitionTo : healedAt < 0 ? partitionFrom : Infinity)
      for (const k of Object.keys(nextOf)) next = Math.min(next, nextOf[k])
      for (const p of pending) next = Math.min(next, p.at)
      if (conns.size > 0) next = Math.min(next, t + 20)
      yield* clock.adjust(Math.max(1, Math.ceil(next - t)))
      yield* flushNode
      if (now() >= hourMark || now() >= end) {
        hourMark += HOUR
        const delta = diffCounters(counters, last)
        last = cloneCounters(counters)
        const m = memory()
        peakHeap = Math.max(peakHeap, m.heapMB)
        peakRss = Math.max(peakRss, m.rssMB)
        const line = {
          hour: hours.length + 1,
          virtualMin: Math.round((now() - start) / MIN),
          wallMs: Date.now() - wallMark,
          ...m,
          alive: dht.filter((n) => n.alive).length,
          persistent: dht.filter((n) => n.alive && n.handle.core.id !== null).length,
          partitioned,
          churn: delta.churn,
          aborted: delta.aborted,
          ops: Object.fromEntries(KINDS.map((k) => [k, Object.fromEntries(CLASSES.filter((c) => delta.ops[k][c].attempts > 0).map((c) => [c, [delta.ops[k][c].ok, delta.ops[k][c].attempts]]))])),
          exactLookups: delta.exact,
          streams: delta.streams,
          datagrams: net.stats().sent
        }
        hours.push(line)
        o.log?.(JSON.stringify(line))
        wallMark = Date.now()
      }
    }
    // let the last operations finish (no new ones start)
    for (let t = 0; t < o.opTimeout + 3 * MIN && (conns.size > 0 || pending.length > 0); t += 20) {
      yield* clock.adjust(20)
      yield* flushNode
      for (let i = pending.length - 1; i >= 0; i--) {
        if (pending[i].at <= now()) yield* pending.splice(i, 1)[0].run()
      }
      checkConnections()
    }
    yield* clock.adjust(o.opTimeout)
    yield* flushNode
    if (global.gc) global.gc()
    const m = memory()
    const stats = net.stats()
    return {
      config: { nodes: o.nodes, hours: o.hours, seed: o.seed, churn: o.churn, loss: o.loss, duplicate: o.duplicate, latency: o.latency, jitter: o.jitter, partition: { island: o.partition.island, fromMin: Math.round((partitionFrom - start) / MIN), toMin: Math.round((partitionTo - start) / MIN) }, rates: o.rates, streamBytes: o.streamBytes, peers: { servers: o.servers, clients: o.clients } },
      totals: counters,
      hours,
      wallMs: Date.now() - wall0,
      setupWallMs,
      memory: { ...m, peakHeapMB: Math.max(peakHeap, m.heapMB), peakRssMB: Math.max(peakRss, m.rssMB) },
      network: { sent: stats.sent, delivered: stats.delivered, duplicated: stats.duplicated, dropped: stats.dropped },
      nodesEver: dht.length,
      alive: dht.filter((n) => n.alive).length,
      livePersistent: dht.filter((n) => n.alive && n.handle.core.id !== null).length
    }
  })

/** A markdown table of a report's totals. */
export const table = (report) => {
  const t = report.totals
  const c = report.config
  const rows = [
    "| operation | class | attempts | successes | rate |",
    "| --- | --- | ---: | ---: | ---: |"
  ]
  for (const k of KINDS) for (const cls of CLASSES) {
    const x = t.ops[k][cls]
    if (x.attempts === 0 && cls !== "normal") continue
    rows.push(`| ${k} | ${cls} | ${x.attempts} | ${x.ok} | ${rate(x) === null ? "-" : `${rate(x)}%`} |`)
  }
  const l = t.ops.lookup.normal
  rows.push(`| lookup (exact: all 20 closest) | normal | ${l.attempts} | ${t.exact} | ${l.attempts === 0 ? "-" : `${Math.round((t.exact / l.attempts) * 10000) / 100}%`} |`)
  const s = t.streams
  return [
    `simulated day: ${c.nodes} nodes, ${c.hours} h, churn ${Math.round(c.churn * 100)}% (${t.churn.killed} replaced), loss ${Math.round(c.loss * 100)}%, duplication ${Math.round(c.duplicate * 100)}%, jitter ${c.jitter} ms (reordering), partition ${Math.round(c.partition.island * 100)}% island from minute ${c.partition.fromMin} to ${c.partition.toMin}, healed`,
    "",
    ...rows,
    "",
    "| streams | opened | completed | failed (typed error) | bytes sent | bytes received | bytes lost | undelivered on failed streams |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    `| both directions, ${c.streamBytes} B each | ${s.opened} | ${s.completed} | ${s.failed} | ${s.bytesSent} | ${s.bytesReceived} | ${s.bytesLost} | ${s.undeliveredOnFailure} |`,
    "",
    `operations whose origin node was killed while they ran (not counted): ${t.aborted}`,
    `wall ${Math.round(report.wallMs / 1000)} s, heap ${report.memory.heapMB} MB (peak ${report.memory.peakHeapMB} MB), rss ${report.memory.rssMB} MB (peak ${report.memory.peakRssMB} MB), datagrams sent ${report.network.sent}`,
    `failures: ${JSON.stringify(t.failures)}`
  ].join("\n")
}

// ---- the bench ---------------------------------------------------------------------------------

const main = async () => {
  // one import at a time: Node 20 can fail to link modules imported concurrently that share dependencies
  const { VirtualClock } = await import("../dist/layers/VirtualClock.js")
  const { makeGateway, GatewayService } = await import("../dist/api/GatewayService.js")
  const { Crypto } = await import("../dist/layers/Crypto.js")
  const { makeFast } = await import("../dist/layers/crypto/fast.js")
  const { SimNetwork } = await import("../dist/layers/transport/sim.js")
  const { Transport } = await import("../dist/layers/Transport.js")
  const Records = await import("../dist/api/records.js")
  const { connectionHost } = await import("../dist/actors/session/host.js")
  const { ServerCore } = await import("../dist/actors/session/server.js")
  const { dial } = await import("../dist/actors/holepunch/dial.js")
  const { patternBytes } = await import("../dist/util/random.js")
  const R = await import("../dist/protocol/records.js")
  const lib = { VirtualClock, makeGateway, GatewayService, Crypto, makeFast, SimNetwork, Transport, Records, connectionHost, ServerCore, dial, patternBytes, LOOKUP: R.Command.LOOKUP }
  const nodes = Number(process.argv[2] ?? defaults.nodes)
  const hours = Number(process.argv[3] ?? defaults.hours)
  const env = process.env
  const report = await Effect.runPromise(
    simulateDay(lib, {
      nodes,
      hours,
      seed: Number(env.SEED ?? defaults.seed),
      churn: Number(env.CHURN ?? defaults.churn),
      loss: Number(env.LOSS ?? defaults.loss),
      duplicate: Number(env.DUP ?? defaults.duplicate)
    }).pipe(Effect.scoped, Effect.provide(VirtualClock.layer()))
  )
  console.log(JSON.stringify({ total: { ...report.totals, wallMs: report.wallMs, memory: report.memory, network: report.network, nodesEver: report.nodesEver, alive: report.alive, livePersistent: report.livePersistent } }))
  console.log(table(report))
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main()
  process.exit(0)
}
