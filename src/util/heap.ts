/**
 * A binary min-heap of entries ordered by (at, seq): the simulated network's
 * in-flight datagrams and timers, and real UDP's shared timer. `seq` breaks
 * ties in insertion order, so equal times pop deterministically.
 */
const before = (x: { readonly at: number; readonly seq: number }, y: { readonly at: number; readonly seq: number }): boolean => x.at < y.at || (x.at === y.at && x.seq < y.seq)

export class Heap<T extends { readonly at: number; readonly seq: number }> {
  readonly items: Array<T> = []
  get size(): number {
    return this.items.length
  }
  peek(): T | undefined {
    return this.items[0]
  }
  push(e: T): void {
    const a = this.items
    let i = a.length
    a.push(e)
    while (i > 0) {
      const p = (i - 1) >> 1
      const parent = a[p]!
      if (!before(e, parent)) break
      a[i] = parent
      i = p
    }
    a[i] = e
  }
  pop(): T | undefined {
    const a = this.items
    const top = a[0]
    const last = a.pop()
    if (top === undefined || last === undefined || a.length === 0) return top
    const n = a.length
    let i = 0
    while (true) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      let c = l
      let child = a[l]!
      if (r < n) {
        const rc = a[r]!
        if (before(rc, child)) {
          c = r
          child = rc
        }
      }
      if (!before(child, last)) break
      a[i] = child
      i = c
    }
    a[i] = last
    return top
  }
}

