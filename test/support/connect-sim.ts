/**
 * Connections between public keys on the simulated network (connect.md
 * §5–§8): a seeded `SimNetwork` with a bootstrapper and a set of persistent
 * open HyperDHT nodes, plus peers on hosts behind a chosen NAT kind, each
 * with its node's ConnectionHost; servers (`ServerCore`) and dials (`dial`)
 * driven on virtual time.
 *
 * Time: TestClock (what `it.effect` provides) or a VirtualClock. The
 * encrypted sockets are Node Duplex streams whose events run on
 * process.nextTick / setImmediate, outside Effect's scheduler; every step of
 * virtual time is therefore followed by a turn of Node's event loop
 * (`flushNode`), so stream callbacks run between steps as they would
 * between datagrams on a real network.
 *
 * Determinism: the network's PRNG, every node's `randomSeed`, the
 * ConnectionHosts' `random` and the Crypto service's `randomBytes` /
 * `keyPair()` all come from the harness seed, so a run with one seed
 * replays identically (down to the handshake hashes).
 */
import { Effect, Exit, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import type { ConnectOptions } from "../../src/actors/holepunch/dial.js"
import { dial } from "../../src/actors/holepunch/dial.js"
import type { ConnectionError, DialReport } from "../../src/actors/holepunch/errors.js"
import { type ConnectionHost, connectionHost, type ConnectionPath, type GatewaySocket, type HostOptions } from "../../src/actors/session/host.js"
import { ServerCore, type ServerOptions } from "../../src/actors/session/server.js"
import type { GatewayConfig, GatewayHandle } from "../../src/api/GatewayService.js"
import { GatewayService, makeGateway } from "../../src/api/GatewayService.js"
import { Crypto } from "../../src/layers/Crypto.js"
import { makeFast } from "../../src/layers/crypto/fast.js"
import type { CryptoImpl, KeyPair } from "../../src/layers/crypto/types.js"
import { type NatKind, type SimHost, SimNetwork, type SimNetworkOptions, type SimNetworkService, type SimNetworkStats } from "../../src/layers/transport/sim.js"
import { Transport } from "../../src/layers/Transport.js"
import { VirtualClock } from "../../src/layers/VirtualClock.js"
import { toHex } from "../../src/protocol/encoding.js"
import { seededRandom } from "../../src/util/random.js"

export type { NatKind }

export const BOOT_IP = "20.255.0.1"
export const BOOT_PORT = 49737
const DHT_PORT = 49737
/** Timers already due that one host may re-arm within one virtual millisecond before the harness calls it a livelock. */
export const LIVELOCK_LIMIT = 10_000

const ipOf = (i: number): string => `20.${1 + ((i >> 16) & 0xff)}.${(i >> 8) & 0xff}.${i & 0xff}`

// ---- time ---------------------------------------------------------------------------------------

/** One turn of Node's event loop: process.nextTick and setImmediate callbacks (stream events) run. */
export const flushNode: Effect.Effect<void> = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** TestClock.adjust, or VirtualClock.adjust when the simulation runs on a VirtualClock. */
export const adjustClock = (ms: number): Effect.Effect<void> =>
  Effect.flatMap(Effect.serviceOption(VirtualClock), (v) => (Option.isSome(v) ? v.value.adjust(ms) : TestClock.adjust(ms)))

/** Advance virtual time by `ms` in steps of `step`, with a turn of Node's event loop after each. */
export const advance = (ms: number, step = 100): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (let t = 0; t < ms; t += step) {
      yield* adjustClock(Math.min(step, ms - t))
      yield* flushNode
    }
  })

/**
 * Advance in steps of `step` until `done()` holds or `maxMs` of virtual
 * time have passed; true when `done()` held. Bounded: at most maxMs / step steps.
 */
export const advanceUntil = (done: () => boolean, maxMs: number, step = 10): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    yield* flushNode
    for (let t = 0; t < maxMs && !done(); t += step) {
      yield* adjustClock(step)
      yield* flushNode
    }
    return done()
  })

