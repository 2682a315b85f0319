/**
 * Seeded xorshift32 randomness for deterministic simulations and tests (not
 * for secrets: keys and tokens come from the Crypto service).
 */

/** A stream of uint32 values from a 32-bit seed (0 is replaced by a fixed non-zero seed). */
export const xorshift32 = (seed: number): (() => number) => {
  let s = seed >>> 0 || 0x9e3779b9
  return () => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s
  }
}

/** Uniform floats in [0, 1) from a seed. */
export const seededRandom = (seed: number): (() => number) => {
  const next = xorshift32(seed)
  return () => next() / 4294967296
}

/** `n` deterministic pseudo-random bytes (test payloads). */
export const patternBytes = (n: number, seed = 1): Uint8Array => {
  const next = xorshift32(seed)
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = next() & 0xff
  return b
}
