/**
 * A client's dial of a public key (connect.md §8.1, §6.5): find the nodes
 * that hold the server's announcement, run Noise IK through two of them in
 * parallel (the same message 1 through each: the server deduplicates), then
 * pick a path and open the encrypted socket over a UDX stream.
 *
 * Paths, in the reference's order:
 * 1. the server answered us itself (no relay), or its first UDX packet
 *    already arrived: connect there;
 * 2. the server is OPEN, or relayed and not holepunchable: connect to its
 *    first public address, else to the address its relay saw;
 * 3. we are OPEN: the server connects to us; wait up to 10 s;
 * 4. same public host (same NAT or one machine): ping the server's LAN
 *    address and connect there;
 * 5. otherwise holepunching (connect.md §6): not offered by this version;
 *    the dial fails with CANNOT_HOLEPUNCH and says so.
 *
 * The dial is one fiber in the node's scope that owns its state; the socket
 * is returned at once (writes wait until it opens), destroying it interrupts
 * the dial, and a failed dial destroys the socket with a typed
 * ConnectionError carrying hyperdht's `code` and a report of what was tried.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import type { KeyPair } from "../../layers/crypto/types.js"
import { type Endpoint, sameEndpoint, type UdpSocket } from "../../layers/Transport.js"
import { mark } from "../../layers/trace.js"
import * as C from "../../protocol/connect.js"
import { decode, encode, toHex } from "../../protocol/encoding.js"
import * as R from "../../protocol/records.js"
import { type ConnectionHost, type ConnectionPath, GatewaySocket, Noise } from "../session/host.js"
import type { SecretStreamClock } from "../session/secret-stream.js"
import type { UdxStream } from "../session/udx.js"
import * as Derive from "../../layers/crypto/derive.js"
import { equalBytes } from "../../protocol/encoding.js"
import type { ServerRelay } from "../session/server.js"
import { HolepunchAttempt } from "./attempt.js"
import {
  clientRelayPlan,
  RELAY_KEEPALIVE,
  relayConnection,
  type RelayedPath,
  type RelayOffer,
  type RelayPlan,
  type RelayThrough,
  relayThroughInfo
} from "../session/relay-connection.js"
import { isBogon, isRandomPunch, isReserved, matchAddress, samplingDelay, withVerified } from "./decide.js"
import { ConnectionError, connectionError, type DialReport, type PathAttempt } from "./errors.js"

export interface ConnectOptions {
  /** Our identity for this connection (default: the node's key pair). */
  readonly keyPair?: KeyPair
  /** Relay nodes to try first (hyperdht: `relayAddresses`, or the nodes of an address). */
  readonly relayAddresses?: ReadonlyArray<Endpoint>
  /** Nodes to seed the FIND_PEER query with. */
  readonly nodes?: ReadonlyArray<Endpoint>
  /** Try the LAN shortcut when both peers share a public address (default true). */
  readonly localConnection?: boolean
  /** Send a low-TTL probe before holepunching (default true; kept for holepunching). */
  readonly fastOpen?: boolean
  /** Veto a holepunch: (remoteFirewall, localFirewall, remoteAddresses, localAddresses) => boolean. */
  readonly holepunch?: (remoteFirewall: number, localFirewall: number, remoteAddresses: ReadonlyArray<Endpoint>, localAddresses: ReadonlyArray<Endpoint>) => boolean
  /**
   * A blind relay to fall back on (connect.md §6.8): its public key, a list
   * (one is picked at random) or a function. The server's relay wins when
   * both name one. The relayed path races the direct ones.
   */
  readonly relayThrough?: RelayThrough
  /** Keepalive of the connection to the relay (ms, default 5000). */
  readonly relayKeepAlive?: number
  /**
   * A relay to fall back on when the direct paths fail with a hole-punch
   * error (`RELAY_FALLBACK_CODES`): called with the keys it must not be
   * (the remote's and ours); the dial is then redone through the relay it
   * names (null: the hole-punch error stands). The facade's
   * `relayThrough: 'auto'` sets it to the node's relay directory.
   */
  readonly relayFallback?: ((exclude: ReadonlyArray<Uint8Array>) => Effect.Effect<Uint8Array | null>) | undefined
}

/** How long a client that is OPEN waits for the server to connect to it. */
export const PASSIVE_CONNECT_TIMEOUT = 10_000
/** How long a dial waits for the node's random-punch budget before giving up (ms), polling every GRANT_POLL. */
const GRANT_WAIT = 4000
const GRANT_POLL = 100
/**
 * How long the probe round waits for our NAT analysis (ms): its pings time
 * out after 1 s each and the analysis gives up after a few, so this only
 * bounds an analysis that would never end.
 */
const ANALYSIS_WAIT = 5000
/** Punch rounds redone after the server's TRY_LATER (back-off 1–2 s, then doubling). */
const TRY_LATER_RETRIES = 3
/** Parallel handshake attempts (3 when relay candidates are known up front). */
const PARALLEL_HANDSHAKES = 2
/**
 * With relay candidates known up front, how long their handshakes run
 * before the FIND_PEER query starts anyway (ms): a candidate that no longer
 * holds the server's record answers at once (the query then starts at once);
 * one that does not answer at all is not waited out (a request's retries
 * take seconds).
 */
const CANDIDATE_GRACE = 500

interface Handshaken {
  readonly relayAddress: Endpoint
  readonly relayed: boolean
  readonly serverAddress: Endpoint
  readonly clientAddress: Endpoint
  readonly payload: C.NoisePayload
  readonly split: Noise.NoiseSplit
  /** The handshake's round trip (ms): request to reply, through the relay. */
  readonly roundTrip: number
}

type Attempt = { readonly _tag: "Ok"; readonly value: Handshaken } | { readonly _tag: "Fatal"; readonly error: ConnectionError } | null

const key = (e: Endpoint): string => `${e.host}:${e.port}`

/** The socket of a dial, before the node is ready (the facade returns it at once). */
export const dialSocket = (keepAlive: number, remotePublicKey: Uint8Array, keyPair: KeyPair, clock?: SecretStreamClock): GatewaySocket =>
  new GatewaySocket(true, null, { autoStart: false, keepAlive, publicKey: keyPair.publicKey, remotePublicKey, ...(clock !== undefined ? { clock } : {}) })

