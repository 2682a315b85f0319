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
  /**
   * Per row, the 30-bit id prefix of each node (`key30`), in the row's order:
   * searches and distance sorts read these small integers instead of
   * following every node to its id bytes. Rows and their keys are kept at
   * their exact length (a row changes rarely, a grown array's spare slots
   * would stay for good).
   */
  private readonly rowKeys: Array<Array<number> | undefined> = []
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
    const nodes = this.rows[r] ?? EMPTY
    const keys = this.rowKeys[r] ?? EMPTY_KEYS
    const key = key30(node.id)
    const at = search(nodes, keys, node.id, key)
    if (at >= 0) {
      this.rows[r]![at] = node // found: the row exists
      return "updated"
    }
    if (nodes.length >= this.k) return "full"
    if (r >= this.rowsInUse) this.rowsInUse = r + 1
    this.rows[r] = insertAt(nodes, -at - 1, node)
    this.rowKeys[r] = insertAt(keys, -at - 1, key)
    this.size++
    return "added"
  }

  get(id: Uint8Array): N | null {
    const r = this.row(id)
    const nodes = this.rows[r]
    const keys = this.rowKeys[r]
    if (nodes === undefined || keys === undefined) return null
    const at = search(nodes, keys, id, key30(id))
    return at >= 0 ? nodes[at]! : null
  }

  has(id: Uint8Array): boolean {
    return this.get(id) !== null
  }

  /** Remove the node with this id; false when it is not in the table. */
  remove(id: Uint8Array): boolean {
    const r = this.row(id)
    const nodes = this.rows[r]
    const keys = this.rowKeys[r]
    if (nodes === undefined || keys === undefined) return false
    const at = search(nodes, keys, id, key30(id))
    if (at < 0) return false
    this.rows[r] = removeAt(nodes, at)
    this.rowKeys[r] = removeAt(keys, at)
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
    const t0 = key30(target)
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
   * sort on the first 30 bits of id ^ target, which decide almost always;
   * ties fall back to the full comparison), keeping at most `n` nodes in
   * `out`. True when `out` is full. `t0` is key30(target).
   */
  private takeRowByDistance(i: number, target: Uint8Array, t0: number, n: number, out: Array<N>): boolean {
    const nodes = this.rows[i]
    const rowKeys = this.rowKeys[i]
    if (nodes === undefined || rowKeys === undefined || nodes.length === 0) return out.length >= n
    const start = out.length
    const keys = this.keyScratch
    let count = 0
    for (let j = 0; j < nodes.length; j++) {
      // a node's id bytes are read only on a 30-bit tie
      const node = nodes[j]!
      const key = rowKeys[j]! ^ t0
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

const EMPTY_KEYS: ReadonlyArray<number> = Object.freeze([])

/** The first 30 bits of an id as a small integer (a V8 Smi); ordering by it agrees with ordering by the id's bytes. */
const key30 = (id: Uint8Array): number => (id[0]! << 22) | (id[1]! << 14) | (id[2]! << 6) | (id[3]! >>> 2)

/** A copy of `a` with `v` inserted at `at`, at its exact length. */
const insertAt = <T>(a: ReadonlyArray<T>, at: number, v: T): Array<T> => {
  const out = new Array<T>(a.length + 1)
  for (let i = 0; i < at; i++) out[i] = a[i]!
  out[at] = v
  for (let i = at; i < a.length; i++) out[i + 1] = a[i]!
  return out
}

/** A copy of `a` without its element at `at`, at its exact length. */
const removeAt = <T>(a: ReadonlyArray<T>, at: number): Array<T> => {
  const out = new Array<T>(a.length - 1)
  for (let i = 0; i < at; i++) out[i] = a[i]!
  for (let i = at + 1; i < a.length; i++) out[i - 1] = a[i]!
  return out
}

/** Bit j (0 = most significant) of a ^ b. */
const bitDiffers = (a: Uint8Array, b: Uint8Array, j: number): boolean => (((a[j >> 3]! ^ b[j >> 3]!) >> (7 - (j & 7))) & 1) === 1

/** Compare the XOR distances of a and b to target, whose first 30 bits are equal (so from byte 3 on). */
const compareDistance = (a: Uint8Array, b: Uint8Array, target: Uint8Array): number => {
  for (let i = 3; i < target.length; i++) {
    const x = a[i]! ^ target[i]!
    const y = b[i]! ^ target[i]!
    if (x !== y) return x - y
  }
  return 0
}

/** Byte-wise comparison of two ids. */
const compareIds = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.max(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a[i]
    const y = b[i]
    if (x === y) continue
    if (x === undefined) return -1
    if (y === undefined) return 1
    return x < y ? -1 : 1
  }
  return 0
}

/**
 * Binary search of a row (sorted by id bytes; `keys` are their key30s, so
 * sorted too) for `id`, whose key30 is `key`: its index when found, else
 * -(insertion point) - 1. Ids are compared only where the keys are equal.
 */
const search = <N extends RoutingNode>(nodes: ReadonlyArray<N>, keys: ReadonlyArray<number>, id: Uint8Array, key: number): number => {
  let l = 0
  let r = nodes.length - 1
  while (l <= r) {
    const m = (l + r) >> 1
    const km = keys[m]!
    const c = key < km ? -1 : key > km ? 1 : compareIds(id, nodes[m]!.id)
    if (c === 0) return m
    if (c < 0) r = m - 1
    else l = m + 1
  }
  return -l - 1
}
