/**
 * The connection router every HyperDHT node runs (connect.md §4.3, §6.2;
 * hyperdht-records.md §9): PEER_HANDSHAKE and PEER_HOLEPUNCH requests are
 * forwarded between a client, the DHT node that holds the server's
 * announcement, and the server, every hop keeping the client's tid, so the
 * client sees one request and one reply from the node it contacted.
 *
 * Two kinds of entries decide what a node does with a request for a target:
 * - a relay entry: the node stored the server's own announcement (the
 *   HyperDHT store's `forwards`, `relay` = the server's address as seen);
 * - a server entry: a server listening on this node (`listen`), with hooks
 *   that run its side of the handshake and of the holepunch exchange.
 *
 * Plain deterministic code inside the node actor. A server that answers a
 * handshake at once replies inside the step that received it; one that
 * answers later (its firewall callback may be asynchronous), and every
 * holepunch answer (the server's attempt handles the message first), runs
 * the reply in a later step of the node (`exec`).
 *
 * Bad input is never an exception: undecodable values, missing fields and
 * unknown targets are dropped and counted in `stats`. A handshake message 1
 * that a server on this node answered is remembered (up to 30 min): copies
 * within HANDSHAKE_RETRANSMIT_WINDOW reach the server, later ones are
 * replays, dropped and counted (`handshakeReplays`).
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type { Endpoint, UdpSocket } from "../../layers/Transport.js"
import * as C from "../../protocol/connect.js"
import * as Rpc from "../../protocol/dht-rpc.js"
import { decode, encode, toHex } from "../../protocol/encoding.js"
import { Command } from "../../protocol/records.js"
import type { DhtNode } from "./node.js"
import type { IncomingRequest, SocketKind } from "./rpc.js"

/** Where a server's answer leaves from: one of the node's sockets, or a socket of its own (a puncher). */
export type ReplySocket = SocketKind | UdpSocket

export interface HandshakeInfo {
  /** The client's address: the request's source (direct) or as the relay saw it. */
  readonly clientAddress: Endpoint
  /** Our address as the sender of the request saw it. */
  readonly serverAddress: Endpoint
  /** The node socket the request arrived on. */
  readonly socket: SocketKind
  /** The client sent the handshake to this node itself (no relay). */
  readonly direct: boolean
}

export interface HolepunchInfo {
  /** The client's address as the relay saw it. */
  readonly peerAddress: Endpoint
  /** The relay that forwarded the request. */
  readonly relayAddress: Endpoint
  readonly socket: SocketKind
  /** Our address as the relay saw it. */
  readonly to: Endpoint
}

export interface ServerReply {
  readonly value: Uint8Array
  /** Default: the socket the request arrived on. */
  readonly socket?: ReplySocket
}

/** A server listening on this node. `respond(null)` (or never) means no answer. */
export interface ServerHooks {
  onHandshake(noise: Uint8Array, info: HandshakeInfo, respond: (reply: ServerReply | null) => void): void
  onHolepunch(id: number, payload: Uint8Array, info: HolepunchInfo, respond: (reply: ServerReply | null) => void): void
}

export interface RouterStats {
  /** Handshakes forwarded (client → server side, server → client side). */
  handshakesRelayed: number
  /** Holepunch messages forwarded. */
  holepunchesRelayed: number
  /** Handshakes handed to a server on this node. */
  serverHandshakes: number
  /** Holepunch messages handed to a server on this node. */
  serverHolepunches: number
  /** FROM_CLIENT handshakes for a target we know nothing about: answered with closer nodes. */
  routingHelp: number
  /** Requests dropped: undecodable value, missing noise or address, no entry. */
  dropped: number
  /** Exceptions thrown by a server's hooks (a bug): that request is dropped, the node goes on. */
  defects: number
  /**
   * Handshakes for a server on this node whose message 1 the server
   * answered more than HANDSHAKE_RETRANSMIT_WINDOW earlier: replays, dropped
   * before the server sees them (no answer, no handshake, no connection).
   */
  handshakeReplays: number
}

