/**
 * One Flock: the dial-queue actor (`swarm-actor.ts`), one topic-discovery
 * actor per joined topic (`discovery-actor.ts`), the DHT server for our key
 * pair, and the DHT's network events, composed in one Scope. Both faces sit
 * on this: the promise facade (`src/api/flock.ts`) and the Effect face.
 *
 * Lifetimes: every actor is a fiber in the Flock's scope (each discovery in
 * a child scope of its own, closed once its teardown is done); closing the
 * scope interrupts them all and destroys every stream. `destroy()` is the
 * graceful path (§5.8): no more dials, unannounce every topic, close the
 * server, then the DHT if the Flock created it (§15.2 #7).
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import { toHex } from "../../protocol/encoding.js"
import type { FlockDht, FlockKeyPair, FlockServer, FlockSocket } from "./dht-contract.js"
import { type DiscoveryActor, DiscoveryMessage, makeDiscoveryActor } from "./discovery-actor.js"
import { chooseRelay } from "./dial-policy.js"
import { type HandleId, type HandleOptions, isTopic } from "./discovery.js"
import { FlockError } from "./errors.js"
import type { PeerInfo } from "./peer-info.js"
import { makeSwarmActor, type SwarmActor, type SwarmEvents, SwarmMessage } from "./swarm-actor.js"
import type { Backoffs } from "./retry.js"
import type { Direction } from "./swarm.js"

/** How a Flock behaves: the options both faces take (hyperswarm's names). */
export interface FlockBehaviour {
  /** Soft cap on topic-driven connections (default 64). */
  readonly maxPeers?: number | undefined
  /** Outbound dials at once (default 3). */
  readonly maxParallel?: number | undefined
  readonly maxClientConnections?: number | undefined
  /** Enforced (the reference accepts and ignores it). Default unbounded. */
  readonly maxServerConnections?: number | undefined
  /** `(remotePublicKey, payload, address)`: truthy (or a promise of it) rejects and bans the key. */
  readonly firewall?: ((remotePublicKey: Uint8Array, payload: unknown, address: unknown) => boolean | Promise<boolean>) | undefined
  /**
   * A relay key, keys, or `(force, flock) => key | keys | null` (hyperswarm's
   * option); or `'auto'` with an Omega DHT: each dial falls back on a relay
   * found under the relay topic when its punch fails, and the server offers
   * one while its NAT randomizes (src/api/relays.ts).
   */
  readonly relayThrough?: unknown
  readonly handshakeClearWait?: number | undefined
  /** Retry periods S, M, L, X in ms (hyperswarm's `backoffs`). */
  readonly backoffs?: Backoffs | undefined
  readonly jitter?: number | undefined
  /** Uniform in [0, 1): the Flock's randomness (seeded in tests). Default Math.random. */
  readonly random?: (() => number) | undefined
}

export interface FlockConfig extends FlockBehaviour {
  readonly dht: FlockDht
  /** The Flock made the DHT (and destroys it); false for a user-supplied one. */
  readonly ownsDht: boolean
  readonly keyPair: FlockKeyPair
  /** What `relayThrough(force, flock)` gets as its second argument. */
  readonly self?: unknown
  /** Bound on a graceful destroy's wait for streams to close (ms). Default 10 000. */
  readonly closeTimeout?: number | undefined
}

export interface FlockEvents {
  readonly connection: (socket: FlockSocket, peer: PeerInfo, direction: Direction) => void
  readonly disconnection: (socket: FlockSocket, peer: PeerInfo) => void
  readonly update: () => void
  readonly ban: (peer: PeerInfo, manual: boolean) => void
  readonly topic: (peer: PeerInfo, topic: Uint8Array) => void
  /** An actor failed (logged too). `fatal`: the dial-queue actor, and the Flock closes; else one topic's discovery. */
  readonly failed: (error: FlockError, fatal: boolean) => void
}

/** What `join` returns: one session on a topic's discovery (hyperswarm's PeerDiscoverySession). */
export interface TopicHandle {
  readonly topic: Uint8Array
  readonly discovery: DiscoveryActor
  /** The handle's id, once the discovery actor took it. */
  readonly id: Deferred.Deferred<HandleId, FlockError>
  /** The first refresh (started by the join). */
  readonly joined: Deferred.Deferred<boolean, FlockError>
}

