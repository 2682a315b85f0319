/**
 * The retry timer (spec: flock.md §9.3): four bulk timers S / M / L / X that
 * release peers in batches, as deterministic cores. No timers, no
 * Math.random: time comes in as `now`, randomness through an injected
 * `random()` (uniform in [0, 1)), and the owner sleeps until
 * `nextDeadline()` and then calls `handleTimeout(now)`, which returns what
 * is released.
 *
 * Bulk timer: a tick every floor(0.66 × period) ms. An item added between
 * ticks is promoted to "next" on the following tick and released on the
 * tick after that, with everything promoted at the same time; so an item
 * waits (0.66P, 1.32P] and items added close together come out together.
 *
 * Timer selection by the peer's attempts after the disconnect:
 *
 * | attempts | proven | never proven |
 * | 0        | S      | S            |
 * | 1        | S      | M            |
 * | 2        | M      | L            |
 * | 3        | L      | L            |
 * | > 3      | X if pinned, else none  |
 *
 * and none at all when the peer is banned or not reconnecting.
 */
import {
  BACKOFF_JITTER,
  BACKOFF_L_BASE,
  BACKOFF_L_SPREAD,
  BACKOFF_M_BASE,
  BACKOFF_M_SPREAD,
  BACKOFF_S_BASE,
  BACKOFF_S_SPREAD,
  BACKOFF_X_BASE,
  BACKOFF_X_SPREAD,
  BULK_TICK_FACTOR,
  MAX_ATTEMPTS
} from "./constants.js"

// ---------------------------------------------------------------------------
// Bulk timer
// ---------------------------------------------------------------------------

export class BulkTimer<T> {
  /** The period P the timer was made for. */
  readonly period: number
  /** Tick interval floor(0.66 × P), at least 1 ms (a zero period would spin; Node's setInterval also clamps to 1). */
  readonly tick: number
  private next: Array<T> = []
  private pending: Array<T> = []
  private deadline = Number.POSITIVE_INFINITY
  private isDestroyed = false

  constructor(period: number) {
    this.period = period
    this.tick = Math.max(1, Math.floor(period * BULK_TICK_FACTOR))
  }

  /** Items held (pending + next). */
  get size(): number {
    return this.next.length + this.pending.length
  }

  get destroyed(): boolean {
    return this.isDestroyed
  }

  /**
   * Hold `item` until the tick after next. The first item of an idle timer
   * starts the ticks at `now`.
   * Decision: the timer stops ticking when idle and restarts its phase on the next add (as the reference's current HEAD does; 4.17.2 ticks forever), so an idle swarm has no deadline.
   */
  add(item: T, now: number): void {
    if (this.isDestroyed) return
    if (this.deadline === Number.POSITIVE_INFINITY) this.deadline = now + this.tick
    this.pending.push(item)
  }

  /** The next tick, +Infinity when idle or destroyed. */
  nextDeadline(): number {
    return this.deadline
  }

  /**
   * Run the tick if it is due: release "next", promote "pending". Returns
   * the released batch (empty if not due or nothing was promoted). A late
   * call runs one tick and schedules the next from `now` (no catch-up).
   */
  handleTimeout(now: number): Array<T> {
    if (this.isDestroyed || now < this.deadline) return []
    const batch = this.next
    this.next = this.pending
    this.pending = []
    this.deadline = this.next.length === 0 ? Number.POSITIVE_INFINITY : now + this.tick
    return batch
  }

  /** Forget every held item (returned) and go idle. */
  clear(): Array<T> {
    const all = this.next.concat(this.pending)
    this.next = []
    this.pending = []
    this.deadline = Number.POSITIVE_INFINITY
    return all
  }

  /** Stop for good; later adds are ignored. */
  destroy(): void {
    this.clear()
    this.isDestroyed = true
  }
}

// ---------------------------------------------------------------------------
// Retry timer
// ---------------------------------------------------------------------------

export type Backoff = "S" | "M" | "L" | "X"

/** What the retry timer reads from a peer (PeerInfo has all of it). */
export interface RetryCandidate {
  readonly banned: boolean
  readonly reconnecting: boolean
  readonly attempts: number
  readonly proven: boolean
  readonly explicit: boolean
}

