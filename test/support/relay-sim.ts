/**
 * A blind relay on the simulated network, announced under the relay topic
 * (what a node started with `relay: true` does; src/api/relays.ts), for the
 * tests of `relayThrough: 'auto'`.
 */
import { assert } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"
import { type BlindRelayHost, type BlindRelayHostOptions, serveBlindRelay } from "../../src/actors/session/relay-connection.js"
import { ServerCore } from "../../src/actors/session/server.js"
import * as Records from "../../src/api/records.js"
import { relayTopic } from "../../src/api/relays.js"
import { type ConnectSim, drive, type SimPeer } from "./connect-sim.js"

/** An open peer serving as a blind relay with `options`, listening on its key and announced under the relay topic. */
export const announcedRelay = (sim: ConnectSim, options: BlindRelayHostOptions = {}) =>
  Effect.gen(function*() {
    const peer: SimPeer = yield* sim.addPeer("open", { name: "relay" })
    const relay: BlindRelayHost = serveBlindRelay(peer.conn, options)
    const core = new ServerCore(peer.conn, {}, (socket) => {
      socket.on("error", () => {})
      if (relay.accept(socket) === null) socket.destroy()
    })
    const listening = yield* drive(core.listen(peer.keyPair), 60_000)
    assert.isTrue(Option.isSome(listening) && Exit.isSuccess(listening.value), "the relay listens")
    const announced = yield* drive(Records.announce(peer.handle, relayTopic(sim.crypto.blake2b), peer.keyPair), 60_000)
    assert.isTrue(Option.isSome(announced) && Exit.isSuccess(announced.value), "the relay is announced")
    return { peer, relay }
  })
