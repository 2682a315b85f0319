/**
 * `relayThrough` on connect and createServer (connect.md §6.8), over real
 * UDP on 127.0.0.1: firewalled peers whose direct paths are closed (the
 * server never punches, the client takes no LAN shortcut) reach each other
 * through a blind relay, an Omega one (BlindRelayServer) or the reference's
 * (hyperdht + the blind-relay package), whichever side names it; the socket
 * says `path: "relayed"` and which relay.
 */
import HyperDHT from "hyperdht"
import { createRequire } from "node:module"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BlindRelayServer } from "../src/api/blind-relay.js"
import { Gateway } from "../src/index.js"
import { drain, pattern, pump } from "./support/bytes.js"
import { HOST, onFreePort, tracker, withTimeout } from "./support/live.js"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any

const BlindRelay = createRequire(import.meta.url)("blind-relay")

const net = tracker()
let bootPort = 0
let omegaRelayKey: Buffer
let refRelayKey: Buffer

const omega = (opts: Record<string, unknown> = {}): Gateway => {
  const g = net.track(new Gateway({ bootstrap: [`${HOST}:${bootPort}`], host: HOST, ...opts }))
  g.on("error", () => {})
  return g
}

/** Firewalled, ephemeral: no quick firewall check, so the node stays firewalled on loopback. */
const FW = { quickFirewall: false, ephemeral: true }

const opened = (s: Any): Promise<void> =>
  new Promise((resolve, reject) => {
    s.once("open", () => resolve())
    s.once("error", reject)
  })

beforeAll(async () => {
  const boot = await onFreePort("omega bootstrapper", (port) => Gateway.bootstrapper(port, HOST, { host: HOST }), net.track)
  bootPort = boot.port
  const persistent = Array.from({ length: 4 }, () => omega({ ephemeral: false, firewalled: false }))
  await withTimeout(Promise.all(persistent.map((n) => n.ready())), 20_000, "network ready")
  // an Omega relay
  const relayNode = omega({ ephemeral: false, firewalled: false })
  await relayNode.ready()
  const relay = new BlindRelayServer(relayNode)
  const relayKeys = Gateway.keyPair()
  await relay.listen(relayKeys)
  omegaRelayKey = relayKeys.publicKey
  // the reference's relay: hyperdht + blind-relay
  const refNode: Any = net.track(new HyperDHT({ bootstrap: [`${HOST}:${bootPort}`], host: HOST }))
  await refNode.ready()
  // the relay's streams end with ECONNRESET when a peer goes: a listener, as an application running it would add
  const refRelay = new BlindRelay.Server({
    createStream: (opts: Any) => refNode.createRawStream({ ...opts, framed: true }).on("error", () => {})
  })
  const refKeys = HyperDHT.keyPair()
  const refServer = refNode.createServer((socket: Any) => {
    socket.on("error", () => {})
    refRelay.accept(socket, { id: socket.remotePublicKey })
  })
  await refServer.listen(refKeys)
  refRelayKey = refKeys.publicKey
}, 60_000)

afterAll(async () => {
  await net.destroyAll()
}, 60_000)

const cases: ReadonlyArray<readonly [string, "client" | "server", () => Buffer]> = [
  ["Omega relay named by the client", "client", () => omegaRelayKey],
  ["Omega relay named by the server", "server", () => omegaRelayKey],
  ["reference relay named by the client", "client", () => refRelayKey],
  ["reference relay named by the server", "server", () => refRelayKey]
]