/** Run `effect` to its end while advancing virtual time (at most `maxMs`); its Exit, or None if still running. */
export const drive = <A, E>(effect: Effect.Effect<A, E>, maxMs = 60_000, step = 50) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(effect, { startImmediately: true })
    let exit = fiber.pollUnsafe()
    for (let t = 0; t < maxMs && exit === undefined; t += step) {
      yield* adjustClock(step)
      yield* flushNode
      exit = fiber.pollUnsafe()
    }
    if (exit === undefined) {
      fiber.interruptUnsafe()
      return Option.none<Exit.Exit<A, E>>()
    }
    return Option.some(exit as Exit.Exit<A, E>)
  })

// ---- deterministic crypto ---------------------------------------------------------------------

/** The crypto implementation with its random bytes (and random key pairs) drawn from a seed. */
export const seededCrypto = (base: CryptoImpl, seed: number): CryptoImpl => {
  const random = seededRandom(seed * 2654435761 + 12345)
  const randomBytes = (n: number): Uint8Array => {
    const b = new Uint8Array(n)
    for (let i = 0; i < n; i++) b[i] = Math.floor(random() * 256)
    return b
  }
  return {
    ...base,
    name: `${base.name}+seeded`,
    randomBytes,
    keyPair: (s?: Uint8Array) => base.keyPair(s ?? randomBytes(32))
  }
}

// ---- the network ---------------------------------------------------------------------------------

export interface DhtNodeInfo {
  readonly ip: string
  readonly port: number
  readonly handle: GatewayHandle
}

/** A HyperDHT node behind a NAT kind, with its ConnectionHost and an identity. */
export interface SimPeer {
  readonly name: string
  readonly nat: NatKind
  readonly host: SimHost
  readonly handle: GatewayHandle
  readonly conn: ConnectionHost
  readonly keyPair: KeyPair
  /** Closing it destroys the node (and removes its host from the network). */
  readonly scope: Scope.Closeable
}

export interface ConnectSimOptions {
  readonly seed?: number
  /** Persistent open DHT nodes besides the bootstrapper (default 20). */
  readonly nodes?: number
  readonly net?: SimNetworkOptions
  /** Virtual time to let the DHT settle after the nodes joined (default 5000 ms). */
  readonly settle?: number
}

export interface PeerOptions {
  readonly name?: string
  /** Share a NAT with other peers of the same group (same public IP; the LAN path). */
  readonly natGroup?: string
  readonly config?: GatewayConfig
  /** Options of the peer's ConnectionHost (e.g. `randomPunchInterval`). */
  readonly host?: Omit<HostOptions, "effectTimers" | "random">
  /** The transport as the peer's node sees it (e.g. to record what its sockets send). */
  readonly transport?: (host: SimHost) => SimHost
}

export interface ConnectSim {
  readonly seed: number
  readonly net: SimNetworkService
  readonly crypto: CryptoImpl
  /** The bootstrapper (first) and the persistent nodes. */
  readonly nodes: ReadonlyArray<DhtNodeInfo>
  readonly peers: Array<SimPeer>
  /** Hosts whose node kept re-arming due timers (see `guarded` in buildConnectSim); empty in a healthy run. */
  readonly livelocks: ReadonlyArray<string>
  /** Virtual time (ms). */
  readonly now: () => number
  /** A new HyperDHT node on a new host behind `nat`, bootstrapped (its firewall check, part of the bootstrap, has run), with its ConnectionHost and key pair. */
  readonly addPeer: (nat: NatKind, options?: PeerOptions) => Effect.Effect<SimPeer>
}

/**
 * A seeded simulated network (latency 20 ms + jitter 10 ms by default, 2048
 * byte datagrams) with a bootstrapper and `nodes` persistent open HyperDHT
 * nodes, settled. Lives in the current scope.
 */
