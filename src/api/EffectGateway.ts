/**
 * The Effect face of a Gateway node (`@omegajs/gateway/effect`): a service
 * whose operations are Effects and Streams, built from Layers, every failure
 * a tagged error.
 *
 *   const program = Effect.gen(function*() {
 *     const gateway = yield* Gateway
 *     yield* gateway.ready
 *     const peers = yield* gateway.lookup(topic).pipe(Stream.runCollect)
 *   }).pipe(Effect.provide(Gateway.layer({ bootstrap: ["127.0.0.1:49737"] })))
 *
 *   Gateway.layer(options)          real UDP, the default Crypto, the bootstrap list of `options.bootstrap`
 *                                   (else OMEGA_BOOTSTRAP, else the public HyperDHT nodes), Node's DNS
 *   Gateway.layerNoDeps(options)    the same node on the Transport, Crypto and Bootstrap in context
 *                                   (a simulated network, a fixed Crypto, a static bootstrap list);
 *                                   it runs on the Clock in context (VirtualClock / TestClock in simulations)
 *   Gateway.bootstrapper(port, host, options)   a bootstrap node (hyperdht's `DHT.bootstrapper`)
 *   Gateway.make(options)           the service itself, scoped (several nodes in one program)
 *
 * `relay: true` (or caps and a key pair) makes the node a blind relay for
 * other nodes, as the promise facade's option does (src/api/relays.ts, the
 * same `RelayService`): `gateway.relay` gives its key, whether it started,
 * its stats and its announce rounds.
 *
 * The node is destroyed (its sockets closed, its servers unannounced) when
 * the layer's scope closes.
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ConnectOptions } from "../actors/holepunch/dial.js"
import { ConnectionError, connectionError } from "../actors/holepunch/errors.js"
import type { QueryReply } from "../actors/routing/driver.js"
import type { DhtEvent } from "../actors/routing/node.js"
import type { QueryError, QueryOptions } from "../actors/routing/query.js"
import type { HostOptions } from "../actors/session/host.js"
import type { BlindRelayHostStats } from "../actors/session/relay-connection.js"
import type { ServerOptions } from "../actors/session/server.js"
import { Crypto } from "../layers/Crypto.js"
import type { KeyPair } from "../layers/crypto/types.js"
import { layer as nodeDnsLayer } from "../layers/node/NodeDns.js"
import type { BindError, Transport } from "../layers/Transport.js"
import { UdpTransport } from "../layers/transport/udp.js"
import type { IPv4Address } from "../protocol/encoding.js"
import { Bootstrap, type BootstrapConfig, type BootstrapEntry } from "./Bootstrap.js"
import * as Connections from "./connections.js"
import { Gateway as GatewayFacade } from "./Gateway.js"
import { type GatewayConfig, type GatewayHandle, GatewayService, makeGateway, type NodeStatus } from "./GatewayService.js"
import { hashWith, InvalidArgument, type InvalidSeed, keyPairWith } from "./keys.js"
import * as Records from "./records.js"
import { RelayService, type RelayServiceOptions } from "./relays.js"

/** A node's options; its bootstrap list comes from the `Bootstrap` service. */
export interface GatewayOptions extends Omit<GatewayConfig, "bootstrap"> {
  /** The node's key pair for `connect` when the call names none (default: a random one). */
  readonly keyPair?: KeyPair
  /** Options of the node's connections (keepalive, random-punch interval). */
  readonly connections?: HostOptions
  /**
   * Serve as a blind relay for other nodes, as the promise facade's `relay`
   * option does (./relays.ts): `true` with the default caps
   * (`RELAY_DEFAULTS`), or caps, a key pair and `announce`. Once the node is
   * ready the relay listens on its own key pair and announces it under the
   * relay topic while the node is reachable, so peers using
   * `relayThrough: 'auto'` find it; it unannounces and closes with the
   * layer. Off by default: a node that does not opt in relays nobody.
   */
  readonly relay?: boolean | RelayServiceOptions
}

