// The NAT lab's network: Linux network namespaces joined by veth pairs and a
// bridge as a small "internet", homes behind routers of four flavours.
//
//   <prefix>inet      the internet: a bridge (br0, 11.77.0.1/24) that routes
//                     the open and firewalled homes' public subnets
//   <prefix>core      bootstrap namespace: 11.77.0.2-.29 (DHT nodes, relays,
//                     plain-UDP observers), on the bridge
//   <prefix>r-<home>  a home's router: wan 11.77.0.(100+i)/24 on the bridge
//   <prefix>h-<home>  the home's only host
//
// Flavours (the router's rules, iptables inside the router namespace only):
//   open        no NAT, no filter; host 11.77.i.2/24 (public)
//   firewalled  no NAT; stateful filter: only replies come in; host 11.77.i.2
//   consistent  MASQUERADE (port-preserving, endpoint-independent mapping) and
//               the stateful filter; host 192.168.i.2/24
//   random      MASQUERADE --random-fully (a new port per destination) and the
//               stateful filter; host 192.168.i.2/24
//
// "Public" addresses are 11.77.0.0/16: not private or reserved for hyperdht's
// bogon checks, yet reachable only inside the lab (no namespace has a link to
// the machine's own network). Every namespace also has a guard chain in its
// iptables (OUTPUT and FORWARD) that drops and counts anything addressed
// outside the lab's subnets. Nothing here touches the initial namespace: links
// are created inside the lab's namespaces, iptables runs only through
// `ip netns exec <lab namespace>`.
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync } from "node:fs"

export const PUBLIC_NET = "11.77.0.0/16"
export const PRIVATE_NET = "192.168.0.0/16"
// what the guard lets through: the lab's subnets, loopback, and link-local
// multicast (224.0.0.0/24: the kernel's IGMP reports when the bridge comes up;
// never forwarded off its link)
export const LAB_NETS = [PUBLIC_NET, PRIVATE_NET, "127.0.0.0/8", "224.0.0.0/24"]
export const INET_ADDR = "11.77.0.1"
export const CORE = {
  bootstrapper: "11.77.0.2",
  nodes: ["11.77.0.3", "11.77.0.4", "11.77.0.5", "11.77.0.6", "11.77.0.7"],
  refRelay: "11.77.0.8",
  omegaRelay: "11.77.0.9",
  observers: ["11.77.0.20", "11.77.0.21"],
  stranger: "11.77.0.22"
}
export const CORE_ADDRS = [CORE.bootstrapper, ...CORE.nodes, CORE.refRelay, CORE.omegaRelay, ...CORE.observers, CORE.stranger]
export const FLAVOURS = ["open", "firewalled", "consistent", "random"]
export const SHORT = { open: "open", firewalled: "fw", consistent: "cons", random: "rand" }

/** The homes: two of each flavour, one host each. */
export const HOMES = FLAVOURS.flatMap((flavour, f) =>
  [1, 2].map((n) => {
    const index = f * 2 + n // 1..8
    const nat = flavour === "consistent" || flavour === "random"
    return {
      name: `${SHORT[flavour]}${n}`,
      flavour,
      index,
      wan: `11.77.0.${100 + index}`,
      lanNet: nat ? `192.168.${index}.0/24` : `11.77.${index}.0/24`,
      gateway: nat ? `192.168.${index}.1` : `11.77.${index}.1`,
      host: nat ? `192.168.${index}.2` : `11.77.${index}.2`,
      // the address the internet sees the host at
      public: nat ? `11.77.0.${100 + index}` : `11.77.${index}.2`
    }
  })
)

const CMD_TIMEOUT = 15_000

