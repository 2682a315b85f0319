/**
 * `@omegajs/gateway/effect`: the Effect face. A node is the `Gateway`
 * service, built from Layers (crypto, UDP transport or a simulated network,
 * clock, bootstrap configuration, DNS); its lookups and announces are
 * Streams; every failure is a tagged error (`catchTag`), the same classes
 * the promise facade throws.
 *
 *   import { Gateway } from "@omegajs/gateway/effect"
 *
 *   const program = Effect.gen(function*() {
 *     const gateway = yield* Gateway
 *     yield* gateway.ready
 *     const keyPair = yield* gateway.keyPair()
 *     yield* gateway.announce(topic, keyPair).pipe(Stream.runDrain)
 *   }).pipe(Effect.provide(Gateway.layer({ bootstrap: ["127.0.0.1:49737"] })))
 *
 * `keyPair` and `hash` here are Effects (on the `Crypto` in context); the
 * package root's are plain functions, as `Gateway.keyPair` of the facade is.
 */
export {
  Gateway,
  type GatewayApi,
  type GatewayLayerOptions,
  type GatewayOptions,
  type GatewayRelay,
  type GatewayStartError,
  hash,
  keyPair
} from "./api/EffectGateway.js"
export { Flock, type FlockApi, type FlockConnection, type FlockServiceOptions, type TopicJoin } from "./api/FlockService.js"
export { Bootstrap, type BootstrapConfig, type BootstrapEntry, type BootstrapNode } from "./api/Bootstrap.js"
export { type BootstrapInfo, type BootstrapState, defaultBootstrap, type GatewayHandle, type NodeStatus, type QueryReply } from "./api/GatewayService.js"
export * as Connections from "./api/connections.js"
export type {
  AnnounceOptions,
  FindPeerResult,
  ImmutableGetResult,
  ImmutablePutResult,
  LookupResult,
  MutableGetResult,
  MutablePutResult,
  Peer,
  WriteOutcome,
  WriteSummary
} from "./api/records.js"
export type { QueryOptions } from "./actors/routing/query.js"
export type { DhtEvent } from "./actors/routing/node.js"
export type { ConnectOptions } from "./actors/holepunch/dial.js"
export * from "./api/errors.js"

// layers
export { Crypto } from "./layers/Crypto.js"
export type { CryptoImpl, KeyPair } from "./layers/crypto/types.js"
export { Transport } from "./layers/Transport.js"
export { UdpTransport, type UdpTransportOptions } from "./layers/transport/udp.js"
export { SimNetwork, type SimHostOptions, type SimNetworkOptions } from "./layers/transport/sim.js"
export { VirtualClock } from "./layers/VirtualClock.js"
export * as NodeDns from "./layers/node/NodeDns.js"

// protocol modules
export * as Derive from "./layers/crypto/derive.js"
export * as Noise from "./layers/crypto/noise.js"
export * as Encoding from "./protocol/encoding.js"
