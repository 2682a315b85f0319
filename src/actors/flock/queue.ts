/**
 * The dial queue (spec: flock.md §9.5): a shuffled priority queue. The
 * highest priority level is served first; within one level the pick is
 * uniformly random. An item is in the queue at most once.
 *
 * Deterministic: randomness comes from the injected `random()` (uniform in
 * [0, 1)). The bucket layout and the swaps are the reference's
 * (shuffled-priority-queue over an unordered set: the pick is swapped to
 * the front, then removed by moving the last item into its slot), so the
 * same random stream picks the same items in the same order.
 *
 * The priority is taken when the item is added and kept until it leaves
 * (the swarm never re-prioritises a queued peer: `updatePriority` refuses
 * while `queued`).
 */

interface Slot {
  readonly priority: number
  index: number
}

export class DialQueue<T> {
  private readonly buckets: Array<Array<T>> = []
  private readonly slots = new Map<T, Slot>()
  private readonly random: () => number

  constructor(random: () => number) {
    this.random = random
  }

  get length(): number {
    return this.slots.size
  }

  has(item: T): boolean {
    return this.slots.has(item)
  }

  /** The priority `item` was queued with, undefined when not queued. */
  priorityOf(item: T): number | undefined {
    return this.slots.get(item)?.priority
  }

  /** Queue `item` at `priority` (an integer ≥ 0); false if it is already queued. */
  add(item: T, priority: number): boolean {
    if (this.slots.has(item)) return false
    const p = priority > 0 ? Math.floor(priority) : 0
    while (p >= this.buckets.length) this.buckets.push([])
    const bucket = this.buckets[p]!
    this.slots.set(item, { priority: p, index: bucket.length })
    bucket.push(item)
    return true
  }

  /** Take a uniformly random item of the highest non-empty priority; undefined when empty. */
  shift(): T | undefined {
    for (let p = this.buckets.length - 1; p >= 0; p--) {
      const bucket = this.buckets[p]!
      if (bucket.length === 0) continue
      const pick = Math.floor(this.random() * bucket.length)
      this.swap(bucket, pick, 0)
      const item = bucket[0]!
      this.removeAt(bucket, 0)
      this.slots.delete(item)
      return item
    }
    return undefined
  }

  /** Remove `item`; false if it was not queued. */
  remove(item: T): boolean {
    const slot = this.slots.get(item)
    if (slot === undefined) return false
    this.removeAt(this.buckets[slot.priority]!, slot.index)
    this.slots.delete(item)
    return true
  }

  /** Empty the queue; the items that were in it (highest priority first). */
  clear(): Array<T> {
    const out: Array<T> = []
    for (let p = this.buckets.length - 1; p >= 0; p--) for (const item of this.buckets[p]!) out.push(item)
    this.buckets.length = 0
    this.slots.clear()
    return out
  }

  /** The items, highest priority first, in bucket order (not the pick order). */
  values(): Array<T> {
    const out: Array<T> = []
    for (let p = this.buckets.length - 1; p >= 0; p--) for (const item of this.buckets[p]!) out.push(item)
    return out
  }

  private swap(bucket: Array<T>, i: number, j: number): void {
    if (i === j) return
    const a = bucket[i]!
    const b = bucket[j]!
    bucket[i] = b
    bucket[j] = a
    this.slots.get(a)!.index = j
    this.slots.get(b)!.index = i
  }

  private removeAt(bucket: Array<T>, index: number): void {
    const last = bucket.pop()!
    if (index < bucket.length) {
      bucket[index] = last
      this.slots.get(last)!.index = index
    }
  }
}