describe.each(cases)("relayThrough: %s", (_name, side, relayKey) => {
  it("connects through the relay and carries data both ways", async () => {
    const a = omega(FW)
    const b = omega(FW)
    await withTimeout(Promise.all([a.ready(), b.ready()]), 15_000, "peers ready")
    let serverSide: Any = null
    let serverDone: Promise<{ bytes: number; digest: string }> | null = null
    const up = pattern(256 * 1024, "relayed up")
    const down = pattern(256 * 1024, "relayed down")
    const server = a.createServer({ holepunch: false, ...(side === "server" ? { relayThrough: relayKey() } : {}) }, (s: Any) => {
      serverSide = s
      s.on("error", () => {})
      serverDone = drain(s)
      void pump(s, down.data)
    })
    await server.listen()
    const client: Any = b.connect(server.publicKey!, { localConnection: false, ...(side === "client" ? { relayThrough: relayKey() } : {}) })
    client.on("error", () => {})
    await withTimeout(opened(client), 20_000, "client open")
    expect(client.path).toBe("relayed")
    expect(Buffer.from(client.relayedVia).equals(relayKey())).toBe(true)
    const clientDone = drain(client)
    await pump(client, up.data)
    const atClient = await withTimeout(clientDone, 30_000, "client read")
    const atServer = await withTimeout(serverDone!, 30_000, "server read")
    expect(atServer).toEqual({ bytes: up.data.length, digest: up.digest })
    expect(atClient).toEqual({ bytes: down.data.length, digest: down.digest })
    expect(serverSide.path).toBe("relayed")
    expect(Buffer.from(client.handshakeHash).equals(Buffer.from(serverSide.handshakeHash))).toBe(true)
    await a.destroy()
    await b.destroy()
  }, 60_000)
})

/**
 * End both sides before destroying: hyperdht 6.34.0 raises an unhandled
 * ECONNRESET inside a reference peer when a relayed connection is reset
 * (reference to reference as well), which would fail the file.
 */
const closeGracefully = async (client: Any): Promise<void> => {
  client.end()
  await withTimeout(new Promise((r) => client.once("close", r)), 10_000, "graceful close")
}

/** Mixed peers: the reference's connect / createServer with relayThrough, against Omega peers. */
describe("relayThrough between Omega and reference peers", () => {
  const refPeer = (): Any => {
    const n: Any = net.track(new HyperDHT({ bootstrap: [`${HOST}:${bootPort}`], host: HOST, ...FW }))
    return n
  }

  it("reference client naming the Omega relay → Omega server", async () => {
    const a = omega(FW)
    const b = refPeer()
    await withTimeout(Promise.all([a.ready(), b.ready()]), 15_000, "peers ready")
    let serverSide: Any = null
    const server = a.createServer({ holepunch: false }, (s: Any) => {
      serverSide = s
      s.on("error", () => {})
      s.on("data", (d: Buffer) => s.write(Buffer.from(d.toString().toUpperCase())))
      s.on("end", () => s.end())
    })
    await server.listen()
    const client: Any = b.connect(server.publicKey!, { localConnection: false, relayThrough: omegaRelayKey })
    client.on("error", () => {})
    await withTimeout(opened(client), 20_000, "client open")
    client.write(Buffer.from("through the omega relay"))
    const echo = await withTimeout(new Promise<string>((r) => client.once("data", (d: Buffer) => r(d.toString()))), 10_000, "echo")
    expect(echo).toBe("THROUGH THE OMEGA RELAY")
    expect(serverSide.path).toBe("relayed")
    await closeGracefully(client)
    await b.destroy()
    await a.destroy()
  }, 60_000)

  it("Omega client → reference server naming the reference relay", async () => {
    const a = refPeer()
    const b = omega(FW)
    await withTimeout(Promise.all([a.ready(), b.ready()]), 15_000, "peers ready")
    const server = a.createServer({ holepunch: false, relayThrough: refRelayKey }, (s: Any) => {
      s.on("error", () => {})
      s.on("data", (d: Buffer) => s.write(Buffer.from(d.toString().toUpperCase())))
      s.on("end", () => s.end())
    })
    await server.listen()
    const client: Any = b.connect(server.publicKey!, { localConnection: false })
    client.on("error", () => {})
    await withTimeout(opened(client), 20_000, "client open")
    expect(client.path).toBe("relayed")
    client.write(Buffer.from("through the reference relay"))
    const echo = await withTimeout(new Promise<string>((r) => client.once("data", (d: Buffer) => r(d.toString()))), 10_000, "echo")
    expect(echo).toBe("THROUGH THE REFERENCE RELAY")
    await closeGracefully(client)
    await a.destroy()
    await b.destroy()
  }, 60_000)
})
