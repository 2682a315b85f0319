#!/usr/bin/env node
// The API reference, generated from the sources: every name the package's
// entries export (`@omegajs/gateway`, `@omegajs/gateway/effect`), with its
// declaration and its doc comment, as Markdown.
//
//   npm run build && node scripts/api-docs.mjs [--out FILE]   (default docs/api.md)
//
// It reads the declaration files the build writes (dist/**/*.d.ts: the
// compiler's own view of the public types, doc comments kept), follows each
// entry's re-exports to the declaring module, and prints classes and
// interfaces with their public members. No dependency beyond Node.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const dist = join(root, "dist")
const ENTRIES = [
  { name: "@omegajs/gateway", file: join(dist, "index.d.ts") },
  { name: "@omegajs/gateway/effect", file: join(dist, "effect.d.ts") }
]

const args = process.argv.slice(2)
const outIndex = args.indexOf("--out")
const out = resolve(outIndex === -1 ? join(root, "docs", "api.md") : args[outIndex + 1] ?? "")

// ---- reading declaration files ----------------------------------------------------------

const cache = new Map()
const lines = (file) => {
  let l = cache.get(file)
  if (l === undefined) {
    if (!existsSync(file)) throw new Error(`${relative(root, file)} is missing: run \`npm run build\` first`)
    l = readFileSync(file, "utf8").split("\n")
    cache.set(file, l)
  }
  return l
}
const target = (from, spec) => resolve(dirname(from), spec.replace(/\.js$/, ".d.ts"))

/** The statements of a file that span several lines (`export { ... } from`) joined into one. */
const statements = (file) => {
  const out = []
  let buf = null
  for (const line of lines(file)) {
    if (buf !== null) {
      buf += " " + line.trim()
      if (line.includes(";")) out.push(buf), (buf = null)
    } else if (/^(export|import) /.test(line) && !line.includes(";") && line.includes("{") && !/^export (declare |interface |type |abstract )/.test(line)) buf = line
    else out.push(line)
  }
  return out
}

/** `a, type b, c as d` → [{ name: "a", as: "a" }, ...]. */
const specifiers = (list) =>
  list.split(",").map((s) => s.trim().replace(/^type /, "")).filter((s) => s.length > 0).map((s) => {
    const [name, as] = s.split(/\s+as\s+/)
    return { name, as: as ?? name }
  })

/** The export list of a declaration file: name → { file, name (in that file) } or { namespace: file }. */
const exportsOf = (file, seen = new Set()) => {
  const result = new Map()
  if (seen.has(file)) return result
  seen.add(file)
  const imports = new Map()
  for (const s of statements(file)) {
    let m
    if ((m = /^import (?:type )?\{(.*)\} from "(.*)";/.exec(s))) {
      for (const { name, as } of specifiers(m[1])) imports.set(as, { file: target(file, m[2]), name })
    } else if ((m = /^import \* as (\w+) from "(\.[^"]*)";/.exec(s))) imports.set(m[1], { namespace: target(file, m[2]) })
  }
  for (const s of statements(file)) {
    let m
    if ((m = /^export (?:type )?\{(.*)\} from "(\.[^"]*)";/.exec(s))) {
      for (const { name, as } of specifiers(m[1])) result.set(as, { file: target(file, m[2]), name })
    } else if ((m = /^export \* as (\w+) from "(\.[^"]*)";/.exec(s))) {
      result.set(m[1], { namespace: target(file, m[2]) })
    } else if ((m = /^export \* from "(\.[^"]*)";/.exec(s))) {
      for (const [k, v] of exportsOf(target(file, m[1]), seen)) if (!result.has(k)) result.set(k, v)
    } else if ((m = /^export (?:type )?\{(.*)\};/.exec(s))) {
      for (const { name, as } of specifiers(m[1])) result.set(as, imports.get(name) ?? { file, name })
    } else if ((m = /^export default (\w+);/.exec(s))) {
      result.set("default", imports.get(m[1]) ?? { file, name: m[1] })
    } else if ((m = /^export (?:declare )?(?:abstract )?(?:class|interface|type|const|function|namespace|enum) (\w+)/.exec(s))) {
      result.set(m[1], { file, name: m[1] })
    }
  }
  return result
}

/** Follow re-exports and imports to the file that declares `name`. */
const declaringFile = (file, name, depth = 0) => {
  if (depth > 20) return null
  const decl = new RegExp(`^(?:export )?(?:declare )?(?:abstract )?(class|interface|type|const|function|namespace|enum) ${name}\\b`)
  if (lines(file).some((l) => decl.test(l))) return { file, name }
  const e = exportsOf(file).get(name)
  if (e === undefined || e.namespace !== undefined || (e.file === file && e.name === name)) return null
  return declaringFile(e.file, e.name, depth + 1)
}

