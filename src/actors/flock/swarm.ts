/**
 * The swarm core (spec: flock.md §4–§6, §8–§12): the state of the dial-queue
 * actor, as a deterministic state machine in the quinn-proto manner. It
 * owns the PeerInfos, the dial queue, the retry timer, the per-key
 * connection registry, the limits, duplicate handling, bans, PeerInfo GC and
 * flush accounting. No sockets, no timers, no Math.random: time comes in as
 * `now` (ms) on every input, randomness through the injected `random()`,
 * and everything the owner must do comes out of `poll()` as tagged data.
 *
 * Connections are numbered by the core (`ConnId`): outbound ids appear in a
 * `Dial` output, inbound ids are returned by `handleInbound`. Every id the
 * owner holds ends with exactly one `handleClosed(id)` (or, for a dial the
 * user firewall refused, `handleDialFirewalled(id)`).
 *
 * Inputs (the owner's events and commands):
 * - discovery: `handlePeer(now, topic, peer)` for each peer a topic query yields
 *   (`peer.mutual`: found through a topic we announce, so it may be dialling
 *   us too; Flock only: see "the loser's hold" below);
 *   `joinTopic(topic)` / `leaveTopic(now, topic, { closeConnections })`.
 * - pinned peers: `joinPeer(now, key)` / `leavePeer(now, key)`.
 * - outbound dials: after `Dial`, run the user firewall, then
 *   `handleDialFirewalled(now, id)` (rejected) or `handleDialStarted(now, id)`
 *   (false → the dial was cancelled meanwhile, do not connect); then
 *   `handleOpened(now, id)` and finally `handleClosed(now, id, failure?)`.
 * - inbound: at the handshake `screenHandshake(key)`, and if "ask" the user
 *   firewall, `handleFirewallRejected(now, key)` when it refuses; when the
 *   server hands a stream over `handleInbound(now, key, isStale?)`, and later
 *   `handleClosed(now, id)`. `handleTopicShared(now, key, topic)` when an
 *   inbound peer tells us which of our topics it shares.
 * - `banPeer(now, key, banned)`, `setReconnect(key, value)`,
 *   `handleNetworkChange(now)`, `handleNetworkUpdate(now, online)`,
 *   `suspend(now)`, `resume(now)`, `destroy(now)`, `beginFlush(now)`.
 * - timers: sleep until `nextDeadline()`, then `handleTimeout(now)`; ask
 *   again after every input.
 *
 * Outputs (`poll()` / `drain()`, in order): `Dial`, `Destroy`, `KeepAlive`,
 * `Connection` (emit the `connection` event), `Update` (emit `update`),
 * `Ban`, `Topic` (PeerInfo's `topic` event), `Flushed` (settle a flush),
 * `RefreshTopics` (refresh every discovery: network change).
 *
 * The loser's hold (Flock only; issue 19: no duplicate connection reaches
 * the application). When both ends of a pair dial each other, §10 keeps
 * the connection dialled by the larger key, so the smaller key's outbound
 * connection is the one that may die. The core dials such a peer at once,
 * but when the outbound connection of the tie-break loser to a `mutual`
 * peer opens, it enters phase "on-hold" instead of "open": the dial slot is
 * freed, it counts as a connection to that key (so the winner's inbound
 * meets the §10 rule), but no `Connection` is emitted and it is not in
 * `connections`. The hold lasts `loserHold` (default `LOSER_HOLD`) once a
 * handshake from the winner's key has reached our server (`noteHandshake`,
 * before the open or during the hold), else `LOSER_HOLD_FLOOR` (capped by
 * `loserHold`). Within it:
 * - the winner's inbound connection arrives: §10 keeps it, the held one is
 *   destroyed and the inbound is accepted once its close is processed: the
 *   application sees only the inbound;
 * - the winner closes it (its own dial was under way when ours arrived):
 *   the close is processed as for any outbound connection (retry
 *   bookkeeping), without a `Connection` ever having been emitted;
 * - otherwise, at the deadline (`nextDeadline` / `handleTimeout`), it is
 *   surfaced: `Connection`, and the counted dial's flush accounting.
 * The winner never holds: its outbound connection survives the tie-break.
 */
import * as Data from "effect/Data"
import { equalBytes, toHex } from "../../protocol/encoding.js"
import { DEFAULT_FLUSH_TIMEOUT, DEFAULT_MAX_BANNED_PEERS, DIAL_RACE_WINDOW, LOSER_HOLD, LOSER_HOLD_FLOOR } from "./constants.js"
import { isExpectedInitiator, keepNewConnection } from "./dedup.js"
import {
  canDialPinned,
  canDialQueued,
  DEFAULT_LIMITS,
  type DialState,
  inboundVerdict,
  type Limits,
  outboundSaturated,
  pinnedDialDue,
  screenKey,
  shouldForceRelay,
  shouldRetry
} from "./dial-policy.js"
import { type DialFailure, PeerInfo, type PeerInfoOwner, type RelayAddress } from "./peer-info.js"
import { DialQueue } from "./queue.js"
import { type Backoffs, RetryTimer } from "./retry.js"

export type ConnId = number
export type Direction = "outbound" | "inbound"

/**
 * - firewall: outbound, slot taken, waiting for the user firewall;
 * - connecting: outbound, `dht.connect` running;
 * - on-hold: outbound opened, kept from the application for the loser's
 *   hold (Flock only);
 * - open: outbound opened (and surfaced), or inbound accepted;
 * - held: inbound that won a duplicate tie-break, waiting for the loser's close.
 */
export type ConnPhase = "firewall" | "connecting" | "on-hold" | "open" | "held"

