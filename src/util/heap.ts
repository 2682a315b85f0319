/**
 * A binary min-heap of entries ordered by (at, seq): the simulated network's
 * in-flight datagrams and timers, and real UDP's shared timer. `seq` breaks
 * ties in insertion order, so equal times pop deterministically.
 *
 * The keys live in two Float64Arrays beside the entries, so sifting compares
 * contiguous numbers and never loads an entry object: in a large simulation
 * the entries are scattered over a big heap and each load was a cache miss.
 */
export class Heap<T extends { readonly at: number; readonly seq: number }> {
  private readonly items: Array<T> = []
  private ats = new Float64Array(16)
  private seqs = new Float64Array(16)

  get size(): number {
    return this.items.length
  }

  peek(): T | undefined {
    return this.items[0]
  }

  push(e: T): void {
    const items = this.items
    let i = items.length
    if (i === this.ats.length) this.grow()
    const ats = this.ats
    const seqs = this.seqs
    const at = e.at
    const seq = e.seq
    items.push(e)
    while (i > 0) {
      const p = (i - 1) >> 1
      const pa = ats[p]!
      if (!(at < pa || (at === pa && seq < seqs[p]!))) break
      items[i] = items[p]!
      ats[i] = pa
      seqs[i] = seqs[p]!
      i = p
    }
    items[i] = e
    ats[i] = at
    seqs[i] = seq
  }

  pop(): T | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    const n = items.length
    if (top === undefined || last === undefined || n === 0) return top
    const ats = this.ats
    const seqs = this.seqs
    const at = ats[n]!
    const seq = seqs[n]!
    let i = 0
    while (true) {
      const l = 2 * i + 1
      if (l >= n) break
      let c = l
      let ca = ats[l]!
      let cs = seqs[l]!
      const r = l + 1
      if (r < n) {
        const ra = ats[r]!
        if (ra < ca || (ra === ca && seqs[r]! < cs)) {
          c = r
          ca = ra
          cs = seqs[r]!
        }
      }
      if (!(ca < at || (ca === at && cs < seq))) break
      items[i] = items[c]!
      ats[i] = ca
      seqs[i] = cs
      i = c
    }
    items[i] = last
    ats[i] = at
    seqs[i] = seq
    return top
  }

  private grow(): void {
    const ats = new Float64Array(this.ats.length * 2)
    ats.set(this.ats)
    this.ats = ats
    const seqs = new Float64Array(this.seqs.length * 2)
    seqs.set(this.seqs)
    this.seqs = seqs
  }
}
