/**
 * The Effect face of a Gateway node: a service built from a Layer.
 *
 *   GatewayService.layer(config)       one DHT node (needs Transport + Crypto)
 *   GatewayService.layerUdp(config)    the same on real UDP with the default Crypto
 *                                      (and the default bootstrap list when none is given)
 *   GatewayService.bootstrapper(...)   config of a bootstrap node
 *
 * A node's bootstrap list is checked before anything binds (a malformed
 * entry is an `InvalidArgument`); once the first bootstrap has finished, the
 * handle says whether any bootstrap node answered (`handle.bootstrap.state`).
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
import { DEFAULT_BOOTSTRAP } from "../protocol/records.js"
import { InvalidArgument } from "./keys.js"

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

// ---- bootstrap ------------------------------------------------------------------------

/**
 * The environment variable that replaces the default bootstrap list:
 * comma-separated `host:port` entries, or empty for none (an isolated node).
 * The test suite sets it empty, so a node made in a test without a
 * `bootstrap` option never contacts the public network.
 */
export const BOOTSTRAP_ENV = "OMEGA_BOOTSTRAP"

/**
 * The bootstrap list of a node given none: the public HyperDHT bootstrap
 * nodes (hyperdht's default), unless `OMEGA_BOOTSTRAP` is set.
 */
export const defaultBootstrap = (env: Readonly<Record<string, string | undefined>> = process.env): ReadonlyArray<string> => {
  const v = env[BOOTSTRAP_ENV]
  if (v === undefined) return DEFAULT_BOOTSTRAP
  return v.split(",").map((e) => e.trim()).filter((e) => e.length > 0)
}

/** A port as a bootstrap entry takes it: an integer 1..65535. */
const isPort = (p: unknown): boolean => typeof p === "number" && Number.isInteger(p) && p > 0 && p <= 65535

/** Why `entry` is not a bootstrap entry (`host:port`, `suggestedIP@host:port`, `{ host, port }` or a port), or null when it is one. */
const bootstrapEntryProblem = (entry: unknown): string | null => {
  if (typeof entry === "number") return isPort(entry) ? null : `${entry} is not a port (1..65535)`
  if (typeof entry === "object" && entry !== null) {
    const e = entry as { readonly host?: unknown; readonly port?: unknown }
    if (typeof e.host !== "string" || e.host.length === 0) return "{ host, port } needs a host string"
    return isPort(e.port) ? null : `${String(e.port)} is not a port (1..65535)`
  }
  if (typeof entry !== "string") return `expected "host:port", got ${entry === null ? "null" : typeof entry}`
  const i = entry.lastIndexOf(":")
  const host = i > 0 ? entry.slice(0, i) : ""
  const port = i > 0 ? entry.slice(i + 1) : ""
  if (host.length === 0 || !/^\d+$/.test(port)) return `${JSON.stringify(entry)} is not "host:port"`
  if (!isPort(Number(port))) return `${JSON.stringify(entry)}: ${port} is not a port (1..65535)`
  if (/\s/.test(host)) return `${JSON.stringify(entry)}: the host contains white space`
  const at = host.indexOf("@")
  if (at !== -1 && (!isIPv4(host.slice(0, at)) || at === host.length - 1)) return `${JSON.stringify(entry)} is not "suggestedIP@host:port"`
  return null
}

/** The InvalidArgument for the first malformed entry of a bootstrap list, or null when every entry is usable. */
export const checkBootstrap = (entries: unknown): InvalidArgument | null => {
  if (entries === undefined) return null
  if (!Array.isArray(entries)) return new InvalidArgument({ argument: "bootstrap", detail: "expected an array of \"host:port\" entries" })
  for (const entry of entries) {
    const problem = bootstrapEntryProblem(entry)
    if (problem !== null) return new InvalidArgument({ argument: "bootstrap", detail: problem })
  }
  return null
}

/**
 * Where a node stands with its bootstrap list:
 * - `bootstrapping`: the first bootstrap has not finished;
 * - `joined`: a node answered (or one is in the routing table);
 * - `unreachable`: the list names nodes but none answered (offline, or a wrong list);
 *   a node that later hears from another becomes `joined`;
 * - `alone`: no bootstrap list (the first node of its network, a bootstrap node).
 */
export type BootstrapState = "bootstrapping" | "joined" | "unreachable" | "alone"

