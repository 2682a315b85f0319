/**
 * The Flock entry (`@omegajs/gateway/flock`, re-exported by the
 * `@omegajs/flock` package): the topic swarm with Hyperswarm's API.
 *
 *   import Flock from '@omegajs/flock'
 *   const flock = new Flock()
 */
import { Flock } from "./api/flock.js"

export { FlockError, PeerFirewalled } from "./actors/flock/errors.js"
export type { FlockDht, FlockSocket } from "./actors/flock/dht-contract.js"
export type { PeerInfo } from "./actors/flock/peer-info.js"
export { Flock, type FlockOptions, PeerDiscovery, TopicStatus } from "./api/flock.js"
export default Flock
