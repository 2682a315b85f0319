/**
 * The Effect face (`@omegajs/gateway/effect`, src/effect.ts) composed as an
 * Effect app composes it: `Effect.gen` + `yield* Gateway` +
 * `Effect.provide(Gateway.layer...(...))`, with the node's Transport, Crypto,
 * Clock, Bootstrap and DNS each a Layer.
 *
 * - On the simulated network (TestClock): the bootstrap list names a host
 *   resolved by a static DNS zone; announce and lookup are Streams; records
 *   round-trip; failures are tagged errors. `relay: true` as on the promise
 *   facade: the relay's key and stats on the service, announced under the
 *   relay topic, two peers behind randomizing NATs connected through it.
 * - On real UDP on 127.0.0.1: `Gateway.bootstrapper` and `Gateway.layer`
 *   (real UDP, default Crypto, Node's DNS); announce, lookup, a mutable record
 *   and an encrypted connection between two services.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Option, Stream } from "effect"
import * as Dns from "effect/net/Dns"
import { Bootstrap, Crypto, defaultBootstrap, Gateway, hash, keyPair, SimNetwork } from "../src/effect.js"
import FacadeGateway, { keyPair as rootKeyPair } from "../src/index.js"
import { HOST, randomPort } from "./support/live.js"
import { RELAY_TOPIC_NAME } from "../src/api/relays.js"
import { run } from "./support/records-sim.js"

const BOOT_IP = "20.255.0.1"
const BOOT_PORT = 49737
const ipOf = (i: number): string => `20.1.0.${i}`
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex")
const topicOf = (name: string) => hash(new TextEncoder().encode(name)).pipe(Effect.provide(Crypto.layerNoble))

describe("the Effect face on the simulated network", () => {
  it.effect("Gateway.layerNoDeps on a simulated host: announce and lookup Streams, records, tagged errors", () =>
    Effect.gen(function*() {
      const net = Layer.succeed(SimNetwork, yield* SimNetwork.make({ latency: 20, jitter: 5, seed: 7 }))
      // a host on the simulated network, the noble Crypto, a bootstrap list: the layers of one node
      const env = (ip: string, bootstrap: Layer.Layer<Bootstrap, unknown>) =>
        Layer.mergeAll(SimNetwork.host({ ip }).pipe(Layer.provide(net)), Crypto.layerNoble, bootstrap)
      // the bootstrap list names the bootstrapper by host name, resolved by a static zone
      const dns = Dns.layerStatic({ hosts: { "boot.omega.test": [BOOT_IP] } })
      const join = Bootstrap.layer([`boot.omega.test:${BOOT_PORT}`]).pipe(Layer.provide(dns))

      const bootOptions = yield* Gateway.bootstrapperOptions(BOOT_PORT, BOOT_IP)
      yield* Layer.build(Gateway.layerNoDeps(bootOptions).pipe(Layer.provide(env(BOOT_IP, Bootstrap.none))))
      for (let i = 1; i <= 8; i++) {
        yield* Layer.build(Gateway.layerNoDeps({ port: 49737, ephemeral: false, randomSeed: i }).pipe(Layer.provide(env(ipOf(i), join))))
      }
      const topic = yield* topicOf("effect face, simulated")

      const app = Effect.gen(function*() {
        const gateway = yield* Gateway
        yield* gateway.ready
        const kp = yield* gateway.keyPair()
        const announced = yield* gateway.announce(topic, kp).pipe(Stream.runCollect)
        const found = yield* gateway.lookup(topic).pipe(Stream.runCollect)
        const put = yield* gateway.immutablePut(new TextEncoder().encode("hello"))
        const got = yield* gateway.immutableGet(put.hash)
        const badTopic = yield* gateway.lookup(new Uint8Array(3)).pipe(Stream.runDrain, Effect.flip)
        const tooLarge = yield* gateway.immutablePut(new Uint8Array(5000)).pipe(Effect.flip)
        const badSeed = yield* gateway.keyPair(new Uint8Array(7)).pipe(Effect.flip)
        return { kp, bootstrap: gateway.bootstrap, announced, found, put, got, badTopic, tooLarge, badSeed }
      }).pipe(Effect.provide(Gateway.layerNoDeps({ randomSeed: 99 }).pipe(Layer.provide(env(ipOf(50), join)))))

      const r = yield* run(app, { maxMs: 60_000 })
      assert.deepStrictEqual(r.bootstrap.nodes, [{ host: BOOT_IP, port: BOOT_PORT }])
      // (replies of nodes that held no record for the topic carry no peers: none are streamed)
      assert.isTrue(Array.isArray(r.announced))
      const holders = r.found.filter((x) => x.peers.some((p) => hex(p.publicKey) === hex(r.kp.publicKey)))
      assert.isAbove(holders.length, 0)
      assert.isAbove(r.put.accepted, 0)
      assert.strictEqual(new TextDecoder().decode(r.got!.value), "hello")
      assert.strictEqual(r.badTopic._tag, "InvalidArgument")
      assert.strictEqual(r.tooLarge._tag, "ValueTooLarge")
      assert.strictEqual(r.badSeed._tag, "InvalidSeed")
    }))

  it.effect("relay: true: the relay's key, start and stats on the service; announced under the relay topic; peers connect through it", () =>
    Effect.gen(function*() {
      const net = Layer.succeed(SimNetwork, yield* SimNetwork.make({ latency: 20, jitter: 5, seed: 8 }))
      const env = (host: Parameters<typeof SimNetwork.host>[0], bootstrap: Layer.Layer<Bootstrap, unknown>) =>
        Layer.mergeAll(SimNetwork.host(host).pipe(Layer.provide(net)), Crypto.layerNoble, bootstrap)
      const join = Bootstrap.layer([`${BOOT_IP}:${BOOT_PORT}`]).pipe(Layer.provide(Dns.layerStatic({})))
      const bootOptions = yield* Gateway.bootstrapperOptions(BOOT_PORT, BOOT_IP)
      yield* Layer.build(Gateway.layerNoDeps(bootOptions).pipe(Layer.provide(env({ ip: BOOT_IP }, Bootstrap.none))))
      for (let i = 1; i <= 8; i++) {
        yield* Layer.build(Gateway.layerNoDeps({ port: 49737, ephemeral: false, randomSeed: i }).pipe(Layer.provide(env({ ip: ipOf(i) }, join))))
      }
      const service = (host: Parameters<typeof SimNetwork.host>[0], options: Parameters<typeof Gateway.layerNoDeps>[0]) =>
        Effect.map(Layer.build(Gateway.layerNoDeps({ connections: { effectTimers: true }, ...options }).pipe(Layer.provide(env(host, join)))), (c) => Context.get(c, Gateway))
      const relayNode = yield* service({ ip: ipOf(60) }, { port: 49737, randomSeed: 60, relay: { maxSessions: 4 } })
      const server = yield* service({ nat: "random" }, { randomSeed: 61 })
      const client = yield* service({ nat: "random" }, { randomSeed: 62 })
      const relay = relayNode.relay!
      assert.isNotNull(relay)
      assert.isNull(server.relay, "a node without the option relays nobody")
      assert.strictEqual(relay.publicKey.length, 32)
      const topic = yield* topicOf(RELAY_TOPIC_NAME)
      const serverKeyPair = yield* server.keyPair()

      const app = Effect.gen(function*() {
        yield* relay.started
        while ((yield* relay.announces) === 0) yield* Effect.sleep(100)
        // found under the relay topic by a plain node
        const found = yield* client.lookup(topic).pipe(Stream.runCollect)
        // a server and a client behind randomizing NATs (no punch can work) connect through it
        const listening = yield* server.listen(serverKeyPair)
        const served = yield* listening.connections.pipe(
          Stream.take(1),
          Stream.runForEach((c) => Effect.andThen(c.readable.pipe(Stream.runForEach((b) => c.write(b))), c.end)),
          Effect.forkScoped
        )
        const conn = yield* client.connect(serverKeyPair.publicKey, { relayThrough: relay.publicKey })
        yield* conn.write(new TextEncoder().encode("through the relay"))
        const echo = yield* conn.readable.pipe(Stream.take(1), Stream.runHead)
        yield* conn.end
        yield* Fiber.join(served)
        return { found, echo, path: conn.path, stats: yield* relay.stats }
      }).pipe(Effect.scoped)

      const r = yield* run(app, { maxMs: 120_000 })
      assert.isTrue(r.found.some((x) => x.peers.some((p) => hex(p.publicKey) === hex(relay.publicKey))), "the relay is announced under the relay topic")
      assert.strictEqual(r.path, "relayed")
      assert.strictEqual(new TextDecoder().decode(Option.getOrThrow(r.echo)), "through the relay")
      assert.strictEqual(r.stats.pairings.matched, 1)
      assert.strictEqual(hex(relay.service.publicKey), hex(relay.publicKey))
      // closed before the layers: unannounced while its node still runs (on virtual time here)
      yield* run(Effect.promise(() => relay.service.close()), { maxMs: 30_000 })
      const after = yield* run(client.lookup(topic).pipe(Stream.runCollect), { maxMs: 30_000 })
      assert.isFalse(after.some((x) => x.peers.some((p) => hex(p.publicKey) === hex(relay.publicKey))), "unannounced on close")
    }), { timeout: 120_000 })

  it.effect("a malformed bootstrap entry fails the layer with InvalidArgument; the default list follows OMEGA_BOOTSTRAP", () =>
    Effect.gen(function*() {
      const noDns = Dns.layerStatic({})
      const bad = yield* Layer.build(Bootstrap.layer(["nonsense"]).pipe(Layer.provide(noDns))).pipe(Effect.flip)
      assert.strictEqual(bad._tag, "InvalidArgument")
      // the test setup sets OMEGA_BOOTSTRAP="" (none): the default list is empty, nothing public is named
      const fallback = yield* Bootstrap.useSync((b) => b).pipe(Effect.provide(Bootstrap.layerDefault.pipe(Layer.provide(noDns))))
      assert.deepStrictEqual(fallback.nodes, [])
      // suggestedIP@name: the suggested address, and the name's when it resolves
      const resolved = yield* Bootstrap.make([...defaultBootstrap({ OMEGA_BOOTSTRAP: "127.0.0.1:1776, 10.0.0.5@dht.omega.test:49737" }), 7]).pipe(
        Effect.provide(Dns.layerStatic({ hosts: { "dht.omega.test": ["10.0.0.6"] } }))
      )
      assert.deepStrictEqual(resolved.nodes, [
        { host: "127.0.0.1", port: 1776 },
        { host: "10.0.0.5", port: 49737 },
        { host: "10.0.0.6", port: 49737 },
        { host: "127.0.0.1", port: 7 }
      ])
      // the Effect entry's keyPair is an Effect on the Crypto in context; the package root's is plain, like Gateway.keyPair
      const seed = new Uint8Array(32).fill(1)
      const kp = yield* keyPair(seed).pipe(Effect.provide(Crypto.layerNoble))
      assert.strictEqual(hex(rootKeyPair(seed).publicKey), hex(kp.publicKey))
      assert.strictEqual(hex(FacadeGateway.keyPair(seed).publicKey), hex(kp.publicKey))
    }))
})

/** A bootstrapper on a free port of 127.0.0.1: its port (the layer lives in the current scope). */
const udpBootstrapper = Effect.suspend(() => {
  const port = randomPort()
  return Effect.as(Layer.build(Gateway.bootstrapper(port, HOST, { host: HOST })), port)
}).pipe(Effect.retry({ times: 8, while: (e) => e._tag === "BindError" }))

