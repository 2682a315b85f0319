/**
 * Bad input on the connect path, over real UDP on 127.0.0.1 (connect.md §4,
 * §6.2–6.4; hyperdht-records.md §9).
 *
 * An Omega network (a bootstrapper and three persistent nodes), an Omega
 * server on an ephemeral node S, an honest Omega client node C, and raw
 * node:dgram sockets: the attacker, a sink (the 127.0.0.1 address crafted
 * peerAddress / relayAddress fields point to, so relayed traffic can be
 * counted) and two helpers. The attacker sends hand-encoded PEER_HANDSHAKE (0)
 * and PEER_HOLEPUNCH (1) requests (internal = false, target = BLAKE2b-256 of
 * the server's key) to R, a node that holds the server's announcement, and to
 * S directly.
 *
 * The expected effect of every request is computed from the routing tables
 * of connect.md §4.3 / §6.2 (the `hsModel` / `hpModel` functions below) and
 * compared, counter by counter, with the deltas of the router stats of R, S
 * and the other nodes, the server stats of S, the datagrams that reach the
 * attacker and the sink, the 'connection' events, the server's firewall hook
 * calls, the streams the server makes and the process's UDP sockets. After
 * every burst an honest client still connects and exchanges bytes, and
 * findNode and ping still work.
 *
 * Also: a firewalled server F with a live holepunch slot (garbage boxes at
 * that slot, unknown ids, junk at its puncher socket), the client side
 * (spoofed-tid responses while it dials; a hostile relay answering its
 * PEER_HANDSHAKE with bad replies), and a flood of bad message 1 beyond the
 * server's MAX_PENDING_HANDSHAKES (fails today: see that test).
 *
 * Valid Noise message 1 are made with the reference's own NoiseWrap
 * (hyperdht/lib/noise-wrap.js), and replies are decoded with its codecs.
 */
import HyperDHT from "hyperdht"
import * as dgram from "node:dgram"
import { createRequire } from "node:module"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { NodeHandle } from "../src/actors/routing/driver.js"
import type { ConnectionHost } from "../src/actors/session/host.js"
import { MAX_PENDING_HANDSHAKES } from "../src/actors/session/server.js"
import type { GatewayServer } from "../src/api/server.js"
import { Gateway } from "../src/index.js"
import { type Addr, decodeMessage, encReq, encRes, hpValue, hsValue, Raw, rnd } from "./support/connect-hostile-wire.js"
import { HOST, onFreePort, sleep, tracker, withTimeout } from "./support/live.js"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any

const requireRef = createRequire(import.meta.url)
const NoiseWrap: Any = requireRef("hyperdht/lib/noise-wrap.js")
const SecurePayload: Any = requireRef("hyperdht/lib/secure-payload.js")
const refMessages: Any = requireRef("hyperdht/lib/messages.js")
const cenc: Any = requireRef("compact-encoding")

const PEER_HANDSHAKE = 0
const PEER_HOLEPUNCH = 1
const FROM_CLIENT = 0
const FROM_SERVER = 1
const FROM_RELAY = 2
const FROM_SECOND_RELAY = 3
const REPLY = 4
/** Every mode number, the five known ones and unknown ones (one needs a 5-byte uint). */
const MODES = [FROM_CLIENT, FROM_SERVER, FROM_RELAY, FROM_SECOND_RELAY, REPLY, 5, 200, 70_000]
const INVALID_TOKEN = 2

// ---- network --------------------------------------------------------------------------------

const net = tracker()
const raws: Array<Raw> = []
const gatewayErrors: Array<unknown> = []

let persistent: Array<Gateway> = []
let S: Gateway // the server's node (ephemeral)
let C: Gateway // an honest client node
let R: Gateway // a persistent node that holds the server's announcement
let others: Array<Gateway> = [] // the other persistent nodes
let server: GatewayServer
let sHost: ConnectionHost
let serverKey: Buffer
let T: Buffer // the target: BLAKE2b-256(server public key)
let addrR: Addr
let addrS: Addr // S's server socket
let addrSc: Addr // S's client socket
let attacker: Raw
let sink: Raw
let accomplice: Raw

let connections = 0
let honest = 0
let legit = 0 // connections the attacker made with a valid handshake (test "direct replay")
let firewallCalls = 0
let streamsCreated = 0 // UDX streams the server's node made (one per answered handshake without error)
const serverSockets: Array<Any> = []

const handleOf = (g: Gateway): NodeHandle => {
  const h = (g as unknown as { handle: NodeHandle | null }).handle
  if (h === null) throw new Error("node not open")
  return h
}
const serverAddr = (g: Gateway): Addr => ({ host: HOST, port: handleOf(g).sockets().server.local.port })
const clientAddr = (g: Gateway): Addr => ({ host: HOST, port: handleOf(g).sockets().client.local.port })
const same = (a: Addr, b: Addr): boolean => a.host === b.host && a.port === b.port

const gateway = (opts: Record<string, unknown>): Gateway => {
  const g = net.track(new Gateway({ host: HOST, ...opts }))
  g.on("error", (e: unknown) => gatewayErrors.push(e))
  return g
}

/**
 * UDP sockets open in this process (Omega's are unref'd, so process.getActiveResourcesInfo()
 * does not list them): every node:dgram socket bound and not yet closed, counted on the prototype.
 */
const bound = new WeakSet<dgram.Socket>()
let openUdp = 0
const protoBind = dgram.Socket.prototype.bind
dgram.Socket.prototype.bind = function countedBind(this: dgram.Socket, ...args: Array<unknown>) {
  if (!bound.has(this)) {
    bound.add(this)
    openUdp++
    this.once("close", () => openUdp--)
  }
  return (protoBind as (...a: Array<unknown>) => dgram.Socket).apply(this, args)
} as typeof protoBind
const udpSockets = (): number => openUdp

// ---- tids: every attack request gets its own ----------------------------------------------

let nextTid = Math.floor(Math.random() * 30_000)
const tid = (): number => (nextTid = (nextTid + 1) & 0xffff)

// ---- Noise message 1 with the reference -----------------------------------------------------

const refPayload = (over: Record<string, unknown> = {}) => ({
  version: 1,
  error: 0,
  firewall: 0, // UNKNOWN: a relayed server waits for the client's first UDX packet (no connection)
  holepunch: null,
  addresses4: [],
  addresses6: [],
  udx: { reusableSocket: false, id: 1 + Math.floor(Math.random() * 1000), seq: 0 },
  secretStream: {},
  relayThrough: null,
  relayAddresses: null,
  ...over
})

