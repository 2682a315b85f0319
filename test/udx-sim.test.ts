/**
 * UDX session actors over the deterministic simulated network (TestClock):
 * bulk transfers both ways through loss, jitter (reordering) and duplication,
 * clean teardown, abrupt destroy, a dead peer, flow control toward a slow
 * reader, and the firewall path that connects a stream to its first packet.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import { createHash } from "node:crypto"
import { makeUdxMux, type UdxStream } from "../src/actors/session/udx.js"
import { SimNetwork, type SimNetworkOptions } from "../src/layers/transport/sim.js"
import { patternBytes } from "../src/util/random.js"
import { readAllHashed } from "./support/udx-harness.js"

const MiB = 1 << 20

const pattern = patternBytes
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

/** Write `data` in 64 KiB chunks (with back-pressure), then end. */
const writeAll = (s: UdxStream, data: Uint8Array, end = true) =>
  Effect.gen(function*() {
    for (let off = 0; off < data.length; off += 65_536) yield* s.write(data.subarray(off, Math.min(data.length, off + 65_536)))
    if (end) yield* s.end()
  })

/** Read until end-of-stream: byte count + SHA-256. */
const readAll = readAllHashed

/** Advance virtual time in `step` ms increments until every fiber is done (or `limit` ms). */
const drive = (fibers: ReadonlyArray<Fiber.Fiber<unknown, unknown>>, step = 100, limit = 600_000) =>
  Effect.gen(function*() {
    let t = 0
    while (fibers.some((f) => f.pollUnsafe() === undefined) && t < limit) {
      yield* TestClock.adjust(`${step} millis`)
      t += step
    }
    return t
  })

const setup = (options: SimNetworkOptions) =>
  Effect.gen(function*() {
    const net = yield* SimNetwork.make({ seed: 7, inboxCapacity: 1 << 16, ...options })
    const ha = yield* net.addHost()
    const hb = yield* net.addHost()
    const sa = yield* ha.bind({ port: 1000 })
    const sb = yield* hb.bind({ port: 2000 })
    const ma = yield* makeUdxMux(sa)
    const mb = yield* makeUdxMux(sb)
    const a = yield* ma.connect(0xa, 0xb, sb.local)
    const b = yield* mb.connect(0xb, 0xa, sa.local)
    return { net, ha, hb, sa, sb, ma, mb, a, b }
  })

const fork = <A, E>(e: Effect.Effect<A, E>) => Effect.forkChild(e, { startImmediately: true })

