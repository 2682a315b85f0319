// Crypto benchmark: every Omega implementation (noble, fast) against the
// reference stack (sodium-native, reached through the packages HyperDHT and
// Hyperswarm use). Run with `npm run bench:crypto` (builds first); not part
// of `npm test`. BENCH_SECONDS sets the length of one timed round (default 1).
import NoiseHandshake from "noise-handshake"
import curve from "noise-curve-ed"
import sodium from "sodium-native"
import SecretStream from "sodium-secretstream"
import { cpus } from "node:os"
import { makeFast } from "../dist/layers/crypto/fast.js"
import { noble } from "../dist/layers/crypto/noble.js"
import * as Noise from "../dist/layers/crypto/noise.js"

const ROUND_MS = 1000 * Number(process.env.BENCH_SECONDS ?? 1)
const ROUNDS = 3
const WARMUP_MS = Math.min(300, ROUND_MS)

const fast = await makeFast()
const impls = [noble, fast]

// ---- timing -------------------------------------------------------------------------------

/**
 * ops/s of `op`: warm up (which also sizes a batch of ~2 ms, so that the clock
 * is read rarely), then ROUNDS rounds of ROUND_MS; the best round counts.
 */
const measure = (op) => {
  let t0 = performance.now()
  let n = 0
  while (performance.now() - t0 < WARMUP_MS) {
    op()
    n++
  }
  const perOp = (performance.now() - t0) / n
  const batch = Math.max(1, Math.round(2 / perOp))
  let best = 0
  for (let r = 0; r < ROUNDS; r++) {
    n = 0
    t0 = performance.now()
    let el
    do {
      for (let i = 0; i < batch; i++) op()
      n += batch
    } while ((el = performance.now() - t0) < ROUND_MS)
    best = Math.max(best, (n * 1000) / el)
  }
  return best
}

