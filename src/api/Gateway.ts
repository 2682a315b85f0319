/**
 * The promise facade for plain TypeScript users, shaped like the seed API
 * (hyperdht / dht-rpc's `new DHT(opts)`, `DHT.keyPair(seed)`,
 * `DHT.bootstrapper(port, host)`, `ready()`, `findNode`, `query`, `ping`,
 * `request`, `address()`, `destroy()`, events).
 *
 * Behind it runs the Effect node actor (../actors/routing/driver.ts): with
 * the default environment in one Context shared by the process's nodes, with
 * a given transport or crypto in the node's own ManagedRuntime. The facade
 * converts Effects to promises, and hands query replies to async iterables
 * straight from the node (GatewayQuery).
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import { EventEmitter } from "node:events"
import type { NodeHandle, NodeStatus, QueryReply } from "../actors/routing/driver.js"
import type { DhtEvent } from "../actors/routing/node.js"
import type { Query, QueryError, QueryOptions } from "../actors/routing/query.js"
import type { IncomingResponse } from "../actors/routing/rpc.js"
import { type ConnectOptions, dialSocket, startDial } from "../actors/holepunch/dial.js"
import { connectionError } from "../actors/holepunch/errors.js"
import { type ConnectionHost, connectionHost, type ConnectStats, GatewaySocket } from "../actors/session/host.js"
import type { RouterStats } from "../actors/routing/router.js"
import type { HyperDhtStats } from "../actors/routing/hyperdht.js"
import { decode as decodeCodec, fromHex } from "../protocol/encoding.js"
import { hyperdhtAddress } from "../protocol/records.js"
import { ConnectionPool } from "./pool.js"
import { GatewayServer, type GatewayServerOptions as ServerOptions } from "./server.js"
import { Crypto } from "../layers/Crypto.js"
import type { CryptoImpl, KeyPair } from "../layers/crypto/types.js"
import { BindError, Transport } from "../layers/Transport.js"
import { UdpTransport } from "../layers/transport/udp.js"
import {
  type BootstrapState,
  defaultBootstrap,
  defaultVerifyWorkers,
  type GatewayConfig,
  type GatewayHandle,
  GatewayService,
  makeGateway,
  makeGatewayNow
} from "./GatewayService.js"
import { GatewayDestroyed } from "./errors.js"
import * as Records from "./records.js"
import { clientAutoRelay, RelayService, type RelayServiceOptions } from "./relays.js"
import type { RelayThrough } from "../actors/session/relay-connection.js"
import { asBuffer, facadeCrypto, hashWith, InvalidArgument, InvalidSeed, keyPairWith } from "./keys.js"

export interface GatewayKeyPair {
  readonly publicKey: Buffer
  readonly secretKey: Buffer
}

export interface GatewayOptions extends GatewayConfig {
  /** The node's default key pair (server identity, connect identity). */
  readonly keyPair?: KeyPair
  /** Derive the default key pair from this 32-byte seed. */
  readonly seed?: Uint8Array
  /** Transport layer (default: real UDP). Simulations pass a simulated host. */
  readonly transport?: Layer.Layer<Transport>
  /** Crypto layer (default: Crypto.layer). */
  readonly crypto?: Layer.Layer<Crypto>
  /** Secret-stream keepalive of connections in ms (default 5000); false turns it off. */
  readonly connectionKeepAlive?: number | false
  /**
   * Random (randomizing-NAT) punches: unset, a per-node budget (up to 8 at
   * once, 8000 probes/s and 1024 birthday sockets in all, back to back);
   * set, the reference's rule instead: one at a time, this many ms apart
   * (hyperdht's default is 20 000).
   */
  readonly randomPunchInterval?: number
  /**
   * Serve as a blind relay for other nodes (see ./relays.ts): `true` with
   * the default caps (`RELAY_DEFAULTS`), or caps and a key pair. The relay
   * announces itself under the relay topic while this node is reachable, so
   * peers using `relayThrough: 'auto'` find it. Off by default: a node that
   * does not opt in never relays anyone's traffic.
   */
  readonly relay?: boolean | RelayServiceOptions
}

/** What `connect` accepts as the remote: a 32-byte key, its hex, a hyperdht-address blob, or `{ publicKey, relayAddresses }`. */
export type RemoteKey =
  | Uint8Array
  | string
  | { readonly publicKey: Uint8Array | string; readonly relayAddresses?: ReadonlyArray<{ readonly host: string; readonly port: number }> }

export interface GatewayConnectOptions extends Omit<ConnectOptions, "relayThrough" | "relayFallback"> {
  /** A connection pool (`node.pool()`): its socket for this key if it has one, else the new one is pooled. */
  readonly pool?: ConnectionPool
  /**
   * A blind relay (connect.md §6.8): a relay's key, a list, a function, or
   * `'auto'`: when the direct paths fail with a hole-punch error, the dial
   * is redone through a relay found under the relay topic (and a node whose
   * NAT is randomizing offers one up front). See ./relays.ts.
   */
  readonly relayThrough?: RelayThrough | "auto"
}

