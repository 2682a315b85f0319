/**
 * The Node `Duplex` adapter over Omega UDX streams (real UDP on 127.0.0.1):
 * back-pressure (`write()` false above the watermark, then 'drain'), 'end',
 * 'finish', 'close', 'error', and `send` / `trySend` — against udx-native and
 * Omega <-> Omega through `stream.pipeline`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash } from "node:crypto"
import { Readable } from "node:stream"
import { pipeline } from "node:stream/promises"
import UDX from "udx-native"
import { makeUdxMux, toDuplex, type UdxDuplex } from "../src/actors/session/udx.js"
import { UdpTransport } from "../src/layers/transport/udp.js"
import { patternBytes } from "../src/util/random.js"

const MiB = 1 << 20
const HOST = "127.0.0.1"
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")
const pattern = patternBytes

/** Resolve with {bytes, sha256} of everything a readable delivers until 'end'. */
const drain = (r: NodeJS.ReadableStream) =>
  new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
    const h = createHash("sha256")
    let n = 0
    r.on("data", (c: Uint8Array) => {
      h.update(c)
      n += c.length
    })
    r.once("end", () => resolve({ bytes: n, sha256: h.digest("hex") }))
    r.once("error", reject)
  })

const omegaSockets = Effect.gen(function*() {
  const transport = yield* UdpTransport.makeWith({ recvBufferSize: 4 * MiB, sendBufferSize: 4 * MiB })
  const a = yield* transport.bind({ host: HOST })
  const b = yield* transport.bind({ host: HOST })
  return { a, b, ma: yield* makeUdxMux(a), mb: yield* makeUdxMux(b) }
})

const events = (d: UdxDuplex) => {
  const seen: Array<string> = []
  for (const e of ["drain", "end", "finish", "close", "error"]) d.on(e, () => seen.push(e))
  return seen
}

describe("UDX Duplex adapter", () => {
  it.live("Omega Duplex <-> udx-native: 8 MiB each way with back-pressure, then end/finish/close", () =>
    Effect.gen(function*() {
      const { a: socket, ma: mux } = yield* omegaSockets
      const udx = new UDX()
      const nsock = udx.createSocket()
      nsock.bind(0, HOST)
      yield* Effect.addFinalizer(() => Effect.promise(() => nsock.close()))
      const native = udx.createStream(0x22)
      const omega = yield* mux.connect(0x11, 0x22, { host: HOST, port: nsock.address().port })
      native.connect(nsock, 0x11, socket.local.port, HOST)
      const duplex = toDuplex(omega)
      const seen = events(duplex)
      const toNative = pattern(8 * MiB, 1)
      const toOmega = pattern(8 * MiB, 2)
      const result = yield* Effect.promise(async () => {
        const nativeGot = drain(native)
        const omegaGot = drain(duplex)
        const nativeClosed = new Promise((r) => native.once("close", r))
        const omegaClosed = new Promise((r) => duplex.once("close", r))
        // native -> omega, then END
        void (async () => {
          for (let off = 0; off < toOmega.length; off += 65_536) {
            if (!native.write(toOmega.subarray(off, off + 65_536))) await new Promise((r) => native.once("drain", r))
          }
          native.end()
        })()
        // omega -> native, honouring write() / 'drain'
        let falses = 0
        for (let off = 0; off < toNative.length; off += 65_536) {
          if (!duplex.write(toNative.subarray(off, off + 65_536))) {
            falses++
            await new Promise((r) => duplex.once("drain", r))
          }
        }
        duplex.end()
        const [n, o] = await Promise.all([nativeGot, omegaGot])
        await Promise.all([nativeClosed, omegaClosed])
        return { n, o, falses }
      })
      assert.deepStrictEqual(result.n, { bytes: toNative.length, sha256: sha256(toNative) })
      assert.deepStrictEqual(result.o, { bytes: toOmega.length, sha256: sha256(toOmega) })
      assert.isAbove(result.falses, 0) // write() returned false above the watermark...
      assert.include(seen, "drain") // ...and 'drain' followed
      assert.includeMembers(seen, ["end", "finish", "close"])
      assert.notInclude(seen, "error")
      assert.strictEqual(omega.isClosed, true)
    }), { timeout: 60_000 })

  it.live("Omega <-> Omega through stream.pipeline; messages arrive as 'message' events", () =>
    Effect.gen(function*() {
      const { a: sa, b: sb, ma, mb } = yield* omegaSockets
      const a = toDuplex(yield* ma.connect(1, 2, sb.local))
      const b = toDuplex(yield* mb.connect(2, 1, sa.local))
      const data = pattern(4 * MiB, 3)
      const out = yield* Effect.promise(async () => {
        const msgs: Array<string> = []
        b.on("message", (m: Uint8Array) => msgs.push(Buffer.from(m).toString()))
        const got = drain(b)
        const closed = Promise.all([new Promise((r) => a.once("close", r)), new Promise((r) => b.once("close", r))])
        b.on("end", () => b.end())
        a.resume() // a reads nothing but must see b's END
        await a.send(new TextEncoder().encode("m1"))
        a.trySend(new TextEncoder().encode("m2"))
        const chunks = function*() {
          for (let off = 0; off < data.length; off += 10_000) yield data.subarray(off, off + 10_000)
        }
        await pipeline(Readable.from(chunks()), a)
        const r = await got
        await closed
        return { ...r, msgs: msgs.sort() }
      })
      assert.deepStrictEqual(out, { bytes: data.length, sha256: sha256(data), msgs: ["m1", "m2"] })
    }), { timeout: 60_000 })

  it.live("send/trySend and 'error' + 'close' when the peer resets", () =>
    Effect.gen(function*() {
      const { a: socket, ma: mux } = yield* omegaSockets
      const udx = new UDX()
      const nsock = udx.createSocket()
      nsock.bind(0, HOST)
      yield* Effect.addFinalizer(() => Effect.promise(() => nsock.close()))
      const native = udx.createStream(0x44)
      native.on("error", () => {})
      const omega = yield* mux.connect(0x33, 0x44, { host: HOST, port: nsock.address().port })
      native.connect(nsock, 0x33, socket.local.port, HOST)
      const duplex = toDuplex(omega)
      const seen = events(duplex)
      const r = yield* Effect.promise(async () => {
        const m1 = new Promise<string>((res) => native.once("message", (m: Uint8Array) => res(Buffer.from(m).toString())))
        await duplex.send(new TextEncoder().encode("via send"))
        const first = await m1
        const m2 = new Promise<string>((res) => native.once("message", (m: Uint8Array) => res(Buffer.from(m).toString())))
        duplex.trySend(new TextEncoder().encode("via trySend"))
        const second = await m2
        const tooBig = await duplex.send(new Uint8Array(5000)).then(() => "sent", (e) => String(e.code))
        const err = new Promise<string>((res) => duplex.once("error", (e: any) => res(String(e.code))))
        const closed = new Promise((res) => duplex.once("close", res))
        native.write(Buffer.from("x"))
        await new Promise((res) => setTimeout(res, 30))
        native.destroy()
        const code = await err
        await closed
        return { first, second, tooBig, code }
      })
      assert.deepStrictEqual(r, { first: "via send", second: "via trySend", tooBig: "EMSGSIZE", code: "ECONNRESET" })
      assert.includeMembers(seen, ["error", "close"])
      // writes after close fail
      const w = yield* Effect.promise(() => new Promise<string>((res) => duplex.write(new Uint8Array(1), (e) => res(String((e as any)?.code ?? e)))))
      assert.isString(w)
    }), { timeout: 30_000 })
})

