/**
 * A node's connection host: what connections between public keys share on
 * one HyperDHT node (connect.md §1, §9; udx.md §2).
 *
 * - One UDX mux spans the node's two sockets: UDX packets (first byte 0xff)
 *   arriving on either are handed to it before the DHT sees them
 *   (`setUdxReceiver`), and stream ids are looked up across both, as one
 *   udx-native instance does for all its sockets.
 * - The servers listening on the node, the relay-address cache of the last
 *   successful dials, the keepalive of new connections, and the statistics.
 * - `GatewaySocket`: the encrypted socket handed to users (a
 *   NoiseSecretStream with hyperdht's extra fields: its raw UDX stream's
 *   remote address and the path it took).
 *
 * Made once per node, on the first createServer/connect (a node that never
 * connects pays nothing), in the node's scope: closing the node destroys
 * every stream of the mux.
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import type { GatewayHandle } from "../../api/GatewayService.js"
import type { CryptoImpl, KeyPair } from "../../layers/crypto/types.js"
import * as Noise from "../../layers/crypto/noise.js"
import type { Datagram, Endpoint, UdpSocket } from "../../layers/Transport.js"
import { namespaces, type Namespaces } from "../../protocol/records.js"
import * as C from "../../protocol/connect.js"
import { RandomPunchLimiter, type RandomPunchLimiterOptions } from "../holepunch/decide.js"
import { LOW_TTL } from "../holepunch/puncher.js"
import { CLIENT, SERVER, type SocketKind } from "../routing/rpc.js"
import { type NoiseHandshakeResult, NoiseSecretStream } from "./secret-stream-node.js"
import { fromUdxStream, type SecretStreamClock } from "./secret-stream.js"
import { makeUdxMux, type UdxMux, type UdxStream } from "./udx.js"

export { Noise }

const noop = (): void => {}

/**
 * How long a node remembers that a server could not reach it although it
 * called itself OPEN (ms): NAT state that let its reachability probes in
 * lasts about as long (a UDP conntrack entry that saw traffic both ways:
 * 120 s on Linux; routers keep mappings for minutes).
 */
export const UNREACHABLE_MEMORY = 5 * 60_000

/** How a connection reached its peer (hyperdht#303 asks for this). */
export type ConnectionPath = "direct" | "lan" | "punched" | "relayed"

export interface ConnectStats {
  /** Connections made, by path (the reference counts `punches.open/consistent/random`). */
  readonly punches: { open: number; lan: number; consistent: number; random: number; tryLater: number }
  /** Relayed connections: attempts, successes, aborts, upgrades to a direct path, and dials redone through a relay after a failed punch (`fallbacks`). */
  readonly relaying: { attempts: number; successes: number; aborts: number; upgrades: number; fallbacks: number }
  /**
   * Dials started, opened and failed (by code); `reachabilityRetries`: dials redone as a firewalled
   * client after the server's connection to us, a client that called itself OPEN, never came.
   */
  readonly connects: { started: number; succeeded: number; failed: number; reachabilityRetries: number; byCode: Record<string, number> }
  readonly server: {
    handshakes: number
    firewalled: number
    connections: number
    badHandshakes: number
    duplicates: number
    holepunchesIgnored: number
    /** Handshakes refused because MAX_PENDING_HANDSHAKES were in progress. */
    refused: number
    /** Relays named by clients that the server did not dial (over MAX_CLIENT_RELAY_DIALS or its per-client share). */
    clientRelaysRefused: number
  }
}

export interface HostOptions {
  /** Secret-stream keepalive of new connections (ms); false or 0 turns it off. Default 5000. */
  readonly connectionKeepAlive?: number | false
  /** Random source for stream ids (seeded in simulations). */
  readonly random?: () => number
  /**
   * The reference's random-punch rule: one random punch at a time, this
   * long (ms; the reference's default is 20 000) after the last one ended,
   * at the reference's pace (1750 probes 20 ms apart). Unset (the default):
   * random punches run concurrently and back to back within a per-node
   * budget (`RandomPunchLimiter`: 8 at once, 8000 probes/s, 1024 sockets),
   * each at up to 2000 probes/s.
   */
  readonly randomPunchInterval?: number
  /**
   * The node's random-punch budget (punches at once, probes per second,
   * sockets, the pace of one punch); ignored when `randomPunchInterval` is
   * set. Default: `new RandomPunchLimiter()`'s.
   */
  readonly randomPunchBudget?: RandomPunchLimiterOptions
  /**
   * Secret-stream timers (keepalive, inactivity) on the node's Effect clock
   * instead of real timers: simulations on TestClock / VirtualClock. Real
   * UDP keeps real timers (a keepalive reset per write must stay cheap).
   */
  readonly effectTimers?: boolean
}

