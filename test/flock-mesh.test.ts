/**
 * Simultaneous joins (issue 19's bench scenario) end to end on TestClock
 * over the in-memory DHT: N Flocks join one topic in the same tick. Every
 * first query runs before any announcement is stored (the fake DHT commits
 * a record when its announce query ends), so nobody finds anybody in the
 * first cycle: the reference then waits for its next refresh (10–12 min).
 * Flock's follow-up lookup finds the peers a few hundred ms later, and the
 * tie-break loser's dial grace keeps both ends from dialling each other,
 * so every peer gets exactly N − 1 `connection` events.
 */
import { it } from "@effect/vitest"
import { Effect } from "effect"
import { describe, expect } from "vitest"
import { FOLLOW_UP_DELAY, FOLLOW_UP_JITTER, LOSER_DIAL_GRACE } from "../src/actors/flock/constants.js"
import { Flock, type FlockSocket } from "../src/api/flock.js"
import { seededRandom } from "../src/util/random.js"
import { advance, advanceUntil } from "./support/connect-sim.js"
import { FakeDhtNetwork } from "./support/flock-fake-dht.js"

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

interface Peer {
  readonly flock: Flock
  readonly key: string
  events: number
  /** remote key → live sockets */
  readonly live: Map<string, Set<FlockSocket>>
}

/** Virtual time by which N simultaneous joiners must be meshed: the follow-up, the loser's grace, and room for the dials. */
const MESH_BOUND = FOLLOW_UP_DELAY + FOLLOW_UP_JITTER + LOSER_DIAL_GRACE + 1000

const meshRun = (n: number, seed: number) =>
  Effect.gen(function*() {
    const context = yield* Effect.context<never>()
    const net = new FakeDhtNetwork()
    const topic = new Uint8Array(32).fill(0x42)
    const peers: Array<Peer> = []
    for (let i = 0; i < n; i++) {
      const flock = new Flock({ dht: net.node(), context, random: seededRandom(seed * 100 + i + 1) })
      const p: Peer = { flock, key: hex(flock.keyPair.publicKey), events: 0, live: new Map() }
      flock.on("connection", (socket: FlockSocket) => {
        socket.on("error", () => {})
        socket.resume()
        p.events++
        const remote = hex(socket.remotePublicKey!)
        let set = p.live.get(remote)
        if (set === undefined) p.live.set(remote, (set = new Set()))
        set.add(socket)
        socket.on("close", () => set.delete(socket))
      })
      peers.push(p)
    }
    // every peer joins in the same tick
    for (const p of peers) p.flock.join(topic, { server: true, client: true })
    // the race: every first query ran before any record was stored, nobody dialled anybody
    yield* advance(FOLLOW_UP_DELAY - 10, 10)
    const dialsBeforeFollowUp = net.dials
    const meshed = () => peers.every((p) => p.live.size === n - 1 && [...p.live.values()].every((s) => s.size === 1))
    const ok = yield* advanceUntil(meshed, MESH_BOUND, 10)
    // let late duplicates show
    yield* advance(2000, 50)
    const result = { dialsBeforeFollowUp, ok, queries: net.nodes.map((d) => d.queries.map((q) => q.kind).join(",")), events: peers.map((p) => p.events), dials: net.dials, announced: net.announced(topic).length }
    yield* Effect.promise(() => Promise.all(peers.map((p) => p.flock.destroy())))
    return result
  })

describe("simultaneous joins (Flock only: follow-up lookup, loser's dial grace)", () => {
  it.effect("10 Flocks join one topic in the same tick: full mesh within the bound of virtual time, exactly 9 connection events each", () =>
    Effect.gen(function*() {
      for (const seed of [1, 2, 3]) {
        const r = yield* meshRun(10, seed)
        expect(r.announced).toBe(10)
        expect(r.dialsBeforeFollowUp).toBe(0)
        expect(r.ok).toBe(true)
        expect(r.events).toEqual(Array.from({ length: 10 }, () => 9))
        // one dial per pair: nobody dialled a peer whose connection was on its way
        expect(r.dials).toBe(45)
        // cheap: one announce and one follow-up lookup per peer
        expect(r.queries).toEqual(Array.from({ length: 10 }, () => "announce,lookup"))
      }
    }))
})
