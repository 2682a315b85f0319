/**
 * `relay: true` and `relayThrough: 'auto'` on the promise facade, over real
 * UDP on 127.0.0.1: the relay announces itself under the relay topic (and
 * unannounces on destroy), a reference hyperdht node finds it with a plain
 * lookup, a peer that names it connects through it (its caps apply), and
 * `'auto'` on connect / createServer leaves reachable peers on their direct
 * path. (Falling back on the relay when a punch cannot work needs NATs: the
 * simulated network in test/relay-auto.test.ts, the NAT lab in
 * test/natlab.test.ts.)
 */
import { createRequire } from "node:module"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Gateway } from "../src/index.js"
import { relayTopic } from "../src/api/relays.js"
import { HOST, withTimeout } from "./support/live.js"
import { omegaNetwork } from "./support/omega-net.js"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any
const require = createRequire(import.meta.url)
const HyperDHT = require("hyperdht") as Any

const { net, node, start, bootPort } = omegaNetwork()

/** Firewalled, ephemeral: no quick firewall check, so the node stays firewalled on loopback. */
const FW = { quickFirewall: false, ephemeral: true }

const topic = (): Uint8Array => relayTopic((b) => Gateway.hash(b))

/** The keys a lookup of the relay topic returns (through `n`, which may be the reference's). */
const relaysSeenBy = async (n: Any): Promise<Array<string>> => {
  const keys = new Set<string>()
  for await (const r of n.lookup(Buffer.from(topic()))) for (const p of r.peers) keys.add(Buffer.from(p.publicKey).toString("hex"))
  return [...keys]
}

const until = async (f: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> => {
  const end = Date.now() + ms
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A reachable node started with `relay: true`, once its relay has announced itself. */
const relayNode = async (): Promise<Gateway> => {
  const r = node({ ephemeral: false, firewalled: false, relay: true })
  await r.ready()
  await until(() => r.relay !== null && r.relay.announces > 0, 15_000, "the relay announced itself")
  return r
}

/**
 * Two firewalled peers whose direct paths are closed (the server never
 * punches; the dialler is told to skip the LAN shortcut): `a`'s echo server
 * and `b` to dial it.
 */
const closedPair = async () => {
  const a = node(FW)
  const b = node(FW)
  await Promise.all([a.ready(), b.ready()])
  const server = a.createServer({ holepunch: false }, (s: Any) => {
    s.on("error", () => {})
    s.on("data", (d: Uint8Array) => s.write(d))
  })
  await server.listen()
  return { b, server }
}

/** Write `text` on `c` and read it back from the echo server. */
const echo = async (c: Any, text: string): Promise<string> => {
  const echoed = new Promise<string>((resolve) => c.once("data", (d: Uint8Array) => resolve(Buffer.from(d).toString())))
  c.write(Buffer.from(text))
  return withTimeout(echoed, 10_000, "echo")
}

const opened = (s: Any): Promise<{ open: boolean; code?: string }> =>
  new Promise((resolve) => {
    s.once("open", () => resolve({ open: true }))
    s.once("error", (e: Any) => resolve({ open: false, code: e.code }))
  })

beforeAll(start, 60_000)

afterAll(async () => {
  await net.destroyAll()
}, 60_000)

describe("relay: true", () => {
  it("a node without the option relays nobody; with it, the relay listens on its own key and is found under the relay topic (by a reference node too)", async () => {
    const plain = node({ ephemeral: false, firewalled: false })
    await plain.ready()
    expect(plain.relay).toBeNull()
    const r = await relayNode()
    const key = Buffer.from(r.relay!.publicKey).toString("hex")
    expect(key).not.toBe(Buffer.from(r.defaultKeyPair.publicKey).toString("hex"))
    const seeker = node()
    await seeker.ready()
    expect(await relaysSeenBy(seeker)).toContain(key)
    const ref = net.track(new HyperDHT({ bootstrap: [`${HOST}:${bootPort()}`], host: HOST }))
    await ref.ready()
    expect(await relaysSeenBy(ref)).toContain(key)

    // firewalled peers with their direct paths closed, one naming it: they connect through it
    const { b, server } = await closedPair()
    const c = b.connect(server.publicKey!, { localConnection: false, relayThrough: r.relay!.publicKey })
    c.on("error", () => {})
    expect(await withTimeout(opened(c), 15_000, "relayed dial")).toEqual({ open: true })
    expect(c.path).toBe("relayed")
    expect(await echo(c, "through the relay")).toBe("through the relay")
    expect(r.relay!.relay.stats.pairings.matched).toBe(1)
    c.destroy()

    // destroy unannounces: the topic no longer lists it
    await r.destroy()
    await until(async () => !(await relaysSeenBy(seeker)).includes(key), 10_000, "the relay is gone from the topic")
  }, 60_000)

  it("relayThrough: 'auto': a dial whose punch is refused (the server does not holepunch) is redone through the relay found under the topic", async () => {
    const r = await relayNode()
    const { b, server } = await closedPair()
    // without 'auto': the punch is refused
    const plain = b.connect(server.publicKey!, { localConnection: false })
    const failed = await withTimeout(opened(plain), 15_000, "plain dial")
    expect(failed.open).toBe(false)
    // with it: one more round, through the relay
    const c = b.connect(server.publicKey!, { localConnection: false, relayThrough: "auto" })
    c.on("error", () => {})
    expect(await withTimeout(opened(c), 15_000, "auto dial")).toEqual({ open: true })
    expect(c.path).toBe("relayed")
    expect(Buffer.from(c.relayedVia!).equals(Buffer.from(r.relay!.publicKey))).toBe(true)
    expect(b.stats.relaying.fallbacks).toBe(1)
    expect(await echo(c, "fell back")).toBe("fell back")
    console.log(`relay-service: the refused punch failed with ${failed.code}; the 'auto' dial opened through the relay`)
    c.destroy()
  }, 60_000)

  it("relayThrough: 'auto' on connect and createServer: reachable peers keep their direct path, no relay involved", async () => {
    const r = await relayNode()
    const a = node()
    const b = node()
    await Promise.all([a.ready(), b.ready()])
    const server = a.createServer({ relayThrough: "auto" }, (s: Any) => s.on("error", () => {}))
    await server.listen()
    const c = b.connect(server.publicKey!, { relayThrough: "auto" })
    c.on("error", () => {})
    expect(await withTimeout(opened(c), 15_000, "auto dial")).toEqual({ open: true })
    expect(c.path).not.toBe("relayed")
    expect(b.stats.relaying.fallbacks).toBe(0)
    expect(r.relay!.relay.stats.pairings.requested).toBe(0)
    c.destroy()
  }, 60_000)
})
