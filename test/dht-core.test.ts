import { describe, expect, it } from "vitest"
import { CoreNet, seededRandom } from "./support/core-net.js"
import { toHex } from "../src/protocol/encoding.js"
import { nodeId } from "../src/protocol/dht-rpc.js"
import { noble } from "../src/layers/crypto/noble.js"

const xorCmp = (target: Uint8Array) => (a: Uint8Array, b: Uint8Array) => {
  for (let i = 0; i < 32; i++) {
    const x = a[i]! ^ target[i]!
    const y = b[i]! ^ target[i]!
    if (x !== y) return x - y
  }
  return 0
}

/** A bootstrapper at 10.0.0.1:49737 and `n` nodes at `${subnet}.1..n`:port joining it, all started at time 0. */
const startNetwork = (seed: number, n: number, subnet: string, port: number, opts: Parameters<CoreNet["add"]>[2] = {}) => {
  const net = new CoreNet(seededRandom(seed))
  const boot = net.add("10.0.0.1", 49737, { ephemeral: false, firewalled: false, natSample: { host: "10.0.0.1", port: 49737 }, bootstrap: [] })
  boot.core.start(0)
  const nodes = []
  for (let i = 0; i < n; i++) {
    const node = net.add(`${subnet}.${i + 1}`, port, { ...opts, bootstrap: [{ host: "10.0.0.1", port: 49737 }] })
    node.core.start(0)
    nodes.push(node)
  }
  return { net, boot, nodes }
}

describe("dht node core on a discrete-event network", () => {
  it("forced-persistent nodes bootstrap off a bootstrapper, turn persistent and find the true closest", () => {
    const n = 40
    const { net } = startNetwork(1, n, "10.0.1", 5000, { ephemeral: false })
    net.run(60_000)
    const ready = net.nodes.filter((x) => x.core.bootstrapped).length
    expect(ready).toBe(n + 1)
    const persistent = net.nodes.filter((x) => x.core.id !== null).length
    expect(persistent).toBe(n + 1)
    for (const x of net.nodes) expect(x.core.table.size).toBeGreaterThan(5)
    // lookups: the k closest of a random target equal the brute-force closest
    const all = net.nodes.map((x) => nodeId(noble.blake2b, x.host, x.serverPort)!)
    let exact = 0
    const trials = 20
    for (let t = 0; t < trials; t++) {
      const target = noble.blake2b(Uint8Array.of(t, 1, 2, 3))
      const q = net.nodes[(t * 7) % net.nodes.length]!.core.findNode(target)
      let ended = false
      q.onend = () => {
        ended = true
      }
      q.start()
      net.run(net.now + 30_000)
      expect(ended).toBe(true)
      const got = q.closestReplies.map((r) => toHex(r.from.id!))
      const want = [...all].sort(xorCmp(target)).slice(0, 20).map(toHex)
      // the querying node itself is never in its own result
      const querier = net.nodes[(t * 7) % net.nodes.length]!
      const self = toHex(nodeId(noble.blake2b, querier.host, querier.serverPort)!)
      const wantOthers = [...all].sort(xorCmp(target)).map(toHex).filter((h) => h !== self).slice(0, 20)
      if (JSON.stringify(got) === JSON.stringify(want) || JSON.stringify(got) === JSON.stringify(wantOthers)) exact++
    }
    expect(exact).toBe(trials)
  })

  it("adaptive nodes stay ephemeral before the stable window and turn persistent after it", () => {
    const { net, nodes } = startNetwork(2, 10, "10.0.2", 6000)
    net.run(5 * 60_000)
    expect(nodes.every((x) => x.core.bootstrapped)).toBe(true)
    expect(nodes.every((x) => x.core.ephemeral)).toBe(true)
    // first check after 240 ticks (~20 min) after bootstrap
    net.run(25 * 60_000)
    expect(nodes.every((x) => !x.core.ephemeral)).toBe(true)
    expect(nodes.every((x) => !x.core.firewalled)).toBe(true)
  })
})

