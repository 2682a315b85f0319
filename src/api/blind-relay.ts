/**
 * The promise face of blind relaying (connect.md §6.8), shaped like the
 * reference's `blind-relay` package run on a hyperdht node:
 *
 *   const relay = new BlindRelayServer(node)
 *   const server = await relay.listen(keyPair)      // a server whose every connection is a relay session
 *   // or, with a server of your own:
 *   node.createServer((socket) => relay.accept(socket))
 *
 * A client (or a server) asks for a relayed connection with the
 * `relayThrough` option: a relay's public key, a list of them (one picked
 * at random per connection) or a function returning either. The side that
 * sets it puts `{ publicKey, token }` in its handshake payload
 * (`relayThroughInfo`); when both do, the server's relay wins
 * (`clientRelayPlan` / `serverRelayPlan`). Both sides then connect to the
 * relay, pair their UDX streams through it with the token (the relay's
 * owner as initiator), and open the encrypted connection over it
 * (`relayConnection`), path "relayed".
 *
 * Behind it: `BlindRelayHost` (../actors/session/relay-connection.ts) on the
 * node's connection host.
 */
import { EventEmitter } from "node:events"
import type { ConnectionHost, GatewaySocket } from "../actors/session/host.js"
import type { BlindRelaySession } from "../actors/session/blind-relay.js"
import {
  BlindRelayHost,
  type BlindRelayHostOptions,
  type BlindRelayHostStats
} from "../actors/session/relay-connection.js"
import type { NoiseSecretStream } from "../actors/session/secret-stream-node.js"
import type { KeyPair } from "../layers/crypto/types.js"
import type { GatewayServer, ServerOptions } from "./server.js"

export {
  clientRelayPlan,
  type RelayOffer,
  type RelayPlan,
  type RelayThrough,
  relayThroughInfo,
  selectRelay,
  serverRelayPlan
} from "../actors/session/relay-connection.js"
export type { BlindRelaySession }

/** What the relay needs from its node (the facade's Gateway). */
export interface BlindRelayNode {
  readonly destroyed: boolean
  readonly defaultKeyPair: KeyPair
  connections(): Promise<ConnectionHost>
  createServer(opts?: ServerOptions, onconnection?: (socket: GatewaySocket) => void): GatewayServer
}

export interface BlindRelayServerOptions extends Omit<BlindRelayHostOptions, "install"> {}

/**
 * A blind relay on a node. Events: 'session' (a session accepted), 'error'
 * (the node's connection host could not be made).
 */
export class BlindRelayServer extends EventEmitter {
  private readonly core: BlindRelayHost
  private readonly servers = new Set<GatewayServer>()
  private readonly attached: Promise<void>
  private closing: Promise<void> | null = null

  constructor(
    private readonly node: BlindRelayNode,
    options: BlindRelayServerOptions = {}
  ) {
    super()
    this.core = new BlindRelayHost(options)
    this.attached = node.connections().then(
      (host) => this.core.attach(host),
      (err: unknown) => {
        queueMicrotask(() => {
          if (this.listenerCount("error") > 0) this.emit("error", err)
        })
      }
    )
  }

  /** Resolves once the relay runs on the node (its datagram path is installed). */
  async ready(): Promise<void> {
    await this.attached
    if (this.core.node === null) throw new Error("the blind relay could not start on its node")
  }

  get closed(): boolean {
    return this.core.isClosed
  }

  /** Active sessions. */
  get sessions(): ReadonlyArray<BlindRelaySession<NoiseSecretStream>> {
    return this.core.server.sessions()
  }

  /** Sessions, pairings, streams, refusals by cause, and the datagram path (forwarded packets). */
  get stats(): BlindRelayHostStats {
    return this.core.stats()
  }

  /**
   * Serve blind-relay on an incoming connection (the reference's
   * `relay.accept(socket, { id: socket.remotePublicKey })`; that id is the
   * default). The relay owns the socket's data from now on. Null when the
   * relay is closed or the socket already has a session.
   */
  accept(socket: GatewaySocket, opts: { readonly id?: Uint8Array | null } = {}): BlindRelaySession<NoiseSecretStream> | null {
    const session = this.core.accept(socket, opts)
    if (session !== null) this.emit("session", session, socket)
    return session
  }

  /**
   * Listen on `keyPair` (default: the node's) with a server of the node
   * whose every connection becomes a relay session. Resolves with that
   * server (its public key is the relay's, for `relayThrough`).
   */
  async listen(keyPair: KeyPair = this.node.defaultKeyPair, serverOptions: ServerOptions = {}): Promise<GatewayServer> {
    await this.ready()
    if (this.closed) throw new Error("the blind relay is closed")
    const server = this.node.createServer(serverOptions, (socket) => {
      socket.on("error", () => {})
      if (this.accept(socket) === null) socket.destroy()
    })
    this.servers.add(server)
    try {
      await server.listen(keyPair)
    } catch (e) {
      this.servers.delete(server)
      throw e
    }
    return server
  }

  /** Stop the servers made by `listen`, close every session (their relayed streams stop). */
  close(): Promise<void> {
    return (this.closing ??= this.doClose())
  }

  private async doClose(): Promise<void> {
    const servers = [...this.servers]
    this.servers.clear()
    await Promise.all(servers.map((s) => s.close().catch(() => {})))
    this.core.close()
  }
}
