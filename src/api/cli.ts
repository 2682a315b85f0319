#!/usr/bin/env node
/**
 * `ogateway`: run Omega DHT nodes from the command line (the package's bin;
 * the counterpart of the reference's `hyperdht` CLI, node_modules/hyperdht/bin.js).
 *
 *   ogateway                                   one node on the public HyperDHT network
 *   ogateway --nodes 5                         five nodes in one process
 *   ogateway --bootstrap 1.2.3.4:49737         join the given nodes instead
 *   ogateway --bootstrap --host 203.0.113.7 [--port 1776] [--bind 0.0.0.0]
 *                                              a bootstrap node (public address host:port, port 1776
 *                                              by default); `--bootstrap-node` is the same
 *   ogateway --port 49738 --bootstrap 203.0.113.7:1776
 *                                              a node joining that bootstrap node
 *   ogateway --testnet 10 [--duration 10]      an isolated network on 127.0.0.1, and the whole
 *                                              product on it: a server reached by public key,
 *                                              two Flock peers meeting on a topic
 *
 * Every mode ends in a live status view (one block of plain lines per second,
 * or one JSON object per line with `--json`): the nodes, and in a testnet
 * the open connections with their paths. Long-lived: runs under
 * `NodeRuntime.runMain`, so SIGINT/SIGTERM interrupt the program and the
 * finalizers close the testnet's Flocks, servers and connections, then
 * destroy every node and close its sockets (exit code 130);
 * `--duration` ends the status view itself (exit code 0). Bad flags print the
 * help with the error and exit 1; with `--json`, every error is one JSON line
 * (`{"event":"error",...}`) on stdout instead.
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as CliError from "effect/cli/CliError"
import * as CliOutput from "effect/cli/CliOutput"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import { randomBytes } from "node:crypto"
import { createRequire } from "node:module"
import type { Duplex } from "node:stream"
import type { FlockDht } from "../actors/flock/dht-contract.js"
import type { NodeConfig, NodeStatus } from "../actors/routing/driver.js"
import type { GatewaySocket } from "../actors/session/host.js"
import { Crypto } from "../layers/Crypto.js"
import * as NodeRuntime from "../layers/node/NodeRuntime.js"
import * as NodeServices from "../layers/node/NodeServices.js"
import type { BindError, Transport } from "../layers/Transport.js"
import { UdpTransport } from "../layers/transport/udp.js"
import { isIPv4, toHex } from "../protocol/encoding.js"
import { DEFAULT_PORT } from "../protocol/records.js"
import { Flock } from "./flock.js"
import { Gateway } from "./Gateway.js"
import { BOOTSTRAP_ENV, defaultBootstrap, type GatewayHandle, GatewayService, makeGateway } from "./GatewayService.js"
import { InvalidArgument } from "./keys.js"

const VERSION: string = (() => {
  try {
    return (createRequire(import.meta.url)("../../package.json") as { version: string }).version
  } catch {
    return "0.0.0"
  }
})()

/** Value used when `--testnet` is given without a number. */
const DEFAULT_TESTNET_SIZE = 10
/** A bootstrap node's port when `--port` is not given (the seed's). */
const BOOTSTRAP_NODE_PORT = 1776
const READY_TIMEOUT = Duration.seconds(30)
const FIND_NODE_TIMEOUT = Duration.seconds(20)
/** The testnet's connect by public key, and its two Flock peers' meeting and line exchange. */
const CONNECT_TIMEOUT = Duration.seconds(20)
const FLOCK_TIMEOUT = Duration.seconds(30)

// ---------------------------------------------------------------------------
// Flags
// ---------------------------------------------------------------------------

const bootstrapFlag = Flag.String("bootstrap").pipe(
  Flag.withMetavar("host:port[,host:port]"),
  Flag.withDescription(
    "Join these nodes instead of the public HyperDHT bootstrap list (comma-separated, repeatable). " +
      "With --bootstrap-node: other bootstrap nodes to join (default none). " +
      "Given without a value (hyperdht's `--bootstrap --host IP` form) it means --bootstrap-node."
  ),
  Flag.atLeast(0)
)
const bootstrapNodeFlag = Flag.Boolean("bootstrap-node").pipe(
  Flag.withDescription(
    "Run a bootstrap node (same as a bare `--bootstrap`): persistent at once, public address --host:--port " +
      `(port default ${BOOTSTRAP_NODE_PORT}); --host is required and must be the public IPv4 address`
  ),
  Flag.withDefault(false)
)
const hostFlag = Flag.String("host").pipe(
  Flag.withDescription(
    "Nodes: local address to bind (default 0.0.0.0). With --bootstrap-node: the node's public IPv4 address (required)"
  ),
  Flag.optional
)
const portFlag = Flag.Int("port").pipe(
  Flag.withDescription(
    `UDP port. Nodes: bind exactly this port (one node only; default ${DEFAULT_PORT}, then any free port). ` +
      `Bootstrap node: its port (default ${BOOTSTRAP_NODE_PORT}). --testnet: the bootstrapper's port (default: a free one)`
  ),
  Flag.optional
)
const bindFlag = Flag.String("bind").pipe(
  Flag.withDescription("With --bootstrap-node: the local address to bind when it differs from --host (default 0.0.0.0)"),
  Flag.optional
)
const nodesFlag = Flag.Int("nodes").pipe(
  Flag.withDescription("Number of nodes to run in this process (default 1)"),
  Flag.withDefault(1)
)
const testnetFlag = Flag.Int("testnet").pipe(
  Flag.withMetavar("N"),
  Flag.withDescription(
    `Run an isolated local network on 127.0.0.1: one bootstrapper + N nodes (N = ${DEFAULT_TESTNET_SIZE} when omitted). ` +
      "No internet needed. Prints when every node bootstrapped and a findNode result, then connects to a server by its " +
      "public key and has two Flock peers meet on a topic and exchange a line, then the status view (nodes and connections)"
  ),
  Flag.optional
)
const ephemeralFlag = Flag.Boolean("ephemeral").pipe(
  Flag.withDescription("Stay ephemeral (never join other nodes' routing tables). Default: adaptive (testnet: persistent)"),
  Flag.withoutNegation,
  Flag.withDefault(false)
)
const persistentFlag = Flag.Boolean("persistent").pipe(
  Flag.withDescription("Become persistent (join routing tables) as soon as the node is known to be reachable"),
  Flag.withoutNegation,
  Flag.withDefault(false)
)
const durationFlag = Flag.Finite("duration").pipe(
  Flag.withMetavar("SECONDS"),
  Flag.withDescription("Stop after the status view has run this many seconds (after start-up), then exit 0. Default: run until Ctrl-C"),
  Flag.optional
)
const jsonFlag = Flag.Boolean("json").pipe(
  Flag.withDescription("Machine-readable output: one JSON object per line ({\"event\": ...})"),
  Flag.withoutNegation,
  Flag.withDefault(false)
)

