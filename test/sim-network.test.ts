import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import type { Datagram, Endpoint, UdpSocket } from "../src/layers/Transport.js"
import { Transport } from "../src/layers/Transport.js"
import { SimNetwork, type SimNetworkOptions, type SimNetworkService } from "../src/layers/transport/sim.js"

const bytes = (...xs: Array<number>) => new Uint8Array(xs)
const u32 = (n: number) => {
  const b = new Uint8Array(4)
  new DataView(b.buffer).setUint32(0, n)
  return b
}
const readU32 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0)
const empty: ReadonlyArray<Datagram> = []

/** Everything already in the socket's inbox, without waiting. */
const poll = (s: UdpSocket) => Effect.raceFirst(s.receive, Effect.succeed(empty))

/** Record every datagram a socket receives (with the virtual time) until the test's scope closes. */
const collect = (s: UdpSocket, log: Array<{ at: number; d: Datagram }>, now: () => number) =>
  Effect.forkScoped(
    Effect.forever(
      Effect.flatMap(s.receive, (batch) =>
        Effect.sync(() => {
          for (const d of batch) log.push({ at: now(), d })
        })
      )
    ),
    { startImmediately: true }
  )

const checkInvariant = (net: SimNetworkService) => {
  const s = net.stats()
  assert.strictEqual(s.sent + s.duplicated, s.delivered + s.droppedTotal + s.inFlight, JSON.stringify(s))
}

const network = (options: SimNetworkOptions = {}) => SimNetwork.make({ latency: 20, ...options })

