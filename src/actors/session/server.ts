/**
 * A server listening on a public key (connect.md §8.2; hyperdht-records.md
 * §8): it announces itself at hash(publicKey) on the closest nodes, which
 * become its relays, keeps them alive, and answers handshakes routed to it.
 *
 * - `listen(keyPair)`: register the server entry with the node's router,
 *   run an announce cycle, then the background loop (ping the relays every
 *   3 s; after 100 rounds, when too few answer, on `refresh()` or a network
 *   change: announce again and unannounce from the nodes no longer used).
 * - Per handshake (deduplicated by the bytes of message 1, §4.4): Noise IK as
 *   responder, the user's `firewall` hook, the reply payload, then the
 *   connection once a path exists: at once when the client is OPEN or came
 *   to us directly, else on the first UDX packet of the client (its stream's
 *   firewall hook), within 10 s.
 * - `close()`: stop the loop, unannounce, drop the router entry, abort the
 *   handshakes in progress (open connections stay).
 *
 * The announce loop is a fiber in the node's scope; handshakes run inside
 * the node's steps (the router calls their hooks), and a handshake's timer
 * is a fiber of its own.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type { KeyPair } from "../../layers/crypto/types.js"
import { type Endpoint, sameEndpoint, type UdpSocket } from "../../layers/Transport.js"
import { mark } from "../../layers/trace.js"
import * as C from "../../protocol/connect.js"
import { decode, encode, toHex } from "../../protocol/encoding.js"
import * as R from "../../protocol/records.js"
import * as Derive from "../../layers/crypto/derive.js"
import { equalBytes } from "../../protocol/encoding.js"
import { HolepunchAttempt } from "../holepunch/attempt.js"
import { isPrivate, isRandomPunch, matchAddress, type RandomPunchGrant, shouldFastOpen, withVerified } from "../holepunch/decide.js"
import { connectionError, type ConnectionError } from "../holepunch/errors.js"
import { isLocalSource } from "../routing/limits.js"
import type { IncomingResponse } from "../routing/rpc.js"
import type { HandshakeInfo, HolepunchInfo, ServerHooks, ServerReply } from "../routing/router.js"
import { type ConnectionHost, type ConnectionPath, GatewaySocket, Noise } from "./host.js"
import { isRelayPath, RELAY_KEEPALIVE, relayConnection, type RelayThrough, relayThroughInfo, serverRelayPlan } from "./relay-connection.js"
import type { UdxStream } from "./udx.js"

export interface ServerOptions {
  /**
   * Called for every handshake: return (or resolve) true to reject the
   * client (it gets no answer and its connect times out, as with hyperdht).
   */
  readonly firewall?: (remotePublicKey: Uint8Array, remotePayload: C.NoisePayload, clientAddress: Endpoint) => boolean | Promise<boolean>
  /**
   * Veto a holepunch: (remoteFirewall, localFirewall, remoteAddresses, localAddresses) => boolean;
   * false never punches (clients must reach us directly).
   */
  readonly holepunch?: false | ((remoteFirewall: number, localFirewall: number, remoteAddresses: ReadonlyArray<Endpoint>, localAddresses: ReadonlyArray<Endpoint>) => boolean)
  /** Put our local interface addresses in handshake replies (default true). */
  readonly shareLocalAddress?: boolean
  /**
   * A blind relay to fall back on (connect.md §6.8): its public key, a list
   * or a function; our relay wins over the client's. The relayed path races
   * the direct ones.
   */
  readonly relayThrough?: RelayThrough
  /** Keepalive of the connection to the relay (ms, default 5000). */
  readonly relayKeepAlive?: number
}

/** A relay of ours: a node that stores our announcement, and our address as that node sees it. */
export interface ServerRelay {
  readonly relayAddress: Endpoint
  readonly peerAddress: Endpoint
}

/** One handshake, deduplicated by the bytes of its message 1. */
interface Handshake {
  readonly key: string
  readonly id: number
  /** The client's host as the relay saw it (MAX_PENDING_HANDSHAKES_PER_HOST). */
  readonly source: string
  reply: Uint8Array | null
  /** Aborted or rejected: duplicates get no answer either. */
  dropped: boolean
  waiters: Array<(reply: ServerReply | null) => void>
  stream: UdxStream | null
  /** Stops the handshake's timer fiber. */
  stopTimer: (() => void) | null
  connected: boolean
  /** The holepunch box key and our token secret (when we offered holepunching). */
  secret: Uint8Array | null
  localSecret: Uint8Array | null
  /** Our side of the punch (non-initiator). */
  attempt: HolepunchAttempt | null
  /** Highest client round applied. */
  round: number
  /** Replies leave from the attempt's socket (so relays see its mapping). */
  replySocket: UdpSocket | null
  /** The random-punch grant held (released when the attempt ends). */
  randomSlot: RandomPunchGrant | null
  /** A blind-relay pairing is in progress (the handshake does not time out meanwhile). */
  relaying: boolean
  /** Connected through a blind relay: punching goes on, a direct path upgrades the connection. */
  relayed: boolean
}

