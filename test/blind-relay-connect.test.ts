/**
 * Blind relaying over real UDP on 127.0.0.1 (connect.md §6.8, udx.md §9),
 * driven directly with the relay wiring (src/actors/session/relay-connection.ts)
 * rather than through a connect option:
 *
 * - two Omega peers pair their UDX streams through an Omega relay
 *   (`BlindRelayServer` facade, `listen`): bytes flow both ways through the
 *   relay, which counts the pair and the forwarded packets; an encrypted
 *   connection (secret stream) opens over a relayed path;
 * - the same through the reference relay (a hyperdht node running
 *   blind-relay's `Server` with `createRawStream({ framed: true })`);
 * - reference clients (hyperdht + blind-relay's `Client`) pair through the
 *   Omega relay; and one Omega and one reference client through it;
 * - the pairing waits at most its timeout (RELAY_ABORTED), and a relay
 *   connection that closes aborts it.
 *
 * One mixed network (reference bootstrapper, 2 reference and 2 Omega
 * persistent nodes), the relays OPEN persistent nodes.
 */
import HyperDHT from "hyperdht"
import { Effect, Exit } from "effect"
import { randomBytes } from "node:crypto"
import { createRequire } from "node:module"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BlindRelayServer } from "../src/api/blind-relay.js"
import { GatewaySocket, type ConnectionHost } from "../src/actors/session/host.js"
import {
  openRelaySocket,
  pairThroughRelay,
  type RelayPaired,
  relayConnection
} from "../src/actors/session/relay-connection.js"
import { toDuplex, type UdxStream } from "../src/actors/session/udx.js"
import { Gateway } from "../src/index.js"
import * as Noise from "../src/layers/crypto/noise.js"
import { drain, pattern, pump } from "./support/bytes.js"
import { nodeMakers } from "./support/nodes.js"
import { type Closable, HOST, onFreePort, randomPort, tracker, withTimeout } from "./support/live.js"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any

const require = createRequire(import.meta.url)
const BlindRelayRef: Any = require("blind-relay")

const net = tracker()
let bootPort = 0

const { refNode, omegaNode } = nodeMakers(net.track, () => bootPort)

/** Things to destroy at the end (sockets, streams), before the nodes. */
const leftovers: Array<() => void> = []

// ---------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------

/** `up` from a to b and `down` from b to a at once, both read to their end. */
const exchange = async (a: Any, b: Any, size: number, label: string): Promise<void> => {
  const up = pattern(size, `${label} up`)
  const down = pattern(size, `${label} down`)
  const atB = drain(b)
  const atA = drain(a)
  void pump(a, up.data, 16_384).catch(() => {})
  void pump(b, down.data, 16_384).catch(() => {})
  const [gotB, gotA] = await withTimeout(Promise.all([atB, atA]), 30_000, `${label}: bytes both ways`)
  expect(gotB).toEqual({ bytes: size, digest: up.digest })
  expect(gotA).toEqual({ bytes: size, digest: down.digest })
}

// ---------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------

/** An Omega peer's side of a relayed stream: a fresh UDX stream on its node's mux. */
const omegaStream = (host: ConnectionHost): UdxStream => {
  const s = host.mux.createStreamUnsafe(host.mux.freeId(host.random))
  if (s instanceof Error) throw s
  leftovers.push(() => s.destroyUnsafe())
  return s
}

/** Pair an Omega peer's new stream through `relayPk` (its own connection to the relay, driven directly). */
const omegaPair = async (
  peer: Gateway,
  relayPk: Uint8Array,
  isInitiator: boolean,
  token: Uint8Array
): Promise<{ stream: UdxStream; paired: RelayPaired; relaySocket: GatewaySocket }> => {
  const host = await peer.connections()
  const stream = omegaStream(host)
  const relaySocket = openRelaySocket(host, relayPk, peer.defaultKeyPair)
  leftovers.push(() => relaySocket.destroy())
  const paired = await Effect.runPromise(pairThroughRelay(host, relaySocket, { isInitiator, token, localStream: stream }))
  return { stream, paired, relaySocket }
}

