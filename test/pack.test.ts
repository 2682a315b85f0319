/**
 * The package as a user gets it: `scripts/pack.mjs` packs @omegajs/gateway
 * (and any package under packages/) with `npm pack`, the tarballs are
 * installed into a new project in a temporary directory (`npm install
 * --prefer-offline`: from the npm cache the repository's own install filled,
 * else the registry), and that project runs the seed's lines against them:
 *
 * - ESM: `import GATEWAY from '@omegajs/gateway'`, `new GATEWAY()`,
 *   `GATEWAY.keyPair()`, `GATEWAY.bootstrapper(port, host)`; a record round
 *   trip and an encrypted connection;
 * - CommonJS: `const GATEWAY = require('@omegajs/gateway')` is the class
 *   itself (the same one `import` gives), the same lines;
 * - the Effect composition from `@omegajs/gateway/effect`;
 * - the types of both entries (tsc on an .mts and a .cts consumer);
 * - the `ogateway` bin.
 *
 * Everything runs on 127.0.0.1 with a local bootstrapper: the children get
 * OMEGA_BOOTSTRAP (the default bootstrap list) pointing at it, or empty, and
 * a preloaded guard that refuses any datagram or DNS lookup beyond loopback
 * and reports it.
 */
import { spawnSync } from "node:child_process"
import dgram from "node:dgram"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runNodeChild } from "./support/child.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { name: string; dependencies: Record<string, string> }
const npm = process.platform === "win32" ? "npm.cmd" : "npm"

/** The environment for npm and the children: the parent `npm test`'s npm_* settings (its prefix) left out. */
const childEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.toLowerCase().startsWith("npm_") || /^npm_config_(cache|registry|userconfig)$/i.test(k)) env[k] = v
  }
  return { ...env, ...extra }
}

// ---- the consumer project's files ------------------------------------------------------

/** Preloaded in every child (`node --import`): datagrams and DNS lookups beyond loopback are refused and reported. */
const GUARD = `import dgram from "node:dgram"
import dns from "node:dns"
import { syncBuiltinESMExports } from "node:module"
const violations = []
const loopback = (h) => typeof h === "string" && (h.startsWith("127.") || h === "localhost")
const send = dgram.Socket.prototype.send
dgram.Socket.prototype.send = function (...args) {
  const rest = args.slice(1)
  if (typeof rest[0] === "number" && typeof rest[1] === "number" && typeof rest[2] === "number") rest.splice(0, 2)
  const address = typeof rest[1] === "string" ? rest[1] : "127.0.0.1"
  if (!loopback(address)) return void violations.push("udp " + address + ":" + rest[0])
  return send.apply(this, args)
}
const refuse = (name) => {
  violations.push("dns " + name)
  return Object.assign(new Error("lookup of " + name + " refused"), { code: "ENOTFOUND" })
}
const lookup = dns.lookup
dns.lookup = function (name, ...rest) {
  if (loopback(name)) return lookup.call(this, name, ...rest)
  const callback = rest[rest.length - 1]
  process.nextTick(() => callback(refuse(name)))
}
const lookupPromise = dns.promises.lookup
dns.promises.lookup = (name, ...rest) => (loopback(name) ? lookupPromise(name, ...rest) : Promise.reject(refuse(name)))
syncBuiltinESMExports()
process.on("exit", () => {
  if (violations.length > 0) process.stderr.write("NETWORK GUARD: " + violations.join(", ") + "\\n")
})
`

/** The seed's lines; `port` is the bootstrapper's, OMEGA_BOOTSTRAP names it. */
const seedBody = (indent: string): string =>
  `const port = Number(process.argv[2])
const bootstrapper = GATEWAY.bootstrapper(port, "127.0.0.1")
await bootstrapper.ready()

// the default bootstrap list (OMEGA_BOOTSTRAP: the local bootstrapper)
const node = new GATEWAY()
await node.ready()
const { hash } = await node.immutablePut(Buffer.from("seed"))

// a server and a client that knows only its public key (on 127.0.0.1: nodes
// bound to 0.0.0.0 on one host cannot reach each other, as with hyperdht)
const a = new GATEWAY({ host: "127.0.0.1" })
const b = new GATEWAY({ host: "127.0.0.1" })
const keyPair = GATEWAY.keyPair()
const server = a.createServer((socket) => socket.pipe(socket))
await server.listen(keyPair)
const socket = b.connect(keyPair.publicKey)
socket.write("hello")
const [echo] = await once(socket, "data")
socket.end()
await once(socket, "close")
const got = await b.immutableGet(hash)

for (const n of [a, b, node, bootstrapper]) await n.destroy()
const imported = (await import("@omegajs/gateway")).default
console.log(JSON.stringify({ echo: echo.toString(), value: got.value.toString(), isClass: typeof GATEWAY === "function", same: imported === GATEWAY }))
`.split("\n").map((line) => (line === "" ? line : indent + line)).join("\n")

