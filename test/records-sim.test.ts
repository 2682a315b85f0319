/**
 * HyperDHT records on the simulated network and TestClock (Must-show of the
 * records work, hyperdht-records.md §5–§7): every node is a full HyperDHT
 * node (`makeGateway`: dht-rpc node actor + records handler) on its own
 * simulated host; datagrams above 2048 bytes are dropped as on the real
 * network. Deterministic: seeded network, seeded nodes, virtual time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Result, Stream } from "effect"
import type { DhtNode } from "../src/actors/routing/node.js"
import type { IncomingRequest } from "../src/actors/routing/rpc.js"
import { makeHyperDht, HyperDhtStore } from "../src/actors/routing/hyperdht.js"
import type { GatewayConfig } from "../src/api/GatewayService.js"
import * as Records from "../src/api/records.js"
import { makeFast } from "../src/layers/crypto/fast.js"
import type { CryptoImpl, KeyPair } from "../src/layers/crypto/types.js"
import { nodeId } from "../src/protocol/dht-rpc.js"
import { encode, equalBytes, toHex, uint } from "../src/protocol/encoding.js"
import * as R from "../src/protocol/records.js"
import {
  advance,
  announceHolders,
  buildRecordsNetwork,
  drive,
  type RecordsNet,
  type RecordsNode,
  run,
  statSum
} from "./support/records-sim.js"

const N = 40
const MIN = 60_000
const NET = { maxDatagramSize: 2048 } as const

const text = (s: string): Uint8Array => new TextEncoder().encode(s)
const str = (b: Uint8Array): string => new TextDecoder().decode(b)
const keyPairOf = (crypto: CryptoImpl, i: number): KeyPair => crypto.keyPair(new Uint8Array(32).fill(i))!
const topicOf = (crypto: CryptoImpl, name: string): Uint8Array => crypto.blake2b(text(name))

/** A 40-node persistent network, settled for one minute. */
const network = (seed: number, node: GatewayConfig = {}) =>
  Effect.gen(function*() {
    const crypto = yield* Effect.promise(() => makeFast())
    const dht = yield* buildRecordsNetwork(crypto, N, { node: { ephemeral: false, ...node }, boot: node, joinEvery: 50, seed, net: NET })
    yield* advance(60_000)
    assert.strictEqual(dht.nodes.filter((n) => n.handle.core.bootstrapped).length, N + 1)
    return dht
  })

const distance = (target: Uint8Array) => (a: Uint8Array, b: Uint8Array): number => {
  for (let i = 0; i < 32; i++) {
    const x = a[i]! ^ target[i]!
    const y = b[i]! ^ target[i]!
    if (x !== y) return x - y
  }
  return 0
}

/** The k persistent nodes closest to target by XOR (brute force), excluding `self`. */
const trueClosest = (dht: RecordsNet, target: Uint8Array, self: RecordsNode | null, k = 20): Array<string> =>
  dht.nodes.filter((n) => n !== self).map((n) => n.id).sort(distance(target)).slice(0, k).map(toHex)

const byAddress = (dht: RecordsNet, a: { readonly host: string; readonly port: number }): RecordsNode =>
  dht.nodes.find((n) => n.ip === a.host && n.port === a.port)!

const lookupAll = (from: RecordsNode, topic: Uint8Array) => run(Stream.runCollect(Records.lookup(from.handle, topic)))

/** Public keys (hex) of every peer in a set of lookup replies. */
const peerKeys = (results: ReadonlyArray<Records.LookupResult>): Set<string> => new Set(results.flatMap((r) => r.peers.map((p) => toHex(p.publicKey))))

/**
 * A direct request from `from` to `to`, driven on the TestClock: one attempt
 * with a 400 ms timeout (round trips are 40-60 ms), so a run of silently
 * dropped requests stays well inside a token's 7.5-15 s lifetime.
 */
const request = (
  from: RecordsNode,
  to: RecordsNode,
  args: { readonly token?: Uint8Array | null; readonly command: number; readonly target?: Uint8Array | null; readonly value?: Uint8Array | null },
  retry = false
) => drive(from.handle.request(args, { host: to.ip, port: to.port }, retry ? { retry } : { retry, timeout: 400 }), { maxMs: 30_000 })

/** A fresh token `to` issued to `from`'s IP (any reply of a persistent node carries one). */
const tokenFor = (from: RecordsNode, to: RecordsNode) =>
  Effect.gen(function*() {
    const exit = yield* request(from, to, { command: R.Command.IMMUTABLE_GET, target: new Uint8Array(32) }, true)
    if (!Exit.isSuccess(exit)) return assert.fail("token request not answered")
    assert.isNotNull(exit.value.token)
    return exit.value.token!
  })

const signAnnounce = (crypto: CryptoImpl, ns: Uint8Array, topic: Uint8Array, node: Uint8Array, token: Uint8Array, kp: KeyPair, signer: KeyPair = kp, relays: ReadonlyArray<{ host: string; port: number }> = []) => {
  const peerBytes = Result.getOrThrow(encode(R.peer, { publicKey: kp.publicKey, relayAddresses: relays }))
  const signable = Result.getOrThrow(R.annSignable(crypto.blake2b, topic, node, token, peerBytes, null, ns))
  const signature = crypto.sign(signable, signer.secretKey)!
  return Result.getOrThrow(encode(R.announce, { peer: { publicKey: kp.publicKey, relayAddresses: relays }, refresh: null, signature, bump: 0 }))
}

const mutablePutValue = (crypto: CryptoImpl, kp: KeyPair, seq: number, value: Uint8Array, signer: KeyPair = kp): Uint8Array => {
  const signature = crypto.sign(Result.getOrThrow(R.mutableSignable64(crypto.blake2b, seq, value)), signer.secretKey)!
  return Result.getOrThrow(encode(R.mutablePutRequest, { publicKey: kp.publicKey, seq, value, signature }))
}