describe("SimNetwork: timing and link model", () => {
  it.effect("latency is respected exactly (TestClock)", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const a = yield* (yield* net.addHost({ ip: "20.0.0.1" })).bind({ port: 1000 })
      const b = yield* (yield* net.addHost({ ip: "20.0.0.2" })).bind({ port: 2000 })
      a.send(b.local, bytes(1, 2, 3))
      assert.strictEqual(net.stats().inFlight, 1)
      yield* TestClock.adjust("19 millis")
      assert.strictEqual(b.stats().received, 0)
      assert.deepStrictEqual(yield* poll(b), [])
      yield* TestClock.adjust("1 millis")
      const got = yield* poll(b)
      assert.strictEqual(got.length, 1)
      assert.deepStrictEqual(Array.from(got[0]!.data), [1, 2, 3])
      assert.deepStrictEqual(got[0]!.from, { host: "20.0.0.1", port: 1000 })
      // a reply sent at t=20 arrives at t=40
      b.send(got[0]!.from, bytes(9))
      yield* TestClock.adjust("19 millis")
      assert.strictEqual(a.stats().received, 0)
      yield* TestClock.adjust("1 millis")
      assert.strictEqual((yield* poll(a)).length, 1)
      // an earlier deadline (lower per-host latency) preempts a later one
      const c = yield* (yield* net.addHost({ ip: "20.0.0.3", latency: 2 })).bind({ port: 3000 })
      a.send(b.local, bytes(1)) // due in 20
      c.send(b.local, bytes(2)) // due in (2 + 20) / 2 = 11
      yield* TestClock.adjust("10 millis")
      assert.strictEqual((yield* poll(b)).length, 0)
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual((yield* poll(b)).map((d) => d.data[0]), [2])
      yield* TestClock.adjust("9 millis")
      assert.deepStrictEqual((yield* poll(b)).map((d) => d.data[0]), [1])
      assert.strictEqual(net.stats().delivered, 4)
      checkInvariant(net)
    }))

  it.effect("zero loss when lossRate = 0; loss and duplication rates are plausible over 10k datagrams", () =>
    Effect.gen(function*() {
      const N = 10_000
      const run = (lossRate: number, duplicateRate: number) =>
        Effect.scoped(Effect.gen(function*() {
          const net = yield* network({ lossRate, duplicateRate, inboxCapacity: 4 * N })
          const a = yield* (yield* net.addHost()).bind()
          const b = yield* (yield* net.addHost()).bind()
          for (let i = 0; i < N; i++) a.send(b.local, u32(i))
          yield* TestClock.adjust("20 millis")
          const got = yield* poll(b)
          checkInvariant(net)
          return { got: got.length, stats: net.stats() }
        }))
      const clean = yield* run(0, 0)
      assert.strictEqual(clean.got, N)
      assert.strictEqual(clean.stats.droppedTotal, 0)

      const lossy = yield* run(0.1, 0)
      // binomial(10000, 0.1): mean 1000, sd 30
      assert.isAbove(lossy.stats.dropped.loss, 850)
      assert.isBelow(lossy.stats.dropped.loss, 1150)
      assert.strictEqual(lossy.got, N - lossy.stats.dropped.loss)

      const dupy = yield* run(0, 0.05)
      // binomial(10000, 0.05): mean 500, sd 22
      assert.isAbove(dupy.stats.duplicated, 390)
      assert.isBelow(dupy.stats.duplicated, 610)
      assert.strictEqual(dupy.got, N + dupy.stats.duplicated)
    }))

  it.effect("jitter spreads delays uniformly over [latency, latency + jitter] and reorders", () =>
    Effect.gen(function*() {
      const N = 10_000
      const net = yield* network({ latency: 20, jitter: 10, inboxCapacity: 2 * N })
      const a = yield* (yield* net.addHost()).bind()
      const b = yield* (yield* net.addHost()).bind()
      const log: Array<{ at: number; d: Datagram }> = []
      const clock = yield* TestClock.testClockWith(Effect.succeed)
      yield* collect(b, log, () => clock.currentTimeMillisUnsafe())
      const t0 = clock.currentTimeMillisUnsafe()
      for (let i = 0; i < N; i++) a.send(b.local, u32(i))
      yield* TestClock.adjust("19 millis")
      assert.strictEqual(log.length, 0)
      yield* TestClock.adjust("12 millis")
      assert.strictEqual(log.length, N)
      let sum = 0
      let min = Infinity
      let max = -Infinity
      for (const { at } of log) {
        const d = at - t0
        sum += d
        if (d < min) min = d
        if (d > max) max = d
      }
      assert.isAtLeast(min, 20)
      assert.isAtMost(max, 30)
      // uniform jitter in [0,10) delivered at whole ms (ceil): mean ~ 20 + 5 + 0.5
      assert.approximately(sum / N, 25.5, 0.3)
      let inversions = 0
      for (let i = 1; i < log.length; i++) if (readU32(log[i]!.d.data) < readU32(log[i - 1]!.d.data)) inversions++
      assert.isAbove(inversions, N / 10)
      // no jitter: FIFO
      const c = yield* (yield* net.addHost({ jitter: 0 })).bind()
      const d = yield* (yield* net.addHost({ jitter: 0 })).bind()
      for (let i = 0; i < 100; i++) c.send(d.local, u32(i))
      yield* TestClock.adjust("20 millis")
      assert.deepStrictEqual((yield* poll(d)).map((x) => readU32(x.data)), Array.from({ length: 100 }, (_, i) => i))
    }))

  it.effect("same seed => identical delivery trace; different seed => different", () =>
    Effect.gen(function*() {
      const scenario = (seed: number | string) =>
        Effect.scoped(Effect.gen(function*() {
          const net = yield* network({ seed, latency: 15, jitter: 30, lossRate: 0.1, duplicateRate: 0.1 })
          const clock = yield* TestClock.testClockWith(Effect.succeed)
          const t0 = clock.currentTimeMillisUnsafe()
          const trace: Array<string> = []
          const sockets: Array<UdpSocket> = []
          for (let i = 0; i < 20; i++) {
            const host = yield* net.addHost({ nat: i % 3 === 0 ? "consistent" : "open" })
            const s = yield* host.bind()
            sockets.push(s)
            // echo once per datagram that starts with 1 (keeps traffic going both ways)
            yield* Effect.forkScoped(
              Effect.forever(Effect.flatMap(s.receive, (batch) =>
                Effect.sync(() => {
                  for (const d of batch) {
                    trace.push(`${clock.currentTimeMillisUnsafe() - t0} ${host.ip} <- ${d.from.host}:${d.from.port} ${Array.from(d.data).join(",")}`)
                    if (d.data[0] === 1) s.send(d.from, bytes(2, ...d.data.subarray(1)))
                  }
                }))),
              { startImmediately: true }
            )
          }
          // public hosts only as destinations (NATed ones would filter unsolicited traffic)
          const publicIdx = Array.from({ length: 20 }, (_, i) => i).filter((i) => i % 3 !== 0)
          for (let round = 0; round < 5; round++) {
            for (let i = 0; i < 20; i++) {
              const to = publicIdx[(i * 7 + round * 11) % publicIdx.length]!
              if (to !== i) sockets[i]!.send(sockets[to]!.local, bytes(1, i, round))
            }
            yield* TestClock.adjust("10 millis")
          }
          yield* TestClock.adjust("200 millis")
          return { trace, stats: net.stats() }
        }))
      const a = yield* scenario(1)
      const b = yield* scenario(1)
      const c = yield* scenario(2)
      assert.isAbove(a.trace.length, 100)
      assert.deepStrictEqual(a, b)
      assert.notDeepEqual(a.trace, c.trace)
    }))
})

