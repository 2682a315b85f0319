/**
 * The secret stream (connect.md §7) against the `secretStreamWire` vector and
 * over in-memory transports: framing, keepalive, header checks, tampering,
 * size limits, unordered messages, counter wrap, end/close, random chunking,
 * backpressure, and the Effect and Node faces.
 */
import { Cause, Effect, Exit, Fiber, Stream } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import * as SS from "../src/actors/session/secret-stream.js"
import { NoiseSecretStream } from "../src/actors/session/secret-stream-node.js"
import { Crypto } from "../src/layers/Crypto.js"
import { streamId } from "../src/layers/crypto/derive.js"
import { SECRETSTREAM_TAG_REKEY, type CryptoImpl } from "../src/layers/crypto/types.js"
import { toHex } from "../src/protocol/encoding.js"
import { cryptoImpls } from "./support/impls.js"
import {
  concatBytes,
  manualClock,
  MemRaw,
  memRawPair,
  prng,
  ticks
} from "./support/secret-stream-pipe.js"
import { hex, loadVectors, utf8 } from "./support/vectors.js"

const C = loadVectors("connect")
const W = C.secretStreamWire
const N = C.noiseIK

let impls: ReadonlyArray<CryptoImpl> = []
let fast: CryptoImpl
beforeAll(async () => {
  impls = await cryptoImpls()
  fast = impls.find((c) => c.name === "fast")!
})

const hh = hex(W.handshakeHash)
const pkI = hex(C.keyPairs.client.publicKey)
const pkR = hex(C.keyPairs.server.publicKey)
const hsInitiator: SS.SecretStreamHandshake = {
  isInitiator: true,
  tx: hex(N.initiatorTx),
  rx: hex(N.initiatorRx),
  handshakeHash: hh,
  publicKey: pkI,
  remotePublicKey: pkR
}
const hsResponder: SS.SecretStreamHandshake = {
  isInitiator: false,
  tx: hex(N.responderTx),
  rx: hex(N.responderRx),
  handshakeHash: hh,
  publicKey: pkR,
  remotePublicKey: pkI
}

/** Records every core event. */
class Recorder implements SS.SecretStreamEvents {
  data: Array<Uint8Array> = []
  messages: Array<Uint8Array> = []
  ended = false
  drains = 0
  remoteOpened = false
  closed: { error: SS.SecretStreamError | null } | null = null
  accept = true
  onRemoteOpen(): void {
    this.remoteOpened = true
  }
  onData(p: Uint8Array): boolean {
    this.data.push(p)
    return this.accept
  }
  onEnd(): void {
    this.ended = true
  }
  onMessage(m: Uint8Array): void {
    this.messages.push(m)
  }
  onDrain(): void {
    this.drains++
  }
  onClose(error: SS.SecretStreamError | null): void {
    if (this.closed !== null) throw new Error("onClose twice")
    this.closed = { error }
  }
  get text(): string {
    return Buffer.from(concatBytes(this.data)).toString()
  }
}

const makeCore = (
  hs: SS.SecretStreamHandshake,
  c: CryptoImpl,
  raw: SS.RawStream,
  opts: SS.SecretStreamCoreOptions = {}
) => {
  const ev = new Recorder()
  const core = new SS.SecretStreamCore(hs, c, raw, ev, opts)
  return { core, ev }
}

const pair = (c: CryptoImpl, opts: SS.SecretStreamCoreOptions = {}, rawOpts: ConstructorParameters<typeof MemRaw>[0] = {}) => {
  const [ra, rb] = memRawPair(rawOpts)
  const a = makeCore(hsInitiator, c, ra, opts)
  const b = makeCore(hsResponder, c, rb, opts)
  a.core.start()
  b.core.start()
  return { ra, rb, a, b }
}

const forEachImpl = (name: string, f: (c: CryptoImpl) => Promise<void> | void) =>
  it(name, async () => {
    expect(impls.length).toBe(2)
    for (const c of impls) {
      try {
        await f(c)
      } catch (e) {
        throw new Error(`[${c.name}] ${String((e as Error).message)}`, { cause: e })
      }
    }
  })

const tamper = (b: Uint8Array, i: number): Uint8Array => {
  const out = b.slice()
  out[i] = out[i]! ^ 0x01
  return out
}

