/**
 * No crash for a caught failure: `new Gateway({ port: <taken>, anyPort: false })`
 * then `await node.ready()` in try/catch. The rejection is caught, and the
 * process must not die afterwards on an unhandled 'error' event. Run in a
 * child process (the built package), which reports what it caught and that it
 * is still alive a while later.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { distIndex, ensureBuilt } from "./support/build.js"
import { type ChildRun, runNodeChild } from "./support/child.js"

const dir = mkdtempSync(join(tmpdir(), "omega-caught-"))

beforeAll(() => ensureBuilt(), 250_000)
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const run = (source: string): Promise<ChildRun> => {
  const file = join(dir, `child-${Math.random().toString(36).slice(2)}.mjs`)
  writeFileSync(file, source)
  return runNodeChild([file], { timeoutMs: 30_000, what: "the child" })
}

describe("a caught failure never kills the process", () => {
  it("port taken, anyPort false: ready() rejects with BindError (EADDRINUSE), caught; the process lives on and exits 0", async () => {
    const r = await run(`
import dgram from "node:dgram"
import { Gateway } from ${JSON.stringify(pathToFileURL(distIndex).href)}

// a node tries its port and the next four (as dht-rpc does): take all five
const bindAll = async (base) => {
  const socks = []
  for (let p = base; p < base + 5; p++) {
    const s = dgram.createSocket("udp4")
    const ok = await new Promise((resolve) => {
      s.once("error", () => resolve(false))
      s.bind(p, "0.0.0.0", () => resolve(true))
    })
    if (!ok) {
      s.close()
      for (const t of socks) t.close()
      return null
    }
    socks.push(s)
  }
  return socks
}
let taken = null
let port = 0
for (let i = 0; i < 20 && taken === null; i++) {
  port = 20000 + Math.floor(Math.random() * 40000)
  taken = await bindAll(port)
}
if (taken === null) throw new Error("no free port range")

const node = new Gateway({ port, anyPort: false })
try {
  await node.ready()
  console.log("ready: unexpected")
} catch (err) {
  console.log(JSON.stringify({ caught: err.name, code: err.code }))
}
await new Promise((resolve) => setTimeout(resolve, 500))
console.log("still alive")
await node.destroy()
for (const s of taken) s.close()
`)
    expect(r.stderr).toBe("")
    const lines = r.stdout.trim().split("\n")
    expect(JSON.parse(lines[0]!)).toEqual({ caught: "BindError", code: "EADDRINUSE" })
    expect(lines[1]).toBe("still alive")
    expect(r.code).toBe(0)
  })

  it("a listener still gets 'error', and an operation after the failure rejects with it (no unhandled rejection)", async () => {
    const r = await run(`
import { Gateway } from ${JSON.stringify(pathToFileURL(distIndex).href)}
process.on("unhandledRejection", (e) => { console.log("unhandled rejection: " + e); process.exitCode = 2 })
const node = new Gateway({ bootstrap: ["nonsense"] })
const emitted = new Promise((resolve) => node.once("error", resolve))
const failed = await node.ready().then(() => null, (e) => e)
console.log(JSON.stringify({ name: failed.name, code: failed.code, argument: failed.argument, emitted: (await emitted) === failed }))
const later = await node.mutablePut(Gateway.keyPair(), Buffer.from("x")).then(() => null, (e) => e)
console.log(later === failed ? "same error" : "other: " + later)
await node.destroy()
`)
    expect(r.stderr).toBe("")
    const lines = r.stdout.trim().split("\n")
    expect(JSON.parse(lines[0]!)).toEqual({ name: "InvalidArgument", code: "INVALID_ARGUMENT", argument: "bootstrap", emitted: true })
    expect(lines[1]).toBe("same error")
    expect(r.code).toBe(0)
  })
})
