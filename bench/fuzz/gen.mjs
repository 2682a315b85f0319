// Datagram generators for the live fuzzer (bench/fuzz.mjs, test/fuzz-live.test.ts).
//
// Every message kind the node speaks starts from a valid encoding made with
// the project's codecs (`lib`: the protocol modules, from dist/ or src/) or
// from a real message in test/vectors/, and is then sent as is or mutated:
// bit flips, truncation, extension, field swaps, random length prefixes,
// byte insertion / deletion, splices with the corpus. Pure random bytes are
// a kind of their own. All randomness comes from one seeded xorshift32.
import { readFileSync } from "node:fs"

// ---- seeded randomness ------------------------------------------------------------------

export const makeRng = (seed) => {
  let x = seed >>> 0 || 0x9e3779b9
  const next = () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x
  }
  const rng = {
    u32: next,
    int: (n) => (n <= 0 ? 0 : next() % n),
    chance: (p) => next() / 0x100000000 < p,
    pick: (a) => a[next() % a.length],
    bytes: (n) => {
      const b = Buffer.allocUnsafe(n)
      let i = 0
      for (; i + 4 <= n; i += 4) b.writeUInt32LE(next(), i)
      for (; i < n; i++) b[i] = next() & 0xff
      return b
    }
  }
  return rng
}

// ---- corpus: every hex string of the reference vectors ----------------------------------

const collectHex = (x, out) => {
  if (typeof x === "string") {
    if (x.length >= 4 && x.length % 2 === 0 && /^[0-9a-f]+$/.test(x)) out.push(Buffer.from(x, "hex"))
  } else if (Array.isArray(x)) for (const v of x) collectHex(v, out)
  else if (x !== null && typeof x === "object") for (const v of Object.values(x)) collectHex(v, out)
}

export const loadCorpus = () => {
  const out = []
  for (const name of ["dht", "connect"]) {
    const json = JSON.parse(readFileSync(new URL(`../../test/vectors/${name}.json`, import.meta.url), "utf8"))
    collectHex(json, out)
  }
  return out
}

// ---- mutations --------------------------------------------------------------------------

export const MUTATIONS = ["bitflip", "truncate", "extend", "swap", "length", "insdel", "splice"]

/** One mutation of `base` (a copy); returns [bytes, mutation name]. */
export const mutate = (rng, base, corpus) => {
  const m = MUTATIONS[rng.int(MUTATIONS.length)]
  const b = Buffer.from(base)
  switch (m) {
    case "bitflip": {
      const flips = 1 + rng.int(8)
      for (let i = 0; i < flips && b.length > 0; i++) b[rng.int(b.length)] ^= 1 << rng.int(8)
      return [b, m]
    }
    case "truncate":
      return [b.subarray(0, rng.int(b.length + 1)), m]
    case "extend":
      return [Buffer.concat([b, rng.bytes(1 + rng.int(rng.chance(0.1) ? 1500 : 64))]), m]
    case "swap": {
      // swap two non-overlapping ranges of the same length (field swaps: ids, tokens, addresses)
      if (b.length < 4) return [b, m]
      const len = 1 + rng.int(Math.min(32, b.length >> 1))
      const p = rng.int(b.length - 2 * len + 1)
      const q = p + len + rng.int(b.length - p - 2 * len + 1)
      const tmp = Buffer.from(b.subarray(p, p + len))
      b.copy(b, p, q, q + len)
      tmp.copy(b, q)
      return [b, m]
    }
    case "length": {
      // a random length / varint prefix at a random position
      if (b.length === 0) return [b, m]
      const at = rng.int(b.length)
      const v = rng.pick([[0x00], [0x01], [0x7f], [0xfc], [0xfd, rng.int(256), rng.int(256)], [0xfe, 0xff, 0xff, 0xff, 0x7f], [0xff, ...rng.bytes(8)], [rng.int(256)]])
      for (let i = 0; i < v.length && at + i < b.length; i++) b[at + i] = v[i]
      return [b, m]
    }
    case "insdel": {
      const at = rng.int(b.length + 1)
      if (rng.chance(0.5) && b.length > 0) return [Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.int(8))]), m]
      return [Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(8)), b.subarray(at)]), m]
    }
    default: {
      const other = corpus[rng.int(corpus.length)]
      return [Buffer.concat([b.subarray(0, rng.int(b.length + 1)), other.subarray(rng.int(other.length + 1))]), m]
    }
  }
}

