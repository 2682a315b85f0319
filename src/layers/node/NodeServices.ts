/**
 * The platform services a command-line program built on `effect/cli` asks
 * for (`Command.Environment`), from node builtins:
 *
 * - `Stdio`: the process's arguments, terminal checks (colours in help
 *   text), stdout / stderr sinks and stdin;
 * - `Path`: effect's own implementation;
 * - `Terminal`: size, `display` and `readLine`; no raw key input (the CLI
 *   asks for none: `readInput` and `size` give an ended queue);
 * - `FileSystem` and `ChildProcessSpawner`: not provided (no flag reads a
 *   file, nothing spawns a process): every call fails with a `PlatformError`.
 *
 * The counterpart of `@effect/platform-node`'s `NodeServices.layer`, which
 * this package does not depend on: its 4.1 line declares Node >= 22.19
 * while Omega supports Node 20.19 and later (`engines` in package.json).
 */
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Layer from "effect/Layer"
import * as Path from "effect/Path"
import { badArgument, type PlatformError, systemError } from "effect/PlatformError"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as Queue from "effect/Queue"
import * as Sink from "effect/Sink"
import * as Stdio from "effect/Stdio"
import * as Stream from "effect/Stream"
import * as Terminal from "effect/Terminal"
import { createInterface } from "node:readline"

/** Write to a Node stream, resuming once the chunk is handed to the OS (or failing with its error). */
const write = (out: NodeJS.WriteStream, method: string, chunk: string | Uint8Array): Effect.Effect<void, PlatformError> =>
  Effect.callback<void, PlatformError>((resume) => {
    out.write(chunk, (err) => {
      resume(err === null || err === undefined ? Effect.void : Effect.fail(systemError({ module: "Stdio", method, _tag: "Unknown", cause: err })))
    })
  })

const sinkOf = (out: NodeJS.WriteStream, method: string, endOnDone: boolean): Sink.Sink<void, string | Uint8Array, never, PlatformError> => {
  const each = Sink.forEach((chunk: string | Uint8Array) => write(out, method, chunk))
  return endOnDone ? Sink.ensuring(each, Effect.sync(() => out.end())) : each
}

const stdio: Stdio.Stdio = Stdio.make({
  args: Effect.sync(() => process.argv.slice(2)),
  stdinIsTerminal: Effect.sync(() => process.stdin.isTTY === true),
  stdoutIsTerminal: Effect.sync(() => process.stdout.isTTY === true),
  stderrIsTerminal: Effect.sync(() => process.stderr.isTTY === true),
  stdout: (options) => sinkOf(process.stdout, "stdout", options?.endOnDone === true),
  stderr: (options) => sinkOf(process.stderr, "stderr", options?.endOnDone === true),
  stdin: Stream.fromAsyncIterable(process.stdin as AsyncIterable<Uint8Array>, (cause) =>
    systemError({ module: "Stdio", method: "stdin", _tag: "Unknown", cause }))
})

/** A queue that has already ended: a source with nothing to give. */
const endedQueue = <A>(): Effect.Effect<Queue.Dequeue<A, Cause.Done>> =>
  Effect.map(Queue.unbounded<A, Cause.Done>(), (q) => {
    Queue.endUnsafe(q)
    return q
  })

const terminal: Terminal.Terminal = Terminal.make({
  columns: Effect.sync(() => process.stdout.columns ?? 80),
  rows: Effect.sync(() => process.stdout.rows ?? 24),
  size: endedQueue<Terminal.Size>(),
  readInput: endedQueue<Terminal.UserInput>(),
  readLine: Effect.callback<string, Terminal.QuitError>((resume) => {
    const rl = createInterface({ input: process.stdin })
    let done = false
    const finish = (e: Effect.Effect<string, Terminal.QuitError>): void => {
      if (done) return
      done = true
      rl.close()
      resume(e)
    }
    rl.once("line", (line) => finish(Effect.succeed(line)))
    rl.once("close", () => finish(Effect.fail(new Terminal.QuitError())))
    return Effect.sync(() => {
      done = true
      rl.close()
    })
  }),
  display: (text) => write(process.stdout, "display", text)
})

const spawner = ChildProcessSpawner.make(() =>
  Effect.fail(badArgument({ module: "ChildProcessSpawner", method: "spawn", description: "this program spawns no processes" })))

/** Stdio, Path, Terminal, FileSystem (none) and ChildProcessSpawner (none) for Node. */
export const layer: Layer.Layer<
  Stdio.Stdio | Path.Path | Terminal.Terminal | FileSystem.FileSystem | ChildProcessSpawner.ChildProcessSpawner
> = Layer.mergeAll(
  Layer.succeed(Stdio.Stdio, stdio),
  Path.layer,
  Layer.succeed(Terminal.Terminal, terminal),
  FileSystem.layerNoop({}),
  Layer.succeed(ChildProcessSpawner.ChildProcessSpawner, spawner)
)
