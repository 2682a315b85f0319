/**
 * Relays nobody has to configure (Omega's own; hyperdht has no relay
 * discovery, its users name relays by key):
 *
 * - A node started with `relay: true` (or relay options) runs a blind relay
 *   (`BlindRelayServer`) on a key pair of its own, with caps on relay
 *   clients, pairs per client, bytes per second per client and the lifetime
 *   of each relayed connection, and announces that key under one well-known
 *   topic, `RELAY_TOPIC_NAME` hashed, while it is reachable (not
 *   firewalled): first when it is ready, then every `RELAY_REFRESH`; it
 *   unannounces when it closes. Nodes that do not opt in never relay anyone's
 *   traffic.
 * - `relayThrough: 'auto'` on `connect` and `createServer` uses the node's
 *   `RelayDirectory`: a LOOKUP of that topic (cached for `DIRECTORY_TTL`)
 *   gives the relays' keys. A dial whose direct paths fail with a hole-punch
 *   error is redone through one of them (`ConnectOptions.relayFallback`),
 *   never the remote's key nor ours. A node that knows its own NAT is
 *   randomizing offers a cached relay in its first handshake already, as
 *   hyperswarm does with a configured relay for such nodes, so the relay
 *   and the punch race and a later punch upgrades the connection.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { KeyPair } from "../layers/crypto/types.js"
import { equalBytes, toHex } from "../protocol/encoding.js"
import { BlindRelayServer, type BlindRelayServerOptions } from "./blind-relay.js"
import type { ConnectOptions } from "../actors/holepunch/dial.js"
import type { ConnectionHost, GatewaySocket } from "../actors/session/host.js"
import type { RelayThrough } from "../actors/session/relay-connection.js"
import * as Records from "./records.js"
import type { GatewayServer, ServerOptions } from "./server.js"

/** What relays hash into the topic they announce under. */
export const RELAY_TOPIC_NAME = "omega/blind-relay/v1"

/** The relay topic: BLAKE2b-256 of `RELAY_TOPIC_NAME`. */
export const relayTopic = (blake2b: (data: Uint8Array) => Uint8Array): Uint8Array => blake2b(new TextEncoder().encode(RELAY_TOPIC_NAME))

/** How long a directory's lookup result is used before the next lookup (ms). */
export const DIRECTORY_TTL = 5 * 60_000
/** How often a relay announces itself again (ms; records live 20 min on the DHT). */
export const RELAY_REFRESH = 10 * 60_000
/** How soon a relay that was firewalled looks again whether it is reachable (ms). */
export const RELAY_RECHECK = 5_000

/** The caps of a relay started with `relay: true` (each can be set in the relay options). */
export const RELAY_DEFAULTS = {
  /** Relay clients (connections to the relay) at once. */
  maxSessions: 256,
  /** Relayed connections one client may have at once. */
  maxActivePerSession: 8,
  /** Pairs one client may have waiting for their other half. */
  maxPendingPerSession: 8,
  /** How long one relayed connection may last (ms): 1 hour. */
  maxPairLifetime: 60 * 60_000,
  /** What one relay client may send through the relay, in bytes per second: 1 MiB/s. */
  maxBytesPerSecond: 1024 * 1024
} as const

/** `relay` of the node's options: `true` for the defaults, or caps and a key pair. */
export interface RelayServiceOptions extends BlindRelayServerOptions {
  /** The relay's key pair (default: a fresh one; never the node's default key pair). */
  readonly keyPair?: KeyPair
  /** Announce under the relay topic (default true). */
  readonly announce?: boolean
}

// ---------------------------------------------------------------------------
// Finding relays
// ---------------------------------------------------------------------------

/**
 * The relays a node knows of: the keys announced under the relay topic,
 * from one LOOKUP at a time, kept for `DIRECTORY_TTL`.
 */
export class RelayDirectory {
  private keys: ReadonlyArray<Uint8Array> = []
  private fetchedAt = -Infinity
  private inflight: Deferred.Deferred<ReadonlyArray<Uint8Array>> | null = null
  private readonly topic: Uint8Array

