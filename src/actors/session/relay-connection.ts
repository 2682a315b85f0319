/**
 * Blind-relay wiring on a node (connect.md §6.8; udx.md §9): the deterministic
 * cores of ./protomux.ts and ./blind-relay.ts put on real connections.
 *
 * - Who relays: `selectRelay` / `relayThroughInfo` (what a side puts in its
 *   handshake payload) and `clientRelayPlan` / `serverRelayPlan` (connect.md
 *   §6.8: the side whose payload carries `relayThrough` decides; when both
 *   do, the server's relay and token win; the relay's owner is the
 *   initiator).
 * - Client side of a relay connection: `pairThroughRelay` runs blind-relay's
 *   `pair` over an open connection to the relay and, once answered, connects
 *   our UDX stream to the relay-side stream; `relayConnection` does the whole
 *   of it (dial the relay with a 5 s keepalive, pair, tie the relay
 *   connection's life to the relayed stream).
 * - Relay side: `BlindRelayHost` (`serveBlindRelay(host)`) accepts a
 *   blind-relay session on each incoming connection, matches pairs across
 *   sessions (with the core's abuse limits), and forwards the relayed UDX
 *   packets with a `UdxRelay` that sees the node's datagrams before its UDX
 *   mux.
 *
 * One protomux per encrypted socket (`protomuxOf`, as the reference's
 * `Protomux.from`): each secret-stream message is one protomux frame, which
 * holds because `NoiseSecretStream` pushes each decrypted message as one
 * chunk and a flowing Node Readable hands chunks to 'data' one at a time.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import type { CryptoImpl, KeyPair } from "../../layers/crypto/types.js"
import { type Datagram, type Endpoint, sameEndpoint, type UdpSocket } from "../../layers/Transport.js"
import type { RelayThroughInfo } from "../../protocol/connect.js"
import { toHex } from "../../protocol/encoding.js"
import { dial } from "../holepunch/dial.js"
import { type ConnectionError, connectionError } from "../holepunch/errors.js"
import {
  BlindRelayClient,
  ByteMeter,
  BlindRelayServer,
  type BlindRelayServerStats,
  type BlindRelaySession,
  PAIRING_TIMEOUT,
  RelayAborted,
  type RelayPairing,
  type RelayStreamHooks,
  UdxRelay,
  udxRelayHooks,
  type UdxRelayStats
} from "./blind-relay.js"
import type { ConnectionHost, GatewaySocket } from "./host.js"
import { Protomux } from "./protomux.js"
import type { NoiseSecretStream } from "./secret-stream-node.js"
import type { UdxStream } from "./udx.js"

export { PAIRING_TIMEOUT }

/** Secret-stream keepalive of a relay control connection (ms; hyperdht `relayKeepAlive`). */
export const RELAY_KEEPALIVE = 5000

// ---------------------------------------------------------------------------
// Who relays (connect.md §6.8)
// ---------------------------------------------------------------------------

/**
 * The `relayThrough` option of `connect` and `createServer`: a relay
 * server's public key, a list (one is picked at random per connection), a
 * function returning either, or null.
 */
export type RelayThrough =
  | Uint8Array
  | ReadonlyArray<Uint8Array>
  | (() => Uint8Array | ReadonlyArray<Uint8Array> | null)
  | null

/** The relay to use for one connection (hyperdht `selectRelay`); null when none (or not a 32-byte key). */
export const selectRelay = (option: RelayThrough | undefined, random: () => number = Math.random): Uint8Array | null => {
  let r: unknown = typeof option === "function" ? option() : option
  if (Array.isArray(r)) r = r.length === 0 ? null : r[Math.floor(random() * r.length)]
  return r instanceof Uint8Array && r.length === 32 ? r : null
}

/** What one side puts in its handshake payload: the relay it picked and a fresh 32-byte token. */
export interface RelayOffer {
  readonly publicKey: Uint8Array
  readonly token: Uint8Array
}

