/**
 * Rule tests of the Flock topic discovery core (src/actors/flock/discovery.ts,
 * spec flock.md §7, §9.6): mode aggregation across handles, the refresh
 * cycle as outputs (listen, announce / lookup / lookupAndUnannounce, reply
 * filtering, settle), the refresh schedule with jitter and sleep
 * detection, the per-topic limit, teardown with the merged unannounce,
 * suspend / resume, predecessor waits, and the counterparts of the
 * reference tests whose rule lives here (swarm.js #17 #20 #22 #23 #27).
 * Seeded randomness and explicit `now` throughout.
 */
import { describe, expect, it } from "vitest"
import { FOLLOW_UP_DELAY, FOLLOW_UP_JITTER, MAX_DISCOVERY_CACHE, REFRESH_INTERVAL, REFRESH_JITTER } from "../src/actors/flock/constants.js"
import {
  type ClosestNode,
  type DiscoveredPeer,
  DiscoveryOutput,
  type DiscoveryOutput as Output,
  isTopic,
  mergeNodes,
  RefreshTicket,
  TopicDiscoveryCore,
  type TopicDiscoveryOptions
} from "../src/actors/flock/discovery.js"
import { toHex } from "../src/protocol/encoding.js"
import { seededRandom } from "../src/util/random.js"

const bytes = (b: number, fill = 0): Uint8Array => {
  const k = new Uint8Array(32).fill(fill)
  k[0] = b
  return k
}
const TOPIC = bytes(1, 0xee)
const peer = (b: number): DiscoveredPeer => ({ publicKey: bytes(b), relayAddresses: [{ host: "10.0.0.1", port: 49737 }] })
const node = (i: number): ClosestNode => ({ host: `10.1.0.${i}`, port: 49737, id: bytes(i, 0x11) })

const make = (options: Partial<TopicDiscoveryOptions> = {}) => new TopicDiscoveryCore({ topic: TOPIC, random: seededRandom(9), ...options })

type Tag = Output["_tag"]
const of = <T extends Tag>(out: ReadonlyArray<Output>, tag: T) => out.filter((o): o is Extract<Output, { _tag: T }> => o._tag === tag)
const query = (out: ReadonlyArray<Output>) => of(out, "Query")[0]!

/** Run a server-mode cycle through its listen step; returns the Query output. */
const listenAndQuery = (d: TopicDiscoveryCore, now: number) => {
  const listen = of(d.drain(), "Listen").pop()!
  d.handleListened(now, listen.cycle, true)
  return query(d.drain())
}

describe("modes across handles (§7.2)", () => {
  it("join defaults to server + client; a server handle makes the discovery announce", () => {
    const d = make()
    const { handle, ticket } = d.addHandle(0)
    expect(handle).toBe(1)
    expect(ticket).toEqual(RefreshTicket.Pending({ cycle: 1 }))
    expect([d.isServer, d.isClient]).toEqual([true, true])
    expect(d.drain()).toEqual([DiscoveryOutput.Listen({ cycle: 1 })])
  })

  it("a handle with neither mode is refused but exists and contributes nothing", () => {
    const d = make()
    const { handle, ticket } = d.addHandle(0, { client: false, server: false })
    expect(ticket).toEqual(RefreshTicket.Rejected({ reason: "no-mode" }))
    expect(d.handle(handle!)).toEqual({ isClient: false, isServer: false, destroyed: false })
    expect(d.drain()).toEqual([])
  })

  it("the discovery is a server if any handle is, a client if any handle is; the limit is last-writer-wins", () => {
    const d = make()
    d.addHandle(0, { server: false, client: true, limit: 5 })
    expect([d.isServer, d.isClient, d.limit]).toEqual([false, true, 5])
    d.addHandle(0, { server: true, client: false })
    expect([d.isServer, d.isClient, d.limit]).toEqual([true, true, Infinity])
  })

  it("a destroyed handle refuses refresh", () => {
    const d = make()
    const { handle } = d.addHandle(0)
    d.addHandle(0)
    d.destroyHandle(0, handle!)
    expect(d.refreshHandle(0, handle!)).toEqual(RefreshTicket.Rejected({ reason: "handle-destroyed" }))
    expect(d.destroyHandle(0, handle!)).toEqual(RefreshTicket.Settled({ ok: undefined }))
  })
})

