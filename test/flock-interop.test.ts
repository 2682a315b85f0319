/**
 * Flock over real UDP on 127.0.0.1, with the reference hyperswarm as a
 * test oracle: Omega Flocks and hyperswarm peers on one topic reach a full
 * mesh with exactly one live connection per pair, and a message from each
 * peer reaches every other, in both join orders.
 */
import HyperDHT from "hyperdht"
import Hyperswarm from "hyperswarm"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Flock } from "../src/api/flock.js"
import { Gateway } from "../src/index.js"
import { HOST, sleep, tracker, withTimeout } from "./support/live.js"
import { startMixedNetwork } from "./support/nodes.js"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any

const net = tracker()
let bootPort = 0
const bootstrap = () => [`${HOST}:${bootPort}`]

beforeAll(async () => {
  await startMixedNetwork(net.track, (port) => (bootPort = port))
}, 60_000)

afterAll(async () => {
  await net.destroyAll()
}, 60_000)

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

interface Peer {
  readonly kind: "omega" | "reference"
  readonly key: string
  readonly swarm: Any
  /** remote key → live sockets */
  readonly live: Map<string, Set<Any>>
  /** remote keys whose greeting arrived */
  readonly heard: Set<string>
}

const makePeer = (kind: "omega" | "reference"): Peer => {
  const swarm: Any = kind === "omega"
    ? new Flock({ dht: net.track(new Gateway({ bootstrap: bootstrap(), host: HOST })) as Any })
    : new Hyperswarm({ dht: net.track(new HyperDHT({ bootstrap: bootstrap(), host: HOST }) as Any) })
  net.track({ destroy: () => swarm.destroy() })
  const peer: Peer = { kind, key: hex(swarm.keyPair.publicKey), swarm, live: new Map(), heard: new Set() }
  swarm.on("connection", (socket: Any) => {
    const remote = hex(socket.remotePublicKey)
    socket.on("error", () => {})
    let set = peer.live.get(remote)
    if (set === undefined) peer.live.set(remote, set = new Set())
    set.add(socket)
    socket.on("close", () => set!.delete(socket))
    socket.on("data", (d: Buffer) => {
      const text = d.toString()
      if (text.startsWith("hello from ")) peer.heard.add(text.slice("hello from ".length, "hello from ".length + 64))
    })
    socket.write(`hello from ${peer.key}`)
  })
  return peer
}

const liveCount = (p: Peer, remote: string) => [...(p.live.get(remote) ?? [])].filter((s: Any) => !s.destroyed).length

const meshed = (peers: ReadonlyArray<Peer>) =>
  peers.every((p) => peers.every((q) => p === q || (liveCount(p, q.key) === 1 && p.heard.has(q.key))))

const waitUntil = async (f: () => boolean, ms: number, what: string) => {
  const t0 = Date.now()
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error(`timeout after ${ms} ms: ${what}`)
    await sleep(50)
  }
}

describe.each([
  ["Omega first", ["omega", "reference"] as const],
  ["reference first", ["reference", "omega"] as const]
])("4 Flock + 4 hyperswarm peers on one topic (%s)", (_name, order) => {
  it("reach a full mesh, one live connection per pair, every greeting delivered", async () => {
    const topic = Buffer.alloc(32, order[0] === "omega" ? 0x0a : 0x0b)
    const peers: Array<Peer> = []
    // one peer at a time, each once the previous one's announcement is
    // stored: every peer finds all that came before it (peers joining at
    // the same instant miss each other's announcements until the next
    // refresh, in both implementations)
    for (const kind of order) {
      for (let i = 0; i < 4; i++) {
        const p = makePeer(kind)
        peers.push(p)
        await withTimeout(p.swarm.join(topic, { server: true, client: true }).flushed(), 20_000, `${kind} peer ${i} announced`)
      }
    }
    await waitUntil(() => meshed(peers), 45_000, "full mesh").catch((e) => {
      const rows = peers.map((p) => `${p.kind.padEnd(9)} ${p.key.slice(0, 6)}: ` + peers.map((q) => (p === q ? "-" : `${liveCount(p, q.key)}${p.heard.has(q.key) ? "h" : "."}`)).join(" "))
      throw new Error(`${e.message}\n${rows.join("\n")}`)
    })
    // stays that way: duplicates resolved, no extra live connection appears
    await sleep(500)
    for (const p of peers) {
      for (const q of peers) if (p !== q) expect(liveCount(p, q.key), `${p.kind} ${p.key.slice(0, 6)} → ${q.kind} ${q.key.slice(0, 6)}`).toBe(1)
    }
    await Promise.all(peers.map((p) => p.swarm.destroy()))
  }, 90_000)
})
