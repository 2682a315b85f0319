/**
 * Resource bounds of a DHT node against input from the network: request
 * rate limits (per source address and for the whole node) and per-source
 * quotas on what the node stores on others' behalf. Deterministic: time
 * comes in as `now` (ms), nothing here reads a clock or a socket.
 *
 * Local sources are exempt from every limit here (`isLocalSource`):
 * loopback, RFC 1918, CGNAT (100.64/10) and link-local addresses. A
 * datagram from such an address comes from this machine or its own network,
 * never from the Internet at large, and local testnets run hundreds of nodes
 * on one such address.
 */

/** Loopback, private (10/8, 172.16/12, 192.168/16), CGNAT (100.64/10) or link-local (169.254/16): exempt from the per-source limits. */
export const isLocalSource = (host: string): boolean => {
  // the first two octets, read without splitting the string (this runs per datagram)
  let a = 0
  let i = 0
  let c = 0
  for (; i < host.length && (c = host.charCodeAt(i)) !== 46; i++) a = a * 10 + c - 48
  let b = 0
  for (i++; i < host.length && (c = host.charCodeAt(i)) !== 46; i++) b = b * 10 + c - 48
  return (
    a === 127 ||
    a === 10 ||
    (a === 192 && b === 168) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 100 && b >= 64 && b <= 127) ||
    (a === 169 && b === 254)
  )
}

/** A token bucket: `burst` tokens, refilled at `perSecond`. */
export interface Rate {
  readonly burst: number
  readonly perSecond: number
}

/**
 * Per-source and whole-node limits on incoming requests (`RequestLimiter`).
 * The default per source: a steady 200 requests/s with bursts of 1,000. A
 * busy honest peer (a client running many lookups and announces at once,
 * each query touching a given node a few times) stays far below it; the
 * reference's congestion window lets one node have at most 160 requests in
 * flight to everyone together. The default for the node: 5,000/s with
 * bursts of 20,000, a few times what a node of the public network receives
 * and well below what one core handles (a request costs some 10-30 µs to
 * decode and answer; a signed write about 100 µs more to verify); the burst
 * lets a whole simulated network bootstrap off one node at the same instant.
 */
export interface RequestRateLimit {
  readonly perSource: Rate
  readonly global: Rate
}

export const DEFAULT_REQUEST_RATE_LIMIT: RequestRateLimit = {
  perSource: { burst: 1000, perSecond: 200 },
  global: { burst: 20_000, perSecond: 5000 }
}

/**
 * Source addresses tracked at once by a `RequestLimiter`: 4,096 buckets
 * (about 300 KB). When they are all taken by sources that are still
 * spending, a new source is held to the global limit only: a flood spoofed
 * from many addresses buys no per-source allowance, and costs at most the
 * global budget.
 */
export const MAX_RATE_SOURCES = 4096

interface Bucket {
  tokens: number
  at: number
}

const refill = (b: Bucket, rate: Rate, now: number): void => {
  if (now > b.at) {
    b.tokens = Math.min(rate.burst, b.tokens + ((now - b.at) * rate.perSecond) / 1000)
    b.at = now
  }
}

export interface RateLimitStats {
  /** Requests dropped because their source address spent its allowance. */
  source: number
  /** Requests dropped because the node as a whole spent its allowance. */
  global: number
}

/**
 * Incoming request limits: a token bucket per source IPv4 address and one
 * for the node. A request over either is dropped and counted (as a node
 * under load drops datagrams); local sources are exempt.
 */
export class RequestLimiter {
  private readonly sources = new Map<string, Bucket>()
  private readonly all: Bucket
  private lastPrune = Number.NEGATIVE_INFINITY
  readonly stats: RateLimitStats = { source: 0, global: 0 }

  constructor(readonly limit: RequestRateLimit = DEFAULT_REQUEST_RATE_LIMIT, readonly maxSources = MAX_RATE_SOURCES) {
    this.all = { tokens: limit.global.burst, at: Number.NEGATIVE_INFINITY }
  }

  /** Source buckets held (bounded by `maxSources`). */
  get size(): number {
    return this.sources.size
  }

  /** A request from `host` at `now` may run (and is counted against its budgets); false: drop it. */
  allow(host: string, now: number): boolean {
    if (isLocalSource(host)) return true
    let b = this.sources.get(host)
    if (b === undefined && (this.sources.size < this.maxSources || this.prune(now))) {
      b = { tokens: this.limit.perSource.burst, at: now }
      this.sources.set(host, b)
    }
    if (b !== undefined) {
      refill(b, this.limit.perSource, now)
      if (b.tokens < 1) {
        this.stats.source++
        return false
      }
    }
    refill(this.all, this.limit.global, now)
    if (this.all.tokens < 1) {
      this.stats.global++
      return false
    }
    this.all.tokens--
    if (b !== undefined) b.tokens--
    return true
  }

  /** Drop the buckets that have refilled (a scan at most once a second); true when a slot is free. */
  private prune(now: number): boolean {
    if (now - this.lastPrune >= 1000) {
      this.lastPrune = now
      for (const [k, b] of this.sources) {
        refill(b, this.limit.perSource, now)
        if (b.tokens >= this.limit.perSource.burst) this.sources.delete(k)
      }
    }
    return this.sources.size < this.maxSources
  }
}

/**
 * How many entries of one store a single source address may hold: who
 * stored each entry (by key) and how many each source holds. The store
 * tells it when an entry leaves (`release`: deleted, or dropped with its
 * generation). Local sources are not counted. Memory: one key → source per
 * counted entry, bounded by the store's own size.
 */
export class SourceQuota {
  private readonly owners = new Map<string, string>()
  private readonly counts = new Map<string, number>()
  /** Writes refused because their source was at the limit. */
  refused = 0

  constructor(readonly limit: number) {}

  /** Entries held on behalf of `host`. */
  count(host: string): number {
    return this.counts.get(host) ?? 0
  }

  /** Entries counted against some source. */
  get size(): number {
    return this.owners.size
  }

  /**
   * May `host` store `key`? Yes for a local source, for a key it already
   * holds (a refresh stores nothing new) and under the limit; else no, and
   * the refusal is counted.
   */
  admit(key: string, host: string): boolean {
    if (isLocalSource(host) || this.owners.get(key) === host) return true
    if (this.count(host) < this.limit) return true
    this.refused++
    return false
  }

  /** `key` is now stored on behalf of `host` (after `admit`). */
  add(key: string, host: string): void {
    const owner = this.owners.get(key)
    if (owner === host) return
    if (owner !== undefined) this.release(key)
    if (isLocalSource(host)) return
    this.owners.set(key, host)
    this.counts.set(host, this.count(host) + 1)
  }

  /** `key` left the store. */
  release(key: string): void {
    const owner = this.owners.get(key)
    if (owner === undefined) return
    this.owners.delete(key)
    const n = this.count(owner) - 1
    if (n <= 0) this.counts.delete(owner)
    else this.counts.set(owner, n)
  }
}