/** Quirk §15.2 #11: the reference destroys refused inbound streams with a bare string; ours is a typed reason the actor maps to a typed error. */
export type DestroyReason =
  /** Lost the duplicate tie-break (§10): `Duplicate connection`. */
  | "duplicate"
  /** Arrived or lived while the swarm is destroyed: `Swarm has been destroyed`. */
  | "destroyed"
  /** The swarm is being suspended (§5.9). */
  | "suspended"
  /** maxServerConnections reached (Flock only). */
  | "server-limit"
  /** `leaveTopic(..., { closeConnections: true })` (Flock only). */
  | "left-topic"
  /** Our own key (a handshake the firewall should have refused). */
  | "self"

export type BanReason = "firewalled" | "manual"

export type SwarmOutput = Data.TaggedEnum<{
  /** Dial the peer: run the user firewall (null payload), then `dht.connect` with its relay hints; relay if `forceRelay`. */
  Dial: {
    readonly id: ConnId
    readonly peer: PeerInfo
    readonly relayAddresses: ReadonlyArray<RelayAddress> | null
    readonly forceRelay: boolean
  }
  /** Destroy that connection (any phase) and report `handleClosed(id)` (not needed for an id the core never registered: a refused inbound). */
  Destroy: { readonly id: ConnId; readonly reason: DestroyReason }
  /** Send a keep-alive on that connection (never emitted for a dial still waiting for the user firewall). */
  KeepAlive: { readonly id: ConnId }
  /** Emit `connection (stream, peerInfo)`; `peer.client` says the direction. */
  Connection: { readonly id: ConnId; readonly peer: PeerInfo; readonly direction: Direction }
  /** Emit `update` (stats.updates already counted). */
  Update: {}
  /** Emit `ban (peerInfo, error)`; reason firewalled → `Peer is firewalled`. */
  Ban: { readonly peer: PeerInfo; readonly reason: BanReason }
  /** Emit the PeerInfo's `topic (topic)` event. */
  Topic: { readonly peer: PeerInfo; readonly topic: Uint8Array }
  /** Settle the flush `beginFlush` returned. */
  Flushed: { readonly flush: number; readonly result: boolean }
  /** Refresh every topic discovery now (errors ignored). */
  RefreshTopics: {}
}>

export const SwarmOutput = Data.taggedEnum<SwarmOutput>()

export interface SwarmStats {
  updates: number
  connects: {
    client: { opened: number; closed: number; attempted: number }
    server: {
      opened: number
      closed: number
      /** Inbound connections refused by maxServerConnections (Flock only). */
      refused: number
    }
  }
  /** Bans by the firewall (the reference's counter). */
  bannedPeers: number
  /** Bans by `banPeer(..., true)` (Flock only: §15.2 #9). */
  manualBans: number
}

export interface SwarmCoreOptions {
  /** Given to every PeerInfo: where the application's `ban` / `reconnect` calls go (the owning actor). */
  readonly peerOwner?: PeerInfoOwner | null | undefined
  /** Our public key. */
  readonly publicKey: Uint8Array
  /** Uniform in [0, 1): queue picks and retry jitter. */
  readonly random: () => number
  readonly maxPeers?: number | undefined
  readonly maxParallel?: number | undefined
  readonly maxClientConnections?: number | undefined
  readonly maxServerConnections?: number | undefined
  readonly backoffs?: Backoffs | undefined
  readonly jitter?: number | undefined
  /** A `relayThrough` option is set: hole-punch failures switch the peer to relaying (§9.8). */
  readonly relayConfigured?: boolean | undefined
  /** Banned PeerInfos kept (oldest ban forgotten first); default 1024. */
  readonly maxBannedPeers?: number | undefined
  /** A flush settles false at the latest this long after `beginFlush`; default 60 s. */
  readonly flushTimeout?: number | undefined
  /** The tie-break loser's hold of its outbound connections to mutually found peers (Flock only); default `LOSER_HOLD`, 0 disables it. */
  readonly loserHold?: number | undefined
}

/** A read-only view of one registered connection. */
export interface ConnectionInfo {
  readonly id: ConnId
  readonly peer: PeerInfo
  readonly direction: Direction
  readonly phase: ConnPhase
  /** When it opened (-1 until then). */
  readonly openedAt: number
}

interface ConnRecord {
  readonly id: ConnId
  readonly peer: PeerInfo
  readonly direction: Direction
  phase: ConnPhase
  /** Outbound from the queue: counts for flush. */
  readonly counted: boolean
  openedAt: number
  /** A Destroy was emitted for it. */
  destroying: boolean
  /** The inbound connection held until this one's close has been processed. */
  heldNext: ConnRecord | null
  /** For a held record: the one it replaces. */
  replaces: ConnRecord | null
}

interface FlushWaiter {
  readonly id: number
  missing: number
  readonly tick: number
  readonly deadline: number
}

export type HandshakeScreen = "self" | "banned" | "server-limit" | "ask"

const keyOf = (k: Uint8Array | string): string => (typeof k === "string" ? k : toHex(k))

/** Bound of the recent-handshake memory behind the loser's hold (`noteHandshake`). */
const MAX_HANDSHAKES_SEEN = 1024

export class SwarmCore {
  readonly publicKey: Uint8Array
  readonly key: string
  readonly limits: Limits
  private readonly peerOwner: PeerInfoOwner | null
  readonly stats: SwarmStats = {
    updates: 0,
    connects: { client: { opened: 0, closed: 0, attempted: 0 }, server: { opened: 0, closed: 0, refused: 0 } },
    bannedPeers: 0,
    manualBans: 0
  }

