/**
 * The Flock end to end (facade, actors, cores) on TestClock over the
 * in-memory DHT (`support/flock-fake-dht.ts`): hyperswarm's own tests
 * (flock.md §16) where they wait on real time, here on virtual time, plus
 * the behaviour Flock adds (no crash on stream errors, typed failures,
 * supervision). Backoffs [100, 200, 300, 400] with jitter 0, as the
 * reference's tests use.
 */
import { it } from "@effect/vitest"
import { Effect, Exit, Option } from "effect"
import { describe, expect } from "vitest"
import { FlockError } from "../src/actors/flock/errors.js"
import { Flock, type FlockOptions, type FlockSocket, type PeerInfo } from "../src/api/flock.js"
import { seededRandom } from "../src/util/random.js"
import { advance, advanceUntil, drive } from "./support/connect-sim.js"
import { FakeDhtNetwork } from "./support/flock-fake-dht.js"

const BACKOFFS = [100, 200, 300, 400] as const
const L = BACKOFFS[2]
const topicOf = (n: number) => new Uint8Array(32).fill(n)
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")

interface Net {
  readonly net: FakeDhtNetwork
  flock(opts?: ConstructorParameters<typeof Flock>[0]): Flock
  readonly all: Array<Flock>
}

/** Flocks on one in-memory DHT, running on the test's context (TestClock). */
const makeNet = Effect.gen(function*() {
  const context = yield* Effect.context<never>()
  const net = new FakeDhtNetwork()
  const all: Array<Flock> = []
  let seed = 1
  return {
    net,
    all,
    flock: (opts = {}) => {
      const f = new Flock({ dht: net.node(), context, backoffs: [...BACKOFFS], jitter: 0, random: seededRandom(seed++), ...opts })
      all.push(f)
      return f
    }
  } satisfies Net
})

/** Run a promise while virtual time advances; fails the test if it does not settle within maxMs. */
const settle = <A>(p: () => Promise<A>, maxMs = 30_000) =>
  Effect.gen(function*() {
    const exit = yield* drive(Effect.promise(p), maxMs, 10)
    if (Option.isNone(exit)) throw new Error(`did not settle within ${maxMs} virtual ms`)
    if (Exit.isFailure(exit.value)) throw new Error(`failed: ${String(exit.value.cause)}`)
    return exit.value.value
  })

const connections = (f: Flock) => {
  const list: Array<{ socket: FlockSocket; peer: PeerInfo }> = []
  f.on("connection", (socket: FlockSocket, peer: PeerInfo) => {
    socket.on("error", () => {})
    socket.resume() // read: a stream ends (and closes) only once its end is read
    list.push({ socket, peer })
  })
  return list
}

const destroyAll = (n: Net) => settle(() => Promise.all(n.all.map((f) => f.destroy())))

/**
 * A server-only and a client-only Flock on `topic`, the client joining once
 * the server's announcement is stored, with the connection logs of both.
 */
const serverAndClient = (n: Net, topic: Uint8Array, opts: { readonly server?: FlockOptions; readonly client?: FlockOptions } = {}) =>
  Effect.gen(function*() {
    const server = n.flock(opts.server)
    const client = n.flock(opts.client)
    const cs = connections(server)
    const cc = connections(client)
    yield* settle(() => server.join(topic, { client: false }).flushed())
    client.join(topic, { server: false })
    return { server, client, cs, cc }
  })

