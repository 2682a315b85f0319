/**
 * Hand-rolled wire helpers for test/connect-hostile.test.ts: dht-rpc request
 * and response datagrams (dht-rpc.md §3; connect.md §4.1), PEER_HANDSHAKE /
 * PEER_HOLEPUNCH values (connect.md §4.2, §6.2) and a raw node:dgram socket
 * on 127.0.0.1 that records what it receives.
 *
 * Attack datagrams are encoded here by hand, not with the codecs under test;
 * replies are decoded here (envelope) and with the reference's own codecs
 * (values), so a codec bug in src/ cannot hide a routing bug.
 */
import { randomBytes } from "node:crypto"
import * as dgram from "node:dgram"
import { HOST, sleep } from "./live.js"

export interface Addr {
  readonly host: string
  readonly port: number
}

export const rnd = (n: number): Buffer => randomBytes(n)

/** compact-encoding uint. */
export const uint = (n: number): Array<number> => {
  if (n < 0xfd) return [n]
  if (n <= 0xffff) return [0xfd, n & 0xff, (n >>> 8) & 0xff]
  if (n <= 0xffffffff) return [0xfe, n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff]
  const lo = n % 2 ** 32
  const hi = Math.floor(n / 2 ** 32)
  return [0xff, ...uint32le(lo), ...uint32le(hi)]
}
const uint32le = (n: number): Array<number> => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff]

export const ipv4 = (a: Addr): Array<number> => [...a.host.split(".").map(Number), a.port & 0xff, (a.port >>> 8) & 0xff]

// ---- dht-rpc envelope --------------------------------------------------------------------

export interface Req {
  readonly tid: number
  readonly to: Addr
  readonly id?: Uint8Array
  readonly token?: Uint8Array
  readonly internal?: boolean
  readonly command: number
  readonly target?: Uint8Array
  readonly value?: Uint8Array
}

export const encReq = (m: Req): Buffer => {
  const flags = (m.id ? 1 : 0) | (m.token ? 2 : 0) | (m.internal ? 4 : 0) | (m.target ? 8 : 0) | (m.value ? 16 : 0)
  return Buffer.from([
    0x03,
    ...uint(flags),
    m.tid & 0xff,
    (m.tid >>> 8) & 0xff,
    ...ipv4(m.to),
    ...(m.id ?? []),
    ...(m.token ?? []),
    ...uint(m.command),
    ...(m.target ?? []),
    ...(m.value ? [...uint(m.value.length), ...m.value] : [])
  ])
}

export interface Res {
  readonly tid: number
  readonly to: Addr
  readonly id?: Uint8Array
  readonly token?: Uint8Array
  readonly closerNodes?: ReadonlyArray<Addr>
  readonly error?: number
  readonly value?: Uint8Array
}

export const encRes = (m: Res): Buffer => {
  const nodes = m.closerNodes ?? []
  const flags = (m.id ? 1 : 0) | (m.token ? 2 : 0) | (nodes.length > 0 ? 4 : 0) | (m.error ? 8 : 0) | (m.value ? 16 : 0)
  return Buffer.from([
    0x13,
    ...uint(flags),
    m.tid & 0xff,
    (m.tid >>> 8) & 0xff,
    ...ipv4(m.to),
    ...(m.id ?? []),
    ...(m.token ?? []),
    ...(nodes.length > 0 ? [...uint(nodes.length), ...nodes.flatMap(ipv4)] : []),
    ...(m.error ? uint(m.error) : []),
    ...(m.value ? [...uint(m.value.length), ...m.value] : [])
  ])
}

export interface Decoded {
  readonly type: "request" | "response"
  readonly tid: number
  readonly to: Addr
  readonly id: Buffer | null
  readonly token: Buffer | null
  readonly internal: boolean
  readonly command: number
  readonly target: Buffer | null
  readonly closerNodes: ReadonlyArray<Addr>
  readonly error: number
  readonly value: Buffer | null
}