/** Pair a reference peer's raw stream through `relayPk` as hyperdht does (blind-relay `Client`, id = own public key). */
const refPair = (dht: Any, relayPk: Uint8Array, isInitiator: boolean, token: Uint8Array): Promise<{ raw: Any; remoteId: number; sock: Any }> =>
  new Promise((resolve, reject) => {
    const sock = dht.connect(relayPk)
    sock.on("error", () => {})
    sock.setKeepAlive(5000)
    leftovers.push(() => sock.destroy())
    const client = BlindRelayRef.Client.from(sock, { id: sock.publicKey })
    const raw = dht.createRawStream()
    raw.on("error", () => {})
    leftovers.push(() => raw.destroy())
    client
      .pair(isInitiator, Buffer.from(token), raw)
      .on("error", reject)
      .on("data", (remoteId: number) => {
        const { remotePort, remoteHost, socket } = sock.rawStream
        raw.connect(socket, remoteId, remotePort, remoteHost)
        resolve({ raw, remoteId, sock })
      })
  })

// ---------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------

let omegaRelayNode: Gateway
let omegaRelay: BlindRelayServer
let omegaRelayPk: Uint8Array
let refRelayNode: Any
let refRelay: Any
let refRelayPk: Uint8Array
let peerA: Gateway
let peerB: Gateway
let refC: Any
let refD: Any

beforeAll(async () => {
  const boot = await onFreePort("reference bootstrapper", (port) => HyperDHT.bootstrapper(port, HOST, { host: HOST }), net.track)
  bootPort = boot.port
  const persistent: Array<Closable & { ready(): Promise<unknown> }> = []
  for (let i = 0; i < 2; i++) persistent.push(refNode({ ephemeral: false, firewalled: false, port: randomPort() }))
  for (let i = 0; i < 2; i++) persistent.push(omegaNode({ ephemeral: false, firewalled: false }))
  // the relays: OPEN persistent nodes
  omegaRelayNode = omegaNode({ ephemeral: false, firewalled: false })
  refRelayNode = refNode({ ephemeral: false, firewalled: false, port: randomPort() })
  persistent.push(omegaRelayNode, refRelayNode)
  peerA = omegaNode()
  peerB = omegaNode()
  refC = refNode()
  refD = refNode()
  await withTimeout(Promise.all([...persistent, peerA, peerB, refC, refD].map((n) => n.ready())), 30_000, "network ready")

  omegaRelay = new BlindRelayServer(omegaRelayNode)
  const server = await withTimeout(omegaRelay.listen(), 15_000, "Omega relay listening")
  omegaRelayPk = server.publicKey!

  refRelay = new BlindRelayRef.Server({
    createStream(opts: Any) {
      return refRelayNode.createRawStream({ ...opts, framed: true })
    }
  })
  const refServer = refRelayNode.createServer((socket: Any) => {
    socket.on("error", () => {})
    refRelay.accept(socket, { id: socket.remotePublicKey })
  })
  await withTimeout(refServer.listen(), 15_000, "reference relay listening")
  refRelayPk = refServer.publicKey
}, 90_000)

afterAll(async () => {
  for (const f of leftovers.splice(0)) {
    try {
      f()
    } catch {
      // already gone
    }
  }
  await omegaRelay?.close().catch(() => {})
  await refRelay?.close().catch(() => {})
  await net.destroyAll()
}, 60_000)

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

