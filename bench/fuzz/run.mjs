// The live fuzzer: a local network on 127.0.0.1 (a reference bootstrapper,
// three persistent Omega nodes T, O1, O2 and a persistent reference node R),
// records stored and connections opened before the run, then `count`
// datagrams from raw node:dgram sockets at T's two sockets, and the checks
// afterwards. Used by bench/fuzz.mjs (dist/) and test/fuzz-live.test.ts (src/).
//
// Kinds sent (each a valid encoding sent as is, or mutated; see gen.mjs):
// - req:<COMMAND>   dht-rpc requests of every internal command and every
//                   HyperDHT command, with their payloads, to T's server or
//                   client socket (with T's real round-trip token 70% of the time)
// - res:unsolicited dht-rpc responses with random tids and reply values of every kind
// - res:live        responses to T's own requests: T pings / requests the
//                   responder socket (every command) and it answers with
//                   valid and mutated responses carrying the real tid
// - udx:unknown     UDX packets of every type for stream ids T does not have
// - udx:sentinel    UDX packets for the stream id of the sentinel connection
//                   (O1→T), blind: stale sequence numbers or non-data types,
//                   with mutated secret-stream frames / messages as payload
// - udx:victim      UDX packets of any type / seq for the victim connection's id (O2→T)
// - ss:frame        secret-stream frames injected in sequence (DATA at the
//                   victim's next expected seq): the victim must close with a
//                   typed error or carry on; a new victim is dialled when it closes
// - ss:message      unordered secret-stream messages (UDX MESSAGE) on the sentinel and victim
// - vector          mutated real messages from test/vectors/
// - random          pure random bytes, 0..2100 bytes
import { createRequire } from "node:module"
import dgram from "node:dgram"
import { createHash } from "node:crypto"
import { installSendGuard } from "./guard.mjs"
import { loadCorpus, makeBuilders, makeRng, mutate, secretStreamFrame, unorderedMessage } from "./gen.mjs"

const HOST = "127.0.0.1"
const require = createRequire(import.meta.url)

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const tick = () => new Promise((r) => setImmediate(r))
const withTimeout = (p, ms, what) => {
  let timer
  return Promise.race([p, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms)))]).finally(() =>
    clearTimeout(timer)
  )
}
const hex = (b) => (b == null ? null : Buffer.from(b).toString("hex"))
const sha = (b) => createHash("sha256").update(b).digest("hex")
const isTyped = (e) =>
  e !== null && typeof e === "object" && (typeof e.code === "string" || typeof e._tag === "string") && typeof e.message === "string"

const WEIGHTS = [
  ["req", 45],
  ["res:unsolicited", 8],
  ["udx:unknown", 8],
  ["udx:sentinel", 7],
  ["udx:victim", 4],
  ["ss:frame", 6],
  ["ss:message", 4],
  ["vector", 6],
  ["random", 12]
]
const TOTAL_WEIGHT = WEIGHTS.reduce((a, [, w]) => a + w, 0)

/**
 * Run the fuzzer. `lib`: { Gateway, Rpc, Records, Connect, Udx, E } (dist/ or src/).
 * Returns the summary (figures and checks); `summary.failures` lists what did not hold.
 */
