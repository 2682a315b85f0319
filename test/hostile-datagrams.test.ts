/**
 * Hostile datagrams over real UDP (127.0.0.1) against a running Omega node:
 * garbage, oversized, wrong type/version bytes, truncated requests,
 * unknown-tid and forged-id responses, bad tokens, forged request ids and a
 * FIND_NODE flood, sent from a raw node:dgram socket to the node's server and
 * client sockets. The node must keep working, keep exactly its honest routing
 * table, count what it dropped, never let an unknown tid complete a request,
 * and nothing may leak into a reference (hyperdht) node in the same network.
 *
 * Attack datagrams are encoded by hand here (not with the code under test).
 */
import HyperDHT from "hyperdht"
import * as dgram from "node:dgram"
import { afterEach, describe, expect, it } from "vitest"
import type { NodeHandle } from "../src/actors/routing/driver.js"
import { Gateway } from "../src/index.js"
import { HOST, randomPort, sleep, tracker, withTimeout, onFreePort } from "./support/live.js"


// ---- lifecycle helpers ----------------------------------------------------------------

const { track, destroyAll } = tracker()
afterEach(destroyAll)


/* eslint-disable @typescript-eslint/no-explicit-any */
type RefNode = any

/** The facade keeps its Effect handle private; the test reads socket ports and I/O counters through it. */
const handleOf = (g: Gateway): NodeHandle => {
  const h = (g as unknown as { handle: NodeHandle | null }).handle
  if (h === null) throw new Error("node not open")
  return h
}

const omegaBootstrapper = (): Promise<{ node: Gateway; port: number }> =>
  onFreePort("omega bootstrapper", (port) => Gateway.bootstrapper(port, HOST, { host: HOST }), track)

// ---- hand-rolled dht-rpc encoding (spec §1, §3) ------------------------------------------

const rnd = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(Math.random() * 256)
  return b
}
const uint = (n: number): Array<number> => (n < 0xfd ? [n] : [0xfd, n & 0xff, (n >>> 8) & 0xff])
const ipv4 = (host: string, port: number): Array<number> => [...host.split(".").map(Number), port & 0xff, port >>> 8]
const hash = (host: string, port: number): Buffer => Gateway.hash(Uint8Array.from(ipv4(host, port)))

interface Req {
  tid: number
  to: { host: string; port: number }
  id?: Uint8Array
  token?: Uint8Array
  internal: boolean
  command: number
  target?: Uint8Array
  value?: Uint8Array
}
const encReq = (m: Req): Buffer => {
  const flags = (m.id ? 1 : 0) | (m.token ? 2 : 0) | (m.internal ? 4 : 0) | (m.target ? 8 : 0) | (m.value ? 16 : 0)
  return Buffer.from([
    0x03,
    flags,
    m.tid & 0xff,
    m.tid >>> 8,
    ...ipv4(m.to.host, m.to.port),
    ...(m.id ?? []),
    ...(m.token ?? []),
    ...uint(m.command),
    ...(m.target ?? []),
    ...(m.value ? [...uint(m.value.length), ...m.value] : [])
  ])
}

interface Res {
  tid: number
  to: { host: string; port: number }
  id?: Uint8Array
  token?: Uint8Array
  closerNodes?: Array<{ host: string; port: number }>
  error?: number
  value?: Uint8Array
}
const encRes = (m: Res): Buffer => {
  const nodes = m.closerNodes ?? []
  const flags = (m.id ? 1 : 0) | (m.token ? 2 : 0) | (nodes.length > 0 ? 4 : 0) | (m.error ? 8 : 0) | (m.value ? 16 : 0)
  return Buffer.from([
    0x13,
    flags,
    m.tid & 0xff,
    m.tid >>> 8,
    ...ipv4(m.to.host, m.to.port),
    ...(m.id ?? []),
    ...(m.token ?? []),
    ...(nodes.length > 0 ? [...uint(nodes.length), ...nodes.flatMap((n) => ipv4(n.host, n.port))] : []),
    ...(m.error ? uint(m.error) : []),
    ...(m.value ? [...uint(m.value.length), ...m.value] : [])
  ])
}

