/**
 * Byte-exact reproduction of the reference vectors for the connection-layer
 * codecs: hyperdht connect messages, UDX packets, secret-stream framing and
 * protomux / blind-relay frames. Every expected value comes from
 * test/vectors/connect.json or test/vectors/dht.json.
 */
import { readFileSync } from "node:fs"
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import * as Records from "../src/protocol/records.js"
import {
  type Codec,
  decode,
  encode,
  fromHex,
  type IPv4Address,
  type IPv6Address,
  parseIPv6,
  toHex
} from "../src/protocol/encoding.js"
import {
  handshake,
  type Handshake,
  holepunch,
  type Holepunch,
  HOLEPUNCH_PROBE,
  holepunchPayload,
  type HolepunchPayload,
  isHolepunchProbe,
  makeNoisePayload,
  noisePayload,
  type NoisePayload,
  type NoisePayloadInit
} from "../src/protocol/connect.js"
import {
  decodeUdxPacket,
  encodeUdxPacket,
  isUdxPacket,
  type SackBlock,
  UDX_HEADER_SIZE,
  UDX_SACK,
  udxPacketId,
  type UdxPacket,
  udxTypeNames
} from "../src/protocol/udx.js"
import {
  encodeFrame,
  encodeHeaderFrame,
  encodeUnorderedMessage,
  FrameParser,
  incrementCounter,
  parseHeaderMessage,
  parseUnorderedMessage,
  SECRETBOX_MAC_BYTES,
  SECRETSTREAM_ABYTES
} from "../src/protocol/secret-stream.js"
import {
  BLIND_RELAY_PAIR,
  BLIND_RELAY_PROTOCOL,
  decodeBlindRelayMessage,
  decodeProtomuxFrame,
  encodeProtomuxFrame,
  pair,
  type Pair,
  type ProtomuxFrame,
  unpair
} from "../src/protocol/blind-relay.js"

// ---------------------------------------------------------------------------
// Loading and helpers
// ---------------------------------------------------------------------------

type Json = any

const loadJson = (name: string): Json => JSON.parse(readFileSync(new URL(`./vectors/${name}`, import.meta.url), "utf8"))
const connectVectors: Json = loadJson("connect.json")
const dhtVectors: Json = loadJson("dht.json")

const hex = (s: string): Uint8Array => {
  const b = fromHex(s)
  if (b === null) throw new Error(`bad hex in vector: ${s.slice(0, 40)}`)
  return b
}
const hexOrNull = (s: string | null | undefined): Uint8Array | null => (s == null ? null : hex(s))

const ok = <A, E>(r: Result.Result<A, E>): A => {
  if (Result.isFailure(r)) throw new Error(`expected success, got ${String(r.failure)}`)
  return r.success
}

const encodeHex = <A>(c: Codec<A>, v: A): string => toHex(ok(encode(c, v)))

/** decode(hex) then encode must give the same bytes back. */
const expectReencodes = <A>(c: Codec<A>, h: string): A => {
  const v = ok(decode(c, hex(h), { exact: true }))
  expect(encodeHex(c, v)).toBe(h)
  return v
}

const v4 = (a: Json): IPv4Address => ({ host: a.host, port: a.port })
const v4OrNull = (a: Json): IPv4Address | null => (a == null ? null : v4(a))
const v4List = (a: Json): ReadonlyArray<IPv4Address> | null => (a == null ? null : a.map(v4))

/** The text form our decoder produces for an IPv6 host (8 uncompressed lower-case groups). */
const canonicalIPv6 = (host: string): string => {
  const g = parseIPv6(host)
  if (g === null) throw new Error(`bad IPv6 in vector: ${host}`)
  return g.map((x) => x.toString(16)).join(":")
}
const v6List = (a: Json): ReadonlyArray<IPv6Address> | null =>
  a == null ? null : a.map((x: Json) => ({ host: canonicalIPv6(x.host), port: x.port }))

