/**
 * Install hygiene: the supported Node versions are declared (`engines`), no
 * package the lockfile installs asks for a Node outside them (npm's EBADENGINE
 * warning), and `npm install` leaves package-lock.json as it is.
 */
import { spawnSync } from "node:child_process"
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { engines?: { node?: string } }

interface LockEntry {
  readonly version?: string
  readonly optional?: boolean
  readonly engines?: { readonly node?: string } | ReadonlyArray<string>
}
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> }

// ---- a semver range check for the forms engines fields use -------------------------------

type Version = readonly [number, number, number]

const cmp = (a: Version, b: Version): number => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]

/** "20", "20.19", "20.19.0", "v20.19.0": the version and how many parts were given. */
const parseVersion = (s: string): { readonly v: Version; readonly parts: number } => {
  const m = /^v?(\d+)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?$/.exec(s)
  if (m === null) throw new Error(`cannot read version "${s}"`)
  const num = (x: string | undefined): number | null => (x === undefined || x === "x" || x === "*" ? null : Number(x))
  const parts = [m[1], m[2], m[3]].filter((x) => x !== undefined && x !== "x" && x !== "*").length
  return { v: [Number(m[1]), num(m[2]) ?? 0, num(m[3]) ?? 0], parts }
}

/** One comparator ("^20.19.0", ">= 12", "<23") as a predicate. */
const comparator = (c: string): ((v: Version) => boolean) => {
  const m = /^(\^|~|>=|<=|>|<|=)?\s*(.+)$/.exec(c)
  if (m === null) throw new Error(`cannot read comparator "${c}"`)
  const op = m[1] ?? "="
  const { v: b, parts } = parseVersion(m[2]!)
  switch (op) {
    case ">=": return (v) => cmp(v, b) >= 0
    case ">": return (v) => cmp(v, b) > 0
    case "<=": return (v) => cmp(v, b) <= 0
    case "<": return (v) => cmp(v, b) < 0
    case "^": return (v) => cmp(v, b) >= 0 && v[0] === b[0]
    case "~": return (v) => cmp(v, b) >= 0 && v[0] === b[0] && (parts < 2 || v[1] === b[1])
    default: return (v) => v[0] === b[0] && (parts < 2 || v[1] === b[1]) && (parts < 3 || v[2] === b[2])
  }
}

/** Whether `version` is in `range` ("a b || c": sets of comparators, any set matching). */
const satisfies = (version: string, range: string): boolean => {
  const v = parseVersion(version).v
  return range.split("||").some((set) => {
    const tokens = set.trim().replace(/(>=|<=|>|<|=|\^|~)\s+/g, "$1").split(/\s+/).filter((t) => t.length > 0 && t !== "*")
    return tokens.every((t) => comparator(t)(v))
  })
}

// ---- the checks ------------------------------------------------------------------------------

const declared = manifest.engines?.node ?? ""

/** The first release of each Node line the declared range admits (20 to 26), and the running one. */
const supported = (): Array<string> => {
  const firsts = ["20.0.0", "20.19.0", "21.0.0", "22.0.0", "22.12.0", "23.0.0", "24.0.0", "25.0.0", "26.0.0"]
  const out: Array<string> = []
  for (let major = 20; major <= 26; major++) {
    const first = firsts.find((f) => f.startsWith(`${major}.`) && satisfies(f, declared))
    if (first !== undefined) out.push(first)
  }
  out.push(process.version.slice(1))
  return out
}

const temp: Array<string> = []
afterAll(() => {
  for (const d of temp) rmSync(d, { recursive: true, force: true })
})

describe("install hygiene", () => {
  it("the range check reads the forms engines fields use", () => {
    expect(satisfies("20.20.2", "^20.19.0 || >=22.12.0")).toBe(true)
    expect(satisfies("21.7.0", "^20.19.0 || >=22.12.0")).toBe(false)
    expect(satisfies("22.11.0", "^20.19.0 || >=22.12.0")).toBe(false)
    expect(satisfies("20.19.0", "^22.12.0 || ^24.0.0 || >=26.0.0")).toBe(false)
    expect(satisfies("20.19.0", ">= 20.19.0")).toBe(true)
    expect(satisfies("20.18.3", ">= 20.19.0")).toBe(false)
    expect(satisfies("20.0.0", "^10 || ^12 || ^13.7 || ^14 || >=15.0.1")).toBe(true)
    expect(satisfies("20.0.0", ">=22.19.0")).toBe(false)
  })

  it("engines.node is declared and the running Node is in it", () => {
    expect(declared).not.toBe("")
    expect(satisfies(process.version.slice(1), declared), `Node ${process.version} is outside engines.node "${declared}"`).toBe(true)
  })

  it("no package the lockfile installs excludes a supported Node version (no EBADENGINE)", () => {
    const versions = supported()
    expect(versions).toContain("20.19.0")
    const offenders: Array<string> = []
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === "") continue
      const range = Array.isArray(entry.engines) ? undefined : (entry.engines as { node?: string } | undefined)?.node
      if (range === undefined) continue
      // platform builds npm skips on this machine (another os / cpu) are not installed, so not checked
      if (entry.optional === true && !existsSync(join(root, path))) continue
      for (const v of versions) if (!satisfies(v, range)) offenders.push(`${path}@${entry.version ?? "?"} wants node "${range}" (not ${v})`)
    }
    expect(offenders).toEqual([])
  })

  it("npm install leaves package-lock.json unchanged (package.json and the lockfile agree)", () => {
    const dir = mkdtempSync(join(tmpdir(), "omega-lock-"))
    temp.push(dir)
    copyFileSync(join(root, "package.json"), join(dir, "package.json"))
    copyFileSync(join(root, "package-lock.json"), join(dir, "package-lock.json"))
    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.toLowerCase().startsWith("npm_") || /^npm_config_(cache|registry|userconfig)$/i.test(k)) env[k] = v
    const r = spawnSync(process.platform === "win32" ? "npm.cmd" : "npm", ["install", "--package-lock-only", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"], {
      cwd: dir,
      env,
      encoding: "utf8",
      timeout: 60_000
    })
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0)
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/EBADENGINE/)
    expect(readFileSync(join(dir, "package-lock.json"), "utf8")).toBe(readFileSync(join(root, "package-lock.json"), "utf8"))
  }, 60_000)
})
