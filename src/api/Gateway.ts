/**
 * The promise facade for plain TypeScript users, shaped like the seed API
 * (hyperdht's `new DHT(opts)`, `DHT.keyPair(seed)`, `DHT.hash(data)`).
 *
 * The DHT node itself (bootstrap, queries, records, connections) grows here
 * in later work; for now the facade holds the key material a node starts
 * with, exactly as the reference derives it.
 */
import { Result } from "effect"
import type { KeyPair } from "../layers/crypto/types.js"
import { facadeCrypto, hashWith, InvalidSeed, keyPairWith } from "./keys.js"

export interface GatewayKeyPair {
  readonly publicKey: Buffer
  readonly secretKey: Buffer
}

export interface GatewayOptions {
  /** The node's default key pair (server identity, connect identity). */
  readonly keyPair?: KeyPair
  /** Derive the default key pair from this 32-byte seed. */
  readonly seed?: Uint8Array
}

const asBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength)

export class Gateway {
  /** The default key pair: `opts.keyPair`, else `keyPair(opts.seed)`, else random (as the reference). */
  readonly defaultKeyPair: GatewayKeyPair

  /** @throws InvalidSeed when `opts.seed` is not 32 bytes. */
  constructor(opts: GatewayOptions = {}) {
    if (opts.keyPair !== undefined) {
      this.defaultKeyPair = { publicKey: asBuffer(opts.keyPair.publicKey), secretKey: asBuffer(opts.keyPair.secretKey) }
    } else {
      this.defaultKeyPair = Gateway.keyPair(opts.seed)
    }
  }

  /**
   * Ed25519 key pair; with a 32-byte seed it is identical to hyperdht's
   * `keyPair(seed)` (`secretKey` = seed || publicKey). Random without a seed.
   * @throws InvalidSeed (a tagged error) when the seed is not 32 bytes.
   */
  static keyPair(seed?: Uint8Array): GatewayKeyPair {
    const r = keyPairWith(facadeCrypto, seed)
    if (Result.isFailure(r)) throw r.failure
    return { publicKey: asBuffer(r.success.publicKey), secretKey: asBuffer(r.success.secretKey) }
  }

  /** BLAKE2b-256 of `data`, as hyperdht's `hash`. */
  static hash(data: Uint8Array): Buffer {
    const r = hashWith(facadeCrypto, data)
    if (Result.isFailure(r)) throw r.failure
    return asBuffer(r.success)
  }
}

export { InvalidSeed }
export default Gateway