const ANNOUNCE_PING_INTERVAL = 3000
const ANNOUNCE_ROUNDS = 100
/** How long a handshake waits for the client's first packet (hyperdht HANDSHAKE_INITIAL_TIMEOUT). */
export const HANDSHAKE_INITIAL_TIMEOUT = 10_000
/** How long a finished handshake keeps answering duplicates (hyperdht handshakeClearWait). */
export const HANDSHAKE_CLEAR_WAIT = 10_000
/** Handshakes in progress per server: past this, new ones get no answer (bounded state). */
export const MAX_PENDING_HANDSHAKES = 1024
/**
 * Of those, how many may come from one client host (its address as the
 * relay saw it, or the source of a direct handshake): 32, so one host
 * cannot take the whole table (it would need 32 hosts) nor make the server
 * run more than 32 Noise responders at once, while a NAT with many honest
 * users behind one address still gets 32 concurrent handshakes to this
 * one server (each lasts until the connection opens, at most 10 s).
 * Local hosts (loopback, private ranges) are exempt: local testnets put
 * every client on one address.
 */
export const MAX_PENDING_HANDSHAKES_PER_HOST = 32
/**
 * Relay connections a server opens at once to relays its clients named
 * (a client's `relayThrough`). Each is a whole dial (FIND_PEER, handshake,
 * pairing for up to 15 s) to a key the client chose: without a cap, a stream
 * of handshakes could make the server dial any key at packet rate
 * (hyperdht#296). Over the cap the client's relay is ignored and the
 * direct paths still run.
 */
export const MAX_CLIENT_RELAY_DIALS = 16
/**
 * How long a handshake is kept after we answered a punch with TRY_LATER (ms):
 * the client comes back within its back-off (ours: up to 14 s in all; the
 * reference's: 10–20 s).
 */
export const TRY_LATER_KEEP = 30_000
/** Of those, how many one client key may have at once. */
export const MAX_CLIENT_RELAY_DIALS_PER_KEY = 2


export class ServerCore {
  state: "idle" | "listening" | "closing" | "closed" = "idle"
  /** Suspended: not announcing, handshakes get no answer (the node sleeps). */
  suspended = false
  keyPair: KeyPair | null = null
  target: Uint8Array | null = null
  relays: Array<ServerRelay> = []
  relayAddresses: Array<Endpoint> = []
  private closestNodes: ReadonlyArray<Endpoint> = []
  private readonly handshakes = new Map<string, Handshake>()
  /** Handshakes in the table per client host (public hosts only). */
  private readonly handshakesByHost = new Map<string, number>()
  /** Relay dials in progress to relays that clients named, by client key (hex). */
  private readonly clientRelayDials = new Map<string, number>()
  private clientRelayDialsTotal = 0
  private readonly slots: Array<Handshake | null> = []
  private stopLoop: (() => void) | null = null
  private refreshSignal: Deferred.Deferred<void> = Deferred.makeUnsafe<void>()
  private removeListener: (() => void) | null = null
  readonly hooks: ServerHooks

  constructor(
    readonly host: ConnectionHost,
    readonly options: ServerOptions,
    private readonly onconnection: (socket: GatewaySocket) => void,
    /** The server failed (a defect in its announce loop): it closes itself; this reports why. */
    private readonly onfailure: (error: ConnectionError) => void = () => {}
  ) {
    this.hooks = {
      onHandshake: (noise, info, respond) => this.onHandshake(noise, info, respond),
      onHolepunch: (id, payload, info, respond) => this.onHolepunch(id, payload, info, respond)
    }
  }

  get publicKey(): Uint8Array | null {
    return this.keyPair?.publicKey ?? null
  }

  // ---- listen / announce ---------------------------------------------------------------

  listen(keyPair: KeyPair): Effect.Effect<void, ConnectionError> {
    return Effect.gen({ self: this }, function*() {
      if (this.state === "listening" || this.state === "closing") return yield* connectionError("ALREADY_LISTENING")
      if (this.state === "closed") return yield* connectionError("SERVER_CLOSED")
      const host = this.host
      const h = host.handle
      const pk = toHex(keyPair.publicKey)
      if (host.listening.has(pk)) return yield* connectionError("KEYPAIR_ALREADY_USED")
      const target = host.crypto.blake2b(keyPair.publicKey)
      const added = yield* h.run((_node, now) => {
        if (!h.hyperdht.router.addServer(target, this.hooks)) return false
        h.hyperdht.listen(keyPair.publicKey, now)
        return true
      })
      if (!added) return yield* connectionError("KEYPAIR_ALREADY_USED")
      host.listening.add(pk)
      this.keyPair = keyPair
      this.target = target
      this.state = "listening"
      this.removeListener = h.onEvent((e) => {
        if (e._tag === "network-change") this.refresh()
      })
      yield* this.announceCycle()
      this.stopLoop = host.spawn(this.loop(), (cause) => this.failed(cause))
    })
  }