export interface GatewayStats extends ConnectStats {
  readonly router: RouterStats | null
  /**
   * The DHT node's datagram counters: `dropped` (too short, undecodable,
   * unknown type), `unmatched` (replies with an unknown or spoofed tid),
   * `invalidTokens` (requests with a stale, foreign or made-up token).
   */
  readonly rpc: { readonly dropped: number; readonly unmatched: number; readonly invalidTokens: number } | null
  /** Records stored and refused, by cause (`rejections`), and replies capped for sources without a token. */
  readonly records: HyperDhtStats | null
}

const identity = <A>(a: A): A => a

// ---- results as hyperdht hands them out: byte fields are Buffers (views, no copy) ----

/** A peer record: its public key and up to 3 relay addresses. */
export interface GatewayPeer {
  readonly publicKey: Buffer
  readonly relayAddresses: ReadonlyArray<{ readonly host: string; readonly port: number }>
}
/** A LOOKUP reply that lists peers (`lookup`, `announce`). */
export interface GatewayLookupResult extends Omit<Records.LookupResult, "token" | "peers"> {
  readonly token: Buffer | null
  readonly peers: ReadonlyArray<GatewayPeer>
}
/** A FIND_PEER reply carrying the record of the key looked for. */
export interface GatewayFindPeerResult extends Omit<Records.FindPeerResult, "token" | "peer"> {
  readonly token: Buffer | null
  readonly peer: GatewayPeer
}
export interface GatewayImmutablePutResult extends Omit<Records.ImmutablePutResult, "hash"> {
  readonly hash: Buffer
}
export interface GatewayImmutableGetResult extends Omit<Records.ImmutableGetResult, "token" | "value"> {
  readonly token: Buffer | null
  readonly value: Buffer
}
export interface GatewayMutablePutResult extends Omit<Records.MutablePutResult, "publicKey" | "signature"> {
  readonly publicKey: Buffer
  readonly signature: Buffer
}
export interface GatewayMutableGetResult extends Omit<Records.MutableGetResult, "token" | "value" | "signature"> {
  readonly token: Buffer | null
  readonly value: Buffer
  readonly signature: Buffer
}

const bufferOrNull = (b: Uint8Array | null): Buffer | null => (b === null ? null : asBuffer(b))
const peerOut = (p: Records.Peer): GatewayPeer => ({ publicKey: asBuffer(p.publicKey), relayAddresses: p.relayAddresses })
const lookupOut = (r: QueryReply): GatewayLookupResult | null => {
  const x = Records.lookupResultOf(r)
  return x === null ? null : { ...x, token: bufferOrNull(x.token), peers: x.peers.map(peerOut) }
}
const findPeerOut = (r: QueryReply): GatewayFindPeerResult | null => {
  const x = Records.findPeerResultOf(r)
  return x === null ? null : { ...x, token: bufferOrNull(x.token), peer: peerOut(x.peer) }
}

/** A read query's plan, or the InvalidArgument its arguments got. */
const planOf = (args: Records.QueryArgs | InvalidArgument, opts: QueryOptions | undefined): QueryPlan | InvalidArgument =>
  args instanceof InvalidArgument ? args : { args, opts }



type QueryArgs = { readonly target: Uint8Array; readonly command: number; readonly internal?: boolean; readonly value?: Uint8Array | null }

/** What a GatewayQuery runs: a query, and how its end becomes the stream's (a write's commits decide it). */
interface QueryPlan {
  readonly args: QueryArgs
  readonly opts?: QueryOptions | undefined
  /** The finished query's outcome: null when it finished, else the error the stream ends with. */
  readonly settle?: (query: Query, err: QueryError | null) => unknown
}

/**
 * A running query: an async iterable of replies, like the reference's query
 * stream. Replies go from the node's core to the iterator through plain
 * callbacks (no Effect queue), so a consumer sees each reply in the
 * microtask after the datagram that carried it; leaving a `for await` loop
 * early (break, return, throw) stops the query, as destroying the
 * reference's stream does.
 */
export class GatewayQuery<A = QueryReply, R = void> implements AsyncIterable<A> {
  private readonly buffer: Array<A> = []
  private waiters: Array<() => void> = []
  private ended = false
  private error: unknown = null
  private stopped = false
  private query: Query | null = null
  private handle: NodeHandle | null = null
  private readonly done: Promise<void>

  /**
   * `plan` may be the typed error of invalid arguments (the query then fails
   * with it on first use), or a function of the node that gives either.
   */
  constructor(
    start: Promise<NodeHandle> | NodeHandle,
    plan: QueryPlan | Error | ((h: NodeHandle) => QueryPlan | Error),
    map: (r: QueryReply) => A | null
  ) {
    let finish: () => void = () => {}
    this.done = new Promise<void>((resolve) => (finish = resolve))
    const end = (err: unknown): void => {
      if (this.ended) return
      this.error = err
      this.ended = true
      this.wake()
      finish()
    }
    const open = (h: NodeHandle): void => {
      this.handle = h
      const p = typeof plan === "function" ? plan(h) : plan
      if (p instanceof Error) return end(p)
      const args = p.args
      const settle = p.settle
      h.exec((node) => {
        if (this.stopped) return end(null)
        const q = args.internal === true ? node.findNode(args.target, p.opts) : node.query({ target: args.target, command: args.command, value: args.value ?? null }, p.opts)
        this.query = q
        q.onreply = (r) => {
          const a = map(r)
          if (a === null) return
          this.buffer.push(a)
          this.wake()
        }
        q.onend = settle === undefined ? end : (err) => end(settle(q, err))
        q.start()
      })
    }
    if (start instanceof Promise) start.then(open, end)
    else open(start)
  }