describe("one refresh cycle (§7.4)", () => {
  it("server: listen, then announce with clear on the first announce only, seeded with the last closest nodes", () => {
    const d = make()
    d.addHandle(0)
    const q1 = listenAndQuery(d, 0)
    expect(q1).toEqual(DiscoveryOutput.Query({ cycle: 1, kind: "announce", clear: true, closestNodes: null }))
    expect(d.needsUnannounce).toBe(true)
    d.handleQueryDone(10, 1, { ok: true, closestNodes: [node(1), node(2)] })
    expect(d.drain()).toEqual([DiscoveryOutput.RefreshSettled({ cycle: 1, ok: true })])
    expect(d.refresh(20)).toEqual(RefreshTicket.Pending({ cycle: 2 }))
    const q2 = listenAndQuery(d, 20)
    expect(q2.kind).toBe("announce")
    expect(q2.clear).toBe(false)
    expect(q2.closestNodes).toEqual([node(1), node(2)])
  })

  it("client only: lookup; replies are handed over in order", () => {
    const d = make()
    d.addHandle(0, { server: false })
    const q = query(d.drain())
    expect(q).toEqual(DiscoveryOutput.Query({ cycle: 1, kind: "lookup", clear: false, closestNodes: null }))
    expect(d.handleReply(1, [peer(1), peer(2)])).toEqual([peer(1), peer(2)])
    expect(d.handleReply(2, [peer(3)])).toEqual([])
  })

  it("server only: replies are ignored", () => {
    const d = make()
    d.addHandle(0, { client: false })
    listenAndQuery(d, 0)
    expect(d.handleReply(1, [peer(1)])).toEqual([])
  })

  it("server → client only: lookupAndUnannounce until one completes, then plain lookup", () => {
    const d = make()
    const { handle } = d.addHandle(0)
    listenAndQuery(d, 0)
    d.handleQueryDone(5, 1, { ok: true, closestNodes: [node(1)] })
    d.drain()
    d.refreshHandle(10, handle!, { server: false, client: true })
    const q = query(d.drain())
    expect(q.kind).toBe("lookupAndUnannounce")
    d.handleQueryDone(15, q.cycle, { ok: false })
    expect(d.needsUnannounce).toBe(true) // failed: still needed
    d.refresh(20)
    const q2 = query(d.drain())
    expect(q2.kind).toBe("lookupAndUnannounce")
    d.handleQueryDone(25, q2.cycle, { ok: true, closestNodes: [node(2)] })
    expect(d.needsUnannounce).toBe(false)
    d.refresh(30)
    expect(query(d.drain()).kind).toBe("lookup")
  })

  it("unchanged modes join the in-flight cycle; changed modes cancel it (it settles false) and start a new one", () => {
    const d = make()
    const { handle } = d.addHandle(0, { server: false })
    d.drain()
    expect(d.refresh(1)).toEqual(RefreshTicket.Pending({ cycle: 1 }))
    expect(d.refreshHandle(2, handle!, { server: false, client: true })).toEqual(RefreshTicket.Pending({ cycle: 1 }))
    expect(d.drain()).toEqual([])
    expect(d.refreshHandle(3, handle!, { server: true })).toEqual(RefreshTicket.Pending({ cycle: 2 }))
    expect(d.drain()).toEqual([
      DiscoveryOutput.CancelQuery({ cycle: 1 }),
      DiscoveryOutput.RefreshSettled({ cycle: 1, ok: false }),
      DiscoveryOutput.Listen({ cycle: 2 })
    ])
    // the cancelled query's late end and replies are ignored
    expect(d.handleReply(1, [peer(1)])).toEqual([])
    d.handleQueryDone(4, 1, { ok: false })
    expect(d.drain()).toEqual([])
  })

  it("a failed query settles false and still schedules the next refresh", () => {
    const d = make({ followUp: false })
    d.addHandle(0, { server: false })
    d.drain()
    d.handleQueryDone(100, 1, { ok: false })
    expect(d.drain()).toEqual([DiscoveryOutput.RefreshSettled({ cycle: 1, ok: false })])
    expect(d.nextDeadline()).toBeGreaterThanOrEqual(100 + REFRESH_INTERVAL)
  })

  it("a failed listen settles false and schedules a refresh (decision)", () => {
    const d = make({ followUp: false })
    d.addHandle(0)
    d.drain()
    d.handleListened(50, 1, false)
    expect(d.drain()).toEqual([DiscoveryOutput.RefreshSettled({ cycle: 1, ok: false })])
    expect(d.nextDeadline()).toBeGreaterThanOrEqual(50 + REFRESH_INTERVAL)
  })

  it("flushed(): the in-flight cycle, or true at once", () => {
    const d = make({ followUp: false })
    expect(d.flushed()).toEqual(RefreshTicket.Settled({ ok: true }))
    d.addHandle(0)
    expect(d.flushed()).toEqual(RefreshTicket.Pending({ cycle: 1 }))
  })

  it("swarm.js #27 peerDiscovery has unslabbed closestNodes: stored node ids are standalone 32-byte copies", () => {
    const d = make({ followUp: false })
    d.addHandle(0, { server: false })
    const slab = new Uint8Array(1024)
    slab.set(bytes(5, 0x11), 64)
    d.handleQueryDone(1, 1, { ok: true, closestNodes: [{ host: "10.1.0.5", port: 1, id: slab.subarray(64, 96) }] })
    const stored = d.closestNodes![0]!.id!
    expect(stored.buffer.byteLength).toBe(32)
    expect(stored).toEqual(bytes(5, 0x11))
  })
})