// ---- valid encodings of every kind --------------------------------------------------------

const unwrap = (r, what) => {
  if (r._tag === "Success") return Buffer.from(r.success)
  throw new Error(`encoding ${what} failed: ${String(r.failure?.message ?? r.failure)}`)
}

/**
 * Builders of valid messages. `ctx` holds what the run knows: the target's
 * addresses, the latest round-trip token, the keys and targets of the stored
 * records and of the server, valid Noise messages 1.
 */
export const makeBuilders = (lib, rng, ctx) => {
  const { Rpc, Records, Connect, Udx, E } = lib
  const enc = (codec, v, what) => unwrap(E.encode(codec, v), what)
  const addr = () =>
    rng.chance(0.7) ? { host: "127.0.0.1", port: 1 + rng.int(65535) } : { host: `${1 + rng.int(254)}.${rng.int(256)}.${rng.int(256)}.${rng.int(256)}`, port: 1 + rng.int(65535) }
  const addrs = (n) => Array.from({ length: n }, addr)
  const target = () => (rng.chance(0.5) && ctx.targets.length > 0 ? rng.pick(ctx.targets) : rng.bytes(32))
  const token = () => (ctx.token !== null && rng.chance(0.7) ? ctx.token : rng.chance(0.5) ? rng.bytes(32) : null)
  const peer = () => ({ publicKey: rng.bytes(32), relayAddresses: addrs(rng.int(4)) })

  const request = (to, internal, command, t, value, withToken = true) =>
    unwrap(
      Rpc.encodeRequest({
        tid: rng.int(65536),
        to,
        id: rng.chance(0.3) ? rng.bytes(32) : null,
        token: withToken ? token() : null,
        internal,
        command,
        target: t,
        value
      }),
      "request"
    )

  /** Valid values of the HyperDHT commands (requests), by command. */
  const appValue = {
    FIND_PEER: () => null,
    LOOKUP: () => null,
    ANNOUNCE: () =>
      enc(Records.announce, { peer: peer(), refresh: rng.chance(0.2) ? rng.bytes(32) : null, signature: rng.bytes(64), bump: rng.chance(0.2) ? rng.int(1000) : 0 }, "announce"),
    UNANNOUNCE: () => enc(Records.announce, { peer: peer(), refresh: null, signature: rng.bytes(64), bump: 0 }, "unannounce"),
    MUTABLE_PUT: () =>
      enc(Records.mutablePutRequest, { publicKey: rng.chance(0.5) ? ctx.mutableKey : rng.bytes(32), seq: rng.int(5), value: rng.bytes(rng.int(200)), signature: rng.bytes(64) }, "mutablePut"),
    MUTABLE_GET: () => enc(Records.mutableGetRequest, rng.int(4), "mutableGet"),
    IMMUTABLE_PUT: () => rng.bytes(1 + rng.int(300)),
    IMMUTABLE_GET: () => null,
    PEER_HANDSHAKE: () =>
      enc(
        Connect.handshake,
        {
          mode: rng.chance(0.8) ? rng.int(5) : rng.int(100_000),
          noise: rng.chance(0.6) && ctx.msg1s.length > 0 ? rng.pick(ctx.msg1s) : rng.bytes(rng.int(200)),
          peerAddress: rng.chance(0.4) ? addr() : null,
          relayAddress: rng.chance(0.3) ? addr() : null
        },
        "handshake"
      ),
    PEER_HOLEPUNCH: () =>
      enc(
        Connect.holepunch,
        { mode: rng.int(6), id: rng.int(4), payload: rng.bytes(24 + rng.int(120)), peerAddress: rng.chance(0.4) ? addr() : null },
        "holepunch"
      )
  }
  /** A target that makes the command reach its handler (the stored records, the server). */
  const appTarget = {
    PEER_HANDSHAKE: () => (rng.chance(0.8) ? ctx.serverTarget : rng.bytes(32)),
    PEER_HOLEPUNCH: () => (rng.chance(0.8) ? ctx.serverTarget : rng.bytes(32)),
    MUTABLE_PUT: () => (rng.chance(0.6) ? ctx.mutableTarget : target()),
    MUTABLE_GET: () => (rng.chance(0.6) ? ctx.mutableTarget : target()),
    IMMUTABLE_GET: () => (rng.chance(0.6) ? ctx.immutableTarget : target())
  }

  const internalValue = {
    PING: () => null,
    PING_NAT: () => {
      // the port to answer to: one of the fuzzer's own (PING_NAT answers to it, spec §5)
      const v = Buffer.alloc(2)
      v.writeUInt16LE(rng.pick(ctx.fuzzerPorts))
      return v
    },
    FIND_NODE: () => null,
    DOWN_HINT: () => enc(E.ipv4Address, rng.chance(0.5) && ctx.honest.length > 0 ? rng.pick(ctx.honest) : addr(), "downHint"),
    DELAYED_PING: () => {
      const v = Buffer.alloc(4)
      v.writeUInt32LE(rng.int(3000))
      return v
    }
  }

  const req = {}
  for (const [name, id] of Object.entries(Rpc.InternalCommand)) {
    const value = internalValue[name]
    if (value === undefined) continue
    req[name] = (to) => request(to, true, id, name === "FIND_NODE" || rng.chance(0.3) ? rng.bytes(32) : null, value())
  }
  for (const [name, value] of Object.entries(appValue)) {
    const id = Records.Command[name]
    req[name] = (to) => {
      let v = value()
      if (name === "IMMUTABLE_PUT") {
        // a valid put: target = hash(value) (stored when the token is good)
        return request(to, false, id, rng.chance(0.8) ? ctx.hash(v) : target(), v)
      }
      return request(to, false, id, (appTarget[name] ?? target)(), v)
    }
  }

  /** Reply values of each command, as a node would send them. */
  const replyValue = () => {
    switch (rng.int(7)) {
      case 0:
        return null
      case 1:
        return enc(Records.lookupReply, { peers: Array.from({ length: rng.int(4) }, peer), bump: rng.int(3) }, "lookupReply")
      case 2:
        return enc(Records.mutableGetResponse, { seq: rng.int(10), value: rng.bytes(rng.int(100)), signature: rng.bytes(64) }, "mutableGetResponse")
      case 3:
        return enc(Records.peer, peer(), "findPeerReply")
      case 4:
        return enc(
          Connect.handshake,
          { mode: 4, noise: rng.bytes(48 + rng.int(100)), peerAddress: rng.chance(0.5) ? addr() : null, relayAddress: null },
          "handshakeReply"
        )
      case 5:
        return enc(Connect.holepunch, { mode: 4, id: rng.int(4), payload: rng.bytes(24 + rng.int(100)), peerAddress: null }, "holepunchReply")
      default:
        return rng.bytes(rng.int(300))
    }
  }
  const response = (to, tid, id) =>
    unwrap(
      Rpc.encodeResponse({
        tid,
        to,
        id,
        token: rng.chance(0.5) ? rng.bytes(32) : null,
        closerNodes: addrs(rng.int(rng.chance(0.1) ? 40 : 8)),
        error: rng.chance(0.8) ? 0 : rng.int(20),
        value: replyValue()
      }),
      "response"
    )

  const udx = (id, { type, seq, ack, payload }) => {
    const t = type ?? rng.int(64)
    const sack = (t & Udx.UDX_SACK) !== 0
    return unwrap(
      Udx.encodeUdxPacket({
        type: t,
        id: id >>> 0,
        rwnd: rng.chance(0.8) ? 4 * 1024 * 1024 : rng.u32(),
        seq: seq ?? rng.u32(),
        ack: ack ?? rng.u32(),
        ...(sack ? { sacks: Array.from({ length: rng.int(6) }, () => [rng.u32(), rng.u32()]) } : { payload: payload ?? rng.bytes(rng.int(1200)) })
      }),
      "udx"
    )
  }

  return { req, response, udx, replyValue }
}

/** A secret-stream frame (uint24 length + body) as the peer could send it: right length, wrong bytes. */
export const secretStreamFrame = (rng, corpus) => {
  const body = rng.chance(0.5) ? rng.bytes(17 + rng.int(1100)) : Buffer.from(corpus[rng.int(corpus.length)].subarray(0, 1100))
  const len = rng.chance(0.85) ? body.length : rng.pick([0, 1, 16, 17, 0xffffff, rng.int(0x1000000)])
  const h = Buffer.from([len & 0xff, (len >>> 8) & 0xff, len >>> 16])
  return Buffer.concat([h, body])
}

/** An unordered secret-stream message (8-byte counter + secretbox) with random bytes. */
export const unorderedMessage = (rng) => rng.bytes(rng.chance(0.1) ? rng.int(24) : 24 + rng.int(1000))