  private wake(): void {
    if (this.waiters.length === 0) return
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  /** The closest successful replies (complete once the query has finished). */
  get closestReplies(): ReadonlyArray<IncomingResponse> {
    return this.query?.closestReplies ?? []
  }

  get closestNodes(): ReadonlyArray<{ host: string; port: number; id: Uint8Array | null }> {
    return this.closestReplies.map((r) => r.from)
  }

  get successes(): number {
    return this.query?.successes ?? 0
  }

  get errors(): number {
    return this.query?.errors ?? 0
  }

  /** Resolves when the query (and its commit, if any) finished; rejects with its error. */
  async finished(): Promise<R> {
    await this.done
    if (this.error !== null) throw this.error
    return this.outcome()
  }

  /** What `finished()` resolves with once the query has finished without an error. */
  protected outcome(): R {
    return undefined as R
  }

  /** Stop the query (it ends without an error). */
  destroy(): void {
    if (this.stopped || this.ended) return
    this.stopped = true
    const q = this.query
    if (q !== null && this.handle !== null) {
      this.handle.exec(() => {
        if (!q.done) q.destroy(null)
      })
    }
  }

  /** Collect every item. */
  async toArray(): Promise<Array<A>> {
    const out: Array<A> = []
    for await (const x of this) out.push(x)
    return out
  }

  async *[Symbol.asyncIterator](): AsyncIterator<A> {
    let i = 0
    try {
      while (true) {
        if (i < this.buffer.length) {
          yield this.buffer[i++]!
          continue
        }
        if (this.ended) {
          if (this.error !== null) throw this.error
          return
        }
        await new Promise<void>((r) => this.waiters.push(r))
      }
    } finally {
      if (!this.ended) this.destroy()
    }
  }
}

/**
 * The default environment (real UDP, the default Crypto), one Context shared
 * by every node that uses it. Built at once when the default crypto is
 * loaded (after its WASM module's one-off asynchronous load), so a node
 * starts inside its constructor: no layer build and no runtime per process.
 * A failed load is not kept: the next node tries again.
 */
type DefaultEnv = Context.Context<Transport | Crypto>
let sharedEnv: DefaultEnv | null = null
let sharedEnvLoading: Promise<DefaultEnv> | null = null
const defaultEnv = (): DefaultEnv | Promise<DefaultEnv> => {
  if (sharedEnv !== null) return sharedEnv
  const build = (crypto: CryptoImpl): DefaultEnv =>
    (sharedEnv ??= Context.make(Transport, Effect.runSync(UdpTransport.make)).pipe(Context.add(Crypto, crypto)))
  const loaded = Crypto.defaultIfLoaded()
  if (loaded !== null) return build(loaded)
  return (sharedEnvLoading ??= Crypto.loadDefault().then(build, (e: unknown) => {
    sharedEnvLoading = null
    throw e
  }))
}
const runWithDefault = <A, E>(effect: Effect.Effect<A, E, Transport | Crypto>): Promise<A> => {
  const env = defaultEnv()
  return env instanceof Promise ? env.then((ctx) => Effect.runPromiseWith(ctx)(effect)) : Effect.runPromiseWith(env)(effect)
}

/**
 * An announce (hyperdht's `announce`): a lookup of the topic whose closest
 * nodes then get the signed record, so it reads like the lookup stream (an
 * async iterable of `{ token, from, to, peers, bump }` replies, `finished()`,
 * `toArray()`). Beyond the reference it says how each closest node took the
 * write: `writes` as the answers arrive, and `finished()` resolves with the
 * summary (`accepted`, `seqReused`, ..., `closestNodes`, `writes`). When no
 * node accepted, the stream ends with a WriteRejected (`finished()` rejects).
 */
export class GatewayAnnounce extends GatewayQuery<GatewayLookupResult, Records.WriteSummary> {
  // filled in by the plan, which may run inside the base constructor
  private readonly state: { tally: Records.Tally | null; summary: Records.WriteSummary | null }

  constructor(
    start: Promise<NodeHandle> | NodeHandle,
    plan: (h: NodeHandle) => Records.WritePlan | Error
  ) {
    const state: { tally: Records.Tally | null; summary: Records.WriteSummary | null } = { tally: null, summary: null }
    super(start, (h) => {
      const p = plan(h)
      if (p instanceof Error) return p
      state.tally = p.tally
      return {
        args: p.args,
        opts: p.opts,
        settle: (query, err) => {
          const s = p.settle(query, err !== null)
          if (s instanceof Error) return s
          state.summary = s
          return null
        }
      }
    }, lookupOut)
    this.state = state
  }

  /** Each closest node's answer so far (accepted, seqReused, seqTooLow, otherError, failed). */
  get writes(): ReadonlyArray<Records.WriteOutcome> {
    return this.state.tally?.writes ?? []
  }

  /** The summary once the announce has finished and a node accepted it, else null. */
  get summary(): Records.WriteSummary | null {
    return this.state.summary
  }

