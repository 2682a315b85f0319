/**
 * Flock: the topic swarm, with Hyperswarm's API (the seed's names).
 *
 *     const flock = new Flock()
 *     flock.on('connection', (socket, peerInfo) => { ... })
 *     const discovery = flock.join(topic, { server: true, client: true })
 *     await discovery.flushed()
 *
 * A thin promise facade over the Flock actors (`src/actors/flock/`): the
 * dial-queue actor, one topic-discovery actor per topic, one session fiber
 * per connection. Runs over Omega's `Gateway` by default, or over any
 * hyperdht-compatible `dht` the application passes (which it keeps: a
 * supplied DHT is not destroyed by `flock.destroy()`).
 *
 * Beyond the reference: a stream error never crashes the process (the
 * Flock keeps an error listener on every stream, hyperswarm#93); inbound
 * connections can be capped (`maxServerConnections`); `flush()` always
 * settles; `leave(topic, { closeConnections: true })`; each socket says its
 * `path` and each PeerInfo why its last dial failed (`lastError`).
 */
import { EventEmitter } from "node:events"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { FlockDht, FlockKeyPair, FlockSocket } from "../actors/flock/dht-contract.js"
import { FlockError, PeerFirewalled } from "../actors/flock/errors.js"
import { type FlockBehaviour, type FlockRuntime, makeFlock, type TopicHandle } from "../actors/flock/flock.js"
import type { DiscoveryActor } from "../actors/flock/discovery-actor.js"
import type { PeerInfo } from "../actors/flock/peer-info.js"
import type { SwarmStats } from "../actors/flock/swarm.js"
import { toHex } from "../protocol/encoding.js"
import { Gateway, type GatewayOptions } from "./Gateway.js"

export { FlockError, PeerFirewalled }
export type { FlockDht, FlockSocket, PeerInfo }

export interface FlockOptions extends FlockBehaviour {
  readonly keyPair?: FlockKeyPair | undefined
  readonly seed?: Uint8Array | undefined
  /** A hyperdht-compatible node (Omega's Gateway or hyperdht); the Flock never destroys it. */
  readonly dht?: FlockDht | undefined
  /** Forwarded to the Gateway the Flock creates (ignored with `dht`). */
  readonly bootstrap?: GatewayOptions["bootstrap"]
  readonly port?: GatewayOptions["port"]
  readonly host?: GatewayOptions["host"]
  readonly randomPunchInterval?: number | undefined
  /**
   * Run the Flock's fibers in this Effect context (its Clock, logger,
   * scheduler): an Effect application embedding the facade, or a test on
   * TestClock. Default: Effect's default services.
   */
  readonly context?: Context.Context<never> | undefined
}

/** What `join` returns (hyperswarm's PeerDiscoverySession). */
export class PeerDiscovery {
  destroyed = false
  isClient: boolean
  isServer: boolean

  /** @internal */
  constructor(private readonly flock: Flock, readonly handle: TopicHandle, options: { client?: boolean; server?: boolean }) {
    this.isClient = options.client !== false
    this.isServer = options.server !== false
  }

  get swarm(): Flock {
    return this.flock
  }

  get topic(): Uint8Array {
    return this.handle.topic
  }

  /** Resolves when the announce (server mode) is stored and the first lookup done: true, false if that refresh failed. */
  flushed(): Promise<boolean> {
    return this.flock.run(this.flock.runtime.handleFlushed(this.handle))
  }

  /** Refresh now, optionally with new modes; true when the query completed. */
  refresh(options: { client?: boolean; server?: boolean; limit?: number } = {}): Promise<boolean> {
    if (options.client !== undefined) this.isClient = options.client
    if (options.server !== undefined) this.isServer = options.server
    return this.flock.run(this.flock.runtime.handleRefresh(this.handle, options))
  }