describe("secretStreamWire vector", () => {
  forEachImpl("initiator output is byte-exact; responder decodes it from random chunkings", async (c) => {
    const raw = new MemRaw()
    const { core } = makeCore(hsInitiator, c, raw, {
      testing: { header: hex(W.headerFrameParsed.secretstreamHeader), initialCounter: hex(W.unordered.initialCounterRandom) }
    })
    core.start()
    expect(toHex(raw.allWritten)).toBe(W.headerFrame)
    expect(toHex(core.header)).toBe(W.headerFrame)
    for (const m of W.unordered.messages) expect(core.send(hex(m.plaintext))).toBe(true)
    for (const f of W.frames) expect(core.write(hex(f.plaintext))).toBe(true)
    const expected = W.headerFrame + W.frames.map((f: any) => f.frame).join("")
    expect(toHex(raw.allWritten)).toBe(expected)
    expect(raw.sent.map(toHex)).toEqual(W.unordered.messages.map((m: any) => m.wire))
    // writeBatch produces the same bytes (coalesced)
    const raw2 = new MemRaw()
    const two = makeCore(hsInitiator, c, raw2, { testing: { header: hex(W.headerFrameParsed.secretstreamHeader) } })
    two.core.start()
    expect(two.core.writeBatch(W.frames.map((f: any) => hex(f.plaintext)))).toBe(true)
    expect(toHex(raw2.allWritten)).toBe(expected)
    expect(raw2.written.length).toBe(2)

    // responder (keepAlive 0: the empty message is delivered, as in the vector)
    const bytes = hex(expected)
    for (const seed of [1, 2, 3, 4]) {
      const rnd = prng(seed)
      const rraw = new MemRaw()
      const r = makeCore(hsResponder, c, rraw)
      r.core.start()
      for (const m of W.unordered.messages) rraw.injectMessage(hex(m.wire))
      await ticks(2)
      let o = 0
      while (o < bytes.length) {
        const n = seed === 1 ? 1 : 1 + Math.floor(rnd() * 40)
        rraw.inject(bytes.subarray(o, o + n))
        o += n
      }
      await ticks(3)
      const decoded = [
        ...r.ev.messages.map((m) => "message:" + toHex(m)),
        ...r.ev.data.map(toHex)
      ]
      expect(decoded).toEqual(W.responderDecoded)
      expect(r.ev.remoteOpened).toBe(true)
      expect(r.ev.closed).toBeNull()
    }
  })
})