  protected override outcome(): Records.WriteSummary {
    return this.state.summary!
  }
}

/**
 * A HyperDHT node with hyperdht's API (`new DHT(opts)`): promises, events,
 * async iterables. Without a `bootstrap` option it joins the public
 * HyperDHT network (`OMEGA_BOOTSTRAP` replaces that default list).
 *
 * Events: `ready` (first bootstrap done), `bootstrap-unreachable` (nodes) when
 * no bootstrap node answered, `persistent`, `ephemeral`, `nat-update` (host,
 * port), `add-node` / `remove-node` ({ host, port, id }), `network-update`,
 * `network-change` (interfaces), `listening`, `wakeup`, `suspend`, `resume`,
 * `close`, and `error` (a node that could not start: its port taken, a
 * malformed option), which is emitted only to listeners: every operation
 * (`ready()` first) rejects with the same error, so awaiting one is enough.
 */
/** The hidden constructor option of `Gateway.over`. */
const OVER: unique symbol = Symbol("omega.gateway.over")

export class Gateway extends EventEmitter {
  private keyPairValue: GatewayKeyPair | null = null
  private readonly keySeed: Uint8Array | undefined
  destroyed = false
  /** A node's own runtime when it was given a transport or crypto; null: the default environment. */
  private readonly runtime: ManagedRuntime.ManagedRuntime<Transport | Crypto, never> | null
  private readonly scope: Scope.Closeable
  private readonly opening: Promise<GatewayHandle>
  private handle: GatewayHandle | null = null
  private connHost: ConnectionHost | null = null
  private readonly connectionKeepAlive: number | false | undefined
  private readonly randomPunchInterval: number | undefined
  /** The servers listening on this node (hyperdht's `dht.listening`). */
  readonly listening = new Set<GatewayServer>()
  private relayService: RelayService | null = null

  /** False for a facade over a node that lives elsewhere (`Gateway.over`): destroy() leaves that node running. */
  private readonly ownsNode: boolean

  /** @throws InvalidSeed when `opts.seed` is not 32 bytes. */
  constructor(opts: GatewayOptions = {}) {
    super()
    const over = (opts as { readonly [OVER]?: GatewayHandle })[OVER]
    this.ownsNode = over === undefined
    if (opts.keyPair !== undefined) {
      this.keyPairValue = { publicKey: asBuffer(opts.keyPair.publicKey), secretKey: asBuffer(opts.keyPair.secretKey) }
    } else if (opts.seed !== undefined) {
      this.keyPairValue = Gateway.keyPair(opts.seed) // validates the seed now (throws InvalidSeed)
    }
    this.keySeed = opts.seed
    this.connectionKeepAlive = opts.connectionKeepAlive
    this.randomPunchInterval = opts.randomPunchInterval
    // Nodes with the default environment share its services (the Crypto
    // service and the UDP transport); each node lives in its own scope.
    this.runtime = opts.transport !== undefined || opts.crypto !== undefined
      ? ManagedRuntime.make(Layer.mergeAll(opts.transport ?? UdpTransport.layer, opts.crypto ?? Crypto.layer))
      : null
    this.scope = Scope.makeUnsafe()
    const scope = this.scope
    // on real UDP, writes' signature checks go to worker threads by default
    const verifyWorkers = opts.verifyWorkers ?? (opts.transport === undefined ? defaultVerifyWorkers() : 0)
    // on real UDP, a node given no bootstrap list joins the default one (the
    // public HyperDHT network, or OMEGA_BOOTSTRAP); simulations name theirs
    const bootstrap = opts.bootstrap ?? (opts.transport === undefined ? defaultBootstrap() : undefined)
    const config = { ...opts, verifyWorkers, ...(bootstrap !== undefined ? { bootstrap } : {}) }
    const opened = (h: GatewayHandle): GatewayHandle => {
      // events reach the EventEmitter synchronously from the node actor,
      // deferred to a microtask so listeners never run inside the actor
      h.onEvent((e) => queueMicrotask(() => this.dispatch(e)))
      return h
    }
    // In the default environment, once it is loaded, the node starts here
    // in plain code (no Effect run per node); otherwise through its Effect.
    // A failure (a port taken, a malformed bootstrap entry) is reported the
    // same way on both paths: never thrown from here, every operation
    // (ready() first) rejects with it, and "error" is emitted to listeners.
    const env = this.runtime === null && over === undefined ? defaultEnv() : null
    let started: GatewayHandle | BindError | InvalidArgument | null = over ?? null
    let failure: { readonly error: unknown } | null = null
    if (over === undefined && env !== null && !(env instanceof Promise)) {
      try {
        started = makeGatewayNow(Context.add(env, Scope.Scope, scope), config)
      } catch (error) {
        failure = { error }
      }
    }
    if (failure !== null) this.opening = Promise.reject(failure.error)
    else if (started === null) this.opening = this.runEffect(Effect.map(Scope.provide(makeGateway(config), scope), opened))
    else if (started instanceof BindError || started instanceof InvalidArgument) this.opening = Promise.reject(started)
    else {
      this.handle = opened(started)
      this.opening = Promise.resolve(started)
    }
    this.opening.then(
      (h) => {
        this.handle = h
        if (opts.relay !== undefined && opts.relay !== false) this.startRelay(h, opts.relay === true ? {} : opts.relay)
        // the connection host (UDX mux, punch state) is made as the node becomes ready, so that the
        // first connect() does not pay for it (the reference's node has its connection machinery
        // from its constructor on); in a microtask: after the node's step that became ready, before
        // ready()'s caller resumes
        h.whenReady(() =>
          queueMicrotask(() => {
            if (this.destroyed || this.connHost !== null || this.handle !== h) return
            try {
              this.hostOf(h)
            } catch {
              // (the node closed meanwhile) never thrown from here: the first connect() or
              // listen() makes the host and reports why it cannot
            }
          })
        )
      },
      (err) => {
        // only to listeners: an 'error' nobody listens to would throw, and
        // kill a process that awaited ready() and caught this very failure
        if (this.listenerCount("error") > 0) this.emit("error", err)
      }
    )
  }

