/**
 * Ed25519 signature checks on worker threads.
 *
 * A persistent node checks a signature on every ANNOUNCE, UNANNOUNCE and
 * MUTABLE_PUT it serves (~115 µs each with libsodium's WASM build, the
 * dearest step of a write by far). A pool of workers takes these checks off
 * the node's thread, so they run in parallel with each other and with the
 * rest of the node (on a 2-core machine: one write's 20 checks by the 20
 * closest nodes of a process in half the time, while the writer goes on).
 *
 * - Each worker runs libsodium's `crypto_sign_verify_detached` (the same
 *   function, the same rejections, as the fast Crypto service).
 * - A check goes to the worker with the fewest pending; completions of
 *   different workers may come in any order (the stores' rules do not depend
 *   on it: a mutable record's seq decides, an announcement is a set entry).
 * - The first worker starts with the first check, each next one when a
 *   check arrives while every started worker is busy. Until one is ready (it
 *   loads the WASM module first), and whenever one fails, checks run on the
 *   calling thread with `fallback`: nothing is lost, only slower.
 * - Workers are unref'd: an idle pool never keeps the process alive.
 * - Jobs posted in one synchronous step go to each worker as one message.
 *
 * Not for simulations: completions arrive from another thread, outside the
 * simulated clock (nodes there check synchronously).
 */
import { createRequire } from "node:module"
import { Worker } from "node:worker_threads"
import { isBytes } from "../../protocol/encoding.js"

export interface VerifyPool {
  /** Check `signature` over `message` by `publicKey`; `done` is called exactly once, asynchronously. */
  readonly verify: (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array, done: (ok: boolean) => void) => void
  /** Stop the workers; pending checks complete with `fallback`. */
  readonly close: () => void
  readonly size: number
  /** Checks completed by a worker and on the calling thread (fallback). */
  readonly stats: { readonly workers: number; readonly local: number; readonly ready: number }
}

interface Job {
  readonly signature: Uint8Array
  readonly message: Uint8Array
  readonly publicKey: Uint8Array
  readonly done: (ok: boolean) => void
}

interface Lane {
  worker: Worker | null
  ready: boolean
  /** Sent, awaiting results, in order. */
  readonly inflight: Array<Array<Job>>
  /** Waiting for the end of the current step. */
  batch: Array<Job>
}