/** Start a dial: the socket now, the dial in a fiber of the node. */
export const dial = (host: ConnectionHost, remotePublicKey: Uint8Array, keyPair: KeyPair, opts: ConnectOptions = {}): GatewaySocket =>
  startDial(host, dialSocket(host.keepAlive, remotePublicKey, keyPair, host.streamClock), remotePublicKey, keyPair, opts)

/**
 * Hole-punch failures after which a dial with a `relayFallback` is redone
 * through a relay (hyperswarm's force-relay list, plus a punch that ran out
 * of probes).
 */
export const RELAY_FALLBACK_CODES: ReadonlySet<string> = new Set([
  "HOLEPUNCH_ABORTED",
  "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS",
  "HOLEPUNCH_PROBE_TIMEOUT",
  "CANNOT_HOLEPUNCH",
  "REMOTE_NOT_HOLEPUNCHABLE"
])

/** Run the dial of `socket` (made by `dialSocket`) in a fiber of the node. */
export const startDial = (host: ConnectionHost, socket: GatewaySocket, remotePublicKey: Uint8Array, keyPair: KeyPair, opts: ConnectOptions = {}): GatewaySocket => {
  host.stats.connects.started++
  mark("dial")
  if (socket.destroyed) return socket
  host.track(socket)
  if (host.handle.core.suspended) {
    fail(host, socket, connectionError("SUSPENDED"))
    return socket
  }
  let current: { readonly stop: () => void; readonly dial: Dial; readonly stream: UdxStream } | null = null
  let stopFallback: (() => void) | null = null
  /**
   * One round of the dial: its own UDX stream, handshake and paths.
   * `unreachable`: a round in which we said we were
   * OPEN failed because the server's connection to us never came; this one
   * says our class is unknown, so the server offers holepunching.
   */
  const round = (o: ConnectOptions, mayFallBack: boolean, unreachable: ReadonlyArray<PathAttempt> | null = null): void => {
    // without relay candidates the FIND_PEER requests leave first: the stream, the dial and Noise
    // are set up while they fly
    const target = host.crypto.blake2b(remotePublicKey)
    const plan = findPlan(host, remotePublicKey, target, o)
    const finder = plan.candidates === null ? new PeerFinder(host, target, plan.seeds) : null
    // our UDX stream: the server's first packet may come before its handshake reply
    const early = { socket: null as UdpSocket | null, from: null as Endpoint | null }
    const firstPacket = Deferred.makeUnsafe<{ socket: UdpSocket; from: Endpoint }>()
    const created = host.mux.createStreamUnsafe(host.mux.freeId(host.random), {
      connectOnFirewall: false,
      firewall: (from, sock) => {
        if (!(from.port > 0 && from.port < 65536)) return true
        if (early.socket === null) {
          early.socket = sock
          early.from = { host: from.host, port: from.port }
          Deferred.doneUnsafe(firstPacket, Effect.succeed({ socket: sock, from: early.from }))
        }
        return false
      }
    })
    if (created instanceof Error) {
      finder?.stop()
      fail(host, socket, connectionError("PEER_CONNECTION_FAILED", created.message, undefined, created))
      return
    }
    const stream = created
    const d = new Dial(host, socket, stream, remotePublicKey, keyPair, o, early, firstPacket, target, plan, finder, unreachable)
    const stop = host.spawn(
      d.run().pipe(
        // the query ends with the dial, however it ends (the finder is idle once taken over)
        Effect.ensuring(Effect.sync(() => finder?.stop())),
        Effect.catchTag("ConnectionError", (e) =>
          Effect.sync(() => {
            if (d.notReached && unreachable === null && !socket.destroyed && !socket.started) {
              // we called ourselves OPEN and the server's connection to us never came: our node's
              // reachability check was wrong (a NAT that let its probes in through state left by an
              // earlier socket on the same port); the dial is redone saying our class is unknown
              host.stats.connects.reachabilityRetries++
              host.markUnreachable()
              d.close()
              stream.destroyUnsafe()
              round(o, mayFallBack, d.tried())
            } else if (mayFallBack && o.relayFallback !== undefined && RELAY_FALLBACK_CODES.has(e.code) && !socket.destroyed && !socket.started) {
              d.close()
              stream.destroyUnsafe()
              viaRelay(o, o.relayFallback, e)
            } else fail(host, socket, e, stream)
          })
        ),
        // a defect fails this dial (typed error to the user) and is logged; the node goes on
        Effect.catchCause((cause) =>
          // interrupted: the socket closed (the user destroyed it), nothing to report
          Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.andThen(
            Effect.logError("dial failed with a defect", Cause.pretty(cause)),
            Effect.sync(() => fail(host, socket, connectionError("PEER_CONNECTION_FAILED", "the dial failed with a defect (logged)", undefined, Cause.squash(cause)), stream))
          )
        )
      )
    )
    current = { stop, dial: d, stream }
  }
  /**
   * The direct paths failed with a hole-punch error: ask for a relay (not
   * the remote, not us) and dial again through it; without one, the first
   * round's error stands, saying no relay was found.
   */
  const viaRelay = (o: ConnectOptions, find: NonNullable<ConnectOptions["relayFallback"]>, first: ConnectionError): void => {
    host.stats.relaying.fallbacks++
    stopFallback = host.spawn(
      find([remotePublicKey, keyPair.publicKey]).pipe(
        // a defect in the directory is logged; the dial then keeps its hole-punch error
        Effect.catchCause((cause) => Effect.as(Effect.logError("finding a relay to fall back on failed with a defect", Cause.pretty(cause)), null)),
        Effect.flatMap((relay) =>
          Effect.sync(() => {
            stopFallback = null
            if (socket.destroyed) return
            if (relay === null) {
              fail(host, socket, connectionError(first.code, `${first.detail}; no relay found to fall back on`, first.report, first.cause))
              return
            }
            round({ ...o, relayThrough: relay, relayFallback: undefined }, false)
          })
        )
      )
    )
  }
  round(opts, true)
  socket.once("close", () => {
    stopFallback?.()
    const c = current
    if (c === null) return
    c.stop()
    c.dial.close()
    if (!socket.started) c.stream.destroyUnsafe()
  })
  return socket
}

