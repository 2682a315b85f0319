/**
 * HyperDHT records interop with the reference (hyperdht 6.34.0) over real
 * UDP on 127.0.0.1 (hyperdht-records.md §3–§7):
 *
 *  (a) a mixed network: reference bootstrapper + 5 reference + 5 Omega
 *      persistent nodes, one ephemeral client of each kind. Every record
 *      written by one kind of client is read back by the other, and every
 *      persistent node of both kinds is checked to store it (direct LOOKUP /
 *      MUTABLE_GET / IMMUTABLE_GET to each node), so each implementation is
 *      exercised as the storing node for the other's writes.
 *  (b) a network of ONLY Omega nodes (Omega bootstrapper + 5 Omega nodes)
 *      used by a reference client, which reads its own records back.
 *
 * Each network is built once per describe block (beforeAll) and every node
 * is destroyed in afterAll, whatever the outcome.
 */
import HyperDHT from "hyperdht"
import { createRequire } from "node:module"
import { Result } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Crypto, Gateway } from "../src/index.js"
import { decode, type IPv4Address } from "../src/protocol/encoding.js"
import * as R from "../src/protocol/records.js"
import { type Closable, HOST, randomPort, tracker, withTimeout, onFreePort } from "./support/live.js"

const Persistent = createRequire(import.meta.url)("hyperdht/lib/persistent.js")

/* eslint-disable @typescript-eslint/no-explicit-any */
type RefNode = any

const hex = (b: Uint8Array | null | undefined): string | null => (b == null ? null : Buffer.from(b).toString("hex"))
const utf8 = (s: string): Buffer => Buffer.from(s, "utf8")
const OP = 15_000

/** One network's nodes; `destroy` closes them all (bounded). */
class Net {
  private readonly nodes = tracker()
  track<T extends Closable>(n: T): T {
    return this.nodes.track(n)
  }
  destroy(): Promise<void> {
    return this.nodes.destroyAll()
  }

  refBootstrapper(): Promise<{ node: RefNode; port: number }> {
    return onFreePort("reference bootstrapper", (port) => HyperDHT.bootstrapper(port, HOST, { host: HOST }), (n) => this.track(n))
  }

  omegaBootstrapper(): Promise<{ node: Gateway; port: number }> {
    return onFreePort("omega bootstrapper", (port) => Gateway.bootstrapper(port, HOST, { host: HOST }), (n) => this.track(n))
  }

  refNode(bootPort: number, opts: Record<string, unknown> = { ephemeral: false, firewalled: false }): RefNode {
    return this.track(new HyperDHT({ bootstrap: [`${HOST}:${bootPort}`], host: HOST, port: randomPort(), ...opts }))
  }

  omegaNode(bootPort: number, opts: { ephemeral?: boolean } = {}): Gateway {
    const g = this.track(new Gateway({ bootstrap: [`${HOST}:${bootPort}`], host: HOST, ...opts }))
    g.on("error", () => {})
    return g
  }
}

const refServerPort = (n: RefNode): number => n.io.serverSocket.address().port
const omegaServerPort = async (g: Gateway): Promise<number> => (await g.status()).serverAddress.port

interface PeerOut {
  readonly publicKey: Uint8Array
  readonly relayAddresses: ReadonlyArray<{ readonly host: string; readonly port: number }>
}
interface LookupOut {
  readonly from: { readonly host: string; readonly port: number }
  readonly peers: ReadonlyArray<PeerOut>
  readonly bump: number
}

const refLookup = async (n: RefNode, topic: Uint8Array): Promise<Array<LookupOut>> => {
  const out: Array<LookupOut> = []
  await withTimeout(
    (async () => {
      for await (const r of n.lookup(topic)) out.push(r)
    })(),
    OP,
    "reference lookup"
  )
  return out
}
const omegaLookup = (g: Gateway, topic: Uint8Array): Promise<Array<LookupOut>> => withTimeout(g.lookup(topic).toArray(), OP, "omega lookup")

