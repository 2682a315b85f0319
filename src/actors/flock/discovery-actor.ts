/**
 * The topic-discovery actor: one fiber per joined topic that owns its
 * `TopicDiscoveryCore` (modes of the handles, the announce / lookup
 * refresh cycle, the refresh timer, teardown with unannounce) and reads a
 * queue of tagged messages: the handles' commands, and the reports of the
 * work it started (the swarm's listen, each query's replies and end, the
 * unannounce). Peers a query finds go to the dial-queue actor as `Peers`
 * messages. Timers follow Effect's Clock (TestClock in tests).
 *
 * Queries run in their own fibers (one per refresh cycle) so the actor
 * never waits on the network; a cancelled query still reports its end.
 * A defect here fails this discovery with a typed `FlockError`, logged and
 * reported through `events.failed`; the rest of the Flock keeps running.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { FlockAddress, FlockDht, FlockKeyPair, FlockQuery } from "./dht-contract.js"
import {
  type ClosestNode,
  type DiscoveredPeer,
  type DiscoveryOutput,
  type HandleId,
  type HandleOptions,
  type RefreshTicket,
  TopicDiscoveryCore,
  type TopicDiscoveryOptions
} from "./discovery.js"
import { FlockError } from "./errors.js"
import { actorLoop } from "./mailbox.js"

export type DiscoveryMessage = Data.TaggedEnum<{
  AddHandle: { readonly options: HandleOptions; readonly reply: Deferred.Deferred<HandleId, FlockError>; readonly refreshed: Deferred.Deferred<boolean, FlockError> }
  RefreshHandle: { readonly handle: HandleId; readonly options: HandleOptions; readonly reply: Deferred.Deferred<boolean, FlockError> }
  DestroyHandle: { readonly handle: HandleId; readonly reply: Deferred.Deferred<boolean, FlockError> }
  Refresh: { readonly reply: Deferred.Deferred<boolean, FlockError> }
  Flushed: { readonly reply: Deferred.Deferred<boolean, FlockError> }
  PredecessorDone: {}
  Listened: { readonly cycle: number; readonly ok: boolean }
  Reply: { readonly cycle: number; readonly peers: ReadonlyArray<DiscoveredPeer> }
  QueryDone: { readonly cycle: number; readonly ok: boolean; readonly closestNodes: ReadonlyArray<ClosestNode> | null }
  Unannounced: {}
  Suspend: { readonly reply: Deferred.Deferred<void> }
  Resume: { readonly reply: Deferred.Deferred<void> }
  Destroy: { readonly reply: Deferred.Deferred<void> }
}>
export const DiscoveryMessage = Data.taggedEnum<DiscoveryMessage>()

export interface DiscoveryEnv {
  readonly dht: FlockDht
  readonly keyPair: FlockKeyPair
  /** The swarm's `listen()` (started once, shared). */
  readonly listen: () => Promise<unknown>
  /** The DHT nodes holding our own-key announcement (the server's relay addresses). */
  readonly relayAddresses: () => ReadonlyArray<FlockAddress>
  /** Hand peers found under the topic to the dial-queue actor. */
  readonly found: (topic: Uint8Array, peers: ReadonlyArray<DiscoveredPeer>) => void
  /** Server-only: peers that announced the topic too (the ones we are connected to learn it). */
  readonly shared: (topic: Uint8Array, keys: ReadonlyArray<Uint8Array>) => void
  /** The last handle left: the Flock leaves the topic. */
  readonly leave: (topic: Uint8Array) => void
  readonly failed: (error: FlockError) => void
}

export interface DiscoveryActor {
  readonly core: TopicDiscoveryCore
  readonly mailbox: Queue.Queue<DiscoveryMessage>
  /** Resolves when the teardown of a destroy finished (or the actor failed). */
  readonly gone: Deferred.Deferred<void>
}

const rejection = (reason: "destroyed" | "handle-destroyed" | "no-mode"): FlockError =>
  new FlockError({ reason: reason === "no-mode" ? "no-mode" : "discovery-destroyed" })

const peersOf = (reply: unknown): Array<DiscoveredPeer> => {
  const peers = (reply as { peers?: unknown } | null)?.peers
  if (!Array.isArray(peers)) return []
  const out: Array<DiscoveredPeer> = []
  for (const p of peers) {
    const k = (p as { publicKey?: unknown })?.publicKey
    if (!(k instanceof Uint8Array) || k.length !== 32) continue
    const ra = (p as { relayAddresses?: unknown }).relayAddresses
    out.push({ publicKey: k, relayAddresses: Array.isArray(ra) ? (ra as Array<FlockAddress>) : [] })
  }
  return out
}

