/**
 * `runMain` for Node from node builtins: the main Effect runs as one fiber;
 * SIGINT and SIGTERM interrupt it (its finalizers run), and the process
 * exits with the code the teardown gives (a signal, or a failure, exits at
 * once; a success lets the event loop drain).
 *
 * The same contract as `@effect/platform-node`'s `NodeRuntime.runMain`,
 * which this package does not depend on: its 4.1 line declares Node >= 22.19
 * while Omega supports Node 20.19 and later (`engines` in package.json).
 */
import * as Runtime from "effect/Runtime"

export const runMain: ReturnType<typeof Runtime.makeRunMain> = Runtime.makeRunMain(({ fiber, teardown }) => {
  let signalled = false
  const onSignal = (): void => {
    signalled = true
    fiber.interruptUnsafe(fiber.id)
  }
  fiber.addObserver((exit) => {
    process.removeListener("SIGINT", onSignal)
    process.removeListener("SIGTERM", onSignal)
    teardown(exit, (code) => {
      if (signalled || code !== 0) process.exit(code)
    })
  })
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
})