/** The encrypted socket of a connection: hyperdht's NoiseSecretStream with the path it took. */
export class GatewaySocket extends NoiseSecretStream {
  /** How the connection reached the peer; null until open. */
  path: ConnectionPath | null = null
  /** The UDX stream under the secret stream (null until open). */
  udx: UdxStream | null = null
  /** The blind relay's public key when the path is "relayed". */
  relayedVia: Uint8Array | null = null

  /** The remote UDP address of the raw stream (as udx-native's `remoteHost`). */
  get remoteHost(): string | null {
    return this.udx?.remote?.host ?? null
  }
  get remotePort(): number {
    return this.udx?.remote?.port ?? 0
  }

  /** Open over `udx` with the finished handshake, recording the path. */
  startOver(udx: UdxStream, handshake: NoiseHandshakeResult, path: ConnectionPath): void {
    this.udx = udx
    this.path = path
    const raw = fromUdxStream(udx)
    Object.defineProperties(raw, {
      remoteHost: { get: () => udx.remote?.host ?? null, enumerable: true },
      remotePort: { get: () => udx.remote?.port ?? 0, enumerable: true },
      id: { value: udx.id, enumerable: true },
      remoteId: { get: () => udx.remoteId, enumerable: true },
      udx: { value: udx, enumerable: false }
    })
    // a dial's socket: its owner has held it since connect(), and its 'open' should not wait for
    // the rest of the dial's step (its cleanup, the attempt's end: 0.3-1 ms in the NAT lab)
    this.start(raw, { handshake, openNow: true })
  }
}

/** How long after a handshake took the spare ephemeral key pair the next one is made (ms). */
const EPHEMERAL_REFILL_DELAY = 20

export class ConnectionHost {
  readonly stats: ConnectStats = {
    punches: { open: 0, lan: 0, consistent: 0, random: 0, tryLater: 0 },
    relaying: { attempts: 0, successes: 0, aborts: 0, upgrades: 0, fallbacks: 0 },
    connects: { started: 0, succeeded: 0, failed: 0, reachabilityRetries: 0, byCode: {} },
    server: { handshakes: 0, firewalled: 0, connections: 0, badHandshakes: 0, duplicates: 0, holepunchesIgnored: 0, refused: 0, clientRelaysRefused: 0 }
  }
  /** Relay nodes that led to the last successful dial of a key (hex), newest last (bounded). */
  readonly relayCache = new Map<string, ReadonlyArray<Endpoint>>()
  /**
   * When a dial last found that servers cannot reach us although the node
   * says it is reachable (OPEN); with the node's public address then. Until
   * UNREACHABLE_MEMORY has passed, or the address changes, dials say their
   * class is unknown instead (the server then offers holepunching).
   */
  private unreachable: { readonly at: number; readonly address: string } | null = null
  /** The node's open and opening encrypted sockets (closed with the node). */
  readonly sockets = new Set<GatewaySocket>()
  /** Public keys (hex) of the servers listening on this node. */
  readonly listening = new Set<string>()
  readonly ns: Namespaces
  readonly keepAlive: number
  /** The node's random-punch budget (connect.md §6.5 step 10.2; the reference's rule with `randomPunchInterval`). */
  readonly randomPunches: RandomPunchLimiter
  readonly random: () => number
  private readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>
  /** The secret streams' clock when they follow the node's Effect clock (`effectTimers`). */
  readonly streamClock: SecretStreamClock | undefined

  constructor(
    readonly handle: GatewayHandle,
    readonly crypto: CryptoImpl,
    readonly mux: UdxMux,
    context: Context.Context<never>,
    options: HostOptions
  ) {
    this.ns = namespaces(crypto.blake2b)
    const ka = options.connectionKeepAlive
    this.keepAlive = ka === false ? 0 : (ka ?? 5000)
    this.random = options.random ?? Math.random
    this.randomPunches = options.randomPunchInterval !== undefined
      ? RandomPunchLimiter.reference(options.randomPunchInterval)
      : new RandomPunchLimiter(options.randomPunchBudget)
    this.runFork = Effect.runForkWith(context)
    this.streamClock = options.effectTimers === true
      ? {
        now: () => handle.clock.currentTimeMillisUnsafe(),
        setTimer: (f, ms) => this.spawn(Effect.andThen(Effect.sleep(ms), Effect.sync(f))),
        clearTimer: (h) => (h as () => void)()
      }
      : undefined
    this.spareEphemeral = crypto.keyPair()
  }