describe("SimNetwork: partitions and churn", () => {
  it.effect("partition blocks traffic between groups; heal restores it", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const [a, b, c] = yield* Effect.all([1, 2, 3].map((i) => Effect.flatMap(net.addHost({ ip: `20.0.0.${i}` }), (h) => h.bind({ port: 5000 }))))
      yield* net.partition([["20.0.0.1"], ["20.0.0.2", "20.0.0.3"]])
      a!.send(b!.local, bytes(1))
      b!.send(c!.local, bytes(2))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(b!)).length, 0)
      assert.strictEqual((yield* poll(c!)).length, 1)
      assert.strictEqual(net.stats().dropped.partition, 1)
      yield* net.heal()
      a!.send(b!.local, bytes(3))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(b!)).length, 1)
      // unlisted hosts form their own group
      yield* net.partition([["20.0.0.1", "20.0.0.2"]])
      c!.send(a!.local, bytes(4))
      a!.send(b!.local, bytes(5))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(a!)).length, 0)
      assert.strictEqual((yield* poll(b!)).length, 1)
      checkInvariant(net)
    }))

  it.effect("a killed host neither sends nor receives; revive restores it", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const a = yield* (yield* net.addHost({ ip: "20.0.0.1" })).bind()
      const b = yield* (yield* net.addHost({ ip: "20.0.0.2" })).bind()
      yield* net.kill("20.0.0.2")
      a.send(b.local, bytes(1))
      b.send(a.local, bytes(2))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(a)).length, 0)
      assert.strictEqual((yield* poll(b)).length, 0)
      assert.strictEqual(net.stats().dropped.dead, 2)
      yield* net.revive("20.0.0.2")
      a.send(b.local, bytes(1))
      b.send(a.local, bytes(2))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(a)).length, 1)
      assert.strictEqual((yield* poll(b)).length, 1)
      // killed while in flight: dropped on arrival
      a.send(b.local, bytes(3))
      yield* TestClock.adjust("10 millis")
      yield* net.kill("20.0.0.2")
      yield* TestClock.adjust("10 millis")
      assert.strictEqual((yield* poll(b)).length, 0)
      assert.strictEqual(net.stats().dropped.dead, 3)
      // setLossRate applies network-wide
      yield* net.revive("20.0.0.2")
      yield* net.setLossRate(1)
      a.send(b.local, bytes(4))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(net.stats().dropped.loss, 1)
      checkInvariant(net)
    }))
})

