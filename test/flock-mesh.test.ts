/**
 * Simultaneous joins (issue 19's bench scenario) end to end on TestClock
 * over the in-memory DHT: N Flocks join one topic in the same tick. Every
 * first query runs before any announcement is stored (the fake DHT commits
 * a record when its announce query ends), so nobody finds anybody in the
 * first cycle: the reference then waits for its next refresh (10–12 min).
 * Flock's follow-up lookup finds the peers a few hundred ms later; both
 * ends of a pair may dial, and the tie-break loser's hold keeps its
 * outbound connection from the application until the winner's connection
 * replaced it or the hold ended, so every peer gets exactly N − 1
 * `connection` events. Peers that join one after another, and an explicit
 * `refresh()` on every peer, are covered too.
 */
import { it } from "@effect/vitest"
import { Clock, type Context, Effect } from "effect"
import { describe, expect } from "vitest"
import { FOLLOW_UP_DELAY, FOLLOW_UP_JITTER, LOSER_HOLD } from "../src/actors/flock/constants.js"
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

/** Virtual time by which N simultaneous joiners must be meshed: the follow-up, the loser's hold, and room for the dials. */
const MESH_BOUND = FOLLOW_UP_DELAY + FOLLOW_UP_JITTER + LOSER_HOLD + 1000

const makePeer = (net: FakeDhtNetwork, context: Context.Context<never>, seed: number): Peer => {
  const flock = new Flock({ dht: net.node(), context, random: seededRandom(seed) })
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
  return p
}

const meshedOf = (peers: ReadonlyArray<Peer>) => () =>
  peers.every((p) => [...p.live.values()].filter((s) => s.size > 0).length === peers.length - 1 && [...p.live.values()].every((s) => s.size <= 1))

const meshRun = (n: number, seed: number) =>
  Effect.gen(function*() {
    const context = yield* Effect.context<never>()
    const net = new FakeDhtNetwork()
    const topic = new Uint8Array(32).fill(0x42)
    const peers: Array<Peer> = []
    for (let i = 0; i < n; i++) peers.push(makePeer(net, context, seed * 100 + i + 1))
    // every peer joins in the same tick
    for (const p of peers) p.flock.join(topic, { server: true, client: true })
    // the race: every first query ran before any record was stored, nobody dialled anybody
    yield* advance(FOLLOW_UP_DELAY - 10, 10)
    const dialsBeforeFollowUp = net.dials
    const meshed = meshedOf(peers)
    const ok = yield* advanceUntil(meshed, MESH_BOUND, 10)
    // let late duplicates show
    yield* advance(2000, 50)
    const result = { dialsBeforeFollowUp, ok, queries: net.nodes.map((d) => d.queries.map((q) => q.kind).join(",")), events: peers.map((p) => p.events), dials: net.dials, announced: net.announced(topic).length }
    yield* Effect.promise(() => Promise.all(peers.map((p) => p.flock.destroy())))
    return result
  })

describe("simultaneous and spaced joins, refresh (Flock only: follow-up lookup, loser's hold)", () => {
  it.effect("10 Flocks join one topic in the same tick: full mesh within the bound of virtual time, exactly 9 connection events each", () =>
    Effect.gen(function*() {
      for (const seed of [1, 2, 3]) {
        const r = yield* meshRun(10, seed)
        expect(r.announced).toBe(10)
        expect(r.dialsBeforeFollowUp).toBe(0)
        expect(r.ok).toBe(true)
        expect(r.events).toEqual(Array.from({ length: 10 }, () => 9))
        // both ends of a pair may dial: the loser's extra connection never reached the application
        expect(r.dials).toBeGreaterThanOrEqual(45)
        // cheap: one announce and one follow-up lookup per peer
        expect(r.queries).toEqual(Array.from({ length: 10 }, () => "announce,lookup"))
      }
    }))

  it.effect("10 Flocks join one after another (each once the previous one flushed): the last one meshes within LOSER_HOLD of its join, one connection event per pair", () =>
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const net = new FakeDhtNetwork()
      const topic = new Uint8Array(32).fill(0x43)
      const peers: Array<Peer> = []
      for (let i = 0; i < 10; i++) {
        const p = makePeer(net, context, 700 + i)
        peers.push(p)
        const d = p.flock.join(topic, { server: true, client: true })
        const flushed = yield* advanceUntil(() => net.announced(topic).length === i + 1, 5000, 10)
        expect(flushed).toBe(true)
        void d
      }
      const joinedAt = yield* Clock.currentTimeMillis
      const ok = yield* advanceUntil(meshedOf(peers), 5000, 10)
      const tail = (yield* Clock.currentTimeMillis) - joinedAt
      expect(ok).toBe(true)
      // the newcomer dials at once; a pair it loses costs the hold after the open (no 500 ms dial wait)
      expect(tail).toBeLessThanOrEqual(LOSER_HOLD + 20)
      yield* advance(2000, 50)
      expect(peers.map((p) => p.events)).toEqual(Array.from({ length: 10 }, () => 9))
      yield* Effect.promise(() => Promise.all(peers.map((p) => p.flock.destroy())))
    }))

  it.effect("10 Flocks join in the same tick, then every one calls discovery.refresh(): every refresh dial meets a connection or a hold, exactly 9 connection events each", () =>
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const net = new FakeDhtNetwork()
      const topic = new Uint8Array(32).fill(0x44)
      const peers: Array<Peer> = []
      for (let i = 0; i < 10; i++) peers.push(makePeer(net, context, 900 + i))
      const ds = peers.map((p) => p.flock.join(topic, { server: true, client: true }))
      // the refresh right after the first cycle (before the follow-up): it is the dial that finds everyone
      yield* advanceUntil(() => net.announced(topic).length === 10, 5000, 1)
      for (const d of ds) d.refresh().catch(() => {})
      const ok = yield* advanceUntil(meshedOf(peers), MESH_BOUND, 10)
      expect(ok).toBe(true)
      yield* advance(2000, 50)
      expect(peers.map((p) => p.events)).toEqual(Array.from({ length: 10 }, () => 9))
      yield* Effect.promise(() => Promise.all(peers.map((p) => p.flock.destroy())))
    }))
})
