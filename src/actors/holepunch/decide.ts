/**
 * Holepunch decisions: the small pure rules a dial (client or server side)
 * consults before and around a punch. No state except the random-punch
 * limiter, no I/O, no clock: time is an argument.
 *
 * Spec (connect.md):
 * - §5.1: OPEN counts as CONSISTENT for every punching decision.
 * - §5.2: a puncher is "unstable" when both sides are RANDOM or our own class
 *   is still UNKNOWN; a socket re-roll succeeds iff the class is CONSISTENT
 *   (OPEN counts).
 * - §6.5 step 2: a directly reachable server is dialled at the first of its
 *   advertised addresses that is neither private nor reserved, else at the
 *   address the handshake came from.
 * - §6.5 step 4 / §8.2 step 11: the same-NAT shortcut picks, among the peer's
 *   addresses, the one sharing the longest dotted prefix (1 to 3 octets) with
 *   one of our interface addresses; the client drops reserved (not private)
 *   ranges first, the server keeps only private ones.
 * - §6.6 step 8: "fast open": a CONSISTENT/OPEN server whose advertised
 *   addresses include the client's `remoteAddress` fires one probe at once.
 * - §6.7: which strategy a (local, remote) pair of classes gets, and the
 *   verified address the random strategies need.
 * - §6.5 step 10.2, §6.6 step 9, §8.3: the reference allows one random punch
 *   at a time per DHT instance, and none until `randomPunchInterval` (20 s)
 *   after the last one ended. Ours (by default) bounds what random punches
 *   cost the node instead: punches at once, probes per second summed over
 *   them, and punch sockets held; each punch gets a pace (`PunchPace`) from
 *   what is left. `RandomPunchLimiter.reference()` restores the reference's
 *   rule and pace.
 */
import { FIREWALL_CONSISTENT, FIREWALL_OPEN, FIREWALL_RANDOM, FIREWALL_UNKNOWN } from "../../protocol/connect.js"
import type { IPv4Address } from "../../protocol/encoding.js"

/** The three ways to punch (§6.7). */
export type Strategy = "consistent" | "random-probes" | "birthday"

/** A peer-advertised address; `verified` = the peer echoed our token for this host (§6.3). */
export interface RemoteAddress extends IPv4Address {
  readonly verified: boolean
}

// ---------------------------------------------------------------------------
// Firewall classes
// ---------------------------------------------------------------------------

/** OPEN is punched like CONSISTENT; every other class is unchanged. */
export const coerceFirewall = (firewall: number): number => (firewall === FIREWALL_OPEN ? FIREWALL_CONSISTENT : firewall)

/** CONSISTENT or OPEN: what a socket re-roll must reach, and the fast-open precondition. */
export const isConsistent = (firewall: number): boolean => firewall === FIREWALL_OPEN || firewall === FIREWALL_CONSISTENT

/** Both sides RANDOM (a class above RANDOM counts as RANDOM), or our own class still UNKNOWN. */
export const isUnstable = (local: number, remote: number): boolean =>
  (remote >= FIREWALL_RANDOM && local >= FIREWALL_RANDOM) || local === FIREWALL_UNKNOWN

/** Either side RANDOM: the punch counts against the random-punch limiter. */
export const isRandomPunch = (local: number, remote: number): boolean => local >= FIREWALL_RANDOM || remote >= FIREWALL_RANDOM

/**
 * The strategy for a pair of classes (OPEN coerced to CONSISTENT), or null
 * when none applies: an UNKNOWN side, RANDOM on both sides, or a random
 * strategy without a verified remote address.
 */
export const strategyFor = (local: number, remote: number, hasVerified: boolean): Strategy | null => {
  const l = coerceFirewall(local)
  const r = coerceFirewall(remote)
  if (l === FIREWALL_CONSISTENT && r === FIREWALL_CONSISTENT) return "consistent"
  if (!hasVerified) return null
  if (l === FIREWALL_CONSISTENT && r >= FIREWALL_RANDOM) return "random-probes"
  if (l >= FIREWALL_RANDOM && r === FIREWALL_CONSISTENT) return "birthday"
  return null
}