/** Pick a relay for one connection and draw its token (hyperdht `relay.token()`); null when no relay is configured. */
export const relayThroughInfo = (option: RelayThrough | undefined, crypto: CryptoImpl, random?: () => number): RelayOffer | null => {
  const publicKey = selectRelay(option, random)
  return publicKey === null ? null : { publicKey, token: crypto.randomBytes(32) }
}

/** How one side takes part in a relayed connection. */
export interface RelayPlan {
  readonly relayPublicKey: Uint8Array
  readonly token: Uint8Array
  /** True for the relay's owner (the side whose relay is used). */
  readonly isInitiator: boolean
}

const planFrom = (theirs: RelayThroughInfo | null): RelayPlan | null =>
  theirs === null || theirs.publicKey.length !== 32 || theirs.token.length !== 32
    ? null
    : { relayPublicKey: theirs.publicKey, token: theirs.token, isInitiator: false }

/**
 * Client (hyperdht `connect.js` `relayConnection`): the server's relay when
 * its reply carries one (we are not the initiator), else ours (initiator).
 * Null: nobody asked for a relay.
 */
export const clientRelayPlan = (ours: RelayOffer | null, serverPayload: RelayThroughInfo | null): RelayPlan | null =>
  planFrom(serverPayload) ?? (ours === null ? null : { relayPublicKey: ours.publicKey, token: ours.token, isInitiator: true })

/**
 * Server (hyperdht `server.js` `_relayConnection`): ours when configured
 * (initiator), else the client's (not initiator). Null: nobody asked.
 */
export const serverRelayPlan = (ours: RelayOffer | null, clientPayload: RelayThroughInfo | null): RelayPlan | null =>
  ours !== null ? { relayPublicKey: ours.publicKey, token: ours.token, isInitiator: true } : planFrom(clientPayload)

// ---------------------------------------------------------------------------
// One protomux per encrypted socket
// ---------------------------------------------------------------------------

const muxes = new WeakMap<NoiseSecretStream, Protomux>()

/**
 * The protomux over `socket` (made on first use, as the reference's
 * `Protomux.from`): every frame is one secret-stream message. The socket's
 * 'data' events feed it (so the socket is dedicated to protomux channels),
 * its close destroys it, a protocol violation destroys the socket, the
 * peer's end ends ours (as the reference), and socket errors are absorbed
 * here (the close tells the channels).
 */
export const protomuxOf = (socket: NoiseSecretStream): Protomux => {
  const existing = muxes.get(socket)
  if (existing !== undefined) return existing
  const mux = new Protomux({
    send: (frame) => {
      if (!socket.destroyed && !socket.writableEnded) socket.write(frame)
    },
    onError: () => {
      socket.destroy()
    }
  })
  muxes.set(socket, mux)
  socket.on("data", (message: Uint8Array) => mux.onMessage(message))
  socket.on("end", () => {
    if (!socket.destroyed && !socket.writableEnded) socket.end()
  })
  socket.on("error", () => {})
  socket.once("close", () => mux.destroy())
  if (socket.destroyed) mux.destroy()
  return mux
}

// ---------------------------------------------------------------------------
// Client: pairing over a relay connection
// ---------------------------------------------------------------------------

interface ClientEntry {
  readonly client: BlindRelayClient
  /** Pairings awaiting their answer, by token (hex). */
  readonly waiters: Map<string, (outcome: RelayPairing | RelayAborted) => void>
}

const clients = new WeakMap<NoiseSecretStream, ClientEntry>()