  /** Leave this session; the last session of a topic leaves the topic (unannouncing). */
  async destroy(): Promise<void> {
    if (this.destroyed) return
    this.destroyed = true
    await this.flock.run(this.flock.runtime.handleDestroy(this.handle))
  }
}

/** What `status(topic)` and `topics()` give: a topic's discovery. */
export class TopicStatus {
  /** @internal */
  constructor(private readonly flock: Flock, private readonly actor: DiscoveryActor) {}
  get topic(): Uint8Array {
    return this.actor.core.topic
  }
  /** Some handle of this topic is in client mode (hyperswarm's getter counts the sessions too). */
  get isClient(): boolean {
    return this.actor.core.wantsClient
  }
  get isServer(): boolean {
    return this.actor.core.wantsServer
  }
  get destroyed(): boolean {
    return this.actor.core.destroyed
  }
  get suspended(): boolean {
    return this.actor.core.suspended
  }
  get limit(): number {
    return this.actor.core.limit
  }
  /** The DHT nodes the last query of this topic reached. */
  get closestNodes(): ReadonlyArray<{ readonly host: string; readonly port: number; readonly id?: Uint8Array | null | undefined }> | null {
    return this.actor.core.closestNodes
  }
}

export class Flock extends EventEmitter {
  readonly keyPair: FlockKeyPair
  readonly dht: FlockDht
  /** Open connections (both directions). */
  readonly connections = new Set<FlockSocket>()
  /** @internal */
  readonly runtime: FlockRuntime
  private readonly scope: Scope.Closeable
  private readonly context: Context.Context<never> | undefined
  private readonly ownsDht: boolean
  private closing: Promise<void> | null = null

  constructor(opts: FlockOptions = {}) {
    super()
    this.ownsDht = opts.dht === undefined
    this.dht = opts.dht ?? (new Gateway({
      ...(opts.bootstrap !== undefined ? { bootstrap: opts.bootstrap } : {}),
      ...(opts.port !== undefined ? { port: opts.port } : {}),
      ...(opts.host !== undefined ? { host: opts.host } : {}),
      ...(opts.randomPunchInterval !== undefined ? { randomPunchInterval: opts.randomPunchInterval } : {})
    }) as unknown as FlockDht)
    this.keyPair = opts.keyPair ?? Gateway.keyPair(opts.seed)
    this.context = opts.context
    this.scope = Effect.runSync(Scope.make())
    const build = Scope.provide(this.scope)(makeFlock(
      { ...opts, dht: this.dht, ownsDht: this.ownsDht, keyPair: this.keyPair, self: this },
      {
        connection: (socket, peer) => {
          this.connections.add(socket)
          this.deliver("connection", socket, peer)
        },
        disconnection: (socket) => {
          this.connections.delete(socket)
        },
        update: () => this.deliver("update"),
        ban: (peer, manual) => this.deliver("ban", peer, new PeerFirewalled({ manual })),
        topic: (peer, topic) => this.deliver("topic", peer, topic),
        failed: (error) => {
          if (this.listenerCount("error") > 0) this.emit("error", error)
        }
      }
    ))
    this.runtime = this.context === undefined ? Effect.runSync(build) : Effect.runSyncWith(this.context)(build)
  }

  /**
   * Emit an application event. A listener that throws is the application's
   * bug, not the Flock's: it is logged and reported as 'error' (when
   * someone listens), and the Flock carries on.
   */
  private deliver(event: string, ...args: Array<unknown>): void {
    try {
      this.emit(event, ...args)
    } catch (cause) {
      const error = new FlockError({ reason: "listener-failed", detail: `a '${event}' listener threw`, cause })
      void this.run(Effect.logError(error.message, cause))
      if (this.listenerCount("error") > 0) this.emit("error", error)
    }
  }

  /** @internal Run an Effect of this Flock as a promise (in its context). */
  run<A, E>(effect: Effect.Effect<A, E>): Promise<A> {
    return this.context === undefined ? Effect.runPromise(effect) : Effect.runPromiseWith(this.context)(effect)
  }

