/**
 * A virtual clock for large simulations: the semantics of Effect's TestClock
 * (time moves only when advanced; sleepers wake in time order, ties in the
 * order they slept; everything a wake-up schedules runs before time moves
 * on), at a fraction of its cost per wake-up.
 *
 * A simulated network wakes at every virtual millisecond that has a
 * delivery. Under TestClock each wake-up is a sleeping fiber, a latch, a
 * live warning timer and a few scheduler turns: a tenth to a fifth of a
 * large simulation's time went there. Here a wake-up is a heap entry and a
 * plain callback (`schedule`, which the simulated network uses when its
 * clock offers it), and the advancing fiber yields to the scheduler only
 * when a wake-up scheduled work (it tracks the tasks a wake-up schedules,
 * and the tasks those schedule, as TestClock does).
 *
 * Use `VirtualClock.layer` where a simulation would use `TestClock.layer`,
 * and `VirtualClock.adjust` for `TestClock.adjust`. A fiber that never
 * settles (it keeps scheduling work) stalls `adjust`: TestClock warns about
 * that after a live delay; this clock has no live timers at all.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scheduler from "effect/Scheduler"
import { Heap } from "../util/heap.js"

class Entry {
  cancelled = false
  constructor(readonly at: number, readonly seq: number, readonly f: (at: number) => void) {}
}

interface Tracker {
  pending: number
  onIdle: (() => void) | undefined
}

export interface VirtualClockService extends Clock.Clock {
  /** Run `f(at)` when the clock reaches `at` (ms), in (at, order of scheduling) order with sleepers. */
  readonly schedule: (at: number, f: (at: number) => void) => void
  /** Move time forward by `millis`, waking everything due on the way. */
  readonly adjust: (millis: number) => Effect.Effect<void>
}

class VClock implements VirtualClockService {
  private now = 0
  private seq = 0
  private readonly heap = new Heap<Entry>()
  /** Set while a wake-up runs: the tasks it schedules are counted here. */
  current: Tracker | undefined = undefined
  readonly currentTimeMillis: Effect.Effect<number>
  readonly currentTimeNanos: Effect.Effect<bigint>
  readonly monotonicTimeNanos: Effect.Effect<bigint>

  constructor() {
    this.currentTimeMillis = Effect.sync(() => this.now)
    this.currentTimeNanos = Effect.sync(() => this.currentTimeNanosUnsafe())
    this.monotonicTimeNanos = this.currentTimeNanos
  }

  currentTimeMillisUnsafe(): number {
    return this.now
  }
  currentTimeNanosUnsafe(): bigint {
    return BigInt(Math.round(this.now * 1_000_000))
  }
  monotonicTimeNanosUnsafe(): bigint {
    return this.currentTimeNanosUnsafe()
  }

  readonly schedule = (at: number, f: (at: number) => void): void => {
    this.heap.push(new Entry(at, this.seq++, f))
  }

  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      const end = this.now + Duration.toMillis(duration)
      if (!(end > this.now)) {
        resume(Effect.void)
        return
      }
      const e = new Entry(end, this.seq++, () => resume(Effect.void))
      this.heap.push(e)
      return Effect.sync(() => {
        e.cancelled = true
      })
    })
  }

  readonly adjust = (millis: number): Effect.Effect<void> => {
    const self = this
    return Effect.gen(function*() {
      // let what is already scheduled run first (as TestClock.adjust does)
      yield* Effect.yieldNow
      const end = self.now + Math.max(0, millis)
      const heap = self.heap
      while (true) {
        const e = heap.peek()
        if (e === undefined || e.at > end) break
        heap.pop()
        if (e.cancelled) continue
        if (e.at > self.now) self.now = e.at
        const tracker: Tracker = { pending: 0, onIdle: undefined }
        self.current = tracker
        try {
          e.f(e.at)
        } finally {
          self.current = undefined
        }
        if (tracker.pending > 0) yield* waitIdle(tracker)
      }
      if (end > self.now) self.now = end
    })
  }
}

const waitIdle = (tracker: Tracker): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (tracker.pending === 0) return resume(Effect.void)
    tracker.onIdle = () => resume(Effect.void)
    return Effect.sync(() => {
      tracker.onIdle = undefined
    })
  })

/** The parent scheduler, counting what a wake-up schedules (transitively) on its tracker. */
const trackingScheduler = (clock: VClock, parent: Scheduler.Scheduler): Scheduler.Scheduler => ({
  executionMode: parent.executionMode,
  shouldYield: (fiber) => parent.shouldYield(fiber),
  makeDispatcher() {
    const dispatcher = parent.makeDispatcher()
    return {
      scheduleTask(task, priority) {
        const tracker = clock.current
        if (tracker === undefined) return dispatcher.scheduleTask(task, priority)
        tracker.pending++
        dispatcher.scheduleTask(() => {
          const previous = clock.current
          clock.current = tracker
          try {
            task()
          } finally {
            clock.current = previous
            if (--tracker.pending === 0) tracker.onIdle?.()
          }
        }, priority)
      },
      flush() {
        dispatcher.flush()
      }
    }
  }
})

export class VirtualClock extends Context.Service<VirtualClock, VirtualClockService>()("omega/VirtualClock") {
  /** A new virtual clock at time 0, as the Clock (and the scheduler that tracks its wake-ups) of everything it is provided to. */
  static readonly layer = (): Layer.Layer<VirtualClock> =>
    Layer.effectContext(
      Effect.gen(function*() {
        const parent = yield* Scheduler.Scheduler
        const clock = new VClock()
        return Context.make(VirtualClock, clock as VirtualClockService).pipe(
          Context.add(Clock.Clock, clock as Clock.Clock),
          Context.add(Scheduler.Scheduler, trackingScheduler(clock, parent))
        )
      })
    )
  /** Move the virtual clock in context forward by `millis`. */
  static readonly adjust = (millis: number): Effect.Effect<void, never, VirtualClock> => VirtualClock.use((c) => c.adjust(millis))
}

/** The clock's `schedule` when `clock` is a virtual clock (the simulated network drives itself with it). */
export const virtualSchedule = (clock: Clock.Clock): VirtualClockService["schedule"] | undefined =>
  clock instanceof VClock ? clock.schedule : undefined
