/**
 * Kademlia routing table (spec: dht-rpc.md §9.1), deterministic and free of
 * timers or events: 256 fixed rows (one per id bit), at most k nodes per row,
 * each row sorted by raw id bytes starting at the row's byte offset.
 *
 * `closest` reproduces the reference order, which is NOT a true XOR sort:
 * rows d, d-1, ..., 0 and then d+1, ..., 255 (d = row of the target), and
 * inside a row the stored (byte) order.
 */

export interface RoutingNode {
  readonly id: Uint8Array
}

export type AddResult = "added" | "updated" | "full"

export interface RoutingTableOptions {
  /** Bucket size; 20 by default. */
  readonly k?: number
}

export const DEFAULT_K = 20

export class RoutingTable<N extends RoutingNode = RoutingNode> {
  readonly id: Uint8Array
  readonly k: number
  /** Number of nodes in the table. */
  size = 0
  /** Grown on demand (rows past the deepest one used are never allocated: a 256-slot array cost 2 KB per node). */
  private readonly rows: Array<Array<N> | undefined> = []
  private readonly rowTotal: number
  /** Rows at this index and above have never held a node. */
  private rowsInUse = 0
  /** Sort keys for closestByDistance (one row at a time). */
  private readonly keyScratch: Array<number> = []

  constructor(id: Uint8Array, options?: RoutingTableOptions) {
    this.id = id
    const k = options?.k
    this.k = k !== undefined && Number.isInteger(k) && k > 0 ? k : DEFAULT_K
    this.rowTotal = id.length * 8
  }

  /** Number of rows (8 per id byte: 256 for 32-byte ids). */
  get rowCount(): number {
    return this.rowTotal
  }

  /**
   * Index of the first bit (from the most significant bit of byte 0) where
   * `id` differs from the table's own id; the last row when they are equal.
   */
  row(id: Uint8Array): number {
    const own = this.id
    const n = Math.min(id.length, own.length)
    for (let i = 0; i < n; i++) {
      const a = id[i]!
      const b = own[i]!
      if (a !== b) return i * 8 + Math.clz32(a ^ b) - 24
    }
    return this.rowTotal - 1
  }

  /** Insert or replace a node. A full row leaves the table unchanged and returns "full". */
  add(node: N): AddResult {
    const r = this.row(node.id)
    let nodes = this.rows[r]
    if (nodes === undefined) {
      nodes = this.rows[r] = []
      if (r >= this.rowsInUse) this.rowsInUse = r + 1
    }
    const offset = r >> 3
    const at = search(nodes, node.id, offset)
    if (at >= 0) {
      nodes[at] = node
      return "updated"
    }
    if (nodes.length >= this.k) return "full"
    nodes.splice(-at - 1, 0, node)
    this.size++
    return "added"
  }

  get(id: Uint8Array): N | null {
    const r = this.row(id)
    const nodes = this.rows[r]
    if (nodes === undefined) return null
    const at = search(nodes, id, r >> 3)
    return at >= 0 ? nodes[at]! : null
  }

  has(id: Uint8Array): boolean {
    return this.get(id) !== null
  }

  /** Remove the node with this id; false when it is not in the table. */
  remove(id: Uint8Array): boolean {
    const r = this.row(id)
    const nodes = this.rows[r]
    if (nodes === undefined) return false
    const at = search(nodes, id, r >> 3)
    if (at < 0) return false
    nodes.splice(at, 1)
    this.size--
    return true
  }

  /** The nodes of one row, in stored order (used by full-row eviction). */
  rowNodes(index: number): ReadonlyArray<N> {
    return this.rows[index] ?? EMPTY
  }

  /** Up to `n` nodes in the reference's order (see the module comment). */
  closest(target: Uint8Array, n: number = this.k): Array<N> {
    const out: Array<N> = []
    const d = this.row(target)
    for (let i = d; i >= 0 && out.length < n; i--) this.pushRow(i, n, out)
    for (let i = d + 1; i < this.rows.length && out.length < n; i++) this.pushRow(i, n, out)
    return out
  }

