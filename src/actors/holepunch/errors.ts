/**
 * Typed errors of connections between public keys. Each carries the
 * reference's `code` string (hyperdht `lib/errors.js`), so code written
 * against hyperdht that checks `err.code` keeps working, and a `_tag` for
 * Effect users. A failed dial also says what was tried (`report`): hyperdht
 * reports most of these as an opaque HOLEPUNCH_ABORTED.
 *
 * A defect (an exception: a bug) inside a unit of connection work keeps the
 * closest code the reference has, so code that checks `err.code` needs no
 * new case, and carries the exception as `cause` (the detail says
 * "defect"): HOLEPUNCH_ABORTED when a holepunch attempt fails
 * (attempt.ts), PEER_CONNECTION_FAILED when the dial itself does (dial.ts).
 * An open connection's stream failing with a defect closes its socket with
 * the stream's own typed error (`StreamDefect`, or `RawStreamFailed`
 * around a `UdxError` EDEFECT); the Effect face reports it as a
 * PEER_CONNECTION_FAILED with that error as `cause`.
 */
import * as Data from "effect/Data"

export type ConnectionErrorCode =
  | "PEER_NOT_FOUND"
  | "PEER_CONNECTION_FAILED"
  | "BAD_HANDSHAKE_REPLY"
  | "BAD_HOLEPUNCH_REPLY"
  | "SERVER_INCOMPATIBLE"
  | "SERVER_ERROR"
  | "HANDSHAKE_INVALID"
  | "CANNOT_HOLEPUNCH"
  | "HOLEPUNCH_ABORTED"
  | "HOLEPUNCH_INVALID"
  | "HOLEPUNCH_PROBE_TIMEOUT"
  | "HOLEPUNCH_DOUBLE_RANDOMIZED_NATS"
  | "REMOTE_ABORTED"
  | "REMOTE_NOT_HOLEPUNCHING"
  | "REMOTE_NOT_HOLEPUNCHABLE"
  | "RELAY_ABORTED"
  | "SUSPENDED"
  | "ALREADY_LISTENING"
  | "KEYPAIR_ALREADY_USED"
  | "NODE_DESTROYED"
  | "SERVER_CLOSED"
  | "INVALID_ARGUMENT"
  | "DUPLICATE_CONNECTION"

/** One path a dial tried and how it ended. */
export interface PathAttempt {
  /** "handshake" (through a relay node), "direct", "lan", "punch:<strategy>", "relay". */
  readonly path: string
  /** The node or address it went through. */
  readonly via?: string
  readonly outcome: string
}

/** What a dial knew and tried when it ended (connect.md §8.1, beyond the reference's errors). */
export interface DialReport {
  readonly localFirewall: number
  readonly remoteFirewall: number | null
  readonly relaysTried: number
  readonly attempts: ReadonlyArray<PathAttempt>
}

export class ConnectionError extends Data.TaggedError("ConnectionError")<{
  readonly code: ConnectionErrorCode
  readonly detail: string
  readonly report?: DialReport
  /** The underlying typed error (a UDX or secret-stream error, a defect's cause), when there is one. */
  readonly cause?: unknown
}> {
  override get message(): string {
    return `${this.code}: ${this.detail}`
  }
}

const DETAILS: Record<ConnectionErrorCode, string> = {
  PEER_NOT_FOUND: "Peer not found",
  PEER_CONNECTION_FAILED: "Failed to connect to peer",
  BAD_HANDSHAKE_REPLY: "Bad handshake reply",
  BAD_HOLEPUNCH_REPLY: "Bad holepunch reply",
  SERVER_INCOMPATIBLE: "Server is using an incompatible version",
  SERVER_ERROR: "Server returned an error",
  HANDSHAKE_INVALID: "Invalid handshake",
  CANNOT_HOLEPUNCH: "Cannot holepunch to remote",
  HOLEPUNCH_ABORTED: "Holepunch aborted",
  HOLEPUNCH_INVALID: "Invalid holepunch payload",
  HOLEPUNCH_PROBE_TIMEOUT: "Holepunching probe did not finish in time",
  HOLEPUNCH_DOUBLE_RANDOMIZED_NATS: "Both remote and local NATs are randomized",
  REMOTE_ABORTED: "Remote aborted",
  REMOTE_NOT_HOLEPUNCHING: "Remote is not holepunching",
  REMOTE_NOT_HOLEPUNCHABLE: "Remote is not holepunchable",
  RELAY_ABORTED: "Relay aborted",
  SUSPENDED: "Suspended",
  ALREADY_LISTENING: "Already listening",
  KEYPAIR_ALREADY_USED: "Keypair already used",
  NODE_DESTROYED: "Node destroyed",
  SERVER_CLOSED: "Server closed",
  INVALID_ARGUMENT: "Invalid argument",
  DUPLICATE_CONNECTION: "Duplicate connection"
}

/** The error for `code`, with the reference's message unless `detail` says more. */
export const connectionError = (code: ConnectionErrorCode, detail?: string, report?: DialReport, cause?: unknown): ConnectionError =>
  new ConnectionError({
    code,
    detail: detail ?? DETAILS[code],
    ...(report !== undefined ? { report } : {}),
    ...(cause !== undefined ? { cause } : {})
  })
