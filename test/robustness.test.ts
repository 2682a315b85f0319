/**
 * Robustness: random and mutated datagrams through every decoder. Zero
 * exceptions allowed; every failure must be a typed error.
 *
 * Corpus: every hex string found in the reference vectors (real messages of
 * every type), mutated by bit flips, truncation, extension, byte insertion /
 * deletion and splicing, mixed with purely random datagrams of 0..2100 bytes.
 */
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import * as Derive from "../src/layers/crypto/derive.js"
import { noble } from "../src/layers/crypto/noble.js"
import * as Noise from "../src/layers/crypto/noise.js"
import * as BlindRelay from "../src/protocol/blind-relay.js"
import * as Connect from "../src/protocol/connect.js"
import * as Rpc from "../src/protocol/dht-rpc.js"
import * as E from "../src/protocol/encoding.js"
import * as Records from "../src/protocol/records.js"
import * as SecretStream from "../src/protocol/secret-stream.js"
import * as Udx from "../src/protocol/udx.js"
import { xorshift32 } from "../src/util/random.js"
import { loadVectors } from "./support/vectors.js"

// ---- deterministic randomness ----------------------------------------------------

const makeRng = (seed: number) => {
  const next = xorshift32(seed || 1)
  return {
    int: (n: number) => next() % n,
    bytes: (n: number) => {
      const b = new Uint8Array(n)
      for (let i = 0; i < n; i++) b[i] = next() & 0xff
      return b
    }
  }
}

// ---- corpus -------------------------------------------------------------------------

const collectHex = (x: unknown, out: Array<Uint8Array>): void => {
  if (typeof x === "string") {
    if (x.length >= 2 && x.length % 2 === 0 && /^[0-9a-f]+$/.test(x)) out.push(E.fromHex(x)!)
  } else if (Array.isArray(x)) for (const v of x) collectHex(v, out)
  else if (x !== null && typeof x === "object") for (const v of Object.values(x)) collectHex(v, out)
}

const corpus: Array<Uint8Array> = []
collectHex(loadVectors("dht"), corpus)
collectHex(loadVectors("connect"), corpus)

const mutate = (rng: ReturnType<typeof makeRng>, base: Uint8Array): Uint8Array => {
  const kind = rng.int(7)
  const b = base.slice()
  switch (kind) {
    case 0: // bit flips
    case 1: {
      const flips = 1 + rng.int(8)
      for (let i = 0; i < flips && b.length > 0; i++) b[rng.int(b.length)]! ^= 1 << rng.int(8)
      return b
    }
    case 2: // truncate
      return b.subarray(0, rng.int(b.length + 1))
    case 3: { // extend with random bytes
      const tail = rng.bytes(1 + rng.int(64))
      const out = new Uint8Array(b.length + tail.length)
      out.set(b)
      out.set(tail, b.length)
      return out
    }
    case 4: { // insert or delete a byte
      const at = rng.int(b.length + 1)
      if (rng.int(2) === 0 && b.length > 0) return Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + 1)])
      return Uint8Array.from([...b.subarray(0, at), rng.int(256), ...b.subarray(at)])
    }
    case 5: { // overwrite a byte with a boundary value (varint prefixes, flags)
      if (b.length > 0) b[rng.int(b.length)] = [0x00, 0x01, 0x7f, 0xfc, 0xfd, 0xfe, 0xff][rng.int(7)]!
      return b
    }
    default: { // splice two corpus entries
      const other = corpus[rng.int(corpus.length)]!
      const cut = rng.int(b.length + 1)
      return Uint8Array.from([...b.subarray(0, cut), ...other.subarray(rng.int(other.length + 1))])
    }
  }
}

const datagrams = (seed: number, count: number): Array<Uint8Array> => {
  const rng = makeRng(seed)
  const out: Array<Uint8Array> = []
  for (let i = 0; i < count; i++) {
    const r = rng.int(10)
    if (r < 3) out.push(rng.bytes(rng.int(2100)))
    else if (r < 4) out.push(rng.bytes(rng.int(40)))
    else out.push(mutate(rng, corpus[rng.int(corpus.length)]!))
  }
  return out
}

// ---- decoders under test ---------------------------------------------------------

type Outcome = "ok" | "typed-error"

const isTypedError = (e: unknown): boolean =>
  e !== null && typeof e === "object" && typeof (e as { _tag?: unknown })._tag === "string" && e instanceof Error

const viaCodec = <A>(c: E.Codec<A>) => (b: Uint8Array): Outcome => {
  const r = E.decode(c, b)
  if (Result.isSuccess(r)) return "ok"
  if (!(r.failure instanceof E.DecodeError) || !isTypedError(r.failure)) throw new Error(`untyped failure ${String(r.failure)}`)
  return "typed-error"
}

const viaResult = (f: (b: Uint8Array) => Result.Result<unknown, unknown>) => (b: Uint8Array): Outcome => {
  const r = f(b)
  if (Result.isSuccess(r)) return "ok"
  if (!isTypedError(r.failure)) throw new Error(`untyped failure ${String(r.failure)}`)
  return "typed-error"
}