/**
 * How long after a server on this node answered a message 1 a copy of it
 * still counts as a retransmit (the client's retries, or the same message
 * through its other relays) and reaches the server, which answers it from
 * its handshake record without a second handshake. Later copies are
 * replays. It must not exceed how long a server keeps an answered
 * handshake (HANDSHAKE_CLEAR_WAIT in session/server.ts, 10 s after the
 * answer at the earliest), so that no copy ever starts a second handshake.
 */
export const HANDSHAKE_RETRANSMIT_WINDOW = 10_000
/** How long the message 1s a server answered are remembered to refuse their replays. */
export const HANDSHAKE_REPLAY_MEMORY = 30 * 60_000
/** At most this many remembered (the oldest go first). */
export const HANDSHAKE_REPLAY_MAX = 8192

/**
 * A message 1's identity: its first 32 bytes, the client's ephemeral key
 * (fresh for every handshake; no one else can make a valid message 1 with
 * it, as the static key is encrypted under a DH with it).
 */
const fingerprint = (noise: Uint8Array): string => toHex(noise.subarray(0, 32))

const NO_TOKEN_NO_NODES = { token: false, closerNodes: false } as const

export class Router {
  private readonly servers = new Map<string, ServerHooks>()
  readonly stats: RouterStats = { handshakesRelayed: 0, holepunchesRelayed: 0, serverHandshakes: 0, serverHolepunches: 0, routingHelp: 0, dropped: 0, defects: 0, handshakeReplays: 0 }
  /** Message 1s a server on this node answered → when they first arrived (insertion order ≈ time order). */
  private readonly answered = new Map<string, number>()

  /**
   * @param relayOf the relay entry for a target (hex), when this node stores the server's announcement
   * @param exec runs a step in the node later (a server's deferred answer)
   */
  constructor(
    private readonly relayOf: (targetHex: string, now: number) => Endpoint | null,
    private exec: ((f: (node: DhtNode) => void) => void) | null = null
  ) {}

  setExec(exec: (f: (node: DhtNode) => void) => void): void {
    this.exec = exec
  }

  /** A server listens on this node for `target` (32 bytes); replaces nothing: false if taken. */
  addServer(target: Uint8Array, hooks: ServerHooks): boolean {
    const k = toHex(target)
    if (this.servers.has(k)) return false
    this.servers.set(k, hooks)
    return true
  }

  removeServer(target: Uint8Array, hooks: ServerHooks): void {
    const k = toHex(target)
    if (this.servers.get(k) === hooks) this.servers.delete(k)
  }

  hasServer(target: Uint8Array): boolean {
    return this.servers.has(toHex(target))
  }

  /** Handle a PEER_HANDSHAKE / PEER_HOLEPUNCH request; false for other commands. */
  handle(req: IncomingRequest, node: DhtNode): boolean {
    if (req.internal) return false
    if (req.command === Command.PEER_HANDSHAKE) {
      this.onHandshake(req, node)
      return true
    }
    if (req.command === Command.PEER_HOLEPUNCH) {
      this.onHolepunch(req, node)
      return true
    }
    return false
  }

  private drop(): void {
    this.stats.dropped++
  }

  /** Run a server hook: a defect in it drops this request (counted and logged), never the node. */
  private guarded(what: string, f: () => void): void {
    try {
      f()
    } catch (e) {
      this.stats.defects++
      Effect.runFork(Effect.logError(`router: a server's ${what} handler threw; the request is dropped`, e))
    }
  }

  /**
   * Run `f` in a node step: now when `inStep` (the server answered inside
   * the step that received the request), else through exec.
   */
  private later(node: DhtNode, inStep: boolean, f: (node: DhtNode) => void): void {
    if (inStep || this.exec === null) f(node)
    else this.exec(f)
  }