const keysIn = (rs: ReadonlyArray<LookupOut>): Array<string> => [...new Set(rs.flatMap((r) => r.peers.map((p) => hex(p.publicKey)!)))].sort()
const relaysOf = (rs: ReadonlyArray<LookupOut>, pk: Uint8Array): Array<string> => [
  ...new Set(
    rs.flatMap((r) => r.peers.filter((p) => hex(p.publicKey) === hex(pk)).map((p) => JSON.stringify(p.relayAddresses.map((a) => ({ host: a.host, port: a.port })))))
  )
]

/** What one node stores, asked directly by an Omega client (LOOKUP / MUTABLE_GET / IMMUTABLE_GET to that node only). */
const storedAt = {
  lookup: async (client: Gateway, port: number, topic: Uint8Array): Promise<Array<string>> => {
    const res = await withTimeout(client.request({ command: R.Command.LOOKUP, target: topic }, { host: HOST, port }, { retry: true }), OP, "direct LOOKUP")
    if (res.value === null) return []
    const m = decode(R.lookupReply, res.value)
    if (!Result.isSuccess(m)) throw new Error(`undecodable LOOKUP reply from ${port}`)
    return m.success.peers.map((p) => hex(p.publicKey)!).sort()
  },
  mutable: async (client: Gateway, port: number, target: Uint8Array): Promise<{ seq: number; value: string } | null> => {
    const res = await withTimeout(client.request({ command: R.Command.MUTABLE_GET, target, value: Uint8Array.of(0) }, { host: HOST, port }, { retry: true }), OP, "direct MUTABLE_GET")
    if (res.value === null) return null
    const m = decode(R.mutableGetResponse, res.value)
    if (!Result.isSuccess(m)) throw new Error(`undecodable MUTABLE_GET reply from ${port}`)
    return { seq: m.success.seq, value: Buffer.from(m.success.value).toString("utf8") }
  },
  immutable: async (client: Gateway, port: number, hash: Uint8Array): Promise<string | null> => {
    const res = await withTimeout(client.request({ command: R.Command.IMMUTABLE_GET, target: hash }, { host: HOST, port }, { retry: true }), OP, "direct IMMUTABLE_GET")
    return res.value === null ? null : Buffer.from(res.value).toString("utf8")
  }
}

let seedCounter = 1
const freshKeyPair = () => {
  const seed = Buffer.alloc(32)
  seed.writeUInt32LE(Math.floor(Math.random() * 0xffffffff), 0)
  seed.writeUInt32LE(seedCounter++, 4)
  return HyperDHT.keyPair(seed)
}
const freshTopic = (name: string): Buffer => Gateway.hash(utf8(`${name} ${Math.random()}`))
const relay = (port: number): IPv4Address => ({ host: "10.1.2.3", port })
/** The reference's own mutable signature check (§4.2), independent of both get paths. */
const verifyMutable = (signature: Uint8Array, seq: number, value: Uint8Array, publicKey: Uint8Array): boolean =>
  Persistent.verifyMutable(Buffer.from(signature), seq, Buffer.from(value), Buffer.from(publicKey))

// ---- (a) mixed network ---------------------------------------------------------------------