  constructor(
    private readonly host: ConnectionHost,
    private readonly ttl: number = DIRECTORY_TTL
  ) {
    this.topic = relayTopic(host.crypto.blake2b)
  }

  private now(): number {
    return this.host.handle.clock.currentTimeMillisUnsafe()
  }

  /** The relays' keys: the cached list while fresh, else a LOOKUP (shared by concurrent callers). */
  list(): Effect.Effect<ReadonlyArray<Uint8Array>> {
    return Effect.suspend(() => {
      if (this.now() - this.fetchedAt < this.ttl) return Effect.succeed(this.keys)
      const pending = this.inflight
      if (pending !== null) return Deferred.await(pending)
      const d = Deferred.makeUnsafe<ReadonlyArray<Uint8Array>>()
      this.inflight = d
      return this.lookup().pipe(
        Effect.tap((keys) =>
          Effect.sync(() => {
            this.keys = keys
            this.fetchedAt = this.now()
          })
        ),
        Effect.onExit((exit) =>
          Effect.sync(() => {
            this.inflight = null
            Deferred.doneUnsafe(d, exit._tag === "Success" ? exit : Effect.succeed(this.keys))
          })
        )
      )
    })
  }

  /** One relay, chosen at random among those found, that is none of `exclude`; null when there is none. */
  find(exclude: ReadonlyArray<Uint8Array>): Effect.Effect<Uint8Array | null> {
    return Effect.map(this.list(), (keys) => this.pick(keys, exclude))
  }

  /**
   * A cached relay at once (none of `exclude`), or null; a stale or empty
   * cache starts a LOOKUP in the background for the next caller.
   */
  cached(exclude: ReadonlyArray<Uint8Array>): Uint8Array | null {
    if (this.now() - this.fetchedAt >= this.ttl && this.inflight === null) this.host.spawn(Effect.ignore(this.list()))
    return this.pick(this.keys, exclude)
  }

  /** Forget the list (the next call looks the relays up again). */
  invalidate(): void {
    this.fetchedAt = -Infinity
  }

  private pick(keys: ReadonlyArray<Uint8Array>, exclude: ReadonlyArray<Uint8Array>): Uint8Array | null {
    const usable = keys.filter((k) => !exclude.some((x) => equalBytes(x, k)))
    return usable.length === 0 ? null : usable[Math.floor(this.host.random() * usable.length)]!
  }

  private lookup(): Effect.Effect<ReadonlyArray<Uint8Array>> {
    const seen = new Map<string, Uint8Array>()
    return Stream.runForEach(Records.lookup(this.host.handle, this.topic), (r) =>
      Effect.sync(() => {
        for (const p of r.peers) if (p.publicKey.length === 32) seen.set(toHex(p.publicKey), p.publicKey)
      })
    ).pipe(
      Effect.catchCause(() => Effect.void),
      Effect.map(() => [...seen.values()])
    )
  }
}

// ---------------------------------------------------------------------------
// Being a relay
// ---------------------------------------------------------------------------

/** What the relay service needs from its node (the facade). */
export interface RelayServiceNode {
  readonly destroyed: boolean
  readonly firewalled: boolean
  readonly defaultKeyPair: KeyPair
  connections(): Promise<ConnectionHost>
  createServer(opts?: ServerOptions, onconnection?: (socket: GatewaySocket) => void): GatewayServer
  announce(topic: Uint8Array, keyPair: KeyPair): { finished(): Promise<unknown> }
  unannounce(topic: Uint8Array, keyPair: KeyPair): Promise<number>
}

/**
 * A node's relay service (`relay: true`): the blind relay listening on its
 * own key pair and the announce loop. `close()` stops announcing,
 * unannounces, and closes the relay (its relayed connections end).
 */