/** The blind-relay client of a relay connection (one per socket, as the reference's `Client.from`). */
const relayClientOf = (host: ConnectionHost, socket: NoiseSecretStream, id: Uint8Array | null): ClientEntry => {
  const existing = clients.get(socket)
  if (existing !== undefined && !existing.client.closed) return existing
  const waiters = new Map<string, (outcome: RelayPairing | RelayAborted) => void>()
  const settle = (token: Uint8Array, outcome: RelayPairing | RelayAborted): void => {
    const key = toHex(token)
    const w = waiters.get(key)
    if (w === undefined) return
    waiters.delete(key)
    w(outcome)
  }
  const client = new BlindRelayClient(protomuxOf(socket), {
    now: () => host.handle.clock.currentTimeMillisUnsafe(),
    id,
    events: {
      onPaired: (p) => settle(p.token, p),
      onAborted: (token, _isInitiator, error) => settle(token, error)
    }
  })
  const entry: ClientEntry = { client, waiters }
  clients.set(socket, entry)
  return entry
}

export interface PairThroughRelayOptions {
  /** True for the relay's owner (`RelayPlan.isInitiator`). */
  readonly isInitiator: boolean
  /** The 32-byte pairing token (`RelayPlan.token`). */
  readonly token: Uint8Array
  /** Our UDX stream of the relayed connection (created, not connected). */
  readonly localStream: UdxStream
  /**
   * Only a fallback for the channel id when the relay socket has no public
   * key yet; the id is the relay socket's own public key (hyperdht:
   * `{ id: relaySocket.publicKey }`), which the relay accepts with
   * `socket.remotePublicKey`.
   */
  readonly keyPair?: KeyPair
  /** How long to wait for the relay's answer (ms, default 15 000). */
  readonly timeout?: number
}

/** A completed pairing: `localStream` is connected to the relay. */
export interface RelayPaired {
  /** The relay-side UDX stream dedicated to us (our stream's remote id). */
  readonly remoteId: number
  /** The relay's UDP address (the relay connection's remote address). */
  readonly relayAddress: Endpoint
  /** Our socket the relayed packets use (the relay connection's). */
  readonly socket: UdpSocket
}

const aborted = (detail: string): ConnectionError => connectionError("RELAY_ABORTED", detail)

/**
 * Pair `localStream` through the relay at the other end of `relaySocket`
 * (connect.md §6.8 steps 2–5): opens the "blind-relay" channel (id = our
 * public key on that connection), sends `pair { isInitiator, token, id:
 * localStream.id, seq: 0 }`, waits at most `timeout` for the answer, then
 * connects `localStream` to the relay-side stream at the relay connection's
 * remote address, over the relay connection's UDP socket.
 *
 * The relay socket may still be opening (frames wait for it). Fails with
 * RELAY_ABORTED on timeout, when the relay connection or the channel closes,
 * or when `localStream` closed or got connected by another path meanwhile
 * (it is never re-pointed here; upgrading a relayed stream to a direct path
 * is the caller's `connectUnsafe`); interrupted, it withdraws the
 * pairing (`unpair`). Counts `host.stats.relaying` (attempts, successes,
 * aborts). The relay socket stays the caller's (see `relayConnection`).
 */