describe("records interop over UDP: mixed network (reference bootstrapper + 5 reference + 5 Omega persistent nodes)", () => {
  const net = new Net()
  let refClient: RefNode
  let omegaClient: Gateway
  let refPorts: Array<number> = []
  let omegaPorts: Array<number> = []
  let allPorts: Array<number> = []

  beforeAll(async () => {
    const boot = await net.refBootstrapper()
    const refs = [0, 1, 2, 3, 4].map(() => net.refNode(boot.port))
    const omegas = [0, 1, 2, 3, 4].map(() => net.omegaNode(boot.port, { ephemeral: false }))
    await withTimeout(Promise.all([...refs.map((r) => r.ready()), ...omegas.map((g) => g.ready())]), 30_000, "persistent nodes ready")
    refPorts = refs.map(refServerPort)
    omegaPorts = await Promise.all(omegas.map(omegaServerPort))
    for (const r of refs) expect(r.ephemeral).toBe(false)
    for (const g of omegas) expect(g.ephemeral).toBe(false)
    allPorts = [boot.port, ...refPorts, ...omegaPorts]
    refClient = net.refNode(boot.port, { ephemeral: true })
    omegaClient = net.omegaNode(boot.port, { ephemeral: true })
    await withTimeout(Promise.all([refClient.ready(), omegaClient.ready()]), 20_000, "clients ready")
    expect(refClient.ephemeral).toBe(true)
    expect(omegaClient.ephemeral).toBe(true)
  }, 60_000)
  afterAll(() => net.destroy(), 30_000)

  it("reference announce → Omega lookup finds it (relays, bump); stored on every persistent node of both kinds", async () => {
    const topic = freshTopic("mixed ref→omega")
    const kp = freshKeyPair()
    const bump = Date.now()
    await withTimeout(refClient.announce(topic, kp, [relay(1111), relay(2222)], { bump }).finished(), OP, "reference announce")
    for (const port of allPorts) expect(await storedAt.lookup(omegaClient, port, topic), `node ${port}`).toEqual([hex(kp.publicKey)])
    const found = await omegaLookup(omegaClient, topic)
    expect(found.length).toBe(11)
    expect(keysIn(found)).toEqual([hex(kp.publicKey)])
    expect(relaysOf(found, kp.publicKey)).toEqual([JSON.stringify([relay(1111), relay(2222)])])
    for (const r of found) expect(r.bump).toBe(bump)
    expect(new Set(found.map((r) => r.from.port))).toEqual(new Set(allPorts))
  }, 30_000)

  it("Omega announce → reference lookup finds it (relays, bump); accepted by all 11 persistent nodes", async () => {
    const topic = freshTopic("mixed omega→ref")
    const kp = freshKeyPair()
    const bump = Date.now()
    const res = await withTimeout(omegaClient.announce(topic, kp, [relay(3333)], { bump }).finished(), OP, "omega announce")
    expect(res.accepted).toBe(11)
    expect(res.closestNodes.map((n) => n.port).sort()).toEqual([...allPorts].sort())
    const found = await refLookup(refClient, topic)
    expect(found.length).toBe(11)
    expect(keysIn(found)).toEqual([hex(kp.publicKey)])
    expect(relaysOf(found, kp.publicKey)).toEqual([JSON.stringify([relay(3333)])])
    for (const r of found) expect(r.bump).toBe(bump)
    for (const port of refPorts) expect(await storedAt.lookup(omegaClient, port, topic), `reference node ${port}`).toEqual([hex(kp.publicKey)])
  }, 30_000)

  it("unannounce both ways: Omega unannounces a reference announce, the reference unannounces an Omega announce", async () => {
    const topic = freshTopic("mixed unannounce")
    const a = freshKeyPair()
    const b = freshKeyPair()
    await withTimeout(refClient.announce(topic, a, [relay(1)]).finished(), OP, "reference announce")
    await withTimeout(omegaClient.announce(topic, b, [relay(2)]).finished(), OP, "omega announce")
    expect(keysIn(await refLookup(refClient, topic))).toEqual([hex(a.publicKey), hex(b.publicKey)].sort())
    // Omega removes the reference's announcement (signed with a's key) from all 11 nodes
    expect(await withTimeout(omegaClient.unannounce(topic, a), OP, "omega unannounce")).toBe(11)
    const afterA = await refLookup(refClient, topic)
    expect(afterA.length).toBe(11)
    expect(keysIn(afterA)).toEqual([hex(b.publicKey)])
    // the reference removes Omega's announcement: nothing is left anywhere
    await withTimeout(refClient.unannounce(topic, b), OP, "reference unannounce")
    expect(await omegaLookup(omegaClient, topic)).toEqual([])
    expect(await refLookup(refClient, topic)).toEqual([])
    for (const port of allPorts) expect(await storedAt.lookup(omegaClient, port, topic), `node ${port}`).toEqual([])
  }, 30_000)

  it("mutable both ways: reference put → Omega get, Omega put (higher seq) → reference get; seq errors from both kinds of nodes", async () => {
    const kp = freshKeyPair()
    const target = Gateway.hash(kp.publicKey)
    await withTimeout(refClient.mutablePut(kp, utf8("from the reference"), { seq: 1 }), OP, "reference mutablePut")
    for (const port of allPorts) expect(await storedAt.mutable(omegaClient, port, target), `node ${port}`).toEqual({ seq: 1, value: "from the reference" })
    const got = await withTimeout(omegaClient.mutableGet(kp.publicKey), OP, "omega mutableGet")
    expect(got?.seq).toBe(1)
    expect(Buffer.from(got!.value).toString()).toBe("from the reference")
    expect(verifyMutable(got!.signature, 1, utf8("from the reference"), kp.publicKey)).toBe(true)

    const put = await withTimeout(omegaClient.mutablePut(kp, utf8("from Omega"), { seq: 2 }), OP, "omega mutablePut")
    expect(put.accepted).toBe(11)
    const refGot: RefNode = await withTimeout(refClient.mutableGet(kp.publicKey), OP, "reference mutableGet")
    expect(refGot.seq).toBe(2)
    expect(refGot.value.toString()).toBe("from Omega")
    expect(refGot.signature.equals(Buffer.from(put.signature))).toBe(true)
    expect(await withTimeout(refClient.mutableGet(kp.publicKey, { latest: false }), OP, "reference mutableGet latest:false")).toMatchObject({ seq: 2 })

    // SEQ_TOO_LOW / SEQ_REUSED come back from reference and Omega nodes alike
    const low = await withTimeout(omegaClient.mutablePut(kp, utf8("lower"), { seq: 1 }), OP, "omega lower seq").then(() => null, (e) => e)
    expect(low?._tag).toBe("WriteRejected")
    expect(low.counts).toEqual({ accepted: 0, seqReused: 0, seqTooLow: 11, otherErrors: 0, failed: 0 })
    const reused = await withTimeout(omegaClient.mutablePut(kp, utf8("other value"), { seq: 2 }), OP, "omega reused seq").then(() => null, (e) => e)
    expect(reused?.counts).toEqual({ accepted: 0, seqReused: 11, seqTooLow: 0, otherErrors: 0, failed: 0 })
    // the reference's put with a lower seq "succeeds" (it does not read error codes) but changes nothing
    await withTimeout(refClient.mutablePut(kp, utf8("lower from the reference"), { seq: 1 }), OP, "reference lower seq")
    for (const port of allPorts) expect(await storedAt.mutable(omegaClient, port, target), `node ${port}`).toEqual({ seq: 2, value: "from Omega" })
    expect((await withTimeout(omegaClient.mutableGet(kp.publicKey), OP, "omega mutableGet"))?.seq).toBe(2)
  }, 30_000)

  it("immutable both ways: reference put → Omega get, Omega put → reference get", async () => {
    const v1 = utf8(`immutable from the reference ${Math.random()}`)
    const r1: RefNode = await withTimeout(refClient.immutablePut(v1), OP, "reference immutablePut")
    expect(hex(r1.hash)).toBe(hex(Gateway.hash(v1)))
    for (const port of allPorts) expect(await storedAt.immutable(omegaClient, port, r1.hash), `node ${port}`).toBe(v1.toString())
    const g1 = await withTimeout(omegaClient.immutableGet(r1.hash), OP, "omega immutableGet")
    expect(Buffer.from(g1!.value).equals(v1)).toBe(true)

    const v2 = utf8(`immutable from Omega ${Math.random()}`)
    const r2 = await withTimeout(omegaClient.immutablePut(v2), OP, "omega immutablePut")
    expect(r2.accepted).toBe(11)
    const g2: RefNode = await withTimeout(refClient.immutableGet(r2.hash), OP, "reference immutableGet")
    expect(g2.value.equals(v2)).toBe(true)
    expect(await withTimeout(refClient.immutableGet(Gateway.hash(utf8("never stored"))), OP, "reference immutableGet miss")).toBe(null)
    expect(await withTimeout(omegaClient.immutableGet(Gateway.hash(utf8("never stored"))), OP, "omega immutableGet miss")).toBe(null)
  }, 30_000)
})

