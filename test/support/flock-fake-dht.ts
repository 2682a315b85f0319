/**
 * An in-memory DHT for Flock tests: the hyperdht contract of flock.md §2
 * (`dht-contract.ts`) over plain maps, with no sockets and no timers.
 * Announcements live in one `FakeDhtNetwork` shared by every node; a dial
 * finds the server by key, runs its firewall, and joins two in-process
 * Duplex streams. Everything asynchronous happens on `setImmediate`, so a
 * test on TestClock drives the Flock's timers while Node's event loop
 * carries the "network". Deterministic: no randomness, no wall clock.
 *
 * As on a real DHT, a query reads the records when it reaches the nodes
 * (its first tick) and an announce's own record is stored only when the
 * query ends (the commit after the last reply): peers that announce in the
 * same tick do not see each other's records in those queries.
 *
 * Failure knobs: `network.unreachable` (keys whose dials fail with
 * `dialError`), `network.dialError`, `network.queryFails` (queries end with
 * an error), `node.kill()` (the node vanishes: its sockets close, its
 * records stay until they are unannounced, as on a real DHT).
 */
import { EventEmitter } from "node:events"
import { Duplex } from "node:stream"
import type {
  ClosestNodes,
  FlockAddress,
  FlockDht,
  FlockKeyPair,
  FlockQuery,
  FlockQueryReply,
  FlockServer,
  FlockServerOptions,
  FlockSocket
} from "../../src/actors/flock/dht-contract.js"

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex")

export class FakeSocket extends Duplex implements FlockSocket {
  peer: FakeSocket | null = null
  rawBytesRead = 0
  rawBytesWritten = 0
  keepAlives = 0
  opened = false
  readonly path = "direct"

  constructor(readonly publicKey: Uint8Array, public remotePublicKey: Uint8Array | null, readonly isInitiator: boolean) {
    super({ allowHalfOpen: false })
  }

  sendKeepAlive(): void {
    this.keepAlives++
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const peer = this.peer
    if (peer === null || peer.destroyed) return cb(new Error("peer gone"))
    this.rawBytesWritten += chunk.length
    setImmediate(() => {
      if (peer.destroyed) return
      peer.rawBytesRead += chunk.length
      peer.push(chunk)
    })
    cb()
  }

  override _final(cb: (err?: Error | null) => void): void {
    const peer = this.peer
    setImmediate(() => {
      if (peer !== null && !peer.destroyed) peer.push(null)
    })
    cb()
  }

  override _read(): void {}

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    const peer = this.peer
    this.peer = null
    if (peer !== null) setImmediate(() => peer.destroy())
    cb(err)
  }
}

interface Record {
  readonly publicKey: Uint8Array
  readonly relayAddresses: ReadonlyArray<FlockAddress>
}

export class FakeDhtNetwork {
  /** topic hex → key hex → record */
  readonly records = new Map<string, Map<string, Record>>()
  readonly servers = new Map<string, FakeServer>()
  readonly unreachable = new Set<string>()
  dialError = "PEER_NOT_FOUND"
  queryFails = false
  dials = 0
  readonly nodes: Array<FakeDht> = []

  node(): FakeDht {
    const n = new FakeDht(this)
    this.nodes.push(n)
    return n
  }

  /** Keys announced under `topic`. */
  announced(topic: Uint8Array): Array<string> {
    return [...(this.records.get(hex(topic))?.keys() ?? [])]
  }
}

class FakeServer implements FlockServer {
  keyHex: string | null = null
  closed = false
  suspended = false
  firewallCalls = 0

  constructor(readonly node: FakeDht, readonly opts: FlockServerOptions, readonly onconnection: (s: FlockSocket) => void) {}

  get relayAddresses(): ReadonlyArray<FlockAddress> {
    return this.keyHex === null ? [] : [{ host: "10.0.0.1", port: 49737 }]
  }