/** A client handshake (reference NoiseWrap) towards `remote` (default: the server). */
const initiator = (remote: Uint8Array = serverKey): Any => new NoiseWrap(HyperDHT.keyPair(), Buffer.from(remote))
/** A valid message 1 for the server carrying a well-formed payload. */
const validMsg1 = (over: Record<string, unknown> = {}): { nw: Any; msg1: Buffer } => {
  const nw = initiator()
  return { nw, msg1: nw.send(refPayload(over)) }
}
/** A valid message 1 for the server whose (decrypted) payload is exactly `plain`. */
const msg1WithRawPayload = (plain: Uint8Array): { nw: Any; msg1: Buffer } => {
  const nw = initiator()
  return { nw, msg1: Buffer.from(nw.handshake.send(Buffer.from(plain))) }
}

const refDecode = (enc: Any, b: Uint8Array | null): Any => {
  if (b === null) return null
  try {
    return cenc.decode(enc, b)
  } catch {
    return null
  }
}

// ---- requests ---------------------------------------------------------------------------------

interface Sent {
  readonly tid: number
  readonly to: Addr
  readonly data: Buffer
}

const request = (to: Addr, command: number, value: Uint8Array | undefined, opts: { target?: Uint8Array | null; token?: Uint8Array } = {}): Sent => {
  const t = tid()
  const target = opts.target === null ? undefined : (opts.target ?? T)
  return {
    tid: t,
    to,
    data: encReq({ tid: t, to, command, ...(target ? { target } : {}), ...(value ? { value } : {}), ...(opts.token ? { token: opts.token } : {}) })
  }
}
const hsRequest = (to: Addr, value: Uint8Array | undefined, opts?: { target?: Uint8Array | null; token?: Uint8Array }) => request(to, PEER_HANDSHAKE, value, opts)
const hpRequest = (to: Addr, value: Uint8Array | undefined, opts?: { target?: Uint8Array | null; token?: Uint8Array }) => request(to, PEER_HOLEPUNCH, value, opts)

// ---- what every request should do (connect.md §4.3, §6.2; Omega is stricter in places) -----

/** Expected counter deltas, keyed like `snapshot()`. */
class Tally {
  readonly m: Record<string, number> = {}
  add(k: string, n = 1): void {
    this.m[k] = (this.m[k] ?? 0) + n
  }
}

type At = "R" | "S"

/**
 * A PEER_HANDSHAKE with garbage (or empty) noise arriving at R (relay entry
 * for T, no server) or S (server entry for T, no relay entry). `peer` and
 * `relay` are the sink's address when present.
 */
const hsModel = (at: At, mode: number, peer: boolean, relay: boolean, noise: boolean, e: Tally): void => {
  const drop = () => e.add(`${at}.dropped`)
  if (at === "S") {
    // the server runs the handshake for FROM_CLIENT, FROM_RELAY (needs the client's address) and
    // FROM_SECOND_RELAY (needs both addresses); hyperdht runs it for every mode and only skips the
    // reply, Omega drops the rest before the server sees it
    if (!noise) return drop()
    const runs = mode === FROM_CLIENT || (mode === FROM_RELAY && peer) || (mode === FROM_SECOND_RELAY && peer && relay)
    if (!runs) return drop()
    e.add("S.serverHandshakes")
    e.add("srv.handshakes")
    e.add("srv.badHandshakes")
    return
  }
  switch (mode) {
    case FROM_CLIENT:
      if (!noise) return drop()
      e.add("R.handshakesRelayed")
      if (relay) e.add("sink") // relayed to relayAddress as FROM_RELAY
      else hsModel("S", FROM_RELAY, true, false, true, e) // relayed to the server (entry.relay)
      return
    case FROM_RELAY:
      if (!noise || !peer) return drop() // (hyperdht relays even without peerAddress)
      e.add("R.handshakesRelayed")
      hsModel("S", FROM_SECOND_RELAY, true, true, true, e)
      return
    case FROM_SERVER:
      if (!noise || !peer) return drop()
      e.add("R.handshakesRelayed")
      e.add("sink") // a REPLY response to peerAddress
      return
    default:
      return drop()
  }
}

/** A PEER_HOLEPUNCH arriving at R or S; this server never offers holepunching, so it never answers. */
const hpModel = (at: At, mode: number, peer: boolean, e: Tally): void => {
  const drop = () => e.add(`${at}.dropped`)
  switch (mode) {
    case FROM_CLIENT:
      if (peer) {
        e.add(`${at}.holepunchesRelayed`)
        e.add("sink")
      } else if (at === "R") {
        e.add("R.holepunchesRelayed")
        hpModel("S", FROM_RELAY, true, e)
      } else drop()
      return
    case FROM_RELAY:
      if (at === "S" && peer) {
        e.add("S.serverHolepunches")
        e.add("srv.holepunchesIgnored")
      } else drop()
      return
    case FROM_SERVER:
      if (!peer) return drop()
      e.add(`${at}.holepunchesRelayed`)
      e.add("sink")
      return
    default:
      return drop()
  }
}

// ---- observation ------------------------------------------------------------------------------

/** Everything a burst may move, flattened. `attacker` counts dht-rpc messages only. */
const snapshot = (): Record<string, number> => {
  const out: Record<string, number> = {}
  const put = (prefix: string, o: object) => {
    for (const [k, v] of Object.entries(o)) if (typeof v === "number") out[`${prefix}.${k}`] = v
  }
  put("R", R.stats.router!)
  put("S", S.stats.router!)
  put("srv", S.stats.server)
  others.forEach((o, i) => put(`other${i}`, o.stats.router!))
  put("C", C.stats.router!)
  out.connections = connections
  out.firewallCalls = firewallCalls
  out.attacker = attacker.messages().length
  out.sink = sink.inbox.length
  out.udpSockets = udpSockets()
  out.streamsCreated = streamsCreated
  out.muxDefects = sHost.mux.stats().defects
  return out
}

const diff = (a: Record<string, number>, b: Record<string, number>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (b[k] ?? 0) - (a[k] ?? 0)
    if (d !== 0) out[k] = d
  }
  return out
}

/** Wait until every expected counter has moved at least as far (or 8 s), then a little longer for strays. */
const settle = async (before: Record<string, number>, expected: Record<string, number>): Promise<Record<string, number>> => {
  const reached = () => {
    const d = diff(before, snapshot())
    return Object.entries(expected).every(([k, n]) => (n >= 0 ? (d[k] ?? 0) >= n : (d[k] ?? 0) <= n))
  }
  await attacker.until(reached, 8_000)
  await sleep(300)
  return diff(before, snapshot())
}

// ---- liveness ----------------------------------------------------------------------------------

const opened = (s: Any): Promise<void> =>
  new Promise((resolve, reject) => {
    s.once("open", () => resolve())
    s.once("error", reject)
  })

/** An honest dial opened: wait for the server's 'connection' event (it may follow the client's 'open'), then close both ends. */
const closeHonest = async (sock: Any, label: string): Promise<void> => {
  honest++
  await attacker.until(() => connections >= honest + legit, 5_000)
  expect(connections, `${label}: 'connection' events`).toBe(honest + legit)
  sock.on("error", () => {})
  sock.destroy()
  serverSockets[serverSockets.length - 1]?.destroy()
}