// ---- (b) Omega-only network, reference client ------------------------------------------------

describe("records interop over UDP: a reference client on a network of only Omega nodes (Omega bootstrapper + 5 Omega nodes)", () => {
  const net = new Net()
  let refClient: RefNode
  let omegaClient: Gateway
  let ports: Array<number> = []

  beforeAll(async () => {
    const boot = await net.omegaBootstrapper()
    const omegas = [0, 1, 2, 3, 4].map(() => net.omegaNode(boot.port, { ephemeral: false }))
    await withTimeout(Promise.all(omegas.map((g) => g.ready())), 20_000, "omega nodes ready")
    for (const g of omegas) expect(g.ephemeral).toBe(false)
    ports = [boot.port, ...(await Promise.all(omegas.map(omegaServerPort)))]
    refClient = net.refNode(boot.port, { ephemeral: true })
    omegaClient = net.omegaNode(boot.port, { ephemeral: true })
    await withTimeout(Promise.all([refClient.ready(), omegaClient.ready()]), 20_000, "clients ready")
  }, 60_000)
  afterAll(() => net.destroy(), 30_000)

  it("announce + lookup, then unannounce: the reference reads its own records back from Omega nodes", async () => {
    const topic = freshTopic("omega-only announce")
    const kp = freshKeyPair()
    const q = refClient.announce(topic, kp, [relay(4444)])
    await withTimeout(q.finished(), OP, "reference announce")
    expect(q.closestReplies.map((r: RefNode) => r.from.port).sort()).toEqual([...ports].sort())
    for (const port of ports) expect(await storedAt.lookup(omegaClient, port, topic), `node ${port}`).toEqual([hex(kp.publicKey)])
    const found = await refLookup(refClient, topic)
    expect(found.length).toBe(6)
    expect(keysIn(found)).toEqual([hex(kp.publicKey)])
    expect(relaysOf(found, kp.publicKey)).toEqual([JSON.stringify([relay(4444)])])
    // a server-style announce (topic = hash(publicKey)) is found by the reference's findPeer
    const server = freshKeyPair()
    await withTimeout(refClient.announce(Gateway.hash(server.publicKey), server, [relay(5555)]).finished(), OP, "reference self-announce")
    const peers: Array<RefNode> = []
    await withTimeout((async () => {
      for await (const p of refClient.findPeer(server.publicKey)) peers.push(p)
    })(), OP, "reference findPeer")
    expect(peers.length).toBe(6)
    for (const p of peers) expect(p.peer.relayAddresses).toEqual([relay(5555)])
    // unannounce
    await withTimeout(refClient.unannounce(topic, kp), OP, "reference unannounce")
    expect(await refLookup(refClient, topic)).toEqual([])
    for (const port of ports) expect(await storedAt.lookup(omegaClient, port, topic), `node ${port}`).toEqual([])
  }, 30_000)

  it("mutablePut + mutableGet (and a higher seq replaces it, a lower one does not)", async () => {
    const kp = freshKeyPair()
    const target = Gateway.hash(kp.publicKey)
    await withTimeout(refClient.mutablePut(kp, utf8("v1"), { seq: 1 }), OP, "reference mutablePut")
    let got: RefNode = await withTimeout(refClient.mutableGet(kp.publicKey), OP, "reference mutableGet")
    expect([got?.seq, got?.value.toString()]).toEqual([1, "v1"])
    await withTimeout(refClient.mutablePut(kp, utf8("v5"), { seq: 5 }), OP, "reference mutablePut seq 5")
    await withTimeout(refClient.mutablePut(kp, utf8("v3"), { seq: 3 }), OP, "reference mutablePut seq 3")
    got = await withTimeout(refClient.mutableGet(kp.publicKey), OP, "reference mutableGet")
    expect([got?.seq, got?.value.toString()]).toEqual([5, "v5"])
    expect(verifyMutable(got.signature, 5, utf8("v5"), kp.publicKey)).toBe(true)
    expect(await withTimeout(refClient.mutableGet(kp.publicKey, { seq: 6 }), OP, "reference mutableGet seq >= 6")).toBe(null)
    for (const port of ports) expect(await storedAt.mutable(omegaClient, port, target), `node ${port}`).toEqual({ seq: 5, value: "v5" })
  }, 30_000)

  it("immutablePut + immutableGet", async () => {
    const v = utf8(`immutable on Omega nodes ${Math.random()}`)
    const put: RefNode = await withTimeout(refClient.immutablePut(v), OP, "reference immutablePut")
    expect(put.closestNodes.length).toBe(6)
    const got: RefNode = await withTimeout(refClient.immutableGet(put.hash), OP, "reference immutableGet")
    expect(got.value.equals(v)).toBe(true)
    for (const port of ports) expect(await storedAt.immutable(omegaClient, port, put.hash), `node ${port}`).toBe(v.toString())
  }, 30_000)
})

