/**
 * Property tests for the connection-layer codecs, driven by a seeded PRNG so
 * every run checks the same cases:
 * - decode(encode(x)) deep-equals x for generated valid values of every type;
 * - unrepresentable values give an EncodeError (never a throw);
 * - decoders never throw on arbitrary / truncated bytes;
 * - the secret-stream frame parser yields the same frames however the byte
 *   stream is split.
 */
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import {
  type Codec,
  decode,
  DecodeError,
  encode,
  EncodeError,
  type IPv4Address,
  type IPv6Address,
  Reader
} from "../src/protocol/encoding.js"
import {
  type Handshake,
  handshake,
  type Holepunch,
  holepunch,
  type HolepunchPayload,
  holepunchPayload,
  makeNoisePayload,
  type NoisePayload,
  noisePayload
} from "../src/protocol/connect.js"
import {
  decodeUdxPacket,
  encodeUdxPacket,
  type SackBlock,
  UDX_SACK,
  type UdxPacketInit
} from "../src/protocol/udx.js"
import {
  encodeFrame,
  encodeHeaderFrame,
  FrameError,
  FrameParser,
  headerMessage,
  MAX_FRAME_LENGTH,
  parseHeaderMessage,
  type SecretStreamHeader,
  type UnorderedMessage,
  unorderedMessage
} from "../src/protocol/secret-stream.js"
import {
  batchFrame,
  closeFrame,
  decodeBlindRelayMessage,
  encodeBlindRelayMessage,
  MAX_BATCH_DEPTH,
  messageFrame,
  openFrame,
  type Pair,
  pair,
  type ProtomuxFrame,
  protomuxFrame,
  rejectFrame,
  type Unpair,
  unpair
} from "../src/protocol/blind-relay.js"
import { seededRandom } from "../src/util/random.js"

// ---------------------------------------------------------------------------
// Seeded generators
// ---------------------------------------------------------------------------

/** Seeded generator (xorshift32 from src/util/random). */
class Rng {
  private readonly rand: () => number
  constructor(seed: number) {
    this.rand = seededRandom(seed)
  }
  next(): number {
    return this.rand()
  }
  /** Integer in [lo, hi] (inclusive), hi - lo < 2^32. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }
  bool(): boolean {
    return this.next() < 0.5
  }
  chance(p: number): boolean {
    return this.next() < p
  }
  pick<A>(items: ReadonlyArray<A>): A {
    return items[this.int(0, items.length - 1)]!
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n)
    for (let i = 0; i < n; i++) b[i] = this.int(0, 255)
    return b
  }
  /** A uint spread over every varint width, boundaries included. */
  uint(): number {
    switch (this.int(0, 6)) {
      case 0:
        return this.int(0, 0xfc)
      case 1:
        return this.pick([0, 0xfc, 0xfd, 0xfe, 0xff, 0xffff, 0x10000, 0xffffffff, 0x100000000, Number.MAX_SAFE_INTEGER])
      case 2:
        return this.int(0xfd, 0xffff)
      case 3:
        return this.int(0x10000, 0xffffffff)
      case 4:
        return this.int(0, 0x1fffff) * 0x100000000 + this.int(0, 0xffffffff)
      default:
        return this.int(0, 10)
    }
  }
  u32(): number {
    return this.chance(0.2) ? this.pick([0, 1, 0xffffffff, 0x80000000]) : this.int(0, 0xffffffff)
  }
  list<A>(max: number, item: () => A): Array<A> {
    const n = this.int(0, max)
    const out: Array<A> = []
    for (let i = 0; i < n; i++) out.push(item())
    return out
  }
  ipv4(): IPv4Address {
    return { host: `${this.int(0, 255)}.${this.int(0, 255)}.${this.int(0, 255)}.${this.int(0, 255)}`, port: this.int(0, 65535) }
  }
  /** In the text form the decoder produces (8 uncompressed lower-case groups). */
  ipv6(): IPv6Address {
    const groups: Array<string> = []
    for (let i = 0; i < 8; i++) groups.push((this.chance(0.3) ? 0 : this.int(0, 0xffff)).toString(16))
    return { host: groups.join(":"), port: this.int(0, 65535) }
  }
}

const CASES = 300

const genHandshake = (g: Rng): Handshake => ({
  mode: g.chance(0.8) ? g.int(0, 4) : g.uint(),
  noise: g.bytes(g.int(0, 200)),
  peerAddress: g.bool() ? g.ipv4() : null,
  relayAddress: g.bool() ? g.ipv4() : null
})