  /**
   * The relay service of a node started with `relay` (null otherwise, or
   * until the node is ready): `publicKey`, `relay.stats`, `close()`.
   */
  get relay(): RelayService | null {
    return this.relayService
  }

  private startRelay(h: GatewayHandle, options: RelayServiceOptions): void {
    const service = new RelayService(this, h.core.crypto.blake2b, options.keyPair ?? Gateway.keyPair(), options)
    this.relayService = service
    this.fullyBootstrapped().then(() => service.start()).catch((err: unknown) => {
      if (this.destroyed) return
      this.relayService = null
      void service.close()
      if (this.listenerCount("error") > 0) this.emit("error", err)
    })
  }

  /** The default key pair: `opts.keyPair`, else `keyPair(opts.seed)`, else random (made on first use). */
  get defaultKeyPair(): GatewayKeyPair {
    return (this.keyPairValue ??= Gateway.keyPair(this.keySeed))
  }

  private dispatch(e: DhtEvent): void {
    switch (e._tag) {
      case "ready": {
        const b = this.handle?.bootstrap
        if (b !== undefined && b.state === "unreachable") this.emit("bootstrap-unreachable", b.nodes)
        this.emit("ready")
        break
      }
      case "nat-update":
        this.emit("nat-update", e.host, e.port)
        break
      case "add-node":
      case "remove-node":
        this.emit(e._tag, { host: e.node.host, port: e.node.port, id: asBuffer(e.node.id) })
        break
      case "network-update":
        this.emit("network-update")
        break
      case "network-change":
        this.emit("network-change", e.interfaces)
        break
      case "failed":
        // the node closed itself: the error goes to listeners (never thrown at a
        // process without one), then the facade closes its servers and connections
        if (this.listenerCount("error") > 0) this.emit("error", e.error)
        void this.destroy()
        break
      default:
        this.emit(e._tag)
    }
  }

  // ---- static helpers ------------------------------------------------------------

  /**
   * The promise facade over a node that lives elsewhere (the Effect face's
   * `Gateway` service, a simulated host): hyperdht's API on that node.
   * `destroy()` closes the facade's servers and connections and leaves the
   * node running; its owner's scope ends it.
   */
  static over(
    handle: GatewayHandle,
    opts: Pick<GatewayOptions, "keyPair" | "connectionKeepAlive" | "randomPunchInterval"> & {
      /** The node's ConnectionHost when it has one already (a simulation's, with its timers on the Effect clock). */
      readonly host?: ConnectionHost | undefined
    } = {}
  ): Gateway {
    const { host, ...rest } = opts
    const g = new Gateway({ ...rest, [OVER]: handle } as GatewayOptions)
    if (host !== undefined) g.connHost = host
    return g
  }

  /**
   * Ed25519 key pair; with a 32-byte seed it is identical to hyperdht's
   * `keyPair(seed)` (`secretKey` = seed || publicKey). Random without a seed.
   * @throws InvalidSeed (a tagged error) when the seed is not 32 bytes.
   */
  static keyPair(seed?: Uint8Array): GatewayKeyPair {
    const r = keyPairWith(facadeCrypto(), seed)
    if (Result.isFailure(r)) throw r.failure
    return { publicKey: asBuffer(r.success.publicKey), secretKey: asBuffer(r.success.secretKey) }
  }

  /** BLAKE2b-256 of `data`, as hyperdht's `hash`. */
  static hash(data: Uint8Array): Buffer {
    const r = hashWith(facadeCrypto(), data)
    if (Result.isFailure(r)) throw r.failure
    return asBuffer(r.success)
  }

  /**
   * A bootstrap node: persistent at once, bound to exactly `port`, its public
   * address `host` (an IPv4 address). Bind to another interface with `opts.host`.
   * @throws InvalidArgument for a bad port or host.
   */
  static bootstrapper(port: number, host: string, opts: GatewayOptions = {}): Gateway {
    const config = GatewayService.bootstrapperConfig(port, host, opts)
    if (config instanceof InvalidArgument) throw config
    return new Gateway({ ...opts, ...config })
  }

  // ---- lifecycle ------------------------------------------------------------------

  /** The node handle at once when the node is open (no promise hop), else as node() gives it. */
  private nodeNow(): GatewayHandle | Promise<GatewayHandle> {
    return this.handle !== null && !this.destroyed ? this.handle : this.node()
  }

  private async node(): Promise<GatewayHandle> {
    if (this.destroyed) throw new GatewayDestroyed()
    return this.opening
  }

  /** Resolves when the node has bootstrapped (the reference's fullyBootstrapped()). */
  async fullyBootstrapped(): Promise<void> {
    const h = await this.node()
    await new Promise<void>((resolve) => h.whenReady(resolve))
  }

