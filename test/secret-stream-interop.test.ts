/**
 * Interop with the reference `@hyperswarm/secret-stream` 6.9.2 in hyperdht
 * mode: keys from our Noise IK (src/layers/crypto/noise.ts), the reference
 * as initiator, ours as responder, over a cross-connected pair of Node
 * duplexes and over real UDX streams (udx-native) on 127.0.0.1.
 */
import NoiseSecretStreamRef from "@hyperswarm/secret-stream"
import sodium from "sodium-native"
import UDX from "udx-native"
import { Effect, Exit, Fiber, Result, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import * as SS from "../src/actors/session/secret-stream.js"
import { fromNodeDuplex, NoiseSecretStream } from "../src/actors/session/secret-stream-node.js"
import { makeUdxMux } from "../src/actors/session/udx.js"
import { UdpTransport } from "../src/layers/transport/udp.js"
import { Crypto } from "../src/layers/Crypto.js"
import { dhtNamespaces } from "../src/layers/crypto/derive.js"
import * as Noise from "../src/layers/crypto/noise.js"
import { SECRETSTREAM_TAG_REKEY, type CryptoImpl } from "../src/layers/crypto/types.js"
import { cryptoImpls } from "./support/impls.js"
import { duplexPair, type PipeEnd, ticks } from "./support/secret-stream-pipe.js"

let impls: ReadonlyArray<CryptoImpl> = []
let fast: CryptoImpl
beforeAll(async () => {
  impls = await cryptoImpls()
  fast = impls.find((c) => c.name === "fast")!
})

const unwrap = <A, E>(r: Result.Result<A, E>): A => {
  if (Result.isFailure(r)) throw new Error(`unexpected failure: ${String(r.failure)}`)
  return r.success
}

interface Keys {
  readonly client: { tx: Buffer; rx: Buffer; hash: Buffer; publicKey: Buffer; remotePublicKey: Buffer }
  readonly server: { tx: Buffer; rx: Buffer; hash: Buffer; publicKey: Buffer; remotePublicKey: Buffer }
}

/** A real Noise IK run with our implementation (client = initiator). */
const handshake = (c: CryptoImpl): Keys => {
  const prologue = dhtNamespaces(c).PEER_HANDSHAKE
  const clientKp = c.keyPair()!
  const serverKp = c.keyPair()!
  const ini = Noise.initiator(c, { staticKeyPair: clientKp, remoteStaticKey: serverKp.publicKey, prologue })
  const res = Noise.responder(c, { staticKeyPair: serverKp, prologue })
  const m1 = unwrap(Noise.writeMessage1(ini, new Uint8Array(20)))
  unwrap(Noise.readMessage1(res, m1))
  const m2 = unwrap(Noise.writeMessage2(res, new Uint8Array(40)))
  const ci = unwrap(Noise.readMessage2(ini, m2.message)).split
  const si = m2.split
  const b = (u: Uint8Array) => Buffer.from(u)
  return {
    client: { tx: b(ci.tx), rx: b(ci.rx), hash: b(ci.handshakeHash), publicKey: b(clientKp.publicKey), remotePublicKey: b(ci.remotePublicKey) },
    server: { tx: b(si.tx), rx: b(si.rx), hash: b(si.handshakeHash), publicKey: b(serverKp.publicKey), remotePublicKey: b(si.remotePublicKey) }
  }
}

const toResponderHandshake = (k: Keys["server"]): SS.SecretStreamHandshake => ({
  isInitiator: false,
  tx: k.tx,
  rx: k.rx,
  handshakeHash: k.hash,
  publicKey: k.publicKey,
  remotePublicKey: k.remotePublicKey
})

const sha = (parts: ReadonlyArray<Uint8Array>): string => {
  const h = createHash("sha256")
  for (const p of parts) h.update(p)
  return h.digest("hex")
}

/** Collect 'data' until `bytes` bytes arrived. */
const collect = (s: { on(e: string, f: (...a: Array<any>) => void): unknown }) => {
  const chunks: Array<Buffer> = []
  let total = 0
  const waiters: Array<[number, () => void]> = []
  s.on("data", (d: Buffer) => {
    chunks.push(d)
    total += d.length
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (total >= waiters[i]![0]) {
        waiters[i]![1]()
        waiters.splice(i, 1)
      }
    }
  })
  return {
    chunks,
    get total() {
      return total
    },
    until: (n: number) => new Promise<void>((resolve) => (total >= n ? resolve() : waiters.push([n, resolve])))
  }
}