/** Vector noisePayload input (reference encoder shape) -> our init type. */
const noiseInit = (v: Json): NoisePayloadInit => ({
  ...(v.version !== undefined ? { version: v.version } : {}),
  error: v.error,
  firewall: v.firewall,
  holepunch:
    v.holepunch == null
      ? null
      : {
        id: v.holepunch.id,
        relays: v.holepunch.relays.map((x: Json) => ({ relayAddress: v4(x.relayAddress), peerAddress: v4(x.peerAddress) }))
      },
  addresses4: v4List(v.addresses4),
  addresses6: v6List(v.addresses6),
  udx:
    v.udx == null
      ? null
      : {
        ...(v.udx.version !== undefined ? { version: v.udx.version } : {}),
        reusableSocket: v.udx.reusableSocket,
        id: v.udx.id,
        seq: v.udx.seq
      },
  secretStream: v.secretStream == null ? null : v.secretStream.version !== undefined ? { version: v.secretStream.version } : {},
  relayThrough:
    v.relayThrough == null
      ? null
      : {
        ...(v.relayThrough.version !== undefined ? { version: v.relayThrough.version } : {}),
        publicKey: hex(v.relayThrough.publicKey),
        token: hex(v.relayThrough.token)
      },
  relayAddresses: v4List(v.relayAddresses)
})

const hpPayload = (v: Json): HolepunchPayload => ({
  error: v.error,
  firewall: v.firewall,
  round: v.round,
  connected: v.connected,
  punching: v.punching,
  addresses: v4List(v.addresses),
  remoteAddress: v4OrNull(v.remoteAddress),
  token: hexOrNull(v.token),
  remoteToken: hexOrNull(v.remoteToken)
})

/** The reference decoder's noisePayload output as found in the vectors -> our decoded type. */
const noiseDecoded = (v: Json): NoisePayload => ({
  version: v.version,
  error: v.error,
  firewall: v.firewall,
  holepunch:
    v.holepunch == null
      ? null
      : {
        id: v.holepunch.id,
        relays: v.holepunch.relays.map((x: Json) => ({ relayAddress: v4(x.relayAddress), peerAddress: v4(x.peerAddress) }))
      },
  addresses4: v4List(v.addresses4) ?? [],
  addresses6: v6List(v.addresses6) ?? [],
  udx: v.udx,
  secretStream: v.secretStream,
  relayThrough:
    v.relayThrough == null
      ? null
      : {
        version: v.relayThrough.version,
        flags: v.relayThrough.flags ?? 0,
        publicKey: hex(v.relayThrough.publicKey),
        token: hex(v.relayThrough.token)
      },
  relayAddresses: v4List(v.relayAddresses)
})

const peerRecord = Records.peer

const udxOk = (buf: Uint8Array): UdxPacket => {
  const r = decodeUdxPacket(buf)
  if (r._tag !== "UdxPacket") throw new Error(`expected a UDX packet, got ${r.reason}`)
  return r
}

const sacksOf = (v: Json): ReadonlyArray<SackBlock> =>
  v == null ? [] : v.map((b: Json) => [b[0], b[1]] as const)

// ---------------------------------------------------------------------------
// connect.json
// ---------------------------------------------------------------------------

