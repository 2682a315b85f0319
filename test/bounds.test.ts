/**
 * Bounded resources: every table, cache and queue that input from the
 * network can grow is filled past its bound here, and then checked: its
 * size stays at the bound, what went over is counted, and honest traffic
 * (another source, a local source, a later request) still works.
 *
 * - request rate limits of the DHT node: per source address, for the node
 *   (`RequestLimiter`), local sources exempt;
 * - DELAYED_PING replies waiting (MAX_DELAYED_PINGS, per source);
 * - records stored on behalf of one source address (announces, refresh
 *   tokens, mutable and immutable values: `maxRecordsPerSource`), freed as
 *   the records leave the store;
 * - the unverified-reply budgets (UnverifiedBudget: 4,096 sources);
 * - RPC transactions in flight (the 16-bit tid space);
 * - a query's contacts per public host (MAX_QUERY_PORTS_PER_HOST; local
 *   hosts exempt);
 * - a server's pending handshakes per client host
 *   (MAX_PENDING_HANDSHAKES_PER_HOST), on the simulated network;
 * - the addresses a punch probes (MAX_PUNCH_ADDRESSES) and a blind relay
 *   forwarding only between the two streams of a pair.
 *
 * Deterministic: DHT cores on ./support/core-net.ts, the connect simulation
 * on virtual time, the punch and relay cores fed directly. No sockets.
 */
import { assert, it as effectIt } from "@effect/vitest"
import { Effect, Result } from "effect"
import { describe, expect, it } from "vitest"
import { makeHyperDht } from "../src/actors/routing/hyperdht.js"
import { DEFAULT_REQUEST_RATE_LIMIT, isLocalSource, MAX_RATE_SOURCES } from "../src/actors/routing/limits.js"
import { MAX_DELAYED_PINGS, MAX_DELAYED_PINGS_PER_SOURCE } from "../src/actors/routing/node.js"
import { MAX_QUERY_PORTS_PER_HOST } from "../src/actors/routing/query.js"
import { SERVER } from "../src/actors/routing/rpc.js"
import { UnverifiedBudget } from "../src/actors/routing/store.js"
import { MAX_PUNCH_ADDRESSES, type RemoteAddress, withVerified } from "../src/actors/holepunch/decide.js"
import { PunchCore } from "../src/actors/holepunch/puncher.js"
import { UdxRelay } from "../src/actors/session/blind-relay.js"
import { Noise } from "../src/actors/session/host.js"
import { MAX_PENDING_HANDSHAKES_PER_HOST } from "../src/actors/session/server.js"
import { noble } from "../src/layers/crypto/noble.js"
import type { KeyPair } from "../src/layers/crypto/types.js"
import * as C from "../src/protocol/connect.js"
import * as Rpc from "../src/protocol/dht-rpc.js"
import { encode } from "../src/protocol/encoding.js"
import * as R from "../src/protocol/records.js"
import { advance, buildConnectSim, connect, listen } from "./support/connect-sim.js"
import { CoreNet, type SimNode, seededRandom } from "./support/core-net.js"

const orThrow = <A>(r: Result.Result<A, unknown>): A => Result.getOrThrow(r)

interface Sent {
  readonly to: { readonly host: string; readonly port: number }
  readonly data: Uint8Array
}

/** A bootstrapper and `n` persistent HyperDHT nodes on 10.0.1.x, settled; nodes[0] gets `options`. */
const network = (n: number, options: Parameters<typeof makeHyperDht>[1] = {}, extra: Parameters<CoreNet["add"]>[2] = {}) => {
  const net = new CoreNet(seededRandom(77))
  const boot = net.add("10.0.0.1", 49737, { ephemeral: false, firewalled: false, natSample: { host: "10.0.0.1", port: 49737 }, bootstrap: [] })
  boot.core.start(0)
  const hds = Array.from({ length: n }, (_, i) => makeHyperDht(noble, i === 0 ? options : {}))
  const nodes = hds.map((hd, i) => {
    const node = net.add(`10.0.1.${i + 1}`, 5000, { ephemeral: false, bootstrap: [{ host: "10.0.0.1", port: 49737 }], onRequest: hd.handler, ...(i === 0 ? extra : {}) })
    node.core.start(0)
    return node
  })
  net.run(30_000)
  return { net, nodes, hds }
}

