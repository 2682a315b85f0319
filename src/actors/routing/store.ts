/**
 * The caches a persistent HyperDHT node stores records in
 * (hyperdht-records.md §5): two generations each, rotated every
 * ceil(2/3 · maxAge) unless a size-triggered rotation happened since the
 * last one, so an entry lives between 2/3 and 4/3 of maxAge after its last
 * refresh. Time comes in as `now` (ms): rotation is applied lazily on every
 * access, which keeps the stores deterministic and timer-free.
 */

class Generations {
  private nextRotate: number
  private rotatedBySize = false
  readonly interval: number

  constructor(maxAge: number, now: number) {
    this.interval = Math.ceil((2 / 3) * maxAge)
    this.nextRotate = now + this.interval
  }

  /** Number of timer rotations due at `now` (applies the size rule). */
  due(now: number): number {
    let n = 0
    while (now >= this.nextRotate) {
      this.nextRotate += this.interval
      if (this.rotatedBySize) this.rotatedBySize = false
      else n++
      if (n >= 2) {
        // two rotations empty both generations; skip the remaining intervals
        const skip = Math.floor((now - this.nextRotate) / this.interval) + 1
        if (skip > 0) this.nextRotate += skip * this.interval
        break
      }
    }
    return n
  }

  markSizeRotation(): void {
    this.rotatedBySize = true
  }
}

/** xache-like key/value cache: get promotes from the old generation; pinned keys never expire. */
export class Cache<V> {
  private fresh = new Map<string, V>()
  private old = new Map<string, V>()
  private readonly pinned = new Map<string, V>()
  private readonly gen: Generations
  /** Told of every entry that leaves: deleted, replaced by a pinned one, or dropped with its generation. */
  onEvict: ((key: string) => void) | null = null

  constructor(readonly maxSize: number, maxAge: number, now: number) {
    this.gen = new Generations(maxAge, now)
  }

  private rotate(): void {
    const dropped = this.old
    this.old = this.fresh
    this.fresh = new Map()
    const evict = this.onEvict
    if (evict !== null) for (const k of dropped.keys()) evict(k)
  }

  /** Apply the rotations due at `now` (every access does; call it before reading sizes or owners). */
  expire(now: number): void {
    const n = this.gen.due(now)
    for (let i = 0; i < n; i++) this.rotate()
  }

  get size(): number {
    return this.fresh.size + this.old.size + this.pinned.size
  }

  get(key: string, now: number): V | undefined {
    this.expire(now)
    const p = this.pinned.get(key)
    if (p !== undefined) return p
    const f = this.fresh.get(key)
    if (f !== undefined) return f
    const o = this.old.get(key)
    if (o !== undefined) {
      this.old.delete(key)
      this.insert(key, o)
    }
    return o
  }

  set(key: string, value: V, now: number): void {
    this.expire(now)
    if (this.pinned.has(key)) return
    this.old.delete(key)
    this.insert(key, value)
  }

  private insert(key: string, value: V): void {
    this.fresh.set(key, value)
    if (this.fresh.size >= this.maxSize) {
      this.rotate()
      this.gen.markSizeRotation()
    }
  }

  delete(key: string, now: number): boolean {
    this.expire(now)
    const deleted = this.fresh.delete(key) || this.old.delete(key)
    if (deleted) this.onEvict?.(key)
    return deleted
  }

  /** Pin an entry (a locally listening server): never expires, `set` ignores it. */
  retain(key: string, value: V): void {
    if (this.fresh.delete(key) || this.old.delete(key)) this.onEvict?.(key)
    this.pinned.set(key, value)
  }

  release(key: string): void {
    this.pinned.delete(key)
  }
}

/**
 * record-cache-like store of announce records: topic → publicKey → record.
 * `get` does not refresh; `add` moves a record into the fresh generation.
 */
export class RecordCache {
  private fresh = new Map<string, Map<string, Uint8Array>>()
  private old = new Map<string, Map<string, Uint8Array>>()
  private freshCount = 0
  private readonly gen: Generations
  /** Told of every record that leaves: removed, or dropped with its generation. */
  onEvict: ((topic: string, publicKey: string) => void) | null = null

  constructor(readonly maxSize: number, maxAge: number, now: number) {
    this.gen = new Generations(maxAge, now)
  }

  private rotate(): void {
    const dropped = this.old
    this.old = this.fresh
    this.fresh = new Map()
    this.freshCount = 0
    const evict = this.onEvict
    if (evict !== null) for (const [topic, m] of dropped) for (const pk of m.keys()) evict(topic, pk)
  }