interface Options {
  readonly bootstrap: ReadonlyArray<string>
  readonly bootstrapNode: boolean
  readonly host: Option.Option<string>
  readonly port: Option.Option<number>
  readonly bind: Option.Option<string>
  readonly nodes: number
  readonly testnet: Option.Option<number>
  readonly ephemeral: boolean
  readonly persistent: boolean
  readonly duration: Option.Option<number>
  readonly json: boolean
}

/** `--bootstrap a:1,b:2 --bootstrap c:3` -> ["a:1", "b:2", "c:3"]. */
const bootstrapList = (values: ReadonlyArray<string>): Array<string> =>
  values.flatMap((v) => v.split(",")).map((s) => s.trim()).filter((s) => s.length > 0)

/** "host:port" or "suggestedIP@host:port" (the form of the public list). */
const isBootstrapEntry = (s: string): boolean => {
  const i = s.lastIndexOf(":")
  if (i <= 0) return false
  const port = Number(s.slice(i + 1))
  return /^\d+$/.test(s.slice(i + 1)) && port > 0 && port <= 65535
}

const invalid = (message: string) => Effect.fail(new CliError.ValidationError({ message }))

const validate = (o: Options): Effect.Effect<void, CliError.CliError> => {
  const bootstrap = bootstrapList(o.bootstrap)
  const bad = bootstrap.find((b) => !isBootstrapEntry(b))
  if (bad !== undefined) return invalid(`--bootstrap: "${bad}" is not host:port`)
  if (o.ephemeral && o.persistent) return invalid("--ephemeral and --persistent are mutually exclusive")
  if (Option.isSome(o.port) && (o.port.value < 0 || o.port.value > 65535)) return invalid(`--port: ${o.port.value} is not a port (0..65535)`)
  if (Option.isSome(o.duration) && !(o.duration.value > 0)) return invalid("--duration must be a positive number of seconds")
  if (o.nodes < 1) return invalid("--nodes must be at least 1")
  if (Option.isSome(o.testnet)) {
    if (o.testnet.value < 1) return invalid("--testnet N needs N >= 1")
    if (o.bootstrapNode) return invalid("--testnet and --bootstrap-node are mutually exclusive")
    if (bootstrap.length > 0) return invalid("--testnet runs an isolated network: --bootstrap is not allowed")
    if (o.nodes !== 1) return invalid("--testnet N sets the number of nodes: do not combine it with --nodes")
    if (Option.isSome(o.host) || Option.isSome(o.bind)) return invalid("--testnet always uses 127.0.0.1: --host/--bind are not allowed")
    if (Option.isSome(o.port) && o.port.value === 0) return invalid("--testnet --port must be 1..65535")
    return Effect.void
  }
  if (o.bootstrapNode) {
    if (Option.isNone(o.host)) return invalid("--bootstrap-node needs --host <public IPv4 address>")
    if (!isIPv4(o.host.value) || o.host.value === "0.0.0.0") return invalid(`--host: "${o.host.value}" must be the node's public IPv4 address`)
    if (Option.isSome(o.bind) && !isIPv4(o.bind.value)) return invalid(`--bind: "${o.bind.value}" is not an IPv4 address`)
    if (Option.isSome(o.port) && o.port.value === 0) return invalid("--bootstrap-node --port must be 1..65535")
    if (o.nodes !== 1) return invalid("--bootstrap-node runs a single node: do not combine it with --nodes")
    if (o.ephemeral || o.persistent) return invalid("a bootstrap node is always persistent: drop --ephemeral/--persistent")
    return Effect.void
  }
  if (Option.isSome(o.bind)) return invalid("--bind is only valid with --bootstrap-node (use --host to choose the bind address)")
  if (Option.isSome(o.host) && !isIPv4(o.host.value)) return invalid(`--host: "${o.host.value}" is not an IPv4 address`)
  if (Option.isSome(o.port) && o.port.value > 0 && o.nodes !== 1) return invalid("--port is only valid when running a single node")
  return Effect.void
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

type Out = (event: Record<string, unknown>, text: string) => Effect.Effect<void>

const makeOut = (json: boolean): Out => (event, text) =>
  Effect.sync(() => {
    process.stdout.write(json ? JSON.stringify(event) + "\n" : text + "\n")
  })

const addr = (a: { readonly host: string | null; readonly port: number }): string => `${a.host ?? "?"}:${a.port}`

/** "1 node", "2 nodes". */
const count = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? "" : "s"}`

interface Running {
  readonly label: string
  /** A HyperDHT node (dht-rpc with HyperDHT's records, announcements and connection handshakes), as hyperdht's bin runs. */
  readonly handle: GatewayHandle
  readonly startedAt: number
}

interface Sample {
  readonly total: number
  readonly at: number
}

const natText = (st: NodeStatus): string =>
  st.nat.randomized ? "randomized" : st.nat.host === null ? "sampling" : `${st.nat.host}:${st.nat.port}`

const droppedOf = (n: Running, st: NodeStatus): number => {
  const s = n.handle.sockets()
  return st.dropped + s.server.stats().dropped + s.client.stats().dropped
}

const COLUMNS: ReadonlyArray<readonly [string, number]> = [
  ["node", 6],
  ["address", 22],
  ["id", 13],
  ["table", 6],
  ["mode", 11],
  ["firewalled", 11],
  ["nat", 22],
  ["req/s", 8],
  ["dropped", 7]
]
const row = (cells: ReadonlyArray<string>): string =>
  cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(COLUMNS[i]![1]))).join(" ")

// ---- connections -----------------------------------------------------------

/** What the status view reads of an encrypted socket (a Gateway socket, a Flock's). */
interface ShownSocket {
  readonly remotePublicKey: Uint8Array | null
  readonly isInitiator: boolean
  /** "direct", "lan", "punched" or "relayed"; null until open. */
  readonly path?: string | null | undefined
  readonly remoteHost?: string | null | undefined
  readonly remotePort?: number | undefined
  readonly rawBytesRead?: number | undefined
  readonly rawBytesWritten?: number | undefined
}

/** One party of the testnet's connections: its name, its node, and its open sockets. */
interface Party {
  readonly name: string
  readonly node: string
  readonly publicKey: Uint8Array
  readonly sockets: () => Iterable<ShownSocket>
}

/** One open connection, from one end: what the status view lists. */
interface ConnectionRow {
  readonly name: string
  readonly node: string
  /** The other end, by name when it is one of ours (else its key's first bytes). */
  readonly peer: string
  readonly remotePublicKey: string | null
  readonly path: string | null
  readonly direction: "out" | "in"
  readonly remoteAddress: string | null
  readonly bytesWritten: number
  readonly bytesRead: number
}

const connectionRows = (parties: ReadonlyArray<Party>): Array<ConnectionRow> => {
  const names = new Map(parties.map((p) => [toHex(p.publicKey), `${p.name} (${p.node})`]))
  return parties.flatMap((p) =>
    Array.from(p.sockets(), (s) => {
      const remote = s.remotePublicKey === null ? null : toHex(s.remotePublicKey)
      return {
        name: p.name,
        node: p.node,
        peer: remote === null ? "?" : names.get(remote) ?? `${remote.slice(0, 12)}…`,
        remotePublicKey: remote,
        path: s.path ?? null,
        direction: s.isInitiator ? "out" : "in",
        remoteAddress: s.remoteHost === null || s.remoteHost === undefined ? null : `${s.remoteHost}:${s.remotePort ?? 0}`,
        bytesWritten: s.rawBytesWritten ?? 0,
        bytesRead: s.rawBytesRead ?? 0
      }
    })
  )
}

const CONNECTION_COLUMNS: ReadonlyArray<readonly [string, number]> = [
  ["connection", 11],
  ["node", 6],
  ["peer", 14],
  ["path", 9],
  ["dir", 4],
  ["remote address", 22],
  ["sent", 8],
  ["received", 8]
]
const connectionLine = (cells: ReadonlyArray<string>): string =>
  cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(CONNECTION_COLUMNS[i]![1]))).join(" ")

/**
 * The live status view: one block (or one JSON line) per second until
 * interrupted. The nodes, then (when there are parties) the connections.
 */
const statusView = (nodes: ReadonlyArray<Running>, parties: ReadonlyArray<Party>, out: Out, json: boolean) =>
  Effect.gen(function*() {
    const started = Date.now()
    // the first block shows the average since each node started
    const previous = new Map<string, Sample>(nodes.map((n) => [n.label, { total: 0, at: n.startedAt }]))
    for (let first = true;; first = false) {
      if (!first) yield* Effect.sleep(Duration.seconds(1))
      const now = Date.now()
      const statuses = yield* Effect.forEach(nodes, (n) => n.handle.status, { concurrency: "unbounded" })
      const entries = nodes.map((n, i) => {
        const st = statuses[i]!
        const prev = previous.get(n.label)!
        const rate = ((st.requests.total - prev.total) * 1000) / Math.max(1, now - prev.at)
        previous.set(n.label, { total: st.requests.total, at: now })
        return { n, st, rate: Math.round(rate * 10) / 10, dropped: droppedOf(n, st) }
      })
      const uptime = Math.round((now - started) / 100) / 10
      const connections = connectionRows(parties)
      if (json) {
        yield* out({
          event: "status",
          uptime,
          nodes: entries.map(({ dropped, n, rate, st }) => ({
            node: n.label,
            address: addr(st.serverAddress),
            id: st.id === null ? null : toHex(st.id),
            tableSize: st.tableSize,
            ephemeral: st.ephemeral,
            firewalled: st.firewalled,
            bootstrapped: st.bootstrapped,
            online: st.online,
            nat: st.nat,
            requestsPerSecond: rate,
            requests: st.requests,
            dropped
          })),
          connections
        }, "")
      } else {
        const lines = [
          `-- status at ${new Date(now).toISOString().slice(11, 19)} (view up ${uptime.toFixed(0)} s, ${count(nodes.length, "node")}) --`,
          row(COLUMNS.map((c) => c[0])),
          ...entries.map(({ dropped, n, rate, st }) =>
            row([
              n.label,
              addr(st.serverAddress),
              st.id === null ? "ephemeral" : toHex(st.id).slice(0, 12),
              String(st.tableSize),
              st.ephemeral ? "ephemeral" : "persistent",
              st.firewalled ? "yes" : "no",
              natText(st),
              rate.toFixed(1),
              String(dropped)
            ])
          ),
          ...(parties.length === 0 ? [] : [
            connectionLine(CONNECTION_COLUMNS.map((c) => c[0])),
            ...(connections.length === 0 ? ["(no open connections)"] : connections.map((c) =>
              connectionLine([
                c.name,
                c.node,
                c.peer,
                c.path ?? "opening",
                c.direction,
                c.remoteAddress ?? "-",
                String(c.bytesWritten),
                String(c.bytesRead)
              ])
            ))
          ])
        ]
        yield* out({}, lines.join("\n"))
      }
    }
  })

/** Print a node's persistent / ephemeral transitions as they happen (like hyperdht's bin). */
const watchEvents = (n: Running, out: Out): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const sub = yield* PubSub.subscribe(n.handle.events)
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.flatMap(PubSub.take(sub), (e) =>
          e._tag === "persistent"
            ? Effect.flatMap(n.handle.status, (st) =>
              out({ event: "persistent", node: n.label, address: addr(st.serverAddress) }, `node ${n.label} is persistent, joining remote routing tables (${addr(st.serverAddress)})`))
            : e._tag === "ephemeral"
            ? Effect.flatMap(n.handle.status, (st) => out({ event: "ephemeral", node: n.label, address: addr(st.serverAddress) }, `node ${n.label} is ephemeral (${addr(st.serverAddress)})`))
            : Effect.void)
      ),
      { startImmediately: true }
    )
  })

// ---------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------

type Env = Transport | Crypto | Scope.Scope

const userError = (userMessage: string, cause: unknown = userMessage) => new CliError.UserError({ cause, userMessage })

const startFailed = (what: string) => (e: BindError | InvalidArgument) => userError(`${what}: ${e.message}`, e)

const startNode = (label: string, config: NodeConfig, out: Out, what: string): Effect.Effect<Running, CliError.UserError, Env> =>
  Effect.gen(function*() {
    const startedAt = Date.now()
    const handle = yield* makeGateway(config).pipe(Effect.mapError(startFailed(what)))
    const n: Running = { label, handle, startedAt }
    yield* watchEvents(n, out)
    const st = yield* handle.status
    yield* out({ event: "bound", node: label, address: addr(st.serverAddress) }, `node ${label} bound to ${addr(st.serverAddress)}`)
    return n
  })

const announceReady = (n: Running, out: Out, bootstrapList = true) =>
  Effect.flatMap(n.handle.status, (st) =>
    out(
      { event: "bootstrapped", node: n.label, address: addr(st.serverAddress), tableSize: st.tableSize, ephemeral: st.ephemeral },
      `node ${n.label} bootstrapped (${addr(st.serverAddress)}, routing table ${st.tableSize}, ${st.ephemeral ? "ephemeral" : "persistent"})` +
        (st.tableSize > 0 || n.label === "boot" ? "" : bootstrapList ? " but no bootstrap node answered: offline, or check --bootstrap" : ": alone, no bootstrap list")
    ))

/** `ogateway [--nodes N] [--bootstrap ...]`: nodes on a real network. */
const runNodes = (o: Options, out: Out) =>
  Effect.gen(function*() {
    const given = bootstrapList(o.bootstrap)
    const bootstrap = given.length > 0 ? given : [...defaultBootstrap()]
    const port = Option.getOrUndefined(o.port)
    const fixedPort = port !== undefined && port > 0
    const source = given.length > 0
      ? bootstrap.join(", ")
      : process.env[BOOTSTRAP_ENV] === undefined
      ? "public HyperDHT network"
      : bootstrap.length > 0
      ? `${bootstrap.join(", ")} from ${BOOTSTRAP_ENV}`
      : `none, ${BOOTSTRAP_ENV} is empty`
    yield* out({ event: "starting", nodes: o.nodes, bootstrap }, `Booting ${count(o.nodes, "DHT node")} (bootstrap: ${source})...`)
    const nodes: Array<Running> = []
    for (let i = 0; i < o.nodes; i++) {
      const config: NodeConfig = {
        bootstrap,
        // hyperdht's bin: --port pins the port (anyPort false); otherwise the default port, then any
        port: port === 0 ? 0 : fixedPort ? port : DEFAULT_PORT,
        anyPort: !fixedPort,
        ...(Option.isSome(o.host) ? { host: o.host.value } : {}),
        ...(o.ephemeral ? { ephemeral: true } : o.persistent ? { ephemeral: false } : {})
      }
      nodes.push(yield* startNode(`#${i}`, config, out, `node #${i}`))
    }
    yield* out({ event: "started", nodes: o.nodes }, `Fully started ${count(o.nodes, "DHT node")}; bootstrapping in the background`)
    for (const n of nodes) yield* Effect.forkScoped(Effect.andThen(n.handle.ready, announceReady(n, out, bootstrap.length > 0)), { startImmediately: true })
    return nodes
  })

