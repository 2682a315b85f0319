// Where a dial's time goes, read off the wire: the packet captures of a lab run
// made with `--capture` (tcpdump in every home's host namespace), lined up with
// each dial's connect() and 'open' instants (results.jsonl, `at`).
//
//   node bench/natlab/phases.mjs OUTDIR      (the run's --out directory; needs `npm run build`)
//
// Per cell (mode, pairing, implementations), the median of each step of the
// dial, in ms, in the order they happen:
//
//   conn→FP   connect() to the client's first FIND_PEER on the wire
//   FP→rec    that request to the first reply carrying the server's record
//   rec→HS    that reply to the client's first PEER_HANDSHAKE
//   relay→S   the handshake's way through its relay node to the server
//   S:HS      the server: handshake in, its reply out (Noise, punch socket)
//   S→C       the reply's way back through the relay
//   C:HP      the client: handshake reply in, its first PEER_HOLEPUNCH out
//   S:HP      the server: holepunch message in, its answer out
//   C:UDX     the client: holepunch answer in, its first UDX packet out
//   UDX→open  the client's first UDX packet to its 'open' event
//   open      connect() to 'open' (as the dial measured it)
//   C pkts    datagrams the client sent from its first FIND_PEER to its first UDX packet
//
// plus the client's CPU from connect() to 'open' (the agent's process.cpuUsage,
// `cpuMs`). A step that did not happen in a dial (a direct path has no
// holepunch) is left out of that dial. Only dials that opened count; the
// first dial of each cell is left out (it pays the first use of the code).
import { readdirSync, readFileSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const Rpc = await import(path.join(here, "..", "..", "dist", "protocol", "dht-rpc.js"))

const dir = process.argv[2]
if (dir === undefined) {
  console.error("usage: node bench/natlab/phases.mjs OUTDIR (a run made with --capture)")
  process.exit(2)
}

// ---- pcap (Linux "any" captures: LINUX_SLL2, or LINUX_SLL) ----------------------------------

const readPcap = (file) => {
  const b = readFileSync(file)
  if (b.length < 24) return []
  const le = b.readUInt32LE(0) === 0xa1b2c3d4
  const u32 = (o) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o))
  const linktype = u32(20)
  const linkLen = linktype === 276 ? 20 : linktype === 113 ? 16 : -1
  if (linkLen < 0) throw new Error(`${file}: link type ${linktype} (expected a capture on "any")`)
  const out = []
  for (let o = 24; o + 16 <= b.length;) {
    const t = u32(o) * 1000 + u32(o + 4) / 1000
    const incl = u32(o + 8)
    const d = b.subarray(o + 16, o + 16 + incl)
    o += 16 + incl
    const ip = d.subarray(linkLen)
    if (ip.length < 28 || ip[0] >> 4 !== 4 || ip[9] !== 17) continue
    const ihl = (ip[0] & 15) * 4
    const udp = ip.subarray(ihl)
    out.push({
      t,
      src: `${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`,
      dst: `${ip[16]}.${ip[17]}.${ip[18]}.${ip[19]}`,
      payload: udp.subarray(8)
    })
  }
  return out
}

const COMMANDS = { 0: "HANDSHAKE", 1: "HOLEPUNCH", 2: "FIND_PEER" }
/** What a datagram is: a request of a connect command, a response (with a value or not), UDX, or other; and its tid. */
const classify = (payload) => {
  if (payload.length > 0 && payload[0] === 0xff) return { kind: "udx", tid: -1 }
  const m = Rpc.decodeMessage(payload)
  const v = m.success ?? null
  if (v === null || v === undefined) return { kind: "other", tid: -1 }
  if (v._tag === "Request") {
    const q = v.request
    return { kind: q.internal ? "other" : `req:${COMMANDS[q.command] ?? q.command}`, tid: q.tid }
  }
  return { kind: v.response.value !== null ? "res:value" : "res", tid: v.response.tid }
}

// ---- the run ------------------------------------------------------------------------------