export const pairThroughRelay = (
  host: ConnectionHost,
  relaySocket: GatewaySocket,
  options: PairThroughRelayOptions
): Effect.Effect<RelayPaired, ConnectionError> =>
  Effect.suspend(() => {
    const stats = host.stats.relaying
    stats.attempts++
    const { isInitiator, token, localStream } = options
    const timeout = options.timeout ?? PAIRING_TIMEOUT
    if (!(token instanceof Uint8Array) || token.length !== 32) {
      stats.aborts++
      return Effect.fail(connectionError("INVALID_ARGUMENT", "the relay token must be 32 bytes"))
    }
    if (relaySocket.destroyed) {
      stats.aborts++
      return Effect.fail(aborted("the relay connection is closed"))
    }
    const id = relaySocket.publicKey.length === 32 ? relaySocket.publicKey : (options.keyPair?.publicKey ?? null)
    const entry = relayClientOf(host, relaySocket, id)
    const key = toHex(token)
    const answer = Effect.callback<RelayPairing, ConnectionError>((resume) => {
      if (entry.waiters.has(key)) {
        resume(Effect.fail(connectionError("INVALID_ARGUMENT", "a pairing with this token is already waiting on this relay connection")))
        return
      }
      entry.waiters.set(key, (outcome) =>
        resume(outcome instanceof RelayAborted ? Effect.fail(aborted(outcome.detail)) : Effect.succeed(outcome)))
      const sent = entry.client.pair(isInitiator, token, localStream.id)
      if (Result.isFailure(sent)) {
        entry.waiters.delete(key)
        resume(Effect.fail(sent.failure.code === "CHANNEL_CLOSED" ? aborted(sent.failure.message) : connectionError("INVALID_ARGUMENT", sent.failure.message)))
        return
      }
      // interrupted (or timed out) while waiting: withdraw the pairing
      return Effect.sync(() => {
        if (entry.waiters.delete(key) && !entry.client.closed) entry.client.unpair(token)
      })
    })
    return answer.pipe(
      Effect.timeoutOption(timeout),
      Effect.flatMap((o) =>
        Option.isNone(o) ? Effect.fail(aborted(`no pairing answer from the relay within ${timeout} ms`)) : Effect.succeed(o.value)
      ),
      Effect.flatMap((p) => {
        const udx = relaySocket.udx
        if (relaySocket.destroyed || udx === null || udx.remote === null) {
          return Effect.fail(aborted("the relay connection has no UDX path"))
        }
        const relayAddress = { host: udx.remote.host, port: udx.remote.port }
        // another path won meanwhile (a direct packet, a punch): never re-point a connected stream here
        if (localStream.connected) return Effect.fail(aborted("the relayed stream is already connected by another path"))
        if (!localStream.connectUnsafe(p.remoteId, relayAddress, udx.socket)) {
          return Effect.fail(aborted("the relayed stream closed before the pairing completed"))
        }
        return Effect.succeed({ remoteId: p.remoteId, relayAddress, socket: udx.socket } satisfies RelayPaired)
      }),
      Effect.tap(() => Effect.sync(() => stats.successes++)),
      Effect.tapError(() => Effect.sync(() => stats.aborts++))
    )
  })

/**
 * Whether a packet that arrived on `socket` from `from` came through the
 * relay of `path` (hyperdht `isRelay`): such packets do not reveal a direct
 * path (connect.md §6.8 upgrade, §8.2 step 5).
 */
export const isRelayPath = (path: RelayPaired, socket: UdpSocket, from: Endpoint): boolean =>
  socket === path.socket && sameEndpoint(from, path.relayAddress)

/** Dial the relay server `relayPublicKey` for relay control (secret-stream keepalive 5 s, errors absorbed). */
export const openRelaySocket = (host: ConnectionHost, relayPublicKey: Uint8Array, keyPair: KeyPair, keepAlive: number = RELAY_KEEPALIVE): GatewaySocket => {
  const socket = dial(host, relayPublicKey, keyPair)
  socket.on("error", () => {})
  socket.setKeepAlive(keepAlive)
  return socket
}

export interface RelayConnectionOptions extends Omit<PairThroughRelayOptions, "keyPair"> {
  readonly relayPublicKey: Uint8Array
  /** Our identity on the relay connection (hyperdht: the node's default key pair). */
  readonly keyPair: KeyPair
  /** Keepalive of the relay connection (ms, default 5000). */
  readonly keepAlive?: number
}

/** A relayed path: `localStream` is connected through the relay over `relaySocket`. */
export interface RelayedPath extends RelayPaired {
  readonly relaySocket: GatewaySocket
}

/**
 * The whole of connect.md §6.8 for one side: dial the relay, pair
 * `localStream` through it (≤ `timeout` from the start of the dial, as
 * hyperdht's 15 s relay timer), and destroy the relay connection when the
 * relayed stream closes. On failure or interruption the relay connection is
 * destroyed (RELAY_ABORTED, with the relay dial's error when it failed).
 * The caller then starts its secret stream over `localStream` (path
 * "relayed").
 */
