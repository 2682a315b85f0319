/**
 * Interop of our protomux and blind-relay cores with the reference packages
 * (`protomux` 3.12.1, `blind-relay` 1.6.1). Each relay connection is a
 * secret-stream pair over an in-memory duplex pair: the reference
 * `@hyperswarm/secret-stream` on one end, our `NoiseSecretStream` (carrying
 * our protomux core) on the other, so every protomux frame is one encrypted
 * message as on a real relay connection.
 *
 * - our client pairs through the reference relay server (next to a
 *   reference client), and the reference clients pair through our relay
 *   server; the plaintext frames on our side are compared byte for byte with
 *   the blindRelay vector, and the stream ids each side learns are checked;
 * - our relay server backed by `UdxRelay` on a real UDP socket carries
 *   udx-native streams end to end (data both ways, then DESTROY);
 * - our protomux and the reference's exchange batches, rejects and closes.
 */
import NoiseSecretStreamRef from "@hyperswarm/secret-stream"
import c from "compact-encoding"
import UDX from "udx-native"
import { Result } from "effect"
import dgram from "node:dgram"
import { createRequire } from "node:module"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import {
  BlindRelayClient,
  BlindRelayServer,
  type RelayPairing,
  UdxRelay,
  udxRelayHooks
} from "../src/actors/session/blind-relay.js"
import { Protomux } from "../src/actors/session/protomux.js"
import { NoiseSecretStream } from "../src/actors/session/secret-stream-node.js"
import { dhtNamespaces } from "../src/layers/crypto/derive.js"
import * as Noise from "../src/layers/crypto/noise.js"
import type { CryptoImpl } from "../src/layers/crypto/types.js"
import { toHex } from "../src/protocol/encoding.js"
import { cryptoImpls } from "./support/impls.js"
import { duplexPair } from "./support/secret-stream-pipe.js"
import { hex, loadVectors, utf8 } from "./support/vectors.js"

// the reference packages ship no typings: load them as plain CommonJS
const require = createRequire(import.meta.url)
const relayRef: any = require("blind-relay")
const ProtomuxRef: any = require("protomux")

const BR = loadVectors("connect").blindRelay
const RELAY_PK = Buffer.from(hex(BR.relayPublicKey))
const TOKEN = Buffer.from(hex(BR.token))
const ID_I: number = BR.initiatorRawStreamId
const ID_R: number = BR.responderRawStreamId
const frameHex = (i: number): string => BR.frames[i].hex

let crypto: CryptoImpl
beforeAll(async () => {
  const impls = await cryptoImpls()
  crypto = impls.find((x) => x.name === "fast") ?? impls[0]!
})

const cleanup: Array<() => void | Promise<void>> = []
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!()
})

const unwrap = <A, E>(r: Result.Result<A, E>): A => {
  if (Result.isFailure(r)) throw new Error(`unexpected failure: ${String(r.failure)}`)
  return r.success
}

const waitFor = async (cond: () => boolean, what: string, ms = 5000): Promise<void> => {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise<void>((r) => setTimeout(r, 2))
  }
}

// ---------------------------------------------------------------------------
// Connections: a secret-stream pair with hyperdht-mode keys from our Noise IK
// ---------------------------------------------------------------------------

const handshakeKeys = () => {
  const prologue = dhtNamespaces(crypto).PEER_HANDSHAKE
  const clientKp = crypto.keyPair()!
  const serverKp = crypto.keyPair()!
  const ini = Noise.initiator(crypto, { staticKeyPair: clientKp, remoteStaticKey: serverKp.publicKey, prologue })
  const res = Noise.responder(crypto, { staticKeyPair: serverKp, prologue })
  unwrap(Noise.readMessage1(res, unwrap(Noise.writeMessage1(ini, new Uint8Array(0)))))
  const m2 = unwrap(Noise.writeMessage2(res, new Uint8Array(0)))
  const ci = unwrap(Noise.readMessage2(ini, m2.message)).split
  const si = m2.split
  const b = (u: Uint8Array) => Buffer.from(u)
  return {
    client: { tx: b(ci.tx), rx: b(ci.rx), hash: b(ci.handshakeHash), publicKey: b(clientKp.publicKey), remotePublicKey: b(ci.remotePublicKey) },
    server: { tx: b(si.tx), rx: b(si.rx), hash: b(si.handshakeHash), publicKey: b(serverKp.publicKey), remotePublicKey: b(si.remotePublicKey) }
  }
}