describe("SimNetwork: NAT models", () => {
  it.effect("open accepts unsolicited datagrams", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const o = yield* net.addHost({ nat: "open" })
      assert.strictEqual(o.publicIp, o.ip)
      const so = yield* o.bind()
      const x = yield* (yield* net.addHost()).bind()
      x.send(so.local, bytes(1))
      yield* TestClock.adjust("20 millis")
      const got = yield* poll(so)
      assert.deepStrictEqual(got.map((d) => d.from), [x.local])
    }))

  it.effect("firewalled: rejects unsolicited, accepts replies from endpoints it sent to (port-dependent)", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const f = yield* net.addHost({ nat: "firewalled" })
      assert.strictEqual(f.publicIp, f.ip)
      const sf = yield* f.bind()
      const peer = yield* net.addHost()
      const x = yield* peer.bind()
      const x2 = yield* peer.bind() // same ip, different port
      x.send(sf.local, bytes(1))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(sf)).length, 0)
      assert.strictEqual(net.stats().dropped.firewall, 1)
      sf.send(x.local, bytes(2))
      yield* TestClock.adjust("20 millis")
      const [seen] = yield* poll(x)
      assert.deepStrictEqual(seen!.from, sf.local) // no translation
      x.send(seen!.from, bytes(3))
      x2.send(sf.local, bytes(4))
      yield* TestClock.adjust("20 millis")
      assert.deepStrictEqual((yield* poll(sf)).map((d) => d.data[0]), [3])
      assert.strictEqual(net.stats().dropped.firewall, 2)
    }))

  it.effect("consistent: same public port toward every destination, filtered per endpoint", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const n = yield* net.addHost({ nat: "consistent" })
      assert.notStrictEqual(n.publicIp, n.ip)
      const sn = yield* n.bind()
      const a = yield* (yield* net.addHost()).bind()
      const b = yield* (yield* net.addHost()).bind()
      const c = yield* (yield* net.addHost()).bind()
      // unsolicited: nothing is mapped yet
      a.send({ host: n.publicIp, port: sn.local.port }, bytes(0))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(net.stats().dropped.firewall, 1)
      sn.send(a.local, bytes(1))
      sn.send(b.local, bytes(1))
      yield* TestClock.adjust("20 millis")
      const [fromA] = yield* poll(a)
      const [fromB] = yield* poll(b)
      assert.strictEqual(fromA!.from.host, n.publicIp)
      assert.deepStrictEqual(fromA!.from, fromB!.from)
      const mapped = fromA!.from
      a.send(mapped, bytes(2))
      b.send(mapped, bytes(3))
      c.send(mapped, bytes(4)) // never contacted: filtered
      yield* TestClock.adjust("20 millis")
      const got = yield* poll(sn)
      assert.deepStrictEqual(got.map((d) => d.data[0]).sort(), [2, 3])
      assert.deepStrictEqual(got.map((d) => d.from.port).sort(), [a.local.port, b.local.port].sort())
      assert.strictEqual(net.stats().dropped.firewall, 2)
    }))

  it.effect("random (symmetric): a different public port per destination, inbound only from it", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const r = yield* net.addHost({ nat: "random" })
      const sr = yield* r.bind()
      const a = yield* (yield* net.addHost()).bind()
      const b = yield* (yield* net.addHost()).bind()
      sr.send(a.local, bytes(1))
      sr.send(b.local, bytes(1))
      sr.send(a.local, bytes(1)) // same destination again: same mapping
      yield* TestClock.adjust("20 millis")
      const toA = yield* poll(a)
      const [toB] = yield* poll(b)
      assert.strictEqual(toA.length, 2)
      assert.deepStrictEqual(toA[0]!.from, toA[1]!.from)
      assert.strictEqual(toA[0]!.from.host, r.publicIp)
      assert.strictEqual(toB!.from.host, r.publicIp)
      assert.notStrictEqual(toA[0]!.from.port, toB!.from.port)
      a.send(toA[0]!.from, bytes(2)) // accepted
      a.send(toB!.from, bytes(3)) // b's mapping: filtered
      b.send(toB!.from, bytes(4)) // accepted
      yield* TestClock.adjust("20 millis")
      assert.deepStrictEqual((yield* poll(sr)).map((d) => d.data[0]).sort(), [2, 4])
      assert.strictEqual(net.stats().dropped.firewall, 1)
    }))

  it.effect("mappings and firewall state expire after the idle timeout of outbound traffic", () =>
    Effect.gen(function*() {
      const net = yield* network({ mappingTimeout: 30_000 })
      const n = yield* (yield* net.addHost({ nat: "consistent" })).bind()
      const f = yield* (yield* net.addHost({ nat: "firewalled" })).bind()
      const a = yield* (yield* net.addHost()).bind()
      n.send(a.local, bytes(1))
      f.send(a.local, bytes(1))
      yield* TestClock.adjust("20 millis")
      const [m1, m2] = yield* poll(a)
      const nPublic = m1!.from.host === f.local.host ? m2!.from : m1!.from
      // 25 s later: refresh n only
      yield* TestClock.adjust("25 seconds")
      n.send(a.local, bytes(2))
      yield* TestClock.adjust("20 millis")
      yield* poll(a)
      // at ~35 s: n (idle 10 s) accepts, f (idle 35 s) rejects
      yield* TestClock.adjust("10 seconds")
      a.send(nPublic, bytes(3))
      a.send(f.local, bytes(3))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(n)).length, 1)
      assert.strictEqual((yield* poll(f)).length, 0)
      assert.strictEqual(net.stats().dropped.firewall, 1)
      // 31 s of silence: n's mapping is gone too
      yield* TestClock.adjust("31 seconds")
      a.send(nPublic, bytes(4))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(n)).length, 0)
      assert.strictEqual(net.stats().dropped.firewall, 2)
    }))

  it.effect("a TTL-5 datagram opens the mapping but is not delivered", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const n = yield* (yield* net.addHost({ nat: "consistent" })).bind()
      const a = yield* (yield* net.addHost()).bind()
      const b = yield* (yield* net.addHost()).bind()
      n.send(b.local, bytes(0)) // learn the public mapping
      yield* TestClock.adjust("20 millis")
      const mapped = (yield* poll(b))[0]!.from
      a.send(mapped, bytes(1)) // not yet allowed
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(n)).length, 0)
      n.send(a.local, bytes(2), 5)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(a)).length, 0)
      assert.strictEqual(net.stats().dropped.ttl, 1)
      a.send(mapped, bytes(3))
      yield* TestClock.adjust("20 millis")
      assert.deepStrictEqual((yield* poll(n)).map((d) => d.data[0]), [3])
      // same for a firewalled host
      const f = yield* (yield* net.addHost({ nat: "firewalled" })).bind()
      f.send(a.local, bytes(4), 5)
      a.send(f.local, bytes(5))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(a)).length, 0)
      assert.deepStrictEqual((yield* poll(f)).map((d) => d.data[0]), [5])
    }))

  it.effect("simultaneous open through two consistent NATs succeeds; consistent vs random does not", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const server = yield* (yield* net.addHost()).bind()
      const punch = (kindB: "consistent" | "random") =>
        Effect.gen(function*() {
          const a = yield* (yield* net.addHost({ nat: "consistent" })).bind()
          const b = yield* (yield* net.addHost({ nat: kindB })).bind()
          // both register with a public rendezvous server, which learns their public endpoints
          a.send(server.local, bytes(0))
          b.send(server.local, bytes(0))
          yield* TestClock.adjust("20 millis")
          const seen = yield* poll(server)
          const aPub = seen[0]!.from // same send time, no jitter: delivered in send order
          const bPub = seen[1]!.from
          // both punch at the same time: each NAT has sent before the other's datagram arrives
          a.send(bPub, bytes(1))
          b.send(aPub, bytes(2))
          yield* TestClock.adjust("20 millis")
          return { a: (yield* poll(a)).length, b: (yield* poll(b)).length }
        })
      assert.deepStrictEqual(yield* punch("consistent"), { a: 1, b: 1 })
      assert.deepStrictEqual(yield* punch("random"), { a: 0, b: 0 })
    }))

  it.effect("hosts behind the same NAT talk by private IP; outsiders cannot reach private IPs", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const h1 = yield* net.addHost({ nat: "consistent", natGroup: "home" })
      const h2 = yield* net.addHost({ nat: "consistent", natGroup: "home" })
      const h3 = yield* net.addHost({ nat: "consistent", publicIp: h1.publicIp })
      assert.strictEqual(h1.publicIp, h2.publicIp)
      assert.strictEqual(h1.publicIp, h3.publicIp)
      assert.notStrictEqual(h1.ip, h2.ip)
      assert.match(h1.ip, /^10\./)
      assert.deepStrictEqual(h1.localAddresses(), [h1.ip])
      const s1 = yield* h1.bind()
      const s2 = yield* h2.bind()
      s1.send(s2.local, bytes(1))
      yield* TestClock.adjust("20 millis")
      const [d] = yield* poll(s2)
      assert.deepStrictEqual(d!.from, { host: h1.ip, port: s1.local.port }) // no translation
      const out = yield* (yield* net.addHost()).bind()
      out.send(s2.local, bytes(2))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(s2)).length, 0)
      assert.strictEqual(net.stats().dropped.unreachable, 1)
      // a NAT kind mismatch is a defect
      const exit = yield* Effect.exit(Effect.scoped(net.addHost({ nat: "random", natGroup: "home" })))
      assert.isTrue(Exit.hasDies(exit))
    }))
})