/** The timer for a peer after a disconnect (table above), null for no retry. */
export const selectBackoff = (peer: RetryCandidate): Backoff | null => {
  if (peer.banned || !peer.reconnecting) return null
  const a = peer.attempts
  if (a > MAX_ATTEMPTS) return peer.explicit ? "X" : null
  if (a === 0) return "S"
  if (peer.proven) return a === 1 ? "S" : a === 2 ? "M" : "L"
  return a === 1 ? "M" : "L"
}

export type Backoffs = readonly [number, number, number, number]

/**
 * The default S / M / L / X backoffs: base + rounded random spread.
 * Decision: drawn per timer from the injected random source, not once per process at module load as the reference does (deterministic, same distribution).
 */
export const defaultBackoffs = (random: () => number): Backoffs => [
  BACKOFF_S_BASE + Math.round(BACKOFF_S_SPREAD * random()),
  BACKOFF_M_BASE + Math.round(BACKOFF_M_SPREAD * random()),
  BACKOFF_L_BASE + Math.round(BACKOFF_L_SPREAD * random()),
  BACKOFF_X_BASE + Math.round(BACKOFF_X_SPREAD * random())
]

export interface RetryTimerOptions {
  /** S, M, L, X backoffs; default `defaultBackoffs(random)`. */
  readonly backoffs?: Backoffs | undefined
  /** Per-timer extra spread 0..jitter (rounded); default 500. */
  readonly jitter?: number | undefined
  /** Uniform in [0, 1). */
  readonly random: () => number
}

const BACKOFF_INDEX: Record<Backoff, 0 | 1 | 2 | 3> = { S: 0, M: 1, L: 2, X: 3 }

export class RetryTimer<T extends RetryCandidate> {
  readonly backoffs: Backoffs
  readonly jitter: number
  /** The actual period of each timer: backoff + rounded random jitter. */
  readonly periods: Backoffs
  private readonly timers: readonly [BulkTimer<T>, BulkTimer<T>, BulkTimer<T>, BulkTimer<T>]

  constructor(options: RetryTimerOptions) {
    const random = options.random
    this.backoffs = options.backoffs ?? defaultBackoffs(random)
    this.jitter = options.jitter ?? BACKOFF_JITTER
    const p = (i: 0 | 1 | 2 | 3) => this.backoffs[i] + Math.round(this.jitter * random())
    this.periods = [p(0), p(1), p(2), p(3)]
    this.timers = [
      new BulkTimer(this.periods[0]),
      new BulkTimer(this.periods[1]),
      new BulkTimer(this.periods[2]),
      new BulkTimer(this.periods[3])
    ]
  }

  /** The bulk timer behind S / M / L / X (inspection in tests). */
  timer(backoff: Backoff): BulkTimer<T> {
    return this.timers[BACKOFF_INDEX[backoff]]
  }

  /** Peers held by any timer. */
  get size(): number {
    return this.timers[0].size + this.timers[1].size + this.timers[2].size + this.timers[3].size
  }

  /**
   * Hand a peer over after a disconnect: true if a timer took it (the
   * caller sets `waiting`), false when no retry applies.
   */
  add(peer: T, now: number): boolean {
    const backoff = selectBackoff(peer)
    if (backoff === null) return false
    this.timers[BACKOFF_INDEX[backoff]].add(peer, now)
    return true
  }

  /** The earliest tick of the four timers, +Infinity when all are idle. */
  nextDeadline(): number {
    return Math.min(
      this.timers[0].nextDeadline(),
      this.timers[1].nextDeadline(),
      this.timers[2].nextDeadline(),
      this.timers[3].nextDeadline()
    )
  }

  /** Run every due tick; the released peers in S, M, L, X order. */
  handleTimeout(now: number): Array<T> {
    const out: Array<T> = []
    for (const t of this.timers) {
      const batch = t.handleTimeout(now)
      for (const peer of batch) out.push(peer)
    }
    return out
  }

  /** Forget every held peer (returned, so the owner can clear `waiting`). */
  clear(): Array<T> {
    const out: Array<T> = []
    for (const t of this.timers) for (const peer of t.clear()) out.push(peer)
    return out
  }

  destroy(): void {
    for (const t of this.timers) t.destroy()
  }
}
