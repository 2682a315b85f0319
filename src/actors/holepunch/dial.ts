/**
 * A client's dial of a public key (connect.md §8.1, §6.5): find the nodes
 * that hold the server's announcement, run Noise IK through two of them in
 * parallel (the same message 1 through each: the server deduplicates), then
 * pick a path and open the encrypted socket over a UDX stream.
 *
 * Paths, in the reference's order:
 * 1. the server answered us itself (no relay), or its first UDX packet
 *    already arrived: connect there;
 * 2. the server is OPEN, or relayed and not holepunchable: connect to its
 *    first public address, else to the address its relay saw;
 * 3. we are OPEN: the server connects to us; wait up to 10 s;
 * 4. same public host (same NAT or one machine): ping the server's LAN
 *    address and connect there;
 * 5. otherwise holepunching (connect.md §6): not offered by this version;
 *    the dial fails with CANNOT_HOLEPUNCH and says so.
 *
 * The dial is one fiber in the node's scope that owns its state; the socket
 * is returned at once (writes wait until it opens), destroying it interrupts
 * the dial, and a failed dial destroys the socket with a typed
 * ConnectionError carrying hyperdht's `code` and a report of what was tried.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import type { KeyPair } from "../../layers/crypto/types.js"
import type { Endpoint, UdpSocket } from "../../layers/Transport.js"
import * as C from "../../protocol/connect.js"
import { decode, encode, toHex } from "../../protocol/encoding.js"
import * as R from "../../protocol/records.js"
import { type ConnectionHost, type ConnectionPath, GatewaySocket, Noise } from "../session/host.js"
import type { UdxStream } from "../session/udx.js"
import { isBogon, isReserved, matchAddress } from "./decide.js"
import { type ConnectionError, connectionError, type DialReport, type PathAttempt } from "./errors.js"

export interface ConnectOptions {
  /** Our identity for this connection (default: the node's key pair). */
  readonly keyPair?: KeyPair
  /** Relay nodes to try first (hyperdht: `relayAddresses`, or the nodes of an address). */
  readonly relayAddresses?: ReadonlyArray<Endpoint>
  /** Nodes to seed the FIND_PEER query with. */
  readonly nodes?: ReadonlyArray<Endpoint>
  /** Try the LAN shortcut when both peers share a public address (default true). */
  readonly localConnection?: boolean
  /** Send a low-TTL probe before holepunching (default true; kept for holepunching). */
  readonly fastOpen?: boolean
  /** Veto a holepunch: (remoteFirewall, localFirewall, remoteAddresses, localAddresses) => boolean. */
  readonly holepunch?: (remoteFirewall: number, localFirewall: number, remoteAddresses: ReadonlyArray<Endpoint>, localAddresses: ReadonlyArray<Endpoint>) => boolean
}

/** How long a client that is OPEN waits for the server to connect to it. */
export const PASSIVE_CONNECT_TIMEOUT = 10_000
/** Parallel handshake attempts (3 when relay candidates are known up front). */
const PARALLEL_HANDSHAKES = 2

interface Handshaken {
  readonly relayAddress: Endpoint
  readonly relayed: boolean
  readonly serverAddress: Endpoint
  readonly clientAddress: Endpoint
  readonly payload: C.NoisePayload
  readonly split: Noise.NoiseSplit
}

type Attempt = { readonly _tag: "Ok"; readonly value: Handshaken } | { readonly _tag: "Fatal"; readonly error: ConnectionError } | null

const key = (e: Endpoint): string => `${e.host}:${e.port}`
const sameEndpoint = (a: Endpoint, b: Endpoint): boolean => a.host === b.host && a.port === b.port

/** The socket of a dial, before the node is ready (the facade returns it at once). */
export const dialSocket = (keepAlive: number, remotePublicKey: Uint8Array, keyPair: KeyPair): GatewaySocket =>
  new GatewaySocket(true, null, { autoStart: false, keepAlive, publicKey: keyPair.publicKey, remotePublicKey })

/** Start a dial: the socket now, the dial in a fiber of the node. */
export const dial = (host: ConnectionHost, remotePublicKey: Uint8Array, keyPair: KeyPair, opts: ConnectOptions = {}): GatewaySocket =>
  startDial(host, dialSocket(host.keepAlive, remotePublicKey, keyPair), remotePublicKey, keyPair, opts)