/** The first verified address (the random strategies' target `V`), or null. */
export const firstVerified = (addresses: ReadonlyArray<RemoteAddress>): RemoteAddress | null => {
  for (const a of addresses) if (a.verified) return a
  return null
}

/**
 * How many of a peer's advertised addresses a punch probes. The list comes
 * from the peer (its holepunch payload or handshake reply), so it could name
 * any number of third parties; an honest peer sends its NAT samples and
 * LAN addresses, a few. With 8, a consistent punch sends a third party the
 * peer did not prove at most 8 x 2 one-byte probes (unverified addresses
 * are probed in 2 of the 10 rounds, as the reference does).
 */
export const MAX_PUNCH_ADDRESSES = 8

/** At most MAX_PUNCH_ADDRESSES addresses, the verified ones first (order kept otherwise); the list itself when short enough. */
export const boundAddresses = (addresses: ReadonlyArray<RemoteAddress>): ReadonlyArray<RemoteAddress> => {
  if (addresses.length <= MAX_PUNCH_ADDRESSES) return addresses
  const out: Array<RemoteAddress> = []
  for (const a of addresses) if (a.verified && out.length < MAX_PUNCH_ADDRESSES) out.push(a)
  for (const a of addresses) if (!a.verified && out.length < MAX_PUNCH_ADDRESSES) out.push(a)
  return out
}

/**
 * The remote address list after a peer update: each advertised address is
 * verified when its host is the one the peer just proved (`verifiedHost`) or
 * was verified in the previous list. At most MAX_PUNCH_ADDRESSES, the
 * verified ones first.
 */
export const withVerified = (
  addresses: ReadonlyArray<IPv4Address> | null,
  verifiedHost: string | null,
  previous: ReadonlyArray<RemoteAddress>
): Array<RemoteAddress> => {
  const out: Array<RemoteAddress> = []
  if (addresses === null) return out
  for (const a of addresses) {
    const verified = a.host === verifiedHost || previous.some((p) => p.verified && p.host === a.host)
    out.push({ host: a.host, port: a.port, verified })
  }
  return boundAddresses(out) as Array<RemoteAddress>
}

/** Fast open (§6.6 step 8): we are CONSISTENT/OPEN and the client opened its NAT toward one of our advertised addresses. */
export const shouldFastOpen = (
  localFirewall: number,
  localAddresses: ReadonlyArray<IPv4Address> | null,
  remoteAddress: IPv4Address | null
): boolean =>
  isConsistent(localFirewall) &&
  remoteAddress !== null &&
  localAddresses !== null &&
  localAddresses.some((a) => a.host === remoteAddress.host && a.port === remoteAddress.port)

/** Bounds of `samplingDelay` (ms). */
export const SAMPLING_DELAY_MIN = 20
export const SAMPLING_DELAY_MAX = 1000

/**
 * How long a client's NAT-sampling pings wait for the server's answer to its
 * first holepunch message before they go out anyway (ms): twice the
 * handshake's round trip through the same relay, within the bounds. They wait
 * because a server's probe that connects us first (a NAT that maps
 * consistently) makes sampling needless, and until then the pings and the
 * DHT nodes' answers would only delay that message and its answer.
 */
export const samplingDelay = (handshakeRoundTrip: number): number =>
  Number.isFinite(handshakeRoundTrip) ? Math.min(SAMPLING_DELAY_MAX, Math.max(SAMPLING_DELAY_MIN, 2 * handshakeRoundTrip)) : SAMPLING_DELAY_MAX

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

