/**
 * The punch core (spec: connect.md §6.1, §6.7, §8.3): the three punch
 * strategies as a deterministic state machine in the quinn-proto manner.
 * No sockets, no timers, no Math.random: time comes in as `now`
 * (milliseconds), randomness through the injected `random()` (uniform in
 * [0, 1)), and what to send comes out of `pollTransmit(now)`.
 *
 * Sockets are numbered: 0 is the puncher's own pool socket, 1.. are extra
 * pool sockets the birthday strategy asks the caller to open
 * (`OpenSocket` → `socketOpened(index)`).
 *
 * Strategies (own class L, remote class R, OPEN counting as CONSISTENT,
 * V = the first verified remote address):
 * - consistent (L and R CONSISTENT): 10 rounds, 1 s apart, each sending a
 *   TTL-64 probe from socket 0 to every remote address, except that
 *   unverified addresses are only probed in rounds 4 and 8 (1-based). The
 *   non-initiator waits 1 s before its first round (the server has already
 *   fired its fast-open probe). The attempt is exhausted 1 s after round 10.
 * - random probes (L CONSISTENT, R RANDOM, needs V): TTL-64 probes from
 *   socket 0 to V.host, each on a uniformly random port in [1000, 65535],
 *   at the pace given to `start` (`PunchPace`: phases of `probes` probes,
 *   `burst` of them every `every` ms); exhausted one spacing after the
 *   last. The reference's pace (the default): 1750 probes 20 ms apart.
 * - birthday (L RANDOM, R CONSISTENT, needs V): open pool sockets one at a
 *   time until `pace.sockets` (256) are held (socket 0 included), each
 *   sending one TTL-5 probe to V as soon as it is open; 100 ms after the
 *   last one, cycle over all held sockets sending probes to V at the pace's
 *   phases, TTL 5 for the first full cycle and TTL 64 after; exhausted one
 *   spacing after the last.
 * - RANDOM on both sides, an UNKNOWN side, a random strategy without V, or
 *   no remote address at all: `start` returns false and nothing is sent.
 *
 * Probes received (`onProbeReceived`, any datagram of length <= 1 on a held
 * socket), accepted from construction on, before `start` too (the server's
 * fast-open probe may arrive first): the initiator takes the first one as
 * success (outcome `Connected` with that socket and source address; every
 * other held socket may then be released); the non-initiator never declares
 * success from probes, it answers each with a TTL-64 probe back from the
 * same socket.
 *
 * Each step runs when its deadline is reached; a late `onTimers` runs one
 * step and schedules the next from the time it actually ran (no catch-up
 * bursts), as a chain of sleeps would.
 */
import type { IPv4Address } from "../../protocol/encoding.js"
import {
  boundAddresses,
  coerceFirewall,
  firstVerified,
  type PunchPace,
  phaseRate,
  REFERENCE_PACE,
  type RemoteAddress,
  type Strategy,
  strategyFor
} from "./decide.js"

export type { PunchPace, PunchPhase, RemoteAddress, Strategy } from "./decide.js"
export { FAST_PACE, REFERENCE_PACE } from "./decide.js"

export const LOW_TTL = 5
export const DEFAULT_TTL = 64
export const CONSISTENT_ROUNDS = 10
export const CONSISTENT_INTERVAL = 1000
/** The reference's pace (`REFERENCE_PACE`): probes per punch, their spacing, birthday sockets. */
export const RANDOM_PROBES = 1750
export const PROBE_INTERVAL = 20
export const BIRTHDAY_SOCKETS = 256
export const BIRTHDAY_SETTLE = 100
export const MIN_RANDOM_PORT = 1000
export const MAX_RANDOM_PORT = 65535

export type Ttl = typeof LOW_TTL | typeof DEFAULT_TTL

export type PunchAction =
  /** Send the one-byte probe from socket `socket` to `to` with IP TTL `ttl`. */
  | { readonly _tag: "Probe"; readonly socket: number; readonly to: IPv4Address; readonly ttl: Ttl }
  /** Open a pool socket and report it with `socketOpened(socket)` (or `socketOpenFailed`). */
  | { readonly _tag: "OpenSocket"; readonly socket: number }

export type PunchOutcome =
  | { readonly _tag: "Connected"; readonly socket: number; readonly address: IPv4Address }
  | { readonly _tag: "Exhausted" }
  | { readonly _tag: "Destroyed" }

