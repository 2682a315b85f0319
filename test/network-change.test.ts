/**
 * A host that changes networks re-samples (issue 18, item 3): on the
 * simulated network, a HyperDHT node on a machine that moves from behind one
 * NAT to another (test/support/movable-host.ts: its sockets keep their
 * ports, its interface addresses change, its traffic leaves from the new
 * network) is told of the change (its interface poll, or
 * `NodeHandle.networkChange()`), and then:
 *
 * - drops its NAT samples and its classification, probes again as at
 *   bootstrap, and settles on the new network's public address and class
 *   (consistent → random, open → consistent, consistent → open);
 * - never takes a reply to a request sent before the change for a sample
 *   (the old interface still up, such replies name the old address): its
 *   address never shows the old network's once the change is signalled;
 * - emits network-change and network-update at once, then nat-update and
 *   network-update once its view settled;
 * - its server re-announces from the new network, and a client connects to
 *   it by public key after the move.
 *
 * And a change that changes nothing (an interface added, the same public
 * address): the classification, the address and a persistent node's id
 * stay, with no nat-update, no second network-update, no `ephemeral`.
 *
 * The reference (dht-rpc 6.27 `_onnetworkchange`) only emits the two events:
 * its NAT samples and `firewalled` flag outlive the move, so an open host
 * that moved behind a NAT goes on claiming to be open.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Scope } from "effect"
import type { DhtEvent } from "../src/actors/routing/node.js"
import { connectionHost } from "../src/actors/session/host.js"
import { type GatewayConfig, makeGateway } from "../src/api/GatewayService.js"
import { Crypto } from "../src/layers/Crypto.js"
import type { SimHost } from "../src/layers/transport/sim.js"
import { Transport } from "../src/layers/Transport.js"
import { seededRandom } from "../src/util/random.js"
import {
  advance,
  advanceUntil,
  BOOT_IP,
  BOOT_PORT,
  buildConnectSim,
  connect,
  type ConnectSim,
  listen,
  type NatKind,
  type SimPeer,
  type SimServer
} from "./support/connect-sim.js"
import { MovableHost } from "./support/movable-host.js"

/** A HyperDHT node with its ConnectionHost on a machine that can change networks, bootstrapped behind `nat`. */
const movablePeer = (sim: ConnectSim, nat: NatKind, name: string, config: GatewayConfig = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const first = yield* sim.net.addHost({ nat }).pipe(Scope.provide(scope))
    const machine = new MovableHost(first, sim.now)
    const handle = yield* makeGateway({ bootstrap: [`${BOOT_IP}:${BOOT_PORT}`], randomSeed: 4242, ...config }).pipe(
      Effect.provideService(Transport, machine.transport),
      Effect.provideService(Crypto, sim.crypto),
      Scope.provide(scope),
      Effect.orDie
    )
    const ready = yield* advanceUntil(() => handle.core.bootstrapped, 30_000, 50)
    assert.isTrue(ready, `${name} bootstraps`)
    const conn = yield* connectionHost(handle, sim.crypto, { effectTimers: true, random: seededRandom(77) })
    const keyPair = sim.crypto.keyPair(sim.crypto.blake2b(new TextEncoder().encode(`network-change ${name}`)))!
    const peer: SimPeer = { name, nat, host: first, handle, conn, keyPair, scope }
    /** A new host on the simulated network, behind `kind`, in this peer's scope. */
    const network = (kind: NatKind, link: { readonly latency?: number } = {}) => sim.net.addHost({ nat: kind, ...link }).pipe(Scope.provide(scope))
    return { peer, machine, handle, network }
  })

/** The node's view of itself. */
const viewOf = (peer: SimPeer) => {
  const core = peer.handle.core
  return { classification: core.classification, host: core.host, port: core.port, firewalled: core.firewalled, remote: core.remoteAddress() }
}

const tagsOf = (events: ReadonlyArray<DhtEvent>) => events.map((e) => e._tag)
/** The events each node emits from now on (one array per handle, in order). */
const recordEvents = (...handles: ReadonlyArray<{ readonly onEvent: (f: (e: DhtEvent) => void) => unknown }>): Array<Array<DhtEvent>> =>
  handles.map((h) => {
    const events: Array<DhtEvent> = []
    h.onEvent((e) => events.push(e))
    return events
  })
const natUpdates = (events: ReadonlyArray<DhtEvent>) =>
  events.flatMap((e) => (e._tag === "nat-update" ? [{ host: e.host, port: e.port }] : []))

/** Dial `server` from a fresh client behind `clientNat`; asserts it opens. */
const reachable = (sim: ConnectSim, server: SimServer, clientNat: NatKind, what: string) =>
  Effect.gen(function*() {
    const client = yield* sim.addPeer(clientNat, { name: `client ${what}` })
    const { dial, outcome } = yield* connect(sim, client, server, { maxMs: 30_000 })
    assert.isTrue(outcome.ok, `${what}: a client connects by public key (${outcome.code ?? ""} ${dial.error?.detail ?? ""})`)
    console.log(`network-change: ${what}: opened in ${outcome.ms} ms (virtual), path ${outcome.path}`)
    dial.socket.destroy()
    return outcome
  })

