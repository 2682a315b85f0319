/**
 * NAT analysis for one puncher socket (spec: connect.md §5.1, §5.2, §8.3).
 *
 * Every holepunch attempt uses its own pool socket, and what the peer needs
 * to know is how that socket's NAT maps it: the same public host:port toward
 * every destination (CONSISTENT), a fresh port per destination (RANDOM), or
 * no NAT at all (OPEN). We learn it from DHT nodes: a ping sent from the
 * socket comes back with `to` = the socket's public address as that node saw
 * it. Two plain classes, no I/O, no clock:
 *
 * `NatAnalyzer`: the samples and the classification.
 * - `add(to, from)` records one observation; each responding node
 *   (`from` host:port) counts once. Observations are tallied twice, by host
 *   and by host:port, each list kept in descending hit order (a bumped entry
 *   moves ahead of entries with fewer hits only, so ties keep arrival order).
 * - Classification (from the third sample on, unless frozen): if the DHT
 *   node itself is not firewalled the class is OPEN; otherwise with `top` the
 *   most-hit host:port: >= 3 hits CONSISTENT; 1 hit RANDOM; 2 hits: one
 *   distinct host and more than 3 samples RANDOM, at least two hosts and the
 *   second host:port also hit twice or more CONSISTENT, else more than 4
 *   samples RANDOM, else still UNKNOWN. A firewalled DHT demotes a previous
 *   OPEN to UNKNOWN before classifying.
 * - Advertised addresses: CONSISTENT, every host:port with >= 2 hits plus the
 *   first two entries regardless; RANDOM, the most common host with port 0;
 *   UNKNOWN, none (null). OPEN leaves the previous list as it was (null if
 *   there was none), as the reference does.
 * - `finished` (the "analysis finished" signal) latches when a sample leaves
 *   the class CONSISTENT or OPEN, when the minimum number of samples (4) is
 *   in, when sampling gives up (`endSampling`) or on `destroy`.
 * - `freeze()` keeps class and addresses fixed once they have been sent to
 *   the peer (samples still count); `unfreeze()` reclassifies.
 *
 * `NatSamplingPlan`: which DHT nodes to ping from the socket. Walk the
 * recently seen nodes newest first, skipping the 5 newest when 8 or more are
 * known and any node already pinged or already sampled; ping (one attempt
 * each, the caller's timeout is 1 s) until samples + outstanding pings reach 4.
 * When every ping of the round has finished with fewer than 4 samples, one
 * more round runs on further nodes; when that one also falls short (or finds
 * nobody to ping) sampling gives up and the analysis is finished.
 */
import { FIREWALL_CONSISTENT, FIREWALL_OPEN, FIREWALL_RANDOM, FIREWALL_UNKNOWN } from "../../protocol/connect.js"
import type { IPv4Address } from "../../protocol/encoding.js"

/** Samples wanted per socket (pings per round). */
export const MIN_SAMPLES = 4
/** The newest nodes skipped when at least `SKIP_THRESHOLD` nodes are known. */
export const SKIP_NEWEST = 5
export const SKIP_THRESHOLD = 8
/** Timeout of one sampling ping (the caller's; one attempt, no retry). */
export const SAMPLE_PING_TIMEOUT = 1000

/** One tally entry: how many nodes saw us at this host (port 0 in the by-host list) or host:port. */
export interface NatTally {
  readonly host: string
  readonly port: number
  readonly hits: number
}

interface MutableTally {
  readonly host: string
  readonly port: number
  hits: number
}

const keyOf = (a: IPv4Address): string => a.host + ":" + a.port

/** Count one hit; keep the list in descending hit order, ties in arrival order. */
const bump = (list: Array<MutableTally>, host: string, port: number): void => {
  for (let i = 0; i < list.length; i++) {
    const s = list[i]!
    if (s.host !== host || s.port !== port) continue
    s.hits++
    for (; i > 0; i--) {
      const prev = list[i - 1]!
      if (prev.hits >= s.hits) return
      list[i - 1] = s
      list[i] = prev
    }
    return
  }
  list.push({ host, port, hits: 1 })
}

export interface NatAnalyzerOptions {
  /** The DHT node's own reachability: false means the node is not firewalled, i.e. OPEN. */
  readonly firewalled: boolean
  /** Samples wanted (default 4). */
  readonly minSamples?: number
}