export interface FlockRuntime {
  readonly keyPair: FlockKeyPair
  readonly dht: FlockDht
  readonly swarm: SwarmActor
  readonly discoveries: ReadonlyMap<string, DiscoveryActor>
  readonly destroyed: boolean
  readonly suspended: boolean
  server(): FlockServer | null
  listening(): Promise<unknown> | null
  join(topic: Uint8Array, options?: HandleOptions): TopicHandle
  leave(topic: Uint8Array, options?: { readonly closeConnections?: boolean }): Effect.Effect<void, FlockError>
  handleRefresh(h: TopicHandle, options?: HandleOptions): Effect.Effect<boolean, FlockError>
  handleFlushed(h: TopicHandle): Effect.Effect<boolean, FlockError>
  handleDestroy(h: TopicHandle): Effect.Effect<void, FlockError>
  joinPeer(publicKey: Uint8Array): void
  leavePeer(publicKey: Uint8Array): void
  listen(): Promise<unknown>
  flush(): Effect.Effect<boolean>
  clear(): Effect.Effect<void>
  suspend(): Effect.Effect<void>
  resume(): Effect.Effect<void>
  destroy(options?: { readonly force?: boolean }): Effect.Effect<void>
}

const settle = <A>(p: Promise<A> | A | undefined): Promise<void> => Promise.resolve(p).then(() => {}, () => {})

