/**
 * A socket's pull-mode buffer (`UdpSocket.receive`), made on first use.
 *
 * Most sockets run in push mode (`setReceiver`: a DHT node's pair, UDX
 * sessions), so an Effect Queue per socket was a cost paid for nothing, and
 * it could only be made inside a fiber, which kept binding an Effect. Until
 * `receive` is first run, datagrams that arrive with no receiver wait in a
 * plain array (bounded by the same capacity); the first `receive` moves them
 * into a dropping Queue of that capacity, which serves from then on.
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type { Datagram } from "../Transport.js"

export class Inbox {
  private queue: Queue.Queue<Datagram> | null = null
  private pending: Array<Datagram> | null = null
  private shut = false
  /** Wait for at least one datagram; every buffered one, oldest first. */
  readonly receive: Effect.Effect<ReadonlyArray<Datagram>>

  constructor(private readonly capacity: number) {
    this.receive = Effect.suspend(() => {
      const q = this.queue
      if (q !== null) return Queue.takeAll(q)
      return Effect.flatMap(Queue.dropping<Datagram>(this.capacity), (made) => this.adopt(made))
    })
  }

  private adopt(made: Queue.Queue<Datagram>): Effect.Effect<ReadonlyArray<Datagram>> {
    // a concurrent first receive may have made one already: keep the first
    const q = (this.queue ??= made)
    if (q === made) {
      if (this.pending !== null) Queue.offerAllUnsafe(q, this.pending)
      this.pending = null
      if (this.shut) Queue.shutdownUnsafe(q)
    }
    return Queue.takeAll(q)
  }

  /** Buffer one datagram; false when full or shut down (the caller counts a drop). */
  offer(d: Datagram): boolean {
    if (this.queue !== null) return Queue.offerUnsafe(this.queue, d)
    if (this.shut) return false
    const p = (this.pending ??= [])
    if (p.length >= this.capacity) return false
    p.push(d)
    return true
  }

  /** The socket closed: buffered datagrams are dropped, a waiting `receive` ends. */
  shutdown(): void {
    this.shut = true
    this.pending = null
    if (this.queue !== null) Queue.shutdownUnsafe(this.queue)
  }
}
