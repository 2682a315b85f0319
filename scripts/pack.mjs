#!/usr/bin/env node
// Pack the npm packages this repository publishes, from one build of src/:
//
//   @omegajs/gateway   the repository root: its package.json (without scripts,
//                      devDependencies, overrides), dist/ built from src/, src/, README.md
//   packages/<name>/   every folder there with a package.json is one more package
//                      (packages/flock/ for @omegajs/flock; see packages/README.md),
//                      packed as it is, its version and its dependencies on the
//                      root package set to the root's version
//
//   node scripts/pack.mjs [--out DIR] [--allow-type-errors]
//
// Writes the tarballs to DIR (default ./packs) and prints
// [{ "name", "version", "tarball" }, ...] as JSON on stdout. The build goes to
// a staging directory, never to ./dist, so packing can run beside tests that
// use ./dist. A type error fails the pack unless --allow-type-errors (the
// package is still emitted; `npm run check` is where types are judged).
import { spawnSync } from "node:child_process"
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const args = process.argv.slice(2)
const outIndex = args.indexOf("--out")
const out = resolve(outIndex === -1 ? join(root, "packs") : args[outIndex + 1] ?? "")
const allowTypeErrors = args.includes("--allow-type-errors")

const readJson = (path) => JSON.parse(readFileSync(path, "utf8"))

const run = (command, commandArgs, cwd) => {
  const r = spawnSync(command, commandArgs, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
  if (r.error) throw r.error
  return r
}

/** `npm pack` of a staged package directory; the tarball's path. */
const npmPack = (dir) => {
  const npm = process.platform === "win32" ? "npm.cmd" : "npm"
  const r = run(npm, ["pack", "--json", "--ignore-scripts", "--pack-destination", out], dir)
  if (r.status !== 0) throw new Error(`npm pack failed in ${dir}:\n${r.stderr}`)
  const [info] = JSON.parse(r.stdout)
  return join(out, info.filename)
}

const rootManifest = readJson(join(root, "package.json"))
const stage = mkdtempSync(join(tmpdir(), "omega-pack-"))
const packed = []
try {
  mkdirSync(out, { recursive: true })

  // ---- the root package: @omegajs/gateway ----
  const gateway = join(stage, "gateway")
  mkdirSync(gateway)
  const tsc = join(createRequire(import.meta.url).resolve("typescript/package.json"), "..", "bin", "tsc")
  const build = run(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", join(gateway, "dist")], root)
  if (build.status !== 0) {
    process.stderr.write(build.stdout + build.stderr)
    if (!allowTypeErrors || !existsSync(join(gateway, "dist", "index.js"))) throw new Error("the build failed")
  }
  chmodSync(join(gateway, "dist", "api", "cli.js"), 0o755)
  cpSync(join(root, "src"), join(gateway, "src"), { recursive: true })
  for (const f of ["README.md", "LICENSE"]) if (existsSync(join(root, f))) cpSync(join(root, f), join(gateway, f))
  const { scripts: _scripts, devDependencies: _dev, overrides: _overrides, ...manifest } = rootManifest
  writeFileSync(join(gateway, "package.json"), JSON.stringify(manifest, null, 2) + "\n")
  packed.push({ name: manifest.name, version: manifest.version, tarball: npmPack(gateway) })

  // ---- packages/<name>/ ----
  const packages = join(root, "packages")
  const dirs = existsSync(packages) ? readdirSync(packages, { withFileTypes: true }).filter((e) => e.isDirectory()) : []
  for (const entry of dirs) {
    const source = join(packages, entry.name)
    if (!existsSync(join(source, "package.json"))) continue
    const dir = join(stage, entry.name)
    cpSync(source, dir, { recursive: true })
    const m = readJson(join(dir, "package.json"))
    m.version = rootManifest.version
    for (const field of ["dependencies", "peerDependencies"]) {
      if (m[field]?.[rootManifest.name] !== undefined) m[field][rootManifest.name] = rootManifest.version
    }
    writeFileSync(join(dir, "package.json"), JSON.stringify(m, null, 2) + "\n")
    packed.push({ name: m.name, version: m.version, tarball: npmPack(dir) })
  }
} finally {
  rmSync(stage, { recursive: true, force: true })
}
process.stdout.write(JSON.stringify(packed, null, 2) + "\n")