describe("scheduling (§7.5)", () => {
  it("normal delay: 10 min + uniform 0–2 min, drawn from the injected random", () => {
    const seen: Array<number> = []
    for (let seed = 1; seed <= 200; seed++) {
      const d = make({ followUp: false, random: seededRandom(Math.imul(seed, 0x9e3779b1)) })
      d.addHandle(0, { server: false })
      d.handleQueryDone(1000, 1, { ok: true })
      const delay = d.nextDeadline() - 1000
      expect(delay).toBeGreaterThanOrEqual(REFRESH_INTERVAL)
      expect(delay).toBeLessThanOrEqual(REFRESH_INTERVAL + REFRESH_JITTER)
      expect(Number.isInteger(delay)).toBe(true)
      seen.push(delay)
    }
    expect(Math.max(...seen) - Math.min(...seen)).toBeGreaterThan(REFRESH_JITTER * 0.9)
  })

  it("the timer refreshes (joining nothing: a new cycle) and the next one is scheduled after it", () => {
    const d = make({ followUp: false, random: () => 0.5 })
    d.addHandle(0, { server: false })
    d.handleQueryDone(0, 1, { ok: true })
    d.drain()
    expect(d.nextDeadline()).toBe(660_000)
    expect(d.handleTimeout(659_999)).toBe(null)
    expect(d.handleTimeout(660_000)).toEqual(RefreshTicket.Pending({ cycle: 2 }))
    expect(d.nextDeadline()).toBe(Infinity)
    expect(query(d.drain()).cycle).toBe(2)
    d.handleQueryDone(661_000, 2, { ok: true })
    expect(d.nextDeadline()).toBe(661_000 + 660_000)
  })

  it("sleep detection (§16.1): an overdue timer (> delay + 30 s) reschedules within 0–2 min instead of refreshing", () => {
    const d = make({ followUp: false, random: () => 0.5 })
    d.addHandle(0, { server: false })
    d.handleQueryDone(0, 1, { ok: true })
    d.drain()
    expect(d.handleTimeout(660_000 + 30_000)).toEqual(RefreshTicket.Pending({ cycle: 2 }))
    const e = make({ followUp: false, random: () => 0.5 })
    e.addHandle(0, { server: false })
    e.handleQueryDone(0, 1, { ok: true })
    e.drain()
    expect(e.handleTimeout(660_000 + 30_001)).toBe(null)
    expect(e.drain()).toEqual([])
    expect(e.nextDeadline()).toBe(660_000 + 30_001 + 60_000)
  })

  it("swarm.js #17 refreshing a discovery instance discovers a new server: handle.refresh runs a new lookup at once", () => {
    const d = make()
    const { handle } = d.addHandle(0, { server: false })
    d.drain()
    d.handleQueryDone(1, 1, { ok: true })
    d.drain()
    expect(d.refreshHandle(2, handle!)).toEqual(RefreshTicket.Pending({ cycle: 2 }))
    expect(query(d.drain()).kind).toBe("lookup")
    expect(d.handleReply(2, [peer(9)])).toEqual([peer(9)])
  })
})