describe("idle node timers", () => {
  it("an idle node wakes for its secret rotation and tick, not for every congestion drain; rotation keeps its 10-drain period", () => {
    const { net, nodes } = startNetwork(4, 5, "10.0.3", 7000, { ephemeral: false })
    net.run(60_000)
    expect(nodes.every((x) => x.core.bootstrapped)).toBe(true)
    const x = nodes[0]!
    const tokenOf = () => toHex(x.core.io.token("10.9.9.9", 1))
    let last = tokenOf() // the secrets exist from here on
    let wakes = 0
    const onTimers = x.core.onTimers.bind(x.core)
    x.core.onTimers = (now: number) => {
      wakes++
      onTimers(now)
    }
    const rotations: Array<number> = []
    for (let i = 0; i < 80; i++) {
      net.run(net.now + 750)
      const t = tokenOf()
      if (t !== last) {
        rotations.push(net.now)
        last = t
      }
    }
    // 60 s: the secrets rotate every 10 drains of 750 ms, as they would with a wake-up per drain
    expect(rotations.length).toBe(8)
    for (let i = 1; i < rotations.length; i++) expect(rotations[i]! - rotations[i - 1]!).toBe(7500)
    // 80 drains fell due; the node woke for its ticks, rotations and the drains of its own pings only
    expect(wakes).toBeGreaterThan(0)
    expect(wakes).toBeLessThan(40)
  })
})

describe("routing table closestByDistance", () => {
  it("equals a brute-force XOR sort of the whole table", async () => {
    const { RoutingTable } = await import("../src/actors/routing/table.js")
    const rand = seededRandom(9)
    const bytes = () => Uint8Array.from({ length: 32 }, () => Math.floor(rand() * 256))
    for (let round = 0; round < 50; round++) {
      const table = new RoutingTable<{ id: Uint8Array }>(bytes())
      const n = 1 + Math.floor(rand() * 300)
      for (let i = 0; i < n; i++) {
        const id = bytes()
        // share prefixes with the table id sometimes, to fill deep rows
        if (i % 3 === 0) id.set(table.id.subarray(0, 1 + Math.floor(rand() * 3)))
        table.add({ id })
      }
      const target = rand() < 0.3 ? Uint8Array.from(table.id) : bytes()
      if (rand() < 0.3) target.set(table.id.subarray(0, 2))
      // ids sharing the target's first 4..6 bytes: the uint32 sort key ties
      for (let i = 0; i < 8; i++) {
        const id = bytes()
        id.set(target.subarray(0, 4 + Math.floor(rand() * 3)))
        table.add({ id })
      }
      const all = table.toArray().map((x) => x.id).sort(xorCmp(target))
      for (const k of [1, 5, 20, 400]) {
        expect(table.closestByDistance(target, k).map((x) => toHex(x.id))).toEqual(all.slice(0, k).map(toHex))
      }
    }
  })
})