const fail = (host: ConnectionHost, socket: GatewaySocket, error: ConnectionError, stream?: UdxStream): void => {
  host.countFailure(error.code)
  if (stream !== undefined && !socket.started) stream.destroyUnsafe()
  if (!socket.destroyed) socket.destroy(error)
}

/** Where a dial looks for the server: relay candidates known up front, and the query's seeds. */
interface FindPlan {
  /** The relays the server announced through (`relayAddresses`), a cached route, or our own record of it; null: none. */
  readonly candidates: ReadonlyArray<Endpoint> | null
  readonly seeds: ReadonlyArray<Endpoint>
}

const findPlan = (host: ConnectionHost, remotePublicKey: Uint8Array, target: Uint8Array, opts: ConnectOptions): FindPlan => {
  const h = host.handle
  let candidates: ReadonlyArray<Endpoint> | null = opts.relayAddresses !== undefined && opts.relayAddresses.length > 0
    ? opts.relayAddresses
    : (host.relayCache.get(toHex(remotePublicKey)) ?? null)
  const known = h.core.id !== null ? (h.hyperdht.store()?.forwards.get(toHex(target), h.core.time)?.relay ?? null) : null
  if (known !== null) candidates = [known]
  if (candidates !== null && candidates.length === 0) candidates = null
  return { candidates, seeds: opts.nodes ?? candidates ?? [] }
}

/**
 * A dial's FIND_PEER query (connect.md §8.1 step 2). Started as the dial
 * begins, so its requests leave before the rest of the dial is set up;
 * the replies that carry the server's record are kept until the dial takes
 * them over (`attach`). `stop` ends the query (idempotent).
 */
class PeerFinder {
  private found: Array<Endpoint> = []
  private take: ((relay: Endpoint) => void) | null = null
  private ended = false
  private onEnd: (() => void) | null = null
  readonly stop: () => void

  constructor(host: ConnectionHost, target: Uint8Array, seeds: ReadonlyArray<Endpoint>) {
    const query = host.handle.runQuery({ target, command: R.Command.FIND_PEER, value: null }, { retries: 3, ...(seeds.length > 0 ? { nodes: seeds } : {}) }, (r) => {
      if (r.value === null || Result.isFailure(decode(R.peer, r.value))) return
      mark("record")
      if (this.take !== null) this.take(r.from)
      else this.found.push(r.from)
    })
    mark("find.sent")
    this.stop = host.spawn(Effect.ensuring(Effect.ignore(query), Effect.sync(() => {
      this.ended = true
      this.onEnd?.()
    })))
  }

  /** Hand the replies so far, and every later one, to `take`; `onEnd` once the query has ended. */
  attach(take: (relay: Endpoint) => void, onEnd: () => void): void {
    this.take = take
    this.onEnd = onEnd
    const found = this.found
    this.found = []
    for (const relay of found) take(relay)
    if (this.ended) onEnd()
  }
}

class Dial {
  private readonly attempts: Array<PathAttempt> = []
  private relaysTried = 0
  /** Completed when our first handshake request has left (`attempt`). */
  private readonly handshakeSent = Deferred.makeUnsafe<void>()
  private remoteFirewall: number | null = null
  private puncher: HolepunchAttempt | null = null
  /** The connection to the blind relay while the socket runs over it. */
  private relaySocket: GatewaySocket | null = null
  /** Our relay offer (a relay and a fresh token), sent in our handshake payload. */
  private offer: RelayOffer | null = null
  private localFirewall: number = C.FIREWALL_UNKNOWN
  private readonly id: string

  constructor(
    readonly host: ConnectionHost,
    readonly socket: GatewaySocket,
    readonly stream: UdxStream,
    readonly remotePublicKey: Uint8Array,
    readonly keyPair: KeyPair,
    readonly opts: ConnectOptions,
    readonly early: { socket: UdpSocket | null; from: Endpoint | null },
    readonly firstPacket: Deferred.Deferred<{ socket: UdpSocket; from: Endpoint }>,
    readonly target: Uint8Array,
    private readonly plan: FindPlan,
    /** The FIND_PEER query already under way (no relay candidates), else null. */
    private readonly finder: PeerFinder | null,
    /** Set when this round redoes one in which we said we were OPEN and were not reached: its attempts. */
    private readonly unreachable: ReadonlyArray<PathAttempt> | null = null
  ) {
    this.id = toHex(remotePublicKey)
    if (unreachable !== null) this.attempts.push(...unreachable)
  }

  /** We said we were OPEN, and the server's connection to us did not come. */
  notReached = false

  /** What this round tried so far. */
  tried(): ReadonlyArray<PathAttempt> {
    return this.attempts.slice()
  }

  /** The socket closed: stop punching (a punched connection's pool socket closes after its UDX stream). */
  close(): void {
    this.puncher?.stop()
  }

  private report(): DialReport {
    return { localFirewall: this.localFirewall, remoteFirewall: this.remoteFirewall, relaysTried: this.relaysTried, attempts: this.attempts.slice() }
  }

  private error(code: Parameters<typeof connectionError>[0], detail?: string): ConnectionError {
    return connectionError(code, detail, this.report())
  }