describe("per-topic limit (§9.6, §15.2 #1)", () => {
  it("limit 0 hands over nothing; a finite limit caps the peers per refresh", () => {
    const zero = make()
    zero.addHandle(0, { server: false, limit: 0 })
    zero.drain()
    expect(zero.handleReply(1, [peer(1), peer(2)])).toEqual([])
    const two = make()
    two.addHandle(0, { server: false, limit: 2 })
    two.drain()
    expect(two.handleReply(1, [peer(1), peer(2)])).toEqual([peer(1), peer(2)])
    expect(two.handleReply(1, [peer(3)])).toEqual([])
    expect(two.discoveredKeys.size).toBe(3)
  })

  it("connected peers do not consume the budget during a query", () => {
    const connected = new Set([toHex(bytes(1))])
    const d = make({ isConnected: (k) => connected.has(k) })
    d.addHandle(0, { server: false, limit: 1 })
    d.drain()
    expect(d.handleReply(1, [peer(1), peer(2), peer(3)])).toEqual([peer(1), peer(2)])
  })

  it("the intent (§16.1): keys of the previous refresh that are connected count against the next budget", () => {
    const connected = new Set<string>()
    const d = make({ isConnected: (k) => connected.has(k) })
    const { handle } = d.addHandle(0, { server: false, limit: 3 })
    d.drain()
    expect(d.handleReply(1, [peer(1), peer(2), peer(3)]).length).toBe(3)
    d.handleQueryDone(1, 1, { ok: true })
    connected.add(toHex(bytes(1)))
    connected.add(toHex(bytes(2)))
    d.refreshHandle(2, handle!, { limit: 3 })
    d.drain()
    // budget 3 − 2 connected = 1 new peer (connected ones pass without consuming)
    expect(d.handleReply(2, [peer(1), peer(4), peer(5)])).toEqual([peer(1), peer(4)])
  })

  it("at most 64 discovered keys are remembered", () => {
    const d = make()
    d.addHandle(0, { server: false, limit: 1000 })
    d.drain()
    d.handleReply(
      1,
      Array.from({ length: 100 }, (_, i) => peer(i + 1))
    )
    expect(d.discoveredKeys.size).toBe(MAX_DISCOVERY_CACHE)
  })
})

