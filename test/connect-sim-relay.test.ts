/**
 * Blind relays on the simulated network (connect.md §6.8): an open peer
 * runs a blind relay; peers that cannot punch (random ↔ random) connect
 * through it when one of them names it (`relayThrough`), and a relayed
 * connection whose punch succeeds later (consistent ↔ random: the relay
 * pairs within about a second, random probes take seconds) upgrades to the
 * punched path and keeps carrying bytes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"
import { ServerCore } from "../src/actors/session/server.js"
import { serveBlindRelay } from "../src/actors/session/relay-connection.js"
import { advanceUntil, buildConnectSim, connect, drive, exchange, listen, marked, serverSocketOf } from "./support/connect-sim.js"
import type { ConnectSim, SimPeer } from "./support/connect-sim.js"

/** An open peer serving as a blind relay: every connection to its key becomes a relay session. */
const relayOn = (sim: ConnectSim, options: Parameters<typeof serveBlindRelay>[1] = {}) =>
  Effect.gen(function*() {
    const peer: SimPeer = yield* sim.addPeer("open", { name: "relay" })
    const relay = serveBlindRelay(peer.conn, options)
    const core = new ServerCore(peer.conn, {}, (socket) => {
      socket.on("error", () => {})
      relay.accept(socket)
    })
    const exit = yield* drive(core.listen(peer.keyPair), 60_000)
    assert.isTrue(Option.isSome(exit) && Exit.isSuccess(exit.value), "the relay listens")
    return { peer, relay }
  })

/** A simulated network with a relay, a server behind `serverNat` listening, and a client behind `clientNat`. */
const relayedPair = (seed: number, serverNat: "random" | "consistent", clientNat: "random", relayOptions: Parameters<typeof serveBlindRelay>[1] = {}) =>
  Effect.gen(function*() {
    const sim = yield* buildConnectSim({ seed })
    const { peer: relayPeer, relay } = yield* relayOn(sim, relayOptions)
    const sp = yield* sim.addPeer(serverNat, { name: "server" })
    const cp = yield* sim.addPeer(clientNat, { name: "client" })
    const server = yield* listen(sp)
    return { sim, relayPeer, relay, cp, server }
  })

describe("blind relays on the simulated network", () => {
  it.effect("random <-> random connects through a relay the client names; bytes both ways", () =>
    Effect.gen(function*() {
      const { sim, relayPeer, relay, cp, server } = yield* relayedPair(3, "random", "random")
      const { dial, outcome } = yield* connect(sim, cp, server, { relayThrough: relayPeer.keyPair.publicKey, maxMs: 30_000 })
      assert.isTrue(outcome.ok, `the dial opens (${outcome.code ?? ""})`)
      assert.strictEqual(dial.socket.path, "relayed")
      const serverSide = serverSocketOf(dial)
      assert.isNotNull(serverSide)
      assert.strictEqual(serverSide!.path, "relayed")
      const ex = yield* exchange(sim, dial.socket, serverSide!, 32 * 1024)
      assert.isTrue(ex.upIntact && ex.downIntact, "bytes both ways through the relay")
      assert.isAtLeast(relay.stats().udx.forwarded, 1)
    }), { timeout: 60_000 })

  it.effect("the relay dials stay off the handshake's path: the client's begins once its handshake has left, the server's once its reply has", () =>
    Effect.gen(function*() {
      const { sim, relayPeer, cp, server } = yield* relayedPair(6, "random", "random")
      const { value: { outcome }, labels } = yield* marked(connect(sim, cp, server, { relayThrough: relayPeer.keyPair.publicKey, maxMs: 30_000 }))
      assert.isTrue(outcome.ok, `the dial opens (${outcome.code ?? ""})`)
      // three dials: the client's to the server, then the client's and the server's to the relay
      const dials = labels.flatMap((l, i) => (l === "dial" ? [i] : []))
      assert.strictEqual(dials.length, 3, labels.join(" "))
      const firstHandshake = labels.indexOf("hs.send")
      assert.isTrue(firstHandshake > dials[0]! && firstHandshake < dials[1]!, `the client's relay dial follows its first handshake: ${labels.join(" ")}`)
      // (the relay's own server marks S.* too: the server's relay dial comes right after its reply)
      assert.strictEqual(labels[dials[2]! - 1], "S.reply", `the server's relay dial follows its reply: ${labels.join(" ")}`)
    }), { timeout: 60_000 })

  it.effect("consistent server <- random client with a relay: relayed first, then upgraded to the punched path", () =>
    Effect.gen(function*() {
      const { sim, relayPeer, cp, server } = yield* relayedPair(4, "consistent", "random")
      const upgrades: Array<string> = []
      const { dial, outcome } = yield* connect(sim, cp, server, { relayThrough: relayPeer.keyPair.publicKey, maxMs: 30_000 })
      assert.isTrue(outcome.ok, `the dial opens (${outcome.code ?? ""})`)
      dial.socket.on("upgrade", (path: string) => upgrades.push(path))
      const relayedFirst = dial.socket.path === "relayed"
      // the random-probe punch goes on while relayed
      yield* advanceUntil(() => dial.socket.path === "punched", 60_000, 50)
      assert.strictEqual(dial.socket.path, "punched", "the connection ends up punched")
      if (relayedFirst) assert.deepStrictEqual(upgrades, ["punched"])
      const serverSide = serverSocketOf(dial)
      assert.isNotNull(serverSide)
      yield* advanceUntil(() => serverSide!.path !== "relayed", 10_000, 50)
      assert.notStrictEqual(serverSide!.path, "relayed", "the server followed the upgrade")
      const ex = yield* exchange(sim, dial.socket, serverSide!, 32 * 1024)
      assert.isTrue(ex.upIntact && ex.downIntact, "bytes both ways after the upgrade")
      console.log(`connect-sim-relay: consistent <- random with relay: opened ${relayedFirst ? "relayed" : dial.socket.path} at ${outcome.ms} ms, now ${dial.socket.path}`)
    }), { timeout: 90_000 })

  it.effect("random <-> random, the relay has no free pair slot: the dial fails (the punch's and the relay's reasons in its report)", () =>
    Effect.gen(function*() {
      const { sim, relayPeer, relay, cp, server } = yield* relayedPair(5, "random", "random", { maxPendingPerSession: 0 })
      const { dial, outcome } = yield* connect(sim, cp, server, { relayThrough: relayPeer.keyPair.publicKey, maxMs: 60_000 })
      assert.isFalse(outcome.ok, "no path")
      assert.strictEqual(outcome.code, "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS")
      const attempts = outcome.report?.attempts ?? []
      assert.isTrue(attempts.some((a) => a.path === "relay" && a.outcome === "RELAY_ABORTED"), "the report says the relay refused")
      assert.isAtLeast(relay.stats().rejected.pendingPerSession, 1)
      assert.strictEqual(server.opened.size, 0)
      assert.isTrue(dial.socket.destroyed)
    }), { timeout: 90_000 })
})