  private readonly random: () => number
  private readonly relayConfigured: boolean
  private readonly maxBannedPeers: number
  private readonly flushTimeout: number
  private readonly loserHold: number
  /** Outbound connections on hold, with the time they are surfaced (holds differ in length: any order). */
  private readonly holds = new Map<ConnRecord, number>()
  /** Keys whose handshake reached our server lately (`noteHandshake`) → when; entries older than the hold are dropped. */
  private readonly handshakesSeen = new Map<string, number>()
  private readonly backoffs: Backoffs | undefined
  private readonly jitter: number | undefined

  private readonly peerMap = new Map<string, PeerInfo>()
  private readonly pinned = new Set<PeerInfo>()
  private readonly banOrder = new Map<string, PeerInfo>()
  private readonly queue: DialQueue<PeerInfo>
  private retry: RetryTimer<PeerInfo>
  private readonly conns = new Map<ConnId, ConnRecord>()
  private readonly byKey = new Map<string, ConnRecord>()
  private readonly openIds = new Set<ConnId>()
  private readonly joined = new Set<string>()
  private flushes: Array<FlushWaiter> = []
  private flushTick = 0
  private nextFlushId = 1
  private nextConnId = 1

  private connectingCount = 0
  private clientCount = 0
  private serverCount = 0
  private isDestroyed = false
  private isSuspended = false
  private online = true
  private draining = false

  private readonly out: Array<SwarmOutput> = []
  private outHead = 0

  constructor(options: SwarmCoreOptions) {
    this.publicKey = options.publicKey
    this.key = toHex(options.publicKey)
    this.random = options.random
    this.peerOwner = options.peerOwner ?? null
    this.limits = {
      maxPeers: options.maxPeers ?? DEFAULT_LIMITS.maxPeers,
      maxParallel: options.maxParallel ?? DEFAULT_LIMITS.maxParallel,
      maxClientConnections: options.maxClientConnections ?? DEFAULT_LIMITS.maxClientConnections,
      maxServerConnections: options.maxServerConnections ?? DEFAULT_LIMITS.maxServerConnections
    }
    this.relayConfigured = options.relayConfigured ?? false
    this.maxBannedPeers = options.maxBannedPeers ?? DEFAULT_MAX_BANNED_PEERS
    this.flushTimeout = options.flushTimeout ?? DEFAULT_FLUSH_TIMEOUT
    this.loserHold = options.loserHold ?? LOSER_HOLD
    this.backoffs = options.backoffs
    this.jitter = options.jitter
    this.queue = new DialQueue(this.random)
    this.retry = this.makeRetryTimer()
  }

  // -------------------------------------------------------------------------
  // Getters
  // -------------------------------------------------------------------------

  get destroyed(): boolean {
    return this.isDestroyed
  }

  get suspended(): boolean {
    return this.isSuspended
  }

  /** Outbound dials in progress (the facade's `connecting`). */
  get connecting(): number {
    return this.connectingCount
  }

  /** Pending + open outbound connections. */
  get clientConnections(): number {
    return this.clientCount
  }

  /** Open inbound connections. */
  get serverConnections(): number {
    return this.serverCount
  }

  /** Open connections, both directions (the facade's `connections`). */
  get connections(): ReadonlySet<ConnId> {
    return this.openIds
  }

  /** Pending outbound + open connections, one per key. */
  get allConnections(): number {
    return this.byKey.size
  }

  /** Every known PeerInfo by hex key (connected, connecting, queued, waiting, pinned, banned). */
  get peers(): ReadonlyMap<string, PeerInfo> {
    return this.peerMap
  }

  /** Pinned peers in insertion order (the facade's `explicitPeers`). */
  get explicitPeers(): ReadonlySet<PeerInfo> {
    return this.pinned
  }

  get queueLength(): number {
    return this.queue.length
  }

  /** Outbound connections on the loser's hold: opened, not surfaced yet (Flock only). */
  get heldConnections(): number {
    return this.holds.size
  }

  /** Flushes not settled yet. */
  get pendingFlushes(): number {
    return this.flushes.length
  }

  /** The retry timer (inspection in tests). */
  get retryTimer(): RetryTimer<PeerInfo> {
    return this.retry
  }

  peer(key: Uint8Array | string): PeerInfo | undefined {
    return this.peerMap.get(keyOf(key))
  }

  isQueued(peer: PeerInfo): boolean {
    return this.queue.has(peer)
  }

  /** A connection (pending or open) to that key exists. */
  hasConnection(key: Uint8Array | string): boolean {
    return this.byKey.has(keyOf(key))
  }

  /** The registered connection (pending outbound or open) to that key. */
  connectionTo(key: Uint8Array | string): ConnectionInfo | undefined {
    const r = this.byKey.get(keyOf(key))
    return r === undefined ? undefined : view(r)
  }

  connection(id: ConnId): ConnectionInfo | undefined {
    const r = this.conns.get(id)
    return r === undefined ? undefined : view(r)
  }

  isJoined(topic: Uint8Array | string): boolean {
    return this.joined.has(keyOf(topic))
  }

  // -------------------------------------------------------------------------
  // Outputs and timers
  // -------------------------------------------------------------------------

  /** The next output, undefined when there is none. */
  poll(): SwarmOutput | undefined {
    if (this.outHead >= this.out.length) return undefined
    const o = this.out[this.outHead++]!
    if (this.outHead === this.out.length) {
      this.out.length = 0
      this.outHead = 0
    }
    return o
  }

  /** Every pending output, in order. */
  drain(): Array<SwarmOutput> {
    const all = this.out.slice(this.outHead)
    this.out.length = 0
    this.outHead = 0
    return all
  }

  /** When `handleTimeout` must run next (retry ticks, flush bounds, holds), +Infinity for never. */
  nextDeadline(): number {
    let d = this.retry.nextDeadline()
    for (const f of this.flushes) if (f.deadline < d) d = f.deadline
    for (const at of this.holds.values()) if (at < d) d = at
    return d
  }

