/**
 * The connection API as hyperdht users meet it, over real UDP on 127.0.0.1
 * (an Omega-only network): listen / connect errors with hyperdht's codes,
 * the connection pool and its duplicate tie-break, suspend / resume of
 * servers, destroy closing servers, the Effect face.
 */
import { Effect, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Connections } from "../src/effect.js"
import { Gateway } from "../src/index.js"
import { HOST, withTimeout } from "./support/live.js"
import { omegaNetwork } from "./support/omega-net.js"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any

const { net, node, start, bootPort } = omegaNetwork()

const outcome = (s: Any): Promise<{ open: boolean; code?: string; error?: Any }> =>
  new Promise((resolve) => {
    s.once("open", () => resolve({ open: true }))
    s.once("error", (e: Any) => resolve({ open: false, code: e.code, error: e }))
  })

beforeAll(start, 60_000)

afterAll(async () => {
  await net.destroyAll()
}, 60_000)

describe("connection API", () => {
  it("a server socket opens after 'connection': a listener attached there sees 'open', as with hyperdht", async () => {
    const a = node()
    const b = node()
    await Promise.all([a.ready(), b.ready()])
    const sawOpen = new Promise<boolean>((resolve) => {
      const server = a.createServer((s: Any) => {
        s.on("error", () => {})
        s.once("open", () => resolve(true))
        s.once("close", () => resolve(false))
      })
      void server.listen()
      server.once("listening", () => {
        const c = b.connect(server.publicKey!)
        c.on("error", () => {})
      })
    })
    expect(await withTimeout(sawOpen, 15_000, "server-side open")).toBe(true)
  }, 30_000)

  it("errors with hyperdht's codes: PEER_NOT_FOUND (with a report), ALREADY_LISTENING, KEYPAIR_ALREADY_USED, invalid keys", async () => {
    const a = node()
    await a.ready()
    const missing = a.connect(Gateway.keyPair().publicKey)
    const r = await withTimeout(outcome(missing), 20_000, "missing peer")
    expect(r.open).toBe(false)
    expect(r.code).toBe("PEER_NOT_FOUND")
    expect(r.error._tag).toBe("ConnectionError")
    expect(r.error.report).toBeDefined()
    const bad = await withTimeout(outcome(a.connect("not a key")), 5_000, "bad key")
    expect(bad.code).toBe("INVALID_ARGUMENT")
    const kp = Gateway.keyPair()
    const s1 = a.createServer()
    await s1.listen(kp)
    await expect(s1.listen(kp)).rejects.toMatchObject({ code: "ALREADY_LISTENING" })
    await expect(a.createServer().listen(kp)).rejects.toMatchObject({ code: "KEYPAIR_ALREADY_USED" })
    expect(a.listening.size).toBe(1)
    expect(s1.address()?.publicKey.equals(kp.publicKey)).toBe(true)
    await s1.close()
    expect(a.listening.size).toBe(0)
  }, 60_000)

  it("a pool keeps one connection per key: connect returns the pooled socket; a server with the pool pools accepted sockets", async () => {
    const a = node()
    const b = node()
    await Promise.all([a.ready(), b.ready()])
    const serverPool = a.pool()
    const pooled: Array<Any> = []
    serverPool.on("connection", (s: Any) => pooled.push(s))
    const server = a.createServer({ pool: serverPool })
    server.on("connection", (s: Any) => s.on("error", () => {}))
    await server.listen()
    const pool = b.pool()
    const s1 = b.connect(server.publicKey!, { pool })
    const s2 = b.connect(server.publicKey!, { pool })
    expect(s2).toBe(s1)
    expect(pool.has(server.publicKey!)).toBe(true)
    expect((await withTimeout(outcome(s1), 15_000, "pooled connect")).open).toBe(true)
    await withTimeout(
      (async () => {
        while (pooled.length === 0) await new Promise((r) => setTimeout(r, 20))
      })(),
      5_000,
      "server pooled"
    )
    expect(serverPool.has(b.defaultKeyPair.publicKey)).toBe(true)
    expect([...pool.connections].length).toBe(1)
    s1.destroy()
    await new Promise((r) => s1.once("close", r))
    expect(pool.has(server.publicKey!)).toBe(false)
  }, 60_000)

  it("two peers dialling each other at once through pools keep exactly one connection (DUPLICATE_CONNECTION for the other)", async () => {
    const a = node()
    const b = node()
    await Promise.all([a.ready(), b.ready()])
    const pa = a.pool()
    const pb = b.pool()
    const sa = a.createServer({ pool: pa })
    const sb = b.createServer({ pool: pb })
    for (const s of [sa, sb]) s.on("connection", (x: Any) => x.on("error", () => {}))
    await Promise.all([sa.listen(), sb.listen()])
    const errors: Array<string> = []
    const ca = a.connect(sb.publicKey!, { pool: pa })
    const cb = b.connect(sa.publicKey!, { pool: pb })
    for (const c of [ca, cb]) c.on("error", (e: Any) => errors.push(e.code))
    await withTimeout(
      (async () => {
        for (let i = 0; i < 200; i++) {
          const open = [...pa.connections].length === 1 && [...pb.connections].length === 1
          const ka = pa.get(b.defaultKeyPair.publicKey)
          const kb = pb.get(a.defaultKeyPair.publicKey)
          if (open && ka !== null && kb !== null && !ka.destroyed && !kb.destroyed && Buffer.from(ka.handshakeHash!).equals(Buffer.from(kb.handshakeHash!))) return
          await new Promise((r) => setTimeout(r, 50))
        }
        throw new Error("no single agreed connection")
      })(),
      15_000,
      "one connection"
    )
    expect(errors.every((c) => c === "DUPLICATE_CONNECTION")).toBe(true)
  }, 60_000)

  it("suspend stops a server answering (dials fail); resume announces it again (dials work)", async () => {
    const a = node()
    const b = node()
    await Promise.all([a.ready(), b.ready()])
    const server = a.createServer((s: Any) => s.on("error", () => {}))
    await server.listen()
    await a.suspend()
    const failed = await withTimeout(outcome(b.connect(server.publicKey!)), 20_000, "dial while suspended")
    expect(failed.open).toBe(false)
    expect(["PEER_NOT_FOUND", "PEER_CONNECTION_FAILED"]).toContain(failed.code)
    const own = await withTimeout(outcome(a.connect(b.defaultKeyPair.publicKey)), 5_000, "dial from a suspended node")
    expect(own.code).toBe("SUSPENDED")
    await a.resume()
    const ok = await withTimeout(outcome(b.connect(server.publicKey!)), 20_000, "dial after resume")
    expect(ok.open).toBe(true)
  }, 90_000)

  it("destroy() closes the node's servers and unannounces them", async () => {
    const a = node()
    const b = node()
    await Promise.all([a.ready(), b.ready()])
    const server = a.createServer()
    await server.listen()
    const pk = server.publicKey!
    let closed = false
    server.on("close", () => (closed = true))
    const count = async (): Promise<number> => {
      let n = 0
      for await (const r of b.findPeer(pk)) if (r.peer) n++
      return n
    }
    expect(await count()).toBeGreaterThan(0)
    await a.destroy()
    expect(closed).toBe(true)
    expect(await withTimeout(count(), 15_000, "findPeer")).toBe(0)
  }, 60_000)

  it("a server hook that throws (a defect) drops that handshake, counted; the node goes on serving", async () => {
    const a = node()
    const b = node()
    await Promise.all([a.ready(), b.ready()])
    const h: Any = await (a as Any).node()
    const keys = Gateway.keyPair()
    const target = Gateway.hash(keys.publicKey)
    const broken = {
      onHandshake: () => {
        throw new Error("a bug in a server")
      },
      onHolepunch: () => {
        throw new Error("a bug in a server")
      }
    }
    await Effect.runPromise(h.run(() => h.hyperdht.router.addServer(target, broken)))
    const failed = await withTimeout(outcome(b.connect(keys.publicKey, { relayAddresses: [{ host: HOST, port: a.address()!.port }] })), 20_000, "dial to a broken server")
    expect(failed.open).toBe(false)
    expect(["PEER_CONNECTION_FAILED", "PEER_NOT_FOUND"]).toContain(failed.code)
    expect(h.hyperdht.router.stats.defects).toBeGreaterThan(0)
    // the node still answers
    const replies = await withTimeout(b.findNode(a.id ?? target).toArray(), 15_000, "findNode after the defect")
    expect(replies.length).toBeGreaterThan(0)
    await Effect.runPromise(h.run(() => h.hyperdht.router.removeServer(target, broken)))
  }, 60_000)

  it("the Effect face: a scoped server and a scoped connection exchange bytes", async () => {
    const a = node()
    const b = node()
    await Promise.all([a.ready(), b.ready()])
    const ha: Any = await (a as Any).node()
    const hb: Any = await (b as Any).node()
    const serverKeys = Gateway.keyPair()
    const program = Effect.scoped(
      Effect.gen(function*() {
        const listening = yield* Connections.listen(ha, serverKeys)
        // the server echoes its first connection's bytes, uppercased
        yield* Effect.forkScoped(
          listening.connections.pipe(
            Stream.take(1),
            Stream.runForEach((conn) =>
              conn.readable.pipe(
                Stream.runForEach((chunk) => conn.write(new TextEncoder().encode(new TextDecoder().decode(chunk).toUpperCase()))),
                Effect.andThen(conn.end)
              )
            )
          )
        )
        const conn = yield* Connections.connect(hb, serverKeys.publicKey, { keyPair: Gateway.keyPair() })
        yield* conn.write(new TextEncoder().encode("hello effect"))
        yield* conn.end
        const back = yield* conn.readable.pipe(Stream.runCollect)
        return { text: new TextDecoder().decode(Buffer.concat([...back])), path: conn.path, hash: conn.handshakeHash }
      })
    )
    const r = await withTimeout(Effect.runPromise(program), 20_000, "effect exchange")
    expect(r.text).toBe("HELLO EFFECT")
    expect(r.hash.length).toBe(64)
  }, 60_000)
})