  run(): Effect.Effect<void, ConnectionError> {
    return Effect.gen({ self: this }, function*() {
      const host = this.host
      const h = host.handle
      const c = host.crypto
      // a node that says it is OPEN but was recently found unreachable (or this round redoes such a
      // dial) says its class is unknown: the server offers holepunching instead of dialling us
      const own = h.core.firewalled || this.unreachable !== null || host.believedUnreachable() ? null : h.core.remoteAddress()
      this.localFirewall = own !== null ? C.FIREWALL_OPEN : C.FIREWALL_UNKNOWN
      const addresses4: Array<Endpoint> = own !== null ? [own] : []
      if (this.opts.localConnection !== false) addresses4.push(...host.localAddresses())
      const e = host.ephemeralKeyPair()
      const ini = Noise.initiator(c, {
        staticKeyPair: this.keyPair,
        remoteStaticKey: this.remotePublicKey,
        prologue: host.ns.PEER_HANDSHAKE,
        ...(e !== undefined ? { ephemeralKeyPair: e } : {})
      })
      this.offer = relayThroughInfo(this.opts.relayThrough, c, host.random)
      const plain = encode(
        C.noisePayload,
        C.makeNoisePayload({
          error: C.ERROR_NONE,
          firewall: this.localFirewall,
          addresses4,
          addresses6: [],
          udx: { reusableSocket: false, id: this.stream.id, seq: 0 },
          secretStream: {},
          relayThrough: this.offer
        })
      )
      if (Result.isFailure(plain)) return yield* this.error("HANDSHAKE_INVALID", plain.failure.message)
      // message 1 (two DH operations) is written once the first FIND_PEER requests are on their
      // way, so its cost overlaps their round trip (findAndHandshake); every attempt sends it
      let msg1: Uint8Array | ConnectionError | null = null
      const message1 = (): Uint8Array | ConnectionError => {
        if (msg1 !== null) return msg1
        mark("msg1.start")
        const m = Noise.writeMessage1(ini, plain.success)
        mark("msg1")
        return (msg1 = Result.isSuccess(m) ? m.success : this.error("HANDSHAKE_INVALID", m.failure.message))
      }
      // our own relay: dial it and ask for the pair now, beside the handshake (its answer comes once
      // the server, told the token in our handshake, pairs too); used unless the server names its own
      // (once our first handshake is on its way: the relay's own lookup and handshake then do not
      // delay ours, and are under way while the server answers)
      const offer = this.offer
      const early = offer === null ? null : yield* Effect.forkChild(
        Effect.andThen(
          Deferred.await(this.handshakeSent),
          relayConnection(host, {
            relayPublicKey: offer.publicKey,
            keyPair: this.keyPair,
            isInitiator: true,
            token: offer.token,
            localStream: this.stream,
            keepAlive: this.opts.relayKeepAlive ?? RELAY_KEEPALIVE
          })
        ),
        { startImmediately: true }
      )
      const won = yield* this.findAndHandshake(ini, message1)
      const plan = clientRelayPlan(offer, won.payload.relayThrough)
      const ours = early !== null && plan !== null && plan.isInitiator ? early : null
      if (early !== null && ours === null) yield* Fiber.interrupt(early)
      if (plan === null) return yield* this.choosePath(won)
      // a blind relay runs beside the direct paths: the first to connect opens the socket; a
      // direct path that succeeds after the relay upgrades the connection (connect.md §6.8);
      // the dial fails only when both fail
      const relayDone = Deferred.makeUnsafe<boolean>()
      yield* Effect.forkChild(
        this.relayed(won, plan, ours).pipe(
          Effect.matchEffect({
            onFailure: () => Deferred.succeed(relayDone, false),
            onSuccess: () => Deferred.succeed(relayDone, true)
          })
        ),
        { startImmediately: true }
      )
      const direct = yield* Effect.result(this.choosePath(won))
      if (Result.isSuccess(direct)) return
      if (yield* Deferred.await(relayDone)) return
      // both failed: the direct path's reason, with a report that includes the relay's
      return yield* this.error(direct.failure.code, direct.failure.detail)
    })
  }

  /**
   * A direct path appeared while relayed (connect.md §6.8): re-point the
   * stream, tell the server with an empty message over it, and end the
   * relay connection once the server's packets arrive over the new path.
   */
  private upgrade(won: Handshaken, socket: UdpSocket, to: Endpoint, path: ConnectionPath): void {
    const stream = this.stream
    const relaySocket = this.relaySocket
    stream.connectUnsafe(won.payload.udx!.id, to, socket)
    stream.trySend(new Uint8Array(0))
    stream.watchPath((from, via) => {
      if (via !== socket || from.host !== to.host || from.port !== to.port) return
      stream.watchPath(null)
      relaySocket?.end()
    })
    this.socket.path = path
    this.socket.relayedVia = null
    this.host.stats.relaying.upgrades++
    this.attempts.push({ path, via: key(to), outcome: "upgraded from relayed" })
    this.socket.emit("upgrade", path)
  }

  /** The relayed path (connect.md §6.8): pair our stream through the relay, then open the socket over it. */
  private relayed(won: Handshaken, plan: RelayPlan, started: Fiber.Fiber<RelayedPath, ConnectionError> | null): Effect.Effect<void, ConnectionError> {
    return Effect.gen({ self: this }, function*() {
      const host = this.host
      const via = toHex(plan.relayPublicKey).slice(0, 16)
      const connection = started !== null ? Fiber.join(started) : relayConnection(host, {
        relayPublicKey: plan.relayPublicKey,
        keyPair: this.keyPair,
        isInitiator: plan.isInitiator,
        token: plan.token,
        localStream: this.stream,
        keepAlive: this.opts.relayKeepAlive ?? RELAY_KEEPALIVE
      })
      const paired = yield* connection.pipe(Effect.tapError((e) => Effect.sync(() => this.attempts.push({ path: "relay", via, outcome: e.code }))))
      if (this.socket.started || this.socket.destroyed) {
        // a direct path was first: the relay is not needed
        paired.relaySocket.end()
        return
      }
      this.relaySocket = paired.relaySocket
      this.socket.startOver(
        this.stream,
        { tx: won.split.tx, rx: won.split.rx, hash: won.split.handshakeHash, publicKey: this.keyPair.publicKey, remotePublicKey: this.remotePublicKey },
        "relayed"
      )
      this.socket.relayedVia = plan.relayPublicKey
      host.stats.connects.succeeded++
      this.attempts.push({ path: "relay", via: `${via} (${key(paired.relayAddress)})`, outcome: "connected" })
    })
  }

  // ---- find + handshake -------------------------------------------------------------------