describe("connect.json vectors", () => {
  it("encodings: all 16 noisePayload / handshake / holepunch / holepunchPayload / peer encodings", () => {
    const list: Array<Json> = connectVectors.encodings
    expect(list).toHaveLength(16)
    let checked = 0
    for (const e of list) {
      const name: string = e.name
      const v = e.value
      if (name.startsWith("noisePayload")) {
        const payload = makeNoisePayload(noiseInit(v))
        expect(encodeHex(noisePayload, payload), name).toBe(e.hex)
        const decoded = expectReencodes(noisePayload, e.hex)
        // Absent address lists decode as [], relayAddresses as null.
        expect(decoded, name).toEqual(payload)
      } else if (name.startsWith("handshake")) {
        const m: Handshake = {
          mode: v.mode,
          noise: hex(v.noise),
          peerAddress: v4OrNull(v.peerAddress),
          relayAddress: v4OrNull(v.relayAddress)
        }
        expect(encodeHex(handshake, m), name).toBe(e.hex)
        expect(expectReencodes(handshake, e.hex), name).toEqual(m)
      } else if (name.startsWith("holepunchPayload")) {
        const m = hpPayload(v)
        expect(encodeHex(holepunchPayload, m), name).toBe(e.hex)
        expect(expectReencodes(holepunchPayload, e.hex), name).toEqual(m)
      } else if (name.startsWith("holepunch")) {
        const m: Holepunch = {
          mode: v.mode,
          id: v.id,
          payload: hex(v.payload),
          peerAddress: v4OrNull(v.peerAddress)
        }
        expect(encodeHex(holepunch, m), name).toBe(e.hex)
        expect(expectReencodes(holepunch, e.hex), name).toEqual(m)
      } else if (name.startsWith("peer record")) {
        const m: Records.Peer = { publicKey: hex(v.publicKey), relayAddresses: v.relayAddresses.map(v4) }
        expect(encodeHex(peerRecord, m), name).toBe(e.hex)
        expect(expectReencodes(peerRecord, e.hex), name).toEqual(m)
      } else {
        throw new Error(`unexpected encodings entry: ${name}`)
      }
      checked++
    }
    expect(checked).toBe(16)
  })

  it("noiseIK: payload plaintexts encode from the inputs and decode to the reference decoder's output", () => {
    const n = connectVectors.noiseIK
    expect(encodeHex(noisePayload, makeNoisePayload(noiseInit(n.payload1Decoded)))).toBe(n.payload1Plain)
    expect(encodeHex(noisePayload, makeNoisePayload(noiseInit(n.payload2Decoded)))).toBe(n.payload2Plain)
    expect(expectReencodes(noisePayload, n.payload1Plain)).toEqual(noiseDecoded(n.responderDecodedPayload1))
    expect(expectReencodes(noisePayload, n.payload2Plain)).toEqual(noiseDecoded(n.initiatorDecodedPayload2))
  })

  it("securePayload: the plaintext decodes to the reference's decrypted value and re-encodes", () => {
    const s = connectVectors.securePayload
    const expected = hpPayload(s.decryptedByReference)
    expect(expectReencodes(holepunchPayload, s.plaintext)).toEqual(expected)
    expect(encodeHex(holepunchPayload, expected)).toBe(s.plaintext)
  })

  it("dhtRpcEnvelopes: the carried handshake / holepunch values decode and re-encode byte for byte", () => {
    const e = connectVectors.dhtRpcEnvelopes
    const n = connectVectors.noiseIK
    const req = expectReencodes(handshake, e.peerHandshakeRequestFromClient.value)
    expect(toHex(req.noise)).toBe(n.message1)
    expect(req.peerAddress).toBeNull()
    const fwd = expectReencodes(handshake, e.peerHandshakeRelayFromRelay.value)
    expect(toHex(fwd.noise)).toBe(n.message1)
    expect(fwd.peerAddress).not.toBeNull()
    expect(fwd.mode).not.toBe(req.mode)
    const reply = expectReencodes(handshake, e.peerHandshakeReplyToClient.value)
    expect(toHex(reply.noise)).toBe(n.message2)
    expect(reply.peerAddress).not.toBeNull()
    const hp = expectReencodes(holepunch, e.peerHolepunchRequestFromClient.value)
    expect(hp.peerAddress).not.toBeNull()
    // Each value is also the tail of its datagram.
    for (const k of Object.keys(e)) expect(e[k].wire.endsWith(e[k].value), k).toBe(true)
  })

  it("blindRelay: every protomux frame decodes and re-encodes; pair/unpair message encodings", () => {
    const b = connectVectors.blindRelay
    const frames: Array<Json> = b.frames
    expect(frames.length).toBeGreaterThan(0)
    const results: Array<Json> = b.pairResults
    let opens = 0
    let pairs = 0
    for (const f of frames) {
      const frame: ProtomuxFrame = ok(decodeProtomuxFrame(hex(f.hex)))
      expect(toHex(ok(encodeProtomuxFrame(frame))), `${f.from} -> ${f.to}`).toBe(f.hex)
      if (frame._tag === "Open") {
        opens++
        expect(frame.protocol).toBe(BLIND_RELAY_PROTOCOL)
        expect(frame.id === null ? null : toHex(frame.id)).toBe(b.relayPublicKey)
        expect(frame.handshake.length).toBe(0)
        expect(frame.localId).toBeGreaterThanOrEqual(1)
      } else if (frame._tag === "Message") {
        pairs++
        expect(frame.type).toBe(BLIND_RELAY_PAIR)
        const m = ok(decodeBlindRelayMessage(frame.type, frame.payload))
        if (m._tag !== "Pair") throw new Error("expected a pair message")
        const p: Pair = m.pair
        expect(toHex(p.token)).toBe(b.token)
        expect(p.seq).toBe(0)
        expect(encodeHex(pair, p)).toBe(toHex(frame.payload))
        const from: string = f.from
        const to: string = f.to
        if (from === "initiatorPeer") {
          expect(p.isInitiator).toBe(true)
          expect(p.id).toBe(b.initiatorRawStreamId)
        } else if (from === "responderPeer") {
          expect(p.isInitiator).toBe(false)
          expect(p.id).toBe(b.responderRawStreamId)
        } else {
          // A relay answer: its id is the relay-side stream for that peer.
          const who = to === "initiatorPeer" ? "initiator" : "responder"
          expect(p.isInitiator).toBe(who === "initiator")
          const res = results.find((x) => x.who === who)
          expect(res).toBeDefined()
          expect(p.id).toBe(res.remoteId)
        }
      } else {
        throw new Error(`unexpected frame ${frame._tag}`)
      }
    }
    expect(opens).toBe(4)
    expect(pairs).toBe(4)

    const enc = b.messageEncodings
    const token = hex(b.token)
    expect(encodeHex(pair, { isInitiator: true, token, id: b.initiatorRawStreamId, seq: 0 })).toBe(enc.pairInitiator)
    expect(encodeHex(pair, { isInitiator: false, token, id: b.responderRawStreamId, seq: 0 })).toBe(enc.pairResponder)
    expect(encodeHex(unpair, { token })).toBe(enc.unpair)
    expect(expectReencodes(pair, enc.pairInitiator)).toEqual({ isInitiator: true, token, id: b.initiatorRawStreamId, seq: 0 })
    expect(expectReencodes(pair, enc.pairResponder)).toEqual({ isInitiator: false, token, id: b.responderRawStreamId, seq: 0 })
    expect(expectReencodes(unpair, enc.unpair)).toEqual({ token })
  })

  it("udxPackets: captured packets decode to their fields and re-encode byte for byte", () => {
    const u = connectVectors.udxPackets
    let full = 0
    for (const name of Object.keys(u)) {
      const p = u[name]
      if (p === null || typeof p !== "object" || Array.isArray(p) || p.fields === undefined) continue
      const f = p.fields
      const expectFields = (d: UdxPacket): void => {
        expect(d.type, name).toBe(f.type)
        expect(udxTypeNames(d.type), name).toEqual(f.flags)
        expect(d.dataOffset, name).toBe(f.dataOffset)
        expect(d.id, name).toBe(f.id)
        expect(d.rwnd, name).toBe(f.rwnd)
        expect(d.seq, name).toBe(f.seq)
        expect(d.ack, name).toBe(f.ack)
        expect(d.sacks, name).toEqual(sacksOf(f.sacks))
      }
      const sacks = sacksOf(f.sacks)
      const header = { type: f.type, dataOffset: f.dataOffset, id: f.id, rwnd: f.rwnd, seq: f.seq, ack: f.ack }
      if (typeof p.hex === "string") {
        full++
        const bytes = hex(p.hex)
        expect(bytes.length, name).toBe(p.totalLength)
        expect(isUdxPacket(bytes), name).toBe(true)
        expect(udxPacketId(bytes), name).toBe(f.id)
        const d = udxOk(bytes)
        expectFields(d)
        const payload = (f.type & UDX_SACK) !== 0 ? new Uint8Array(0) : bytes.subarray(UDX_HEADER_SIZE + f.dataOffset)
        expect(toHex(d.payload), name).toBe(toHex(payload))
        expect(toHex(ok(encodeUdxPacket({ ...header, sacks, payload }))), name).toBe(p.hex)
      } else {
        // Only the header is given (fullDataPacket, mtuProbe): rebuild a packet of the captured size.
        expect(typeof p.headerHex, name).toBe("string")
        const payload = new Uint8Array(p.totalLength - UDX_HEADER_SIZE - f.dataOffset).fill(0x61)
        const bytes = ok(encodeUdxPacket({ ...header, payload }))
        expect(bytes.length, name).toBe(p.totalLength)
        expect(toHex(bytes.subarray(0, UDX_HEADER_SIZE)), name).toBe(p.headerHex)
        const d = udxOk(bytes)
        expectFields(d)
        expect(d.payload.length, name).toBe(payload.length)
        // Padding (doff) bytes are zero.
        expect(bytes.subarray(UDX_HEADER_SIZE, UDX_HEADER_SIZE + f.dataOffset).every((x) => x === 0), name).toBe(true)
      }
    }
    expect(full).toBe(9)

    // The loss-recovery trace: ACK/SACK sizes follow from the block counts.
    for (const t of u.lossRecoveryTrace as Array<Json>) {
      if (t.flags.includes("DATA")) continue
      const sacks = sacksOf(t.sacks)
      const type = t.flags.includes("SACK") ? UDX_SACK : 0
      const bytes = ok(encodeUdxPacket({ type, id: 1, rwnd: 0, seq: t.seq, ack: t.ack, sacks }))
      expect(bytes.length).toBe(t.size)
      expect(udxOk(bytes).sacks).toEqual(sacks)
    }

    // Datagrams the reference delivered to the socket handler instead of a stream.
    const non: Array<string> = u.nonUdxDatagramsDeliveredToSocket
    expect(non.length).toBeGreaterThan(0)
    for (const h of non) {
      const bytes = hex(h)
      expect(isUdxPacket(bytes), h).toBe(false)
      const d = decodeUdxPacket(bytes)
      expect(d._tag, h).toBe("UdxDecodeError")
      if (d._tag === "UdxDecodeError") expect(d.reason, h).toBe("NotUdx")
    }
  })

  it("holepunchProbe: the probe is the vector's single byte and is classified as a probe, not UDX", () => {
    const probe = hex(connectVectors.holepunchProbe.hex)
    expect(toHex(HOLEPUNCH_PROBE)).toBe(connectVectors.holepunchProbe.hex)
    expect(isHolepunchProbe(probe)).toBe(true)
    expect(isUdxPacket(probe)).toBe(false)
  })

  it("secretStreamWire: header frame parse/encode and data frame length prefixes", () => {
    const s = connectVectors.secretStreamWire
    const parsed = s.headerFrameParsed

    // Header frame through the incremental parser.
    const parser = new FrameParser()
    const out = parser.push(hex(s.headerFrame))
    expect(out.error).toBeNull()
    expect(out.frames).toHaveLength(1)
    const body = out.frames[0]!
    expect(body.length).toBe(parsed.length)
    const h = ok(parseHeaderMessage(body))
    expect(toHex(h.streamId)).toBe(parsed.streamId)
    expect(toHex(h.streamId)).toBe(s.expectedStreamId)
    expect(toHex(h.header)).toBe(parsed.secretstreamHeader)
    expect(toHex(ok(encodeHeaderFrame({ streamId: hex(parsed.streamId), header: hex(parsed.secretstreamHeader) })))).toBe(
      s.headerFrame
    )

    // Data frames: u24le(plaintext + 17) || body.
    const frames: Array<Json> = s.frames
    const all: Array<string> = [s.headerFrame]
    for (const f of frames) {
      const wire = hex(f.frame)
      const r = new FrameParser().push(wire)
      expect(r.error).toBeNull()
      expect(r.frames).toHaveLength(1)
      const b = r.frames[0]!
      expect(b.length).toBe(hex(f.plaintext).length + SECRETSTREAM_ABYTES)
      expect(toHex(ok(encodeFrame(b)))).toBe(f.frame)
      all.push(f.frame)
    }
    // The whole initiator byte stream in one chunk yields the same bodies.
    const stream = new FrameParser().push(hex(all.join("")))
    expect(stream.error).toBeNull()
    expect(stream.frames.map((x) => toHex(ok(encodeFrame(x))))).toEqual(all)

    // Unordered messages: counter(8) || mac(16) || ciphertext; counter incremented before each send.
    const un = s.unordered
    const counter = hex(un.initialCounterRandom)
    for (const m of un.messages as Array<Json>) {
      const msg = ok(parseUnorderedMessage(hex(m.wire)))
      expect(incrementCounter(counter)).toBe(true)
      expect(toHex(msg.counter)).toBe(toHex(counter))
      expect(msg.box.length).toBe(hex(m.plaintext).length + SECRETBOX_MAC_BYTES)
      expect(toHex(ok(encodeUnorderedMessage(msg)))).toBe(m.wire)
    }
  })
})