/** What was tried, for stats and failure reports. */
export interface PunchStats {
  readonly initiator: boolean
  readonly localFirewall: number
  readonly remoteFirewall: number
  readonly strategy: Strategy | null
  /** The verified address the random strategies aim at. */
  readonly target: IPv4Address | null
  /** Consistent-strategy rounds run. */
  readonly rounds: number
  /** Probes handed out by `pollTransmit` (strategy probes, echoes and caller probes). */
  readonly probesSent: number
  /** Of which with TTL 5. */
  readonly lowTtlProbes: number
  /** Of which answers to received probes (non-initiator). */
  readonly echoes: number
  /** Probes received on held sockets while the attempt was live. */
  readonly probesReceived: number
  readonly socketsHeld: number
  readonly outcome: PunchOutcome["_tag"] | null
}

export interface PunchCoreOptions {
  readonly initiator: boolean
  readonly localFirewall: number
  readonly remoteFirewall: number
  readonly remoteAddresses: ReadonlyArray<RemoteAddress>
  /** Uniform in [0, 1). */
  readonly random: () => number
}

type Phase = "idle" | "consistent" | "random-probes" | "birthday-open" | "birthday-cycle" | "done"

const probe = (socket: number, to: IPv4Address, ttl: Ttl): PunchAction => ({ _tag: "Probe", socket, to, ttl })

export class PunchCore {
  readonly initiator: boolean
  private readonly random: () => number
  private localFw: number
  private remoteFw: number
  private remote: ReadonlyArray<RemoteAddress>

  private phase: Phase = "idle"
  private started: boolean | null = null
  private chosen: Strategy | null = null
  private target: IPv4Address | null = null
  private result: PunchOutcome | null = null
  private isDestroyed = false

  private deadline = Number.POSITIVE_INFINITY
  private readonly queue: Array<PunchAction> = []
  private held = 1
  private opening = -1
  private roundsRun = 0
  private remaining = 0
  private pace: PunchPace = REFERENCE_PACE
  private phaseIndex = 0
  private cursor = 0
  private lowTtlCycles = 1

  private sent = 0
  private lowSent = 0
  private echoed = 0
  private received = 0

  constructor(options: PunchCoreOptions) {
    this.initiator = options.initiator
    this.random = options.random
    this.localFw = coerceFirewall(options.localFirewall)
    this.remoteFw = coerceFirewall(options.remoteFirewall)
    this.remote = boundAddresses(options.remoteAddresses)
  }

  // -------------------------------------------------------------------------
  // Getters
  // -------------------------------------------------------------------------

  /** Set once (first of Connected / Exhausted / Destroyed) and never changed. */
  get outcome(): PunchOutcome | null {
    return this.result
  }

  get strategy(): Strategy | null {
    return this.chosen
  }

  /** A strategy is running (the payload's `punching` flag). */
  get punching(): boolean {
    return this.phase !== "idle" && this.phase !== "done"
  }

  get connected(): boolean {
    return this.result?._tag === "Connected"
  }

  get destroyed(): boolean {
    return this.isDestroyed
  }

  /** A random strategy was started: the attempt holds a random-punch limiter slot until it ends. */
  get isRandom(): boolean {
    return this.chosen === "random-probes" || this.chosen === "birthday"
  }

  /** Probes per second of the running random strategy's current phase (0 when none runs). */
  get probeRate(): number {
    if (this.phase !== "random-probes" && this.phase !== "birthday-cycle" && this.phase !== "birthday-open") return 0
    const p = this.pace.phases[this.phaseIndex]
    return p === undefined ? 0 : phaseRate(p)
  }

  /** Sockets held: 0 .. heldSockets-1. */
  get heldSockets(): number {
    return this.held
  }

  get remoteAddresses(): ReadonlyArray<RemoteAddress> {
    return this.remote
  }

  get stats(): PunchStats {
    return {
      initiator: this.initiator,
      localFirewall: this.localFw,
      remoteFirewall: this.remoteFw,
      strategy: this.chosen,
      target: this.target,
      rounds: this.roundsRun,
      probesSent: this.sent,
      lowTtlProbes: this.lowSent,
      echoes: this.echoed,
      probesReceived: this.received,
      socketsHeld: this.held,
      outcome: this.result?._tag ?? null
    }
  }

  // -------------------------------------------------------------------------
  // Commands
  // -------------------------------------------------------------------------

  /** Our class changed before the punch started (re-roll, late sampling). False once started. */
  setLocalFirewall(firewall: number): boolean {
    if (this.started !== null) return false
    this.localFw = coerceFirewall(firewall)
    return true
  }

