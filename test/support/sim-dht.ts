/**
 * Helpers for DHT simulations on the simulated network and TestClock (or a VirtualClock):
 * build N Omega nodes on simulated hosts, run lookups, compare with the
 * brute-force k closest.
 */
import { Effect, Fiber, Option, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import { makeNode, type NodeConfig, type NodeHandle } from "../../src/actors/routing/driver.js"
import { GatewayService } from "../../src/api/GatewayService.js"
import { Crypto } from "../../src/layers/Crypto.js"
import type { CryptoImpl } from "../../src/layers/crypto/types.js"
import { SimNetwork, type SimNetworkOptions } from "../../src/layers/transport/sim.js"
import { Transport } from "../../src/layers/Transport.js"
import { VirtualClock } from "../../src/layers/VirtualClock.js"
import { nodeId } from "../../src/protocol/dht-rpc.js"
import { toHex } from "../../src/protocol/encoding.js"

export interface SimDhtNode {
  readonly ip: string
  readonly port: number
  readonly id: Uint8Array
  readonly handle: NodeHandle
  readonly scope: Scope.Closeable
  alive: boolean
}

export interface SimDht {
  readonly net: SimNetwork["Service"]
  readonly nodes: Array<SimDhtNode>
  readonly crypto: CryptoImpl
}

export const BOOT_IP = "20.255.0.1"
export const BOOT_PORT = 49737

const ipOf = (i: number): string => `20.${1 + ((i >> 16) & 0xff)}.${(i >> 8) & 0xff}.${i & 0xff}`

/** TestClock.adjust, or VirtualClock.adjust when the simulation runs on a VirtualClock. */
export const adjustClock = (ms: number): Effect.Effect<void> =>
  Effect.flatMap(Effect.serviceOption(VirtualClock), (v) => (Option.isSome(v) ? v.value.adjust(ms) : TestClock.adjust(ms)))

/** Advance virtual time in steps (lets every fiber run between steps). */
export const advance = (ms: number, step = 1000) =>
  Effect.gen(function*() {
    for (let t = 0; t < ms; t += step) yield* adjustClock(Math.min(step, ms - t))
  })

export const buildNetwork = (
  crypto: CryptoImpl,
  count: number,
  options: { readonly net?: SimNetworkOptions; readonly node?: NodeConfig; readonly joinEvery?: number; readonly seed?: number } = {}
) =>
  Effect.gen(function*() {
    const net = yield* SimNetwork.make({ latency: 20, jitter: 10, seed: options.seed ?? 1, ...options.net })
    const nodes: Array<SimDhtNode> = []
    const start = (ip: string, config: NodeConfig, seed: number) =>
      Effect.gen(function*() {
        const host = yield* net.addHost({ ip })
        const scope = yield* Scope.make()
        const handle = yield* makeNode({ ...config, randomSeed: seed }).pipe(
          Effect.provideService(Transport, host),
          Effect.provideService(Crypto, crypto),
          Scope.provide(scope)
        )
        const port = handle.sockets().server.local.port
        const node: SimDhtNode = { ip, port, id: nodeId(crypto.blake2b, ip, port)!, handle, scope, alive: true }
        nodes.push(node)
        return node
      })
    const boot = GatewayService.bootstrapperConfig(BOOT_PORT, BOOT_IP)
    if (!("port" in boot)) return yield* Effect.die(boot)
    yield* start(BOOT_IP, boot, (options.seed ?? 1) * 7919)
    for (let i = 0; i < count; i++) {
      yield* start(ipOf(i + 1), { ...options.node, port: 49737, bootstrap: [`${BOOT_IP}:${BOOT_PORT}`] }, (options.seed ?? 1) * 7919 + i + 1)
      if (options.joinEvery !== undefined && options.joinEvery > 0) yield* adjustClock(options.joinEvery)
    }
    return { net, nodes, crypto } satisfies SimDht
  })

const distanceCmp = (target: Uint8Array) => (a: Uint8Array, b: Uint8Array): number => {
  for (let i = 0; i < 32; i++) {
    const x = a[i]! ^ target[i]!
    const y = b[i]! ^ target[i]!
    if (x !== y) return x - y
  }
  return 0
}

/** Brute force: the k alive persistent nodes closest to target, excluding `self`. */
export const trueClosest = (dht: SimDht, target: Uint8Array, self: SimDhtNode, k = 20): Array<string> =>
  dht.nodes
    .filter((n) => n.alive && n !== self && n.handle.core.id !== null)
    .map((n) => n.id)
    .sort(distanceCmp(target))
    .slice(0, k)
    .map(toHex)

export interface LookupOutcome {
  readonly exact: boolean
  readonly found: number
  readonly replies: number
}

/** Run one findNode from `from` and compare its closest replies with the brute-force k closest. */
export const lookup = (dht: SimDht, from: SimDhtNode, target: Uint8Array) =>
  Effect.scoped(
    Effect.gen(function*() {
      const { query, replies } = yield* from.handle.startQuery({ target, command: 2, internal: true })
      const fiber = yield* Effect.forkChild(Stream.runCount(replies), { startImmediately: true })
      let exit = fiber.pollUnsafe()
      for (let i = 0; i < 600 && exit === undefined; i++) {
        yield* adjustClock(100)
        exit = fiber.pollUnsafe()
      }
      const count = exit !== undefined && exit._tag === "Success" ? exit.value : -1
      if (exit === undefined) yield* Fiber.interrupt(fiber)
      const got = query.closestReplies.map((r) => toHex(r.from.id!))
      const want = trueClosest(dht, target, from)
      const exact = got.length === want.length && got.every((h, i) => h === want[i])
      return { exact, found: got.filter((h) => want.includes(h)).length, replies: count } satisfies LookupOutcome
    })
  )

/** A deterministic target from a counter. */
export const targetOf = (crypto: CryptoImpl, i: number): Uint8Array => crypto.blake2b(Uint8Array.of(i & 0xff, (i >> 8) & 0xff, 0x5a))