interface Decoded {
  type: number
  tid: number
  to: { host: string; port: number }
  id: Buffer | null
  token: Buffer | null
  closerNodes: Array<{ host: string; port: number }>
  error: number
}
/** Minimal decoder for what the node sends back (responses, and its requests' header). */
const decode = (b: Buffer): Decoded => {
  let p = 0
  const readUint = (): number => {
    const x = b[p++]!
    if (x < 0xfd) return x
    if (x === 0xfd) {
      const v = b.readUInt16LE(p)
      p += 2
      return v
    }
    if (x === 0xfe) {
      const v = b.readUInt32LE(p)
      p += 4
      return v
    }
    const v = b.readUInt32LE(p) + b.readUInt32LE(p + 4) * 2 ** 32
    p += 8
    return v
  }
  const readAddr = () => {
    const host = `${b[p]}.${b[p + 1]}.${b[p + 2]}.${b[p + 3]}`
    const port = b.readUInt16LE(p + 4)
    p += 6
    return { host, port }
  }
  const type = b[p++]!
  const flags = readUint()
  const tid = b.readUInt16LE(p)
  p += 2
  const to = readAddr()
  const out: Decoded = { type, tid, to, id: null, token: null, closerNodes: [], error: 0 }
  if (type !== 0x13) return out
  if (flags & 1) (out.id = b.subarray(p, p + 32)), (p += 32)
  if (flags & 2) (out.token = b.subarray(p, p + 32)), (p += 32)
  if (flags & 4) {
    const n = readUint()
    for (let i = 0; i < n; i++) out.closerNodes.push(readAddr())
  }
  if (flags & 8) out.error = readUint()
  return out
}

// ---- a raw attacker socket ----------------------------------------------------------------

class Raw {
  readonly inbox: Array<{ msg: Buffer; from: { host: string; port: number } }> = []
  private waiters: Array<() => void> = []
  private constructor(readonly socket: dgram.Socket, readonly port: number) {
    socket.on("message", (msg, rinfo) => {
      this.inbox.push({ msg, from: { host: rinfo.address, port: rinfo.port } })
      const w = this.waiters
      this.waiters = []
      for (const f of w) f()
    })
  }
  static async open(): Promise<Raw> {
    const socket = dgram.createSocket("udp4")
    socket.on("error", () => {})
    await new Promise<void>((r) => socket.bind(0, HOST, () => r()))
    return track(new Raw(socket, socket.address().port))
  }
  get address() {
    return { host: HOST, port: this.port }
  }
  send(to: { host: string; port: number }, data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.send(data, to.port, to.host, (err) => (err ? reject(err) : resolve())))
  }
  /**
   * Send paced: bursts of at most 16 datagrams / 64 KB, then yield to the event loop (the node
   * under test runs in this process), so the kernel's receive buffers never overflow.
   */
  async blast(to: { host: string; port: number }, datagrams: ReadonlyArray<Buffer>): Promise<void> {
    let i = 0
    while (i < datagrams.length) {
      const burst: Array<Buffer> = []
      let bytes = 0
      while (i < datagrams.length && burst.length < 16 && (burst.length === 0 || bytes + datagrams[i]!.length <= 64_000)) {
        bytes += datagrams[i]!.length
        burst.push(datagrams[i++]!)
      }
      await Promise.all(burst.map((d) => this.send(to, d)))
      await sleep(bytes > 32_000 ? 3 : 1)
    }
  }
  /** Wait for the first datagram (after `from` index) matching `pred`. */
  async next(pred: (m: Buffer) => boolean, ms: number, fromIndex = 0): Promise<Buffer> {
    const deadline = Date.now() + ms
    let i = fromIndex
    while (true) {
      for (; i < this.inbox.length; i++) if (pred(this.inbox[i]!.msg)) return this.inbox[i]!.msg
      const left = deadline - Date.now()
      if (left <= 0) throw new Error("no matching datagram")
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), sleep(left)])
    }
  }
  destroy(): Promise<void> {
    return new Promise((r) => {
      try {
        this.socket.close(() => r())
      } catch {
        r()
      }
    })
  }
}

const isRequest = (m: Buffer) => m.length >= 10 && m[0] === 0x03
const isResponse = (m: Buffer) => m.length >= 10 && m[0] === 0x13

// ---- the test --------------------------------------------------------------------------------