  /**
   * The peer's latest state. The class only matters before `start`; the
   * address list also feeds later consistent rounds. Ignored once ended.
   */
  updateRemote(remote: { readonly firewall: number; readonly addresses: ReadonlyArray<RemoteAddress> }): void {
    if (this.result !== null) return
    if (this.started === null) this.remoteFw = coerceFirewall(remote.firewall)
    this.remote = boundAddresses(remote.addresses)
  }

  /**
   * Start the strategy the classes call for, the random ones at `pace`
   * (default: the reference's). Returns false when none applies (or the
   * attempt already ended); the caller then aborts. Only the first call
   * decides; later calls return the same answer.
   */
  start(now: number, pace: PunchPace = REFERENCE_PACE): boolean {
    if (this.started !== null) return this.started
    this.pace = pace
    this.started = this.begin(now)
    return this.started
  }

  /** A probe from socket `socket` (default 0) with TTL 64 (e.g. the server's fast-open probe). False once ended. */
  ping(to: IPv4Address, socket = 0): boolean {
    return this.enqueueProbe(socket, to, DEFAULT_TTL)
  }

  /** A TTL-5 open-session probe (opens our NAT toward `to` without reaching theirs). False once ended. */
  openSession(to: IPv4Address, socket = 0): boolean {
    return this.enqueueProbe(socket, to, LOW_TTL)
  }

  /** Stop: outcome Destroyed unless one is already set; nothing more is sent. */
  destroy(): void {
    this.isDestroyed = true
    this.finish({ _tag: "Destroyed" })
    this.queue.length = 0
  }

  // -------------------------------------------------------------------------
  // Inputs
  // -------------------------------------------------------------------------

  /**
   * A probe arrived on held socket `socket` from `from`. Returns true when
   * it connected the attempt (initiator, first probe); on the non-initiator
   * it queues the answer. Ignored once the attempt ended or for a socket
   * not held.
   */
  onProbeReceived(socket: number, from: IPv4Address): boolean {
    if (this.result !== null || !this.holds(socket)) return false
    this.received++
    if (!this.initiator) {
      this.echoed++
      this.queue.push(probe(socket, from, DEFAULT_TTL))
      return false
    }
    this.finish({ _tag: "Connected", socket, address: { host: from.host, port: from.port } })
    return true
  }

  /**
   * The socket requested by `OpenSocket` is open. Returns false when it was
   * not expected (or the attempt ended): the caller should release it.
   */
  socketOpened(socket: number, now: number): boolean {
    if (this.phase !== "birthday-open" || socket !== this.opening || this.target === null) return false
    this.opening = -1
    this.held++
    this.queue.push(probe(socket, this.target, LOW_TTL))
    if (this.held < this.pace.sockets) this.requestSocket()
    else this.beginCycle(now)
    return true
  }

  /** The requested socket could not be opened: stop opening and cycle over the sockets held. */
  socketOpenFailed(socket: number, now: number): boolean {
    if (this.phase !== "birthday-open" || socket !== this.opening) return false
    this.opening = -1
    this.beginCycle(now)
    return true
  }

  // -------------------------------------------------------------------------
  // Time and output
  // -------------------------------------------------------------------------

  /** When `onTimers` next has work, Infinity if never. */
  nextDeadline(): number {
    return this.deadline
  }

  /** Run the step that is due, if any (one step per call). */
  onTimers(now: number): void {
    if (now < this.deadline) return
    this.deadline = Number.POSITIVE_INFINITY
    switch (this.phase) {
      case "consistent":
        if (this.roundsRun >= CONSISTENT_ROUNDS) this.finish({ _tag: "Exhausted" })
        else this.consistentRound(now)
        return
      case "random-probes":
        if (this.remaining <= 0) this.finish({ _tag: "Exhausted" })
        else this.randomProbe(now)
        return
      case "birthday-cycle":
        if (this.remaining <= 0) this.finish({ _tag: "Exhausted" })
        else this.cycleProbe(now)
        return
      default:
        return
    }
  }

  /** The next thing to send or do, or null. Runs a due timer step first. */
  pollTransmit(now: number): PunchAction | null {
    if (now >= this.deadline) this.onTimers(now)
    const action = this.queue.shift()
    if (action === undefined) return null
    if (action._tag === "Probe") {
      this.sent++
      if (action.ttl === LOW_TTL) this.lowSent++
    }
    return action
  }

  // -------------------------------------------------------------------------
  // Strategies
  // -------------------------------------------------------------------------

