/**
 * Errors users can catch: every error class of the sources is exported from
 * the package root under its own name; each instance is an Error whose
 * `name` (and `_tag`) is that name, and carries hyperdht's / dht-rpc's
 * `code` string where the reference has one.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import * as Root from "../src/index.js"

const root = fileURLToPath(new URL("..", import.meta.url))

type ErrorClass = new(fields?: never) => Error & { readonly _tag?: string; readonly code?: unknown }

const exported = (name: string): ErrorClass => {
  const c = (Root as Record<string, unknown>)[name]
  if (typeof c !== "function") throw new Error(`${name} is not exported from the package root`)
  return c as ErrorClass
}

const make = (name: string, fields: Record<string, unknown>): Error & { readonly _tag?: string; readonly code?: unknown } =>
  new (exported(name) as unknown as new(f: Record<string, unknown>) => Error & { readonly _tag?: string; readonly code?: unknown })(fields)

/**
 * Every error class declared in src/ (a class extending an Error or a tagged
 * error), except Flock's: those belong to the Flock package's entry.
 */
const declaredErrorClasses = (): Array<{ readonly file: string; readonly name: string }> => {
  const out: Array<{ file: string; name: string }> = []
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      if (e.isDirectory()) {
        if (!/flock/i.test(e.name)) walk(p)
      }
      else if (e.name.endsWith(".ts") && !/flock/i.test(e.name)) {
        const text = readFileSync(p, "utf8")
        for (const m of text.matchAll(/export class (\w+) extends (?:Data\.TaggedError|Schema\.TaggedError|Error\b)/g)) {
          out.push({ file: relative(root, p), name: m[1]! })
        }
      }
    }
  }
  walk(join(root, "src"))
  return out
}

describe("errors users can catch", () => {
  it("every error class in src/ is exported from the package root, and its name is the exported name", async () => {
    const declared = declaredErrorClasses()
    expect(declared.length).toBeGreaterThan(20)
    const values = new Map<unknown, string>()
    for (const [k, v] of Object.entries(Root)) values.set(v, k)
    for (const { file, name } of declared) {
      const mod = (await import(join(root, file))) as Record<string, unknown>
      const cls = mod[name] as ErrorClass
      const as = values.get(cls)
      expect(as, `${name} (${file}) is not exported from the package root`).toBeDefined()
      const instance = new (cls as unknown as new(f: Record<string, unknown>) => Error)({})
      expect(instance).toBeInstanceOf(Error)
      expect(instance.name, `${name}: name`).toBe(as)
      expect((instance as { _tag?: string })._tag, `${name}: _tag`).toBe(as)
    }
  })

  it("the reference's code strings", () => {
    const cases: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
      ["GatewayDestroyed", {}, "NODE_DESTROYED"],
      ["ConnectionError", { code: "PEER_NOT_FOUND", detail: "Peer not found" }, "PEER_NOT_FOUND"],
      ["ConnectionError", { code: "HOLEPUNCH_ABORTED", detail: "x" }, "HOLEPUNCH_ABORTED"],
      ["RequestError", { code: "REQUEST_TIMEOUT", to: { host: "127.0.0.1", port: 1 }, command: 0, internal: true }, "REQUEST_TIMEOUT"],
      ["RelayAborted", { reason: "Timeout", detail: "x" }, "RELAY_ABORTED"],
      ["BindError", { host: "127.0.0.1", port: 1, detail: "EADDRINUSE" }, "EADDRINUSE"],
      // the facade's own failures, which the reference does not report, in the same style
      ["InvalidArgument", { argument: "topic", detail: "expected 32 bytes" }, "INVALID_ARGUMENT"],
      ["InvalidSeed", { detail: "got 3 bytes" }, "INVALID_ARGUMENT"],
      ["WriteRejected", { operation: "announce", attempted: 0, counts: { accepted: 0, seqReused: 0, seqTooLow: 0, otherErrors: 0, failed: 0 } }, "WRITE_REJECTED"],
      ["ValueTooLarge", { operation: "immutablePut", size: 3000, limit: 1850 }, "VALUE_TOO_LARGE"]
    ]
    for (const [name, fields, code] of cases) {
      const e = make(name, fields)
      expect(e.name).toBe(name)
      expect(e.code, name).toBe(code)
    }
    expect(make("GatewayDestroyed", {}).message).toBe("NODE_DESTROYED: Node destroyed")
  })

  it("one class for invalid arguments (InvalidInput is gone)", () => {
    expect((Root as Record<string, unknown>)["InvalidInput"]).toBeUndefined()
    expect(Root.Gateway.bootstrapper.bind(Root.Gateway, 0, "127.0.0.1")).toThrow(Root.InvalidArgument)
    expect(() => Root.Gateway.hash("text" as unknown as Uint8Array)).toThrow(Root.InvalidArgument)
  })

  it("a destroyed node's operations reject with GatewayDestroyed (code NODE_DESTROYED), catchable by class", async () => {
    const node = new Root.Gateway({ bootstrap: [], host: "127.0.0.1" })
    await node.ready()
    await node.destroy()
    const err = await node.status().then(() => null, (e: unknown) => e)
    expect(err).toBeInstanceOf(Root.GatewayDestroyed)
    expect((err as Root.GatewayDestroyed).code).toBe("NODE_DESTROYED")
    expect((err as Error).name).toBe("GatewayDestroyed")
  })
})
