/**
 * Unit tests of the deterministic UDX stream core (src/actors/session/udx-stream.ts):
 * wire format against the captured udx-native packets, ACK/SACK generation
 * and parsing, loss recovery, RTO backoff and timeout, windows, END/DESTROY,
 * heartbeats, doff, messages, MTU probing, batching and hostile input.
 */
import { describe, expect, it } from "vitest"
import { MAX_RTO_EXPIRIES, RTO_MIN } from "../src/actors/session/udx-stream.js"
import { deliver, Endpoint, fields, fromHex, hex, pair, run, sackBlocks } from "./support/udx-harness.js"
import { loadVectors } from "./support/vectors.js"
import { patternBytes, seededRandom } from "../src/util/random.js"

const V: Record<string, any> = loadVectors("connect").udxPackets
const ascii = (s: string) => new TextEncoder().encode(s)
/** Byte equality (vitest's deep equality is far too slow for megabytes). */
const same = (x: Uint8Array, y: Uint8Array) => Buffer.from(x.buffer, x.byteOffset, x.length).equals(Buffer.from(y.buffer, y.byteOffset, y.length))
const pattern = patternBytes
/** Deterministic PRNG for loss patterns. */
const prng = seededRandom

describe("UDX core: wire format (captured udx-native packets)", () => {
  it("DATA, pure ACK, MESSAGE and DESTROY are byte-identical to the captures", () => {
    const { a, b } = pair()
    a.core.write(0, ascii("hello udx"))
    const [data] = a.take()
    expect(hex(data!)).toBe(V.dataHello.hex)
    b.core.onPacket(1, data!)
    expect(Buffer.from(b.received()).toString()).toBe("hello udx")
    const [ack] = b.take()
    expect(hex(ack!)).toBe(V.pureAck.hex)
    a.core.onPacket(2, ack!)
    expect(a.core.sendMessage(3, ascii("datagram"))).toBe(true)
    const [msg] = a.take()
    expect(hex(msg!)).toBe(V.message.hex)
    b.core.onPacket(4, msg!)
    expect(b.messages.map((m) => Buffer.from(m).toString())).toEqual(["datagram"])
    expect(b.take()).toEqual([]) // messages are not acknowledged

    // DESTROY after one DATA packet carries the next seq (1)
    const c = new Endpoint(0x33333333)
    c.core.connect(0, 0x44444444)
    c.core.write(0, ascii("x"))
    c.core.destroy(1)
    const out = c.take()
    expect(out.length).toBe(2)
    expect(hex(out[1]!)).toBe(V.destroy.hex)
    expect(c.closed).toBe(1)
    expect(c.error).toBe(null)
  })

  it("a full packet carries 1152 payload bytes at the base MTU (IP datagram 1200)", () => {
    const { a } = pair()
    a.core.write(0, pattern(6000))
    const sizes = a.take().map((p) => p.length)
    expect(sizes).toEqual([1172, 1172, 1172, 1172, 1172, 260])
  })

  it("reproduces the captured two-loss recovery trace packet by packet", () => {
    const { a, b } = pair()
    a.core.write(0, ascii("hello udx"))
    deliver(a, b, 5)
    deliver(b, a, 10)
    a.core.write(20, new Uint8Array(6000).fill(0x61))
    const trace: Array<Record<string, unknown>> = []
    const rec = (dir: string, p: Uint8Array, dropped: boolean) => {
      const f = fields(p)
      const flags = f.type === 0 ? [] : [["DATA", 1], ["END", 2], ["SACK", 4]].filter(([, bit]) => (f.type & (bit as number)) !== 0).map(([n]) => n)
      trace.push({ dir, dropped, flags, seq: f.seq, ack: f.ack, ...(f.type & 4 ? { sacks: sackBlocks(p) } : {}), size: p.length })
    }
    // first flight: drop seq 2 and 4
    for (const p of a.take()) {
      const seq = fields(p).seq
      const drop = seq === 2 || seq === 4
      rec("A->B", p, drop)
      if (!drop) b.core.onPacket(30, p)
    }
    // B's acks, then A's retransmissions triggered by the third SACKed packet
    for (const p of b.take()) {
      rec("B->A", p, false)
      a.core.onPacket(40, p)
    }
    for (const p of a.take()) {
      rec("A->B", p, false)
      b.core.onPacket(50, p)
    }
    for (const p of b.take()) {
      rec("B->A", p, false)
      a.core.onPacket(60, p)
    }
    const expected = (V.lossRecoveryTrace as Array<Record<string, unknown>>).slice(0, -1) // the last entry is an MTU probe
    expect(trace).toEqual(expected)
    expect(same(b.received(), new Uint8Array([...ascii("hello udx"), ...new Uint8Array(6000).fill(0x61)]))).toBe(true)
    expect(a.core.stats().retransmits).toBe(2)
    expect(a.core.stats().fastRecoveries).toBe(1)
    expect(a.core.inflight).toBe(0)
  })
})