const genHolepunch = (g: Rng): Holepunch => ({
  mode: g.chance(0.8) ? g.int(0, 4) : g.uint(),
  id: g.uint(),
  payload: g.bytes(g.int(0, 120)),
  peerAddress: g.bool() ? g.ipv4() : null
})

const genNoisePayload = (g: Rng): NoisePayload => {
  if (g.chance(0.05)) {
    // A foreign version: only the version survives (decoder defaults for the rest).
    let version = g.uint()
    if (version === 1) version = 2
    return makeNoisePayload({ version, error: 0, firewall: 0 })
  }
  return {
    version: 1,
    error: g.uint(),
    firewall: g.chance(0.8) ? g.int(0, 3) : g.uint(),
    holepunch: g.bool()
      ? { id: g.uint(), relays: g.list(4, () => ({ relayAddress: g.ipv4(), peerAddress: g.ipv4() })) }
      : null,
    addresses4: g.list(4, () => g.ipv4()),
    addresses6: g.list(3, () => g.ipv6()),
    udx: g.bool() ? { version: g.chance(0.8) ? 1 : g.uint(), reusableSocket: g.bool(), id: g.uint(), seq: g.uint() } : null,
    secretStream: g.bool() ? { version: g.chance(0.8) ? 1 : g.uint() } : null,
    relayThrough: g.bool()
      ? {
        version: g.chance(0.8) ? 1 : g.uint(),
        flags: g.chance(0.8) ? 0 : g.uint(),
        publicKey: g.bytes(32),
        token: g.bytes(32)
      }
      : null,
    relayAddresses: g.bool() ? g.list(3, () => g.ipv4()) : null
  }
}

const genHolepunchPayload = (g: Rng): HolepunchPayload => ({
  error: g.chance(0.8) ? g.pick([0, 1, 3]) : g.uint(),
  firewall: g.chance(0.8) ? g.int(0, 3) : g.uint(),
  round: g.uint(),
  connected: g.bool(),
  punching: g.bool(),
  addresses: g.bool() ? g.list(4, () => g.ipv4()) : null,
  remoteAddress: g.bool() ? g.ipv4() : null,
  token: g.bool() ? g.bytes(32) : null,
  remoteToken: g.bool() ? g.bytes(32) : null
})

const genPair = (g: Rng): Pair => ({ isInitiator: g.bool(), token: g.bytes(32), id: g.uint(), seq: g.uint() })
const genUnpair = (g: Rng): Unpair => ({ token: g.bytes(32) })

const genString = (g: Rng): string => {
  const alphabet = ["a", "b", "-", "z", "0", "é", "ü", "✓", "日", "😀"]
  let s = ""
  const n = g.int(0, 16)
  for (let i = 0; i < n; i++) s += g.pick(alphabet)
  return s
}

const genFrame = (g: Rng, depth: number): ProtomuxFrame => {
  const kind = g.int(0, depth < 2 ? 5 : 4)
  switch (kind) {
    case 0:
      // A zero-length id encodes as absent, so generate null or non-empty ids.
      return openFrame(g.uint(), genString(g), g.bool() ? g.bytes(g.int(1, 40)) : null, g.chance(0.3) ? g.bytes(g.int(1, 20)) : new Uint8Array(0))
    case 1:
      return rejectFrame(g.uint())
    case 2:
      return closeFrame(g.uint())
    case 3:
      return { _tag: "UnknownControl", type: g.int(4, 300), payload: g.bytes(g.int(0, 10)) }
    case 4:
      return messageFrame(g.int(1, 5) === 5 ? g.uint() || 1 : g.int(1, 4), g.uint(), g.bytes(g.int(0, 60)))
    default:
      return batchFrame(g.list(5, () => genFrame(g, depth + 1)))
  }
}

const genUdx = (g: Rng): UdxPacketInit & { readonly dataOffset: number; readonly payload: Uint8Array; readonly sacks: ReadonlyArray<SackBlock> } => {
  const type = g.chance(0.7) ? g.pick([0, 1, 2, 3, 4, 8, 16, 32]) : g.int(0, 255)
  const base = { type, id: g.u32(), rwnd: g.u32(), seq: g.u32(), ack: g.u32() }
  if ((type & UDX_SACK) !== 0) {
    return { ...base, dataOffset: 0, payload: new Uint8Array(0), sacks: g.list(60, () => [g.u32(), g.u32()] as const) }
  }
  return { ...base, dataOffset: g.chance(0.7) ? 0 : g.int(0, 255), payload: g.bytes(g.int(0, 100)), sacks: [] }
}

