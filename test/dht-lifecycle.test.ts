/**
 * Node lifecycle on the simulated network and TestClock: suspend / resume
 * (sockets rebound on the same ports, wakeup, refresh), network-change
 * events, destroy.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, PubSub, Scope } from "effect"
import { TestClock } from "effect/testing"
import { makeNode } from "../src/actors/routing/driver.js"
import type { DhtEvent } from "../src/actors/routing/node.js"
import { GatewayService } from "../src/api/GatewayService.js"
import { Crypto } from "../src/layers/Crypto.js"
import { makeFast } from "../src/layers/crypto/fast.js"
import { SimNetwork } from "../src/layers/transport/sim.js"
import { Transport } from "../src/layers/Transport.js"

describe("node lifecycle", () => {
  it.effect("suspend drops traffic and fails requests; resume rebinds the same ports, wakes up and refreshes", () =>
    Effect.gen(function*() {
      const crypto = yield* Effect.promise(() => makeFast())
      const net = yield* SimNetwork.make({ latency: 5, seed: 9 })
      const start = (ip: string, config: object) =>
        Effect.gen(function*() {
          const host = yield* net.addHost({ ip })
          return yield* makeNode({ ...config, randomSeed: ip.length }).pipe(Effect.provideService(Transport, host), Effect.provideService(Crypto, crypto))
        })
      const boot = yield* start("20.0.0.1", GatewayService.bootstrapperConfig(49737, "20.0.0.1"))
      const nodes = []
      for (let i = 2; i < 8; i++) nodes.push(yield* start(`20.0.0.${i}`, { ephemeral: false, port: 49737, bootstrap: ["20.0.0.1:49737"] }))
      // whenReady: a waiter registered before the node bootstrapped runs once it has; one after, at once
      const readyCalls: Array<string> = []
      nodes[0]!.whenReady(() => readyCalls.push("early"))
      assert.deepStrictEqual(readyCalls, [])
      yield* TestClock.adjust(10_000)
      const a = nodes[0]!
      assert.isTrue(a.core.bootstrapped)
      assert.deepStrictEqual(readyCalls, ["early"])
      a.whenReady(() => readyCalls.push("late"))
      assert.deepStrictEqual(readyCalls, ["early", "late"])
      const events: Array<string> = []
      a.onEvent((e: DhtEvent) => events.push(e._tag))
      // the Effect face of the same events (its PubSub is made on first use)
      const sub = yield* PubSub.subscribe(a.events)
      const ports = [a.sockets().server.local.port, a.sockets().client.local.port]

      yield* a.suspend
      assert.isTrue(a.core.suspended)
      // while suspended the node drops every datagram: a ping to it times out
      const pinged = yield* Effect.forkChild(Effect.flip(nodes[1]!.ping({ host: "20.0.0.2", port: a.sockets().server.local.port })), { startImmediately: true })
      yield* TestClock.adjust(10_000)
      const err = yield* Fiber.join(pinged)
      assert.strictEqual(err.code, "REQUEST_TIMEOUT")
      assert.include(events, "suspend")
      yield* a.resume
      assert.isFalse(a.core.suspended)
      assert.deepStrictEqual([a.sockets().server.local.port, a.sockets().client.local.port], ports)
      yield* TestClock.adjust(10_000)
      assert.include(events, "resume")
      assert.include(events, "wakeup")
      const ping = yield* Effect.forkChild(a.ping({ host: "20.0.0.1", port: 49737 }), { startImmediately: true })
      yield* TestClock.adjust(1_000)
      const res = yield* Fiber.join(ping)
      assert.strictEqual(res.error, 0)
      // and others reach it again
      const back = yield* Effect.forkChild(nodes[1]!.ping({ host: "20.0.0.2", port: a.sockets().server.local.port }), { startImmediately: true })
      yield* TestClock.adjust(1_000)
      assert.strictEqual((yield* Fiber.join(back)).error, 0)
      const published = (yield* PubSub.takeAll(sub)).map((e) => e._tag)
      assert.include(published, "suspend")
      assert.deepStrictEqual(published, events)
      void boot
    }).pipe(Effect.scoped), { timeout: 60_000 })

  it.effect("an interface change emits network-change and network-update", () =>
    Effect.gen(function*() {
      const crypto = yield* Effect.promise(() => makeFast())
      const net = yield* SimNetwork.make({ latency: 5, seed: 10 })
      const host = yield* net.addHost({ ip: "20.0.1.1" })
      let addresses = ["192.168.1.10"]
      const transport = Transport.of({ bind: host.bind, open: host.open, localAddresses: () => addresses })
      const scope = yield* Scope.make()
      const n = yield* makeNode({ bootstrap: [] }).pipe(Effect.provideService(Transport, transport), Effect.provideService(Crypto, crypto), Scope.provide(scope))
      const seen: Array<DhtEvent> = []
      n.onEvent((e) => seen.push(e))
      yield* TestClock.adjust(6_000)
      assert.isFalse(seen.some((e) => e._tag === "network-change"))
      addresses = ["192.168.1.10", "10.8.0.2"]
      yield* TestClock.adjust(6_000)
      const change = seen.find((e) => e._tag === "network-change")
      assert.deepStrictEqual(change, { _tag: "network-change", interfaces: ["192.168.1.10", "10.8.0.2"] })
      assert.isTrue(seen.some((e) => e._tag === "network-update"))
      // destroy: later requests fail with NODE_DESTROYED, queries end at once
      yield* n.destroy
      const err = yield* Effect.flip(n.ping({ host: "20.0.1.2", port: 1 }))
      assert.strictEqual(err.code, "NODE_DESTROYED")
      yield* Scope.close(scope, Exit.void)
    }), { timeout: 60_000 })
})