  private findAndHandshake(ini: Noise.NoiseState, msg1: () => Uint8Array | ConnectionError): Effect.Effect<Handshaken, ConnectionError> {
    return Effect.suspend(() => {
      const host = this.host
      const { candidates, seeds } = this.plan
      const hasCandidates = candidates !== null
      const concurrency = hasCandidates ? PARALLEL_HANDSHAKES + 1 : PARALLEL_HANDSHAKES
      // plain state, not a stream: the query's replies come in the node's step that received them and
      // start handshakes from there; the first attempt that settles the dial completes `won`, and
      // the others and the query are stopped without waiting for them (they end on their own)
      const won = Deferred.makeUnsafe<Attempt>()
      const seen = new Set<string>()
      const waiting: Array<Endpoint> = []
      const running = new Set<() => void>()
      let queryStarted = false
      let queryEnded = false
      let offered = false // the known candidates are in (the query may end before them)
      let settled = false
      let stopQuery: (() => void) | null = null
      let stopGrace: (() => void) | null = null
      const settle = (a: Attempt): void => {
        if (settled) return
        settled = true
        Deferred.doneUnsafe(won, Exit.succeed(a))
      }
      const stopAll = (): void => {
        // the dial is over (settled, failed or interrupted): nothing starts any more
        settled = true
        waiting.length = 0
        for (const stop of running) stop()
        running.clear()
        stopQuery?.()
        stopQuery = null
        stopGrace?.()
        stopGrace = null
      }
      const pump = (): void => {
        while (!settled && running.size < concurrency && waiting.length > 0) {
          const node = waiting.shift()!
          let done = false
          const stop = host.spawn(
            Effect.flatMap(Effect.exit(this.attempt(ini, msg1, node)), (exit) =>
              Effect.sync(() => {
                done = true
                running.delete(stop)
                if (Exit.isSuccess(exit)) {
                  if (exit.value !== null) return settle(exit.value)
                } else if (!Cause.hasInterruptsOnly(exit.cause)) {
                  // a defect in one attempt fails the dial (typed, logged), as in any other part of it
                  return settle({ _tag: "Fatal", error: connectionError("PEER_CONNECTION_FAILED", "a handshake attempt failed with a defect (logged)", this.report(), Cause.squash(exit.cause)) })
                }
                pump()
              })
            )
          )
          if (!done) running.add(stop)
        }
        if (settled || !offered || running.size > 0 || waiting.length > 0) return
        // every node tried and none settled it: the query finds more, or it has ended
        if (!queryStarted) startQuery()
        else if (queryEnded) settle(null)
      }
      const offer = (e: Endpoint): void => {
        const k = key(e)
        if (seen.has(k)) return
        seen.add(k)
        waiting.push({ host: e.host, port: e.port })
        pump()
      }
      const startQuery = (): void => {
        if (queryStarted || settled) return
        queryStarted = true
        stopGrace?.()
        stopGrace = null
        const finder = this.finder ?? new PeerFinder(host, this.target, seeds)
        stopQuery = finder.stop
        finder.attach(offer, () => {
          queryEnded = true
          stopQuery = null
          pump()
        })
      }
      // Without candidates the FIND_PEER requests left as the dial began (`PeerFinder`, a direct
      // node step when the node is idle), and message 1 (two DH operations) is written while they
      // fly. With candidates (the relays the server announced through, a cached route, or our own
      // record of it) their handshakes go first and the query only when they all failed, or after
      // CANDIDATE_GRACE (a candidate that does not answer): a full FIND_PEER walk for every dial of
      // a Flock that found its peers by lookup filled the node's congestion window (26 requests a
      // dial), and the handshakes of its later dials waited for the next drain, 750 ms
      if (!hasCandidates) startQuery()
      else {
        stopGrace = host.spawn(Effect.andThen(Effect.sleep(CANDIDATE_GRACE), Effect.sync(() => {
          stopGrace = null
          startQuery()
        })))
      }
      const m1 = msg1()
      if (m1 instanceof ConnectionError) {
        stopAll()
        return Effect.fail(m1)
      }
      for (const c of candidates ?? []) offer(c)
      offered = true
      pump()
      return Deferred.await(won).pipe(
        Effect.ensuring(Effect.sync(stopAll)),
        Effect.flatMap((first) => {
          if (first === null) return Effect.fail(this.relaysTried > 0 ? this.error("PEER_CONNECTION_FAILED") : this.error("PEER_NOT_FOUND"))
          if (first._tag === "Fatal") return Effect.fail(first.error)
          return Effect.succeed(first.value)
        })
      )
    })
  }

  /** One handshake through `node` (connect.md §8.1 step 4); null when this relay did not work out. */
  private attempt(ini: Noise.NoiseState, message1: () => Uint8Array | ConnectionError, node: Endpoint): Effect.Effect<Attempt> {
    return Effect.gen({ self: this }, function*() {
      this.relaysTried++
      const via = key(node)
      const msg1 = message1()
      if (msg1 instanceof ConnectionError) return { _tag: "Fatal", error: msg1 }
      const value = encode(C.handshake, { mode: C.FROM_CLIENT, noise: msg1, peerAddress: null, relayAddress: null })
      if (Result.isFailure(value)) return null
      mark("hs.send")
      const sentAt = this.host.handle.clock.currentTimeMillisUnsafe()
      const res = yield* Effect.result(
        this.host.handle.request({ command: R.Command.PEER_HANDSHAKE, target: this.target, value: value.success }, node, {
          onSent: () => Deferred.doneUnsafe(this.handshakeSent, Exit.void)
        })
      )
      if (Result.isFailure(res)) {
        this.attempts.push({ path: "handshake", via, outcome: res.failure.code })
        return null
      }
      const r = res.success
      mark("hs.reply")
      const hs = r.value === null ? null : decode(C.handshake, r.value)
      if (hs === null || Result.isFailure(hs) || hs.success.mode !== C.REPLY || hs.success.noise.length === 0 || !sameEndpoint(r.from, node)) {
        this.attempts.push({ path: "handshake", via, outcome: r.value === null ? "no server record at this node" : "BAD_HANDSHAKE_REPLY" })
        return null
      }
      const reply = hs.success
      mark("m2.start")
      const m2 = Noise.readMessage2(Noise.clone(ini), reply.noise)
      if (Result.isFailure(m2)) {
        this.attempts.push({ path: "handshake", via, outcome: `HANDSHAKE_INVALID (${m2.failure.reason})` })
        return null
      }
      const payload = decode(C.noisePayload, m2.success.payload)
      if (Result.isFailure(payload)) {
        this.attempts.push({ path: "handshake", via, outcome: "HANDSHAKE_INVALID (payload)" })
        return null
      }
      const p = payload.success
      mark("m2")
      this.attempts.push({ path: "handshake", via, outcome: "ok" })
      if (p.version !== 1) return { _tag: "Fatal", error: this.error("SERVER_INCOMPATIBLE") }
      if (p.error !== C.ERROR_NONE) return { _tag: "Fatal", error: this.error("SERVER_ERROR", `Server returned error ${p.error}`) }
      if (p.udx === null) return { _tag: "Fatal", error: this.error("SERVER_ERROR", "Server did not send UDX data") }
      this.remoteFirewall = p.firewall
      return {
        _tag: "Ok",
        value: {
          relayAddress: node,
          relayed: reply.peerAddress !== null,
          serverAddress: reply.peerAddress ?? node,
          clientAddress: { host: r.to.host, port: r.to.port },
          payload: p,
          split: m2.success.split,
          roundTrip: this.host.handle.clock.currentTimeMillisUnsafe() - sentAt
        }
      }
    })
  }