const rnd = (n) => {
  const b = Buffer.alloc(n)
  sodium.randombytes_buf(b)
  return b
}
const u8 = (b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
const assert = (cond, what) => {
  if (!cond) throw new Error(`bench self-check failed: ${what}`)
}

// ---- the cases ------------------------------------------------------------------------------

/** secretstream: push then pull each message; MB/s of message bytes. */
const secretstream = (size) => ({
  unit: "MB/s",
  scale: size / 1e6,
  reference: () => {
    const key = rnd(32)
    const push = new SecretStream.Push(key)
    const pull = new SecretStream.Pull(key)
    pull.init(push.header)
    const m = rnd(size)
    assert(Buffer.compare(pull.next(push.next(m)), m) === 0, "reference secretstream")
    return () => pull.next(push.next(m))
  },
  omega: (c) => {
    const key = u8(rnd(32))
    const { state, header } = c.secretstreamInitPush(key)
    const pull = c.secretstreamInitPull(key, header)
    const m = u8(rnd(size))
    const p = c.secretstreamPull(pull, c.secretstreamPush(state, m))
    assert(p !== null && Buffer.compare(Buffer.from(p.message), Buffer.from(m)) === 0, `${c.name} secretstream`)
    return () => c.secretstreamPull(pull, c.secretstreamPush(state, m))
  }
})

const blake2b64 = {
  unit: "ops/s",
  scale: 1,
  reference: () => {
    const m = rnd(64)
    return () => {
      // as hypercore-crypto / hyperdht hash(): a fresh 32-byte output per call
      const out = Buffer.allocUnsafe(32)
      sodium.crypto_generichash(out, m)
      return out
    }
  },
  omega: (c) => {
    const m = u8(rnd(64))
    const ref = Buffer.alloc(32)
    sodium.crypto_generichash(ref, Buffer.from(m))
    assert(Buffer.compare(Buffer.from(c.blake2b(m)), ref) === 0, `${c.name} blake2b`)
    return () => c.blake2b(m)
  }
}

// hyperdht signs 64-byte signables (namespace || BLAKE2b of the record)
const signCase = {
  unit: "ops/s",
  scale: 1,
  reference: () => {
    const pk = Buffer.alloc(32)
    const sk = Buffer.alloc(64)
    sodium.crypto_sign_keypair(pk, sk)
    const m = rnd(64)
    return () => {
      const sig = Buffer.allocUnsafe(64)
      sodium.crypto_sign_detached(sig, m, sk)
      return sig
    }
  },
  omega: (c) => {
    const kp = c.keyPair()
    const m = u8(rnd(64))
    const ref = Buffer.alloc(64)
    sodium.crypto_sign_detached(ref, Buffer.from(m), Buffer.from(kp.secretKey))
    assert(Buffer.compare(Buffer.from(c.sign(m, kp.secretKey)), ref) === 0, `${c.name} sign`)
    return () => c.sign(m, kp.secretKey)
  }
}

const verifyCase = {
  unit: "ops/s",
  scale: 1,
  reference: () => {
    const pk = Buffer.alloc(32)
    const sk = Buffer.alloc(64)
    sodium.crypto_sign_keypair(pk, sk)
    const m = rnd(64)
    const sig = Buffer.alloc(64)
    sodium.crypto_sign_detached(sig, m, sk)
    assert(sodium.crypto_sign_verify_detached(sig, m, pk), "reference verify")
    return () => sodium.crypto_sign_verify_detached(sig, m, pk)
  },
  omega: (c) => {
    const kp = c.keyPair()
    const m = u8(rnd(64))
    const sig = c.sign(m, kp.secretKey)
    assert(c.verify(sig, m, kp.publicKey), `${c.name} verify`)
    return () => c.verify(sig, m, kp.publicKey)
  }
}

/** A full Noise IK handshake, both sides in-process, fresh ephemeral keys, prologue of 32 bytes. */
const noiseIK = {
  unit: "hs/s",
  scale: 1,
  reference: () => {
    // as hyperdht's lib/noise-wrap.js drives noise-handshake
    const client = curve.generateKeyPair()
    const server = curve.generateKeyPair()
    const prologue = rnd(32)
    const p1 = rnd(20)
    const p2 = rnd(80)
    const once = () => {
      const ini = new NoiseHandshake("IK", true, client, { curve })
      ini.initialise(prologue, server.publicKey)
      const res = new NoiseHandshake("IK", false, server, { curve })
      res.initialise(prologue)
      const got1 = res.recv(ini.send(p1))
      const got2 = ini.recv(res.send(p2))
      return { ini, res, got1, got2 }
    }
    const t = once()
    assert(Buffer.compare(t.got1, p1) === 0 && Buffer.compare(t.got2, p2) === 0, "reference noise payloads")
    assert(Buffer.compare(t.ini.tx, t.res.rx) === 0 && Buffer.compare(t.ini.hash, t.res.hash) === 0, "reference noise split")
    return once
  },
  omega: (c) => {
    const client = c.keyPair()
    const server = c.keyPair()
    const prologue = u8(rnd(32))
    const p1 = u8(rnd(20))
    const p2 = u8(rnd(80))
    const once = () => {
      const ini = Noise.initiator(c, { staticKeyPair: client, remoteStaticKey: server.publicKey, prologue })
      const res = Noise.responder(c, { staticKeyPair: server, prologue })
      const m1 = Noise.writeMessage1(ini, p1)
      const r1 = Noise.readMessage1(res, m1.success)
      const w2 = Noise.writeMessage2(res, p2)
      const r2 = Noise.readMessage2(ini, w2.success.message)
      return { m1, r1, w2, r2 }
    }
    const t = once()
    const ok = ["m1", "r1", "w2", "r2"].every((k) => t[k]._tag === "Success")
    assert(ok, `${c.name} noise handshake`)
    assert(Buffer.compare(Buffer.from(t.r2.success.split.tx), Buffer.from(t.w2.success.split.rx)) === 0, `${c.name} noise split`)
    assert(Buffer.compare(Buffer.from(t.r1.success.payload), Buffer.from(p1)) === 0, `${c.name} noise payload`)
    return once
  }
}

const cases = [
  { figure: "secretstream push+pull 64 KiB", ref: "sodium-secretstream", ...secretstream(64 * 1024) },
  { figure: "secretstream push+pull 1 KiB", ref: "sodium-secretstream", ...secretstream(1024) },
  { figure: "BLAKE2b-256 of 64 bytes", ref: "crypto_generichash", ...blake2b64 },
  { figure: "ed25519 sign (64-byte msg)", ref: "crypto_sign_detached", ...signCase },
  { figure: "ed25519 verify (64-byte msg)", ref: "crypto_sign_verify_detached", ...verifyCase },
  { figure: "Noise IK handshake (both sides)", ref: "noise-handshake+noise-curve-ed", ...noiseIK },
  // extra, not in the overall score: a length outside fast's AEAD shortcut (|m| mod 16 not 0 or 8)
  { figure: "secretstream push+pull 64 KiB-1", ref: "sodium-secretstream", extra: true, ...secretstream(64 * 1024 - 1) }
]

// ---- run ------------------------------------------------------------------------------------

const started = performance.now()
const cpu = cpus()
console.log(
  `Omega crypto benchmark: node ${process.version}, ${process.platform} ${process.arch}, ${cpu.length} CPU(s) (${cpu[0]?.model ?? "?"})`
)
console.log(`each figure: warm-up, then best of ${ROUNDS} rounds of ${ROUND_MS / 1000} s; reference = sodium-native (native libsodium)`)
console.log("")

const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2))
const rows = []
for (const k of cases) {
  const ref = measure(k.reference()) * k.scale
  const vals = impls.map((c) => measure(k.omega(c)) * k.scale)
  rows.push({ k, ref, vals })
}

const head = ["figure", "unit", "reference", ...impls.map((c) => c.name)]
const lines = rows.map(({ k, ref, vals }) => [
  k.figure + (k.extra ? " *" : ""),
  k.unit,
  `${fmt(ref)} (${k.ref})`,
  ...vals.map((v, i) => `${fmt(v)}  ${impls[i].name} ${(v / ref).toFixed(2)}x`)
])
const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)))
const pr = (cols) => console.log(cols.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "))
pr(head)
console.log(widths.map((w) => "-".repeat(w)).join("  "))
for (const l of lines) pr(l)
console.log("* extra row, not in the overall score: a 65535-byte message misses fast's AEAD shortcut (node chacha20 + wasm Poly1305 instead)")
console.log("")

const scored = rows.filter((r) => !r.k.extra)
const geo = impls.map((_, i) => Math.exp(scored.reduce((s, r) => s + Math.log(r.vals[i] / r.ref), 0) / scored.length))
const wins = impls.map((_, i) => scored.filter((r) => r.vals.every((v, j) => v <= r.vals[i])).length)
const bestIdx = geo.indexOf(Math.max(...geo))
console.log(
  `overall (geometric mean of the ratios to the reference over ${scored.length} figures): ` +
    impls.map((c, i) => `${c.name} ${geo[i].toFixed(2)}x (fastest Omega impl on ${wins[i]}/${scored.length})`).join(", ")
)
console.log(`best default overall: ${impls[bestIdx].name}`)
console.log(`total bench time ${((performance.now() - started) / 1000).toFixed(1)} s`)
