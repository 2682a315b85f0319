// Closed-loop UDP throughput on 127.0.0.1 (run with `npm run bench:udp`, which
// builds first). Two sockets in one process, WINDOW datagrams of SIZE bytes in
// flight from A to B; every datagram B receives triggers one more send from A.
// Rate = datagrams received per second over BENCH_SECONDS after a 0.5 s warm-up.
//
//   (a) raw node:dgram, send from the 'message' handler
//   (b) Omega's UdpTransport (src/layers/transport/udp.ts): dgram callback ->
//       Queue.offerUnsafe, one fiber drains with Queue.takeAll (socket.receive)
//       and sends synchronously
//   (c) @effect/platform-node NodeDatagramSocket: reader fiber pulls batches,
//       writer.writeAll refills (only when that package is installed: it is
//       not a dependency, its 4.1 line needs Node >= 22.19; `npm install
//       --no-save @effect/platform-node` adds it)
//
// Env: BENCH_SECONDS (3), WINDOW (128), SIZE (1200), RUNS (3, variants interleaved).
import { Effect, Fiber } from "effect"
import * as dgram from "node:dgram"
import { UdpTransport } from "../dist/layers/transport/udp.js"

const NodeDatagramSocket = await import("@effect/platform-node").then((m) => m.NodeDatagramSocket, () => null)

const SIZE = Number(process.env.SIZE ?? 1200)
const WINDOW = Number(process.env.WINDOW ?? 128)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)
const RUNS = Number(process.env.RUNS ?? 3)
const WARMUP_MS = 500
const HOST = "127.0.0.1"
const BUF = 8 << 20
const payload = new Uint8Array(SIZE).fill(7)

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Shared measurement: `counter()` returns the running count; warm up, then count for SECONDS. */
const measure = async (counter) => {
  await delay(WARMUP_MS)
  const c0 = counter()
  const t0 = performance.now()
  await delay(SECONDS * 1000)
  const n = counter() - c0
  return n / ((performance.now() - t0) / 1000)
}

// (a) raw node:dgram -----------------------------------------------------------
const bindRaw = () =>
  new Promise((resolve) => {
    const s = dgram.createSocket({ type: "udp4", recvBufferSize: BUF, sendBufferSize: BUF })
    s.bind(0, HOST, () => resolve(s))
  })

async function raw() {
  const a = await bindRaw()
  const b = await bindRaw()
  const bPort = b.address().port
  let received = 0
  b.on("message", () => {
    received++
    a.send(payload, bPort, HOST)
  })
  for (let i = 0; i < WINDOW; i++) a.send(payload, bPort, HOST)
  const rate = await measure(() => received)
  a.close()
  b.close()
  return { rate, dropped: 0 }
}

// (b) Omega UdpTransport ---------------------------------------------------------
const omega = Effect.gen(function*() {
  const transport = yield* UdpTransport.makeWith({ recvBufferSize: BUF, sendBufferSize: BUF, inboxCapacity: 8192 })
  const a = yield* transport.bind({ host: HOST })
  const b = yield* transport.bind({ host: HOST })
  const to = b.local
  let received = 0
  const loop = Effect.gen(function*() {
    while (true) {
      const batch = yield* b.receive
      received += batch.length
      for (let i = 0; i < batch.length; i++) a.send(to, payload)
    }
  })
  const fiber = yield* Effect.forkChild(loop, { startImmediately: true })
  for (let i = 0; i < WINDOW; i++) a.send(to, payload)
  const rate = yield* Effect.promise(() => measure(() => received))
  yield* Fiber.interrupt(fiber)
  return { rate, dropped: a.stats().dropped + b.stats().dropped }
}).pipe(Effect.scoped)

// (c) @effect/platform-node NodeDatagramSocket -----------------------------------
const effectSocket = Effect.gen(function*() {
  const opts = { bind: { address: HOST }, kernelReceiveBufferSize: BUF, kernelSendBufferSize: BUF, receiveBuffer: { capacity: 8192 } }
  const sa = yield* NodeDatagramSocket.make(opts)
  const sb = yield* NodeDatagramSocket.make(opts)
  yield* sa.reader // a send-only socket must still acquire its reader
  const wa = yield* sa.writer
  const rb = yield* sb.reader
  const out = { payload, address: rb.address }
  let received = 0
  const loop = Effect.gen(function*() {
    while (true) {
      const batch = yield* rb.pull
      received += batch.length
      yield* wa.writeAll(new Array(batch.length).fill(out))
    }
  })
  const fiber = yield* Effect.forkChild(loop, { startImmediately: true })
  yield* wa.writeAll(new Array(WINDOW).fill(out))
  const rate = yield* Effect.promise(() => measure(() => received))
  yield* Fiber.interrupt(fiber)
  return { rate, dropped: rb.dropped() }
}).pipe(Effect.scoped)

const variants = [
  ["(a) raw node:dgram", raw],
  ["(b) Omega UdpTransport", () => Effect.runPromise(omega)],
  ...(NodeDatagramSocket === null ? [] : [["(c) NodeDatagramSocket", () => Effect.runPromise(effectSocket)]])
]

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y)
  return s[Math.floor(s.length / 2)]
}
const fmt = (rate) =>
  `${Math.round(rate).toLocaleString("en-US").padStart(9)} datagrams/s ${((rate * SIZE) / 1e6).toFixed(1).padStart(7)} MB/s`

const main = async () => {
  console.log(`node ${process.version}; ${WINDOW} x ${SIZE} B in flight on ${HOST}; ${SECONDS} s after ${WARMUP_MS} ms warm-up; ${RUNS} runs (interleaved)`)
  const results = new Map(variants.map(([name]) => [name, []]))
  for (let r = 0; r < RUNS; r++) {
    for (const [name, run] of variants) {
      const { rate, dropped } = await run()
      results.get(name).push(rate)
      console.log(`  run ${r + 1} ${name.padEnd(26)} ${fmt(rate)}  dropped=${dropped}`)
    }
  }
  const base = median(results.get(variants[0][0]))
  console.log("median:")
  for (const [name] of variants) {
    const m = median(results.get(name))
    console.log(`  ${name.padEnd(26)} ${fmt(m)}  ${(m / base).toFixed(2)}x raw`)
  }
}
main().catch((e) => {
  console.error(e)
  process.exit(1)
})
