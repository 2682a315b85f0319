/**
 * The blind-relay protocol (spec: connect.md §6.8; relaying: udx.md §9) as
 * deterministic cores over a protomux channel (./protomux.ts):
 *
 * - `BlindRelayClient`: one per relay connection. `pair` sends
 *   `pair { isInitiator, token, id: our UDX stream id, seq: 0 }` and waits for
 *   the relay's answer with the same token and isInitiator; its `id` is the
 *   relay-side UDX stream to connect ours to. A pairing that is not answered
 *   within 15 s aborts (`RelayAborted`, code RELAY_ABORTED).
 * - `BlindRelayServer`: the relay. One session per incoming relay client
 *   (channel); two `pair` requests with the same token (one initiator, one
 *   not), from any sessions of the server, are matched; the owner then
 *   creates two relay-side UDX streams linked to each other, and each peer is
 *   answered with the id of the stream dedicated to it. `unpair` and session
 *   close release the pair. Abuse limits bound pending and active pairs.
 * - `UdxRelay`: the relaying (`relayTo`) half of those relay-side streams on
 *   the datagram path: a UDX packet for a relay stream is forwarded verbatim,
 *   with the stream id rewritten, to the linked stream's peer. Relay streams
 *   carry no stream state (no ACKs: reliability stays end to end), so this
 *   table sits in front of the UDX mux on the relay's sockets.
 *
 * Time comes in through the injected `now()` (read when a request arrives)
 * and timers are exposed as `nextDeadline()` / `onTimers(now)`; nothing here
 * owns a socket or a real timer. Bad input never throws: malformed relay
 * messages are counted and dropped, API misuse returns a `BlindRelayError`.
 */
import * as Data from "effect/Data"
import * as Result from "effect/Result"
import type { Datagram, Endpoint } from "../../layers/Transport.js"
import {
  BLIND_RELAY_PAIR,
  BLIND_RELAY_PROTOCOL,
  BLIND_RELAY_UNPAIR,
  pair as pairCodec,
  unpair as unpairCodec
} from "../../protocol/blind-relay.js"
import { decode, encode, toHex } from "../../protocol/encoding.js"
import type { Protomux, ProtomuxChannel } from "./protomux.js"

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/** How long a pairing may wait for its answer (client) or its other half (relay), in ms (hyperdht: 15 s). */
export const PAIRING_TIMEOUT = 15_000

/**
 * Relay: pairs one session may have waiting for their other half. A hyperdht
 * peer opens one relay connection per relayed connection, so a handful is
 * generous; more is someone parking tokens.
 */
export const MAX_PENDING_PAIRS_PER_SESSION = 16

/** Relay: pairs waiting for their other half across all sessions (bounds the relay's memory). */
export const MAX_PENDING_PAIRS = 1024

/**
 * Relay: matched pairs (two relay streams each) one session may hold. Each
 * costs the relay bandwidth; a session that wants more is refused new pairs
 * until some are released.
 */
export const MAX_ACTIVE_PAIRS_PER_SESSION = 64

/**
 * Relay: tokens of finished pairs (released or expired) remembered so that
 * a pair request carrying one again is refused. A relay client draws a fresh
 * token per relayed connection; a token seen before is a replay.
 */
export const TOKEN_MEMORY = 4096

const UINT32_MAX = 0xffff_ffff

const isUint32 = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= UINT32_MAX

const isToken = (t: unknown): t is Uint8Array => t instanceof Uint8Array && t.length === 32

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

export type RelayAbortReason =
  /** No answer within the pairing timeout. */
  | "Timeout"
  /** The blind-relay channel closed (by the relay, a reject, or the connection going away). */
  | "ChannelClosed"
  /** We destroyed the client. */
  | "Destroyed"

/** A pairing that will not complete (hyperdht reports RELAY_ABORTED for it). */
export class RelayAborted extends Data.TaggedError("RelayAborted")<{
  readonly reason: RelayAbortReason
  readonly detail: string
}> {
  get code(): "RELAY_ABORTED" {
    return "RELAY_ABORTED"
  }
  override get message(): string {
    return `RELAY_ABORTED: ${this.detail}`
  }
}

export type BlindRelayErrorCode =
  /** A pairing with this token is already waiting. */
  | "ALREADY_PAIRING"
  /** The channel is closed (or could not be opened). */
  | "CHANNEL_CLOSED"
  /** A token that is not 32 bytes, a stream id that is not a uint32, a non-boolean flag. */
  | "INVALID_ARGUMENT"

