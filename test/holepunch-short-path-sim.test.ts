/**
 * A holepunch over a path short enough for TTL-5 probes (a LAN's, the NAT
 * lab's), on the deterministic simulated network (`minDeliveryTtl: 1`).
 *
 * The NAT lab's case (hyperdht server in an "open" home that still thinks
 * itself firewalled, so CONSISTENT; Omega client behind a random NAT; reused
 * nodes, dials 1 s apart; 2-4 of 10 opened and carried nothing): the
 * client's open-session probe (TTL 5, connect.md §6.5 step 7) reaches the
 * server's punch socket, which answers it with a probe, and that answer
 * connects the client (the initiator takes the first probe). hyperdht's
 * client sends its probe before the probe round's holepunch message (it
 * awaits `openSession`), so the answer comes back first, and it sends no
 * punch round once connected (`isDone` after its probe round). Ours handed
 * the probe to the attempt's mailbox and sent the holepunch message at once,
 * so the message left first and its reply could come back before the
 * probe's answer; and it went on to the punch round when the answer had
 * arrived but the attempt's actor had not handled it yet. The reference
 * server refuses that round while its previous random punch is less than
 * 20 s old (TRY_LATER without a relay: the handshake is aborted) and closes
 * its punch socket, the one the client had just connected to.
 *
 * Here the server is an Omega node on an open host that does not run the
 * quick firewall test (it stays firewalled, so it punches from a pool
 * socket, as the lab's reference server did) and refuses every punch round
 * through its `holepunch` veto, which aborts the handshake and closes its
 * punch socket as hyperdht's refusal does. What the client's sockets send
 * is recorded: on the punch socket, the probe must leave before the
 * holepunch message (the order that fails on the old code: the sim has no
 * scheduling delay, so the old order did not lose the race here, but it
 * did in the lab), no punch round may follow, and every connection carries
 * data both ways.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { HolepunchAttempt } from "../src/actors/holepunch/attempt.js"
import * as C from "../src/protocol/connect.js"
import * as Rpc from "../src/protocol/dht-rpc.js"
import * as R from "../src/protocol/records.js"
import { advanceUntil, buildConnectSim, connect, exchange, listen, outcomeOf, type SimDial } from "./support/connect-sim.js"
import { recordingHost } from "./support/recording-host.js"

const lines: Array<string> = []
afterAll(() => {
  if (lines.length > 0) console.log(["holepunch-short-path-sim (virtual ms)", ...lines].join("\n"))
})

const describeOutcome = (d: SimDial): string => {
  const o = outcomeOf(d)
  if (o.ok) return `${o.path}/${o.serverPath} ${o.ms} ms`
  return `${o.code} after ${o.ms} ms (${o.report?.attempts.map((a) => `${a.path}: ${a.outcome}`).join("; ") ?? ""})`
}

/** One datagram a recorded socket sent. */
interface Sent {
  readonly socket: number
  readonly to: string
  readonly kind: "probe" | "holepunch" | "other"
  readonly ttl: number
}

const kindOf = (data: Uint8Array): Sent["kind"] => {
  if (data.length <= 1) return "probe"
  const m = Rpc.decodeMessage(data)
  if (m._tag === "Success" && m.success._tag === "Request" && !m.success.request.internal && m.success.request.command === R.Command.PEER_HOLEPUNCH) return "holepunch"
  return "other"
}

/** The host with every socket it opens recording what it sends into `log`. */
const recording = (log: Array<Sent>) =>
  recordingHost((socket, to, data, ttl) => log.push({ socket, to: `${to.host}:${to.port}`, kind: kindOf(data), ttl: ttl ?? 64 }))