/** The blind relay of a node started with `relay` (`gateway.relay`): the promise facade's `node.relay`, as Effects. */
export interface GatewayRelay {
  /** The relay's public key (what `relayThrough` names; never the node's default key). */
  readonly publicKey: Uint8Array
  /** Completes once the relay listens (its first announce then runs); fails with why it could not start. */
  readonly started: Effect.Effect<void, ConnectionError>
  /** Sessions, pairings, relayed streams, refusals by cause, and the datagram path. */
  readonly stats: Effect.Effect<BlindRelayHostStats>
  /** Announce rounds that reached at least one node. */
  readonly announces: Effect.Effect<number>
  /** The `RelayService` underneath (the promise facade's `node.relay`). */
  readonly service: RelayService
}

/** `Gateway.layer`'s options: a node's, and its bootstrap list. */
export interface GatewayLayerOptions extends GatewayOptions {
  /** Bootstrap entries (default: OMEGA_BOOTSTRAP if set, empty meaning none, else the public HyperDHT nodes). */
  readonly bootstrap?: ReadonlyArray<BootstrapEntry>
}

/** Why a node could not start: its socket would not bind, or an option is malformed. */
export type GatewayStartError = BindError | InvalidArgument

/** The service: one running HyperDHT node. */
export interface GatewayApi {
  /** The node itself (dht-rpc actor + HyperDHT storage), for what this face does not cover. */
  readonly node: GatewayHandle
  /** The bootstrap list the node started with (resolved). */
  readonly bootstrap: BootstrapConfig
  /** The node's blind relay when it was started with `relay` (else null). */
  readonly relay: GatewayRelay | null
  /** Completes when the node's first bootstrap has finished (hyperdht's `fullyBootstrapped()`). */
  readonly ready: Effect.Effect<void>
  readonly status: Effect.Effect<NodeStatus>
  /**
   * Tell the node its host changed networks (a mobile app told by the OS,
   * a migrated VM): it re-learns its public address and reachability as at
   * bootstrap, and its servers re-announce (`NodeHandle.networkChange`).
   * The node does this on its own when its interface addresses change.
   */
  readonly networkChange: Effect.Effect<void>
  /** The node's events (`ready`, `persistent`, `nat-update`, `add-node`, ...). */
  readonly events: Stream.Stream<DhtEvent>
  /** Ed25519 key pair (from a 32-byte seed, else random): hyperdht's `keyPair(seed)`. */
  readonly keyPair: (seed?: Uint8Array) => Effect.Effect<KeyPair, InvalidSeed>
  /** BLAKE2b-256, hyperdht's `hash`. */
  readonly hash: (data: Uint8Array) => Effect.Effect<Uint8Array, InvalidArgument>
  /** FIND_NODE towards `target`: each reply as it arrives. */
  readonly findNode: (target: Uint8Array, opts?: QueryOptions) => Stream.Stream<QueryReply, QueryError | InvalidArgument>
  /** LOOKUP `topic` (32 bytes): each reply that carries peers, as it arrives. */
  readonly lookup: (topic: Uint8Array, opts?: QueryOptions) => Stream.Stream<Records.LookupResult, QueryError | InvalidArgument>
  /**
   * ANNOUNCE `keyPair.publicKey` under `topic`: the lookup's replies as they
   * arrive (an announce is a lookup whose closest nodes are then sent the
   * signed record); the stream ends once the closest nodes have answered,
   * or fails with `WriteRejected` (each node's answer in `writes`) when none
   * accepted.
   */
  readonly announce: (
    topic: Uint8Array,
    keyPair: KeyPair,
    relayAddresses?: ReadonlyArray<IPv4Address>,
    opts?: Records.AnnounceOptions
  ) => Stream.Stream<Records.LookupResult, Records.WriteRejected | QueryError | InvalidArgument>
  /** UNANNOUNCE: how many nodes confirmed the removal. */
  readonly unannounce: (topic: Uint8Array, keyPair: KeyPair, opts?: QueryOptions) => Effect.Effect<number, QueryError | InvalidArgument>
  /** FIND_PEER: replies that carry the record announced by `publicKey`. */
  readonly findPeer: (publicKey: Uint8Array, opts?: QueryOptions & { readonly hash?: boolean }) => Stream.Stream<Records.FindPeerResult, QueryError | InvalidArgument>
  readonly immutablePut: (value: Uint8Array, opts?: QueryOptions) => Effect.Effect<Records.ImmutablePutResult, Records.WriteRejected | Records.ValueTooLarge | InvalidArgument>
  readonly immutableGet: (hash: Uint8Array, opts?: QueryOptions) => Effect.Effect<Records.ImmutableGetResult | null, QueryError | InvalidArgument>
  readonly mutablePut: (
    keyPair: KeyPair,
    value: Uint8Array,
    opts?: QueryOptions & { readonly seq?: number }
  ) => Effect.Effect<Records.MutablePutResult, Records.WriteRejected | Records.ValueTooLarge | InvalidArgument>
  readonly mutableGet: (
    publicKey: Uint8Array,
    opts?: QueryOptions & { readonly seq?: number; readonly latest?: boolean }
  ) => Effect.Effect<Records.MutableGetResult | null, QueryError | InvalidArgument>
  /** An encrypted connection to the server listening on `remotePublicKey`, closed with the scope. */
  readonly connect: (remotePublicKey: Uint8Array, opts?: ConnectOptions) => Effect.Effect<Connections.Connection, ConnectionError, Scope.Scope>
  /** A server on `keyPair`: announced while the scope is open, its connections a Stream. */
  readonly listen: (keyPair: KeyPair, opts?: ServerOptions) => Effect.Effect<Connections.Listening, ConnectionError, Scope.Scope>
}

