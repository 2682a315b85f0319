/**
 * The Effect face of Flock: a `Flock` service built by a Layer over the
 * `Gateway` service (the node is the Gateway's; the Flock never destroys
 * it). Connections arrive as a `Stream` of `(connection, peerInfo)`; a join
 * is a scoped resource (its Scope closing destroys the handle, and the
 * last handle of a topic leaves it, unannouncing).
 *
 *   const program = Effect.gen(function*() {
 *     const flock = yield* Flock
 *     yield* flock.join(topic, { server: true, client: true })
 *     yield* flock.connections.pipe(Stream.take(1), Stream.runForEach(({ connection }) => connection.write(hello)))
 *   }).pipe(Effect.scoped, Effect.provide(Flock.layer().pipe(Layer.provide(Gateway.layer(...)))))
 *
 * Failures are tagged: `FlockError` (with hyperswarm's message and a code).
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { FlockDht, FlockKeyPair, FlockSocket } from "../actors/flock/dht-contract.js"
import type { HandleOptions } from "../actors/flock/discovery.js"
import { FlockError } from "../actors/flock/errors.js"
import { type FlockBehaviour, type FlockRuntime, makeFlock } from "../actors/flock/flock.js"
import type { PeerInfo } from "../actors/flock/peer-info.js"
import type { Direction, SwarmStats } from "../actors/flock/swarm.js"
import type { GatewaySocket } from "../actors/session/host.js"
import * as Connections from "./connections.js"
import { Gateway as EffectGateway } from "./EffectGateway.js"
import { Gateway as GatewayFacade } from "./Gateway.js"

export { FlockError }
export type { PeerInfo }

export interface FlockServiceOptions extends FlockBehaviour {
  /** Our identity; default: a random key pair from the Gateway's crypto. */
  readonly keyPair?: FlockKeyPair | undefined
}

/** One connection the Flock accepted, with the peer it belongs to. */
export interface FlockConnection {
  readonly connection: Connections.Connection
  readonly peer: PeerInfo
  readonly direction: Direction
}

export interface FlockApi {
  readonly keyPair: FlockKeyPair
  /**
   * Every connection from now on (both directions), as the `connection`
   * event gives them. Each subscriber sees the connections made after it
   * subscribed. Fails with the FlockError when the Flock itself fails (its
   * dial-queue actor hit a defect; the failure is logged as well).
   */
  readonly connections: Stream.Stream<FlockConnection, FlockError>
  /** Join a topic for the life of the current Scope (then the handle is destroyed; the last one leaves the topic). */
  readonly join: (topic: Uint8Array, options?: HandleOptions) => Effect.Effect<TopicJoin, FlockError, Scope.Scope>
  /** Leave a topic now (every handle); connections stay unless `closeConnections`. */
  readonly leave: (topic: Uint8Array, options?: { readonly closeConnections?: boolean }) => Effect.Effect<void, FlockError>
  /** Keep a connection to this key for the life of the current Scope. */
  readonly joinPeer: (publicKey: Uint8Array) => Effect.Effect<void, never, Scope.Scope>
  /** Wait until every peer known now has been tried (false when destroyed meanwhile); always settles. */
  readonly flush: Effect.Effect<boolean>
  readonly listen: Effect.Effect<void, FlockError>
  readonly suspend: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
  readonly stats: Effect.Effect<SwarmStats>
  readonly peers: Effect.Effect<ReadonlyMap<string, PeerInfo>>
  /** The promise facade's runtime underneath (for advanced use and tests). */
  readonly runtime: FlockRuntime
}

/** A joined topic (one handle of its discovery). */
export interface TopicJoin {
  readonly topic: Uint8Array
  /** The announce stored (server) and the first lookup done: true, false if that refresh failed. */
  readonly flushed: Effect.Effect<boolean, FlockError>
  readonly refresh: (options?: HandleOptions) => Effect.Effect<boolean, FlockError>
}

const make = (options: FlockServiceOptions = {}): Effect.Effect<FlockApi, never, EffectGateway | Scope.Scope> =>
  Effect.gen(function*() {
    const gateway = yield* EffectGateway
    const keyPair = options.keyPair ?? (yield* Effect.orDie(gateway.keyPair()))
    // hyperdht's API over the Gateway's node (the Flock never destroys that node)
    const facade = GatewayFacade.over(gateway.node, { keyPair: keyPair as never })
    yield* Effect.addFinalizer(() => Effect.promise(() => facade.destroy()))
    const hub = yield* PubSub.unbounded<FlockConnection>()
    // the Flock failed (its dial-queue actor hit a defect): the connections stream fails with it
    const fatal = yield* Deferred.make<never, FlockError>()
    // the Flock's actors live in a scope of their own, closed only after the
    // graceful destroy below (unannounce needs them alive)
    const inner = yield* Scope.fork(yield* Effect.scope)
    const runtime = yield* Scope.provide(inner)(makeFlock(
      { ...options, dht: facade as unknown as FlockDht, ownsDht: false, keyPair },
      {
        connection: (socket: FlockSocket, peer, direction) => {
          PubSub.publishUnsafe(hub, { connection: Connections.fromSocket(socket as GatewaySocket), peer, direction })
        },
        disconnection: () => {},
        update: () => {},
        ban: () => {},
        topic: () => {},
        failed: (error, isFatal) => {
          if (isFatal) Deferred.doneUnsafe(fatal, Effect.fail(error))
        }
      }
    ))
    yield* Effect.addFinalizer(() => Effect.andThen(runtime.destroy(), Scope.close(inner, Exit.void)))

    const join = (topic: Uint8Array, opts: HandleOptions = {}): Effect.Effect<TopicJoin, FlockError, Scope.Scope> =>
      Effect.acquireRelease(
        Effect.try({
          try: () => runtime.join(topic, opts),
          catch: (e) => (e instanceof FlockError ? e : new FlockError({ reason: "invalid-argument", cause: e }))
        }),
        (h) => runtime.handleDestroy(h).pipe(Effect.ignore)
      ).pipe(Effect.map((h): TopicJoin => ({
        topic: h.topic,
        flushed: runtime.handleFlushed(h),
        refresh: (o) => runtime.handleRefresh(h, o)
      })))

    return {
      keyPair,
      connections: Stream.fromPubSub(hub).pipe(Stream.interruptWhen(Deferred.await(fatal))),
      join,
      leave: (topic, o) => runtime.leave(topic, o),
      joinPeer: (publicKey) =>
        Effect.acquireRelease(Effect.sync(() => runtime.joinPeer(publicKey)), () => Effect.sync(() => runtime.leavePeer(publicKey))),
      flush: Effect.suspend(() => runtime.flush()),
      listen: Effect.tryPromise({ try: () => runtime.listen(), catch: (e) => (e instanceof FlockError ? e : new FlockError({ reason: "actor-failed", detail: "listen", cause: e })) }).pipe(Effect.asVoid),
      suspend: Effect.suspend(() => runtime.suspend()),
      resume: Effect.suspend(() => runtime.resume()),
      stats: Effect.sync(() => runtime.swarm.core.stats),
      peers: Effect.sync(() => runtime.swarm.core.peers),
      runtime
    }
  })

export class Flock extends Context.Service<Flock, FlockApi>()("@omegajs/flock/Flock") {
  /** The service, scoped, over the Gateway in context. */
  static readonly make = make
  /** A Flock over the `Gateway` service (provide `Gateway.layer(...)`). */
  static readonly layer = (options: FlockServiceOptions = {}): Layer.Layer<Flock, never, EffectGateway> => Layer.effect(Flock, make(options))
}
