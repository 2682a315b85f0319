/**
 * Supervision of connection work (issue 21, item 1): a defect (an
 * exception) inside a holepunch attempt, a UDX stream or a secret stream
 * closes that one unit with a typed error that reaches the user ('error'
 * then 'close' on the socket; a failed Effect on the Effect face) and the
 * log (Effect's logger), while the node keeps working: its other
 * connections carry data and a later dial opens.
 *
 * On the simulated network (test/support/connect-sim.ts) on TestClock, plus
 * one secret-stream core on its own; the defects are injected by replacing
 * one method of one instance (a punch core, a NAT sampling plan, a UDX
 * stream core, a secret stream's crypto, a 'data' handler) from the test.
 * The DHT node's actor: test/node-supervision.test.ts; the Flock's actors:
 * test/flock-sim.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Logger, Option, Scope, Stream } from "effect"
import { type AttemptOptions, HolepunchAttempt } from "../src/actors/holepunch/attempt.js"
import { dial } from "../src/actors/holepunch/dial.js"
import { ConnectionError } from "../src/actors/holepunch/errors.js"
import type { ConnectionHost, GatewaySocket } from "../src/actors/session/host.js"
import { RawStreamFailed, type RawStreamHandlers, SecretStreamCore, StreamDefect } from "../src/actors/session/secret-stream.js"
import { UdxError } from "../src/actors/session/udx-stream.js"
import { Connections } from "../src/effect.js"
import { noble } from "../src/layers/crypto/noble.js"
import type { KeyPair } from "../src/layers/crypto/types.js"
import { toHex } from "../src/protocol/encoding.js"
import {
  advanceUntil,
  buildConnectSim,
  type ConnectSim,
  connect,
  drive,
  exchange,
  listen,
  type SimPeer,
  type SimServer
} from "./support/connect-sim.js"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any

// ---- helpers -------------------------------------------------------------------------------------

interface LogLine {
  readonly level: string
  readonly text: string
}

/** A logger that keeps every line (level, message and cause) for the test to read. */
const captureLogs = () => {
  const lines: Array<LogLine> = []
  const logger = Logger.make((o) => {
    const parts = Array.isArray(o.message) ? o.message : [o.message]
    const cause = o.cause.reasons.length > 0 ? ` ${Cause.pretty(o.cause)}` : ""
    lines.push({ level: o.logLevel, text: `${parts.map((p) => (typeof p === "string" ? p : String(p))).join(" ")}${cause}` })
  })
  return { lines, layer: Logger.layer([logger]) }
}

const errorsWith = (lines: ReadonlyArray<LogLine>, what: string): Array<LogLine> =>
  lines.filter((l) => l.level === "Error" && l.text.includes(what))

/** Every holepunch attempt made while `f` runs is handed to `onMade` first (the injection point). */
const withAttempts = <A, E, R>(onMade: (a: HolepunchAttempt, options: AttemptOptions) => void, f: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const original = HolepunchAttempt.make
      HolepunchAttempt.make = (host: ConnectionHost, options: AttemptOptions) => {
        const a = original.call(HolepunchAttempt, host, options)
        if (a !== null) onMade(a, options)
        return a
      }
      return original
    }),
    () => f,
    (original) =>
      Effect.sync(() => {
        HolepunchAttempt.make = original
      })
  )

/** The socket's events in order ('open', 'error:<tag>', 'close'). */
const events = (s: GatewaySocket): Array<string> => {
  const seen: Array<string> = []
  s.once("open", () => seen.push("open"))
  s.on("error", (e: Any) => seen.push(`error:${e?._tag ?? e?.name}`))
  s.once("close", () => seen.push("close"))
  return seen
}

interface Opened {
  readonly client: GatewaySocket
  readonly server: GatewaySocket
}

/** Dial `server` from `client` with `keyPair` until both ends are open. */
const open = (client: SimPeer, server: SimServer, keyPair: KeyPair) =>
  Effect.gen(function*() {
    const socket = dial(client.conn, server.peer.keyPair.publicKey, keyPair)
    socket.on("error", () => {})
    const key = toHex(keyPair.publicKey)
    const serverSide = () => server.connections.find((s) => s.remotePublicKey !== null && toHex(s.remotePublicKey) === key) ?? null
    const ok = yield* advanceUntil(() => socket.connected && serverSide() !== null && server.opened.has(serverSide()!), 30_000, 10)
    assert.isTrue(ok, "the connection opened on both ends")
    return { client: socket, server: serverSide()! } satisfies Opened
  })