describe("teardown (§7.6)", () => {
  it("destroy mid-announce: cancel, wait for the query, unannounce at the merged nodes, done", () => {
    const d = make()
    d.addHandle(0)
    listenAndQuery(d, 0)
    d.handleQueryDone(1, 1, { ok: true, closestNodes: [node(1), node(2)] })
    d.refresh(2)
    listenAndQuery(d, 2)
    expect(d.destroy(3)).toBe("started")
    expect(d.destroy(3)).toBe("pending")
    expect(d.drain()).toEqual([DiscoveryOutput.CancelQuery({ cycle: 2 })])
    expect(d.nextDeadline()).toBe(Infinity)
    // the cancelled query reached other nodes: merged (dedup by id) with the ones known before
    d.handleQueryDone(4, 2, { ok: false, closestNodes: [node(2), node(3)] })
    expect(d.drain()).toEqual([
      DiscoveryOutput.RefreshSettled({ cycle: 2, ok: true }),
      DiscoveryOutput.Unannounce({ closestNodes: [node(1), node(2), node(3)] })
    ])
    d.handleUnannounced(5)
    expect(d.drain()).toEqual([DiscoveryOutput.TeardownDone({ reason: "destroy" })])
    expect(d.needsUnannounce).toBe(false)
    expect(d.destroy(6)).toBe("done")
    expect(d.refresh(7)).toEqual(RefreshTicket.Rejected({ reason: "destroyed" }))
    expect(d.addHandle(7).handle).toBe(null)
  })

  it("nothing announced, or no nodes known: no unannounce", () => {
    const client = make()
    client.addHandle(0, { server: false })
    client.handleQueryDone(1, 1, { ok: true, closestNodes: [node(1)] })
    client.drain()
    client.destroy(2)
    expect(client.drain()).toEqual([DiscoveryOutput.TeardownDone({ reason: "destroy" })])

    const noNodes = make()
    noNodes.addHandle(0)
    listenAndQuery(noNodes, 0)
    noNodes.handleQueryDone(1, 1, { ok: false })
    noNodes.drain()
    noNodes.destroy(2)
    expect(noNodes.drain()).toEqual([DiscoveryOutput.TeardownDone({ reason: "destroy" })])
  })

  it("destroy while listening: the cycle yields quietly, no query is started", () => {
    const d = make()
    d.addHandle(0)
    d.drain()
    d.destroy(1)
    expect(d.drain()).toEqual([DiscoveryOutput.RefreshSettled({ cycle: 1, ok: true }), DiscoveryOutput.TeardownDone({ reason: "destroy" })])
    d.handleListened(2, 1, true)
    expect(d.drain()).toEqual([])
  })

  it("suspend aborts and unannounces; refresh is skipped while suspended; resume refreshes without clear", () => {
    const d = make()
    d.addHandle(0)
    listenAndQuery(d, 0)
    d.handleQueryDone(1, 1, { ok: true, closestNodes: [node(1)] })
    d.drain()
    expect(d.suspend(2)).toBe(true)
    expect(d.suspend(2)).toBe(false)
    expect(d.drain()).toEqual([DiscoveryOutput.Unannounce({ closestNodes: [node(1)] })])
    d.handleUnannounced(3)
    expect(d.drain()).toEqual([DiscoveryOutput.TeardownDone({ reason: "suspend" })])
    expect(d.refresh(4)).toEqual(RefreshTicket.Settled({ ok: undefined }))
    expect(d.nextDeadline()).toBe(Infinity)
    expect(d.resume(5)).toEqual(RefreshTicket.Pending({ cycle: 2 }))
    const q = listenAndQuery(d, 5)
    expect(q.kind).toBe("announce")
    expect(q.clear).toBe(false)
  })

  it("resume while the suspend still waits for its query: no unannounce, a fresh cycle starts", () => {
    const d = make()
    d.addHandle(0, { server: false })
    d.drain()
    d.suspend(1)
    expect(d.drain()).toEqual([DiscoveryOutput.CancelQuery({ cycle: 1 })])
    expect(d.resume(2)).toEqual(RefreshTicket.Pending({ cycle: 2 }))
    d.handleQueryDone(3, 1, { ok: false })
    const out = d.drain()
    expect(of(out, "TeardownDone")).toEqual([DiscoveryOutput.TeardownDone({ reason: "suspend" })])
    expect(of(out, "Unannounce")).toEqual([])
    expect(d.refreshing).toBe(2)
  })

  it("a discovery created suspended starts nothing until resumed", () => {
    const d = make({ suspended: true })
    expect(d.addHandle(0).ticket).toEqual(RefreshTicket.Settled({ ok: undefined }))
    expect(d.drain()).toEqual([])
    expect(d.resume(1)).toEqual(RefreshTicket.Pending({ cycle: 1 }))
    expect(d.drain()).toEqual([DiscoveryOutput.Listen({ cycle: 1 })])
  })

  it("re-join after leave waits for the predecessor's teardown (§16.1), and so does its own teardown", () => {
    const d = make({ waitForPredecessor: true })
    expect(d.addHandle(0).ticket).toEqual(RefreshTicket.Pending({ cycle: 1 }))
    expect(d.drain()).toEqual([])
    d.handlePredecessorDone(1)
    expect(d.drain()).toEqual([DiscoveryOutput.Listen({ cycle: 1 })])

    const e = make({ waitForPredecessor: true })
    e.addHandle(0)
    e.destroy(1)
    expect(e.drain()).toEqual([DiscoveryOutput.RefreshSettled({ cycle: 1, ok: true })])
    e.handlePredecessorDone(2)
    expect(e.drain()).toEqual([DiscoveryOutput.TeardownDone({ reason: "destroy" })])
  })
})

