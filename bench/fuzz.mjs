// Live fuzzing (issue 21, item 2): random and mutated datagrams of every
// message kind at a live Omega node and its connections over real UDP on
// 127.0.0.1, then the checks: no crash, no escaped exception, an honest
// routing table, intact records, connections that still carry data, a node
// that still answers real peers (bench/fuzz/run.mjs has the details).
//
//   npm run fuzz -- --count 1000000 [--seed N] [--burst 64] [--window 256] [--json]
//
// Exits 1 when a check fails. Sends only to ports of this run on 127.0.0.1.
process.env["OMEGA_BOOTSTRAP"] = ""
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
// the reference's default bootstrap list is never used either
require("hyperdht/lib/constants.js").BOOTSTRAP_NODES.length = 0

const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  if (i === -1) return dflt
  const v = Number(args[i + 1])
  if (!Number.isFinite(v) || v < 0) {
    console.error(`--${name} needs a number`)
    process.exit(2)
  }
  return v
}
const count = opt("count", 100_000)
const seed = opt("seed", 1)
const burst = opt("burst", 64)
const window = opt("window", 256)
const json = args.includes("--json")

const { Gateway } = await import("../dist/index.js")
const Rpc = await import("../dist/protocol/dht-rpc.js")
const Records = await import("../dist/protocol/records.js")
const Connect = await import("../dist/protocol/connect.js")
const Udx = await import("../dist/protocol/udx.js")
const E = await import("../dist/protocol/encoding.js")
const { runFuzz } = await import("./fuzz/run.mjs")

const t0 = performance.now()
const s = await runFuzz({ Gateway, Rpc, Records, Connect, Udx, E }, { count, seed, burst, window, log: (m) => console.log(m) })
const totalMs = performance.now() - t0

if (json) console.log(JSON.stringify(s, null, 2))
const pad = (x, n) => String(x).padStart(n)
console.log(`\n== fuzz summary (seed ${s.seed}) ==`)
console.log(`datagrams sent    ${s.count} in ${(s.runMs / 1000).toFixed(1)} s (${s.rate}/s; whole run with setup and checks ${(totalMs / 1000).toFixed(1)} s)`)
console.log(`pacing            bursts of ${s.burst}, at most ${s.window} not yet received by the node; ${s.waitedOut} waits timed out, ${s.writtenOff} datagrams written off as lost`)
console.log(`received by T     ${s.received} (server ${s.sentTo.server} + client ${s.sentTo.client} sent to it)`)
console.log("per kind:")
for (const [k, v] of Object.entries(s.perKind).sort()) console.log(`  ${k.padEnd(20)} ${pad(v, 8)}`)
console.log(`node counters     rpc dropped ${s.node.rpcDropped}, unmatched responses ${s.node.rpcUnmatched}, its requests timed out ${s.node.requestsTimedOut}, socket dropped ${s.node.socketDropped}`)
console.log(`                  udx routed ${s.node.udxRouted}, unknown id ${s.node.udxUnknownId}, firewalled ${s.node.udxFirewalled}, defects ${s.node.udxDefects}`)
console.log(`                  handshakes ${s.node.handshakes} (bad ${s.node.badHandshakes}, refused ${s.node.handshakesRefused}), holepunches ignored ${s.node.holepunchesIgnored}`)
console.log(`live responses    T made ${s.live.started} requests to the responder, it got ${s.live.requests} and sent ${s.live.responses} responses (${s.live.withOwnId} valid with its own id)`)
console.log(`victim conns      ${s.victims.opened} opened, ${s.victims.closed} closed by injected frames/packets, ${s.victims.dialFailures} redial failures; errors on T's side: ${s.serverErrors.typed} typed, ${s.serverErrors.untyped} untyped`)
console.log(`blocked sends     ${s.blockedSends.count} (to addresses outside this run: ${s.blockedSends.nonLoopback} non-loopback) ${s.blockedSends.samples.slice(0, 4).join(" ")}`)
const c = s.checks
console.log("checks:")
console.log(`  crashes 0, uncaught ${c.uncaught}, unhandled rejections ${c.unhandled}, node 'error' events ${c.gatewayErrors}`)
console.log(`  ping from Omega ${c.pingFromOmega}, from the reference ${c.pingFromReference}; reference lookup found the record ${c.referenceLookupPeers} time(s); reference findNode reaches T ${c.referenceFindNodeReachesT}`)
console.log(`  table before [${c.tableBefore.join(" ")}]`)
console.log(`  table after  [${c.tableAfter.join(" ")}]${c.fuzzerResponderAnsweredProperly ? " (the responder socket answered real requests with its own id)" : ""}`)
console.log(`  records intact ${c.recordsIntact}; sentinel connection after: up ${c.sentinel.up} B ok ${c.sentinel.upOk}, down ${c.sentinel.down} B ok ${c.sentinel.downOk}; new connection ok ${c.freshConnection.upOk && c.freshConnection.downOk}`)
if (s.failures.length > 0) {
  console.log(`FAILED: ${s.failures.join("; ")}`)
  if (s.sentinelState !== null) console.log(`sentinel stream state: ${JSON.stringify(s.sentinelState)}`)
  for (const e of [...s.escaped.uncaught, ...s.escaped.unhandled, ...s.escaped.gatewayErrors]) console.log(e)
  process.exit(1)
}
console.log("all checks passed")
process.exit(0)