  handleTimeout(now: number): void {
    const batch = this.retry.handleTimeout(now)
    if (batch.length > 0) this.requeue(batch, now)
    if (this.holds.size > 0) this.releaseHolds(now)
    if (this.flushes.length > 0) {
      const keep: Array<FlushWaiter> = []
      for (const f of this.flushes) {
        if (f.deadline <= now) this.emit(SwarmOutput.Flushed({ flush: f.id, result: false }))
        else keep.push(f)
      }
      this.flushes = keep
    }
  }

  // -------------------------------------------------------------------------
  // Discovery and pinned peers (§9.1, §5.3)
  // -------------------------------------------------------------------------

  /** A topic is joined (its discovery exists): closed connections of its peers are retried (§9.4). */
  joinTopic(topic: Uint8Array | string): void {
    this.joined.add(keyOf(topic))
  }

  /**
   * A topic is left. With `closeConnections`, destroy the connections only
   * that topic needed: peers that are not pinned and share no other joined
   * topic (issue 19; the reference never closes). Returns those ids.
   */
  leaveTopic(now: number, topic: Uint8Array | string, options: { readonly closeConnections?: boolean } = {}): Array<ConnId> {
    const hex = keyOf(topic)
    this.joined.delete(hex)
    const closed: Array<ConnId> = []
    if (options.closeConnections !== true) return closed
    for (const r of this.byKey.values()) {
      const p = r.peer
      if (p.explicit || !p.hasTopic(hex) || r.destroying) continue
      let other = false
      for (const t of p.topicKeys()) if (this.joined.has(t)) other = true
      if (other) continue
      closed.push(r.id)
      this.destroyRecord(r, "left-topic")
    }
    return closed
  }

  /**
   * A topic query yielded a peer (§9.1). `mutual`: it was found through a
   * topic we announce, so it may be dialling us too (the PeerInfo remembers
   * it: the loser's hold applies to its outbound connections).
   */
  handlePeer(
    now: number,
    topic: Uint8Array,
    found: { readonly publicKey: Uint8Array; readonly relayAddresses?: ReadonlyArray<RelayAddress> | null | undefined; readonly mutual?: boolean | undefined }
  ): void {
    if (this.isDestroyed) return
    const peer = this.upsertPeer(found.publicKey, found.relayAddresses ?? null, true)
    if (peer === null) return
    if (peer.addTopic(topic)) this.emit(SwarmOutput.Topic({ peer, topic: peer.topics[peer.topics.length - 1]! }))
    if (found.mutual === true) peer.mutual = true
    if (this.byKey.has(peer.key)) return
    if (!peer.prioritized || peer.server) peer.reset()
    if (peer.updatePriority()) this.enqueue(peer, now)
  }

  /** Pin a peer (`joinPeer`): dialled and redialled regardless of topics; our own key is ignored. */
  joinPeer(now: number, publicKey: Uint8Array): PeerInfo | null {
    // Decision: pinning keeps the relay hints a topic gave the peer (the reference wipes them with null).
    const peer = this.upsertPeer(publicKey, null, false)
    if (peer === null) return null
    if (!this.pinned.has(peer)) {
      peer.explicit = true
      this.pinned.add(peer)
    }
    if (this.byKey.has(peer.key)) return peer
    if (peer.updatePriority()) this.enqueue(peer, now)
    return peer
  }

  /** Unpin (`leavePeer`): no more redials; the connection (if any) stays; GC if nothing holds it. */
  leavePeer(now: number, publicKey: Uint8Array | string): void {
    const peer = this.peerMap.get(keyOf(publicKey))
    if (peer === undefined) return
    peer.explicit = false
    this.pinned.delete(peer)
    this.maybeDeletePeer(peer)
  }

  /** An inbound peer told us it shares `topic` (issue 19: the server side learns the shared topics). */
  handleTopicShared(now: number, publicKey: Uint8Array | string, topic: Uint8Array): void {
    const peer = this.peerMap.get(keyOf(publicKey))
    if (peer !== undefined && peer.addTopic(topic)) this.emit(SwarmOutput.Topic({ peer, topic: peer.topics[peer.topics.length - 1]! }))
  }

  // -------------------------------------------------------------------------
  // Bans and firewall (§9.7)
  // -------------------------------------------------------------------------

  /**
   * A handshake from `remotePublicKey` reached our server (before any
   * screening): that peer is dialling us. A held outbound connection to it
   * is then held for the full `loserHold` (its inbound or its close is on
   * the way), and so is one that opens soon after (Flock only).
   */
  noteHandshake(now: number, remotePublicKey: Uint8Array | string): void {
    if (this.loserHold <= 0) return
    const hex = keyOf(remotePublicKey)
    const seen = this.handshakesSeen
    seen.delete(hex)
    // oldest first: drop the expired ones (and the oldest past a bound, whatever their age)
    for (const [k, at] of seen) {
      if (now - at <= this.loserHold && seen.size < MAX_HANDSHAKES_SEEN) break
      seen.delete(k)
    }
    seen.set(hex, now)
    const r = this.byKey.get(hex)
    const until = r === undefined ? undefined : this.holds.get(r)
    if (r !== undefined && until !== undefined && r.openedAt + this.loserHold > until) this.holds.set(r, r.openedAt + this.loserHold)
  }

  /**
   * Inbound handshake screening: own key and banned peers are refused
   * without asking the user firewall again, a new peer over
   * maxServerConnections too ("server-limit", no ban); "ask" means: call
   * the user firewall with the handshake payload, and report a refusal
   * with `handleFirewallRejected`.
   */
  screenHandshake(remotePublicKey: Uint8Array | string): HandshakeScreen {
    const hex = keyOf(remotePublicKey)
    const s = screenKey(this.key, hex, this.peerMap.get(hex))
    if (s !== "ask") return s
    if (!this.byKey.has(hex) && this.serverCount >= this.limits.maxServerConnections) return "server-limit"
    return "ask"
  }