  /** A Noise ephemeral key pair made ahead of need (`ephemeralKeyPair`); handed out once. */
  private spareEphemeral: KeyPair | null = null
  private refilling = false

  /**
   * A fresh ephemeral key pair for a Noise handshake: one made ahead (when
   * the host was made, or a moment after the previous handshake took one),
   * so that its key generation is off the handshake's path; undefined when
   * there is none (Noise then makes one). Each pair is handed out once.
   */
  ephemeralKeyPair(): KeyPair | undefined {
    const e = this.spareEphemeral
    this.spareEphemeral = null
    if (!this.refilling) {
      this.refilling = true
      this.after(EPHEMERAL_REFILL_DELAY, () => {
        this.refilling = false
        if (this.spareEphemeral === null) this.spareEphemeral = this.crypto.keyPair()
      })
    }
    return e ?? undefined
  }

  /**
   * A fiber of `effect` in the node's scope; returns a function that
   * interrupts it. A failure or defect (not an interruption) is logged and
   * handed to `onFailure`, so the unit it belongs to can fail visibly.
   */
  spawn(effect: Effect.Effect<unknown, unknown>, onFailure?: (cause: Cause.Cause<unknown>) => void): () => void {
    // one fiber, started here and tied to the node's scope (`Fiber.runIn`): closing the node
    // interrupts it; the node's scope closed already: nothing starts
    const scope = this.handle.scope
    if (scope.state._tag === "Closed") return noop
    const supervised = Effect.catchCause(effect, (cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.void
        : Effect.andThen(
          Effect.logError("connection host: a fiber failed", Cause.pretty(cause)),
          Effect.sync(() => onFailure?.(cause))
        ))
    const fiber = Fiber.runIn(this.runFork(supervised), scope)
    return () => fiber.interruptUnsafe()
  }

  /**
   * Call `f` after `ms` (the node's clock), unless the returned function is
   * called first. On the transport's shared timer when it has one: no fiber
   * and no sleep per timer (a server arms two per handshake). The timer's
   * entry holds only a cell that the cancel function empties, so a
   * cancelled timer keeps nothing alive until its deadline. `f` runs as a
   * fiber of the node (none once the node closed; a defect is logged).
   * Without a shared timer: a fiber that sleeps, in the node's scope.
   */
  after(ms: number, f: () => void): () => void {
    const schedule = this.handle.transport.schedule
    if (schedule === undefined) return this.spawn(Effect.andThen(Effect.sleep(ms), Effect.sync(f)))
    const cell: { f: (() => void) | null } = { f }
    schedule(this.handle.clock.currentTimeMillisUnsafe() + ms, () => {
      const run = cell.f
      cell.f = null
      // as a fiber of its own when it fires: a defect in `f` is logged (spawn), not thrown into the timer
      if (run !== null) this.spawn(Effect.sync(run))
    })
    return () => {
      cell.f = null
    }
  }

  /** Consulted before the mux for every UDX packet on any of the node's sockets (a blind relay's streams). */
  private readonly interceptors = new Set<(socket: UdpSocket, d: Datagram) => boolean>()

  addUdxInterceptor(f: (socket: UdpSocket, d: Datagram) => boolean): void {
    this.interceptors.add(f)
  }

  removeUdxInterceptor(f: (socket: UdpSocket, d: Datagram) => boolean): void {
    this.interceptors.delete(f)
  }

  /**
   * A UDX packet (first byte 0xff) arrived on `socket`, one of the node's
   * sockets or a punch socket: interceptors first, then the mux. False when
   * nothing took it.
   */
  receiveUdx(socket: UdpSocket, d: Datagram): boolean {
    if (this.interceptors.size > 0) for (const f of this.interceptors) if (f(socket, d)) return true
    return this.mux.handle(d, socket)
  }

  /** Keep `socket` with the node's connections until it closes. */
  track(socket: GatewaySocket): void {
    this.sockets.add(socket)
    socket.once("close", () => this.sockets.delete(socket))
  }

  /**
   * The node is being destroyed: its connections close without an error
   * (the user asked for it), before the mux's streams go with the node's scope.
   */
  closeAll(): void {
    for (const s of [...this.sockets]) if (!s.destroyed) s.destroy()
  }

  /** The socket dht-rpc sends from: the client socket while firewalled, else the server socket (hyperdht's `dht.socket`). */
  dhtSocket(): UdpSocket {
    const s = this.handle.sockets()
    return this.handle.core.firewalled ? s.client : s.server
  }

  /**
   * One low-TTL probe from the DHT socket toward `to`, for a side that said
   * OPEN and so waits for the other to reach that socket. Our reachability
   * check can pass wrongly (NAT state that an earlier socket on our port
   * left let the DHT's probes in): the probe opens a NAT that maps
   * consistently toward `to`, whose packets then come in as replies. An open
   * host loses one datagram, which the other side's node ignores.
   */
  openNatToward(to: Endpoint): void {
    this.dhtSocket().send(to, C.HOLEPUNCH_PROBE, LOW_TTL)
  }

  socketOf(kind: SocketKind): UdpSocket {
    const s = this.handle.sockets()
    return kind === SERVER ? s.server : s.client
  }

  /**
   * Our local addresses for a handshake payload (connect.md §3.4): the server
   * socket's port on each non-internal IPv4 interface, or 127.0.0.1 when the
   * node is bound to loopback (then nothing else is reachable).
   */
  localAddresses(): Array<Endpoint> {
    const local = this.handle.sockets().server.local
    if (local.host === "127.0.0.1") return [{ host: "127.0.0.1", port: local.port }]
    const out: Array<Endpoint> = []
    for (const host of this.handle.transport.localAddresses()) out.push({ host, port: local.port })
    if (out.length === 0) out.push({ host: "127.0.0.1", port: local.port })
    return out
  }

  /** A server could not reach us although the node says it is OPEN (a dial's passive wait ran out). */
  markUnreachable(): void {
    const own = this.handle.core.remoteAddress()
    this.unreachable = { at: this.handle.clock.currentTimeMillisUnsafe(), address: own === null ? "" : `${own.host}:${own.port}` }
  }

  /**
   * The node says it is OPEN, but a dial recently found servers could not
   * reach it (same public address); forgets an old or outdated finding.
   */
  believedUnreachable(): boolean {
    const u = this.unreachable
    if (u === null) return false
    const own = this.handle.core.remoteAddress()
    if (this.handle.clock.currentTimeMillisUnsafe() - u.at > UNREACHABLE_MEMORY || own === null || `${own.host}:${own.port}` !== u.address) {
      this.unreachable = null
      return false
    }
    return true
  }

  /** Remember the relay nodes of a successful dial (bounded: the oldest 256 are forgotten). */
  cacheRelays(key: string, relays: ReadonlyArray<Endpoint>): void {
    if (relays.length === 0) return
    this.relayCache.delete(key)
    this.relayCache.set(key, relays.slice(0, 3))
    if (this.relayCache.size > 256) this.relayCache.delete(this.relayCache.keys().next().value!)
  }

  countFailure(code: string): void {
    this.stats.connects.failed++
    this.stats.connects.byCode[code] = (this.stats.connects.byCode[code] ?? 0) + 1
  }
}

const hosts = new WeakMap<GatewayHandle, ConnectionHost>()

/** The node's connection host, made on first use in the node's scope. */
export const connectionHost = (handle: GatewayHandle, crypto: CryptoImpl, options: HostOptions = {}): Effect.Effect<ConnectionHost> =>
  Effect.suspend(() => {
    const existing = hosts.get(handle)
    if (existing !== undefined) return Effect.succeed(existing)
    return Effect.gen(function*() {
      const again = hosts.get(handle)
      if (again !== undefined) return again
      const mux = yield* makeUdxMux(handle.sockets().server, { standalone: false })
      const context = yield* Effect.context<never>()
      const host = new ConnectionHost(handle, crypto, mux, context, options)
      hosts.set(handle, host)
      handle.setUdxReceiver((socket, d) => host.receiveUdx(socket, d))
      yield* Effect.addFinalizer(() => Effect.sync(() => handle.setUdxReceiver(null)))
      return host
    }).pipe(Scope.provide(handle.scope))
  })

export { CLIENT, SERVER }
