/**
 * Holepunching through real kernel NATs: the NAT lab's short run
 * (bench/natlab/run.mjs --quick; `npm run natlab` is the full matrix).
 *
 * Network namespaces joined by a bridge, homes behind open, firewalled,
 * consistent-NAT and random-NAT routers (iptables inside the lab's
 * namespaces only), a reference bootstrapper and persistent nodes in a
 * bootstrap namespace. The run first proves with plain UDP that each NAT
 * behaves as its flavour says, then makes one dial per pairing with fresh
 * nodes: Omega↔Omega for open ← consistent, consistent ← consistent,
 * consistent ← random and random ← random (two randomizing NATs: the typed
 * failure), and consistent ← consistent with each mixed pair of
 * implementations. Everything it creates is named `onlt-*` and removed at the
 * end.
 *
 * Needs root, network namespaces and iptables (`.ci/run` installs iptables
 * when missing). On a machine without them the lab cannot run: the test says
 * so, with the reason, as a test of its own (OMEGA_NATLAB=require makes that
 * a failure).
 */
import { spawn, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ensureBuilt, root } from "./support/build.js"

const PREFIX = "onlt-"
const script = join(root, "bench", "natlab", "run.mjs")

interface Capability {
  readonly ok: boolean
  readonly reason: string | null
  readonly iptables?: string
}

const probeCapability = (): Capability => {
  const r = spawnSync(process.execPath, [script, "--capability", "--no-install", "--prefix", PREFIX], { encoding: "utf8", timeout: 30_000 })
  try {
    return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as Capability
  } catch {
    return { ok: false, reason: `the capability probe failed: ${(r.stderr || r.error?.message || "no output").trim()}` }
  }
}

const cap = probeCapability()

if (!cap.ok) {
  describe("NAT lab (bench/natlab)", () => {
    it(`cannot run on this machine: ${cap.reason}`, () => {
      console.warn(`NAT LAB NOT RUN: ${cap.reason}. Holepunching through real NATs is not tested here (root, network namespaces and iptables are needed; .ci/run installs iptables).`)
      if (process.env["OMEGA_NATLAB"] === "require") expect.fail(`OMEGA_NATLAB=require, but the NAT lab cannot run: ${cap.reason}`)
      expect(cap.reason).toMatch(/root|namespace|iptables|Linux|probe/)
    })
  })
} else {
  /* eslint-disable @typescript-eslint/no-explicit-any */
  type Rec = Record<string, any>

  let records: Array<Rec> = []
  let output = ""
  let exitCode: number | null = null
  const out = mkdtempSync(join(tmpdir(), "natlab-test-"))

  const dial = (pairing: string, dir: string, mode = "fresh"): Rec => {
    const d = records.find((r) => r["kind"] === "dial" && r["pairing"] === pairing && r["dir"] === dir && r["mode"] === mode)
    if (d === undefined) throw new Error(`no dial ${pairing} ${dir} in the run:\n${output}`)
    return d
  }
  const show = (d: Rec): string => JSON.stringify({ ok: d["ok"], code: d["code"], message: d["message"], path: d["path"], openMs: d["openMs"], nat: d["nat"], serverNat: d["serverNat"], report: d["report"] })

  beforeAll(async () => {
    ensureBuilt()
    exitCode = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [script, "--quick", "--no-install", "--prefix", PREFIX, "--out", out, "--timeout", "30000"], {
        cwd: root,
        stdio: ["ignore", "pipe", "pipe"]
      })
      child.stdout.on("data", (b: Buffer) => (output += b.toString()))
      child.stderr.on("data", (b: Buffer) => (output += b.toString()))
      // bounded: the run tears the lab down on SIGTERM
      const timer = setTimeout(() => child.kill("SIGTERM"), 100_000)
      child.on("exit", (code) => {
        clearTimeout(timer)
        resolve(code)
      })
    })
    const file = join(out, "results.jsonl")
    records = existsSync(file)
      ? readFileSync(file, "utf8")
          .split("\n")
          .filter((l) => l.trim().length > 0)
          .map((l) => JSON.parse(l) as Rec)
      : []
  }, 130_000)

  afterAll(() => {
    rmSync(out, { recursive: true, force: true })
  })

  describe("NAT lab (bench/natlab), short run", () => {
    it("runs to the end", () => {
      expect(exitCode, output).toBe(0)
    })

    it("each NAT behaves as its flavour says (plain UDP: mapping and filtering)", () => {
      const checks = records.filter((r) => r["kind"] === "udp-check")
      expect(checks.map((c) => c["home"]).sort()).toEqual(["cons1", "cons2", "fw1", "fw2", "open1", "open2", "rand1", "rand2"])
      for (const c of checks) expect(c["ok"], JSON.stringify(c)).toBe(true)
    })

    it("nothing is addressed outside the lab (the guards dropped nothing)", () => {
      const guard = records.find((r) => r["kind"] === "guard")
      expect(guard, output).toBeDefined()
      expect(guard!["drops"]).toEqual({})
    })

    it("Omega↔Omega, open ← consistent: connects", () => {
      const d = dial("open-consistent", "oo")
      expect(d["ok"], show(d)).toBe(true)
      expect(["direct", "punched"]).toContain(d["path"])
    })

    it("Omega↔Omega, consistent ← consistent: holepunched", () => {
      const d = dial("consistent-consistent", "oo")
      expect(d["ok"], show(d)).toBe(true)
      expect(d["path"]).toBe("punched")
    })

    it("Omega↔Omega, consistent ← random: holepunched (one randomizing NAT)", () => {
      const d = dial("consistent-random", "oo")
      expect(d["ok"], show(d)).toBe(true)
      expect(d["path"]).toBe("punched")
      expect(d["nat"]?.["class"]).toBe("random")
    })

    it("Omega↔Omega, random ← random: fails with the typed reason, quickly", () => {
      const d = dial("random-random", "oo")
      expect(d["ok"], show(d)).toBe(false)
      expect(d["code"], show(d)).toBe("HOLEPUNCH_DOUBLE_RANDOMIZED_NATS")
      expect(d["failMs"]).toBeLessThan(10_000)
    })

    it("Omega↔Omega, random ← random with a relay: true node in the lab and relayThrough: 'auto': relayed", () => {
      const relay = records.find((r) => r["kind"] === "auto-relay")
      expect(relay, output).toBeDefined()
      const d = dial("random-random", "oo", "auto")
      expect(d["ok"], show(d)).toBe(true)
      expect(d["path"]).toBe("relayed")
    })

    it("mixed: Omega server ← reference client, consistent ← consistent", () => {
      const d = dial("consistent-consistent", "or")
      expect(d["ok"], show(d)).toBe(true)
    })

    it("mixed: reference server ← Omega client, consistent ← consistent", () => {
      const d = dial("consistent-consistent", "ro")
      expect(d["ok"], show(d)).toBe(true)
      expect(d["path"]).toBe("punched")
    })

    it("the lab is torn down", () => {
      const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? ""
      expect(list.split("\n").filter((l) => l.startsWith(PREFIX))).toEqual([])
    })
  })
}