// The worker: CommonJS, loads libsodium-wrappers-sumo from the path the
// parent resolved; a batch is one transferred ArrayBuffer (see `pack`), the
// answer one byte per job (1 = valid), also transferred.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads")
const sodium = require(workerData.sodium)
sodium.ready.then(() => {
  parentPort.postMessage("ready")
  parentPort.on("message", (buf) => {
    const b = new Uint8Array(buf)
    const dv = new DataView(buf)
    const n = dv.getUint32(0, true)
    const ok = new Uint8Array(n)
    let p = 4
    for (let i = 0; i < n; i++) {
      const len = dv.getUint32(p, true)
      const signature = b.subarray(p + 4, p + 68)
      const publicKey = b.subarray(p + 68, p + 100)
      const message = b.subarray(p + 100, p + 100 + len)
      p += 100 + len
      try {
        ok[i] = sodium.crypto_sign_verify_detached(signature, message, publicKey) ? 1 : 0
      } catch {
        ok[i] = 0
      }
    }
    parentPort.postMessage(ok, [ok.buffer])
  })
})
`

/**
 * A batch as one ArrayBuffer (one structured-clone-free transfer, where an
 * array of [signature, message, publicKey] arrays cost ~30 µs of the
 * posting thread per message): u32le count, then per job u32le message
 * length, signature (64), public key (32), message.
 */
const pack = (jobs: ReadonlyArray<Job>): ArrayBuffer => {
  let size = 4
  for (const j of jobs) size += 100 + j.message.length
  const buf = new ArrayBuffer(size)
  const b = new Uint8Array(buf)
  const dv = new DataView(buf)
  dv.setUint32(0, jobs.length, true)
  let p = 4
  for (const j of jobs) {
    dv.setUint32(p, j.message.length, true)
    b.set(j.signature, p + 4)
    b.set(j.publicKey, p + 68)
    b.set(j.message, p + 100)
    p += 100 + j.message.length
  }
  return buf
}

/**
 * A pool of `size` verify workers. `fallback` checks on the calling thread
 * (before the workers are ready, after a failure, for malformed arguments).
 */
export const makeVerifyPool = (size: number, fallback: (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array) => boolean): VerifyPool => {
  const lanes: Array<Lane> = []
  let closed = false
  let flushQueued = false
  // resolved when the first worker starts (a module lookup on disk: not on a node's start path)
  let sodiumPath: string | null | undefined = undefined
  const resolveSodium = (): string | null => {
    if (sodiumPath === undefined) {
      try {
        sodiumPath = createRequire(import.meta.url).resolve("libsodium-wrappers-sumo")
      } catch {
        sodiumPath = null
      }
    }
    return sodiumPath
  }

  const counts = { workers: 0, local: 0 }
  const runLocally = (jobs: ReadonlyArray<Job>): void => {
    counts.local += jobs.length
    for (const j of jobs) {
      let ok = false
      try {
        ok = fallback(j.signature, j.message, j.publicKey)
      } catch {
        ok = false
      }
      j.done(ok)
    }
  }

  const fail = (lane: Lane): void => {
    const w = lane.worker
    lane.worker = null
    lane.ready = false
    if (w !== null) void w.terminate().catch(() => {})
    const pending = lane.inflight.splice(0).flat()
    const queued = lane.batch
    lane.batch = []
    // asynchronously, as promised
    if (pending.length + queued.length > 0) setImmediate(() => runLocally([...pending, ...queued]))
  }

  const start = (lane: Lane): void => {
    const sodium = resolveSodium()
    if (sodium === null) return
    let w: Worker
    try {
      w = new Worker(WORKER_SOURCE, { eval: true, workerData: { sodium } })
    } catch {
      return
    }
    lane.worker = w
    w.on("message", (m: unknown) => {
      if (m === "ready") {
        lane.ready = true
        return
      }
      const jobs = lane.inflight.shift()
      if (jobs === undefined || !(m instanceof Uint8Array) || m.length !== jobs.length) return fail(lane)
      counts.workers += jobs.length
      for (let i = 0; i < jobs.length; i++) jobs[i]!.done(m[i] === 1)
    })
    w.on("error", () => fail(lane))
    w.on("exit", () => {
      if (lane.worker === w) fail(lane)
    })
    // after the listeners: adding a 'message' listener refs the worker's port again
    w.unref()
  }

  for (let i = 0; i < size; i++) lanes.push({ worker: null, ready: false, inflight: [], batch: [] })
  // Workers start on demand: the first with the first check (a node that
  // serves no writes never starts one), each next one when a check arrives
  // while every started worker is ready and has checks pending (or failed).
  // A worker costs ~13 MB of RSS; a lightly loaded node keeps one.
  let started = 0
  const saturated = (lane: Lane): boolean => lane.worker === null || (lane.ready && (lane.batch.length > 0 || lane.inflight.length > 0))
  const startMore = (): void => {
    if (started >= lanes.length) return
    for (let i = 0; i < started; i++) if (!saturated(lanes[i]!)) return
    start(lanes[started++]!)
  }

  const flush = (): void => {
    flushQueued = false
    for (const lane of lanes) {
      if (lane.batch.length === 0) continue
      const jobs = lane.batch
      lane.batch = []
      if (lane.worker === null || !lane.ready) {
        runLocally(jobs)
        continue
      }
      lane.inflight.push(jobs)
      try {
        const buf = pack(jobs)
        lane.worker.postMessage(buf, [buf])
      } catch {
        lane.inflight.pop()
        runLocally(jobs)
      }
    }
  }

  /** The lane with the fewest checks sent or waiting (ties: the first). */
  const laneOf = (): Lane => {
    let best = lanes[0]!
    let bestLoad = Infinity
    for (const lane of lanes) {
      let load = lane.batch.length
      for (const jobs of lane.inflight) load += jobs.length
      if (lane.worker === null || !lane.ready) load += 1_000_000
      if (load < bestLoad) {
        best = lane
        bestLoad = load
      }
    }
    return best
  }

  return {
    size,
    get stats() {
      return { ...counts, ready: lanes.filter((l) => l.ready && l.worker !== null).length }
    },
    verify: (signature, message, publicKey, done) => {
      if (closed || lanes.length === 0 || !isBytes(signature, 64) || !isBytes(message) || !isBytes(publicKey, 32)) {
        const job = { signature, message, publicKey, done }
        queueMicrotask(() => runLocally([job]))
        return
      }
      startMore()
      laneOf().batch.push({ signature, message, publicKey, done })
      if (!flushQueued) {
        flushQueued = true
        queueMicrotask(flush)
      }
    },
    close: () => {
      if (closed) return
      closed = true
      started = lanes.length
      flush()
      for (const lane of lanes) fail(lane)
    }
  }
}

let shared: VerifyPool | null = null

/**
 * The process-wide pool (created on first use). Nodes share it, as they
 * share the cores.
 */
export const sharedVerifyPool = (size: number, fallback: (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array) => boolean): VerifyPool =>
  (shared ??= makeVerifyPool(size, fallback))