/** Build a Flock in the current scope. */
export const makeFlock = (config: FlockConfig, events: FlockEvents): Effect.Effect<FlockRuntime, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const context = yield* Effect.context<never>()
    const run = Effect.runForkWith(context)
    const runPromise = Effect.runPromiseWith(yield* Effect.context<never>())
    const random = config.random ?? Math.random
    const dht = config.dht
    const keyPair = config.keyPair
    const discoveries = new Map<string, DiscoveryActor & { readonly scope: Scope.Closeable }>()
    let destroyed = false
    let suspended = false
    let server: FlockServer | null = null
    let listening: Promise<unknown> | null = null
    let destroying: Promise<void> | null = null

    const swarmEvents: SwarmEvents = {
      connection: events.connection,
      disconnection: events.disconnection,
      update: events.update,
      ban: (peer, reason) => events.ban(peer, reason === "manual"),
      topic: events.topic,
      refreshTopics: () => {
        for (const d of discoveries.values()) Queue.offerUnsafe(d.mailbox, DiscoveryMessage.Refresh({ reply: Deferred.makeUnsafe() }))
      },
      failed: (error) => {
        events.failed(error, true)
        // the dial-queue actor is the Flock: without it nothing works, so close
        run(destroyNow({ force: true }))
      }
    }
    const swarm = yield* makeSwarmActor(
      {
        dht,
        keyPair,
        publicKey: keyPair.publicKey,
        random,
        maxPeers: config.maxPeers,
        maxParallel: config.maxParallel,
        maxClientConnections: config.maxClientConnections,
        maxServerConnections: config.maxServerConnections,
        backoffs: config.backoffs,
        jitter: config.jitter,
        firewall: config.firewall,
        relayThrough: config.relayThrough,
        self: config.self
      },
      swarmEvents
    )
    const post = (m: SwarmMessage) => Queue.offerUnsafe(swarm.mailbox, m)

    // ---- the DHT's network events (§12) ----
    const onNetworkChange = () => post(SwarmMessage.NetworkChange())
    const onNetworkUpdate = () => post(SwarmMessage.NetworkUpdate({ online: dht.online !== false }))
    dht.on("network-change", onNetworkChange)
    dht.on("network-update", onNetworkUpdate)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        dht.off("network-change", onNetworkChange)
        dht.off("network-update", onNetworkUpdate)
      })
    )

    // ---- the server (§5.4, §8) ----
    const relayForServer = (): Uint8Array | null => chooseRelay(config.relayThrough, false, dht.randomized === true, random, config.self)
    const askFirewall = (remotePublicKey: Uint8Array, payload: unknown, address: unknown): Promise<boolean> => {
      if (destroyed) return Promise.resolve(true)
      const reply = Deferred.makeUnsafe<boolean>()
      post(SwarmMessage.Handshake({ remotePublicKey, payload, address, reply }))
      return runPromise(Deferred.await(reply))
    }
    const listen = (): Promise<unknown> => {
      if (listening !== null) return listening
      if (destroyed) return Promise.reject(new FlockError({ reason: "destroyed" }))
      const s = dht.createServer(
        {
          firewall: askFirewall,
          ...(config.relayThrough === "auto" ? { relayThrough: "auto" as const } : config.relayThrough !== undefined ? { relayThrough: relayForServer } : {}),
          ...(config.handshakeClearWait !== undefined ? { handshakeClearWait: config.handshakeClearWait } : {})
        },
        (socket) => {
          if (destroyed || suspended) {
            socket.on("error", () => {})
            socket.destroy()
            return
          }
          post(SwarmMessage.Inbound({ socket }))
        }
      )
      server = s
      listening = s.listen(keyPair)
      listening.catch(() => {})
      return listening
    }

    // ---- topics (§5.1, §5.2, §7) ----
    const startDiscovery = (topic: Uint8Array, options: HandleOptions, predecessor: DiscoveryActor | undefined): DiscoveryActor & { readonly scope: Scope.Closeable } => {
      const child = Effect.runSync(Scope.fork(scope))
      // in the Flock's context (its Clock: the refresh and follow-up timers run on TestClock in tests)
      const actor = Effect.runSyncWith(context)(
        Scope.provide(child)(
          makeDiscoveryActor(
            {
              topic,
              random,
              isConnected: (key) => swarm.core.hasConnection(key),
              suspended,
              waitForPredecessor: predecessor !== undefined,
              limit: options.limit
            },
            {
              dht,
              keyPair,
              listen,
              relayAddresses: () => server?.relayAddresses ?? [],
              found: (t, peers) => post(SwarmMessage.Peers({ topic: t, peers })),
              shared: (t, keys) => post(SwarmMessage.TopicShared({ topic: t, keys })),
              leave: (t) => run(Effect.ignore(leave(t))),
              failed: (error) => events.failed(error, false)
            }
          )
        )
      )
      const d = Object.assign(actor, { scope: child })
      if (predecessor !== undefined) {
        run(Effect.andThen(Deferred.await(predecessor.gone), Effect.sync(() => Queue.offerUnsafe(actor.mailbox, DiscoveryMessage.PredecessorDone()))))
      }
      return d
    }

    const join = (topic: Uint8Array, options: HandleOptions = {}): TopicHandle => {
      if (destroyed) throw new FlockError({ reason: "destroyed" })
      if (!isTopic(topic)) throw new FlockError({ reason: "invalid-topic" })
      const t = Uint8Array.from(topic)
      const key = toHex(t)
      let d = discoveries.get(key)
      if (d === undefined || d.core.destroyed) {
        d = startDiscovery(t, options, d)
        discoveries.set(key, d)
        post(SwarmMessage.JoinTopic({ topic: t }))
      }
      const id = Deferred.makeUnsafe<HandleId, FlockError>()
      const joined = Deferred.makeUnsafe<boolean, FlockError>()
      Queue.offerUnsafe(d.mailbox, DiscoveryMessage.AddHandle({ options, reply: id, refreshed: joined }))
      return { topic: t, discovery: d, id, joined }
    }

    const leave = (topic: Uint8Array, options: { readonly closeConnections?: boolean } = {}): Effect.Effect<void, FlockError> =>
      Effect.gen(function*() {
        if (!isTopic(topic)) return yield* new FlockError({ reason: "invalid-topic" })
        const key = toHex(topic)
        const d = discoveries.get(key)
        if (d === undefined) return
        post(SwarmMessage.LeaveTopic({ topic: Uint8Array.from(topic), closeConnections: options.closeConnections === true }))
        const reply = yield* Deferred.make<void>()
        Queue.offerUnsafe(d.mailbox, DiscoveryMessage.Destroy({ reply }))
        // a second leave of the same topic may find the actor already gone
        yield* Effect.raceFirst(Deferred.await(reply), Deferred.await(d.gone))
        if (discoveries.get(key) === d) discoveries.delete(key)
        yield* Scope.close(d.scope, Exit.void)
      })

    const ask = <A>(d: DiscoveryActor, make: (reply: Deferred.Deferred<A, FlockError>) => DiscoveryMessage): Effect.Effect<A, FlockError> =>
      Effect.suspend(() => {
        const reply = Deferred.makeUnsafe<A, FlockError>()
        Queue.offerUnsafe(d.mailbox, make(reply))
        return Effect.raceFirst(Deferred.await(reply), Effect.andThen(Deferred.await(d.gone), Effect.fail(new FlockError({ reason: "discovery-destroyed" }))))
      })

    const handleRefresh = (h: TopicHandle, options: HandleOptions = {}) =>
      Effect.flatMap(Deferred.await(h.id), (handle) => ask<boolean>(h.discovery, (reply) => DiscoveryMessage.RefreshHandle({ handle, options, reply })))
    const handleFlushed = (h: TopicHandle) =>
      Effect.gen(function*() {
        yield* Effect.ignore(Deferred.await(h.joined))
        if (listening !== null) yield* Effect.promise(() => settle(listening))
        if (h.discovery.core.destroyed) return false
        return yield* ask<boolean>(h.discovery, (reply) => DiscoveryMessage.Flushed({ reply }))
      })
    const handleDestroy = (h: TopicHandle) =>
      Effect.flatMap(Deferred.await(h.id), (handle) =>
        Effect.asVoid(Effect.ignore(ask<boolean>(h.discovery, (reply) => DiscoveryMessage.DestroyHandle({ handle, reply })))))

    // ---- flush, suspend, resume, destroy (§5.5, §5.8, §5.9) ----
    const discoveriesFlushed = () => Effect.forEach([...discoveries.values()], (d) =>
      d.core.destroyed ? Effect.void : Effect.ignore(ask<boolean>(d, (reply) => DiscoveryMessage.Flushed({ reply }))), { concurrency: "unbounded", discard: true })

    const flush = (): Effect.Effect<boolean> =>
      Effect.gen(function*() {
        if (destroyed) return false
        if (listening !== null) yield* Effect.promise(() => settle(listening))
        yield* discoveriesFlushed()
        const reply = yield* Deferred.make<boolean>()
        post(SwarmMessage.Flush({ reply }))
        return yield* Effect.raceFirst(Deferred.await(reply), Effect.as(Deferred.await(swarm.done).pipe(Effect.ignore), false))
      })

    const discoveryEach = (make: (reply: Deferred.Deferred<void>) => DiscoveryMessage) =>
      Effect.forEach([...discoveries.values()], (d) => {
        const reply = Deferred.makeUnsafe<void>()
        Queue.offerUnsafe(d.mailbox, make(reply))
        return Effect.raceFirst(Deferred.await(reply), Deferred.await(d.gone))
      }, { concurrency: "unbounded", discard: true })

    const suspend = (): Effect.Effect<void> =>
      Effect.gen(function*() {
        if (suspended || destroyed) return
        suspended = true
        const s = server
        const serverDone = Effect.promise(() => settle(s?.suspend?.()))
        const reply = yield* Deferred.make<void>()
        post(SwarmMessage.Suspend({ reply }))
        yield* Effect.all([serverDone, discoveryEach((r) => DiscoveryMessage.Suspend({ reply: r })), Deferred.await(reply)], { concurrency: "unbounded", discard: true })
        yield* Effect.promise(() => settle(dht.suspend?.()))
      })

    const resume = (): Effect.Effect<void> =>
      Effect.gen(function*() {
        if (!suspended || destroyed) return
        yield* Effect.promise(() => settle(dht.resume?.()))
        yield* Effect.promise(() => settle(server?.resume?.()))
        yield* discoveryEach((r) => DiscoveryMessage.Resume({ reply: r }))
        suspended = false
        const reply = yield* Deferred.make<void>()
        post(SwarmMessage.Resume({ reply }))
        yield* Deferred.await(reply)
      })

    const clear = (): Effect.Effect<void> =>
      Effect.forEach([...discoveries.values()], (d) => Effect.ignore(leave(d.core.topic)), { concurrency: "unbounded", discard: true })

    const destroyNow = (options: { readonly force?: boolean } = {}): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (destroying !== null) {
          const p = destroying
          return Effect.promise(() => p)
        }
        destroyed = true
        const work = Effect.gen(function*() {
          const reply = yield* Deferred.make<void>()
          post(SwarmMessage.Destroy({ reply }))
          yield* Effect.raceFirst(
            Effect.raceFirst(Deferred.await(reply), Effect.ignore(Deferred.await(swarm.done))),
            Effect.sleep(config.closeTimeout ?? 10_000)
          )
          if (options.force !== true) yield* clear()
          const s = server
          if (s !== null) yield* Effect.promise(() => settle(s.close()))
          if (config.ownsDht) yield* Effect.promise(() => settle(dht.destroy(options.force === true ? { force: true } : {})))
        })
        const p = runPromise(work)
        destroying = p
        return Effect.promise(() => p)
      })

    return {
      keyPair,
      dht,
      swarm,
      discoveries,
      get destroyed() {
        return destroyed
      },
      get suspended() {
        return suspended
      },
      server: () => server,
      listening: () => listening,
      join,
      leave,
      handleRefresh,
      handleFlushed,
      handleDestroy,
      joinPeer: (publicKey) => post(SwarmMessage.JoinPeer({ publicKey: Uint8Array.from(publicKey) })),
      leavePeer: (publicKey) => post(SwarmMessage.LeavePeer({ publicKey: Uint8Array.from(publicKey) })),
      listen,
      flush,
      clear,
      suspend,
      resume,
      destroy: destroyNow
    }
  })