describe("SimNetwork: sockets", () => {
  it.effect("deterministic ports, EADDRINUSE, closed sockets drop (no-socket), rebinding", () =>
    Effect.gen(function*() {
      const net = yield* network()
      const h = yield* net.addHost({ ip: "20.1.0.1" })
      const s1 = yield* h.bind()
      const s2 = yield* h.bind({ host: "0.0.0.0" })
      assert.deepStrictEqual([s1.local, s2.local], [{ host: "20.1.0.1", port: 49152 }, { host: "20.1.0.1", port: 49153 }])
      const err = yield* Effect.flip(h.bind({ port: 49152 }))
      assert.strictEqual(err._tag, "BindError")
      assert.strictEqual(err.detail, "EADDRINUSE")
      assert.strictEqual((yield* Effect.flip(h.bind({ host: "1.2.3.4" }))).detail, "EADDRNOTAVAIL")
      const x = yield* (yield* net.addHost()).bind()
      const scope = yield* Scope.make()
      const s3 = yield* Scope.provide(h.bind({ port: 7000 }), scope)
      x.send(s3.local, bytes(1))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(s3)).length, 1)
      yield* Scope.close(scope, Exit.void)
      x.send({ host: "20.1.0.1", port: 7000 }, bytes(2))
      s3.send(x.local, bytes(3)) // closed: dropped locally
      assert.strictEqual(s3.stats().dropped, 1)
      yield* TestClock.adjust("20 millis")
      assert.strictEqual(net.stats().dropped.noSocket, 1)
      const s4 = yield* h.bind({ port: 7000 })
      x.send(s4.local, bytes(4))
      yield* TestClock.adjust("20 millis")
      assert.strictEqual((yield* poll(s4)).length, 1)
      // invalid destinations and oversized datagrams are dropped locally, never thrown
      x.send({ host: "20.1.0.1", port: 0 }, bytes(1))
      x.send({ host: "20.1.0.1", port: 70000 }, bytes(1))
      x.send({ host: "20.1.0.1", port: 7000 }, new Uint8Array(65508))
      assert.strictEqual(x.stats().dropped, 3)
      // network maxDatagramSize
      yield* net.setLink({ maxDatagramSize: 1500 })
      x.send(s4.local, new Uint8Array(1501))
      assert.strictEqual(net.stats().dropped.oversize, 1)
      checkInvariant(net)
    }))

  it.effect("as Layers: protocol code sees only Transport", () =>
    Effect.gen(function*() {
      // Build one network, then one Transport per host on it.
      const netCtx = yield* Layer.build(SimNetwork.layer({ latency: 5 }))
      const hostA = Context.get(yield* Layer.build(Layer.provide(SimNetwork.host({ ip: "20.0.0.10" }), Layer.succeedContext(netCtx))), Transport)
      const hostB = Context.get(yield* Layer.build(Layer.provide(SimNetwork.host({ ip: "20.0.0.11" }), Layer.succeedContext(netCtx))), Transport)
      const echo = Effect.gen(function*() {
        const t = yield* Transport
        const s = yield* t.bind({ port: 7 })
        yield* Effect.forkScoped(Effect.forever(Effect.flatMap(s.receive, (batch) =>
          Effect.sync(() => {
            for (const d of batch) s.send(d.from, d.data)
          }))), { startImmediately: true })
      })
      yield* Effect.provideService(echo, Transport, hostB)
      const client = yield* hostA.bind()
      const to: Endpoint = { host: "20.0.0.11", port: 7 }
      client.send(to, bytes(42))
      const fiber = yield* Effect.forkChild(client.receive, { startImmediately: true })
      yield* TestClock.adjust("10 millis")
      const reply = fiber.pollUnsafe()
      assert.isDefined(reply)
      assert.isTrue(reply !== undefined && Exit.isSuccess(reply) && reply.value[0]!.data[0] === 42)
      assert.strictEqual(Context.get(netCtx, SimNetwork).stats().delivered, 2)
    }))
})