/** Feed `node` datagrams directly (at the network's time) and collect what it sends meanwhile. */
const tap = (net: CoreNet, node: SimNode) => {
  let out: Array<Sent> | null = null
  const transmit = node.core.transmit.bind(node.core)
  node.core.transmit = (socket, to, data, ttl) => {
    out?.push({ to: { host: to.host, port: to.port }, data: data.slice() })
    transmit(socket, to, data, ttl)
  }
  return (from: { host: string; port: number }, data: Uint8Array, now = net.now): Array<Sent> => {
    const sent: Array<Sent> = (out = [])
    node.core.onTimers(now)
    node.core.onDatagram(now, SERVER, from, data)
    out = null
    return sent
  }
}

let tid = 1
const req = (node: SimNode, m: Omit<Rpc.Request, "tid" | "to" | "id">): Uint8Array =>
  orThrow(Rpc.encodeRequest({ tid: tid++ & 0xffff, to: { host: node.host, port: node.serverPort }, id: null, ...m }))
const ping = (node: SimNode) => req(node, { token: null, internal: true, command: Rpc.InternalCommand.PING, target: null, value: null })
const replies = (sent: ReadonlyArray<Sent>) => sent.filter((s) => s.data[0] === Rpc.RESPONSE_ID).length
const replyError = (sent: ReadonlyArray<Sent>): number | null => {
  const d = sent.find((s) => s.data[0] === Rpc.RESPONSE_ID)
  if (d === undefined) return null
  const m = orThrow(Rpc.decodeMessage(d.data))
  return m._tag === "Response" ? m.response.error : null
}

