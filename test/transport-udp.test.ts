import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Scope } from "effect"
import dgram from "node:dgram"
import { isIPv4 } from "node:net"
import type { Datagram, UdpSocket } from "../src/layers/Transport.js"
import { BindError, Transport } from "../src/layers/Transport.js"
import { normalizeAddress, UdpTransport } from "../src/layers/transport/udp.js"

const HOST = "127.0.0.1"
const bytes = (...xs: Array<number>) => new Uint8Array(xs)

/** Receive until `n` datagrams have arrived (bounded by a timeout); returns them and the batch sizes. */
const receiveN = (s: UdpSocket, n: number) =>
  Effect.gen(function*() {
    const got: Array<Datagram> = []
    const batches: Array<number> = []
    while (got.length < n) {
      const batch = yield* s.receive
      batches.push(batch.length)
      got.push(...batch)
    }
    return { got, batches }
  }).pipe(Effect.timeout("3 seconds"))

describe("UdpTransport (real UDP on 127.0.0.1)", () => {
  it.live("two sockets exchange datagrams both ways; stats", () =>
    Effect.gen(function*() {
      const t = yield* UdpTransport.make
      const a = yield* t.bind({ host: HOST })
      const b = yield* t.bind({ host: HOST })
      assert.strictEqual(a.local.host, HOST)
      assert.isAbove(a.local.port, 0)
      assert.notStrictEqual(a.local.port, b.local.port)

      a.send(b.local, bytes(1, 2, 3))
      const { got: [d1] } = yield* receiveN(b, 1)
      assert.deepStrictEqual(Array.from(d1!.data), [1, 2, 3])
      assert.deepStrictEqual(d1!.from, a.local)

      b.send(d1!.from, bytes(4, 5))
      const { got: [d2] } = yield* receiveN(a, 1)
      assert.deepStrictEqual(Array.from(d2!.data), [4, 5])
      assert.deepStrictEqual(d2!.from, b.local)

      assert.deepStrictEqual(a.stats(), { sent: 1, received: 1, dropped: 0 })
      assert.deepStrictEqual(b.stats(), { sent: 1, received: 1, dropped: 0 })
    }))

  it.live("sockets get udx-native's buffer sizes by default (a burst of 300 datagrams to one socket is not dropped)", () =>
    Effect.gen(function*() {
      const t = yield* UdpTransport.make
      const a = yield* t.bind({ host: HOST })
      const b = yield* t.bind({ host: HOST })
      const raw = (s: UdpSocket) => (s as unknown as { socket: dgram.Socket }).socket
      // what the OS gives a plain socket asked for the same sizes (Linux doubles and caps them)
      const probe = dgram.createSocket("udp4")
      yield* Effect.callback<void>((resume) => {
        probe.bind(0, HOST, () => resume(Effect.void))
      })
      probe.setRecvBufferSize(1 << 20)
      probe.setSendBufferSize(212_992)
      const want = { recv: probe.getRecvBufferSize(), send: probe.getSendBufferSize() }
      probe.close()
      assert.deepStrictEqual({ recv: raw(b).getRecvBufferSize(), send: raw(b).getSendBufferSize() }, want)
      // explicit options still win
      const t2 = yield* UdpTransport.makeWith({ recvBufferSize: 256 << 10 })
      const c = yield* t2.bind({ host: HOST })
      assert.isBelow(raw(c).getRecvBufferSize(), want.recv + 1)
      // a burst the reader cannot drain in between (all sent in one synchronous step)
      const N = 300
      const payload = new Uint8Array(200)
      for (let i = 0; i < N; i++) a.send(b.local, payload)
      const { got } = yield* receiveN(b, N)
      assert.strictEqual(got.length, N)
      assert.strictEqual(b.stats().received, N)
    }))

  it.live("receive returns every buffered datagram as one batch", () =>
    Effect.gen(function*() {
      const t = yield* UdpTransport.make
      const a = yield* t.bind({ host: HOST })
      const b = yield* t.bind({ host: HOST })
      const N = 50
      for (let i = 0; i < N; i++) a.send(b.local, bytes(i))
      yield* Effect.sleep("100 millis") // let them all arrive before the first receive
      const { got, batches } = yield* receiveN(b, N)
      assert.strictEqual(got.length, N)
      assert.isAbove(batches[0]!, 1)
      assert.deepStrictEqual(got.map((d) => d.data[0]), Array.from({ length: N }, (_, i) => i))
      assert.strictEqual(b.stats().received, N)
    }))

  it.live("per-datagram TTL; a TTL the OS rejects is dropped, not thrown", () =>
    Effect.gen(function*() {
      const t = yield* UdpTransport.make
      const a = yield* t.bind({ host: HOST })
      const b = yield* t.bind({ host: HOST })
      a.send(b.local, bytes(1), 5) // loopback: TTL 5 is plenty
      a.send(b.local, bytes(2)) // back to the default 64
      a.send(b.local, bytes(3), 0) // invalid TTL
      const { got } = yield* receiveN(b, 2)
      assert.deepStrictEqual(got.map((d) => d.data[0]), [1, 2])
      assert.strictEqual(a.stats().sent, 2)
      assert.strictEqual(a.stats().dropped, 1)
    }))

  it.live("binding a port in use fails with BindError (EADDRINUSE)", () =>
    Effect.gen(function*() {
      const t = yield* UdpTransport.make
      const a = yield* t.bind({ host: HOST })
      const err = yield* Effect.flip(t.bind({ host: HOST, port: a.local.port }))
      assert.strictEqual(err._tag, "BindError")
      assert.strictEqual(err.detail, "EADDRINUSE")
      assert.strictEqual(err.port, a.local.port)
      assert.match(err.message, /EADDRINUSE/)
      const bad = yield* Effect.flip(t.bind({ host: "localhost" }))
      assert.strictEqual(bad._tag, "BindError")
      const badPort = yield* Effect.flip(t.bind({ host: HOST, port: 70000 }))
      assert.strictEqual(badPort._tag, "BindError")
    }))

  it.live("open binds at once outside any scope: datagrams that arrive before the first receive wait for it; close ends the socket", () =>
    Effect.gen(function*() {
      const t = yield* UdpTransport.make
      const a = t.open({ host: HOST })
      const b = t.open({ host: HOST })
      if (a instanceof BindError || b instanceof BindError) return assert.fail("bind failed")
      assert.isAbove(b.local.port, 0)
      const taken = t.open({ host: HOST, port: b.local.port })
      assert.instanceOf(taken, BindError)
      assert.strictEqual((taken as BindError).detail, "EADDRINUSE")
      for (let i = 1; i <= 3; i++) a.send(b.local, bytes(i))
      // nobody is receiving yet: the datagrams wait in the socket's inbox
      yield* Effect.sleep("50 millis")
      assert.strictEqual(b.stats().received, 3)
      const { got } = yield* receiveN(b, 3)
      assert.deepStrictEqual(got.map((d) => d.data[0]), [1, 2, 3])
      // push mode takes over; closing is idempotent and frees the port
      const seen: Array<number> = []
      b.setReceiver((d) => seen.push(d.data[0]!))
      a.send(b.local, bytes(9))
      yield* Effect.sleep("50 millis")
      assert.deepStrictEqual(seen, [9])
      yield* b.close
      yield* b.close
      a.send(b.local, bytes(10))
      yield* Effect.sleep("20 millis")
      assert.deepStrictEqual(seen, [9])
      // a socket closed before anything pulled from it: receive ends at once (interrupted), never hangs
      const c = t.open({ host: HOST })
      if (c instanceof BindError) return assert.fail("bind failed")
      yield* c.close
      const ended = yield* Effect.exit(Effect.timeout(c.receive, "1 second"))
      assert.isTrue(Exit.isFailure(ended) && Cause.hasInterrupts(ended.cause))
      const again = t.open({ host: HOST, port: b.local.port })
      if (again instanceof BindError) return assert.fail(`the closed socket's port stays taken: ${again.detail}`)
      yield* again.close
      yield* a.close
    }))

  it.live("invalid destinations and oversized datagrams are dropped and counted, never thrown", () =>
    Effect.gen(function*() {
      const t = yield* UdpTransport.make
      const a = yield* t.bind({ host: HOST })
      const b = yield* t.bind({ host: HOST })
      a.send({ host: "not-an-ip", port: 1234 }, bytes(1))
      a.send({ host: "::1", port: 1234 }, bytes(1))
      a.send({ host: "256.1.1.1", port: 1234 }, bytes(1))
      a.send({ host: HOST, port: 0 }, bytes(1))
      a.send({ host: HOST, port: 70000 }, bytes(1))
      a.send({ host: HOST, port: 1.5 }, bytes(1))
      a.send({ host: HOST, port: b.local.port }, new Uint8Array(65508))
      a.send(null as never, bytes(1))
      assert.deepStrictEqual(a.stats(), { sent: 0, received: 0, dropped: 8 })
      // the socket still works
      a.send({ host: HOST, port: b.local.port }, new Uint8Array(65507))
      const { got } = yield* receiveN(b, 1)
      assert.strictEqual(got[0]!.data.byteLength, 65507)
    }))

  it.live("closing the scope closes the socket", () =>
    Effect.gen(function*() {
      const t = yield* UdpTransport.make
      const scope = yield* Scope.make()
      const a = yield* Scope.provide(t.bind({ host: HOST }), scope)
      const port = a.local.port
      const waiting = yield* Effect.forkChild(a.receive, { startImmediately: true })
      yield* Scope.close(scope, Exit.void)
      // a fiber blocked in receive is interrupted
      const exit = yield* Fiber.await(waiting).pipe(Effect.timeout("2 seconds"))
      assert.isTrue(Exit.hasInterrupts(exit))
      // sends after close are dropped
      a.send({ host: HOST, port: 9 }, bytes(1))
      assert.strictEqual(a.stats().dropped, 1)
      // the port is free again
      const again = yield* t.bind({ host: HOST, port })
      assert.strictEqual(again.local.port, port)
    }))

  it.live("as a Layer; localAddresses; IPv4-mapped IPv6 sources are reported as IPv4", () =>
    Effect.gen(function*() {
      const t = yield* Transport
      for (const addr of t.localAddresses()) assert.isTrue(isIPv4(addr), addr)
      const s = yield* t.bind()
      assert.strictEqual(s.local.host, "0.0.0.0")
      assert.strictEqual(normalizeAddress("::ffff:10.1.2.3"), "10.1.2.3")
      assert.strictEqual(normalizeAddress("::FFFF:127.0.0.1"), "127.0.0.1")
      assert.strictEqual(normalizeAddress("::1"), "::1")
      assert.strictEqual(normalizeAddress("fe80::1"), "fe80::1")
      assert.strictEqual(normalizeAddress("192.168.0.1"), "192.168.0.1")
    }).pipe(Effect.provide(UdpTransport.layer)))
})

