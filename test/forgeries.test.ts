/**
 * Forgeries are refused, every one, and counted by cause: forged announce,
 * unannounce and mutable signatures, stale mutable writes, missing, stale
 * and foreign tokens, responses with spoofed transaction ids, and replayed
 * handshake messages. Each kind is sent 100 times (varied), then the test
 * checks that nothing was stored or changed, that no server saw a replay,
 * and that each counter moved by exactly the number sent.
 *
 * On DHT node cores over the discrete-event network of ./support/core-net.ts
 * (seeded, no sockets), plus one run over real UDP on 127.0.0.1 that reads
 * the counters through the facade's `stats`.
 */
import * as dgram from "node:dgram"
import { Result } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { type HyperDht, makeHyperDht } from "../src/actors/routing/hyperdht.js"
import { HANDSHAKE_RETRANSMIT_WINDOW, type ServerHooks } from "../src/actors/routing/router.js"
import { SERVER } from "../src/actors/routing/rpc.js"
import { Gateway } from "../src/index.js"
import { noble } from "../src/layers/crypto/noble.js"
import type { KeyPair } from "../src/layers/crypto/types.js"
import * as C from "../src/protocol/connect.js"
import * as Rpc from "../src/protocol/dht-rpc.js"
import { encode, toHex, uint } from "../src/protocol/encoding.js"
import * as R from "../src/protocol/records.js"
import { CoreNet, type SimNode, seededRandom } from "./support/core-net.js"
import { HOST, onFreePort, tracker, withTimeout } from "./support/live.js"

const N = 100
const orThrow = <A>(r: Result.Result<A, unknown>): A => Result.getOrThrow(r)
const text = (s: string) => new TextEncoder().encode(s)
const keyPairOf = (i: number): KeyPair => noble.keyPair(new Uint8Array(32).fill(i))!
const ns = R.namespaces(noble.blake2b)

interface Sent {
  readonly to: { readonly host: string; readonly port: number }
  readonly data: Uint8Array
}

/** A bootstrapper and 20 persistent HyperDHT nodes on the discrete-event network; `x` is the node under attack. */
const network = () => {
  const net = new CoreNet(seededRandom(33))
  const boot = net.add("10.0.0.1", 49737, { ephemeral: false, firewalled: false, natSample: { host: "10.0.0.1", port: 49737 }, bootstrap: [], onRequest: makeHyperDht(noble).handler })
  boot.core.start(0)
  const hds: Array<HyperDht> = []
  const nodes: Array<SimNode> = []
  for (let i = 0; i < 20; i++) {
    const hd = makeHyperDht(noble)
    const node = net.add(`10.0.1.${i + 1}`, 5000, { ephemeral: false, bootstrap: [{ host: "10.0.0.1", port: 49737 }], onRequest: hd.handler })
    node.core.start(0)
    hds.push(hd)
    nodes.push(node)
  }
  net.run(60_000)
  const x = nodes[0]!
  const hd = hds[0]!
  expect(x.core.id).not.toBeNull()
  const sent: Array<Sent> = []
  const transmit = x.core.transmit.bind(x.core)
  x.core.transmit = (socket, to, data, ttl) => {
    sent.push({ to: { host: to.host, port: to.port }, data: data.slice() })
    transmit(socket, to, data, ttl)
  }
  let tid = 1
  /** One request from `from` to x, handled in one step; the response x sent back (null: none). */
  const call = (from: { host: string; port: number }, m: { token: Uint8Array | null; internal?: boolean; command: number; target: Uint8Array | null; value: Uint8Array | null }): Rpc.Response | null => {
    const data = orThrow(Rpc.encodeRequest({ tid: tid++ & 0xffff, to: { host: x.host, port: x.serverPort }, id: null, internal: false, ...m }))
    const at = sent.length
    x.core.onDatagram(net.now, SERVER, from, data)
    for (const s of sent.slice(at)) {
      if (s.data[0] !== Rpc.RESPONSE_ID || s.to.host !== from.host) continue
      const d = orThrow(Rpc.decodeMessage(s.data))
      if (d._tag === "Response") return d.response
    }
    return null
  }
  /** A token of x for `from`'s address, as a client gets one (a read first). */
  const tokenFor = (from: { host: string; port: number }): Uint8Array =>
    call(from, { token: null, command: R.Command.IMMUTABLE_GET, target: new Uint8Array(32), value: null })!.token!
  return { net, nodes, x, hd, sent, call, tokenFor }
}