export class NatAnalyzer {
  private readonly byHost: Array<MutableTally> = []
  private readonly byFull: Array<MutableTally> = []
  private readonly sources = new Set<string>()
  private fw: number
  private addrs: ReadonlyArray<IPv4Address> | null = null
  private count = 0
  private isFrozen = false
  private isFinished = false
  private isDestroyed = false
  private dhtFirewalled: boolean
  private min: number

  constructor(options: NatAnalyzerOptions) {
    this.dhtFirewalled = options.firewalled
    this.min = options.minSamples ?? MIN_SAMPLES
    this.fw = options.firewalled ? FIREWALL_UNKNOWN : FIREWALL_OPEN
  }

  /** 0 UNKNOWN, 1 OPEN, 2 CONSISTENT, 3 RANDOM. */
  get firewall(): number {
    return this.fw
  }

  /** What we advertise to the peer (null = nothing, the payload's addresses flag clear). */
  get addresses(): ReadonlyArray<IPv4Address> | null {
    return this.addrs
  }

  /** Samples counted (one per responding node). */
  get sampled(): number {
    return this.count
  }

  get minSamples(): number {
    return this.min
  }

  get frozen(): boolean {
    return this.isFrozen
  }

  /** The analysis-finished signal (a latch). */
  get finished(): boolean {
    return this.isFinished
  }

  get destroyed(): boolean {
    return this.isDestroyed
  }

  /** Whether `from` (a node's host:port) already contributed a sample. */
  hasSampleFrom(from: IPv4Address): boolean {
    return this.sources.has(keyOf(from))
  }

  /** The tallies, most hits first: by host:port and by host (port 0). */
  tallies(): { readonly full: ReadonlyArray<NatTally>; readonly hosts: ReadonlyArray<NatTally> } {
    return {
      full: this.byFull.map((s) => ({ host: s.host, port: s.port, hits: s.hits })),
      hosts: this.byHost.map((s) => ({ host: s.host, port: s.port, hits: s.hits }))
    }
  }

  /**
   * Record that node `from` saw this socket at `to`. Returns false (and
   * changes nothing) when that node already contributed a sample.
   */
  add(to: IPv4Address, from: IPv4Address): boolean {
    const ref = keyOf(from)
    if (this.sources.has(ref)) return false
    this.sources.add(ref)

    bump(this.byHost, to.host, 0)
    bump(this.byFull, to.host, to.port)
    this.count++

    if ((this.count >= 3 || !this.dhtFirewalled) && !this.isFrozen) this.update()

    if (this.fw === FIREWALL_CONSISTENT || this.fw === FIREWALL_OPEN || this.count >= this.min) this.isFinished = true
    return true
  }

  /**
   * The DHT node's own reachability changed. Like the reference, the new
   * value is only consulted at the next sample (or `unfreeze`).
   */
  setFirewalled(firewalled: boolean): void {
    this.dhtFirewalled = firewalled
  }

  freeze(): void {
    this.isFrozen = true
  }

  /** Allow reclassification again and reclassify now (an OPEN class is not demoted here). */
  unfreeze(): void {
    this.isFrozen = false
    this.classify()
    this.updateAddresses()
  }

  /** Sampling gave up: the analysis is finished with whatever class it has. */
  endSampling(): void {
    this.isFinished = true
  }

  /** Stop sampling for good (the socket was released): finished, and no more samples wanted. */
  destroy(): void {
    this.isDestroyed = true
    this.min = 0
    this.isFinished = true
  }

  private update(): void {
    if (this.dhtFirewalled && this.fw === FIREWALL_OPEN) this.fw = FIREWALL_UNKNOWN
    this.classify()
    this.updateAddresses()
  }

  private classify(): void {
    if (!this.dhtFirewalled) {
      this.fw = FIREWALL_OPEN
      return
    }
    if (this.count < 3) return

    const top = this.byFull[0]!.hits
    if (top >= 3) {
      this.fw = FIREWALL_CONSISTENT
    } else if (top === 1) {
      this.fw = FIREWALL_RANDOM
    } else if (this.byHost.length === 1 && this.count > 3) {
      // two hits, a single host, and at least two other ports seen: RANDOM
      this.fw = FIREWALL_RANDOM
    } else if (this.byHost.length > 1 && this.byFull[1]!.hits > 1) {
      // two hits on each of two different hosts (multi-homed): CONSISTENT
      this.fw = FIREWALL_CONSISTENT
    } else if (this.count > 4) {
      this.fw = FIREWALL_RANDOM
    }
  }