describe("request rate limits (per source address and per node)", () => {
  it(`one public source: ${DEFAULT_REQUEST_RATE_LIMIT.perSource.burst} at once, then ${DEFAULT_REQUEST_RATE_LIMIT.perSource.perSecond}/s; the rest dropped and counted; others and local sources unaffected`, () => {
    const { net, nodes } = network(3)
    const node = nodes[0]!
    const send = tap(net, node)
    const stats = node.core.io.stats
    const dropped0 = stats.dropped
    const { burst, perSecond } = DEFAULT_REQUEST_RATE_LIMIT.perSource
    const flooder = { host: "66.1.1.1", port: 1000 }
    let answered = 0
    for (let i = 0; i < 3 * burst; i++) answered += replies(send(flooder, ping(node)))
    expect(answered).toBe(burst)
    expect(stats.rateLimited.source).toBe(2 * burst)
    expect(stats.dropped - dropped0).toBe(2 * burst)
    // another public source and local ones are answered meanwhile
    expect(replies(send({ host: "66.1.1.2", port: 1000 }, ping(node)))).toBe(1)
    let local = 0
    for (let i = 0; i < 3 * burst; i++) local += replies(send({ host: i % 2 === 0 ? "127.0.0.1" : "10.9.9.9", port: 2000 }, ping(node)))
    expect(local).toBe(3 * burst)
    // one second later the flooder has perSecond more
    answered = 0
    for (let i = 0; i < burst; i++) answered += replies(send(flooder, ping(node), net.now + 1000))
    expect(answered).toBe(perSecond)
    // the node's own traffic (queries from the local network) still works
    const q = nodes[1]!.core.findNode(node.core.table.id)
    let ok = false
    q.onend = (e) => {
      ok = e === null
    }
    q.start()
    net.run(net.now + 10_000)
    expect(ok).toBe(true)
  })

  it(`many public sources: the node answers ${DEFAULT_REQUEST_RATE_LIMIT.global.burst} at once, then ${DEFAULT_REQUEST_RATE_LIMIT.global.perSecond}/s; at most ${MAX_RATE_SOURCES} source buckets`, () => {
    const { net, nodes } = network(2)
    const node = nodes[0]!
    const send = tap(net, node)
    const limiter = node.core.io.limiter!
    const { burst, perSecond } = DEFAULT_REQUEST_RATE_LIMIT.global
    const n = burst + 10_000
    let answered = 0
    for (let i = 0; i < n; i++) answered += replies(send({ host: `66.${2 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}`, port: 1000 }, ping(node)))
    expect(answered).toBe(burst)
    expect(node.core.io.stats.rateLimited.global).toBe(n - burst)
    expect(limiter.size).toBeLessThanOrEqual(MAX_RATE_SOURCES)
    // a local source is exempt; a second later the node answers public sources again
    expect(replies(send({ host: "192.168.1.5", port: 1000 }, ping(node)))).toBe(1)
    answered = 0
    for (let i = 0; i < 2 * perSecond; i++) answered += replies(send({ host: `77.1.${i >> 8}.${i & 0xff}`, port: 1000 }, ping(node), net.now + 1000))
    expect(answered).toBe(perSecond)
    expect(limiter.size).toBeLessThanOrEqual(MAX_RATE_SOURCES)
  })

  it("local sources: loopback, RFC 1918, CGNAT and link-local; nothing else", () => {
    for (const h of ["127.0.0.1", "127.255.1.2", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.0.1", "100.64.0.1", "100.127.1.1", "169.254.1.1"]) expect(isLocalSource(h), h).toBe(true)
    for (const h of ["11.77.0.2", "20.1.0.1", "172.15.0.1", "172.32.0.1", "192.169.0.1", "100.63.0.1", "100.128.0.1", "1.2.3.4", "88.99.3.86"]) expect(isLocalSource(h), h).toBe(false)
  })
})

describe("DELAYED_PING replies waiting", () => {
  it(`at most ${MAX_DELAYED_PINGS_PER_SOURCE} per source and ${MAX_DELAYED_PINGS} in all; answered when due, then free again`, () => {
    const { net, nodes } = network(2)
    const node = nodes[0]!
    const send = tap(net, node)
    const delayed = () => (node.core as unknown as { delayed: Array<unknown> }).delayed.length
    const dping = () => req(node, { token: null, internal: true, command: Rpc.InternalCommand.DELAYED_PING, target: null, value: Uint8Array.of(0x10, 0x27, 0, 0) }) // 10,000 ms
    for (let i = 0; i < 100; i++) send({ host: "66.3.3.3", port: 1000 }, dping())
    expect(delayed()).toBe(MAX_DELAYED_PINGS_PER_SOURCE)
    for (let i = 0; i < 2 * MAX_DELAYED_PINGS; i++) send({ host: `66.4.${i >> 8}.${i & 0xff}`, port: 1000 }, dping())
    expect(delayed()).toBe(MAX_DELAYED_PINGS)
    // when due they are answered, and the source may ask again
    const answered = send({ host: "66.5.5.5", port: 1 }, ping(node), net.now + 10_000)
    expect(replies(answered)).toBe(MAX_DELAYED_PINGS + 1)
    expect(delayed()).toBe(0)
    for (let i = 0; i < 100; i++) send({ host: "66.3.3.3", port: 1000 }, dping(), net.now + 10_000)
    expect(delayed()).toBe(MAX_DELAYED_PINGS_PER_SOURCE)
  })
})

// ---- records stored on behalf of one source -----------------------------------------------------

const ns = R.namespaces(noble.blake2b)
const keyPairOf = (i: number): KeyPair => noble.keyPair(noble.blake2b(Uint8Array.of(i >> 8, i & 0xff, 0x5a)))!

describe("records stored per source address", () => {
  it("immutable values: the default quota (half of MAX_ANNOUNCES_PER_SOURCE) per public source; others and local sources unaffected; freed as values expire", () => {
    const { net, nodes, hds } = network(2, { maxAge: 60_000 })
    const node = nodes[0]!
    const hd = hds[0]!
    const send = tap(net, node)
    let now = net.now
    const put = (from: { host: string; port: number }, i: number): number | null => {
      node.core.onTimers(now)
      const value = new TextEncoder().encode(`value ${from.host} ${i}`)
      const token = node.core.io.token(from.host, 1)
      return replyError(send(from, req(node, { token, internal: false, command: R.Command.IMMUTABLE_PUT, target: noble.blake2b(value), value }), now))
    }
    const flooder = { host: "66.6.6.6", port: 1000 }
    let stored = 0
    for (let i = 0; i < 700; i++) if (put(flooder, i) === 0) stored++
    const quota = hd.store()!.quotas!.immutables
    expect(stored).toBe(quota.limit)
    expect(quota.limit).toBe(512)
    expect(quota.count(flooder.host)).toBe(quota.limit)
    expect(hd.stats.rejections.sourceQuota).toBe(700 - quota.limit)
    // a value it already stored is refreshed; another public source and a local one still store
    expect(put(flooder, 3)).toBe(0)
    expect(put({ host: "66.6.6.7", port: 1000 }, 0)).toBe(0)
    for (let i = 0; i < 700; i++) expect(put({ host: "10.5.5.5", port: 1000 }, i)).toBe(0)
    expect(hd.store()!.immutables.size).toBe(quota.limit + 1 + 700)
    // the values expire (two generations of 2/3 maxAge): the quota follows the store
    now += 90_000
    expect(put(flooder, 1000)).toBe(0)
    expect(quota.count(flooder.host)).toBe(1)
    expect(quota.size).toBe(1)
  })

  it("announces, refresh tokens and mutable values with maxRecordsPerSource 8: refused past it, freed by unannounce", () => {
    const { net, nodes, hds } = network(2, { maxRecordsPerSource: 8 })
    const node = nodes[0]!
    const hd = hds[0]!
    const send = tap(net, node)
    const id = node.core.id!
    const topic = noble.blake2b(new TextEncoder().encode("a topic"))
    const announce = (from: { host: string; port: number }, kp: KeyPair, namespace = ns.ANNOUNCE, command: number = R.Command.ANNOUNCE, refresh: Uint8Array | null = null): number | null => {
      node.core.onTimers(net.now)
      const token = node.core.io.token(from.host, 1)
      const peer = { publicKey: kp.publicKey, relayAddresses: [] }
      const signable = orThrow(R.annSignable(noble.blake2b, topic, id, token, orThrow(encode(R.peer, peer)), refresh, namespace))
      const value = orThrow(encode(R.announce, { peer, refresh, signature: noble.sign(signable, kp.secretKey)!, bump: 0 }))
      return replyError(send(from, req(node, { token, internal: false, command, target: topic, value })))
    }
    const flooder = { host: "66.8.8.8", port: 1000 }
    let stored = 0
    for (let i = 0; i < 12; i++) if (announce(flooder, keyPairOf(i), ns.ANNOUNCE, R.Command.ANNOUNCE, noble.blake2b(Uint8Array.of(i))) === 0) stored++
    expect(stored).toBe(8)
    const q = hd.store()!.quotas!
    expect(q.announces.count(flooder.host)).toBe(8)
    expect(q.refreshes.count(flooder.host)).toBe(8)
    expect(hd.stats.rejections.sourceQuota).toBe(4)
    // a re-announce of a stored record passes; an unannounce frees a place for a new one
    expect(announce(flooder, keyPairOf(0))).toBe(0)
    expect(announce(flooder, keyPairOf(1), ns.UNANNOUNCE, R.Command.UNANNOUNCE)).toBe(0)
    expect(q.announces.count(flooder.host)).toBe(7)
    expect(announce(flooder, keyPairOf(20))).toBe(0)
    expect(announce(flooder, keyPairOf(21))).toBe(null)
    // other sources are unaffected
    expect(announce({ host: "66.8.8.9", port: 1000 }, keyPairOf(30))).toBe(0)
    expect(announce({ host: "127.0.0.1", port: 1000 }, keyPairOf(31))).toBe(0)
    // mutable values: half the quota
    const mput = (from: { host: string; port: number }, kp: KeyPair): number | null => {
      node.core.onTimers(net.now)
      const token = node.core.io.token(from.host, 1)
      const v = Uint8Array.of(1, 2, 3)
      const signature = noble.sign(orThrow(R.mutableSignable64(noble.blake2b, 1, v)), kp.secretKey)!
      const value = orThrow(encode(R.mutablePutRequest, { publicKey: kp.publicKey, seq: 1, value: v, signature }))
      return replyError(send(from, req(node, { token, internal: false, command: R.Command.MUTABLE_PUT, target: noble.blake2b(kp.publicKey), value })))
    }
    let mutables = 0
    for (let i = 0; i < 6; i++) if (mput(flooder, keyPairOf(100 + i)) === 0) mutables++
    expect(mutables).toBe(4)
    expect(hd.store()!.mutables.size).toBe(4)
    expect(mput({ host: "66.8.8.9", port: 1000 }, keyPairOf(200))).toBe(0)
  })

  it(`the unverified-reply budgets: at most their maxSources (4096) addresses, however many ask`, () => {
    const b = new UnverifiedBudget(8192, 2048)
    for (let i = 0; i < 20_000; i++) b.take(`66.${9 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}`, 100, 0)
    expect((b as unknown as { buckets: Map<string, unknown> }).buckets.size).toBe(4096)
    // once they refilled (4 s), new sources get theirs again
    expect(b.take("77.7.7.7", 100, 4000)).toBe(true)
    expect((b as unknown as { buckets: Map<string, unknown> }).buckets.size).toBeLessThanOrEqual(4096)
  })
})

// ---- transactions and queries ---------------------------------------------------------------

describe("RPC transactions and queries", () => {
  it("transactions in flight: at most the 16-bit tid space (an older one is replaced)", () => {
    const { nodes } = network(1)
    const node = nodes[0]!
    for (let i = 0; i < 70_000; i++) node.core.ping({ host: "66.10.0.1", port: 1 + (i % 60_000) }, {}, () => {}, () => {})
    expect(node.core.io.inflight.size).toBe(65_536)
  })

  /** A query that starts at a (malicious) node whose forged reply names 20 ports of `victim`. */
  const forge = (victim: string) => {
    const { net, nodes } = network(4)
    const q = nodes[1]!
    const sent: Array<Sent> = []
    const transmit = q.core.transmit.bind(q.core)
    q.core.transmit = (socket, to, data, ttl) => {
      sent.push({ to: { host: to.host, port: to.port }, data })
      transmit(socket, to, data, ttl)
    }
    const attacker = { host: "66.11.11.11", port: 6666 }
    const target = noble.blake2b(Uint8Array.of(4, 5, 6))
    const query = q.core.findNode(target, { nodes: [attacker] })
    query.start()
    const toAttacker = () => [...q.core.io.inflight.values()].find((r) => r.to.host === attacker.host && r.sent > 0)
    for (let i = 0; i < 100 && toAttacker() === undefined; i++) net.run(net.now + 10)
    const named = Array.from({ length: 20 }, (_, i) => ({ host: victim, port: 30_000 + i }))
    const forged = orThrow(Rpc.encodeResponse({ tid: toAttacker()!.tid, to: { host: q.host, port: q.serverPort }, id: null, token: null, closerNodes: named, error: 0, value: null }))
    q.core.onDatagram(net.now, SERVER, attacker, forged)
    net.run(net.now + 60_000)
    const ports = new Set(sent.filter((s) => s.to.host === victim).map((s) => s.to.port))
    return { ports: ports.size, capped: query.capped }
  }

  it(`a reply naming 20 ports of one public host: the query contacts ${MAX_QUERY_PORTS_PER_HOST}; of a local host (a testnet): all 20`, () => {
    const pub = forge("99.1.1.1")
    expect(pub.ports).toBe(MAX_QUERY_PORTS_PER_HOST)
    expect(pub.capped).toBeGreaterThanOrEqual(20 - MAX_QUERY_PORTS_PER_HOST)
    const local = forge("10.44.0.1")
    expect(local.ports).toBe(20)
    expect(local.capped).toBe(0)
  })
})

// ---- connections ------------------------------------------------------------------------------

describe("a server's pending handshakes per client host (simulated network)", () => {
  effectIt.effect(`one public client host holds at most ${MAX_PENDING_HANDSHAKES_PER_HOST}; the rest refused and counted; other clients connect`, () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 3, nodes: 6 })
      const sp = yield* sim.addPeer("open", { name: "server" })
      const cp = yield* sim.addPeer("consistent", { name: "client" })
      const server = yield* listen(sp)
      const c = sim.crypto
      const message1 = (i: number): Uint8Array => {
        const kp = c.keyPair(c.blake2b(Uint8Array.of(i >> 8, i & 0xff, 0x77)))!
        const st = Noise.initiator(c, { staticKeyPair: kp, remoteStaticKey: sp.keyPair.publicKey, prologue: sp.conn.ns.PEER_HANDSHAKE })
        const payload = orThrow(encode(C.noisePayload, C.makeNoisePayload({
          error: C.ERROR_NONE, firewall: C.FIREWALL_CONSISTENT, addresses4: [], addresses6: [], udx: { reusableSocket: false, id: 1 + i, seq: 0 }, secretStream: {}
        })))
        return orThrow(Noise.writeMessage1(st, payload))
      }
      const serverAddress = { host: sp.host.ip, port: sp.handle.sockets().server.local.port }
      let answers = 0
      const offer = (host: string, i: number) =>
        server.core.hooks.onHandshake(message1(i), { clientAddress: { host, port: 40_000 + i }, serverAddress, socket: SERVER, direct: false }, (r) => {
          if (r !== null) answers++
        })
      const refused0 = sp.conn.stats.server.refused
      for (let i = 0; i < 100; i++) offer("66.12.12.12", i)
      yield* advance(200, 50)
      assert.strictEqual(server.core.pendingHandshakes("66.12.12.12"), MAX_PENDING_HANDSHAKES_PER_HOST)
      assert.strictEqual(sp.conn.stats.server.refused - refused0, 100 - MAX_PENDING_HANDSHAKES_PER_HOST)
      assert.strictEqual(answers, MAX_PENDING_HANDSHAKES_PER_HOST)
      // another public host is answered, and an honest client connects meanwhile
      offer("66.12.12.13", 1000)
      yield* advance(200, 50)
      assert.strictEqual(answers, MAX_PENDING_HANDSHAKES_PER_HOST + 1)
      const { outcome } = yield* connect(sim, cp, server, { maxMs: 30_000 })
      assert.isTrue(outcome.ok, `the honest dial opened (${outcome.code})`)
      // no client packet came: they time out (10 s), then are forgotten (10 s more)
      yield* advance(25_000, 500)
      assert.strictEqual(server.core.pendingHandshakes("66.12.12.12"), 0)
      assert.isAtMost(server.core.pendingHandshakes(), 1)
    }), { timeout: 30_000 })
})