/** An honest client connects and exchanges bytes; findNode and ping still work. */
const alive = async (label: string): Promise<void> => {
  const streams0 = sHost.mux.stats().streams
  const sock: Any = C.connect(serverKey)
  await withTimeout(opened(sock), 20_000, `${label}: an honest client connects`)
  const msg = Buffer.from(`${label} ${rnd(8).toString("hex")}`)
  const echoed = new Promise<Buffer>((resolve) => {
    let acc = Buffer.alloc(0)
    sock.on("data", (d: Buffer) => {
      acc = Buffer.concat([acc, d])
      if (acc.length >= msg.length) resolve(acc)
    })
  })
  sock.write(msg)
  expect((await withTimeout(echoed, 10_000, `${label}: echo`)).equals(msg)).toBe(true)
  honest++
  expect(connections, `${label}: 'connection' events`).toBe(honest + legit)
  const serverSide = serverSockets[serverSockets.length - 1]
  sock.on("error", () => {})
  sock.destroy()
  serverSide?.destroy()
  for (let i = 0; i < 100 && sHost.mux.stats().streams > streams0; i++) await sleep(20)
  for (const g of [C, S]) {
    const q = g.findNode(rnd(32))
    await withTimeout(q.finished(), 15_000, `${label}: findNode`)
    expect(q.closestReplies.length, `${label}: findNode replies`).toBeGreaterThan(0)
  }
  const pong = await withTimeout(C.ping(addrR), 5_000, `${label}: ping R`)
  expect(pong.from.port).toBe(addrR.port)
  await withTimeout(C.ping(addrS), 5_000, `${label}: ping S`)
  expect(gatewayErrors).toEqual([])
  expect(sHost.mux.stats().defects).toBe(0)
}

// ---- setup --------------------------------------------------------------------------------------

beforeAll(async () => {
  const boot = await onFreePort("omega bootstrapper", (port) => Gateway.bootstrapper(port, HOST, { host: HOST }), net.track)
  boot.node.on("error", (e: unknown) => gatewayErrors.push(e))
  const bootstrap = [`${HOST}:${boot.port}`]
  const nodes = [0, 1, 2].map(() => gateway({ bootstrap, ephemeral: false, firewalled: false }))
  await withTimeout(Promise.all(nodes.map((g) => g.ready())), 20_000, "persistent nodes ready")
  persistent = [boot.node, ...nodes]
  // S is reachable (not firewalled): its server answers as an OPEN server and offers no holepunch,
  // so no PEER_HOLEPUNCH to it finds a slot secret (the firewalled server F is tested separately)
  S = gateway({ bootstrap, ephemeral: true, firewalled: false })
  C = gateway({ bootstrap, ephemeral: true })
  await withTimeout(Promise.all([S.ready(), C.ready()]), 20_000, "server and client nodes ready")

  server = S.createServer({
    firewall: () => {
      firewallCalls++
      return false
    }
  })
  server.on("connection", (s: Any) => {
    connections++
    serverSockets.push(s)
    s.on("error", () => {})
    s.on("data", (d: Buffer) => s.write(d)) // echo
  })
  await withTimeout(server.listen(), 20_000, "server listening")
  serverKey = server.publicKey!
  T = Gateway.hash(serverKey)
  sHost = await S.connections()
  // count the streams the server makes (the stream count itself also moves when a timer closes one)
  const mux = sHost.mux as unknown as { createStreamUnsafe: (...a: Array<unknown>) => unknown }
  const createStream = mux.createStreamUnsafe.bind(mux)
  mux.createStreamUnsafe = (...a) => {
    streamsCreated++
    return createStream(...a)
  }

  // R: a persistent node that stores the announcement (its relay entry points at S)
  const relays = server.nodes
  expect(relays.length).toBeGreaterThan(0)
  const holder = persistent.find((g) => relays.some((r) => same(r, serverAddr(g))))
  expect(holder).toBeDefined()
  R = holder!
  others = persistent.filter((g) => g !== R)
  addrR = serverAddr(R)
  addrS = serverAddr(S)
  addrSc = clientAddr(S)
  const hR = handleOf(R) as NodeHandle & { hyperdht: Any }
  const hS = handleOf(S) as NodeHandle & { hyperdht: Any }
  expect(hR.hyperdht.store()?.forwards.get(T.toString("hex"), hR.core.time)?.relay ?? null).not.toBeNull()
  expect(S.ephemeral).toBe(true)
  // S pins its own record (FIND_PEER answers it) but has no relay entry for it
  expect(hS.hyperdht.store()?.forwards.get(T.toString("hex"), hS.core.time)?.relay ?? null).toBeNull()
  expect(hS.hyperdht.router.hasServer(T)).toBe(true)
  expect(hR.hyperdht.router.hasServer(T)).toBe(false)

  attacker = await Raw.open()
  sink = await Raw.open()
  accomplice = await Raw.open()
  raws.push(attacker, sink, accomplice)

  await alive("setup")
}, 90_000)

afterAll(async () => {
  for (const s of serverSockets) s.destroy?.()
  await Promise.all(raws.map((r) => r.destroy()))
  await net.destroyAll()
}, 60_000)

// ---- the bursts ---------------------------------------------------------------------------------