/** `ogateway --bootstrap-node --host IP [--port P] [--bind ADDR]` */
const runBootstrapper = (o: Options, out: Out) =>
  Effect.gen(function*() {
    const host = Option.getOrElse(o.host, () => "")
    const port = Option.getOrElse(o.port, () => BOOTSTRAP_NODE_PORT)
    const others = bootstrapList(o.bootstrap)
    const config = GatewayService.bootstrapperConfig(port, host, Option.isSome(o.bind) ? { host: o.bind.value } : {})
    if (config instanceof InvalidArgument) return yield* Effect.fail(userError(`--bootstrap-node: ${config.argument}: ${config.detail}`, config))
    yield* out({ event: "starting", mode: "bootstrapper", publicAddress: `${host}:${port}` }, "Starting DHT bootstrap node...")
    const n = yield* startNode("boot", { ...config, bootstrap: others }, out, "bootstrap node")
    yield* n.handle.ready
    const st = yield* n.handle.status
    yield* out(
      { event: "bootstrapped", node: n.label, address: addr(st.serverAddress), publicAddress: `${host}:${port}`, id: st.id === null ? null : toHex(st.id) },
      `Bootstrap node ready to use at ${host}:${port} (bound to ${addr(st.serverAddress)}, id ${st.id === null ? "?" : toHex(st.id)})\n` +
        `Join it with: ogateway --port ${DEFAULT_PORT + 1} --bootstrap ${host}:${port}  (or new Gateway({ bootstrap: ["${host}:${port}"] }))`
    )
    return [n]
  })

