/**
 * The built package (dist/) for tests that run it in a child process (the
 * CLI, the examples, the README snippets): rebuilt when any source is newer
 * than it, one build at a time across the test workers (a lock directory).
 */
import { execSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

export const root = fileURLToPath(new URL("../..", import.meta.url))
export const distIndex = join(root, "dist", "index.js")
export const distCli = join(root, "dist", "api", "cli.js")

const newestMtime = (dir: string): number => {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs)
  }
  return newest
}

const stale = (): boolean => !existsSync(distIndex) || !existsSync(distCli) || statSync(distIndex).mtimeMs < newestMtime(join(root, "src"))

const sleepSync = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** Build dist/ unless it is up to date (call from beforeAll, with a long timeout). */
export const ensureBuilt = (): void => {
  if (!stale()) return
  const cache = join(root, "node_modules", ".cache")
  mkdirSync(cache, { recursive: true })
  const lock = join(cache, "omega-test-build.lock")
  const deadline = Date.now() + 240_000
  for (;;) {
    try {
      mkdirSync(lock)
      break
    } catch {
      // another worker builds: wait for it (a lock left by a killed run expires after 4 minutes)
      if (existsSync(lock) && Date.now() - statSync(lock).mtimeMs > 240_000) rmSync(lock, { recursive: true, force: true })
      if (Date.now() > deadline) throw new Error("timed out waiting for another test worker's build")
      sleepSync(250)
    }
  }
  try {
    if (!stale()) return
    try {
      execSync("npm run build --silent", { cwd: root, stdio: "pipe", timeout: 200_000 })
    } catch (e) {
      // tsc still emits on type errors elsewhere; only a missing build is fatal here
      if (!existsSync(distIndex) || !existsSync(distCli)) throw e
    }
  } finally {
    rmSync(lock, { recursive: true, force: true })
  }
}
