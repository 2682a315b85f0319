/**
 * Amplification: what a node sends in answer to requests from a source
 * that showed no round-trip token (a spoofed source address is a victim
 * that never asked). Every dht-rpc command and every HyperDHT command is
 * sent 100 times, with the smallest request that draws the biggest answer,
 * to a persistent node that holds records (40 announces with three relays
 * each under one topic, a server's own announcement, the largest immutable
 * and mutable values); the bytes the node then sends are summed per
 * command, to the source and to anyone else (UDP payload bytes; "wire"
 * adds 28 bytes of IPv4 + UDP header per datagram).
 *
 * Two nodes take the same requests: one with `unverifiedReplyBudget: false`
 * (the reference's behaviour: "before") and one with the default budget
 * ("after"). The stated constant: once a source's allowance of stored data
 * is spent, no request draws more than AMPLIFICATION_LIMIT times its size
 * (UDP payload), from every command; the allowance itself is bounded by
 * its burst. Plus third-party traffic: a query told of 20 "closer nodes" on
 * a victim's address by one reply contacts at most MAX_QUERY_PORTS_PER_HOST
 * of them, each at most 1 + UNHEARD_RETRIES times (the reference: all 20,
 * 6 times each: 120 requests, 9,000 bytes, 69x the reply).
 *
 * Deterministic: DHT node cores on the discrete-event network of
 * ./support/core-net.ts, seeded, no sockets.
 */
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import { DEFAULT_UNVERIFIED_BUDGET, type HyperDht, makeHyperDht } from "../src/actors/routing/hyperdht.js"
import { MAX_QUERY_PORTS_PER_HOST, UNHEARD_RETRIES } from "../src/actors/routing/query.js"
import { SERVER } from "../src/actors/routing/rpc.js"
import { MAX_IMMUTABLE_VALUE, maxMutableValue } from "../src/api/records.js"
import { noble } from "../src/layers/crypto/noble.js"
import type { KeyPair } from "../src/layers/crypto/types.js"
import * as C from "../src/protocol/connect.js"
import * as Rpc from "../src/protocol/dht-rpc.js"
import { encode, ipv4Address, uint } from "../src/protocol/encoding.js"
import * as R from "../src/protocol/records.js"
import { CoreNet, type SimNode, seededRandom } from "./support/core-net.js"

/**
 * Bytes sent / request bytes (UDP payload) for any request once its
 * source's allowance of stored data is spent. The worst: FIND_PEER, whose
 * value is one peer record of at most 52 bytes (247 bytes for a 43-byte
 * request); then a LOOKUP or IMMUTABLE_GET answered without its value
 * (id, token, 20 closer nodes: 195 bytes, 4.53).
 */
const AMPLIFICATION_LIMIT = 5.75
/** The same with 28 bytes of IPv4 + UDP header on each datagram. */
const AMPLIFICATION_LIMIT_WIRE = 3.9
const SENDS = 100
const HEADER = 28

const ATTACKER = { host: "66.66.66.66", port: 6666 }
const VICTIM = { host: "99.99.99.99", port: 9999 }

interface Out {
  readonly to: { readonly host: string; readonly port: number }
  readonly bytes: number
}

interface Target {
  readonly node: SimNode
  readonly hd: HyperDht
  /** Run one datagram from `from` through the node; what it sent in that step. */
  readonly send: (from: { host: string; port: number }, data: Uint8Array) => Array<Out>
}

const orThrow = <A>(r: Result.Result<A, unknown>): A => Result.getOrThrow(r)

/** A bootstrapper and 30 persistent HyperDHT nodes; nodes[0] and nodes[1] are measured (no budget / the default budget). */
const network = () => {
  const net = new CoreNet(seededRandom(21))
  const boot = net.add("10.0.0.1", 49737, {
    ephemeral: false,
    firewalled: false,
    natSample: { host: "10.0.0.1", port: 49737 },
    bootstrap: [],
    onRequest: makeHyperDht(noble).handler
  })
  boot.core.start(0)
  const hds: Array<HyperDht> = []
  const nodes: Array<SimNode> = []
  for (let i = 0; i < 30; i++) {
    const hd = makeHyperDht(noble, i === 0 ? { unverifiedReplyBudget: false } : {})
    // no request rate limit: the attacker's 1,500 requests arrive at one instant and are measured
    // one by one (test/bounds.test.ts covers the limit)
    const node = net.add(`10.0.1.${i + 1}`, 5000, { ephemeral: false, bootstrap: [{ host: "10.0.0.1", port: 49737 }], onRequest: hd.handler, requestRateLimit: false })
    node.core.start(0)
    hds.push(hd)
    nodes.push(node)
  }
  net.run(60_000)
  const target = (i: number): Target => {
    const node = nodes[i]!
    let out: Array<Out> | null = null
    const transmit = node.core.transmit.bind(node.core)
    node.core.transmit = (socket, to, data, ttl) => {
      out?.push({ to: { host: to.host, port: to.port }, bytes: data.length })
      transmit(socket, to, data, ttl)
    }
    return {
      node,
      hd: hds[i]!,
      send: (from, data) => {
        const sent: Array<Out> = (out = [])
        node.core.onDatagram(net.now, SERVER, from, data)
        node.core.onTimers(net.now) // a DELAYED_PING of 0 ms is answered here
        out = null
        return sent
      }
    }
  }
  return { net, nodes, targets: [target(0), target(1)] as const }
}

