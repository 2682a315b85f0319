/**
 * Property tests for the dht-rpc messages and the hyperdht records:
 * decode(encode(x)) deep-equals x for many random valid values (seeded, so
 * every run sees the same cases), decoders never throw on truncated or random
 * input, and encoders return an EncodeError (never throw) for values that
 * cannot be represented.
 */
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import { NatSampler } from "../src/actors/routing/nat-sampler.js"
import { RoutingTable } from "../src/actors/routing/table.js"
import { noble } from "../src/layers/crypto/noble.js"
import {
  decodeMessage,
  message,
  nodeId,
  request,
  response,
  type Message,
  type Request,
  type Response
} from "../src/protocol/dht-rpc.js"
import * as E from "../src/protocol/encoding.js"
import {
  announce,
  annSignable,
  findPeerReply,
  hyperdhtAddress,
  lookupRawReply,
  lookupReply,
  mutableGetRequest,
  mutableGetResponse,
  mutablePutRequest,
  mutableSignable,
  mutableSignable64,
  namespaces,
  peer,
  pluginRequest,
  type Announce,
  type HyperdhtAddress,
  type LookupRawReply,
  type LookupReply,
  type MutableGetResponse,
  type MutablePutRequest,
  type MutableSignable,
  type Peer,
  type PluginRequest
} from "../src/protocol/records.js"
import { seededRandom } from "../src/util/random.js"

const CASES = 500

// ---------------------------------------------------------------------------
// Seeded generator
// ---------------------------------------------------------------------------

class Gen {
  private readonly rand: () => number
  constructor(seed: number) {
    this.rand = seededRandom(seed)
  }
  /** Float in [0, 1). */
  next(): number {
    return this.rand()
  }
  int(n: number): number {
    return Math.floor(this.next() * n)
  }
  bool(): boolean {
    return this.next() < 0.5
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n)
    for (let i = 0; i < n; i++) b[i] = this.int(256)
    return b
  }
  /** Mostly short byte strings, sometimes empty, sometimes a few hundred bytes. */
  blob(): Uint8Array {
    const r = this.next()
    return this.bytes(r < 0.1 ? 0 : r < 0.8 ? this.int(40) : this.int(600))
  }
  maybe<A>(f: () => A): A | null {
    return this.bool() ? f() : null
  }
  /** A uint in 0..2^53-1, biased towards the varint boundaries. */
  uint(): number {
    const edges = [0, 1, 0xfc, 0xfd, 0xfe, 0xff, 0xffff, 0x10000, 0xffffffff, 0x100000000, Number.MAX_SAFE_INTEGER]
    const r = this.next()
    if (r < 0.25) return edges[this.int(edges.length)]!
    if (r < 0.5) return this.int(0xfd)
    if (r < 0.7) return this.int(0x10000)
    if (r < 0.85) return this.int(0x100000000)
    return this.int(0x200000) * 0x100000000 + this.int(0x100000000)
  }
  uint16(): number {
    return this.int(0x10000)
  }
  address(): E.IPv4Address {
    return { host: `${this.int(256)}.${this.int(256)}.${this.int(256)}.${this.int(256)}`, port: this.uint16() }
  }
  addresses(max = 20): Array<E.IPv4Address> {
    const n = this.int(max + 1)
    const out: Array<E.IPv4Address> = []
    for (let i = 0; i < n; i++) out.push(this.address())
    return out
  }
  string(): string {
    const alphabet = ["a", "z", "0", "-", "/", "é", "ß", "中", "😀", " "]
    let s = ""
    const n = this.int(20)
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)]
    return s
  }
}

// ---------------------------------------------------------------------------
// Random values
// ---------------------------------------------------------------------------

const genRequest = (g: Gen): Request => ({
  tid: g.uint16(),
  to: g.address(),
  id: g.maybe(() => g.bytes(32)),
  token: g.maybe(() => g.bytes(32)),
  internal: g.bool(),
  command: g.uint(),
  target: g.maybe(() => g.bytes(32)),
  value: g.maybe(() => g.blob())
})

const genResponse = (g: Gen): Response => ({
  tid: g.uint16(),
  to: g.address(),
  id: g.maybe(() => g.bytes(32)),
  token: g.maybe(() => g.bytes(32)),
  closerNodes: g.bool() ? g.addresses() : [],
  error: g.bool() ? 0 : g.uint(),
  value: g.maybe(() => g.blob())
})

