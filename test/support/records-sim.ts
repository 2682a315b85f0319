/**
 * Helpers for HyperDHT records simulations on the simulated network and
 * TestClock: a copy of ./sim-dht.ts's `buildNetwork` that starts full
 * HyperDHT nodes (`makeGateway`: the dht-rpc node actor + the records
 * handler) instead of bare dht-rpc nodes, plus a driver that runs an Effect
 * to completion while advancing virtual time.
 */
import { Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import type { GatewayConfig, GatewayHandle } from "../../src/api/GatewayService.js"
import { GatewayService, makeGateway } from "../../src/api/GatewayService.js"
import { Crypto } from "../../src/layers/Crypto.js"
import type { CryptoImpl } from "../../src/layers/crypto/types.js"
import { SimNetwork, type SimNetworkOptions } from "../../src/layers/transport/sim.js"
import { Transport } from "../../src/layers/Transport.js"
import { nodeId } from "../../src/protocol/dht-rpc.js"

export interface RecordsNode {
  readonly ip: string
  readonly port: number
  readonly id: Uint8Array
  readonly handle: GatewayHandle
  readonly scope: Scope.Closeable
}

export interface RecordsNet {
  readonly net: SimNetwork["Service"]
  readonly nodes: Array<RecordsNode>
  readonly crypto: CryptoImpl
  /** Start one more HyperDHT node on a new simulated host (e.g. an ephemeral client). */
  readonly add: (ip: string, config?: GatewayConfig, seed?: number) => Effect.Effect<RecordsNode, never, never>
}

export const BOOT_IP = "20.255.0.1"
export const BOOT_PORT = 49737

export const ipOf = (i: number): string => `20.${1 + ((i >> 16) & 0xff)}.${(i >> 8) & 0xff}.${i & 0xff}`

/** Advance virtual time in steps (lets every fiber run between steps). */
export const advance = (ms: number, step = 1000) =>
  Effect.gen(function*() {
    for (let t = 0; t < ms; t += step) yield* TestClock.adjust(Math.min(step, ms - t))
  })

/**
 * A network of `count` HyperDHT nodes (plus a bootstrapper, nodes[0]) on
 * simulated hosts. `node` is the GatewayConfig of every non-bootstrap node
 * (records options such as maxAge go here); `boot` extra config of the
 * bootstrapper.
 */
export const buildRecordsNetwork = (
  crypto: CryptoImpl,
  count: number,
  options: {
    readonly net?: SimNetworkOptions
    readonly node?: GatewayConfig
    readonly boot?: GatewayConfig
    readonly joinEvery?: number
    readonly seed?: number
  } = {}
) =>
  Effect.gen(function*() {
    const seed = options.seed ?? 1
    const net = yield* SimNetwork.make({ latency: 20, jitter: 10, seed, ...options.net })
    const outer = yield* Effect.scope
    const nodes: Array<RecordsNode> = []
    const start = (ip: string, config: GatewayConfig, randomSeed: number) =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(outer)
        const host = yield* net.addHost({ ip }).pipe(Scope.provide(scope))
        const handle = yield* makeGateway({ ...config, randomSeed }).pipe(
          Effect.provideService(Transport, host),
          Effect.provideService(Crypto, crypto),
          Scope.provide(scope),
          Effect.orDie
        )
        const port = handle.sockets().server.local.port
        const node: RecordsNode = { ip, port, id: nodeId(crypto.blake2b, ip, port)!, handle, scope }
        nodes.push(node)
        return node
      })
    const boot = GatewayService.bootstrapperConfig(BOOT_PORT, BOOT_IP)
    if (!("port" in boot)) return yield* Effect.die(boot)
    yield* start(BOOT_IP, { ...options.boot, ...boot }, seed * 7919)
    for (let i = 0; i < count; i++) {
      yield* start(ipOf(i + 1), { ...options.node, port: 49737, bootstrap: [`${BOOT_IP}:${BOOT_PORT}`] }, seed * 7919 + i + 1)
      if (options.joinEvery !== undefined && options.joinEvery > 0) yield* TestClock.adjust(options.joinEvery)
    }
    let extra = 0
    const add = (ip: string, config: GatewayConfig = {}, randomSeed?: number) =>
      start(ip, { ...options.node, port: 49737, bootstrap: [`${BOOT_IP}:${BOOT_PORT}`], ...config }, randomSeed ?? seed * 7919 + 100_000 + ++extra)
    return { net, nodes, crypto, add } satisfies RecordsNet
  })

/**
 * Run `effect` to completion while advancing virtual time `step` ms at a
 * time (at most `maxMs`); returns its Exit. Dies if it is still running
 * after `maxMs` of virtual time.
 */
export const drive = <A, E>(effect: Effect.Effect<A, E>, opts: { readonly step?: number; readonly maxMs?: number } = {}) =>
  Effect.gen(function*() {
    const step = opts.step ?? 50
    const maxMs = opts.maxMs ?? 120_000
    const fiber = yield* Effect.forkChild(effect, { startImmediately: true })
    let exit = fiber.pollUnsafe()
    for (let t = 0; t < maxMs && exit === undefined; t += step) {
      yield* TestClock.adjust(step)
      exit = fiber.pollUnsafe()
    }
    if (exit === undefined) {
      yield* Fiber.interrupt(fiber)
      return yield* Effect.die(new Error(`still running after ${maxMs} ms of virtual time`))
    }
    return exit as Exit.Exit<A, E>
  })

/** `drive`, then unwrap: the value, or the failure as a typed error of the resulting Effect. */
export const run = <A, E>(effect: Effect.Effect<A, E>, opts: { readonly step?: number; readonly maxMs?: number } = {}) =>
  Effect.flatMap(drive(effect, opts), (exit) => exit)

/** The virtual time as the node actors see it. */
export const now = (n: RecordsNode) => n.handle.run((_node, t) => t)

/** How many nodes' stores hold the announce record (topic, publicKey), read inside each actor. */
export const announceHolders = (nodes: ReadonlyArray<RecordsNode>, topicHex: string, publicKeyHex: string) =>
  Effect.gen(function*() {
    let n = 0
    for (const x of nodes) {
      const has = yield* x.handle.run((_node, t) => x.handle.hyperdht.store()?.records.has(topicHex, publicKeyHex, t) === true)
      if (has) n++
    }
    return n
  })

/** Sum of a HyperDHT stats counter over all nodes. */
export const statSum = (nodes: ReadonlyArray<RecordsNode>, key: "announces" | "unannounces" | "mutablePuts" | "immutablePuts" | "rejected"): number =>
  nodes.reduce((s, x) => s + (x.handle.hyperdht.store()?.stats[key] ?? 0), 0)