/** Misuse of the client API (returned, never thrown). */
export class BlindRelayError extends Data.TaggedError("BlindRelayError")<{
  readonly code: BlindRelayErrorCode
  readonly detail: string
}> {
  override get message(): string {
    return `${this.code}: ${this.detail}`
  }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/** A completed pairing: connect our UDX stream to `remoteId` at the relay. */
export interface RelayPairing {
  readonly isInitiator: boolean
  readonly token: Uint8Array
  /** Our UDX stream id, as sent in the request. */
  readonly localStreamId: number
  /** The relay-side UDX stream dedicated to us. */
  readonly remoteId: number
}

export interface BlindRelayClientEvents {
  readonly onPaired?: (pairing: RelayPairing) => void
  readonly onAborted?: (token: Uint8Array, isInitiator: boolean, error: RelayAborted) => void
  /** The relay opened its side of the channel. */
  readonly onOpen?: () => void
  /** The channel closed (pending pairings were aborted just before). */
  readonly onClose?: () => void
}

export interface BlindRelayClientOptions {
  /** Monotonic time in ms, read when a pairing starts. */
  readonly now: () => number
  /**
   * Channel id; both ends must use the same. hyperdht passes the public key
   * of *our* end of the relay connection, and relays accept with the
   * connection's remote public key, i.e. the same key.
   */
  readonly id?: Uint8Array | null
  /** Override `PAIRING_TIMEOUT`. */
  readonly pairingTimeout?: number
  readonly events?: BlindRelayClientEvents
}

export interface BlindRelayClientStats {
  readonly requested: number
  readonly paired: number
  readonly aborted: number
  readonly cancelled: number
  /** Answers for no waiting pairing (unknown token, other isInitiator). */
  readonly ignoredAnswers: number
  /** Relay messages that did not decode (dropped). */
  readonly malformed: number
  /** Exceptions thrown by our event callbacks (caught). */
  readonly callbackErrors: number
}

interface ClientRequest {
  readonly key: string
  readonly isInitiator: boolean
  readonly token: Uint8Array
  readonly localStreamId: number
  readonly deadline: number
}

/**
 * The client side of blind-relay over one protomux (one relay connection).
 * Opens its channel at construction.
 */
export class BlindRelayClient {
  private channel: ProtomuxChannel | null
  private readonly now: () => number
  private readonly timeout: number
  private readonly events: BlindRelayClientEvents
  /** Waiting pairings by token (hex), in start order (deadlines ascend). */
  private readonly requests = new Map<string, ClientRequest>()
  private ending = false
  private isClosed = false
  private isOpen = false

  private nRequested = 0
  private nPaired = 0
  private nAborted = 0
  private nCancelled = 0
  private nIgnored = 0
  private nMalformed = 0
  private nCallbackErrors = 0

  constructor(mux: Protomux, options: BlindRelayClientOptions) {
    this.now = options.now
    this.timeout = options.pairingTimeout ?? PAIRING_TIMEOUT
    this.events = options.events ?? {}
    this.channel = mux.openChannel({
      protocol: BLIND_RELAY_PROTOCOL,
      id: options.id ?? null,
      onopen: (_hs, ch) => {
        this.channel = ch
        this.isOpen = true
        this.call(() => this.events.onOpen?.())
      },
      onclose: () => this.onChannelClose(),
      messages: [{ onmessage: (payload) => this.onPair(payload) }, null]
    })
    if (this.channel === null) this.isClosed = true
  }

  /** The relay has opened its side. */
  get opened(): boolean {
    return this.isOpen && !this.isClosed
  }

  get closed(): boolean {
    return this.isClosed
  }

  /** Pairings waiting for an answer. */
  get pending(): number {
    return this.requests.size
  }

  /**
   * Ask the relay to pair `token` (the relay owner's side is the initiator)
   * for our UDX stream `localStreamId`. The answer arrives as `onPaired`, or
   * `onAborted` after the pairing timeout or when the channel closes.
   */
  pair(isInitiator: boolean, token: Uint8Array, localStreamId: number): Result.Result<void, BlindRelayError> {
    if (typeof isInitiator !== "boolean" || !isToken(token) || !isUint32(localStreamId)) {
      return Result.fail(new BlindRelayError({ code: "INVALID_ARGUMENT", detail: "pair(isInitiator: boolean, token: 32 bytes, localStreamId: uint32)" }))
    }
    const ch = this.channel
    if (ch === null || this.isClosed || this.ending) {
      return Result.fail(new BlindRelayError({ code: "CHANNEL_CLOSED", detail: "the blind-relay channel is closed" }))
    }
    const key = toHex(token)
    if (this.requests.has(key)) {
      return Result.fail(new BlindRelayError({ code: "ALREADY_PAIRING", detail: "a pairing with this token is waiting" }))
    }
    const body = encode(pairCodec, { isInitiator, token, id: localStreamId, seq: 0 })
    if (Result.isFailure(body)) return Result.fail(new BlindRelayError({ code: "INVALID_ARGUMENT", detail: body.failure.message }))
    this.requests.set(key, { key, isInitiator, token: new Uint8Array(token), localStreamId, deadline: this.now() + this.timeout })
    this.nRequested++
    ch.send(BLIND_RELAY_PAIR, body.success)
    return Result.void
  }

  /**
   * Cancel the pairing for `token` if one is waiting (no event is reported
   * for it) and tell the relay to drop the pair, waiting or active.
   * Returns true if a waiting pairing was cancelled.
   */
  unpair(token: Uint8Array): Result.Result<boolean, BlindRelayError> {
    if (!isToken(token)) return Result.fail(new BlindRelayError({ code: "INVALID_ARGUMENT", detail: "token must be 32 bytes" }))
    const ch = this.channel
    if (ch === null || this.isClosed) return Result.fail(new BlindRelayError({ code: "CHANNEL_CLOSED", detail: "the blind-relay channel is closed" }))
    const cancelled = this.requests.delete(toHex(token))
    if (cancelled) this.nCancelled++
    const body = encode(unpairCodec, { token })
    if (Result.isSuccess(body)) ch.send(BLIND_RELAY_UNPAIR, body.success)
    this.endMaybe()
    return Result.succeed(cancelled)
  }

  /** Earliest pairing deadline (Infinity when none). */
  nextDeadline(): number {
    for (const r of this.requests.values()) return r.deadline
    return Infinity
  }

  /** Abort the pairings whose deadline is due. */
  onTimers(now: number): void {
    for (const r of [...this.requests.values()]) {
      if (r.deadline > now) break
      this.requests.delete(r.key)
      this.abort(r, new RelayAborted({ reason: "Timeout", detail: `no pairing answer from the relay within ${this.timeout} ms` }))
    }
    this.endMaybe()
  }

  /** Close the channel once no pairing is waiting. */
  end(): void {
    this.ending = true
    this.endMaybe()
  }

  /** Close the channel now; waiting pairings abort with reason "Destroyed". */
  destroy(): void {
    if (this.isClosed) return
    this.abortAll("Destroyed", "the blind-relay client was destroyed")
    this.channel?.close()
  }

  stats(): BlindRelayClientStats {
    return {
      requested: this.nRequested,
      paired: this.nPaired,
      aborted: this.nAborted,
      cancelled: this.nCancelled,
      ignoredAnswers: this.nIgnored,
      malformed: this.nMalformed,
      callbackErrors: this.nCallbackErrors
    }
  }

  // ---- internals ----

  private onPair(payload: Uint8Array): void {
    const d = decode(pairCodec, payload)
    if (Result.isFailure(d)) {
      this.nMalformed++
      return
    }
    const { isInitiator, token, id } = d.success
    const key = toHex(token)
    const r = this.requests.get(key)
    if (r === undefined || r.isInitiator !== isInitiator || !isUint32(id)) {
      this.nIgnored++
      return
    }
    this.requests.delete(key)
    this.nPaired++
    const pairing: RelayPairing = { isInitiator, token: r.token, localStreamId: r.localStreamId, remoteId: id }
    this.call(() => this.events.onPaired?.(pairing))
    this.endMaybe()
  }

  private onChannelClose(): void {
    if (this.isClosed) return
    this.abortAll("ChannelClosed", "the blind-relay channel closed")
    this.isClosed = true
    this.call(() => this.events.onClose?.())
  }

  private abortAll(reason: RelayAbortReason, detail: string): void {
    const all = [...this.requests.values()]
    this.requests.clear()
    for (const r of all) this.abort(r, new RelayAborted({ reason, detail }))
  }

  private abort(r: ClientRequest, error: RelayAborted): void {
    this.nAborted++
    this.call(() => this.events.onAborted?.(r.token, r.isInitiator, error))
  }

  private endMaybe(): void {
    if (this.ending && this.requests.size === 0 && !this.isClosed) this.channel?.close()
  }

  private call(f: () => void): void {
    try {
      f()
    } catch {
      this.nCallbackErrors++
    }
  }
}

// ---------------------------------------------------------------------------
// Server (the relay)
// ---------------------------------------------------------------------------

/** One half of a matched pair, as handed to `createStreams`. */
export interface RelayLinkEnd<U> {
  readonly session: BlindRelaySession<U>
  readonly isInitiator: boolean
  /** The peer's own UDX stream id: the remote id of the relay stream dedicated to it. */
  readonly remoteId: number
}

/** How the relay's owner provides the relay-side UDX streams. */
export interface RelayStreamHooks<U> {
  /**
   * Create two relay streams linked to each other (`relayTo` both ways):
   * one dedicated to the responder (remote id `responder.remoteId`), one to
   * the initiator, each connected to whoever first sends a packet to it.
   * Return their ids `[responder's, initiator's]`, or null when they cannot
   * be created (the pair is dropped).
   */
  readonly createStreams: (
    token: Uint8Array,
    responder: RelayLinkEnd<U>,
    initiator: RelayLinkEnd<U>
  ) => readonly [number, number] | null
  /**
   * Destroy the two streams of a released pair (unpair, session closed, a
   * stream closed). `abort`: the relay ended the pair itself (its lifetime
   * cap): tell both peers, so their streams close now.
   */
  readonly releaseStreams?: (ids: readonly [number, number], abort: boolean) => void
}

export interface BlindRelayServerOptions<U> extends RelayStreamHooks<U> {
  /** Monotonic time in ms, read when a pair request arrives. */
  readonly now: () => number
  /** Override `PAIRING_TIMEOUT` (how long half a pair may wait). */
  readonly pairingTimeout?: number
  /** Override `MAX_PENDING_PAIRS_PER_SESSION`. */
  readonly maxPendingPerSession?: number
  /** Override `MAX_PENDING_PAIRS`. */
  readonly maxPendingTotal?: number
  /** Override `MAX_ACTIVE_PAIRS_PER_SESSION`. */
  readonly maxActivePerSession?: number
  /** Sessions (relay clients) open at once; `accept` refuses more (default: no cap). */
  readonly maxSessions?: number
  /**
   * How long a matched pair may last (ms, default: no cap). At its end the
   * pair is released with `abort = true`: the owner tells both peers (a
   * UDX DESTROY) so their streams close at once instead of timing out.
   */
  readonly maxPairLifetime?: number
  /** Override `TOKEN_MEMORY` (finished tokens remembered to refuse replays). */
  readonly tokenMemory?: number
}

export interface BlindRelaySession<U> {
  /** What the owner attached at `accept`. */
  readonly info: U | undefined
  /** The client opened its side of the channel. */
  readonly opened: boolean
  readonly closed: boolean
  /** Pairs of this session waiting for their other half. */
  readonly pendingPairs: number
  /** Matched pairs this session takes part in. */
  readonly activePairs: number
  /** Close the channel once nothing of this session is pending. */
  end(): void
  /** Close the channel now (its pending and active pairs are released). */
  destroy(): void
}

export interface BlindRelayServerStats {
  readonly sessions: { readonly accepted: number; readonly opened: number; readonly closed: number; readonly active: number }
  readonly pairings: {
    readonly requested: number
    readonly matched: number
    readonly cancelled: number
    readonly expired: number
    /** Matched pairs ended by `maxPairLifetime`. */
    readonly lifetimeEnded: number
    readonly pending: number
    readonly active: number
  }
  readonly streams: { readonly opened: number; readonly closed: number; readonly active: number }
  /** Pair requests refused, by cause. */
  readonly rejected: {
    readonly malformed: number
    /** Same token and isInitiator as a half already waiting. */
    readonly duplicate: number
    /** The token belongs to a matched pair. */
    readonly activeToken: number
    readonly pendingPerSession: number
    readonly pendingTotal: number
    readonly activePerSession: number
    /** The token belonged to a pair that already ended (a replay). */
    readonly replayedToken: number
    /** `accept` refused: `maxSessions` sessions were open. */
    readonly sessions: number
    /** `createStreams` returned null, bad ids or threw. */
    readonly createFailed: number
  }
  /** Exceptions thrown by the owner's hooks (caught). */
  readonly hookErrors: number
}

interface Link<U> {
  readonly session: Session<U>
  readonly isInitiator: boolean
  readonly remoteId: number
}

interface PendingPair<U> {
  readonly key: string
  readonly token: Uint8Array
  /** [responder, initiator] */
  readonly links: [Link<U> | null, Link<U> | null]
  readonly deadline: number
}

interface ActivePair<U> {
  readonly key: string
  readonly token: Uint8Array
  readonly links: readonly [Link<U>, Link<U>]
  /** Relay stream ids [responder's, initiator's]. */
  readonly ids: readonly [number, number]
  /** When `maxPairLifetime` ends it (Infinity: never). */
  readonly expires: number
}

class Session<U> implements BlindRelaySession<U> {
  channel: ProtomuxChannel | null = null
  opened = false
  closed = false
  ending = false
  /** Tokens (hex) of pending pairs with a half from this session. */
  readonly pending = new Set<string>()
  /** Tokens (hex) of active pairs with a half from this session. */
  readonly active = new Set<string>()

  constructor(
    private readonly server: ServerOps<U>,
    readonly info: U | undefined
  ) {}

  get pendingPairs(): number {
    return this.pending.size
  }
  get activePairs(): number {
    return this.active.size
  }

  end(): void {
    this.ending = true
    this.endMaybe()
  }

  destroy(): void {
    if (this.closed) return
    this.channel?.close()
  }

  endMaybe(): void {
    if (this.ending && this.pending.size === 0 && !this.closed) this.channel?.close()
  }

  send(type: number, body: Uint8Array): void {
    if (!this.closed) this.channel?.send(type, body)
  }

  onPair(payload: Uint8Array): void {
    this.server.onPair(this, payload)
  }
  onUnpair(payload: Uint8Array): void {
    this.server.onUnpair(this, payload)
  }
}

interface ServerOps<U> {
  onPair(s: Session<U>, payload: Uint8Array): void
  onUnpair(s: Session<U>, payload: Uint8Array): void
}

const mutableStats = () => ({
  sessions: { accepted: 0, opened: 0, closed: 0 },
  pairings: { requested: 0, matched: 0, cancelled: 0, expired: 0, lifetimeEnded: 0 },
  streams: { opened: 0, closed: 0 },
  rejected: {
    malformed: 0,
    duplicate: 0,
    activeToken: 0,
    pendingPerSession: 0,
    pendingTotal: 0,
    activePerSession: 0,
    replayedToken: 0,
    sessions: 0,
    createFailed: 0
  },
  hookErrors: 0
})

/**
 * The relay side of blind-relay: sessions over protomux channels, pairing by
 * token across them, and the abuse limits. `U` is whatever the owner wants
 * to attach to a session (e.g. the connection it runs on).
 */
export class BlindRelayServer<U = undefined> {
  private readonly now: () => number
  private readonly hooks: RelayStreamHooks<U>
  private readonly timeout: number
  private readonly maxPendingPerSession: number
  private readonly maxPendingTotal: number
  private readonly maxActivePerSession: number
  private readonly maxSessions: number
  private readonly lifetime: number
  private readonly tokenMemory: number

  private readonly all = new Set<Session<U>>()
  /** Tokens (hex) of finished pairs, oldest first (bounded by `tokenMemory`). */
  private readonly finished = new Set<string>()
  /** Waiting pairs by token (hex), in arrival order (deadlines ascend). */
  private readonly pendingPairs = new Map<string, PendingPair<U>>()
  private readonly activePairs = new Map<string, ActivePair<U>>()
  private readonly byStream = new Map<number, ActivePair<U>>()
  private readonly s = mutableStats()

  private readonly ops: ServerOps<U> = {
    onPair: (session, payload) => this.onPair(session, payload),
    onUnpair: (session, payload) => this.onUnpair(session, payload)
  }

  constructor(options: BlindRelayServerOptions<U>) {
    this.now = options.now
    this.hooks = options
    this.timeout = options.pairingTimeout ?? PAIRING_TIMEOUT
    this.maxPendingPerSession = options.maxPendingPerSession ?? MAX_PENDING_PAIRS_PER_SESSION
    this.maxPendingTotal = options.maxPendingTotal ?? MAX_PENDING_PAIRS
    this.maxActivePerSession = options.maxActivePerSession ?? MAX_ACTIVE_PAIRS_PER_SESSION
    this.maxSessions = options.maxSessions ?? Infinity
    this.lifetime = options.maxPairLifetime ?? Infinity
    this.tokenMemory = options.tokenMemory ?? TOKEN_MEMORY
  }

  /**
   * Serve blind-relay on `mux` (one incoming relay client): opens the
   * channel. `id` must match the client's: relays in the wild pass the
   * connection's remote public key (the client's key). Null when the channel
   * cannot be opened (mux destroyed, channel already open on it).
   */
  accept(mux: Protomux, options: { readonly id?: Uint8Array | null; readonly info?: U } = {}): BlindRelaySession<U> | null {
    if (this.all.size >= this.maxSessions) {
      this.s.rejected.sessions++
      return null
    }
    const session = new Session<U>(this.ops, options.info)
    this.all.add(session)
    this.s.sessions.accepted++
    const channel = mux.openChannel({
      protocol: BLIND_RELAY_PROTOCOL,
      id: options.id ?? null,
      // the channel may pair (and deliver buffered requests) before openChannel returns
      onopen: (_hs, ch) => {
        session.channel = ch
        session.opened = true
        this.s.sessions.opened++
      },
      onclose: () => this.onSessionClose(session),
      messages: [{ onmessage: (p) => session.onPair(p) }, { onmessage: (p) => session.onUnpair(p) }]
    })
    if (channel === null) {
      this.all.delete(session)
      this.s.sessions.accepted--
      return null
    }
    session.channel = channel
    return session
  }

  /** The owner reports that a relay stream closed (e.g. DESTROY): its pair is released. */
  streamClosed(id: number): void {
    const p = this.byStream.get(id)
    if (p !== undefined) this.release(p)
  }

  /** Earliest deadline of a waiting half pair or of a matched pair's lifetime (Infinity when none). */
  nextDeadline(): number {
    let d = Infinity
    for (const p of this.pendingPairs.values()) {
      d = p.deadline
      break
    }
    // matched pairs are kept in match order, so their ends ascend too
    for (const a of this.activePairs.values()) return Math.min(d, a.expires)
    return d
  }

  /** Drop the half pairs that waited too long; end the matched pairs whose lifetime is over. */
  onTimers(now: number): void {
    for (const p of [...this.pendingPairs.values()]) {
      if (p.deadline > now) break
      this.dropPending(p)
      this.forget(p.key)
      this.s.pairings.expired++
    }
    for (const a of [...this.activePairs.values()]) {
      if (a.expires > now) break
      this.release(a, true)
      this.s.pairings.lifetimeEnded++
      this.endMaybe(a.links[0], a.links[1])
    }
  }

  /** Close every session (releasing every pair). */
  close(): void {
    for (const session of [...this.all]) session.destroy()
    this.pendingPairs.clear()
  }

  sessions(): ReadonlyArray<BlindRelaySession<U>> {
    return [...this.all]
  }

  stats(): BlindRelayServerStats {
    const s = this.s
    return {
      sessions: { ...s.sessions, active: s.sessions.accepted - s.sessions.closed },
      pairings: { ...s.pairings, pending: this.pendingPairs.size, active: this.activePairs.size },
      streams: { ...s.streams, active: s.streams.opened - s.streams.closed },
      rejected: { ...s.rejected },
      hookErrors: s.hookErrors
    }
  }

  // ---- internals ----

  private onPair(session: Session<U>, payload: Uint8Array): void {
    if (session.closed) return
    const d = decode(pairCodec, payload)
    if (Result.isFailure(d) || !isUint32(d.success.id)) {
      this.s.rejected.malformed++
      return
    }
    const { isInitiator, token, id: remoteId } = d.success
    const key = toHex(token)
    if (this.activePairs.has(key)) {
      this.s.rejected.activeToken++
      return
    }
    if (this.finished.has(key)) {
      this.s.rejected.replayedToken++
      return
    }
    if (session.active.size >= this.maxActivePerSession) {
      this.s.rejected.activePerSession++
      return
    }
    const half = isInitiator ? 1 : 0
    let p = this.pendingPairs.get(key)
    if (p === undefined) {
      if (session.pending.size >= this.maxPendingPerSession) {
        this.s.rejected.pendingPerSession++
        return
      }
      if (this.pendingPairs.size >= this.maxPendingTotal) {
        this.s.rejected.pendingTotal++
        return
      }
      p = { key, token: new Uint8Array(token), links: [null, null], deadline: this.now() + this.timeout }
      this.pendingPairs.set(key, p)
    } else if (p.links[half] !== null) {
      this.s.rejected.duplicate++
      return
    }
    p.links[half] = { session, isInitiator, remoteId }
    session.pending.add(key)
    this.s.pairings.requested++

    const [responder, initiator] = p.links
    if (responder === null || initiator === null) return
    this.match(p, responder, initiator)
  }

  private match(p: PendingPair<U>, responder: Link<U>, initiator: Link<U>): void {
    this.dropPending(p)
    // the half that waited may have filled its active quota meanwhile
    for (const l of [responder, initiator]) {
      if (l.session.closed || l.session.active.size >= this.maxActivePerSession) {
        this.s.rejected.activePerSession++
        this.endMaybe(responder, initiator)
        return
      }
    }
    let ids: readonly [number, number] | null = null
    try {
      ids = this.hooks.createStreams(p.token, responder, initiator)
    } catch {
      this.s.hookErrors++
      ids = null
    }
    if (ids === null || !isUint32(ids[0]) || !isUint32(ids[1]) || ids[0] === ids[1] || this.byStream.has(ids[0]) || this.byStream.has(ids[1])) {
      this.s.rejected.createFailed++
      this.endMaybe(responder, initiator)
      return
    }
    const active: ActivePair<U> = { key: p.key, token: p.token, links: [responder, initiator], ids: [ids[0], ids[1]], expires: this.now() + this.lifetime }
    this.activePairs.set(p.key, active)
    this.byStream.set(ids[0], active)
    this.byStream.set(ids[1], active)
    responder.session.active.add(p.key)
    initiator.session.active.add(p.key)
    this.s.pairings.matched++
    this.s.streams.opened += 2

    // answer the responder first, then the initiator (the reference's order)
    for (const [l, id] of [[responder, ids[0]], [initiator, ids[1]]] as const) {
      const body = encode(pairCodec, { isInitiator: l.isInitiator, token: p.token, id, seq: 0 })
      if (Result.isSuccess(body)) l.session.send(BLIND_RELAY_PAIR, body.success)
    }
    this.endMaybe(responder, initiator)
  }

  private onUnpair(session: Session<U>, payload: Uint8Array): void {
    if (session.closed) return
    const d = decode(unpairCodec, payload)
    if (Result.isFailure(d)) {
      this.s.rejected.malformed++
      return
    }
    const key = toHex(d.success.token)
    // a waiting pair can be cancelled by anyone holding its token (as the reference)
    const p = this.pendingPairs.get(key)
    if (p !== undefined) {
      this.dropPending(p)
      this.forget(key)
      this.s.pairings.cancelled++
      for (const l of p.links) l?.session.endMaybe()
      return
    }
    const a = this.activePairs.get(key)
    if (a !== undefined && session.active.has(key)) {
      this.release(a)
      this.s.pairings.cancelled++
    }
  }

  private onSessionClose(session: Session<U>): void {
    if (session.closed) return
    session.closed = true
    for (const key of [...session.pending]) {
      const p = this.pendingPairs.get(key)
      if (p === undefined) continue
      this.dropPending(p)
      this.s.pairings.cancelled++
    }
    for (const key of [...session.active]) {
      const a = this.activePairs.get(key)
      if (a !== undefined) this.release(a)
    }
    session.pending.clear()
    session.active.clear()
    this.all.delete(session)
    this.s.sessions.closed++
  }

  /** Forget a waiting pair (both halves). */
  private dropPending(p: PendingPair<U>): void {
    this.pendingPairs.delete(p.key)
    for (const l of p.links) l?.session.pending.delete(p.key)
  }

  /** Remember a finished pair's token (replays of it are refused), forgetting the oldest beyond the bound. */
  private forget(key: string): void {
    this.finished.delete(key)
    this.finished.add(key)
    if (this.finished.size > this.tokenMemory) {
      for (const oldest of this.finished) {
        this.finished.delete(oldest)
        break
      }
    }
  }

  /** Release a matched pair and ask the owner to destroy its streams (`abort`: tell the peers). */
  private release(a: ActivePair<U>, abort = false): void {
    if (this.activePairs.get(a.key) !== a) return
    this.activePairs.delete(a.key)
    this.forget(a.key)
    this.byStream.delete(a.ids[0])
    this.byStream.delete(a.ids[1])
    for (const l of a.links) l.session.active.delete(a.key)
    this.s.streams.closed += 2
    const releaseStreams = this.hooks.releaseStreams
    if (releaseStreams === undefined) return
    try {
      releaseStreams(a.ids, abort)
    } catch {
      this.s.hookErrors++
    }
  }

  private endMaybe(a: Link<U>, b: Link<U>): void {
    a.session.endMaybe()
    if (b.session !== a.session) b.session.endMaybe()
  }
}

// ---------------------------------------------------------------------------
// Relaying on the datagram path (udx.md §9)
// ---------------------------------------------------------------------------

const UDX_HEADER = 20
const UDX_MAGIC = 0xff
const UDX_VERSION = 1
const UDX_DESTROY = 0x10

export interface UdxRelayOptions<S> {
  /** Send `datagram` to `to` from `socket` (the socket the destination's packets arrive on). */
  readonly send: (socket: S, to: Endpoint, datagram: Uint8Array) => void
  /** A relay stream closed (DESTROY received, its partner closed, or `destroy`). */
  readonly onClose?: (id: number) => void
  /** Monotonic time in ms for byte meters (default `Date.now`). */
  readonly now?: () => number
}

/**
 * A byte budget refilled at `bytesPerSecond` (a token bucket holding at most
 * one second's worth). The relay charges each forwarded packet to the meter
 * of the peer that sent it; a packet over budget is dropped, and the
 * sender's UDX congestion control slows it down to the rate.
 */
export class ByteMeter {
  private budget: number
  private last = -Infinity
  dropped = 0

  constructor(readonly bytesPerSecond: number) {
    this.budget = bytesPerSecond
  }

  /** Charge `bytes` at `now`: false (nothing charged) when over budget. */
  take(bytes: number, now: number): boolean {
    if (now > this.last) {
      const refill = this.last === -Infinity ? this.bytesPerSecond : ((now - this.last) * this.bytesPerSecond) / 1000
      this.budget = Math.min(this.bytesPerSecond, this.budget + refill)
      this.last = now
    }
    if (this.budget < bytes) {
      this.dropped++
      return false
    }
    this.budget -= bytes
    return true
  }
}

/** One relay stream as seen from outside. */
export interface UdxRelayStream<S> {
  readonly id: number
  /** The peer's own stream id (what forwarded packets are addressed to). */
  readonly remoteId: number
  /** The stream it relays to. */
  readonly relayTo: number
  /** Where its peer was seen (set by the first packet; null before). */
  readonly socket: S | null
  readonly remote: Endpoint | null
  /** Highest sequence number seen in a packet from its peer. */
  readonly highestSeq: number
  readonly packets: number
}

export interface UdxRelayStats {
  readonly streams: number
  /** Packets forwarded. */
  readonly forwarded: number
  /** Packets dropped because the destination's peer has not been seen yet. */
  readonly unconnected: number
  /** Relay streams connected (or re-pointed) by a packet from a new socket. */
  readonly firewallConnects: number
  /** Relay streams closed by a DESTROY packet. */
  readonly destroyedByPeer: number
  /** Packets dropped because their sender was over its byte rate. */
  readonly rateLimited: number
  /** Pairs ended by the relay with a DESTROY to both peers (`abort`). */
  readonly aborted: number
}

interface RelayEntry<S> {
  readonly id: number
  readonly remoteId: number
  readonly relayTo: number
  /** Charged for the packets this stream's peer sends (null: no rate cap). */
  readonly meter: ByteMeter | null
  socket: S | null
  remote: Endpoint | null
  highestSeq: number
  packets: number
}

const readU32 = (b: Uint8Array, p: number): number => (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0

const writeU32 = (b: Uint8Array, p: number, v: number): void => {
  b[p] = v & 0xff
  b[p + 1] = (v >>> 8) & 0xff
  b[p + 2] = (v >>> 16) & 0xff
  b[p + 3] = (v >>> 24) & 0xff
}

/** One side of `UdxRelay.link`: the relay stream's id, its peer's stream id, and the peer's byte meter. */
export interface RelayLinkSpec {
  readonly id: number
  readonly remoteId: number
  readonly meter?: ByteMeter | null
}

/**
 * Relay streams (udx.md §9) without stream state. Put `handle` in front of
 * the UDX mux on every socket of the relay: it consumes UDX packets whose id
 * is a relay stream and returns false for everything else. Relay ids share
 * the UDX instance's id space: the owner allocates them so they never
 * collide with the mux's own streams.
 *
 * - The first packet for a relay stream (or one arriving on another socket)
 *   connects it to that packet's socket and source (the blind-relay
 *   firewall rule).
 * - Every packet is forwarded unchanged except bytes 4..8, rewritten to the
 *   destination's remote id, from the destination's socket to its peer;
 *   dropped while the destination's peer has not been seen.
 * - A DESTROY packet is forwarded, then closes the stream and the stream
 *   relaying to it. `destroy(id)` closes silently; `abort(id)` sends each
 *   peer a DESTROY first. No ACKs are generated.
 * - A stream linked with a `ByteMeter` charges its peer's packets to it;
 *   packets over the peer's rate are dropped (DESTROY is never charged).
 */
export class UdxRelay<S> {
  private readonly entries = new Map<number, RelayEntry<S>>()
  private readonly sendDatagram: UdxRelayOptions<S>["send"]
  private readonly onClose: UdxRelayOptions<S>["onClose"]
  private readonly now: () => number
  private forwarded = 0
  private unconnected = 0
  private firewallConnects = 0
  private destroyedByPeer = 0
  private rateLimited = 0
  private aborted = 0

  constructor(options: UdxRelayOptions<S>) {
    this.sendDatagram = options.send
    this.onClose = options.onClose
    this.now = options.now ?? Date.now
  }

  /**
   * Create two relay streams relaying to each other: `a.id` serves the peer
   * whose stream is `a.remoteId`, likewise `b`. False (nothing created) when
   * an id is not a uint32, is in use, or both ids are equal.
   */
  link(a: RelayLinkSpec, b: RelayLinkSpec): boolean {
    if (![a.id, a.remoteId, b.id, b.remoteId].every(isUint32) || a.id === b.id) return false
    if (this.entries.has(a.id) || this.entries.has(b.id)) return false
    this.entries.set(a.id, { id: a.id, remoteId: a.remoteId, relayTo: b.id, meter: a.meter ?? null, socket: null, remote: null, highestSeq: 0, packets: 0 })
    this.entries.set(b.id, { id: b.id, remoteId: b.remoteId, relayTo: a.id, meter: b.meter ?? null, socket: null, remote: null, highestSeq: 0, packets: 0 })
    return true
  }

  has(id: number): boolean {
    return this.entries.has(id)
  }

  get(id: number): UdxRelayStream<S> | undefined {
    const e = this.entries.get(id)
    return e === undefined ? undefined : { ...e }
  }

  /** A datagram received on `socket`: true when it was a packet for a relay stream (consumed). */
  handle(socket: S, d: Datagram): boolean {
    const data = d.data
    if (!(data instanceof Uint8Array) || data.length < UDX_HEADER || data[0] !== UDX_MAGIC || data[1] !== UDX_VERSION) return false
    const e = this.entries.get(readU32(data, 4))
    if (e === undefined) return false
    // firewall: the first packet (or one on another socket) connects the stream to its sender
    if (e.socket === null || e.socket !== socket) {
      e.socket = socket
      e.remote = { host: d.from.host, port: d.from.port }
      this.firewallConnects++
    }
    e.packets++
    const seq = readU32(data, 12)
    if (e.packets === 1 || ((seq - e.highestSeq) | 0) > 0) e.highestSeq = seq
    if (e.meter !== null && (data[2]! & UDX_DESTROY) === 0 && !e.meter.take(data.length, this.now())) {
      this.rateLimited++
      return true
    }

    const dest = this.entries.get(e.relayTo)
    if (dest !== undefined && dest.socket !== null && dest.remote !== null) {
      const out = new Uint8Array(data)
      const rid = dest.remoteId
      out[4] = rid & 0xff
      out[5] = (rid >>> 8) & 0xff
      out[6] = (rid >>> 16) & 0xff
      out[7] = (rid >>> 24) & 0xff
      this.forwarded++
      try {
        this.sendDatagram(dest.socket, dest.remote, out)
      } catch {
        // a failing send is a lost datagram; UDX retransmits end to end
      }
    } else {
      this.unconnected++
    }
    if ((data[2]! & UDX_DESTROY) !== 0) {
      this.destroyedByPeer++
      this.destroy(e.id)
    }
    return true
  }

  /** Close a relay stream and the stream relaying to it, sending nothing. */
  destroy(id: number): void {
    const e = this.entries.get(id)
    if (e === undefined) return
    this.entries.delete(id)
    const partner = this.entries.get(e.relayTo)
    if (partner !== undefined && partner.relayTo === id) this.entries.delete(partner.id)
    this.closed(id)
    if (partner !== undefined && partner.relayTo === id) this.closed(partner.id)
  }

  /**
   * End a relay stream and its partner, telling both peers: each gets a UDX
   * DESTROY addressed to its stream, with a sequence number past everything
   * its partner sent (so the peer's stream accepts it and closes with
   * "connection reset" rather than waiting to time out).
   */
  abort(id: number): void {
    const e = this.entries.get(id)
    if (e === undefined) return
    const partner = this.entries.get(e.relayTo)
    if (partner !== undefined) {
      this.aborted++
      this.sendDestroy(e, partner)
      this.sendDestroy(partner, e)
    }
    this.destroy(id)
  }

  stats(): UdxRelayStats {
    return {
      streams: this.entries.size,
      forwarded: this.forwarded,
      unconnected: this.unconnected,
      firewallConnects: this.firewallConnects,
      destroyedByPeer: this.destroyedByPeer,
      rateLimited: this.rateLimited,
      aborted: this.aborted
    }
  }

  /** A DESTROY to `to`'s peer, as if from the peer of `from` (whose packets `to` forwards). */
  private sendDestroy(to: RelayEntry<S>, from: RelayEntry<S>): void {
    if (to.socket === null || to.remote === null) return
    const b = new Uint8Array(UDX_HEADER)
    b[0] = UDX_MAGIC
    b[1] = UDX_VERSION
    b[2] = UDX_DESTROY
    writeU32(b, 4, to.remoteId)
    writeU32(b, 12, from.packets === 0 ? 0 : (from.highestSeq + 1) >>> 0)
    try {
      this.sendDatagram(to.socket, to.remote, b)
    } catch {
      // best effort: the peer's stream times out instead
    }
  }

  private closed(id: number): void {
    if (this.onClose === undefined) return
    try {
      this.onClose(id)
    } catch {
      // the owner's handler must not break the datagram path
    }
  }
}

/**
 * `createStreams` / `releaseStreams` for a `BlindRelayServer` backed by a
 * `UdxRelay`. `allocateId` proposes a relay stream id (random uint32s, say)
 * that the owner's UDX mux does not use; ids already taken in the relay are
 * skipped (up to 16 tries). Wire `relay`'s `onClose` to `server.streamClosed`.
 */
export const udxRelayHooks = <U, S>(
  relay: UdxRelay<S>,
  allocateId: () => number,
  /** The byte meter of a relay client (one per session, shared by its pairs); null: no rate cap. */
  meterOf: (session: BlindRelaySession<U>) => ByteMeter | null = () => null
): RelayStreamHooks<U> => {
  const fresh = (avoid: number): number | null => {
    for (let i = 0; i < 16; i++) {
      const id = allocateId()
      if (isUint32(id) && id !== avoid && !relay.has(id)) return id
    }
    return null
  }
  return {
    createStreams: (_token, responder, initiator) => {
      const a = fresh(-1)
      if (a === null) return null
      const b = fresh(a)
      if (b === null) return null
      return relay.link(
          { id: a, remoteId: responder.remoteId, meter: meterOf(responder.session) },
          { id: b, remoteId: initiator.remoteId, meter: meterOf(initiator.session) }
        )
        ? [a, b]
        : null
    },
    releaseStreams: (ids, abort) => {
      if (abort) relay.abort(ids[0])
      relay.destroy(ids[0])
      relay.destroy(ids[1])
    }
  }
}