const flipBit = (b: Uint8Array, i: number): Uint8Array => {
  const c = b.slice()
  c[i] = c[i]! ^ 0x01
  return c
}

const expectTimeout = (exit: Exit.Exit<unknown, unknown>, what: string) => {
  assert.isTrue(Exit.isFailure(exit), `${what}: expected no reply (silent drop)`)
  const err = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
  assert.strictEqual((err as { error?: { code?: string } } | undefined)?.error?.code, "REQUEST_TIMEOUT", what)
}

const expectError = (exit: Exit.Exit<{ readonly error: number; readonly token: Uint8Array | null }, unknown>, code: number, what: string) => {
  assert.isTrue(Exit.isSuccess(exit), `${what}: expected a reply`)
  if (Exit.isSuccess(exit)) assert.strictEqual(exit.value.error, code, what)
}

// ---- announce / lookup / unannounce -------------------------------------------------------

describe("records on the simulated network: announce, lookup, unannounce", () => {
  it.effect("announce from one node lands on the 20 closest nodes; lookups from other nodes find it with its relay addresses", () =>
    Effect.gen(function*() {
      const dht = yield* network(1)
      const crypto = dht.crypto
      const topic = topicOf(crypto, "records-sim topic 1")
      const kp = keyPairOf(crypto, 1)
      const relays = [{ host: "20.9.9.1", port: 1001 }, { host: "20.9.9.2", port: 1002 }, { host: "20.9.9.3", port: 1003 }, { host: "20.9.9.4", port: 1004 }]
      const announcer = dht.nodes[3]!
      const res = yield* run(Records.announce(announcer.handle, topic, kp, relays))
      // the commit went to the k = 20 closest persistent nodes, all accepted
      assert.strictEqual(res.closestNodes.length, 20)
      assert.strictEqual(res.accepted, 20)
      assert.deepStrictEqual([res.seqReused, res.seqTooLow, res.otherErrors, res.failed], [0, 0, 0, 0])
      assert.deepStrictEqual(res.closestNodes.map((n) => toHex(n.id!)).sort(), trueClosest(dht, topic, announcer).sort())
      // nothing was announced before: the lookup part of the announce saw no peers
      assert.strictEqual(res.replies.length, 0)
      // exactly those 20 nodes store the record
      assert.strictEqual(yield* announceHolders(dht.nodes, toHex(topic), toHex(kp.publicKey)), 20)
      for (const n of res.closestNodes) {
        const holder = byAddress(dht, n)
        assert.isTrue(holder.handle.hyperdht.store()!.records.has(toHex(topic), toHex(kp.publicKey), yield* holder.handle.run((_n, t) => t)))
      }
      assert.strictEqual(statSum(dht.nodes, "announces"), 20)

      for (const from of [dht.nodes[17]!, dht.nodes[33]!, dht.nodes[0]!]) {
        const found = yield* lookupAll(from, topic)
        // every holder the lookup visited returns the record (the querier excludes itself)
        assert.isAtLeast(found.length, 19)
        for (const r of found) {
          assert.strictEqual(r.peers.length, 1)
          assert.strictEqual(toHex(r.peers[0]!.publicKey), toHex(kp.publicKey))
          // relay addresses: the first 3 (the storing node truncates to 3)
          assert.deepStrictEqual(r.peers[0]!.relayAddresses, relays.slice(0, 3))
          assert.strictEqual(r.bump, 0)
          assert.isNotNull(r.token)
          assert.isTrue(res.closestNodes.some((n) => n.host === r.from.host && n.port === r.from.port), "reply from a holder")
        }
      }

      // a second peer on the same topic: lookups return both
      const kp2 = keyPairOf(crypto, 2)
      const res2 = yield* run(Records.announce(dht.nodes[9]!.handle, topic, kp2, [{ host: "20.9.9.9", port: 9 }]))
      assert.strictEqual(res2.accepted, 20)
      // its lookup phase already saw the first peer
      assert.isTrue(peerKeys(res2.replies).has(toHex(kp.publicKey)))
      const both = yield* lookupAll(dht.nodes[25]!, topic)
      assert.deepStrictEqual([...peerKeys(both)].sort(), [toHex(kp.publicKey), toHex(kp2.publicKey)].sort())

      // an unrelated topic finds nothing
      assert.strictEqual((yield* lookupAll(dht.nodes[25]!, topicOf(crypto, "nobody here"))).length, 0)
    }), { timeout: 60_000 })

  it.effect("a server-style announce under hash(publicKey) is answered by findPeer and by lookup of that target", () =>
    Effect.gen(function*() {
      const dht = yield* network(2)
      const crypto = dht.crypto
      const kp = keyPairOf(crypto, 7)
      const target = crypto.blake2b(kp.publicKey)
      const res = yield* run(Records.announce(dht.nodes[5]!.handle, target, kp, [{ host: "20.7.7.7", port: 7777 }]))
      assert.strictEqual(res.accepted, 20)
      // announceSelf goes to the router, not to the topic records
      assert.strictEqual(yield* announceHolders(dht.nodes, toHex(target), toHex(kp.publicKey)), 0)
      const peers = yield* run(Stream.runCollect(Records.findPeer(dht.nodes[30]!.handle, kp.publicKey)))
      assert.isAtLeast(peers.length, 19)
      for (const p of peers) {
        assert.strictEqual(toHex(p.peer.publicKey), toHex(kp.publicKey))
        assert.deepStrictEqual(p.peer.relayAddresses, [{ host: "20.7.7.7", port: 7777 }])
      }
      const viaLookup = yield* lookupAll(dht.nodes[30]!, target)
      assert.isAtLeast(viaLookup.length, 19)
      assert.deepStrictEqual([...peerKeys(viaLookup)], [toHex(kp.publicKey)])
    }), { timeout: 60_000 })

  it.effect("unannounce (from any node, signed by the peer's key) removes the record everywhere; a later lookup finds nothing", () =>
    Effect.gen(function*() {
      const dht = yield* network(3)
      const crypto = dht.crypto
      const topic = topicOf(crypto, "records-sim topic 3")
      const a = keyPairOf(crypto, 31)
      const b = keyPairOf(crypto, 32)
      assert.strictEqual((yield* run(Records.announce(dht.nodes[3]!.handle, topic, a, [{ host: "20.3.3.1", port: 1 }]))).accepted, 20)
      assert.strictEqual((yield* run(Records.announce(dht.nodes[4]!.handle, topic, b, [{ host: "20.3.3.2", port: 2 }]))).accepted, 20)
      assert.strictEqual(peerKeys(yield* lookupAll(dht.nodes[20]!, topic)).size, 2)

      // A leaves, unannouncing from another host (tokens are per IP; the signature binds node id + token)
      const removed = yield* run(Records.unannounce(dht.nodes[6]!.handle, topic, a))
      assert.strictEqual(removed, 20)
      assert.strictEqual(statSum(dht.nodes, "unannounces"), 20)
      assert.strictEqual(yield* announceHolders(dht.nodes, toHex(topic), toHex(a.publicKey)), 0)
      assert.strictEqual(yield* announceHolders(dht.nodes, toHex(topic), toHex(b.publicKey)), 20)
      const afterA = yield* lookupAll(dht.nodes[20]!, topic)
      assert.isAtLeast(afterA.length, 19)
      assert.deepStrictEqual([...peerKeys(afterA)], [toHex(b.publicKey)])

      // B leaves from its own node: the lookup finds no peer at all
      assert.strictEqual(yield* run(Records.unannounce(dht.nodes[4]!.handle, topic, b)), 20)
      assert.strictEqual((yield* lookupAll(dht.nodes[20]!, topic)).length, 0)
      assert.strictEqual((yield* lookupAll(dht.nodes[37]!, topic)).length, 0)
      // unannouncing again finds no holder
      assert.strictEqual(yield* run(Records.unannounce(dht.nodes[4]!.handle, topic, b)), 0)

      // announce with clear: true replaces the relays on every holder
      assert.strictEqual((yield* run(Records.announce(dht.nodes[3]!.handle, topic, a, [{ host: "20.3.3.1", port: 1 }]))).accepted, 20)
      assert.strictEqual((yield* run(Records.announce(dht.nodes[3]!.handle, topic, a, [{ host: "20.3.3.9", port: 9 }], { clear: true }))).accepted, 20)
      const moved = yield* lookupAll(dht.nodes[20]!, topic)
      assert.isAtLeast(moved.length, 19)
      for (const r of moved) assert.deepStrictEqual(r.peers.map((p) => p.relayAddresses), [[{ host: "20.3.3.9", port: 9 }]])
    }), { timeout: 60_000 })

  it.effect("unannounce run on a node that itself holds the record removes its own copy too (the reference's lookupAndUnannounce unlinks self)", () =>
    Effect.gen(function*() {
      const dht = yield* network(13)
      const crypto = dht.crypto
      const topic = topicOf(crypto, "records-sim topic 13")
      const kp = keyPairOf(crypto, 131)
      const res = yield* run(Records.announce(dht.nodes[3]!.handle, topic, kp, [{ host: "20.13.0.1", port: 13 }]))
      assert.strictEqual(res.accepted, 20)
      // the peer moves to a node that is one of the 20 holders and unannounces from there
      const holder = byAddress(dht, res.closestNodes[0]!)
      const removed = yield* run(Records.unannounce(holder.handle, topic, kp))
      assert.strictEqual(removed, 19)
      assert.strictEqual(yield* announceHolders(dht.nodes, toHex(topic), toHex(kp.publicKey)), 0, "the unannouncing holder kept its own copy")
      assert.strictEqual((yield* lookupAll(dht.nodes[30]!, topic)).length, 0)
      // the same for announce with clear: true run on a holder
      assert.strictEqual((yield* run(Records.announce(dht.nodes[3]!.handle, topic, kp, [{ host: "20.13.0.1", port: 13 }]))).accepted, 20)
      assert.strictEqual((yield* run(Records.announce(holder.handle, topic, kp, [{ host: "20.13.0.2", port: 26 }], { clear: true }))).accepted, 20)
      const after = yield* lookupAll(dht.nodes[30]!, topic)
      assert.isAtLeast(after.length, 19)
      for (const r of after) assert.deepStrictEqual(r.peers[0]!.relayAddresses, [{ host: "20.13.0.2", port: 26 }], `stale relays from ${r.from.host}`)
    }), { timeout: 60_000 })
})