describe("UdpTransport shared timer (schedule)", () => {
  it.live("runs callbacks once their time is reached, in deadline order, then call order; callbacks may schedule more", () =>
    Effect.gen(function*() {
      const t = yield* UdpTransport.make
      assert.isFunction(t.schedule)
      const schedule = t.schedule!
      const log: Array<string> = []
      const t0 = Date.now()
      const done = yield* Effect.callback<void>((resume) => {
        schedule(t0 + 60, () => log.push("60"))
        schedule(t0 + 20, () => log.push("20a"))
        schedule(t0 + 40, () => {
          log.push("40")
          // scheduled from a callback, already due: runs right after
          schedule(t0, () => log.push("due"))
        })
        schedule(t0 + 20, () => log.push("20b"))
        schedule(t0 + 80, () => resume(Effect.void))
      }).pipe(Effect.timeout("2 seconds"), Effect.exit)
      assert.isTrue(Exit.isSuccess(done))
      assert.deepStrictEqual(log, ["20a", "20b", "40", "due", "60"])
      assert.isAtLeast(Date.now() - t0, 80)
    }))

  it.live("an early deadline scheduled after a later one re-arms the timer", () =>
    Effect.gen(function*() {
      const t = yield* UdpTransport.make
      const t0 = Date.now()
      const at = yield* Effect.callback<number>((resume) => {
        t.schedule!(t0 + 1000, () => {})
        t.schedule!(t0 + 30, () => resume(Effect.succeed(Date.now())))
      }).pipe(Effect.timeout("2 seconds"))
      assert.isBelow(at - t0, 500)
    }))
})