describe("handles and leaving (§7.6)", () => {
  it("swarm.js #23 closing all discovery sessions: the last handle's destroy asks to leave the topic", () => {
    const d = make()
    const a = d.addHandle(0).handle!
    const b = d.addHandle(0, { server: false }).handle!
    d.drain()
    d.destroyHandle(1, a)
    expect(of(d.drain(), "Leave")).toEqual([])
    d.destroyHandle(2, b)
    expect(of(d.drain(), "Leave")).toEqual([DiscoveryOutput.Leave()])
  })

  it("swarm.js #22 multiple sessions with different opts: destroying the client handle keeps the server announcing", () => {
    const d = make()
    const client = d.addHandle(0, { server: false }).handle!
    d.addHandle(0, { client: false })
    d.drain()
    d.destroyHandle(1, client)
    expect([d.isServer, d.isClient]).toEqual([true, true]) // modes adopt at the next refresh
    expect(d.refresh(2)).toEqual(RefreshTicket.Pending({ cycle: 3 }))
    expect([d.isServer, d.isClient]).toEqual([true, false])
    expect(query(listenAndQueryOutputs(d, 2)).kind).toBe("announce")
  })

  it("the last server handle gone after we announced: the remaining client handles switch to lookupAndUnannounce", () => {
    const d = make()
    const server = d.addHandle(0, { client: false }).handle!
    d.addHandle(0, { server: false })
    listenAndQuery(d, 0)
    d.handleQueryDone(1, d.refreshing!, { ok: true })
    d.drain()
    const ticket = d.destroyHandle(2, server)
    expect(ticket._tag).toBe("Pending")
    expect(query(d.drain()).kind).toBe("lookupAndUnannounce")
  })

  it("swarm.js #20 rejoining with different client/server opts refreshes: client-only, then client+server announces", () => {
    const d = make()
    d.addHandle(0, { server: false })
    expect(query(d.drain()).kind).toBe("lookup")
    d.addHandle(1, { server: true, client: true })
    const out = d.drain()
    expect(out).toEqual([
      DiscoveryOutput.CancelQuery({ cycle: 1 }),
      DiscoveryOutput.RefreshSettled({ cycle: 1, ok: false }),
      DiscoveryOutput.Listen({ cycle: 2 })
    ])
    d.handleListened(2, 2, true)
    expect(query(d.drain())).toEqual(DiscoveryOutput.Query({ cycle: 2, kind: "announce", clear: true, closestNodes: null }))
  })
})

