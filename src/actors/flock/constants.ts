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
 * Flock only: the tie-break loser's hold. When both ends of a pair may be
 * dialling each other (the peer was found through a topic we announce), the
 * side whose dial loses the §10 tie-break (the smaller key) still dials at
 * once, but keeps its outbound connection from the application after it
 * opens: for this long when the winner is known to be dialling (a handshake
 * from its key reached our server), else for LOSER_HOLD_FLOOR. The winner's
 * own connection arriving meanwhile replaces it silently (§10 keeps the
 * winner's anyway), and so does the winner closing it (its own dial was
 * already under way); otherwise it is handed over when the hold ends.
 * Bound: a winner whose handshake reached us is past its FIND_PEER and its
 * message 1, so its connection (or its close of ours, LOSER_HOLD_FLOOR) is
 * a few round trips away; 150 ms covers that on ordinary paths, and is paid
 * only by the loser of a pair, in parallel over its dials (a dial slot is
 * freed when the connection opens, not when the hold ends), and only while
 * neither arrives.
 */
export const LOSER_HOLD = 150
/**
 * Flock only: the loser's hold when nothing says the winner is dialling.
 * The winner can only be dialling us if its dial was registered before our
 * connection reached its swarm, and then its swarm destroys our connection
 * at once (§10: its own dial is the keeper). That DESTROY follows the stream
 * header that opened our side, on the same path, so it reaches us after our
 * open by the winner's processing time (server to swarm), not by a round
 * trip nor by the time the winner's own handshake needs to reach us (a
 * FIND_PEER query first when it has no route cached). A winner that took
 * our connection does not dial us any more (it is connected). So the hold
 * is the full LOSER_HOLD once a handshake from the winner's key has reached
 * our server (at the open, or during the hold), and otherwise this floor:
 * the processing of both ends, a few ms idle and tens of ms on a loaded
 * event loop (10 swarms in one process, bench/flock.mjs: 0 duplicates
 * surfaced). A newcomer whose peers are not dialling it (they looked up
 * before it announced) is not kept waiting longer.
 */
export const LOSER_HOLD_FLOOR = 30
/**
 * Flock only: the dial race window of the §10 staleness rule. The winner of
 * the tie-break (the larger key) does not take its own outbound connection
 * for stale (rule 1) while it is younger than this (or not open yet),
 * whatever its byte counters say. When both ends dial at once and the
 * winner's swarm sees the loser's connection only after its own dial opened
 * (a few ms of processing on either side suffice), the bytes rule would
 * make the winner drop the connection the loser keeps, and both would die
 * after the application saw them. A remote that really lost our connection
 * redials after noticing the loss and a retry backoff (at least about
 * 0.7 s), and its connection is still taken if it redials again later.
 */
export const DIAL_RACE_WINDOW = 1000
