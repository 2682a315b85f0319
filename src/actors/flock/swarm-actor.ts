/**
 * The dial-queue actor: one fiber that owns the Flock's `SwarmCore`
 * (peers, queue, retries, limits, dedup, bans, flush) and reads a queue of
 * tagged messages: peers found by the discovery actors, the application's
 * commands, the server's handshakes and connections, and the reports of
 * the peer sessions (`session.ts`, one fiber per connection). It sleeps
 * until the core's next deadline on Effect's Clock, so the whole schedule
 * runs on TestClock. Outputs are executed here: dials (the user firewall
 * runs in its own fiber when it is asynchronous), stream commands to the
 * sessions, and the application events through `SwarmEvents`.
 *
 * Supervision: a defect while handling a message (a throwing user callback
 * included) ends the actor with a typed `FlockError` ("actor-failed"):
 * `events.failed` is told and the error is logged; every connection is
 * destroyed by the sessions' scope. Nothing is left half alive.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import type { FlockAddress, FlockDht, FlockKeyPair, FlockSocket } from "./dht-contract.js"
import { chooseRelay } from "./dial-policy.js"
import type { DiscoveredPeer } from "./discovery.js"
import { FlockError } from "./errors.js"
import { actorLoop } from "./mailbox.js"
import type { DialFailure, PeerInfo } from "./peer-info.js"
import { makeSession, runSession, type Session, SessionMessage } from "./session.js"
import { type BanReason, type ConnId, type Direction, SwarmCore, type SwarmCoreOptions, SwarmOutput } from "./swarm.js"

export type SwarmMessage = Data.TaggedEnum<{
  Peers: { readonly topic: Uint8Array; readonly peers: ReadonlyArray<DiscoveredPeer> }
  /** Keys that announced a topic we serve (server-only): known peers learn it. */
  TopicShared: { readonly topic: Uint8Array; readonly keys: ReadonlyArray<Uint8Array> }
  JoinTopic: { readonly topic: Uint8Array }
  LeaveTopic: { readonly topic: Uint8Array; readonly closeConnections: boolean }
  JoinPeer: { readonly publicKey: Uint8Array }
  LeavePeer: { readonly publicKey: Uint8Array }
  Ban: { readonly publicKey: Uint8Array; readonly banned: boolean }
  Reconnect: { readonly publicKey: Uint8Array; readonly value: boolean }
  NetworkChange: {}
  NetworkUpdate: { readonly online: boolean }
  /** The server's firewall hook: reply true to reject. */
  Handshake: { readonly remotePublicKey: Uint8Array; readonly payload: unknown; readonly address: unknown; readonly reply: Deferred.Deferred<boolean> }
  /** The user firewall answered for an inbound handshake. */
  HandshakeDecided: { readonly remotePublicKey: Uint8Array; readonly rejected: boolean; readonly reply: Deferred.Deferred<boolean> }
  /** The user firewall answered for a dial. */
  DialScreened: { readonly id: ConnId; readonly allowed: boolean }
  /** The server handed over a connection. */
  Inbound: { readonly socket: FlockSocket }
  Opened: { readonly id: ConnId }
  Closed: { readonly id: ConnId; readonly failure: DialFailure | null }
  Flush: { readonly reply: Deferred.Deferred<boolean> }
  Suspend: { readonly reply: Deferred.Deferred<void> }
  Resume: { readonly reply: Deferred.Deferred<void> }
  Destroy: { readonly reply: Deferred.Deferred<void> }
}>
export const SwarmMessage = Data.taggedEnum<SwarmMessage>()

/** What the actor tells its owner (the facade's events, the Effect face's streams). */
export interface SwarmEvents {
  readonly connection: (socket: FlockSocket, peer: PeerInfo, direction: Direction) => void
  readonly update: () => void
  readonly ban: (peer: PeerInfo, reason: BanReason) => void
  readonly topic: (peer: PeerInfo, topic: Uint8Array) => void
  /** A connection the application saw (a `connection` event) closed. */
  readonly disconnection: (socket: FlockSocket, peer: PeerInfo) => void
  /** Every discovery should refresh now (network change). */
  readonly refreshTopics: () => void
  /** The actor failed (a defect): the Flock must close. */
  readonly failed: (error: FlockError) => void
}