  private updateAddresses(): void {
    if (this.fw === FIREWALL_UNKNOWN) {
      this.addrs = null
    } else if (this.fw === FIREWALL_RANDOM) {
      const h = this.byHost[0]
      this.addrs = h === undefined ? null : [{ host: h.host, port: 0 }]
    } else if (this.fw === FIREWALL_CONSISTENT) {
      const out: Array<IPv4Address> = []
      for (const s of this.byFull) if (s.hits >= 2 || out.length < 2) out.push({ host: s.host, port: s.port })
      this.addrs = out
    }
    // OPEN: unchanged
  }
}

/** Where one sampling round stands. */
type PlanState = "idle" | "running" | "retry-due" | "done" | "given-up"

export interface NatSamplingPlanOptions {
  /** Allow the one extra round (default true). */
  readonly retry?: boolean
}

/**
 * The sampling plan for one socket. Call `nextPings(nodes)` with the DHT's
 * recently seen nodes (newest first) to start, and again after every
 * `onPingResult`; it returns the nodes to ping now (often none).
 */
export class NatSamplingPlan {
  private readonly pinged = new Set<string>()
  private readonly outstanding = new Set<string>()
  private state: PlanState = "idle"
  private retryLeft: boolean
  private rounds = 0
  private pings = 0
  private readonly analyzer: NatAnalyzer

  constructor(analyzer: NatAnalyzer, options: NatSamplingPlanOptions = {}) {
    this.analyzer = analyzer
    this.retryLeft = options.retry ?? true
  }

  /** Pings sent and not yet answered or timed out. */
  get pending(): number {
    return this.outstanding.size
  }

  /** Rounds started (0, 1 or 2). */
  get round(): number {
    return this.rounds
  }

  /** Pings handed out in total. */
  get pingsSent(): number {
    return this.pings
  }

  /** Sampling ended short of the wanted samples (the analysis is finished regardless). */
  get givenUp(): boolean {
    return this.state === "given-up"
  }

  /** No more pings will be asked for. */
  get done(): boolean {
    return this.state === "done" || this.state === "given-up"
  }

  nextPings(nodes: ReadonlyArray<IPv4Address>): Array<IPv4Address> {
    if (this.analyzer.destroyed) {
      if (!this.done) this.state = "done"
      return []
    }
    if (this.state !== "idle" && this.state !== "retry-due") return []
    if (this.state === "retry-due") this.retryLeft = false
    this.state = "running"
    this.rounds++

    const out: Array<IPv4Address> = []
    let skip = nodes.length >= SKIP_THRESHOLD ? SKIP_NEWEST : 0
    for (const node of nodes) {
      if (this.analyzer.sampled + this.outstanding.size >= this.analyzer.minSamples) break
      if (skip > 0) {
        skip--
        continue
      }
      const ref = keyOf(node)
      if (this.pinged.has(ref) || this.analyzer.hasSampleFrom(node)) continue
      this.pinged.add(ref)
      this.outstanding.add(ref)
      out.push(node)
    }
    this.pings += out.length
    // nobody to ping: the round is over at once, and the retry (if due) runs on the same nodes
    if (this.outstanding.size === 0 && this.roundEnded()) return this.nextPings(nodes)
    return out
  }

  /**
   * A sampling ping finished: `to` is the address the node saw us at, null
   * when the ping failed or timed out. Results for nodes not pinged by this
   * plan (or reported twice) are ignored.
   */
  onPingResult(node: IPv4Address, to: IPv4Address | null): void {
    const ref = keyOf(node)
    if (!this.outstanding.delete(ref)) return
    if (to !== null) this.analyzer.add(to, node)
    if (this.outstanding.size === 0 && this.state === "running") this.roundEnded()
  }

  /** The round's pings have all finished; true when the extra round is now due. */
  private roundEnded(): boolean {
    if (this.analyzer.sampled >= this.analyzer.minSamples) {
      this.state = "done"
    } else if (this.retryLeft) {
      this.state = "retry-due"
      return true
    } else {
      this.state = "given-up"
      this.analyzer.endSampling()
    }
    return false
  }
}