describe("secret stream core over an in-memory pipe", () => {
  forEachImpl("both directions, random sizes, random chunk boundaries", async (c) => {
    const rnd = prng(7)
    const p = pair(c, {}, { split: prng(99) })
    const sentA: Array<Uint8Array> = []
    const sentB: Array<Uint8Array> = []
    for (let i = 0; i < 60; i++) {
      const a = c.randomBytes(1 + Math.floor(rnd() * 3000))
      const b = c.randomBytes(1 + Math.floor(rnd() * 700))
      sentA.push(a)
      sentB.push(b)
      expect(p.a.core.write(a)).toBe(true)
      expect(p.b.core.write(b)).toBe(true)
      if (i % 7 === 0) await ticks(1)
    }
    await ticks(10)
    expect(toHex(concatBytes(p.b.ev.data))).toBe(toHex(concatBytes(sentA)))
    expect(toHex(concatBytes(p.a.ev.data))).toBe(toHex(concatBytes(sentB)))
    // message boundaries are preserved
    expect(p.b.ev.data.length).toBe(60)
    expect(p.b.ev.data.map((d) => d.length)).toEqual(sentA.map((d) => d.length))
    expect(p.a.ev.remoteOpened && p.b.ev.remoteOpened).toBe(true)
    // each side's first frame carries its own role's stream id
    expect(toHex(p.ra.written[0]!.subarray(3, 35))).toBe(toHex(streamId(c, hh, true)))
    expect(toHex(p.rb.written[0]!.subarray(3, 35))).toBe(toHex(streamId(c, hh, false)))
  })

  forEachImpl("REKEY-tagged frames are followed by both sides", async (c) => {
    const p = pair(c)
    expect(p.a.core.write(utf8("before"))).toBe(true)
    expect(p.a.core.write(utf8("rekey"), SECRETSTREAM_TAG_REKEY)).toBe(true)
    expect(p.a.core.write(utf8("after"))).toBe(true)
    expect(p.b.core.write(utf8("x"), SECRETSTREAM_TAG_REKEY)).toBe(true)
    expect(p.b.core.write(utf8("y"))).toBe(true)
    await ticks(4)
    expect(p.b.ev.text).toBe("beforerekeyafter")
    expect(p.a.ev.text).toBe("xy")
  })

  forEachImpl("keepalive: empty frame after keepAlive ms idle, reset by writes; dropped when keepAlive > 0", async (c) => {
    const clock = manualClock()
    const [ra, rb] = memRawPair()
    const a = makeCore(hsInitiator, c, ra, { keepAlive: 5000, clock })
    const b = makeCore(hsResponder, c, rb, { keepAlive: 5000, clock })
    const rawNoFilter = new MemRaw()
    a.core.start()
    b.core.start()
    expect(ra.written.length).toBe(1) // header
    clock.advance(4999)
    expect(ra.written.length).toBe(1)
    clock.advance(1)
    expect(ra.written.length).toBe(2)
    const ka = ra.written[1]!
    expect(ka.length).toBe(20)
    expect(toHex(ka.subarray(0, 3))).toBe("110000")
    // a write resets the timer
    clock.advance(3000)
    a.core.write(utf8("hi"))
    expect(ra.written.length).toBe(3)
    clock.advance(4000)
    expect(ra.written.length).toBe(3)
    clock.advance(1000)
    expect(ra.written.length).toBe(4)
    expect(ra.written[3]!.length).toBe(20)
    // repeating
    clock.advance(10_000)
    expect(ra.written.length).toBe(6)
    await ticks(3)
    // b (keepAlive > 0) drops the empty messages and delivers only "hi"
    expect(b.ev.data.map((d) => Buffer.from(d).toString())).toEqual(["hi"])
    // a receiver with keepAlive 0 delivers them
    const r = makeCore(hsResponder, c, rawNoFilter)
    r.core.start()
    rawNoFilter.inject(ra.allWritten)
    await ticks(2)
    expect(r.ev.data.map((d) => d.length)).toEqual([0, 2, 0, 0, 0])
    // setKeepAlive(0) stops the timer; end() too
    a.core.setKeepAlive(0)
    clock.advance(20_000)
    expect(ra.written.length).toBe(6)
    a.core.setKeepAlive(1000)
    clock.advance(1000)
    expect(ra.written.length).toBe(7)
    a.core.end()
    clock.advance(5000)
    expect(ra.written.length).toBe(7)
    expect(clock.pending).toBe(b.core.keepAlive > 0 ? 1 : 0)
  })

  forEachImpl("inactivity timeout destroys with StreamTimeout; incoming data refreshes it", async (c) => {
    const clock = manualClock()
    const p = pair(c, { clock })
    p.b.core.setTimeout(1000)
    clock.advance(900)
    p.a.core.write(utf8("ping"))
    await ticks(3)
    clock.advance(900) // t = 1800: the first deadline (1000) was pushed back by the ping at t = 900
    expect(p.b.ev.closed).toBeNull()
    clock.advance(99)
    expect(p.b.ev.closed).toBeNull()
    clock.advance(1) // t = 1900 = ping + timeout
    expect(p.b.ev.closed?.error?._tag).toBe("StreamTimeout")
    expect(p.rb.destroyed).toBe(true)
  })

  forEachImpl("invalid header: wrong length or wrong role id -> InvalidHeader and destroy", async (c) => {
    // the peer's header must carry the *peer's* role id: an initiator header sent to an initiator fails
    const [ra] = memRawPair()
    const a = makeCore(hsInitiator, c, ra)
    a.core.start()
    const sameRole = makeCore(hsInitiator, c, new MemRaw())
    sameRole.core.start()
    ra.inject(sameRole.core.header)
    await ticks(2)
    expect(a.ev.closed?.error?._tag).toBe("InvalidHeader")
    expect(a.ev.closed?.error).toBeInstanceOf(SS.InvalidHeader)
    expect(ra.destroyed).toBe(true)
    expect(ra.destroyError).toBeInstanceOf(SS.InvalidHeader)

    for (const bad of [57, 55, 0]) {
      const raw = new MemRaw()
      const r = makeCore(hsResponder, c, raw)
      r.core.start()
      const body = new Uint8Array(bad)
      body.set(streamId(c, hh, true).subarray(0, Math.min(32, bad)))
      raw.inject(concatBytes([Uint8Array.of(bad, 0, 0), body]))
      raw.inject(utf8("more bytes after the failure are ignored"))
      await ticks(2)
      expect(r.ev.closed?.error?._tag).toBe("InvalidHeader")
      expect(raw.destroyed).toBe(true)
      expect(r.ev.data.length).toBe(0)
      // writes after the failure are refused
      expect((r.core.write(utf8("x")) as SS.StreamClosed)._tag).toBe("StreamClosed")
    }
  })

  forEachImpl("tampered or short frame -> typed error and destroy", async (c) => {
    const source = new MemRaw()
    const w = makeCore(hsInitiator, c, source)
    w.core.start()
    w.core.write(utf8("first"))
    w.core.write(utf8("second"))
    const frames = source.written
    for (const [i, expected] of [[3, "DecryptFailed"], [5, "DecryptFailed"], [-1, "DecryptFailed"]] as const) {
      const raw = new MemRaw()
      const r = makeCore(hsResponder, c, raw)
      r.core.start()
      const second = frames[2]!
      raw.inject(concatBytes([frames[0]!, frames[1]!, tamper(second, i < 0 ? second.length - 1 : i)]))
      await ticks(2)
      expect(r.ev.data.map((d) => Buffer.from(d).toString())).toEqual(["first"])
      expect(r.ev.closed?.error?._tag).toBe(expected)
      expect(raw.destroyed).toBe(true)
    }
    // a frame shorter than 17 bytes
    const raw = new MemRaw()
    const r = makeCore(hsResponder, c, raw)
    r.core.start()
    raw.inject(concatBytes([frames[0]!, Uint8Array.of(16, 0, 0), new Uint8Array(16)]))
    await ticks(2)
    expect(r.ev.closed?.error?._tag).toBe("InvalidFrame")
    expect(raw.destroyed).toBe(true)
  })

  it("oversized write -> MessageTooLarge and the stream stays usable; the maximum size goes through", async () => {
    const p = pair(fast)
    const max = SS.MAX_PLAINTEXT_LENGTH
    expect(max).toBe(16_777_198)
    const big = new Uint8Array(max + 1)
    const r = p.a.core.write(big)
    expect(r).toBeInstanceOf(SS.MessageTooLarge)
    expect((r as SS.MessageTooLarge).length).toBe(max + 1)
    expect(p.a.core.writeBatch([utf8("a"), big])).toBeInstanceOf(SS.MessageTooLarge)
    expect(p.ra.written.length).toBe(1) // nothing written by the failed calls
    const full = fast.randomBytes(max)
    expect(p.a.core.write(full)).toBe(true)
    expect(p.a.core.write(utf8("tail"))).toBe(true)
    await ticks(4)
    expect(p.b.ev.data.length).toBe(2)
    expect(p.b.ev.data[0]!.length).toBe(max)
    expect(Buffer.compare(Buffer.from(p.b.ev.data[0]!), Buffer.from(full))).toBe(0)
    expect(p.b.ev.closed).toBeNull()
    // the largest frame's prefix is ff ff ff
    expect(toHex(p.ra.written[1]!)).toBe("ffffff")
  })

  forEachImpl("unordered messages both ways; junk, short and forged datagrams ignored", async (c) => {
    const p = pair(c)
    expect(p.a.core.send(utf8("to responder"))).toBe(true)
    expect(p.b.core.send(utf8("to initiator"))).toBe(true)
    expect(p.b.core.send(new Uint8Array(0))).toBe(true)
    p.ra.injectMessage(new Uint8Array(23))
    p.ra.injectMessage(new Uint8Array(24))
    p.ra.injectMessage(tamper(p.rb.sent[0]!, 12))
    // an own-role message reflected back does not authenticate (different keys per direction)
    p.ra.injectMessage(p.ra.sent[0]!)
    await ticks(3)
    expect(p.b.ev.messages.map((m) => Buffer.from(m).toString())).toEqual(["to responder"])
    expect(p.a.ev.messages.map((m) => Buffer.from(m).toString())).toEqual(["to initiator", ""])
    // counters are incremented before each send and sit in the first 8 bytes
    const c0 = p.rb.sent[0]!.subarray(0, 8)
    const c1 = p.rb.sent[1]!.subarray(0, 8)
    expect(new DataView(c1.buffer, c1.byteOffset).getBigUint64(0, true) - new DataView(c0.buffer, c0.byteOffset).getBigUint64(0, true)).toBe(1n)
    expect(p.rb.sent[0]!.length).toBe(8 + 16 + 12)
    // a raw stream without messages
    const noMsg = new MemRaw({ messages: false })
    const x = makeCore(hsInitiator, c, noMsg)
    x.core.start()
    expect(x.core.send(utf8("x"))).toBeInstanceOf(SS.MessagesUnsupported)
    // a transport that refuses the datagram (e.g. larger than its MSS) -> false
    const refusing = new MemRaw()
    refusing.sendMessage = () => false
    const y = makeCore(hsInitiator, c, refusing)
    y.core.start()
    expect(y.core.send(new Uint8Array(5000))).toBe(false)
    expect(y.ev.closed).toBeNull()
  })

  forEachImpl("unordered counter wrap to its initial value destroys with NonceExhausted", async (c) => {
    const raw = new MemRaw()
    const initial = hex("0500000000000000")
    const { core, ev } = makeCore(hsInitiator, c, raw, {
      testing: { initialCounter: initial, counter: hex("0200000000000000") }
    })
    core.start()
    expect(core.send(utf8("a"))).toBe(true) // counter 03
    expect(core.send(utf8("b"))).toBe(true) // counter 04
    const r = core.send(utf8("c")) // would reuse 05 = initial
    expect(r).toBeInstanceOf(SS.NonceExhausted)
    expect(ev.closed?.error?._tag).toBe("NonceExhausted")
    expect(raw.destroyed).toBe(true)
    expect(raw.sent.map((s) => toHex(s.subarray(0, 8)))).toEqual(["0300000000000000", "0400000000000000"])
    // also across the 2^64 boundary: ff..ff -> 00..00 is fine unless it is the initial value
    const raw2 = new MemRaw()
    const w = makeCore(hsInitiator, c, raw2, { testing: { initialCounter: hex("0000000000000000"), counter: hex("feffffffffffffff") } })
    w.core.start()
    expect(w.core.send(utf8("1"))).toBe(true)
    expect(w.core.send(utf8("2"))).toBeInstanceOf(SS.NonceExhausted)
  })

  forEachImpl("end/close: half close both ways, write after end, clean close after both ends", async (c) => {
    const p = pair(c)
    p.a.core.write(utf8("bye"))
    p.a.core.end()
    expect(p.a.core.write(utf8("late"))).toBeInstanceOf(SS.StreamClosed)
    expect(p.ra.ended).toBe(true)
    await ticks(4)
    expect(p.b.ev.text).toBe("bye")
    expect(p.b.ev.ended).toBe(true)
    expect(p.a.ev.closed).toBeNull()
    expect(p.b.ev.closed).toBeNull()
    // the other direction keeps working
    expect(p.b.core.write(utf8("still here"))).toBe(true)
    await ticks(4)
    expect(p.a.ev.text).toBe("still here")
    p.b.core.end()
    expect(p.b.ev.closed).toEqual({ error: null }) // both ends seen on b
    await ticks(6)
    expect(p.a.ev.ended).toBe(true)
    expect(p.a.ev.closed).toEqual({ error: null })
    expect(p.ra.destroyed || p.rb.destroyed).toBe(false)
  })

  forEachImpl("destroy: local with/without error; raw reset; raw close before end", async (c) => {
    // destroy(err) -> StreamDestroyed, raw destroyed, peer sees a raw failure
    const p = pair(c)
    p.a.core.destroy(new Error("boom"))
    expect(p.a.ev.closed?.error?._tag).toBe("StreamDestroyed")
    expect(p.ra.destroyed).toBe(true)
    await ticks(3)
    expect(p.b.ev.closed?.error?._tag).toBe("RawStreamFailed")
    expect(p.a.core.send(utf8("x"))).toBeInstanceOf(SS.StreamClosed)
    // destroy() without error -> clean close reason null
    const q = pair(c)
    q.a.core.destroy()
    expect(q.a.ev.closed).toEqual({ error: null })
    // raw closes without error before the ends -> PrematureClose
    const r = pair(c)
    r.ra.injectClose()
    await ticks(2)
    expect(r.a.ev.closed?.error?._tag).toBe("PrematureClose")
  })

  forEachImpl("backpressure: write returns false over the raw high-water mark, drain follows; read pause/resume", async (c) => {
    const p = pair(c, {}, { highWaterMark: 4096 })
    expect(p.a.core.write(new Uint8Array(1000))).toBe(true)
    expect(p.a.core.write(new Uint8Array(5000))).toBe(false)
    expect(p.a.core.needsDrain).toBe(true)
    await ticks(4)
    expect(p.a.ev.drains).toBe(1)
    expect(p.a.core.needsDrain).toBe(false)
    // read side: returning false pauses the raw stream until resume()
    p.b.ev.accept = false
    p.a.core.write(utf8("x"))
    await ticks(3)
    expect(p.rb.paused).toBe(true)
    p.a.core.write(utf8("y"))
    await ticks(3)
    expect(p.b.ev.data.length).toBe(3) // "y" waits while paused
    p.b.ev.accept = true
    p.b.core.resume()
    await ticks(3)
    expect(p.rb.paused).toBe(false)
    expect(p.b.ev.data.length).toBe(4)
  })
})

