/**
 * What a Flock needs from its DHT (flock.md §2): the subset of hyperdht's
 * public API the swarm calls, by hyperdht's names. Omega's `Gateway`
 * facade implements it, and so does the reference `hyperdht` (a user may
 * hand either to `new Flock({ dht })`); tests use an in-memory double.
 *
 * Everything here is the promise / event-emitter shape on purpose: the
 * Flock actors call it from Effect (`Effect.promise`, `Stream` over the
 * async iterables) and never rely on anything Omega-specific, so the same
 * actors run over any hyperdht-compatible node.
 */
import type { Duplex } from "node:stream"

export interface FlockKeyPair {
  readonly publicKey: Uint8Array
  readonly secretKey: Uint8Array
}

export interface FlockAddress {
  readonly host: string
  readonly port: number
}

/** An encrypted connection (NoiseSecretStream shape, §2 "Connection stream contract"). */
export interface FlockSocket extends Duplex {
  readonly publicKey: Uint8Array
  readonly remotePublicKey: Uint8Array | null
  readonly isInitiator: boolean
  readonly rawBytesRead?: number
  readonly rawBytesWritten?: number
  sendKeepAlive?(): void
  /** Omega sockets say how they got through (direct / lan / punched / relayed). */
  readonly path?: string
}

/** A node's server for our key pair (hyperdht `createServer`). */
export interface FlockServer {
  listen(keyPair: FlockKeyPair): Promise<unknown>
  close(): Promise<unknown>
  suspend?(opts?: unknown): Promise<unknown> | unknown
  resume?(): Promise<unknown> | unknown
  /** The DHT nodes holding our own-key announcement (empty until listening). */
  readonly relayAddresses?: ReadonlyArray<FlockAddress>
}

export interface FlockServerOptions {
  /** Truthy (or a promise of it) rejects the handshake. */
  readonly firewall: (remotePublicKey: Uint8Array, remotePayload: unknown, clientAddress: unknown) => boolean | Promise<boolean>
  /** A relay per handshake, or `'auto'` (an Omega DHT finds one itself; see src/api/relays.ts). */
  readonly relayThrough?: (() => Uint8Array | null) | "auto" | undefined
  readonly handshakeClearWait?: number | undefined
}

/** One reply of a LOOKUP-like query. */
export interface FlockQueryReply {
  readonly peers: ReadonlyArray<{ readonly publicKey: Uint8Array; readonly relayAddresses: ReadonlyArray<FlockAddress> }>
}

/** A running query: an async iterable of replies (hyperdht's query stream). */
export interface FlockQuery extends AsyncIterable<FlockQueryReply> {
  /** The closest nodes answered (complete once the query finished). */
  readonly closestNodes?: ClosestNodes | null
  destroy(): void
  finished?(): Promise<unknown>
}

export type ClosestNodes = ReadonlyArray<{ readonly host: string; readonly port: number; readonly id?: Uint8Array | null | undefined }>

export interface FlockDht {
  connect(
    publicKey: Uint8Array,
    opts: { readonly keyPair: FlockKeyPair; readonly relayAddresses?: ReadonlyArray<FlockAddress> | undefined; readonly relayThrough?: Uint8Array | "auto" | null | undefined }
  ): FlockSocket
  createServer(opts: FlockServerOptions, onconnection: (socket: FlockSocket) => void): FlockServer
  announce(topic: Uint8Array, keyPair: FlockKeyPair, relayAddresses: ReadonlyArray<FlockAddress>, opts: { readonly clear?: boolean; readonly closestNodes?: ClosestNodes | undefined }): FlockQuery
  lookup(topic: Uint8Array, opts: { readonly closestNodes?: ClosestNodes | undefined }): FlockQuery
  /** hyperdht has it; a DHT without it gets a lookup followed by an unannounce. */
  lookupAndUnannounce?(topic: Uint8Array, keyPair: FlockKeyPair, opts: { readonly closestNodes?: ClosestNodes | undefined }): FlockQuery
  unannounce(topic: Uint8Array, keyPair: FlockKeyPair, opts?: { readonly closestNodes?: ClosestNodes | undefined; readonly onlyClosestNodes?: boolean; readonly force?: boolean }): Promise<unknown>
  readonly online?: boolean
  readonly randomized?: boolean
  on(event: "network-change" | "network-update", listener: (...args: Array<unknown>) => void): unknown
  off(event: "network-change" | "network-update", listener: (...args: Array<unknown>) => void): unknown
  suspend?(opts?: unknown): Promise<unknown> | unknown
  resume?(opts?: unknown): Promise<unknown> | unknown
  destroy(opts?: { readonly force?: boolean }): Promise<unknown>
  ready?(): Promise<unknown>
}
