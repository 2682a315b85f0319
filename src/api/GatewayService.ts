/**
 * The Effect face of a Gateway node: a service built from a Layer.
 *
 *   GatewayService.layer(config)       one DHT node (needs Transport + Crypto)
 *   GatewayService.layerUdp(config)    the same on real UDP with the default Crypto
 *   GatewayService.bootstrapper(...)   config of a bootstrap node
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { makeNode, makeNodeNow, type NodeConfig, type NodeHandle } from "../actors/routing/driver.js"
import { type AsyncVerify, type HyperDht, type HyperDhtOptions, makeHyperDht } from "../actors/routing/hyperdht.js"
import { sharedVerifyPool } from "../layers/crypto/verify-pool.js"
import { availableParallelism } from "node:os"
import { BindError, type Transport } from "../layers/Transport.js"
import type { CryptoImpl } from "../layers/crypto/types.js"
import { Crypto } from "../layers/Crypto.js"
import { UdpTransport } from "../layers/transport/udp.js"
import { isIPv4 } from "../protocol/encoding.js"
import { InvalidInput } from "./keys.js"

export type { NodeConfig, NodeHandle, NodeStatus, QueryReply } from "../actors/routing/driver.js"

export interface GatewayConfig extends NodeConfig, HyperDhtOptions {
  /**
   * Check the signatures of the writes this node serves on this many worker
   * threads (a pool shared by the nodes of the process). Default 0: in the
   * node's own steps, as simulations need. The promise facade on real UDP
   * uses `defaultVerifyWorkers()`.
   */
  readonly verifyWorkers?: number
}

let cores = 0

/**
 * 2 on a machine with at least 2 cores, else 0 (a worker on the only core
 * only adds hops). The core count is read once per process: the system call
 * behind it cost ~55 µs, a tenth of a node's start.
 */
export const defaultVerifyWorkers = (): number => ((cores ||= availableParallelism()) >= 2 ? 2 : 0)

/** A HyperDHT node: the dht-rpc node actor with the HyperDHT storage layer installed. */
export interface GatewayHandle extends NodeHandle {
  readonly hyperdht: HyperDht
}

/** Start a HyperDHT node in the current scope. */
export const makeGateway = (config: GatewayConfig = {}): Effect.Effect<GatewayHandle, BindError, Transport | Crypto | Scope.Scope> =>
  Effect.flatMap(Effect.service(Crypto), (crypto) => {
    const storage = makeStorage(crypto, config)
    return Effect.map(makeNode(storage.config), storage.attach)
  })

/**
 * Start a HyperDHT node now in the scope of `context` (plain code, see
 * `makeNodeNow`); null when its bootstrap list needs resolving first.
 */
export const makeGatewayNow = (context: Context.Context<Transport | Crypto | Scope.Scope>, config: GatewayConfig = {}): GatewayHandle | BindError | null => {
  const storage = makeStorage(Context.get(context, Crypto), config)
  const node = makeNodeNow(context, storage.config)
  return node === null || node instanceof BindError ? node : storage.attach(node)
}

/** A node's HyperDHT storage layer, its request handler in the node config, and how it attaches to the started node. */
const makeStorage = (crypto: CryptoImpl, config: GatewayConfig): { readonly config: NodeConfig; readonly attach: (node: NodeHandle) => GatewayHandle } => {
  const workers = config.verifyWorkers ?? 0
  // completions re-enter the node through its exec (set once the node runs)
  let exec: NodeHandle["exec"] | null = null
  const early: Array<() => void> = []
  // the process's pool is made on the first check (not on a node's start path)
  const asyncVerify: AsyncVerify | null =
    workers > 0 && Number.isInteger(workers)
      ? (signature, message, publicKey, then) =>
        sharedVerifyPool(workers, crypto.verify).verify(signature, message, publicKey, (ok) => {
          if (exec !== null) exec(() => then(ok))
          else early.push(() => then(ok))
        })
      : null
  const hyperdht = makeHyperDht(crypto, config, asyncVerify)
  const userHandler = config.onRequest
  return {
    // a user's handler is asked first; what it leaves (returns false for)
    // the HyperDHT layer serves: it never replaces storage or routing
    config: { ...config, onRequest: userHandler === undefined ? hyperdht.handler : (req, node) => userHandler(req, node) || hyperdht.handler(req, node) },
    attach: (node) => {
      exec = (f) => node.exec(f)
      hyperdht.router.setExec((f) => node.exec((n) => f(n)))
      for (const f of early.splice(0)) node.exec(f)
      // the node actor itself, with its storage layer attached (no copy of its methods)
      return Object.assign(node, { hyperdht })
    }
  }
}

export class GatewayService extends Context.Service<GatewayService, GatewayHandle>()("omega/Gateway") {
  static readonly layer = (config: GatewayConfig = {}) => Layer.effect(GatewayService, makeGateway(config))

  static readonly layerUdp = (config: GatewayConfig = {}) =>
    GatewayService.layer(config).pipe(Layer.provide(Layer.mergeAll(UdpTransport.layer, Crypto.layer)))

  /**
   * Config of a bootstrap node (hyperdht's `DHT.bootstrapper(port, host)`):
   * persistent at once with id nodeId(host, port), not firewalled, bound to
   * exactly `port`, no bootstrap list. `host` is the public IPv4 address.
   */
  static readonly bootstrapperConfig = (port: number, host: string, opts: NodeConfig = {}): NodeConfig | InvalidInput => {
    if (!Number.isInteger(port) || port <= 0 || port > 65535) return new InvalidInput({ argument: "port", detail: `${port} is not a port (1..65535)` })
    if (typeof host !== "string" || !isIPv4(host) || host === "0.0.0.0") {
      return new InvalidInput({ argument: "host", detail: `${JSON.stringify(host)} must be the public IPv4 address (not 0.0.0.0)` })
    }
    return {
      ...opts,
      port,
      ephemeral: false,
      firewalled: false,
      anyPort: false,
      bootstrap: [],
      natSample: { host, port }
    }
  }
}