  /** Same as fullyBootstrapped() (the reference's deprecated name). */
  ready(): Promise<void> {
    return this.fullyBootstrapped()
  }

  async destroy(opts: { readonly force?: boolean } = {}): Promise<void> {
    if (this.destroyed) return
    // the relay and the servers first: they unannounce while the node still runs (skipped with force)
    if (this.relayService !== null) await this.relayService.close({ unannounce: opts.force !== true })
    await Promise.allSettled([...this.listening].map((s) => s.close(opts)))
    this.connHost?.closeAll()
    this.destroyed = true
    try {
      const h = await this.opening
      if (this.ownsNode) await Effect.runPromise(h.destroy)
    } catch {
      // a node that never opened has nothing to close
    }
    this.emit("close")
    await Effect.runPromise(Scope.close(this.scope, Exit.void))
    if (this.runtime !== null) await this.runtime.dispose()
  }

  /** Suspend: servers stop announcing (and unannounce), then the node suspends; new dials fail with SUSPENDED. */
  async suspend(): Promise<void> {
    const h = await this.node()
    await Promise.allSettled([...this.listening].map((s) => s.suspend()))
    await Effect.runPromise(h.suspend)
  }

  /** Resume the node, then its servers announce again. */
  async resume(): Promise<void> {
    const h = await this.node()
    await Effect.runPromise(h.resume)
    await Promise.allSettled([...this.listening].map((s) => s.resume()))
  }

  /**
   * The host changed networks (Omega; dht-rpc only reacts to its interface
   * watcher, which the node also runs): the node drops its NAT samples and
   * firewall state, learns them again ('network-update' when its view
   * changed) and its servers re-announce. For an application that knows it
   * moved before the interfaces say so (a mobile app switching networks).
   */
  async networkChange(): Promise<void> {
    const h = await this.node()
    await Effect.runPromise(h.networkChange)
  }

  // ---- state (synchronous, like the reference) -------------------------------------

  /**
   * Where the node stands with its bootstrap list: `bootstrapping` until the
   * first bootstrap ends, then `joined` (a node answered), `unreachable`
   * (none on the list answered; 'bootstrap-unreachable' was emitted) or
   * `alone` (no list: the first node of its network).
   */
  get bootstrapState(): BootstrapState {
    return this.handle?.bootstrap.state ?? "bootstrapping"
  }

  get bootstrapped(): boolean {
    return this.handle?.core.bootstrapped ?? false
  }
  get ephemeral(): boolean {
    return this.handle?.core.ephemeral ?? true
  }
  get firewalled(): boolean {
    return this.handle?.core.firewalled ?? true
  }
  get online(): boolean {
    return this.handle?.core.online ?? true
  }
  get degraded(): boolean {
    return this.handle?.core.degraded ?? false
  }
  get suspended(): boolean {
    return this.handle?.core.suspended ?? false
  }
  /** Our node id when persistent, else null. */
  get id(): Buffer | null {
    const id = this.handle?.core.id ?? null
    return id === null ? null : asBuffer(id)
  }
  /** Our public host as sampled from peers. */
  get host(): string | null {
    return this.handle?.core.host ?? null
  }
  get port(): number {
    return this.handle?.core.port ?? 0
  }
  get randomized(): boolean {
    return this.handle?.core.randomized ?? false
  }

  /** The local address of the socket requests leave from. */
  address(): { host: string; port: number; family: number } | null {
    const h = this.handle
    if (h === null) return null
    const s = h.core.firewalled ? h.sockets().client : h.sockets().server
    return { host: s.local.host, port: s.local.port, family: 4 }
  }

  /** Our public address when reachable and stable, else null. */
  remoteAddress(): { host: string; port: number } | null {
    return this.handle?.core.remoteAddress() ?? null
  }

  /** Table nodes, most recently seen first. */
  toArray(opts: { readonly limit?: number } = {}): Array<{ host: string; port: number }> {
    return this.handle?.core.toArray(opts.limit) ?? []
  }

  async status(): Promise<NodeStatus> {
    const h = await this.node()
    return Effect.runPromise(h.status)
  }

  // ---- operations -------------------------------------------------------------------

  async addNode(node: { readonly host: string; readonly port: number }): Promise<void> {
    const h = await this.node()
    await Effect.runPromise(h.addNode(node))
  }

  findNode(target: Uint8Array, opts?: QueryOptions): GatewayQuery {
    return new GatewayQuery(this.nodeNow(), { args: { target, command: 2, internal: true }, opts }, identity)
  }

  query(args: { readonly target: Uint8Array; readonly command: number; readonly value?: Uint8Array | null }, opts?: QueryOptions): GatewayQuery {
    return new GatewayQuery(this.nodeNow(), { args: { target: args.target, command: args.command, value: args.value ?? null }, opts }, identity)
  }

  async ping(to: { readonly host: string; readonly port: number }, opts: { readonly size?: number; readonly retry?: boolean } = {}): Promise<IncomingResponse> {
    const h = await this.node()
    return Effect.runPromise(h.ping(to, opts))
  }

  async request(
    args: { readonly token?: Uint8Array | null; readonly command: number; readonly target?: Uint8Array | null; readonly value?: Uint8Array | null },
    to: { readonly host: string; readonly port: number },
    opts: { readonly retry?: boolean } = {}
  ): Promise<IncomingResponse> {
    const h = await this.node()
    return Effect.runPromise(h.request(args, to, opts))
  }

