/**
 * VirtualClock: TestClock's semantics (time moves only when adjusted,
 * sleepers wake in time order, work a wake-up schedules runs before time
 * moves on) with plain callback timers for the simulated network.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Fiber, Queue } from "effect"
import { VirtualClock } from "../src/layers/VirtualClock.js"

const onVirtualClock = <A, E>(self: Effect.Effect<A, E, VirtualClock>) => Effect.provide(self, VirtualClock.layer())

describe("VirtualClock", () => {
  it.effect("moves only when adjusted; sleepers and callbacks wake in (time, order) order at their time", () =>
    onVirtualClock(Effect.gen(function*() {
      const clock = yield* VirtualClock
      const log: Array<string> = []
      const now = () => clock.currentTimeMillisUnsafe()
      const sleeper = (name: string, ms: number) => Effect.forkChild(Effect.andThen(Effect.sleep(ms), Effect.sync(() => log.push(`${name}@${now()}`))))
      const f1 = yield* sleeper("a", 30)
      const f2 = yield* sleeper("b", 10)
      const f3 = yield* sleeper("c", 10)
      yield* Effect.yieldNow
      clock.schedule(10, (at) => log.push(`cb@${at}:${now()}`))
      clock.schedule(25, (at) => log.push(`cb@${at}:${now()}`))
      assert.strictEqual(now(), 0)
      yield* VirtualClock.adjust(9)
      assert.deepStrictEqual(log, [])
      assert.strictEqual(now(), 9)
      yield* VirtualClock.adjust(16)
      assert.deepStrictEqual(log, ["b@10", "c@10", "cb@10:10", "cb@25:25"])
      assert.strictEqual(now(), 25)
      yield* VirtualClock.adjust(100)
      assert.deepStrictEqual(log.slice(4), ["a@30"])
      assert.strictEqual(now(), 125)
      assert.strictEqual(yield* Clock.currentTimeMillis, 125)
      for (const f of [f1, f2, f3]) yield* Fiber.join(f)
    })))

  it.effect("runs what a wake-up schedules (and what that schedules) before time moves on", () =>
    onVirtualClock(Effect.gen(function*() {
      const clock = yield* VirtualClock
      const q = yield* Queue.unbounded<number>()
      const seen: Array<string> = []
      // a consumer two hops away from the sleeper: it must see time 10, not 20
      const relay = yield* Queue.unbounded<number>()
      yield* Effect.forkChild(Effect.forever(Effect.flatMap(Queue.take(q), (n) => Queue.offer(relay, n))))
      yield* Effect.forkChild(Effect.forever(Effect.flatMap(Queue.take(relay), (n) => Effect.sync(() => seen.push(`${n}@${clock.currentTimeMillisUnsafe()}`)))))
      yield* Effect.forkChild(Effect.andThen(Effect.sleep(10), Queue.offer(q, 1)))
      yield* Effect.forkChild(Effect.andThen(Effect.sleep(20), Queue.offer(q, 2)))
      clock.schedule(15, () => Queue.offerUnsafe(q, 3))
      yield* VirtualClock.adjust(30)
      assert.deepStrictEqual(seen, ["1@10", "3@15", "2@20"])
    })))

  it.effect("an interrupted sleeper does not wake; a zero sleep does not wait", () =>
    onVirtualClock(Effect.gen(function*() {
      const woke = yield* Deferred.make<void>()
      const f = yield* Effect.forkChild(Effect.andThen(Effect.sleep(50), Deferred.succeed(woke, undefined)))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(f)
      yield* VirtualClock.adjust(100)
      assert.isFalse(yield* Deferred.isDone(woke))
      yield* Effect.sleep(0)
      assert.strictEqual((yield* VirtualClock).currentTimeMillisUnsafe(), 100)
    })))
})
