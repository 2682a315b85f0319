/**
 * Interoperability with the reference (udx-native 1.21.3, native addon) over
 * real UDP on 127.0.0.1: an Omega UDX stream and a udx-native stream carry
 * 16 MiB each way at the same time, intact; END/close on both sides; messages
 * both ways; a DESTROY from either side resets the other.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { createHash } from "node:crypto"
import UDX from "udx-native"
import { makeUdxMux, type UdxStream } from "../src/actors/session/udx.js"
import { UdpTransport } from "../src/layers/transport/udp.js"
import { patternBytes } from "../src/util/random.js"
import { readAllHashed } from "./support/udx-harness.js"

const MiB = 1 << 20
const HOST = "127.0.0.1"

const pattern = patternBytes
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

/** A udx-native socket + stream, connected to an Omega stream. */
const nativeEnd = (localId: number, remoteId: number, remotePort: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const udx = new UDX()
      const socket = udx.createSocket()
      socket.bind(0, HOST)
      const stream = udx.createStream(localId)
      return { udx, socket, stream, port: socket.address().port as number, connect: () => stream.connect(socket, remoteId, remotePort, HOST) }
    }),
    (n) =>
      Effect.promise(async () => {
        if (!n.stream.destroyed) n.stream.destroy()
        await n.socket.close()
      })
  )

/** Collect a Node readable into {bytes, sha256}; resolves on 'end'. */
const nodeRead = (stream: any) =>
  new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
    const h = createHash("sha256")
    let n = 0
    stream.on("data", (c: Uint8Array) => {
      h.update(c)
      n += c.length
    })
    stream.once("end", () => resolve({ bytes: n, sha256: h.digest("hex") }))
    stream.once("error", reject)
  })

/** Write to a Node writable with back-pressure, then end. */
const nodeWrite = async (stream: any, data: Uint8Array) => {
  for (let off = 0; off < data.length; off += 65_536) {
    if (!stream.write(data.subarray(off, Math.min(data.length, off + 65_536)))) {
      await new Promise((r) => stream.once("drain", r))
    }
  }
  stream.end()
}

const omegaWrite = (s: UdxStream, data: Uint8Array) =>
  Effect.gen(function*() {
    for (let off = 0; off < data.length; off += 65_536) yield* s.write(data.subarray(off, Math.min(data.length, off + 65_536)))
    yield* s.end()
  })
const omegaRead = readAllHashed

const omegaSide = Effect.gen(function*() {
  const transport = yield* UdpTransport.makeWith({ recvBufferSize: 4 * MiB, sendBufferSize: 4 * MiB })
  const socket = yield* transport.bind({ host: HOST })
  const mux = yield* makeUdxMux(socket)
  return { socket, mux }
})

describe("UDX interop with udx-native over real UDP", () => {
  it.live("16 MiB each way at once, intact; END on both sides closes both", () =>
    Effect.gen(function*() {
      const { socket, mux } = yield* omegaSide
      const native = yield* nativeEnd(0x2222, 0x1111, socket.local.port)
      const omega = yield* mux.connect(0x1111, 0x2222, { host: HOST, port: native.port })
      native.connect()
      const toNative = pattern(16 * MiB, 11)
      const toOmega = pattern(16 * MiB, 12)
      const nativeClosed = new Promise<void>((resolve) => native.stream.once("close", () => resolve()))
      const nativeGot = nodeRead(native.stream)
      const nativeWrote = nodeWrite(native.stream, toOmega)
      const w = yield* Effect.forkChild(omegaWrite(omega, toNative), { startImmediately: true })
      const r = yield* Effect.forkChild(omegaRead(omega), { startImmediately: true })
      const atOmega = yield* Fiber.join(r)
      yield* Fiber.join(w)
      const atNative = yield* Effect.promise(() => nativeGot)
      yield* Effect.promise(() => nativeWrote)
      assert.deepStrictEqual(atOmega, { bytes: toOmega.length, sha256: sha256(toOmega) })
      assert.deepStrictEqual(atNative, { bytes: toNative.length, sha256: sha256(toNative) })
      yield* omega.done // clean close
      yield* Effect.promise(() => nativeClosed).pipe(Effect.timeout("10 seconds"))
      assert.strictEqual(omega.isClosed, true)
      assert.strictEqual(mux.stats().defects, 0)
    }), { timeout: 60_000 })

  it.live("messages both ways", () =>
    Effect.gen(function*() {
      const { socket, mux } = yield* omegaSide
      const native = yield* nativeEnd(0x4444, 0x3333, socket.local.port)
      const omega = yield* mux.connect(0x3333, 0x4444, { host: HOST, port: native.port })
      native.connect()
      const gotNative = new Promise<string>((resolve) => native.stream.once("message", (m: Uint8Array) => resolve(Buffer.from(m).toString())))
      const fromNative = yield* Effect.forkChild(Stream.runCollect(Stream.take(omega.messages, 1)), { startImmediately: true })
      yield* omega.send(new TextEncoder().encode("from omega"))
      native.stream.trySend(Buffer.from("from native"))
      assert.strictEqual(yield* Effect.promise(() => gotNative), "from omega")
      const msgs = yield* Fiber.join(fromNative)
      assert.deepStrictEqual(msgs.map((m) => new TextDecoder().decode(m)), ["from native"])
      // a payload-sized message (1152 bytes) still fits
      const big = pattern(1152, 3)
      const gotBig = new Promise<Uint8Array>((resolve) => native.stream.once("message", (m: Uint8Array) => resolve(new Uint8Array(m))))
      yield* omega.send(big)
      assert.strictEqual(sha256(yield* Effect.promise(() => gotBig)), sha256(big))
    }), { timeout: 30_000 })

  it.live("DESTROY from either side resets the other", () =>
    Effect.gen(function*() {
      const { socket, mux } = yield* omegaSide
      // Omega destroys -> udx-native errors
      const n1 = yield* nativeEnd(0x6666, 0x5555, socket.local.port)
      const o1 = yield* mux.connect(0x5555, 0x6666, { host: HOST, port: n1.port })
      n1.connect()
      const n1Closed = new Promise<string>((resolve) => {
        n1.stream.once("error", (e: any) => resolve(String(e?.code ?? e?.message)))
        n1.stream.once("close", () => resolve("close"))
      })
      n1.stream.resume()
      yield* o1.write(pattern(10_000, 1))
      yield* Effect.sleep("50 millis")
      yield* o1.destroy()
      const r1 = yield* Effect.promise(() => n1Closed)
      assert.match(r1, /ECONNRESET|reset/i)
      // udx-native destroys -> Omega closes with ECONNRESET
      const n2 = yield* nativeEnd(0x8888, 0x7777, socket.local.port)
      const o2 = yield* mux.connect(0x7777, 0x8888, { host: HOST, port: n2.port })
      n2.connect()
      n2.stream.on("error", () => {})
      n2.stream.write(Buffer.from("hello"))
      yield* Effect.sleep("50 millis")
      n2.stream.destroy()
      const err = yield* Effect.flip(o2.done)
      assert.strictEqual(err.code, "ECONNRESET")
    }), { timeout: 30_000 })
})