export const runFuzz = async (lib, opts) => {
  const { Gateway, Rpc, Records, E } = lib
  const count = opts.count
  const seed = opts.seed ?? 1
  const log = opts.log ?? (() => {})
  const burst = opts.burst ?? 64
  const window = opts.window ?? 256
  const dataBytes = opts.dataBytes ?? 256 * 1024
  const HyperDHT = require("hyperdht")
  const NoiseWrap = require("hyperdht/lib/noise-wrap.js")

  // ---- escaped exceptions -------------------------------------------------------------------
  const escaped = { uncaught: [], unhandled: [] }
  const onUncaught = (e) => escaped.uncaught.push(String(e?.stack ?? e))
  const onUnhandled = (e) => escaped.unhandled.push(String(e?.stack ?? e))
  process.on("uncaughtException", onUncaught)
  process.on("unhandledRejection", onUnhandled)
  const guard = installSendGuard()

  const closables = []
  const gatewayErrors = []
  const failures = []
  let summary = null
  const check = (ok, what) => {
    if (!ok) failures.push(what)
    return ok
  }
  try {
    // ---- the network -------------------------------------------------------------------------
    let boot = null
    let bootPort = 0
    for (let i = 0; i < 8 && boot === null; i++) {
      bootPort = 20_000 + Math.floor(Math.random() * 40_000)
      guard.allow(bootPort)
      const b = HyperDHT.bootstrapper(bootPort, HOST)
      try {
        await withTimeout(b.ready(), 10_000, "bootstrapper")
        boot = b
      } catch {
        await b.destroy().catch(() => {})
      }
    }
    if (boot === null) throw new Error("no free port for the bootstrapper")
    closables.push(boot)
    guard.allow(bootPort)
    const bootstrap = [`${HOST}:${bootPort}`]
    const gateway = () => {
      const g = new Gateway({ bootstrap, host: HOST, ephemeral: false })
      g.on("error", (e) => gatewayErrors.push(String(e?.stack ?? e)))
      closables.push(g)
      return g
    }
    const T = gateway()
    const O1 = gateway()
    const O2 = gateway()
    await withTimeout(Promise.all([T, O1, O2].map((g) => g.ready())), 20_000, "omega nodes ready")
    let R = null
    for (let i = 0; i < 8 && R === null; i++) {
      const port = 20_000 + Math.floor(Math.random() * 40_000)
      guard.allow(port)
      const r = new HyperDHT({ bootstrap, host: HOST, port, ephemeral: false, firewalled: false })
      try {
        await withTimeout(r.ready(), 20_000, "reference node ready")
        R = r
        guard.allow(port)
      } catch {
        await r.destroy().catch(() => {})
      }
    }
    if (R === null) throw new Error("the reference node did not start")
    closables.push(R)
    const h = T.handle
    const tServer = { host: HOST, port: h.sockets().server.local.port }
    const tClient = { host: HOST, port: h.sockets().client.local.port }
    const serverOf = (g) => ({ host: HOST, port: g.handle.sockets().server.local.port })
    const rPort = R.io.serverSocket.address().port
    const honest = [{ host: HOST, port: bootPort }, serverOf(O1), serverOf(O2), { host: HOST, port: rPort }]
    const honestKeys = new Set(honest.map((a) => `${a.host}:${a.port}`))
    await withTimeout(T.findNode(Gateway.hash(Buffer.from("warm up"))).finished(), 15_000, "findNode")
    const tableBefore = T.toArray().map((n) => `${n.host}:${n.port}`).sort()

    // ---- records stored before the run, read back through R straight from T ---------------------
    const immValue = Buffer.from(`fuzz: an immutable record (seed ${seed})`)
    const { hash: immHash } = await withTimeout(O1.immutablePut(immValue), 15_000, "immutablePut")
    const mkp = Gateway.keyPair()
    await withTimeout(O1.mutablePut(mkp, Buffer.from(`fuzz: a mutable record (seed ${seed})`), { seq: 1 }), 15_000, "mutablePut")
    const topic = Gateway.hash(Buffer.from(`fuzz topic ${seed}`))
    const akp = Gateway.keyPair()
    await withTimeout(O1.announce(topic, akp).finished(), 15_000, "announce")
    const mutableTarget = Gateway.hash(mkp.publicKey)
    const mutableGet0 = Buffer.from(E.encodeOrThrow(Records.mutableGetRequest, 0))
    const readRecords = async () => {
      const get = async (command, target, value = null) => hex((await withTimeout(R.request({ command, target, value }, tServer), 10_000, `request ${command}`)).value)
      return {
        immutable: await get(Records.Command.IMMUTABLE_GET, immHash),
        mutable: await get(Records.Command.MUTABLE_GET, mutableTarget, mutableGet0),
        lookup: await get(Records.Command.LOOKUP, topic)
      }
    }
    const recordsBefore = await readRecords()
    check(recordsBefore.immutable !== null && recordsBefore.mutable !== null && recordsBefore.lookup !== null, "records stored before the run")

    // ---- connections: a server on T; the sentinel (O1→T) and victims (O2→T) -----------------------
    const serverKp = Gateway.keyPair()
    const serverSides = new Map() // remote public key hex → { socket, errors, closed }
    const serverErrors = { typed: 0, untyped: [] }
    const server = T.createServer((socket) => {
      const entry = { socket, closed: false, chunks: [] }
      serverSides.set(hex(socket.remotePublicKey), entry)
      socket.on("error", (e) => {
        if (isTyped(e)) serverErrors.typed++
        else serverErrors.untyped.push(String(e?.stack ?? e))
      })
      socket.on("close", () => (entry.closed = true))
      socket.on("data", (d) => entry.chunks.push(d))
    })
    await withTimeout(server.listen(serverKp), 15_000, "listen")
    const dial = async (g, kp) => {
      const socket = g.connect(serverKp.publicKey, { keyPair: kp })
      const chunks = []
      const errors = []
      socket.on("data", (d) => chunks.push(d))
      socket.on("error", (e) => errors.push(e))
      await withTimeout(new Promise((resolve, reject) => {
        socket.once("open", resolve)
        socket.once("close", () => reject(new Error(`closed before open: ${String(errors[0]?.message ?? "")}`)))
      }), 15_000, "connection open")
      const key = hex(kp.publicKey)
      for (let i = 0; i < 200 && serverSides.get(key)?.socket.udx == null; i++) await sleep(10)
      const side = serverSides.get(key)
      if (side === undefined || side.socket.udx == null) throw new Error("no server side for the connection")
      return { socket, chunks, errors, side, key }
    }
    const sentinelKp = Gateway.keyPair()
    const sentinel = await dial(O1, sentinelKp)
    const transfer = async (conn, n, tag) => {
      // both ways: n bytes client→T and n bytes T→client, compared by hash
      const up = createHash("sha256").update(`${tag} up`).digest()
      const down = createHash("sha256").update(`${tag} down`).digest()
      const fill = (k) => {
        const b = Buffer.alloc(n)
        for (let i = 0; i < n; i += 32) k.copy(b, i, 0, Math.min(32, n - i))
        return b
      }
      const a = fill(up)
      const b = fill(down)
      conn.side.chunks.length = 0
      conn.chunks.length = 0
      conn.socket.write(a)
      conn.side.socket.write(b)
      const have = (chunks) => chunks.reduce((s, c) => s + c.length, 0)
      const deadline = Date.now() + 20_000
      while ((have(conn.side.chunks) < n || have(conn.chunks) < n) && Date.now() < deadline) await sleep(10)
      return {
        upOk: have(conn.side.chunks) === n && sha(Buffer.concat(conn.side.chunks)) === sha(a),
        downOk: have(conn.chunks) === n && sha(Buffer.concat(conn.chunks)) === sha(b),
        up: have(conn.side.chunks),
        down: have(conn.chunks)
      }
    }
    const pre = await transfer(sentinel, dataBytes, "before")
    check(pre.upOk && pre.downOk, "the sentinel connection carries data before the run")

    let victim = await dial(O2, Gateway.keyPair())
    let victimOpening = null
    const victims = { opened: 1, closed: 0, dialFailures: 0 }
    const replaceVictim = () => {
      if (victimOpening !== null) return
      victims.closed++
      victimOpening = dial(O2, Gateway.keyPair()).then(
        (v) => {
          victim = v
          victims.opened++
          victimOpening = null
        },
        () => {
          victims.dialFailures++
          victimOpening = null
        }
      )
    }

    // ---- the fuzzer's sockets ------------------------------------------------------------------
    const open = async () => {
      const s = dgram.createSocket("udp4")
      s.on("error", () => {})
      await new Promise((r) => s.bind(0, HOST, r))
      return s
    }
    const fz = await open() // requests, unsolicited responses, UDX, random
    const fzB = await open() // answers T's own requests
    closables.push({ destroy: async () => fz.close() }, { destroy: async () => fzB.close() })
    const fzAddr = { host: HOST, port: fz.address().port }
    const fzBAddr = { host: HOST, port: fzB.address().port }
    const fzBId = Gateway.hash(Buffer.from([127, 0, 0, 1, fzBAddr.port & 0xff, fzBAddr.port >>> 8])) // its node id (dht-rpc.md §4)
    const rng = makeRng(seed)
    const corpus = loadCorpus()
    const msg1s = Array.from({ length: 16 }, () =>
      new NoiseWrap(HyperDHT.keyPair(), Buffer.from(serverKp.publicKey)).send({
        version: 1,
        error: 0,
        firewall: rng.int(4),
        holepunch: null,
        addresses4: [],
        addresses6: [],
        udx: { reusableSocket: false, id: 1 + rng.int(1_000_000), seq: 0 },
        secretStream: {},
        relayThrough: null,
        relayAddresses: null
      })
    )
    const ctx = {
      token: null,
      targets: [topic, immHash, mutableTarget, Gateway.hash(serverKp.publicKey)],
      serverTarget: Gateway.hash(serverKp.publicKey),
      mutableKey: mkp.publicKey,
      mutableTarget,
      immutableTarget: immHash,
      msg1s,
      honest,
      fuzzerPorts: [fzAddr.port, fzBAddr.port],
      hash: (b) => Gateway.hash(b)
    }
    const B = makeBuilders(lib, rng, ctx)
    const reqNames = Object.keys(B.req)

    // replies to fz: take the freshest token T issued to 127.0.0.1
    let repliesToFuzzer = 0
    fz.on("message", (msg) => {
      repliesToFuzzer++
      if (msg[0] !== Rpc.RESPONSE_ID) return
      const r = Rpc.decodeResponse(msg)
      if (r._tag === "Success" && r.success.token !== null) ctx.token = Buffer.from(r.success.token)
    })
    // fzB: answers requests from T only, 1-3 responses each (the first valid), the real tid
    const live = { requests: 0, responses: 0, withOwnId: 0, started: 0, settled: 0 }
    let properlyAnswered = false
    const perKind = {}
    let sent = 0
    const sentTo = { server: 0, client: 0 }
    const send = (sock, kind, data, to) => {
      perKind[kind] = (perKind[kind] ?? 0) + 1
      sent++
      if (to.port === tServer.port) sentTo.server++
      else sentTo.client++
      return new Promise((r) => sock.send(data, to.port, to.host, () => r()))
    }
    fzB.on("message", (msg, rinfo) => {
      if (rinfo.port !== tServer.port && rinfo.port !== tClient.port) return
      const d = Rpc.decodeRequest(msg)
      if (d._tag !== "Success") return
      live.requests++
      const to = { host: HOST, port: rinfo.port }
      const n = 1 + rng.int(3)
      for (let i = 0; i < n; i++) {
        const ownId = i === 0 && rng.chance(0.2)
        let data = B.response({ host: rinfo.address, port: rinfo.port }, d.success.tid, ownId ? fzBId : rng.chance(0.3) ? rng.bytes(32) : null)
        if (i > 0 || rng.chance(0.5)) data = mutate(rng, data, corpus)[0]
        else if (ownId) {
          live.withOwnId++
          properlyAnswered = true
        }
        live.responses++
        void send(fzB, "res:live", data, to)
      }
    })

    // ---- one datagram ----------------------------------------------------------------------------
    const coreOf = (conn) => conn.side.socket.udx?.core ?? null
    const pickKind = () => {
      let x = rng.int(TOTAL_WEIGHT)
      for (const [k, w] of WEIGHTS) if ((x -= w) < 0) return k
      return "random"
    }
    const maybeMutate = (data, p = 0.7) => (rng.chance(p) ? mutate(rng, data, corpus)[0] : data)
    const dest = () => (rng.chance(0.75) ? tServer : tClient)
    const unknownId = () => {
      for (;;) {
        const id = rng.u32()
        if (id !== sentinel.side.socket.udx.id && id !== victim.side.socket.udx?.id) return id
      }
    }
    const next = () => {
      const kind = pickKind()
      switch (kind) {
        case "req": {
          const name = reqNames[rng.int(reqNames.length)]
          return [`req:${name}`, maybeMutate(B.req[name](dest())), dest()]
        }
        case "res:unsolicited":
          return [kind, maybeMutate(B.response(fzAddr, rng.int(65536), rng.chance(0.3) ? rng.bytes(32) : null)), dest()]
        case "udx:unknown":
          return [kind, maybeMutate(B.udx(unknownId(), {}), 0.5), dest()]
        case "udx:sentinel": {
          // blind: a stale seq (any type) or a non-data type (any seq); payload mutated, header kept
          const core = coreOf(sentinel)
          const ack = core === null ? 0 : core.ack
          const stale = rng.chance(0.6)
          const type = stale ? rng.int(64) : rng.pick([0, 4, 8, 12, 32, 36, 40, 44])
          const seq = stale ? (ack - 1 - rng.int(0x40000000)) >>> 0 : rng.u32()
          const payload = rng.chance(0.5) ? secretStreamFrame(rng, corpus) : unorderedMessage(rng)
          return [kind, B.udx(sentinel.side.socket.udx.id, { type, seq, payload: maybeMutate(payload, 0.5) }), dest()]
        }
        case "udx:victim":
          return [kind, maybeMutate(B.udx(victim.side.socket.udx?.id ?? unknownId(), {}), 0.5), dest()]
        case "ss:frame": {
          const core = coreOf(victim)
          const seq = core === null ? rng.u32() : core.ack
          return [kind, B.udx(victim.side.socket.udx?.id ?? unknownId(), { type: 1, seq, payload: maybeMutate(secretStreamFrame(rng, corpus), 0.3) }), dest()]
        }
        case "ss:message": {
          const target = rng.chance(0.7) ? sentinel : victim
          const core = coreOf(target)
          const ack = core === null ? 0 : core.ack
          // MESSAGE only (no DATA/END/DESTROY bits), seq stale so nothing else is touched
          return [kind, B.udx(target.side.socket.udx?.id ?? unknownId(), { type: 8, seq: (ack - 1 - rng.int(1000)) >>> 0, payload: unorderedMessage(rng) }), dest()]
        }
        case "vector":
          return [kind, mutate(rng, corpus[rng.int(corpus.length)], corpus)[0], dest()]
        default: {
          const b = rng.bytes(rng.chance(0.5) ? rng.int(64) : rng.int(2101))
          // some pass the first filters: a dht-rpc type byte, or the UDX marker
          if (b.length >= 2 && rng.chance(0.3)) {
            const m = rng.int(3)
            if (m === 0) b[0] = 0x03
            else if (m === 1) b[0] = 0x13
            else (b[0] = 0xff), (b[1] = 0x01)
          }
          return [kind, b, dest()]
        }
      }
    }

    // ---- T's own requests to the responder, every command -----------------------------------------
    const liveCommands = [null, ...Object.values(Records.Command).filter((c) => c !== Records.Command.PLUGIN)]
    const startLive = () => {
      live.started++
      const command = rng.pick(liveCommands)
      const p =
        command === null
          ? T.ping(fzBAddr, { retry: false })
          : T.request({ command, target: rng.bytes(32), value: rng.chance(0.5) ? rng.bytes(rng.int(64)) : null }, fzBAddr, { retry: false })
      p.then(
        () => live.settled++,
        () => live.settled++
      )
    }

    // ---- counters before ---------------------------------------------------------------------------
    const host = await T.connections()
    const snap = () => ({
      rpc: { ...h.core.io.stats, requests: { ...h.core.io.stats.requests } },
      server: h.sockets().server.stats(),
      client: h.sockets().client.stats(),
      mux: host.mux.stats(),
      connect: JSON.parse(JSON.stringify(host.stats)),
      router: JSON.parse(JSON.stringify(T.stats.router ?? {}))
    })
    const before = snap()

    // ---- the run: bursts, then wait until T's sockets have taken them in ------------------------------
    log(`fuzzing T (${tServer.port}/${tClient.port}) with ${count} datagrams, seed ${seed}`)
    const t0 = performance.now()
    let lastLog = t0
    let bursts = 0
    let waitedOut = 0
    const received = () => h.sockets().server.stats().received + h.sockets().client.stats().received
    const base = received()
    let credited = 0 // datagrams written off as lost (the wait for them timed out)
    const fuzzSentToT = () => sentTo.server + sentTo.client
    while (sent < count) {
      const n = Math.min(burst, count - sent)
      const tg = performance.now()
      const ps = []
      for (let i = 0; i < n; i++) {
        const [kind, data, to] = next()
        ps.push(send(fz, kind, data, to))
      }
      const tg1 = performance.now()
      await Promise.all(ps)
      const tg2 = performance.now()
      bursts++
      // backpressure: at most `window` datagrams not yet received by T
      const waitStart = performance.now()
      for (;;) {
        await tick()
        const inflight = fuzzSentToT() - credited - (received() - base)
        if (inflight <= window) break
        if (performance.now() - waitStart > 250) {
          waitedOut++
          credited += inflight - window
          break
        }
      }
      if ((bursts & 15) === 0) {
        if (live.started - live.settled < 4) startLive()
        if (victim.side.closed || victim.socket.destroyed) replaceVictim()
        const now = performance.now()
        if (now - lastLog > (opts.logEvery ?? 5000)) {
          lastLog = now
          log(`  ${sent} sent, ${Math.round(sent / ((now - t0) / 1000))}/s, victims closed ${victims.closed}, waits timed out ${waitedOut}, T received ${received() - base}`)
        }
      }
    }
    const runMs = performance.now() - t0
    // let the last datagrams and T's own requests settle
    for (let i = 0; i < 100 && (fuzzSentToT() - credited - (received() - base) > 0 || live.started > live.settled); i++) await sleep(20)
    if (victimOpening !== null) await victimOpening
    const after = snap()

    // ---- checks ---------------------------------------------------------------------------------------
    await sleep(200)
    const pingO1 = await withTimeout(O1.ping(tServer), 5_000, "omega ping").then(
      (r) => r.from.id !== null && Buffer.from(r.from.id).equals(T.id),
      () => false
    )
    check(pingO1, "an Omega node pings T")
    const pingR = await withTimeout(R.ping(tServer), 5_000, "reference ping").then(
      (r) => Buffer.from(r.from.id).equals(T.id),
      () => false
    )
    check(pingR, "the reference node pings T")
    let lookupPeers = 0
    try {
      await withTimeout(
        (async () => {
          for await (const reply of R.lookup(topic)) for (const p of reply.peers) if (Buffer.from(p.publicKey).equals(akp.publicKey)) lookupPeers++
        })(),
        15_000,
        "reference lookup"
      )
    } catch {
      // counted below
    }
    check(lookupPeers > 0, "the reference node's lookup finds the announced record")
    const refClosest = await withTimeout(
      (async () => {
        const q = R.findNode(Gateway.hash(Buffer.from("after")))
        for await (const _ of q) void _
        return q.closestReplies.map((r) => r.from.port)
      })(),
      15_000,
      "reference findNode"
    ).catch(() => [])
    check(refClosest.includes(tServer.port), "T answers the reference node's findNode")

    const tableAfter = T.toArray().map((n) => `${n.host}:${n.port}`).sort()
    const strangers = tableAfter.filter((a) => !honestKeys.has(a) && !(properlyAnswered && a === `${HOST}:${fzBAddr.port}`))
    check(strangers.length === 0, `T's table holds only nodes that answered properly (strangers: ${strangers.join(", ")})`)
    check(!tableAfter.includes(`${HOST}:${fzAddr.port}`), "the fuzzer's source address is not in T's table")
    check(tableAfter.length > 0, "T's table is not empty")
    const status = await T.status()
    check(status.bootstrapped && !status.ephemeral && !status.firewalled, "T is still a bootstrapped, persistent, open node")
    const refTable = R.toArray().map((n) => `${n.host}:${n.port}`)
    check(!refTable.includes(`${HOST}:${fzAddr.port}`), "the fuzzer's source address is not in the reference node's table")

    const recordsAfter = await readRecords().catch((e) => ({ error: String(e) }))
    const recordsIntact = JSON.stringify(recordsAfter) === JSON.stringify(recordsBefore)
    check(recordsIntact, "the records stored before the run read back identically")

    const sentinelOpen = !sentinel.socket.destroyed && !sentinel.side.closed
    check(sentinelOpen, "the sentinel connection is still open")
    const post = sentinelOpen ? await transfer(sentinel, dataBytes, "after") : { upOk: false, downOk: false, up: 0, down: 0 }
    check(post.upOk && post.downOk, `the sentinel connection carries ${dataBytes} bytes each way intact after the run`)
    const coreState = (c) => {
      if (c == null) return null
      const o = {}
      for (const k of ["state", "closed", "seqNext", "remoteAcked", "ack", "sendRwnd", "cwnd", "inflight", "remoteEnding", "remoteEnded", "localEnded", "oooCount", "unreadBytes", "rtoAt", "zwpAt", "wl1", "wl2"])
        if (k in c) o[k] = c[k]
      if (typeof c.stats === "function") o.stats = c.stats()
      else if (c.s !== undefined) o.stats = { ...c.s }
      return o
    }
    const sentinelState = post.upOk && post.downOk ? null : { server: coreState(coreOf(sentinel)), client: coreState(sentinel.socket.udx?.core) }
    let fresh = { upOk: false, downOk: false }
    try {
      const v = await dial(O2, Gateway.keyPair())
      fresh = await transfer(v, 64 * 1024, "fresh")
    } catch {
      // checked below
    }
    check(fresh.upOk && fresh.downOk, "a new connection to T opens and carries data after the run")

    await sleep(100)
    check(escaped.uncaught.length === 0, `no uncaught exception (${escaped.uncaught.length})`)
    check(escaped.unhandled.length === 0, `no unhandled rejection (${escaped.unhandled.length})`)
    check(gatewayErrors.length === 0, `no 'error' event on the nodes (${gatewayErrors.length})`)
    check(serverErrors.untyped.length === 0, `every connection error on T is typed (${serverErrors.untyped.length} untyped)`)
    check(after.mux.defects === before.mux.defects, "no defect caught in T's UDX streams")

    const delta = (a, b) => a - b
    summary = {
      seed,
      count: sent,
      runMs,
      rate: Math.round(sent / (runMs / 1000)),
      bursts,
      burst,
      window,
      waitedOut,
      writtenOff: credited,
      perKind,
      sentTo,
      received: received() - base,
      repliesToFuzzer,
      live,
      victims,
      node: {
        rpcDropped: delta(after.rpc.dropped, before.rpc.dropped),
        rpcUnmatched: delta(after.rpc.unmatched, before.rpc.unmatched),
        requestsTimedOut: delta(after.rpc.requests.timeouts, before.rpc.requests.timeouts),
        socketDropped: delta(after.server.dropped + after.client.dropped, before.server.dropped + before.client.dropped),
        udxRouted: delta(after.mux.routed, before.mux.routed),
        udxUnknownId: delta(after.mux.unknownId, before.mux.unknownId),
        udxFirewalled: delta(after.mux.firewalled, before.mux.firewalled),
        udxDefects: delta(after.mux.defects, before.mux.defects),
        badHandshakes: delta(after.connect.server.badHandshakes, before.connect.server.badHandshakes),
        handshakes: delta(after.connect.server.handshakes, before.connect.server.handshakes),
        handshakesRefused: delta(after.connect.server.refused, before.connect.server.refused),
        holepunchesIgnored: delta(after.connect.server.holepunchesIgnored, before.connect.server.holepunchesIgnored),
        router: after.router
      },
      serverErrors: { typed: serverErrors.typed, untyped: serverErrors.untyped.length },
      honest: [...honestKeys],
      blockedSends: { count: guard.blocked.count, nonLoopback: guard.blocked.nonLoopback, samples: guard.blocked.samples },
      checks: {
        pingFromOmega: pingO1,
        pingFromReference: pingR,
        referenceLookupPeers: lookupPeers,
        referenceFindNodeReachesT: refClosest.includes(tServer.port),
        tableBefore,
        tableAfter,
        fuzzerResponderAnsweredProperly: properlyAnswered,
        recordsIntact,
        sentinel: post,
        freshConnection: fresh,
        uncaught: escaped.uncaught.length,
        unhandled: escaped.unhandled.length,
        gatewayErrors: gatewayErrors.length
      },
      escaped: { uncaught: escaped.uncaught.slice(0, 5), unhandled: escaped.unhandled.slice(0, 5), gatewayErrors: gatewayErrors.slice(0, 5) },
      sentinelState,
      failures
    }
    return summary
  } finally {
    await Promise.all(closables.reverse().map((c) => withTimeout(Promise.resolve().then(() => c.destroy()), 10_000, "destroy").catch(() => {})))
    // late events of the teardown still count
    await sleep(100)
    if (summary !== null) {
      const seen = summary.checks.uncaught + summary.checks.unhandled
      summary.checks.uncaught = escaped.uncaught.length
      summary.checks.unhandled = escaped.unhandled.length
      if (escaped.uncaught.length + escaped.unhandled.length > seen) failures.push("an exception escaped during the teardown")
    }
    process.off("uncaughtException", onUncaught)
    process.off("unhandledRejection", onUnhandled)
    guard.restore()
  }
}