  /** Apply the rotations due at `now` (every access does; call it before reading sizes or owners). */
  expire(now: number): void {
    const n = this.gen.due(now)
    for (let i = 0; i < n; i++) this.rotate()
  }

  /**
   * Store (topic, publicKey) → record. Unlike the reference (which keeps the
   * old bytes while the record is in its fresh generation), a re-announce
   * replaces the record, so new relay addresses take effect at once.
   */
  add(topic: string, publicKey: string, record: Uint8Array, now: number): void {
    this.expire(now)
    const o = this.old.get(topic)
    if (o !== undefined) {
      o.delete(publicKey)
      if (o.size === 0) this.old.delete(topic)
    }
    let f = this.fresh.get(topic)
    if (f === undefined) this.fresh.set(topic, (f = new Map()))
    if (!f.has(publicKey)) this.freshCount++
    f.set(publicKey, record)
    if (this.freshCount > this.maxSize) {
      this.rotate()
      this.gen.markSizeRotation()
    }
  }

  remove(topic: string, publicKey: string, now: number): void {
    this.expire(now)
    let removed = false
    const f = this.fresh.get(topic)
    if (f !== undefined && f.delete(publicKey)) {
      removed = true
      this.freshCount--
      if (f.size === 0) this.fresh.delete(topic)
    }
    const o = this.old.get(topic)
    if (o !== undefined) {
      if (o.delete(publicKey)) removed = true
      if (o.size === 0) this.old.delete(topic)
    }
    if (removed) this.onEvict?.(topic, publicKey)
  }


  has(topic: string, publicKey: string, now: number): boolean {
    this.expire(now)
    return this.fresh.get(topic)?.has(publicKey) === true || this.old.get(topic)?.has(publicKey) === true
  }

  /** Up to `n` records of a topic, chosen uniformly at random across both generations. */
  get(topic: string, n: number, now: number, random: () => number): Array<Uint8Array> {
    this.expire(now)
    const all: Array<Uint8Array> = []
    const f = this.fresh.get(topic)
    if (f !== undefined) for (const r of f.values()) all.push(r)
    const o = this.old.get(topic)
    if (o !== undefined) for (const [k, r] of o) if (f === undefined || !f.has(k)) all.push(r)
    if (all.length <= n) return all
    // partial Fisher-Yates
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(random() * (all.length - i))
      const t = all[i]!
      all[i] = all[j]!
      all[j] = t
    }
    return all.slice(0, n)
  }
}

/**
 * A per-source byte allowance for replies to requests that carry no
 * round-trip token (anti-amplification). A request's source address can be
 * spoofed, so without a token a reply may land on a victim that never
 * asked; a tiny LOOKUP or IMMUTABLE_GET (43 bytes) can fetch 1–2 KB of
 * stored data. Each source IPv4 address gets a token bucket of `burst`
 * bytes refilled at `perSecond`; stored data goes out only while the bucket
 * holds it. Loopback sources are exempt (a datagram from 127.0.0.0/8 cannot
 * come from another machine).
 *
 * Bounded state: at most `maxSources` buckets. When they are all taken, the
 * buckets that have refilled are dropped (a scan at most once a second); a
 * new source that still finds no slot gets no allowance, so a flood spoofed
 * from many addresses cannot buy itself fresh budgets.
 */
export class UnverifiedBudget {
  private readonly buckets = new Map<string, { bytes: number; at: number }>()
  private lastPrune = -Infinity

  constructor(readonly burst: number, readonly perSecond: number, readonly maxSources = 4096) {}

  /** Take `n` bytes from `host`'s allowance at `now` (ms): false, and nothing taken, when it does not hold them. */
  take(host: string, n: number, now: number): boolean {
    if (host.startsWith("127.")) return true
    let b = this.buckets.get(host)
    if (b === undefined) {
      if (this.buckets.size >= this.maxSources && !this.prune(now)) return false
      b = { bytes: this.burst, at: now }
      this.buckets.set(host, b)
    } else {
      b.bytes = Math.min(this.burst, b.bytes + (Math.max(0, now - b.at) * this.perSecond) / 1000)
      b.at = now
    }
    if (b.bytes < n) return false
    b.bytes -= n
    return true
  }

  /** Drop the buckets that have refilled by `now`; true when a slot is free. */
  private prune(now: number): boolean {
    if (now - this.lastPrune >= 1000) {
      this.lastPrune = now
      for (const [k, b] of this.buckets) {
        if (b.bytes + (Math.max(0, now - b.at) * this.perSecond) / 1000 >= this.burst) this.buckets.delete(k)
      }
    }
    return this.buckets.size < this.maxSources
  }
}