/** Bind the testnet's bootstrapper: the given port, or a random free one. */
const startTestnetBootstrapper = (o: Options, out: Out) =>
  Effect.gen(function*() {
    const host = "127.0.0.1"
    const fixed = Option.getOrUndefined(o.port)
    const attempts = fixed !== undefined ? 1 : 20
    let lastError: CliError.UserError | null = null
    for (let i = 0; i < attempts; i++) {
      const port = fixed ?? 20000 + Math.floor(Math.random() * 40000)
      const config = GatewayService.bootstrapperConfig(port, host, { host })
      if (config instanceof InvalidArgument) return yield* Effect.fail(userError(`testnet: ${config.detail}`, config))
      const r = yield* Effect.result(startNode("boot", config, out, "testnet bootstrapper"))
      if (r._tag === "Success") return r.success
      lastError = r.failure
    }
    return yield* Effect.fail(lastError!)
  })

/** `ogateway --testnet N`: bootstrapper + N nodes on 127.0.0.1, then a findNode. */
const runTestnet = (o: Options, size: number, out: Out) =>
  Effect.gen(function*() {
    yield* out({ event: "starting", mode: "testnet", nodes: size + 1 }, `Starting a local testnet on 127.0.0.1: 1 bootstrapper + ${count(size, "node")}...`)
    const boot = yield* startTestnetBootstrapper(o, out)
    const bootAddr = (yield* boot.handle.status).serverAddress
    const nodes: Array<Running> = [boot]
    for (let i = 0; i < size; i++) {
      // as hyperdht's testnet.js: every node persistent, not firewalled (unless --ephemeral)
      const config: NodeConfig = {
        host: "127.0.0.1",
        bootstrap: [`${bootAddr.host}:${bootAddr.port}`],
        firewalled: false,
        ephemeral: o.ephemeral
      }
      nodes.push(yield* startNode(`#${i}`, config, out, `testnet node #${i}`))
    }
    const ready = yield* Effect.forEach(
      nodes,
      (n) => Effect.andThen(n.handle.ready, Effect.andThen(announceReady(n, out), Effect.succeed(true))).pipe(
        Effect.timeoutOption(READY_TIMEOUT),
        Effect.map(Option.isSome)
      ),
      { concurrency: "unbounded" }
    )
    const bootstrapped = ready.filter((r) => r).length
    if (bootstrapped !== nodes.length) {
      return yield* Effect.fail(userError(`testnet: only ${bootstrapped} of ${count(nodes.length, "node")} bootstrapped within ${Duration.format(READY_TIMEOUT)}`))
    }
    yield* out(
      { event: "testnet", nodes: nodes.length, bootstrapped, bootstrapper: addr(bootAddr) },
      `All ${count(bootstrapped, "node")} bootstrapped. Bootstrapper: ${addr(bootAddr)} (join with --bootstrap ${addr(bootAddr)})`
    )

    // one findNode from the first regular node towards a random target
    const from = nodes[1]!
    const target = new Uint8Array(randomBytes(32))
    const t0 = Date.now()
    const replies = yield* Stream.runCollect(from.handle.findNode(target)).pipe(
      Effect.timeout(FIND_NODE_TIMEOUT),
      Effect.mapError((e) => userError(`testnet: findNode failed: ${String(e)}`, e))
    )
    const answered = new Set(Array.from(replies, (r) => `${r.from.host}:${r.from.port}`))
    yield* out(
      { event: "findNode", from: from.label, target: toHex(target), answered: answered.size, replies: replies.length, others: nodes.length - 1, ms: Date.now() - t0 },
      `findNode ${toHex(target).slice(0, 12)}… from node ${from.label}: ${answered.size} of ${count(nodes.length - 1, "other node")} answered (${Date.now() - t0} ms)`
    )
    const parties = yield* runTour(nodes, out)
    return { nodes, parties }
  })

