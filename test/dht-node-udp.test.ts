import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Scope, Stream } from "effect"
import * as dgram from "node:dgram"
import * as v8 from "node:v8"
import { runInNewContext } from "node:vm"
import { makeNode } from "../src/actors/routing/driver.js"
import { Gateway } from "../src/index.js"
import { Crypto } from "../src/layers/Crypto.js"
import { BindError } from "../src/layers/Transport.js"
import { UdpTransport } from "../src/layers/transport/udp.js"

const env = Layer.mergeAll(UdpTransport.layer, Crypto.layerNoble)

describe("dht node actor over real UDP (127.0.0.1)", () => {
  it.live("a node bootstraps off a bootstrapper; findNode and ping work", () =>
    Effect.gen(function*() {
      const port = 20000 + Math.floor(Math.random() * 20000)
      // bootstrapper semantics: persistent at once, our public address sampled by hand
      const boot = yield* makeNode({ host: "127.0.0.1", port, anyPort: false, ephemeral: false, firewalled: false, bootstrap: [], natSample: { host: "127.0.0.1", port } })
      const bootAddr = boot.sockets().server.local
      assert.strictEqual(bootAddr.port, port)
      const nodes = []
      for (let i = 0; i < 5; i++) {
        nodes.push(yield* makeNode({ host: "127.0.0.1", bootstrap: [`127.0.0.1:${bootAddr.port}`] }))
      }
      for (const n of nodes) yield* n.ready.pipe(Effect.timeout("10 seconds"))
      const res = yield* nodes[0]!.ping(bootAddr)
      assert.strictEqual(res.error, 0)
      const replies = yield* Stream.runCollect(nodes[1]!.findNode(new Uint8Array(32).fill(7))).pipe(Effect.timeout("20 seconds"))
      assert.isAbove(replies.length, 0)
      const st = yield* nodes[2]!.status
      assert.isTrue(st.bootstrapped)
    }).pipe(Effect.provide(env)), { timeout: 60_000 })
})

describe("a closed node is released", () => {
  it.live("the shared timer's pending alarms do not keep a closed node (and its sockets' objects) alive", () =>
    Effect.gen(function*() {
      v8.setFlagsFromString("--expose-gc")
      const gc = runInNewContext("gc") as () => void
      const port = 20000 + Math.floor(Math.random() * 20000)
      yield* makeNode({ host: "127.0.0.1", port, anyPort: false, ephemeral: false, firewalled: false, bootstrap: [], natSample: { host: "127.0.0.1", port } })
      const refs: Array<WeakRef<object>> = []
      const scope = yield* Scope.make()
      // only weak references leave this effect (no generator local keeps a node)
      const start = makeNode({ host: "127.0.0.1", bootstrap: [`127.0.0.1:${port}`] }).pipe(
        Effect.tap((n) => n.ready.pipe(Effect.timeout("10 seconds"))),
        Effect.map((n) => void refs.push(new WeakRef(n), new WeakRef(n.core))),
        Scope.provide(scope)
      )
      for (let i = 0; i < 5; i++) yield* start
      assert.strictEqual(refs.length, 10)
      yield* Scope.close(scope, Exit.void)
      // the nodes' next alarms and interface polls are still seconds away in
      // the shared timer: only they could still reach the nodes now
      let alive = refs.length
      for (let i = 0; i < 20 && alive > 0; i++) {
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 10)))
        gc()
        alive = refs.filter((r) => r.deref() !== undefined).length
      }
      assert.strictEqual(alive, 0)
    }).pipe(Effect.provide(env)), { timeout: 60_000 })
})

describe("node start paths", () => {
  it("the facade: a bootstrapper whose port is taken rejects ready() with a BindError and emits it as 'error'", async () => {
    // the default crypto loaded: the node starts in its constructor (the path without an Effect run)
    await Crypto.loadDefault()
    const blocker = dgram.createSocket("udp4")
    await new Promise<void>((r) => blocker.bind(0, "127.0.0.1", () => r()))
    const port = blocker.address().port
    try {
      const boot = Gateway.bootstrapper(port, "127.0.0.1", { host: "127.0.0.1" })
      const emitted = new Promise<unknown>((r) => boot.once("error", r))
      const failed = await boot.ready().then(() => null, (e: unknown) => e)
      assert.instanceOf(failed, BindError)
      assert.strictEqual((failed as BindError).port, port)
      assert.strictEqual(await emitted, failed)
      await boot.destroy()
    } finally {
      blocker.close()
    }
  })

  it("the facade: options the node cannot take reject ready() and emit 'error', never throw from the constructor", async () => {
    await Crypto.loadDefault()
    const bad = { nodes: [null as unknown as { host: string; port: number }], host: "127.0.0.1" }
    let node: Gateway | null = null
    assert.doesNotThrow(() => {
      node = new Gateway(bad)
    })
    const n = node as unknown as Gateway
    const emitted = new Promise<unknown>((r) => n.once("error", r))
    const failed = await n.ready().then(() => null, (e: unknown) => e)
    assert.instanceOf(failed, TypeError)
    assert.strictEqual(await emitted, failed)
    await n.destroy()
  })

  it("the facade: a node with a hostname in its bootstrap list resolves it, then bootstraps", async () => {
    const port = 20000 + Math.floor(Math.random() * 20000)
    const boot = Gateway.bootstrapper(port, "127.0.0.1", { host: "127.0.0.1" })
    const node = new Gateway({ bootstrap: [`localhost:${port}`], host: "127.0.0.1" })
    try {
      await boot.ready()
      await node.ready()
      assert.isTrue(node.bootstrapped)
      assert.deepStrictEqual(node.toArray().map((n) => n.port), [port])
    } finally {
      await node.destroy()
      await boot.destroy()
    }
  }, 30_000)

  it.live("makeNode: a taken port fails with BindError and leaves the scope nothing to close", () =>
    Effect.gen(function*() {
      const blocker = dgram.createSocket("udp4")
      yield* Effect.promise(() => new Promise<void>((r) => blocker.bind(0, "127.0.0.1", () => r())))
      const port = blocker.address().port
      const scope = yield* Scope.make()
      const exit = yield* makeNode({ host: "127.0.0.1", port, anyPort: false }).pipe(Scope.provide(scope), Effect.exit)
      blocker.close()
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.instanceOf(Cause.squash(exit.cause), BindError)
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(env)))
})