  /** The user firewall refused this key (either path): ban it, count it, emit `Ban`. */
  handleFirewallRejected(now: number, remotePublicKey: Uint8Array): void {
    const peer = this.upsertPeer(remotePublicKey, null, false)
    if (peer === null || peer.banned) return
    peer.setBanned(true)
    this.stats.bannedPeers++
    this.emit(SwarmOutput.Ban({ peer, reason: "firewalled" }))
    this.rememberBan(peer)
  }

  /**
   * `peerInfo.ban(banned)` from the application. Never closes a connection.
   * Quirk §15.2 #9: the reference emits nothing for a manual ban; we emit `Ban` with reason "manual" and count `manualBans`.
   */
  banPeer(now: number, publicKey: Uint8Array | string, banned: boolean): void {
    const peer = this.peerMap.get(keyOf(publicKey))
    if (peer === undefined || !peer.setBanned(banned)) return
    if (banned) {
      this.stats.manualBans++
      this.emit(SwarmOutput.Ban({ peer, reason: "manual" }))
      this.rememberBan(peer)
    } else {
      this.banOrder.delete(peer.key)
      this.maybeDeletePeer(peer)
    }
  }

  /** `peerInfo.reconnect(value)`: false stops automatic redials (retry timer and pinned loop). */
  setReconnect(publicKey: Uint8Array | string, value: boolean): void {
    this.peerMap.get(keyOf(publicKey))?.setReconnecting(value)
  }

  // -------------------------------------------------------------------------
  // Outbound connections (§6)
  // -------------------------------------------------------------------------

  /**
   * Quirk §15.2 #5: the reference's dial-path firewall must be synchronous (a promise counts as a rejection); ours is asked between `Dial` and this call, so it may be async on both paths.
   *
   * The user firewall accepted the dial: the owner is about to call
   * `dht.connect`. Returns false when the dial was cancelled meanwhile (a
   * `Destroy` was emitted for it): then do not connect, just report
   * `handleClosed(id)`.
   */
  handleDialStarted(now: number, id: ConnId): boolean {
    const r = this.conns.get(id)
    if (r === undefined || r.direction !== "outbound" || r.phase !== "firewall") return false
    if (r.destroying) return false
    r.phase = "connecting"
    this.stats.connects.client.attempted++
    this.emitUpdate()
    return true
  }

  /** The user firewall refused the dial: ban the peer (as `handleFirewallRejected`) and free the dial slot. */
  handleDialFirewalled(now: number, id: ConnId): void {
    const r = this.conns.get(id)
    if (r === undefined || r.direction !== "outbound" || r.phase !== "firewall") return
    this.handleFirewallRejected(now, r.peer.publicKey)
    this.unregister(r)
    this.clientCount--
    if (r.counted) this.flushMaybe(r.peer)
    this.connectDone(now)
    this.maybeDeletePeer(r.peer)
    this.afterClose(r, now)
  }

  /**
   * The outbound stream opened: handed to the application (`Connection`),
   * or, for the tie-break loser's connection to a mutual peer, put on hold
   * until `loserHold` has passed (Flock only; see the module notes).
   */
  handleOpened(now: number, id: ConnId): void {
    const r = this.conns.get(id)
    // a stream we already asked to destroy is not handed to the application
    if (r === undefined || r.direction !== "outbound" || r.phase === "open" || r.phase === "on-hold" || r.destroying) return
    if (r.phase === "firewall") this.handleDialStarted(now, id)
    // Decision (issue 19, no duplicate surfaced): the §10 loser holds its outbound connection to a peer that may be dialling it; §10 itself is unchanged.
    const hold = this.loserHold > 0 && r.peer.mutual && !isExpectedInitiator(this.publicKey, r.peer.publicKey)
    r.phase = hold ? "on-hold" : "open"
    r.openedAt = now
    this.stats.connects.client.opened++
    this.connectDone(now)
    r.peer.connected(now)
    if (hold) {
      // the full hold when the winner's handshake has reached our server (it is dialling us), else long
      // enough for the winner's DESTROY to follow the header that opened us, if its dial was under way
      const seen = this.handshakesSeen.get(r.peer.key)
      const dialling = seen !== undefined && now - seen <= this.loserHold
      this.holds.set(r, now + (dialling ? this.loserHold : Math.min(this.loserHold, LOSER_HOLD_FLOOR)))
      this.emitUpdate()
      return
    }
    this.surface(r)
  }

  /** Hand an opened outbound connection to the application. */
  private surface(r: ConnRecord): void {
    r.phase = "open"
    this.openIds.add(r.id)
    r.peer.client = true
    this.emit(SwarmOutput.Connection({ id: r.id, peer: r.peer, direction: "outbound" }))
    if (r.counted) this.flushMaybe(r.peer)
    this.emitUpdate()
  }

  /**
   * A connection closed (or a dial failed, or a cancelled dial ended).
   * `failure` is the error that ended it, if any: for an outbound dial that
   * never opened it is kept as `peer.lastError` and checked for the
   * force-relay codes (§9.8).
   */
  handleClosed(now: number, id: ConnId, failure?: DialFailure | null): void {
    // Quirk §15.2 #6: the reference's ban-on-misbehaviour hook always returns false; we have none (an owner that wants one calls `banPeer`).
    // Quirk §15.2 #12: a stream error reaches the core as data (`failure`); the owner handles every stream's errors, none is left unhandled.
    const r = this.conns.get(id)
    if (r === undefined) return
    if (r.phase === "held") {
      // the held winner closed before the loser: forget it
      this.conns.delete(id)
      if (r.replaces !== null && r.replaces.heldNext === r) r.replaces.heldNext = null
      return
    }
    if (r.direction === "inbound") this.closeInbound(r, now)
    else if (r.phase === "firewall") this.closeCancelledDial(r, now)
    else this.closeOutbound(r, now, failure ?? null)
  }

