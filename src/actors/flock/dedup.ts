/**
 * The duplicate-connection rule (spec: flock.md §10). Pure functions.
 *
 * A duplicate only shows up on the accepting side: an outbound dial is
 * refused while any connection to the key exists, and is registered the
 * moment it starts. When an inbound connection arrives for a key that
 * already has one:
 *
 * 1. the existing one is stale if it has both read and written at least one
 *    raw byte (it was established, so the remote lost it and is redialling):
 *    keep the new one;
 * 2. otherwise tie-break by keys: keep the new inbound connection iff the
 *    remote's key is the larger (bytewise). Both ends apply the same rule,
 *    so both keep the connection dialled by the peer with the larger key.
 *
 * Keeping the existing one: send it a keep-alive (flushes out a dead path
 * fast) and destroy the new one with `Duplicate connection`. Keeping the
 * new one: destroy the existing one, hold the new one aside and accept it
 * once the existing one's close has been processed (the swarm core does
 * this bookkeeping).
 */

/** Bytewise comparison: negative, 0 or positive (a shorter prefix sorts first). */
export const compareKeys = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!
    if (d !== 0) return d
  }
  return a.length - b.length
}

/** We are the side expected to initiate the surviving connection: our key is the larger. */
export const isExpectedInitiator = (localKey: Uint8Array, remoteKey: Uint8Array): boolean => compareKeys(localKey, remoteKey) > 0

/** A connection that has read and written at least one raw byte (established). */
export const isStale = (traffic: { readonly rawBytesRead: number; readonly rawBytesWritten: number }): boolean =>
  traffic.rawBytesRead > 0 && traffic.rawBytesWritten > 0

export interface DuplicateInput {
  readonly localKey: Uint8Array
  readonly remoteKey: Uint8Array
  /** The existing connection read and wrote at least one byte. */
  readonly existingStale: boolean
  /** The new connection is ours (always false on the accepting side). */
  readonly newIsInitiator?: boolean | undefined
}

/** Keep the new connection (destroy the existing one) rather than the existing one. */
export const keepNewConnection = (input: DuplicateInput): boolean =>
  input.existingStale || isExpectedInitiator(input.localKey, input.remoteKey) === (input.newIsInitiator ?? false)

/** The key whose dial survives a simultaneous dial (no stale connection): the larger one. */
export const survivingDialer = (a: Uint8Array, b: Uint8Array): Uint8Array => (compareKeys(a, b) > 0 ? a : b)