// ---- expiry ---------------------------------------------------------------------------------

describe("records on the simulated network: expiry (2/3 .. 4/3 of maxAge after the last write)", () => {
  it.effect("announce records (maxAge 20 min): present at 13 min, gone at 27 min without a re-announce; a re-announce at 20 min keeps them at 27 min, gone 27 min after it", () =>
    Effect.gen(function*() {
      const dht = yield* network(4)
      const crypto = dht.crypto
      const once = topicOf(crypto, "expiry: announced once")
      const again = topicOf(crypto, "expiry: re-announced")
      const kp = keyPairOf(crypto, 41)
      const announcer = dht.nodes[2]!
      const reader = dht.nodes[22]!
      const holders = (topic: Uint8Array) => announceHolders(dht.nodes, toHex(topic), toHex(kp.publicKey))
      assert.strictEqual((yield* run(Records.announce(announcer.handle, once, kp))).accepted, 20)
      assert.strictEqual((yield* run(Records.announce(announcer.handle, again, kp))).accepted, 20)
      // 13 min < 2/3 * 20 min: every holder still has both (LOOKUP reads do not refresh a record)
      yield* advance(13 * MIN, 5000)
      assert.strictEqual(yield* holders(once), 20)
      assert.strictEqual(yield* holders(again), 20)
      assert.isAtLeast((yield* lookupAll(reader, once)).length, 19)
      // re-announce one of them at 20 min (it may or may not still be stored by then)
      yield* advance(7 * MIN, 5000)
      assert.strictEqual((yield* run(Records.announce(announcer.handle, again, kp))).accepted, 20)
      // 27 min > 4/3 * 20 min after the only announce: gone from every node
      yield* advance(7 * MIN, 5000)
      assert.strictEqual(yield* holders(once), 0)
      assert.strictEqual((yield* lookupAll(reader, once)).length, 0)
      // the re-announced one is 7 min old: everywhere
      assert.strictEqual(yield* holders(again), 20)
      assert.isAtLeast((yield* lookupAll(reader, again)).length, 19)
      // 13 min after the re-announce still there, 27 min after it gone
      yield* advance(6 * MIN, 5000)
      assert.strictEqual(yield* holders(again), 20)
      yield* advance(14 * MIN, 5000)
      assert.strictEqual(yield* holders(again), 0)
      assert.strictEqual((yield* lookupAll(reader, again)).length, 0)
    }), { timeout: 60_000 })

  it.effect("mutable and immutable records with maxAge 3 min from the gateway config: present at 2/3 - 5 s, gone at 4/3 + 5 s", () =>
    Effect.gen(function*() {
      const maxAge = 3 * MIN
      const dht = yield* network(5, { maxAge })
      const crypto = dht.crypto
      const writer = dht.nodes[4]!
      const reader = dht.nodes[28]!
      // two records of each kind: the first is read at the lower bound (a read promotes a
      // mutable/immutable record, so the upper bound is checked on the second, never read)
      const m1 = keyPairOf(crypto, 51)
      const m2 = keyPairOf(crypto, 52)
      const v1 = text("immutable one")
      const v2 = text("immutable two")
      const t0 = yield* writer.handle.run((_n, t) => t)
      assert.strictEqual((yield* run(Records.mutablePut(writer.handle, m1, text("m1"), { seq: 1 }))).accepted, 20)
      assert.strictEqual((yield* run(Records.mutablePut(writer.handle, m2, text("m2"), { seq: 1 }))).accepted, 20)
      const h1 = (yield* run(Records.immutablePut(writer.handle, v1))).hash
      const h2 = (yield* run(Records.immutablePut(writer.handle, v2))).hash
      const t1 = yield* writer.handle.run((_n, t) => t)
      assert.isBelow(t1 - t0, 10_000)
      // lower bound: 2/3 * maxAge = 120 s after the last write, minus 5 s
      yield* advance(t0 + (2 / 3) * maxAge - 5000 - t1, 1000)
      const g1 = yield* run(Records.mutableGet(reader.handle, m1.publicKey))
      assert.strictEqual(g1?.seq, 1)
      assert.strictEqual(str(g1!.value), "m1")
      assert.strictEqual(str((yield* run(Records.immutableGet(reader.handle, h1)))!.value), "immutable one")
      // upper bound: 4/3 * maxAge = 240 s after the first write, plus 5 s
      const t2 = yield* writer.handle.run((_n, t) => t)
      yield* advance(t1 + (4 / 3) * maxAge + 5000 - t2, 1000)
      assert.isNull(yield* run(Records.mutableGet(reader.handle, m2.publicKey)))
      assert.isNull(yield* run(Records.immutableGet(reader.handle, h2)))
      // and announce records follow the same maxAge (checked at 4/3 + 5 s on an unread record)
      const topic = topicOf(crypto, "short-lived")
      const kp = keyPairOf(crypto, 53)
      assert.strictEqual((yield* run(Records.announce(writer.handle, topic, kp))).accepted, 20)
      yield* advance((2 / 3) * maxAge - 5000, 1000)
      assert.strictEqual(yield* announceHolders(dht.nodes, toHex(topic), toHex(kp.publicKey)), 20)
      yield* advance((2 / 3) * maxAge + 10_000, 1000)
      assert.strictEqual(yield* announceHolders(dht.nodes, toHex(topic), toHex(kp.publicKey)), 0)
    }), { timeout: 60_000 })

  it("default store windows: announce records 20 min, mutable/immutable 48 h, each living exactly between 2/3 and 4/3 of maxAge", () => {
    const H = 3600_000
    const cases = [
      { name: "records", maxAge: 20 * MIN },
      { name: "mutables", maxAge: 48 * H },
      { name: "immutables", maxAge: 48 * H }
    ] as const
    for (const c of cases) {
      const interval = Math.ceil((2 / 3) * c.maxAge)
      // the store is created at t = 0: its caches rotate at interval, 2 * interval, ...
      const store = new HyperDhtStore({}, 0)
      const put = (key: string, t: number) =>
        c.name === "records" ? store.records.add("topic", key, text(key), t) : store[c.name].set(key, text(key), t)
      // (an xache get promotes the entry, so each key is read once)
      const has = (key: string, t: number) =>
        c.name === "records" ? store.records.has("topic", key, t) : store[c.name].get(key, t) !== undefined
      // written right after a rotation: lives the longest, just under 4/3 * maxAge
      for (const k of ["early", "early2"]) put(k, 1)
      // written just before a rotation: lives the shortest, just over 2/3 * maxAge
      for (const k of ["late", "late2"]) put(k, interval - 1)
      assert.isTrue(has("late", 2 * interval - 1), `${c.name}: 'late' present ${interval} ms (>= 2/3 maxAge) after its write`)
      assert.isTrue(has("early", 2 * interval - 1), `${c.name}: 'early' present ${2 * interval - 2} ms after its write`)
      assert.isFalse(has("late2", 2 * interval), `${c.name}: 'late' gone ${interval + 1} ms after its write`)
      assert.isFalse(has("early2", 2 * interval), `${c.name}: 'early' gone ${2 * interval - 1} ms (<= 4/3 maxAge) after its write`)
      assert.isAtLeast(interval, (2 / 3) * c.maxAge)
      assert.isAtMost(2 * interval - 1, (4 / 3) * c.maxAge + 1)
    }
  })
})