  private onHandshake(req: IncomingRequest, node: DhtNode): void {
    if (req.target === null || req.value === null) return this.drop()
    const m = decode(C.handshake, req.value)
    if (Result.isFailure(m)) return this.drop()
    const hs = m.success
    const key = toHex(req.target)
    const server = this.servers.get(key)
    if (server !== undefined) {
      if (hs.noise.length === 0) return this.drop()
      const mode = hs.mode
      let clientAddress: Endpoint
      if (mode === C.FROM_CLIENT) clientAddress = { host: req.from.host, port: req.from.port }
      else if ((mode === C.FROM_RELAY || mode === C.FROM_SECOND_RELAY) && hs.peerAddress !== null) clientAddress = hs.peerAddress
      else return this.drop()
      if (mode === C.FROM_SECOND_RELAY && hs.relayAddress === null) return this.drop()
      const now = node.time
      const fp = fingerprint(hs.noise)
      const first = this.answered.get(fp)
      if (first !== undefined && now - first > HANDSHAKE_RETRANSMIT_WINDOW) {
        this.stats.handshakeReplays++
        return
      }
      this.stats.serverHandshakes++
      const info: HandshakeInfo = {
        clientAddress,
        serverAddress: { host: req.to.host, port: req.to.port },
        socket: req.socket,
        direct: mode === C.FROM_CLIENT
      }
      let answered = false
      let inStep = true
      this.guarded("handshake", () => server.onHandshake(hs.noise, info, (reply) => {
        if (reply === null || answered) return
        answered = true
        if (first === undefined) this.remember(fp, now)
        this.later(node, inStep, (n) => {
          if (mode === C.FROM_CLIENT) {
            const value = encode(C.handshake, { mode: C.REPLY, noise: reply.value, peerAddress: null, relayAddress: null })
            if (Result.isSuccess(value)) this.replyFrom(n, req, value.success, req.from, reply.socket)
          } else {
            const to = mode === C.FROM_RELAY ? req.from : hs.relayAddress!
            const value = encode(C.handshake, { mode: C.FROM_SERVER, noise: reply.value, peerAddress: clientAddress, relayAddress: null })
            if (Result.isSuccess(value)) this.relayFrom(n, req, value.success, to, reply.socket)
          }
        })
      }))
      inStep = false
      return
    }
    const relay = this.relayOf(key, node.time)
    switch (hs.mode) {
      case C.FROM_CLIENT: {
        if (hs.noise.length === 0) return this.drop()
        const to = hs.relayAddress ?? relay
        if (to === null) {
          // routing help: no value, closer nodes, so the client's query moves on
          this.stats.routingHelp++
          node.reply(req, null, { token: false, closerNodes: true })
          return
        }
        const value = encode(C.handshake, { mode: C.FROM_RELAY, noise: hs.noise, peerAddress: { host: req.from.host, port: req.from.port }, relayAddress: null })
        if (Result.isFailure(value)) return this.drop()
        this.stats.handshakesRelayed++
        node.relay(req, value.success, to)
        return
      }
      case C.FROM_RELAY: {
        if (relay === null || hs.noise.length === 0 || hs.peerAddress === null) return this.drop()
        const value = encode(C.handshake, {
          mode: C.FROM_SECOND_RELAY,
          noise: hs.noise,
          peerAddress: hs.peerAddress,
          relayAddress: { host: req.from.host, port: req.from.port }
        })
        if (Result.isFailure(value)) return this.drop()
        this.stats.handshakesRelayed++
        node.relay(req, value.success, relay)
        return
      }
      case C.FROM_SERVER: {
        if (hs.peerAddress === null || hs.noise.length === 0) return this.drop()
        const value = encode(C.handshake, { mode: C.REPLY, noise: hs.noise, peerAddress: { host: req.from.host, port: req.from.port }, relayAddress: null })
        if (Result.isFailure(value)) return this.drop()
        this.stats.handshakesRelayed++
        node.reply(req, value.success, { ...NO_TOKEN_NO_NODES, to: hs.peerAddress })
        return
      }
      default:
        return this.drop()
    }
  }

