/**
 * The Effect face of Flock over real UDP on 127.0.0.1: `Flock.layer()` over
 * `Gateway.layer(...)`, composed the way an Effect app does; connections as
 * a Stream of (connection, peerInfo); a join is a scoped resource (its
 * Scope closing leaves the topic, unannouncing).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Stream } from "effect"
import { Flock, Gateway } from "../src/effect.js"
import { HOST, randomPort } from "./support/live.js"

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const text = (s: string) => new TextEncoder().encode(s)

const udpBootstrapper = Effect.suspend(() => {
  const port = randomPort()
  return Effect.as(Layer.build(Gateway.bootstrapper(port, HOST, { host: HOST })), port)
}).pipe(Effect.retry({ times: 8, while: (e) => e._tag === "BindError" }))

describe("Flock's Effect face on real UDP (127.0.0.1)", () => {
  it.live("yield* Flock over Gateway.layer: a server-mode join and a client-mode join meet; a message through; the join's Scope leaves the topic", () =>
    Effect.gen(function*() {
      const port = yield* udpBootstrapper
      const bootstrap = [`${HOST}:${port}`]
      for (let i = 0; i < 3; i++) yield* Layer.build(Gateway.layer({ bootstrap, host: HOST, ephemeral: false }))
      const topic = new Uint8Array(32).fill(0x42)
      const layer = () => Flock.layer({ backoffs: [100, 200, 300, 400], jitter: 0 }).pipe(Layer.provideMerge(Gateway.layer({ bootstrap, host: HOST })))

      // the server side: its own Flock, joined in server mode, answers the first connection
      const serverCtx = yield* Layer.build(layer())
      const serverFlock = Context.get(serverCtx, Flock)
      const served = yield* serverFlock.connections.pipe(
        Stream.take(1),
        Stream.runForEach(({ connection, peer }) => Effect.andThen(connection.write(text(`hello ${hex(peer.publicKey).slice(0, 8)}`)), connection.end)),
        Effect.forkScoped
      )
      const serverJoin = yield* serverFlock.join(topic, { server: true, client: false })
      assert.isTrue(yield* serverJoin.flushed)

      // the client side, as an app writes it
      const got = yield* Effect.gen(function*() {
        const flock = yield* Flock
        const first = yield* flock.connections.pipe(Stream.take(1), Stream.runHead, Effect.forkScoped)
        yield* flock.join(topic, { server: false, client: true })
        yield* flock.flush
        const c = yield* Fiber.join(first)
        assert.isTrue(c._tag === "Some")
        const conn = c._tag === "Some" ? c.value : null
        const bytes = yield* conn!.connection.readable.pipe(Stream.runCollect)
        return {
          message: new TextDecoder().decode(Buffer.concat(Array.from(bytes))),
          server: hex(conn!.peer.publicKey),
          direction: conn!.direction,
          me: hex(flock.keyPair.publicKey)
        }
      }).pipe(Effect.scoped, Effect.provide(layer()), Effect.timeout("30 seconds"))

      yield* Fiber.join(served)
      assert.strictEqual(got.server, hex(serverFlock.keyPair.publicKey))
      assert.strictEqual(got.direction, "outbound")
      assert.strictEqual(got.message, `hello ${got.me.slice(0, 8)}`)
      // the client's scope closed: its Flock left the topic; the server's join is still there
      assert.isTrue(serverFlock.runtime.discoveries.size === 1)
    }).pipe(Effect.scoped), 60_000)

  it.live("a defect in the Flock's dial-queue actor fails the connections Stream with a typed FlockError (ACTOR_FAILED)", () =>
    Effect.gen(function*() {
      const port = yield* udpBootstrapper
      const bootstrap = [`${HOST}:${port}`]
      for (let i = 0; i < 3; i++) yield* Layer.build(Gateway.layer({ bootstrap, host: HOST, ephemeral: false }))
      const topic = new Uint8Array(32).fill(0x43)
      const serverCtx = yield* Layer.build(Flock.layer().pipe(Layer.provideMerge(Gateway.layer({ bootstrap, host: HOST }))))
      const serverFlock = Context.get(serverCtx, Flock)
      assert.isTrue(yield* (yield* serverFlock.join(topic, { server: true, client: false })).flushed)
      let armed = false
      // the dial queue draws from `random` when it picks a peer: it throws once armed
      const random = () => {
        if (armed) throw new Error("injected defect")
        return 0.5
      }
      const failure = yield* Effect.gen(function*() {
        const flock = yield* Flock
        const ended = yield* flock.connections.pipe(Stream.runDrain, Effect.flip, Effect.forkScoped)
        armed = true
        yield* flock.join(topic, { server: false, client: true })
        yield* flock.joinPeer(serverFlock.keyPair.publicKey)
        return yield* Fiber.join(ended)
      }).pipe(Effect.scoped, Effect.provide(Flock.layer({ random }).pipe(Layer.provideMerge(Gateway.layer({ bootstrap, host: HOST })))), Effect.timeout("20 seconds"))
      assert.strictEqual(failure._tag, "FlockError")
      assert.strictEqual(failure.code, "ACTOR_FAILED")
    }).pipe(Effect.scoped), 60_000)
})