/** Start a topic-discovery actor in the current scope. */
export const makeDiscoveryActor = (options: TopicDiscoveryOptions, env: DiscoveryEnv): Effect.Effect<DiscoveryActor, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const run = Effect.runForkWith(yield* Effect.context<never>())
    const core = new TopicDiscoveryCore(options)
    const mailbox = yield* Queue.unbounded<DiscoveryMessage>()
    const gone = yield* Deferred.make<void>()
    const post = (m: DiscoveryMessage) => Queue.offerUnsafe(mailbox, m)
    const waiters = new Map<number, Array<Deferred.Deferred<boolean, FlockError>>>()
    const teardownWaiters: { destroy: Array<Deferred.Deferred<void>>; suspend: Array<Deferred.Deferred<void>> } = { destroy: [], suspend: [] }
    const queries = new Map<number, FlockQuery>()
    const topic = core.topic

    const settleTicket = (ticket: RefreshTicket, reply: Deferred.Deferred<boolean, FlockError>): void => {
      switch (ticket._tag) {
        case "Pending": {
          const list = waiters.get(ticket.cycle)
          if (list === undefined) waiters.set(ticket.cycle, [reply])
          else list.push(reply)
          return
        }
        case "Settled":
          return void Deferred.doneUnsafe(reply, Effect.succeed(ticket.ok ?? false))
        case "Rejected":
          return void Deferred.doneUnsafe(reply, Effect.fail(rejection(ticket.reason)))
      }
    }
    const ignore = (): Deferred.Deferred<boolean, FlockError> => Deferred.makeUnsafe<boolean, FlockError>()

    const startQuery = (cycle: number, kind: "announce" | "lookup" | "lookupAndUnannounce", clear: boolean, closestNodes: ReadonlyArray<ClosestNode> | null) => {
      const dht = env.dht
      const opts = closestNodes !== null ? { closestNodes } : {}
      let q: FlockQuery
      let after: (() => Promise<unknown>) | null = null
      try {
        if (kind === "announce") q = dht.announce(topic, env.keyPair, env.relayAddresses(), { clear, ...opts })
        else if (kind === "lookupAndUnannounce" && typeof dht.lookupAndUnannounce === "function") q = dht.lookupAndUnannounce(topic, env.keyPair, opts)
        else {
          q = dht.lookup(topic, opts)
          // a DHT without lookupAndUnannounce: the lookup, then an unannounce
          if (kind === "lookupAndUnannounce") after = () => dht.unannounce(topic, env.keyPair, opts)
        }
      } catch {
        post(DiscoveryMessage.QueryDone({ cycle, ok: false, closestNodes: null }))
        return
      }
      queries.set(cycle, q)
      const query = q
      run(
        Effect.promise(async () => {
          try {
            for await (const reply of query) {
              const peers = peersOf(reply)
              if (peers.length > 0) post(DiscoveryMessage.Reply({ cycle, peers }))
            }
            if (after !== null) await after()
            const nodes = query.closestNodes
            post(DiscoveryMessage.QueryDone({ cycle, ok: true, closestNodes: Array.isArray(nodes) ? nodes : null }))
          } catch {
            post(DiscoveryMessage.QueryDone({ cycle, ok: false, closestNodes: null }))
          }
        })
      )
    }

    const execute = (out: DiscoveryOutput): void => {
      switch (out._tag) {
        case "Listen": {
          const cycle = out.cycle
          env.listen().then(
            () => post(DiscoveryMessage.Listened({ cycle, ok: true })),
            () => post(DiscoveryMessage.Listened({ cycle, ok: false }))
          )
          return
        }
        case "Query":
          return startQuery(out.cycle, out.kind, out.clear, out.closestNodes)
        case "CancelQuery": {
          const q = queries.get(out.cycle)
          if (q !== undefined) {
            try {
              q.destroy()
            } catch {
              // a query that cannot be destroyed ends on its own
            }
          }
          return
        }
        case "Unannounce": {
          const closestNodes = out.closestNodes
          Promise.resolve()
            .then(() => env.dht.unannounce(topic, env.keyPair, { closestNodes, onlyClosestNodes: true, force: true }))
            .then(
              () => post(DiscoveryMessage.Unannounced()),
              () => post(DiscoveryMessage.Unannounced())
            )
          return
        }
        case "RefreshSettled": {
          const list = waiters.get(out.cycle)
          waiters.delete(out.cycle)
          if (list !== undefined) for (const d of list) Deferred.doneUnsafe(d, Effect.succeed(out.ok))
          return
        }
        case "Leave":
          return env.leave(topic)
        case "TeardownDone": {
          const list = teardownWaiters[out.reason].splice(0)
          for (const d of list) Deferred.doneUnsafe(d, Effect.void)
          if (out.reason === "destroy") {
            // every refresh still waiting ends: the discovery is gone
            for (const list of waiters.values()) for (const d of list) Deferred.doneUnsafe(d, Effect.succeed(false))
            waiters.clear()
            Deferred.doneUnsafe(gone, Effect.void)
          }
          return
        }
      }
    }

    const handle = (m: DiscoveryMessage, now: number): void => {
      switch (m._tag) {
        case "AddHandle": {
          const { handle, ticket } = core.addHandle(now, m.options)
          if (handle === null) {
            Deferred.doneUnsafe(m.reply, Effect.fail(new FlockError({ reason: "discovery-destroyed" })))
            Deferred.doneUnsafe(m.refreshed, Effect.fail(new FlockError({ reason: "discovery-destroyed" })))
            return
          }
          Deferred.doneUnsafe(m.reply, Effect.succeed(handle))
          return settleTicket(ticket, m.refreshed)
        }
        case "RefreshHandle":
          return settleTicket(core.refreshHandle(now, m.handle, m.options), m.reply)
        case "DestroyHandle":
          return settleTicket(core.destroyHandle(now, m.handle), m.reply)
        case "Refresh":
          return settleTicket(core.refresh(now), m.reply)
        case "Flushed":
          return settleTicket(core.flushed(), m.reply)
        case "PredecessorDone":
          return core.handlePredecessorDone(now)
        case "Listened":
          return core.handleListened(now, m.cycle, m.ok)
        case "Reply": {
          const peers = core.handleReply(m.cycle, m.peers)
          if (peers.length > 0) env.found(topic, peers)
          // server-only: nobody is dialled, but a peer we are connected to
          // that announced this topic too shares it (issue 19)
          else if (!core.isClient && m.peers.length > 0) env.shared(topic, m.peers.map((p) => p.publicKey))
          return
        }
        case "QueryDone":
          queries.delete(m.cycle)
          return core.handleQueryDone(now, m.cycle, { ok: m.ok, closestNodes: m.closestNodes })
        case "Unannounced":
          return core.handleUnannounced(now)
        case "Suspend":
          if (core.suspend(now)) teardownWaiters.suspend.push(m.reply)
          else Deferred.doneUnsafe(m.reply, Effect.void)
          return
        case "Resume": {
          const ticket = core.resume(now)
          if (ticket !== null) settleTicket(ticket, ignore())
          return void Deferred.doneUnsafe(m.reply, Effect.void)
        }
        case "Destroy": {
          const state = core.destroy(now)
          if (state === "done") Deferred.doneUnsafe(m.reply, Effect.void)
          else teardownWaiters.destroy.push(m.reply)
          return
        }
      }
    }

    const step = (m: DiscoveryMessage | null): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          if (m === null) {
            const ticket = core.handleTimeout(now)
            if (ticket !== null) settleTicket(ticket, ignore())
          } else handle(m, now)
          for (let out = core.poll(); out !== undefined; out = core.poll()) execute(out)
        }))

    const loop = actorLoop(mailbox, () => core.nextDeadline(), step)

    /** The actor ended (failed or interrupted): its queries stop and whoever waits on it is let go. */
    const release = (refreshes: Effect.Effect<boolean, FlockError>) => {
      for (const q of queries.values()) {
        try {
          q.destroy()
        } catch {
          // a query that cannot be destroyed ends on its own
        }
      }
      for (const list of waiters.values()) for (const d of list) Deferred.doneUnsafe(d, refreshes)
      for (const d of [...teardownWaiters.destroy, ...teardownWaiters.suspend]) Deferred.doneUnsafe(d, Effect.void)
      Deferred.doneUnsafe(gone, Effect.void)
    }
    const fail = (cause: Cause.Cause<unknown>) =>
      Effect.gen(function*() {
        const error = new FlockError({ reason: "actor-failed", detail: `the discovery of topic ${core.topicKey}`, cause: Cause.squash(cause) })
        yield* Effect.logError("Flock discovery actor failed", cause)
        release(Effect.fail(error))
        env.failed(error)
      })
    const stopped = Effect.sync(() => release(Effect.succeed(false)))
    yield* Effect.forkIn(
      loop.pipe(
        Effect.onInterrupt(() => stopped),
        Effect.catchCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.void : fail(cause)))
      ),
      scope,
      { startImmediately: true }
    )
    return { core, mailbox, gone }
  })
