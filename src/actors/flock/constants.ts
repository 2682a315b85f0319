/**
 * Every constant of the Flock cores in one place (spec: flock.md §14, with
 * §7.1 and §9.3 for the derived values). Durations are milliseconds.
 *
 * Constants the reference does not have (our decisions on §15.2 and issue 19)
 * are grouped at the end and say so.
 */

// ---------------------------------------------------------------------------
// Swarm limits (§3, §9.5)
// ---------------------------------------------------------------------------

/** Soft cap on connections for topic-driven (queued) dials. */
export const DEFAULT_MAX_PEERS = 64
/** Outbound dials in progress at once (pinned dials included). */
export const DEFAULT_MAX_PARALLEL = 3
/** Cap on pending + open outbound connections for queued dials. */
export const DEFAULT_MAX_CLIENT_CONNECTIONS = Number.POSITIVE_INFINITY
/** Cap on open inbound connections (enforced by Flock, ignored by the reference: §15.2 #2). */
export const DEFAULT_MAX_SERVER_CONNECTIONS = Number.POSITIVE_INFINITY

/** Pinned-peer capacity factor for 0 / 1 / 2–3 / ≥4 pinned peers (§9.5). */
export const PINNED_CAPACITY_FACTORS: readonly [number, number, number, number] = [1, 2, 3, 4]
/** The pinned loop skips a peer with this many attempts or more (§9.5). */
export const PINNED_MAX_ATTEMPTS = 5
/** The pinned loop waits attempts × this since the last disconnect (§9.5). */
export const PINNED_BACKOFF_PER_ATTEMPT = 1000

// ---------------------------------------------------------------------------
// Retry timer (§9.3)
// ---------------------------------------------------------------------------

/** Per-timer random spread added to each backoff (0..jitter, rounded). */
export const BACKOFF_JITTER = 500
/** S / M / L / X: base and random spread of the default backoffs. */
export const BACKOFF_S_BASE = 1000
export const BACKOFF_S_SPREAD = BACKOFF_JITTER
export const BACKOFF_M_BASE = 5000
export const BACKOFF_M_SPREAD = 2 * BACKOFF_JITTER
export const BACKOFF_L_BASE = 15_000
export const BACKOFF_L_SPREAD = 4 * BACKOFF_JITTER
export const BACKOFF_X_BASE = 600_000
export const BACKOFF_X_SPREAD = 240 * BACKOFF_JITTER
/** A bulk timer ticks every floor(this × period). */
export const BULK_TICK_FACTOR = 0.66

// ---------------------------------------------------------------------------
// PeerInfo (§9.2)
// ---------------------------------------------------------------------------

/** A connection open this long counts as healthy: its close resets attempts (fast retry). */
export const MIN_CONNECTION_TIME = 15_000

export const PRIORITY_VERY_LOW = 0
export const PRIORITY_LOW = 1
export const PRIORITY_NORMAL = 2
export const PRIORITY_HIGH = 3
export const PRIORITY_VERY_HIGH = 4
export type Priority = 0 | 1 | 2 | 3 | 4

/** A non-pinned peer with more attempts than this is given up (priority refused, no retry timer). */
export const MAX_ATTEMPTS = 3

// ---------------------------------------------------------------------------
// Topic discovery (§7.1)
// ---------------------------------------------------------------------------

/** Normal delay between two refreshes of a topic (plus jitter). */
export const REFRESH_INTERVAL = 600_000
/** Refresh jitter: uniform 0..this, rounded. The eager delay is the jitter alone. */
export const REFRESH_JITTER = 120_000
/** A refresh timer firing later than delay + this means the machine slept. */
export const DELAY_GRACE_PERIOD = 30_000
/** Discovered keys remembered per refresh for the `limit` budget. */
export const MAX_DISCOVERY_CACHE = 64

// ---------------------------------------------------------------------------
// DHT (§2), for reference by the actors
// ---------------------------------------------------------------------------

/** How long the DHT server caches a handled handshake (`handshakeClearWait`). */
export const HANDSHAKE_CLEAR_WAIT = 10_000
/** DHT announcement record lifetime. */
export const DHT_RECORD_LIFETIME = 20 * 60_000
/** Keep-alive on DHT connections. */
export const CONNECTION_KEEP_ALIVE = 5000

// ---------------------------------------------------------------------------
// Error texts the reference's users see (§4, §8, §10)
// ---------------------------------------------------------------------------

export const ERR_FIREWALLED = "Peer is firewalled"
export const ERR_DUPLICATE = "Duplicate connection"
export const ERR_DESTROYED = "Swarm has been destroyed"
export const ERR_MISSING_TOPIC = "Topic is required and must be a 32-byte buffer"

/** Hole-punch failures after which a dial switches to relaying (§9.8, 4.17.2 list). */
export const FORCE_RELAY_CODES: ReadonlySet<string> = new Set([
  "HOLEPUNCH_ABORTED",
  "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS",
  "CANNOT_HOLEPUNCH",
  "REMOTE_NOT_HOLEPUNCHABLE"
])

// ---------------------------------------------------------------------------
// Flock-only (not in the reference)
// ---------------------------------------------------------------------------

/** Topics are 32-byte keys (validated: §15.2 #4). */
export const TOPIC_LENGTH = 32
/** Banned PeerInfos kept at most (oldest ban forgotten first: §15.2 #8). */
export const DEFAULT_MAX_BANNED_PEERS = 1024
/** A `flush()` settles (false) at the latest this long after it was registered (issue 19). */
export const DEFAULT_FLUSH_TIMEOUT = 60_000
/**
 * Flock only: the early follow-up lookup. Peers that join a topic in the
 * same instant all look up before any of their announcements is stored, so
 * nobody finds anybody until the next refresh (10–12 min). Once the first
 * client-mode cycle of a discovery (or of a resume) completes, one lookup
 * (not a second announce) runs after FOLLOW_UP_DELAY + 0..FOLLOW_UP_JITTER.
 * Bound: an announce is stored one round trip after its query's last hop,
 * so peers that started with us have their records in place within a few
 * hundred ms of our own query ending on typical paths (well under 1 s of
 * spread between simultaneous starters); the jitter spreads N such
 * follow-ups over the closest nodes. Peers it still misses find us in
 * their own follow-up, or at the next refresh as in the reference.
 */
export const FOLLOW_UP_DELAY = 100
export const FOLLOW_UP_JITTER = 150
/**
 * Flock only: the dial grace of the tie-break loser. A peer found during
 * the join phase (first cycle or follow-up) of a topic we announce may be
 * dialling us at the same time; if our key is the smaller (its dial wins
 * the §10 tie-break anyway) we wait this long before dialling it, and do
 * not dial if its connection arrived meanwhile. Bound: the remote's own
 * follow-up runs at most FOLLOW_UP_DELAY + FOLLOW_UP_JITTER after its first
 * cycle, plus one query and one connect; the grace covers that, and always
 * ends in a dial when nothing arrived (no pair is left unconnected).
 */
export const LOSER_DIAL_GRACE = 500