const stillCarries = (sim: ConnectSim, c: Opened, seed: number) =>
  Effect.gen(function*() {
    const x = yield* exchange(sim, c.client, c.server, 32 * 1024, seed)
    assert.isTrue(x.upIntact && x.downIntact, "bytes go both ways intact")
  })

// ---- a holepunch attempt -----------------------------------------------------------------------------

/** Two consistent-NAT peers (they connect by punching), the server listening. */
const punchingPair = (seed: number, clientNat: "consistent" | "random" = "consistent") =>
  Effect.gen(function*() {
    const sim = yield* buildConnectSim({ seed })
    const sp = yield* sim.addPeer("consistent", { name: "server" })
    const cp = yield* sim.addPeer(clientNat, { name: "client" })
    const server = yield* listen(sp)
    return { sim, sp, cp, server }
  })

describe("a holepunch attempt under a defect", () => {
  it.effect("the client's punch core throws on a probe: the dial fails with HOLEPUNCH_ABORTED carrying the defect, logged, the attempt's sockets closed; a later dial punches", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const { sim, cp, server } = yield* punchingPair(1)
      const injected = new Error("injected defect: probe")
      const made: Array<{ attempt: HolepunchAttempt; sockets: Array<unknown> }> = []
      const failed = yield* withAttempts((a, options) => {
        if (!options.initiator) return
        const entry = { attempt: a, sockets: [] as Array<unknown> }
        made.push(entry)
        a.core.onProbeReceived = () => {
          entry.sockets = a.sockets.slice()
          throw injected
        }
      }, Effect.gen(function*() {
        const socket = dial(cp.conn, server.peer.keyPair.publicKey, cp.keyPair)
        const seen = events(socket)
        let error: unknown = null
        socket.on("error", (e) => (error = e))
        yield* advanceUntil(() => seen.includes("close"), 60_000, 10)
        return { seen, error }
      }))
      assert.deepStrictEqual(failed.seen, ["error:ConnectionError", "close"])
      assert.instanceOf(failed.error, ConnectionError)
      const e = failed.error as ConnectionError
      assert.strictEqual(e.code, "HOLEPUNCH_ABORTED")
      assert.strictEqual(e.cause, injected, "the defect is the error's cause")
      assert.include(e.message, "defect")
      assert.isDefined(e.report, "the dial's report comes with it")
      assert.strictEqual(cp.conn.stats.connects.byCode["HOLEPUNCH_ABORTED"], 1)
      // the attempt ended and closed every socket it held
      assert.strictEqual(made.length, 1)
      const { attempt, sockets } = made[0]!
      assert.isTrue(attempt.ended)
      assert.isAbove(sockets.length, 0)
      assert.isTrue(attempt.sockets.every((s) => s === null), "the attempt holds no socket")
      yield* advanceUntil(() => sockets.every((s: Any) => s.closed === true), 1_000, 10)
      assert.isTrue(sockets.every((s: Any) => s.closed === true), "its sockets are closed")
      // logged through Effect's logger, with the defect
      const logged = errorsWith(logs.lines, "holepunch attempt")
      assert.strictEqual(logged.length, 1, logs.lines.map((l) => `${l.level} ${l.text}`).join("\n"))
      assert.include(logged[0]!.text, "injected defect: probe")
      // the node keeps working: a later dial punches
      const { outcome } = yield* connect(sim, cp, server, { maxMs: 60_000 })
      assert.isTrue(outcome.ok, `a later dial opens (${outcome.code})`)
      assert.strictEqual(outcome.path, "punched")
    }).pipe(Effect.provide(logs.layer))
  }, { timeout: 60_000 })

  it.effect("the NAT analysis throws as the attempt samples (a client behind a randomizing NAT, which must learn its class to punch): on the Effect face Connections.connect fails with the typed error", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      // (a consistent client is connected by the server's probe before it samples at all)
      const { cp, server } = yield* punchingPair(2, "random")
      const injected = new Error("injected defect: sampling")
      const exit = yield* withAttempts((a, options) => {
        if (!options.initiator) return
        a.plan.nextPings = () => {
          throw injected
        }
      }, drive(Effect.scoped(Connections.connect(cp.handle, server.peer.keyPair.publicKey, { keyPair: cp.keyPair })), 60_000))
      assert.isTrue(Option.isSome(exit), "Connections.connect ended")
      const result = Option.getOrThrow(exit)
      assert.isTrue(Exit.isFailure(result), "Connections.connect failed")
      const error = Exit.isFailure(result) ? Cause.squash(result.cause) : null
      assert.instanceOf(error, ConnectionError)
      assert.strictEqual((error as ConnectionError).code, "HOLEPUNCH_ABORTED")
      assert.strictEqual((error as ConnectionError).cause, injected)
      assert.strictEqual(errorsWith(logs.lines, "holepunch attempt").length, 1)
    }).pipe(Effect.provide(logs.layer))
  }, { timeout: 60_000 })

  it.effect("the server's punch core throws: its attempt closes (logged), the client's dial fails with REMOTE_ABORTED, the server serves a later dial", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const { sim, cp, server } = yield* punchingPair(3)
      const injected = new Error("injected defect: server")
      const made: Array<HolepunchAttempt> = []
      const failed = yield* withAttempts((a, options) => {
        if (options.initiator) return
        made.push(a)
        a.core.updateRemote = () => {
          throw injected
        }
      }, connect(sim, cp, server, { maxMs: 60_000 }))
      assert.isFalse(failed.outcome.ok, "the dial did not open")
      // the server's side of the punch ended: it answers the client's next holepunch message with an abort
      assert.instanceOf(failed.dial.error, ConnectionError)
      assert.strictEqual(failed.outcome.code, "REMOTE_ABORTED")
      assert.strictEqual(made.length, 1)
      assert.isTrue(made[0]!.ended, "the server's attempt ended")
      assert.isTrue(made[0]!.sockets.every((s) => s === null), "the server's attempt holds no socket")
      assert.strictEqual(errorsWith(logs.lines, "holepunch attempt").length, 1)
      assert.strictEqual(server.connections.length, 0, "no half-open connection on the server")
      const { outcome } = yield* connect(sim, cp, server, { maxMs: 60_000 })
      assert.isTrue(outcome.ok, `a later dial opens (${outcome.code})`)
    }).pipe(Effect.provide(logs.layer))
  }, { timeout: 60_000 })
})