const SEED_ESM = `import GATEWAY from "@omegajs/gateway"
import { once } from "node:events"

${seedBody("")}`

const SEED_CJS = `const GATEWAY = require("@omegajs/gateway")
const { once } = require("node:events")

const main = async () => {
${seedBody("  ")}}
main().catch((err) => {
  console.error(err)
  process.exit(1)
})
`

/** hyperswarm's README example with the seed's names: flock1 serves, flock2 finds it and reads a message. */
const flockBody = (indent: string): string =>
  `const port = Number(process.argv[2])
const bootstrapper = GATEWAY.bootstrapper(port, "127.0.0.1")
await bootstrapper.ready()

// the default bootstrap list (OMEGA_BOOTSTRAP: the local bootstrapper); 127.0.0.1 as in the Gateway lines
const flock1 = new Flock({ host: "127.0.0.1" })
const flock2 = new Flock({ host: "127.0.0.1" })

flock1.on("connection", (conn, info) => {
  // flock1 will receive server connections
  conn.write("this is a server connection")
  conn.end()
})
const message = new Promise((resolve) => {
  flock2.on("connection", (conn, info) => {
    conn.on("data", (data) => resolve({ data: data.toString(), server: Buffer.from(info.publicKey).equals(flock1.keyPair.publicKey) }))
  })
})

const topic = Buffer.alloc(32).fill("hello world") // a topic must be 32 bytes
const discovery = flock1.join(topic, { server: true, client: false })
await discovery.flushed() // waits for the topic to be fully announced on the DHT

flock2.join(topic, { server: false, client: true })
await flock2.flush() // waits for the swarm to connect to pending peers
const got = await message

await flock1.destroy()
await flock2.destroy()
await bootstrapper.destroy()
const effectFace = await import("@omegajs/flock/effect")
console.log(JSON.stringify({ ...got, isClass: typeof Flock === "function", effectLayer: typeof effectFace.Flock.layer === "function" }))
`.split("\n").map((line) => (line === "" ? line : indent + line)).join("\n")

const FLOCK_ESM = `import Flock from "@omegajs/flock"
import GATEWAY from "@omegajs/gateway"

${flockBody("")}`

const FLOCK_CJS = `const Flock = require("@omegajs/flock")
const GATEWAY = require("@omegajs/gateway")

const main = async () => {
${flockBody("  ")}}
main().catch((err) => {
  console.error(err)
  process.exit(1)
})
`

const EFFECT_APP = `import { Effect, Layer, Stream } from "effect"
import { Gateway } from "@omegajs/gateway/effect"

const port = Number(process.argv[2])
const HOST = "127.0.0.1"
const bootstrap = [HOST + ":" + port]

const app = Effect.gen(function* () {
  const gateway = yield* Gateway
  yield* gateway.ready
  const keyPair = yield* gateway.keyPair()
  const topic = yield* gateway.hash(new TextEncoder().encode("packed effect app"))
  yield* gateway.announce(topic, keyPair).pipe(Stream.runDrain)
  const replies = yield* gateway.lookup(topic).pipe(Stream.runCollect)
  const found = replies.some((r) => r.peers.some((p) => Buffer.from(p.publicKey).equals(Buffer.from(keyPair.publicKey))))
  const failure = yield* gateway.lookup(new Uint8Array(1)).pipe(Stream.runDrain, Effect.flip)
  return { found, failure: failure._tag }
})

const main = Effect.gen(function* () {
  yield* Layer.build(Gateway.bootstrapper(port, HOST, { host: HOST }))
  for (let i = 0; i < 3; i++) yield* Layer.build(Gateway.layer({ bootstrap, host: HOST, ephemeral: false }))
  return yield* app.pipe(Effect.provide(Gateway.layer({ bootstrap, host: HOST })))
}).pipe(Effect.scoped)

Effect.runPromise(main).then(
  (result) => console.log(JSON.stringify(result)),
  (err) => {
    console.error(err)
    process.exit(1)
  }
)
`