/** Decode a dht-rpc datagram; null when it is not one (a UDX packet, a probe, cut off). */
export const decodeMessage = (b: Buffer): Decoded | null => {
  if (b.length < 10 || (b[0] !== 0x03 && b[0] !== 0x13)) return null
  let p = 1
  const need = (n: number): void => {
    if (p + n > b.length) throw new RangeError("cut off")
  }
  const readUint = (): number => {
    need(1)
    const x = b[p++]!
    if (x < 0xfd) return x
    if (x === 0xfd) {
      need(2)
      const v = b.readUInt16LE(p)
      p += 2
      return v
    }
    if (x === 0xfe) {
      need(4)
      const v = b.readUInt32LE(p)
      p += 4
      return v
    }
    need(8)
    const v = b.readUInt32LE(p) + b.readUInt32LE(p + 4) * 2 ** 32
    p += 8
    return v
  }
  const fixed = (n: number): Buffer => {
    need(n)
    const out = b.subarray(p, p + n)
    p += n
    return out
  }
  const addr = (): Addr => {
    const x = fixed(6)
    return { host: `${x[0]}.${x[1]}.${x[2]}.${x[3]}`, port: x.readUInt16LE(4) }
  }
  try {
    const request = b[0] === 0x03
    const flags = readUint()
    need(2)
    const tid = b.readUInt16LE(p)
    p += 2
    const to = addr()
    const id = flags & 1 ? fixed(32) : null
    const token = flags & 2 ? fixed(32) : null
    if (request) {
      const command = readUint()
      const target = flags & 8 ? fixed(32) : null
      const value = flags & 16 ? fixed(readUint()) : null
      return { type: "request", tid, to, id, token, internal: (flags & 4) !== 0, command, target, closerNodes: [], error: 0, value }
    }
    const closerNodes: Array<Addr> = []
    if (flags & 4) {
      const n = readUint()
      for (let i = 0; i < n; i++) closerNodes.push(addr())
    }
    const error = flags & 8 ? readUint() : 0
    const value = flags & 16 ? fixed(readUint()) : null
    return { type: "response", tid, to, id, token, internal: false, command: -1, target: null, closerNodes, error, value }
  } catch {
    return null
  }
}

// ---- PEER_HANDSHAKE / PEER_HOLEPUNCH values (connect.md §4.2, §6.2) --------------------------

export interface HsValue {
  readonly mode: number
  readonly noise: Uint8Array
  readonly peerAddress?: Addr | null
  readonly relayAddress?: Addr | null
}

export const hsValue = (m: HsValue): Buffer =>
  Buffer.from([
    ...uint((m.peerAddress ? 1 : 0) | (m.relayAddress ? 2 : 0)),
    ...uint(m.mode),
    ...uint(m.noise.length),
    ...m.noise,
    ...(m.peerAddress ? ipv4(m.peerAddress) : []),
    ...(m.relayAddress ? ipv4(m.relayAddress) : [])
  ])

export interface HpValue {
  readonly mode: number
  readonly id: number
  readonly payload: Uint8Array
  readonly peerAddress?: Addr | null
}

export const hpValue = (m: HpValue): Buffer =>
  Buffer.from([
    ...uint(m.peerAddress ? 1 : 0),
    ...uint(m.mode),
    ...uint(m.id),
    ...uint(m.payload.length),
    ...m.payload,
    ...(m.peerAddress ? ipv4(m.peerAddress) : [])
  ])

// ---- a raw socket ----------------------------------------------------------------------------

export interface Received {
  readonly msg: Buffer
  readonly from: Addr
}

export class Raw {
  readonly inbox: Array<Received> = []
  /** Called for every datagram as it arrives (a hostile relay answers from here). */
  onmessage: ((r: Received) => void) | null = null
  private waiters: Array<() => void> = []

  private constructor(
    readonly socket: dgram.Socket,
    readonly port: number
  ) {
    socket.on("message", (msg, rinfo) => {
      const r = { msg, from: { host: rinfo.address, port: rinfo.port } }
      this.inbox.push(r)
      this.onmessage?.(r)
      const w = this.waiters
      this.waiters = []
      for (const f of w) f()
    })
  }

  static async open(): Promise<Raw> {
    const socket = dgram.createSocket("udp4")
    socket.on("error", () => {})
    await new Promise<void>((r) => socket.bind(0, HOST, () => r()))
    return new Raw(socket, socket.address().port)
  }

  get address(): Addr {
    return { host: HOST, port: this.port }
  }

  send(to: Addr, data: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.socket.send(data, to.port, to.host, (err) => (err ? reject(err) : resolve())))
  }

  /** Send paced: at most 16 datagrams at a time, then a turn of the event loop (the nodes run in this process). */
  async blast(datagrams: ReadonlyArray<{ readonly to: Addr; readonly data: Uint8Array }>): Promise<void> {
    for (let i = 0; i < datagrams.length; i += 16) {
      await Promise.all(datagrams.slice(i, i + 16).map((d) => this.send(d.to, d.data)))
      await sleep(2)
    }
  }

  /** The dht-rpc messages received since `from` (an inbox index). */
  messages(from = 0): Array<Decoded & { readonly from: Addr }> {
    const out: Array<Decoded & { readonly from: Addr }> = []
    for (const r of this.inbox.slice(from)) {
      const d = decodeMessage(r.msg)
      if (d !== null) out.push({ ...d, from: r.from })
    }
    return out
  }

  /** Wait until `pred` holds (checked on every datagram and every 50 ms), at most `ms`. */
  async until(pred: () => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!pred()) {
      const left = deadline - Date.now()
      if (left <= 0) return false
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), sleep(Math.min(left, 50))])
    }
    return true
  }

  destroy(): Promise<void> {
    return new Promise((r) => {
      try {
        this.socket.close(() => r())
      } catch {
        r()
      }
    })
  }
}