/**
 * The peer address sharing the longest dotted prefix with one of ours: a
 * 3-octet match wins at once (local addresses outer, remote inner, first
 * found); otherwise the first 2-octet match, otherwise the first 1-octet
 * match, otherwise null (the client then falls back to the first remote
 * address, the server gives up on the LAN path). Octets compare as text.
 */
export const matchAddress = <A extends { readonly host: string }>(
  localAddresses: ReadonlyArray<{ readonly host: string }>,
  remoteAddresses: ReadonlyArray<A>
): A | null => {
  let best: A | null = null
  let bestOctets = 0
  for (const local of localAddresses) {
    const a = local.host.split(".")
    for (const remote of remoteAddresses) {
      const b = remote.host.split(".")
      if (a[0] !== b[0]) continue
      if (bestOctets < 1) {
        best = remote
        bestOctets = 1
      }
      if (a[1] !== b[1]) continue
      if (bestOctets < 2) {
        best = remote
        bestOctets = 2
      }
      if (a[2] === b[2]) return remote
    }
  }
  return best
}

/** The four octets of a dotted-quad IPv4 address, or null when `host` is not one. */
export const parseIPv4 = (host: string): readonly [number, number, number, number] | null => {
  const parts = host.split(".")
  if (parts.length !== 4) return null
  const o: Array<number> = []
  for (const p of parts) {
    if (!/^[0-9]{1,3}$/.test(p)) return null
    const n = Number(p)
    if (n > 255) return null
    o.push(n)
  }
  return [o[0]!, o[1]!, o[2]!, o[3]!]
}

/**
 * Private-use IPv4: 10/8, 100.64/10 (carrier-grade NAT), 127/8, 169.254/16,
 * 172.16/12, 192.168/16. Not an IPv4 address: false.
 */
export const isPrivate = (host: string): boolean => {
  const ip = parseIPv4(host)
  if (ip === null) return false
  const [a, b] = ip
  return (
    a === 10 ||
    (a === 100 && b >= 64 && b <= 127) ||
    a === 127 ||
    (a === 169 && b === 254) ||
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168)
  )
}

/**
 * Reserved IPv4: 0/8, 192.0.0/24, 192.0.2/24, 198.18/15, 198.51.100/24,
 * 203.0.113/24, 224/4 (multicast), 240/4 and 255.255.255.255. Private ranges
 * are NOT reserved. Anything that is not a dotted-quad IPv4 address counts as
 * reserved (it cannot be dialled as an IPv4 endpoint).
 */
export const isReserved = (host: string): boolean => {
  const ip = parseIPv4(host)
  if (ip === null) return true
  const [a, b, c] = ip
  return (
    a === 0 ||
    (a === 192 && b === 0 && c === 0) ||
    (a === 192 && b === 0 && c === 2) ||
    (a === 198 && (b === 18 || b === 19)) ||
    (a === 198 && b === 51 && c === 100) ||
    (a === 203 && b === 0 && c === 113) ||
    a >= 224
  )
}

/** Private or reserved: not a public Internet address. */
export const isBogon = (host: string): boolean => isPrivate(host) || isReserved(host)

/** The first address that is not a bogon, else `fallback` (§6.5 step 2). */
export const firstPublicAddress = <A extends IPv4Address>(addresses: ReadonlyArray<A>, fallback: A): A => {
  for (const a of addresses) if (!isBogon(a.host)) return a
  return fallback
}

// ---------------------------------------------------------------------------
// Punch pace
// ---------------------------------------------------------------------------

/** A run of `probes` probes, `burst` at a time, one burst every `every` ms. */
export interface PunchPhase {
  readonly probes: number
  readonly every: number
  readonly burst: number
}

/**
 * How fast a random strategy probes (random probes from our one socket, or
 * the birthday strategy's cycle over its sockets), phase after phase, and
 * how many sockets the birthday strategy opens (ours included).
 */
export interface PunchPace {
  readonly phases: ReadonlyArray<PunchPhase>
  readonly sockets: number
}