describe("bad PEER_HANDSHAKE / PEER_HOLEPUNCH input over UDP (127.0.0.1)", () => {
  it("undecodable handshake values, no value, no target: dropped and counted, never answered", async () => {
    const values: Array<Buffer | undefined> = [
      undefined, // no value at all
      Buffer.alloc(0), // an empty value
      Buffer.from([0x00]), // flags only
      Buffer.from([0x00, 0x00]), // no noise length
      Buffer.from([0x00, 0x00, 0x05, 0x01, 0x02]), // noise cut off
      Buffer.from([0x01, 0x00, 0x01, 0xaa]), // peerAddress flag, no address
      Buffer.from([0x03, 0x02, 0x01, 0xaa, 127, 0, 0, 1, 0x10]), // relayAddress missing, peerAddress cut off
      Buffer.from([0xfd, 0x01]), // 16-bit flags cut off
      Buffer.from([0x00, 0xfe, 0x01, 0x02]), // 32-bit mode cut off
      Buffer.from([0x00, 0x00, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x10, 0xaa]), // 2^60-byte noise
      Buffer.from([0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xaa]), // 4 GiB noise
      Buffer.from([0x00, 0x00, 0xfd, 0x00, 0x08, ...rnd(100)]) // 2 KiB noise, 100 bytes there
    ]
    const e = new Tally()
    const sent: Array<Sent> = []
    for (const [to, at] of [
      [addrR, "R"],
      [addrS, "S"],
      [addrSc, "S"]
    ] as const) {
      for (const v of values) {
        sent.push(hsRequest(to, v))
        e.add(`${at}.dropped`)
      }
      // a well-formed value with no target
      sent.push(hsRequest(to, hsValue({ mode: FROM_CLIENT, noise: rnd(120) }), { target: null }))
      e.add(`${at}.dropped`)
    }
    const before = snapshot()
    await attacker.blast(sent)
    const d = await settle(before, e.m)
    expect(d).toEqual(e.m)
    await alive("undecodable handshake values")
  })

  it("every handshake mode with and without peerAddress, relayAddress and noise", async () => {
    const e = new Tally()
    const sent: Array<Sent> = []
    for (const [to, at] of [
      [addrR, "R"],
      [addrS, "S"]
    ] as const) {
      for (const mode of MODES) {
        for (const peer of [false, true]) {
          for (const relay of [false, true]) {
            for (const noise of [false, true]) {
              const value = hsValue({
                mode,
                noise: noise ? rnd(64 + Math.floor(Math.random() * 64)) : Buffer.alloc(0),
                peerAddress: peer ? sink.address : null,
                relayAddress: relay ? sink.address : null
              })
              sent.push(hsRequest(to, value))
              hsModel(at, mode, peer, relay, noise, e)
            }
          }
        }
      }
    }
    const before = snapshot()
    const sink0 = sink.inbox.length
    await attacker.blast(sent)
    const d = await settle(before, e.m)
    expect(d).toEqual(e.m)
    // what reached the sink: R's relays (FROM_RELAY requests) and replies (REPLY responses), each
    // carrying the tid of one attack request, well-formed, and naming the attacker as the peer
    const tids = new Set(sent.map((s) => s.tid))
    for (const m of sink.messages(sink0)) {
      expect(same(m.from, addrR)).toBe(true)
      expect(tids.has(m.tid)).toBe(true)
      const hs = refDecode(refMessages.handshake, m.value)
      expect(hs).not.toBeNull()
      expect(hs.mode).toBe(m.type === "request" ? FROM_RELAY : REPLY)
      expect(hs.peerAddress).toEqual(attacker.address)
      if (m.type === "request") {
        expect(m.command).toBe(PEER_HANDSHAKE)
        expect(m.target?.equals(T)).toBe(true)
        expect(m.token).toBeNull()
      }
    }
    expect(sink.messages(sink0).length).toBe(e.m.sink ?? 0)
    expect(sent.length).toBe(2 * MODES.length * 8)
    await alive("handshake modes")
  })

  it("truncated, oversized, random and wrong-key Noise message 1, and valid ones with bad payloads", async () => {
    const e = new Tally()
    const sent: Array<Sent> = []
    const replies: Array<{ tid: number; nw: Any; error: number; via: At }> = []
    // value bytes around a noise of n bytes: flags, mode, 3-byte length; envelope: 11 + 32 + 3
    const noiseForDatagram = (total: number) => total - (1 + 1 + 2 + 6 + 1 + 32 + 3) - (1 + 1 + 3)
    for (const [to, at] of [
      [addrR, "R"],
      [addrS, "S"]
    ] as const) {
      const bad: Array<Buffer> = []
      // truncations of a valid message 1 (a fresh one per destination: dedup is by bytes)
      const { msg1 } = validMsg1()
      for (const n of [1, 31, 32, 33, 64, 80, 95, 96, 97, msg1.length - 17, msg1.length - 16, msg1.length - 1]) bad.push(msg1.subarray(0, n))
      // near the 2048-byte datagram limit: random, and a valid message 1 whose payload is padding
      for (const total of [1900, 2000, 2047, 2048]) bad.push(rnd(noiseForDatagram(total)))
      // (version 1, IPv4 addresses flag, error 0, firewall 0, then 2^28 addresses announced)
      const huge = [0x01, 0x02, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0x0f]
      bad.push(msg1WithRawPayload(Buffer.concat([Buffer.from(huge), rnd(noiseForDatagram(2040) - 32 - 48 - 16 - huge.length)])).msg1)
      // random bytes of every length class
      for (let i = 0; i < 20; i++) bad.push(rnd(96 + Math.floor(Math.random() * 500)))
      // degenerate keys: all zero, all 0xff, a zero ephemeral key, the identity point as ephemeral
      // key (lengths differ per destination: the same bytes twice would be a duplicate)
      const k = at === "R" ? 0 : 1
      bad.push(Buffer.alloc(96 + k), Buffer.alloc(96 + k, 0xff), Buffer.concat([Buffer.alloc(32), rnd(64)]), Buffer.concat([Buffer.from([1]), Buffer.alloc(31), rnd(80)]))
      // message 1 made for another server's key (the target still names ours)
      for (let i = 0; i < 3; i++) bad.push(initiator(HyperDHT.keyPair().publicKey).send(refPayload()))
      // a valid message 1 whose payload does not decode
      for (const plain of [
        [],
        [0x01],
        [0x01, 0x02, 0x00, 0x00, 0x05], // 5 IPv4 addresses announced, none there
        [0x01, 0x08, 0x00, 0x00, 0x01], // udx info cut off
        [0x01, 0x20, 0x00, 0x00, 0x01, 0x00, ...rnd(16)], // relayThrough cut off
        [0x01, 0x01, 0x00, 0x00, 0x05, 0x03] // holepunch info: 3 relays, none there
      ]) {
        bad.push(msg1WithRawPayload(Buffer.from(plain)).msg1)
      }
      for (const noise of bad) {
        sent.push(hsRequest(to, hsValue({ mode: FROM_CLIENT, noise })))
        hsModel(at, FROM_CLIENT, false, false, noise.length > 0, e)
      }
      // valid message 1 with payloads the server answers with an error: another version, no UDX info
      for (const [plain, error] of [
        [Buffer.from([0x02]), 2], // VERSION_MISMATCH
        [cenc.encode(refMessages.noisePayload, refPayload({ udx: null })), 1] // ABORTED
      ] as const) {
        const { nw, msg1: m } = msg1WithRawPayload(plain)
        const s = hsRequest(to, hsValue({ mode: FROM_CLIENT, noise: m }))
        sent.push(s)
        replies.push({ tid: s.tid, nw, error, via: at })
        e.add("srv.handshakes")
        e.add("firewallCalls")
        e.add("S.serverHandshakes")
        e.add("attacker")
        if (at === "R") e.add("R.handshakesRelayed", 2) // to the server and back
      }
    }
    const before = snapshot()
    const at0 = attacker.inbox.length
    await attacker.blast(sent)
    const d = await settle(before, e.m)
    expect(d).toEqual(e.m)
    // the two error answers per path: a REPLY from the node we asked, whose Noise message 2 the
    // reference client reads, carrying the error (no stream was made for them: `streamsCreated` did not move)
    const got = attacker.messages(at0)
    expect(got.length).toBe(replies.length)
    for (const r of replies) {
      const m = got.find((x) => x.tid === r.tid)
      expect(m, `reply to tid ${r.tid}`).toBeDefined()
      expect(same(m!.from, r.via === "R" ? addrR : addrS)).toBe(true)
      const hs = refDecode(refMessages.handshake, m!.value)
      expect(hs.mode).toBe(REPLY)
      expect(hs.peerAddress === null).toBe(r.via === "S")
      const payload = r.nw.recv(hs.noise)
      expect(payload.error).toBe(r.error)
    }
    await alive("bad message 1")
  })

  let holepunchSecret: Buffer | null = null

  it("a valid message 1 replayed 80 times: one handshake, 79 duplicates, the same reply bytes, no connection", async () => {
    const { nw, msg1 } = validMsg1()
    const value = hsValue({ mode: FROM_CLIENT, noise: msg1 })
    const before = snapshot()
    const at0 = attacker.inbox.length
    // the first copy through R (so the server waits for a UDX packet that never comes), then the rest
    const first = hsRequest(addrR, value)
    await attacker.send(first.to, first.data)
    expect(await attacker.until(() => attacker.messages(at0).length >= 1, 5_000)).toBe(true)
    const sent: Array<Sent> = [first]
    const more: Array<Sent> = []
    for (let i = 0; i < 39; i++) more.push(hsRequest(addrR, value))
    for (let i = 0; i < 40; i++) more.push(hsRequest(i % 2 === 0 ? addrS : addrSc, value))
    await attacker.blast(more)
    sent.push(...more)
    const expected = {
      "R.handshakesRelayed": 80,
      "S.serverHandshakes": 80,
      "srv.handshakes": 1,
      "srv.duplicates": 79,
      firewallCalls: 1,
      attacker: 80,
      streamsCreated: 1 // the server's stream for this handshake (closed by its 10 s timeout)
    }
    const d = await settle(before, expected)
    expect(d).toEqual(expected)
    const got = attacker.messages(at0)
    expect(new Set(got.map((m) => m.tid))).toEqual(new Set(sent.map((s) => s.tid)))
    const values = got.map((m) => refDecode(refMessages.handshake, m.value))
    expect(values.every((v) => v !== null && v.mode === REPLY)).toBe(true)
    const noises = new Set(values.map((v) => Buffer.from(v.noise).toString("hex")))
    expect(noises.size).toBe(1) // one message 2 for every copy
    for (const m of got) {
      const v = refDecode(refMessages.handshake, m.value)
      if (same(m.from, addrR)) expect(v.peerAddress).not.toBeNull() // relayed: the server as R saw it
      else expect(v.peerAddress).toBeNull() // direct
    }
    const payload = nw.recv(values[0].noise)
    expect(payload.error).toBe(0)
    expect(payload.udx).not.toBeNull()
    expect(payload.firewall).toBe(1) // OPEN
    expect(payload.holepunch).toBeNull()
    holepunchSecret = nw.final().holepunchSecret
    await alive("replayed message 1")
  })

  it("a valid message 1 sent directly and replayed 30 times: exactly one connection", async () => {
    const direct = await Raw.open()
    raws.push(direct)
    const { nw, msg1 } = validMsg1()
    const value = hsValue({ mode: FROM_CLIENT, noise: msg1 })
    const before = snapshot()
    const sent: Array<Sent> = []
    for (let i = 0; i < 30; i++) sent.push(hsRequest(addrS, value))
    await direct.blast(sent)
    const expected = {
      "S.serverHandshakes": 30,
      "srv.handshakes": 1,
      "srv.duplicates": 29,
      "srv.connections": 1,
      firewallCalls: 1,
      connections: 1,
      streamsCreated: 1
    }
    await direct.until(() => direct.messages().filter((m) => m.type === "response").length >= 30, 8_000)
    const d = await settle(before, expected)
    expect(d).toEqual(expected)
    legit++
    const got = direct.messages().filter((m) => m.type === "response")
    expect(got.length).toBe(30)
    expect(new Set(got.map((m) => Buffer.from(refDecode(refMessages.handshake, m.value).noise).toString("hex"))).size).toBe(1)
    expect(nw.recv(refDecode(refMessages.handshake, got[0]!.value).noise).error).toBe(0)
    // the server connected to the attacker's address (it came to us directly); drop that connection
    const s = serverSockets[serverSockets.length - 1]
    expect(s.remotePort).toBe(direct.port)
    s.destroy()
    await alive("direct replay")
  })

  it("PEER_HOLEPUNCH: undecodable values, unknown ids, garbage and well-sealed boxes, every mode", async () => {
    expect(holepunchSecret).not.toBeNull()
    const sealed = (): Buffer =>
      new SecurePayload(holepunchSecret).encrypt({
        error: 0,
        firewall: 1,
        round: 0,
        connected: false,
        punching: true,
        addresses: [sink.address],
        remoteAddress: sink.address,
        token: rnd(32),
        remoteToken: null
      })
    const e = new Tally()
    const sent: Array<Sent> = []
    const undecodable: Array<Buffer | undefined> = [
      undefined,
      Buffer.alloc(0),
      Buffer.from([0x00]),
      Buffer.from([0x00, 0x00]),
      Buffer.from([0x00, 0x00, 0x00]), // no payload length
      Buffer.from([0x00, 0x00, 0x00, 0x30, 0x01]), // payload cut off
      Buffer.from([0x01, 0x00, 0x00, 0x01, 0xaa, 127, 0]), // peerAddress cut off
      Buffer.from([0x00, 0x00, 0xff, 0x01]) // 64-bit id cut off
    ]
    for (const [to, at] of [
      [addrR, "R"],
      [addrS, "S"],
      [addrSc, "S"]
    ] as const) {
      for (const v of undecodable) {
        sent.push(hpRequest(to, v))
        e.add(`${at}.dropped`)
      }
      sent.push(hpRequest(to, hpValue({ mode: FROM_CLIENT, id: 0, payload: rnd(60) }), { target: null }))
      e.add(`${at}.dropped`)
    }
    const payloads = [() => Buffer.alloc(0), () => rnd(40), () => rnd(41), sealed, () => rnd(1500)]
    for (const [to, at] of [
      [addrR, "R"],
      [addrS, "S"]
    ] as const) {
      for (const mode of MODES) {
        for (const peer of [false, true]) {
          for (const payload of payloads) {
            for (const id of [0, 3, 0xffffffff]) {
              sent.push(hpRequest(to, hpValue({ mode, id, payload: payload(), peerAddress: peer ? sink.address : null })))
              hpModel(at, mode, peer, e)
            }
          }
        }
      }
    }
    const before = snapshot()
    const sink0 = sink.inbox.length
    await attacker.blast(sent)
    const d = await settle(before, e.m)
    expect(d).toEqual(e.m)
    const tids = new Set(sent.map((s) => s.tid))
    for (const m of sink.messages(sink0)) {
      expect(tids.has(m.tid)).toBe(true)
      const hp = refDecode(refMessages.holepunch, m.value)
      expect(hp).not.toBeNull()
      expect(hp.mode).toBe(m.type === "request" ? FROM_RELAY : REPLY)
      expect(hp.peerAddress).toEqual(attacker.address)
    }
    expect(sink.messages(sink0).length).toBe(e.m.sink ?? 0)
    await alive("holepunch")
  })

  it("wrong and foreign tokens: INVALID_TOKEN, the router never sees them; a node's own token is accepted", async () => {
    const garbage = () => hsValue({ mode: FROM_CLIENT, noise: rnd(150) })
    // fresh tokens from R and S (an INVALID_TOKEN answer carries one)
    const tokenOf = async (to: Addr): Promise<Buffer> => {
      const at0 = attacker.inbox.length
      const s = hsRequest(to, garbage(), { token: rnd(32) })
      await attacker.send(s.to, s.data)
      await attacker.until(() => attacker.messages(at0).some((m) => m.tid === s.tid), 5_000)
      const m = attacker.messages(at0).find((x) => x.tid === s.tid)!
      expect(m.error).toBe(INVALID_TOKEN)
      expect(m.token).not.toBeNull()
      return Buffer.from(m.token!)
    }
    const tokenR = await tokenOf(addrR)
    const tokenS = await tokenOf(addrS)
    expect(tokenR.equals(tokenS)).toBe(false)

    const e = new Tally()
    const invalid: Array<Sent> = []
    for (const to of [addrR, addrS, addrSc]) {
      for (let i = 0; i < 10; i++) invalid.push(hsRequest(to, garbage(), { token: rnd(32) }))
      for (let i = 0; i < 10; i++) invalid.push(hpRequest(to, hpValue({ mode: FROM_CLIENT, id: 0, payload: rnd(60) }), { token: rnd(32) }))
    }
    for (let i = 0; i < 5; i++) invalid.push(hsRequest(addrS, garbage(), { token: tokenR })) // R's token at S
    for (let i = 0; i < 5; i++) invalid.push(hsRequest(addrR, garbage(), { token: tokenS })) // S's token at R
    for (let i = 0; i < 5; i++) invalid.push(hpRequest(addrR, hpValue({ mode: FROM_SERVER, id: 0, payload: rnd(60), peerAddress: sink.address }), { token: tokenS }))
    e.add("attacker", invalid.length)
    const valid: Array<Sent> = []
    for (let i = 0; i < 3; i++) {
      valid.push(hsRequest(addrS, garbage(), { token: tokenS }))
      hsModel("S", FROM_CLIENT, false, false, true, e)
      valid.push(hsRequest(addrR, garbage(), { token: tokenR }))
      hsModel("R", FROM_CLIENT, false, false, true, e)
    }
    const before = snapshot()
    const at0 = attacker.inbox.length
    await attacker.blast([...invalid, ...valid])
    const d = await settle(before, e.m)
    expect(d).toEqual(e.m)
    const got = attacker.messages(at0)
    const invalidTids = new Set(invalid.map((s) => s.tid))
    expect(got.length).toBe(invalid.length)
    for (const m of got) {
      expect(m.type).toBe("response")
      expect(invalidTids.has(m.tid)).toBe(true)
      expect(m.error).toBe(INVALID_TOKEN)
      expect(m.token).not.toBeNull()
      expect(m.value).toBeNull()
    }
    await alive("tokens")
  })

  it("responses with spoofed tids: unmatched and counted, the router never sees them, a client connecting meanwhile is unharmed", async () => {
    const io = (g: Gateway) => handleOf(g).core.io.stats
    const spoofValues = (): Buffer => {
      const k = Math.floor(Math.random() * 4)
      if (k === 0) return hsValue({ mode: REPLY, noise: rnd(80), peerAddress: sink.address })
      if (k === 1) return hpValue({ mode: REPLY, id: 0, payload: rnd(60), peerAddress: sink.address })
      if (k === 2) return rnd(1 + Math.floor(Math.random() * 200))
      return hsValue({ mode: FROM_SERVER, noise: rnd(96) })
    }
    const spoofs = (to: Addr, n: number) =>
      Array.from({ length: n }, () => ({
        to,
        data: encRes({ tid: Math.floor(Math.random() * 0x10000), to, id: rnd(32), token: rnd(32), closerNodes: [sink.address], value: spoofValues() })
      }))
    // 1. at R and S, nothing else going on
    const unmatched0 = { R: io(R).unmatched, S: io(S).unmatched }
    const before = snapshot()
    await attacker.blast([...spoofs(addrR, 200), ...spoofs(addrS, 200), ...spoofs(addrSc, 200)])
    const d = await settle(before, {})
    expect(d).toEqual({})
    // (a spoofed tid may hit one of the few requests in flight, e.g. the server's relay pings)
    expect(io(R).unmatched - unmatched0.R).toBeGreaterThanOrEqual(195)
    expect(io(S).unmatched - unmatched0.S).toBeGreaterThanOrEqual(390)
    expect(attacker.messages().length).toBe(before.attacker)

    // 2. at C's sockets while it connects (its handshake requests are in flight)
    const unmatchedC = io(C).unmatched
    const sock: Any = C.connect(serverKey)
    const open = withTimeout(opened(sock), 20_000, "connect under spoofed responses")
    await attacker.blast([...spoofs(serverAddr(C), 150), ...spoofs(clientAddr(C), 150)])
    await open
    await closeHonest(sock, "connect under spoofed responses")
    expect(io(C).unmatched - unmatchedC).toBeGreaterThanOrEqual(290)
    await alive("spoofed tids")
  })

  it("a firewalled server with a live holepunch slot: garbage boxes, unknown ids and junk at its puncher socket are ignored", async () => {
    const F = gateway({ bootstrap: [`${HOST}:${serverAddr(persistent[0]!).port}`], ephemeral: true, firewalled: true, quickFirewall: false })
    await withTimeout(F.ready(), 20_000, "firewalled node ready")
    expect(F.firewalled).toBe(true)
    let connectionsF = 0
    const serverF = F.createServer((s: Any) => {
      connectionsF++
      s.on("error", () => {})
    })
    await withTimeout(serverF.listen(), 20_000, "firewalled server listening")
    const keyF = serverF.publicKey!
    const TF = Gateway.hash(keyF)
    const holderF = persistent.find((g) => serverF.nodes.some((r) => same(r, serverAddr(g))))
    expect(holderF).toBeDefined()
    const RF = holderF!
    const addrRF = serverAddr(RF)
    const fHost = await F.connections()
    const udp0 = udpSockets()

    // a valid handshake through RF: the server offers a holepunch slot (and opens its puncher socket)
    const nw = new NoiseWrap(HyperDHT.keyPair(), Buffer.from(keyF))
    const msg1: Buffer = nw.send(refPayload())
    const first = hsRequest(addrRF, hsValue({ mode: FROM_CLIENT, noise: msg1 }), { target: TF })
    const at0 = attacker.inbox.length
    await attacker.send(first.to, first.data)
    expect(await attacker.until(() => attacker.messages(at0).some((m) => m.tid === first.tid), 5_000)).toBe(true)
    const replyF = refDecode(refMessages.handshake, attacker.messages(at0).find((m) => m.tid === first.tid)!.value)
    expect(replyF.mode).toBe(REPLY)
    const payloadF = nw.recv(replyF.noise)
    expect(payloadF.error).toBe(0)
    expect(payloadF.holepunch).not.toBeNull()
    const slot: number = payloadF.holepunch.id
    const secret: Buffer = nw.final().holepunchSecret
    const puncher: Addr = replyF.peerAddress // the server's puncher socket, as RF saw it
    expect(puncher).not.toBeNull()
    expect(udpSockets()).toBeGreaterThan(udp0)
    const udp1 = udpSockets()

    const sodium: Any = requireRef("sodium-universal")
    const box = (key: Uint8Array, plain: Uint8Array): Buffer => {
      const nonce = rnd(24)
      const cipher = Buffer.alloc(plain.length + 16)
      sodium.crypto_secretbox_easy(cipher, Buffer.from(plain), nonce, Buffer.from(key))
      return Buffer.concat([nonce, cipher])
    }
    const goodPayload = () =>
      new SecurePayload(secret).encrypt({
        error: 0, firewall: 1, round: 0, connected: false, punching: false,
        addresses: [sink.address], remoteAddress: null, token: rnd(32), remoteToken: null
      })
    // at the live slot: boxes that do not open, or open to something that does not decode
    const atSlot: Array<Buffer> = [
      Buffer.alloc(0), rnd(1), rnd(24), rnd(40), rnd(41), rnd(100), rnd(1500),
      box(rnd(32), Buffer.from([0x00, 0x00, 0x00, 0x00])), // another key
      box(secret, Buffer.alloc(0)), // empty plaintext
      box(secret, Buffer.from([0x04, 0x00, 0x00])), // addresses flag, plaintext cut off
      box(secret, Buffer.from([0x10, 0x00, 0x00, 0x00, 0x01])), // token flag, token cut off
      box(secret, Buffer.from([0xfe, 0x01])) // 32-bit flags cut off
    ]
    const sent: Array<Sent> = []
    for (const payload of atSlot) sent.push(hpRequest(addrRF, hpValue({ mode: FROM_CLIENT, id: slot, payload }), { target: TF }))
    // a well-sealed payload at ids with no slot
    for (const id of [slot + 1, slot + 7, 1000, 0xffffffff]) sent.push(hpRequest(addrRF, hpValue({ mode: FROM_CLIENT, id, payload: goodPayload() }), { target: TF }))
    const n = sent.length
    const snapF = () => ({
      relayed: RF.stats.router!.holepunchesRelayed,
      serverHolepunches: F.stats.router!.serverHolepunches,
      ignored: F.stats.server.holepunchesIgnored,
      fDropped: F.stats.router!.dropped,
      attacker: attacker.messages().length,
      udp: udpSockets(),
      connections: connectionsF,
      defects: fHost.mux.stats().defects
    })
    const before = snapF()
    await attacker.blast(sent)
    await attacker.until(() => snapF().ignored - before.ignored >= n, 8_000)
    await sleep(300)
    const after = snapF()
    expect({
      relayed: after.relayed - before.relayed,
      serverHolepunches: after.serverHolepunches - before.serverHolepunches,
      ignored: after.ignored - before.ignored,
      fDropped: after.fDropped - before.fDropped,
      attacker: after.attacker - before.attacker,
      udp: after.udp - before.udp,
      connections: after.connections - before.connections,
      defects: after.defects
    }).toEqual({ relayed: n, serverHolepunches: n, ignored: n, fDropped: 0, attacker: 0, udp: 0, connections: 0, defects: 0 })

    // junk straight at the puncher socket: random datagrams, UDX-looking packets for unknown
    // streams, dht-rpc requests, responses with spoofed tids, and a few one-byte probes
    const junk: Array<{ to: Addr; data: Buffer }> = []
    for (let i = 0; i < 100; i++) {
      const d = rnd(2 + Math.floor(Math.random() * 300))
      if (d[0] === 0xff || d[0] === 0x13) d[0] = 0x42
      junk.push({ to: puncher, data: d })
    }
    for (let i = 0; i < 50; i++) junk.push({ to: puncher, data: Buffer.concat([Buffer.from([0xff, 0x01]), rnd(18 + Math.floor(Math.random() * 100))]) })
    for (let i = 0; i < 20; i++) junk.push({ to: puncher, data: encReq({ tid: tid(), to: puncher, internal: true, command: i % 5 }) })
    for (let i = 0; i < 100; i++) {
      junk.push({ to: puncher, data: encRes({ tid: Math.floor(Math.random() * 0x10000), to: puncher, closerNodes: [sink.address], value: rnd(20) }) })
    }
    const probes = 5
    for (let i = 0; i < probes; i++) junk.push({ to: puncher, data: Buffer.from([0]) })
    const fromPuncher = () => attacker.inbox.filter((r) => same(r.from, puncher)).length
    const p0 = fromPuncher()
    await attacker.blast(junk)
    await sleep(500)
    // at most a probe back per probe (connect.md §6.1); nothing else answers junk
    expect(fromPuncher() - p0).toBeLessThanOrEqual(probes)
    expect(attacker.inbox.slice(-junk.length).every((r) => !same(r.from, puncher) || r.msg.length <= 1)).toBe(true)
    expect(connectionsF).toBe(0)
    expect(udpSockets()).toBe(udp1)
    expect(fHost.mux.stats().defects).toBe(0)

    // the firewalled node still answers; closing its server releases the puncher socket
    const pong = await withTimeout(C.ping(serverAddr(F)), 5_000, "ping F")
    expect(pong.from.port).toBe(serverAddr(F).port)
    await withTimeout(serverF.close(), 10_000, "close the firewalled server")
    for (let i = 0; i < 100 && udpSockets() > udp0; i++) await sleep(20)
    expect(udpSockets()).toBe(udp0)
    await F.destroy()
    expect(gatewayErrors).toEqual([])
    await alive("firewalled server")
  })

  it("a hostile relay answering the client's PEER_HANDSHAKE with bad replies: the client connects through the honest relays", async () => {
    const garbageNoise = rnd(120)
    const kinds: Array<{ name: string; answer: (req: ReturnType<typeof decodeMessage> & object, from: Addr) => void }> = []
    const reply = (via: Raw, tidv: number, to: Addr, m: { value?: Buffer; error?: number }) => void via.send(to, encRes({ tid: tidv, to, ...m }))
    kinds.push({ name: "no value", answer: (q, to) => reply(attacker, q.tid, to, {}) })
    kinds.push({ name: "undecodable value", answer: (q, to) => reply(attacker, q.tid, to, { value: Buffer.from([0x00]) }) })
    kinds.push({ name: "mode FROM_SERVER", answer: (q, to) => reply(attacker, q.tid, to, { value: hsValue({ mode: FROM_SERVER, noise: garbageNoise }) }) })
    kinds.push({ name: "empty noise", answer: (q, to) => reply(attacker, q.tid, to, { value: hsValue({ mode: REPLY, noise: Buffer.alloc(0) }) }) })
    kinds.push({ name: "garbage noise", answer: (q, to) => reply(attacker, q.tid, to, { value: hsValue({ mode: REPLY, noise: garbageNoise }) }) })
    kinds.push({
      name: "relayed garbage noise",
      answer: (q, to) => reply(attacker, q.tid, to, { value: hsValue({ mode: REPLY, noise: rnd(200), peerAddress: sink.address }) })
    })
    kinds.push({
      name: "a message 2 for another client",
      answer: (q, to) => {
        // answer with what the real server answers another client (its reply to our own message 1 is fetched from R)
        const { msg1 } = validMsg1()
        const s = hsRequest(addrR, hsValue({ mode: FROM_CLIENT, noise: msg1 }))
        const at0 = accomplice.inbox.length
        void accomplice.send(s.to, s.data)
        void accomplice.until(() => accomplice.messages(at0).some((m) => m.tid === s.tid), 3_000).then(() => {
          const m = accomplice.messages(at0).find((x) => x.tid === s.tid)
          const v = m ? refDecode(refMessages.handshake, m.value) : null
          reply(attacker, q.tid, to, { value: hsValue({ mode: REPLY, noise: v ? Buffer.from(v.noise) : rnd(100) }) })
        })
      }
    })
    kinds.push({
      name: "a REPLY from another address",
      answer: (q, to) => reply(accomplice, q.tid, to, { value: hsValue({ mode: REPLY, noise: garbageNoise }) })
    })
    kinds.push({ name: "an error response", answer: (q, to) => reply(attacker, q.tid, to, { error: 1, value: hsValue({ mode: REPLY, noise: garbageNoise }) }) })

    const succeeded0 = C.stats.connects.succeeded
    for (const kind of kinds) {
      let asked = 0
      attacker.onmessage = (r) => {
        const q = decodeMessage(r.msg)
        if (q === null || q.type !== "request" || q.internal) return
        if (q.command === PEER_HANDSHAKE) {
          const hs = refDecode(refMessages.handshake, q.value)
          expect(hs?.mode).toBe(FROM_CLIENT)
          expect(q.target?.equals(T)).toBe(true)
          asked++
          kind.answer(q, r.from)
        } else {
          // FIND_PEER and the like: an empty answer
          void attacker.send(r.from, encRes({ tid: q.tid, to: r.from }))
        }
      }
      const sock: Any = C.connect(serverKey, { relayAddresses: [attacker.address] })
      await withTimeout(opened(sock), 20_000, `connect past a hostile relay (${kind.name})`)
      expect(asked, kind.name).toBeGreaterThanOrEqual(1)
      await closeHonest(sock, kind.name)
    }
    attacker.onmessage = null
    expect(C.stats.connects.succeeded - succeeded0).toBe(kinds.length)
    expect(connections).toBe(honest + legit)
    await alive("hostile relay")
  })

  // Fails today (src/actors/session/server.ts, `if (this.handshakes.size >= MAX_PENDING_HANDSHAKES)
  // return respond(null)` in onHandshake): bad message 1 stay in the handshake table for the 10 s
  // clear wait and count against the cap, so ~1,024 garbage datagrams per 10 s lock every honest
  // client out, and the ones refused past the cap are counted nowhere. hyperdht has no such cap.
  it(`a flood of bad message 1 beyond MAX_PENDING_HANDSHAKES (${MAX_PENDING_HANDSHAKES}): every one counted, honest clients still served`, async () => {
    // a second server on S, with its own key: its handshake table starts empty (no entries of the
    // earlier tests expire during this one), so the outcome does not depend on timing
    let connectionsB = 0
    const serverB = S.createServer((s: Any) => {
      connectionsB++
      s.on("error", () => {})
      s.on("data", (d: Buffer) => s.write(d))
    })
    await withTimeout(serverB.listen(Gateway.keyPair()), 20_000, "second server listening")
    const keyB = serverB.publicKey!
    const TB = Gateway.hash(keyB)

    // 1. one burst of MAX_PENDING_HANDSHAKES + 100 distinct garbage message 1, straight to S
    const n = MAX_PENDING_HANDSHAKES + 100
    const garbage = () => hsRequest(addrS, hsValue({ mode: FROM_CLIENT, noise: rnd(100) }), { target: TB })
    const before = snapshot()
    const t0 = Date.now()
    await attacker.blast(Array.from({ length: n }, garbage))
    const d = await settle(before, { "S.serverHandshakes": n })
    expect(d["S.serverHandshakes"]).toBe(n) // the router handed every one to the server
    expect(d.connections ?? 0).toBe(0)
    expect(d.attacker ?? 0).toBe(0)
    const counted = { handshakes: d["srv.handshakes"] ?? 0, badHandshakes: d["srv.badHandshakes"] ?? 0 }
    expect.soft(counted.badHandshakes, `each of the ${n} bad message 1 is counted (stats moved by ${JSON.stringify(d)})`).toBe(n)

    // 2. the flood goes on at ~200 bad message 1 per second (bounded: 15 s at most) while an honest
    // client connects: bad input must not lock honest clients out
    let flooding = true
    let flooded = 0
    const flood = (async () => {
      const stop = Date.now() + 15_000
      while (flooding && Date.now() < stop) {
        await attacker.blast(Array.from({ length: 20 }, garbage))
        flooded += 20
        await sleep(100)
      }
    })()
    const sock: Any = C.connect(keyB)
    sock.on("error", () => {})
    const outcome = await withTimeout(
      new Promise<string>((resolve) => {
        sock.once("open", () => resolve("open"))
        sock.once("error", (err: Any) => resolve(String(err?.code ?? err)))
      }),
      30_000,
      "honest connect during the flood"
    ).finally(() => {
      flooding = false
    })
    const took = Date.now() - t0
    await flood
    console.log(
      `flood: ${n} bad message 1 in one burst (server counted ${counted.handshakes} handshakes, ${counted.badHandshakes} bad), ` +
        `then ${flooded} more; honest connect after ${took} ms: ${outcome}`
    )
    sock.destroy()
    await withTimeout(serverB.close(), 10_000, "close the second server")
    expect(outcome, "an honest client connects while bad message 1 keep arriving").toBe("open")
    expect(connectionsB).toBe(1)
    await alive("handshake flood")
  }, 90_000)
})