/** Run the dial of `socket` (made by `dialSocket`) in a fiber of the node. */
export const startDial = (host: ConnectionHost, socket: GatewaySocket, remotePublicKey: Uint8Array, keyPair: KeyPair, opts: ConnectOptions = {}): GatewaySocket => {
  host.stats.connects.started++
  if (socket.destroyed) return socket
  if (host.handle.core.suspended) {
    fail(host, socket, connectionError("SUSPENDED"))
    return socket
  }
  // our UDX stream: the server's first packet may come before its handshake reply
  const early = { socket: null as UdpSocket | null, from: null as Endpoint | null }
  const firstPacket = Deferred.makeUnsafe<{ socket: UdpSocket; from: Endpoint }>()
  const created = host.mux.createStreamUnsafe(host.mux.freeId(host.random), {
    connectOnFirewall: false,
    firewall: (from, sock) => {
      if (!(from.port > 0 && from.port < 65536)) return true
      if (early.socket === null) {
        early.socket = sock
        early.from = { host: from.host, port: from.port }
        Deferred.doneUnsafe(firstPacket, Effect.succeed({ socket: sock, from: early.from }))
      }
      return false
    }
  })
  if (created instanceof Error) {
    fail(host, socket, connectionError("PEER_CONNECTION_FAILED", created.message))
    return socket
  }
  const stream = created
  const d = new Dial(host, socket, stream, remotePublicKey, keyPair, opts, early, firstPacket)
  const stop = host.spawn(
    d.run().pipe(
      Effect.catchTag("ConnectionError", (e) => Effect.sync(() => fail(host, socket, e, stream))),
      Effect.catchCause((cause) => Effect.sync(() => fail(host, socket, connectionError("PEER_CONNECTION_FAILED", `dial defect: ${String(cause)}`), stream)))
    )
  )
  socket.once("close", () => {
    stop()
    if (!socket.started) stream.destroyUnsafe()
  })
  return socket
}

const fail = (host: ConnectionHost, socket: GatewaySocket, error: ConnectionError, stream?: UdxStream): void => {
  host.countFailure(error.code)
  if (stream !== undefined && !socket.started) stream.destroyUnsafe()
  if (!socket.destroyed) socket.destroy(error)
}

class Dial {
  private readonly attempts: Array<PathAttempt> = []
  private relaysTried = 0
  private remoteFirewall: number | null = null
  private localFirewall: number = C.FIREWALL_UNKNOWN
  private readonly target: Uint8Array
  private readonly id: string

  constructor(
    readonly host: ConnectionHost,
    readonly socket: GatewaySocket,
    readonly stream: UdxStream,
    readonly remotePublicKey: Uint8Array,
    readonly keyPair: KeyPair,
    readonly opts: ConnectOptions,
    readonly early: { socket: UdpSocket | null; from: Endpoint | null },
    readonly firstPacket: Deferred.Deferred<{ socket: UdpSocket; from: Endpoint }>
  ) {
    this.target = host.crypto.blake2b(remotePublicKey)
    this.id = toHex(remotePublicKey)
  }

  private report(): DialReport {
    return { localFirewall: this.localFirewall, remoteFirewall: this.remoteFirewall, relaysTried: this.relaysTried, attempts: this.attempts.slice() }
  }

  private error(code: Parameters<typeof connectionError>[0], detail?: string): ConnectionError {
    return connectionError(code, detail, this.report())
  }

  run(): Effect.Effect<void, ConnectionError> {
    return Effect.gen({ self: this }, function*() {
      const host = this.host
      const h = host.handle
      const c = host.crypto
      const own = h.core.firewalled ? null : h.core.remoteAddress()
      this.localFirewall = own !== null ? C.FIREWALL_OPEN : C.FIREWALL_UNKNOWN
      const addresses4: Array<Endpoint> = own !== null ? [own] : []
      if (this.opts.localConnection !== false) addresses4.push(...host.localAddresses())
      const ini = Noise.initiator(c, { staticKeyPair: this.keyPair, remoteStaticKey: this.remotePublicKey, prologue: host.ns.PEER_HANDSHAKE })
      const plain = encode(
        C.noisePayload,
        C.makeNoisePayload({
          error: C.ERROR_NONE,
          firewall: this.localFirewall,
          addresses4,
          addresses6: [],
          udx: { reusableSocket: false, id: this.stream.id, seq: 0 },
          secretStream: {}
        })
      )
      if (Result.isFailure(plain)) return yield* this.error("HANDSHAKE_INVALID", plain.failure.message)
      const msg1 = Noise.writeMessage1(ini, plain.success)
      if (Result.isFailure(msg1)) return yield* this.error("HANDSHAKE_INVALID", msg1.failure.message)
      const won = yield* this.findAndHandshake(ini, msg1.success)
      yield* this.choosePath(won)
    })
  }

