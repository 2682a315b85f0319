/**
 * The API reference (`npm run docs`, scripts/api-docs.mjs) is generated from
 * the build's declaration files: every value the two entries export has an
 * entry, each entry's declaration was found, and doc comments come through.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Effect from "../src/effect.js"
import * as Root from "../src/index.js"
import { ensureBuilt, root } from "./support/build.js"

const dir = mkdtempSync(join(tmpdir(), "omega-api-docs-"))
const out = join(dir, "api.md")
let doc = ""

beforeAll(() => {
  ensureBuilt()
  execFileSync(process.execPath, [join(root, "scripts", "api-docs.mjs"), "--out", out], { cwd: root, stdio: "pipe" })
  doc = readFileSync(out, "utf8")
}, 250_000)
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const section = (entry: string): string => {
  const start = doc.indexOf(`## \`${entry}\``)
  const next = doc.indexOf("\n## `", start + 1)
  return doc.slice(start, next === -1 ? undefined : next)
}

describe("npm run docs", () => {
  it("documents every value export of @omegajs/gateway and @omegajs/gateway/effect", () => {
    for (const [entry, mod] of [["@omegajs/gateway", Root], ["@omegajs/gateway/effect", Effect]] as const) {
      const text = section(entry)
      expect(text.length, entry).toBeGreaterThan(0)
      for (const name of Object.keys(mod).filter((n) => n !== "default")) expect(text, `${entry}: ${name}`).toContain(`### \`${name}\``)
    }
    expect(doc).not.toContain("(declaration not found)")
  })

  it("carries declarations, members and doc comments", () => {
    const gateway = section("@omegajs/gateway")
    expect(gateway).toContain("export declare class Gateway extends EventEmitter")
    expect(gateway).toMatch(/- `announce\(topic: Uint8Array, .*\): GatewayAnnounce` — Announce `keyPair.publicKey`/)
    expect(gateway).toContain("### `WriteRejected` (class)")
    expect(gateway).toContain("### `SecretStreamFrameError` (class, declared as `FrameError`)")
    expect(section("@omegajs/gateway/effect")).toContain("- `static readonly layer: (options?: GatewayLayerOptions)")
  })
})