const peerOf = (kp: KeyPair) => ({ publicKey: kp.publicKey, relayAddresses: [{ host: "10.0.7.1", port: 7001 }] })
const signAnnounce = (topic: Uint8Array, nodeId: Uint8Array, token: Uint8Array, kp: KeyPair, signer: KeyPair, namespace: Uint8Array) => {
  const signable = orThrow(R.annSignable(noble.blake2b, topic, nodeId, token, orThrow(encode(R.peer, peerOf(kp))), null, namespace))
  return orThrow(encode(R.announce, { peer: peerOf(kp), refresh: null, signature: noble.sign(signable, signer.secretKey)!, bump: 0 }))
}
const flip = (b: Uint8Array, i: number): Uint8Array => {
  const c = b.slice()
  c[i] = c[i]! ^ 0x01
  return c
}
const mutablePut = (kp: KeyPair, seq: number, value: Uint8Array, signer: KeyPair = kp) =>
  orThrow(encode(R.mutablePutRequest, { publicKey: kp.publicKey, seq, value, signature: noble.sign(orThrow(R.mutableSignable64(noble.blake2b, seq, value)), signer.secretKey)! }))

describe("forgeries on DHT node cores: 100% refused, each kind counted", () => {
  it("forged ANNOUNCE / UNANNOUNCE / MUTABLE_PUT signatures (other key, other node, other token, other namespace, flipped bits)", () => {
    const { x, hd, call, tokenFor } = network()
    const client = { host: "10.0.5.1", port: 5555 }
    const owner = keyPairOf(1)
    const mallory = keyPairOf(2)
    const other = toBytes32(77)
    const topic = noble.blake2b(text("forged topic"))
    const stats = hd.stats
    const before = structuredClone(stats)
    const id = x.core.id!
    // a real record to attack with forged unannounces
    const t0 = tokenFor(client)
    expect(call(client, { token: t0, command: R.Command.ANNOUNCE, target: topic, value: signAnnounce(topic, id, t0, owner, owner, ns.ANNOUNCE) })?.error).toBe(0)
    const stored = () => hd.store()!.records.get(toHex(topic), 100, x.core.time, () => 0.5).length

    let replies = 0
    for (let i = 0; i < N; i++) {
      const token = tokenFor(client)
      const kp = keyPairOf(10 + i)
      // five kinds in turn: another key's signature, signed for another node, for another token, in the UNANNOUNCE namespace, a flipped bit
      const valid = signAnnounce(topic, id, token, kp, kp, ns.ANNOUNCE)
      const value = [
        signAnnounce(topic, id, token, kp, mallory, ns.ANNOUNCE),
        signAnnounce(topic, other, token, kp, kp, ns.ANNOUNCE),
        signAnnounce(topic, id, other, kp, kp, ns.ANNOUNCE),
        signAnnounce(topic, id, token, kp, kp, ns.UNANNOUNCE),
        flip(valid, valid.length - 1 - (i % 64))
      ][i % 5]!
      if (call(client, { token, command: R.Command.ANNOUNCE, target: topic, value }) !== null) replies++
    }
    for (let i = 0; i < N; i++) {
      const token = tokenFor(client)
      const value = [
        signAnnounce(topic, id, token, owner, mallory, ns.UNANNOUNCE),
        signAnnounce(topic, id, token, owner, owner, ns.ANNOUNCE),
        signAnnounce(topic, other, token, owner, owner, ns.UNANNOUNCE),
        flip(signAnnounce(topic, id, token, owner, owner, ns.UNANNOUNCE), 40 + (i % 32))
      ][i % 4]!
      if (call(client, { token, command: R.Command.UNANNOUNCE, target: topic, value }) !== null) replies++
    }
    const key = keyPairOf(3)
    const target = noble.blake2b(key.publicKey)
    for (let i = 0; i < N; i++) {
      const token = tokenFor(client)
      const v = text(`value ${i}`)
      const good = mutablePut(key, i + 1, v)
      const value = [mutablePut(key, i + 1, v, mallory), flip(good, good.length - 1 - (i % 64)), flip(good, 34)][i % 3]!
      if (call(client, { token, command: R.Command.MUTABLE_PUT, target, value }) !== null) replies++
    }
    expect(replies).toBe(0) // refused silently, as the reference does
    expect(stats.rejections.badAnnounceSignature - before.rejections.badAnnounceSignature).toBe(N)
    expect(stats.rejections.badUnannounceSignature - before.rejections.badUnannounceSignature).toBe(N)
    expect(stats.rejections.badMutableSignature - before.rejections.badMutableSignature).toBe(N)
    expect(stats.rejected - before.rejected).toBe(3 * N)
    expect(stats.announces - before.announces).toBe(1) // the real one only
    expect(stats.unannounces + stats.mutablePuts - before.unannounces - before.mutablePuts).toBe(0)
    expect(stored()).toBe(1)
    expect(hd.store()!.mutables.get(toHex(target), x.core.time)).toBeUndefined()
  })

  it("stale mutable writes: lower seq (SEQ_TOO_LOW) and the same seq with another value (SEQ_REUSED)", () => {
    const { x, hd, call, tokenFor } = network()
    const client = { host: "10.0.5.2", port: 5555 }
    const key = keyPairOf(4)
    const target = noble.blake2b(key.publicKey)
    const put = (seq: number, v: string) => {
      const token = tokenFor(client)
      return call(client, { token, command: R.Command.MUTABLE_PUT, target, value: mutablePut(key, seq, text(v)) })
    }
    expect(put(1000, "current")?.error).toBe(0)
    const storedBytes = hd.store()!.mutables.get(toHex(target), x.core.time)!
    const before = structuredClone(hd.stats)
    for (let i = 0; i < N; i++) {
      const r = i % 2 === 0 ? put(i, `old ${i}`) : put(1000, `rewrite ${i}`)
      expect(r?.error).toBe(i % 2 === 0 ? R.ErrorCode.SEQ_TOO_LOW : R.ErrorCode.SEQ_REUSED)
    }
    expect(hd.stats.seqTooLow - before.seqTooLow).toBe(N / 2)
    expect(hd.stats.seqReused - before.seqReused).toBe(N / 2)
    expect(hd.stats.mutablePuts - before.mutablePuts).toBe(0)
    expect(hd.store()!.mutables.get(toHex(target), x.core.time)).toEqual(storedBytes)
  })

  it("missing, stale and foreign tokens on every write command", () => {
    const { net, x, hd, call, tokenFor } = network()
    const client = { host: "10.0.5.3", port: 5555 }
    const neighbour = { host: "10.0.5.4", port: 5555 }
    const kp = keyPairOf(5)
    const topic = noble.blake2b(text("token topic"))
    const value = text("immutable")
    const writes = (token: Uint8Array | null, i: number) => {
      const t = token ?? new Uint8Array(32)
      const id = x.core.id!
      return [
        { command: R.Command.ANNOUNCE, target: topic, value: signAnnounce(topic, id, t, kp, kp, ns.ANNOUNCE) },
        { command: R.Command.UNANNOUNCE, target: topic, value: signAnnounce(topic, id, t, kp, kp, ns.UNANNOUNCE) },
        { command: R.Command.MUTABLE_PUT, target: noble.blake2b(kp.publicKey), value: mutablePut(kp, i + 1, text(`v${i}`)) },
        { command: R.Command.IMMUTABLE_PUT, target: noble.blake2b(value), value }
      ][i % 4]!
    }
    const rpcBefore = { ...x.core.io.stats }
    const before = structuredClone(hd.stats)
    // missing: silently refused
    for (let i = 0; i < N; i++) expect(call(client, { token: null, ...writes(null, i) })).toBeNull()
    expect(hd.stats.rejections.missingToken - before.rejections.missingToken).toBe(N)
    // stale: a token of ours for this address, two secret rotations old (answered INVALID_TOKEN)
    const stale = Array.from({ length: 4 }, () => tokenFor(client))
    net.run(net.now + 16_000)
    for (let i = 0; i < N; i++) expect(call(client, { token: stale[i % 4]!, ...writes(stale[i % 4]!, i) })?.error).toBe(Rpc.RpcErrorCode.INVALID_TOKEN)
    // foreign: a fresh token issued to another address, or made up
    const foreign = tokenFor(neighbour)
    for (let i = 0; i < N; i++) {
      const token = i % 2 === 0 ? foreign : noble.blake2b(Uint8Array.of(i))
      expect(call(client, { token, ...writes(token, i) })?.error).toBe(Rpc.RpcErrorCode.INVALID_TOKEN)
    }
    expect(x.core.io.stats.invalidTokens - rpcBefore.invalidTokens).toBe(2 * N)
    expect(hd.stats.announces + hd.stats.unannounces + hd.stats.mutablePuts + hd.stats.immutablePuts).toBe(0)
    expect(hd.store()!.records.has(toHex(topic), toHex(kp.publicKey), x.core.time)).toBe(false)
    expect(hd.store()!.immutables.get(toHex(noble.blake2b(value)), x.core.time)).toBeUndefined()
    // control: the same write with a fresh token of its own is stored
    const fresh = tokenFor(client)
    expect(call(client, { token: fresh, ...writes(fresh, 3) })?.error).toBe(0)
  })

  it("responses with spoofed transaction ids complete nothing and are counted", () => {
    const { net, nodes, x } = network()
    // requests in flight from x to a silent address
    const silent = { host: "10.0.6.6", port: 6666 }
    const outcomes: Array<string> = []
    for (let i = 0; i < 5; i++) x.core.ping(silent, {}, () => outcomes.push("response"), (e) => outcomes.push(e.code))
    const live = new Set([...x.core.io.inflight.keys()])
    const before = x.core.io.stats.unmatched
    const tableBefore = x.core.table.size
    let sent = 0
    for (let tid = 0; sent < N; tid = (tid + 7919) & 0xffff) {
      if (live.has(tid)) continue
      const from = sent % 2 === 0 ? silent : { host: `10.0.6.${7 + (sent % 50)}`, port: 6000 + sent }
      const data = orThrow(Rpc.encodeResponse({ tid, to: { host: x.host, port: x.serverPort }, id: Rpc.nodeId(noble.blake2b, from.host, from.port), token: null, closerNodes: [{ host: "10.0.6.200", port: 1 }], error: 0, value: null }))
      x.core.onDatagram(net.now, SERVER, from, data)
      sent++
    }
    expect(x.core.io.stats.unmatched - before).toBe(N)
    expect(outcomes).toEqual([])
    expect(x.core.table.size).toBe(tableBefore) // no spoofed sender entered the table
    net.run(net.now + 10_000)
    expect(outcomes).toEqual(Array(5).fill("REQUEST_TIMEOUT"))
    void nodes
  })

  it(`replayed handshakes: copies within ${HANDSHAKE_RETRANSMIT_WINDOW / 1000} s of the answer reach the server (retransmits), later ones are dropped and counted`, () => {
    const { net, nodes, x, hd, sent } = network()
    const serverKey = keyPairOf(9)
    const target = noble.blake2b(serverKey.publicKey)
    // a server on x that answers each message 1 once and remembers it for 10 s, as ServerCore does
    const handshakes = new Map<string, number>()
    let accepted = 0
    let duplicates = 0
    const hooks: ServerHooks = {
      onHandshake: (noise, _info, respond) => {
        const k = toHex(noise)
        const seen = handshakes.get(k)
        if (seen !== undefined && x.core.time - seen <= 10_000) duplicates++
        else {
          handshakes.set(k, x.core.time)
          accepted++
        }
        respond({ value: noble.blake2b(noise) })
      },
      onHolepunch: (_id, _payload, _info, respond) => respond(null)
    }
    expect(hd.router.addServer(target, hooks)).toBe(true)
    const client = { host: "10.0.5.9", port: 5999 }
    const relay = nodes[4]!
    const messages = Array.from({ length: 10 }, (_, i) => noble.blake2b(Uint8Array.of(i), 64).slice(0, 64))
    let tid = 1
    const deliver = (noise: Uint8Array, i: number) => {
      // half straight from the client, half as a relay's FROM_RELAY
      const viaRelay = i % 2 === 1
      const value = orThrow(encode(C.handshake, viaRelay
        ? { mode: C.FROM_RELAY, noise, peerAddress: client, relayAddress: null }
        : { mode: C.FROM_CLIENT, noise, peerAddress: null, relayAddress: null }))
      const data = orThrow(Rpc.encodeRequest({ tid: tid++, to: { host: x.host, port: x.serverPort }, id: null, token: null, internal: false, command: R.Command.PEER_HANDSHAKE, target, value }))
      const at = sent.length
      x.core.onDatagram(net.now, SERVER, viaRelay ? { host: relay.host, port: relay.serverPort } : client, data)
      return sent.length - at
    }
    const before = { ...hd.router.stats }
    // the originals, then retransmits within the window: answered, one handshake each
    let answers = 0
    for (const [i, m] of messages.entries()) answers += deliver(m, i)
    net.run(net.now + HANDSHAKE_RETRANSMIT_WINDOW / 2)
    for (let i = 0; i < 30; i++) answers += deliver(messages[i % 10]!, i)
    expect(answers).toBe(40)
    expect(accepted).toBe(10)
    expect(duplicates).toBe(30)
    // later: every copy is a replay
    net.run(net.now + HANDSHAKE_RETRANSMIT_WINDOW)
    let replayAnswers = 0
    for (let i = 0; i < N; i++) replayAnswers += deliver(messages[i % 10]!, i)
    net.run(net.now + 20 * 60_000) // still refused long after the server forgot them
    for (let i = 0; i < N; i++) replayAnswers += deliver(messages[i % 10]!, i)
    expect(replayAnswers).toBe(0)
    expect(accepted).toBe(10)
    expect(duplicates).toBe(30)
    expect(hd.router.stats.handshakeReplays - before.handshakeReplays).toBe(2 * N)
    expect(hd.router.stats.serverHandshakes - before.serverHandshakes).toBe(40)
    // a new message 1 is served as ever
    expect(deliver(noble.blake2b(text("fresh"), 64), 0)).toBe(1)
    expect(accepted).toBe(11)
  })
})

