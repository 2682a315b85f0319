/**
 * Omega: a pure-TypeScript, Effect-native HyperDHT / Hyperswarm stack.
 *
 * The default export is the promise facade `Gateway`. Effect users compose
 * the services and use the protocol modules directly.
 */
import { Gateway } from "./api/Gateway.js"

export { Gateway, InvalidSeed, type GatewayKeyPair, type GatewayOptions } from "./api/Gateway.js"
export { InvalidInput, keyPair, keyPairWith } from "./api/keys.js"
export { Crypto } from "./layers/Crypto.js"
export type { CryptoImpl, KeyPair } from "./layers/crypto/types.js"
export * as Derive from "./layers/crypto/derive.js"
export * as Noise from "./layers/crypto/noise.js"
export * as Encoding from "./protocol/encoding.js"
export default Gateway