type AnnounceStream = Stream.Stream<Records.LookupResult, Records.WriteRejected | QueryError | InvalidArgument>

/** An announce as a Stream of its lookup replies that fails with WriteRejected when no closest node accepted. */
const announceStream = (
  node: GatewayHandle,
  topic: Uint8Array,
  keyPair: KeyPair,
  relayAddresses: ReadonlyArray<IPv4Address>,
  opts: Records.AnnounceOptions
): AnnounceStream =>
  Stream.unwrap(
    Effect.gen(function*() {
      const plan = Records.announcePlan(node, topic, keyPair, relayAddresses, opts)
      if (plan instanceof InvalidArgument) {
        const invalid: AnnounceStream = Stream.fail(plan)
        return invalid
      }
      if (opts.clear === true) yield* Effect.ignore(Records.unannounce(node, topic, keyPair, opts))
      const { query, replies } = yield* node.startQuery(plan.args, plan.opts)
      const settle = (failed: boolean): Stream.Stream<never, Records.WriteRejected> =>
        Stream.suspend(() => {
          const s = plan.settle(query, failed)
          return s instanceof Records.WriteRejected ? Stream.fail(s) : Stream.empty
        })
      const results: AnnounceStream = replies.pipe(
        Stream.map(Records.lookupResultOf),
        Stream.filter((r): r is Records.LookupResult => r !== null),
        Stream.catchTag("QueryError", () => settle(true)),
        Stream.concat(settle(false))
      )
      return results
    })
  )