// ---- the testnet's tour: a server reached by public key, two Flock peers ----

const errorText = (e: unknown): string =>
  e instanceof Error ? `${"code" in e && typeof e.code === "string" ? `${e.code}: ` : ""}${e.message}` : String(e)

/** Fail the testnet, saying what did not happen, when `effect` fails or takes longer than `limit`. */
const within = (limit: Duration.Duration, what: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, CliError.UserError, R> =>
  Effect.timeoutOption(effect, limit).pipe(
    Effect.mapError((e) => userError(`testnet: ${what} failed: ${errorText(e)}`, e)),
    Effect.flatMap(Option.match({
      onNone: () => Effect.fail(userError(`testnet: ${what}: nothing within ${Duration.format(limit)}`)),
      onSome: Effect.succeed
    }))
  )

/** Close something of the facade's at the end of the scope; a failure there is not worth more than the close itself. */
const closeQuietly = (close: () => Promise<unknown>): Effect.Effect<void> =>
  Effect.tryPromise(close).pipe(Effect.timeoutOption(Duration.seconds(10)), Effect.ignore)

/** A socket kept for the status view while it is open; its errors are expected ends, never a crash. */
const keepWhileOpen = <S extends ShownSocket & Duplex>(set: Set<S>, socket: S): S => {
  set.add(socket)
  socket.on("error", () => {})
  socket.once("close", () => set.delete(socket))
  return socket
}

/** Wait for a dialled socket to open; fails with its error. */
const opened = (socket: GatewaySocket): Effect.Effect<void, unknown> =>
  Effect.callback<void, unknown>((resume) => {
    const onOpen = (): void => resume(Effect.void)
    const onError = (e: unknown): void => resume(Effect.fail(e))
    socket.once("open", onOpen)
    socket.once("error", onError)
    return Effect.sync(() => {
      socket.off("open", onOpen)
      socket.off("error", onError)
    })
  })

/** A Flock's next connection (listening from the moment this runs). */
const nextConnection = (flock: Flock): Effect.Effect<ShownSocket & Duplex> =>
  Effect.callback<ShownSocket & Duplex>((resume) => {
    const onConnection = (socket: ShownSocket & Duplex): void => resume(Effect.succeed(socket))
    flock.once("connection", onConnection)
    return Effect.sync(() => {
      flock.off("connection", onConnection)
    })
  })

/** The first line that arrives on `socket`, without its newline. */
const firstLine = (socket: Duplex): Effect.Effect<string, Error> =>
  Effect.callback<string, Error>((resume) => {
    let text = ""
    const onData = (data: Uint8Array | string): void => {
      text += data.toString()
      const end = text.indexOf("\n")
      if (end === -1) return
      stop()
      resume(Effect.succeed(text.slice(0, end)))
    }
    const onClose = (): void => {
      stop()
      resume(Effect.fail(new Error("the connection closed before a line arrived")))
    }
    const stop = (): void => {
      socket.off("data", onData)
      socket.off("close", onClose)
    }
    socket.on("data", onData)
    socket.once("close", onClose)
    return Effect.sync(stop)
  })

/**
 * The rest of the product on the testnet, through the promise facade over
 * its nodes: a server on one node that another node reaches by its public
 * key, then two Flock peers that meet on a topic and send each other a
 * line. Returns the parties whose connections the status view lists. The
 * facades (with their servers and sockets) and the Flocks close with the
 * scope, before the nodes under them (opened earlier, closed later).
 */
const runTour = (nodes: ReadonlyArray<Running>, out: Out): Effect.Effect<Array<Party>, CliError.UserError, Scope.Scope> =>
  Effect.gen(function*() {
    // four roles, on distinct nodes when there are enough: the regular nodes first, the bootstrapper last
    const pool = [...nodes.slice(1), nodes[0]!]
    const nodeFor = (role: number): Running => pool[role % pool.length]!
    const facades = new Map<Running, Gateway>()
    const facadeOf = (n: Running): Effect.Effect<Gateway, never, Scope.Scope> => {
      const known = facades.get(n)
      if (known !== undefined) return Effect.succeed(known)
      // destroy() closes the facade's servers and connections and leaves the node to its own finalizer
      return Effect.acquireRelease(
        Effect.sync(() => {
          const g = Gateway.over(n.handle)
          facades.set(n, g)
          return g
        }),
        (g) => closeQuietly(() => g.destroy())
      )
    }

    // 1. a server on one node, reached from another by its public key
    const serverNode = nodeFor(0)
    const clientNode = nodeFor(1)
    const serverKeyPair = Gateway.keyPair()
    const serverKey = toHex(serverKeyPair.publicKey)
    const serverSockets = new Set<GatewaySocket>()
    // an echo server: what a client sends comes back
    const server = (yield* facadeOf(serverNode)).createServer((socket) => {
      keepWhileOpen(serverSockets, socket).on("data", (data: Uint8Array) => socket.write(data))
    })
    yield* Effect.tryPromise(() => server.listen(serverKeyPair)).pipe(within(CONNECT_TIMEOUT, `the server on node ${serverNode.label}`))
    yield* out({ event: "server", node: serverNode.label, publicKey: serverKey }, `Server on node ${serverNode.label} listening on public key ${serverKey}`)

    const client = yield* facadeOf(clientNode)
    const clientSockets = new Set<GatewaySocket>()
    const dialledAt = Date.now()
    const socket = yield* Effect.acquireRelease(
      Effect.sync(() => keepWhileOpen(clientSockets, client.connect(serverKeyPair.publicKey))),
      (s) => Effect.sync(() => s.destroy())
    )
    yield* opened(socket).pipe(within(CONNECT_TIMEOUT, `the connect from node ${clientNode.label} to ${serverKey.slice(0, 12)}…`))
    const connectMs = Date.now() - dialledAt
    const sentAt = Date.now()
    socket.write(`hello from node ${clientNode.label}\n`)
    const echo = yield* firstLine(socket).pipe(within(CONNECT_TIMEOUT, `the echo from the server on node ${serverNode.label}`))
    const echoMs = Date.now() - sentAt
    yield* out(
      { event: "connect", from: clientNode.label, to: serverNode.label, publicKey: serverKey, path: socket.path, ms: connectMs, echo, echoMs },
      `Node ${clientNode.label} connected to ${serverKey.slice(0, 12)}… (the server on node ${serverNode.label}) by its public key ` +
        `in ${connectMs} ms, path: ${socket.path}; "${echo}" echoed back in ${echoMs} ms`
    )

    // 2. two Flock peers that meet on a topic and exchange a line each way
    const flockOn = (name: string, n: Running) =>
      Effect.gen(function*() {
        const dht = (yield* facadeOf(n)) as unknown as FlockDht
        // the Flock leaves its topic and closes its connections; the node stays up
        const flock = yield* Effect.acquireRelease(Effect.sync(() => new Flock({ dht })), (f) => closeQuietly(() => f.destroy()))
        return { name, node: n.label, flock }
      })
    // A lookup asks the nodes other than its own: in a network of two nodes,
    // peers on different nodes would each hold the other's announcement out
    // of the other's reach. There both peers use one node.
    const alice = yield* flockOn("alice", nodeFor(2))
    const bob = yield* flockOn("bob", pool.length > 2 ? nodeFor(3) : nodeFor(2))
    const topic = new Uint8Array(randomBytes(32))
    const topicHex = toHex(topic)
    const joinedAt = Date.now()
    const meeting = Effect.gen(function*() {
      const aliceMeets = yield* Effect.forkChild(nextConnection(alice.flock), { startImmediately: true })
      const bobMeets = yield* Effect.forkChild(nextConnection(bob.flock), { startImmediately: true })
      // alice's announcement lands first, so bob's first lookup finds her
      yield* Effect.tryPromise(() => alice.flock.join(topic).flushed())
      bob.flock.join(topic)
      const [atAlice, atBob] = yield* Effect.all([Fiber.join(aliceMeets), Fiber.join(bobMeets)])
      const metMs = Date.now() - joinedAt
      atAlice.write(`hello from ${alice.name}\n`)
      atBob.write(`hello from ${bob.name}\n`)
      const [toBob, toAlice] = yield* Effect.all([firstLine(atBob), firstLine(atAlice)], { concurrency: "unbounded" })
      return { metMs, path: atBob.path ?? atAlice.path ?? null, toBob, toAlice }
    })
    const met = yield* meeting.pipe(within(FLOCK_TIMEOUT, `the Flock peers' meeting on topic ${topicHex.slice(0, 12)}…`))
    yield* out(
      {
        event: "flock",
        topic: topicHex,
        peers: [alice, bob].map((p) => ({ name: p.name, node: p.node, publicKey: toHex(p.flock.keyPair.publicKey) })),
        path: met.path,
        ms: met.metMs
      },
      `Flock peers ${alice.name} (node ${alice.node}) and ${bob.name} (node ${bob.node}) joined topic ${topicHex.slice(0, 12)}… ` +
        `and met in ${met.metMs} ms, path: ${met.path}`
    )
    yield* out({ event: "message", from: alice.name, to: bob.name, text: met.toBob }, `  ${alice.name} -> ${bob.name}: ${met.toBob}`)
    yield* out({ event: "message", from: bob.name, to: alice.name, text: met.toAlice }, `  ${bob.name} -> ${alice.name}: ${met.toAlice}`)

    return [
      { name: "client", node: clientNode.label, publicKey: client.defaultKeyPair.publicKey, sockets: () => clientSockets },
      { name: "server", node: serverNode.label, publicKey: serverKeyPair.publicKey, sockets: () => serverSockets },
      ...[alice, bob].map((p) => ({ name: p.name, node: p.node, publicKey: p.flock.keyPair.publicKey, sockets: () => p.flock.connections }))
    ]
  })

// ---------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------

const program = (o: Options) =>
  Effect.gen(function*() {
    const out = makeOut(o.json)
    yield* Effect.addFinalizer(() => out({ event: "closed" }, "All nodes destroyed, sockets closed."))
    const { nodes, parties } = Option.isSome(o.testnet)
      ? yield* runTestnet(o, o.testnet.value, out)
      : { nodes: o.bootstrapNode ? yield* runBootstrapper(o, out) : yield* runNodes(o, out), parties: [] }
    const view = statusView(nodes, parties, out, o.json)
    const run = Option.isNone(o.duration) ? view : Effect.andThen(
      Effect.timeoutOption(view, Duration.millis(o.duration.value * 1000)),
      out(
        { event: "shutdown", nodes: nodes.length, reason: "duration" },
        `--duration ${o.duration.value} s elapsed; shutting down ${count(nodes.length, "node")}...`
      )
    )
    // Ctrl-C / SIGTERM: runMain interrupts us; the scope's finalizers destroy the nodes
    yield* run.pipe(
      Effect.onInterrupt(() => out({ event: "shutdown", nodes: nodes.length, reason: "signal" }, `Shutting down ${count(nodes.length, "node")}...`))
    )
  }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(UdpTransport.layer, Crypto.layer)))

