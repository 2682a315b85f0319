/**
 * Live fuzzing (issue 21, item 2), the short run: the fuzzer of
 * `npm run fuzz` (bench/fuzz/run.mjs) with the node built from src/, 30,000
 * random and mutated datagrams of every message kind at a live Omega node
 * and its connections over UDP on 127.0.0.1, then every check: nothing
 * escaped, the routing table holds only honest nodes, the stored records
 * read back identically, the sentinel connection still carries data both
 * ways, a reference node still pings, looks up and finds nodes through it.
 *
 * Also the reproductions of what the fuzzer found: one SACK block spanning
 * 2^31 sequence numbers across the wrap passed the stream core's range
 * checks and froze the process in `sackRange` (fixed); a tail loss probe
 * retransmitted a packet still in the pipe and counted it twice, so
 * `inflight` leaked one per probe until it reached cwnd and the stream
 * stopped sending for good (fixed: the packet leaves the pipe first).
 */
import { describe, expect, it } from "vitest"
import { runFuzz } from "../bench/fuzz/run.mjs"
import * as Connect from "../src/protocol/connect.js"
import * as Rpc from "../src/protocol/dht-rpc.js"
import * as E from "../src/protocol/encoding.js"
import * as Records from "../src/protocol/records.js"
import * as Udx from "../src/protocol/udx.js"
import { Gateway } from "../src/index.js"
import { pair } from "./support/udx-harness.js"

describe("live fuzzing", () => {
  it("a SACK block across the sequence wrap is ignored at once (it froze the stream core)", () => {
    const { a } = pair()
    // nothing sent: remoteAcked = seqNext = 0. [1, 2^31) passed the three
    // pairwise sdiff checks and sackRange walked 2^31 - 1 sequence numbers.
    const blocks: Array<readonly [number, number]> = [
      [1, 0x80000000],
      [0x7fffffff, 0xfffffffe],
      [0x40000000, 0xc0000000]
    ]
    const packet = Udx.encodeUdxPacket({ type: Udx.UDX_SACK, id: 0x11111111, rwnd: 1 << 22, seq: 0, ack: 0, sacks: blocks })
    if (packet._tag !== "Success") throw new Error("encode")
    const t0 = performance.now()
    a.core.onPacket(1, packet.success)
    expect(performance.now() - t0).toBeLessThan(100)
    expect(a.closed).toBe(0)
  })

  it("a tail loss probe of a packet still in flight does not leak inflight (the 1,000,000 run's sentinel stalled on it)", () => {
    const { a, b } = pair()
    a.core.write(0, new Uint8Array(2000)) // two packets: the first arrives, the second is lost
    const [first] = a.take()
    b.core.onPacket(1, first!)
    b.core.flush(1)
    for (const p of b.take()) a.core.onPacket(2, p) // its ack arms the tail loss probe
    expect(a.core.stats().inflight).toBe(1)
    let now = 2
    for (let i = 0; i < 20 && a.core.stats().tlpCount === 0; i++) {
      now = Math.max(now + 1, a.core.nextDeadline())
      a.core.onTimers(now)
    }
    expect(a.core.stats().tlpCount).toBe(1)
    // the probe (the second packet again, never marked lost) arrives and is acknowledged
    for (const p of a.take()) b.core.onPacket(now, p)
    b.core.flush(now)
    for (const p of b.take()) a.core.onPacket(now + 1, p)
    expect(b.received().length).toBe(2000)
    expect(a.core.stats().inflight).toBe(0)
  })

  it("30,000 fuzzed datagrams at a live node and its connections: nothing escapes, the node and its connections keep working", async () => {
    const lines: Array<string> = []
    const s = await runFuzz({ Gateway, Rpc, Records, Connect, Udx, E }, { count: 30_000, seed: 0x21, dataBytes: 128 * 1024, log: (l) => lines.push(l) })
    console.log(
      `fuzz-live: ${s.count} datagrams in ${Math.round(s.runMs)} ms (${s.rate}/s), T received ${s.received}; ` +
        `kinds ${JSON.stringify(s.perKind)}; node ${JSON.stringify({ ...s.node, router: undefined })}; ` +
        `victims ${JSON.stringify(s.victims)}, errors on T ${JSON.stringify(s.serverErrors)}; blocked sends ${s.blockedSends.count}; table ${s.checks.tableAfter.join(" ")}`
    )
    expect(s.failures).toEqual([])
    expect(s.count).toBeGreaterThanOrEqual(30_000)
    // every kind was sent
    const kinds = Object.keys(s.perKind)
    for (const k of ["PING", "PING_NAT", "FIND_NODE", "DOWN_HINT", "DELAYED_PING", "FIND_PEER", "LOOKUP", "ANNOUNCE", "UNANNOUNCE", "MUTABLE_PUT", "MUTABLE_GET", "IMMUTABLE_PUT", "IMMUTABLE_GET", "PEER_HANDSHAKE", "PEER_HOLEPUNCH"])
      expect(kinds, k).toContain(`req:${k}`)
    for (const k of ["res:unsolicited", "udx:unknown", "udx:sentinel", "udx:victim", "ss:frame", "ss:message", "vector", "random"]) expect(kinds, k).toContain(k)
    expect(s.live.started).toBeGreaterThan(0)
    // the node saw them and counted what it dropped
    expect(s.received).toBeGreaterThan(25_000)
    expect(s.node.rpcDropped).toBeGreaterThan(1000)
    expect(s.node.udxUnknownId).toBeGreaterThan(1000)
    expect(s.node.udxRouted).toBeGreaterThan(1000)
    expect(s.node.udxDefects).toBe(0)
    // the checks, one by one (also in failures)
    const c = s.checks
    expect(c.uncaught + c.unhandled + c.gatewayErrors).toBe(0)
    expect(c.pingFromOmega && c.pingFromReference && c.referenceFindNodeReachesT).toBe(true)
    expect(c.referenceLookupPeers).toBeGreaterThan(0)
    expect(c.recordsIntact).toBe(true)
    expect(c.sentinel.upOk && c.sentinel.downOk).toBe(true)
    expect(c.freshConnection.upOk && c.freshConnection.downOk).toBe(true)
    expect(s.serverErrors.untyped).toBe(0)
  }, 120_000)
})