let tid = 1
const request = (t: Target, m: Omit<Rpc.Request, "tid" | "to" | "id"> & { readonly id?: Uint8Array | null }): Uint8Array =>
  orThrow(Rpc.encodeRequest({ tid: tid++ & 0xffff, to: { host: t.node.host, port: t.node.serverPort }, id: null, ...m }))

/** The reply among what the node sent, decoded. */
const replyIn = (sent: ReadonlyArray<{ to: { host: string; port: number }; data: Uint8Array }>): Rpc.Response | null => {
  const d = sent.find((s) => s.data[0] === Rpc.RESPONSE_ID)
  if (d === undefined) return null
  const m = orThrow(Rpc.decodeMessage(d.data))
  return m._tag === "Response" ? m.response : null
}

const keyPairOf = (i: number): KeyPair => noble.keyPair(new Uint8Array(32).fill(i))!

/**
 * A signed write from `writer`, as a client does it: a read for a token
 * first, then the write with it. Returns the write's reply error (0 = stored).
 */
const write = (t: Target, writer: { host: string; port: number }, command: number, target: Uint8Array, value: (token: Uint8Array, nodeId: Uint8Array) => Uint8Array): number => {
  const captured: Array<{ to: { host: string; port: number }; data: Uint8Array }> = []
  const transmit = t.node.core.transmit
  t.node.core.transmit = (socket, to, data, ttl) => {
    captured.push({ to, data: data.slice() })
    transmit(socket, to, data, ttl)
  }
  try {
    t.send(writer, request(t, { token: null, internal: false, command: R.Command.IMMUTABLE_GET, target: new Uint8Array(32), value: null }))
    const token = replyIn(captured)!.token!
    captured.length = 0
    t.send(writer, request(t, { token, internal: false, command, target, value: value(token, t.node.core.id!) }))
    const res = replyIn(captured)
    return res === null ? -1 : res.error
  } finally {
    t.node.core.transmit = transmit
  }
}

const ns = R.namespaces(noble.blake2b)
const signAnnounce = (topic: Uint8Array, nodeId: Uint8Array, token: Uint8Array, kp: KeyPair, relays: ReadonlyArray<{ host: string; port: number }>, namespace = ns.ANNOUNCE) => {
  const peer = { publicKey: kp.publicKey, relayAddresses: relays }
  const signable = orThrow(R.annSignable(noble.blake2b, topic, nodeId, token, orThrow(encode(R.peer, peer)), null, namespace))
  return orThrow(encode(R.announce, { peer, refresh: null, signature: noble.sign(signable, kp.secretKey)!, bump: 0 }))
}

const topic = noble.blake2b(new TextEncoder().encode("a popular topic"))
const server = keyPairOf(200)
const serverTarget = noble.blake2b(server.publicKey)
const mutableKey = keyPairOf(201)
const mutableTarget = noble.blake2b(mutableKey.publicKey)
const immutableValue = new Uint8Array(MAX_IMMUTABLE_VALUE).map((_, i) => (i * 7) & 0xff)
const immutableTarget = noble.blake2b(immutableValue)