describe("endpointKey", () => {
  it("is ipv4 * 65536 + port for a strict dotted quad and a uint16, -1 exactly where parseIPv4/nodeId refuse", async () => {
    const { endpointKey, parseIPv4 } = await import("../src/protocol/encoding.js")
    const rand = seededRandom(21)
    const int = (n: number) => Math.floor(rand() * n)
    for (let i = 0; i < 2000; i++) {
      const octets = [int(256), int(256), int(256), int(256)]
      const port = int(65536)
      expect(endpointKey(octets.join("."), port)).toBe((((octets[0]! * 256 + octets[1]!) * 256 + octets[2]!) * 256 + octets[3]!) * 65536 + port)
    }
    const hosts = ["1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "0001.2.3.4", "1.2.3.4 ", " 1.2.3.4", "1..3.4", "1.2.3.", "a.b.c.d", "", "255.255.255.255", "0.0.0.0", "1.2.3.-4", "1.2.3.4\n"]
    for (const h of hosts) {
      expect(endpointKey(h, 1) >= 0, h).toBe(parseIPv4(h) !== null)
    }
    for (const p of [-1, 65536, 1.5, NaN, Infinity]) expect(endpointKey("1.2.3.4", p)).toBe(-1)
    expect(endpointKey("255.255.255.255", 65535)).toBe(2 ** 48 - 1)
  })
})

describe("Ipv4Endpoint (the DHT codec's interned addresses)", () => {
  it("is one frozen object per address that equals, encodes and derives ids as a plain { host, port }", async () => {
    const { Ipv4Endpoint, ipv4Endpoint, internIpv4Endpoint, Reader, Writer, endpointKey } = await import("../src/protocol/encoding.js")
    const { makeNodeIdCache, decodeMessage, encodeResponse } = await import("../src/protocol/dht-rpc.js")
    const rand = seededRandom(22)
    const int = (n: number) => Math.floor(rand() * n)
    const ids = makeNodeIdCache(noble.blake2b)
    for (let i = 0; i < 500; i++) {
      const host = [int(256), int(256), int(256), int(256)].join(".")
      const port = int(65536)
      const e = ipv4Endpoint(host, port)!
      expect(e).toBe(ipv4Endpoint(host, port))
      expect(e).toEqual({ host, port })
      expect(JSON.parse(JSON.stringify(e))).toEqual({ host, port })
      expect({ ...e }).toEqual({ host, port })
      expect(Object.isFrozen(e)).toBe(true)
      expect(Ipv4Endpoint.keyOf(e)).toBe(endpointKey(host, port))
      // the memoized id is nodeId's, every time
      expect(toHex(ids.of(e))).toBe(toHex(nodeId(noble.blake2b, host, port)!))
      expect(ids.of(e)).toBe(ids.of(e))
      expect(toHex(ids(host, port)!)).toBe(toHex(nodeId(noble.blake2b, host, port)!))
      // encodes as the plain address does; decodes to the same object
      const w1 = new Writer()
      const w2 = new Writer()
      w1.ipv4Address(e)
      w2.ipv4Address({ host, port })
      expect(toHex(w1.finish())).toBe(toHex(w2.finish()))
      expect(new Reader(w1.finish()).ipv4Endpoint()).toBe(e)
    }
    for (const [h, p] of [["1.2.3", 1], ["1.2.3.4", 65536], ["1.2.3.4", -1], ["1.2.3.4", 1.5], ["1.2.3.4.5", 1]] as const) {
      expect(ipv4Endpoint(h, p)).toBe(null)
      expect(ids(h, p)).toBe(null)
    }
    // many ports behind one ip: the first few are interned, the rest are still correct addresses
    const many = Array.from({ length: 20 }, (_, i) => internIpv4Endpoint(0x0a000001, 1000 + i))
    expect(many.every((e, i) => e.host === "10.0.0.1" && e.port === 1000 + i)).toBe(true)
    expect(internIpv4Endpoint(0x0a000001, 1000)).toBe(many[0])
    // a decoded reply names interned endpoints
    const bytes = encodeResponse({ tid: 7, to: { host: "1.2.3.4", port: 5 }, id: null, token: null, closerNodes: [{ host: "9.8.7.6", port: 5 }, { host: "1.2.3.4", port: 5 }], error: 0, value: null })
    const m = decodeMessage((bytes as { success: Uint8Array }).success)
    const res = (m as { success: { _tag: "Response"; response: { to: unknown; closerNodes: ReadonlyArray<unknown> } } }).success.response
    expect(res.to).toBe(ipv4Endpoint("1.2.3.4", 5))
    expect(res.closerNodes[0]).toBe(ipv4Endpoint("9.8.7.6", 5))
    expect(res.closerNodes[1]).toBe(res.to)
  })
})

describe("NodeList (the table's time order)", () => {
  it("matches an insertion-ordered model under random push/touch/remove", async () => {
    const { NodeList } = await import("../src/actors/routing/node.js")
    const { ipv4Endpoint } = await import("../src/protocol/encoding.js")
    type N = import("../src/actors/routing/node.js").TableNode
    const rnd = seededRandom(11)
    const make = (i: number): N => ({ id: new Uint8Array([i]), host: "10.0.0.1", port: i, ep: ipv4Endpoint("10.0.0.1", i)!, to: null, added: 0, pinged: 0, seen: 0, sampled: 0, downHints: 0, prev: null, next: null })
    const pool = Array.from({ length: 12 }, (_, i) => make(i))
    const list = new NodeList()
    const model = new Map<N, true>()
    for (let step = 0; step < 5000; step++) {
      const n = pool[Math.floor(rnd() * pool.length)]!
      const op = rnd()
      if (op < 0.4) {
        if (!list.has(n)) list.push(n)
        if (!model.has(n)) model.set(n, true)
      } else if (op < 0.7) {
        if (list.has(n)) list.touch(n)
        if (model.has(n)) {
          model.delete(n)
          model.set(n, true)
        }
      } else {
        list.remove(n)
        model.delete(n)
      }
      expect(list.size).toBe(model.size)
      for (const m of pool) expect(list.has(m)).toBe(model.has(m))
      const order: Array<N> = []
      for (let x = list.head; x !== null; x = x.next) order.push(x)
      expect(order).toEqual([...model.keys()])
      expect(list.latestFirst()).toEqual([...model.keys()].reverse())
    }
  })
})

describe("node secrets", () => {
  it("the table id and token secrets come from the crypto service's CSPRNG unless a seeded source is given", async () => {
    const { DhtNode } = await import("../src/actors/routing/node.js")
    // a constant `random`: anything derived from it would be equal across nodes
    const make = (extra: { randomBytes?: (n: number) => Uint8Array } = {}) =>
      new DhtNode({ crypto: noble, random: () => 0, serverPort: 1, transmit: () => {}, ...extra }, 0)
    const a = make()
    const b = make()
    expect(toHex(a.table.id)).not.toEqual(toHex(b.table.id))
    expect(toHex(a.io.token("10.0.0.9", 1))).not.toEqual(toHex(b.io.token("10.0.0.9", 1)))
    // a seeded source (simulations) gives the same id and tokens twice
    const seeded = () => make({ randomBytes: (n) => new Uint8Array(n).fill(7) })
    const c = seeded()
    const d = seeded()
    expect(toHex(c.table.id)).toEqual(toHex(d.table.id))
    expect(toHex(c.io.token("10.0.0.9", 1))).toEqual(toHex(d.io.token("10.0.0.9", 1)))
  })
})

describe("default commit step", () => {
  it("fails with typed errors: NoToken for a reply without a token, NODE_DESTROYED on a destroyed node", async () => {
    const { DhtNode } = await import("../src/actors/routing/node.js")
    const { NoToken } = await import("../src/actors/routing/query.js")
    const { RequestError } = await import("../src/actors/routing/rpc.js")
    const node = new DhtNode({ crypto: noble, random: () => 0.5, serverPort: 1, transmit: () => {} }, 0)
    const q = node.query({ target: new Uint8Array(32), command: 9, value: null })
    const reply = (token: Uint8Array | null) =>
      ({ token, from: { host: "10.0.0.2", port: 2000, id: null } }) as unknown as Parameters<typeof node.commit>[0]
    const errors: Array<unknown> = []
    node.commit(reply(null), q, (err) => errors.push(err))
    expect(errors[0]).toBeInstanceOf(NoToken)
    expect((errors[0] as InstanceType<typeof NoToken>).to).toEqual({ host: "10.0.0.2", port: 2000 })
    expect(String(errors[0])).toContain("No token received for closest node")
    node.destroy()
    node.commit(reply(new Uint8Array(32)), q, (err) => errors.push(err))
    expect(errors[1]).toBeInstanceOf(RequestError)
    expect((errors[1] as InstanceType<typeof RequestError>).code).toBe("NODE_DESTROYED")
  })
})
