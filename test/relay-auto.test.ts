/**
 * Relays nobody configures (src/api/relays.ts) on the simulated network: a
 * relay announces its key under the relay topic; `relayThrough: 'auto'`
 * (here `clientAutoRelay`, what the facade's option sets) finds it when a
 * punch cannot work (random <-> random), and the relay's caps hold end to
 * end (a relayed connection's lifetime, a client's byte rate). Also the cap
 * on relays a server dials for its clients (hyperdht#296).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"
import { MAX_CLIENT_RELAY_DIALS_PER_KEY } from "../src/actors/session/server.js"
import { clientAutoRelay, relayDirectoryOf } from "../src/api/relays.js"
import { advanceUntil, beginDial, buildConnectSim, connect, drive, exchange, listen, serverSocketOf } from "./support/connect-sim.js"
import type { ConnectSim } from "./support/connect-sim.js"
import { announcedRelay } from "./support/relay-sim.js"

const randomPair = (sim: ConnectSim) =>
  Effect.gen(function*() {
    const sp = yield* sim.addPeer("random", { name: "server" })
    const cp = yield* sim.addPeer("random", { name: "client" })
    const server = yield* listen(sp)
    return { sp, cp, server }
  })

describe("relayThrough 'auto' on the simulated network", () => {
  it.effect("random <-> random: the punch cannot work, the dial is redone through a relay found under the relay topic; bytes both ways", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 11 })
      const { peer: relayPeer, relay } = yield* announcedRelay(sim)
      const { cp, server } = yield* randomPair(sim)
      const auto = clientAutoRelay(cp.conn, server.peer.keyPair.publicKey, cp.keyPair.publicKey)
      const { dial, outcome } = yield* connect(sim, cp, server, { ...auto, maxMs: 30_000 })
      assert.isTrue(outcome.ok, `the dial opens (${outcome.code ?? ""})`)
      assert.strictEqual(dial.socket.path, "relayed")
      assert.deepStrictEqual([...dial.socket.relayedVia!], [...relayPeer.keyPair.publicKey])
      assert.strictEqual(cp.conn.stats.relaying.fallbacks, 1, "one fallback after the punch failed")
      const serverSide = serverSocketOf(dial)
      assert.isNotNull(serverSide)
      const ex = yield* exchange(sim, dial.socket, serverSide!, 64 * 1024)
      assert.isTrue(ex.upIntact && ex.downIntact, "bytes both ways through the relay")
      assert.isAtLeast(relay.stats().udx.forwarded, 10)
      console.log(`relay-auto: random <-> random through the auto relay: opened at ${outcome.ms} ms (virtual)`)

      // the client knows it is behind a randomizing NAT and the directory is warm: the next
      // dial offers the relay in its first handshake, no fallback needed
      assert.isTrue(cp.handle.core.randomized, "the client knows its NAT randomizes")
      const again = yield* connect(sim, cp, server, { ...auto, maxMs: 30_000 })
      assert.isTrue(again.outcome.ok, `the second dial opens (${again.outcome.code ?? ""})`)
      assert.strictEqual(again.dial.socket.path, "relayed")
      assert.strictEqual(cp.conn.stats.relaying.fallbacks, 1, "no second fallback: the relay was offered up front")
      assert.isBelow(again.outcome.ms, outcome.ms, "faster than the first (no failed round)")
    }), { timeout: 90_000 })

  it.effect("random <-> random with no relay announced: HOLEPUNCH_DOUBLE_RANDOMIZED_NATS within 1 s, naming both classes and the missing relay", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 12 })
      const { cp, server } = yield* randomPair(sim)
      const auto = clientAutoRelay(cp.conn, server.peer.keyPair.publicKey, cp.keyPair.publicKey)
      const { dial, outcome } = yield* connect(sim, cp, server, { ...auto, maxMs: 30_000 })
      assert.isFalse(outcome.ok)
      assert.strictEqual(outcome.code, "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS")
      assert.isAtMost(outcome.ms, 1000)
      const detail = dial.error?.detail ?? ""
      assert.match(detail, /random/i)
      assert.match(detail, /no relay found/)
      assert.strictEqual(cp.conn.stats.relaying.fallbacks, 1)
      assert.strictEqual(server.opened.size, 0)
    }), { timeout: 60_000 })

  it.effect("the directory never hands out the remote's key or ours", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 13 })
      const { peer: relayPeer } = yield* announcedRelay(sim)
      const cp = yield* sim.addPeer("consistent", { name: "client" })
      const dir = relayDirectoryOf(cp.conn)
      const found = yield* drive(dir.find([]), 30_000)
      assert.isTrue(Option.isSome(found) && Exit.isSuccess(found.value))
      const key = Option.getOrThrow(found)
      assert.isTrue(Exit.isSuccess(key) && key.value !== null && key.value.length === 32)
      assert.deepStrictEqual([...(key as Exit.Success<Uint8Array>).value], [...relayPeer.keyPair.publicKey])
      const excluded = yield* drive(dir.find([relayPeer.keyPair.publicKey]), 30_000)
      const none = Option.getOrThrow(excluded)
      assert.isTrue(Exit.isSuccess(none) && none.value === null)
    }), { timeout: 60_000 })
})

describe("relay caps end to end", () => {
  it.effect("a relayed connection ends at the relay's lifetime cap: both peers' streams reset at once (not a timeout)", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 14 })
      const { relay } = yield* announcedRelay(sim, { maxPairLifetime: 20_000 })
      const { cp, server } = yield* randomPair(sim)
      const auto = clientAutoRelay(cp.conn, server.peer.keyPair.publicKey, cp.keyPair.publicKey)
      const { dial, outcome } = yield* connect(sim, cp, server, { ...auto, maxMs: 30_000 })
      assert.isTrue(outcome.ok, `the dial opens (${outcome.code ?? ""})`)
      const serverSide = serverSocketOf(dial)!
      const openedAt = sim.now()
      yield* advanceUntil(() => dial.socket.destroyed && serverSide.destroyed, 40_000, 50)
      assert.isTrue(dial.socket.destroyed && serverSide.destroyed, "both ends closed")
      // the pair lives 20 s from its match; both ends close within a second of that, long before a UDX timeout
      assert.isBelow(sim.now() - openedAt, 21_000)
      assert.strictEqual(relay.stats().pairings.lifetimeEnded, 1)
      assert.strictEqual(relay.stats().udx.aborted, 1)
    }), { timeout: 90_000 })

  it.effect("a relay client's byte rate is capped; its bytes still all arrive, in order", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 15 })
      const rate = 64 * 1024
      const { relay } = yield* announcedRelay(sim, { maxBytesPerSecond: rate })
      const { cp, server } = yield* randomPair(sim)
      const auto = clientAutoRelay(cp.conn, server.peer.keyPair.publicKey, cp.keyPair.publicKey)
      const { dial, outcome } = yield* connect(sim, cp, server, { ...auto, maxMs: 30_000 })
      assert.isTrue(outcome.ok, `the dial opens (${outcome.code ?? ""})`)
      const serverSide = serverSocketOf(dial)!
      const size = 384 * 1024
      const start = sim.now()
      const ex = yield* exchange(sim, dial.socket, serverSide, size, 7, 120_000)
      assert.isTrue(ex.upIntact && ex.downIntact, "every byte, in order, both ways")
      const seconds = (sim.now() - start) / 1000
      // each side is held to `rate`: the exchange cannot be faster than size / rate
      assert.isAtLeast(seconds, size / rate - 1.5)
      assert.isAbove(relay.stats().udx.rateLimited, 0)
      console.log(`relay-auto: ${size / 1024} KiB each way through a relay capped at ${rate / 1024} KiB/s per client: ${seconds.toFixed(1)} s (virtual), ${relay.stats().udx.rateLimited} packets held back`)
    }), { timeout: 120_000 })
})

describe("relays a server dials for its clients (hyperdht#296)", () => {
  it.effect(`one client key gets at most ${MAX_CLIENT_RELAY_DIALS_PER_KEY} relay dials at once; the rest are refused and counted, the dials go on without`, () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 16 })
      const sp = yield* sim.addPeer("consistent", { name: "server" })
      const cp = yield* sim.addPeer("consistent", { name: "client" })
      const server = yield* listen(sp)
      // a relay key nobody serves: each relay dial the server makes runs until it fails
      const bogus = sim.crypto.keyPair()!.publicKey
      const dials = Array.from({ length: 5 }, () => beginDial(sim, cp, server, { relayThrough: bogus }))
      // the server's dials in flight (its relay dials are its only dials here), sampled every step
      const c = sp.conn.stats.connects
      let peak = 0
      yield* advanceUntil(() => {
        peak = Math.max(peak, c.started - c.succeeded - c.failed)
        return dials.every((d) => d.openedAt !== null || d.failedAt !== null)
      }, 30_000, 5)
      assert.isAtMost(peak, MAX_CLIENT_RELAY_DIALS_PER_KEY, "never more relay dials for one client at once")
      // how many overlap depends on timing; at least the ones over the cap at the start were refused
      const refused = sp.conn.stats.server.clientRelaysRefused
      assert.isAtLeast(refused, 1)
      assert.strictEqual(refused + c.started, 5, "every client relay was either dialled or refused")
      assert.isTrue(dials.every((d) => d.openedAt !== null), "every dial still opened (punched)")
    }), { timeout: 90_000 })
})
