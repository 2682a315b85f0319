/**
 * Bootstrap as the seed says it works: the library's default list is the
 * public HyperDHT bootstrap nodes (hyperdht's own), a malformed entry is a
 * typed error, and a node none of whose bootstrap nodes answers says so (an
 * event and a queryable state) and names that cause when a write fails.
 *
 * Tests never contact the public nodes: the test setup empties the default
 * list (OMEGA_BOOTSTRAP=""), so a node made here without `bootstrap` knows
 * no one, and every datagram to a non-loopback address is dropped and fails
 * the file.
 */
import dgram from "node:dgram"
import { createRequire } from "node:module"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { afterEach, describe, expect, it } from "vitest"
import { checkBootstrap, defaultBootstrap, makeGateway } from "../src/api/GatewayService.js"
import { Crypto } from "../src/layers/Crypto.js"
import { UdpTransport } from "../src/layers/transport/udp.js"
import { Gateway, InvalidArgument, WriteRejected } from "../src/index.js"
import { HOST, tracker, withTimeout } from "./support/live.js"

const nodes = tracker()
afterEach(() => nodes.destroyAll(), 30_000)

/** hyperdht's list as the package ships it (the test setup empties the array at run time). */
const referenceList = (): Array<string> => {
  const { readFileSync } = createRequire(import.meta.url)("node:fs") as typeof import("node:fs")
  const source = readFileSync(createRequire(import.meta.url).resolve("hyperdht/lib/constants.js"), "utf8")
  const block = /BOOTSTRAP_NODES = \[([^\]]*)\]/.exec(source)![1]!
  return [...block.matchAll(/'([^']+)'/g)].map((m) => m[1]!)
}

describe("the default bootstrap list", () => {
  it("is hyperdht's public list when OMEGA_BOOTSTRAP is not set", () => {
    expect([...defaultBootstrap({})]).toEqual(referenceList())
    expect(referenceList().length).toBe(3)
  })

  it("OMEGA_BOOTSTRAP replaces it (comma-separated), empty means none", () => {
    expect(defaultBootstrap({ OMEGA_BOOTSTRAP: "" })).toEqual([])
    expect(defaultBootstrap({ OMEGA_BOOTSTRAP: "127.0.0.1:1776, 10.0.0.1:49737" })).toEqual(["127.0.0.1:1776", "10.0.0.1:49737"])
  })

  it("the test setup empties it: new Gateway() in a test joins no one, sends nothing and says it is alone", async () => {
    expect(process.env["OMEGA_BOOTSTRAP"]).toBe("")
    const sent: Array<string> = []
    const send = dgram.Socket.prototype.send
    dgram.Socket.prototype.send = function(this: dgram.Socket, ...args: Array<unknown>) {
      sent.push(String(args.find((a) => typeof a === "string") ?? "127.0.0.1"))
      return (send as (...a: Array<unknown>) => void).apply(this, args)
    } as typeof send
    try {
      const node = nodes.track(new Gateway())
      node.on("error", () => {})
      await withTimeout(node.ready(), 10_000, "ready")
      expect(node.bootstrapState).toBe("alone")
      expect(sent).toEqual([])
    } finally {
      dgram.Socket.prototype.send = send
    }
  })
})

describe("a malformed bootstrap entry is a typed error", () => {
  it("checkBootstrap names the entry", () => {
    for (const bad of [["nonsense"], ["127.0.0.1"], ["host:0"], ["host:99999"], [":1776"], [{ host: "", port: 1 }], [0], [null], "127.0.0.1:1776"]) {
      const e = checkBootstrap(bad)
      expect(e, JSON.stringify(bad)).toBeInstanceOf(InvalidArgument)
      expect(e!.argument).toBe("bootstrap")
    }
    expect(checkBootstrap(["nonsense"])!.message).toBe('invalid bootstrap: "nonsense" is not "host:port"')
    for (const good of [[], ["127.0.0.1:1776"], ["node1.example.org:49737"], ["88.99.3.86@node1.hyperdht.org:49737"], [{ host: "127.0.0.1", port: 1 }], [1776]]) {
      expect(checkBootstrap(good), JSON.stringify(good)).toBeNull()
    }
  })

  it("the facade: bootstrap: ['nonsense'] rejects ready() (and every operation) with InvalidArgument; nothing binds", async () => {
    const node = nodes.track(new Gateway({ bootstrap: ["nonsense"] }))
    const err = await node.ready().then(() => null, (e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidArgument)
    expect((err as InvalidArgument).code).toBe("INVALID_ARGUMENT")
    expect((err as InvalidArgument).message).toContain("nonsense")
    expect(node.address()).toBeNull()
    await expect(node.immutablePut(Buffer.from("x"))).rejects.toBe(err)
  })

  it("the Effect face: makeGateway fails with InvalidArgument", async () => {
    const exit = await Effect.runPromiseExit(
      Effect.scoped(makeGateway({ bootstrap: ["nonsense"] })).pipe(Effect.provide(UdpTransport.layer), Effect.provide(Crypto.layer))
    )
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) {
      const reason = exit.cause.reasons[0]!
      expect(reason._tag).toBe("Fail")
      if (reason._tag === "Fail") expect(reason.error).toBeInstanceOf(InvalidArgument)
    }
  })
})

describe("no bootstrap node answers", () => {
  it("'bootstrap-unreachable' and bootstrapState 'unreachable'; a later write fails naming that cause", async () => {
    // a bootstrap address nobody answers on: a socket bound and never read
    const silent = dgram.createSocket("udp4")
    await new Promise<void>((r) => silent.bind(0, HOST, r))
    const address = `${HOST}:${silent.address().port}`
    try {
      const node = nodes.track(new Gateway({ bootstrap: [address], host: HOST }))
      const unreachable = new Promise<ReadonlyArray<string>>((r) => node.once("bootstrap-unreachable", r))
      expect(node.bootstrapState).toBe("bootstrapping")
      // (dht-rpc's bootstrap waits out its request timeouts and retries: about 20 s)
      await withTimeout(node.ready(), 45_000, "ready")
      expect(await unreachable).toEqual([address])
      expect(node.bootstrapState).toBe("unreachable")
      const err = await node.mutablePut(Gateway.keyPair(), Buffer.from("hello")).then(() => null, (e: unknown) => e)
      expect(err).toBeInstanceOf(WriteRejected)
      const w = err as WriteRejected
      expect(w.attempted).toBe(0)
      expect(w.bootstrap).toEqual({ nodes: [address], state: "unreachable" })
      expect(w.message).toContain(`no bootstrap node answered (${address})`)
      const ann = await node.announce(Gateway.hash(Buffer.from("t")), Gateway.keyPair()).finished().then(() => null, (e: unknown) => e)
      expect((ann as WriteRejected).message).toContain("no bootstrap node answered")
    } finally {
      silent.close()
    }
  }, 60_000)

  it("a node that answers: bootstrapState 'joined'; a node without a list: 'alone', and its failed write says so", async () => {
    const boot = nodes.track(new Gateway({ bootstrap: [], host: HOST, ephemeral: false, firewalled: false }))
    await boot.ready()
    expect(boot.bootstrapState).toBe("alone")
    const err = await boot.immutablePut(Buffer.from("x")).then(() => null, (e: unknown) => e)
    expect((err as WriteRejected).message).toContain("the node has no bootstrap list")
    const node = nodes.track(new Gateway({ bootstrap: [`${HOST}:${boot.address()!.port}`], host: HOST }))
    await withTimeout(node.ready(), 20_000, "ready")
    expect(node.bootstrapState).toBe("joined")
  }, 30_000)
})