  // ---- find + handshake -------------------------------------------------------------------

  private findAndHandshake(ini: Noise.NoiseState, msg1: Uint8Array): Effect.Effect<Handshaken, ConnectionError> {
    return Effect.gen({ self: this }, function*() {
      const host = this.host
      const h = host.handle
      let candidates: ReadonlyArray<Endpoint> | null = this.opts.relayAddresses !== undefined && this.opts.relayAddresses.length > 0
        ? this.opts.relayAddresses
        : (host.relayCache.get(this.id) ?? null)
      const known = h.core.id !== null ? (h.hyperdht.store()?.forwards.get(toHex(this.target), h.core.time)?.relay ?? null) : null
      if (known !== null) candidates = [known]
      const seen = new Set<string>()
      const fromCandidates = Stream.fromIterable(candidates ?? [])
      const seeds = this.opts.nodes ?? candidates ?? []
      const fromQuery = h.query({ target: this.target, command: R.Command.FIND_PEER, value: null }, { retries: 3, ...(seeds.length > 0 ? { nodes: seeds } : {}) }).pipe(
        Stream.filter((r) => r.value !== null && Result.isSuccess(decode(R.peer, r.value))),
        Stream.map((r) => ({ host: r.from.host, port: r.from.port }) as Endpoint),
        Stream.catch(() => Stream.empty)
      )
      const nodes = Stream.concat(fromCandidates, fromQuery).pipe(
        Stream.filter((e) => {
          const k = key(e)
          if (seen.has(k)) return false
          seen.add(k)
          return true
        })
      )
      const concurrency = candidates !== null && candidates.length > 0 ? PARALLEL_HANDSHAKES + 1 : PARALLEL_HANDSHAKES
      const first = yield* nodes.pipe(
        Stream.mapEffect((node) => this.attempt(ini, msg1, node), { concurrency, unordered: true }),
        Stream.filter((a): a is Exclude<Attempt, null> => a !== null),
        Stream.runHead
      )
      if (Option.isNone(first)) {
        return yield* this.relaysTried > 0 ? this.error("PEER_CONNECTION_FAILED") : this.error("PEER_NOT_FOUND")
      }
      if (first.value._tag === "Fatal") return yield* first.value.error
      return first.value.value
    })
  }

  /** One handshake through `node` (connect.md §8.1 step 4); null when this relay did not work out. */
  private attempt(ini: Noise.NoiseState, msg1: Uint8Array, node: Endpoint): Effect.Effect<Attempt> {
    return Effect.gen({ self: this }, function*() {
      this.relaysTried++
      const via = key(node)
      const value = encode(C.handshake, { mode: C.FROM_CLIENT, noise: msg1, peerAddress: null, relayAddress: null })
      if (Result.isFailure(value)) return null
      const res = yield* Effect.result(this.host.handle.request({ command: R.Command.PEER_HANDSHAKE, target: this.target, value: value.success }, node))
      if (Result.isFailure(res)) {
        this.attempts.push({ path: "handshake", via, outcome: res.failure.code })
        return null
      }
      const r = res.success
      const hs = r.value === null ? null : decode(C.handshake, r.value)
      if (hs === null || Result.isFailure(hs) || hs.success.mode !== C.REPLY || hs.success.noise.length === 0 || !sameEndpoint(r.from, node)) {
        this.attempts.push({ path: "handshake", via, outcome: r.value === null ? "no server record at this node" : "BAD_HANDSHAKE_REPLY" })
        return null
      }
      const reply = hs.success
      const m2 = Noise.readMessage2(Noise.clone(ini), reply.noise)
      if (Result.isFailure(m2)) {
        this.attempts.push({ path: "handshake", via, outcome: `HANDSHAKE_INVALID (${m2.failure.reason})` })
        return null
      }
      const payload = decode(C.noisePayload, m2.success.payload)
      if (Result.isFailure(payload)) {
        this.attempts.push({ path: "handshake", via, outcome: "HANDSHAKE_INVALID (payload)" })
        return null
      }
      const p = payload.success
      this.attempts.push({ path: "handshake", via, outcome: "ok" })
      if (p.version !== 1) return { _tag: "Fatal", error: this.error("SERVER_INCOMPATIBLE") }
      if (p.error !== C.ERROR_NONE) return { _tag: "Fatal", error: this.error("SERVER_ERROR", `Server returned error ${p.error}`) }
      if (p.udx === null) return { _tag: "Fatal", error: this.error("SERVER_ERROR", "Server did not send UDX data") }
      this.remoteFirewall = p.firewall
      return {
        _tag: "Ok",
        value: {
          relayAddress: node,
          relayed: reply.peerAddress !== null,
          serverAddress: reply.peerAddress ?? node,
          clientAddress: { host: r.to.host, port: r.to.port },
          payload: p,
          split: m2.success.split
        }
      }
    })
  }