  /**
   * Up to `n` nodes in true XOR-distance order to `target`. Omega answers
   * closer-node requests with this order (the reference's `closest` order is
   * an approximation that makes lookups slower and less exact; peers accept
   * either, see dht-rpc.md §14 item 4).
   *
   * Relative to our id, row d = row(target) holds the closest nodes, then
   * every row above d (their top differing bit with the target is d), then
   * rows d-1, d-2, ..., 0 in that order. `out` (emptied first) receives them.
   */
  closestByDistance(target: Uint8Array, n: number = this.k, out: Array<N> = []): Array<N> {
    out.length = 0
    if (n <= 0 || this.size === 0) return out
    const d = this.row(target)
    const t0 = prefix32(target)
    if (this.takeRowByDistance(d, target, t0, n, out)) return out
    // Rows above d all differ from the target first at bit d. Between them,
    // bit j (j > d) of own ^ target decides: where it is 1, row j is closer
    // than every deeper row; where it is 0, every deeper row is closer. So:
    // the "1" rows in increasing order, then the "0" rows in decreasing order.
    const own = this.id
    const last = this.rowsInUse
    for (let j = d + 1; j < last; j++) {
      if (bitDiffers(own, target, j) && this.takeRowByDistance(j, target, t0, n, out)) return out
    }
    for (let j = last - 1; j > d; j--) {
      if (!bitDiffers(own, target, j) && this.takeRowByDistance(j, target, t0, n, out)) return out
    }
    // rows below d: row i differs from the target first at bit i (rows from
    // rowsInUse on were never used)
    for (let i = Math.min(d, last) - 1; i >= 0; i--) if (this.takeRowByDistance(i, target, t0, n, out)) return out
    return out
  }

  /**
   * Append row i to `out` in XOR-distance order to `target` (an insertion
   * sort on the first 4 bytes of id ^ target as a uint32, which decides
   * almost always; ties fall back to the full comparison), keeping at most
   * `n` nodes in `out`. True when `out` is full.
   */
  private takeRowByDistance(i: number, target: Uint8Array, t0: number, n: number, out: Array<N>): boolean {
    const nodes = this.rows[i]
    if (nodes === undefined || nodes.length === 0) return out.length >= n
    const start = out.length
    const keys = this.keyScratch
    let count = 0
    for (let j = 0; j < nodes.length; j++) {
      const node = nodes[j]!
      const key = (prefix32(node.id) ^ t0) >>> 0
      let p = count
      while (p > 0) {
        const kp = keys[p - 1]!
        if (kp < key || (kp === key && compareDistance(out[start + p - 1]!.id, node.id, target) <= 0)) break
        keys[p] = kp
        out[start + p] = out[start + p - 1]!
        p--
      }
      keys[p] = key
      out[start + p] = node
      count++
    }
    if (out.length > n) out.length = n
    return out.length >= n
  }

  /** Every node (the reference's `toArray`: closest to our own id, unbounded). */
  toArray(): Array<N> {
    return this.closest(this.id, Infinity)
  }

  /** A uniformly chosen node, or null when empty. `rand` returns a float in [0, 1). */
  random(rand: () => number): N | null {
    if (this.size === 0) return null
    let n = Math.floor(rand() * this.size)
    if (!(n >= 0)) n = 0
    if (n >= this.size) n = this.size - 1
    for (const nodes of this.rows) {
      if (nodes === undefined) continue
      if (n < nodes.length) return nodes[n]!
      n -= nodes.length
    }
    return null
  }

  private pushRow(i: number, n: number, out: Array<N>): void {
    const nodes = this.rows[i]
    if (nodes === undefined) return
    const take = Math.min(n - out.length, nodes.length)
    for (let j = 0; j < take; j++) out.push(nodes[j]!)
  }
}

const EMPTY: ReadonlyArray<never> = Object.freeze([])

/** The first 4 bytes of an id as a uint32. */
const prefix32 = (id: Uint8Array): number => ((id[0]! << 24) | (id[1]! << 16) | (id[2]! << 8) | id[3]!) >>> 0

/** Bit j (0 = most significant) of a ^ b. */
const bitDiffers = (a: Uint8Array, b: Uint8Array, j: number): boolean => (((a[j >> 3]! ^ b[j >> 3]!) >> (7 - (j & 7))) & 1) === 1

/** Compare the XOR distances of a and b to target, from byte 4 on (the first 4 are equal). */
const compareDistance = (a: Uint8Array, b: Uint8Array, target: Uint8Array): number => {
  for (let i = 4; i < target.length; i++) {
    const x = a[i]! ^ target[i]!
    const y = b[i]! ^ target[i]!
    if (x !== y) return x - y
  }
  return 0
}

/** Byte-wise comparison of two ids starting at `offset`. */
const compareFrom = (a: Uint8Array, b: Uint8Array, offset: number): number => {
  const n = Math.max(a.length, b.length)
  for (let i = offset; i < n; i++) {
    const x = a[i]
    const y = b[i]
    if (x === y) continue
    if (x === undefined) return -1
    if (y === undefined) return 1
    return x < y ? -1 : 1
  }
  return 0
}

/** Binary search: index when found, otherwise -(insertion point) - 1. */
const search = <N extends RoutingNode>(nodes: ReadonlyArray<N>, id: Uint8Array, offset: number): number => {
  let l = 0
  let r = nodes.length - 1
  while (l <= r) {
    const m = (l + r) >> 1
    const c = compareFrom(id, nodes[m]!.id, offset)
    if (c === 0) return m
    if (c < 0) r = m - 1
    else l = m + 1
  }
  return -l - 1
}