/** The reference (§6.7): 1750 probes 20 ms apart, 256 birthday sockets. */
export const REFERENCE_PACE: PunchPace = { phases: [{ probes: 1750, every: 20, burst: 1 }], sockets: 256 }

/**
 * Ours: the 1750 probes at 2000 per second (10 every 5 ms) — with 256
 * birthday sockets a probe hits with p = 256/65536, so half the punches
 * connect within 174 probes (~90 ms) and 98% within 1024 (~0.5 s) — then 300
 * probes 100 ms apart, so the punch stays up as long as the reference's (its
 * birthday sockets' TTL-64 cycle reaches us through the ports we probed
 * before they were open).
 */
export const FAST_PACE: PunchPace = {
  phases: [{ probes: 1750, every: 5, burst: 10 }, { probes: 300, every: 100, burst: 1 }],
  sockets: 256
}

/** Probes per second of a phase. */
export const phaseRate = (p: PunchPhase): number => (p.burst * 1000) / p.every

/** The highest rate of a pace (its first phase's, normally). */
export const paceRate = (pace: PunchPace): number => pace.phases.reduce((m, p) => Math.max(m, phaseRate(p)), 0)

/** `pace` with no phase faster than `rate` probes per second (bursts shrink first, then the spacing grows). */
export const capPace = (pace: PunchPace, rate: number): PunchPace => ({
  sockets: pace.sockets,
  phases: pace.phases.map((p) => {
    if (phaseRate(p) <= rate) return p
    const burst = Math.floor((rate * p.every) / 1000)
    return burst >= 1 ? { ...p, burst } : { ...p, burst: 1, every: Math.ceil(1000 / rate) }
  })
})

// ---------------------------------------------------------------------------
// Random-punch limiter
// ---------------------------------------------------------------------------

export interface RandomPunchLimiterOptions {
  /** Minimum time between the end of one random punch and the start of the next (ms). Default 0 (the reference: 20 000). */
  readonly interval?: number
  /** Random punches allowed at once. Default 8 (the reference: 1). */
  readonly limit?: number
  /** Probes per second summed over the running random punches. Default 8000 (four punches at full pace). */
  readonly maxProbeRate?: number
  /** Punch sockets summed over the running random punches. Default 1024 (four birthday punches). */
  readonly maxSockets?: number
  /** The pace of a punch when the budget allows it in full. Default `FAST_PACE`. */
  readonly pace?: PunchPace
}

/** A random punch's share of the node's budget: its pace and what it holds (until `release`). */
export interface RandomPunchGrant {
  readonly pace: PunchPace
  /** Probes per second reserved (lowered with `lower` when the punch slows down). */
  rate: number
  /** Sockets reserved (the birthday strategy's, else 1). */
  readonly sockets: number
  released: boolean
}

/** Below this a punch is not started (the reference's 20 ms spacing). */
export const MIN_PROBE_RATE = 50
/** A birthday punch needs at least this many sockets to be worth starting. */
export const MIN_BIRTHDAY_SOCKETS = 64

/**
 * One per DHT instance. A random punch holds a grant from the moment the
 * dial (or the server) commits to it until the puncher connects or is
 * destroyed (`release`, which starts the interval). A commit whose request
 * fails before any punching started gives the grant back with `abandon`
 * (no interval), as the reference does.
 *
 * A grant is refused when `limit` punches run, when the last one ended
 * less than `interval` ago, when less than `MIN_PROBE_RATE` of
 * `maxProbeRate` is left, or (birthday) when fewer than
 * `MIN_BIRTHDAY_SOCKETS` of `maxSockets` are left; otherwise the punch gets
 * `pace` capped to the probe rate left and the sockets left. The running
 * punches together never exceed `maxProbeRate` nor `maxSockets`.
 */