const genHeader = (g: Rng): SecretStreamHeader => ({ streamId: g.bytes(32), header: g.bytes(24) })
const genUnordered = (g: Rng): UnorderedMessage => ({ counter: g.bytes(8), box: g.bytes(g.int(16, 100)) })

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const roundtrip = <A>(c: Codec<A>, gen: (g: Rng) => A, seed: number): void => {
  const g = new Rng(seed)
  for (let i = 0; i < CASES; i++) {
    const x = gen(g)
    const bytes = encode(c, x)
    if (Result.isFailure(bytes)) throw new Error(`case ${i}: ${bytes.failure.message}`)
    const back = decode(c, bytes.success, { exact: true })
    if (Result.isFailure(back)) throw new Error(`case ${i}: ${back.failure.message}`)
    expect(back.success, `${c.name} case ${i}`).toEqual(x)
  }
}

const expectEncodeError = <A>(c: Codec<A>, value: unknown, label: string): void => {
  let r: Result.Result<Uint8Array, EncodeError> | undefined
  expect(() => {
    r = encode(c, value as A)
  }, label).not.toThrow()
  if (r === undefined || Result.isSuccess(r)) throw new Error(`${label}: expected an EncodeError`)
  expect(r.failure, label).toBeInstanceOf(EncodeError)
}

/** Decoders must not throw on anything: call them directly (not through `decode`, which catches). */
const expectDecodeNeverThrows = <A>(c: Codec<A>, gen: (g: Rng) => A, seed: number): void => {
  const g = new Rng(seed)
  for (let i = 0; i < CASES; i++) {
    let input: Uint8Array
    if (i % 2 === 0) {
      input = g.bytes(g.int(0, 80))
    } else {
      const full = encode(c, gen(g))
      if (Result.isFailure(full)) throw full.failure
      input = full.success.subarray(0, g.int(0, full.success.length))
      if (g.chance(0.3) && input.length > 0) {
        input = input.slice()
        input[g.int(0, input.length - 1)] = g.int(0, 255)
      }
    }
    const r = new Reader(input)
    expect(() => c.decode(r), `${c.name} case ${i}`).not.toThrow()
    expect(r.pos).toBeLessThanOrEqual(input.length)
  }
}

const A4: IPv4Address = { host: "1.2.3.4", port: 1 }
const K32 = new Uint8Array(32)

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe("roundtrip: decode(encode(x)) == x", () => {
  it("handshake", () => roundtrip(handshake, genHandshake, 1))
  it("holepunch", () => roundtrip(holepunch, genHolepunch, 2))
  it("noisePayload", () => roundtrip(noisePayload, genNoisePayload, 3))
  it("holepunchPayload", () => roundtrip(holepunchPayload, genHolepunchPayload, 4))
  it("blind-relay pair", () => roundtrip(pair, genPair, 5))
  it("blind-relay unpair", () => roundtrip(unpair, genUnpair, 6))
  it("protomux frames (open / reject / close / message / batch / unknown control)", () =>
    roundtrip(protomuxFrame, (g) => genFrame(g, 0), 7))
  it("secret-stream header message", () => roundtrip(headerMessage, genHeader, 8))
  it("secret-stream unordered message layout", () => roundtrip(unorderedMessage, genUnordered, 9))

  it("blind-relay messages through protomux message frames", () => {
    const g = new Rng(10)
    for (let i = 0; i < CASES; i++) {
      const channel = g.int(1, 1000)
      const m = g.bool() ? { _tag: "Pair" as const, pair: genPair(g) } : { _tag: "Unpair" as const, unpair: genUnpair(g) }
      const wire = encodeBlindRelayMessage(channel, m)
      if (Result.isFailure(wire)) throw wire.failure
      const frame = decode(protomuxFrame, wire.success)
      if (Result.isFailure(frame) || frame.success._tag !== "Message") throw new Error(`case ${i}: not a message frame`)
      expect(frame.success.channel).toBe(channel)
      const back = decodeBlindRelayMessage(frame.success.type, frame.success.payload)
      if (Result.isFailure(back)) throw back.failure
      expect(back.success).toEqual(m)
    }
  })

  it("UDX packets", () => {
    const g = new Rng(11)
    for (let i = 0; i < CASES; i++) {
      const x = genUdx(g)
      const bytes = encodeUdxPacket(x)
      if (Result.isFailure(bytes)) throw new Error(`case ${i}: ${bytes.failure.message}`)
      const d = decodeUdxPacket(bytes.success)
      expect(d, `case ${i}`).toEqual({ _tag: "UdxPacket", ...x })
    }
  })

  it("secret-stream frames", () => {
    const g = new Rng(12)
    for (let i = 0; i < CASES; i++) {
      const body = g.bytes(g.int(0, 300))
      const wire = encodeFrame(body)
      if (Result.isFailure(wire)) throw wire.failure
      const out = new FrameParser().push(wire.success)
      expect(out.error).toBeNull()
      expect(out.frames).toEqual([body])
    }
  })
})

