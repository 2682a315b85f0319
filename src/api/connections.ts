/**
 * The Effect face of connections between public keys (connect.md): a
 * scoped connection and a scoped server, for Effect users who compose the
 * Gateway service instead of using the promise facade.
 *
 *   const conn = yield* Connections.connect(gateway, serverPublicKey, { keyPair })
 *   yield* conn.write(bytes)
 *   yield* conn.readable.pipe(Stream.runForEach(...))
 *
 *   const server = yield* Connections.listen(gateway, keyPair)
 *   yield* server.connections.pipe(Stream.runForEach((conn) => ...))
 *
 * A connection is closed with its Scope; failures are `ConnectionError`s
 * carrying hyperdht's `code` strings.
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Cause from "effect/Cause"
import { type ConnectOptions, dial } from "../actors/holepunch/dial.js"
import { type ConnectionError, connectionError } from "../actors/holepunch/errors.js"
import { type ConnectionHost, connectionHost, type ConnectionPath, type GatewaySocket, type HostOptions } from "../actors/session/host.js"
import { ServerCore, type ServerOptions } from "../actors/session/server.js"
import type { KeyPair } from "../layers/crypto/types.js"
import type { GatewayHandle } from "./GatewayService.js"

export { ConnectionError } from "../actors/holepunch/errors.js"

export interface Connection {
  readonly publicKey: Uint8Array
  readonly remotePublicKey: Uint8Array
  /** The Noise handshake hash (64 bytes, the same on both ends). */
  readonly handshakeHash: Uint8Array
  /** How the connection reached the peer. */
  readonly path: ConnectionPath
  /** The underlying encrypted socket (a Node Duplex). */
  readonly socket: GatewaySocket
  /** Incoming bytes; ends when the peer ends; consume once. */
  readonly readable: Stream.Stream<Uint8Array, ConnectionError>
  /** Write bytes; waits while the socket's buffer is full (backpressure). */
  write(data: Uint8Array): Effect.Effect<void, ConnectionError>
  /** End our side (the peer's readable ends). */
  readonly end: Effect.Effect<void>
}

const asError = (e: unknown): ConnectionError =>
  typeof e === "object" && e !== null && (e as { _tag?: unknown })._tag === "ConnectionError"
    ? (e as ConnectionError)
    : connectionError("PEER_CONNECTION_FAILED", e instanceof Error ? e.message : String(e), undefined, e)

/** The Effect face of an open socket. */
export const fromSocket = (socket: GatewaySocket): Connection => ({
  publicKey: socket.publicKey,
  remotePublicKey: socket.remotePublicKey,
  handshakeHash: socket.handshakeHash ?? new Uint8Array(0),
  path: socket.path ?? "direct",
  socket,
  // the socket's iterator without destroy-on-return: reading to the end must not cut our own writes short
  readable: Stream.fromAsyncIterable(
    { [Symbol.asyncIterator]: () => socket.iterator({ destroyOnReturn: false }) as AsyncIterator<Uint8Array> },
    asError
  ),
  write: (data) =>
    Effect.callback<void, ConnectionError>((resume) => {
      if (socket.destroyed) return resume(Effect.fail(connectionError("PEER_CONNECTION_FAILED", "the connection is closed")))
      const ok = socket.write(data, (err) => {
        if (err !== null && err !== undefined) resume(Effect.fail(asError(err)))
        else if (ok) resume(Effect.void)
      })
      if (!ok) socket.once("drain", () => resume(Effect.void))
    }),
  end: Effect.sync(() => {
    socket.end()
  })
})

/** Wait for a socket to open; fails with its error. */
const opened = (socket: GatewaySocket): Effect.Effect<GatewaySocket, ConnectionError> =>
  Effect.callback<GatewaySocket, ConnectionError>((resume) => {
    if (socket.destroyed) return resume(Effect.fail(connectionError("PEER_CONNECTION_FAILED", "the socket was destroyed")))
    const onOpen = (): void => {
      socket.off("error", onError)
      resume(Effect.succeed(socket))
    }
    const onError = (e: unknown): void => {
      socket.off("open", onOpen)
      resume(Effect.fail(asError(e)))
    }
    socket.once("open", onOpen)
    socket.once("error", onError)
    return Effect.sync(() => {
      socket.off("open", onOpen)
      socket.off("error", onError)
    })
  })

/** The node's connection host (made once per node). */
export const host = (gateway: GatewayHandle, options: HostOptions = {}): Effect.Effect<ConnectionHost> =>
  connectionHost(gateway, gateway.core.crypto, options)

/**
 * Connect to the server listening on `remotePublicKey`: the open connection,
 * destroyed when the scope closes.
 */
export const connect = (
  gateway: GatewayHandle,
  remotePublicKey: Uint8Array,
  opts: ConnectOptions & { readonly keyPair: KeyPair; readonly host?: HostOptions }
): Effect.Effect<Connection, ConnectionError, Scope.Scope> =>
  Effect.gen(function*() {
    const h = yield* host(gateway, opts.host)
    const socket = yield* Effect.acquireRelease(
      Effect.sync(() => dial(h, remotePublicKey, opts.keyPair, opts)),
      (s) => Effect.sync(() => s.destroy())
    )
    return fromSocket(yield* opened(socket))
  })

export interface Listening {
  readonly server: ServerCore
  readonly publicKey: Uint8Array
  /** Each new connection, open; consume once. Fails if the server fails (SERVER_ERROR). */
  readonly connections: Stream.Stream<Connection, ConnectionError>
}

/** Listen on `keyPair`: announced while the scope is open, closed (unannounced) with it. */
export const listen = (
  gateway: GatewayHandle,
  keyPair: KeyPair,
  opts: ServerOptions & { readonly host?: HostOptions } = {}
): Effect.Effect<Listening, ConnectionError, Scope.Scope> =>
  Effect.gen(function*() {
    const h = yield* host(gateway, opts.host)
    const incoming = yield* Queue.unbounded<Connection, ConnectionError | Cause.Done>()
    const server = new ServerCore(
      h,
      opts,
      (socket) => {
        socket.once("open", () => Queue.offerUnsafe(incoming, fromSocket(socket)))
      },
      (error) => Queue.failCauseUnsafe(incoming, Cause.fail(error))
    )
    yield* Effect.acquireRelease(server.listen(keyPair), () =>
      Effect.andThen(server.close(), Effect.sync(() => Queue.endUnsafe(incoming))))
    return { server, publicKey: keyPair.publicKey, connections: Stream.fromQueue(incoming) }
  })