describe("hostile datagrams against an Omega node over UDP", () => {
  it("garbage, oversized, bad type bytes, truncations, spoofed tids, forged ids, bad tokens and a FIND_NODE flood change nothing", async () => {
    const t0 = Date.now()
    // ---- an honest network: Omega bootstrapper + 3 Omega nodes (persistent) + a reference node
    const boot = await omegaBootstrapper()
    const omegas = [0, 1, 2].map(() => {
      const g = track(new Gateway({ bootstrap: [`${HOST}:${boot.port}`], host: HOST, ephemeral: false }))
      g.on("error", () => {})
      return g
    })
    await withTimeout(Promise.all(omegas.map((g) => g.ready())), 20_000, "omega nodes ready")
    const ref: RefNode = track(new HyperDHT({ bootstrap: [`${HOST}:${boot.port}`], host: HOST, port: randomPort(), ephemeral: false, firewalled: false }))
    await withTimeout(ref.ready(), 20_000, "reference ready")
    const refPort: number = ref.io.serverSocket.address().port
    const target = omegas[0]!
    const h = handleOf(target)
    const server = { host: HOST, port: h.sockets().server.local.port }
    const client = { host: HOST, port: h.sockets().client.local.port }
    expect(target.ephemeral).toBe(false)
    expect(target.firewalled).toBe(false)
    const omegaPorts = omegas.map((g) => handleOf(g).sockets().server.local.port)
    const honest = [boot.port, ...omegaPorts, refPort].sort((a, b) => a - b)
    const honestOthers = honest.filter((p) => p !== server.port)
    // let the target meet everyone, then record its state
    const find = async (g: Gateway, t: Uint8Array) => {
      const q = g.findNode(t)
      await withTimeout(q.finished(), 15_000, "findNode")
      return q.closestReplies
    }
    await find(target, rnd(32))
    const before = await target.status()
    const tableBefore = target.toArray().map((n) => `${n.host}:${n.port}`).sort()
    expect(tableBefore).toEqual(honestOthers.map((p) => `${HOST}:${p}`).sort())
    expect(before.tableSize).toBe(4)
    const statsBefore = { ...h.core.io.stats, requests: { ...h.core.io.stats.requests } }
    const recvBefore = { server: h.sockets().server.stats().received, client: h.sockets().client.stats().received }

    const attacker = await Raw.open()
    const accomplice = await Raw.open() // a second raw socket, for replies from another address
    const fake = (i: number) => ({ host: `10.66.${(i >> 8) & 0xff}.${i & 0xff}`, port: 1000 + i })
    const forgedIds = [hash("10.66.0.1", 1001), hash(HOST, 1), hash(HOST, refPort)] // the last one is an honest node's id
    // Datagrams of 0 or 1 byte are not DHT messages at all (1-byte ones are holepunch probes, §2):
    // they are ignored before the DHT layer and, by design, not counted as dropped. Everything
    // else that is not a well-formed message must be counted.
    let malformedLower = 0 // >= 2 bytes with a bad first byte (§2 filter), or a cut-off message (decoder)
    let malformedUpper = 0 // >= 2 bytes and not well-formed by construction
    let short = 0
    let sentToTarget = 0
    const blastTarget = async (to: { host: string; port: number }, ds: Array<Buffer>, definitelyMalformed: (d: Buffer) => boolean) => {
      for (const d of ds) {
        if (d.length < 2) short++
        else {
          malformedUpper++
          if (definitelyMalformed(d)) malformedLower++
        }
      }
      sentToTarget += ds.length
      await attacker.blast(to, ds)
    }
    const badFirstByte = (d: Buffer) => d[0] !== 0x03 && d[0] !== 0x13

    // ---- 1. 2,000 random garbage datagrams, sizes 0..3000 (1,500 to the server socket, 500 to the client)
    const garbage = Array.from({ length: 2000 }, () => rnd(Math.floor(Math.random() * 3001)))
    // one "garbage" request that is well-formed with a 3-byte flags field (0xfd + uint16): the
    // tid then sits at offset 4, and the node answers it like any request
    garbage[0] = Buffer.from([0x03, 0xfd, 0x04, 0x00, 0x34, 0x12, ...ipv4(server.host, server.port), 0x02])
    await blastTarget(server, garbage.slice(0, 1500), badFirstByte)
    await blastTarget(client, garbage.slice(1500), badFirstByte)

    // ---- 2. oversized garbage (2,049 bytes .. 60 KB), first byte never a dht-rpc type
    const oversized = Array.from({ length: 40 }, (_, i) => {
      const d = rnd(2049 + Math.floor((i / 39) * (60_000 - 2049)))
      d[0] = [0x04, 0x23, 0xff, 0x00][i % 4]!
      return d
    })
    await blastTarget(server, oversized.slice(0, 30), badFirstByte)
    await blastTarget(client, oversized.slice(30), badFirstByte)

    // ---- 3. wrong type/version bytes on otherwise valid messages
    const validPing = encReq({ tid: 1, to: server, internal: true, command: 0 })
    const validFind = encReq({ tid: 2, to: server, internal: true, command: 2, target: rnd(32) })
    const validRes = encRes({ tid: 3, to: attacker.address, closerNodes: [fake(1)] })
    const typeBytes = [0x00, 0x01, 0x02, 0x04, 0x05, 0x07, 0x0b, 0x12, 0x14, 0x17, 0x23, 0x33, 0x43, 0x7f, 0x80, 0xf3, 0xfe, 0xff]
    const wrongType: Array<Buffer> = []
    for (const b of typeBytes) {
      for (const m of [validPing, validFind, validRes]) {
        const d = Buffer.from(m)
        d[0] = b
        wrongType.push(d)
      }
    }
    await blastTarget(server, wrongType, badFirstByte)
    await blastTarget(client, wrongType, badFirstByte)
    expect(wrongType.every(badFirstByte)).toBe(true)

    // ---- 4. truncated valid messages: every proper prefix fails to decode (the last field is cut)
    const full = [
      validFind,
      encReq({ tid: 4, to: server, id: rnd(32), token: rnd(32), internal: false, command: 7, target: rnd(32), value: rnd(300) }),
      encRes({ tid: 5, to: attacker.address, id: rnd(32), token: rnd(32), closerNodes: [fake(2), fake(3)], error: 1, value: rnd(10) })
    ]
    const truncated = full.flatMap((m) => Array.from({ length: m.length }, (_, n) => m.subarray(0, n)))
    await blastTarget(server, truncated, () => true)
    await blastTarget(client, truncated.slice(0, validFind.length), () => true)

    // wait until the node has worked through its inbox
    const pending = async (pred: () => boolean, what: string) => {
      for (let i = 0; i < 200 && !pred(); i++) await sleep(25)
      expect(pred(), what).toBe(true)
    }
    await pending(() => h.core.io.stats.dropped - statsBefore.dropped >= malformedLower, "the malformed datagrams were dropped")
    // every hostile datagram reached the node (loopback, paced): received >= sent
    const recv = h.sockets().server.stats().received - recvBefore.server + h.sockets().client.stats().received - recvBefore.client
    expect(recv).toBeGreaterThanOrEqual(sentToTarget)
    const droppedMalformed = h.core.io.stats.dropped - statsBefore.dropped
    expect(droppedMalformed).toBeGreaterThanOrEqual(malformedLower)
    expect(droppedMalformed).toBeLessThanOrEqual(malformedUpper)
    // ~1,980 of the 2,000 garbage datagrams (first byte not 0x03/0x13), 40 oversized, 108 wrong type
    // bytes and ~590 truncations
    expect(malformedLower).toBeGreaterThan(2600)
    expect(short).toBeGreaterThanOrEqual(8) // the 0- and 1-byte prefixes of the truncation step
    // nothing was answered, except random garbage that happens to be a well-formed request
    // (first byte 0x03; the reference answers those too, e.g. with UNKNOWN_COMMAND / INVALID_TOKEN)
    const requestLike = garbage.filter((d) => d.length >= 10 && d[0] === 0x03)
    expect(attacker.inbox.length).toBeLessThanOrEqual(requestLike.length)
    // flags is a compact uint: a flags byte of 0xfd..0xff moves the tid further along
    const tidOf = (d: Buffer): number | null => {
      try {
        return decode(d).tid
      } catch {
        return null // too short to hold a tid after a long flags field: never answered
      }
    }
    const requestTids = new Set(requestLike.map(tidOf).filter((t): t is number => t !== null))
    for (const m of attacker.inbox) {
      const r = decode(m.msg)
      expect(r.type).toBe(0x13)
      expect(requestTids.has(r.tid)).toBe(true)
    }
    const answeredGarbage = attacker.inbox.length
    attacker.inbox.length = 0

    // ---- 5. responses with unknown tids while a request to the attacker is in flight
    // The target pings the attacker (which never answers): the ping must time out although the
    // attacker sprays 1,000 well-formed responses (forged ids, fake closer nodes) with other tids
    // at both of its sockets.
    const ping1 = target.ping(attacker.address).then(
      () => "answered",
      (err: unknown) => String((err as { code?: string }).code ?? err)
    )
    const req1 = decode(await attacker.next(isRequest, 5_000))
    expect(req1.to).toEqual(attacker.address) // the target addressed us correctly
    const unmatchedBefore = h.core.io.stats.unmatched
    const timeoutsBefore = h.core.io.stats.requests.timeouts
    const spoofed = Array.from({ length: 1000 }, (_, i) =>
      encRes({
        tid: (req1.tid + 20_000 + i) & 0xffff,
        to: server,
        id: forgedIds[i % forgedIds.length]!,
        token: rnd(32),
        closerNodes: [fake(i), fake(i + 1)],
        value: rnd(8)
      })
    )
    await attacker.blast(server, spoofed)
    await attacker.blast(client, spoofed)
    expect(await withTimeout(ping1, 10_000, "ping 1 settles")).toBe("REQUEST_TIMEOUT")
    // the node received each and matched none (a late honest reply to a timed-out request would
    // also count as unmatched; there are at most as many of those as timeouts, the ping's included)
    const unmatched = h.core.io.stats.unmatched - unmatchedBefore
    expect(unmatched).toBeGreaterThanOrEqual(2000)
    expect(unmatched - 2000).toBeLessThan(h.core.io.stats.requests.timeouts - timeoutsBefore)
    // all 4 tries of the ping reached the attacker with the same tid; nothing else did
    expect(attacker.inbox.map((m) => decode(m.msg).tid)).toEqual([req1.tid, req1.tid, req1.tid, req1.tid])

    // ---- 6. a reply with the right tid but a forged id, from ANOTHER address (the accomplice):
    // it completes the request (dht-rpc matches by tid only, spec §3.5), but the id is not the
    // sender's address id, so it is discarded (§3.4) and nobody is added to the table.
    for (const forged of forgedIds) {
      const at = attacker.inbox.length
      const ping2 = target.ping(attacker.address)
      const req2 = decode(await attacker.next(isRequest, 5_000, at))
      await accomplice.send(server, encRes({ tid: req2.tid, to: server, id: forged, closerNodes: [fake(7)] }))
      const res2 = await withTimeout(ping2, 5_000, "ping 2")
      expect(res2.from.port).toBe(accomplice.port)
      expect(res2.from.id).toBeNull()
    }

    // ---- 7. requests carrying forged ids (not the sender's address id): answered, never added
    const forgedReqs = Array.from({ length: 300 }, (_, i) =>
      encReq({ tid: 40_000 + i, to: server, id: forgedIds[i % forgedIds.length]!, internal: true, command: i % 2 === 0 ? 0 : 2, target: rnd(32) })
    )
    let at = attacker.inbox.length
    await attacker.blast(server, forgedReqs)
    await pending(() => attacker.inbox.length - at >= 300, "every forged-id request was answered")
    const forgedReplies = attacker.inbox.slice(at).map((m) => decode(m.msg))
    expect(forgedReplies.every((r) => r.type === 0x13 && r.error === 0 && r.tid >= 40_000 && r.tid < 40_300)).toBe(true)
    // answered from the server socket with the target's real id
    expect(forgedReplies.every((r) => r.id !== null && r.id.equals(target.id!))).toBe(true)

    // ---- 8. requests with a bad token: answered with INVALID_TOKEN (2) and a fresh token, as dht-rpc does
    const badTokens = Array.from({ length: 200 }, (_, i) =>
      encReq({ tid: 50_000 + i, to: server, token: rnd(32), internal: i % 2 === 0, command: i % 2 === 0 ? 2 : 7, target: rnd(32), value: rnd(16) })
    )
    at = attacker.inbox.length
    await attacker.blast(server, badTokens)
    await pending(() => attacker.inbox.length - at >= 200, "every bad-token request was answered")
    const tokenReplies = attacker.inbox.slice(at).map((m) => decode(m.msg))
    expect(tokenReplies.length).toBe(200)
    expect(tokenReplies.every((r) => r.error === 2 && r.token !== null && r.tid >= 50_000 && r.tid < 50_200)).toBe(true)
    // positive control: the token the node just issued is accepted
    at = attacker.inbox.length
    await attacker.send(server, encReq({ tid: 60_000, to: server, token: tokenReplies[0]!.token!, internal: true, command: 0 }))
    const good = decode(await attacker.next(isResponse, 5_000, at))
    expect(good.tid).toBe(60_000)
    expect(good.error).toBe(0)

    // ---- 9. a FIND_NODE flood: 3,000 lookups with random targets, every one answered with honest nodes only
    const flood = Array.from({ length: 3000 }, (_, i) => encReq({ tid: i, to: server, internal: true, command: 2, target: rnd(32) }))
    at = attacker.inbox.length
    const tFlood = Date.now()
    await attacker.blast(server, flood)
    await pending(() => attacker.inbox.length - at >= 3000, "every FIND_NODE of the flood was answered")
    const floodMs = Date.now() - tFlood
    const floodReplies = attacker.inbox.slice(at).map((m) => decode(m.msg))
    expect(floodReplies.length).toBe(3000)
    expect(new Set(floodReplies.map((r) => r.tid)).size).toBe(3000)
    const closer = new Set(floodReplies.flatMap((r) => r.closerNodes.map((n) => `${n.host}:${n.port}`)))
    expect([...closer].sort()).toEqual(honestOthers.map((p) => `${HOST}:${p}`).sort())
    expect(floodReplies.every((r) => r.to.host === HOST && r.to.port === attacker.port)).toBe(true)

    // ---- oversized but well-formed: both implementations answer a PING padded to 3 KB and 60 KB
    // (udx-native 1.21.3 under hyperdht 6.34.0 delivers datagrams above 2,048 bytes; trailing bytes are ignored)
    for (const size of [3000, 60_000]) {
      for (const [who, to] of [
        ["omega", server],
        ["reference", { host: HOST, port: refPort }]
      ] as const) {
        const padded = Buffer.concat([encReq({ tid: 61_000 + (size % 1000), to, internal: true, command: 0 }), Buffer.alloc(size)]).subarray(0, size)
        at = attacker.inbox.length
        await attacker.send(to, padded)
        const r = decode(await attacker.next(isResponse, 5_000, at))
        expect(r.tid, `${who} answers a ${size}-byte PING`).toBe(61_000 + (size % 1000))
        expect(r.error).toBe(0)
      }
    }

    // ---- afterwards: alive, correct, and the table holds exactly the honest nodes
    const pingBack = await withTimeout(omegas[1]!.ping(server), 5_000, "omega ping")
    expect(pingBack.from.id && Buffer.from(pingBack.from.id).equals(target.id!)).toBe(true)
    const refPing: RefNode = await withTimeout(ref.ping(server), 5_000, "reference ping")
    expect(Buffer.from(refPing.from.id).equals(target.id!)).toBe(true)
    const closest = await find(target, rnd(32))
    expect(closest.map((r) => r.from.port).sort((a, b) => a - b)).toEqual(honestOthers)
    const after = await target.status()
    expect(after.tableSize).toBe(before.tableSize)
    expect(after.bootstrapped && !after.ephemeral && !after.firewalled).toBe(true)
    expect(target.toArray().map((n) => `${n.host}:${n.port}`).sort()).toEqual(tableBefore)
    expect(h.core.table.get(forgedIds[0]!)).toBeNull()
    expect(h.core.table.get(forgedIds[1]!)).toBeNull()
    expect(h.core.table.get(forgedIds[2]!)?.port).toBe(refPort) // the honest owner of that id, untouched
    expect(after.dropped - before.dropped).toBe(droppedMalformed) // the well-formed attacks were not "malformed"

    // ---- nothing leaked into the reference node
    const refTable = (ref.toArray() as Array<{ host: string; port: number }>).map((n) => `${n.host}:${n.port}`).sort()
    expect(refTable).toEqual(honest.filter((p) => p !== refPort).map((p) => `${HOST}:${p}`).sort())
    for (const id of forgedIds.slice(0, 2)) expect(ref.table.get(id)).toBeFalsy()
    const refQuery = ref.findNode(rnd(32))
    await withTimeout(
      (async () => {
        for await (const _ of refQuery) void _
      })(),
      15_000,
      "reference findNode"
    )
    const refClosest = (refQuery.closestReplies as Array<{ from: { port: number } }>).map((r) => r.from.port).sort((a, b) => a - b)
    expect(refClosest).toEqual(honest.filter((p) => p !== refPort))

    console.log(
      `hostile: ${sentToTarget} malformed-class datagrams (${short} under 2 bytes; dropped ${droppedMalformed}, bounds [${malformedLower}, ${malformedUpper}]), ` +
        `${answeredGarbage} garbage datagrams were well-formed requests and answered; 2000 unknown-tid replies, ${forgedReplies.length} forged-id and ${tokenReplies.length} bad-token requests, ` +
        `3000-request FIND_NODE flood answered in ${floodMs} ms; total ${Date.now() - t0} ms`
    )
  }, 60_000)
})