describe("encoders return EncodeError for unrepresentable values", () => {
  it("handshake / holepunch", () => {
    const ok: Handshake = { mode: 0, noise: new Uint8Array(3), peerAddress: null, relayAddress: null }
    expectEncodeError(handshake, { ...ok, mode: -1 }, "negative mode")
    expectEncodeError(handshake, { ...ok, mode: 1.5 }, "fractional mode")
    expectEncodeError(handshake, { ...ok, mode: 2 ** 53 }, "mode above 2^53-1")
    expectEncodeError(handshake, { ...ok, noise: "abc" }, "noise not bytes")
    expectEncodeError(handshake, { ...ok, peerAddress: { host: "256.1.1.1", port: 1 } }, "bad IPv4 octet")
    expectEncodeError(handshake, { ...ok, relayAddress: { host: "1.2.3.4", port: 65536 } }, "port above 65535")
    expectEncodeError(handshake, { ...ok, peerAddress: { host: "::1", port: 1 } }, "IPv6 where IPv4 is required")
    expectEncodeError(handshake, null, "null value")
    const hp: Holepunch = { mode: 0, id: 1, payload: new Uint8Array(2), peerAddress: A4 }
    expectEncodeError(holepunch, { ...hp, id: -3 }, "negative id")
    expectEncodeError(holepunch, { ...hp, payload: [1, 2] }, "payload not bytes")
    expectEncodeError(holepunch, { ...hp, peerAddress: { host: "1.2.3", port: 1 } }, "short IPv4")
  })

  it("noisePayload / holepunchPayload", () => {
    const base = makeNoisePayload({ error: 0, firewall: 0 })
    expectEncodeError(noisePayload, { ...base, error: -1 }, "negative error")
    expectEncodeError(noisePayload, { ...base, firewall: Number.NaN }, "NaN firewall")
    expectEncodeError(noisePayload, { ...base, udx: { version: 1, reusableSocket: false, id: 2 ** 53, seq: 0 } }, "udx id too large")
    expectEncodeError(
      noisePayload,
      { ...base, relayThrough: { version: 1, flags: 0, publicKey: new Uint8Array(31), token: K32 } },
      "31-byte relay public key"
    )
    expectEncodeError(
      noisePayload,
      { ...base, relayThrough: { version: 1, flags: 0, publicKey: K32, token: new Uint8Array(33) } },
      "33-byte relay token"
    )
    expectEncodeError(noisePayload, { ...base, addresses4: [{ host: "1.2.3.4.5", port: 1 }] }, "bad IPv4 in addresses4")
    expectEncodeError(noisePayload, { ...base, addresses6: [{ host: "1::2::3", port: 1 }] }, "bad IPv6 in addresses6")
    expectEncodeError(noisePayload, { ...base, holepunch: { id: 0, relays: [{ relayAddress: A4 }] } }, "relay without peerAddress")
    expectEncodeError(noisePayload, { ...base, relayAddresses: "1.2.3.4" }, "relayAddresses not an array")
    const hpp: HolepunchPayload = {
      error: 0,
      firewall: 0,
      round: 0,
      connected: false,
      punching: false,
      addresses: null,
      remoteAddress: null,
      token: null,
      remoteToken: null
    }
    expectEncodeError(holepunchPayload, { ...hpp, round: -1 }, "negative round")
    expectEncodeError(holepunchPayload, { ...hpp, token: new Uint8Array(16) }, "16-byte token")
    expectEncodeError(holepunchPayload, { ...hpp, remoteToken: new Uint8Array(64) }, "64-byte remote token")
    expectEncodeError(holepunchPayload, { ...hpp, remoteAddress: { host: "x", port: 1 } }, "bad remote address")
  })

  it("blind-relay / protomux", () => {
    expectEncodeError(pair, { isInitiator: true, token: new Uint8Array(31), id: 1, seq: 0 }, "short pair token")
    expectEncodeError(pair, { isInitiator: true, token: K32, id: -1, seq: 0 }, "negative pair id")
    expectEncodeError(pair, { isInitiator: true, token: K32, id: 1, seq: 0.5 }, "fractional seq")
    expectEncodeError(unpair, { token: new Uint8Array(0) }, "empty unpair token")
    expectEncodeError(protomuxFrame, messageFrame(0, 0, new Uint8Array(1)), "message on channel 0")
    expectEncodeError(protomuxFrame, messageFrame(1, -1, new Uint8Array(1)), "negative message type")
    expectEncodeError(protomuxFrame, openFrame(-1, "p", null), "negative local id")
    expectEncodeError(protomuxFrame, openFrame(1, 42 as unknown as string, null), "protocol not a string")
    expectEncodeError(protomuxFrame, { _tag: "UnknownControl", type: 1, payload: new Uint8Array(0) }, "known type as unknown control")
    expectEncodeError(protomuxFrame, { _tag: "Nope" }, "unknown tag")
    let nested: ProtomuxFrame = closeFrame(1)
    for (let i = 0; i <= MAX_BATCH_DEPTH; i++) nested = batchFrame([nested])
    expectEncodeError(protomuxFrame, nested, "batch nested too deeply")
    const r = encodeBlindRelayMessage(1, { _tag: "Pair", pair: { isInitiator: false, token: K32, id: -5, seq: 0 } })
    expect(Result.isFailure(r) && r.failure instanceof EncodeError).toBe(true)
  })

  it("UDX packets", () => {
    const ok: UdxPacketInit = { type: 1, id: 1, rwnd: 1, seq: 1, ack: 1 }
    const bad: Array<[string, unknown]> = [
      ["seq 2^32", { ...ok, seq: 2 ** 32 }],
      ["negative ack", { ...ok, ack: -1 }],
      ["fractional id", { ...ok, id: 1.5 }],
      ["rwnd NaN", { ...ok, rwnd: Number.NaN }],
      ["type 256", { ...ok, type: 256 }],
      ["dataOffset 256", { ...ok, dataOffset: 256 }],
      ["sacks without SACK flag", { ...ok, sacks: [[1, 2]] }],
      ["SACK with payload", { ...ok, type: UDX_SACK, payload: new Uint8Array(1) }],
      ["SACK with dataOffset", { ...ok, type: UDX_SACK, dataOffset: 8 }],
      ["SACK bound above u32", { ...ok, type: UDX_SACK, sacks: [[0, 2 ** 32]] }],
      ["SACK block of 3", { ...ok, type: UDX_SACK, sacks: [[0, 1, 2]] }],
      ["payload not bytes", { ...ok, payload: "x" }],
      ["null", null]
    ]
    for (const [label, v] of bad) {
      let r: Result.Result<Uint8Array, EncodeError> | undefined
      expect(() => {
        r = encodeUdxPacket(v as UdxPacketInit)
      }, label).not.toThrow()
      if (r === undefined || Result.isSuccess(r)) throw new Error(`${label}: expected an EncodeError`)
      expect(r.failure, label).toBeInstanceOf(EncodeError)
    }
  })

  it("secret-stream", () => {
    const big = encodeFrame(new Uint8Array(MAX_FRAME_LENGTH + 1))
    expect(Result.isFailure(big) && big.failure instanceof EncodeError).toBe(true)
    const max = encodeFrame(new Uint8Array(MAX_FRAME_LENGTH))
    expect(Result.isSuccess(max) && max.success.length === MAX_FRAME_LENGTH + 3).toBe(true)
    expectEncodeError(headerMessage, { streamId: new Uint8Array(31), header: new Uint8Array(24) }, "short stream id")
    expectEncodeError(headerMessage, { streamId: K32, header: new Uint8Array(25) }, "long header")
    const hf = encodeHeaderFrame({ streamId: K32, header: new Uint8Array(8) })
    expect(Result.isFailure(hf) && hf.failure instanceof EncodeError).toBe(true)
    expectEncodeError(unorderedMessage, { counter: new Uint8Array(7), box: new Uint8Array(16) }, "7-byte counter")
    expectEncodeError(unorderedMessage, { counter: new Uint8Array(8), box: new Uint8Array(15) }, "box shorter than a MAC")
  })
})