/** The service over a started node. */
const serviceOf = (node: GatewayHandle, bootstrap: BootstrapConfig, options: GatewayOptions, relay: GatewayRelay | null): GatewayApi => {
  const crypto = node.core.crypto
  let defaultKeyPair: KeyPair | null = options.keyPair ?? null
  const nodeKeyPair = (): KeyPair => (defaultKeyPair ??= crypto.keyPair()!)
  const host = options.connections ?? {}
  return {
    node,
    bootstrap,
    relay,
    ready: node.ready,
    status: node.status,
    networkChange: node.networkChange,
    events: Stream.fromPubSub(node.events),
    keyPair: (seed) => Effect.fromResult(keyPairWith(crypto, seed)),
    hash: (data) => Effect.fromResult(hashWith(crypto, data)),
    findNode: (target, opts) =>
      target instanceof Uint8Array && target.length === 32
        ? node.findNode(target, opts)
        : Stream.fail(new InvalidArgument({ argument: "target", detail: "expected 32 bytes" })),
    lookup: (topic, opts) => Records.lookup(node, topic, opts),
    announce: (topic, keyPair, relayAddresses = [], opts = {}) => announceStream(node, topic, keyPair, relayAddresses, opts),
    unannounce: (topic, keyPair, opts) => Records.unannounce(node, topic, keyPair, opts),
    findPeer: (publicKey, opts) => Records.findPeer(node, publicKey, opts),
    immutablePut: (value, opts) => Records.immutablePut(node, value, opts),
    immutableGet: (hash, opts) => Records.immutableGet(node, hash, opts),
    mutablePut: (keyPair, value, opts) => Records.mutablePut(node, keyPair, value, opts),
    mutableGet: (publicKey, opts) => Records.mutableGet(node, publicKey, opts),
    connect: (remotePublicKey, opts = {}) =>
      Connections.connect(node, remotePublicKey, { ...opts, keyPair: opts.keyPair ?? nodeKeyPair(), host }),
    listen: (keyPair, opts = {}) => Connections.listen(node, keyPair, { ...opts, host })
  }
}

/** A HyperDHT node on the Transport, Crypto and Bootstrap in context, destroyed when the scope closes. */
const make = (options: GatewayOptions = {}): Effect.Effect<GatewayApi, GatewayStartError, Transport | Crypto | Bootstrap | Scope.Scope> =>
  Effect.gen(function*() {
    const bootstrap = yield* Bootstrap
    const { keyPair: _keyPair, connections: _connections, relay: relayOption, ...config } = options
    const node = yield* makeGateway({ ...config, bootstrap: bootstrap.nodes })
    const relay = relayOption === undefined || relayOption === false ? null : yield* startRelay(node, options, relayOption === true ? {} : relayOption)
    return serviceOf(node, bootstrap, options, relay)
  })

/** A failure of the relay's start as a ConnectionError (a listen's own, else SERVER_ERROR). */
const relayStartError = (e: unknown): ConnectionError =>
  e instanceof ConnectionError
    ? e
    : connectionError("SERVER_ERROR", `the blind relay could not start: ${e instanceof Error ? e.message : String(e)}`, undefined, e)

/**
 * The node's blind relay (`relay` option): the promise facade's
 * `RelayService` over this node (`Gateway.over`, on the node's connection
 * host), started once the node is ready, in the background; closed (and
 * unannounced) when the scope closes, before the node is.
 */
const startRelay = (node: GatewayHandle, options: GatewayOptions, relayOptions: RelayServiceOptions): Effect.Effect<GatewayRelay, never, Scope.Scope> =>
  Effect.gen(function*() {
    const host = yield* Connections.host(node, options.connections ?? {})
    const facade = GatewayFacade.over(node, { host, ...(options.keyPair !== undefined ? { keyPair: options.keyPair } : {}) })
    const crypto = node.core.crypto
    const service = new RelayService(facade, crypto.blake2b, relayOptions.keyPair ?? crypto.keyPair()!, relayOptions)
    const started = yield* Deferred.make<void, ConnectionError>()
    // (registered after the node's own finalizer, so it runs first: the relay unannounces while the node still runs)
    // a failure to unannounce or close is logged; the teardown goes on (the node still closes)
    const closing = (what: string, f: () => Promise<unknown>) =>
      Effect.tryPromise(f).pipe(Effect.catch((e) => Effect.logWarning(`the node's blind relay: ${what} failed`, e.cause)))
    yield* Effect.addFinalizer(() => Effect.andThen(closing("close", () => service.close()), closing("its facade's destroy", () => facade.destroy())))
    yield* Effect.forkScoped(
      Effect.andThen(
        node.ready,
        Effect.tryPromise({ try: () => service.start(), catch: relayStartError })
      ).pipe(
        Effect.tapError((e) => Effect.logWarning(`the node's blind relay did not start: ${e.detail}`)),
        Effect.exit,
        Effect.flatMap((exit) => Deferred.done(started, exit))
      )
    )
    return {
      publicKey: service.publicKey,
      started: Deferred.await(started),
      stats: Effect.sync(() => service.relay.stats),
      announces: Effect.sync(() => service.announces),
      service
    }
  })