// ---- (c) an Omega storage node on the portable noble crypto ------------------------------------

describe("records interop over UDP: an Omega node running Crypto.layerNoble stores the reference's signed writes", () => {
  const net = new Net()
  afterAll(() => net.destroy(), 30_000)

  // Received datagrams are Node Buffers; a verify that mutates Buffer inputs in place (Buffer#slice
  // is a view) refused ~3/4 of valid signatures (fixed in e590fa8). 24 random keys of each kind.
  it("every reference mutablePut and announce verifies on the noble node", async () => {
    let boot: Gateway | null = null
    let port = 0
    for (let attempt = 0; attempt < 8 && boot === null; attempt++) {
      port = randomPort()
      const g = net.track(Gateway.bootstrapper(port, HOST, { host: HOST, crypto: Crypto.layerNoble }))
      g.on("error", () => {})
      try {
        await withTimeout(g.ready(), 10_000, "noble bootstrapper ready")
        boot = g
      } catch {
        await g.destroy().catch(() => {})
      }
    }
    expect(boot).not.toBeNull()
    const client: RefNode = net.refNode(port, { ephemeral: true })
    const reader = net.omegaNode(port, { ephemeral: true })
    await withTimeout(Promise.all([client.ready(), reader.ready()]), 20_000, "clients ready")
    const topic = freshTopic("noble")
    const keys = Array.from({ length: 24 }, () => freshKeyPair())
    for (const kp of keys) {
      await withTimeout(client.mutablePut(kp, utf8("noble"), { seq: 1 }), OP, "reference mutablePut").catch(() => {})
      await withTimeout(client.announce(topic, kp, []).finished(), OP, "reference announce").catch(() => {})
    }
    let mutables = 0
    for (const kp of keys) if ((await storedAt.mutable(reader, port, Gateway.hash(kp.publicKey)))?.seq === 1) mutables++
    expect(mutables).toBe(keys.length)
    // one LOOKUP returns at most 20 records
    expect((await storedAt.lookup(reader, port, topic)).length).toBe(20)
    const found = await refLookup(client, topic)
    expect(found.length).toBe(1)
  }, 40_000)
})