// ---- mutable seq ordering ------------------------------------------------------------------

describe("records on the simulated network: mutable seq ordering", () => {
  it.effect("seq 1 then 2 → get returns 2; lower seq → seqTooLow / WriteRejected and the value stays; same seq other value → seqReused; identical re-put accepted", () =>
    Effect.gen(function*() {
      const dht = yield* network(6)
      const crypto = dht.crypto
      const kp = keyPairOf(crypto, 61)
      const writer = dht.nodes[7]!
      const reader = dht.nodes[31]!
      const put = (value: string, seq: number) => run(Records.mutablePut(writer.handle, kp, text(value), { seq }))
      const putFails = (value: string, seq: number) => run(Effect.flip(Records.mutablePut(writer.handle, kp, text(value), { seq })))

      const p1 = yield* put("one", 1)
      assert.strictEqual(p1.accepted, 20)
      assert.strictEqual(p1.seq, 1)
      let got = yield* run(Records.mutableGet(reader.handle, kp.publicKey))
      assert.deepStrictEqual([got?.seq, str(got!.value)], [1, "one"])
      assert.isTrue(crypto.verify(got!.signature, Result.getOrThrow(R.mutableSignable64(crypto.blake2b, 1, text("one"))), kp.publicKey))

      assert.strictEqual((yield* put("two", 2)).accepted, 20)
      got = yield* run(Records.mutableGet(reader.handle, kp.publicKey))
      assert.deepStrictEqual([got?.seq, str(got!.value)], [2, "two"])

      // lower seq: every node refuses with SEQ_TOO_LOW, the client fails with WriteRejected
      const low = yield* putFails("one again", 1)
      assert.strictEqual(low._tag, "WriteRejected")
      if (low._tag === "WriteRejected") {
        assert.strictEqual(low.attempted, 20)
        assert.deepStrictEqual(low.counts, { accepted: 0, seqReused: 0, seqTooLow: 20, otherErrors: 0, failed: 0 })
        assert.include(low.message, "seq too low 20")
      }
      // same seq, other value: SEQ_REUSED everywhere
      const reused = yield* putFails("TWO", 2)
      assert.strictEqual(reused._tag, "WriteRejected")
      if (reused._tag === "WriteRejected") assert.deepStrictEqual(reused.counts, { accepted: 0, seqReused: 20, seqTooLow: 0, otherErrors: 0, failed: 0 })
      // the stored value is unchanged
      got = yield* run(Records.mutableGet(reader.handle, kp.publicKey))
      assert.deepStrictEqual([got?.seq, str(got!.value)], [2, "two"])
      // identical seq and value: accepted (a refresh)
      assert.strictEqual((yield* put("two", 2)).accepted, 20)
      // minimum seq: nothing at >= 3
      assert.isNull(yield* run(Records.mutableGet(reader.handle, kp.publicKey, { seq: 3 })))
      assert.strictEqual((yield* run(Records.mutableGet(reader.handle, kp.publicKey, { seq: 2 })))?.seq, 2)
      // nothing was refused for a bad signature or token along the way
      assert.strictEqual(statSum(dht.nodes, "rejected"), 0)
      assert.strictEqual(statSum(dht.nodes, "mutablePuts"), 60)
    }), { timeout: 60_000 })

  it.effect("nodes disagree (seq 5 on 20 nodes, then seq 6 on 3 of them by targeted requests): latest returns 6, latest: false the first verified reply; a partial refusal is counted", () =>
    Effect.gen(function*() {
      const dht = yield* network(7)
      const crypto = dht.crypto
      const kp = keyPairOf(crypto, 71)
      const target = crypto.blake2b(kp.publicKey)
      const writer = dht.nodes[3]!
      const reader = dht.nodes[29]!
      const p5 = yield* run(Records.mutablePut(writer.handle, kp, text("five"), { seq: 5 }))
      assert.strictEqual(p5.accepted, 20)
      // the 3 holders farthest from the target get seq 6 straight from one client (a query
      // visits the farthest of its k closest table nodes first, as dht-rpc's does)
      const holders = p5.closestNodes.map((n) => byAddress(dht, n)).filter((h) => h !== reader).sort((a, b) => distance(target)(a.id, b.id))
      const six = holders.slice(-3)
      const value6 = mutablePutValue(crypto, kp, 6, text("six"))
      for (const h of six) {
        const token = yield* tokenFor(writer, h)
        expectError(yield* request(writer, h, { token, command: R.Command.MUTABLE_PUT, target, value: value6 }), 0, "targeted seq 6")
      }
      // latest (the default): the highest seq wins, whatever arrives first
      const latest = yield* run(Records.mutableGet(reader.handle, kp.publicKey))
      assert.deepStrictEqual([latest?.seq, str(latest!.value)], [6, "six"])
      assert.isTrue(six.some((h) => h.ip === latest!.from.host))

      // latest: false returns the first verified reply. Make the seq-6 holders slow: seq 5 comes first.
      for (const h of six) yield* dht.net.setLink({ latency: 300, jitter: 0 }, h.ip)
      const first5 = yield* run(Records.mutableGet(reader.handle, kp.publicKey, { latest: false }))
      assert.strictEqual(first5?.seq, 5)
      assert.isFalse(six.some((h) => h.ip === first5!.from.host))
      assert.strictEqual((yield* run(Records.mutableGet(reader.handle, kp.publicKey)))?.seq, 6)
      // ... and the other way round: the seq-6 holders fast, everyone else slow
      for (const n of dht.nodes) if (n !== reader) yield* dht.net.setLink(six.includes(n) ? { latency: 0, jitter: 0 } : { latency: 300, jitter: 0 }, n.ip)
      yield* dht.net.setLink({ latency: 0, jitter: 0 }, reader.ip)
      const first6 = yield* run(Records.mutableGet(reader.handle, kp.publicKey, { latest: false }))
      assert.strictEqual(first6?.seq, 6)
      for (const n of dht.nodes) yield* dht.net.setLink({ latency: 20, jitter: 10 }, n.ip)

      // re-putting seq 5: the 3 nodes holding 6 refuse (counted), the others accept
      const again = yield* run(Records.mutablePut(writer.handle, kp, text("five"), { seq: 5 }))
      assert.strictEqual(again.accepted, 20 - six.length)
      assert.strictEqual(again.seqTooLow, six.length)
      assert.strictEqual(again.seqReused, 0)
      // seq 6 with another value: refused by the 3 (seq reused), accepted by the 17 holding 5
      const other6 = yield* run(Records.mutablePut(writer.handle, kp, text("SIX"), { seq: 6 }))
      assert.strictEqual(other6.seqReused, six.length)
      assert.strictEqual(other6.accepted, 20 - six.length)
    }), { timeout: 60_000 })

  it.effect("a lying node's forged mutable and immutable replies are skipped by the client", () =>
    Effect.gen(function*() {
      const dht = yield* network(8)
      const crypto = dht.crypto
      const kp = keyPairOf(crypto, 81)
      const mallory = keyPairOf(crypto, 82)
      const target = crypto.blake2b(kp.publicKey)
      // an immutable value whose hash shares its first byte with the mutable target, so one
      // liar can sit among the closest nodes of both
      let j = 0
      while (crypto.blake2b(text(`the honest immutable value ${j}`))[0] !== target[0]) j++
      const value = text(`the honest immutable value ${j}`)
      const hash = crypto.blake2b(value)
      // Place the liar among the 20 closest nodes of both targets, but not among the 10 closest:
      // a query visits the farthest half of its k closest table nodes first, so the liar is in
      // the first wave and (on the fastest link) answers first. Its id is hash(ip, port).
      const rank = (t: Uint8Array, id: Uint8Array) => dht.nodes.filter((n) => distance(t)(n.id, id) < 0).length
      let liarIp = ""
      for (let i = 1; i < 65536 && liarIp === ""; i++) {
        const ip = `20.200.${i >> 8}.${i & 0xff}`
        const id = nodeId(crypto.blake2b, ip, 49737)!
        const [a, b] = [rank(target, id), rank(hash, id)]
        if (a >= 12 && a <= 16 && b >= 12 && b <= 16) liarIp = ip
      }
      assert.notStrictEqual(liarIp, "")
      const honest = makeHyperDht(crypto, {})
      let forged = 0
      const forgedMutable = Result.getOrThrow(encode(R.mutableGetResponse, {
        seq: 99,
        value: text("forged"),
        signature: crypto.sign(Result.getOrThrow(R.mutableSignable64(crypto.blake2b, 99, text("forged"))), mallory.secretKey)!
      }))
      const liarHandler = (req: IncomingRequest, node: DhtNode): boolean => {
        if (req.command === R.Command.MUTABLE_GET && req.target !== null && equalBytes(req.target, target)) {
          forged++
          node.reply(req, forgedMutable)
          return true
        }
        if (req.command === R.Command.IMMUTABLE_GET && req.target !== null && equalBytes(req.target, hash)) {
          forged++
          node.reply(req, text("not the value"))
          return true
        }
        return honest.handler(req, node)
      }
      const liar = yield* dht.add(liarIp, { ephemeral: false, onRequest: liarHandler })
      yield* advance(30_000)
      assert.isTrue(liar.handle.core.bootstrapped)
      const reader = dht.nodes[35]!
      yield* reader.handle.addNode({ host: liar.ip, port: liar.port })
      const writer = dht.nodes[11]!
      assert.isAtLeast((yield* run(Records.mutablePut(writer.handle, kp, text("honest"), { seq: 3 }))).accepted, 19)
      assert.isAtLeast((yield* run(Records.immutablePut(writer.handle, value))).accepted, 19)
      // the liar answers first (fastest link)
      yield* dht.net.setLink({ latency: 0, jitter: 0 }, liarIp)
      for (const latest of [true, false]) {
        const before = forged
        const got = yield* run(Records.mutableGet(reader.handle, kp.publicKey, { latest }))
        assert.isAbove(forged, before, "the liar was asked")
        assert.deepStrictEqual([got?.seq, str(got!.value)], [3, "honest"])
        assert.notStrictEqual(got!.from.host, liarIp)
      }
      const before = forged
      const imm = yield* run(Records.immutableGet(reader.handle, hash))
      assert.isAbove(forged, before, "the liar was asked")
      assert.strictEqual(str(imm!.value), `the honest immutable value ${j}`)
      assert.notStrictEqual(imm!.from.host, liarIp)
    }), { timeout: 60_000 })
})