/** Our protomux over our secret stream, logging plaintext frames both ways. */
const ourMux = (ss: NoiseSecretStream) => {
  const sent: Array<string> = []
  const received: Array<string> = []
  const mux = new Protomux({
    send: (f) => {
      sent.push(toHex(f))
      ss.write(f)
    },
    onError: () => ss.destroy()
  })
  ss.on("data", (d: Buffer) => {
    received.push(toHex(d))
    mux.onMessage(d)
  })
  ss.on("close", () => mux.destroy())
  return { mux, sent, received }
}

/**
 * One connection: `ours` says which end runs our secret stream + protomux
 * ("client" = the peer's end, "relay" = the relay's end, "none" = reference
 * on both ends). The client end is the secret-stream initiator.
 */
const connection = (ours: "client" | "relay" | "none") => {
  const keys = handshakeKeys()
  const [rawClient, rawRelay] = duplexPair()
  const make = (isClient: boolean, mine: boolean): any => {
    const raw = isClient ? rawClient : rawRelay
    const hs = isClient ? keys.client : keys.server
    const s = mine ? new NoiseSecretStream(isClient, raw, { handshake: hs, crypto }) : new NoiseSecretStreamRef(isClient, raw, { handshake: hs })
    s.on("error", () => {})
    return s
  }
  const client = make(true, ours === "client")
  const relay = make(false, ours === "relay")
  cleanup.push(() => {
    client.destroy()
    relay.destroy()
  })
  return { client, relay }
}

/** Log a reference secret stream's plaintext writes and reads. */
const tap = (s: any) => {
  const sent: Array<string> = []
  const received: Array<string> = []
  const write = s.write.bind(s)
  s.write = (b: Uint8Array, ...rest: Array<unknown>) => {
    sent.push(toHex(b))
    return write(b, ...rest)
  }
  s.on("data", (d: Buffer) => received.push(toHex(d)))
  return { sent, received }
}

// ---------------------------------------------------------------------------
// blind-relay
// ---------------------------------------------------------------------------