describe("through the Omega relay", () => {
  it("two Omega peers: bytes both ways, the relay counts the pair", async () => {
    const before = omegaRelay.stats
    const token = randomBytes(32)
    const [a, b] = await withTimeout(
      Promise.all([omegaPair(peerA, omegaRelayPk, true, token), omegaPair(peerB, omegaRelayPk, false, token)]),
      20_000,
      "pairing"
    )
    // each stream is connected to its own relay-side stream, at the relay's address
    expect(a.stream.remoteId).toBe(a.paired.remoteId)
    expect(b.stream.remoteId).toBe(b.paired.remoteId)
    expect(a.paired.remoteId).not.toBe(b.paired.remoteId)
    expect(a.paired.relayAddress.port).toBe(omegaRelayNode.address()!.port)
    expect(a.stream.socket).toBe(a.relaySocket.udx!.socket)

    await exchange(toDuplex(a.stream), toDuplex(b.stream), 256 * 1024, "omega-omega via omega relay")

    const after = omegaRelay.stats
    expect(after.pairings.matched - before.pairings.matched).toBe(1)
    expect(after.sessions.accepted - before.sessions.accepted).toBe(2)
    expect(after.udx.forwarded - before.udx.forwarded).toBeGreaterThan(2 * 16)
    expect((await peerA.connections()).stats.relaying.successes).toBeGreaterThan(0)

    // closing a relay connection releases the pair and its relay streams
    a.relaySocket.destroy()
    b.relaySocket.destroy()
    await withTimeout(
      (async () => {
        while (omegaRelay.stats.pairings.active > 0 || omegaRelay.stats.udx.streams > 0) await new Promise((r) => setTimeout(r, 20))
      })(),
      10_000,
      "pair released"
    )
  }, 60_000)

  it("an encrypted connection opens over the relayed path (relayConnection on both sides)", async () => {
    const hostA = await peerA.connections()
    const hostB = await peerB.connections()
    const kpA = peerA.defaultKeyPair
    const kpB = peerB.defaultKeyPair
    const token = randomBytes(32)
    const sA = omegaStream(hostA)
    const sB = omegaStream(hostB)
    const [pa, pb] = await withTimeout(
      Effect.runPromise(
        Effect.all(
          [
            relayConnection(hostA, { relayPublicKey: omegaRelayPk, keyPair: kpA, isInitiator: true, token, localStream: sA }),
            relayConnection(hostB, { relayPublicKey: omegaRelayPk, keyPair: kpB, isInitiator: false, token, localStream: sB })
          ],
          { concurrency: 2 }
        )
      ),
      20_000,
      "relayConnection"
    )
    leftovers.push(() => pa.relaySocket.destroy(), () => pb.relaySocket.destroy())
    // a Noise IK handshake between A (initiator) and B, then the secret streams over the relayed UDX streams
    const crypto = hostA.crypto
    const prologue = hostA.ns.PEER_HANDSHAKE
    const ini = Noise.initiator(crypto, { staticKeyPair: kpA, remoteStaticKey: kpB.publicKey, prologue })
    const res = Noise.responder(crypto, { staticKeyPair: kpB, prologue })
    const m1 = Noise.writeMessage1(ini, new Uint8Array(0))
    if (m1._tag !== "Success") throw new Error("msg1")
    const r1 = Noise.readMessage1(res, m1.success)
    if (r1._tag !== "Success") throw new Error("read msg1")
    const m2 = Noise.writeMessage2(res, new Uint8Array(0))
    if (m2._tag !== "Success") throw new Error("msg2")
    const r2 = Noise.readMessage2(ini, m2.success.message)
    if (r2._tag !== "Success") throw new Error("read msg2")
    const ci = r2.success.split
    const si = m2.success.split
    const encA = new GatewaySocket(true, null, { autoStart: false, publicKey: kpA.publicKey, remotePublicKey: kpB.publicKey })
    const encB = new GatewaySocket(false, null, { autoStart: false, publicKey: kpB.publicKey, remotePublicKey: kpA.publicKey })
    encA.on("error", () => {})
    encB.on("error", () => {})
    leftovers.push(() => encA.destroy(), () => encB.destroy())
    encA.startOver(sA, { tx: ci.tx, rx: ci.rx, hash: ci.handshakeHash, publicKey: kpA.publicKey, remotePublicKey: kpB.publicKey }, "relayed")
    encB.startOver(sB, { tx: si.tx, rx: si.rx, hash: si.handshakeHash, publicKey: kpB.publicKey, remotePublicKey: kpA.publicKey }, "relayed")
    await withTimeout(Promise.all([encA.opened, encB.opened]), 10_000, "secret streams open")
    expect(encA.path).toBe("relayed")
    await exchange(encA, encB, 128 * 1024, "encrypted via omega relay")
    // the relay connections go when the relayed streams close
    encA.destroy()
    encB.destroy()
    await withTimeout(
      Promise.all([pa.relaySocket, pb.relaySocket].map((s) => (s.destroyed ? Promise.resolve() : new Promise((r) => s.once("close", r))))),
      10_000,
      "relay connections closed with the relayed streams"
    )
  }, 60_000)

  it("two reference clients (hyperdht + blind-relay Client)", async () => {
    const before = omegaRelay.stats
    const token = randomBytes(32)
    const [c, d] = await withTimeout(
      Promise.all([refPair(refC, omegaRelayPk, true, token), refPair(refD, omegaRelayPk, false, token)]),
      20_000,
      "reference pairing"
    )
    expect(c.remoteId).not.toBe(d.remoteId)
    await exchange(c.raw, d.raw, 256 * 1024, "ref-ref via omega relay")
    const after = omegaRelay.stats
    expect(after.pairings.matched - before.pairings.matched).toBe(1)
    expect(after.udx.forwarded - before.udx.forwarded).toBeGreaterThan(2 * 16)
  }, 60_000)

  it("an Omega client (initiator) with a reference client", async () => {
    const token = randomBytes(32)
    const [a, d] = await withTimeout(
      Promise.all([omegaPair(peerA, omegaRelayPk, true, token), refPair(refD, omegaRelayPk, false, token)]),
      20_000,
      "mixed pairing"
    )
    await exchange(toDuplex(a.stream), d.raw, 128 * 1024, "omega-ref via omega relay")
  }, 60_000)
})

