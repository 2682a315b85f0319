/**
 * The UDP transport port. The whole stack (dht-rpc, holepunching, UDX) sees
 * only this service; two implementations sit behind it:
 *
 * - real UDP on Node (`./transport/udp.ts`),
 * - a deterministic simulated network (`./transport/sim.ts`): virtual hosts,
 *   latency, loss, reordering, duplication, partitions and NAT models, driven
 *   by Effect's Clock and a seeded random source.
 *
 * A `Transport` is one host's network stack: it binds sockets. Sending is a
 * plain synchronous call (fire-and-forget, UDP semantics, the hot path);
 * receiving is an Effect that waits for at least one datagram and returns
 * every datagram buffered so far (batching).
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export interface Endpoint {
  readonly host: string
  readonly port: number
}

/** The same address (host and port). */
export const sameEndpoint = (a: Endpoint, b: Endpoint): boolean => a.host === b.host && a.port === b.port

export interface Datagram {
  /** Source address as seen by this socket (after any NAT on the way). */
  readonly from: Endpoint
  readonly data: Uint8Array
}

export interface SocketStats {
  readonly sent: number
  readonly received: number
  /** Datagrams dropped locally: invalid destination, oversized, inbox overflow, socket closed (a send the OS refuses is not seen: counted as sent). */
  readonly dropped: number
}

export interface UdpSocket {
  /** The bound local address (host may be 0.0.0.0 on a real machine). */
  readonly local: Endpoint
  /**
   * Send a datagram. Never throws and never blocks: a datagram that cannot be
   * sent is dropped and counted. `ttl` sets the IP TTL for this datagram
   * (holepunch probes use 5); the default is 64.
   */
  send(to: Endpoint, data: Uint8Array, ttl?: number): void
  /** Wait for at least one datagram; returns every buffered datagram (oldest first). */
  readonly receive: Effect.Effect<ReadonlyArray<Datagram>>
  /**
   * Push mode for a socket's single consumer: every arriving datagram is
   * handed to `f` synchronously instead of being buffered for `receive`
   * (saves a fiber hop per datagram). `null` returns to pull mode.
   */
  setReceiver(f: ((d: Datagram) => void) | null): void
  stats(): SocketStats
}

/** A socket bound with `Transport.open`: its owner closes it. */
export interface OwnedSocket extends UdpSocket {
  /** Close the socket (idempotent); completes once it is closed. */
  readonly close: Effect.Effect<void>
}

export interface BindOptions {
  /** Local address to bind; default 0.0.0.0 (real) or the host's address (sim). */
  readonly host?: string
  /** Port; 0 (default) picks a free one. */
  readonly port?: number
}

export class BindError extends Data.TaggedError("BindError")<{
  readonly host: string
  readonly port: number
  readonly detail: string
}> {
  /** The system's error code as Node reports it (`EADDRINUSE`, `EADDRNOTAVAIL`, ...), else `INVALID_ARGUMENT`. */
  get code(): string {
    return /^E[A-Z0-9]+$/.test(this.detail) ? this.detail : "INVALID_ARGUMENT"
  }
  override get message(): string {
    return `cannot bind UDP ${this.host}:${this.port}: ${this.detail}`
  }
}

export class Transport extends Context.Service<
  Transport,
  {
    /** Bind a socket; it is closed when the scope closes. */
    readonly bind: (options?: BindOptions) => Effect.Effect<UdpSocket, BindError, Scope.Scope>
    /**
     * Bind a socket at once, outside any scope: the caller closes it
     * (`close`). A DHT node binds its two sockets this way and closes both
     * in one finalizer of its own; a bind in an Effect and a scope entry per
     * socket were a large part of a node's start.
     */
    readonly open: (options?: BindOptions) => OwnedSocket | BindError
    /** Non-internal IPv4 addresses of this host's interfaces. */
    readonly localAddresses: () => ReadonlyArray<string>
    /**
     * Optional shared timer: call `f` synchronously once the clock reaches
     * `at` (ms). Lets the nodes on one transport share one timer instead of
     * each sleeping on the clock in fibers of their own. The simulated
     * network runs it on its scheduler; real UDP on one process-wide
     * setTimeout per transport. Callers fall back to sleeps without it.
     */
    readonly schedule?: (at: number, f: () => void) => void
  }
>()("omega/Transport") {}

/** `Transport.bind` from `Transport.open`: the socket, closed when the scope closes. */
export const bindScoped = <S extends OwnedSocket>(open: () => S | BindError): Effect.Effect<S, BindError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const s = open()
      return s instanceof BindError ? Effect.fail(s) : Effect.succeed(s)
    }),
    (s) => s.close
  )