describe("decoders never throw and report typed errors", () => {
  it("on random and truncated / corrupted input, for every codec", () => {
    expectDecodeNeverThrows(handshake, genHandshake, 21)
    expectDecodeNeverThrows(holepunch, genHolepunch, 22)
    expectDecodeNeverThrows(noisePayload, genNoisePayload, 23)
    expectDecodeNeverThrows(holepunchPayload, genHolepunchPayload, 24)
    expectDecodeNeverThrows(pair, genPair, 25)
    expectDecodeNeverThrows(unpair, genUnpair, 26)
    expectDecodeNeverThrows(protomuxFrame, (g) => genFrame(g, 0), 27)
    expectDecodeNeverThrows(headerMessage, genHeader, 28)
    expectDecodeNeverThrows(unorderedMessage, genUnordered, 29)
  })

  it("truncated fixed-layout messages fail with DecodeError", () => {
    const g = new Rng(30)
    for (let i = 0; i < CASES; i++) {
      const hpp = encode(holepunchPayload, { ...genHolepunchPayload(g), token: g.bytes(32) })
      if (Result.isFailure(hpp)) throw hpp.failure
      const cut = hpp.success.subarray(0, g.int(0, hpp.success.length - 1))
      const r = decode(holepunchPayload, cut)
      expect(Result.isFailure(r) && r.failure instanceof DecodeError).toBe(true)
    }
    // Header message: exactly 56 bytes.
    expect(Result.isFailure(parseHeaderMessage(new Uint8Array(55)))).toBe(true)
    const long = parseHeaderMessage(new Uint8Array(57))
    expect(Result.isFailure(long) && long.failure.reason === "TrailingBytes").toBe(true)
    expect(Result.isSuccess(parseHeaderMessage(new Uint8Array(56)))).toBe(true)
    // Unordered message: at least 24 bytes.
    expect(Result.isFailure(decode(unorderedMessage, new Uint8Array(23)))).toBe(true)
    expect(Result.isSuccess(decode(unorderedMessage, new Uint8Array(24)))).toBe(true)
    // Unknown blind-relay type.
    expect(Result.isFailure(decodeBlindRelayMessage(7, new Uint8Array(40)))).toBe(true)
    // Over-deep batch nesting on the wire: 00 00 00 | len 00 00 00 | ...
    let wire = Uint8Array.of(0x00, 0x03, 0x01) // close(1)
    for (let i = 0; i <= MAX_BATCH_DEPTH; i++) {
      const inner = wire.subarray(1) // drop channel byte: entry body = uint(type) ...
      wire = Uint8Array.of(0x00, 0x00, 0x00, inner.length, ...inner)
    }
    const deep = decode(protomuxFrame, wire)
    expect(Result.isFailure(deep) && deep.failure.reason === "BadValue").toBe(true)
  })

  it("blind-relay flags accept the reference bitfield's long form", () => {
    const token = new Uint8Array(32).fill(9)
    // fd prefix: 2 flag bytes follow, the first holds bit0.
    const wire = Uint8Array.of(0xfd, 0x01, 0x00, ...token, 0x05, 0x00)
    const r = decode(pair, wire)
    if (Result.isFailure(r)) throw r.failure
    expect(r.success).toEqual({ isInitiator: true, token, id: 5, seq: 0 })
  })

  it("UDX: random datagrams and the doff rule", () => {
    const g = new Rng(31)
    for (let i = 0; i < CASES; i++) {
      const b = g.bytes(g.int(0, 64))
      if (g.bool() && b.length >= 2) {
        b[0] = 0xff
        b[1] = 0x01
      }
      expect(() => decodeUdxPacket(b)).not.toThrow()
    }
    // doff > len - 20: typed error that still carries the header.
    const pkt = encodeUdxPacket({ type: 0x20, id: 7, rwnd: 0, seq: 3, ack: 4, payload: new Uint8Array(5) })
    if (Result.isFailure(pkt)) throw pkt.failure
    const bytes = pkt.success.slice()
    bytes[3] = 6
    const d = decodeUdxPacket(bytes)
    expect(d._tag).toBe("UdxDecodeError")
    if (d._tag === "UdxDecodeError") {
      expect(d.reason).toBe("DataOffsetOutOfRange")
      expect(d.header).toEqual({ type: 0x20, dataOffset: 6, id: 7, rwnd: 0, seq: 3, ack: 4 })
    }
    bytes[3] = 5
    const okd = decodeUdxPacket(bytes)
    expect(okd._tag === "UdxPacket" && okd.payload.length === 0).toBe(true)
    // SACK region bounded by 0 < doff < len - 20: blocks in [20, 20 + doff), payload after.
    const sack = Uint8Array.of(0xff, 0x01, UDX_SACK, 8, ...new Uint8Array(16), 1, 0, 0, 0, 2, 0, 0, 0, 0xaa, 0xbb)
    const s = decodeUdxPacket(sack)
    expect(s._tag === "UdxPacket" && s.sacks.length === 1 && s.sacks[0]![0] === 1 && s.sacks[0]![1] === 2).toBe(true)
    expect(s._tag === "UdxPacket" && Array.from(s.payload)).toEqual([0xaa, 0xbb])
  })
})