// ---- forged writes and tokens ---------------------------------------------------------------

describe("records on the simulated network: forged signatures and bad tokens are refused", () => {
  it.effect("ANNOUNCE / UNANNOUNCE: other key, flipped bit, signed for another node, bad / foreign / absent token → nothing stored", () =>
    Effect.gen(function*() {
      const dht = yield* network(9)
      const crypto = dht.crypto
      const ns = R.namespaces(crypto.blake2b)
      const topic = topicOf(crypto, "forgery")
      const kp = keyPairOf(crypto, 91)
      const other = keyPairOf(crypto, 92)
      const client = dht.nodes[5]!
      const client2 = dht.nodes[6]!
      const x = dht.nodes[12]!
      const y = dht.nodes[13]!
      const stats = () => x.handle.hyperdht.store()!.stats
      const stored = () => x.handle.run((_n, t) => x.handle.hyperdht.store()!.records.has(toHex(topic), toHex(kp.publicKey), t))
      const announce = (token: Uint8Array | null, value: Uint8Array) => request(client, x, { token, command: R.Command.ANNOUNCE, target: topic, value })

      const token = yield* tokenFor(client, x)
      const rejected0 = stats().rejected
      // signed with another key
      expectTimeout(yield* announce(token, signAnnounce(crypto, ns.ANNOUNCE, topic, x.id, token, kp, other)), "other key")
      // one bit of a valid signature flipped (the signature is the last 64 bytes)
      const valid = signAnnounce(crypto, ns.ANNOUNCE, topic, x.id, token, kp)
      expectTimeout(yield* announce(token, flipBit(valid, valid.length - 10)), "flipped bit")
      // a valid signature for another node's id
      expectTimeout(yield* announce(token, signAnnounce(crypto, ns.ANNOUNCE, topic, y.id, token, kp)), "signed for another node")
      // signed with the UNANNOUNCE namespace
      expectTimeout(yield* announce(token, signAnnounce(crypto, ns.UNANNOUNCE, topic, x.id, token, kp)), "wrong namespace")
      // no token at all (signature over a zero token)
      expectTimeout(yield* announce(null, signAnnounce(crypto, ns.ANNOUNCE, topic, x.id, new Uint8Array(32), kp)), "absent token")
      assert.strictEqual(stats().rejected - rejected0, 5)
      // a made-up token (signature valid for it): dht-rpc answers INVALID_TOKEN (2)
      const fake = crypto.blake2b(text("not a token"))
      expectError(yield* announce(fake, signAnnounce(crypto, ns.ANNOUNCE, topic, x.id, fake, kp)), 2, "made-up token")
      // a real token of x, but issued to another IP
      const foreign = yield* tokenFor(client2, x)
      assert.isFalse(equalBytes(foreign, token))
      expectError(yield* announce(foreign, signAnnounce(crypto, ns.ANNOUNCE, topic, x.id, foreign, kp)), 2, "token of another IP")
      // the token check happens before the handler: not counted as rejected by the store
      assert.strictEqual(stats().rejected - rejected0, 5)
      assert.strictEqual(stats().announces, 0)
      assert.isFalse(yield* stored())
      const look = yield* request(client2, x, { command: R.Command.LOOKUP, target: topic })
      assert.isTrue(Exit.isSuccess(look) && look.value.value === null, "x answers LOOKUP without records")

      // control: the same announce with the sender's own token is stored
      const fresh = yield* tokenFor(client, x)
      expectError(yield* announce(fresh, signAnnounce(crypto, ns.ANNOUNCE, topic, x.id, fresh, kp)), 0, "valid announce")
      assert.isTrue(yield* stored())
      assert.strictEqual(stats().announces, 1)

      // UNANNOUNCE: forged ones are dropped and the record stays
      const unannounce = (tok: Uint8Array | null, value: Uint8Array) => request(client2, x, { token: tok, command: R.Command.UNANNOUNCE, target: topic, value })
      const t2 = yield* tokenFor(client2, x)
      expectTimeout(yield* unannounce(t2, signAnnounce(crypto, ns.UNANNOUNCE, topic, x.id, t2, kp, other)), "unannounce with another key")
      expectTimeout(yield* unannounce(t2, signAnnounce(crypto, ns.ANNOUNCE, topic, x.id, t2, kp)), "unannounce signed as announce")
      expectTimeout(yield* unannounce(t2, signAnnounce(crypto, ns.UNANNOUNCE, topic, y.id, t2, kp)), "unannounce for another node")
      expectError(yield* unannounce(token, signAnnounce(crypto, ns.UNANNOUNCE, topic, x.id, token, kp)), 2, "unannounce with another IP's token")
      assert.isTrue(yield* stored())
      assert.strictEqual(stats().unannounces, 0)
      // a valid one removes it
      expectError(yield* unannounce(t2, signAnnounce(crypto, ns.UNANNOUNCE, topic, x.id, t2, kp)), 0, "valid unannounce")
      assert.isFalse(yield* stored())
      assert.strictEqual(stats().unannounces, 1)
    }), { timeout: 60_000 })

  it.effect("MUTABLE_PUT / IMMUTABLE_PUT: forged signature, flipped bit, key/target or hash/target mismatch, bad / foreign / absent token → nothing stored", () =>
    Effect.gen(function*() {
      const dht = yield* network(10)
      const crypto = dht.crypto
      const kp = keyPairOf(crypto, 101)
      const other = keyPairOf(crypto, 102)
      const target = crypto.blake2b(kp.publicKey)
      const value = text("immutable payload")
      const hash = crypto.blake2b(value)
      const client = dht.nodes[8]!
      const client2 = dht.nodes[9]!
      const x = dht.nodes[20]!
      const stats = () => x.handle.hyperdht.store()!.stats
      const put = (command: number, token: Uint8Array | null, t: Uint8Array, v: Uint8Array) => request(client, x, { token, command, target: t, value: v })
      const getMutable = () => request(client2, x, { command: R.Command.MUTABLE_GET, target, value: Result.getOrThrow(encode(uint, 0)) })
      const getImmutable = () => request(client2, x, { command: R.Command.IMMUTABLE_GET, target: hash })
      const valueOf = (exit: Exit.Exit<{ readonly value: Uint8Array | null }, unknown>) => (Exit.isSuccess(exit) ? exit.value.value : "no reply")

      const token = yield* tokenFor(client, x)
      const rejected0 = stats().rejected
      const M = R.Command.MUTABLE_PUT
      const I = R.Command.IMMUTABLE_PUT
      expectTimeout(yield* put(M, token, target, mutablePutValue(crypto, kp, 1, text("v"), other)), "mutable: another key's signature")
      const good = mutablePutValue(crypto, kp, 1, text("v"))
      expectTimeout(yield* put(M, token, target, flipBit(good, good.length - 1)), "mutable: flipped signature bit")
      expectTimeout(yield* put(M, token, target, flipBit(good, 34)), "mutable: flipped value bit")
      expectTimeout(yield* put(M, token, crypto.blake2b(other.publicKey), good), "mutable: key does not match target")
      expectTimeout(yield* put(M, token, target, text("garbage")), "mutable: undecodable")
      expectTimeout(yield* put(M, null, target, good), "mutable: absent token")
      expectTimeout(yield* put(I, token, hash, text("another value")), "immutable: hash mismatch")
      expectTimeout(yield* put(I, null, hash, value), "immutable: absent token")
      assert.strictEqual(stats().rejected - rejected0, 8)
      const fake = crypto.blake2b(text("fake token"))
      const foreign = yield* tokenFor(client2, x)
      expectError(yield* put(M, fake, target, good), 2, "mutable: made-up token")
      expectError(yield* put(M, foreign, target, good), 2, "mutable: token of another IP")
      expectError(yield* put(I, fake, hash, value), 2, "immutable: made-up token")
      expectError(yield* put(I, foreign, hash, value), 2, "immutable: token of another IP")
      assert.strictEqual(stats().rejected - rejected0, 8)
      assert.strictEqual(stats().mutablePuts, 0)
      assert.strictEqual(stats().immutablePuts, 0)
      assert.isNull(valueOf(yield* getMutable()))
      assert.isNull(valueOf(yield* getImmutable()))
      // and nowhere in the network
      assert.isNull(yield* run(Records.mutableGet(client2.handle, kp.publicKey)))
      assert.isNull(yield* run(Records.immutableGet(client2.handle, hash)))

      // controls: the same writes with the sender's own token are stored
      const fresh = yield* tokenFor(client, x)
      expectError(yield* put(M, fresh, target, good), 0, "valid mutable put")
      expectError(yield* put(I, fresh, hash, value), 0, "valid immutable put")
      assert.strictEqual(stats().mutablePuts, 1)
      assert.strictEqual(stats().immutablePuts, 1)
      assert.isNotNull(valueOf(yield* getMutable()))
      assert.strictEqual(str(valueOf(yield* getImmutable()) as Uint8Array), "immutable payload")
      // an empty value is a value (§6 notes)
      const empty = new Uint8Array(0)
      expectError(yield* put(I, fresh, crypto.blake2b(empty), empty), 0, "empty immutable value")
    }), { timeout: 60_000 })
})