  /** The announce loop died (a defect): close (unannounce) and report it, rather than stay half alive. */
  private failed(cause: Cause.Cause<unknown>): void {
    this.stopLoop = null
    this.host.spawn(this.close())
    this.onfailure(connectionError("SERVER_ERROR", "the server's announce loop failed with a defect (logged); the server closed", undefined, Cause.squash(cause)))
  }

  /** Announce again now (hyperdht's `server.refresh()`). */
  refresh(): void {
    if (this.state !== "listening") return
    Deferred.doneUnsafe(this.refreshSignal, Effect.void)
  }

  /** The background loop (hyperdht-records.md §8.3). */
  private loop(): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      while (this.state === "listening") {
        for (let i = 0; i < ANNOUNCE_ROUNDS && this.state === "listening"; i++) {
          const relays = this.relays
          const answers = yield* Effect.forEach(relays, (r) => Effect.result(this.host.handle.ping(r.relayAddress)), { concurrency: "unbounded" })
          const ok = answers.filter(Result.isSuccess).length
          if (ok < Math.min(relays.length, 3)) break
          const signal = this.refreshSignal
          const refreshed = yield* Effect.raceFirst(
            Effect.as(Effect.sleep(ANNOUNCE_PING_INTERVAL), false),
            Effect.as(Deferred.await(signal), true)
          )
          if (refreshed) break
        }
        if (this.state !== "listening") return
        if (Deferred.isDoneUnsafe(this.refreshSignal)) this.refreshSignal = Deferred.makeUnsafe<void>()
        yield* Effect.ignore(this.announceCycle())
      }
    })
  }

  /** One announce cycle (hyperdht-records.md §8.2). */
  private announceCycle(): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      const h = this.host.handle
      const target = this.target!
      const query = yield* Effect.result(
        h.runQuery({ target, command: R.Command.FIND_PEER, value: null }, this.closestNodes.length > 0 ? { nodes: this.closestNodes } : {}, () => {})
      )
      if (Result.isFailure(query)) return
      const replies = query.success.closestReplies
      this.closestNodes = replies.map((r) => ({ host: r.from.host, port: r.from.port }))
      const chosen = replies.filter((r) => r.token !== null && r.from.id !== null).slice(0, 3)
      const accepted = yield* Effect.forEach(chosen, (r) => this.announceTo(r), { concurrency: "unbounded" })
      if (this.state !== "listening") return
      const relays: Array<ServerRelay> = []
      for (let i = 0; i < chosen.length; i++) {
        if (!accepted[i]) continue
        const r = chosen[i]!
        relays.push({ relayAddress: { host: r.from.host, port: r.from.port }, peerAddress: { host: r.to.host, port: r.to.port } })
      }
      const previous = this.relays
      this.relays = relays
      const own = h.core.firewalled ? null : h.core.remoteAddress()
      const addresses: Array<Endpoint> = own !== null ? [own] : []
      for (const r of relays) if (addresses.length < 3) addresses.push(r.relayAddress)
      this.relayAddresses = addresses
      const gone = previous.filter((p) => !relays.some((r) => sameEndpoint(r.relayAddress, p.relayAddress)))
      yield* Effect.forEach(gone, (r) => Effect.ignore(this.unannounceFrom(r.relayAddress)), { concurrency: "unbounded", discard: true })
    })
  }

  private signed(namespace: Uint8Array, nodeId: Uint8Array, token: Uint8Array): Uint8Array | null {
    const c = this.host.crypto
    const keyPair = this.keyPair!
    const peer = { publicKey: keyPair.publicKey, relayAddresses: [] }
    const peerBytes = encode(R.peer, peer)
    if (Result.isFailure(peerBytes)) return null
    const signable = R.annSignable(c.blake2b, this.target!, nodeId, token, peerBytes.success, null, namespace)
    if (Result.isFailure(signable)) return null
    const signature = c.sign(signable.success, keyPair.secretKey)
    if (signature === null) return null
    const value = encode(R.announce, { peer, refresh: null, signature, bump: 0 })
    return Result.isSuccess(value) ? value.success : null
  }

  private announceTo(r: IncomingResponse): Effect.Effect<boolean> {
    const value = this.signed(this.host.ns.ANNOUNCE, r.from.id!, r.token!)
    if (value === null) return Effect.succeed(false)
    return this.host.handle.request({ token: r.token, command: R.Command.ANNOUNCE, target: this.target, value }, r.from).pipe(
      Effect.map((res) => res.error === 0),
      Effect.orElseSucceed(() => false)
    )
  }

  /** UNANNOUNCE from one node: a fresh token first (a direct FIND_PEER), skipped when it no longer holds us. */
  private unannounceFrom(node: Endpoint): Effect.Effect<void, unknown> {
    return Effect.gen({ self: this }, function*() {
      const h = this.host.handle
      const res = yield* h.request({ command: R.Command.FIND_PEER, target: this.target }, node)
      if (res.value === null || res.token === null || res.from.id === null) return
      const value = this.signed(this.host.ns.UNANNOUNCE, res.from.id, res.token)
      if (value === null) return
      yield* h.request({ token: res.token, command: R.Command.UNANNOUNCE, target: this.target, value }, res.from)
    })
  }

  // ---- suspend / resume ----------------------------------------------------------------------

  /** Stop the announce loop, unannounce from our relays, abort handshakes in progress. */
  suspend(): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      if (this.state !== "listening" || this.suspended) return
      this.suspended = true
      this.stopLoop?.()
      this.stopLoop = null
      for (const hs of this.handshakes.values()) this.abort(hs)
      yield* Effect.forEach(this.relays, (r) => Effect.ignore(this.unannounceFrom(r.relayAddress)), { concurrency: "unbounded", discard: true })
      this.relays = []
      this.relayAddresses = []
    })
  }

  /** Announce again and restart the loop (after the node resumed). */
  resume(): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      if (this.state !== "listening" || !this.suspended) return
      this.suspended = false
      yield* Effect.ignore(this.announceCycle())
      if (this.state === "listening" && !this.suspended && this.stopLoop === null) this.stopLoop = this.host.spawn(this.loop(), (cause) => this.failed(cause))
    })
  }

  // ---- close -------------------------------------------------------------------------------

  /** Stop listening: unannounce (unless `force`), drop the router entry, abort handshakes in progress. */
  close(opts: { readonly force?: boolean } = {}): Effect.Effect<void> {
    return Effect.gen({ self: this }, function*() {
      if (this.state !== "listening") {
        this.state = "closed"
        return
      }
      this.state = "closing"
      this.stopLoop?.()
      this.stopLoop = null
      this.removeListener?.()
      this.removeListener = null
      const h = this.host.handle
      const target = this.target!
      const keyPair = this.keyPair!
      yield* h.run(() => {
        h.hyperdht.router.removeServer(target, this.hooks)
        h.hyperdht.unlisten(keyPair.publicKey)
      })
      if (opts.force !== true) {
        yield* Effect.forEach(this.relays, (r) => Effect.ignore(this.unannounceFrom(r.relayAddress)), { concurrency: "unbounded", discard: true })
      }
      this.host.listening.delete(toHex(keyPair.publicKey))
      for (const hs of this.handshakes.values()) this.abort(hs)
      this.handshakes.clear()
      this.handshakesByHost.clear()
      this.slots.length = 0
      this.relays = []
      this.relayAddresses = []
      this.state = "closed"
    })
  }

  // ---- handshakes (inside the node's steps) ---------------------------------------------------

  private onHandshake(noise: Uint8Array, info: HandshakeInfo, respond: (reply: ServerReply | null) => void): void {
    mark("S.hs")
    const stats = this.host.stats.server
    if (this.state !== "listening" || this.suspended) return respond(null)
    const key = toHex(noise)
    const existing = this.handshakes.get(key)
    if (existing !== undefined) {
      stats.duplicates++
      if (existing.reply !== null) respond(existing.replySocket !== null ? { value: existing.reply, socket: existing.replySocket } : { value: existing.reply })
      else if (!existing.dropped) existing.waiters.push(respond)
      else respond(null)
      return
    }
    const source = info.clientAddress.host
    const local = isLocalSource(source)
    const fromHost = local ? 0 : (this.handshakesByHost.get(source) ?? 0)
    if (this.handshakes.size >= MAX_PENDING_HANDSHAKES || fromHost >= MAX_PENDING_HANDSHAKES_PER_HOST) {
      stats.refused++
      return respond(null)
    }
    let id = this.slots.indexOf(null)
    if (id === -1) id = this.slots.push(null) - 1
    const hs: Handshake = {
      key, id, source, reply: null, dropped: false, waiters: [respond], stream: null, stopTimer: null, connected: false,
      secret: null, localSecret: null, attempt: null, round: 0, replySocket: null, randomSlot: null, relaying: false, relayed: false
    }
    this.slots[id] = hs
    this.handshakes.set(key, hs)
    if (!local) this.handshakesByHost.set(source, fromHost + 1)
    stats.handshakes++
    const host = this.host
    const c = host.crypto
    const keyPair = this.keyPair!
    const e = host.ephemeralKeyPair()
    const st = Noise.responder(c, { staticKeyPair: keyPair, prologue: host.ns.PEER_HANDSHAKE, ...(e !== undefined ? { ephemeralKeyPair: e } : {}) })
    mark("S.m1.start")
    const m1 = Noise.readMessage1(st, noise)
    mark("S.m1")
    if (Result.isFailure(m1)) {
      stats.badHandshakes++
      return this.forget(hs)
    }
    const payload = decode(C.noisePayload, m1.success.payload)
    if (Result.isFailure(payload)) {
      stats.badHandshakes++
      return this.forget(hs)
    }
    const remotePublicKey = m1.success.remoteStaticKey
    const remotePayload = payload.success
    // still inside the node step that received the request: answer now (the reply leaves in this
    // step too, router.ts); a firewall hook's promise settles later, and its answer is a step of its own
    const proceed = (firewalled: boolean, inStep: boolean): void => {
      if (this.state !== "listening" || hs.dropped) return this.drop(hs)
      if (firewalled) {
        stats.firewalled++
        return this.drop(hs)
      }
      if (inStep) this.answer(hs, st, remotePublicKey, remotePayload, info)
      else host.handle.exec(() => this.answer(hs, st, remotePublicKey, remotePayload, info))
    }
    const hook = this.options.firewall
    if (hook === undefined) return proceed(false, true)
    let verdict: boolean | Promise<boolean>
    try {
      verdict = hook(remotePublicKey, remotePayload, info.clientAddress)
    } catch {
      verdict = true // a throwing hook rejects, as a rejected promise does
    }
    if (typeof verdict === "boolean") proceed(verdict, true)
    else Promise.resolve(verdict).then((v) => proceed(v === true, false), () => proceed(true, false))
  }

  /** Build and send the reply; set up the connection's stream (connect.md §8.2 steps 4–13). */
  private answer(hs: Handshake, st: Noise.NoiseState, remotePublicKey: Uint8Array, remotePayload: C.NoisePayload, info: HandshakeInfo): void {
    const host = this.host
    const h = host.handle
    const error = remotePayload.version !== 1 ? C.ERROR_VERSION_MISMATCH : remotePayload.udx === null ? C.ERROR_ABORTED : C.ERROR_NONE
    const own = h.core.firewalled ? null : h.core.remoteAddress()
    const addresses4: Array<Endpoint> = own !== null ? [own] : []
    if (this.options.shareLocalAddress !== false) addresses4.push(...host.localAddresses())
    const offer = relayThroughInfo(this.options.relayThrough, host.crypto, host.random)
    let stream: UdxStream | null = null
    if (error === C.ERROR_NONE) {
      const created = host.mux.createStreamUnsafe(host.mux.freeId(host.random), {
        remoteId: remotePayload.udx!.id,
        firewall: (from, socket) => {
          if (!(from.port > 0 && from.port < 65536)) return true
          onsocket(socket, from, false)
          return false
        }
      })
      if (created instanceof Error) return this.drop(hs)
      stream = created
      hs.stream = stream
    }
    const payload = C.makeNoisePayload({
      error,
      firewall: own !== null ? C.FIREWALL_OPEN : C.FIREWALL_UNKNOWN,
      holepunch: own !== null ? null : { id: hs.id, relays: this.relays },
      addresses4,
      addresses6: null,
      udx: { reusableSocket: false, id: stream?.id ?? 0, seq: 0 },
      secretStream: {},
      relayThrough: offer,
      relayAddresses: this.relayAddresses.length > 0 ? this.relayAddresses : null
    })
    const plain = encode(C.noisePayload, payload)
    if (Result.isFailure(plain)) return this.drop(hs)
    mark("S.m2.start")
    const m2 = Noise.writeMessage2(st, plain.success)
    mark("S.m2")
    if (Result.isFailure(m2)) return this.drop(hs)
    const split = m2.success.split
    const handshake = {
      tx: split.tx,
      rx: split.rx,
      hash: split.handshakeHash,
      publicKey: this.keyPair!.publicKey,
      remotePublicKey
    }
    const open = (s: UdxStream, path: ConnectionPath, relayedVia: Uint8Array | null): GatewaySocket => {
      const socketOut = new GatewaySocket(false, null, {
        autoStart: false,
        keepAlive: host.keepAlive,
        publicKey: handshake.publicKey,
        remotePublicKey,
        ...(host.streamClock !== undefined ? { clock: host.streamClock } : {})
      })
      socketOut.startOver(s, handshake, path)
      socketOut.relayedVia = relayedVia
      host.track(socketOut)
      host.stats.server.connections++
      this.clearLater(hs)
      this.onconnection(socketOut)
      mark("S.open")
      return socketOut
    }
    const onsocket = (socket: UdpSocket, from: Endpoint, immediate: boolean): void => {
      if (hs.connected || stream === null) return
      mark("S.connected")
      hs.connected = true
      hs.stopTimer?.()
      hs.stopTimer = null
      stream.connectUnsafe(remotePayload.udx!.id, from, socket)
      const attempt = hs.attempt
      const punched = attempt !== null && attempt.owns(socket)
      if (attempt !== null) {
        // the punch is over: keep its socket if the connection came through it
        if (punched) attempt.adopt(socket)
        else attempt.stop()
      }
      // the client reached us at the address its relay saw (direct), or at another (its LAN address)
      const path = punched ? "punched" : immediate || from.host === info.clientAddress.host ? "direct" : "lan"
      open(stream, path, null)
      if (punched) attempt.releaseAfter(stream)
    }
    hs.reply = m2.success.message
    const reply = (): void => {
      const waiters = hs.waiters
      hs.waiters = []
      const r: ServerReply = hs.replySocket !== null ? { value: hs.reply!, socket: hs.replySocket } : { value: hs.reply! }
      for (const w of waiters) w(r)
    }
    if (error !== C.ERROR_NONE) {
      reply()
      this.clearLater(hs)
      return
    }
    // a blind relay, when either side asked for one: races the direct paths
    let plan = serverRelayPlan(offer, remotePayload.relayThrough)
    let clientKey = plan !== null && !plan.isInitiator ? toHex(remotePublicKey) : null
    if (clientKey !== null) {
      // a relay the client chose: a bounded number of such dials at once
      const mine = this.clientRelayDials.get(clientKey) ?? 0
      if (this.clientRelayDialsTotal >= MAX_CLIENT_RELAY_DIALS || mine >= MAX_CLIENT_RELAY_DIALS_PER_KEY) {
        host.stats.server.clientRelaysRefused++
        plan = null
        clientKey = null
      } else {
        this.clientRelayDials.set(clientKey, mine + 1)
        this.clientRelayDialsTotal++
      }
    }
    const relayDialDone = (): void => {
      if (clientKey === null) return
      const key = clientKey
      clientKey = null
      const n = (this.clientRelayDials.get(key) ?? 1) - 1
      if (n <= 0) this.clientRelayDials.delete(key)
      else this.clientRelayDials.set(key, n)
      this.clientRelayDialsTotal--
    }
    if (stream === null) relayDialDone()
    // started once the reply has left: its dial's first steps (a FIND_PEER, a message 1) are not
    // on the reply's path
    const startRelay = (): void => {
      if (plan === null || stream === null) return
      const relayStream = stream
      hs.relaying = true
      host.spawn(
        relayConnection(host, {
          relayPublicKey: plan.relayPublicKey,
          keyPair: this.keyPair!,
          isInitiator: plan.isInitiator,
          token: plan.token,
          localStream: relayStream,
          keepAlive: this.options.relayKeepAlive ?? RELAY_KEEPALIVE
        }).pipe(
          Effect.ensuring(Effect.sync(relayDialDone)),
          Effect.flatMap((paired) =>
            Effect.sync(() => {
              hs.relaying = false
              if (hs.connected) {
                paired.relaySocket.end()
                return
              }
              hs.connected = true
              hs.relayed = true
              hs.stopTimer?.()
              hs.stopTimer = null
              // punching goes on: the first packet over another path upgrades the connection
              const out = open(relayStream, "relayed", plan.relayPublicKey)
              relayStream.watchPath((from, via) => {
                if (isRelayPath(paired, via, from)) return
                relayStream.watchPath(null)
                relayStream.connectUnsafe(remotePayload.udx!.id, from, via)
                const attempt = hs.attempt
                const punched = attempt !== null && attempt.owns(via)
                if (punched) {
                  attempt.adopt(via)
                  attempt.releaseAfter(relayStream)
                } else attempt?.stop()
                hs.relayed = false
                out.path = punched ? "punched" : "direct"
                out.relayedVia = null
                host.stats.relaying.upgrades++
                paired.relaySocket.end()
                out.emit("upgrade", out.path)
              })
            })
          ),
          Effect.catch(() =>
            Effect.sync(() => {
              hs.relaying = false
              if (!hs.connected && hs.stopTimer === null) this.abort(hs)
            })
          )
        )
      )
    }
    if (remotePayload.firewall === C.FIREWALL_OPEN || info.direct) {
      reply()
      host.stats.punches.open++
      const socket = info.direct ? host.socketOf(info.socket) : host.dhtSocket()
      // the client is reached directly, now: no relay (as the reference's server)
      relayDialDone()
      onsocket(socket, info.clientAddress, true)
      return
    }
    const lan = info.clientAddress.host === info.serverAddress.host && this.options.shareLocalAddress !== false &&
      matchAddress(host.localAddresses(), remotePayload.addresses4.filter((a) => isPrivate(a.host))) !== null
    if (own === null && (lan || this.options.holepunch !== false)) {
      // holepunching: our side of the punch, its socket sampling our NAT now
      hs.secret = Derive.holepunchSecret(host.crypto, split.handshakeHash)
      hs.localSecret = host.crypto.randomBytes(32)
      mark("S.punch.make")
      hs.attempt = HolepunchAttempt.make(host, { initiator: false, remoteFirewall: remotePayload.firewall })
      mark("S.punch.made")
      // same host as the client (a LAN): reply from our usual socket, the client tries our LAN address
      if (hs.attempt !== null && !lan) hs.replySocket = hs.attempt.socket
    }
    mark("S.reply")
    reply()
    startRelay()
    // we said OPEN, so the client connects to our public address (in case our NAT still needs opening)
    if (own !== null) host.openNatToward(info.clientAddress)
    // wait for the client's first packet (it connects to us: we are OPEN, by LAN, or punched)
    this.abortAfter(hs, HANDSHAKE_INITIAL_TIMEOUT)
  }

  /**
   * (Re)arm the handshake's timer: after `ms` without a connection it is
   * abandoned. A relay pairing still in progress keeps it (the pairing
   * aborts it if it fails).
   */
  private abortAfter(hs: Handshake, ms: number): void {
    hs.stopTimer?.()
    hs.stopTimer = this.host.after(ms, () => {
      hs.stopTimer = null
      if (!hs.connected && !hs.relaying) this.abort(hs)
    })
  }

  /** A client's holepunch message (connect.md §6.6), answered from our attempt's socket. */
  private onHolepunch(id: number, payload: Uint8Array, info: HolepunchInfo, respond: (reply: ServerReply | null) => void): void {
    mark("S.hp")
    const host = this.host
    const c = host.crypto
    const hs = this.slots[id] ?? null
    if (hs === null || hs.secret === null || hs.localSecret === null) {
      host.stats.server.holepunchesIgnored++
      return respond(null)
    }
    const opened = Derive.openPayload(c, hs.secret, payload)
    const decoded = opened === null ? null : decode(C.holepunchPayload, opened)
    if (decoded === null || Result.isFailure(decoded)) {
      host.stats.server.holepunchesIgnored++
      return respond(null)
    }
    const remote = decoded.success
    const seal = (p: C.HolepunchPayload): Uint8Array | null => {
      const plain = encode(C.holepunchPayload, p)
      return Result.isSuccess(plain) ? Derive.sealPayload(c, hs.secret!, plain.success) : null
    }
    const abort = (error: number): void => {
      hs.attempt?.stop()
      this.releaseRandom(hs)
      const value = seal({ error, firewall: C.FIREWALL_UNKNOWN, round: remote.round, connected: false, punching: false, addresses: null, remoteAddress: null, token: null, remoteToken: null })
      respond(value === null ? null : { value, socket: host.dhtSocket() })
    }
    const attempt = hs.attempt
    if (attempt === null || attempt.ended || (hs.connected && !hs.relayed)) return abort(C.ERROR_ABORTED)
    if (remote.error !== C.ERROR_NONE) return abort(C.ERROR_ABORTED)
    const isServerRelay = this.relays.some((r) => sameEndpoint(r.relayAddress, info.relayAddress))
    const token = Derive.addressToken(c, hs.localSecret, info.peerAddress.host)
    const echoed = isServerRelay && remote.remoteToken !== null && equalBytes(remote.remoteToken, token)
    if (remote.round >= hs.round) {
      hs.round = remote.round
      attempt.updateRemote(remote.firewall, withVerified(remote.addresses, echoed ? info.peerAddress.host : null, attempt.remoteAddresses))
    }
    host.spawn(
      Effect.gen({ self: this }, function*() {
        yield* Deferred.await(attempt.analyzed)
        if (attempt.unstable && !remote.punching) return abort(C.ERROR_ABORTED)
        const own = attempt.nat.firewall
        // fast open: the client already opened its NAT toward one of our addresses
        if (shouldFastOpen(own, attempt.nat.addresses, remote.remoteAddress)) attempt.ping(info.peerAddress)
        if (remote.punching) {
          const veto = this.options.holepunch
          if (typeof veto === "function" && !veto(attempt.remoteFirewall, own, attempt.remoteAddresses, attempt.nat.addresses ?? [])) return abort(C.ERROR_ABORTED)
          if (isRandomPunch(own, attempt.remoteFirewall) && hs.randomSlot === null) {
            const grant = host.randomPunches.acquire(host.handle.clock.currentTimeMillisUnsafe(), own >= C.FIREWALL_RANDOM)
            if (grant === null) {
              // our random-punch budget is spent: TRY_LATER, keeping the handshake and its attempt
              // (connect.md §6.5 step 10.4: the client redoes the punch round later, through our relay)
              host.stats.punches.tryLater++
              this.abortAfter(hs, TRY_LATER_KEEP)
              const later = seal({
                error: C.ERROR_TRY_LATER, firewall: own, round: hs.round, connected: false, punching: false,
                addresses: attempt.nat.addresses, remoteAddress: null, token: isServerRelay ? token : null, remoteToken: remote.token
              })
              return respond(later === null ? null : { value: later, socket: attempt.socket })
            }
            hs.randomSlot = grant
            host.spawn(Effect.andThen(Deferred.await(attempt.outcome), Effect.sync(() => this.releaseRandom(hs))))
          }
          hs.stopTimer?.()
          hs.stopTimer = null
          const started = yield* attempt.start(hs.randomSlot)
          if (!started) return abort(C.ERROR_ABORTED)
          // no connection within the punch: give up the handshake
          host.spawn(Effect.andThen(Deferred.await(attempt.outcome), Effect.sync(() => {
            if (!hs.connected) this.abort(hs)
          })))
        }
        if (own !== C.FIREWALL_UNKNOWN) attempt.freeze()
        const value = seal({
          error: C.ERROR_NONE,
          firewall: own,
          round: hs.round,
          connected: hs.connected,
          punching: attempt.punching,
          addresses: attempt.nat.addresses,
          remoteAddress: null,
          token: isServerRelay ? token : null,
          remoteToken: remote.token
        })
        mark("S.hp.reply")
        respond(value === null ? null : { value, socket: attempt.socket })
      })
    )
  }

  private releaseRandom(hs: Handshake): void {
    const grant = hs.randomSlot
    if (grant === null) return
    hs.randomSlot = null
    this.host.randomPunches.release(this.host.handle.clock.currentTimeMillisUnsafe(), grant)
  }

  /**
   * A message 1 that is not a handshake for us: no answer, and forgotten at
   * once (it holds no slot, so garbage cannot crowd out real clients; a
   * repeat is checked again).
   */
  private forget(hs: Handshake): void {
    hs.dropped = true
    const waiters = hs.waiters
    hs.waiters = []
    for (const w of waiters) w(null)
    this.unlink(hs)
  }

  /** Take a handshake out of the table (and its host's count) and free its slot. */
  private unlink(hs: Handshake): void {
    if (this.handshakes.get(hs.key) === hs) {
      this.handshakes.delete(hs.key)
      const n = (this.handshakesByHost.get(hs.source) ?? 0) - 1
      if (n <= 0) this.handshakesByHost.delete(hs.source)
      else this.handshakesByHost.set(hs.source, n)
    }
    if (this.slots[hs.id] === hs) this.slots[hs.id] = null
  }

  /** Handshakes in the table: in all, and from `host`. */
  pendingHandshakes(host?: string): number {
    return host === undefined ? this.handshakes.size : (this.handshakesByHost.get(host) ?? 0)
  }

  /** No answer for this handshake or its duplicates; forgotten after the clear wait. */
  private drop(hs: Handshake): void {
    hs.dropped = true
    const waiters = hs.waiters
    hs.waiters = []
    for (const w of waiters) w(null)
    this.clearLater(hs)
  }

  /** Abandon a handshake that has no connection: its stream is destroyed. */
  private abort(hs: Handshake): void {
    hs.stopTimer?.()
    hs.stopTimer = null
    if (!hs.connected) hs.attempt?.stop()
    this.releaseRandom(hs)
    if (!hs.connected && hs.stream !== null) hs.stream.destroyUnsafe()
    hs.stream = null
    hs.dropped = true
    this.clearLater(hs)
  }

  private clearLater(hs: Handshake): void {
    this.host.after(HANDSHAKE_CLEAR_WAIT, () => this.unlink(hs))
  }

  address(): { host: string; port: number; publicKey: Uint8Array } | null {
    if (this.keyPair === null || this.state !== "listening") return null
    const h = this.host.handle
    const remote = h.core.firewalled ? null : h.core.remoteAddress()
    const local = h.sockets().server.local
    return { host: remote?.host ?? local.host, port: remote?.port ?? local.port, publicKey: this.keyPair.publicKey }
  }
}