/** Run a command (bounded), throw with its stderr on failure. */
const run = (cmd, args, opts = {}) => {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", timeout: CMD_TIMEOUT, stdio: ["ignore", "pipe", "pipe"], ...opts })
  } catch (err) {
    const stderr = err.stderr ? String(err.stderr).trim() : ""
    throw new Error(`${cmd} ${args.join(" ")} failed: ${stderr || err.message}`)
  }
}
const tryRun = (cmd, args) => spawnSync(cmd, args, { encoding: "utf8", timeout: CMD_TIMEOUT, stdio: ["ignore", "pipe", "pipe"] })

const which = (bin) => {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])) {
    if (dir && existsSync(`${dir}/${bin}`)) return `${dir}/${bin}`
  }
  return null
}

// ---------------------------------------------------------------------------
// Capability: root, iproute2 with netns, iptables (installed when missing)
// ---------------------------------------------------------------------------

/**
 * Can this machine run the lab? `{ ok, reason, iptables, backend, installed }`.
 * `install`: run `apt-get install -y iptables` when iptables is missing and
 * apt-get exists (as the project's scripts do).
 */
export const capability = ({ prefix = "onl-", install = true, log = () => {} } = {}) => {
  if (process.platform !== "linux") return { ok: false, reason: `not Linux (${process.platform}): network namespaces need Linux` }
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return { ok: false, reason: "not root: creating network namespaces and iptables rules needs root" }
  if (which("ip") === null) return { ok: false, reason: "iproute2 (`ip`) is not installed" }
  const probe = `${prefix}cap${process.pid}`
  const add = tryRun("ip", ["netns", "add", probe])
  if (add.status !== 0) {
    return { ok: false, reason: `this machine cannot create network namespaces (\`ip netns add\` failed: ${(add.stderr || add.error?.message || "").trim()})` }
  }
  let installed = false
  try {
    let candidates = ["iptables-nft", "iptables-legacy", "iptables"].filter((b) => which(b) !== null)
    if (candidates.length === 0 && install) {
      if (which("apt-get") === null) return { ok: false, reason: "iptables is not installed and apt-get is not available to install it" }
      log("iptables is missing: apt-get install -y iptables")
      const r = spawnSync("apt-get", ["install", "-y", "-q", "iptables"], { encoding: "utf8", timeout: 300_000, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } })
      if (r.status !== 0) {
        // the package lists may be missing on a fresh machine
        spawnSync("apt-get", ["update", "-q"], { timeout: 300_000, stdio: "ignore" })
        const r2 = spawnSync("apt-get", ["install", "-y", "-q", "iptables"], { encoding: "utf8", timeout: 300_000, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } })
        if (r2.status !== 0) return { ok: false, reason: `iptables is missing and apt-get could not install it: ${(r2.stderr || "").trim().split("\n").pop()}` }
      }
      installed = true
      candidates = ["iptables-nft", "iptables-legacy", "iptables"].filter((b) => which(b) !== null)
    }
    if (candidates.length === 0) return { ok: false, reason: "iptables is not installed (apt-get install -y iptables)" }
    // a backend that takes every kind of rule the lab needs, inside the probe namespace
    const failures = []
    const wanted = process.env.NATLAB_IPTABLES
    for (const bin of wanted ? [wanted] : candidates) {
      const rules = [
        ["-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE", "--random-fully"],
        ["-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-N", "ONL-GUARD"],
        ["-A", "ONL-GUARD", "-d", PUBLIC_NET, "-j", "RETURN"],
        ["-A", "ONL-GUARD", "-j", "DROP"]
      ]
      let failed = null
      for (const rule of rules) {
        const r = tryRun("ip", ["netns", "exec", probe, bin, "-w", ...rule])
        if (r.status !== 0) {
          failed = `${bin} ${rule.join(" ")}: ${(r.stderr || "").trim()}`
          break
        }
      }
      if (failed === null) return { ok: true, reason: null, iptables: bin, installed }
      failures.push(failed)
      // a fresh namespace for the next backend (no mixing of rule sets)
      tryRun("ip", ["netns", "del", probe])
      tryRun("ip", ["netns", "add", probe])
    }
    return { ok: false, reason: `no iptables backend works inside a namespace: ${failures.join("; ")}` }
  } finally {
    tryRun("ip", ["netns", "del", probe])
  }
}