  get destroyed(): boolean {
    return this.runtime.destroyed
  }

  get suspended(): boolean {
    return this.runtime.suspended
  }

  /** Dials in progress. */
  get connecting(): number {
    return this.runtime.swarm.core.connecting
  }

  /** Known peers by hex key (connected, connecting, queued, waiting, pinned, banned). */
  get peers(): ReadonlyMap<string, PeerInfo> {
    return this.runtime.swarm.core.peers
  }

  /** Pinned peers (`joinPeer`). */
  get explicitPeers(): ReadonlySet<PeerInfo> {
    return this.runtime.swarm.core.explicitPeers
  }

  get stats(): SwarmStats {
    return this.runtime.swarm.core.stats
  }

  /** The server's listen promise once started, else null. */
  get listening(): Promise<unknown> | null {
    return this.runtime.listening()
  }

  /** Join a 32-byte topic: announce (server) and/or look it up and dial the peers found (client). */
  join(topic: Uint8Array, opts: { server?: boolean; client?: boolean; limit?: number } = {}): PeerDiscovery {
    const handle = this.runtime.join(topic, opts)
    return new PeerDiscovery(this, handle, opts)
  }

  /**
   * Leave a topic: unannounce and stop looking it up. Connections stay
   * open unless `closeConnections` (then those only this topic needed close).
   */
  leave(topic: Uint8Array, opts: { closeConnections?: boolean } = {}): Promise<void> {
    return this.run(this.runtime.leave(topic, opts))
  }

  /** Keep a connection to this key (reconnecting when it drops), topics or not. */
  joinPeer(publicKey: Uint8Array): void {
    if (this.destroyed) throw new FlockError({ reason: "destroyed" })
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) throw new FlockError({ reason: "invalid-argument", detail: "publicKey must be 32 bytes" })
    this.runtime.joinPeer(publicKey)
  }

  leavePeer(publicKey: Uint8Array): void {
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) throw new FlockError({ reason: "invalid-argument", detail: "publicKey must be 32 bytes" })
    this.runtime.leavePeer(publicKey)
  }

  /** The topic's discovery, or null when the topic is not joined. */
  status(topic: Uint8Array): TopicStatus | null {
    const d = this.runtime.discoveries.get(toHex(topic))
    return d === undefined ? null : new TopicStatus(this, d)
  }

  /** The joined topics' discoveries, in join order. */
  *topics(): IterableIterator<TopicStatus> {
    for (const d of this.runtime.discoveries.values()) yield new TopicStatus(this, d)
  }

  /** Start the server for our key pair (done by the first server-mode join). */
  listen(): Promise<unknown> {
    if (this.destroyed && this.runtime.listening() === null) return Promise.reject(new FlockError({ reason: "destroyed" }))
    return this.runtime.listen()
  }

  /** Wait until every peer known now has been tried: true, or false when destroyed meanwhile. Always settles. */
  flush(): Promise<boolean> {
    return this.run(this.runtime.flush())
  }

  /** Leave every topic. */
  clear(): Promise<void> {
    return this.run(this.runtime.clear())
  }

  suspend(_opts: { log?: (msg: string) => void } = {}): Promise<void> {
    return this.run(this.runtime.suspend())
  }

  resume(_opts: { log?: (msg: string) => void } = {}): Promise<void> {
    return this.run(this.runtime.resume())
  }

  /**
   * Close every connection, unannounce every topic (skipped with `force`),
   * close the server, and destroy the DHT if the Flock created it.
   */
  destroy(opts: { force?: boolean } = {}): Promise<void> {
    if (this.closing !== null && opts.force !== true) return this.closing
    this.closing = this.run(this.runtime.destroy(opts)).then(() => this.run(Scope.close(this.scope, Exit.void)))
    return this.closing
  }
}