const genMessage = (g: Gen): Message =>
  g.bool() ? { _tag: "Request", request: genRequest(g) } : { _tag: "Response", response: genResponse(g) }

const genPeer = (g: Gen): Peer => ({ publicKey: g.bytes(32), relayAddresses: g.addresses(5) })

const genAnnounce = (g: Gen): Announce => ({
  peer: g.maybe(() => genPeer(g)),
  refresh: g.maybe(() => g.bytes(32)),
  signature: g.maybe(() => g.bytes(64)),
  bump: g.bool() ? 0 : g.uint()
})

const genLookupReply = (g: Gen): LookupReply => {
  const n = g.int(8)
  const peers: Array<Peer> = []
  for (let i = 0; i < n; i++) peers.push(genPeer(g))
  return { peers, bump: g.bool() ? 0 : g.uint() }
}

const genLookupRawReply = (g: Gen): LookupRawReply => {
  const l = genLookupReply(g)
  return { peers: l.peers.map((p) => E.encodeOrThrow(peer, p)), bump: l.bump }
}

const genMutableSignable = (g: Gen): MutableSignable => ({ seq: g.uint(), value: g.blob() })

const genMutablePut = (g: Gen): MutablePutRequest => ({
  publicKey: g.bytes(32),
  seq: g.uint(),
  value: g.blob(),
  signature: g.bytes(64)
})

const genMutableGet = (g: Gen): MutableGetResponse => ({ seq: g.uint(), value: g.blob(), signature: g.bytes(64) })

const genPlugin = (g: Gen): PluginRequest => ({
  plugin: g.string(),
  version: g.uint(),
  command: g.uint(),
  value: g.maybe(() => g.blob())
})

const genAddress = (g: Gen): HyperdhtAddress => ({ key: g.bytes(32), nodes: g.maybe(() => g.addresses(6)) })

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

const roundTrips = <A>(c: E.Codec<A>, gen: (g: Gen) => A, seed: number): void => {
  const g = new Gen(seed)
  for (let i = 0; i < CASES; i++) {
    const value = gen(g)
    const encoded = E.encode(c, value)
    if (Result.isFailure(encoded)) throw new Error(`case ${i}: ${encoded.failure.message}`)
    const bytes = encoded.success
    const decoded = E.decode(c, bytes, { exact: true })
    if (Result.isFailure(decoded)) throw new Error(`case ${i}: ${decoded.failure.message}`)
    expect(decoded.success).toEqual(value)
    // Every strict prefix must fail cleanly or decode to something (never throw);
    // trailing bytes are ignored by the default (non-exact) decode.
    const cut = g.int(bytes.length)
    expect(() => E.decode(c, bytes.subarray(0, cut))).not.toThrow()
    const padded = new Uint8Array(bytes.length + 3)
    padded.set(bytes)
    expect(E.decode(c, padded)).toEqual(decoded)
  }
}

/** Random bytes (and random mutations of valid encodings) never make a decoder throw. */
const neverThrows = <A>(c: E.Codec<A>, gen: (g: Gen) => A, seed: number): void => {
  const g = new Gen(seed)
  for (let i = 0; i < CASES; i++) {
    const noise = g.bytes(g.int(80))
    expect(() => E.decode(c, noise)).not.toThrow()
    const valid = E.encodeOrThrow(c, gen(g))
    const mutated = valid.slice()
    for (let k = 0; k < 3 && mutated.length > 0; k++) mutated[g.int(mutated.length)] = g.int(256)
    const r = E.decode(c, mutated)
    if (Result.isFailure(r)) expect(r.failure._tag).toBe("DecodeError")
  }
}

const cases: ReadonlyArray<[string, E.Codec<any>, (g: Gen) => unknown]> = [
  ["request", request, genRequest],
  ["response", response, genResponse],
  ["message", message, genMessage],
  ["peer", peer, genPeer],
  ["findPeerReply", findPeerReply, genPeer],
  ["announce", announce, genAnnounce],
  ["lookupRawReply", lookupRawReply, genLookupRawReply],
  ["lookupReply", lookupReply, genLookupReply],
  ["mutableSignable", mutableSignable, genMutableSignable],
  ["mutablePutRequest", mutablePutRequest, genMutablePut],
  ["mutableGetResponse", mutableGetResponse, genMutableGet],
  ["mutableGetRequest", mutableGetRequest, (g) => g.uint()],
  ["pluginRequest", pluginRequest, genPlugin],
  ["hyperdhtAddress", hyperdhtAddress, genAddress]
]