export const buildConnectSim = (options: ConnectSimOptions = {}) =>
  Effect.gen(function*() {
    const seed = options.seed ?? 1
    const count = options.nodes ?? 20
    const crypto = seededCrypto(yield* Effect.promise(() => makeFast()), seed)
    const net = yield* SimNetwork.make({ latency: 20, jitter: 10, maxDatagramSize: 2048, seed, ...options.net })
    const outer = yield* Effect.scope
    const clock = yield* Effect.clockWith(Effect.succeed)
    const nodes: Array<DhtNodeInfo> = []
    const peers: Array<SimPeer> = []
    let randomSeeds = seed * 7919

    const livelocks: Array<string> = []
    /**
     * The host as its node sees it, with a guard on the shared timer: a node
     * that keeps re-arming an alarm that is already due runs the network's
     * scheduler in a synchronous loop that never lets virtual time move (the
     * process spins, and no test timeout can fire). Past LIVELOCK_LIMIT such
     * alarms in one virtual millisecond, the host's further ones in that
     * millisecond are dropped and the event is recorded in `livelocks`.
     */
    const guarded = (host: SimHost, label: string): SimHost => {
      const schedule = host.schedule!
      let ms = -1
      let count = 0
      return {
        ...host,
        schedule: (at, f) => {
          const now = clock.currentTimeMillisUnsafe()
          if (Math.ceil(at) <= now) {
            if (now !== ms) {
              ms = now
              count = 0
            }
            if (++count > LIVELOCK_LIMIT) {
              if (count === LIVELOCK_LIMIT + 1) livelocks.push(`${label} (${host.ip}): more than ${LIVELOCK_LIMIT} timers already due re-armed at virtual ms ${now}`)
              return
            }
          }
          schedule(at, f)
        }
      }
    }

    const startNode = (host: SimHost, config: GatewayConfig, scope: Scope.Scope, label: string) =>
      makeGateway({ ...config, randomSeed: ++randomSeeds }).pipe(
        Effect.provideService(Transport, guarded(host, label)),
        Effect.provideService(Crypto, crypto),
        Scope.provide(scope),
        Effect.orDie
      )

    const boot = GatewayService.bootstrapperConfig(BOOT_PORT, BOOT_IP)
    if (!("port" in boot)) return yield* Effect.die(boot)
    const bootHost = yield* net.addHost({ ip: BOOT_IP })
    nodes.push({ ip: BOOT_IP, port: BOOT_PORT, handle: yield* startNode(bootHost, boot, outer, "bootstrapper") })
    const bootstrap = [`${BOOT_IP}:${BOOT_PORT}`]
    for (let i = 0; i < count; i++) {
      const ip = ipOf(i + 1)
      const host = yield* net.addHost({ ip })
      const handle = yield* startNode(host, { ephemeral: false, firewalled: false, port: DHT_PORT, bootstrap }, outer, `dht node ${i + 1}`)
      nodes.push({ ip, port: handle.sockets().server.local.port, handle })
      yield* advance(50, 50)
    }
    yield* advance(options.settle ?? 5000, 250)
    const notReady = nodes.filter((n) => !n.handle.core.bootstrapped).length
    if (notReady > 0) return yield* Effect.die(new Error(`${notReady} DHT nodes did not bootstrap`))

    const addPeer = (nat: NatKind, peerOptions: PeerOptions = {}): Effect.Effect<SimPeer> =>
      Effect.gen(function*() {
        const scope = yield* Scope.fork(outer)
        const host = yield* net.addHost({ nat, ...(peerOptions.natGroup !== undefined ? { natGroup: peerOptions.natGroup } : {}) }).pipe(Scope.provide(scope))
        const name = peerOptions.name ?? `${nat}#${peers.length}`
        const handle = yield* startNode(peerOptions.transport?.(host) ?? host, { bootstrap, ...peerOptions.config }, scope, `peer ${name}`)
        const ready = yield* advanceUntil(() => handle.core.bootstrapped, 30_000, 50)
        if (!ready) return yield* Effect.die(new Error(`peer on a ${nat} host did not bootstrap`))
        const conn = yield* connectionHost(handle, crypto, { ...peerOptions.host, effectTimers: true, random: seededRandom(++randomSeeds) })
        const keyPair = crypto.keyPair(crypto.blake2b(new TextEncoder().encode(`connect-sim ${seed} ${name}`)))!
        const peer: SimPeer = { name, nat, host, handle, conn, keyPair, scope }
        peers.push(peer)
        return peer
      })

    return {
      seed,
      net,
      crypto,
      nodes,
      peers,
      livelocks,
      now: () => clock.currentTimeMillisUnsafe(),
      addPeer
    } satisfies ConnectSim
  })