describe("holepunch over a short path (TTL-5 probes arrive)", () => {
  it.effect("a server that refuses punch rounds <- random-NAT client, reused nodes, 10 dials 1 s apart: the probe leaves before the holepunch message, its answer connects each dial, no punch round follows, data flows both ways", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 31, nodes: 12, net: { minDeliveryTtl: 1 } })
      const sp = yield* sim.addPeer("open", { name: "server", config: { quickFirewall: false } })
      assert.isTrue(sp.handle.core.firewalled, "the server thinks itself firewalled, as the lab's reference server did")
      const sent: Array<Sent> = []
      const cp = yield* sim.addPeer("random", { name: "client", transport: recording(sent) })
      let refused = 0
      const server = yield* listen(sp, {
        holepunch: () => {
          refused++
          return false
        }
      })
      const results: Array<string> = []
      const bad: Array<string> = []
      for (let i = 0; i < 10; i++) {
        const before = server.connections.length
        const from = sent.length
        const { dial, outcome } = yield* connect(sim, cp, server, { maxMs: 30_000 })
        // the order on the client's punch socket: the open-session probe, then the holepunch message
        const mine = sent.slice(from)
        const message = mine.findIndex((x) => x.kind === "holepunch")
        const probe = mine.findIndex((x) => x.kind === "probe" && x.ttl === 5 && message >= 0 && x.socket === mine[message]!.socket)
        if (message < 0) bad.push(`#${i}: no holepunch message sent`)
        else if (probe < 0 || probe > message) bad.push(`#${i}: the holepunch message left before the open-session probe`)
        // this dial's socket on the server (every dial comes from the same key pair)
        yield* advanceUntil(() => server.connections.length > before, 5_000, 10)
        const s = server.connections[before] ?? null
        if (s !== null) yield* advanceUntil(() => server.opened.has(s), 5_000, 10)
        if (!outcome.ok || s === null || !server.opened.has(s)) {
          results.push(`#${i} ${describeOutcome(dial)}`)
          bad.push(`#${i}: ${describeOutcome(dial)}${s === null ? " (no socket on the server)" : ""}`)
        } else {
          const x = yield* exchange(sim, dial.socket, s, 4096, i + 1, 5_000)
          results.push(`#${i} ${describeOutcome(dial)}, 4096 B each way in ${x.ms} ms`)
          if (!x.upIntact || !x.downIntact) bad.push(`#${i}: opened ${outcome.path}, then carried ${x.upBytes} B up, ${x.downBytes} B down of 4096`)
          dial.socket.destroy()
          s.destroy()
        }
        yield* advanceUntil(() => false, 1000, 50)
      }
      lines.push(`short path, refusing server: ${results.join(" | ")} (punch rounds refused: ${refused})`)
      assert.deepStrictEqual(bad, [])
      // no punch round: the answer to the probe had connected each dial before it could go out
      assert.strictEqual(refused, 0, "punch rounds sent after the connection")
      assert.deepStrictEqual(sim.livelocks, [])
    }), { timeout: 120_000 })
})

describe("the client's attempt: what the punch protocol waits on", () => {
  it.effect("openSession completes once the probe is handed to the socket; connectedSoFar counts a probe that has arrived but that the attempt's actor has not handled yet", () =>
    Effect.gen(function*() {
      const sim = yield* buildConnectSim({ seed: 32, nodes: 4 })
      const sent: Array<Sent> = []
      const cp = yield* sim.addPeer("random", { name: "client", transport: recording(sent) })
      const a = HolepunchAttempt.make(cp.conn, { initiator: true, remoteFirewall: C.FIREWALL_CONSISTENT })
      assert.isNotNull(a)
      const attempt = a!
      const server = { host: "20.9.9.9", port: 4000 }
      const from = sent.length
      yield* attempt.openSession(server)
      // on the wire already: a request sent next leaves after it
      assert.deepInclude(sent.slice(from), { socket: sent[sent.length - 1]!.socket, to: "20.9.9.9:4000", kind: "probe", ttl: 5 })
      // the server's answer arrives on the attempt's socket (its receiver queues it for the actor) ...
      ;(attempt as unknown as { onDatagram: (i: number, s: unknown, d: unknown) => void }).onDatagram(0, attempt.socket, { from: server, data: new Uint8Array([0]) })
      assert.isFalse(attempt.core.connected, "the actor has not handled the probe yet")
      // ... and is counted by the time connectedSoFar answers
      assert.isTrue(yield* attempt.connectedSoFar())
      const outcome = yield* Deferred.await(attempt.outcome)
      assert.deepStrictEqual(outcome?.address, server)
      // an ended attempt answers at once
      assert.isTrue(yield* attempt.connectedSoFar())
      yield* attempt.openSession(server)
      attempt.release()
    }), { timeout: 60_000 })
})