describe("secret-stream frame parser", () => {
  it("yields the same frames however the stream is split", () => {
    const g = new Rng(40)
    for (let round = 0; round < 200; round++) {
      const bodies: Array<Uint8Array> = g.list(12, () => {
        const r = g.next()
        const n = r < 0.15 ? 0 : r < 0.9 ? g.int(1, 200) : g.int(200, 20000)
        return g.bytes(n)
      })
      const wires = bodies.map((b) => {
        const w = encodeFrame(b)
        if (Result.isFailure(w)) throw w.failure
        return w.success
      })
      const total = wires.reduce((n, w) => n + w.length, 0)
      const stream = new Uint8Array(total)
      let o = 0
      for (const w of wires) {
        stream.set(w, o)
        o += w.length
      }
      // Random cut points, including empty chunks and single bytes.
      const parser = new FrameParser()
      const got: Array<Uint8Array> = []
      let pos = 0
      while (pos < total) {
        const r = g.next()
        const size = r < 0.1 ? 0 : r < 0.4 ? 1 : r < 0.8 ? g.int(1, 8) : g.int(1, 5000)
        const chunk = stream.slice(pos, Math.min(total, pos + size))
        pos += chunk.length
        const out = parser.push(chunk)
        expect(out.error).toBeNull()
        got.push(...out.frames)
      }
      expect(parser.pending).toBe(0)
      expect(got.length, `round ${round}`).toBe(bodies.length)
      expect(got, `round ${round}`).toEqual(bodies)
      // One-shot parse agrees.
      expect(new FrameParser().push(stream).frames).toEqual(bodies)
    }
  })

  it("returns a typed, sticky error for a frame over the limit and for a non-byte chunk", () => {
    const p = new FrameParser({ maxFrameLength: 100 })
    const ok = encodeFrame(new Uint8Array(100))
    const tooBig = encodeFrame(new Uint8Array(101))
    if (Result.isFailure(ok) || Result.isFailure(tooBig)) throw new Error("encode failed")
    const both = new Uint8Array(ok.success.length + tooBig.success.length)
    both.set(ok.success)
    both.set(tooBig.success, ok.success.length)
    const out = p.push(both)
    expect(out.frames).toHaveLength(1)
    expect(out.error).toBeInstanceOf(FrameError)
    expect(out.error?.reason).toBe("FrameTooLarge")
    // Sticky: the stream is unusable afterwards.
    const again = p.push(ok.success)
    expect(again.frames).toHaveLength(0)
    expect(again.error).toBe(out.error)

    const q = new FrameParser()
    let r: ReturnType<FrameParser["push"]> | undefined
    expect(() => {
      r = q.push("nope" as unknown as Uint8Array)
    }).not.toThrow()
    expect(r?.error?.reason).toBe("InvalidChunk")

    // The default limit is the 24-bit maximum: ff ff ff is accepted as a prefix.
    const d = new FrameParser()
    expect(d.push(Uint8Array.of(0xff, 0xff, 0xff, 1, 2)).error).toBeNull()
    expect(d.pending).toBe(5)
  })
})
