/**
 * A dial that knows relay candidates up front (the relays a server named in
 * its announcement, as a Flock's lookup hands them over; a cached route):
 * their handshakes go first, and the FIND_PEER query runs only when they
 * all failed or after CANDIDATE_GRACE. A Flock newcomer that dialled nine
 * peers it had looked up sent a full FIND_PEER walk for each (26 requests a
 * dial on a 32-node testnet): the node's congestion window filled, and the
 * handshakes of its last dials waited for the next drain (750 ms period),
 * 150-250 ms each. What the client's sockets send is recorded here.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Rpc from "../src/protocol/dht-rpc.js"
import * as R from "../src/protocol/records.js"
import { buildConnectSim, connect, exchange, listen } from "./support/connect-sim.js"
import { recordingHost } from "./support/recording-host.js"

/** The external commands every socket of a host sends, in order. */
const recording = (log: Array<number>) =>
  recordingHost((_socket, _to, data) => {
    const m = Rpc.decodeMessage(data)
    if (m._tag === "Success" && m.success._tag === "Request" && !m.success.request.internal) log.push(m.success.request.command)
  })

const count = (log: ReadonlyArray<number>, command: number): number => log.filter((c) => c === command).length

describe("a dial with relay candidates", () => {
  it.effect("the server's own relays: handshakes through them, no FIND_PEER query; a stale candidate (no record there): the query follows at once; a silent one: after the grace", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 41, nodes: 16 })
      const sp = yield* sim.addPeer("open", { name: "server" })
      const server = yield* listen(sp)
      const relays = server.core.relayAddresses.slice()
      assert.isAbove(relays.length, 0, "the server announced through relays")
      const sent: Array<number> = []
      const cp = yield* sim.addPeer("consistent", { name: "client", transport: recording(sent) })

      // 1. the relays the server named: no query at all
      let from = sent.length
      const fresh = yield* connect(sim, cp, server, { relayAddresses: relays, maxMs: 30_000 })
      assert.isTrue(fresh.outcome.ok, `opened (${fresh.outcome.code})`)
      assert.strictEqual(count(sent.slice(from), R.Command.FIND_PEER), 0, "no FIND_PEER request")
      assert.isAbove(count(sent.slice(from), R.Command.PEER_HANDSHAKE), 0)
      const s = server.connections[server.connections.length - 1]!
      const x = yield* exchange(sim, fresh.dial.socket, s, 2048, 1, 5_000)
      assert.isTrue(x.upIntact && x.downIntact)
      fresh.dial.socket.destroy()

      // 2. a candidate that holds no record of the server answers at once: the query runs and finds it
      const stale = sim.nodes.map((n) => ({ host: n.ip, port: n.port })).find((n) => !relays.some((r) => r.host === n.host && r.port === n.port))!
      from = sent.length
      const t0 = sim.now()
      const viaStale = yield* connect(sim, cp, server, { relayAddresses: [stale], maxMs: 30_000 })
      assert.isTrue(viaStale.outcome.ok, `opened (${viaStale.outcome.code})`)
      assert.isAbove(count(sent.slice(from), R.Command.FIND_PEER), 0, "the query ran")
      assert.isBelow(sim.now() - t0, 500, "without waiting for the grace")
      viaStale.dial.socket.destroy()

      // 3. a candidate that does not answer: the query starts after the grace
      from = sent.length
      const t1 = sim.now()
      const viaSilent = yield* connect(sim, cp, server, { relayAddresses: [{ host: "20.77.77.77", port: 49737 }], maxMs: 30_000 })
      assert.isTrue(viaSilent.outcome.ok, `opened (${viaSilent.outcome.code})`)
      assert.isAbove(count(sent.slice(from), R.Command.FIND_PEER), 0, "the query ran")
      assert.isAtLeast(sim.now() - t1, 500, "after the grace")
      assert.isBelow(sim.now() - t1, 2_000)
      viaSilent.dial.socket.destroy()
      assert.deepStrictEqual(sim.livelocks, [])
    }), { timeout: 120_000 })
})