describe("third parties: punch probes and relayed packets", () => {
  it(`a punch probes at most ${MAX_PUNCH_ADDRESSES} of the peer's addresses, the verified ones first; unverified ones in 2 rounds of 10`, () => {
    const many = Array.from({ length: 100 }, (_, i) => ({ host: `99.2.${i >> 8}.${i & 0xff}`, port: 1000 + i }))
    const list = withVerified([...many, { host: "11.1.1.1", port: 5 }], "11.1.1.1", [])
    expect(list.length).toBe(MAX_PUNCH_ADDRESSES)
    expect(list[0]).toEqual({ host: "11.1.1.1", port: 5, verified: true })
    // a core given the whole list bounds it too
    const addresses: Array<RemoteAddress> = [...many.map((a) => ({ ...a, verified: false })), { host: "11.1.1.1", port: 5, verified: true }]
    const core = new PunchCore({ initiator: true, localFirewall: C.FIREWALL_CONSISTENT, remoteFirewall: C.FIREWALL_CONSISTENT, remoteAddresses: addresses, random: seededRandom(1) })
    expect(core.start(0)).toBe(true)
    const probes: Array<string> = []
    for (let t = 0; t <= 12_000; t += 100) {
      for (let a = core.pollTransmit(t); a !== null; a = core.pollTransmit(t)) if (a._tag === "Probe") probes.push(a.to.host)
    }
    const toVerified = probes.filter((h) => h === "11.1.1.1").length
    expect(toVerified).toBe(10)
    expect(probes.length - toVerified).toBe(2 * (MAX_PUNCH_ADDRESSES - 1))
  })

  it("a blind relay forwards only between the two streams of a pair, and only to a side that has sent", () => {
    const out: Array<{ to: string; id: number }> = []
    const relay = new UdxRelay<string>({ send: (_s, to, data) => out.push({ to: `${to.host}:${to.port}`, id: data[4]! | (data[5]! << 8) }), onClose: () => {} })
    const packet = (id: number) => {
      const b = new Uint8Array(20)
      b[0] = 0xff
      b[1] = 1
      b[2] = 0x01
      b[4] = id & 0xff
      b[5] = id >> 8
      return b
    }
    expect(relay.link({ id: 10, remoteId: 100 }, { id: 11, remoteId: 110 })).toBe(true)
    // an id no pair made is not relayed (left to the next handler)
    expect(relay.handle("s", { from: { host: "99.3.3.3", port: 1 }, data: packet(12) })).toBe(false)
    // A sends before B was seen: nothing goes out (not even to an address A could name)
    expect(relay.handle("s", { from: { host: "99.3.3.4", port: 1 }, data: packet(10) })).toBe(true)
    expect(out).toEqual([])
    // B sends: to A (the sender of stream 10), with A's remote id; then A's packets go to B
    relay.handle("s", { from: { host: "99.3.3.5", port: 2 }, data: packet(11) })
    relay.handle("s", { from: { host: "99.3.3.4", port: 1 }, data: packet(10) })
    expect(out).toEqual([{ to: "99.3.3.4:1", id: 100 }, { to: "99.3.3.5:2", id: 110 }])
    // a third party on the same socket cannot take a side over
    relay.handle("s", { from: { host: "99.9.9.9", port: 9 }, data: packet(10) })
    expect(out.map((o) => o.to)).not.toContain("99.9.9.9:9")
    expect(out.length).toBe(3)
    expect(out[2]).toEqual({ to: "99.3.3.5:2", id: 110 })
  })
})