const once = (s: { once(e: string, f: (...a: Array<any>) => void): unknown }, event: string) =>
  new Promise<any>((resolve) => s.once(event, resolve))

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))


/** Unordered messages both ways (resent a few times: UDP), then end on both sides and wait for close. */
const messagesThenClose = async (ref: any, ours: NoiseSecretStream, toOurs: string, toRef: string, errors: Array<unknown>) => {
  const refMsgs: Array<string> = []
  const ourMsgs: Array<string> = []
  ref.on("message", (m: Buffer) => refMsgs.push(m.toString()))
  ours.on("message", (m: Buffer) => ourMsgs.push(m.toString()))
  for (let i = 0; i < 20 && (refMsgs.length === 0 || ourMsgs.length === 0); i++) {
    if (ourMsgs.length === 0) ref.trySend(Buffer.from(toOurs))
    if (refMsgs.length === 0) ours.trySend(Buffer.from(toRef))
    await sleep(20)
  }
  expect(ourMsgs[0]).toBe(toOurs)
  expect(refMsgs[0]).toBe(toRef)
  const closed = Promise.all([once(ref, "close"), once(ours, "close")])
  const ends = Promise.all([once(ref, "end"), once(ours, "end")])
  ref.end()
  ours.end()
  await ends
  await closed
  expect(errors).toEqual([])
}

const cleanup: Array<() => void | Promise<void>> = []
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!()
})

/** Reference initiator on one end of a duplex pair, ours (responder) on the other. */
const overPipe = (c: CryptoImpl, opts: { refKeepAlive?: number; ourKeepAlive?: number } = {}) => {
  const keys = handshake(c)
  const [rawA, rawB] = duplexPair()
  const ref = new NoiseSecretStreamRef(true, rawA, { handshake: keys.client, keepAlive: opts.refKeepAlive ?? 0 })
  const ours = new NoiseSecretStream(false, rawB, {
    handshake: keys.server,
    crypto: c,
    ...(opts.ourKeepAlive !== undefined ? { keepAlive: opts.ourKeepAlive } : {})
  })
  ref.on("error", () => {})
  ours.on("error", () => {})
  cleanup.push(() => {
    ref.destroy()
    ours.destroy()
  })
  return { keys, rawA, rawB, ref, ours }
}

const forEachImpl = (name: string, f: (c: CryptoImpl) => Promise<void>) =>
  it(name, async () => {
    expect(impls.length).toBe(2)
    for (const c of impls) {
      try {
        await f(c)
      } catch (e) {
        throw new Error(`[${c.name}] ${String((e as Error).message)}`, { cause: e })
      } finally {
        while (cleanup.length > 0) await cleanup.pop()!()
      }
    }
  })