const command = Command.make(
  "ogateway",
  {
    bootstrap: bootstrapFlag,
    bootstrapNode: bootstrapNodeFlag,
    host: hostFlag,
    port: portFlag,
    bind: bindFlag,
    nodes: nodesFlag,
    testnet: testnetFlag,
    ephemeral: ephemeralFlag,
    persistent: persistentFlag,
    duration: durationFlag,
    json: jsonFlag
  },
  program
).pipe(
  Command.validate(validate),
  Command.withDescription(
    "Run Omega HyperDHT nodes: one or more nodes on the public network (default), a bootstrap node, " +
      "or an isolated local testnet; then show a live status view (per node: address, id, routing-table size, " +
      "ephemeral/persistent, firewalled, NAT address, outgoing requests/s, dropped datagrams) until Ctrl-C or --duration. " +
      `Differences from the reference \`hyperdht\` CLI: a bootstrap node listens on port ${BOOTSTRAP_NODE_PORT} by default ` +
      "(--bootstrap-node is a synonym of a bare --bootstrap), --bind, --testnet, --duration, --json, --ephemeral and " +
      "--persistent are Omega additions, and --port 0 means any free port."
  ),
  Command.withExamples([
    { command: "ogateway", description: "one node joining the public HyperDHT network" },
    { command: "ogateway --nodes 5 --json", description: "five nodes, machine-readable status lines" },
    { command: "ogateway --bootstrap 127.0.0.1:49737", description: "join a local network instead" },
    { command: "ogateway --bootstrap --host 203.0.113.7", description: `a bootstrap node, ready to use at 203.0.113.7:${BOOTSTRAP_NODE_PORT}` },
    { command: `ogateway --port 49738 --bootstrap 203.0.113.7:${BOOTSTRAP_NODE_PORT}`, description: "a node joining it" },
    { command: "ogateway --testnet 10 --duration 10", description: "a local network of 11 nodes for 10 seconds" }
  ])
)