describe("helpers", () => {
  it("topics are 32-byte keys (§15.2 #4)", () => {
    expect(isTopic(TOPIC)).toBe(true)
    expect(isTopic(new Uint8Array(31))).toBe(false)
    expect(isTopic("x".repeat(32))).toBe(false)
    expect(isTopic(null)).toBe(false)
  })

  it("mergeNodes keeps the older set first and adds newer nodes with unseen ids", () => {
    expect(mergeNodes(null, [node(1)])).toEqual([node(1)])
    expect(mergeNodes([node(1)], null)).toEqual([node(1)])
    expect(mergeNodes([node(1), node(2)], [node(2), node(3), { host: "x", port: 1 }, node(3)])).toEqual([node(1), node(2), node(3)])
    expect(mergeNodes(null, null)).toEqual([])
  })
})

/** Outputs after completing the listen step of the pending server cycle. */
function listenAndQueryOutputs(d: TopicDiscoveryCore, now: number): Array<Output> {
  const out = d.drain()
  const listen = of(out, "Listen").pop()
  if (listen === undefined) return out
  d.handleListened(now, listen.cycle, true)
  return out.concat(d.drain())
}

// ---------------------------------------------------------------------------
// The early follow-up lookup (Flock only; issue 19: simultaneous joins mesh fast)
// ---------------------------------------------------------------------------

