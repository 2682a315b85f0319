// The NAT lab: holepunching through real kernel NATs, Omega and the reference
// (hyperdht) side by side.
//
//   npm run natlab                        (builds, then the full matrix)
//   node bench/natlab/run.mjs [options]
//
//   --n N            dials per cell (default 10)
//   --dirs LIST      implementation directions, server/client: oo,or,ro,rr
//                    (o = Omega, r = reference; default all four)
//   --pairings LIST  server-client flavour pairs, e.g. cons-rand,open-cons, or
//                    "all" (default: all 16)
//   --modes LIST     fresh,reused,relay,auto,self (default all)
//   --self N         fresh starts per home and implementation (default 5)
//   --infra KIND     the bootstrap namespace's DHT nodes: ref, omega or mixed
//                    (default ref: the public network is reference nodes)
//   --timeout MS     bound on one dial (default 30000)
//   --quick          the test suite's short run: one dial for a few pairings
//   --out DIR        where results.jsonl, table.md and agents.log go
//                    (default: a new directory under the system's temp dir)
//   --prefix P       name prefix of everything the lab creates (default onl-)
//   --keep           leave the lab up at the end (then: --cleanup)
//   --cleanup        remove leftovers of the lab (namespaces named P*, the
//                    processes in them) and exit
//   --capability     print whether this machine can run the lab (JSON) and
//                    exit: 0 it can, 2 it cannot
//   --no-install     do not apt-get install iptables when it is missing
//   --capture        record every home host's UDP traffic (tcpdump, when
//                    installed) into OUT/<home>.pcap; `node bench/natlab/phases.mjs
//                    OUT` then shows where each cell's dials spent their time
//   --trace          each agent records the instants of Omega's step marks and
//                    datagrams (NATLAB_TRACE) into OUT/trace/<agent>.trace.json;
//                    `node bench/natlab/steps.mjs OUT` then shows the time
//                    between the steps inside the client and the server
//                    (and, with NATLAB_TRACE_CPU=1 in the environment, the
//                    CPU each process spent in each step)
//
// Needs root, iproute2 and iptables (installed with apt-get when missing);
// says so and exits 2 when the machine cannot create network namespaces.
// Steps: build the lab (lab.mjs), prove each NAT behaves as its flavour says
// with plain UDP, start the DHT (a bootstrapper and five persistent nodes) and
// two blind relays in the bootstrap namespace, then the matrix. Everything is
// torn down at the end, on failure and on SIGINT/SIGTERM. Exit code 0 when
// the run completed (whatever the dials did), 1 when the lab failed its own
// checks, 2 when the machine cannot run it.
import { spawn } from "node:child_process"
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as Lab from "./lab.mjs"
import { markdown, summarize } from "./report.mjs"

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, "..", "..")

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

const argv = process.argv.slice(2)
const flag = (name) => argv.includes(`--${name}`)
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt
}
const PREFIX = opt("prefix", "onl-")
const QUICK = flag("quick")
const N = Number(opt("n", QUICK ? 1 : 10))
const TIMEOUT = Number(opt("timeout", 30_000))
const SELF_N = Number(opt("self", QUICK ? 0 : 5))
const INFRA = opt("infra", "ref")
const DIRS_ALL = ["oo", "or", "ro", "rr"]
const DIRS = opt("dirs", DIRS_ALL.join(",")).split(",").filter(Boolean)
const MODES = opt("modes", QUICK ? "fresh,auto" : "fresh,reused,relay,auto,self").split(",").filter(Boolean)
const SHORTS = { open: "open", fw: "firewalled", cons: "consistent", rand: "random" }
const ALL_PAIRINGS = Lab.FLAVOURS.flatMap((s) => Lab.FLAVOURS.map((c) => [s, c]))
const parsePairings = (v) =>
  v === "all"
    ? ALL_PAIRINGS
    : v.split(",").filter(Boolean).map((p) => {
        const [s, c] = p.split("-").map((x) => SHORTS[x] ?? x)
        if (!Lab.FLAVOURS.includes(s) || !Lab.FLAVOURS.includes(c)) throw new Error(`bad pairing ${p} (use open|fw|cons|rand, e.g. cons-rand)`)
        return [s, c]
      })
