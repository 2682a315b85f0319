// The NAT lab's tables: dial records grouped by cell, as markdown.

const SHORT = { open: "open", firewalled: "fw", consistent: "cons", random: "rand" }
const DIR_LABEL = { oo: "Ω→Ω", or: "Ω srv ← ref cli", ro: "ref srv ← Ω cli", rr: "ref→ref" }
const DIR_HEAD = { oo: "Omega↔Omega", or: "Omega server, ref client", ro: "ref server, Omega client", rr: "ref↔ref" }

const median = (xs) => {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const count = (xs) => {
  const m = new Map()
  for (const x of xs) if (x !== null && x !== undefined) m.set(x, (m.get(x) ?? 0) + 1)
  return Object.fromEntries([...m].sort((a, b) => b[1] - a[1]))
}
const fmtCount = (o) =>
  Object.entries(o)
    .map(([k, v]) => `${k}×${v}`)
    .join(", ") || "—"
const ms = (x) => (x === null ? "—" : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`)
const pairLabel = (p) => {
  const [s, c] = p.split("-")
  return `${SHORT[s]} ← ${SHORT[c]}`
}

/** Cells: one per (mode, pairing, direction, relay), and the fresh-start classes per home flavour and implementation. */
export const summarize = (records) => {
  const cells = new Map()
  for (const r of records.filter((r) => r.kind === "dial")) {
    const key = `${r.mode}|${r.pairing}|${r.dir}|${r.relay ?? ""}`
    if (!cells.has(key)) cells.set(key, { mode: r.mode, pairing: r.pairing, dir: r.dir, relay: r.relay ?? null, dials: [] })
    cells.get(key).dials.push(r)
  }
  const out = []
  for (const c of cells.values()) {
    const ok = c.dials.filter((d) => d.ok)
    const open = ok.map((d) => d.openMs).filter((x) => typeof x === "number")
    out.push({
      mode: c.mode,
      pairing: c.pairing,
      dir: c.dir,
      relay: c.relay,
      n: c.dials.length,
      ok: ok.length,
      median: median(open),
      min: open.length ? Math.min(...open) : null,
      max: open.length ? Math.max(...open) : null,
      paths: count(ok.map((d) => d.path)),
      failures: count(c.dials.filter((d) => !d.ok).map((d) => d.code)),
      failMedian: median(c.dials.filter((d) => !d.ok && typeof d.failMs === "number").map((d) => d.failMs)),
      serverNat: count(c.dials.map((d) => d.serverSide?.nat?.class ?? d.serverNat?.class ?? null)),
      clientNat: count(c.dials.map((d) => d.nat?.class ?? null)),
      // Omega's dial report on failures: the classes the punch saw
      punchClasses: count(c.dials.filter((d) => d.report).map((d) => `${d.report.localFirewall}/${d.report.remoteFirewall}`))
    })
  }
  const self = new Map()
  for (const r of records.filter((r) => r.kind === "self")) {
    const key = `${r.flavour}|${r.impl}`
    if (!self.has(key)) self.set(key, { flavour: r.flavour, impl: r.impl, atReady: [], later: [], readyMs: [], errors: 0 })
    const s = self.get(key)
    if (r.error) s.errors++
    else {
      s.atReady.push(r.atReady.class)
      s.later.push(r.later.class)
      s.readyMs.push(r.atReady.ms)
    }
  }
  return {
    cells: out,
    self: [...self.values()].map((s) => ({ ...s, atReady: count(s.atReady), later: count(s.later), readyMedian: median(s.readyMs) }))
  }
}

const pivot = (cells, mode, title) => {
  const rows = cells.filter((c) => c.mode === mode)
  if (rows.length === 0) return ""
  const dirs = ["oo", "or", "ro", "rr"].filter((d) => rows.some((r) => r.dir === d))
  const pairings = [...new Set(rows.map((r) => r.pairing))]
  const lines = [`### ${title}`, "", `| server ← client | ${dirs.map((d) => DIR_HEAD[d]).join(" | ")} |`, `|---|${dirs.map(() => "---").join("|")}|`]
  for (const p of pairings) {
    const cellsOf = dirs.map((d) => rows.find((r) => r.pairing === p && r.dir === d && !r.relay))
    lines.push(
      `| ${pairLabel(p)} | ${cellsOf
        .map((c) => {
          if (!c) return ""
          const fail = Object.keys(c.failures)
          return `${c.ok}/${c.n}${c.ok ? ` · ${ms(c.median)}` : ""}${fail.length ? ` · ${fail.join(",")}` : ""}`
        })
        .join(" | ")} |`
    )
  }
  return lines.join("\n")
}

const detail = (cells) => {
  const lines = [
    "| mode | server ← client | implementations | relay | ok | median | min | max | paths | failures (median time) | NAT server / client |",
    "|---|---|---|---|---|---|---|---|---|---|---|"
  ]
  for (const c of cells) {
    lines.push(
      `| ${c.mode} | ${pairLabel(c.pairing)} | ${DIR_LABEL[c.dir]} | ${c.relay ?? ""} | ${c.ok}/${c.n} | ${ms(c.median)} | ${ms(c.min)} | ${ms(c.max)} | ${fmtCount(c.paths)} | ${fmtCount(c.failures)}${c.failMedian !== null ? ` (${ms(c.failMedian)})` : ""} | ${fmtCount(c.serverNat)} / ${fmtCount(c.clientNat)} |`
    )
  }
  return lines.join("\n")
}

export const markdown = (summary, meta) => {
  const parts = [
    `## NAT lab results`,
    "",
    `\`${meta.command}\` — ${meta.n} dial(s) per cell, bootstrap namespace: ${meta.infra} DHT nodes, iptables: ${meta.iptables}, ${meta.minutes.toFixed(1)} min; guard drops (traffic addressed outside the lab): ${meta.guardTotal}.`,
    "Cells: successes/dials · median connect()→open. \"server ← client\": the server's home flavour, then the client's.",
    ""
  ]
  const p1 = pivot(summary.cells, "fresh", "Fresh nodes and key pairs per dial")
  if (p1) parts.push(p1, "")
  const p2 = pivot(summary.cells, "reused", "Reused nodes (one per side), dials 1 s apart")
  if (p2) parts.push(p2, "")
  const relayRows = summary.cells.filter((c) => c.mode === "relay")
  if (relayRows.length) {
    parts.push("### random ← random through a blind relay (client's relayThrough)", "", "| relay | implementations | ok | median | max | paths |", "|---|---|---|---|---|---|")
    for (const c of relayRows) parts.push(`| ${c.relay} | ${DIR_LABEL[c.dir]} | ${c.ok}/${c.n} | ${ms(c.median)} | ${ms(c.max)} | ${fmtCount(c.paths)}${Object.keys(c.failures).length ? `; failed: ${fmtCount(c.failures)}` : ""} |`)
    parts.push("")
  }
  const autoRows = summary.cells.filter((c) => c.mode === "auto")
  if (autoRows.length) {
    parts.push("### random ← random with an auto relay available (relayThrough: 'auto' on the Omega sides, no relay configured)", "", "| implementations | ok | median | max | paths |", "|---|---|---|---|---|")
    for (const c of autoRows) parts.push(`| ${DIR_LABEL[c.dir]} | ${c.ok}/${c.n} | ${ms(c.median)} | ${ms(c.max)} | ${fmtCount(c.paths)}${Object.keys(c.failures).length ? `; failed: ${fmtCount(c.failures)}` : ""} |`)
    parts.push("")
  }
  if (summary.self.length) {
    parts.push("### Fresh starts: what a node concludes about itself", "", "| home | implementation | at ready() | 3 s later | ready (median) |", "|---|---|---|---|---|")
    for (const s of summary.self) parts.push(`| ${s.flavour} | ${s.impl} | ${fmtCount(s.atReady)} | ${fmtCount(s.later)} | ${ms(s.readyMedian)}${s.errors ? ` (${s.errors} failed)` : ""} |`)
    parts.push("")
  }
  parts.push("### Every cell", "", detail(summary.cells), "")
  return parts.join("\n")
}