// ---- limits and rejections -----------------------------------------------------------------

describe("records on the simulated network: limits and WriteRejected", () => {
  it.effect("ValueTooLarge states the limit; values at the limit round-trip through 2048-byte datagrams", () =>
    Effect.gen(function*() {
      const dht = yield* network(11)
      const crypto = dht.crypto
      const writer = dht.nodes[2]!
      const reader = dht.nodes[30]!
      const tooBig = yield* Effect.flip(Records.immutablePut(writer.handle, new Uint8Array(1851)))
      assert.strictEqual(tooBig._tag, "ValueTooLarge")
      if (tooBig._tag === "ValueTooLarge") {
        assert.deepStrictEqual([tooBig.size, tooBig.limit], [1851, 1850])
        assert.include(tooBig.message, "1850 bytes")
        assert.include(tooBig.message, "1851 bytes")
      }
      const kp = keyPairOf(crypto, 111)
      const tooBigM = yield* Effect.flip(Records.mutablePut(writer.handle, kp, new Uint8Array(1783), { seq: 1 }))
      assert.strictEqual(tooBigM._tag, "ValueTooLarge")
      if (tooBigM._tag === "ValueTooLarge") {
        assert.strictEqual(tooBigM.limit, 1782)
        assert.include(tooBigM.message, "1782 bytes")
      }
      const bigSeq = yield* Effect.flip(Records.mutablePut(writer.handle, kp, new Uint8Array(1781), { seq: 70_000 }))
      assert.strictEqual(bigSeq._tag === "ValueTooLarge" ? bigSeq.limit : -1, 1778)
      // at the limit: stored on all 20 and read back (the sim drops datagrams > 2048 bytes)
      const big = new Uint8Array(1850).map((_, i) => (i * 7) & 0xff)
      const ip = yield* run(Records.immutablePut(writer.handle, big))
      assert.strictEqual(ip.accepted, 20)
      assert.deepStrictEqual(Array.from((yield* run(Records.immutableGet(reader.handle, ip.hash)))!.value), Array.from(big))
      const bigM = new Uint8Array(1782).fill(0x5a)
      assert.strictEqual((yield* run(Records.mutablePut(writer.handle, kp, bigM, { seq: 252 }))).accepted, 20)
      const gm = yield* run(Records.mutableGet(reader.handle, kp.publicKey))
      assert.strictEqual(gm?.seq, 252)
      assert.strictEqual(gm?.value.length, 1782)
      assert.strictEqual(dht.net.stats().dropped.oversize, 0)
    }), { timeout: 60_000 })

  it.effect("WriteRejected (attempted 0) for every write when no persistent node answers", () =>
    Effect.gen(function*() {
      const crypto = yield* Effect.promise(() => makeFast())
      const dht = yield* buildRecordsNetwork(crypto, 6, { node: { ephemeral: false }, joinEvery: 50, seed: 12, net: NET })
      yield* advance(30_000)
      const client = dht.nodes[3]!
      for (const n of dht.nodes) if (n !== client) yield* dht.net.kill(n.ip)
      const kp = keyPairOf(crypto, 121)
      const imm = yield* run(Effect.flip(Records.immutablePut(client.handle, text("nobody"))), { maxMs: 600_000, step: 250 })
      assert.strictEqual(imm._tag, "WriteRejected")
      if (imm._tag === "WriteRejected") {
        assert.strictEqual(imm.attempted, 0)
        assert.include(imm.message, "no persistent node answered")
      }
      const mut = yield* run(Effect.flip(Records.mutablePut(client.handle, kp, text("nobody"))), { maxMs: 600_000, step: 250 })
      assert.strictEqual(mut._tag === "WriteRejected" ? mut.attempted : -1, 0)
      const ann = yield* run(Effect.flip(Records.announce(client.handle, topicOf(crypto, "nobody"), kp)), { maxMs: 600_000, step: 250 })
      assert.strictEqual(ann._tag === "WriteRejected" ? ann.attempted : -1, 0)
      assert.strictEqual(statSum(dht.nodes, "mutablePuts") + statSum(dht.nodes, "immutablePuts") + statSum(dht.nodes, "announces"), 0)
    }), { timeout: 60_000 })
})