/** A node's bootstrap list and its state (`handle.bootstrap`). */
export interface BootstrapInfo {
  /** The list as configured (before any DNS resolution). */
  readonly nodes: ReadonlyArray<string>
  readonly state: BootstrapState
}

const entryText = (e: unknown): string =>
  typeof e === "number" ? `127.0.0.1:${e}` : typeof e === "object" && e !== null ? `${(e as { host: string }).host}:${(e as { port: number }).port}` : String(e)

/** Track `node`'s bootstrap state: set when its first bootstrap ends (did any request get a response?), `joined` once a node enters its table. */
const trackBootstrap = (node: NodeHandle, configured: ReadonlyArray<unknown>): BootstrapInfo => {
  const info: { nodes: ReadonlyArray<string>; state: BootstrapState } = { nodes: configured.map(entryText), state: "bootstrapping" }
  node.whenReady(() => {
    info.state = node.core.table.size > 0 || node.core.io.stats.requests.responses > 0 ? "joined" : configured.length === 0 ? "alone" : "unreachable"
  })
  const off = node.onEvent((e) => {
    if (e._tag !== "add-node" || info.state === "bootstrapping") return
    info.state = "joined"
    off()
  })
  return info
}

// ---- nodes ------------------------------------------------------------------------------

/** A HyperDHT node: the dht-rpc node actor with the HyperDHT storage layer installed. */
export interface GatewayHandle extends NodeHandle {
  readonly hyperdht: HyperDht
  /** The bootstrap list and whether any of it answered. */
  readonly bootstrap: BootstrapInfo
}

/** Start a HyperDHT node in the current scope; a malformed bootstrap entry fails with InvalidArgument before anything binds. */
export const makeGateway = (config: GatewayConfig = {}): Effect.Effect<GatewayHandle, BindError | InvalidArgument, Transport | Crypto | Scope.Scope> =>
  Effect.flatMap(Effect.service(Crypto), (crypto): Effect.Effect<GatewayHandle, BindError | InvalidArgument, Transport | Crypto | Scope.Scope> => {
    const bad = checkBootstrap(config.bootstrap)
    if (bad !== null) return Effect.fail(bad)
    const storage = makeStorage(crypto, config)
    return Effect.map(makeNode(storage.config), storage.attach)
  })

/**
 * Start a HyperDHT node now in the scope of `context` (plain code, see
 * `makeNodeNow`); null when its bootstrap list needs resolving first.
 */
export const makeGatewayNow = (
  context: Context.Context<Transport | Crypto | Scope.Scope>,
  config: GatewayConfig = {}
): GatewayHandle | BindError | InvalidArgument | null => {
  const bad = checkBootstrap(config.bootstrap)
  if (bad !== null) return bad
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
      return Object.assign(node, { hyperdht, bootstrap: trackBootstrap(node, config.bootstrap ?? []) })
    }
  }
}

export class GatewayService extends Context.Service<GatewayService, GatewayHandle>()("omega/Gateway") {
  static readonly layer = (config: GatewayConfig = {}) => Layer.effect(GatewayService, makeGateway(config))

  /** On real UDP: without a `bootstrap` option the node joins `defaultBootstrap()` (the public HyperDHT network). */
  static readonly layerUdp = (config: GatewayConfig = {}) =>
    GatewayService.layer(config.bootstrap === undefined ? { ...config, bootstrap: defaultBootstrap() } : config).pipe(
      Layer.provide(Layer.mergeAll(UdpTransport.layer, Crypto.layer))
    )

  /**
   * Config of a bootstrap node (hyperdht's `DHT.bootstrapper(port, host)`):
   * persistent at once with id nodeId(host, port), not firewalled, bound to
   * exactly `port`, no bootstrap list. `host` is the public IPv4 address.
   */
  static readonly bootstrapperConfig = (port: number, host: string, opts: NodeConfig = {}): NodeConfig | InvalidArgument => {
    if (!Number.isInteger(port) || port <= 0 || port > 65535) return new InvalidArgument({ argument: "port", detail: `${port} is not a port (1..65535)` })
    if (typeof host !== "string" || !isIPv4(host) || host === "0.0.0.0") {
      return new InvalidArgument({ argument: "host", detail: `${JSON.stringify(host)} must be the public IPv4 address (not 0.0.0.0)` })
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