describe("follow-up lookup (Flock only)", () => {
  it("after the first client-mode cycle, one lookup (not an announce) runs FOLLOW_UP_DELAY + 0..JITTER later; the refresh timer is untouched", () => {
    const d = make({ random: () => 0.5 })
    d.addHandle(0)
    listenAndQuery(d, 0)
    d.handleQueryDone(100, 1, { ok: true, closestNodes: [node(1)] })
    d.drain()
    const at = 100 + FOLLOW_UP_DELAY + Math.round(0.5 * FOLLOW_UP_JITTER)
    expect(d.followUpDeadline).toBe(at)
    expect(d.nextDeadline()).toBe(at)
    expect(d.handleTimeout(at - 1)).toBe(null)
    expect(d.drain()).toEqual([])
    expect(d.handleTimeout(at)).toBe(null)
    expect(d.drain()).toEqual([DiscoveryOutput.Query({ cycle: 2, kind: "lookup", clear: false, closestNodes: [node(1)] })])
    // flushed() does not wait for it (the announcement is stored)
    expect(d.flushed()).toEqual(RefreshTicket.Settled({ ok: true }))
    d.handleQueryDone(at + 50, 2, { ok: true })
    expect(d.drain()).toEqual([DiscoveryOutput.RefreshSettled({ cycle: 2, ok: true })])
    // still announced (unannounce on teardown), the refresh stays 10 min + jitter after the first cycle
    expect(d.needsUnannounce).toBe(true)
    expect(d.nextDeadline()).toBe(100 + REFRESH_INTERVAL + 60_000)
    expect(d.followUpDeadline).toBe(null)
  })

  it("peers are marked mutual while our record is on the DHT: join phase, later refreshes, an explicit refresh(), a lookup-and-unannounce; not for a client-only discovery that never announced", () => {
    const d = make({ random: () => 0 })
    const { handle } = d.addHandle(0)
    listenAndQuery(d, 0)
    expect(d.handleReply(1, [peer(5)])).toEqual([{ ...peer(5), mutual: true }])
    d.handleQueryDone(10, 1, { ok: true })
    d.handleTimeout(10 + FOLLOW_UP_DELAY)
    d.drain()
    // the follow-up lookup
    expect(d.handleReply(2, [peer(6)])[0]!.mutual).toBe(true)
    d.handleQueryDone(300, 2, { ok: true })
    // the scheduled refresh
    d.handleTimeout(10 + REFRESH_INTERVAL)
    listenAndQuery(d, 10 + REFRESH_INTERVAL)
    expect(d.handleReply(3, [peer(7)])[0]!.mutual).toBe(true)
    d.handleQueryDone(10 + REFRESH_INTERVAL + 5, 3, { ok: true })
    // an explicit refresh() (the application's discovery.refresh())
    const t = 20 + REFRESH_INTERVAL
    expect(d.refresh(t)._tag).toBe("Pending")
    listenAndQuery(d, t)
    expect(d.handleReply(4, [peer(8)])[0]!.mutual).toBe(true)
    d.handleQueryDone(t + 5, 4, { ok: true })
    // client only now: our record may still be stored until the lookup-and-unannounce completes
    d.refreshHandle(t + 10, handle!, { server: false, client: true })
    expect(query(d.drain()).kind).toBe("lookupAndUnannounce")
    expect(d.handleReply(5, [peer(9)])[0]!.mutual).toBe(true)
    d.handleQueryDone(t + 20, 5, { ok: true })
    d.refresh(t + 30)
    expect(query(d.drain()).kind).toBe("lookup")
    expect(d.handleReply(6, [peer(10)])[0]!.mutual).toBeUndefined()
    const c = make({ random: () => 0 })
    c.addHandle(0, { server: false })
    c.drain()
    expect(c.handleReply(1, [peer(5)])[0]!.mutual).toBeUndefined()
  })

  it("only once per discovery; again after resume; none in server-only mode or when disabled", () => {
    const d = make({ random: () => 0 })
    d.addHandle(0, { server: false })
    d.drain()
    d.handleQueryDone(0, 1, { ok: true })
    expect(d.followUpDeadline).toBe(FOLLOW_UP_DELAY)
    d.handleTimeout(FOLLOW_UP_DELAY)
    d.drain()
    d.handleQueryDone(FOLLOW_UP_DELAY + 1, 2, { ok: true })
    d.handleTimeout(REFRESH_INTERVAL)
    d.drain()
    d.handleQueryDone(REFRESH_INTERVAL + 1, 3, { ok: true })
    expect(d.followUpDeadline).toBe(null)
    d.suspend(REFRESH_INTERVAL + 2)
    d.drain()
    d.resume(REFRESH_INTERVAL + 3)
    const q = query(d.drain())
    d.handleQueryDone(REFRESH_INTERVAL + 4, q.cycle, { ok: true })
    expect(d.followUpDeadline).toBe(REFRESH_INTERVAL + 4 + FOLLOW_UP_DELAY)
    const s = make({ random: () => 0 })
    s.addHandle(0, { client: false })
    listenAndQuery(s, 0)
    s.handleQueryDone(1, 1, { ok: true })
    expect(s.followUpDeadline).toBe(null)
    const off = make({ random: () => 0, followUp: false })
    off.addHandle(0, { server: false })
    off.drain()
    off.handleQueryDone(1, 1, { ok: true })
    expect(off.followUpDeadline).toBe(null)
  })

  it("a refresh() during the follow-up replaces it (cancelled) with a real cycle; destroy cancels a pending follow-up", () => {
    const d = make({ random: () => 0 })
    d.addHandle(0)
    listenAndQuery(d, 0)
    d.handleQueryDone(1, 1, { ok: true, closestNodes: [node(1)] })
    d.drain()
    d.handleTimeout(1 + FOLLOW_UP_DELAY)
    expect(query(d.drain()).kind).toBe("lookup")
    expect(d.refresh(250)).toEqual(RefreshTicket.Pending({ cycle: 3 }))
    const out = d.drain()
    expect(out.slice(0, 2)).toEqual([DiscoveryOutput.CancelQuery({ cycle: 2 }), DiscoveryOutput.RefreshSettled({ cycle: 2, ok: false })])
    expect(of(out, "Listen")).toEqual([DiscoveryOutput.Listen({ cycle: 3 })])
    const e = make({ random: () => 0 })
    e.addHandle(0, { server: false })
    e.drain()
    e.handleQueryDone(1, 1, { ok: true })
    expect(e.followUpDeadline).not.toBe(null)
    e.destroy(2)
    expect(e.followUpDeadline).toBe(null)
    expect(e.nextDeadline()).toBe(Infinity)
  })
})