/** The environment `Gateway.layer` builds the node on. */
const defaults = (bootstrap: ReadonlyArray<BootstrapEntry> | undefined): Layer.Layer<Transport | Crypto | Bootstrap, InvalidArgument> =>
  Layer.mergeAll(
    UdpTransport.layer,
    Crypto.layer,
    (bootstrap === undefined ? Bootstrap.layerDefault : Bootstrap.layer(bootstrap)).pipe(Layer.provide(nodeDnsLayer))
  )

export class Gateway extends Context.Service<Gateway, GatewayApi>()("@omegajs/gateway/Gateway") {
  /** The service, scoped: start a node on the Transport, Crypto and Bootstrap in context. */
  static readonly make = make

  /** A node on the Transport, Crypto and Bootstrap in context (and its Clock). */
  static readonly layerNoDeps = (options: GatewayOptions = {}): Layer.Layer<Gateway, GatewayStartError, Transport | Crypto | Bootstrap> =>
    Layer.effect(Gateway, make(options))

  /** A node on real UDP with the default Crypto; bootstrap list `options.bootstrap`, else OMEGA_BOOTSTRAP, else the public nodes. */
  static readonly layer = (options: GatewayLayerOptions = {}): Layer.Layer<Gateway, GatewayStartError> => {
    const { bootstrap, ...rest } = options
    return Gateway.layerNoDeps(rest).pipe(Layer.provide(defaults(bootstrap)))
  }

  /**
   * A bootstrap node's options (hyperdht's `DHT.bootstrapper(port, host)`):
   * persistent at once, bound to exactly `port`, its public address `host`
   * (an IPv4 address; bind another interface with `options.host`). Start it
   * with `Bootstrap.none`, as `Gateway.bootstrapper` does.
   */
  static readonly bootstrapperOptions = (port: number, host: string, options: GatewayOptions = {}): Effect.Effect<GatewayOptions, InvalidArgument> =>
    Effect.suspend(() => {
      const config = GatewayService.bootstrapperConfig(port, host, options)
      if (config instanceof InvalidArgument) return Effect.fail(config)
      const { bootstrap: _none, ...rest } = config
      return Effect.succeed({ ...options, ...rest })
    })

  /** A bootstrap node on real UDP with the default Crypto. */
  static readonly bootstrapper = (port: number, host: string, options: GatewayOptions = {}): Layer.Layer<Gateway, GatewayStartError> =>
    Layer.unwrap(
      Effect.map(Gateway.bootstrapperOptions(port, host, options), (o) =>
        Gateway.layerNoDeps(o).pipe(Layer.provide(Layer.mergeAll(UdpTransport.layer, Crypto.layer, Bootstrap.none))))
    )
}

/** Ed25519 key pair from a 32-byte seed (random without one) with the Crypto in context; identical to hyperdht's `keyPair(seed)`. */
export const keyPair = (seed?: Uint8Array): Effect.Effect<KeyPair, InvalidSeed, Crypto> =>
  Effect.flatMap(Crypto, (c) => Effect.fromResult(keyPairWith(c, seed)))

/** BLAKE2b-256 with the Crypto in context (hyperdht's `hash`). */
export const hash = (data: Uint8Array): Effect.Effect<Uint8Array, InvalidArgument, Crypto> =>
  Effect.flatMap(Crypto, (c) => Effect.fromResult(hashWith(c, data)))