  private closeOutbound(r: ConnRecord, now: number, failure: DialFailure | null): void {
    const peer = r.peer
    const surfaced = r.phase === "open"
    // on hold: opened (its dial slot is already free), never surfaced
    const opened = surfaced || r.phase === "on-hold"
    this.holds.delete(r)
    if (!opened) this.connectDone(now)
    this.stats.connects.client.closed++
    if (failure !== null) peer.lastError = failure
    if (!opened && failure !== null && shouldForceRelay(failure.code, this.relayConfigured)) {
      peer.forceRelaying = true
      peer.attempts = 0
    }
    this.unregister(r)
    this.clientCount--
    peer.disconnected(now)
    peer.waiting = shouldRetry(this, peer, (t) => this.joined.has(t)) && this.retry.add(peer, now)
    this.maybeDeletePeer(peer)
    if (!surfaced && r.counted) this.flushMaybe(peer)
    this.attemptDials(now)
    this.emitUpdate()
    this.afterClose(r, now)
  }

  /** A dial cancelled (Destroy) before the user firewall answered: no attempt was made. */
  private closeCancelledDial(r: ConnRecord, now: number): void {
    this.unregister(r)
    this.clientCount--
    if (r.counted) this.flushMaybe(r.peer)
    this.connectDone(now)
    this.maybeDeletePeer(r.peer)
    this.afterClose(r, now)
  }

  private closeInbound(r: ConnRecord, now: number): void {
    this.unregister(r)
    this.serverCount--
    this.stats.connects.server.closed++
    this.maybeDeletePeer(r.peer)
    this.attemptDials(now)
    this.emitUpdate()
    this.afterClose(r, now)
  }

  /** The loser of a duplicate swap is gone: run the inbound procedure again for the held winner. */
  private afterClose(r: ConnRecord, now: number): void {
    const held = r.heldNext
    if (held === null) return
    r.heldNext = null
    this.conns.delete(held.id)
    if (held.destroying) return
    this.admitInbound(now, held.id, held.peer.publicKey, () => false, true)
  }

  // -------------------------------------------------------------------------
  // Inbound connections (§8, §10)
  // -------------------------------------------------------------------------

  /**
   * The server handed over an inbound stream from `remotePublicKey`.
   * `isStale(existing)` answers, when a connection to that key already
   * exists, whether it read and wrote at least one raw byte (§10 rule 1).
   * Returns the new connection's id; the outputs say whether it was
   * accepted (`Connection`), refused or lost a tie-break (`Destroy`), or
   * held until the existing one closes.
   */
  handleInbound(now: number, remotePublicKey: Uint8Array, isStale: (existing: ConnId) => boolean = () => false): ConnId {
    const id = this.nextConnId++
    this.admitInbound(now, id, remotePublicKey, isStale, false)
    return id
  }

  private admitInbound(now: number, id: ConnId, remotePublicKey: Uint8Array, isStale: (existing: ConnId) => boolean, swapped: boolean): void {
    if (this.isDestroyed || this.isSuspended) {
      this.emit(SwarmOutput.Destroy({ id, reason: "destroyed" }))
      return
    }
    const hex = toHex(remotePublicKey)
    if (hex === this.key) {
      this.emit(SwarmOutput.Destroy({ id, reason: "self" }))
      return
    }
    const existing = this.byKey.get(hex)
    if (existing !== undefined) {
      // Decision (issue 19): the tie-break winner's own outbound connection is not stale while it is younger than DIAL_RACE_WINDOW (a simultaneous dial, not a lost connection: the loser keeps it too).
      const racing = existing.direction === "outbound" &&
        isExpectedInitiator(this.publicKey, remotePublicKey) &&
        (existing.openedAt < 0 || now - existing.openedAt < DIAL_RACE_WINDOW)
      const keepNew = keepNewConnection({ localKey: this.publicKey, remoteKey: remotePublicKey, existingStale: !racing && isStale(existing.id) })
      if (!keepNew) {
        if (existing.phase !== "firewall") this.emit(SwarmOutput.KeepAlive({ id: existing.id }))
        this.emit(SwarmOutput.Destroy({ id, reason: "duplicate" }))
        return
      }
      // Decision: a third connection arriving while a swap is pending replaces the held one (the reference would re-run the tie-break once per held stream).
      const previous = existing.heldNext
      if (previous !== null) {
        this.conns.delete(previous.id)
        this.emit(SwarmOutput.Destroy({ id: previous.id, reason: "duplicate" }))
      }
      const held: ConnRecord = {
        id,
        peer: existing.peer,
        direction: "inbound",
        phase: "held",
        counted: false,
        openedAt: -1,
        destroying: false,
        heldNext: null,
        replaces: existing
      }
      this.conns.set(id, held)
      existing.heldNext = held
      if (!existing.destroying) this.destroyRecord(existing, "duplicate")
      return
    }
    // Decision: a swap winner is admitted even at maxServerConnections (the peer already held a connection); new peers are refused.
    if (!swapped && inboundVerdict(this.dialState(), this.limits, false) === "server-limit") {
      this.stats.connects.server.refused++
      this.emit(SwarmOutput.Destroy({ id, reason: "server-limit" }))
      return
    }
    this.stats.connects.server.opened++
    // Decision: an inbound connection keeps the peer's relay hints (the reference overwrites them with null).
    const peer = this.upsertPeer(remotePublicKey, null, false)!
    const r: ConnRecord = {
      id,
      peer,
      direction: "inbound",
      phase: "open",
      counted: false,
      openedAt: now,
      destroying: false,
      heldNext: null,
      replaces: null
    }
    this.conns.set(id, r)
    this.byKey.set(hex, r)
    this.openIds.add(id)
    this.serverCount++
    peer.client = false
    this.emit(SwarmOutput.Connection({ id, peer, direction: "inbound" }))
    this.emitUpdate()
  }