/** The doc comment that ends on the line before `i` (without its stars), or "". */
const docBefore = (l, i) => {
  let j = i - 1
  if (j < 0 || !l[j].trim().endsWith("*/")) return ""
  const end = j
  while (j >= 0 && !l[j].trim().startsWith("/**")) j--
  if (j < 0) return ""
  return l.slice(j, end + 1)
    .map((x) => x.trim().replace(/^\/\*\*\s?/, "").replace(/\s?\*\/$/, "").replace(/^\*\s?/, ""))
    .join("\n").trim()
}

/** From line `i`, the lines up to the end of the statement (braces and parentheses balanced, then `;` or `}`). */
const statementAt = (l, i) => {
  let depth = 0
  const out = []
  for (let j = i; j < l.length; j++) {
    out.push(l[j])
    for (const ch of l[j].replace(/"(?:[^"\\]|\\.)*"/g, "")) {
      if (ch === "{" || ch === "(" || ch === "[") depth++
      else if (ch === "}" || ch === ")" || ch === "]") depth--
    }
    if (depth <= 0 && /[;}]\s*$/.test(l[j])) break
  }
  return out
}

/** A class's or interface's public members: their first line and doc. */
const membersOf = (body) => {
  const members = []
  for (let i = 1; i < body.length - 1; i++) {
    const line = body[i]
    if (!/^ {4}\S/.test(line) || /^ {4}(\/\*\*|\*|private |#private|protected )/.test(line)) continue
    const stmt = statementAt(body, i)
    i += stmt.length - 1
    const text = stmt.map((x) => x.trim()).join(" ").replace(/\s+/g, " ").replace(/;$/, "")
    members.push({ text, doc: docBefore(body, body.indexOf(line)) })
  }
  return members
}

const describe = (file, name) => {
  const l = lines(file)
  const decl = new RegExp(`^(?:export )?(?:declare )?(?:abstract )?(class|interface|type|const|function|namespace|enum) ${name}\\b`)
  const i = l.findIndex((x) => decl.test(x))
  const kind = decl.exec(l[i])[1]
  const stmt = statementAt(l, i)
  const source = relative(dist, file).replace(/\.d\.ts$/, ".ts")
  return { kind, doc: docBefore(l, i), stmt, source }
}

// ---- writing Markdown ----------------------------------------------------------------------

const oneLine = (s) => s.replace(/\n+/g, " ")
const md = []
md.push("# API reference", "")
md.push("Generated by `npm run docs` (scripts/api-docs.mjs) from the declaration files the build writes;")
md.push("each entry names the source file under `src/` that declares it. Do not edit by hand.", "")
for (const entry of ENTRIES) {
  md.push(`- [\`${entry.name}\`](#${entry.name.replace(/[@/]/g, "").replace(/[^a-z0-9-]/gi, "")})`)
}
md.push("")

let count = 0
for (const entry of ENTRIES) {
  md.push(`## \`${entry.name}\``, "")
  const head = docBefore(lines(entry.file), 1 + lines(entry.file).findIndex((l) => l.trim() === "*/"))
  if (head !== "") md.push(head.split("\n").map((x) => (x.startsWith("  ") ? "    " + x : x)).join("\n"), "")
  const names = [...exportsOf(entry.file).keys()].filter((n) => n !== "default").sort((a, b) => a.localeCompare(b))
  for (const name of names) {
    const e = exportsOf(entry.file).get(name)
    count++
    if (e.namespace !== undefined) {
      const inner = [...exportsOf(e.namespace).keys()].sort()
      md.push(`### \`${name}\` (namespace)`, "", `\`src/${relative(dist, e.namespace).replace(/\.d\.ts$/, ".ts")}\`: ${inner.map((n) => `\`${n}\``).join(", ")}`, "")
      continue
    }
    const found = declaringFile(e.file, e.name)
    if (found === null) {
      md.push(`### \`${name}\``, "", "(declaration not found)", "")
      continue
    }
    const d = describe(found.file, found.name)
    md.push(`### \`${name}\` (${d.kind}${found.name !== name ? `, declared as \`${found.name}\`` : ""})`, "")
    md.push(`\`src/${d.source}\``, "")
    if (d.doc !== "") md.push(d.doc, "")
    if (d.kind === "class" || d.kind === "interface") {
      md.push("```ts", d.stmt[0].replace(/\s*\{\s*$/, ""), "```", "")
      for (const m of membersOf(d.stmt)) md.push(`- \`${m.text}\`${m.doc !== "" ? ` — ${oneLine(m.doc)}` : ""}`)
      md.push("")
    } else {
      md.push("```ts", ...d.stmt, "```", "")
    }
  }
}

mkdirSync(dirname(out), { recursive: true })
writeFileSync(out, md.join("\n"))
console.log(`${relative(process.cwd(), out) || out}: ${count} exports of ${ENTRIES.length} entries`)