export const relayConnection = (host: ConnectionHost, options: RelayConnectionOptions): Effect.Effect<RelayedPath, ConnectionError> =>
  Effect.suspend(() => {
    const relaySocket = openRelaySocket(host, options.relayPublicKey, options.keyPair, options.keepAlive)
    let dialError: Error | null = null
    relaySocket.once("error", (e: Error) => {
      dialError = e
    })
    return pairThroughRelay(host, relaySocket, options).pipe(
      Effect.mapError((e) => (dialError !== null && e.code === "RELAY_ABORTED" ? aborted(`the relay connection failed: ${dialError.message}`) : e)),
      Effect.onExit((exit) =>
        Effect.sync(() => {
          if (exit._tag === "Failure") {
            relaySocket.destroy()
            return
          }
          const stream = options.localStream
          if (stream.isClosed) relaySocket.destroy()
          else host.spawn(Effect.andThen(stream.closed, Effect.sync(() => relaySocket.destroy())))
        })
      ),
      Effect.map((p) => ({ ...p, relaySocket }))
    )
  })

// ---------------------------------------------------------------------------
// Relay side
// ---------------------------------------------------------------------------

export interface BlindRelayHostOptions {
  /** How long half a pair may wait for its other half (ms, default 15 000). */
  readonly pairingTimeout?: number
  /** Pairs one session may have waiting (default 16). */
  readonly maxPendingPerSession?: number
  /** Pairs waiting across all sessions (default 1024). */
  readonly maxPendingTotal?: number
  /** Matched pairs one session may hold (default 64). */
  readonly maxActivePerSession?: number
  /** Relay clients (sessions) at once (default: no cap). */
  readonly maxSessions?: number
  /** How long one relayed connection may last through this relay (ms; default: no cap). Its end resets both peers' streams. */
  readonly maxPairLifetime?: number
  /** Bytes per second one relay client may send through the relay, over all its pairs (default: no cap). */
  readonly maxBytesPerSecond?: number
  /**
   * Put the relay in front of the node's UDX mux through
   * `host.handle.setUdxReceiver` (default true). With false, the owner
   * calls `receive(socket, datagram)` before the mux for every datagram.
   */
  readonly install?: boolean
}

export interface BlindRelayHostStats extends BlindRelayServerStats {
  /** The datagram path: forwarded packets, drops, relay streams. */
  readonly udx: UdxRelayStats
}

/** The node's receiver for a relay host: the relay's streams before the mux (host.receiveUdx). */
const interceptors = new WeakMap<BlindRelayHost, (socket: UdpSocket, d: Datagram) => boolean>()

const installOn = (host: ConnectionHost, relay: BlindRelayHost): void => {
  const f = (socket: UdpSocket, d: Datagram): boolean => relay.receive(socket, d)
  interceptors.set(relay, f)
  host.addUdxInterceptor(f)
}

const uninstallFrom = (host: ConnectionHost, relay: BlindRelayHost, _nodeClosing: boolean): void => {
  const f = interceptors.get(relay)
  if (f === undefined) return
  interceptors.delete(relay)
  host.removeUdxInterceptor(f)
}

/**
 * A node acting as a blind relay for incoming connections (the reference's
 * `blind-relay` `Server` with hyperdht raw streams).
 *
 * - `accept(socket)`: a blind-relay session on an incoming encrypted socket
 *   (channel id: the socket's remote public key, as relays in the wild).
 * - Two `pair` requests with one token are matched (core limits apply); two
 *   relay stream ids are drawn from the node's UDX id space and reserved in
 *   its mux (a never-connected stream that drops packets), so no connection
 *   of the node can take them; `UdxRelay` links them. Each relay stream
 *   connects to the first packet's sender (the blind-relay firewall rule)
 *   and forwards with the stream id rewritten (udx.md §9).
 * - `receive(socket, datagram)` must see the node's datagrams before the
 *   UDX mux; installed by default (see `BlindRelayHostOptions.install`).
 * - Half pairs expire after the pairing timeout: one fiber in the node's
 *   scope sleeps until the earliest deadline.
 * - A session ends with its connection; its pairs are released and their
 *   relay streams closed. `close()` (or the node closing) ends them all.
 *
 * The protocol state lives in the cores; this class can accept sessions
 * before it is `attach`ed to a node (pairs that match before that fail with
 * `createFailed`), which the promise facade uses.
 */
