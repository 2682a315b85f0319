/**
 * hyperdht's connection pool (`node.pool()`): at most one connection per
 * remote public key across a node's servers and dials.
 *
 * - `connect(key, { pool })` returns the pooled socket when there is one
 *   (connecting or open), else dials and pools the new socket.
 * - A server made with `{ pool }` pools every connection it accepts.
 * - Two connections to the same key (both peers dialled each other at
 *   once): one is kept by a rule both ends agree on — a newer one of the
 *   same direction replaces the older; otherwise the one dialled by the
 *   peer with the larger public key wins — and the other is destroyed with
 *   DUPLICATE_CONNECTION.
 * - 'connection' (socket, ref) once a pooled socket is open.
 */
import { EventEmitter } from "node:events"
import { connectionError } from "../actors/holepunch/errors.js"
import type { GatewaySocket } from "../actors/session/host.js"
import { toHex } from "../protocol/encoding.js"
import type { GatewayServer } from "./server.js"

const noop = (): void => {}

/** A pooled connection: `active()` / `inactive()` count users, `release()` destroys it. */
export class ConnectionRef {
  refs = 0
  constructor(readonly socket: GatewaySocket) {}
  active(): void {
    this.refs++
  }
  inactive(): void {
    this.refs--
  }
  release(): void {
    this.socket.destroy()
  }
}

export class ConnectionPool extends EventEmitter {
  private readonly servers = new Map<string, GatewayServer>()
  private readonly connectingMap = new Map<string, ConnectionRef>()
  private readonly connectionsMap = new Map<string, ConnectionRef>()

  /** Sockets still connecting. */
  get connecting(): number {
    return this.connectingMap.size
  }

  /** The open pooled connections. */
  get connections(): IterableIterator<ConnectionRef> {
    return this.connectionsMap.values()
  }

  has(publicKey: Uint8Array): boolean {
    const k = toHex(publicKey)
    return this.connectionsMap.has(k) || this.connectingMap.has(k)
  }

  get(publicKey: Uint8Array): GatewaySocket | null {
    const k = toHex(publicKey)
    return (this.connectionsMap.get(k) ?? this.connectingMap.get(k))?.socket ?? null
  }

  /** @internal A listening server pools what it accepts. */
  attachServer(server: GatewayServer, publicKey: Uint8Array): void {
    const k = toHex(publicKey)
    this.servers.set(k, server)
    server.on("close", () => this.servers.delete(k))
    server.on("connection", (socket: GatewaySocket) => this.attachStream(socket, true))
  }

  /** @internal Pool a socket (a dial's, not yet open; or an accepted one, open). */
  attachStream(stream: GatewaySocket, opened: boolean): ConnectionRef | null {
    const existing = this.get(stream.remotePublicKey)
    if (existing !== null) {
      const keepNew = stream.isInitiator === existing.isInitiator || Buffer.compare(stream.publicKey, stream.remotePublicKey) > 0
      if (keepNew) {
        let closed = false
        const onclose = (): void => {
          closed = true
        }
        existing.on("error", noop)
        existing.once("close", () => {
          if (closed) return
          stream.off("error", noop)
          stream.off("close", onclose)
          this.attachStream(stream, opened)
        })
        existing.destroy(connectionError("DUPLICATE_CONNECTION"))
        stream.on("error", noop)
        stream.on("close", onclose)
      } else {
        stream.on("error", noop)
        stream.destroy(connectionError("DUPLICATE_CONNECTION"))
      }
      return null
    }
    const ref = new ConnectionRef(stream)
    const k = toHex(stream.remotePublicKey)
    if (opened) {
      this.connectionsMap.set(k, ref)
      stream.once("close", () => {
        if (this.connectionsMap.get(k) === ref) this.connectionsMap.delete(k)
      })
      this.emit("connection", stream, ref)
      return ref
    }
    this.connectingMap.set(k, ref)
    let open = false
    stream.on("error", noop)
    stream.once("close", () => {
      const map = open ? this.connectionsMap : this.connectingMap
      if (map.get(k) === ref) map.delete(k)
    })
    stream.once("open", () => {
      open = true
      if (this.connectingMap.get(k) === ref) this.connectingMap.delete(k)
      this.connectionsMap.set(k, ref)
      stream.off("error", noop)
      this.emit("connection", stream, ref)
    })
    return ref
  }
}