describe("interop with @hyperswarm/secret-stream over a Node duplex pair", () => {
  forEachImpl("messages both ways, in order, with identical keys and ids", async (c) => {
    const { ref, ours, keys } = overPipe(c)
    expect(await ours.opened).toBe(true)
    expect(await ref.opened).toBe(true)
    const atRef = collect(ref)
    const atOurs = collect(ours)
    const fromRef: Array<Buffer> = []
    const fromOurs: Array<Buffer> = []
    for (let i = 0; i < 50; i++) {
      const a = Buffer.from(c.randomBytes(1 + ((i * 131) % 4000)))
      const b = Buffer.from(c.randomBytes(1 + ((i * 71) % 900)))
      fromRef.push(a)
      fromOurs.push(b)
      ref.write(a)
      ours.write(b)
    }
    const nRef = fromRef.reduce((n, b) => n + b.length, 0)
    const nOurs = fromOurs.reduce((n, b) => n + b.length, 0)
    await Promise.all([atOurs.until(nRef), atRef.until(nOurs)])
    expect(sha(atOurs.chunks)).toBe(sha(fromRef))
    expect(sha(atRef.chunks)).toBe(sha(fromOurs))
    // the reference computed the same handshake-derived values
    expect(Buffer.from(ref.handshakeHash).equals(keys.server.hash)).toBe(true)
    expect(Buffer.from(ours.remotePublicKey).equals(Buffer.from(ref.publicKey))).toBe(true)
    expect(Buffer.from(NoiseSecretStreamRef.id(keys.server.hash, false)).toString("hex")).toBe(
      Buffer.from(ours.core.header.subarray(3, 35)).toString("hex")
    )
  })

  forEachImpl("an initiator started with openNow opens in the start call (a dial's socket); without it, on the next tick; data flows either way", async (c) => {
    for (const openNow of [true, false]) {
      const keys = handshake(c)
      const [rawA, rawB] = duplexPair()
      const ours = new NoiseSecretStream(true, null, { autoStart: false, crypto: c, publicKey: keys.client.publicKey, remotePublicKey: keys.client.remotePublicKey })
      const ref = new NoiseSecretStreamRef(false, rawB, { handshake: keys.server })
      ref.on("error", () => {})
      let opened = false
      ours.on("open", () => (opened = true))
      ours.start(rawA, { handshake: keys.client, openNow })
      expect(opened).toBe(openNow)
      expect(await ours.opened).toBe(true)
      expect(opened).toBe(true)
      const atRef = collect(ref)
      ours.write(Buffer.from("first bytes after open"))
      await atRef.until(22)
      expect(Buffer.concat(atRef.chunks).toString()).toBe("first bytes after open")
      ours.destroy()
      ref.destroy()
    }
  })

  forEachImpl("roles swapped: ours as initiator, the reference as responder", async (c) => {
    const keys = handshake(c)
    const [rawA, rawB] = duplexPair()
    const ours = new NoiseSecretStream(true, rawA, { handshake: keys.client, crypto: c })
    const ref = new NoiseSecretStreamRef(false, rawB, { handshake: keys.server })
    ref.on("error", () => {})
    cleanup.push(() => {
      ref.destroy()
      ours.destroy()
    })
    const atRef = collect(ref)
    const atOurs = collect(ours)
    const refMsgs: Array<string> = []
    ref.on("message", (m: Buffer) => refMsgs.push(m.toString()))
    ours.write("initiator says hi")
    ref.write("responder says hi")
    ours.send(Buffer.from("msg"))
    await Promise.all([atRef.until(17), atOurs.until(17)])
    expect(Buffer.concat(atRef.chunks).toString()).toBe("initiator says hi")
    expect(Buffer.concat(atOurs.chunks).toString()).toBe("responder says hi")
    await ticks(3)
    expect(refMsgs).toEqual(["msg"])
  })

  forEachImpl("REKEY in both directions keeps both streams working", async (c) => {
    const { ref, ours, rawA } = overPipe(c)
    await ours.opened
    const atRef = collect(ref)
    const atOurs = collect(ours)
    // ours -> reference: a REKEY-tagged frame, then ordinary frames (the reference's pull follows the rekey)
    ours.write("one;")
    await atRef.until(4)
    expect(ours.core.write(Buffer.from("rekey;"), SECRETSTREAM_TAG_REKEY)).toBe(true)
    ours.write("after rekey;")
    ours.core.write(Buffer.from("twice;"), SECRETSTREAM_TAG_REKEY)
    ours.write("end")
    await atRef.until("one;rekey;after rekey;twice;end".length)
    expect(Buffer.concat(atRef.chunks).toString()).toBe("one;rekey;after rekey;twice;end")

    // reference -> ours: push with TAG_REKEY on the reference's own secretstream state and
    // write the frame into its raw stream; its later writes continue from the rekeyed state
    ref.write("hello;")
    await atOurs.until(6)
    const plain = Buffer.from("rekeyed;")
    const frame = Buffer.alloc(3 + plain.length + 17)
    frame.writeUIntLE(plain.length + 17, 0, 3)
    sodium.crypto_secretstream_xchacha20poly1305_push(ref._encrypt.state, frame.subarray(3), plain, null, SECRETSTREAM_TAG_REKEY)
    rawA.write(frame)
    ref.write("after;")
    ref.write("more")
    await atOurs.until("hello;rekeyed;after;more".length)
    expect(Buffer.concat(atOurs.chunks).toString()).toBe("hello;rekeyed;after;more")
    expect(ours.destroyed || ref.destroyed).toBe(false)
  })

  it("large writes (several MiB) both ways, single writes and many chunks", async () => {
    const { ref, ours } = overPipe(fast)
    await ours.opened
    const atRef = collect(ref)
    const atOurs = collect(ours)
    const big1 = Buffer.from(fast.randomBytes(5 * 1024 * 1024))
    const big2 = Buffer.from(fast.randomBytes(4 * 1024 * 1024))
    const chunks = Array.from({ length: 48 }, () => Buffer.from(fast.randomBytes(64 * 1024)))
    ours.write(big1)
    for (const ch of chunks) ours.write(ch)
    ref.write(big2)
    for (const ch of chunks) ref.write(ch)
    const total1 = big1.length + 48 * 64 * 1024
    const total2 = big2.length + 48 * 64 * 1024
    await Promise.all([atRef.until(total1), atOurs.until(total2)])
    expect(sha(atRef.chunks)).toBe(sha([big1, ...chunks]))
    expect(sha(atOurs.chunks)).toBe(sha([big2, ...chunks]))
    // the largest atomic write is accepted by the reference too
    const max = Buffer.from(fast.randomBytes(SS.MAX_PLAINTEXT_LENGTH))
    ours.write(max)
    await atRef.until(total1 + max.length)
    expect(sha(atRef.chunks)).toBe(sha([big1, ...chunks, max]))
  })

  forEachImpl("keepalive interop: frames are valid both ways and filtered when keepAlive > 0", async (c) => {
    // ours sends keepalives to a reference without keepalive: it delivers them as empty messages
    {
      const { ref, ours } = overPipe(c, { ourKeepAlive: 40 })
      const empties: Array<number> = []
      ref.on("data", (d: Buffer) => empties.push(d.length))
      await sleep(250)
      expect(empties.length).toBeGreaterThanOrEqual(3)
      expect(empties.every((n) => n === 0)).toBe(true)
      expect(ours.keepAlive).toBe(40)
    }
    // the reference's keepalives reach our Effect face unfiltered (keepAlive 0) as empty chunks
    {
      const keys = handshake(c)
      const [rawA, rawB] = duplexPair()
      const ref = new NoiseSecretStreamRef(true, rawA, { handshake: keys.client, keepAlive: 40 })
      ref.on("error", () => {})
      cleanup.push(() => void ref.destroy())
      const lengths = await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function*() {
            const s = yield* SS.SecretStream.make(fromNodeDuplex(rawB), toResponderHandshake(keys.server), { keepAlive: 0 })
            const got = yield* Stream.runCollect(Stream.take(s.readable, 3))
            return Array.from(got).map((b) => b.length)
          })
        ).pipe(Effect.provide(Crypto.layerWith(c)))
      )
      expect(lengths).toEqual([0, 0, 0])
    }
    // both with keepalive: idle streams exchange keepalive frames, nobody sees empty data
    {
      const { ref, ours, rawA, rawB } = overPipe(c, { ourKeepAlive: 40, refKeepAlive: 40 })
      const seen: Array<number> = []
      ref.on("data", (d: Buffer) => seen.push(d.length))
      ours.on("data", (d: Buffer) => seen.push(d.length))
      await sleep(250)
      expect(seen).toEqual([])
      expect((rawA as PipeEnd).bytesWritten).toBeGreaterThanOrEqual(59 + 3 * 20)
      expect((rawB as PipeEnd).bytesWritten).toBeGreaterThanOrEqual(59 + 3 * 20)
      ref.write("x")
      ours.write("y")
      await sleep(20)
      expect(seen.sort()).toEqual([1, 1])
    }
  })

  forEachImpl("end/close both ways and destroy propagation", async (c) => {
    {
      const { ref, ours } = overPipe(c)
      await ours.opened
      const atOurs = collect(ours)
      const atRef = collect(ref)
      const closed = Promise.all([once(ref, "close"), once(ours, "close")])
      const oursEnd = once(ours, "end")
      ref.end("last words")
      await oursEnd
      expect(Buffer.concat(atOurs.chunks).toString()).toBe("last words")
      // half-open: ours can still write back
      const refEnd = once(ref, "end")
      ours.write("reply")
      ours.end()
      await refEnd
      expect(Buffer.concat(atRef.chunks).toString()).toBe("reply")
      await closed
    }
    {
      const { ref, ours } = overPipe(c)
      await ours.opened
      const closed = Promise.all([once(ref, "close"), once(ours, "close")])
      const atRef = collect(ref) // 'end' needs a flowing reader
      ours.resume()
      ours.end("first")
      await once(ref, "end")
      expect(Buffer.concat(atRef.chunks).toString()).toBe("first")
      ref.end()
      await closed
    }
    // destroy on our side closes the reference; and the other way round
    {
      const { ref, ours } = overPipe(c)
      await ours.opened
      const refClose = once(ref, "close")
      ours.destroy()
      await refClose
      expect(ref.destroyed).toBe(true)
    }
    {
      const { ref, ours } = overPipe(c)
      await ours.opened
      const oursClose = once(ours, "close")
      ref.destroy()
      await oursClose
      expect(ours.destroyed).toBe(true)
    }
  })

  forEachImpl("unordered messages both ways", async (c) => {
    const { ref, ours } = overPipe(c)
    await ours.opened
    await ref.opened
    const atOurs: Array<string> = []
    const atRef: Array<string> = []
    ours.on("message", (m: Buffer) => atOurs.push(m.toString()))
    ref.on("message", (m: Buffer) => atRef.push(m.toString()))
    ref.send(Buffer.from("from reference 1"))
    ref.trySend(Buffer.from("from reference 2"))
    expect(ours.send(Buffer.from("from ours 1"))).toBe(true)
    ours.trySend(Buffer.from("from ours 2"))
    ours.send(Buffer.alloc(0))
    await ticks(5)
    expect(atOurs).toEqual(["from reference 1", "from reference 2"])
    expect(atRef).toEqual(["from ours 1", "from ours 2", ""])
  })

  forEachImpl("Effect face against the reference: readable, write, messages, end", async (c) => {
    const keys = handshake(c)
    const [rawA, rawB] = duplexPair()
    const ref = new NoiseSecretStreamRef(true, rawA, { handshake: keys.client })
    ref.on("error", () => {})
    cleanup.push(() => void ref.destroy())
    const atRef = collect(ref)
    const refMessages: Array<string> = []
    ref.on("message", (m: Buffer) => refMessages.push(m.toString()))
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function*() {
          const s = yield* SS.SecretStream.make(fromNodeDuplex(rawB), toResponderHandshake(keys.server), { keepAlive: 0 })
          const reader = yield* Effect.forkChild(Stream.runCollect(s.readable), { startImmediately: true })
          const msgs = yield* Effect.forkChild(Stream.runCollect(Stream.take(s.messages, 1)), { startImmediately: true })
          ref.write("from the reference")
          ref.send(Buffer.from("ref message"))
          yield* s.write(Buffer.from("from effect"))
          yield* s.send(Buffer.from("effect message"))
          ref.end()
          const got = Array.from(yield* Fiber.join(reader))
          expect(Buffer.concat(got).toString()).toBe("from the reference")
          expect(Array.from(yield* Fiber.join(msgs)).map((m) => Buffer.from(m).toString())).toEqual(["ref message"])
          yield* s.end
          yield* s.closed
        })
      ).pipe(Effect.provide(Crypto.layerWith(c)))
    )
    await atRef.until("from effect".length)
    expect(Buffer.concat(atRef.chunks).toString()).toBe("from effect")
    expect(refMessages).toEqual(["effect message"])
  })
})