describe("through the reference relay", () => {
  it("two Omega peers: bytes both ways, the relay counts the pair", async () => {
    const matched = refRelay.stats.pairings.matched
    const token = randomBytes(32)
    const [a, b] = await withTimeout(
      Promise.all([omegaPair(peerA, refRelayPk, true, token), omegaPair(peerB, refRelayPk, false, token)]),
      20_000,
      "pairing"
    )
    expect(a.paired.relayAddress.port).toBe(refRelayNode.address().port)
    await exchange(toDuplex(a.stream), toDuplex(b.stream), 256 * 1024, "omega-omega via reference relay")
    expect(refRelay.stats.pairings.matched - matched).toBe(1)
  }, 60_000)

  it("an Omega client with a reference client (initiator)", async () => {
    const token = randomBytes(32)
    const [c, b] = await withTimeout(
      Promise.all([refPair(refC, refRelayPk, true, token), omegaPair(peerB, refRelayPk, false, token)]),
      20_000,
      "mixed pairing"
    )
    await exchange(c.raw, toDuplex(b.stream), 128 * 1024, "ref-omega via reference relay")
  }, 60_000)
})

describe("pairing failures", () => {
  it("no other half: RELAY_ABORTED after the timeout, and the relay forgets the half pair", async () => {
    const host = await peerA.connections()
    const stream = omegaStream(host)
    const relaySocket = openRelaySocket(host, omegaRelayPk, peerA.defaultKeyPair)
    leftovers.push(() => relaySocket.destroy())
    const exit = await Effect.runPromise(
      Effect.exit(pairThroughRelay(host, relaySocket, { isInitiator: true, token: randomBytes(32), localStream: stream, timeout: 1500 }))
    )
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("RELAY_ABORTED")
    expect(stream.connected).toBe(false)
    // the client withdrew its half (unpair): nothing waits at the relay
    await withTimeout(
      (async () => {
        while (omegaRelay.stats.pairings.pending > 0) await new Promise((r) => setTimeout(r, 20))
      })(),
      5000,
      "half pair withdrawn"
    )
  }, 30_000)

  it("a half pair expires at the relay after its pairing timeout (a second relay on the same node)", async () => {
    const relay2 = new BlindRelayServer(omegaRelayNode, { pairingTimeout: 500 })
    const server2 = await withTimeout(relay2.listen(Gateway.keyPair(randomBytes(32))), 15_000, "second relay listening")
    try {
      // a reference client never withdraws its half on its own
      const sock = refC.connect(server2.publicKey)
      sock.on("error", () => {})
      leftovers.push(() => sock.destroy())
      const client = BlindRelayRef.Client.from(sock, { id: sock.publicKey })
      const raw = refC.createRawStream()
      leftovers.push(() => raw.destroy())
      // (a request is sent once read: a data listener)
      client.pair(true, randomBytes(32), raw).on("error", () => {}).on("data", () => {})
      await withTimeout(
        (async () => {
          while (relay2.stats.pairings.expired === 0) await new Promise((r) => setTimeout(r, 20))
        })(),
        10_000,
        "half pair expired"
      )
      expect(relay2.stats.pairings.requested).toBe(1)
      expect(relay2.stats.pairings.pending).toBe(0)
    } finally {
      await relay2.close()
    }
    // the first relay still relays
    const token = randomBytes(32)
    const [a, b] = await withTimeout(
      Promise.all([omegaPair(peerA, omegaRelayPk, true, token), omegaPair(peerB, omegaRelayPk, false, token)]),
      20_000,
      "pairing after the second relay closed"
    )
    await exchange(toDuplex(a.stream), toDuplex(b.stream), 64 * 1024, "omega relay after a second one closed")
  }, 60_000)

  it("the relay connection closes while pairing: RELAY_ABORTED", async () => {
    const host = await peerB.connections()
    const stream = omegaStream(host)
    const relaySocket = openRelaySocket(host, omegaRelayPk, peerB.defaultKeyPair)
    const pairing = Effect.runPromise(
      Effect.exit(pairThroughRelay(host, relaySocket, { isInitiator: false, token: randomBytes(32), localStream: stream }))
    )
    await new Promise<void>((r) => relaySocket.once("open", () => r()))
    relaySocket.destroy()
    const exit = await withTimeout(pairing, 5000, "abort on close")
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("RELAY_ABORTED")
  }, 30_000)
})