describe("UDX core: receiver", () => {
  it("acknowledges every DATA packet, SACKs out-of-order packets (ascending, disjoint, ≤ 50 blocks)", () => {
    // record 120 packets from a sender (acked by a first receiver so cwnd opens)
    const { a, b } = pair()
    a.core.write(0, pattern(1152 * 120))
    const all: Array<Uint8Array> = []
    for (let i = 0, now = 0; i < 20 && all.length < 120; i++) {
      const pkts = a.take()
      all.push(...pkts)
      pkts.forEach((p) => b.core.onPacket(now + 1, p))
      b.take().forEach((p) => a.core.onPacket((now += 2), p))
    }
    expect(all.length).toBe(120)
    // deliver only odd sequence numbers >= 1 to a fresh receiver: 60 gaps
    const r = new Endpoint(0x22222222)
    r.core.connect(0, 0x11111111)
    for (const p of all) if (fields(p).seq % 2 === 1) r.core.onPacket(5, p)
    const acks = r.take()
    expect(acks.length).toBe(60) // one ACK per DATA packet
    const last = acks[acks.length - 1]!
    expect(fields(last).type).toBe(0x04)
    expect(fields(last).ack).toBe(0)
    const blocks = sackBlocks(last)
    expect(blocks.length).toBe(50)
    expect(blocks[0]).toEqual([1, 2])
    for (let i = 1; i < blocks.length; i++) expect(blocks[i]![0]).toBeGreaterThan(blocks[i - 1]![1])
    // the advertised window shrinks by the buffered out-of-order bytes
    expect(fields(last).rwnd).toBe(4_194_304 - 60 * 1152)
    // fill the holes: everything is delivered in order and the window reopens
    for (const p of all) if (fields(p).seq % 2 === 0) r.core.onPacket(6, p)
    expect(same(r.received(), pattern(1152 * 120))).toBe(true)
    const fin = r.take().pop()!
    expect(fields(fin)).toMatchObject({ type: 0, ack: 120, rwnd: 4_194_304 })
  })

  it("answers a HEARTBEAT with a pure ACK (its ack/rwnd fields are not processed)", () => {
    const b = new Endpoint(0x22222222)
    b.core.connect(0, 0x11111111)
    b.core.onPacket(1, fromHex(V.heartbeat.hex))
    const out = b.take()
    expect(out.length).toBe(1)
    expect(fields(out[0]!)).toEqual({ type: 0, doff: 0, id: 0x11111111, rwnd: 4_194_304, seq: 0, ack: 0 })
  })

  it("honours doff (padding skipped) and drops packets whose doff exceeds the datagram", () => {
    const b = new Endpoint(0x22222222)
    b.core.connect(0, 0x11111111)
    const padded = new Uint8Array(20 + 32 + 3)
    padded.set(fromHex("ff01012022222222000040000000000000000000"))
    padded.set(ascii("abc"), 52)
    b.core.onPacket(1, padded)
    expect(Buffer.from(b.received()).toString()).toBe("abc")
    const bad = fromHex("ff0101ff222222220000400001000000000000006869")
    b.core.onPacket(2, bad)
    expect(b.data.length).toBe(1)
    expect(b.core.stats().invalid).toBe(1)
    expect(b.core.ack).toBe(1)
  })

  it("buffers END until the gap before it is filled, then signals end-of-stream", () => {
    const { a, b } = pair({ autoFlush: false }, {})
    a.core.write(0, pattern(3000))
    a.core.end(0)
    a.core.flush(0)
    const pkts = a.take()
    expect(pkts.map((p) => fields(p).type)).toEqual([1, 1, 3]) // the last packet is DATA+END
    b.core.onPacket(1, pkts[2]!)
    b.core.onPacket(1, pkts[0]!)
    expect(b.ended).toBe(0)
    b.core.onPacket(1, pkts[1]!)
    expect(b.ended).toBe(1)
    expect(same(b.received(), pattern(3000))).toBe(true)
  })

  it("never throws on hostile datagrams; garbage is counted", () => {
    const { b } = pair()
    const rnd = prng(7)
    for (let i = 0; i < 5000; i++) {
      const n = Math.floor(rnd() * 80)
      const p = new Uint8Array(n)
      for (let k = 0; k < n; k++) p[k] = Math.floor(rnd() * 256)
      if (n >= 2 && rnd() < 0.7) {
        p[0] = 0xff
        p[1] = 0x01
      }
      expect(() => b.core.onPacket(i, p)).not.toThrow()
      expect(() => b.core.onTimers(i)).not.toThrow()
    }
    expect(b.core.stats().invalid).toBeGreaterThan(0)
  })
})

