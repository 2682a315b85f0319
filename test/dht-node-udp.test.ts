import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import { makeNode } from "../src/actors/routing/driver.js"
import { Crypto } from "../src/layers/Crypto.js"
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