/**
 * The reference CLI's value-less forms: `--bootstrap` with no value selects
 * bootstrap-node mode, `--testnet` with no value uses the default size.
 */
const normalizeArgs = (argv: ReadonlyArray<string>): Array<string> => {
  const args: Array<string> = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const next = argv[i + 1]
    const valueless = next === undefined || next.startsWith("-")
    if (a === "--bootstrap" && valueless) args.push("--bootstrap-node")
    else if (a === "--testnet" && valueless) args.push(`--testnet=${DEFAULT_TESTNET_SIZE}`)
    else args.push(a)
  }
  return args
}

/** Exit 0 after success even if some handle were to keep the event loop alive. */
const teardown: Runtime.Teardown = (exit, onExit) =>
  Runtime.defaultTeardown(exit, (code) => {
    onExit(code)
    if (Exit.isSuccess(exit)) setTimeout(() => process.exit(code), 2000).unref()
  })

/** A failure as one JSON line: usage errors (bad flags) and run errors (a port taken, a testnet that did not come up). */
const jsonError = (error: unknown): Record<string, unknown> => {
  if (CliError.isCliError(error) && error._tag === "ShowHelp") {
    const messages = error.errors.map((e) => e.message)
    return { event: "error", kind: "usage", message: messages.join("; ") || "usage", errors: messages }
  }
  const user = typeof error === "object" && error !== null ? CliError.getUserMessage(error) : undefined
  const message = user ?? (error instanceof Error ? error.message : String(error))
  return { event: "error", kind: "run", message }
}