describe("Effect face", () => {
  const run = <A, E>(c: CryptoImpl, eff: Effect.Effect<A, E, Crypto | import("effect").Scope.Scope>) =>
    Effect.runPromise(Effect.scoped(eff).pipe(Effect.provide(Crypto.layerWith(c))))

  forEachImpl("readable/write/messages/end/closed over an in-memory pipe", async (c) => {
    await run(
      c,
      Effect.gen(function*() {
        const [ra, rb] = memRawPair({ highWaterMark: 64 * 1024, split: prng(5) })
        const a = yield* SS.SecretStream.make(ra, hsInitiator, { keepAlive: 0 })
        const b = yield* SS.SecretStream.make(rb, hsResponder, { keepAlive: 0, readableHighWaterMark: 8192 })
        yield* a.opened
        expect(toHex(a.remotePublicKey)).toBe(toHex(pkR))
        expect(toHex(b.handshakeHash)).toBe(toHex(hh))
        const collector = yield* Effect.forkChild(Stream.runCollect(b.readable), { startImmediately: true })
        const msgs = yield* Effect.forkChild(Stream.runCollect(Stream.take(a.messages, 2)), { startImmediately: true })
        const chunks = Array.from({ length: 40 }, (_, i) => c.randomBytes(1000 + i * 97))
        for (const ch of chunks) yield* a.write(ch)
        yield* a.writeAll([utf8("x"), utf8("y")])
        yield* b.remoteOpened
        yield* b.send(utf8("m1"))
        yield* b.send(utf8("m2"))
        yield* a.end
        const got = Array.from(yield* Fiber.join(collector))
        expect(toHex(concatBytes(got))).toBe(toHex(concatBytes([...chunks, utf8("x"), utf8("y")])))
        expect(Array.from(yield* Fiber.join(msgs)).map((m) => Buffer.from(m).toString())).toEqual(["m1", "m2"])
        // half-closed: b can still write, then end; both close cleanly
        const back = yield* Effect.forkChild(Stream.runCollect(a.readable), { startImmediately: true })
        yield* b.write(utf8("reply"))
        yield* b.end
        expect(Buffer.from(concatBytes(Array.from(yield* Fiber.join(back)))).toString()).toBe("reply")
        yield* a.closed
        yield* b.closed
        expect(ra.pauseCount + rb.pauseCount).toBeGreaterThanOrEqual(0)
        const late = yield* Effect.flip(a.write(utf8("late")))
        expect(late._tag).toBe("StreamClosed")
      })
    )
  })

  forEachImpl("typed failures: InvalidHeader fails readable and closed; oversized write fails", async (c) => {
    await run(
      c,
      Effect.gen(function*() {
        const raw = new MemRaw()
        const s = yield* SS.SecretStream.make(raw, hsInitiator, { keepAlive: 0 })
        const tooBig = yield* Effect.flip(s.write(new Uint8Array(SS.MAX_PLAINTEXT_LENGTH + 1)))
        expect(tooBig._tag).toBe("MessageTooLarge")
        raw.inject(concatBytes([Uint8Array.of(56, 0, 0), new Uint8Array(56)]))
        const exit = yield* Effect.exit(Stream.runCollect(s.readable))
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          const e = Cause.squash(exit.cause) as SS.SecretStreamError
          expect(e._tag).toBe("InvalidHeader")
        }
        expect((yield* Effect.flip(s.closed))._tag).toBe("InvalidHeader")
        expect((yield* Effect.flip(s.remoteOpened))._tag).toBe("InvalidHeader")
        expect(raw.destroyed).toBe(true)
      })
    )
  })

  forEachImpl("write waits for drain (backpressure) and the scope close destroys the stream", async (c) => {
    const [ra, rb] = memRawPair({ highWaterMark: 2048 })
    let bClosed = false
    await run(
      c,
      Effect.gen(function*() {
        const a = yield* SS.SecretStream.make(ra, hsInitiator, { keepAlive: 0 })
        const b = yield* SS.SecretStream.make(rb, hsResponder, { keepAlive: 0 })
        yield* Effect.forkChild(Effect.ensuring(Stream.runDrain(b.readable), Effect.sync(() => (bClosed = true))), { startImmediately: true })
        for (let i = 0; i < 20; i++) yield* a.write(new Uint8Array(3000))
        expect(ra.written.length).toBe(21)
        expect(a.core.needsDrain).toBe(false)
      })
    )
    expect(ra.destroyed && rb.destroyed).toBe(true)
    await ticks(3)
    expect(bClosed).toBe(true)
  })
})

