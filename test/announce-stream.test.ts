/**
 * `node.announce(topic, keyPair)` returns the lookup-like stream the seed
 * documents ("an announce does a parallel lookup so the stream returned
 * looks like the lookup stream"): an async iterable of `{ from, to, peers }`
 * replies with `finished()` and `toArray()`, plus each closest node's write
 * outcome. Over real UDP on 127.0.0.1: a bootstrap node and five persistent
 * nodes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Gateway, GatewayAnnounce, InvalidArgument, WriteRejected } from "../src/index.js"
import { HOST, onFreePort, tracker, withTimeout } from "./support/live.js"
import { nodeMakers } from "./support/nodes.js"

const nodes = tracker()
let bootPort = 0
const { omegaNode } = nodeMakers(nodes.track, () => bootPort)
let client: Gateway

beforeAll(async () => {
  bootPort = (await onFreePort("bootstrapper", (port) => Gateway.bootstrapper(port, HOST, { host: HOST }), nodes.track)).port
  const persistent = Array.from({ length: 5 }, () => omegaNode({ ephemeral: false, firewalled: false }))
  await withTimeout(Promise.all(persistent.map((n) => n.ready())), 20_000, "nodes ready")
  client = omegaNode({ ephemeral: true })
  await withTimeout(client.ready(), 20_000, "client ready")
}, 60_000)

afterAll(() => nodes.destroyAll(), 30_000)

const topicOf = (s: string): Buffer => Gateway.hash(Buffer.from(s))

describe("announce returns the lookup-like stream", () => {
  it("an async iterable of { from, to, peers } replies; finished() resolves with each closest node's write outcome", async () => {
    const topic = topicOf("announce stream shape")
    // as in the reference, the stream carries the replies that list peers: announce someone first
    const first = Gateway.keyPair()
    await client.announce(topic, first).finished()
    const kp = Gateway.keyPair()
    const stream = client.announce(topic, kp, [{ host: "10.1.2.3", port: 4000 }])
    expect(stream).toBeInstanceOf(GatewayAnnounce)
    expect(typeof stream.finished).toBe("function")
    expect(typeof stream.toArray).toBe("function")
    expect(typeof stream[Symbol.asyncIterator]).toBe("function")
    const replies = []
    for await (const r of stream) replies.push(r)
    expect(replies.length).toBeGreaterThan(0)
    for (const r of replies) {
      expect(typeof r.from.host).toBe("string")
      expect(typeof r.from.port).toBe("number")
      expect(typeof r.to.host).toBe("string")
      expect(r.peers.map((p) => Buffer.from(p.publicKey).toString("hex"))).toContain(first.publicKey.toString("hex"))
    }
    const summary = await stream.finished()
    expect(summary.accepted).toBe(6) // the five nodes and the bootstrapper
    expect(summary.closestNodes.length).toBe(6)
    expect(summary.writes.length).toBe(6)
    expect(summary.writes.every((w) => w.outcome === "accepted" && w.error === 0)).toBe(true)
    expect(stream.writes).toEqual(summary.writes)
    expect(stream.summary).toBe(summary)

    // the announcement is found by a lookup, with its relay address
    const found = await client.lookup(topic).toArray()
    const peers = found.flatMap((r) => r.peers.filter((p) => Buffer.from(p.publicKey).equals(kp.publicKey)))
    expect(peers.length).toBe(6)
    expect(found.every((r) => r.peers.length === 2)).toBe(true)
    expect(peers[0]!.relayAddresses).toEqual([{ host: "10.1.2.3", port: 4000 }])
  }, 30_000)

  it("toArray() collects the replies, like lookup's (none on a topic nobody announced yet)", async () => {
    const topic = topicOf("announce toArray")
    expect(await client.announce(topic, Gateway.keyPair()).toArray()).toEqual([])
    const stream = client.announce(topic, Gateway.keyPair())
    const all = await stream.toArray()
    expect(all.length).toBe(6)
    expect((await stream.finished()).accepted).toBe(6)
  }, 30_000)

  it("finished() alone runs it to the end (no iteration needed), and the node's default key pair is used when none is given", async () => {
    const topic = topicOf("announce finished only")
    const summary = await client.announce(topic).finished()
    expect(summary.accepted).toBe(6)
    const found = await client.lookup(topic).toArray()
    expect(found.some((r) => r.peers.some((p) => Buffer.from(p.publicKey).equals(client.defaultKeyPair.publicKey)))).toBe(true)
  }, 30_000)

  it("a malformed topic ends the stream with InvalidArgument (finished() rejects, iteration throws)", async () => {
    const stream = client.announce(Buffer.alloc(5), Gateway.keyPair())
    const err = await stream.finished().then(() => null, (e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidArgument)
    expect((err as InvalidArgument).code).toBe("INVALID_ARGUMENT")
    await expect(stream.toArray()).rejects.toBeInstanceOf(InvalidArgument)
  })

  it("clear: true unannounces first, so the new relay addresses replace the old ones", async () => {
    const topic = topicOf("announce clear")
    const kp = Gateway.keyPair()
    await client.announce(topic, kp, [{ host: "10.0.0.1", port: 1 }]).finished()
    await client.announce(topic, kp, [{ host: "10.0.0.2", port: 2 }], { clear: true }).finished()
    const found = await client.lookup(topic).toArray()
    const relays = new Set(found.flatMap((r) => r.peers.flatMap((p) => p.relayAddresses.map((a) => `${a.host}:${a.port}`))))
    expect([...relays]).toEqual(["10.0.0.2:2"])
  }, 30_000)

  it("a node with nobody to write to: the stream ends with WriteRejected, per-node outcomes empty", async () => {
    const alone = nodes.track(new Gateway({ bootstrap: [], host: HOST }))
    await alone.ready()
    const stream = alone.announce(topicOf("nobody"), Gateway.keyPair())
    const err = await stream.finished().then(() => null, (e: unknown) => e)
    expect(err).toBeInstanceOf(WriteRejected)
    expect((err as WriteRejected).attempted).toBe(0)
    expect(stream.writes).toEqual([])
    expect(stream.summary).toBeNull()
  }, 30_000)
})