describe("decode(encode(x)) = x", () => {
  cases.forEach(([name, c, gen], i) => {
    it(`${name} (${CASES} cases)`, () => roundTrips(c, gen, 0x5eed0000 + i))
  })
})

describe("decoders never throw", () => {
  cases.forEach(([name, c, gen], i) => {
    it(`${name} on random and mutated bytes`, () => neverThrows(c, gen, 0xbad00000 + i))
  })

  it("message rejects an unknown type byte with BadValue", () => {
    for (const b0 of [0x00, 0x01, 0x02, 0x04, 0x12, 0x14, 0x23, 0xff]) {
      const r = decodeMessage(Uint8Array.of(b0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
      expect(Result.isFailure(r)).toBe(true)
      if (Result.isFailure(r)) {
        expect(r.failure.reason).toBe("BadValue")
        expect(r.failure.offset).toBe(0)
      }
    }
    // a request sent to the response codec (and vice versa) is rejected the same way
    const req = E.encodeOrThrow(request, genRequest(new Gen(1)))
    const asResponse = E.decode(response, req)
    expect(Result.isFailure(asResponse) && asResponse.failure.reason).toBe("BadValue")
    const res = E.encodeOrThrow(response, genResponse(new Gen(2)))
    const asRequest = E.decode(request, res)
    expect(Result.isFailure(asRequest) && asRequest.failure.reason).toBe("BadValue")
    expect(Result.isFailure(decodeMessage(new Uint8Array(0)))).toBe(true)
  })

  it("unknown flag bits are ignored", () => {
    const g = new Gen(7)
    for (let i = 0; i < 100; i++) {
      const req = genRequest(g)
      const b = E.encodeOrThrow(request, req)
      b[1] = b[1]! | 0x60 // bits 5 and 6 are not defined
      expect(E.decode(request, b)).toEqual(Result.succeed(req))
      const res = genResponse(g)
      const rb = E.encodeOrThrow(response, res)
      rb[1] = rb[1]! | 0x20
      expect(E.decode(response, rb)).toEqual(Result.succeed(res))
    }
  })
})

// ---------------------------------------------------------------------------
// Unrepresentable values give EncodeError, never a throw
// ---------------------------------------------------------------------------

const expectEncodeError = <A>(c: E.Codec<A>, value: A): void => {
  let r: Result.Result<Uint8Array, E.EncodeError> | undefined
  expect(() => {
    r = E.encode(c, value)
  }).not.toThrow()
  expect(r !== undefined && Result.isFailure(r)).toBe(true)
  if (r !== undefined && Result.isFailure(r)) {
    expect(r.failure).toBeInstanceOf(E.EncodeError)
    expect(r.failure._tag).toBe("EncodeError")
  }
}

describe("encoders reject unrepresentable values", () => {
  const g = new Gen(42)
  const req = genRequest(g)
  const res = genResponse(g)
  const key = g.bytes(32)
  const sig = g.bytes(64)

  it("wrong-length keys, ids, tokens, targets and signatures", () => {
    expectEncodeError(request, { ...req, id: g.bytes(31) })
    expectEncodeError(request, { ...req, token: g.bytes(33) })
    expectEncodeError(request, { ...req, target: new Uint8Array(0) })
    expectEncodeError(response, { ...res, id: g.bytes(16) })
    expectEncodeError(peer, { publicKey: g.bytes(31), relayAddresses: [] })
    expectEncodeError(announce, { peer: null, refresh: g.bytes(31), signature: null, bump: 0 })
    expectEncodeError(announce, { peer: null, refresh: null, signature: g.bytes(63), bump: 0 })
    expectEncodeError(mutablePutRequest, { publicKey: g.bytes(33), seq: 1, value: g.bytes(3), signature: sig })
    expectEncodeError(mutablePutRequest, { publicKey: key, seq: 1, value: g.bytes(3), signature: g.bytes(32) })
    expectEncodeError(mutableGetResponse, { seq: 1, value: g.bytes(3), signature: g.bytes(65) })
    expectEncodeError(hyperdhtAddress, { key: g.bytes(20), nodes: null })
  })

  it("uints above 2^53-1 (and negative or fractional ones)", () => {
    const big = 2 ** 53
    expectEncodeError(request, { ...req, command: big })
    expectEncodeError(request, { ...req, command: -1 })
    expectEncodeError(request, { ...req, tid: 0x10000 })
    expectEncodeError(response, { ...res, error: big })
    expectEncodeError(response, { ...res, error: 1.5 })
    expectEncodeError(announce, { peer: null, refresh: null, signature: null, bump: big })
    expectEncodeError(announce, { peer: null, refresh: null, signature: null, bump: -5 })
    expectEncodeError(mutableSignable, { seq: big, value: new Uint8Array(0) })
    expectEncodeError(mutablePutRequest, { publicKey: key, seq: Number.MAX_VALUE, value: new Uint8Array(0), signature: sig })
    expectEncodeError(mutableGetRequest, big)
    expectEncodeError(lookupRawReply, { peers: [], bump: big })
    expectEncodeError(pluginRequest, { plugin: "x", version: big, command: 0, value: null })
    expectEncodeError(pluginRequest, { plugin: "x", version: 0, command: NaN, value: null })
  })

  it("bad IPv4 strings", () => {
    for (const host of ["256.1.1.1", "1.2.3", "1.2.3.4.5", "a.b.c.d", "", "1.2.3.-4", " 1.2.3.4", "::1"]) {
      expectEncodeError(request, { ...req, to: { host, port: 1 } })
      expectEncodeError(response, { ...res, closerNodes: [{ host: "1.2.3.4", port: 1 }, { host, port: 1 }] })
      expectEncodeError(peer, { publicKey: key, relayAddresses: [{ host, port: 1 }] })
      expectEncodeError(hyperdhtAddress, { key, nodes: [{ host, port: 1 }] })
    }
  })

  it("negative or out-of-range ports", () => {
    for (const port of [-1, 65536, 1.5, NaN]) {
      expectEncodeError(request, { ...req, to: { host: "1.2.3.4", port } })
      expectEncodeError(response, { ...res, to: { host: "1.2.3.4", port } })
      expectEncodeError(peer, { publicKey: key, relayAddresses: [{ host: "1.2.3.4", port }] })
    }
  })

  it("values of the wrong type", () => {
    expectEncodeError(request, null as unknown as Request)
    expectEncodeError(response, { ...res, value: "abc" as unknown as Uint8Array })
    expectEncodeError(message, { _tag: "Nope" } as unknown as Message)
    expectEncodeError(lookupRawReply, { peers: ["x" as unknown as Uint8Array], bump: 0 })
    expectEncodeError(pluginRequest, { plugin: 5 as unknown as string, version: 0, command: 0, value: null })
  })
})

// ---------------------------------------------------------------------------
// Signables, routing table and NAT sampler invariants
// ---------------------------------------------------------------------------

describe("signables", () => {
  const blake2b = noble.blake2b
  const ns = namespaces(blake2b)

  it("annSignable = ns || BLAKE2b-256(parts); rejects wrong-length parts", () => {
    const g = new Gen(99)
    for (let i = 0; i < 50; i++) {
      const [t, n, k] = [g.bytes(32), g.bytes(32), g.bytes(32)]
      const p = E.encodeOrThrow(peer, genPeer(g))
      const refresh = g.maybe(() => g.bytes(32))
      const parts = refresh === null ? [t, n, k, p] : [t, n, k, p, refresh]
      const concat = new Uint8Array(parts.reduce((a, b) => a + b.length, 0))
      parts.reduce((off, b) => (concat.set(b, off), off + b.length), 0)
      const s = annSignable(blake2b, t, n, k, p, refresh, ns.UNANNOUNCE)
      expect(Result.isSuccess(s)).toBe(true)
      if (Result.isSuccess(s)) {
        expect(s.success.length).toBe(64)
        expect(E.toHex(s.success)).toBe(E.toHex(ns.UNANNOUNCE) + E.toHex(blake2b(concat, 32)))
      }
    }
    expect(Result.isFailure(annSignable(blake2b, g.bytes(31), g.bytes(32), g.bytes(32), new Uint8Array(0), null, ns.ANNOUNCE))).toBe(true)
    expect(Result.isFailure(annSignable(blake2b, g.bytes(32), g.bytes(32), g.bytes(32), new Uint8Array(0), g.bytes(3), ns.ANNOUNCE))).toBe(true)
    expect(Result.isFailure(mutableSignable64(blake2b, -1, new Uint8Array(0)))).toBe(true)
  })
})

describe("routing table invariants", () => {
  it("rows stay sorted, capped at k, and closest() returns min(n, size) distinct nodes", () => {
    const g = new Gen(2024)
    const own = g.bytes(32)
    const table = new RoutingTable(own, { k: 4 })
    const inserted = new Map<string, Uint8Array>()
    for (let i = 0; i < 2000; i++) {
      const id = g.bytes(32)
      id[0] = own[0]! ^ (1 << g.int(8)) // crowd the first 8 rows so some fill up
      if (g.next() < 0.3) id[0] = own[0]!
      const r = table.add({ id })
      if (r === "added") inserted.set(E.toHex(id), id)
      if (r === "full") expect(table.rowNodes(table.row(id)).length).toBe(4)
      if (g.next() < 0.1 && inserted.size > 0) {
        const victim = [...inserted.values()][g.int(inserted.size)]!
        expect(table.remove(victim)).toBe(true)
        expect(table.remove(victim)).toBe(false)
        inserted.delete(E.toHex(victim))
      }
    }
    expect(table.size).toBe(inserted.size)
    for (const id of inserted.values()) expect(table.get(id)?.id).toBe(id)
    for (let row = 0; row < table.rowCount; row++) {
      const nodes = table.rowNodes(row)
      expect(nodes.length).toBeLessThanOrEqual(4)
      for (let j = 1; j < nodes.length; j++) {
        expect(Buffer.compare(nodes[j - 1]!.id.subarray(row >> 3), nodes[j]!.id.subarray(row >> 3))).toBe(-1)
      }
      for (const n of nodes) expect(table.row(n.id)).toBe(row)
    }
    for (let i = 0; i < 50; i++) {
      const n = g.int(40)
      const out = table.closest(g.bytes(32), n)
      expect(out.length).toBe(Math.min(n, table.size))
      expect(new Set(out.map((x) => E.toHex(x.id))).size).toBe(out.length)
    }
    expect(table.toArray().length).toBe(table.size)
    // updating an existing id replaces it without growing
    const some = [...inserted.values()][0]!
    expect(table.add({ id: some })).toBe("updated")
    expect(table.size).toBe(inserted.size)
    // random() covers the whole table deterministically from its source
    const seen = new Set<string>()
    for (let i = 0; i < table.size; i++) seen.add(E.toHex(table.random(() => i / table.size)!.id))
    expect(seen.size).toBe(table.size)
    expect(new RoutingTable(own).random(() => 0.5)).toBeNull()
  })

  it("closest ids computed from addresses match nodeId", () => {
    const own = nodeId(noble.blake2b, "1.1.1.1", 1)!
    const table = new RoutingTable<{ id: Uint8Array; host: string; port: number }>(own)
    const g = new Gen(5)
    for (let i = 0; i < 200; i++) {
      const a = g.address()
      table.add({ id: nodeId(noble.blake2b, a.host, a.port)!, ...a })
    }
    for (const n of table.closest(g.bytes(32))) expect(nodeId(noble.blake2b, n.host, n.port)).toEqual(n.id)
  })
})

describe("NAT sampler invariants", () => {
  it("a consistent address wins; size caps at 16; threshold follows size", () => {
    const s = new NatSampler()
    for (let i = 1; i <= 40; i++) {
      s.add("7.7.7.7", 4000)
      expect(s.size).toBe(Math.min(i, 16))
      const n = s.size
      expect(s.threshold).toBe(n - (n < 4 ? 0 : n < 8 ? 1 : n < 12 ? 2 : 3))
      expect([s.host, s.port]).toEqual(["7.7.7.7", 4000])
    }
    // a random-port NAT: same host, new port every time
    const r = new NatSampler()
    for (let i = 0; i < 40; i++) r.add("8.8.8.8", 1000 + i)
    expect([r.host, r.port]).toEqual(["8.8.8.8", 0])
    // nothing consistent at all
    const x = new NatSampler()
    for (let i = 0; i < 40; i++) x.add(`9.9.9.${i}`, 1000 + i)
    expect([x.host, x.port]).toEqual([null, 0])
  })
})
