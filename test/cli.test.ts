/**
 * The `ogateway` CLI (src/api/cli.ts), run as a child process from the built
 * dist/api/cli.js: a local testnet end to end, --help, and flag errors.
 */
import { type ChildProcess, execSync, spawn } from "node:child_process"
import { existsSync, readdirSync, statSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const cli = join(root, "dist", "api", "cli.js")

const newestMtime = (dir: string): number => {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs)
  }
  return newest
}

const children = new Set<ChildProcess>()

interface Run {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Run the CLI; the child is SIGKILLed (and the promise rejected) after `timeoutMs`. */
const runCli = (args: ReadonlyArray<string>, timeoutMs: number): Promise<Run> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
    children.add(child)
    let stdout = ""
    let stderr = ""
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`ogateway ${args.join(" ")} did not exit within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`))
    }, timeoutMs)
    child.on("error", (e) => {
      clearTimeout(timer)
      children.delete(child)
      reject(e)
    })
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      children.delete(child)
      resolve({ code, signal, stdout, stderr })
    })
  })

beforeAll(() => {
  const stale = !existsSync(cli) || statSync(cli).mtimeMs < newestMtime(join(root, "src"))
  if (stale) {
    try {
      execSync("npm run build --silent", { cwd: root, stdio: "pipe", timeout: 180_000 })
    } catch (e) {
      // tsc still emits on type errors elsewhere; only a missing CLI is fatal here
      if (!existsSync(cli)) throw e
    }
  }
}, 200_000)

afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
  children.clear()
})

describe("ogateway CLI", () => {
  it("--testnet 5 --duration 3 --json: 6 nodes bootstrap, findNode answered by the other 5, exit 0", async () => {
    const r = await runCli(["--testnet", "5", "--duration", "3", "--json"], 60_000)
    expect(r.stderr).not.toMatch(/error/i)
    expect(r.code).toBe(0)
    const events = r.stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, any>)

    const bootstrapped = events.filter((e) => e.event === "bootstrapped")
    expect(new Set(bootstrapped.map((e) => e.node)).size).toBe(6)

    const testnet = events.find((e) => e.event === "testnet")!
    expect(testnet).toBeDefined()
    expect(testnet.nodes).toBe(6)
    expect(testnet.bootstrapped).toBe(6)
    expect(testnet.bootstrapper).toMatch(/^127\.0\.0\.1:\d+$/)

    const findNode = events.find((e) => e.event === "findNode")!
    expect(findNode).toBeDefined()
    expect(findNode.answered).toBeGreaterThanOrEqual(5)

    const statuses = events.filter((e) => e.event === "status")
    expect(statuses.length).toBeGreaterThanOrEqual(2)
    const last = statuses[statuses.length - 1]!
    expect(last.nodes).toHaveLength(6)
    for (const n of last.nodes) {
      expect(n.bootstrapped).toBe(true)
      expect(n.address).toMatch(/^127\.0\.0\.1:\d+$/)
      expect(n.tableSize).toBeGreaterThan(0)
      expect(typeof n.requestsPerSecond).toBe("number")
      expect(typeof n.dropped).toBe("number")
    }
    expect(last.nodes.find((n: any) => n.node === "boot").address).toBe(testnet.bootstrapper)

    expect(events.at(-2)).toMatchObject({ event: "shutdown", reason: "duration" })
    expect(events.at(-1)).toEqual({ event: "closed" })
  }, 90_000)

  it("--help exits 0 and documents the flags", async () => {
    const r = await runCli(["--help"], 20_000)
    expect(r.code).toBe(0)
    for (const flag of ["--bootstrap", "--bootstrap-node", "--host", "--port", "--bind", "--nodes", "--testnet", "--ephemeral", "--persistent", "--duration", "--json"]) {
      expect(r.stdout).toContain(flag)
    }
  }, 30_000)

  it("an unknown flag exits non-zero with a clear error", async () => {
    const r = await runCli(["--no-such-flag"], 20_000)
    expect(r.code).not.toBe(0)
    expect(r.code).not.toBeNull()
    expect(r.stderr).toContain("Unrecognized flag: --no-such-flag")
  }, 30_000)

  it("a bad flag value or combination exits non-zero with a clear error", async () => {
    const badValue = await runCli(["--testnet", "many"], 20_000)
    expect(badValue.code).not.toBe(0)
    expect(badValue.stderr).toMatch(/--testnet/)
    const combination = await runCli(["--ephemeral", "--persistent"], 20_000)
    expect(combination.code).not.toBe(0)
    expect(combination.stderr).toContain("--ephemeral and --persistent are mutually exclusive")
  }, 60_000)
})