// ---------------------------------------------------------------------------
// Build and tear down
// ---------------------------------------------------------------------------

export const nsName = (prefix, role, home) => (home ? `${prefix}${role}-${home}` : `${prefix}${role}`)

/** Namespaces whose name starts with `prefix`. */
export const labNamespaces = (prefix) => {
  const r = tryRun("ip", ["netns", "list"])
  if (r.status !== 0) return []
  return r.stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n) => n && n.startsWith(prefix))
}

/**
 * Remove everything the lab made under `prefix`: the processes running in its
 * namespaces (by pid, as `ip netns pids` lists them), then the namespaces
 * (their links, routes and iptables rules go with them).
 */
export const cleanup = (prefix) => {
  if (!prefix || prefix.length < 3) throw new Error(`refusing to clean up with prefix ${JSON.stringify(prefix)}`)
  const removed = []
  for (const ns of labNamespaces(prefix)) {
    const pids = tryRun("ip", ["netns", "pids", ns]).stdout?.split("\n").map((s) => Number(s.trim())).filter((n) => n > 1) ?? []
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // gone already
      }
    }
    tryRun("ip", ["netns", "del", ns])
    removed.push(ns)
  }
  return removed
}

/**
 * Build the lab under `prefix` with the iptables binary `ipt`. Returns the
 * lab's description. On failure everything built so far is removed.
 */