  // -------------------------------------------------------------------------
  // Network, suspend, destroy (§12, §5.9, §5.8)
  // -------------------------------------------------------------------------

  /** Local interfaces changed: keep-alive every connection, refresh every topic (nothing while suspended). */
  handleNetworkChange(now: number): void {
    if (this.isSuspended) return
    for (const r of this.byKey.values()) if (r.phase !== "firewall") this.emit(SwarmOutput.KeepAlive({ id: r.id }))
    this.emit(SwarmOutput.RefreshTopics())
  }

  /** The DHT's online flag: its rising edge is handled as a network change. */
  handleNetworkUpdate(now: number, online: boolean): void {
    const cameOnline = online && !this.online
    this.online = online
    if (cameOnline) this.handleNetworkChange(now)
  }

  /**
   * Suspend (§5.9): destroy every connection, forget queued and waiting
   * peers (PeerInfos that nothing else holds are collected), keep pinned
   * and known peers. No dials until `resume`.
   * Decision: pending flushes settle false (the reference leaves them waiting for peers it just dropped).
   */
  suspend(now: number): void {
    if (this.isSuspended || this.isDestroyed) return
    for (const r of this.conns.values()) this.destroyRecord(r, "suspended")
    this.isSuspended = true
    // Decision: forgotten retries clear `waiting` (the reference leaves it set on peers its replaced timer held, so they are never collected).
    const dropped = this.retry.clear().concat(this.queue.clear())
    for (const p of dropped) {
      p.waiting = false
      p.queued = false
    }
    for (const p of dropped) this.maybeDeletePeer(p)
    this.settleFlushes(false)
  }

  /** Resume: dial again (pinned peers first). Discoveries are resumed by their own actors. */
  resume(now: number): void {
    if (!this.isSuspended || this.isDestroyed) return
    this.isSuspended = false
    this.attemptDials(now)
  }

  /**
   * Destroy: no more dials or retries, pending flushes settle false, every
   * connection is destroyed.
   * Quirk §15.2 #7: the reference relies on destroying the DHT to close connections; a user-supplied DHT is not ours to destroy, so we close them.
   */
  destroy(now: number): void {
    if (this.isDestroyed) return
    this.isDestroyed = true
    this.retry.destroy()
    this.settleFlushes(false)
    for (const r of this.conns.values()) this.destroyRecord(r, "destroyed")
  }

  // -------------------------------------------------------------------------
  // Flush (§5.5)
  // -------------------------------------------------------------------------

  /**
   * Register a flush once every discovery's `flushed()` settled (§5.5 step
   * 1 is the owner's). Returns its id; a `Flushed` output settles it, maybe
   * at once: true when everything queued before it was processed or the
   * outbound limits are saturated, false on destroy, suspend or after
   * `flushTimeout` (issue 19: a flush always settles).
   */
  beginFlush(now: number): number {
    const id = this.nextFlushId++
    if (this.isDestroyed) {
      this.emit(SwarmOutput.Flushed({ flush: id, result: false }))
      return id
    }
    if (this.flushAllMaybe()) {
      this.emit(SwarmOutput.Flushed({ flush: id, result: true }))
      return id
    }
    // Decision: only dials from the queue count as pending; the reference also counts pinned dials, which never report, so its flush could hang.
    // a connection on hold counts as pending until it is surfaced or closed
    let pending = 0
    for (const r of this.byKey.values()) if (r.direction === "outbound" && r.phase !== "open" && r.counted) pending++
    if (this.queue.length === 0 && pending === 0) {
      this.emit(SwarmOutput.Flushed({ flush: id, result: true }))
      return id
    }
    this.flushes.push({ id, missing: this.queue.length + pending, tick: this.flushTick++, deadline: now + this.flushTimeout })
    return id
  }

  // -------------------------------------------------------------------------
  // Internals
  // -------------------------------------------------------------------------

  private makeRetryTimer(): RetryTimer<PeerInfo> {
    return new RetryTimer<PeerInfo>({ backoffs: this.backoffs, jitter: this.jitter, random: this.random })
  }

  private dialState(): DialState {
    return {
      destroyed: this.isDestroyed,
      suspended: this.isSuspended,
      connecting: this.connectingCount,
      clientConnections: this.clientCount,
      serverConnections: this.serverCount,
      allConnections: this.byKey.size,
      pinnedCount: this.pinned.size
    }
  }

  private emit(o: SwarmOutput): void {
    this.out.push(o)
  }

  private emitUpdate(): void {
    this.stats.updates++
    this.emit(SwarmOutput.Update())
  }

  private upsertPeer(publicKey: Uint8Array, relayAddresses: ReadonlyArray<RelayAddress> | null, replaceHints: boolean): PeerInfo | null {
    if (equalBytes(publicKey, this.publicKey)) return null
    const hex = toHex(publicKey)
    const known = this.peerMap.get(hex)
    if (known !== undefined) {
      if (replaceHints) known.relayAddresses = relayAddresses
      return known
    }
    const peer = new PeerInfo(publicKey, relayAddresses)
    peer.owner = this.peerOwner
    this.peerMap.set(hex, peer)
    return peer
  }