// ---- servers -------------------------------------------------------------------------------------

export interface SimServer {
  readonly peer: SimPeer
  readonly core: ServerCore
  /** Every encrypted socket the server handed out ('connection'). */
  readonly connections: Array<GatewaySocket>
  /** Those that emitted 'open'. */
  readonly opened: Set<GatewaySocket>
}

/** A server on `peer` listening on the peer's key pair (announce driven on virtual time). */
export const listen = (peer: SimPeer, options: ServerOptions = {}) =>
  Effect.gen(function*() {
    const connections: Array<GatewaySocket> = []
    const opened = new Set<GatewaySocket>()
    const core = new ServerCore(peer.conn, options, (socket) => {
      socket.on("error", () => {})
      socket.once("open", () => opened.add(socket))
      connections.push(socket)
    })
    const exit = yield* drive(core.listen(peer.keyPair), 60_000)
    if (Option.isNone(exit)) return yield* Effect.die(new Error(`${peer.name}: listen did not finish`))
    if (Exit.isFailure(exit.value)) return yield* Effect.die(new Error(`${peer.name}: listen failed: ${String(exit.value.cause)}`))
    return { peer, core, connections, opened } satisfies SimServer
  })

// ---- dials ---------------------------------------------------------------------------------------

export interface SimDial {
  readonly client: SimPeer
  readonly server: SimServer
  readonly socket: GatewaySocket
  readonly startedAt: number
  openedAt: number | null
  failedAt: number | null
  error: ConnectionError | null
}

export interface DialOutcome {
  readonly ok: boolean
  /** Virtual ms from the dial to 'open' (or to 'error'). */
  readonly ms: number
  readonly path: ConnectionPath | null
  readonly serverPath: ConnectionPath | null
  readonly code: string | null
  readonly report: DialReport | null
}

/** Start a dial from `client` to `server` (the socket at once, 'open' or 'error' later). */
export const beginDial = (sim: ConnectSim, client: SimPeer, server: SimServer, opts: ConnectOptions = {}): SimDial => {
  const socket = dial(client.conn, server.peer.keyPair.publicKey, client.keyPair, opts)
  const d: SimDial = { client, server, socket, startedAt: sim.now(), openedAt: null, failedAt: null, error: null }
  socket.once("open", () => {
    d.openedAt = sim.now()
  })
  socket.on("error", (e: unknown) => {
    if (d.failedAt !== null) return
    d.failedAt = sim.now()
    d.error = e as ConnectionError
  })
  return d
}

/** The server's socket of a dial (matched by the client's public key). */
export const serverSocketOf = (d: SimDial): GatewaySocket | null => {
  const key = toHex(d.client.keyPair.publicKey)
  return d.server.connections.find((s) => s.remotePublicKey !== null && toHex(s.remotePublicKey) === key) ?? null
}

/** Dial and advance virtual time until the dial opens or fails (at most `maxMs`). */
export const connect = (sim: ConnectSim, client: SimPeer, server: SimServer, opts: ConnectOptions & { readonly maxMs?: number } = {}) =>
  Effect.gen(function*() {
    const { maxMs, ...dialOpts } = opts
    const d = beginDial(sim, client, server, dialOpts)
    yield* advanceUntil(() => d.openedAt !== null || d.failedAt !== null, maxMs ?? 90_000, 10)
    // the server learns the path from the client's first packet: its socket comes a little later
    if (d.openedAt !== null) {
      yield* advanceUntil(() => serverSocketOf(d) !== null, 10_000, 10)
      const s = serverSocketOf(d)
      if (s !== null) yield* advanceUntil(() => server.opened.has(s), 10_000, 10)
    }
    return { dial: d, outcome: outcomeOf(d) }
  })