describe("UDX core: sender", () => {
  it("packet slabs: sized by what waits to go out, let go once everything is acknowledged", () => {
    const { a, b } = pair()
    expect(a.core.slabBytes).toBe(0)
    // a short write: the smallest slab
    a.core.write(0, ascii("hello"))
    expect(a.core.slabBytes).toBe(4096)
    const first = a.take()
    const copy = first.map((p) => Uint8Array.from(p))
    for (const p of first) b.core.onPacket(5, p)
    deliver(b, a, 10)
    expect(a.core.slabBytes).toBe(0) // all acknowledged: nothing held while idle
    // later packets live in a new slab: the earlier ones are untouched
    a.core.write(20, ascii("world"))
    expect(first.every((p, i) => same(p, copy[i]!))).toBe(true)
    deliver(a, b, 25)
    deliver(b, a, 30)
    expect(a.core.slabBytes).toBe(0)
    // a medium write: a slab rounded up from the bytes waiting
    a.core.write(40, pattern(20_000))
    expect(a.core.slabBytes).toBe(32 * 1024)
    // a bulk write: the largest slab at once, and never a smaller one while busy
    const big = pattern(1 << 20)
    const c = pair()
    c.a.core.write(0, big)
    expect(c.a.core.slabBytes).toBe(256 * 1024)
    let max = 0
    let min = Infinity
    run(c.a, c.b, {
      until: () => {
        const n = c.a.core.slabBytes
        if (n > 0) {
          max = Math.max(max, n)
          min = Math.min(min, n)
        }
        return c.b.received().length === big.length && c.a.core.inflight === 0
      }
    })
    expect(same(c.b.received(), big)).toBe(true)
    expect(max).toBe(256 * 1024)
    expect(min).toBe(256 * 1024)
    expect(c.a.core.slabBytes).toBe(0)
  })

  it("RTT/RTO per RFC 6298 with the 1000 ms floor", () => {
    const { a, b } = pair()
    a.core.write(0, ascii("x"))
    deliver(a, b, 50)
    deliver(b, a, 100)
    expect(a.core.srtt).toBe(100)
    expect(a.core.rttvar).toBe(50)
    expect(a.core.rto).toBe(RTO_MIN)
    a.core.write(200, ascii("y"))
    deliver(a, b, 1200)
    deliver(b, a, 2200) // r = 2000
    expect(a.core.rttvar).toBe((3 * 50 + 1900) / 4)
    expect(a.core.srtt).toBe((7 * 100 + 2000) / 8)
    expect(a.core.rto).toBe(Math.ceil(a.core.srtt + 4 * a.core.rttvar))
  })

  it("RTO: first expiry after rto, then every 2·rto; after 6 expiries of one packet the stream times out", () => {
    const a = new Endpoint(1)
    a.core.connect(0, 2)
    a.core.write(0, ascii("ping"))
    const deadlines: Array<number> = []
    let now = 0
    while (a.closed === 0 && deadlines.length < 20) {
      now = a.core.nextDeadline()
      deadlines.push(now)
      a.core.onTimers(now)
    }
    expect(deadlines).toEqual([1000, 3000, 5000, 7000, 9000, 11000, 13000])
    expect(a.log.length).toBe(1 + MAX_RTO_EXPIRIES) // original + 6 retransmissions
    expect(a.log.every((p) => fields(p).seq === 0)).toBe(true)
    expect(a.error?.code).toBe("ETIMEDOUT")
    expect(a.core.stats().rtoCount).toBe(6)
    expect(a.core.nextDeadline()).toBe(Infinity)
  })

  it("retransmits lost packets (RTO, RACK, TLP) until 1 MiB arrives intact over a 10%-loss wire", () => {
    for (const seed of [1, 2, 3]) {
      const rnd = prng(seed)
      const { a, b } = pair()
      const msg = pattern(1 << 20, seed)
      a.core.write(0, msg)
      a.core.end(0)
      b.core.end(0)
      run(a, b, { latency: 5, limit: 600_000, until: () => a.closed > 0 && b.closed > 0, drop: () => rnd() < 0.1 })
      expect(same(b.received(), msg)).toBe(true)
      expect(a.error).toBe(null)
      expect(b.error).toBe(null)
      expect(a.core.stats().retransmits).toBeGreaterThan(0)
    }
  })

  it("writes in a retransmission carry the current ack and rwnd (header refreshed)", () => {
    const { a, b } = pair()
    a.core.write(0, ascii("one"))
    a.take() // lost
    b.core.write(0, ascii("from b"))
    deliver(b, a, 10)
    a.take() // a's ACK, dropped
    a.core.onTimers(a.core.nextDeadline())
    const [re] = a.take()
    expect(fields(re!)).toMatchObject({ type: 1, seq: 0, ack: 1 })
  })

  it("the initial window is 10 packets; the flight never exceeds cwnd", () => {
    const { a, b } = pair()
    a.core.write(0, pattern(200_000))
    expect(a.take().length).toBe(10)
    const { a: a2, b: b2 } = pair()
    a2.core.write(0, pattern(2_000_000))
    let now = 0
    for (let i = 0; i < 50; i++) {
      now += 5
      const pkts = a2.take()
      expect(pkts.length).toBeLessThanOrEqual(a2.core.cwnd + 1)
      expect(a2.core.inflight).toBeLessThanOrEqual(a2.core.cwnd)
      pkts.forEach((p) => b2.core.onPacket(now, p))
      now += 5
      b2.take().forEach((p) => a2.core.onPacket(now, p))
    }
    expect(a2.core.cwnd).toBeGreaterThan(100) // slow start grew it
    void b
  })

  it("never exceeds the peer's receive window; zero window → HEARTBEAT probes; a window update resumes", () => {
    const a = new Endpoint(1)
    const b = new Endpoint(2, { rwndMax: 3000, manualConsume: true })
    a.core.connect(0, 2)
    b.core.connect(0, 1)
    a.core.write(0, pattern(1000))
    deliver(a, b, 1)
    deliver(b, a, 2) // a learns rwnd = 2000
    expect(a.core.sendRwnd).toBe(2000)
    const msg = pattern(10_000, 9)
    a.core.write(3, msg)
    let now = 3
    let heartbeats = 0
    let consumed = 0
    for (let i = 0; i < 200 && b.received().length < 11_000; i++) {
      now += 10
      for (const p of a.take()) {
        if (fields(p).type === 0x20) heartbeats++
        b.core.onPacket(now, p)
      }
      const unread = b.received().length - consumed
      expect(unread).toBeLessThanOrEqual(3000)
      // the reader only starts consuming after the zero-window probing began
      if (heartbeats >= 2) {
        b.core.consumed(now, unread)
        consumed += unread
      }
      now += 10
      deliver(b, a, now)
      if (a.core.nextDeadline() <= now) a.core.onTimers(now)
      else if (a.outbox.length === 0 && heartbeats < 2) {
        now = Math.max(now, a.core.nextDeadline())
        a.core.onTimers(now)
      }
      expect(a.core.inflightBytes).toBeLessThanOrEqual(Math.max(a.core.sendRwnd, 0))
    }
    expect(heartbeats).toBeGreaterThanOrEqual(2)
    expect(same(b.received(), new Uint8Array([...pattern(1000), ...msg]))).toBe(true)
  })

  it("keepalive: a HEARTBEAT every interval while idle, answered by an ACK", () => {
    const { a, b } = pair({ keepAlive: 5000 }, {})
    expect(a.core.nextDeadline()).toBe(5000)
    a.core.onTimers(5000)
    const [hb] = a.take()
    expect(fields(hb!).type).toBe(0x20)
    b.core.onPacket(5001, hb!)
    expect(fields(b.take()[0]!).type).toBe(0)
    expect(a.core.nextDeadline()).toBe(10_000)
  })

  it("write back-pressure: false above the high watermark, drain event once packets leave", () => {
    const { a, b } = pair()
    expect(a.core.write(0, pattern(200_000))).toBe(true)
    expect(a.core.write(0, pattern(200_000))).toBe(false)
    run(a, b, { latency: 1, until: () => a.drains > 0 })
    expect(a.drains).toBe(1)
    expect(a.core.queuedBytes).toBeLessThanOrEqual(262_144)
  })

  it("path MTU probing (opt-in) climbs 1200 → 1500 in steps of 32 with doff padding", () => {
    const { a, b } = pair({ maxMtu: 1500 }, {})
    // one probe per round trip: enough data for ten rounds
    const msg = pattern(16 << 20, 5)
    a.core.write(0, msg)
    run(a, b, { latency: 1, until: () => b.core.ack === a.core.seqNext && a.core.queuedBytes === 0 })
    expect(a.core.mtu).toBe(1500)
    expect(a.core.mss).toBe(1452)
    const probes = a.log.filter((p) => fields(p).doff > 0)
    expect(probes.map((p) => p.length + 28)).toEqual([1232, 1264, 1296, 1328, 1360, 1392, 1424, 1456, 1488, 1500])
    expect(Math.max(...a.log.map((p) => p.length))).toBe(1472)
    expect(same(b.received(), msg)).toBe(true)
  })
})