describe("Flock on TestClock (in-memory DHT)", () => {
  it.effect("one server, one client - first connection (swarm.js #8)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const client = n.flock()
      const cs = connections(server)
      const cc = connections(client)
      yield* settle(() => server.join(topicOf(1), { server: true, client: false }).flushed())
      client.join(topicOf(1), { server: false, client: true })
      yield* settle(() => client.flush())
      expect(yield* advanceUntil(() => cs.length === 1 && cc.length === 1, 1000)).toBe(true)
      expect(hex(cc[0]!.peer.publicKey)).toBe(hex(server.keyPair.publicKey))
      expect(cc[0]!.peer.client).toBe(true)
      expect(cs[0]!.peer.client).toBe(false)
      yield* destroyAll(n)
    }))

  it.effect("two servers - first connection, and two swarms in both modes deduplicate (swarm.js #9, #13)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const a = n.flock()
      const b = n.flock()
      const ca = connections(a)
      const cb = connections(b)
      yield* settle(() => a.join(topicOf(2)).flushed())
      yield* settle(() => b.join(topicOf(2)).flushed())
      yield* settle(() => Promise.all([a.flush(), b.flush()]))
      yield* advance(2 * L, 10)
      expect(ca.length).toBe(1)
      expect(cb.length).toBe(1)
      expect(a.connections.size).toBe(1)
      expect(b.connections.size).toBe(1)
      yield* destroyAll(n)
    }))

  it.effect("one server, one client - single reconnect (swarm.js #10)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const { server, client, cs, cc } = yield* serverAndClient(n, topicOf(3))
      expect(yield* advanceUntil(() => cs.length === 1 && cc.length === 1, 1000)).toBe(true)
      cs[0]!.socket.destroy()
      expect(yield* advanceUntil(() => cs.length === 2 && cc.length === 2, 4 * L)).toBe(true)
      yield* destroyAll(n)
    }))

  it.effect("one server, one client - maximum reconnects: more than 1, fewer than 5 within 4 × L (swarm.js #11)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const client = n.flock()
      let seen = 0
      client.on("connection", (s: FlockSocket) => {
        seen++
        s.on("error", () => {})
        s.destroy()
      })
      yield* settle(() => server.join(topicOf(4), { client: false }).flushed())
      client.join(topicOf(4), { server: false })
      yield* advance(4 * L, 5)
      expect(seen).toBeGreaterThan(1)
      expect(seen).toBeLessThan(5)
      yield* destroyAll(n)
    }))

  it.effect("one server, one client - banned peer does not reconnect (swarm.js #12)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const client = n.flock()
      let seen = 0
      client.on("connection", (s: FlockSocket, peer: PeerInfo) => {
        seen++
        s.on("error", () => {})
        peer.ban(true)
        s.destroy()
      })
      yield* settle(() => server.join(topicOf(5), { client: false }).flushed())
      client.join(topicOf(5), { server: false })
      yield* advance(2 * L + 100, 5)
      expect(seen).toBe(1)
      expect(client.stats.manualBans).toBe(1)
      yield* destroyAll(n)
    }))

  it.effect("one server, two clients - topic multiplexing: one connection, both topics on the PeerInfo (swarm.js #14)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const client = n.flock()
      const cc = connections(client)
      yield* settle(() => server.join(topicOf(6), { client: false }).flushed())
      yield* settle(() => server.join(topicOf(7), { client: false }).flushed())
      client.join(topicOf(6), { server: false })
      client.join(topicOf(7), { server: false })
      yield* settle(() => client.flush())
      yield* advance(2 * L, 10)
      expect(cc.length).toBe(1)
      expect(cc[0]!.peer.topics.map(hex).sort()).toEqual([hex(topicOf(6)), hex(topicOf(7))])
      yield* destroyAll(n)
    }))

  it.effect("after the server leaves, the existing client keeps its connection and a new client finds nobody (swarm.js #16)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const c1 = n.flock()
      const c2 = n.flock()
      const cc1 = connections(c1)
      const cc2 = connections(c2)
      yield* settle(() => server.join(topicOf(8), { client: false }).flushed())
      c1.join(topicOf(8), { server: false })
      expect(yield* advanceUntil(() => cc1.length === 1, 1000)).toBe(true)
      yield* settle(() => server.leave(topicOf(8)))
      expect(n.net.announced(topicOf(8))).toEqual([])
      c2.join(topicOf(8), { server: false })
      yield* settle(() => c2.flush())
      yield* advance(2 * L, 10)
      expect(cc2.length).toBe(0)
      expect(c1.connections.size).toBe(1)
      yield* destroyAll(n)
    }))

  it.effect("flush when max connections reached resolves (swarm.js #19)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const servers = [n.flock(), n.flock()]
      const client = n.flock({ maxPeers: 1 })
      for (const s of servers) yield* settle(() => s.join(topicOf(9), { client: false }).flushed())
      client.join(topicOf(9), { server: false })
      expect(yield* settle(() => client.flush())).toBe(true)
      yield* destroyAll(n)
    }))

  it.effect("topics() returns the discoveries in join order; status(topic) (swarm.js #21)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const f = n.flock()
      f.join(topicOf(12), { server: false })
      f.join(topicOf(10), { server: false })
      f.join(topicOf(11), { server: false })
      yield* advance(1, 1) // the discovery actors take their joins
      expect([...f.topics()].map((t) => t.topic[0])).toEqual([12, 10, 11])
      expect(f.status(topicOf(10))?.isClient).toBe(true)
      expect(f.status(topicOf(13))).toBeNull()
      yield* destroyAll(n)
    }))

  it.effect("a stream error on a delivered connection, with no listener of the application's, does not crash; the application's listener gets it (§15.2 #12, hyperswarm#93)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const client = n.flock()
      const got: Array<FlockSocket> = []
      server.on("connection", (s: FlockSocket) => got.push(s)) // no error listener on purpose
      const seen: Array<unknown> = []
      client.on("connection", (s: FlockSocket) => s.on("error", (e) => seen.push(e)))
      yield* settle(() => server.join(topicOf(14), { client: false }).flushed())
      client.join(topicOf(14), { server: false })
      expect(yield* advanceUntil(() => got.length === 1 && client.connections.size === 1, 1000)).toBe(true)
      got[0]!.destroy(new Error("boom on the server side"))
      const [clientSocket] = [...client.connections]
      clientSocket!.destroy(new Error("boom on the client side"))
      yield* advance(50, 5)
      expect(seen.map((e) => (e as Error).message)).toEqual(["boom on the client side"])
      yield* destroyAll(n)
    }))

  it.effect("firewall for server connections results in a ban: no connection, firewall asked once (swarm.js #30, firewall.js #32, #34)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      let asked = 0
      const { server, client, cs, cc } = yield* serverAndClient(n, topicOf(15), { server: { firewall: () => (asked++, true) } })
      yield* advance(5 * L, 5)
      expect(cs.length + cc.length).toBe(0)
      expect(asked).toBe(1)
      expect(server.stats.bannedPeers).toBe(1)
      yield* destroyAll(n)
    }))

  it.effect("ban stat and event: a client firewall rejecting everything emits ban with 'Peer is firewalled' (swarm.js #31, firewall.js #33)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const asked: Array<string> = []
      const client = n.flock({ firewall: async (key) => (asked.push(hex(key)), true) })
      const bans: Array<[PeerInfo, Error]> = []
      client.on("ban", (p: PeerInfo, e: Error) => bans.push([p, e]))
      yield* settle(() => server.join(topicOf(16), { client: false }).flushed())
      client.join(topicOf(16), { server: false })
      yield* settle(() => client.flush())
      yield* advance(L, 10)
      expect(asked).toEqual([hex(server.keyPair.publicKey)])
      expect(bans.length).toBe(1)
      expect(hex(bans[0]![0].publicKey)).toBe(hex(server.keyPair.publicKey))
      expect(bans[0]![1].message).toBe("Peer is firewalled")
      expect(client.stats.bannedPeers).toBe(1)
      expect(client.connections.size).toBe(0)
      yield* destroyAll(n)
    }))

  it.effect("join peer: connects to a listening key and reconnects after both sides end (peer-join.js #35, #36)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const client = n.flock()
      const cs = connections(server)
      const cc = connections(client)
      yield* settle(() => server.listen())
      client.joinPeer(client.keyPair.publicKey) // self: a no-op
      client.joinPeer(server.keyPair.publicKey)
      expect(yield* advanceUntil(() => cs.length === 1 && cc.length === 1, 1000)).toBe(true)
      cc[0]!.socket.end()
      cs[0]!.socket.end()
      expect(yield* advanceUntil(() => cs.length === 2 && cc.length === 2, 10 * L)).toBe(true)
      expect(client.explicitPeers.size).toBe(1)
      yield* destroyAll(n)
    }))

  it.effect("leave peer: stops reconnecting; no PeerInfo left once the connection is gone (peer-join.js #37, #38)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const client = n.flock()
      const cc = connections(client)
      yield* settle(() => server.listen())
      client.joinPeer(server.keyPair.publicKey)
      expect(yield* advanceUntil(() => cc.length === 1, 1000)).toBe(true)
      client.leavePeer(server.keyPair.publicKey)
      yield* advance(20, 5)
      expect(client.connections.size).toBe(1)
      cc[0]!.socket.destroy()
      yield* advance(10 * L, 10)
      expect(cc.length).toBe(1)
      expect(client.peers.size).toBe(0)
      expect(client.explicitPeers.size).toBe(0)
      expect(client.connections.size).toBe(0)
      yield* destroyAll(n)
    }))

  it.effect("connectionsOpened and connectionsClosed stats (stats.js #41)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const { server, client, cs, cc } = yield* serverAndClient(n, topicOf(17))
      expect(yield* advanceUntil(() => cc.length === 1 && cs.length === 1, 1000)).toBe(true)
      expect(client.stats.connects.client.attempted).toBe(1)
      expect(client.stats.connects.client.opened).toBe(1)
      expect(server.stats.connects.server.opened).toBe(1)
      yield* settle(() => client.leave(topicOf(17)))
      cc[0]!.socket.destroy()
      yield* advance(50, 5)
      expect(client.stats.connects.client.closed).toBe(1)
      expect(server.stats.connects.server.closed).toBe(1)
      yield* destroyAll(n)
    }))

  it.effect("suspend + resume: a second connection on both sides (suspend.js #42)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const { server, client, cs, cc } = yield* serverAndClient(n, topicOf(18))
      expect(yield* advanceUntil(() => cc.length === 1 && cs.length === 1, 1000)).toBe(true)
      yield* settle(() => client.suspend())
      expect(client.suspended).toBe(true)
      expect(client.connections.size).toBe(0)
      yield* advance(2000, 50)
      yield* settle(() => client.resume())
      expect(yield* advanceUntil(() => cc.length === 2 && cs.length === 2, 4 * L)).toBe(true)
      yield* destroyAll(n)
    }))

  it.effect("connecting: 0, then 1 in an update during the dial, then 0 (update.js #43)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const client = n.flock()
      const seen: Array<number> = []
      client.on("update", () => seen.push(client.connecting))
      yield* settle(() => server.join(topicOf(19), { client: false }).flushed())
      expect(client.connecting).toBe(0)
      client.join(topicOf(19), { server: false })
      yield* settle(() => client.flush())
      expect(seen).toContain(1)
      expect(seen[seen.length - 1]).toBe(0)
      yield* destroyAll(n)
    }))

  it.effect("destroy resolves a pending flush with false; join after destroy throws a FlockError (§5.5, §5.8)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const client = n.flock()
      n.net.unreachable.add(hex(new Uint8Array(32).fill(0xee)))
      const server = n.flock({ keyPair: { publicKey: new Uint8Array(32).fill(0xee), secretKey: new Uint8Array(64) } })
      yield* settle(() => server.join(topicOf(20), { client: false }).flushed())
      client.join(topicOf(20), { server: false })
      const flushed = client.flush()
      yield* settle(() => client.destroy())
      expect(yield* settle(() => flushed)).toBe(false)
      expect(() => client.join(topicOf(21))).toThrow(FlockError)
      yield* destroyAll(n)
    }))

  it.effect("a user-supplied DHT is not destroyed by flock.destroy(); streams are closed (§15.2 #7)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const { server, client, cc } = yield* serverAndClient(n, topicOf(22))
      expect(yield* advanceUntil(() => cc.length === 1, 1000)).toBe(true)
      yield* settle(() => client.destroy())
      expect(cc[0]!.socket.destroyed).toBe(true)
      expect((client.dht as unknown as { destroyed: boolean }).destroyed).toBe(false)
      yield* destroyAll(n)
    }))

  it.effect("a throwing 'connection' listener is reported as an 'error' (LISTENER_FAILED); the Flock carries on", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const client = n.flock()
      const errors: Array<FlockError> = []
      client.on("error", (e: FlockError) => errors.push(e))
      client.on("connection", (s: FlockSocket) => {
        s.on("error", () => {})
        throw new Error("application bug")
      })
      yield* settle(() => server.join(topicOf(23), { client: false }).flushed())
      client.join(topicOf(23), { server: false })
      expect(yield* advanceUntil(() => errors.length === 1, 1000)).toBe(true)
      expect(errors[0]!.code).toBe("LISTENER_FAILED")
      expect(client.connections.size).toBe(1)
      expect(client.destroyed).toBe(false)
      yield* destroyAll(n)
    }))

  it.effect("a defect inside the dial-queue actor fails the Flock with a typed error (ACTOR_FAILED) and closes it; nothing half alive", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      let armed = false
      // the dial queue draws from `random` when it picks a peer: make it throw once armed
      const client = n.flock({
        random: () => {
          if (armed) throw new Error("injected defect")
          return 0.5
        }
      })
      armed = true
      const errors: Array<FlockError> = []
      client.on("error", (e: FlockError) => errors.push(e))
      yield* settle(() => server.join(topicOf(24), { client: false }).flushed())
      client.join(topicOf(24), { server: false })
      client.joinPeer(server.keyPair.publicKey)
      expect(yield* advanceUntil(() => errors.length > 0 && client.destroyed, 2000)).toBe(true)
      expect(errors[0]!.code).toBe("ACTOR_FAILED")
      yield* advance(100, 10)
      expect(client.connections.size).toBe(0)
      yield* destroyAll(n)
    }))

  it.effect("two servers, one client - refreshing a peer discovery instance discovers new server (swarm.js #17)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const s1 = n.flock()
      const s2 = n.flock()
      const client = n.flock()
      const cc = connections(client)
      yield* settle(() => s1.join(topicOf(30), { client: false }).flushed())
      const discovery = client.join(topicOf(30), { server: false })
      yield* settle(() => client.flush())
      yield* advance(1000, 10)
      expect(cc.length).toBe(1)
      yield* settle(() => s2.join(topicOf(30), { client: false }).flushed())
      yield* advance(1000, 10)
      expect(cc.length).toBe(1) // not found until the handle refreshes
      yield* settle(() => discovery.refresh())
      expect(yield* advanceUntil(() => cc.length === 2, 1000)).toBe(true)
      yield* destroyAll(n)
    }))

  it.effect("multiple discovery sessions with different opts: destroying the client handle keeps the server handle accepting (swarm.js #22)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const a = n.flock()
      const b = n.flock()
      const ca = connections(a)
      const clientHandle = a.join(topicOf(31), { server: false, client: true })
      yield* settle(() => a.join(topicOf(31), { server: true, client: false }).flushed())
      yield* settle(() => clientHandle.destroy())
      expect(a.status(topicOf(31))?.isServer).toBe(true)
      expect(a.status(topicOf(31))?.isClient).toBe(false)
      b.join(topicOf(31), { server: false, client: true })
      expect(yield* advanceUntil(() => ca.length === 1, 2000)).toBe(true)
      yield* destroyAll(n)
    }))

  it.effect("closing all discovery sessions clears all peer-discovery objects (swarm.js #23)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const a = n.flock()
      const h1 = a.join(topicOf(32))
      const h2 = a.join(topicOf(33), { server: false })
      yield* settle(() => Promise.all([h1.flushed(), h2.flushed()]))
      expect([...a.topics()].length).toBe(2)
      yield* settle(() => Promise.all([h1.destroy(), h2.destroy()]))
      expect(yield* advanceUntil(() => [...a.topics()].length === 0, 2000)).toBe(true)
      expect(n.net.announced(topicOf(32))).toEqual([])
      yield* destroyAll(n)
    }))

  it.effect("PeerInfo is collected when the connection closes: server side at once, client side once its retries ran out (swarm.js #24, #25)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const { server, client, cc } = yield* serverAndClient(n, topicOf(34), { client: { backoffs: [0, 0, 0, 0] } })
      expect(yield* advanceUntil(() => cc.length === 1 && server.peers.size === 1, 1000)).toBe(true)
      yield* settle(() => server.destroy())
      expect(yield* advanceUntil(() => client.peers.size === 0, 5000)).toBe(true)
      yield* destroyAll(n)
    }))

  it.effect("the server side learns which of its topics an inbound peer shares once both announced it (issue 19; the reference never does)", () =>
    Effect.gen(function*() {
      const n = yield* makeNet
      const server = n.flock()
      const client = n.flock()
      const cs = connections(server)
      const topics: Array<string> = []
      server.on("topic", (_peer: PeerInfo, t: Uint8Array) => topics.push(hex(t)))
      const t2 = server.join(topicOf(41), { client: false })
      yield* settle(() => Promise.all([server.join(topicOf(40), { client: false }).flushed(), t2.flushed()]))
      client.join(topicOf(40), { server: false })
      expect(yield* advanceUntil(() => cs.length === 1, 1000)).toBe(true)
      expect(cs[0]!.peer.topics).toEqual([])
      // the client also serves topic 41; the server's next refresh of 41 sees it
      yield* settle(() => client.join(topicOf(41), { server: true, client: false }).flushed())
      yield* settle(() => t2.refresh())
      yield* advance(50, 5)
      expect(cs[0]!.peer.topics.map(hex)).toEqual([hex(topicOf(41))])
      expect(topics).toEqual([hex(topicOf(41))])
      expect(cs.length).toBe(1) // nobody was dialled: server-only
      yield* destroyAll(n)
    }))
})