export class BlindRelayHost {
  readonly server: BlindRelayServer<NoiseSecretStream>
  readonly relay: UdxRelay<UdpSocket>
  private host: ConnectionHost | null = null
  private closed = false
  private readonly installRelay: boolean
  /** Relay stream ids held in the mux, with their placeholder stream. */
  private readonly reserved = new Map<number, UdxStream>()
  private readonly fed = new WeakSet<NoiseSecretStream>()
  private stopTimer: (() => void) | null = null
  private wake: Deferred.Deferred<void> | null = null
  /** The deadline the timer fiber sleeps until (Infinity: none). */
  private armed = Infinity

  constructor(options: BlindRelayHostOptions = {}) {
    this.installRelay = options.install !== false
    const now = () => this.host?.handle.clock.currentTimeMillisUnsafe() ?? Date.now()
    this.relay = new UdxRelay<UdpSocket>({
      send: (socket, to, datagram) => socket.send(to, datagram),
      onClose: (id) => {
        this.unreserve(id)
        this.server.streamClosed(id)
      },
      now
    })
    const rate = options.maxBytesPerSecond
    const meters = new WeakMap<BlindRelaySession<NoiseSecretStream>, ByteMeter>()
    const meterOf = rate === undefined || !(rate > 0) || rate === Infinity
      ? () => null
      : (session: BlindRelaySession<NoiseSecretStream>) => {
        let m = meters.get(session)
        if (m === undefined) meters.set(session, m = new ByteMeter(rate))
        return m
      }
    const base = udxRelayHooks<NoiseSecretStream, UdpSocket>(this.relay, () => {
      const h = this.host
      return h === null ? -1 : h.mux.freeId(h.random)
    }, meterOf)
    const hooks: RelayStreamHooks<NoiseSecretStream> = {
      createStreams: (token, responder, initiator) => {
        if (this.host === null || this.closed) return null
        const ids = base.createStreams(token, responder, initiator)
        if (ids !== null) for (const id of ids) this.reserve(id)
        return ids
      },
      releaseStreams: (ids, abort) => base.releaseStreams?.(ids, abort)
    }
    this.server = new BlindRelayServer<NoiseSecretStream>({
      ...hooks,
      now,
      ...(options.maxSessions !== undefined ? { maxSessions: options.maxSessions } : {}),
      ...(options.maxPairLifetime !== undefined ? { maxPairLifetime: options.maxPairLifetime } : {}),
      ...(options.pairingTimeout !== undefined ? { pairingTimeout: options.pairingTimeout } : {}),
      ...(options.maxPendingPerSession !== undefined ? { maxPendingPerSession: options.maxPendingPerSession } : {}),
      ...(options.maxPendingTotal !== undefined ? { maxPendingTotal: options.maxPendingTotal } : {}),
      ...(options.maxActivePerSession !== undefined ? { maxActivePerSession: options.maxActivePerSession } : {})
    })
  }

  /** Run on `host`: the datagram path and the expiry timer. Once; later calls are ignored. */
  attach(host: ConnectionHost): void {
    if (this.host !== null || this.closed) return
    this.host = host
    if (this.installRelay) installOn(host, this)
    this.stopTimer = host.spawn(this.timerLoop(host))
    Effect.runSync(Scope.addFinalizer(host.handle.scope, Effect.sync(() => this.shutdown(true))))
  }

  /** The node this relay runs on (null before `attach`). */
  get node(): ConnectionHost | null {
    return this.host
  }