  // ---- connections ------------------------------------------------------------------

  /** The node's connection host (made on first use). */
  async connections(): Promise<ConnectionHost> {
    const h = await this.node()
    return this.hostOf(h)
  }

  private hostOf(h: GatewayHandle): ConnectionHost {
    return (this.connHost ??= Effect.runSync(
      connectionHost(h, h.core.crypto, {
        ...(this.connectionKeepAlive !== undefined ? { connectionKeepAlive: this.connectionKeepAlive } : {}),
        ...(this.randomPunchInterval !== undefined ? { randomPunchInterval: this.randomPunchInterval } : {})
      }).pipe(
        Effect.provideService(Clock.Clock, h.clock)
      )
    ))
  }

  /**
   * A server: `await server.listen(keyPair)` announces it; 'connection'
   * gives each encrypted socket (hyperdht's `createServer([opts], [onconnection])`).
   */
  createServer(opts?: ServerOptions | ((socket: GatewaySocket) => void), onconnection?: (socket: GatewaySocket) => void): GatewayServer {
    if (typeof opts === "function") return this.createServer({}, opts)
    const o = (opts ?? {}) as ServerOptions & { readonly onconnection?: (socket: GatewaySocket) => void }
    const server = new GatewayServer(this, o)
    const f = o.onconnection ?? onconnection
    if (f !== undefined) server.on("connection", f)
    return server
  }

  /**
   * Connect to the server listening on `remote`: the encrypted socket at
   * once ('open' once connected; 'error' with hyperdht's codes: PEER_NOT_FOUND,
   * PEER_CONNECTION_FAILED, SERVER_ERROR, HOLEPUNCH_ABORTED, ...).
   */
  connect(remote: RemoteKey, opts: GatewayConnectOptions = {}): GatewaySocket {
    const keyPair = opts.keyPair ?? this.defaultKeyPair
    const parsed = parseRemote(remote)
    const pool = opts.pool ?? null
    if (pool !== null && parsed !== null) {
      const pooled = pool.get(parsed.publicKey)
      if (pooled !== null) return pooled
    }
    const keepAlive = this.connectionKeepAlive === false ? 0 : (this.connectionKeepAlive ?? 5000)
    const socket = dialSocket(keepAlive, parsed?.publicKey ?? new Uint8Array(32), keyPair)
    if (parsed === null) {
      process.nextTick(() => socket.destroy(connectionError("INVALID_ARGUMENT", "the remote must be a 32-byte public key, its hex, a hyperdht address or { publicKey }")))
      return socket
    }
    const { relayThrough, pool: _pool, ...rest } = opts
    const base: ConnectOptions = parsed.relayAddresses.length > 0 && opts.relayAddresses === undefined ? { ...rest, relayAddresses: parsed.relayAddresses } : rest
    const start = (h: GatewayHandle): void => {
      if (this.destroyed) return void socket.destroy(connectionError("NODE_DESTROYED"))
      const host = this.hostOf(h)
      const o: ConnectOptions = relayThrough === "auto"
        ? { ...base, ...clientAutoRelay(host, parsed.publicKey, keyPair.publicKey) }
        : relayThrough !== undefined ? { ...base, relayThrough } : base
      startDial(host, socket, parsed.publicKey, keyPair, o)
    }
    if (pool !== null) pool.attachStream(socket, false)
    const h = this.nodeNow()
    if (h instanceof Promise) h.then(start, (err: unknown) => socket.destroy(err instanceof Error ? err : connectionError("NODE_DESTROYED")))
    else start(h)
    return socket
  }

  /** A connection pool: one connection per remote key across servers and dials (hyperdht's `pool()`). */
  pool(): ConnectionPool {
    return new ConnectionPool()
  }

  /** Connection statistics (punches by path, relaying, dials and their failures by code, server handshakes) and the router's. */
  get stats(): GatewayStats {
    const host = this.connHost
    const base: ConnectStats = host?.stats ?? {
      punches: { open: 0, lan: 0, consistent: 0, random: 0, tryLater: 0 },
      relaying: { attempts: 0, successes: 0, aborts: 0, upgrades: 0, fallbacks: 0 },
      connects: { started: 0, succeeded: 0, failed: 0, reachabilityRetries: 0, byCode: {} },
      server: { handshakes: 0, firewalled: 0, connections: 0, badHandshakes: 0, duplicates: 0, holepunchesIgnored: 0, refused: 0, clientRelaysRefused: 0 }
    }
    const h = this.handle
    const io = h?.core.io.stats
    return {
      ...base,
      router: h?.hyperdht.router.stats ?? null,
      rpc: io === undefined ? null : { dropped: io.dropped, unmatched: io.unmatched, invalidTokens: io.invalidTokens },
      records: h?.hyperdht.stats ?? null
    }
  }

  // ---- HyperDHT records ------------------------------------------------------------

  private async run<A, E>(f: (h: GatewayHandle) => Effect.Effect<A, E>): Promise<A> {
    const h = await this.node()
    return this.runEffect(f(h))
  }