  /** Remember an answered message 1 (arrived at `at`), forgetting the expired and the oldest past the cap. */
  private remember(fp: string, at: number): void {
    if (this.answered.has(fp)) return
    for (const [k, t] of this.answered) {
      if (this.answered.size < HANDSHAKE_REPLAY_MAX && at - t <= HANDSHAKE_REPLAY_MEMORY) break
      this.answered.delete(k)
    }
    this.answered.set(fp, at)
  }

  private onHolepunch(req: IncomingRequest, node: DhtNode): void {
    if (req.target === null || req.value === null) return this.drop()
    const m = decode(C.holepunch, req.value)
    if (Result.isFailure(m)) return this.drop()
    const hp = m.success
    const key = toHex(req.target)
    switch (hp.mode) {
      case C.FROM_CLIENT: {
        const to = hp.peerAddress ?? this.relayOf(key, node.time)
        if (to === null) return this.drop()
        const value = encode(C.holepunch, { mode: C.FROM_RELAY, id: hp.id, payload: hp.payload, peerAddress: { host: req.from.host, port: req.from.port } })
        if (Result.isFailure(value)) return this.drop()
        this.stats.holepunchesRelayed++
        node.relay(req, value.success, to)
        return
      }
      case C.FROM_RELAY: {
        const server = this.servers.get(key)
        if (server === undefined || hp.peerAddress === null) return this.drop()
        this.stats.serverHolepunches++
        const peerAddress = hp.peerAddress
        const info: HolepunchInfo = {
          peerAddress,
          relayAddress: { host: req.from.host, port: req.from.port },
          socket: req.socket,
          to: { host: req.to.host, port: req.to.port }
        }
        let answered = false
        // always a step of its own: the server's attempt handles the message first
        this.guarded("holepunch", () => server.onHolepunch(hp.id, hp.payload, info, (reply) => {
          if (reply === null || answered) return
          answered = true
          this.later(node, false, (n) => {
            const value = encode(C.holepunch, { mode: C.FROM_SERVER, id: 0, payload: reply.value, peerAddress })
            if (Result.isSuccess(value)) this.relayFrom(n, req, value.success, req.from, reply.socket)
          })
        }))
        return
      }
      case C.FROM_SERVER: {
        if (hp.peerAddress === null) return this.drop()
        const value = encode(C.holepunch, { mode: C.REPLY, id: hp.id, payload: hp.payload, peerAddress: { host: req.from.host, port: req.from.port } })
        if (Result.isFailure(value)) return this.drop()
        this.stats.holepunchesRelayed++
        node.reply(req, value.success, { ...NO_TOKEN_NO_NODES, to: hp.peerAddress })
        return
      }
      default:
        return this.drop()
    }
  }

  /** A response to `req` sent to `to`, from one of the node's sockets or from a socket of the server's own. */
  private replyFrom(node: DhtNode, req: IncomingRequest, value: Uint8Array, to: Endpoint, socket: ReplySocket | undefined): void {
    if (socket === undefined || typeof socket === "number") {
      node.reply(req, value, { ...NO_TOKEN_NO_NODES, to, ...(socket !== undefined ? { socket } : {}) })
      return
    }
    const r = Rpc.encodeResponse({ tid: req.tid, to, id: null, token: null, closerNodes: [], error: 0, value })
    if (Result.isSuccess(r)) socket.send(to, r.success)
  }

  /** A request with `req`'s tid to `to`, from one of the node's sockets or from a socket of the server's own. */
  private relayFrom(node: DhtNode, req: IncomingRequest, value: Uint8Array, to: Endpoint, socket: ReplySocket | undefined): void {
    if (socket === undefined || typeof socket === "number") {
      node.relay(req, value, to, socket)
      return
    }
    const r = Rpc.encodeRequest({
      tid: req.tid,
      to: { host: to.host, port: to.port },
      id: null,
      token: null,
      internal: false,
      command: req.command,
      target: req.target,
      value
    })
    if (Result.isSuccess(r)) socket.send(to, r.success)
  }
}