describe("interop over real UDX streams (udx-native) on 127.0.0.1", () => {
  it("reference <-> ours: data both ways incl. 2 MiB, unordered messages, end/close", async () => {
    const udx = new UDX()
    const sa = udx.createSocket()
    const sb = udx.createSocket()
    sa.bind(0, "127.0.0.1")
    sb.bind(0, "127.0.0.1")
    const a = udx.createStream(1)
    const b = udx.createStream(2)
    a.connect(sa, 2, sb.address().port, "127.0.0.1")
    b.connect(sb, 1, sa.address().port, "127.0.0.1")
    cleanup.push(async () => {
      a.destroy()
      b.destroy()
      await sa.close()
      await sb.close()
    })
    const keys = handshake(fast)
    const ref = new NoiseSecretStreamRef(true, a, { handshake: keys.client, keepAlive: 5000 })
    const ours = new NoiseSecretStream(false, b, { handshake: keys.server, crypto: fast, keepAlive: 5000 })
    const errors: Array<unknown> = []
    ref.on("error", (e: unknown) => errors.push(e))
    ours.on("error", (e: unknown) => errors.push(e))
    expect(await ours.opened).toBe(true)
    const atRef = collect(ref)
    const atOurs = collect(ours)
    const big = Buffer.from(fast.randomBytes(2 * 1024 * 1024))
    ref.write("hello over udx;")
    ref.write(big)
    ours.write("hi back;")
    ours.write(big)
    await Promise.all([atOurs.until(15 + big.length), atRef.until(8 + big.length)])
    expect(sha(atOurs.chunks)).toBe(sha([Buffer.from("hello over udx;"), big]))
    expect(sha(atRef.chunks)).toBe(sha([Buffer.from("hi back;"), big]))

    await messagesThenClose(ref, ours, "udx message to ours", "udx message to ref", errors)
  })
})