describe("UDX over the simulated network", () => {
  it.effect("8 MiB each way at once through 5% loss, jitter and 1% duplication: intact, then a clean close on both ends", () =>
    Effect.gen(function*() {
      const { net, a, b } = yield* setup({ latency: 1, jitter: 3, lossRate: 0.05, duplicateRate: 0.01 })
      const dataA = pattern(8 * MiB, 1)
      const dataB = pattern(8 * MiB, 2)
      const wa = yield* fork(writeAll(a, dataA))
      const wb = yield* fork(writeAll(b, dataB))
      const rb = yield* fork(readAll(b))
      const ra = yield* fork(readAll(a))
      const da = yield* fork(a.done)
      const db = yield* fork(b.done)
      const elapsed = yield* drive([wa, wb, rb, ra, da, db])
      assert.deepStrictEqual(yield* Fiber.join(rb), { bytes: dataA.length, sha256: sha256(dataA) })
      assert.deepStrictEqual(yield* Fiber.join(ra), { bytes: dataB.length, sha256: sha256(dataB) })
      // clean teardown: both `done` succeed (no error), both report closed
      yield* Fiber.join(da)
      yield* Fiber.join(db)
      yield* a.closed
      yield* b.closed
      const sa = a.stats()
      const sb = b.stats()
      const st = net.stats()
      assert.isAbove(st.dropped.loss, 500) // the link really was lossy
      assert.isAbove(st.duplicated, 50)
      assert.isAbove(sa.retransmits, 0)
      assert.isAbove(sb.retransmits, 0)
      assert.isAbove(sa.duplicatesReceived + sb.duplicatesReceived, 0)
      assert.isBelow(elapsed, 120_000)
    }))

  for (
    const [name, link] of [
      ["10% loss, 5% duplication, jitter 5 ms", { seed: 21, latency: 1, jitter: 5, lossRate: 0.1, duplicateRate: 0.05 }],
      ["heavy reordering: jitter 50 ms, 20% duplication", { seed: 22, latency: 5, jitter: 50, duplicateRate: 0.2 }],
      ["long path: 100 ms one way, 2% loss", { seed: 23, latency: 100, jitter: 3, lossRate: 0.02 }]
    ] as const
  ) {
    it.effect(`2 MiB each way intact and a clean close: ${name}`, () =>
      Effect.gen(function*() {
        const { a, b } = yield* setup(link)
        const dataA = pattern(2 * MiB, 31)
        const dataB = pattern(2 * MiB, 32)
        const rb = yield* fork(readAll(b))
        const ra = yield* fork(readAll(a))
        const da = yield* fork(Effect.result(a.done))
        const db = yield* fork(Effect.result(b.done))
        yield* fork(writeAll(a, dataA))
        yield* fork(writeAll(b, dataB))
        yield* drive([rb, ra, da, db], 500, 600_000)
        assert.deepStrictEqual(yield* Fiber.join(rb), { bytes: dataA.length, sha256: sha256(dataA) })
        assert.deepStrictEqual(yield* Fiber.join(ra), { bytes: dataB.length, sha256: sha256(dataB) })
        assert.strictEqual((yield* Fiber.join(da))._tag, "Success")
        assert.strictEqual((yield* Fiber.join(db))._tag, "Success")
      }))
  }

  it.effect("DESTROY on one end closes the other with ECONNRESET", () =>
    Effect.gen(function*() {
      const { a, b } = yield* setup({ latency: 1, jitter: 1 })
      const reader = yield* fork(readAll(b))
      const writer = yield* fork(Effect.result(writeAll(a, pattern(4 * MiB, 3), false)))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(reader.pollUnsafe(), undefined)
      yield* a.destroy()
      yield* TestClock.adjust("10 millis")
      const bDone = yield* fork(Effect.flip(b.done))
      yield* drive([reader, bDone, writer])
      const err = yield* Fiber.join(bDone)
      assert.strictEqual(err.code, "ECONNRESET")
      const readExit = yield* Fiber.await(reader)
      assert.strictEqual(readExit._tag, "Failure")
      assert.strictEqual(a.isClosed, true)
      assert.strictEqual(a.error, null) // local destroy is not an error
      yield* a.closed
      yield* b.closed
    }))

  it.effect("readable and messages first read after the stream closed: what arrived, then the close (reset or clean)", () =>
    Effect.gen(function*() {
      // reset: b never looked at its readable before a destroyed the stream
      const { a, b, ma, mb, sa, sb } = yield* setup({ latency: 1 })
      yield* a.write(pattern(3000, 5))
      yield* TestClock.adjust("10 millis")
      yield* a.destroy()
      yield* TestClock.adjust("10 millis")
      assert.strictEqual(b.isClosed, true)
      const got = yield* Effect.result(Stream.runCollect(b.readable))
      assert.strictEqual(got._tag, "Failure")
      assert.strictEqual(yield* Stream.runCount(b.messages), 0)
      // clean: data and END arrive before anyone reads; the queue made later holds them, then ends
      const c = yield* ma.connect(0xc, 0xd, sb.local)
      const d = yield* mb.connect(0xd, 0xc, sa.local)
      yield* c.write(pattern(3000, 6))
      yield* c.end()
      yield* d.end()
      yield* TestClock.adjust("50 millis")
      const chunks = yield* Stream.runCollect(d.readable)
      assert.strictEqual(sha256(Buffer.concat(chunks)), sha256(pattern(3000, 6)))
      yield* drive([yield* fork(d.closed), yield* fork(c.closed)])
      assert.strictEqual(yield* Stream.runCount(d.messages), 0)
      assert.strictEqual(yield* Stream.runCount(c.readable), 0)
    }))

  it.effect("a dead peer makes a sending stream time out (ETIMEDOUT) within ~13 RTOs", () =>
    Effect.gen(function*() {
      const { net, hb, a, b } = yield* setup({ latency: 1, jitter: 1, lossRate: 0.01 })
      const reader = yield* fork(readAll(b))
      const writer = yield* fork(Effect.result(writeAll(a, pattern(64 * MiB, 4))))
      yield* TestClock.adjust("200 millis")
      assert.isAbove(b.stats().bytesReceived, 100_000)
      yield* net.kill(hb.ip)
      const failed = yield* fork(Effect.flip(a.done))
      const elapsed = yield* drive([failed], 250, 60_000)
      const err = yield* Fiber.join(failed)
      assert.strictEqual(err.code, "ETIMEDOUT")
      // 1 s then every 2 s, 6 expiries of the head packet, then the 7th closes
      assert.isAtMost(elapsed, 14_000)
      assert.isAtLeast(elapsed, 12_000)
      const w = yield* Fiber.join(writer)
      assert.strictEqual(w._tag, "Failure")
      void reader
    }))

  it.effect("flow control: a reader that stops reading closes the window; the sender waits and resumes", () =>
    Effect.gen(function*() {
      const net = yield* SimNetwork.make({ seed: 3, latency: 1 })
      const sa = yield* (yield* net.addHost()).bind({ port: 1 })
      const sb = yield* (yield* net.addHost()).bind({ port: 2 })
      const ma = yield* makeUdxMux(sa)
      const mb = yield* makeUdxMux(sb, { defaults: { rwndMax: 256 * 1024 } })
      const a = yield* ma.connect(1, 2, sb.local)
      const b = yield* mb.connect(2, 1, sa.local)
      const data = pattern(2 * MiB, 5)
      const writer = yield* fork(writeAll(a, data))
      yield* TestClock.adjust("2000 millis")
      // nothing consumed: at most the window (plus at most one packet) was delivered
      const received = b.stats().bytesReceived
      assert.isBelow(received, 256 * 1024 + 64 * 1024)
      assert.strictEqual(writer.pollUnsafe(), undefined) // the writer is held back
      assert.strictEqual(a.stats().sendRwnd, 0)
      const reader = yield* fork(readAll(b))
      yield* drive([reader, writer])
      const got = yield* Fiber.join(reader)
      assert.deepStrictEqual(got, { bytes: data.length, sha256: sha256(data) })
    }))

  it.effect("messages both ways; a stream connects through its firewall on the first packet", () =>
    Effect.gen(function*() {
      const net = yield* SimNetwork.make({ seed: 9, latency: 2 })
      const sa = yield* (yield* net.addHost()).bind({ port: 1 })
      const sb = yield* (yield* net.addHost()).bind({ port: 2 })
      const other: Array<Uint8Array> = []
      const ma = yield* makeUdxMux(sa)
      const mb = yield* makeUdxMux(sb, { fallback: (d) => other.push(d.data) })
      const a = yield* ma.connect(0x1234, 0x5678, sb.local)
      // B only knows A's id; it learns A's address from the first packet
      const seen: Array<string> = []
      const b = yield* mb.createStream(0x5678, {
        remoteId: 0x1234,
        firewall: (from) => {
          seen.push(`${from.host}:${from.port}`)
          return false
        }
      })
      assert.strictEqual(b.connected, false)
      yield* a.write(new TextEncoder().encode("hi"))
      yield* a.send(new TextEncoder().encode("msg-a"))
      yield* TestClock.adjust("10 millis")
      assert.deepStrictEqual(seen, [`${sa.local.host}:${sa.local.port}`])
      assert.strictEqual(b.connected, true)
      yield* b.send(new TextEncoder().encode("msg-b"))
      sa.send(sb.local, new Uint8Array([0x03, 0x00])) // not UDX: goes to B's fallback
      yield* TestClock.adjust("10 millis")
      const ma1 = yield* fork(Stream.runCollect(Stream.take(a.messages, 1)))
      const mb1 = yield* fork(Stream.runCollect(Stream.take(b.messages, 1)))
      yield* TestClock.adjust("1 millis")
      const dec = (xs: ReadonlyArray<Uint8Array>) => xs.map((x) => new TextDecoder().decode(x))
      assert.deepStrictEqual(dec(yield* Fiber.join(mb1)), ["msg-a"])
      assert.deepStrictEqual(dec(yield* Fiber.join(ma1)), ["msg-b"])
      assert.deepStrictEqual(other.map((d) => Array.from(d)), [[0x03, 0x00]])
      const tooBig = yield* Effect.flip(a.send(new Uint8Array(2000)))
      assert.strictEqual(tooBig.code, "EMSGSIZE")
      assert.strictEqual(mb.stats().firewalled, 0)
    }))

  it.effect("hostile datagrams are dropped and counted; ids are unique; closing a mux resets its peers", () =>
    Effect.gen(function*() {
      const net = yield* SimNetwork.make({ seed: 11, latency: 1 })
      const sa = yield* (yield* net.addHost()).bind({ port: 1 })
      const sb = yield* (yield* net.addHost()).bind({ port: 2 })
      const evil = yield* (yield* net.addHost()).bind({ port: 3 })
      const ma = yield* makeUdxMux(sa)
      const muxScope = yield* Scope.make()
      const mb = yield* makeUdxMux(sb).pipe(Scope.provide(muxScope))
      const a = yield* ma.connect(0x77, 0x88, sb.local)
      const b = yield* mb.connect(0x88, 0x77, sa.local).pipe(Scope.provide(muxScope))
      const dup = yield* Effect.flip(mb.createStream(0x88))
      assert.strictEqual(dup.code, "EIDINUSE")
      const data = pattern(1 * MiB, 6)
      const reader = yield* fork(readAll(b))
      const writer = yield* fork(writeAll(a, data, false))
      // garbage at B's socket while the transfer runs
      let x = 1
      const rnd = () => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0
        return x / 4294967296
      }
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 50; i++) {
          const n = Math.floor(rnd() * 64)
          const p = new Uint8Array(n)
          for (let k = 0; k < n; k++) p[k] = Math.floor(rnd() * 256)
          if (n >= 20 && i % 2 === 0) {
            p[0] = 0xff
            p[1] = 0x01
            if (i % 4 === 0) {
              // addressed to B's stream, with doff beyond the datagram
              p.set([0x88, 0, 0, 0], 4)
              p[2] = 0x01
              p[3] = 0xff
            }
          }
          evil.send(sb.local, p)
        }
        yield* TestClock.adjust("5 millis")
      }
      yield* drive([writer])
      yield* b.end()
      yield* a.end()
      const got = yield* drive([reader]).pipe(Effect.andThen(Fiber.join(reader)))
      assert.deepStrictEqual(got, { bytes: data.length, sha256: sha256(data) })
      const st = mb.stats()
      assert.isAbove(st.notUdx + st.unknownId, 100)
      assert.strictEqual(st.defects, 0)
      assert.isAbove(b.stats().invalid, 100) // doff out of range, counted by the stream
      // a fresh pair, then B's mux goes away: A sees a reset
      const a2 = yield* ma.connect(0x99, 0xaa, sb.local)
      yield* mb.connect(0xaa, 0x99, sa.local).pipe(Scope.provide(muxScope))
      yield* a2.write(pattern(1000, 1))
      yield* TestClock.adjust("10 millis")
      yield* Scope.close(muxScope, Exit.void)
      const reset = yield* fork(Effect.flip(a2.done))
      yield* drive([reset], 10, 1000)
      assert.strictEqual((yield* Fiber.join(reset)).code, "ECONNRESET")
    }))
})