// ---- UDX streams and secret streams ---------------------------------------------------------------------

/** An open server and an open client (direct connections over the nodes' sockets and UDX muxes). */
const directPair = (seed: number) =>
  Effect.gen(function*() {
    const sim = yield* buildConnectSim({ seed })
    const sp = yield* sim.addPeer("open", { name: "server" })
    const cp = yield* sim.addPeer("open", { name: "client" })
    const server = yield* listen(sp)
    const keys = (name: string) => sim.crypto.keyPair(sim.crypto.blake2b(new TextEncoder().encode(`supervision ${seed} ${name}`)))!
    const a = yield* open(cp, server, keys("a"))
    const b = yield* open(cp, server, keys("b"))
    return { sim, sp, cp, server, a, b, keys }
  })

const defectsOf = (peer: SimPeer): number => peer.conn.mux.stats().defects

describe("a UDX stream under a defect", () => {
  it.effect("the stream core throws on an incoming packet: that connection closes with a typed error (logged, counted); the other connection and new ones work", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const { sim, cp, server, a, b, keys } = yield* directPair(4)
      const seen = events(a.client)
      let error: Any = null
      a.client.on("error", (e) => (error = e))
      const serverSeen = events(a.server)
      const injected = new Error("injected defect: packet")
      ;(a.client.udx as Any).core.onPacket = () => {
        throw injected
      }
      a.server.write(new Uint8Array(100))
      yield* advanceUntil(() => seen.includes("close") && serverSeen.includes("close"), 10_000, 10)
      assert.deepStrictEqual(seen, ["error:RawStreamFailed", "close"])
      assert.instanceOf(error, RawStreamFailed)
      const udxError = (error as RawStreamFailed).cause
      assert.instanceOf(udxError, UdxError)
      assert.strictEqual((udxError as UdxError).code, "EDEFECT")
      assert.strictEqual((udxError as UdxError).cause, injected)
      assert.include(serverSeen, "close", "the peer's end closes too (DESTROY)")
      assert.strictEqual(defectsOf(cp), 1)
      const logged = errorsWith(logs.lines, "UDX stream")
      assert.strictEqual(logged.length, 1, logs.lines.map((l) => `${l.level} ${l.text}`).join("\n"))
      assert.include(logged[0]!.text, "injected defect: packet")
      // the other connection and the mux keep working
      yield* stillCarries(sim, b, 1)
      const c = yield* open(cp, server, keys("c"))
      yield* stillCarries(sim, c, 2)
      assert.strictEqual(defectsOf(cp), 1)
    }).pipe(Effect.provide(logs.layer))
  }, { timeout: 60_000 })

  it.effect("a step that throws when flushing (a timer or ack path): the stream closes the same way, the mux carries on", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const { sim, cp, a, b } = yield* directPair(5)
      const seen = events(a.client)
      const injected = new Error("injected defect: flush")
      ;(a.client.udx as Any).core.flush = () => {
        throw injected
      }
      a.client.write(new Uint8Array(100))
      yield* advanceUntil(() => seen.includes("close"), 10_000, 10)
      assert.deepStrictEqual(seen, ["error:RawStreamFailed", "close"])
      assert.strictEqual(defectsOf(cp), 1)
      assert.strictEqual(errorsWith(logs.lines, "UDX stream").length, 1)
      yield* stillCarries(sim, b, 3)
    }).pipe(Effect.provide(logs.layer))
  }, { timeout: 60_000 })
})