export const build = ({ prefix = "onl-", ipt, homes = HOMES, log = () => {} }) => {
  const leftovers = labNamespaces(prefix)
  if (leftovers.length > 0) {
    log(`removing leftovers of an earlier run: ${leftovers.join(" ")}`)
    cleanup(prefix)
  }
  const inet = nsName(prefix, "inet")
  const core = nsName(prefix, "core")
  const ip = (ns, ...args) => run("ip", ["-n", ns, ...args])
  const sysctl = (ns, kv) => run("ip", ["netns", "exec", ns, "sysctl", "-q", "-w", kv])
  const iptables = (ns, ...args) => run("ip", ["netns", "exec", ns, ipt, "-w", ...args])
  const namespaces = []
  const addNs = (ns) => {
    run("ip", ["netns", "add", ns])
    namespaces.push(ns)
    ip(ns, "link", "set", "lo", "up")
  }
  /** The guard: anything addressed outside the lab's subnets is dropped (and counted). */
  const guard = (ns) => {
    iptables(ns, "-N", "ONL-GUARD")
    for (const net of LAB_NETS) iptables(ns, "-A", "ONL-GUARD", "-d", net, "-j", "RETURN")
    iptables(ns, "-A", "ONL-GUARD", "-j", "DROP")
    iptables(ns, "-A", "OUTPUT", "-j", "ONL-GUARD")
    iptables(ns, "-A", "FORWARD", "-j", "ONL-GUARD")
  }
  try {
    // the internet: a bridge that also routes the open/firewalled homes' subnets
    addNs(inet)
    ip(inet, "link", "add", "br0", "type", "bridge")
    ip(inet, "addr", "add", `${INET_ADDR}/24`, "dev", "br0")
    ip(inet, "link", "set", "br0", "up")
    sysctl(inet, "net.ipv4.ip_forward=1")
    sysctl(inet, "net.ipv4.conf.all.send_redirects=0")
    sysctl(inet, "net.ipv4.conf.br0.send_redirects=0")
    guard(inet)

    // bootstrap namespace
    addNs(core)
    ip(inet, "link", "add", "v-core", "type", "veth", "peer", "name", "eth0", "netns", core)
    ip(inet, "link", "set", "v-core", "master", "br0")
    ip(inet, "link", "set", "v-core", "up")
    for (const a of CORE_ADDRS) ip(core, "addr", "add", `${a}/24`, "dev", "eth0")
    ip(core, "link", "set", "eth0", "up")
    ip(core, "route", "add", "default", "via", INET_ADDR)
    guard(core)

    for (const h of homes) {
      const r = nsName(prefix, "r", h.name)
      const host = nsName(prefix, "h", h.name)
      addNs(r)
      addNs(host)
      // router wan on the bridge
      ip(inet, "link", "add", `v-${h.name}`, "type", "veth", "peer", "name", "wan", "netns", r)
      ip(inet, "link", "set", `v-${h.name}`, "master", "br0")
      ip(inet, "link", "set", `v-${h.name}`, "up")
      ip(r, "addr", "add", `${h.wan}/24`, "dev", "wan")
      ip(r, "link", "set", "wan", "up")
      ip(r, "route", "add", "default", "via", INET_ADDR)
      // router lan to the host
      ip(r, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", host)
      const bits = h.lanNet.split("/")[1]
      ip(r, "addr", "add", `${h.gateway}/${bits}`, "dev", "lan")
      ip(r, "link", "set", "lan", "up")
      ip(host, "addr", "add", `${h.host}/${bits}`, "dev", "eth0")
      ip(host, "link", "set", "eth0", "up")
      ip(host, "route", "add", "default", "via", h.gateway)
      sysctl(r, "net.ipv4.ip_forward=1")
      sysctl(r, "net.ipv4.conf.all.rp_filter=0")
      if (h.flavour === "open" || h.flavour === "firewalled") ip(inet, "route", "add", h.lanNet, "via", h.wan)
      guard(r)
      guard(host)
      // the flavour
      if (h.flavour !== "open") {
        // stateful filter: only replies (and what they relate to) come in
        iptables(r, "-A", "FORWARD", "-i", "wan", "-o", "lan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
        iptables(r, "-A", "FORWARD", "-i", "wan", "-o", "lan", "-j", "DROP")
        iptables(r, "-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
        iptables(r, "-A", "INPUT", "-i", "wan", "-j", "DROP")
      }
      if (h.flavour === "consistent") iptables(r, "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
      if (h.flavour === "random") iptables(r, "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE", "--random-fully")
    }
  } catch (err) {
    cleanup(prefix)
    throw err
  }
  return {
    prefix,
    ipt,
    inet,
    core,
    homes: homes.map((h) => ({ ...h, router: nsName(prefix, "r", h.name), ns: nsName(prefix, "h", h.name) })),
    namespaces
  }
}

/** Packets and bytes the guard dropped, per namespace (only namespaces with drops). */
export const guardDrops = (lab) => {
  const out = {}
  for (const ns of lab.namespaces) {
    const r = tryRun("ip", ["netns", "exec", ns, lab.ipt, "-w", "-L", "ONL-GUARD", "-v", "-x", "-n"])
    if (r.status !== 0) continue
    for (const line of r.stdout.split("\n")) {
      const f = line.trim().split(/\s+/)
      if (f[2] === "DROP" && Number(f[0]) > 0) out[ns] = { packets: Number(f[0]), bytes: Number(f[1]) }
    }
  }
  return out
}

/** Packets each router's stateful filter dropped (unsolicited traffic from the internet). */
export const filterDrops = (lab) => {
  const out = {}
  for (const h of lab.homes) {
    if (h.flavour === "open") continue
    let packets = 0
    for (const chain of ["FORWARD", "INPUT"]) {
      const r = tryRun("ip", ["netns", "exec", h.router, lab.ipt, "-w", "-L", chain, "-v", "-x", "-n"])
      if (r.status !== 0) continue
      for (const line of r.stdout.split("\n")) {
        const f = line.trim().split(/\s+/)
        if (f[2] === "DROP" && f[5] === "wan") packets += Number(f[0])
      }
    }
    out[h.name] = packets
  }
  return out
}
