/**
 * Flock on the simulated network: the real HyperDHT nodes, connections and
 * holepunching (src/layers/transport/sim.ts, with its NAT models), on
 * TestClock. Peers behind open, consistent and random NATs join one topic;
 * the swarm reaches a full mesh of encrypted connections (punched where
 * needed), with one live connection per pair, and data flows on each.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Flock, type FlockDht, type FlockSocket } from "../src/api/flock.js"
import { Gateway } from "../src/api/Gateway.js"
import { seededRandom } from "../src/util/random.js"
import { advance, advanceUntil, buildConnectSim, type NatKind, type SimPeer } from "./support/connect-sim.js"
import { announcedRelay } from "./support/relay-sim.js"

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const errs: Array<string> = []

interface Member {
  readonly peer: SimPeer
  readonly flock: Flock
  readonly live: Map<string, Set<FlockSocket>>
  readonly heard: Set<string>
  events: number
}

const member = (peer: SimPeer, context: import("effect").Context.Context<never>, seed: number, timing: { backoffs?: [number, number, number, number]; jitter?: number; relayThrough?: "auto" } = {}): Member => {
  const dht = Gateway.over(peer.handle, { host: peer.conn, keyPair: peer.keyPair as never }) as unknown as FlockDht
  // the reference's default backoffs (S ≈ 1 s, M ≈ 5 s, L ≈ 15 s): a failed random punch is retried after the 20 s random-punch interval
  const flock = new Flock({ dht, keyPair: peer.keyPair, context, random: seededRandom(seed), ...timing })
  const m: Member = { peer, flock, live: new Map(), heard: new Set(), events: 0 }
  flock.on("update", () => {
    for (const [k, p] of flock.peers) if (p.lastError !== null) errs.push(`${peer.nat}->${k.slice(0, 6)} a${p.attempts} ${p.lastError.code} ${p.lastError.message.slice(0, 200)}`)
  })
  const me = hex(peer.keyPair.publicKey)
  flock.on("connection", (socket: FlockSocket) => {
    m.events++
    socket.on("error", () => {})
    const remote = hex(socket.remotePublicKey!)
    let set = m.live.get(remote)
    if (set === undefined) m.live.set(remote, (set = new Set()))
    set.add(socket)
    socket.on("close", () => set!.delete(socket))
    socket.on("data", (d: Buffer) => {
      const s = d.toString()
      if (s.startsWith("hi from ")) m.heard.add(s.slice(8, 8 + 64))
    })
    socket.write(`hi from ${me}`)
  })
  return m
}

const meshed = (ms: ReadonlyArray<Member>) =>
  ms.every((m) =>
    ms.every((o) => {
      if (m === o) return true
      const k = hex(o.peer.keyPair.publicKey)
      const live = [...(m.live.get(k) ?? [])].filter((s) => !s.destroyed).length
      return live === 1 && m.heard.has(k)
    })
  )

describe("Flock on the simulated network (real DHT nodes, NAT models, TestClock)", () => {
  it.effect("5 peers (open, consistent ×2, random, firewalled) join one topic one after another: full mesh, one live connection per pair, a greeting over each", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 3, nodes: 12 })
      const context = yield* Effect.context<never>()
      const nats: ReadonlyArray<NatKind> = ["open", "consistent", "consistent", "random", "firewalled"]
      const topic = new Uint8Array(32).fill(0x5a)
      const members: Array<Member> = []
      let seed = 10
      for (const nat of nats) {
        // one random punch per node per 5 s instead of the reference's 20 s: with the
        // reference's throttle a random-NAT peer's punches to three peers queue
        // behind each other longer than the retry schedule lasts (issue 18 lifts it)
        const m = member(yield* sim.addPeer(nat, { host: { randomPunchInterval: 5000 } }), context, seed++)
        members.push(m)
        const discovery = m.flock.join(topic, { server: true, client: true })
        let flushed: boolean | null = null
        discovery.flushed().then((v) => (flushed = v), () => (flushed = false))
        assert.isTrue(yield* advanceUntil(() => flushed !== null, 30_000, 20), `${nat} peer's announce settled`)
        assert.isTrue(flushed, `${nat} peer announced`)
      }
      const ok = yield* advanceUntil(() => meshed(members), 120_000, 20)
      const state = members.map((m) => `${m.peer.nat}: ` + members.filter((o) => o !== m).map((o) => {
        const k = hex(o.peer.keyPair.publicKey)
        const live = [...(m.live.get(k) ?? [])].filter((s) => !s.destroyed).length
        const info = m.flock.peers.get(k)
        return `${o.peer.nat}=${live}${m.heard.has(k) ? "h" : ""}${info ? `(${info.lastError?.code ?? "-"} a${info.attempts} q${info.queued ? 1 : 0} w${info.waiting ? 1 : 0})` : "(unknown)"}`
      }).join(" ") + ` connecting=${m.flock.connecting} attempted=${m.flock.stats.connects.client.attempted} opened=${m.flock.stats.connects.client.opened} closed=${m.flock.stats.connects.client.closed}`).join(";\n ")
      if (!ok) console.log([...new Set(errs)].join("\n"))
      assert.isTrue(ok, `full mesh (${state})`)
      yield* advance(2000, 50)
      assert.isTrue(meshed(members), "still one live connection per pair after 2 s")
      for (const m of members) m.flock.destroy()
      yield* advance(3000, 50)
      assert.deepStrictEqual(sim.livelocks, [])
    }), { timeout: 120_000 })

  it.effect("relayThrough: 'auto': two peers behind randomizing NATs and a consistent one mesh; the random pair goes through a relay found under the relay topic", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 7, nodes: 12 })
      const { relay } = yield* announcedRelay(sim)
      const context = yield* Effect.context<never>()
      const topic = new Uint8Array(32).fill(0x6b)
      const members: Array<Member> = []
      let seed = 30
      for (const nat of ["random", "random", "consistent"] as const) {
        const m = member(yield* sim.addPeer(nat), context, seed++, { relayThrough: "auto" })
        members.push(m)
        const discovery = m.flock.join(topic, { server: true, client: true })
        let flushed: boolean | null = null
        discovery.flushed().then((v) => (flushed = v), () => (flushed = false))
        assert.isTrue(yield* advanceUntil(() => flushed !== null, 30_000, 20), `${nat} peer's announce settled`)
      }
      assert.isTrue(yield* advanceUntil(() => meshed(members), 60_000, 20), "full mesh")
      const [r1, r2] = members
      const between = [...(r1!.live.get(hex(r2!.peer.keyPair.publicKey)) ?? [])].filter((s) => !s.destroyed)
      assert.strictEqual(between.length, 1)
      assert.strictEqual((between[0] as unknown as { path: string }).path, "relayed")
      assert.isAtLeast(relay.stats().pairings.matched, 1)
      for (const m of members) m.flock.destroy()
      yield* advance(3000, 50)
    }), { timeout: 120_000 })

  it.effect("chaos.js #40 on the simulated network: 10 Flocks, 15 topics, 30 random connection kills within 10 s, fully reconnected 45 s later", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 5, nodes: 12 })
      const context = yield* Effect.context<never>()
      const random = seededRandom(77)
      const nats: ReadonlyArray<NatKind> = ["open", "consistent", "open", "consistent", "firewalled", "consistent", "open", "consistent", "firewalled", "consistent"]
      const members: Array<Member> = []
      let seed = 100
      for (const nat of nats) members.push(member(yield* sim.addPeer(nat, { host: { randomPunchInterval: 5000 } }), context, seed++, { backoffs: [100, 1000, 10_000, 10_000], jitter: 0 }))
      // 15 topics, each joined by a random set of peers (as the reference's test does)
      const expected = new Map<Member, Set<string>>(members.map((m) => [m, new Set<string>()]))
      const joins: Array<[Member, Uint8Array]> = []
      for (let t = 0; t < 15; t++) {
        const topic = new Uint8Array(32).fill(100 + t)
        const count = Math.round(random() * 10)
        const group = new Set<Member>()
        for (let i = 0; i < count; i++) group.add(members[Math.floor(random() * members.length)]!)
        for (const m of group) {
          joins.push([m, topic])
          for (const o of group) if (o !== m) expected.get(m)!.add(hex(o.peer.keyPair.publicKey))
        }
      }
      // joins spread over 3 s of virtual time, in random order
      for (let i = joins.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1))
        ;[joins[i], joins[j]] = [joins[j]!, joins[i]!]
      }
      for (const [m, topic] of joins) {
        m.flock.join(topic, { server: true, client: true })
        yield* advance(Math.floor(3000 / joins.length), 10)
      }
      const connected = () =>
        members.every((m) => {
          const want = expected.get(m)!
          const live = [...m.live.entries()].filter(([, set]) => [...set].some((s) => !s.destroyed))
          return live.length === want.size && live.every(([k, set]) => want.has(k) && [...set].filter((s) => !s.destroyed).length === 1)
        })
      const describeState = () => members.map((m) => `${m.peer.nat} wants ${expected.get(m)!.size} has ${[...m.live.values()].filter((set) => [...set].some((s) => !s.destroyed)).length}`).join("; ")
      assert.isTrue(yield* advanceUntil(connected, 60_000, 20), `expected connectivity (${describeState()})`)
      // 30 random kills within 10 s
      let kills = 0
      for (let i = 0; i < 30; i++) {
        const m = members[Math.floor(random() * members.length)]!
        const open = [...m.live.values()].flatMap((set) => [...set]).filter((s) => !s.destroyed)
        if (open.length > 0) {
          open[Math.floor(random() * open.length)]!.destroy()
          kills++
        }
        yield* advance(333, 10)
      }
      assert.isAtLeast(kills, 20, "connections were killed")
      yield* advance(45_000, 50)
      assert.isTrue(connected(), `fully reconnected 45 s later (${describeState()})`)
      for (const m of members) m.flock.destroy()
      yield* advance(3000, 50)
      assert.deepStrictEqual(sim.livelocks, [])
    }), { timeout: 240_000 })
})