/** A raw stream that records what the core writes and whether it destroyed it; the test delivers bytes by hand. */
const handRaw = () => {
  const raw = {
    handlers: null as RawStreamHandlers | null,
    written: [] as Array<Uint8Array>,
    destroyed: false,
    attach: (h: RawStreamHandlers) => {
      raw.handlers = h
    },
    write: (b: Uint8Array) => {
      raw.written.push(b)
      return true
    },
    end: () => {},
    destroy: () => {
      raw.destroyed = true
    }
  }
  return raw
}

describe("a secret stream under a defect", () => {
  it("the core alone: a throwing decrypt closes it with StreamDefect, destroys the raw stream, and the exception goes on to the raw stream's caller", () => {
    const k1 = new Uint8Array(32).fill(1)
    const k2 = new Uint8Array(32).fill(2)
    const hash = new Uint8Array(64).fill(3)
    const pk = new Uint8Array(32)
    const closes: Array<unknown> = []
    const onClose = (e: unknown) => closes.push(e)
    const coreEvents = { onData: () => true, onEnd: () => {}, onMessage: () => {}, onDrain: () => {}, onClose }
    const injected = new Error("injected defect: decrypt")
    const rawA = handRaw()
    const rawB = handRaw()
    const a = new SecretStreamCore({ isInitiator: true, tx: k1, rx: k2, handshakeHash: hash, publicKey: pk, remotePublicKey: pk }, noble, rawA, coreEvents)
    const broken = { ...noble, secretstreamPull: () => {
      throw injected
    } }
    const b = new SecretStreamCore({ isInitiator: false, tx: k2, rx: k1, handshakeHash: hash, publicKey: pk, remotePublicKey: pk }, broken, rawB, coreEvents)
    a.start()
    b.start()
    assert.strictEqual(a.write(new Uint8Array(5)), true)
    // the header frame goes through (no decrypt), the data frame throws
    rawB.handlers!.onData(rawA.written[0]!)
    assert.isTrue(b.remoteOpened)
    assert.throws(() => rawB.handlers!.onData(rawA.written[1]!), "injected defect: decrypt")
    assert.isTrue(b.closed)
    assert.instanceOf(b.error, StreamDefect)
    assert.strictEqual((b.error as StreamDefect).cause, injected)
    assert.isTrue(rawB.destroyed, "the raw stream is destroyed")
    assert.strictEqual(closes.length, 1)
    assert.instanceOf(closes[0], StreamDefect)
  })

  it.effect("decrypting a frame throws: that connection closes with StreamDefect (logged, counted); the other connection and new ones work", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const { sim, cp, server, a, b, keys } = yield* directPair(6)
      const seen = events(a.client)
      let error: Any = null
      a.client.on("error", (e) => (error = e))
      const serverSeen = events(a.server)
      const injected = new Error("injected defect: decrypt")
      const core = a.client.core as Any
      core.crypto = {
        ...core.crypto,
        secretstreamPull: () => {
          throw injected
        }
      }
      a.server.write(new Uint8Array(100))
      yield* advanceUntil(() => seen.includes("close") && serverSeen.includes("close"), 10_000, 10)
      assert.deepStrictEqual(seen, ["error:StreamDefect", "close"])
      assert.instanceOf(error, StreamDefect)
      assert.strictEqual((error as StreamDefect).cause, injected)
      assert.include(serverSeen, "close", "the peer's end closes too")
      assert.strictEqual(defectsOf(cp), 1)
      const logged = errorsWith(logs.lines, "UDX stream")
      assert.strictEqual(logged.length, 1, logs.lines.map((l) => `${l.level} ${l.text}`).join("\n"))
      assert.include(logged[0]!.text, "injected defect: decrypt")
      yield* stillCarries(sim, b, 4)
      const c = yield* open(cp, server, keys("c"))
      yield* stillCarries(sim, c, 5)
    }).pipe(Effect.provide(logs.layer))
  }, { timeout: 60_000 })

  it.effect("a throwing 'data' handler closes only its connection, with StreamDefect", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const { sim, cp, a, b } = yield* directPair(7)
      const seen = events(a.client)
      const injected = new Error("injected defect: data handler")
      a.client.on("data", () => {
        throw injected
      })
      a.server.write(new Uint8Array(10))
      yield* advanceUntil(() => seen.includes("close"), 10_000, 10)
      assert.deepStrictEqual(seen, ["error:StreamDefect", "close"])
      assert.strictEqual(defectsOf(cp), 1)
      assert.strictEqual(errorsWith(logs.lines, "UDX stream").length, 1)
      yield* stillCarries(sim, b, 6)
    }).pipe(Effect.provide(logs.layer))
  }, { timeout: 60_000 })

  it.effect("on the Effect face: the connection's readable fails with a ConnectionError carrying the StreamDefect", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const { sim, cp, server, b, keys } = yield* directPair(8)
      const keyPair = keys("effect")
      const scope = yield* Effect.scope
      const connected = yield* drive(Connections.connect(cp.handle, server.peer.keyPair.publicKey, { keyPair }).pipe(Scope.provide(scope)), 30_000)
      assert.isTrue(Option.isSome(connected) && Exit.isSuccess(connected.value), "Connections.connect succeeded")
      const conn = Option.isSome(connected) && Exit.isSuccess(connected.value) ? connected.value.value : null
      if (conn === null) return
      const key = toHex(keyPair.publicKey)
      const serverSide = () => server.connections.find((s) => s.remotePublicKey !== null && toHex(s.remotePublicKey) === key) ?? null
      yield* advanceUntil(() => serverSide() !== null && server.opened.has(serverSide()!), 10_000, 10)
      const injected = new Error("injected defect: decrypt")
      const core = conn.socket.core as Any
      core.crypto = {
        ...core.crypto,
        secretstreamPull: () => {
          throw injected
        }
      }
      const read = drive(Stream.runDrain(conn.readable), 10_000)
      serverSide()!.write(new Uint8Array(10))
      const exit = yield* read
      assert.isTrue(Option.isSome(exit) && Exit.isFailure(exit.value), "the readable failed")
      const error = Option.isSome(exit) && Exit.isFailure(exit.value) ? Cause.squash(exit.value.cause) : null
      assert.instanceOf(error, ConnectionError)
      assert.strictEqual((error as ConnectionError).code, "PEER_CONNECTION_FAILED")
      assert.instanceOf((error as ConnectionError).cause, StreamDefect)
      assert.strictEqual(((error as ConnectionError).cause as StreamDefect).cause, injected)
      const written = yield* Effect.exit(conn.write(new Uint8Array(1)))
      assert.isTrue(Exit.isFailure(written), "a write fails too")
      assert.strictEqual(defectsOf(cp), 1)
      assert.strictEqual(errorsWith(logs.lines, "UDX stream").length, 1)
      yield* stillCarries(sim, b, 7)
    }).pipe(Effect.provide(logs.layer))
  }, { timeout: 60_000 })
})