  get isClosed(): boolean {
    return this.closed
  }

  /**
   * Serve blind-relay on an incoming encrypted socket (the relay owns it from
   * now on: its 'data' feeds the relay's protomux). `id` defaults to the
   * socket's remote public key. Null when closed or the channel cannot be
   * opened (already accepted on this socket, socket destroyed).
   */
  accept(socket: NoiseSecretStream, options: { readonly id?: Uint8Array | null } = {}): BlindRelaySession<NoiseSecretStream> | null {
    if (this.closed) return null
    const mux = protomuxOf(socket)
    if (!this.fed.has(socket)) {
      this.fed.add(socket)
      // after the mux has handled the message: a new half pair may need the timer
      socket.on("data", () => this.kick())
    }
    const id = options.id !== undefined ? options.id : socket.remotePublicKey
    return this.server.accept(mux, { id, info: socket })
  }

  /**
   * A datagram that arrived on `socket`: true when it was a UDX packet for a
   * relay stream (forwarded or dropped), false for everything else (hand it
   * to the UDX mux). Synchronous, never throws.
   */
  receive(socket: UdpSocket, datagram: Datagram): boolean {
    return this.relay.handle(socket, datagram)
  }

  stats(): BlindRelayHostStats {
    return { ...this.server.stats(), udx: this.relay.stats() }
  }

  /** Close every session (releasing their pairs and relay streams) and stop relaying. Idempotent. */
  close(): void {
    this.shutdown(false)
  }

  // ---- internals ----

  private shutdown(nodeClosing: boolean): void {
    if (this.closed) return
    this.closed = true
    this.server.close()
    this.stopTimer?.()
    this.stopTimer = null
    const host = this.host
    if (host !== null && this.installRelay) uninstallFrom(host, this, nodeClosing)
    for (const s of this.reserved.values()) s.destroyUnsafe()
    this.reserved.clear()
  }

  private reserve(id: number): void {
    const host = this.host
    if (host === null) return
    const s = host.mux.createStreamUnsafe(id, { firewall: () => true })
    if (!(s instanceof Error)) this.reserved.set(id, s)
  }

  private unreserve(id: number): void {
    const s = this.reserved.get(id)
    if (s === undefined) return
    this.reserved.delete(id)
    s.destroyUnsafe()
  }

  /** Wake the timer fiber when a half pair appeared while it slept with nothing to expire. */
  private kick(): void {
    if (this.armed !== Infinity || this.wake === null) return
    if (this.server.nextDeadline() === Infinity) return
    Deferred.doneUnsafe(this.wake, Effect.void)
  }

  /** Expire half pairs at their deadline (deadlines ascend in arrival order, so the earliest only appears when there was none). */
  private timerLoop(host: ConnectionHost): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      const clock = host.handle.clock
      while (!this.closed) {
        const wake = Deferred.makeUnsafe<void>()
        this.wake = wake
        const deadline = this.server.nextDeadline()
        this.armed = deadline
        const now = clock.currentTimeMillisUnsafe()
        if (deadline === Infinity) yield* Deferred.await(wake)
        else if (deadline > now) yield* Effect.sleep(deadline - now)
        this.armed = Infinity
        this.server.onTimers(clock.currentTimeMillisUnsafe())
      }
    })
  }
}

/**
 * Make `host` a blind relay: accept sessions with `relay.accept(socket)` for
 * the incoming connections of a server (e.g. from its `onconnection`).
 */
export const serveBlindRelay = (host: ConnectionHost, options: BlindRelayHostOptions = {}): BlindRelayHost => {
  const relay = new BlindRelayHost(options)
  relay.attach(host)
  return relay
}

/** `serveBlindRelay` with its lifetime in the current scope. */
export const serveBlindRelayScoped = (host: ConnectionHost, options: BlindRelayHostOptions = {}): Effect.Effect<BlindRelayHost, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.sync(() => serveBlindRelay(host, options)), (r) => Effect.sync(() => r.close()))