export const outcomeOf = (d: SimDial): DialOutcome => {
  const ok = d.openedAt !== null && d.failedAt === null
  const end = d.openedAt ?? d.failedAt
  return {
    ok,
    ms: end === null ? -1 : end - d.startedAt,
    path: d.socket.path,
    serverPath: serverSocketOf(d)?.path ?? null,
    code: d.error?.code ?? null,
    report: d.error?.report ?? null
  }
}

// ---- bytes ------------------------------------------------------------------------------------------

/** `n` deterministic bytes (a seeded pattern). */
export const pattern = (n: number, seed: number): Uint8Array => {
  const r = seededRandom(seed)
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256)
  return b
}

/** Collect what a socket reads. */
export const collect = (s: GatewaySocket): { chunks: Array<Uint8Array>; bytes: number } => {
  const sink = { chunks: [] as Array<Uint8Array>, bytes: 0 }
  s.on("data", (c: Uint8Array) => {
    sink.chunks.push(c)
    sink.bytes += c.length
  })
  return sink
}

const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let o = 0
  for (const c of chunks) {
    out.set(c, o)
    o += c.length
  }
  return out
}

export interface Exchange {
  /** What the server received equals what the client wrote, and the other way round. */
  readonly upIntact: boolean
  readonly downIntact: boolean
  readonly upBytes: number
  readonly downBytes: number
  /** Virtual ms until both sides had everything. */
  readonly ms: number
}

/** Write `size` bytes each way (client → server, server → client) and advance until both arrived. */
export const exchange = (sim: ConnectSim, client: GatewaySocket, server: GatewaySocket, size: number, seed = 1, maxMs = 60_000) =>
  Effect.gen(function*() {
    const up = pattern(size, seed * 2 + 1)
    const down = pattern(size, seed * 2 + 2)
    const atServer = collect(server)
    const atClient = collect(client)
    const t0 = sim.now()
    for (let i = 0; i < size; i += 16_384) client.write(up.subarray(i, Math.min(size, i + 16_384)))
    for (let i = 0; i < size; i += 16_384) server.write(down.subarray(i, Math.min(size, i + 16_384)))
    yield* advanceUntil(() => atServer.bytes >= size && atClient.bytes >= size, maxMs, 10)
    const gotUp = concat(atServer.chunks)
    const gotDown = concat(atClient.chunks)
    return {
      upIntact: gotUp.length === size && toHex(gotUp) === toHex(up),
      downIntact: gotDown.length === size && toHex(gotDown) === toHex(down),
      upBytes: gotUp.length,
      downBytes: gotDown.length,
      ms: sim.now() - t0
    } satisfies Exchange
  })

/** The network's datagram counters as a flat record (for traces). */
export const counters = (s: SimNetworkStats): Record<string, number> => ({
  sent: s.sent,
  delivered: s.delivered,
  duplicated: s.duplicated,
  inFlight: s.inFlight,
  ...Object.fromEntries(Object.entries(s.dropped).map(([k, v]) => [`dropped.${k}`, v]))
})

/** hyperdht firewall class names. */
export const FIREWALL_NAMES = ["UNKNOWN", "OPEN", "CONSISTENT", "RANDOM"] as const
export const firewallName = (n: number | null): string => (n === null ? "null" : FIREWALL_NAMES[n] ?? String(n))

/** The step marks (src/layers/trace.ts) made while `effect` runs, in order. */
export const marked = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const labels: Array<string> = []
    const g = globalThis as { __omegaTrace?: (label: string) => void }
    g.__omegaTrace = (label) => labels.push(label)
    return effect.pipe(
      Effect.map((value) => ({ value, labels })),
      Effect.ensuring(Effect.sync(() => delete g.__omegaTrace))
    )
  })
