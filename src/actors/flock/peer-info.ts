/**
 * PeerInfo: the per-remote-key bookkeeping of a Flock (spec: flock.md §9.2,
 * §11, §13). Plain mutable state, no I/O, no clock: every time-dependent
 * method takes `now` (milliseconds).
 *
 * The swarm core (`swarm.ts`) owns the PeerInfos and is the only writer of
 * the scheduling fields (`queued`, `waiting`, `client`, `attempts`,
 * `priority`, `enqueueTick`); the facade may expose a PeerInfo read-only and
 * route `ban(...)` / `reconnect(...)` through the swarm actor so the core
 * can emit the matching outputs.
 *
 * Priority (§9.2): attempts 0 → NORMAL, 1 → VERY_HIGH, 2 → HIGH, 3 → LOW,
 * more → VERY_LOW (and refused by `updatePriority`, so never queued unless
 * pinned, which clamps attempts to 3).
 */
import { copyBytes, toHex } from "../../protocol/encoding.js"
import {
  MAX_ATTEMPTS,
  MIN_CONNECTION_TIME,
  type Priority,
  PRIORITY_HIGH,
  PRIORITY_LOW,
  PRIORITY_NORMAL,
  PRIORITY_VERY_HIGH,
  PRIORITY_VERY_LOW
} from "./constants.js"

/** A DHT node that holds the peer's announcement (a hint for the dial). */
export interface RelayAddress {
  readonly host: string
  readonly port: number
}

/** Why the last outbound dial (or connection) to a peer ended (issue 19: PeerInfo says why a dial failed). */
export interface DialFailure {
  /** The error code (e.g. `HOLEPUNCH_ABORTED`, `PEER_NOT_FOUND`), null when the error had none. */
  readonly code: string | null
  readonly message: string
}

/**
 * The priority for an attempt count (§9.2).
 * Quirk §15.2 #3: the reference's "tried but never proven → VERY_LOW" branch is dead (`tried` is never set); we drop it and the field.
 */
export const priorityFor = (attempts: number): Priority => {
  if (attempts > MAX_ATTEMPTS) return PRIORITY_VERY_LOW
  if (attempts === 3) return PRIORITY_LOW
  if (attempts === 2) return PRIORITY_HIGH
  if (attempts === 1) return PRIORITY_VERY_HIGH
  return PRIORITY_NORMAL
}

/** Who applies the application's `ban` / `reconnect` calls (the dial-queue actor). */
export interface PeerInfoOwner {
  ban(peer: PeerInfo, value: boolean): void
  reconnect(peer: PeerInfo, value: boolean): void
}

export class PeerInfo {
  /** The remote's public key, a standalone copy (never a view into a larger buffer). */
  readonly publicKey: Uint8Array
  /** `publicKey` in hex: the key of every per-peer map. */
  readonly key: string
  /** Latest relay hints from discovery; null for inbound-only or pinned peers. */
  relayAddresses: ReadonlyArray<RelayAddress> | null

  /** False disables automatic redials (retry timer and, unlike the reference, the pinned loop). */
  reconnecting = true
  /** An outbound connection to it opened since the last reset. */
  proven = false
  /** When the current outbound connection opened; -1 when none. */
  connectedTime = -1
  /** When the last connection closed or dial failed. */
  disconnectedTime = 0
  banned = false
  /** Pinned with `joinPeer`. */
  explicit = false
  /** A retry timer holds it. */
  waiting = false
  /** Dial through a relay (§9.8); never cleared automatically. */
  forceRelaying = false
  /** In the dial queue. */
  queued = false
  /**
   * Flock only: found through a topic we announce (or announced), so it may
   * be dialling us too; if our key loses the §10 tie-break, our outbound
   * connection to it is held (`LOSER_HOLD`, shorter while nothing says the
   * peer is dialling us) before the application sees it.
   */
  mutual = false
  /** The last connection was outbound (`server` is the negation). */
  client = false
  /** Topics under which it was found (or, inbound, which it shares with us); copies; never removed. */
  readonly topics: Array<Uint8Array> = []
  attempts = 0
  priority: Priority = PRIORITY_NORMAL
  /** Why the last outbound dial or connection ended, null if none failed yet. */
  lastError: DialFailure | null = null
  /** The swarm's flush tick when it was last queued (flush accounting, §5.5). */
  enqueueTick = 0

