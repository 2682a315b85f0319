/**
 * NAT sampler (spec: dht-rpc.md §11.3): estimates our public host and port
 * from the `to` addresses peers report back to us.
 *
 * A 32-slot ring holds interleaved pairs: a full sample (host, port) at even
 * positions and a host-only sample (host, 0) at odd positions. A sample
 * object is shared by every slot it was bumped into; its `hits` count goes up
 * on a bump and down when one of its slots is overwritten.
 */

interface Sample {
  readonly host: string
  readonly port: number
  hits: number
}

const RING = 32
const LOOKBACK = 4

export class NatSampler {
  /** Estimated public host, or null while unknown. */
  host: string | null = null
  /** Estimated public port; 0 when unknown or when only the host is consistent (randomized NAT). */
  port = 0
  /** Sample pairs added while the ring was filling (at most 16). */
  size = 0

  private a: Sample | null = null
  private b: Sample | null = null
  private thresholdValue = 0
  private top = 0
  private readonly samples: Array<Sample> = []

  /** Hits needed by the best sample for it to be believed. */
  get threshold(): number {
    return this.thresholdValue
  }

  /** Record one report of our address; returns the hits of its full (host, port) sample. */
  add(host: string, port: number): number {
    const a = this.bump(host, port, 2)
    const b = this.bump(host, 0, 1)

    if (this.samples.length < RING) {
      this.size++
      const s = this.size
      this.thresholdValue = s - (s < 4 ? 0 : s < 8 ? 1 : s < 12 ? 2 : 3)
      this.samples.push(a, b)
      this.top += 2
    } else {
      if (this.top === RING) this.top = 0
      const oa = this.samples[this.top]!
      this.samples[this.top++] = a
      oa.hits--
      const ob = this.samples[this.top]!
      this.samples[this.top++] = b
      ob.hits--
    }

    if (this.a === null || this.a.hits < a.hits) this.a = a
    if (this.b === null || this.b.hits < b.hits) this.b = b

    if (this.a.hits >= this.thresholdValue) {
      this.host = this.a.host
      this.port = this.a.port
    } else if (this.b.hits >= this.thresholdValue) {
      this.host = this.b.host
      this.port = 0
    } else {
      this.host = null
      this.port = 0
    }
    return a.hits
  }

  /**
   * Look back over the previous LOOKBACK slots of the same kind (`back` = 2
   * for full samples, 1 for host-only ones) for an equal sample and bump it;
   * stop at the first empty slot. Otherwise start a new sample.
   */
  private bump(host: string, port: number, back: number): Sample {
    for (let i = 0; i < LOOKBACK; i++) {
      const j = (this.top - back - 2 * i) & (RING - 1)
      if (j >= this.samples.length) break
      const s = this.samples[j]!
      if (s.port === port && s.host === host) {
        s.hits++
        return s
      }
    }
    return { host, port, hits: 1 }
  }
}