  // ---- path selection ------------------------------------------------------------------------

  private onsocket(won: Handshaken, socket: UdpSocket, to: Endpoint, path: ConnectionPath): void {
    if (this.socket.started || this.socket.destroyed) return
    const host = this.host
    const relays = won.payload.relayAddresses !== null && won.payload.relayAddresses.length > 0 ? won.payload.relayAddresses : [won.relayAddress]
    host.cacheRelays(this.id, relays)
    this.stream.connectUnsafe(won.payload.udx!.id, to, socket)
    this.socket.startOver(
      this.stream,
      { tx: won.split.tx, rx: won.split.rx, hash: won.split.handshakeHash, publicKey: this.keyPair.publicKey, remotePublicKey: this.remotePublicKey },
      path
    )
    host.stats.connects.succeeded++
    if (path === "lan") host.stats.punches.lan++
    else host.stats.punches.open++
    this.attempts.push({ path, via: key(to), outcome: "connected" })
  }

  private choosePath(won: Handshaken): Effect.Effect<void, ConnectionError> {
    return Effect.gen({ self: this }, function*() {
      const host = this.host
      const { payload, relayed, serverAddress, clientAddress, relayAddress } = won
      const remoteHolepunchable = payload.holepunch !== null && payload.holepunch.relays.length > 0
      if (this.early.socket !== null) return this.onsocket(won, this.early.socket, this.early.from!, "direct")
      if (!relayed) return this.onsocket(won, host.dhtSocket(), relayAddress, "direct")
      if (payload.firewall === C.FIREWALL_OPEN || !remoteHolepunchable) {
        const addr = payload.addresses4.find((a) => !isBogon(a.host)) ?? serverAddress
        this.onsocket(won, host.dhtSocket(), addr, "direct")
        return
      }
      if (this.localFirewall === C.FIREWALL_OPEN) {
        // the server connects to us
        const got = yield* Deferred.await(this.firstPacket).pipe(Effect.timeoutOption(PASSIVE_CONNECT_TIMEOUT))
        if (Option.isNone(got)) {
          this.attempts.push({ path: "direct", outcome: "the server did not connect to us within 10 s" })
          return yield* this.error("HOLEPUNCH_ABORTED")
        }
        return this.onsocket(won, got.value.socket, got.value.from, "direct")
      }
      if (this.opts.localConnection !== false && clientAddress.host === serverAddress.host) {
        const lan = payload.addresses4.filter((a) => !isReserved(a.host))
        if (lan.length > 0) {
          const addr = matchAddress(host.localAddresses(), lan) ?? lan[0]!
          const ping = yield* Effect.result(host.handle.ping(addr))
          if (Result.isSuccess(ping)) return this.onsocket(won, host.socketOf(0), addr, "lan")
          this.attempts.push({ path: "lan", via: key(addr), outcome: ping.failure.code })
          return yield* this.error("HOLEPUNCH_ABORTED", "the LAN address did not answer and holepunching is not supported by this version")
        }
      }
      this.attempts.push({ path: "punch", outcome: "not supported by this version" })
      return yield* this.error("CANNOT_HOLEPUNCH", "the server is behind a NAT and this version does not holepunch yet")
    })
  }
}
