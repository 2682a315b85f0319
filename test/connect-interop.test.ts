/**
 * Connections between public keys, interop with the reference (hyperdht
 * 6.34.0) over real UDP on 127.0.0.1 (connect.md): one mixed network
 * (reference bootstrapper, 3 reference and 3 Omega persistent nodes) and,
 * for each pairing of implementations (Omega ↔ Omega, reference client →
 * Omega server, Omega client → reference server):
 *
 * - 16 MiB written each way and received intact (SHA-256 of the bytes);
 * - `remotePublicKey` and `handshakeHash` equal on both ends;
 * - a server whose firewall hook rejects: the client's socket errors;
 * - `server.close()` leaves no announcement behind (FIND_PEER finds nothing).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Gateway } from "../src/index.js"
import { drain, pattern, pump } from "./support/bytes.js"
import { nodeMakers, startMixedNetwork } from "./support/nodes.js"
import { tracker, withTimeout } from "./support/live.js"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any

const MiB = 1024 * 1024
const SIZE = 16 * MiB

const net = tracker()
let bootPort = 0

const { refNode, omegaNode } = nodeMakers(net.track, () => bootPort)

type Kind = "omega" | "reference"
const node = (k: Kind): Any => (k === "omega" ? omegaNode() : refNode())

const opened = (s: Any): Promise<void> =>
  new Promise((resolve, reject) => {
    s.once("open", () => resolve())
    s.once("error", reject)
  })

beforeAll(async () => {
  await startMixedNetwork(net.track, (port) => (bootPort = port))
}, 60_000)

afterAll(async () => {
  await net.destroyAll()
}, 60_000)

const pairings: ReadonlyArray<readonly [Kind, Kind]> = [
  ["omega", "omega"],
  ["omega", "reference"],
  ["reference", "omega"]
]

describe.each(pairings)("%s server, %s client", (serverKind, clientKind) => {
  it("16 MiB each way intact; same keys and handshake hash on both ends", async () => {
    const a = node(serverKind)
    const b = node(clientKind)
    await withTimeout(Promise.all([a.ready(), b.ready()]), 15_000, "peers ready")
    const up = pattern(SIZE, "client->server")
    const down = pattern(SIZE, "server->client")
    let serverSide: Any = null
    let serverDone: Promise<{ bytes: number; digest: string }> | null = null
    let failed: (e: unknown) => void = () => {}
    const serverFailure = new Promise<never>((_, reject) => (failed = reject))
    const server = a.createServer((s: Any) => {
      serverSide = s
      s.on("error", () => {})
      pump(s, down.data).catch(failed)
      serverDone = drain(s)
    })
    await server.listen()
    const client: Any = b.connect(server.publicKey)
    await withTimeout(opened(client), 15_000, "client open")
    const clientDone = drain(client)
    await pump(client, up.data)
    const [atServer, atClient] = await withTimeout(Promise.race([Promise.all([serverDone!, clientDone]), serverFailure]), 60_000, "16 MiB each way")
    expect(atServer).toEqual({ bytes: SIZE, digest: up.digest })
    expect(atClient).toEqual({ bytes: SIZE, digest: down.digest })
    expect(Buffer.from(serverSide.remotePublicKey).equals(Buffer.from(client.publicKey))).toBe(true)
    expect(Buffer.from(client.remotePublicKey).equals(Buffer.from(serverSide.publicKey))).toBe(true)
    expect(Buffer.from(client.handshakeHash).toString("hex")).toBe(Buffer.from(serverSide.handshakeHash).toString("hex"))
    expect(client.handshakeHash.length).toBe(64)
    await a.destroy()
    await b.destroy()
  }, 120_000)

  it("a firewall that rejects: the client's socket fails", async () => {
    const a = node(serverKind)
    const b = node(clientKind)
    await withTimeout(Promise.all([a.ready(), b.ready()]), 15_000, "peers ready")
    let asked = 0
    const server = a.createServer({
      firewall: (remotePublicKey: Uint8Array) => {
        asked++
        return Buffer.from(remotePublicKey).equals(Buffer.from(b.defaultKeyPair.publicKey))
      }
    })
    let connections = 0
    server.on("connection", () => connections++)
    await server.listen()
    const c = b.connect(server.publicKey)
    const err: Any = await withTimeout(
      new Promise((resolve) => {
        c.on("error", resolve)
        c.on("open", () => resolve(new Error("opened")))
      }),
      30_000,
      "client error"
    )
    expect(asked).toBeGreaterThan(0)
    expect(connections).toBe(0)
    expect(["PEER_CONNECTION_FAILED", "PEER_NOT_FOUND"]).toContain(err.code)
    await a.destroy()
    await b.destroy()
  }, 60_000)

  it("server.close() leaves no announcement behind", async () => {
    const a = node(serverKind)
    const b = node(clientKind)
    await withTimeout(Promise.all([a.ready(), b.ready()]), 15_000, "peers ready")
    const server = a.createServer(() => {})
    await server.listen()
    const pk = server.publicKey
    const records = async (): Promise<number> => {
      let n = 0
      for await (const r of b.findPeer(pk)) if (r.peer !== undefined && r.peer !== null) n++
      return n
    }
    expect(await withTimeout(records(), 15_000, "findPeer before close")).toBeGreaterThan(0)
    await server.close()
    expect(await withTimeout(records(), 15_000, "findPeer after close")).toBe(0)
    await a.destroy()
    await b.destroy()
  }, 60_000)
})

/**
 * Firewalled peers (no quick firewall check: both stay firewalled, their
 * NATs CONSISTENT on loopback) and no LAN shortcut: the connection is
 * holepunched through pool sockets (PEER_HOLEPUNCH rounds, probes).
 */
describe.each(pairings)("holepunched: %s server, %s client", (serverKind, clientKind) => {
  it("connects through the punch and carries data both ways", async () => {
    const fw = { quickFirewall: false, ephemeral: true }
    const a = serverKind === "omega" ? omegaNode(fw) : refNode(fw)
    const b = clientKind === "omega" ? omegaNode(fw) : refNode(fw)
    await withTimeout(Promise.all([a.ready(), b.ready()]), 15_000, "peers ready")
    expect(a.firewalled).toBe(true)
    expect(b.firewalled).toBe(true)
    const up = pattern(MiB, "punched up")
    const down = pattern(MiB, "punched down")
    let serverSide: Any = null
    let serverDone: Promise<{ bytes: number; digest: string }> | null = null
    const server = a.createServer((s: Any) => {
      serverSide = s
      s.on("error", () => {})
      void pump(s, down.data)
      serverDone = drain(s)
    })
    await server.listen()
    const client: Any = b.connect(server.publicKey, { localConnection: false })
    await withTimeout(opened(client), 15_000, "client open")
    const clientDone = drain(client)
    await pump(client, up.data)
    const [atServer, atClient] = await withTimeout(Promise.all([clientDone.then(() => serverDone!), clientDone]), 30_000, "1 MiB each way")
    expect(atServer).toEqual({ bytes: MiB, digest: up.digest })
    expect(atClient).toEqual({ bytes: MiB, digest: down.digest })
    if (clientKind === "omega") expect(client.path).toBe("punched")
    if (serverKind === "omega") expect(serverSide.path).toBe("punched")
    expect(Buffer.from(client.handshakeHash).equals(Buffer.from(serverSide.handshakeHash))).toBe(true)
    await a.destroy()
    await b.destroy()
  }, 60_000)
})
