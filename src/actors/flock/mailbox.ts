/**
 * The loop every Flock actor runs: take the next message from its mailbox,
 * or wake at its core's next deadline (on Effect's Clock, so TestClock
 * drives it), and hand either to `step` (`null` = the deadline passed).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"

export const actorLoop = <M>(
  mailbox: Queue.Queue<M>,
  nextDeadline: () => number,
  step: (message: M | null) => Effect.Effect<void>,
  beforeEach?: () => void
): Effect.Effect<never> =>
  Effect.gen(function*() {
    while (true) {
      beforeEach?.()
      const deadline = nextDeadline()
      let msg: M | null
      if (deadline === Number.POSITIVE_INFINITY) msg = yield* Queue.take(mailbox)
      else {
        const now = yield* Clock.currentTimeMillis
        const got = yield* Queue.take(mailbox).pipe(Effect.timeoutOption(Duration.millis(Math.max(0, deadline - now))))
        msg = Option.isSome(got) ? got.value : null
      }
      yield* step(msg)
    }
  })