describe("UDX core: teardown", () => {
  it("END on both sides closes both cleanly (END consumes a seq; acked END = local end)", () => {
    const { a, b } = pair()
    a.core.write(0, ascii("hello udx"))
    deliver(a, b, 1)
    deliver(b, a, 2)
    a.core.end(3)
    const [end] = a.take()
    expect(fields(end!)).toMatchObject({ type: 2, seq: 1, ack: 0 })
    expect(end!.length).toBe(20)
    b.core.onPacket(4, end!)
    expect(b.ended).toBe(1)
    const [endAck] = b.take()
    expect(fields(endAck!)).toMatchObject({ type: 0, ack: 2 })
    a.core.onPacket(5, endAck!)
    expect(a.core.localEnded).toBe(true)
    expect(a.closed).toBe(0)
    b.core.end(6)
    const bEnd = b.take()
    bEnd.forEach((p) => a.core.onPacket(7, p))
    expect(a.ended).toBe(1)
    expect(a.closed).toBe(1)
    deliver(a, b, 8)
    expect(b.closed).toBe(1)
    expect(a.error).toBe(null)
    expect(b.error).toBe(null)
    // lingering: a retransmitted END is still acknowledged
    a.core.onPacket(9, bEnd[0]!)
    expect(fields(a.take()[0]!)).toMatchObject({ type: 0, ack: 1 })
    expect(a.core.finished).toBe(false)
    a.core.onTimers(a.core.nextDeadline())
    expect(a.core.finished).toBe(true)
  })

  it("DESTROY closes the peer with ECONNRESET; destroying an unconnected stream sends nothing", () => {
    const { a, b } = pair()
    a.core.write(0, pattern(5000))
    deliver(a, b, 1)
    a.core.destroy(2)
    expect(a.closed).toBe(1)
    expect(a.error).toBe(null)
    deliver(a, b, 3)
    expect(b.closed).toBe(1)
    expect(b.error?.code).toBe("ECONNRESET")
    expect(a.core.finished && b.core.finished).toBe(true)
    const lone = new Endpoint(5)
    lone.core.write(0, ascii("queued"))
    lone.core.destroy(1)
    expect(lone.log.length).toBe(0)
    expect(lone.closed).toBe(1)
  })

  it("writes after end() and sends after close are refused", () => {
    const { a } = pair()
    a.core.end(0)
    expect(a.core.write(1, ascii("late"))).toBe(false)
    a.core.destroy(2)
    expect(a.core.sendMessage(3, ascii("m"))).toBe(false)
  })
})