const decoders: Record<string, (b: Uint8Array) => Outcome> = {
  // compact-encoding primitives
  uint: viaCodec(E.uint),
  uint16: viaCodec(E.uint16),
  uint32: viaCodec(E.uint32),
  uint64: viaCodec(E.uint64),
  int: viaCodec(E.int),
  buffer: viaCodec(E.buffer),
  optionalBuffer: viaCodec(E.optionalBuffer),
  string: viaCodec(E.string),
  fixed32: viaCodec(E.fixed32),
  ipv4Address: viaCodec(E.ipv4Address),
  ipv6Address: viaCodec(E.ipv6Address),
  ipv4AddressArray: viaCodec(E.ipv4AddressArray),
  "array(uint)": viaCodec(E.array(E.uint)),
  "array(buffer)": viaCodec(E.array(E.buffer)),
  // dht-rpc envelope
  "dht-rpc message": viaResult(Rpc.decodeMessage),
  "dht-rpc request": viaResult(Rpc.decodeRequest),
  "dht-rpc response": viaResult(Rpc.decodeResponse),
  // hyperdht records
  peer: viaCodec(Records.peer),
  announce: viaCodec(Records.announce),
  lookupRawReply: viaCodec(Records.lookupRawReply),
  lookupReply: viaCodec(Records.lookupReply),
  mutablePutRequest: viaCodec(Records.mutablePutRequest),
  mutableGetResponse: viaCodec(Records.mutableGetResponse),
  mutableGetRequest: viaCodec(Records.mutableGetRequest),
  pluginRequest: viaCodec(Records.pluginRequest),
  hyperdhtAddress: viaCodec(Records.hyperdhtAddress),
  // connect
  handshake: viaCodec(Connect.handshake),
  holepunch: viaCodec(Connect.holepunch),
  noisePayload: viaCodec(Connect.noisePayload),
  holepunchPayload: viaCodec(Connect.holepunchPayload),
  // UDX
  udx: (b) => {
    const r = Udx.decodeUdxPacket(b)
    Udx.isUdxPacket(b)
    if (Udx.isUdxDecodeError(r)) {
      if (r._tag !== "UdxDecodeError" || typeof r.reason !== "string") throw new Error("untyped UDX failure")
      return "typed-error"
    }
    return "ok"
  },
  // secret stream
  secretStreamHeader: viaResult(SecretStream.parseHeaderMessage),
  unorderedMessage: viaResult(SecretStream.parseUnorderedMessage),
  // blind relay / protomux
  protomuxFrame: viaResult(BlindRelay.decodeProtomuxFrame),
  blindRelayPair: viaResult((b) => BlindRelay.decodeBlindRelayMessage(0, b)),
  blindRelayUnpair: viaResult((b) => BlindRelay.decodeBlindRelayMessage(1, b))
}

const COUNT = 100_000

describe("robustness: hostile datagrams through every decoder", () => {
  it(`${COUNT} random and mutated datagrams: zero exceptions, every failure typed`, () => {
    expect(corpus.length).toBeGreaterThan(100)
    const inputs = datagrams(0xc0ffee, COUNT)
    expect(inputs.length).toBe(COUNT)
    const stats: Record<string, { ok: number; err: number }> = {}
    const exceptions: Array<string> = []
    for (const [name, decode] of Object.entries(decoders)) {
      const s = { ok: 0, err: 0 }
      for (const b of inputs) {
        try {
          if (decode(b) === "ok") s.ok++
          else s.err++
        } catch (e) {
          if (exceptions.length < 20) exceptions.push(`${name}: ${String(e)} on ${E.toHex(b).slice(0, 80)}`)
          s.err++
        }
      }
      stats[name] = s
    }
    expect(exceptions).toEqual([])
    for (const [name, s] of Object.entries(stats)) {
      expect(s.ok + s.err, name).toBe(COUNT)
      expect(s.err, `${name} never rejected anything`).toBeGreaterThan(0)
    }
    // decoders with a fixed structure also accept a good share of the mutated corpus
    expect(stats["dht-rpc message"]!.ok).toBeGreaterThan(1000)
  })

  it("the secret-stream frame parser survives the same stream of chunks", () => {
    const inputs = datagrams(0xbadd, COUNT)
    const parser = new SecretStream.FrameParser()
    let frames = 0
    let errors = 0
    for (const b of inputs) {
      const r = parser.push(b)
      frames += r.frames.length
      if (r.error !== null) {
        expect(isTypedError(r.error)).toBe(true)
        errors++
      }
    }
    expect(frames + errors).toBeGreaterThan(0)
  })

  it("crypto-level decoders (Noise messages, holepunch boxes, secretstream) reject garbage with typed errors or null", () => {
    const c = noble
    const server = c.keyPair(new Uint8Array(32).fill(2))!
    const prologue = Derive.dhtNamespaces(c).PEER_HANDSHAKE
    const key = new Uint8Array(32).fill(7)
    const pull = c.secretstreamInitPull(key, new Uint8Array(24))!
    // Noise costs a few scalar multiplications per message: fewer inputs, all still mutated real messages or garbage
    const inputs = datagrams(0x5eed, 1_000)
    let rejected = 0
    for (const b of inputs) {
      const r1 = Noise.readMessage1(Noise.responder(c, { staticKeyPair: server, prologue }), b)
      if (Result.isFailure(r1)) {
        expect(r1.failure._tag).toBe("NoiseError")
        rejected++
      }
      const ini = Noise.initiator(c, { staticKeyPair: c.keyPair(new Uint8Array(32).fill(1))!, remoteStaticKey: server.publicKey, prologue })
      Result.getOrThrow(Noise.writeMessage1(ini, new Uint8Array(4)))
      const r2 = Noise.readMessage2(ini, b)
      if (Result.isFailure(r2)) expect(r2.failure._tag).toBe("NoiseError")
      expect(Derive.openPayload(c, key, b)).toBeNull()
      expect(c.secretstreamPull(pull, b)).toBeNull()
    }
    expect(rejected).toBe(inputs.length)
  })
})