const toBytes32 = (i: number) => new Uint8Array(32).fill(i)

// ---- the facade's counters, over real UDP ------------------------------------------------------

const { track, destroyAll } = tracker()
afterEach(destroyAll)

describe("forgeries over UDP on 127.0.0.1: the counters in Gateway#stats", () => {
  it("made-up tokens, missing tokens, unknown tids: each counted once per datagram", async () => {
    const { node, port } = await onFreePort("bootstrapper", (p) => Gateway.bootstrapper(p, HOST, { host: HOST }), track)
    await node.ready()
    const sock = dgram.createSocket("udp4")
    await new Promise<void>((r) => sock.bind(0, HOST, () => r()))
    let replies = 0
    sock.on("message", () => replies++)
    const to = { host: HOST, port }
    const sendAll = async (datagrams: Array<Uint8Array>) => {
      for (const d of datagrams) await new Promise<void>((r) => sock.send(d, port, HOST, () => r()))
    }
    const K = 20
    const topic = noble.blake2b(text("udp"))
    const req = (tid: number, token: Uint8Array | null, command: number) =>
      orThrow(Rpc.encodeRequest({ tid, to, id: null, token, internal: false, command, target: topic, value: Uint8Array.of(1, 2, 3) }))
    await sendAll(Array.from({ length: K }, (_, i) => req(i, noble.blake2b(Uint8Array.of(i)), R.Command.ANNOUNCE)))
    await sendAll(Array.from({ length: K }, (_, i) => req(100 + i, null, [R.Command.ANNOUNCE, R.Command.UNANNOUNCE, R.Command.MUTABLE_PUT, R.Command.IMMUTABLE_PUT][i % 4]!)))
    await sendAll(Array.from({ length: K }, (_, i) =>
      orThrow(Rpc.encodeResponse({ tid: (40_000 + i * 13) & 0xffff, to, id: null, token: null, closerNodes: [], error: 0, value: null }))))
    const g = node as Gateway
    const done = () => {
      const s = g.stats
      return s.rpc!.invalidTokens >= K && s.records!.rejections.missingToken >= K && s.rpc!.unmatched >= K
    }
    await withTimeout((async () => {
      while (!done()) await new Promise((r) => setTimeout(r, 20))
    })(), 5000, "counters")
    const s = g.stats
    expect(s.rpc).toMatchObject({ invalidTokens: K, unmatched: K })
    expect(s.records!.rejections.missingToken).toBe(K)
    expect(s.records!.rejected).toBe(K)
    expect(s.router!.handshakeReplays).toBe(0)
    expect(replies).toBe(K) // one INVALID_TOKEN answer each; nothing else answered
    sock.close()
  })
})