/**
 * `--json`: errors go to stdout as JSON lines, not as help text and an
 * ERROR block (the runner's own report is silenced; the exit code stays 1).
 */
const reportJson = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.catchCause(self, (cause) => {
    if (!Cause.hasFails(cause) && !Cause.hasDies(cause)) return Effect.failCause(cause)
    const error = Cause.squash(cause)
    return Effect.andThen(
      Effect.sync(() => {
        process.stdout.write(JSON.stringify(jsonError(error)) + "\n")
        if (typeof error === "object" && error !== null) Object.assign(error, { [Runtime.errorReported]: false })
      }),
      Effect.failCause(cause)
    )
  })

/** `--json`: help shown only when asked for (`--help`); invalid invocations are reported by `reportJson`. */
const jsonPresenter: CliOutput.Presenter = {
  present: (event) => event._tag === "Help" && event.reason === "Implicit" ? Effect.void : CliOutput.defaultPresenter.present(event)
}

// output piped into a reader that went away (`ogateway | head`): stop quietly
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0)
})

const args = normalizeArgs(process.argv.slice(2))
const json = args.includes("--json")

Command.runWith(command, { version: VERSION, ...(json ? { renderErrors: false } : {}) })(args).pipe(
  json ? (run) => reportJson(Effect.provideService(run, CliOutput.Presenter, jsonPresenter)) : (run) => run,
  Effect.provide(NodeServices.layer),
  (main) => NodeRuntime.runMain(main, { teardown })
)
