/**
 * The promise face of a server (hyperdht's `Server`): `listen(keyPair)`,
 * `close()`, `refresh()`, `address()`, `publicKey`, `relayAddresses`,
 * `listening`, `closed`, and the events 'listening', 'connection' and
 * 'close'. Behind it: `ServerCore` (../actors/session/server.ts) on the
 * node's connection host.
 */
import * as Effect from "effect/Effect"
import { EventEmitter } from "node:events"
import { connectionError, type ConnectionError } from "../actors/holepunch/errors.js"
import type { ConnectionHost, GatewaySocket } from "../actors/session/host.js"
import { ServerCore, type ServerOptions } from "../actors/session/server.js"
import type { RelayThrough } from "../actors/session/relay-connection.js"
import type { ConnectionPool } from "./pool.js"
import { serverAutoRelay } from "./relays.js"

export type { ServerOptions }
import type { KeyPair } from "../layers/crypto/types.js"
import { asBuffer } from "./keys.js"

export interface GatewayServerOptions extends Omit<ServerOptions, "relayThrough"> {
  /** Pool the connections this server accepts (`node.pool()`). */
  readonly pool?: ConnectionPool
  /**
   * A blind relay for the connections this server accepts (connect.md §6.8):
   * a relay's key, a list, a function, or `'auto'`: while the node's NAT is
   * randomizing, a relay found under the relay topic (see ./relays.ts).
   */
  readonly relayThrough?: RelayThrough | "auto"
}


/** What a server needs from its node (the facade's Gateway). */
export interface ServerNode {
  readonly destroyed: boolean
  readonly defaultKeyPair: KeyPair
  connections(): Promise<ConnectionHost>
  /** The node's set of listening servers (hyperdht's `dht.listening`). */
  readonly listening: Set<GatewayServer>
}

export class GatewayServer extends EventEmitter {
  closed = false
  private core: ServerCore | null = null
  private listeningPromise: Promise<void> | null = null
  private closing: Promise<void> | null = null

  constructor(
    private readonly node: ServerNode,
    readonly options: GatewayServerOptions = {}
  ) {
    super()
  }

  get listening(): boolean {
    return this.listeningPromise !== null && this.core?.state === "listening"
  }

  get publicKey(): Buffer | null {
    const pk = this.core?.publicKey ?? null
    return pk === null ? null : asBuffer(pk)
  }

  /** The nodes our announcement is stored on (and our own address first when reachable). */
  get relayAddresses(): Array<{ host: string; port: number }> {
    return this.core?.relayAddresses.map((a) => ({ host: a.host, port: a.port })) ?? []
  }

  /** The announce relays with our address as each sees it. */
  get nodes(): Array<{ host: string; port: number }> {
    return this.core?.relays.map((r) => ({ host: r.relayAddress.host, port: r.relayAddress.port })) ?? []
  }

  /** Start listening on `keyPair` (default: the node's); rejects with ALREADY_LISTENING, KEYPAIR_ALREADY_USED, NODE_DESTROYED. */
  async listen(keyPair: KeyPair = this.node.defaultKeyPair): Promise<this> {
    if (this.listeningPromise !== null) throw connectionError("ALREADY_LISTENING")
    if (this.node.destroyed) throw connectionError("NODE_DESTROYED")
    if (this.closing !== null) throw connectionError("SERVER_CLOSED")
    this.listeningPromise = this.start(keyPair)
    try {
      await this.listeningPromise
    } catch (e) {
      this.listeningPromise = null
      throw e
    }
    return this
  }

  private async start(keyPair: KeyPair): Promise<void> {
    const host = await this.node.connections()
    const { relayThrough, ...rest } = this.options
    const options: ServerOptions = relayThrough === "auto"
      ? { ...rest, relayThrough: serverAutoRelay(host, keyPair.publicKey) }
      : relayThrough !== undefined ? { ...rest, relayThrough } : rest
    const core = new ServerCore(
      host,
      options,
      (socket: GatewaySocket) => {
        // listeners never run inside the node's step
        queueMicrotask(() => this.emit("connection", socket))
      },
      (error) => {
        // the server closes itself; 'error' goes to listeners (never thrown at a process without one), then 'close'
        queueMicrotask(() => {
          if (this.listenerCount("error") > 0) this.emit("error", error)
          void this.close({ force: true })
        })
      }
    )
    this.core = core
    this.node.listening.add(this)
    try {
      await Effect.runPromise(core.listen(keyPair))
    } catch (e) {
      this.node.listening.delete(this)
      this.core = null
      throw e as ConnectionError
    }
    if (this.closing !== null) return
    this.options.pool?.attachServer(this, keyPair.publicKey)
    this.emit("listening")
  }

  /** Stop announcing and unannounce (the node is going to sleep); connections in progress are aborted. */
  async suspend(): Promise<void> {
    if (this.listeningPromise !== null) await this.listeningPromise.catch(() => {})
    if (this.core !== null) await Effect.runPromise(this.core.suspend())
  }

  /** Announce again after a suspend. */
  async resume(): Promise<void> {
    if (this.core !== null) await Effect.runPromise(this.core.resume())
  }

  /** Announce again now. */
  refresh(): void {
    this.core?.refresh()
  }

  /** `{ host, port, publicKey }`: where the server is reachable (the node's public address once known, else its local one). */
  address(): { host: string; port: number; publicKey: Buffer } | null {
    const a = this.core?.address() ?? null
    return a === null ? null : { host: a.host, port: a.port, publicKey: asBuffer(a.publicKey) }
  }

  /** Stop listening and unannounce (`force`: skip the unannounce, as node.destroy({ force }) does). */
  close(opts: { readonly force?: boolean } = {}): Promise<void> {
    return (this.closing ??= this.doClose(opts))
  }

  private async doClose(opts: { readonly force?: boolean }): Promise<void> {
    if (this.listeningPromise !== null) await this.listeningPromise.catch(() => {})
    const core = this.core
    if (core !== null) await Effect.runPromise(core.close(opts))
    this.node.listening.delete(this)
    this.closed = true
    this.emit("close")
  }
}