  private readonly seenTopics = new Set<string>()

  constructor(publicKey: Uint8Array, relayAddresses: ReadonlyArray<RelayAddress> | null = null) {
    this.publicKey = copyBytes(publicKey)
    this.key = toHex(this.publicKey)
    this.relayAddresses = relayAddresses
  }

  get server(): boolean {
    return !this.client
  }

  /** Priority at least NORMAL. */
  get prioritized(): boolean {
    return this.priority >= PRIORITY_NORMAL
  }

  /** Pinned (alias of `explicit`, the Flock vocabulary). */
  get pinned(): boolean {
    return this.explicit
  }

  /** An outbound connection opened. */
  connected(now: number): void {
    this.proven = true
    this.connectedTime = now
  }

  /**
   * A connection closed or a dial failed: attempts + 1, or back to 1 when
   * the connection had been open for MIN_CONNECTION_TIME ("healthy, retry fast").
   */
  disconnected(now: number): void {
    this.disconnectedTime = now
    if (this.connectedTime > -1) {
      if (now - this.connectedTime >= MIN_CONNECTION_TIME) this.attempts = 0
      this.connectedTime = -1
    }
    this.attempts++
  }

  /** Rediscovery's clean slate (§9.1 step 5). */
  reset(): void {
    this.client = false
    this.proven = false
    this.attempts = 0
  }

  /**
   * Recompute the priority before queueing (§9.2). A pinned peer past the
   * attempt limit is clamped to MAX_ATTEMPTS. Refuses (false, priority
   * unchanged) when banned, already queued or given up.
   */
  updatePriority(): boolean {
    if (this.explicit && this.attempts > MAX_ATTEMPTS) this.attempts = MAX_ATTEMPTS
    if (this.banned || this.queued || this.attempts > MAX_ATTEMPTS) return false
    this.priority = priorityFor(this.attempts)
    return true
  }

  /** Associate a topic; true the first time (the `topic` event), false if already known. */
  addTopic(topic: Uint8Array): boolean {
    const hex = toHex(topic)
    if (this.seenTopics.has(hex)) return false
    this.seenTopics.add(hex)
    this.topics.push(copyBytes(topic))
    return true
  }

  hasTopic(topicHex: string): boolean {
    return this.seenTopics.has(topicHex)
  }

  /** Topic keys in hex, in association order. */
  topicKeys(): IterableIterator<string> {
    return this.seenTopics.values()
  }

  /**
   * Set by the actor that owns this PeerInfo: the application's `ban` /
   * `reconnect` calls then go to that actor (as messages) instead of
   * changing the state under it.
   */
  owner: PeerInfoOwner | null = null

  /** `peerInfo.reconnect(value)`: through the owner when there is one. */
  reconnect(value: boolean): void {
    if (this.owner !== null) this.owner.reconnect(this, value)
    else this.setReconnecting(value)
  }

  setReconnecting(value: boolean): void {
    this.reconnecting = value
  }

  /** `peerInfo.ban(value)`: through the owner when there is one; true when the flag changed (or the request was sent). */
  ban(value: boolean): boolean {
    if (this.owner !== null) {
      this.owner.ban(this, value)
      return this.banned !== value
    }
    return this.setBanned(value)
  }

  /** Set the ban flag; true when it changed. Bookkeeping (event, stats) is the swarm core's. */
  setBanned(value: boolean): boolean {
    if (this.banned === value) return false
    this.banned = value
    return true
  }

  /** Nothing holds it (§11): not banned, queued, pinned or waiting for a retry. */
  shouldGC(): boolean {
    return !(this.banned || this.queued || this.explicit || this.waiting)
  }
}