describe("blind-relay interop with the reference package", () => {
  it("our client pairs through the reference relay server (next to a reference client)", async () => {
    const udx = new UDX()
    const ids = [0x1000, 0x1001]
    const relayStreams: Array<any> = []
    const server = new relayRef.Server({
      createStream: (opts: unknown) => {
        const s = udx.createStream(ids.shift(), opts)
        s.on("error", () => {})
        relayStreams.push(s)
        return s
      }
    })
    cleanup.push(async () => {
      for (const s of relayStreams) s.destroy()
      await server.close()
    })

    // connection of the initiator: our client
    const ci = connection("client")
    const ourSide = ourMux(ci.client)
    const relayTapI = tap(ci.relay)
    server.accept(ci.relay, { id: RELAY_PK })
    const paired: Array<RelayPairing> = []
    const aborted: Array<string> = []
    const client = new BlindRelayClient(ourSide.mux, {
      now: () => Date.now(),
      id: RELAY_PK,
      events: { onPaired: (p) => paired.push(p), onAborted: (_t, _i, e) => aborted.push(e.message) }
    })
    unwrap(client.pair(true, TOKEN, ID_I))

    // connection of the responder: the reference client
    const cr = connection("none")
    const refClientTap = tap(cr.client)
    server.accept(cr.relay, { id: RELAY_PK })
    const refClient = relayRef.Client.from(cr.client, { id: RELAY_PK })
    const refIds: Array<number> = []
    refClient.pair(false, TOKEN, { id: ID_R }).on("data", (id: number) => refIds.push(id)).on("error", () => {})

    await waitFor(() => paired.length === 1 && refIds.length === 1, "both pairings")
    expect(aborted).toEqual([])
    expect(paired[0]).toEqual({ isInitiator: true, token: new Uint8Array(TOKEN), localStreamId: ID_I, remoteId: 0x1001 })
    expect(refIds).toEqual([0x1000])
    // plaintext frames, byte for byte as in the vector
    expect(ourSide.sent).toEqual([frameHex(2), frameHex(4)])
    expect(ourSide.received).toEqual([frameHex(0), frameHex(7)])
    expect(relayTapI.sent).toEqual([frameHex(0), frameHex(7)])
    expect(refClientTap.sent).toEqual([frameHex(3), frameHex(5)])
    expect(refClientTap.received).toEqual([frameHex(1), frameHex(6)])
    expect(server.stats.pairings.matched).toBe(1)
    expect(server.stats.streams.opened).toBe(2)

    // unpair: the reference relay releases the pair (destroys its streams)
    unwrap(client.unpair(TOKEN))
    await waitFor(() => server.stats.pairings.cancelled === 1, "the reference relay to cancel")
    await waitFor(() => relayStreams.every((s) => s.destroyed || s.destroying), "relay streams destroyed")
  })

  it("the reference clients pair through our relay server; frames match the vector", async () => {
    const released: Array<string> = []
    const server = new BlindRelayServer<string>({
      now: () => Date.now(),
      createStreams: () => [0x1000, 0x1001],
      releaseStreams: (ids) => released.push(ids.join(","))
    })
    const ci = connection("relay")
    const cr = connection("relay")
    const muxI = ourMux(ci.relay)
    const muxR = ourMux(cr.relay)
    expect(server.accept(muxI.mux, { id: RELAY_PK, info: "I" })).not.toBeNull()
    expect(server.accept(muxR.mux, { id: RELAY_PK, info: "R" })).not.toBeNull()

    const refIds: Record<string, Array<number>> = { I: [], R: [] }
    const clientI = relayRef.Client.from(ci.client, { id: RELAY_PK })
    clientI.pair(true, TOKEN, { id: ID_I }).on("data", (id: number) => refIds.I!.push(id)).on("error", () => {})
    await waitFor(() => muxI.received.length === 2, "the initiator's pair request")
    const clientR = relayRef.Client.from(cr.client, { id: RELAY_PK })
    clientR.pair(false, TOKEN, { id: ID_R }).on("data", (id: number) => refIds.R!.push(id)).on("error", () => {})

    await waitFor(() => refIds.I!.length === 1 && refIds.R!.length === 1, "both pairings")
    expect(refIds).toEqual({ I: [0x1001], R: [0x1000] })
    expect(muxI.sent).toEqual([frameHex(0), frameHex(7)])
    expect(muxR.sent).toEqual([frameHex(1), frameHex(6)])
    expect(muxI.received).toEqual([frameHex(2), frameHex(4)])
    expect(muxR.received).toEqual([frameHex(3), frameHex(5)])
    expect(server.stats()).toMatchObject({
      sessions: { accepted: 2, opened: 2, active: 2 },
      pairings: { requested: 2, matched: 1, active: 1, pending: 0 }
    })

    // the reference client's unpair releases the pair on our relay
    clientR.unpair(TOKEN)
    await waitFor(() => released.length === 1, "our relay to release the pair")
    expect(released).toEqual(["4096,4097"])
    expect(muxR.received.at(-1)).toBe("0101" + BR.messageEncodings.unpair)

    // the reference client ending its side closes our session
    await clientI.end()
    await waitFor(() => server.stats().sessions.closed === 1, "the session to close")
  })

  it("our relay (UdxRelay on a UDP socket) carries udx-native streams paired by reference clients", async () => {
    const sock = dgram.createSocket("udp4")
    await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()))
    const relayPort = sock.address().port
    let server: BlindRelayServer | null = null
    const udxRelay = new UdxRelay<dgram.Socket>({
      send: (s, to, d) => s.send(d, to.port, to.host),
      onClose: (id) => server!.streamClosed(id)
    })
    sock.on("message", (msg, rinfo) => {
      udxRelay.handle(sock, { from: { host: rinfo.address, port: rinfo.port }, data: new Uint8Array(msg.buffer, msg.byteOffset, msg.length) })
    })
    let nextId = 0x5000
    server = new BlindRelayServer({ now: () => Date.now(), ...udxRelayHooks<undefined, dgram.Socket>(udxRelay, () => nextId++) })

    const udx = new UDX()
    const peerSocket = (): any => {
      const s = udx.createSocket()
      s.bind(0, "127.0.0.1")
      return s
    }
    const sockA = peerSocket()
    const sockB = peerSocket()
    const streamA = udx.createStream(ID_I)
    const streamB = udx.createStream(ID_R)
    streamA.on("error", () => {})
    streamB.on("error", () => {})
    cleanup.push(async () => {
      streamA.destroy()
      streamB.destroy()
      await sockA.close()
      await sockB.close()
      sock.close()
      server!.close()
    })

    const ci = connection("relay")
    const cr = connection("relay")
    server.accept(ourMux(ci.relay).mux, { id: RELAY_PK })
    server.accept(ourMux(cr.relay).mux, { id: RELAY_PK })
    const got: Record<string, number> = {}
    relayRef.Client.from(ci.client, { id: RELAY_PK }).pair(true, TOKEN, streamA).on("data", (id: number) => (got.A = id))
    relayRef.Client.from(cr.client, { id: RELAY_PK }).pair(false, TOKEN, streamB).on("data", (id: number) => (got.B = id))
    await waitFor(() => got.A !== undefined && got.B !== undefined, "both pairings")
    expect(got).toEqual({ B: 0x5000, A: 0x5001 })

    // as hyperdht does: connect each stream to its relay-side stream at the relay's address
    streamA.connect(sockA, got.A, relayPort, "127.0.0.1")
    streamB.connect(sockB, got.B, relayPort, "127.0.0.1")
    const atB: Array<Buffer> = []
    const atA: Array<Buffer> = []
    streamB.on("data", (d: Buffer) => atB.push(d))
    streamA.on("data", (d: Buffer) => atA.push(d))
    const big = Buffer.alloc(200_000)
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff
    streamA.write(Buffer.from("hello through the relay"))
    streamA.write(big)
    streamB.write(Buffer.from("and back"))
    const total = (xs: Array<Buffer>) => xs.reduce((n, b) => n + b.length, 0)
    await waitFor(() => total(atB) === 23 + big.length && total(atA) === 8, "data both ways")
    expect(Buffer.concat(atB).equals(Buffer.concat([Buffer.from("hello through the relay"), big]))).toBe(true)
    expect(Buffer.concat(atA).toString()).toBe("and back")
    expect(udxRelay.get(0x5001)).toMatchObject({ remoteId: ID_I, remote: { host: "127.0.0.1", port: sockA.address().port } })
    expect(udxRelay.stats().forwarded).toBeGreaterThan(100)

    // A aborts: its DESTROY crosses the relay, which drops both relay streams and the pair
    const bClosed = new Promise<void>((r) => streamB.once("close", () => r()))
    streamA.destroy()
    await bClosed
    await waitFor(() => udxRelay.stats().streams === 0, "relay streams closed")
    expect(server.stats().pairings.active).toBe(0)
    expect(udxRelay.stats().destroyedByPeer).toBe(1)
  })
})