  async listen(keyPair: FlockKeyPair): Promise<void> {
    await tick()
    this.keyHex = hex(keyPair.publicKey)
    this.node.network.servers.set(this.keyHex, this)
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.keyHex !== null && this.node.network.servers.get(this.keyHex) === this) this.node.network.servers.delete(this.keyHex)
  }

  suspend(): void {
    this.suspended = true
  }

  resume(): void {
    this.suspended = false
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

class FakeQuery implements FlockQuery {
  closestNodes: ClosestNodes | null = null
  private stopped = false

  constructor(
    private readonly run: () => Array<FlockQueryReply>,
    private readonly failing: boolean,
    /** The announce's commit: runs when the query ends (not when it is destroyed first). */
    private readonly commit: (() => void) | null = null
  ) {}

  destroy(): void {
    this.stopped = true
  }

  async *[Symbol.asyncIterator](): AsyncIterator<FlockQueryReply> {
    await tick()
    if (this.stopped) return
    if (this.failing) throw new Error("Too few nodes responded")
    const replies = this.run()
    for (const r of replies) {
      await tick()
      if (this.stopped) return
      yield r
    }
    if (this.commit !== null) {
      await tick()
      if (this.stopped) return
      this.commit()
    }
    this.closestNodes = [{ host: "10.0.0.1", port: 49737, id: new Uint8Array(32).fill(1) }]
  }
}

export class FakeDht extends EventEmitter implements FlockDht {
  online = true
  randomized = false
  destroyed = false
  suspendedNode = false
  readonly sockets = new Set<FakeSocket>()
  readonly serversMade: Array<FakeServer> = []
  readonly queries: Array<{ kind: string; topic: string }> = []

  constructor(readonly network: FakeDhtNetwork) {
    super()
  }

  connect(publicKey: Uint8Array, opts: { readonly keyPair: FlockKeyPair; readonly relayThrough?: Uint8Array | null | undefined }): FlockSocket {
    const client = new FakeSocket(opts.keyPair.publicKey, publicKey, true)
    this.track(client)
    this.network.dials++
    const key = hex(publicKey)
    void (async () => {
      await tick()
      if (client.destroyed) return
      const server = this.network.servers.get(key)
      const fail = (code: string) => {
        const err = Object.assign(new Error(code), { code })
        client.destroy(err)
      }
      if (this.destroyed || this.suspendedNode) return fail("SUSPENDED")
      if (this.network.unreachable.has(key)) return fail(this.network.dialError)
      if (server === undefined || server.closed || server.node.destroyed || server.node.suspendedNode || server.suspended) return fail("PEER_NOT_FOUND")
      server.firewallCalls++
      const rejected = await server.opts.firewall(opts.keyPair.publicKey, null, { host: "10.0.0.2", port: 1 })
      if (client.destroyed) return
      if (rejected) return fail("PEER_CONNECTION_FAILED")
      const inbound = new FakeSocket(publicKey, opts.keyPair.publicKey, false)
      server.node.track(inbound)
      client.peer = inbound
      inbound.peer = client
      server.onconnection(inbound)
      await tick()
      if (client.destroyed || inbound.destroyed) return
      client.opened = inbound.opened = true
      client.emit("open")
      inbound.emit("open")
    })()
    return client
  }

  track(s: FakeSocket): void {
    this.sockets.add(s)
    s.once("close", () => this.sockets.delete(s))
  }

  createServer(opts: FlockServerOptions, onconnection: (socket: FlockSocket) => void): FlockServer {
    const s = new FakeServer(this, opts, onconnection)
    this.serversMade.push(s)
    return s
  }

  private peersOf(topic: Uint8Array, skip: Uint8Array | null): Array<FlockQueryReply> {
    const recs = [...(this.network.records.get(hex(topic))?.values() ?? [])].filter((r) => skip === null || hex(r.publicKey) !== hex(skip))
    return recs.length === 0 ? [{ peers: [] }] : recs.map((r) => ({ peers: [{ publicKey: r.publicKey, relayAddresses: r.relayAddresses }] }))
  }

  announce(topic: Uint8Array, keyPair: FlockKeyPair, relayAddresses: ReadonlyArray<FlockAddress>): FlockQuery {
    this.queries.push({ kind: "announce", topic: hex(topic) })
    const record = { publicKey: Uint8Array.from(keyPair.publicKey), relayAddresses }
    return new FakeQuery(
      () => this.peersOf(topic, null),
      this.network.queryFails,
      () => {
        const t = hex(topic)
        if (!this.network.records.has(t)) this.network.records.set(t, new Map())
        this.network.records.get(t)!.set(hex(keyPair.publicKey), record)
      }
    )
  }

  lookup(topic: Uint8Array): FlockQuery {
    this.queries.push({ kind: "lookup", topic: hex(topic) })
    return new FakeQuery(() => this.peersOf(topic, null), this.network.queryFails)
  }

  lookupAndUnannounce(topic: Uint8Array, keyPair: FlockKeyPair): FlockQuery {
    this.queries.push({ kind: "lookupAndUnannounce", topic: hex(topic) })
    return new FakeQuery(() => {
      this.network.records.get(hex(topic))?.delete(hex(keyPair.publicKey))
      return this.peersOf(topic, null)
    }, this.network.queryFails)
  }

  async unannounce(topic: Uint8Array, keyPair: FlockKeyPair): Promise<void> {
    this.queries.push({ kind: "unannounce", topic: hex(topic) })
    await tick()
    this.network.records.get(hex(topic))?.delete(hex(keyPair.publicKey))
  }

  suspend(): void {
    this.suspendedNode = true
  }

  resume(): void {
    this.suspendedNode = false
  }

  /** The node disappears: sockets close, servers stop answering. */
  kill(): void {
    this.destroyed = true
    for (const s of [...this.sockets]) s.destroy()
    for (const s of this.serversMade) void s.close()
  }

  async destroy(): Promise<void> {
    this.kill()
  }
}
