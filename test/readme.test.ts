/**
 * The README's code cannot rot: every ```js block of a README section runs,
 * the section's blocks in order as one ES module program, against the built
 * package (`@omegajs/gateway` resolves to this repository), and must exit 0
 * with nothing on stderr. A `// text` comment after a `console.log(...)`
 * is output the program must print ("…" stands for anything). The snippets
 * start their bootstrap node on port 1776, the seed's: the test runs each
 * program with a free port instead (the only change made to the code).
 *
 * A block whose info string names a file (```js from=examples/server.mjs) is
 * an excerpt: its lines must appear, in order, in that file (which the
 * examples test runs).
 */
import type { ChildProcess } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ensureBuilt, root } from "./support/build.js"
import { type ChildRun, runNodeChild } from "./support/child.js"

interface Block {
  readonly info: string
  readonly code: string
  readonly line: number
}

const readme = readFileSync(join(root, "README.md"), "utf8")

/** The README's "## " sections with their fenced blocks. */
const sections = (): Array<{ readonly title: string; readonly blocks: Array<Block> }> => {
  const out: Array<{ title: string; blocks: Array<Block> }> = []
  const lines = readme.split("\n")
  let current: { title: string; blocks: Array<Block> } = { title: "(top)", blocks: [] }
  out.push(current)
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    if (line.startsWith("## ")) {
      current = { title: line.slice(3).trim(), blocks: [] }
      out.push(current)
      continue
    }
    const fence = /^```(\S*)\s*(.*)$/.exec(line)
    if (fence === null) continue
    const start = i
    const body: Array<string> = []
    for (i++; i < lines.length && lines[i] !== "```"; i++) body.push(lines[i]!)
    current.blocks.push({ info: `${fence[1]} ${fence[2]}`.trim(), code: body.join("\n"), line: start + 1 })
  }
  return out
}

const runnable = sections()
  .map((s) => ({ title: s.title, blocks: s.blocks.filter((b) => b.info === "js") }))
  .filter((s) => s.blocks.length > 0)
const excerpts = sections().flatMap((s) => s.blocks).filter((b) => /^js from=/.test(b.info))

/** What a program must print: the `// text` comments that follow a console.log. */
const expectedOutput = (code: string): Array<string> =>
  code.split("\n").flatMap((l) => {
    const m = /console\.log\(.*\)\s*\/\/\s*(.+)$/.exec(l)
    return m === null ? [] : [m[1]!.trim()]
  })

const printed = (stdout: string, expected: string): boolean => {
  let at = 0
  for (const part of expected.split("…").map((p) => p.trim()).filter((p) => p.length > 0)) {
    const i = stdout.indexOf(part, at)
    if (i === -1) return false
    at = i + part.length
  }
  return true
}

const children = new Set<ChildProcess>()
beforeAll(() => ensureBuilt(), 250_000)
afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
})

const runModule = (code: string, timeoutMs: number): Promise<ChildRun> =>
  // evaluated with the repository as its directory: `@omegajs/gateway` is this package, `effect` its dependency
  runNodeChild(["--input-type=module"], { cwd: root, input: code, timeoutMs, what: "the README program", children })

describe("README", () => {
  it("has runnable snippets for both APIs, and excerpts of the examples", () => {
    expect(runnable.map((s) => s.title)).toEqual(expect.arrayContaining(["The API, as hyperdht has it", "The Effect API"]))
    expect(excerpts.length).toBeGreaterThanOrEqual(2)
  })

  for (const section of runnable) {
    it(`the snippets of "${section.title}" run as one program (README lines ${section.blocks.map((b) => b.line).join(", ")})`, async () => {
      // in this repository @omegajs/flock is the gateway's flock entry (packages/flock re-exports it)
      const program = section.blocks.map((b) => b.code).join("\n\n").replace(/(["'])@omegajs\/flock(\/effect)?\1/g, (_m, q: string, sub?: string) => `${q}@omegajs/gateway/${sub === undefined ? "flock" : "effect"}${q}`)
      let r = { code: null as number | null, stdout: "", stderr: "" }
      for (let attempt = 0; attempt < 4; attempt++) {
        const port = 20_000 + Math.floor(Math.random() * 40_000)
        r = await runModule(program.replace(/\b1776\b/g, String(port)), 60_000)
        if (!r.stderr.includes("EADDRINUSE")) break
      }
      expect(r.stderr, r.stdout).toBe("")
      expect(r.code).toBe(0)
      for (const out of expectedOutput(program)) expect(printed(r.stdout, out), `prints "${out}"\n${r.stdout}`).toBe(true)
    }, 150_000)
  }

  for (const block of excerpts) {
    const file = block.info.slice("js from=".length)
    it(`the excerpt at README line ${block.line} is ${file}'s code`, () => {
      const source = readFileSync(join(root, file), "utf8").split("\n").map((l) => l.trim())
      let at = 0
      for (const line of block.code.split("\n").map((l) => l.trim()).filter((l) => l.length > 0)) {
        const i = source.indexOf(line, at)
        expect(i, `README line "${line}" is not in ${file} (in order)`).not.toBe(-1)
        at = i + 1
      }
    })
  }
})