  /** §11: drop a PeerInfo nothing holds and no connection uses. */
  private maybeDeletePeer(peer: PeerInfo): void {
    if (!peer.shouldGC() || this.byKey.has(peer.key)) return
    if (this.peerMap.get(peer.key) === peer) this.peerMap.delete(peer.key)
  }

  /**
   * Remember a ban; past maxBannedPeers the oldest ban is forgotten: its
   * PeerInfo is dropped (the firewall will be asked again if it returns)
   * unless it is pinned or connected.
   * Quirk §15.2 #8: the reference keeps every banned PeerInfo forever; we bound them.
   */
  private rememberBan(peer: PeerInfo): void {
    this.banOrder.delete(peer.key)
    this.banOrder.set(peer.key, peer)
    while (this.banOrder.size > this.maxBannedPeers) {
      const [oldKey, old] = this.banOrder.entries().next().value as [string, PeerInfo]
      this.banOrder.delete(oldKey)
      if (old.explicit || this.byKey.has(oldKey)) continue
      if (old.queued) {
        this.queue.remove(old)
        old.queued = false
      }
      if (this.peerMap.get(oldKey) === old) this.peerMap.delete(oldKey)
    }
  }

  private enqueue(peer: PeerInfo, now: number): void {
    if (peer.queued) return
    peer.queued = true
    peer.enqueueTick = this.flushTick
    this.queue.add(peer, peer.priority)
    this.attemptDials(now)
  }

  /** A retry batch was released (§9.3). */
  private requeue(batch: ReadonlyArray<PeerInfo>, now: number): void {
    if (this.isSuspended) return
    for (const peer of batch) {
      peer.waiting = false
      // a PeerInfo forgotten meanwhile (ban eviction) is not brought back
      if (this.peerMap.get(peer.key) !== peer) continue
      if (!peer.updatePriority() || this.byKey.has(peer.key) || peer.queued) {
        this.maybeDeletePeer(peer)
        continue
      }
      peer.queued = true
      peer.enqueueTick = this.flushTick
      this.queue.add(peer, peer.priority)
    }
    this.attemptDials(now)
  }

  /** The hold of these connections is over: surface the ones still alive. */
  private releaseHolds(now: number): void {
    const due: Array<ConnRecord> = []
    for (const [r, at] of this.holds) if (at <= now) due.push(r)
    for (const r of due) {
      this.holds.delete(r)
      if (r.destroying || r.phase !== "on-hold" || this.conns.get(r.id) !== r) continue
      this.surface(r)
    }
  }

  /** The dial loop (§9.5). */
  private attemptDials(now: number): void {
    if (this.draining || this.isSuspended) return
    this.draining = true
    for (const peer of this.pinned) {
      if (!canDialPinned(this.dialState(), this.limits)) break
      if (!pinnedDialDue(peer, now)) continue
      this.dial(peer, false)
    }
    while (this.queue.length > 0 && canDialQueued(this.dialState(), this.limits)) {
      const peer = this.queue.shift()!
      peer.queued = false
      this.dial(peer, true)
    }
    this.draining = false
    if (this.connectingCount === 0) this.flushAllMaybe()
  }

  private dial(peer: PeerInfo, counted: boolean): void {
    if (peer.banned || this.byKey.has(peer.key)) {
      if (counted) this.flushMaybe(peer)
      return
    }
    const id = this.nextConnId++
    const r: ConnRecord = {
      id,
      peer,
      direction: "outbound",
      phase: "firewall",
      counted,
      openedAt: -1,
      destroying: false,
      heldNext: null,
      replaces: null
    }
    this.conns.set(id, r)
    this.byKey.set(peer.key, r)
    this.connectingCount++
    this.clientCount++
    this.emit(SwarmOutput.Dial({ id, peer, relayAddresses: peer.relayAddresses, forceRelay: peer.forceRelaying }))
  }

  /** A dial slot is free (opened, failed, refused or cancelled). */
  private connectDone(now: number): void {
    this.connectingCount--
    if (this.connectingCount < this.limits.maxParallel) this.attemptDials(now)
    if (this.connectingCount === 0) this.flushAllMaybe()
  }

  private unregister(r: ConnRecord): void {
    this.conns.delete(r.id)
    this.openIds.delete(r.id)
    if (this.byKey.get(r.peer.key) === r) this.byKey.delete(r.peer.key)
  }

  private destroyRecord(r: ConnRecord, reason: DestroyReason): void {
    if (r.destroying) return
    r.destroying = true
    // a held connection being destroyed is never surfaced
    this.holds.delete(r)
    this.emit(SwarmOutput.Destroy({ id: r.id, reason }))
  }

  /** A queued peer was processed (skipped, opened, or failed before opening). */
  private flushMaybe(peer: PeerInfo): void {
    if (this.flushes.length === 0) return
    const keep: Array<FlushWaiter> = []
    for (const f of this.flushes) {
      if (peer.enqueueTick > f.tick || --f.missing > 0) keep.push(f)
      else this.emit(SwarmOutput.Flushed({ flush: f.id, result: true }))
    }
    this.flushes = keep
  }

  /** No dial in progress and the outbound limits saturated: every flush settles true (§5.5 step 5). */
  private flushAllMaybe(): boolean {
    if (this.connectingCount > 0 || !outboundSaturated(this.dialState(), this.limits)) return false
    this.settleFlushes(true)
    return true
  }

  private settleFlushes(result: boolean): void {
    const all = this.flushes
    this.flushes = []
    for (const f of all) this.emit(SwarmOutput.Flushed({ flush: f.id, result }))
  }
}

const view = (r: ConnRecord): ConnectionInfo => ({ id: r.id, peer: r.peer, direction: r.direction, phase: r.phase, openedAt: r.openedAt })