describe("a host that changes network re-samples", () => {
  it.effect("consistent -> random (networkChange()): the new address and class from fresh replies only, never a stale one; the server is reachable again", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 31 })
      const { peer, machine, handle, network } = yield* movablePeer(sim, "consistent", "mover")
      const oldIp = peer.host.publicIp
      assert.deepInclude(viewOf(peer), { classification: "consistent", host: oldIp, firewalled: true, remote: null })
      const server = yield* listen(peer)
      yield* reachable(sim, server, "consistent", "before the move")

      const [events] = recordEvents(handle) as [Array<DhtEvent>]
      // pings in flight across the move: the old interface stays up a while,
      // so their replies arrive, naming the old network's address
      let staleReplies = 0
      handle.exec((core) => {
        for (const n of sim.nodes.slice(1, 11)) {
          core.ping({ host: n.ip, port: n.port }, {}, (res) => {
            if (res.to.host === oldIp) staleReplies++
          }, () => {})
        }
      })
      // the new network is slow: every stale reply arrives before the first fresh one
      const next: SimHost = yield* network("random", { latency: 150 })
      machine.move(next, { linger: 2_000 })
      yield* handle.networkChange
      assert.deepStrictEqual(tagsOf(events).slice(0, 2), ["network-change", "network-update"])
      assert.isTrue(handle.core.resampling)
      assert.isNull(handle.core.host, "the samples are dropped")

      // never the old address once the change is signalled, though its replies arrive
      let sawOld = false
      for (let t = 0; t < 30_000 && handle.core.resampling; t += 5) {
        yield* advance(5, 5)
        if (handle.core.host === oldIp) sawOld = true
      }
      assert.isFalse(handle.core.resampling, "the probe settles")
      assert.isAtLeast(staleReplies, 5, "replies to the pings sent before the move did arrive")
      assert.isFalse(sawOld, "a stale reply is never a sample")
      assert.deepInclude(viewOf(peer), { classification: "random", host: next.publicIp, port: 0, firewalled: true, remote: null })
      assert.isTrue(handle.core.randomized)
      assert.deepStrictEqual(natUpdates(events), [{ host: next.publicIp, port: 0 }], "one nat-update, once settled")
      assert.strictEqual(tagsOf(events).filter((t) => t === "network-update").length, 2, "at once, and once the view changed")
      // still random a while later: more fresh samples, no flip
      yield* advance(20_000, 250)
      assert.strictEqual(handle.core.classification, "random")
      assert.strictEqual(handle.core.host, next.publicIp)

      // the server re-announced from the new network: reachable by public key again
      yield* reachable(sim, server, "consistent", "after the move")
      assert.deepStrictEqual(sim.livelocks, [])
    }), { timeout: 120_000 })

  it.effect("open -> consistent (interface poll) -> open at a new address: no stale OPEN claim, reachable after each move", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 32 })
      const { peer, machine, handle, network } = yield* movablePeer(sim, "open", "mover")
      const serverPort = handle.sockets().server.local.port
      assert.deepInclude(viewOf(peer), { classification: "open", host: peer.host.ip, port: serverPort, firewalled: false })
      assert.deepStrictEqual(viewOf(peer).remote, { host: peer.host.ip, port: serverPort })
      const server = yield* listen(peer)
      yield* reachable(sim, server, "consistent", "open, before the moves")

      const [events] = recordEvents(handle) as [Array<DhtEvent>]
      // behind a NAT now; nobody tells the node: its interface poll (every 5 s) sees the new address
      const natted = yield* network("consistent")
      machine.move(natted)
      const noticed = yield* advanceUntil(() => events.some((e) => e._tag === "network-change"), 6_000, 50)
      assert.isTrue(noticed, "the interface poll notices the move")
      assert.deepStrictEqual(events.find((e) => e._tag === "network-change"), { _tag: "network-change", interfaces: [natted.ip] })
      yield* advanceUntil(() => !handle.core.resampling, 30_000, 10)
      assert.deepInclude(viewOf(peer), { classification: "consistent", host: natted.publicIp, firewalled: true, remote: null })
      assert.deepStrictEqual(natUpdates(events).map((u) => u.host), [natted.publicIp])
      assert.isTrue(tagsOf(events).filter((t) => t === "network-update").length >= 2)
      yield* reachable(sim, server, "consistent", "behind a NAT after the first move")

      // on an open network again, at a new address
      events.length = 0
      const open = yield* network("open")
      machine.move(open)
      yield* handle.networkChange
      yield* advanceUntil(() => !handle.core.resampling, 30_000, 10)
      assert.deepInclude(viewOf(peer), { classification: "open", host: open.ip, port: serverPort, firewalled: false })
      assert.deepStrictEqual(viewOf(peer).remote, { host: open.ip, port: serverPort })
      assert.deepStrictEqual(natUpdates(events), [{ host: open.ip, port: serverPort }])
      const outcome = yield* reachable(sim, server, "consistent", "open again after the second move")
      assert.strictEqual(outcome.path, "direct", "an open server is dialled directly")
      assert.deepStrictEqual(sim.livelocks, [])
    }), { timeout: 120_000 })

  it.effect("a change that changes nothing keeps the classification, the address and a persistent id (no nat-update, no second network-update)", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 33 })
      const persistent = yield* movablePeer(sim, "open", "persistent", { ephemeral: false })
      const natted = yield* movablePeer(sim, "consistent", "natted")
      const p = persistent.handle.core
      assert.isFalse(p.ephemeral, "persistent")
      const id = p.id!
      const views = [viewOf(persistent.peer), viewOf(natted.peer)]
      assert.strictEqual(views[0]!.classification, "open")
      assert.strictEqual(views[1]!.classification, "consistent")

      const events = recordEvents(persistent.handle, natted.handle)
      // a VPN or a container bridge comes up: the interface list changes, the network does not
      persistent.machine.extraAddresses = ["10.8.0.2"]
      natted.machine.extraAddresses = ["172.17.0.1"]
      yield* advanceUntil(() => events.every((es) => es.some((e) => e._tag === "network-change")), 6_000, 50)
      yield* advanceUntil(() => !p.resampling && !natted.handle.core.resampling, 30_000, 10)
      yield* advance(5_000, 250)

      assert.deepStrictEqual(viewOf(persistent.peer), views[0])
      assert.deepStrictEqual(viewOf(natted.peer), views[1])
      assert.isFalse(p.ephemeral, "still persistent")
      assert.deepStrictEqual([...p.id!], [...id], "under the same id")
      for (const es of events) {
        const tags = tagsOf(es).filter((t) => t !== "add-node" && t !== "remove-node")
        assert.deepStrictEqual(tags, ["network-change", "network-update"], "only the change's own events")
      }
      assert.deepStrictEqual(sim.livelocks, [])
    }), { timeout: 120_000 })

  it.effect("persistence across a move: a forced persistent node is persistent again under its new address's id; an adaptive one goes back to ephemeral", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 34 })
      const forced = yield* movablePeer(sim, "open", "forced", { ephemeral: false })
      const adaptive = yield* movablePeer(sim, "open", "adaptive")
      // an adaptive node turns persistent after ~20 minutes of a stable address
      yield* advance(21 * 60_000, 1_000)
      const f = forced.handle.core
      const a = adaptive.handle.core
      assert.isFalse(f.ephemeral)
      assert.isFalse(a.ephemeral, "the adaptive node became persistent")
      const events = recordEvents(forced.handle, adaptive.handle)

      const fNext = yield* forced.network("open")
      const aNext = yield* adaptive.network("open")
      forced.machine.move(fNext)
      adaptive.machine.move(aNext)
      yield* forced.handle.networkChange
      yield* adaptive.handle.networkChange
      yield* advanceUntil(() => !f.resampling && !a.resampling, 30_000, 10)

      const port = forced.handle.sockets().server.local.port
      assert.deepStrictEqual(f.remoteAddress(), { host: fNext.ip, port })
      assert.isFalse(f.ephemeral, "the forced persistent node is persistent")
      assert.deepStrictEqual([...f.id!], [...f.nodeId(fNext.ip, port)!], "under the id of its new address")
      assert.notInclude(tagsOf(events[0]!), "ephemeral")

      assert.strictEqual(a.classification, "open")
      assert.isTrue(a.ephemeral, "the adaptive node is ephemeral again")
      assert.include(tagsOf(events[1]!), "ephemeral")
      assert.deepStrictEqual([...a.table.id], [...a.nodeId(aNext.ip, adaptive.handle.sockets().server.local.port)!], "its table id names the new address")
      // its persistence countdown starts again: persistent ~20 minutes later
      yield* advance(21 * 60_000, 1_000)
      assert.isFalse(a.ephemeral, "persistent again after its new address proved stable")

      // the other nodes take the forced one's new id: it is in their tables
      const holders = sim.nodes.filter((n) => n.handle.core.table.get(f.id!) !== null).length
      assert.isAbove(holders, 0, "other nodes hold the new id")
      assert.deepStrictEqual(sim.livelocks, [])
    }), { timeout: 120_000 })

  it.effect("a change while suspended is probed at resume", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 35 })
      const { peer, machine, handle, network } = yield* movablePeer(sim, "consistent", "sleeper")
      assert.strictEqual(handle.core.classification, "consistent")
      yield* handle.suspend
      const next = yield* network("random")
      machine.move(next)
      yield* handle.networkChange
      assert.isFalse(handle.core.resampling, "nothing is probed while suspended")
      yield* advance(2_000, 100)
      yield* handle.resume
      assert.isTrue(handle.core.resampling)
      yield* advanceUntil(() => !handle.core.resampling, 30_000, 10)
      assert.deepInclude(viewOf(peer), { classification: "random", host: next.publicIp, port: 0 })
    }), { timeout: 120_000 })
})
