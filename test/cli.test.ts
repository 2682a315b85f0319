/**
 * The `ogateway` CLI (src/api/cli.ts), run as a child process from the built
 * dist/api/cli.js: a local testnet end to end (its nodes, a server reached by
 * public key, two Flock peers exchanging a line, the status view of nodes
 * and connections), --help, and flag errors.
 */
import { type ChildProcess, spawn } from "node:child_process"
import dgram from "node:dgram"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { distCli as cli, ensureBuilt, root } from "./support/build.js"

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

beforeAll(() => ensureBuilt(), 250_000)

afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
  children.clear()
})

const PATH = /^(direct|lan|punched|relayed)$/
const PATH_TEXT = "(direct|lan|punched|relayed)"

describe("ogateway CLI", () => {
  it("--testnet 5 --duration 3 --json: 6 nodes bootstrap, findNode answered by the other 5, a connect by public key, two Flock peers exchange a line, connections in the status, exit 0", async () => {
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

    // a server on node #0, reached from node #1 by its public key
    const server = events.find((e) => e.event === "server")!
    expect(server).toMatchObject({ node: "#0", publicKey: expect.stringMatching(/^[0-9a-f]{64}$/) })
    const connect = events.find((e) => e.event === "connect")!
    expect(connect).toMatchObject({ from: "#1", to: "#0", publicKey: server.publicKey, path: expect.stringMatching(PATH), echo: "hello from node #1" })
    expect(connect.ms).toBeGreaterThanOrEqual(0)

    // two Flock peers on nodes #2 and #3 meet on a topic and send each other a line
    const flock = events.find((e) => e.event === "flock")!
    expect(flock.topic).toMatch(/^[0-9a-f]{64}$/)
    expect(flock.peers.map((p: any) => [p.name, p.node])).toEqual([["alice", "#2"], ["bob", "#3"]])
    expect(flock.path).toMatch(PATH)
    expect(events.filter((e) => e.event === "message")).toEqual([
      { event: "message", from: "alice", to: "bob", text: "hello from alice" },
      { event: "message", from: "bob", to: "alice", text: "hello from bob" }
    ])
    // all of it before the status view starts
    const firstStatus = events.findIndex((e) => e.event === "status")
    for (const kind of ["server", "connect", "flock", "message"]) expect(events.findIndex((e) => e.event === kind)).toBeLessThan(firstStatus)

    // the status view lists both ends of both connections, with their paths
    const byName = new Map<string, any>(last.connections.map((c: any) => [c.name, c]))
    expect([...byName.keys()].sort()).toEqual(["alice", "bob", "client", "server"])
    expect(byName.get("client")).toMatchObject({ node: "#1", peer: "server (#0)", remotePublicKey: server.publicKey, direction: "out" })
    expect(byName.get("server")).toMatchObject({ node: "#0", peer: "client (#1)", direction: "in" })
    expect(byName.get("alice")).toMatchObject({ node: "#2", peer: "bob (#3)", remotePublicKey: flock.peers[1].publicKey })
    expect(byName.get("bob")).toMatchObject({ node: "#3", peer: "alice (#2)", remotePublicKey: flock.peers[0].publicKey })
    for (const c of last.connections) {
      expect(c.path).toMatch(PATH)
      expect(c.remoteAddress).toMatch(/^127\.0\.0\.1:\d+$/)
      expect(c.bytesWritten).toBeGreaterThan(0)
      expect(c.bytesRead).toBeGreaterThan(0)
    }

    expect(events.at(-2)).toMatchObject({ event: "shutdown", reason: "duration" })
    expect(events.at(-1)).toEqual({ event: "closed" })
  }, 90_000)

  it("--testnet 4 --duration 1 (plain text): the connect by public key with its time and path, the Flock peers' lines, the connections table", async () => {
    const r = await runCli(["--testnet", "4", "--duration", "1"], 60_000)
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    const key = /Server on node #0 listening on public key ([0-9a-f]{64})\n/.exec(r.stdout)
    expect(key, r.stdout).not.toBeNull()
    expect(r.stdout).toMatch(new RegExp(`Node #1 connected to ${key![1]!.slice(0, 12)}… \\(the server on node #0\\) by its public key in \\d+ ms, path: ${PATH_TEXT}; "hello from node #1" echoed back in \\d+ ms\n`))
    expect(r.stdout).toMatch(new RegExp(`Flock peers alice \\(node #2\\) and bob \\(node #3\\) joined topic [0-9a-f]{12}… and met in \\d+ ms, path: ${PATH_TEXT}\n`))
    expect(r.stdout).toContain("  alice -> bob: hello from alice\n  bob -> alice: hello from bob\n")
    // the status view: the node table, then the connections with their paths
    const block = r.stdout.slice(r.stdout.lastIndexOf("-- status at"))
    expect(block).toMatch(/^connection\s+node\s+peer\s+path\s+dir\s+remote address\s+sent\s+received$/m)
    for (const [name, node, peer, dir] of [["client", "#1", "server \\(#0\\)", "out"], ["server", "#0", "client \\(#1\\)", "in"], ["alice", "#2", "bob \\(#3\\)", "(in|out)"], ["bob", "#3", "alice \\(#2\\)", "(in|out)"]]) {
      expect(block).toMatch(new RegExp(`^${name}\\s+${node}\\s+${peer}\\s+${PATH_TEXT}\\s+${dir}\\s+127\\.0\\.0\\.1:\\d+\\s+[1-9]\\d*\\s+[1-9]\\d*$`, "m"))
    }
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

  it("counts read right: --testnet 1 is 1 bootstrapper + 1 node, and 1 of 1 other node answered", async () => {
    const r = await runCli(["--testnet", "1", "--duration", "1"], 60_000)
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("1 bootstrapper + 1 node...")
    expect(r.stdout).toContain("All 2 nodes bootstrapped")
    expect(r.stdout).toMatch(/1 of 1 other node answered/)
    expect(r.stdout).toContain("2 nodes) --")
    expect(r.stdout).not.toMatch(/\b1 nodes\b/)
    // two nodes are enough for the tour: the server on #0, its client on the bootstrapper, both Flock peers on #0
    expect(r.stdout).toMatch(new RegExp(`Node boot connected to [0-9a-f]{12}… \\(the server on node #0\\) by its public key in \\d+ ms, path: ${PATH_TEXT};`))
    expect(r.stdout).toContain("Flock peers alice (node #0) and bob (node #0) joined topic")
    expect(r.stdout).toContain("  bob -> alice: hello from bob\n")
  }, 90_000)

  it("--json reports errors as JSON lines on stdout: a bad flag, and a run failure (port taken), exit 1", async () => {
    const usage = await runCli(["--port", "99999", "--json"], 20_000)
    expect(usage.code).toBe(1)
    expect(usage.stderr).toBe("")
    const lines = usage.stdout.trim().split("\n")
    expect(lines).toHaveLength(1)
    expect(JSON.parse(lines[0]!)).toMatchObject({ event: "error", kind: "usage", message: "--port: 99999 is not a port (0..65535)" })

    const taken = dgram.createSocket("udp4")
    await new Promise<void>((r) => taken.bind(0, "0.0.0.0", r))
    try {
      const run = await runCli(["--bootstrap", "--host", "127.0.0.1", "--port", String(taken.address().port), "--json"], 30_000)
      expect(run.code).toBe(1)
      expect(run.stderr).toBe("")
      const events = run.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
      expect(events.at(-1)).toMatchObject({ event: "error", kind: "run" })
      expect(String(events.at(-1)!["message"])).toContain("EADDRINUSE")
    } finally {
      taken.close()
    }
  }, 60_000)

  it("--bootstrap --host 127.0.0.1 serves a bootstrap node on port 1776, 'ready to use at 127.0.0.1:1776'; --port P --bootstrap 127.0.0.1:1776 joins it", async () => {
    const boot = spawn(process.execPath, [cli, "--bootstrap", "--host", "127.0.0.1", "--duration", "15"], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
    children.add(boot)
    let out = ""
    let err = ""
    boot.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d))
    boot.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d))
    const exited = new Promise<number | null>((r) => boot.on("close", (code) => r(code)))
    const deadline = Date.now() + 20_000
    while (!out.includes("ready to use at") && !err.includes("ERROR") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    if (err.includes("EADDRINUSE")) {
      // port 1776 is taken on this machine: the bind failure still shows the default port
      boot.kill("SIGKILL")
      expect(err).toContain("1776")
      return
    }
    expect(out).toContain("Bootstrap node ready to use at 127.0.0.1:1776")
    expect(out).toContain("node boot bound to 0.0.0.0:1776")
    const port = 20_000 + Math.floor(Math.random() * 40_000)
    const join = await runCli(["--port", String(port), "--bootstrap", "127.0.0.1:1776", "--host", "127.0.0.1", "--duration", "1", "--json"], 40_000)
    expect(join.code).toBe(0)
    const events = join.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, any>)
    expect(events.find((e) => e.event === "bound")!.address).toBe(`127.0.0.1:${port}`)
    const ready = events.find((e) => e.event === "bootstrapped")!
    expect(ready.tableSize).toBeGreaterThanOrEqual(1)
    boot.kill("SIGINT")
    expect(await exited).not.toBeNull()
  }, 60_000)
})