describe("UDX core: batched mode (the session actor)", () => {
  it("ACKs cover batches (every ackEvery packets, else within ackDelay); data packets piggyback the ack", () => {
    const a = new Endpoint(1)
    const b = new Endpoint(2, { autoFlush: false, ackEvery: 4 })
    a.core.connect(0, 2)
    b.core.connect(0, 1)
    b.core.flush(0)
    a.core.write(0, pattern(1152 * 10))
    const pkts = a.take()
    expect(pkts.length).toBe(10)
    pkts.forEach((p) => b.core.onPacket(1, p))
    b.core.flush(1)
    // the rest waits at most ackDelay (1 ms) for more packets to cover
    expect(b.take().map((p) => fields(p).ack)).toEqual([4, 8])
    expect(b.core.nextDeadline()).toBe(2)
    b.core.onTimers(2)
    const acks = b.take()
    expect(acks.map((p) => fields(p).ack)).toEqual([10])
    acks.forEach((p) => a.core.onPacket(2, p))
    // bidirectional: B's DATA carries the ack, no separate pure ACK
    a.core.write(2, pattern(100))
    deliver(a, b, 3)
    b.core.write(3, pattern(100))
    b.core.flush(3)
    const out = b.take()
    expect(out.length).toBe(1)
    expect(fields(out[0]!)).toMatchObject({ type: 1, ack: 11 })
  })
})