describe("reference secret stream over udx-native <-> Omega secret stream over Omega UDX (127.0.0.1)", () => {
  it("4 MiB both ways, REKEY both ways, unordered messages, end/close", async () => {
    const keys = handshake(fast)
    // reference side: udx-native socket + stream
    const udx = new UDX()
    const sa = udx.createSocket()
    sa.bind(0, "127.0.0.1")
    // Omega side: our UDP transport, our UDX mux and stream
    const scope = Effect.runSync(Scope.make())
    const { stream, port } = await Effect.runPromise(
      Effect.gen(function*() {
        const transport = yield* UdpTransport.make
        const socket = yield* transport.bind({ host: "127.0.0.1", port: 0 })
        const mux = yield* makeUdxMux(socket)
        const s = yield* mux.connect(2, 1, { host: "127.0.0.1", port: sa.address().port })
        return { stream: s, port: socket.local.port }
      }).pipe(Scope.provide(scope))
    )
    const a = udx.createStream(1)
    a.connect(sa, 2, port, "127.0.0.1")
    cleanup.push(async () => {
      a.destroy()
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await sa.close()
    })
    const ref = new NoiseSecretStreamRef(true, a, { handshake: keys.client })
    const ours = new NoiseSecretStream(false, SS.fromUdxStream(stream), { handshake: keys.server, crypto: fast })
    const errors: Array<unknown> = []
    ref.on("error", (e: unknown) => errors.push(e))
    ours.on("error", (e: unknown) => errors.push(e))
    expect(await ours.opened).toBe(true)
    const atRef = collect(ref)
    const atOurs = collect(ours)

    // bulk both ways at once
    const big1 = Buffer.from(fast.randomBytes(4 * 1024 * 1024))
    const big2 = Buffer.from(fast.randomBytes(4 * 1024 * 1024))
    ref.write(big1)
    ours.write(big2)
    await Promise.all([atOurs.until(big1.length), atRef.until(big2.length)])
    expect(sha(atOurs.chunks)).toBe(sha([big1]))
    expect(sha(atRef.chunks)).toBe(sha([big2]))

    // ours -> reference with REKEY-tagged frames in between
    const refBefore = atRef.total
    ours.write("one;")
    expect(ours.core.write(Buffer.from("rekey;"), SECRETSTREAM_TAG_REKEY)).toBe(true)
    ours.write("after rekey")
    await atRef.until(refBefore + "one;rekey;after rekey".length)
    expect(Buffer.concat(atRef.chunks).subarray(refBefore).toString()).toBe("one;rekey;after rekey")

    // reference -> ours: a REKEY push on the reference's own state, written into its raw UDX stream
    const oursBefore = atOurs.total
    ref.write("hello;")
    await atOurs.until(oursBefore + 6)
    const plain = Buffer.from("rekeyed;")
    const frame = Buffer.alloc(3 + plain.length + 17)
    frame.writeUIntLE(plain.length + 17, 0, 3)
    sodium.crypto_secretstream_xchacha20poly1305_push(ref._encrypt.state, frame.subarray(3), plain, null, SECRETSTREAM_TAG_REKEY)
    a.write(frame)
    ref.write("after")
    await atOurs.until(oursBefore + "hello;rekeyed;after".length)
    expect(Buffer.concat(atOurs.chunks).subarray(oursBefore).toString()).toBe("hello;rekeyed;after")

    // unordered messages both ways (UDX MESSAGE packets), then a clean close
    await messagesThenClose(ref, ours, "to ours", "to ref", errors)
  })
})