export class RelayService {
  readonly relay: BlindRelayServer
  readonly keyPair: KeyPair
  private server: GatewayServer | null = null
  private timer: ReturnType<typeof setTimeout> | null = null
  private closed = false
  private announced = false
  private readonly topic: Uint8Array
  /** Announce rounds that reached at least one node. */
  announces = 0

  constructor(
    private readonly node: RelayServiceNode,
    blake2b: (data: Uint8Array) => Uint8Array,
    keyPair: KeyPair,
    private readonly options: RelayServiceOptions = {}
  ) {
    const { keyPair: _k, announce: _a, ...caps } = options
    this.relay = new BlindRelayServer(node, { ...RELAY_DEFAULTS, ...caps })
    this.keyPair = keyPair
    this.topic = relayTopic(blake2b)
  }

  /** The relay's public key (what `relayThrough` names). */
  get publicKey(): Uint8Array {
    return this.keyPair.publicKey
  }

  /** Listen on the relay's key pair, then announce (unless `announce: false`). */
  async start(): Promise<void> {
    this.server = await this.relay.listen(this.keyPair)
    if (this.options.announce !== false) this.tick()
  }

  private schedule(ms: number): void {
    if (this.closed) return
    this.timer = setTimeout(() => this.tick(), ms)
    this.timer.unref?.()
  }

  /** One round of the announce loop: announce while reachable, look again soon while not. */
  private tick(): void {
    this.timer = null
    if (this.closed || this.node.destroyed) return
    if (this.node.firewalled) {
      this.schedule(RELAY_RECHECK)
      return
    }
    this.node.announce(this.topic, this.keyPair).finished().then(
      () => {
        this.announced = true
        this.announces++
        this.schedule(RELAY_REFRESH)
      },
      () => this.schedule(RELAY_RECHECK)
    )
  }

  /** Stop announcing, unannounce (best effort, bounded; skipped with `unannounce: false`), close the relay. Idempotent. */
  async close(opts: { readonly unannounce?: boolean } = {}): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.timer !== null) clearTimeout(this.timer)
    if (this.announced && !this.node.destroyed && opts.unannounce !== false) {
      await Promise.race([
        this.node.unannounce(this.topic, this.keyPair).catch(() => 0),
        new Promise((resolve) => setTimeout(resolve, 2000).unref?.())
      ])
    }
    await this.relay.close()
    this.server = null
  }
}

// ---------------------------------------------------------------------------
// `relayThrough: 'auto'`
// ---------------------------------------------------------------------------

const directories = new WeakMap<ConnectionHost, RelayDirectory>()

/** The relay directory of a node's connection host (made on first use). */
export const relayDirectoryOf = (host: ConnectionHost): RelayDirectory => {
  let d = directories.get(host)
  if (d === undefined) directories.set(host, d = new RelayDirectory(host))
  return d
}

/**
 * A dial's `relayThrough: 'auto'`: offer a cached relay up front when our
 * NAT is randomizing, and fall back on a relay from the directory when the
 * direct paths fail with a hole-punch error.
 */
export const clientAutoRelay = (host: ConnectionHost, remotePublicKey: Uint8Array, ownPublicKey: Uint8Array): Pick<ConnectOptions, "relayThrough" | "relayFallback"> => {
  const directory = relayDirectoryOf(host)
  return {
    relayThrough: () => (host.handle.core.randomized ? directory.cached([remotePublicKey, ownPublicKey]) : null),
    relayFallback: (exclude) => directory.find(exclude)
  }
}

/**
 * A server's `relayThrough: 'auto'`: while our NAT is randomizing, offer a
 * cached relay in each handshake reply (a client behind another randomizing
 * NAT could not be reached otherwise; a punch that works later upgrades the
 * connection). The directory is looked up now, so the first reply has one.
 */
export const serverAutoRelay = (host: ConnectionHost, ownPublicKey: Uint8Array): RelayThrough => {
  const directory = relayDirectoryOf(host)
  directory.cached([ownPublicKey])
  return () => (host.handle.core.randomized ? directory.cached([ownPublicKey]) : null)
}