describe("the Effect face on real UDP (127.0.0.1)", () => {
  it.live("Gateway.layer: announce, lookup, a mutable record and a connection between two services", () =>
    Effect.gen(function*() {
      const port = yield* udpBootstrapper
      const bootstrap = [`${HOST}:${port}`]
      for (let i = 0; i < 3; i++) yield* Layer.build(Gateway.layer({ bootstrap, host: HOST, ephemeral: false }))
      const server = Context.get(yield* Layer.build(Gateway.layer({ bootstrap, host: HOST })), Gateway)
      const topic = yield* topicOf("effect face, udp")

      const app = Effect.gen(function*() {
        const gateway = yield* Gateway
        yield* gateway.ready
        const kp = yield* gateway.keyPair()
        const announced = yield* gateway.announce(topic, kp).pipe(Stream.runCollect)
        const found = yield* gateway.lookup(topic).pipe(Stream.runCollect)
        yield* gateway.mutablePut(kp, new TextEncoder().encode("v1"), { seq: 1 })
        const got = yield* gateway.mutableGet(kp.publicKey)
        // a server on the other node echoes until the client ends; this one connects, writes, reads the echo
        const serverKeyPair = yield* server.keyPair()
        const listening = yield* server.listen(serverKeyPair)
        const served = yield* listening.connections.pipe(
          Stream.take(1),
          Stream.runForEach((c) => Effect.andThen(c.readable.pipe(Stream.runForEach((b) => c.write(b))), c.end)),
          Effect.forkScoped
        )
        const conn = yield* gateway.connect(serverKeyPair.publicKey)
        yield* conn.write(new TextEncoder().encode("ping"))
        const echo = yield* conn.readable.pipe(Stream.take(1), Stream.runHead)
        yield* conn.end
        yield* Fiber.join(served)
        return { kp, announced, found, got, echo, path: conn.path }
      }).pipe(Effect.scoped, Effect.provide(Gateway.layer({ bootstrap, host: HOST })), Effect.timeout("30 seconds"))

      const r = yield* app
      assert.isTrue(Array.isArray(r.announced))
      assert.isTrue(r.found.some((x) => x.peers.some((p) => hex(p.publicKey) === hex(r.kp.publicKey))))
      assert.strictEqual(r.got?.seq, 1)
      assert.strictEqual(new TextDecoder().decode(r.got!.value), "v1")
      assert.strictEqual(new TextDecoder().decode(Option.getOrThrow(r.echo)), "ping")
    }), 60_000)
})