// ---------------------------------------------------------------------------
// dht.json
// ---------------------------------------------------------------------------

describe("dht.json hyperdht vectors", () => {
  const hd = dhtVectors.hyperdht

  it("handshakeMessages", () => {
    const list: Array<Json> = hd.handshakeMessages
    expect(list.length).toBeGreaterThan(0)
    for (const v of list) {
      const m: Handshake = {
        mode: v.mode,
        noise: hex(v.noiseHex),
        peerAddress: v4OrNull(v.peerAddress),
        relayAddress: v4OrNull(v.relayAddress)
      }
      expect(encodeHex(handshake, m), v.modeName).toBe(v.hex)
      expect(expectReencodes(handshake, v.hex), v.modeName).toEqual(m)
    }
  })

  it("holepunchMessages", () => {
    const list: Array<Json> = hd.holepunchMessages
    expect(list.length).toBeGreaterThan(0)
    for (const v of list) {
      const m: Holepunch = { mode: v.mode, id: v.id, payload: hex(v.payloadHex), peerAddress: v4OrNull(v.peerAddress) }
      expect(encodeHex(holepunch, m), v.modeName).toBe(v.hex)
      expect(expectReencodes(holepunch, v.hex), v.modeName).toEqual(m)
    }
  })

  it("noisePayload (all three, including the version-2 one)", () => {
    const list: Array<Json> = hd.noisePayload
    expect(list).toHaveLength(3)
    for (const v of list) {
      if (v.input !== undefined) {
        const payload = makeNoisePayload(noiseInit(v.input))
        expect(encodeHex(noisePayload, payload), v.description).toBe(v.hex)
        expect(expectReencodes(noisePayload, v.hex), v.description).toEqual(payload)
      } else {
        const decoded = ok(decode(noisePayload, hex(v.hex)))
        expect(decoded, v.description).toEqual(noiseDecoded(v.decoded))
        expect(encodeHex(noisePayload, decoded), v.description).toBe(v.hex)
      }
    }
  })

  it("holepunchPayload.plaintextHex", () => {
    const v = hd.holepunchPayload
    const m = hpPayload(v.input)
    expect(encodeHex(holepunchPayload, m)).toBe(v.plaintextHex)
    expect(expectReencodes(holepunchPayload, v.plaintextHex)).toEqual(m)
  })
})
