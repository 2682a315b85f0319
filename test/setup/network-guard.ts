/**
 * Network safety for every test file (vitest `setupFiles`): tests talk only
 * to loopback.
 *
 * - Every node:dgram send (Omega's real-UDP transport, and any test socket)
 *   to an address outside 127.0.0.0/8 is dropped and recorded; the file
 *   fails in `afterAll` if one was attempted.
 * - Omega's default bootstrap list is emptied (OMEGA_BOOTSTRAP=""): a node
 *   made without `bootstrap` knows no one and sends nothing, not even the
 *   DNS lookups of the public nodes' names. Child processes the tests spawn
 *   (the CLI, the examples) inherit it.
 * - The reference's default bootstrap list (hyperdht's public nodes) is
 *   emptied, so a reference node made without `bootstrap` knows no one
 *   (its native sockets are not node:dgram and cannot be patched here).
 */
import dgram from "node:dgram"
import { createRequire } from "node:module"
import { afterAll, expect } from "vitest"

process.env["OMEGA_BOOTSTRAP"] = ""

const violations: Array<string> = []

const isLoopback = (host: unknown): boolean => typeof host === "string" && (host.startsWith("127.") || host === "localhost")

const original = dgram.Socket.prototype.send
// (msg, [offset, length,] port, [address], [callback])
dgram.Socket.prototype.send = function guardedSend(this: dgram.Socket, ...args: Array<unknown>): void {
  const rest = args.slice(1)
  if (typeof rest[0] === "number" && typeof rest[1] === "number" && typeof rest[2] === "number") rest.splice(0, 2)
  const address = typeof rest[1] === "string" ? rest[1] : "127.0.0.1"
  if (!isLoopback(address)) {
    violations.push(`${address}:${String(rest[0])}`)
    return
  }
  return (original as (...a: Array<unknown>) => void).apply(this, args)
} as typeof dgram.Socket.prototype.send

try {
  const constants = createRequire(import.meta.url)("hyperdht/lib/constants.js") as { BOOTSTRAP_NODES: Array<unknown> }
  constants.BOOTSTRAP_NODES.length = 0
} catch {
  // the reference is a devDependency; without it there is nothing to empty
}

afterAll(() => {
  expect(violations, "datagrams sent outside loopback").toEqual([])
})
