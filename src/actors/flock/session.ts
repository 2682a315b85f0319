/**
 * A Flock peer session: one fiber per connection (pending dial or open
 * stream, either direction). It owns the stream, turns its events into
 * tagged messages on its own queue, and reports to the swarm actor:
 * `Opened` once, `Closed` once (with the error that ended it). The swarm
 * actor commands it through the same queue (`Destroy`, `KeepAlive`).
 *
 * The session keeps an 'error' listener on the stream for its whole life,
 * so a stream error never reaches Node as an unhandled 'error' event
 * (hyperswarm#93, flock.md §15.2 #12); the error is the close reason the
 * swarm records (`peerInfo.lastError`) and the application still sees it on
 * its own listeners.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type { FlockSocket } from "./dht-contract.js"
import { ConnectionClosedByFlock } from "./errors.js"
import type { DialFailure } from "./peer-info.js"
import type { ConnId, DestroyReason } from "./swarm.js"

export type SessionMessage = Data.TaggedEnum<{
  StreamOpened: {}
  StreamClosed: {}
  Destroy: { readonly reason: DestroyReason }
  KeepAlive: {}
}>
export const SessionMessage = Data.taggedEnum<SessionMessage>()

export interface SessionReports {
  readonly opened: (id: ConnId) => void
  readonly closed: (id: ConnId, failure: DialFailure | null) => void
}

export interface Session {
  readonly id: ConnId
  readonly socket: FlockSocket
  readonly mailbox: Queue.Queue<SessionMessage>
  /** The stream opened (outbound), or arrived (inbound). */
  opened: boolean
}

const failureOf = (error: unknown): DialFailure | null => {
  if (error === null || error === undefined) return null
  const e = error as { code?: unknown; message?: unknown }
  return { code: typeof e.code === "string" ? e.code : null, message: typeof e.message === "string" ? e.message : String(error) }
}

/** Make a session for `socket` (not started). `opened`: an inbound stream, already handed over. */
export const makeSession = (id: ConnId, socket: FlockSocket, opened: boolean): Session => ({
  id,
  socket,
  mailbox: Effect.runSync(Queue.unbounded<SessionMessage>()),
  opened
})

/**
 * The session's fiber: runs until the stream closed and that was
 * reported. Interrupting it (the Flock's scope closing) destroys the stream.
 */
export const runSession = (s: Session, reports: SessionReports): Effect.Effect<void> =>
  Effect.suspend(() => {
    const socket = s.socket
    let lastError: unknown = null
    let closed = false
    const onError = (e: unknown) => {
      lastError = e
    }
    const onOpen = () => Queue.offerUnsafe(s.mailbox, SessionMessage.StreamOpened())
    const onClose = () => Queue.offerUnsafe(s.mailbox, SessionMessage.StreamClosed())
    socket.on("error", onError)
    socket.once("close", onClose)
    if (!s.opened) socket.once("open", onOpen)
    // a stream that closed before we listened
    if (socket.destroyed) onClose()
    const loop: Effect.Effect<void> = Effect.gen(function*() {
      while (true) {
        const msg = yield* Queue.take(s.mailbox)
        switch (msg._tag) {
          case "StreamOpened":
            if (!s.opened && !closed) {
              s.opened = true
              reports.opened(s.id)
            }
            break
          case "StreamClosed":
            if (!closed) {
              closed = true
              const err = lastError ?? (socket as { errored?: unknown }).errored ?? null
              reports.closed(s.id, failureOf(err))
            }
            return
          case "Destroy":
            if (!socket.destroyed) socket.destroy(new ConnectionClosedByFlock({ reason: msg.reason }))
            break
          case "KeepAlive":
            if (!socket.destroyed) socket.sendKeepAlive?.()
            break
        }
      }
    })
    return loop.pipe(
      Effect.ensuring(Effect.sync(() => {
        socket.off("open", onOpen)
        socket.off("close", onClose)
        if (!closed && !socket.destroyed) socket.destroy()
        // keep swallowing errors after we stopped watching: a late error must not crash the process
        if (socket.listenerCount("error") <= 1) socket.on("error", () => {})
        socket.off("error", onError)
      }))
    )
  })