  private begin(now: number): boolean {
    if (this.result !== null || this.remote.length === 0) return false
    const v = firstVerified(this.remote)
    const strategy = strategyFor(this.localFw, this.remoteFw, v !== null)
    if (strategy === null) return false
    this.chosen = strategy
    this.target = v === null ? null : { host: v.host, port: v.port }

    if (strategy === "consistent") {
      this.phase = "consistent"
      if (this.initiator) this.consistentRound(now)
      else this.deadline = now + CONSISTENT_INTERVAL
    } else if (strategy === "random-probes") {
      this.phase = "random-probes"
      this.firstPhase()
      this.randomProbe(now)
    } else {
      this.phase = "birthday-open"
      if (this.held < this.pace.sockets) this.requestSocket()
      else this.beginCycle(now)
    }
    return true
  }

  private consistentRound(now: number): void {
    const round = ++this.roundsRun
    const all = round % 4 === 0
    for (const a of this.remote) {
      if (a.verified || all) this.queue.push(probe(0, { host: a.host, port: a.port }, DEFAULT_TTL))
    }
    this.deadline = now + CONSISTENT_INTERVAL
  }

  /** Enter the pace's first non-empty phase (`remaining` 0: none). */
  private firstPhase(): void {
    this.phaseIndex = -1
    this.remaining = 0
    this.nextPhase()
  }

  private nextPhase(): void {
    while (this.remaining <= 0 && this.phaseIndex < this.pace.phases.length) {
      this.phaseIndex++
      this.remaining = Math.max(0, Math.floor(this.pace.phases[this.phaseIndex]?.probes ?? 0))
    }
  }

  /** This step's burst (at least 1, at most what the phase has left) and the spacing to the next step. */
  private step(): { readonly n: number; readonly every: number } {
    const p = this.pace.phases[this.phaseIndex]!
    const n = Math.min(this.remaining, Math.max(1, Math.floor(p.burst)))
    this.remaining -= n
    const every = Math.max(1, p.every)
    if (this.remaining <= 0) this.nextPhase()
    return { n, every }
  }

  private randomProbe(now: number): void {
    if (this.remaining <= 0) return this.finish({ _tag: "Exhausted" })
    const v = this.target!
    const { every, n } = this.step()
    for (let i = 0; i < n; i++) this.queue.push(probe(0, { host: v.host, port: this.randomPort() }, DEFAULT_TTL))
    this.deadline = now + every
  }

  private requestSocket(): void {
    this.opening = this.held
    this.queue.push({ _tag: "OpenSocket", socket: this.opening })
  }

  private beginCycle(now: number): void {
    this.phase = "birthday-cycle"
    this.firstPhase()
    this.cursor = 0
    this.lowTtlCycles = 1
    this.deadline = now + BIRTHDAY_SETTLE
  }

  private cycleProbe(now: number): void {
    if (this.remaining <= 0) return this.finish({ _tag: "Exhausted" })
    const v = this.target!
    const { every, n } = this.step()
    for (let i = 0; i < n; i++) {
      if (this.cursor >= this.held) {
        this.cursor = 0
        if (this.lowTtlCycles > 0) this.lowTtlCycles--
      }
      this.queue.push(probe(this.cursor++, v, this.lowTtlCycles > 0 ? LOW_TTL : DEFAULT_TTL))
    }
    this.deadline = now + every
  }

  /** A uniformly random port in [1000, 65535] (out-of-range `random()` values are clamped). */
  private randomPort(): number {
    const span = MAX_RANDOM_PORT - MIN_RANDOM_PORT + 1
    const r = this.random()
    const k = Math.floor((Number.isFinite(r) ? r : 0) * span)
    return MIN_RANDOM_PORT + Math.min(span - 1, Math.max(0, k))
  }

  // -------------------------------------------------------------------------
  // Helpers
  // -------------------------------------------------------------------------

  private holds(socket: number): boolean {
    return Number.isInteger(socket) && socket >= 0 && socket < this.held
  }

  private enqueueProbe(socket: number, to: IPv4Address, ttl: Ttl): boolean {
    if (this.result !== null || !this.holds(socket)) return false
    this.queue.push(probe(socket, { host: to.host, port: to.port }, ttl))
    return true
  }

  private finish(outcome: PunchOutcome): void {
    if (this.result !== null) return
    this.result = outcome
    this.phase = "done"
    this.opening = -1
    this.deadline = Number.POSITIVE_INFINITY
    this.queue.length = 0
  }
}