// ---------------------------------------------------------------------------
// protomux
// ---------------------------------------------------------------------------

describe("protomux interop with the reference package", () => {
  it("channels pair both ways; batches (cork) decode on both sides; close propagates", async () => {
    const conn = connection("client")
    const ours = ourMux(conn.client)
    const ref = ProtomuxRef.from(conn.relay)
    const atRef: Array<string> = []
    const atOurs: Array<string> = []
    const refEvents: Array<string> = []
    const refCh = ref.createChannel({
      protocol: "interop",
      id: Buffer.from("chan"),
      handshake: c.raw,
      messages: [
        { encoding: c.raw, onmessage: (m: Buffer) => atRef.push(`0 ${m.toString()}`) },
        { encoding: c.raw, onmessage: (m: Buffer) => atRef.push(`1 ${m.toString()}`) }
      ],
      onopen: (hs: Buffer) => refEvents.push(`open ${hs.toString()}`),
      onclose: (isRemote: boolean) => refEvents.push(`close ${isRemote}`)
    })
    // the reference corks: open + two messages go out as one batch
    ref.cork()
    refCh.open(Buffer.from("ref-hs"))
    refCh.messages[0].send(Buffer.from("r1"))
    refCh.messages[1].send(Buffer.from("r2"))
    ref.uncork()

    ours.mux.cork()
    const ch = ours.mux.openChannel({
      protocol: "interop",
      id: utf8("chan"),
      handshake: utf8("our-hs"),
      onopen: (hs) => atOurs.push(`open ${Buffer.from(hs).toString()}`),
      onclose: (isRemote) => atOurs.push(`close ${isRemote}`),
      messages: [
        { onmessage: (p) => atOurs.push(`0 ${Buffer.from(p).toString()}`) },
        { onmessage: (p) => atOurs.push(`1 ${Buffer.from(p).toString()}`) }
      ]
    })!
    ch.send(1, utf8("o1"))
    ch.send(0, utf8("o2"))
    ours.mux.uncork()

    await waitFor(() => atRef.length === 2 && atOurs.length === 3, "messages both ways")
    expect(ours.received[0]!.startsWith("000000")).toBe(true) // the reference's batch
    expect(ours.sent).toHaveLength(1) // ours, one batch too
    expect(atOurs).toEqual(["open ref-hs", "0 r1", "1 r2"])
    expect(atRef).toEqual(["1 o1", "0 o2"])
    expect(refEvents).toEqual(["open our-hs"])

    // a second channel that the reference has no taker for is rejected
    const closedUnknown: Array<boolean> = []
    ours.mux.openChannel({ protocol: "nobody-home", onclose: (r) => closedUnknown.push(r) })
    await waitFor(() => closedUnknown.length === 1, "the reference to reject")
    expect(closedUnknown).toEqual([true])
    expect(ours.received.at(-1)).toBe("000202")

    // the reference's pair handler opens a channel on demand; messages wait in its buffer meanwhile
    ref.pair({ protocol: "on-demand" }, async () => {
      await new Promise((r) => setTimeout(r, 20))
      ref
        .createChannel({
          protocol: "on-demand",
          messages: [{ encoding: c.raw, onmessage: (m: Buffer) => atRef.push(`od ${m.toString()}`) }]
        })
        .open()
    })
    const od = ours.mux.openChannel({ protocol: "on-demand" })!
    od.send(0, utf8("queued"))
    await waitFor(() => atRef.includes("od queued") && od.opened, "the on-demand channel")

    // close from our side: the reference sees a remote close; and back
    ch.close()
    await waitFor(() => refEvents.length === 2, "the reference to close")
    expect(refEvents[1]).toBe("close true")
    expect(atOurs.at(-1)).toBe("close false")
    const refOd = [...ref].find((x: any) => x.protocol === "on-demand")
    refOd.close()
    await waitFor(() => od.closed, "our on-demand channel to close")
    expect(ours.mux.destroyed).toBe(false)
  })

  it("our buffering: the reference opens and sends before we open locally", async () => {
    const conn = connection("client")
    let pendingOpens = 0
    const sent: Array<string> = []
    const mux = new Protomux({
      send: (f) => {
        sent.push(toHex(f))
        conn.client.write(f)
      },
      onRemoteOpen: () => {
        pendingOpens++
        return true
      }
    })
    conn.client.on("data", (d: Buffer) => mux.onMessage(d))
    const ref = ProtomuxRef.from(conn.relay)
    const refCh = ref.createChannel({ protocol: "late", messages: [{ encoding: c.raw }] })
    refCh.open()
    for (const m of ["a", "b", "c"]) refCh.messages[0].send(Buffer.from(m))
    await waitFor(() => mux.stats().buffered > 0 && mux.stats().pendingRemote === 1 && pendingOpens === 1, "buffered messages")
    await waitFor(() => mux.stats().framesIn === 4, "all frames")
    const got: Array<string> = []
    mux.openChannel({ protocol: "late", messages: [{ onmessage: (p) => got.push(Buffer.from(p).toString()) }] })
    expect(got).toEqual(["a", "b", "c"])
    await waitFor(() => refCh.opened === true, "the reference to see the pairing")
  })
})