  /** Run an Effect in this node's environment. */
  private runEffect<A, E>(effect: Effect.Effect<A, E, Transport | Crypto>): Promise<A> {
    return this.runtime !== null ? this.runtime.runPromise(effect) : runWithDefault(effect)
  }

  /** LOOKUP `topic` (32 bytes): an async iterable of `{ token, from, to, peers, bump }` replies. */
  lookup(topic: Uint8Array, opts?: QueryOptions): GatewayQuery<GatewayLookupResult> {
    return new GatewayQuery(this.nodeNow(), planOf(Records.lookupQuery(topic), opts), lookupOut)
  }

  /** FIND_PEER: replies carrying the announced record of `publicKey`. */
  findPeer(publicKey: Uint8Array, opts?: QueryOptions & { readonly hash?: boolean }): GatewayQuery<GatewayFindPeerResult> {
    return new GatewayQuery(this.nodeNow(), planOf(Records.findPeerQuery((b) => Gateway.hash(b), publicKey, opts), opts), findPeerOut)
  }

  /**
   * Announce `keyPair.publicKey` (with up to 3 `relayAddresses`) under
   * `topic` (32 bytes): a lookup stream like `lookup`'s, whose closest nodes
   * then store the signed record. `await stream.finished()` resolves with how
   * each closest node took it (`accepted`, `writes`, ...) and rejects with
   * WriteRejected when none did. `clear: true` unannounces first.
   */
  announce(
    topic: Uint8Array,
    keyPair: KeyPair = this.defaultKeyPair,
    relayAddresses: ReadonlyArray<{ host: string; port: number }> = [],
    opts: Records.AnnounceOptions = {}
  ): GatewayAnnounce {
    const start = this.nodeNow()
    const cleared = opts.clear !== true
      ? start
      : Promise.resolve(start).then((h) => this.runEffect(Effect.ignore(Records.unannounce(h, topic, keyPair, opts))).then(() => h))
    return new GatewayAnnounce(cleared, (h) => Records.announcePlan(h, topic, keyPair, relayAddresses, opts))
  }

  /** Remove our announcement from the nodes holding it; resolves with how many confirmed. */
  unannounce(topic: Uint8Array, keyPair: KeyPair = this.defaultKeyPair, opts?: QueryOptions): Promise<number> {
    return this.run((h) => Records.unannounce(h, topic, keyPair, opts))
  }

  /** Store `value` (≤ 1850 bytes) under its BLAKE2b-256 hash: `{ hash, closestNodes, accepted, ... }`. */
  immutablePut(value: Uint8Array, opts?: QueryOptions): Promise<GatewayImmutablePutResult> {
    return this.run((h) => Effect.map(Records.immutablePut(h, value, opts), (r) => ({ ...r, hash: asBuffer(r.hash) })))
  }

  /** The value stored under `hash` (checked against it), or null. */
  immutableGet(hash: Uint8Array, opts?: QueryOptions): Promise<GatewayImmutableGetResult | null> {
    return this.run((h) =>
      Effect.map(Records.immutableGet(h, hash, opts), (r) => (r === null ? null : { ...r, token: bufferOrNull(r.token), value: asBuffer(r.value) }))
    )
  }

  /** Store a signed value under hash(keyPair.publicKey): `{ publicKey, closestNodes, seq, signature, accepted, ... }`. */
  mutablePut(keyPair: KeyPair, value: Uint8Array, opts?: QueryOptions & { readonly seq?: number }): Promise<GatewayMutablePutResult> {
    return this.run((h) =>
      Effect.map(Records.mutablePut(h, keyPair, value, opts), (r) => ({ ...r, publicKey: asBuffer(r.publicKey), signature: asBuffer(r.signature) }))
    )
  }

  /** The latest verified value signed by `publicKey` (with `latest: false`, the first found), or null. */
  mutableGet(publicKey: Uint8Array, opts?: QueryOptions & { readonly seq?: number; readonly latest?: boolean }): Promise<GatewayMutableGetResult | null> {
    return this.run((h) =>
      Effect.map(
        Records.mutableGet(h, publicKey, opts),
        (r) => (r === null ? null : { ...r, token: bufferOrNull(r.token), value: asBuffer(r.value), signature: asBuffer(r.signature) })
      )
    )
  }
}

/** The remote of a connect: its key and any relay addresses it names. */
const parseRemote = (remote: RemoteKey): { publicKey: Uint8Array; relayAddresses: ReadonlyArray<{ host: string; port: number }> } | null => {
  if (typeof remote === "string") {
    const b = /^[0-9a-fA-F]{64}$/.test(remote) ? fromHex(remote) : null
    return b === null ? null : { publicKey: b, relayAddresses: [] }
  }
  if (remote instanceof Uint8Array) {
    if (remote.length === 32) return { publicKey: remote, relayAddresses: [] }
    const a = decodeCodec(hyperdhtAddress, remote)
    if (Result.isFailure(a)) return null
    return { publicKey: a.success.key, relayAddresses: a.success.nodes ?? [] }
  }
  if (typeof remote === "object" && remote !== null) {
    const inner = parseRemote(remote.publicKey)
    if (inner === null) return null
    return { publicKey: inner.publicKey, relayAddresses: remote.relayAddresses ?? inner.relayAddresses }
  }
  return null
}

export { ConnectionPool, GatewayDestroyed, GatewayServer, GatewaySocket, InvalidSeed }
export default Gateway
