/**
 * Every example in examples/ runs, as a user would run it (`node
 * examples/<name>.mjs` from the package directory, against the built
 * package), on 127.0.0.1 only, and ends with "done" and exit code 0 within
 * its time limit. server.mjs and client.mjs take arguments: two-computers.mjs
 * runs them. chat.mjs without arguments is its own demo: it runs two copies
 * of itself with arguments (two chat peers).
 */
import type { ChildProcess } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ensureBuilt, root } from "./support/build.js"
import { type ChildRun, runNodeChild } from "./support/child.js"

const dir = join(root, "examples")
const examples = readdirSync(dir).filter((f) => f.endsWith(".mjs")).sort()
/** Examples another example runs (they need its arguments). */
const runBy: Record<string, string> = { "server.mjs": "two-computers.mjs", "client.mjs": "two-computers.mjs" }

const children = new Set<ChildProcess>()
beforeAll(() => ensureBuilt(), 250_000)
afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
})

const runExample = (file: string, timeoutMs: number): Promise<ChildRun> =>
  runNodeChild([join("examples", file)], { cwd: root, timeoutMs, what: file, children })

describe("examples", () => {
  it("the list: the seed's isolated DHT, mutable records, an Effect app, the two-computer example, a Flock chat", () => {
    expect(examples).toEqual(expect.arrayContaining(["isolated-dht.mjs", "mutable-records.mjs", "effect-app.mjs", "two-computers.mjs", "server.mjs", "client.mjs", "chat.mjs"]))
    for (const [file, by] of Object.entries(runBy)) expect(readFileSync(join(dir, by), "utf8")).toContain(`examples/${file}`)
  })

  for (const file of examples.filter((f) => runBy[f] === undefined)) {
    it(`${file} runs to "done" on 127.0.0.1`, async () => {
      const r = await runExample(file, 60_000)
      expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0)
      expect(r.stdout.trim().split("\n").at(-1)).toBe("done")
    }, 90_000)
  }
})