  // ---- path selection ------------------------------------------------------------------------

  private onsocket(won: Handshaken, socket: UdpSocket, to: Endpoint, path: ConnectionPath): void {
    if (this.socket.destroyed) return
    if (this.socket.started) {
      if (this.socket.path === "relayed" && path !== "relayed") this.upgrade(won, socket, to, path)
      return
    }
    const host = this.host
    const relays = won.payload.relayAddresses !== null && won.payload.relayAddresses.length > 0 ? won.payload.relayAddresses : [won.relayAddress]
    host.cacheRelays(this.id, relays)
    mark("connected")
    this.stream.connectUnsafe(won.payload.udx!.id, to, socket)
    this.socket.startOver(
      this.stream,
      { tx: won.split.tx, rx: won.split.rx, hash: won.split.handshakeHash, publicKey: this.keyPair.publicKey, remotePublicKey: this.remotePublicKey },
      path
    )
    mark("started")
    host.stats.connects.succeeded++
    if (path === "lan") host.stats.punches.lan++
    if (path !== "punched") this.puncher?.stop()
    this.attempts.push({ path, via: key(to), outcome: "connected" })
  }

  private choosePath(won: Handshaken): Effect.Effect<void, ConnectionError> {
    return Effect.gen({ self: this }, function*() {
      const host = this.host
      const { payload, relayed, serverAddress, clientAddress, relayAddress } = won
      const remoteHolepunchable = payload.holepunch !== null && payload.holepunch.relays.length > 0
      if (this.early.socket !== null) return this.onsocket(won, this.early.socket, this.early.from!, "direct")
      if (!relayed) return this.onsocket(won, host.dhtSocket(), relayAddress, "direct")
      if (payload.firewall === C.FIREWALL_OPEN || !remoteHolepunchable) {
        const addr = payload.addresses4.find((a) => !isBogon(a.host)) ?? serverAddress
        host.stats.punches.open++
        this.onsocket(won, host.dhtSocket(), addr, "direct")
        return
      }
      if (this.localFirewall === C.FIREWALL_OPEN) {
        // the server connects to us (in case our NAT still needs opening toward it)
        host.openNatToward(serverAddress)
        const got = yield* Deferred.await(this.firstPacket).pipe(Effect.timeoutOption(PASSIVE_CONNECT_TIMEOUT))
        if (Option.isNone(got)) {
          this.attempts.push({ path: "direct", outcome: "the server did not connect to us within 10 s" })
          // the server offered holepunching (else it was dialled directly above): it can be dialled
          // again as a firewalled client (startDial)
          this.notReached = true
          return yield* this.error("HOLEPUNCH_ABORTED")
        }
        return this.onsocket(won, got.value.socket, got.value.from, "direct")
      }
      // same public host (one NAT, or one machine): race the LAN shortcut with the punch
      let lanPath: Effect.Effect<void, ConnectionError> | null = null
      if (this.opts.localConnection !== false && clientAddress.host === serverAddress.host) {
        const lan = payload.addresses4.filter((a) => !isReserved(a.host))
        if (lan.length > 0) {
          const addr = matchAddress(host.localAddresses(), lan) ?? lan[0]!
          lanPath = Effect.flatMap(Effect.result(host.handle.ping(addr)), (ping) => {
            if (Result.isSuccess(ping)) return Effect.sync(() => this.onsocket(won, host.socketOf(0), addr, "lan"))
            this.attempts.push({ path: "lan", via: key(addr), outcome: ping.failure.code })
            return Effect.fail(this.error("HOLEPUNCH_ABORTED", "the server's LAN address did not answer"))
          })
        }
      }
      if (!remoteHolepunchable) return yield* lanPath ?? this.error("CANNOT_HOLEPUNCH")
      const punch = this.holepunch(won)
      if (lanPath === null) return yield* punch
      // the first path to succeed wins; the dial fails only when both fail
      return yield* Effect.race(lanPath, punch)
    })
  }

  // ---- holepunching (connect.md §6.5) -------------------------------------------------------

  private holepunch(won: Handshaken): Effect.Effect<void, ConnectionError> {
    return Effect.gen({ self: this }, function*() {
      const host = this.host
      const c = host.crypto
      const hp = won.payload.holepunch!
      mark("punch.make")
      const attempt = HolepunchAttempt.make(host, {
        initiator: true,
        // our pings follow our first holepunch message (the server waits for that one)
        deferSampling: true,
        // a node that wrongly believed it was reachable redoes its dial as a firewalled client: its
        // class is what its pings show, not OPEN
        sampleAnyway: true,
        remoteFirewall: won.payload.firewall,
        remoteAddresses: withVerified(won.payload.addresses4, null, [])
      })
      if (attempt === null) return yield* this.error("HOLEPUNCH_ABORTED", "no pool socket could be bound")
      mark("punch.made")
      this.puncher = attempt
      const serverRelay = hp.relays.find((r) => sameEndpoint(r.relayAddress, won.relayAddress)) ?? hp.relays[0]!
      const serverAddress = won.serverAddress
      // a probe from the server may connect us at any point (fast open): that ends the protocol below
      const early = Effect.flatMap(Deferred.await(attempt.outcome), (r) => (r === null ? Effect.never : Effect.succeed(r)))
      // a defect in the attempt fails the dial with the attempt's typed error (attempt.ts, supervision)
      const punched = yield* attempt.supervise(Effect.raceFirst(early, this.punchProtocol(won, attempt, serverRelay, serverAddress)), () => this.report())
      const stats = attempt.core.stats
      if (punched === null) {
        this.attempts.push({ path: `punch:${stats.strategy ?? "none"}`, outcome: `no probe came back (${stats.probesSent} probes sent)` })
        return yield* this.error("HOLEPUNCH_ABORTED", `the ${stats.strategy ?? ""} punch sent ${stats.probesSent} probes and none came back`)
      }
      if (isRandomPunch(attempt.nat.firewall, attempt.remoteFirewall)) host.stats.punches.random++
      else host.stats.punches.consistent++
      this.onsocket(won, punched.socket, punched.address, "punched")
      attempt.releaseAfter(this.stream)
    })
  }