const PAIRINGS = parsePairings(opt("pairings", "all"))

// the test suite's short run: (server flavour, client flavour, direction)
const QUICK_PLAN = [
  ["open", "consistent", "oo"],
  ["consistent", "consistent", "oo"],
  ["consistent", "random", "oo"],
  ["random", "random", "oo"],
  ["consistent", "consistent", "or"],
  ["consistent", "consistent", "ro"]
]

if (flag("capability")) {
  const c = Lab.capability({ prefix: PREFIX, install: !flag("no-install") })
  console.log(JSON.stringify(c))
  process.exit(c.ok ? 0 : 2)
}

const OUT = opt("out", null) ?? mkdtempSync(path.join(os.tmpdir(), "natlab-"))
mkdirSync(OUT, { recursive: true })
const TRACE_DIR = flag("trace") ? path.join(OUT, "trace") : ""
if (TRACE_DIR !== "") mkdirSync(TRACE_DIR, { recursive: true })
const RESULTS = path.join(OUT, "results.jsonl")
const AGENT_LOG = path.join(OUT, "agents.log")
writeFileSync(RESULTS, "")
writeFileSync(AGENT_LOG, "")

const say = (...a) => console.log(`[natlab ${new Date().toISOString().slice(11, 19)}] ${a.join(" ")}`)
const record = (obj) => appendFileSync(RESULTS, `${JSON.stringify({ t: new Date().toISOString(), ...obj })}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

if (flag("cleanup")) {
  const removed = Lab.cleanup(PREFIX)
  say(removed.length === 0 ? `nothing to clean up (prefix ${PREFIX})` : `removed ${removed.length} namespaces: ${removed.join(" ")}`)
  process.exit(0)
}

// ---------------------------------------------------------------------------
// Capability
// ---------------------------------------------------------------------------

const cap = Lab.capability({ prefix: PREFIX, install: !flag("no-install"), log: say })
if (!cap.ok) {
  say(`CANNOT RUN THE NAT LAB: ${cap.reason}`)
  record({ kind: "capability", ok: false, reason: cap.reason })
  process.exit(2)
}
record({ kind: "capability", ok: true, iptables: cap.iptables, installed: cap.installed })
if (!existsSync(path.join(root, "dist", "index.js"))) {
  say("dist/ is missing: run `npm run build` first (npm run natlab does)")
  process.exit(2)
}

// ---------------------------------------------------------------------------
// Agents: one node process per namespace, JSON lines both ways
// ---------------------------------------------------------------------------

class Agent {
  constructor(ns, name) {
    this.name = name
    this.pending = new Map()
    this.seq = 0
    this.exited = false
    // NATLAB_NODE_FLAGS: extra node flags for every agent (e.g. "--cpu-prof --cpu-prof-dir=DIR")
    const nodeFlags = (process.env.NATLAB_NODE_FLAGS ?? "").split(" ").filter(Boolean)
    this.child = spawn("ip", ["netns", "exec", ns, process.execPath, ...nodeFlags, path.join(here, "agent.mjs"), name], {
      cwd: root,
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, OMEGA_BOOTSTRAP: "", ...(TRACE_DIR !== "" ? { NATLAB_TRACE: TRACE_DIR } : {}) }
    })
    this.child.stdin.on("error", () => {})
    readline.createInterface({ input: this.child.stderr }).on("line", (l) => appendFileSync(AGENT_LOG, `${l}\n`))
    this.started = new Promise((resolve, reject) => {
      this.pending.set(0, { resolve, reject })
    })
    readline.createInterface({ input: this.child.stdout }).on("line", (line) => {
      let msg
      try {
        msg = JSON.parse(line)
      } catch {
        return appendFileSync(AGENT_LOG, `[${name} stdout] ${line}\n`)
      }
      const p = this.pending.get(msg.id)
      if (!p) return
      this.pending.delete(msg.id)
      if (msg.ok) p.resolve(msg.result)
      else p.reject(Object.assign(new Error(`${name}: ${msg.error}`), { code: msg.code }))
    })
    this.child.on("exit", (code, signal) => {
      this.exited = true
      for (const p of this.pending.values()) p.reject(new Error(`${name}: agent exited (${code ?? signal})`))
      this.pending.clear()
    })
  }

  call(op, args = {}, timeoutMs = 60_000) {
    if (this.exited) return Promise.reject(new Error(`${this.name}: agent is gone`))
    const id = ++this.seq
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.name}: ${op} timed out after ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e))
      })
      this.child.stdin.write(`${JSON.stringify({ id, op, ...args })}\n`)
    })
  }

  async stop() {
    if (this.exited) return
    await this.call("shutdown", {}, 15_000).catch(() => {})
    this.child.stdin.end()
    const deadline = Date.now() + 3000
    while (!this.exited && Date.now() < deadline) await sleep(50)
    if (!this.exited) this.child.kill("SIGKILL")
  }
}

// ---------------------------------------------------------------------------
// Teardown on every way out
// ---------------------------------------------------------------------------

let lab = null
const agents = new Map()
const captures = []
let tornDown = false
const teardown = () => {
  if (tornDown) return
  tornDown = true
  for (const a of agents.values()) if (!a.exited) a.child.kill("SIGKILL")
  for (const c of captures) if (c.exitCode === null) c.kill("SIGKILL")
  if (lab !== null && !flag("keep")) {
    const removed = Lab.cleanup(PREFIX)
    say(`lab torn down (${removed.length} namespaces removed)`)
  } else if (lab !== null) say(`lab left up (--keep): remove it with node bench/natlab/run.mjs --cleanup --prefix ${PREFIX}`)
}
process.on("exit", teardown)
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    say(`${sig}: tearing down`)
    teardown()
    process.exit(130)
  })
}
process.on("uncaughtException", (err) => {
  say(`failed: ${err?.stack ?? err}`)
  teardown()
  process.exit(1)
})

// ---------------------------------------------------------------------------
// Packet captures (--capture): what phases.mjs reads
// ---------------------------------------------------------------------------

const startCaptures = (homes) => {
  const tcpdump = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump", "/bin/tcpdump", "/sbin/tcpdump"].find((p) => existsSync(p))
  if (tcpdump === undefined) {
    say("--capture: tcpdump is not installed (apt-get install -y tcpdump); no captures this run")
    return
  }
  for (const h of homes) {
    const child = spawn("ip", ["netns", "exec", h.ns, tcpdump, "-i", "any", "-n", "-U", "-s", "600", "-w", path.join(OUT, `${h.name}.pcap`), "udp"], {
      stdio: ["ignore", "ignore", "ignore"]
    })
    child.on("error", () => {})
    captures.push(child)
  }
  say(`capturing UDP in ${homes.length} homes (${OUT}/<home>.pcap)`)
}

const stopCaptures = async () => {
  for (const c of captures) if (c.exitCode === null) c.kill("SIGTERM")
  const deadline = Date.now() + 3000
  while (captures.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) await sleep(50)
}

// ---------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------

/** Plain UDP: each home's mapping and filtering, as its flavour says. */
const udpCheck = async (core, homes) => {
  const port = 7001
  const { observers } = await core.call("udp-observe", { observers: Lab.CORE.observers, port, stranger: Lab.CORE.stranger })
  const results = []
  for (const h of homes) {
    const a = agents.get(h.name)
    const probe = await a.call("udp-probe", { observers }, 10_000)
    const [s1, s2] = probe.seen
    if (s1 !== null) await core.call("udp-inject", { to: s1 })
    const { received } = await a.call("udp-collect", { waitMs: 400 }, 10_000)
    const [ip1, p1] = s1 ? s1.split(":") : [null, null]
    const [ip2, p2] = s2 ? s2.split(":") : [null, null]
    const answered = s1 !== null && s2 !== null
    const mappedIp = ip1
    const samePort = p1 === p2
    const preserved = Number(p1) === probe.localPort
    const unsolicitedIn = received.length > 0
    let expect
    let ok
    switch (h.flavour) {
      case "open":
        expect = "no NAT (seen as the host's own address and port), unsolicited datagrams come in"
        ok = answered && mappedIp === h.host && ip2 === h.host && preserved && samePort && unsolicitedIn
        break
      case "firewalled":
        expect = "no NAT, unsolicited datagrams dropped"
        ok = answered && mappedIp === h.host && preserved && samePort && !unsolicitedIn
        break
      case "consistent":
        expect = "NAT to the router's address, the same (preserved) port toward every destination, unsolicited dropped"
        ok = answered && mappedIp === h.wan && ip2 === h.wan && samePort && preserved && !unsolicitedIn
        break
      case "random":
        expect = "NAT to the router's address, a different port per destination, unsolicited dropped"
        ok = answered && mappedIp === h.wan && ip2 === h.wan && !samePort && !unsolicitedIn
        break
    }
    const r = { kind: "udp-check", home: h.name, flavour: h.flavour, ok, localPort: probe.localPort, seen: probe.seen, unsolicitedReceived: received, expect }
    record(r)
    results.push(r)
    say(`udp check ${h.name.padEnd(6)} ${ok ? "ok  " : "FAIL"} local :${probe.localPort} seen ${probe.seen.join(" / ")} unsolicited ${unsolicitedIn ? `in (${received.join(",")})` : "dropped"}`)
  }
  return results
}

const IMPL_OF = { o: "omega", r: "ref" }
const homeOf = (flavour, n) => lab.homes.find((h) => h.flavour === flavour && h.name.endsWith(String(n)))

/** One dial: a server in the server home, a client in the client home (fresh nodes unless `reuse`). */
const oneDial = async ({ serverFlavour, clientFlavour, dir, mode, i, relay = null, handle = null, key = null, serverNat = null, serverRelay = null }) => {
  const sh = homeOf(serverFlavour, 1)
  const ch = homeOf(clientFlavour, 2)
  const sImpl = IMPL_OF[dir[0]]
  const cImpl = IMPL_OF[dir[1]]
  const sa = agents.get(sh.name)
  const ca = agents.get(ch.name)
  const reuse = mode === "reused"
  let served = null
  const base = { kind: "dial", mode, pairing: `${serverFlavour}-${clientFlavour}`, server: sh.name, client: ch.name, dir, serverImpl: sImpl, clientImpl: cImpl, i, relay: relay?.impl ?? null }
  try {
    if (key === null) {
      served = await sa.call("serve", { impl: sImpl, reuse, relayThrough: serverRelay }, 40_000)
      handle = served.handle
      key = served.publicKey
    }
    const d = await ca.call("dial", { impl: cImpl, key, reuse, timeoutMs: TIMEOUT, relayThrough: relay?.publicKey ?? null }, TIMEOUT + 40_000)
    let server = null
    if (served !== null) server = await sa.call("unserve", { handle }, 20_000)
    const r = { ...base, ...d, serverNat: served?.nat ?? serverNat, serverSide: server }
    record(r)
    return r
  } catch (err) {
    if (served !== null) await sa.call("unserve", { handle }, 20_000).catch(() => {})
    const r = { ...base, ok: false, code: "LAB_ERROR", message: err.message }
    record(r)
    return r
  }
}

const line = (r) =>
  `${r.mode.padEnd(6)} ${r.pairing.padEnd(22)} ${r.dir} #${r.i} ${r.ok ? `open ${String(r.openMs).padStart(7)} ms ${r.path}` : `FAIL ${r.code}${r.failMs ? ` after ${r.failMs} ms` : ""}`}` +
  ` (nat ${r.serverNat?.class ?? r.serverSide?.nat?.class ?? "?"}/${r.nat?.class ?? "?"})${r.relay ? ` relay ${r.relay}` : ""}`

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

const main = async () => {
  const t0 = Date.now()
  say(`iptables backend: ${cap.iptables}${cap.installed ? " (installed now)" : ""}; results in ${OUT}`)
  lab = Lab.build({ prefix: PREFIX, ipt: cap.iptables, log: say })
  say(`lab up: ${lab.namespaces.length} namespaces (${PREFIX}*)`)
  record({ kind: "lab", prefix: PREFIX, namespaces: lab.namespaces, homes: lab.homes, infra: INFRA })

  const core = new Agent(lab.core, "core")
  agents.set("core", core)
  for (const h of lab.homes) agents.set(h.name, new Agent(h.ns, h.name))
  await Promise.all([...agents.values()].map((a) => Promise.race([a.started, sleep(30_000).then(() => Promise.reject(new Error(`${a.name}: agent did not start`)))])))
  say(`agents up (${agents.size})`)
  if (flag("capture")) startCaptures(lab.homes)

  const checks = await udpCheck(core, lab.homes)
  if (!checks.every((c) => c.ok)) {
    say("the plain-UDP check failed: the NATs do not behave as their flavours say; no DHT run")
    return 1
  }

  const infra = await core.call("infra", { impl: INFRA, port: 49737, bootstrapper: Lab.CORE.bootstrapper, nodes: Lab.CORE.nodes }, 60_000)
  record({ kind: "infra", ...infra })
  say(`DHT up: bootstrapper ${infra.bootstrap.join(",")}, ${infra.nodes.length} persistent nodes (${INFRA}): ${infra.nodes.map((n) => `${n.host} ${n.class}`).join(", ")}`)
  const relays = []
  if (MODES.includes("relay")) {
    for (const [implName, host] of [["ref", Lab.CORE.refRelay], ["omega", Lab.CORE.omegaRelay]]) {
      const r = await core.call("relay", { impl: implName, host, port: 49737 }, 60_000)
      relays.push({ impl: implName, ...r })
      say(`blind relay (${implName}) at ${host}: ${r.publicKey.slice(0, 16)}…`)
    }
  }
  // an Omega node with `relay: true` (port 49738 beside the configured Omega relay): found through the relay topic
  let autoRelay = null
  if (MODES.includes("auto")) {
    autoRelay = await core.call("auto-relay", { host: Lab.CORE.omegaRelay, port: 49738 }, 60_000)
    record({ kind: "auto-relay", ...autoRelay })
    say(`auto relay (Omega, relay: true) at ${autoRelay.host}: ${autoRelay.publicKey.slice(0, 16)}…, announced ${autoRelay.announcedMs} ms after ready`)
  }
  const relayHosts = [Lab.CORE.refRelay, Lab.CORE.omegaRelay]
  for (const h of lab.homes) await agents.get(h.name).call("setBootstrap", { list: infra.bootstrap, relayHosts })

  const all = []

  if (MODES.includes("self") && SELF_N > 0) {
    say(`fresh starts: ${SELF_N} per home and implementation`)
    for (let i = 0; i < SELF_N; i++) {
      for (const h of lab.homes) {
        for (const implName of ["omega", "ref"]) {
          try {
            const r = await agents.get(h.name).call("selfcheck", { impl: implName, waitMs: 3000 }, 40_000)
            const rec = { kind: "self", home: h.name, flavour: h.flavour, impl: implName, i, ...r }
            record(rec)
            all.push(rec)
            say(`self ${h.name.padEnd(6)} ${implName.padEnd(5)} #${i} ready ${r.atReady.ms} ms: ${r.atReady.class} -> ${r.later.class} (host ${r.later.host}:${r.later.port})`)
          } catch (err) {
            const rec = { kind: "self", home: h.name, flavour: h.flavour, impl: implName, i, error: err.message }
            record(rec)
            all.push(rec)
            say(`self ${h.name} ${implName} #${i} FAILED: ${err.message}`)
          }
        }
      }
    }
  }

  if (QUICK) {
    for (const [s, c, dir] of QUICK_PLAN) {
      const r = await oneDial({ serverFlavour: s, clientFlavour: c, dir, mode: "fresh", i: 0 })
      all.push(r)
      say(line(r))
    }
  } else {
    if (MODES.includes("fresh")) {
      say(`fresh nodes: ${PAIRINGS.length} pairings x ${DIRS.length} directions x ${N} dials`)
      for (const [s, c] of PAIRINGS) {
        for (let i = 0; i < N; i++) {
          for (const dir of DIRS) {
            const r = await oneDial({ serverFlavour: s, clientFlavour: c, dir, mode: "fresh", i })
            all.push(r)
            say(line(r))
          }
        }
      }
    }
    if (MODES.includes("reused")) {
      say(`reused nodes: one node per side, ${N} dials 1 s apart`)
      for (const [s, c] of PAIRINGS) {
        for (const dir of DIRS) {
          const sa = agents.get(homeOf(s, 1).name)
          const ca = agents.get(homeOf(c, 2).name)
          let served
          try {
            served = await sa.call("serve", { impl: IMPL_OF[dir[0]], reuse: true }, 40_000)
          } catch (err) {
            record({ kind: "dial", mode: "reused", pairing: `${s}-${c}`, dir, ok: false, code: "LAB_ERROR", message: err.message })
            continue
          }
          for (let i = 0; i < N; i++) {
            if (i > 0) await sleep(1000)
            const r = await oneDial({ serverFlavour: s, clientFlavour: c, dir, mode: "reused", i, handle: served.handle, key: served.publicKey, serverNat: served.nat })
            all.push(r)
            say(line(r))
          }
          const server = await sa.call("unserve", { handle: served.handle }, 20_000).catch((e) => ({ error: e.message }))
          record({ kind: "reused-server", pairing: `${s}-${c}`, dir, server })
          await sa.call("release", {}, 30_000).catch(() => {})
          await ca.call("release", {}, 30_000).catch(() => {})
        }
      }
    }
    if (MODES.includes("relay")) {
      say(`random-random through a blind relay (relayThrough on the client): ${N} dials per relay and direction`)
      for (const relay of relays) {
        for (let i = 0; i < N; i++) {
          for (const dir of DIRS) {
            const r = await oneDial({ serverFlavour: "random", clientFlavour: "random", dir, mode: "relay", i, relay })
            all.push(r)
            say(line(r))
          }
        }
      }
    }
  }

  if (MODES.includes("auto")) {
    // Omega sides say relayThrough: 'auto' (the client falls back on a relay after the punch fails,
    // or offers one up front once it knows its NAT randomizes; a server behind a randomizing NAT
    // offers one); the reference has no such option, so reference <-> reference is left out
    const autoDirs = QUICK ? ["oo"] : DIRS.filter((d) => d !== "rr")
    say(`random-random with an auto relay available (relayThrough: 'auto' on the Omega sides): ${N} dials per direction`)
    for (let i = 0; i < N; i++) {
      for (const dir of autoDirs) {
        const r = await oneDial({
          serverFlavour: "random",
          clientFlavour: "random",
          dir,
          mode: "auto",
          i,
          relay: dir[1] === "o" ? { impl: "auto", publicKey: "auto" } : null,
          serverRelay: dir[0] === "o" ? "auto" : null
        })
        all.push(r)
        say(line(r))
      }
    }
  }
  const guard = Lab.guardDrops(lab)
  const filtered = Lab.filterDrops(lab)
  record({ kind: "guard", drops: guard })
  record({ kind: "filter", drops: filtered })
  const guardTotal = Object.values(guard).reduce((a, g) => a + g.packets, 0)
  say(guardTotal === 0 ? "guard: nothing addressed outside the lab" : `guard dropped ${guardTotal} packets addressed outside the lab: ${JSON.stringify(guard)}`)
  say(`stateful filters dropped (unsolicited from the internet): ${JSON.stringify(filtered)}`)

  const summary = summarize(all)
  const md = markdown(summary, { n: N, infra: INFRA, iptables: cap.iptables, minutes: (Date.now() - t0) / 60_000, guardTotal, command: `node bench/natlab/run.mjs ${argv.join(" ")}`.trim() })
  writeFileSync(path.join(OUT, "table.md"), md)
  record({ kind: "summary", summary })
  console.log(`\n${md}`)
  say(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s; results: ${RESULTS}, table: ${path.join(OUT, "table.md")}`)
  return 0
}

let code = 1
try {
  code = await main()
} catch (err) {
  say(`failed: ${err?.stack ?? err}`)
  code = 1
} finally {
  await Promise.all([...agents.values()].map((a) => a.stop().catch(() => {})))
  await stopCaptures()
  teardown()
}
process.exit(code)