/** Fill a node as a busy one is: 40 announces under one topic, a server's own announcement, the largest values. */
const fill = (t: Target): void => {
  const relays = [{ host: "10.0.7.1", port: 7001 }, { host: "10.0.7.2", port: 7002 }, { host: "10.0.7.3", port: 7003 }]
  for (let i = 0; i < 40; i++) {
    const kp = keyPairOf(i + 1)
    expect(write(t, { host: `10.0.8.${i + 1}`, port: 8000 }, R.Command.ANNOUNCE, topic, (token, id) => signAnnounce(topic, id, token, kp, relays))).toBe(0)
  }
  expect(write(t, { host: "10.0.9.1", port: 9000 }, R.Command.ANNOUNCE, serverTarget, (token, id) => signAnnounce(serverTarget, id, token, server, relays))).toBe(0)
  expect(write(t, { host: "10.0.9.2", port: 9000 }, R.Command.IMMUTABLE_PUT, immutableTarget, () => immutableValue)).toBe(0)
  const value = new Uint8Array(maxMutableValue(1)).fill(0x6d)
  const signature = noble.sign(orThrow(R.mutableSignable64(noble.blake2b, 1, value)), mutableKey.secretKey)!
  const put = orThrow(encode(R.mutablePutRequest, { publicKey: mutableKey.publicKey, seq: 1, value, signature }))
  expect(write(t, { host: "10.0.9.3", port: 9000 }, R.Command.MUTABLE_PUT, mutableTarget, () => put)).toBe(0)
}

interface Row {
  readonly command: string
  readonly requests: number
  readonly requestBytes: number
  readonly toSource: number
  readonly toOthers: number
  /** The largest reply/request ratio (to the source) over the last half of the requests. */
  readonly steady: number
  /** The same counting what went to anyone. */
  readonly steadyAll: number
  readonly datagramsIn: number
  readonly datagramsOut: number
}

/** The requests of one command (varied: tids, and for writes no token and a made-up one in turn). */
type Maker = (t: Target, i: number) => Uint8Array

const commands = (table: SimNode): Array<[string, Maker]> => {
  const random32 = (i: number) => noble.blake2b(Uint8Array.of(i, 0xaa))
  const fakeToken = (i: number) => noble.blake2b(Uint8Array.of(i, 0x70))
  const tiny = Uint8Array.of(0)
  const write = (command: number): Maker => (t, i) =>
    request(t, { token: i % 2 === 0 ? null : fakeToken(i), internal: false, command, target: random32(i), value: tiny })
  const hs = (mode: number, noise: Uint8Array, peerAddress: { host: string; port: number } | null) =>
    orThrow(encode(C.handshake, { mode, noise, peerAddress, relayAddress: null }))
  const hp = (mode: number, peerAddress: { host: string; port: number } | null) =>
    orThrow(encode(C.holepunch, { mode, id: 0, payload: Uint8Array.of(1), peerAddress }))
  const downValue = orThrow(encode(ipv4Address, { host: table.host, port: table.serverPort }))
  return [
    ["PING", (t) => request(t, { token: null, internal: true, command: Rpc.InternalCommand.PING, target: null, value: null })],
    ["PING_NAT", (t, i) => request(t, { token: null, internal: true, command: Rpc.InternalCommand.PING_NAT, target: null, value: Uint8Array.of(i + 1, 0x1a) })],
    ["FIND_NODE", (t, i) => request(t, { token: null, internal: true, command: Rpc.InternalCommand.FIND_NODE, target: random32(i), value: null })],
    ["DOWN_HINT", (t) => request(t, { token: null, internal: true, command: Rpc.InternalCommand.DOWN_HINT, target: null, value: downValue })],
    ["DELAYED_PING", (t) => request(t, { token: null, internal: true, command: Rpc.InternalCommand.DELAYED_PING, target: null, value: Uint8Array.of(0, 0, 0, 0) })],
    ["FIND_PEER", (t) => request(t, { token: null, internal: false, command: R.Command.FIND_PEER, target: serverTarget, value: null })],
    ["LOOKUP", (t) => request(t, { token: null, internal: false, command: R.Command.LOOKUP, target: topic, value: null })],
    ["ANNOUNCE", write(R.Command.ANNOUNCE)],
    ["UNANNOUNCE", write(R.Command.UNANNOUNCE)],
    ["MUTABLE_PUT", write(R.Command.MUTABLE_PUT)],
    ["MUTABLE_GET", (t) => request(t, { token: null, internal: false, command: R.Command.MUTABLE_GET, target: mutableTarget, value: orThrow(encode(uint, 0)) })],
    ["IMMUTABLE_PUT", write(R.Command.IMMUTABLE_PUT)],
    ["IMMUTABLE_GET", (t) => request(t, { token: null, internal: false, command: R.Command.IMMUTABLE_GET, target: immutableTarget, value: null })],
    // FROM_CLIENT for the stored server (relayed to it), for an unknown target (closer nodes), FROM_SERVER naming a victim
    ["PEER_HANDSHAKE", (t, i) => {
      const noise = Uint8Array.of(i & 0xff)
      const kind = i % 3
      if (kind === 0) return request(t, { token: null, internal: false, command: R.Command.PEER_HANDSHAKE, target: serverTarget, value: hs(C.FROM_CLIENT, noise, null) })
      if (kind === 1) return request(t, { token: null, internal: false, command: R.Command.PEER_HANDSHAKE, target: random32(i), value: hs(C.FROM_CLIENT, noise, null) })
      return request(t, { token: null, internal: false, command: R.Command.PEER_HANDSHAKE, target: random32(i), value: hs(C.FROM_SERVER, noise, VICTIM) })
    }],
    // FROM_CLIENT for the stored server, FROM_CLIENT naming a victim, FROM_SERVER naming a victim
    ["PEER_HOLEPUNCH", (t, i) => {
      const kind = i % 3
      if (kind === 0) return request(t, { token: null, internal: false, command: R.Command.PEER_HOLEPUNCH, target: serverTarget, value: hp(C.FROM_CLIENT, null) })
      return request(t, { token: null, internal: false, command: R.Command.PEER_HOLEPUNCH, target: random32(i), value: hp(kind === 1 ? C.FROM_CLIENT : C.FROM_SERVER, VICTIM) })
    }]
  ]
}