const TYPES_ESM = `import GATEWAY, { type GatewayKeyPair, type GatewayOptions, keyPair } from "@omegajs/gateway"
import { Gateway, type GatewayApi } from "@omegajs/gateway/effect"
import { Effect, Layer } from "effect"

const options: GatewayOptions = { bootstrap: ["127.0.0.1:49737"], host: "127.0.0.1" }
export const node: GATEWAY = new GATEWAY(options)
export const pair: GatewayKeyPair = GATEWAY.keyPair()
export const plain: GatewayKeyPair = keyPair()
export const bootstrapper: GATEWAY = GATEWAY.bootstrapper(49737, "127.0.0.1")
export const ready: Promise<void> = node.ready()
export const layer: Layer.Layer<Gateway, unknown> = Gateway.layer({ bootstrap: ["127.0.0.1:49737"] })
export const program: Effect.Effect<GatewayApi, never, Gateway> = Effect.gen(function* () {
  return yield* Gateway
})
`

const TYPES_CJS = `import GATEWAY = require("@omegajs/gateway")

export const node: GATEWAY = new GATEWAY({ bootstrap: ["127.0.0.1:49737"] })
export const pair: { readonly publicKey: Buffer; readonly secretKey: Buffer } = GATEWAY.keyPair()
export const bootstrapper: GATEWAY = GATEWAY.bootstrapper(49737, "127.0.0.1")
`

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ["node"],
    typeRoots: [join(root, "node_modules", "@types")]
  },
  files: ["types.mts", "types.cts"]
}

// ---- running it -------------------------------------------------------------------------

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

let dir = ""
let installOutput = ""

/** Run `node [--import guard] file args` in the consumer project; killed after `timeoutMs`. */
const runNode = (args: ReadonlyArray<string>, env: Record<string, string>, timeoutMs = 30_000): Promise<Run> =>
  runNodeChild(["--import", "./guard.mjs", ...args], { cwd: dir, env: childEnv(env), timeoutMs, what: `node ${args.join(" ")}` })

/** A UDP port free on this host right now. */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = dgram.createSocket("udp4")
    s.once("error", reject)
    s.bind(0, "127.0.0.1", () => {
      const port = s.address().port
      s.close(() => resolve(port))
    })
  })

const expectClean = (r: Run): void => {
  expect(r.stderr).not.toContain("NETWORK GUARD")
  expect(r.code, `exit code; stderr:\n${r.stderr}`).toBe(0)
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "omega-pack-test-"))
  const packs = join(dir, "packs")
  // type errors are `npm run check`'s to report; the package is emitted anyway
  const pack = spawnSync(process.execPath, [join(root, "scripts", "pack.mjs"), "--out", packs, "--allow-type-errors"], {
    cwd: root,
    env: childEnv(),
    encoding: "utf8",
    timeout: 120_000
  })
  if (pack.status !== 0) throw new Error(`scripts/pack.mjs failed:\n${pack.stdout}\n${pack.stderr}`)
  const packed = JSON.parse(pack.stdout) as Array<{ name: string; tarball: string }>
  if (!packed.some((p) => p.name === manifest.name)) throw new Error(`no ${manifest.name} tarball in ${pack.stdout}`)

  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "omega-consumer", private: true, type: "module" }, null, 2))
  const install = spawnSync(
    npm,
    // every package the script packed (the gateway, and any from packages/), and effect as an Effect app has it
    ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel", "warn", ...packed.map((p) => p.tarball), `effect@${manifest.dependencies["effect"]}`],
    { cwd: dir, env: childEnv(), encoding: "utf8", timeout: 120_000 }
  )
  installOutput = `${install.stdout}\n${install.stderr}`
  if (install.status !== 0) throw new Error(`npm install of the tarball failed:\n${installOutput}`)
  writeFileSync(join(dir, "guard.mjs"), GUARD)
  writeFileSync(join(dir, "seed.mjs"), SEED_ESM)
  writeFileSync(join(dir, "seed.cjs"), SEED_CJS)
  writeFileSync(join(dir, "effect-app.mjs"), EFFECT_APP)
  writeFileSync(join(dir, "flock.mjs"), FLOCK_ESM)
  writeFileSync(join(dir, "flock.cjs"), FLOCK_CJS)
  writeFileSync(join(dir, "types.mts"), TYPES_ESM)
  writeFileSync(join(dir, "types.cts"), TYPES_CJS)
  writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(TSCONFIG, null, 2))
}, 180_000)