export interface SwarmActorOptions extends Omit<SwarmCoreOptions, "relayConfigured"> {
  readonly dht: FlockDht
  readonly keyPair: FlockKeyPair
  /** `(remotePublicKey, payload)`: truthy (or a promise of it) rejects and bans. */
  readonly firewall?: ((remotePublicKey: Uint8Array, payload: unknown, address: unknown) => boolean | Promise<boolean>) | undefined
  /** hyperswarm's `relayThrough`: a function `(force, flock) => key | key[] | null`, static key(s), or `'auto'` (an Omega DHT's relay directory). */
  readonly relayThrough?: unknown
  readonly self?: unknown
}

export interface SwarmActor {
  readonly core: SwarmCore
  readonly mailbox: Queue.Queue<SwarmMessage>
  /** The stream of an open or pending connection. */
  socketOf(id: ConnId): FlockSocket | undefined
  /** The fiber ends: destroyed, or failed. */
  readonly done: Deferred.Deferred<void, FlockError>
}

/** Start the dial-queue actor in the current scope. */
export const makeSwarmActor = (options: SwarmActorOptions, events: SwarmEvents): Effect.Effect<SwarmActor, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const sessionsScope = yield* Scope.fork(scope)
    const run = Effect.runForkWith(yield* Effect.context<never>())
    // 'auto' (an Omega DHT): each dial falls back on a relay itself, so the §9.8 switch is not needed
    const autoRelay = options.relayThrough === "auto"
    const relayConfigured = options.relayThrough !== undefined && options.relayThrough !== null && !autoRelay
    const mailbox = yield* Queue.unbounded<SwarmMessage>()
    // the application's peerInfo.ban / reconnect become messages to this actor
    const peerOwner = {
      ban: (peer: PeerInfo, banned: boolean) => Queue.offerUnsafe(mailbox, SwarmMessage.Ban({ publicKey: peer.publicKey, banned })),
      reconnect: (peer: PeerInfo, value: boolean) => Queue.offerUnsafe(mailbox, SwarmMessage.Reconnect({ publicKey: peer.publicKey, value }))
    }
    const core = new SwarmCore({ ...options, relayConfigured, peerOwner })
    const done = yield* Deferred.make<void, FlockError>()
    const sessions = new Map<ConnId, Session>()
    const flushes = new Map<number, Deferred.Deferred<boolean>>()
    const dht = options.dht
    const firewall = options.firewall

    const post = (m: SwarmMessage) => Queue.offerUnsafe(mailbox, m)
    const reports = {
      opened: (id: ConnId) => post(SwarmMessage.Opened({ id })),
      closed: (id: ConnId, failure: DialFailure | null) => post(SwarmMessage.Closed({ id, failure }))
    }
    const startSession = (id: ConnId, socket: FlockSocket, opened: boolean) => {
      const s = makeSession(id, socket, opened)
      sessions.set(id, s)
      run(Effect.forkIn(runSession(s, reports), sessionsScope, { startImmediately: true }))
    }


    const connect = (id: ConnId, peer: PeerInfo, relayAddresses: ReadonlyArray<FlockAddress> | null, forceRelay: boolean) => {
      const relayThrough = autoRelay ? "auto" as const : relayConfigured ? chooseRelay(options.relayThrough, forceRelay, dht.randomized === true, options.random, options.self) : null
      let socket: FlockSocket
      try {
        socket = dht.connect(peer.publicKey, {
          keyPair: options.keyPair,
          relayAddresses: relayAddresses ?? undefined,
          ...(relayThrough !== null ? { relayThrough } : {})
        })
      } catch (error) {
        // a DHT that throws instead of returning a failing stream (destroyed, bad key): a failed dial
        const e = error as { code?: unknown; message?: unknown }
        post(SwarmMessage.Closed({ id, failure: { code: typeof e?.code === "string" ? e.code : null, message: String(e?.message ?? error) } }))
        return
      }
      startSession(id, socket, false)
    }

    const execute = (out: SwarmOutput, now: number): void => {
      switch (out._tag) {
        case "Dial": {
          if (firewall === undefined) {
            if (core.handleDialStarted(now, out.id)) connect(out.id, out.peer, out.relayAddresses, out.forceRelay)
            else core.handleClosed(now, out.id, null)
            return
          }
          const id = out.id
          const peer = out.peer
          const relayAddresses = out.relayAddresses
          const forceRelay = out.forceRelay
          pendingDials.set(id, { peer, relayAddresses, forceRelay })
          run(
            Effect.promise(async () => !(await firewall(peer.publicKey, null, null))).pipe(
              Effect.catchCause(() => Effect.succeed(false)),
              Effect.flatMap((allowed) => Effect.sync(() => post(SwarmMessage.DialScreened({ id, allowed }))))
            )
          )
          return
        }
        case "Destroy": {
          const s = sessions.get(out.id)
          if (s !== undefined) Queue.offerUnsafe(s.mailbox, SessionMessage.Destroy({ reason: out.reason }))
          else if (pendingDials.has(out.id)) {
            // still waiting for the user firewall: DialScreened will find it cancelled
          }
          return
        }
        case "KeepAlive": {
          const s = sessions.get(out.id)
          if (s !== undefined) Queue.offerUnsafe(s.mailbox, SessionMessage.KeepAlive())
          return
        }
        case "Connection": {
          const s = sessions.get(out.id)
          if (s !== undefined) {
            delivered.add(out.id)
            events.connection(s.socket, out.peer, out.direction)
          }
          return
        }
        case "Update":
          return events.update()
        case "Ban":
          return events.ban(out.peer, out.reason)
        case "Topic":
          return events.topic(out.peer, out.topic)
        case "Flushed": {
          const d = flushes.get(out.flush)
          if (d !== undefined) {
            flushes.delete(out.flush)
            void Deferred.doneUnsafe(d, Effect.succeed(out.result))
          }
          return
        }
        case "RefreshTopics":
          return events.refreshTopics()
      }
    }

    const pendingDials = new Map<ConnId, { peer: PeerInfo; relayAddresses: ReadonlyArray<FlockAddress> | null; forceRelay: boolean }>()
    const delivered = new Set<ConnId>()

    const handle = (m: SwarmMessage, now: number): void => {
      switch (m._tag) {
        case "Peers":
          for (const p of m.peers) core.handlePeer(now, m.topic, p)
          return
        case "TopicShared":
          for (const k of m.keys) core.handleTopicShared(now, k, m.topic)
          return
        case "JoinTopic":
          return core.joinTopic(m.topic)
        case "LeaveTopic":
          core.leaveTopic(now, m.topic, { closeConnections: m.closeConnections })
          return
        case "JoinPeer":
          core.joinPeer(now, m.publicKey)
          return
        case "LeavePeer":
          return core.leavePeer(now, m.publicKey)
        case "Ban":
          return core.banPeer(now, m.publicKey, m.banned)
        case "Reconnect":
          return core.setReconnect(m.publicKey, m.value)
        case "NetworkChange":
          return core.handleNetworkChange(now)
        case "NetworkUpdate":
          return core.handleNetworkUpdate(now, m.online)
        case "Handshake": {
          core.noteHandshake(now, m.remotePublicKey)
          const screen = core.screenHandshake(m.remotePublicKey)
          if (screen !== "ask") return void Deferred.doneUnsafe(m.reply, Effect.succeed(true))
          if (firewall === undefined) return void Deferred.doneUnsafe(m.reply, Effect.succeed(false))
          const { remotePublicKey, reply } = m
          run(
            Effect.promise(async () => Boolean(await firewall(remotePublicKey, m.payload, m.address))).pipe(
              Effect.catchCause(() => Effect.succeed(true)),
              Effect.flatMap((rejected) => Effect.sync(() => post(SwarmMessage.HandshakeDecided({ remotePublicKey, rejected, reply }))))
            )
          )
          return
        }
        case "HandshakeDecided":
          if (m.rejected) core.handleFirewallRejected(now, m.remotePublicKey)
          return void Deferred.doneUnsafe(m.reply, Effect.succeed(m.rejected))
        case "DialScreened": {
          const d = pendingDials.get(m.id)
          pendingDials.delete(m.id)
          if (d === undefined) return
          if (!m.allowed) return core.handleDialFirewalled(now, m.id)
          if (core.handleDialStarted(now, m.id)) connect(m.id, d.peer, d.relayAddresses, d.forceRelay)
          else core.handleClosed(now, m.id, null)
          return
        }
        case "Inbound": {
          const socket = m.socket
          const remote = socket.remotePublicKey
          if (remote === null || remote === undefined) {
            socket.on("error", () => {})
            socket.destroy()
            return
          }
          const id = core.handleInbound(now, remote, (existing) => {
            const s = sessions.get(existing)?.socket
            return s !== undefined && (s.rawBytesRead ?? 0) > 0 && (s.rawBytesWritten ?? 0) > 0
          })
          startSession(id, socket, true)
          return
        }
        case "Opened":
          return core.handleOpened(now, m.id)
        case "Closed": {
          const s = sessions.get(m.id)
          sessions.delete(m.id)
          const info = core.connection(m.id)
          core.handleClosed(now, m.id, m.failure)
          if (s !== undefined && delivered.delete(m.id) && info !== undefined) events.disconnection(s.socket, info.peer)
          return
        }
        case "Flush": {
          const id = core.beginFlush(now)
          flushes.set(id, m.reply)
          return
        }
        case "Suspend":
          core.suspend(now)
          return void Deferred.doneUnsafe(m.reply, Effect.void)
        case "Resume":
          core.resume(now)
          return void Deferred.doneUnsafe(m.reply, Effect.void)
        case "Destroy":
          core.destroy(now)
          destroyWaiters.push(m.reply)
          return
      }
    }
    const destroyWaiters: Array<Deferred.Deferred<void>> = []

    const step = (m: SwarmMessage | null): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          if (m === null) core.handleTimeout(now)
          else handle(m, now)
          for (let out = core.poll(); out !== undefined; out = core.poll()) execute(out, now)
        }))

    const loop = actorLoop(mailbox, () => core.nextDeadline(), step, () => {
      // a destroy is done once every stream has reported its close
      if (core.destroyed && sessions.size === 0 && destroyWaiters.length > 0) {
        for (const d of destroyWaiters.splice(0)) Deferred.doneUnsafe(d, Effect.void)
      }
    })

    const fail = (cause: Cause.Cause<unknown>) =>
      Effect.gen(function*() {
        const error = new FlockError({ reason: "actor-failed", detail: "the dial-queue actor", cause: Cause.squash(cause) })
        yield* Effect.logError("Flock dial-queue actor failed", cause)
        yield* Scope.close(sessionsScope, Exit.void)
        for (const d of flushes.values()) Deferred.doneUnsafe(d, Effect.succeed(false))
        for (const d of destroyWaiters.splice(0)) Deferred.doneUnsafe(d, Effect.void)
        Deferred.doneUnsafe(done, Effect.fail(error))
        events.failed(error)
      })

    yield* Effect.forkIn(
      loop.pipe(Effect.catchCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.void : fail(cause)))),
      scope,
      { startImmediately: true }
    )

    return {
      core,
      mailbox,
      done,
      socketOf: (id: ConnId) => sessions.get(id)?.socket
    }
  })