describe("SimNetwork: live clock", () => {
  it.live("also runs on the real clock", () =>
    Effect.gen(function*() {
      const net = yield* network({ latency: 5 })
      const a = yield* (yield* net.addHost()).bind()
      const b = yield* (yield* net.addHost()).bind()
      const t0 = Date.now()
      a.send(b.local, bytes(7))
      const [d] = yield* b.receive.pipe(Effect.timeout("2 seconds"))
      assert.strictEqual(d!.data[0], 7)
      assert.isAtLeast(Date.now() - t0, 4)
    }))
})

describe("SimNetwork: scale", () => {
  it.effect("2,000 hosts x 20 datagrams to random others completes quickly", () =>
    Effect.gen(function*() {
      const t0 = performance.now()
      const H = 2000
      const K = 20
      const net = yield* network({ latency: 20, jitter: 10 })
      const sockets: Array<UdpSocket> = []
      for (let i = 0; i < H; i++) sockets.push(yield* (yield* net.addHost()).bind())
      let received = 0
      for (const s of sockets) {
        yield* Effect.forkScoped(
          Effect.forever(Effect.flatMap(s.receive, (batch) =>
            Effect.sync(() => {
              received += batch.length
            }))),
          { startImmediately: true }
        )
      }
      let x = 12345
      for (let k = 0; k < K; k++) {
        for (let i = 0; i < H; i++) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0
          let to = x % (H - 1)
          if (to >= i) to++
          sockets[i]!.send(sockets[to]!.local, u32(k))
        }
        yield* TestClock.adjust("1 millis")
      }
      yield* TestClock.adjust("100 millis")
      const elapsed = performance.now() - t0
      assert.strictEqual(net.stats().delivered, H * K)
      assert.strictEqual(received, H * K)
      assert.strictEqual(net.stats().inFlight, 0)
      assert.isBelow(elapsed, 10_000)
      console.log(`sim scale: ${H} hosts, ${H * K} datagrams in ${elapsed.toFixed(0)} ms`)
    }), 30_000)
})