  /** The holepunch messages and the punch round (connect.md §6.5 steps 7–10); the punch's outcome. */
  private punchProtocol(won: Handshaken, attempt: HolepunchAttempt, serverRelay: ServerRelay, firstServerAddress: Endpoint) {
    return Effect.gen({ self: this }, function*() {
      const host = this.host
      const c = host.crypto
      const hp = won.payload.holepunch!
      const secret = Derive.holepunchSecret(c, won.split.handshakeHash)
      const localSecret = c.randomBytes(32)
      let serverAddress = firstServerAddress
      let round = 0
      const stopOnFailure = <A>(e: Effect.Effect<A, ConnectionError>): Effect.Effect<A, ConnectionError> =>
        Effect.tapError(e, () => Effect.sync(() => attempt.stop()))
      /** One PEER_HOLEPUNCH exchange from the attempt's socket through `relay` (connect.md §6.2–§6.4). */
      const update = (peerAddress: Endpoint, relay: Endpoint, p: C.HolepunchPayload, onSent?: () => void) =>
        Effect.gen({ self: this }, function*() {
          const plain = encode(C.holepunchPayload, p)
          if (Result.isFailure(plain)) return yield* this.error("HOLEPUNCH_INVALID", plain.failure.message)
          const value = encode(C.holepunch, { mode: C.FROM_CLIENT, id: hp.id, payload: Derive.sealPayload(c, secret, plain.success), peerAddress })
          if (Result.isFailure(value)) return yield* this.error("HOLEPUNCH_INVALID", value.failure.message)
          mark("hp.send")
          const res = yield* attempt.request(relay, { internal: false, command: R.Command.PEER_HOLEPUNCH, target: this.target, value: value.success }, undefined, 0, onSent)
          if (Option.isNone(res)) {
            this.attempts.push({ path: "punch", via: key(relay), outcome: "no holepunch reply" })
            return yield* this.error("HOLEPUNCH_PROBE_TIMEOUT", "the relay or the server did not answer the holepunch message")
          }
          const r = res.value
          const reply = r.value === null ? null : decode(C.holepunch, r.value)
          if (reply === null || Result.isFailure(reply) || reply.success.mode !== C.REPLY) return yield* this.error("BAD_HOLEPUNCH_REPLY")
          const opened = Derive.openPayload(c, secret, reply.success.payload)
          const remote = opened === null ? null : decode(C.holepunchPayload, opened)
          if (remote === null || Result.isFailure(remote)) return yield* this.error("HOLEPUNCH_INVALID")
          const rp = remote.success
          // the server's random-punch budget is spent: the punch round is redone later (§6.5 10.4)
          if (rp.error === C.ERROR_TRY_LATER && p.punching) return { payload: rp, peerAddress: reply.success.peerAddress ?? relay, tryLater: true }
          if (rp.error !== C.ERROR_NONE) {
            if (p.error === C.ERROR_NONE) this.attempts.push({ path: "punch", via: key(relay), outcome: `remote aborted (error ${rp.error})` })
            return yield* this.error("REMOTE_ABORTED", `Remote aborted with error code ${rp.error}`)
          }
          const echoed = rp.remoteToken !== null && p.token !== null && equalBytes(rp.remoteToken, p.token)
          this.remoteFirewall = rp.firewall
          attempt.updateRemote(rp.firewall, withVerified(rp.addresses, echoed ? peerAddress.host : null, attempt.remoteAddresses))
          attempt.addSample(r.to, r.from)
          return { payload: rp, peerAddress: reply.success.peerAddress ?? relay, tryLater: false }
        })

      /** Abort the server's side of the punch (best effort). */
      const abort = (relay: ServerRelay) =>
        Effect.ignore(update(relay.peerAddress, relay.relayAddress, {
          error: C.ERROR_ABORTED, firewall: C.FIREWALL_UNKNOWN, round: round++, connected: false, punching: false,
          addresses: null, remoteAddress: null, token: null, remoteToken: null
        }))

      // our sampling pings: when the server answers our first holepunch message, or when that
      // answer is late (an attempt that connected first never sends them)
      const lateAfter = samplingDelay(won.roundTrip)
      let sampleLater: (() => void) | null = null
      const probeRound = (to: Endpoint | null, retry: boolean): Effect.Effect<{ token: Uint8Array | null; peerAddress: Endpoint }, ConnectionError> =>
        Effect.gen({ self: this }, function*() {
          // the probe leaves before the holepunch message (the reference awaits it too)
          if (to !== null) yield* attempt.openSession(to)
          const reply = yield* update(serverRelay.peerAddress, serverRelay.relayAddress, {
            error: C.ERROR_NONE, firewall: attempt.nat.firewall, round: round++, connected: false, punching: false,
            addresses: attempt.nat.addresses, remoteAddress: to, token: null, remoteToken: null
          }, () => {
            sampleLater ??= host.after(lateAfter, () => attempt.startSampling())
          }).pipe(Effect.ensuring(Effect.sync(() => {
            sampleLater?.()
            attempt.startSampling()
          })))
          if (attempt.remoteFirewall === C.FIREWALL_UNKNOWN) yield* Effect.sleep(1000)
          // bounded: an analysis that never ends leaves our class unknown, and the dial fails typed below
          yield* Deferred.await(attempt.analyzed).pipe(Effect.timeoutOption(ANALYSIS_WAIT))
          this.localFirewall = attempt.nat.firewall
          if ((attempt.remoteFirewall === C.FIREWALL_UNKNOWN || reply.payload.token === null) && retry) return yield* probeRound(to, false)
          if (attempt.remoteFirewall === C.FIREWALL_UNKNOWN || attempt.nat.firewall === C.FIREWALL_UNKNOWN) {
            yield* abort(serverRelay)
            this.attempts.push({ path: "punch", outcome: `NAT classes unknown (ours ${attempt.nat.firewall}, theirs ${attempt.remoteFirewall})` })
            return yield* this.error("HOLEPUNCH_PROBE_TIMEOUT")
          }
          if (attempt.remoteFirewall === C.FIREWALL_RANDOM && attempt.nat.firewall === C.FIREWALL_RANDOM) {
            yield* abort(serverRelay)
            this.attempts.push({ path: "punch", outcome: "both NATs randomize ports" })
            return yield* this.error("HOLEPUNCH_DOUBLE_RANDOMIZED_NATS")
          }
          return { token: reply.payload.token, peerAddress: reply.peerAddress }
        })

      const probe = yield* stopOnFailure(probeRound(this.opts.fastOpen === false ? null : serverAddress, true))
      this.localFirewall = attempt.nat.firewall
      /**
       * The server's socket answered our open-session probe (a path short
       * enough for TTL 5: the server is in fact reachable) and connected
       * us: that is the connection, and no punch round may follow. The
       * reference's client stops here too (`isDone` after its probe round);
       * a server that refuses the round (hyperdht's, when its random-punch
       * budget is spent: TRY_LATER without a relay, the handshake aborted)
       * closes the very socket we connected to, and the connection would
       * open on our side and never carry a byte.
       */
      const connectedEarly = Effect.flatMap(attempt.connectedSoFar(), (yes) => (yes ? Deferred.await(attempt.outcome) : Effect.succeed(null)))
      const early = yield* connectedEarly
      if (early !== null) return early
      // the server's relay is the one we shook hands through: aim at the socket it now punches from
      if (sameEndpoint(serverRelay.relayAddress, won.relayAddress) && !sameEndpoint(serverAddress, probe.peerAddress)) {
        serverAddress = probe.peerAddress
        yield* attempt.openSession(serverAddress)
      }
      const veto = this.opts.holepunch
      if (veto !== undefined && !veto(attempt.remoteFirewall, attempt.nat.firewall, attempt.remoteAddresses, attempt.nat.addresses ?? [])) {
        yield* abort(serverRelay)
        attempt.stop()
        return yield* this.error("HOLEPUNCH_ABORTED", "Client aborted holepunch")
      }
      // the punch round
      attempt.freeze()
      const random = isRandomPunch(attempt.nat.firewall, attempt.remoteFirewall)
      const limiter = host.randomPunches
      const now = host.handle.clock.currentTimeMillisUnsafe()
      let grant = random ? limiter.acquire(now, attempt.nat.firewall >= C.FIREWALL_RANDOM) : null
      // our budget is spent: wait a little for a grant (random punches end within a second or two)
      // rather than give up at once; the server keeps the handshake meanwhile
      // (not under the reference's rule, randomPunchInterval: its interval is far longer)
      for (let waited = 0; random && grant === null && limiter.interval === 0 && waited < GRANT_WAIT; waited += GRANT_POLL) {
        yield* Effect.sleep(GRANT_POLL)
        grant = limiter.acquire(host.handle.clock.currentTimeMillisUnsafe(), attempt.nat.firewall >= C.FIREWALL_RANDOM)
      }
      if (random && grant === null) {
        yield* abort(serverRelay)
        attempt.stop()
        const why = limiter.interval > 0
          ? "another random punch is running or ended less than randomPunchInterval ago"
          : `the node's random-punch budget is spent (${limiter.active} running, ${Math.round(limiter.probeRate)} probes/s, ${limiter.sockets} sockets)`
        this.attempts.push({ path: "punch", outcome: why })
        return yield* this.error("HOLEPUNCH_ABORTED", `random punches are rate limited: ${why}`)
      }
      const granted = grant
      const release = () => (granted !== null ? Effect.sync(() => limiter.release(host.handle.clock.currentTimeMillisUnsafe(), granted)) : Effect.void)
      const punched = yield* Effect.gen({ self: this }, function*() {
        // (waiting for a grant took time: the server's answer may have come meanwhile)
        const meanwhile = yield* connectedEarly
        if (meanwhile !== null) return meanwhile
        let reply = yield* update(serverAddress, won.relayAddress, {
          error: C.ERROR_NONE, firewall: attempt.nat.firewall, round: round++, connected: false, punching: true,
          addresses: attempt.nat.addresses, remoteAddress: null,
          token: Derive.addressToken(c, localSecret, serverAddress.host), remoteToken: probe.token
        })
        // TRY_LATER: back off (1–2 s, doubling) and redo the round through the server's relay
        for (let tries = 0; reply.tryLater; tries++) {
          if (tries >= TRY_LATER_RETRIES) {
            this.attempts.push({ path: "punch", outcome: `the server asked to try later ${tries} times` })
            return yield* this.error("HOLEPUNCH_ABORTED", "the server's random punches stayed busy (TRY_LATER)")
          }
          yield* Effect.sleep(Math.round((1 + host.random()) * 1000 * 2 ** tries))
          const connected = yield* connectedEarly
          if (connected !== null) return connected
          // the token again (for the address the server's relay forwards to): its echo keeps the
          // server's address verified, which a random punch needs
          reply = yield* update(serverRelay.peerAddress, serverRelay.relayAddress, {
            error: C.ERROR_NONE, firewall: attempt.nat.firewall, round: round++, connected: false, punching: true,
            addresses: attempt.nat.addresses, remoteAddress: null,
            token: Derive.addressToken(c, localSecret, serverRelay.peerAddress.host), remoteToken: probe.token
          })
        }
        if (!reply.payload.punching) return yield* this.error("REMOTE_NOT_HOLEPUNCHING")
        const started = yield* attempt.start(granted)
        if (!started) return yield* this.error("REMOTE_NOT_HOLEPUNCHABLE")
        return yield* Deferred.await(attempt.outcome)
      }).pipe(stopOnFailure, Effect.ensuring(release()))
      return punched
    })
  }
}