export class RandomPunchLimiter {
  readonly interval: number
  readonly limit: number
  readonly maxProbeRate: number
  readonly maxSockets: number
  readonly pace: PunchPace
  private readonly grants = new Set<RandomPunchGrant>()
  /** -Infinity: no random punch ended yet (a virtual clock may start at 0). */
  private endedAt = Number.NEGATIVE_INFINITY

  constructor(options: RandomPunchLimiterOptions = {}) {
    this.interval = options.interval ?? 0
    this.limit = options.limit ?? 8
    this.maxProbeRate = options.maxProbeRate ?? 8000
    this.maxSockets = options.maxSockets ?? 1024
    this.pace = options.pace ?? FAST_PACE
  }

  /** The reference's rule (§6.5 step 10.2): one at a time, `interval` (20 s) apart, at the reference's pace. */
  static reference(interval = 20_000): RandomPunchLimiter {
    return new RandomPunchLimiter({ interval, limit: 1, maxProbeRate: Infinity, maxSockets: Infinity, pace: REFERENCE_PACE })
  }

  /** Random punches holding a grant. */
  get active(): number {
    return this.grants.size
  }

  /** Probes per second reserved by the running punches. */
  get probeRate(): number {
    let r = 0
    for (const g of this.grants) r += g.rate
    return r
  }

  /** Sockets reserved by the running punches. */
  get sockets(): number {
    let n = 0
    for (const g of this.grants) n += g.sockets
    return n
  }

  /** When the last random punch ended (or was deferred), -Infinity if never. */
  get lastEnded(): number {
    return this.endedAt
  }

  /** A random punch (a birthday one when `birthday`) may not start now. */
  isLimited(now: number, birthday = false): boolean {
    if (this.grants.size >= this.limit || now - this.endedAt < this.interval) return true
    if (this.maxProbeRate - this.probeRate < MIN_PROBE_RATE) return true
    return birthday && this.maxSockets - this.sockets < Math.min(MIN_BIRTHDAY_SOCKETS, this.pace.sockets)
  }

  /** When a random punch could start if no grant were held (the end of the interval). */
  readyAt(): number {
    return this.endedAt + this.interval
  }

  /** A grant for a random punch (`birthday`: ours is the birthday strategy), or null when limited. */
  acquire(now: number, birthday = false): RandomPunchGrant | null {
    if (this.isLimited(now, birthday)) return null
    const pace0 = birthday ? { ...this.pace, sockets: Math.min(this.pace.sockets, this.maxSockets - this.sockets) } : this.pace
    const pace = capPace(pace0, this.maxProbeRate - this.probeRate)
    const grant: RandomPunchGrant = { pace, rate: paceRate(pace), sockets: birthday ? pace.sockets : 1, released: false }
    this.grants.add(grant)
    return grant
  }

  /** Take a grant if not limited (true when taken); `release`/`abandon` without a grant give back the oldest. */
  tryAcquire(now: number): boolean {
    return this.acquire(now) !== null
  }

  /** The punch slowed down to `rate` probes per second: the rest of its reservation goes back to the budget. */
  lower(grant: RandomPunchGrant, rate: number): void {
    if (!grant.released && rate < grant.rate) grant.rate = rate
  }

  /** The random punch ended (connected, exhausted or destroyed): free its grant and start the interval. */
  release(now: number, grant?: RandomPunchGrant): void {
    this.drop(grant)
    if (now > this.endedAt) this.endedAt = now
  }

  /** Give a grant back without starting the interval (the commit failed before punching). */
  abandon(grant?: RandomPunchGrant): void {
    this.drop(grant)
  }

  /** Count `now` as the end of a random punch ("defer random punches" on start and resume). */
  defer(now: number): void {
    if (now > this.endedAt) this.endedAt = now
  }

  private drop(grant: RandomPunchGrant | undefined): void {
    const g = grant ?? this.grants.values().next().value
    if (g === undefined || g.released) return
    g.released = true
    this.grants.delete(g)
  }
}
