/**
 * Omega: a pure-TypeScript, Effect-native HyperDHT / Hyperswarm stack.
 *
 * The default export is the promise facade `Gateway`. Effect users compose
 * the services and use the protocol modules directly.
 */
import { Gateway } from "./api/Gateway.js"

export {
  Gateway,
  GatewayServer,
  GatewaySocket,
  InvalidSeed,
  type GatewayConnectOptions,
  type GatewayKeyPair,
  type GatewayOptions,
  type GatewayStats,
  type RemoteKey
} from "./api/Gateway.js"
export type { ServerOptions } from "./api/server.js"
export { ConnectionError, type ConnectionErrorCode, type DialReport } from "./actors/holepunch/errors.js"
export * as Connections from "./api/connections.js"
export { GatewayService } from "./api/GatewayService.js"
export { InvalidInput, keyPair, keyPairWith } from "./api/keys.js"
export { Crypto } from "./layers/Crypto.js"
export type { CryptoImpl, KeyPair } from "./layers/crypto/types.js"
export * as Derive from "./layers/crypto/derive.js"
export * as Noise from "./layers/crypto/noise.js"
export * as Encoding from "./protocol/encoding.js"
export default Gateway