const measure = (t: Target, name: string, make: Maker): Row => {
  let requestBytes = 0
  let toSource = 0
  let toOthers = 0
  let steady = 0
  let steadyAll = 0
  let datagramsOut = 0
  for (let i = 0; i < SENDS; i++) {
    const data = make(t, i)
    const out = t.send(ATTACKER, data)
    requestBytes += data.length
    let src = 0
    let all = 0
    for (const o of out) {
      all += o.bytes
      datagramsOut++
      if (o.to.host === ATTACKER.host) src += o.bytes
    }
    toSource += src
    toOthers += all - src
    if (i >= SENDS / 2) {
      steady = Math.max(steady, src / data.length)
      steadyAll = Math.max(steadyAll, all / data.length)
    }
  }
  return { command: name, requests: SENDS, requestBytes, toSource, toOthers, steady, steadyAll, datagramsIn: SENDS, datagramsOut }
}

const fmt = (x: number) => x.toFixed(2)

describe("amplification: replies to sources without a round-trip token", () => {
  it(`every command, 100 requests each, at a node full of records: ≤ ${AMPLIFICATION_LIMIT}x once a source's allowance is spent`, () => {
    const { nodes, targets } = network()
    const [before, after] = targets
    for (const t of targets) {
      expect(t.node.core.id).not.toBeNull()
      expect(t.node.core.table.size).toBeGreaterThanOrEqual(20)
      fill(t)
    }
    const table = nodes[5]!
    const rows: Array<[Row, Row]> = commands(table).map(([name, make]) => [measure(before, name, make), measure(after, name, make)])

    const lines = [
      "| command | request bytes | before: sent (to source + to others) | before: ratio | after: sent (to source + to others) | after: ratio | after, allowance spent: max ratio (wire) |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    ]
    for (const [b, a] of rows) {
      const per = (r: Row) => `${Math.round(r.toSource / r.requests)} + ${Math.round(r.toOthers / r.requests)}`
      const req = a.requestBytes / a.requests
      const wire = (a.steadyAll * req + HEADER) / (req + HEADER)
      lines.push(
        `| ${a.command} | ${fmt(req)} | ${per(b)} | ${fmt((b.toSource + b.toOthers) / b.requestBytes)} | ${per(a)} | ${fmt((a.toSource + a.toOthers) / a.requestBytes)} | ${fmt(a.steadyAll)} (${fmt(wire)}) |`
      )
    }
    console.log(`replies to an unverified source, ${SENDS} requests per command (bytes per request, UDP payload; ratio = all bytes sent / request bytes)\n${lines.join("\n")}`)
    console.log(`after: allowance withheld ${after.hd.stats.unverifiedCapped} values (${after.hd.stats.unverifiedCappedBytes} bytes); budget ${DEFAULT_UNVERIFIED_BUDGET.burst} bytes + ${DEFAULT_UNVERIFIED_BUDGET.perSecond} bytes/s per source address`)

    for (const [b, a] of rows) {
      // the limit holds per request once the allowance is spent, to the source and counting third parties
      expect(a.steady, `${a.command}: steady ratio to the source`).toBeLessThanOrEqual(AMPLIFICATION_LIMIT)
      expect(a.steadyAll, `${a.command}: steady ratio to anyone`).toBeLessThanOrEqual(AMPLIFICATION_LIMIT)
      // and over all 100: at most the limit plus one burst of stored data
      expect(a.toSource + a.toOthers).toBeLessThanOrEqual(AMPLIFICATION_LIMIT * a.requestBytes + DEFAULT_UNVERIFIED_BUDGET.burst + 2048)
      expect(b.requestBytes).toBe(a.requestBytes)
    }
    // the wire form of the constant: per datagram 28 bytes more on both sides
    for (const [, a] of rows) {
      const req = a.requestBytes / a.requests
      expect((a.steadyAll * req + HEADER) / (req + HEADER)).toBeLessThanOrEqual(AMPLIFICATION_LIMIT_WIRE)
    }
    // without the budget the big reads amplify as in the reference
    const ratio = (r: Row) => (r.toSource + r.toOthers) / r.requestBytes
    const get = (name: string) => rows.find(([b]) => b.command === name)!
    expect(ratio(get("LOOKUP")[0])).toBeGreaterThan(20)
    expect(ratio(get("IMMUTABLE_GET")[0])).toBeGreaterThan(40)
    expect(ratio(get("IMMUTABLE_GET")[1])).toBeLessThan(10)
    expect(after.hd.stats.unverifiedCapped).toBeGreaterThan(0)
    expect(before.hd.stats.unverifiedCapped).toBe(0)
  })
})

describe("third-party traffic: a reply that names a victim's address as closer nodes", () => {
  it(`one forged reply with 20 closer nodes on one victim host: the query sends there at most ${MAX_QUERY_PORTS_PER_HOST} x ${1 + UNHEARD_RETRIES} requests`, () => {
    const { net, nodes } = network()
    const q = nodes[3]!
    const sent: Array<Out> = []
    const transmit = q.core.transmit.bind(q.core)
    q.core.transmit = (socket, to, data, ttl) => {
      sent.push({ to: { host: to.host, port: to.port }, bytes: data.length })
      transmit(socket, to, data, ttl)
    }
    // the query starts at a (malicious) node the querier was told about
    const target = noble.blake2b(Uint8Array.of(1, 2, 3))
    const query = q.core.findNode(target, { nodes: [ATTACKER] })
    let ended = false
    query.onend = () => {
      ended = true
    }
    query.start()
    // the querier's request to the attacker (once the query gets to it)
    const inflightToAttacker = () => [...q.core.io.inflight.values()].find((r) => r.to.host === ATTACKER.host && r.sent > 0)
    for (let i = 0; i < 100 && inflightToAttacker() === undefined; i++) net.run(net.now + 10)
    const toAttacker = inflightToAttacker()!
    expect(toAttacker).toBeDefined()
    // ports of the victim host whose node ids are closest to the target (ids are derived from addresses: any
    // address can be made to look close by trying ports)
    const distance = (id: Uint8Array) => {
      let d = 0
      for (let i = 0; i < 4; i++) d = d * 256 + (id[i]! ^ target[i]!)
      return d
    }
    const victims = Array.from({ length: 16_384 }, (_, i) => ({ host: VICTIM.host, port: 20_000 + i }))
      .map((a) => ({ a, d: distance(Rpc.nodeId(noble.blake2b, a.host, a.port)!) }))
      .sort((x, y) => x.d - y.d)
      .slice(0, 20)
      .map((x) => x.a)
    const forged = orThrow(Rpc.encodeResponse({ tid: toAttacker.tid, to: { host: q.host, port: q.serverPort }, id: null, token: null, closerNodes: victims, error: 0, value: null }))
    q.core.onDatagram(net.now, SERVER, ATTACKER, forged)
    net.run(net.now + 60_000)
    expect(ended).toBe(true)
    const toVictim = sent.filter((o) => o.to.host === VICTIM.host)
    const bytes = toVictim.reduce((n, o) => n + o.bytes, 0)
    console.log(
      `one ${forged.length}-byte reply naming 20 ports of one victim host: the query sent ${toVictim.length} requests ` +
        `(${bytes} bytes, ${fmt(bytes / forged.length)}x the reply) to ${new Set(toVictim.map((o) => o.to.port)).size} victim ports`
    )
    // bounded by the query's rules: at most MAX_QUERY_PORTS_PER_HOST ports of a public host named by
    // replies, each tried at most 1 + UNHEARD_RETRIES times (the reference: 20 ports, 6 times each)
    expect(toVictim.length).toBeGreaterThan(0)
    expect(new Set(toVictim.map((o) => o.to.port)).size).toBeLessThanOrEqual(MAX_QUERY_PORTS_PER_HOST)
    expect(toVictim.length).toBeLessThanOrEqual(MAX_QUERY_PORTS_PER_HOST * (1 + UNHEARD_RETRIES))
    // the stated constant for replies holds for this third-party traffic too
    expect(bytes / forged.length).toBeLessThanOrEqual(AMPLIFICATION_LIMIT)
    expect(query.capped).toBeGreaterThanOrEqual(20 - MAX_QUERY_PORTS_PER_HOST)
  })
})
