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
 * - §6.5 step 10.2, §6.6 step 9, §8.3: at most one random punch at a time per
 *   DHT instance, and none until `randomPunchInterval` (20 s) after the last
 *   one ended.
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
 * The remote address list after a peer update: each advertised address is
 * verified when its host is the one the peer just proved (`verifiedHost`) or
 * was verified in the previous list.
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
  return out
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
// Random-punch limiter
// ---------------------------------------------------------------------------

export interface RandomPunchLimiterOptions {
  /** Minimum time between the end of one random punch and the start of the next (ms). Default 20 000. */
  readonly interval?: number
  /** Random punches allowed at once. Default 1. */
  readonly limit?: number
}

/**
 * One per DHT instance. A random punch holds a slot from the moment the dial
 * commits to it (before the punching update is sent) until the puncher
 * connects or is destroyed (`release`, which starts the interval). A commit
 * whose request fails before any punching started gives the slot back with
 * `abandon` (no interval), as the reference does.
 */
export class RandomPunchLimiter {
  readonly interval: number
  readonly limit: number
  private activeCount = 0
  /** -Infinity: no random punch ended yet (a virtual clock may start at 0). */
  private endedAt = Number.NEGATIVE_INFINITY

  constructor(options: RandomPunchLimiterOptions = {}) {
    this.interval = options.interval ?? 20_000
    this.limit = options.limit ?? 1
  }

  /** Random punches holding a slot. */
  get active(): number {
    return this.activeCount
  }

  /** When the last random punch ended (or was deferred), -Infinity if never. */
  get lastEnded(): number {
    return this.endedAt
  }

  /** A random punch may not start now. */
  isLimited(now: number): boolean {
    return this.activeCount >= this.limit || now - this.endedAt < this.interval
  }

  /** When a random punch could start if no slot were held (the end of the interval). */
  readyAt(): number {
    return this.endedAt + this.interval
  }

  /** Take a slot if not limited. */
  tryAcquire(now: number): boolean {
    if (this.isLimited(now)) return false
    this.activeCount++
    return true
  }

  /** The random punch ended (connected, exhausted or destroyed): free the slot and start the interval. */
  release(now: number): void {
    if (this.activeCount > 0) this.activeCount--
    if (now > this.endedAt) this.endedAt = now
  }

  /** Give a slot back without starting the interval (the commit failed before punching). */
  abandon(): void {
    if (this.activeCount > 0) this.activeCount--
  }

  /** Count `now` as the end of a random punch ("defer random punches" on start and resume). */
  defer(now: number): void {
    if (now > this.endedAt) this.endedAt = now
  }
}
