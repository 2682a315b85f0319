/**
 * Dial policy: the pure should-we-dial / should-we-retry / should-we-accept
 * rules of a Flock (spec: flock.md §9.1, §9.4, §9.5, §9.7, §9.8, §15.2).
 * No state, no clock: everything is an argument. The swarm core
 * (`swarm.ts`) calls these; they are exported so the rules can be tested
 * and reused one by one.
 *
 * Limits (§9.5, with Flock's inbound cap):
 *
 * | Limit                       | enforced on                      | not on          |
 * | maxParallel (3)             | every outbound dial              | inbound         |
 * | maxPeers (64, × factor)     | queued (topic) dials             | pinned, inbound |
 * | maxClientConnections (∞)    | queued dials                     | pinned          |
 * | maxServerConnections (∞)    | new inbound connections (Flock)  | outbound        |
 */
import {
  DEFAULT_MAX_CLIENT_CONNECTIONS,
  DEFAULT_MAX_PARALLEL,
  DEFAULT_MAX_PEERS,
  DEFAULT_MAX_SERVER_CONNECTIONS,
  FORCE_RELAY_CODES,
  PINNED_BACKOFF_PER_ATTEMPT,
  PINNED_CAPACITY_FACTORS,
  PINNED_MAX_ATTEMPTS
} from "./constants.js"

export interface Limits {
  readonly maxPeers: number
  readonly maxParallel: number
  readonly maxClientConnections: number
  readonly maxServerConnections: number
}

export const DEFAULT_LIMITS: Limits = {
  maxPeers: DEFAULT_MAX_PEERS,
  maxParallel: DEFAULT_MAX_PARALLEL,
  maxClientConnections: DEFAULT_MAX_CLIENT_CONNECTIONS,
  maxServerConnections: DEFAULT_MAX_SERVER_CONNECTIONS
}

/** The swarm counters the dial rules read. */
export interface DialState {
  readonly destroyed: boolean
  readonly suspended: boolean
  /** Outbound dials in progress (not yet open). */
  readonly connecting: number
  /** Pending + open outbound connections. */
  readonly clientConnections: number
  /** Open inbound connections. */
  readonly serverConnections: number
  /** Pending outbound + open connections, both directions (one per key). */
  readonly allConnections: number
  /** Pinned (`joinPeer`) peers. */
  readonly pinnedCount: number
}

/** Pinned peers reserve capacity: factor 1 / 2 / 3 / 4 for 0 / 1 / 2–3 / ≥4 pinned. */
export const pinnedCapacityFactor = (pinnedCount: number): number =>
  PINNED_CAPACITY_FACTORS[pinnedCount === 0 ? 0 : pinnedCount < 2 ? 1 : pinnedCount < 4 ? 2 : 3]

/** factor × allConnections < maxPeers. */
export const withinMaxPeers = (state: DialState, limits: Limits): boolean =>
  pinnedCapacityFactor(state.pinnedCount) * state.allConnections < limits.maxPeers

/** The pinned loop may dial (step 1 of §9.5): alive and a dial slot free. */
export const canDialPinned = (state: DialState, limits: Limits): boolean =>
  !state.destroyed && !state.suspended && state.connecting < limits.maxParallel

/** The queue may be popped (step 2 of §9.5): a dial slot free, within maxPeers and maxClientConnections. */
export const canDialQueued = (state: DialState, limits: Limits): boolean =>
  canDialPinned(state, limits) && withinMaxPeers(state, limits) && state.clientConnections < limits.maxClientConnections

/** The outbound limits leave no room for a queued dial (the saturated-flush rule, §5.5 steps 2 and 5). */
export const outboundSaturated = (state: DialState, limits: Limits): boolean =>
  !(withinMaxPeers(state, limits) && state.clientConnections < limits.maxClientConnections)

/** What the pinned loop reads from a peer. */
export interface PinnedCandidate {
  readonly attempts: number
  readonly disconnectedTime: number
  readonly reconnecting: boolean
}

/**
 * A pinned peer is due for a dial from the pinned loop: fewer than 5
 * attempts and at least attempts × 1 s since it last disconnected.
 * Quirk §15.2 #10: the reference's pinned loop ignores `reconnect(false)`; we respect it (no automatic redial).
 */