describe("Node face over RawStreams", () => {
  forEachImpl("NoiseSecretStream pair: open, data, message, end, close", async (c) => {
    const [ra, rb] = memRawPair({ split: prng(3) })
    const mk = (hs: SS.SecretStreamHandshake, raw: MemRaw) =>
      new NoiseSecretStream(hs.isInitiator, raw, {
        handshake: { tx: hs.tx, rx: hs.rx, hash: hs.handshakeHash, publicKey: hs.publicKey, remotePublicKey: hs.remotePublicKey },
        crypto: c
      })
    const a = mk(hsInitiator, ra)
    const b = mk(hsResponder, rb)
    expect(a.isInitiator).toBe(true)
    expect(a.rawStream).toBe(ra)
    const events: Array<string> = []
    a.on("open", () => events.push("a:open"))
    b.on("connect", () => events.push("b:connect"))
    expect(await a.opened).toBe(true)
    expect(await b.opened).toBe(true)
    const gotB: Array<Buffer> = []
    const gotA: Array<Buffer> = []
    const msgs: Array<string> = []
    b.on("data", (d: Buffer) => gotB.push(d))
    a.on("data", (d: Buffer) => gotA.push(d))
    a.on("message", (m: Buffer) => msgs.push(m.toString()))
    const closes = Promise.all([new Promise((r) => a.on("close", r)), new Promise((r) => b.on("close", r))])
    const ends = Promise.all([new Promise((r) => a.on("end", r)), new Promise((r) => b.on("end", r))])
    a.write("hello ")
    a.write(Buffer.from("world"))
    b.write("hi")
    expect(b.send(utf8("unordered"))).toBe(true)
    a.end()
    await ticks(5)
    b.end("!")
    await ends
    await closes
    expect(Buffer.concat(gotB).toString()).toBe("hello world")
    expect(Buffer.concat(gotA).toString()).toBe("hi!")
    expect(msgs).toEqual(["unordered"])
    expect(events.sort()).toEqual(["a:open", "b:connect"])
  })

  forEachImpl("NoiseSecretStream: invalid header emits error and close; destroy before open resolves opened false", async (c) => {
    const raw = new MemRaw()
    const s = new NoiseSecretStream(false, raw, {
      handshake: { tx: hsResponder.tx, rx: hsResponder.rx, hash: hh, publicKey: pkR, remotePublicKey: pkI },
      crypto: c
    })
    const err = new Promise<Error>((r) => s.on("error", r))
    const closed = new Promise((r) => s.on("close", r))
    raw.inject(concatBytes([Uint8Array.of(56, 0, 0), new Uint8Array(56)]))
    expect(((await err) as SS.SecretStreamError)._tag).toBe("InvalidHeader")
    await closed
    expect(raw.destroyed).toBe(true)
    const raw2 = new MemRaw()
    const t = new NoiseSecretStream(true, raw2, {
      handshake: { tx: hsInitiator.tx, rx: hsInitiator.rx, hash: hh, publicKey: pkI, remotePublicKey: pkR },
      crypto: c
    })
    t.destroy()
    expect(await t.opened).toBe(false)
    expect(raw2.destroyed).toBe(true)
  })
})
