/**
 * Flock's typed errors. Each carries the reference's message (hyperswarm's
 * texts, which applications match on) and a `code` in hyperdht's style.
 */
import * as Data from "effect/Data"
import type { DestroyReason } from "./swarm.js"

export type FlockErrorReason =
  /** The Flock was destroyed (`Swarm destroyed`). */
  | "destroyed"
  /** A topic that is not 32 bytes. */
  | "invalid-topic"
  /** A handle or discovery used after its destroy (`PeerDiscovery is destroyed`). */
  | "discovery-destroyed"
  /** A refresh with neither client nor server mode. */
  | "no-mode"
  /** An actor of the Flock failed (a defect): the Flock closed itself. */
  | "actor-failed"
  /** An argument of the wrong shape. */
  | "invalid-argument"
  /** An application event listener threw (the Flock carries on). */
  | "listener-failed"

const MESSAGES: Record<FlockErrorReason, string> = {
  "destroyed": "Swarm destroyed",
  "invalid-topic": "Topic is required and must be a 32-byte buffer",
  "discovery-destroyed": "PeerDiscovery is destroyed",
  "no-mode": "Cannot refresh with neither client nor server option",
  "actor-failed": "A Flock actor failed",
  "invalid-argument": "Invalid argument",
  "listener-failed": "An event listener threw"
}

const CODES: Record<FlockErrorReason, string> = {
  "destroyed": "SWARM_DESTROYED",
  "invalid-topic": "INVALID_TOPIC",
  "discovery-destroyed": "DISCOVERY_DESTROYED",
  "no-mode": "NO_MODE",
  "actor-failed": "ACTOR_FAILED",
  "invalid-argument": "INVALID_ARGUMENT",
  "listener-failed": "LISTENER_FAILED"
}

export class FlockError extends Data.TaggedError("FlockError")<{
  readonly reason: FlockErrorReason
  readonly detail?: string | undefined
  readonly cause?: unknown
}> {
  override get name(): string {
    return "FlockError"
  }
  override get message(): string {
    return this.detail === undefined ? MESSAGES[this.reason] : `${MESSAGES[this.reason]}: ${this.detail}`
  }
  get code(): string {
    return CODES[this.reason]
  }
}

const CLOSE_MESSAGES: Record<DestroyReason, string> = {
  "duplicate": "Duplicate connection",
  "destroyed": "Swarm has been destroyed",
  "suspended": "Swarm has been suspended",
  "server-limit": "Too many inbound connections",
  "left-topic": "Left the topic this connection was for",
  "self": "Connection to self"
}

const CLOSE_CODES: Record<DestroyReason, string> = {
  "duplicate": "DUPLICATE_CONNECTION",
  "destroyed": "SWARM_DESTROYED",
  "suspended": "SWARM_SUSPENDED",
  "server-limit": "MAX_SERVER_CONNECTIONS",
  "left-topic": "TOPIC_LEFT",
  "self": "SELF_CONNECTION"
}

/** Why the Flock closed a connection (the reference destroys with a bare string: §15.2 #11). */
export class ConnectionClosedByFlock extends Data.TaggedError("ConnectionClosedByFlock")<{
  readonly reason: DestroyReason
}> {
  override get name(): string {
    return "ConnectionClosedByFlock"
  }
  override get message(): string {
    return CLOSE_MESSAGES[this.reason]
  }
  get code(): string {
    return CLOSE_CODES[this.reason]
  }
}

/** The error `ban (peerInfo, error)` carries for a firewall ban. */
export class PeerFirewalled extends Data.TaggedError("PeerFirewalled")<{ readonly manual: boolean }> {
  override get name(): string {
    return "PeerFirewalled"
  }
  override get message(): string {
    return this.manual ? "Peer was banned" : "Peer is firewalled"
  }
  get code(): string {
    return this.manual ? "PEER_BANNED" : "PEER_FIREWALLED"
  }
}