export const pinnedDialDue = (peer: PinnedCandidate, now: number): boolean =>
  peer.reconnecting &&
  peer.attempts < PINNED_MAX_ATTEMPTS &&
  now - peer.disconnectedTime >= peer.attempts * PINNED_BACKOFF_PER_ATTEMPT

/** What the retry rule reads from a peer. */
export interface RetryPeer {
  readonly explicit: boolean
  topicKeys(): Iterable<string>
}

/**
 * Should a peer whose outbound connection closed be handed to the retry
 * timer (§9.4)? Never while suspended or destroyed; always when pinned;
 * otherwise iff one of its topics is still joined. (Inbound connections
 * are never retried by the accepting side: the caller does not ask.)
 */
export const shouldRetry = (
  state: { readonly destroyed: boolean; readonly suspended: boolean },
  peer: RetryPeer,
  isJoined: (topicHex: string) => boolean
): boolean => {
  if (state.suspended || state.destroyed) return false
  if (peer.explicit) return true
  for (const t of peer.topicKeys()) if (isJoined(t)) return true
  return false
}

/**
 * May a new inbound connection be kept (§8 step 1, §15.2 #2)? Not when
 * destroyed or suspended; not when the open inbound connections reached
 * maxServerConnections, unless it replaces an inbound connection of the
 * same key (a duplicate swap does not add a connection).
 * Quirk §15.2 #2: the reference never enforces maxServerConnections; we do (default ∞ keeps its behaviour).
 */
export type InboundVerdict = "accept" | "destroyed" | "server-limit"

export const inboundVerdict = (state: DialState, limits: Limits, replacesInbound: boolean): InboundVerdict => {
  if (state.destroyed || state.suspended) return "destroyed"
  if (!replacesInbound && state.serverConnections >= limits.maxServerConnections) return "server-limit"
  return "accept"
}

/**
 * The part of the firewall (§9.7) that needs no user code: our own key and
 * a known banned peer are rejected without asking the user firewall again;
 * anything else must be asked ("ask").
 */
export type FirewallScreen = "self" | "banned" | "ask"

export const screenKey = (ownKeyHex: string, remoteKeyHex: string, known: { readonly banned: boolean } | undefined): FirewallScreen => {
  if (remoteKeyHex === ownKeyHex) return "self"
  if (known !== undefined && known.banned) return "banned"
  return "ask"
}

/** A dial that failed before opening with one of the hole-punch codes switches the peer to relaying, if a relay is configured (§9.8). */
export const shouldForceRelay = (code: string | null | undefined, relayConfigured: boolean): boolean =>
  relayConfigured && code !== null && code !== undefined && FORCE_RELAY_CODES.has(code)

/** The `relayThrough` option: a function of `force`, or static relay key(s). */
export type RelayThrough<K> = K | ReadonlyArray<K> | ((force: boolean) => K | ReadonlyArray<K> | null) | null

/**
 * The relay(s) to use for one connection (§9.8): a function is called with
 * `force` as-is; static keys are used only when `force` is set or our NAT
 * is randomized. Outbound: force = peer.forceRelaying; inbound: force = false.
 */
export const relayThroughFor = <K>(option: RelayThrough<K> | undefined, force: boolean, randomized: boolean): K | ReadonlyArray<K> | null => {
  if (option === null || option === undefined) return null
  if (typeof option === "function") return (option as (force: boolean) => K | ReadonlyArray<K> | null)(force)
  return force || randomized ? option : null
}

/**
 * The one relay key a connection goes through (§9.8), or null: the
 * `relayThrough` option as `relayThroughFor` reads it (a function gets
 * `(force, flock)`, as hyperswarm calls it), then a uniform pick with
 * `random` when it gave several keys. Outbound: force = peer.forceRelaying;
 * inbound: force = false.
 */
export const chooseRelay = (option: unknown, force: boolean, randomized: boolean, random: () => number, self?: unknown): Uint8Array | null => {
  const v = typeof option === "function"
    ? (option as (force: boolean, self: unknown) => unknown)(force, self)
    : relayThroughFor(option as RelayThrough<Uint8Array> | undefined, force, randomized)
  if (v instanceof Uint8Array) return v
  if (Array.isArray(v) && v.length > 0) {
    const k: unknown = v[Math.floor(random() * v.length)]
    return k instanceof Uint8Array ? k : null
  }
  return null
}