afterAll(() => {
  if (dir !== "") rmSync(dir, { recursive: true, force: true })
})

describe("the packed @omegajs/gateway, installed into a new project", () => {
  it("installs from the tarball without an engine warning; the ogateway bin is linked", () => {
    expect(installOutput).not.toMatch(/EBADENGINE/)
    expect(existsSync(join(dir, "node_modules", "@omegajs", "gateway", "dist", "index.cjs"))).toBe(true)
    expect(existsSync(join(dir, "node_modules", ".bin", "ogateway"))).toBe(true)
  })

  it("ESM: import GATEWAY, new GATEWAY(), GATEWAY.keyPair(), GATEWAY.bootstrapper(port, host): a record and a connection on 127.0.0.1", async () => {
    const port = await freePort()
    const r = await runNode(["seed.mjs", String(port)], { OMEGA_BOOTSTRAP: `127.0.0.1:${port}` })
    expectClean(r)
    expect(JSON.parse(r.stdout)).toEqual({ echo: "hello", value: "seed", isClass: true, same: true })
  }, 40_000)

  it("CommonJS: require() gives the Gateway class itself (the one import gives), and the same lines work", async () => {
    const port = await freePort()
    const r = await runNode(["seed.cjs", String(port)], { OMEGA_BOOTSTRAP: `127.0.0.1:${port}` })
    expectClean(r)
    expect(JSON.parse(r.stdout)).toEqual({ echo: "hello", value: "seed", isClass: true, same: true })
  }, 40_000)

  it("Flock, ESM: import Flock from '@omegajs/flock'; the seed's example (flock1 serves, discovery.flushed(), flock2.flush(), a message through)", async () => {
    const port = await freePort()
    const r = await runNode(["flock.mjs", String(port)], { OMEGA_BOOTSTRAP: `127.0.0.1:${port}` })
    expectClean(r)
    expect(JSON.parse(r.stdout)).toEqual({ data: "this is a server connection", server: true, isClass: true, effectLayer: true })
  }, 40_000)

  it("Flock, CommonJS: const Flock = require('@omegajs/flock') is the class; the same example", async () => {
    const port = await freePort()
    const r = await runNode(["flock.cjs", String(port)], { OMEGA_BOOTSTRAP: `127.0.0.1:${port}` })
    expectClean(r)
    expect(JSON.parse(r.stdout)).toEqual({ data: "this is a server connection", server: true, isClass: true, effectLayer: true })
  }, 40_000)

  it("Effect: Effect.gen + yield* Gateway + Effect.provide(Gateway.layer(...)) from @omegajs/gateway/effect", async () => {
    const port = await freePort()
    const r = await runNode(["effect-app.mjs", String(port)], { OMEGA_BOOTSTRAP: "" })
    expectClean(r)
    expect(JSON.parse(r.stdout)).toEqual({ found: true, failure: "InvalidArgument" })
  }, 40_000)

  it("types: an ESM and a CommonJS consumer type-check against the packed declarations", () => {
    const tsc = join(root, "node_modules", "typescript", "bin", "tsc")
    const r = spawnSync(process.execPath, [tsc, "-p", join(dir, "tsconfig.json")], { cwd: dir, encoding: "utf8", timeout: 60_000 })
    expect(`${r.stdout}${r.stderr}`).toBe("")
    expect(r.status).toBe(0)
  }, 60_000)

  it("the ogateway bin: --help, then a testnet of 3 nodes for a second", async () => {
    const bin = join("node_modules", "@omegajs", "gateway", "dist", "api", "cli.js")
    const help = await runNode([bin, "--help"], { OMEGA_BOOTSTRAP: "" })
    expectClean(help)
    expect(help.stdout).toContain("ogateway")
    const testnet = await runNode([bin, "--testnet", "3", "--duration", "1", "--json"], { OMEGA_BOOTSTRAP: "" })
    expectClean(testnet)
    const events = testnet.stdout.trim().split("\n").map((line) => (JSON.parse(line) as { event: string }).event)
    expect(events).toContain("findNode")
  }, 40_000)
})
