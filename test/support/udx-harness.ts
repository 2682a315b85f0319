/**
 * Test harness for the UDX stream core: endpoints that record what the core
 * transmits and emits, and a tiny deterministic "wire" that moves recorded
 * packets between two cores with optional loss / reordering.
 */
import { Effect, Stream } from "effect"
import { createHash } from "node:crypto"
import type { UdxStream } from "../../src/actors/session/udx.js"
import { type UdxError, UdxStreamCore, type UdxStreamEvents, type UdxStreamOptions } from "../../src/actors/session/udx-stream.js"

export const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex")
export const fromHex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, "hex"))

export const u32le = (b: Uint8Array, p: number): number => (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0

export interface Fields {
  readonly type: number
  readonly doff: number
  readonly id: number
  readonly rwnd: number
  readonly seq: number
  readonly ack: number
}
export const fields = (b: Uint8Array): Fields => ({
  type: b[2]!,
  doff: b[3]!,
  id: u32le(b, 4),
  rwnd: u32le(b, 8),
  seq: u32le(b, 12),
  ack: u32le(b, 16)
})
export const sackBlocks = (b: Uint8Array): Array<[number, number]> => {
  const out: Array<[number, number]> = []
  for (let p = 20; p + 8 <= b.length; p += 8) out.push([u32le(b, p), u32le(b, p + 4)])
  return out
}

export class Endpoint implements UdxStreamEvents {
  readonly core: UdxStreamCore
  /** Datagrams transmitted and not yet taken by the wire. */
  outbox: Array<Uint8Array> = []
  /** Every datagram ever transmitted. */
  readonly log: Array<Uint8Array> = []
  readonly data: Array<Uint8Array> = []
  readonly messages: Array<Uint8Array> = []
  ended = 0
  closed = 0
  drains = 0
  error: UdxError | null = null

  constructor(localId: number, options: Partial<UdxStreamOptions> = {}, now = 0) {
    this.core = new UdxStreamCore(
      {
        ...options,
        localId,
        transmit: (b) => {
          const copy = b.slice()
          this.outbox.push(copy)
          this.log.push(copy)
        },
        events: this
      },
      now
    )
  }
  onData(chunk: Uint8Array): void {
    this.data.push(chunk.slice())
  }
  onEnd(): void {
    this.ended++
  }
  onMessage(m: Uint8Array): void {
    this.messages.push(m.slice())
  }
  onClose(error: UdxError | null): void {
    this.closed++
    this.error = error
  }
  onDrain(): void {
    this.drains++
  }
  take(): Array<Uint8Array> {
    const out = this.outbox
    this.outbox = []
    return out
  }
  received(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.data))
  }
}

export const pair = (optionsA: Partial<UdxStreamOptions> = {}, optionsB: Partial<UdxStreamOptions> = optionsA, now = 0) => {
  const a = new Endpoint(0x11111111, optionsA, now)
  const b = new Endpoint(0x22222222, optionsB, now)
  a.core.connect(now, 0x22222222)
  b.core.connect(now, 0x11111111)
  return { a, b }
}

/** Deliver everything `from` has transmitted to `to` at `now`; `drop(packet, index)` loses some. */
export const deliver = (from: Endpoint, to: Endpoint, now: number, drop?: (b: Uint8Array, i: number) => boolean): number => {
  const pkts = from.take()
  let n = 0
  pkts.forEach((p, i) => {
    if (drop?.(p, i) === true) return
    to.core.onPacket(now, p)
    n++
  })
  return n
}

/**
 * Run both endpoints with a fixed one-way latency until `until(now)` holds or
 * `limit` ms pass: each step moves packets both ways and fires due timers.
 */
export const run = (
  a: Endpoint,
  b: Endpoint,
  opts: {
    readonly start?: number
    readonly latency?: number
    readonly limit?: number
    readonly until: () => boolean
    readonly drop?: (b: Uint8Array, from: "a" | "b") => boolean
  }
): number => {
  let now = opts.start ?? 0
  const latency = opts.latency ?? 5
  const end = now + (opts.limit ?? 120_000)
  while (!opts.until() && now < end) {
    now += latency
    deliver(a, b, now, opts.drop ? (p) => opts.drop!(p, "a") : undefined)
    deliver(b, a, now, opts.drop ? (p) => opts.drop!(p, "b") : undefined)
    for (const e of [a, b]) if (e.core.nextDeadline() <= now) e.core.onTimers(now)
  }
  return now
}

/** Read an Omega UDX stream to its end: byte count and SHA-256 of everything read. */
export const readAllHashed = (s: UdxStream) =>
  Effect.gen(function*() {
    const h = createHash("sha256")
    let n = 0
    yield* Stream.runForEachArray(s.readable, (chunks) =>
      Effect.sync(() => {
        for (const c of chunks) {
          h.update(c)
          n += c.length
        }
      }))
    return { bytes: n, sha256: h.digest("hex") }
  })