const lines = readFileSync(path.join(dir, "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
const labLine = lines.find((r) => r.kind === "lab")
if (labLine === undefined) throw new Error("results.jsonl has no lab line")
const hostOf = new Map(labLine.homes.map((h) => [h.name, h.host]))
const captures = new Map()
for (const f of readdirSync(dir)) {
  const m = /^(.+)\.pcap$/.exec(f)
  if (m !== null) captures.set(m[1], readPcap(path.join(dir, f)))
}
if (captures.size === 0) {
  console.error(`no captures in ${dir}: run the lab with --capture (tcpdump)`)
  process.exit(2)
}

const dials = lines.filter((r) => r.kind === "dial" && r.ok && r.at?.connect != null && r.at?.open != null)
const STEPS = ["conn→FP", "FP→rec", "rec→HS", "relay→S", "S:HS", "S→C", "C:HP", "S:HP", "C:UDX", "UDX→open", "open", "C pkts", "C cpu"]
const cells = new Map()
const seenCell = new Set()
for (const r of dials) {
  const cell = `${r.mode} | ${r.pairing} | ${r.dir}${r.relay ? ` via ${r.relay}` : ""}`
  if (!seenCell.has(cell)) {
    seenCell.add(cell) // the cell's first dial: cold code
    continue
  }
  const cHost = hostOf.get(r.client)
  const sHost = hostOf.get(r.server)
  const from = r.at.connect - 1
  const to = r.at.open + 50
  const inWindow = (p) => p.t >= from && p.t <= to
  const cli = (captures.get(r.client) ?? []).filter(inWindow).map((p) => ({ ...p, out: p.src === cHost, ...classify(p.payload) }))
  const srv = (captures.get(r.server) ?? []).filter(inWindow).map((p) => ({ ...p, out: p.src === sHost, ...classify(p.payload) }))
  // the dial's own steps happen before 'open' (the reference's client sends its first UDX packet right after it)
  const until = r.at.open + 5
  const first = (list, out, kind, after = -Infinity) => list.find((p) => p.out === out && p.kind === kind && p.t >= after && p.t <= until) ?? null
  /** The first response (with a value) to one of the client's `kind` requests. */
  const answer = (kind, after) => {
    const tids = new Set(cli.filter((p) => p.out && p.kind === kind).map((p) => p.tid))
    return cli.find((p) => !p.out && p.kind === "res:value" && tids.has(p.tid) && p.t >= after && p.t <= until) ?? null
  }
  const fp = first(cli, true, "req:FIND_PEER", r.at.connect)
  const rec = fp && answer("req:FIND_PEER", fp.t)
  const hs = first(cli, true, "req:HANDSHAKE", r.at.connect)
  const hsIn = hs && first(srv, false, "req:HANDSHAKE", hs.t)
  const hsOut = hsIn && first(srv, true, "req:HANDSHAKE", hsIn.t)
  const hsBack = hsOut && answer("req:HANDSHAKE", hsOut.t)
  const hp = hsBack && first(cli, true, "req:HOLEPUNCH", hsBack.t)
  const hpIn = hp && first(srv, false, "req:HOLEPUNCH", hp.t)
  const hpOut = hpIn && first(srv, true, "req:HOLEPUNCH", hpIn.t)
  const hpBack = hpOut && answer("req:HOLEPUNCH", hpOut.t)
  const udx = first(cli, true, "udx", hsBack?.t ?? r.at.connect)
  const d = (a, b) => (a && b ? b.t - a.t : null)
  const got = {
    "conn→FP": fp ? fp.t - r.at.connect : null,
    "FP→rec": d(fp, rec),
    "rec→HS": d(rec, hs),
    "relay→S": d(hs, hsIn),
    "S:HS": d(hsIn, hsOut),
    "S→C": d(hsOut, hsBack),
    "C:HP": d(hsBack, hp),
    "S:HP": d(hpIn, hpOut),
    "C:UDX": d(hpBack ?? hsBack, udx),
    "UDX→open": udx ? r.at.open - udx.t : null,
    open: r.openMs,
    "C pkts": udx && fp ? cli.filter((p) => p.out && p.t >= fp.t && p.t <= udx.t).length : null,
    "C cpu": r.cpuMs ?? null
  }
  if (!cells.has(cell)) cells.set(cell, new Map(STEPS.map((s) => [s, []])))
  const c = cells.get(cell)
  for (const s of STEPS) if (got[s] !== null && got[s] !== undefined) c.get(s).push(got[s])
}

const median = (a) => {
  if (a.length === 0) return null
  const s = [...a].sort((x, y) => x - y)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
console.log(`| cell (mode, server ← client, dir) | dials | ${STEPS.join(" | ")} |`)
console.log(`|---|---|${STEPS.map(() => "---").join("|")}|`)
for (const [cell, c] of cells) {
  const n = Math.max(...[...c.values()].map((a) => a.length))
  const fmt = (s) => {
    const m = median(c.get(s))
    if (m === null) return "—"
    return s === "C pkts" ? String(Math.round(m)) : m.toFixed(2)
  }
  console.log(`| ${cell} | ${n} | ${STEPS.map(fmt).join(" | ")} |`)
}
