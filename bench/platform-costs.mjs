// Costs of the platform pieces Omega is built on, next to the reference's
// native ones, measured in one run (npm run bench:platform):
//   - Ed25519 sign and verify: Omega's fast Crypto (libsodium WASM; sign on a
//     cached node:crypto KeyObject after a key's second use), node:crypto
//     (OpenSSL) directly, and sodium-native (the reference's binding);
//   - a burst of 10 node:dgram sends to 10 loopback sockets (a query's first
//     round), as one synchronous loop: node:dgram makes one sendmsg per call.
import crypto from "node:crypto"
import dgram from "node:dgram"
import { createRequire } from "node:module"
import { makeFast } from "../dist/layers/crypto/fast.js"

const require = createRequire(import.meta.url)
const sodium = require("sodium-native")
const fast = await makeFast()

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const perCall = (f, n = 2000) => {
  for (let i = 0; i < 200; i++) f()
  const runs = []
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now()
    for (let i = 0; i < n; i++) f()
    runs.push(((performance.now() - t0) * 1000) / n)
  }
  return median(runs)
}

const msg = crypto.randomBytes(64)
const kp = fast.keyPair(crypto.randomBytes(32))
const sig = fast.sign(msg, kp.secretKey)
const spki = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(kp.publicKey)])
const pub = crypto.createPublicKey({ key: spki, format: "der", type: "spki" })
const priv = crypto.createPrivateKey({
  key: { kty: "OKP", crv: "Ed25519", d: Buffer.from(kp.secretKey.subarray(0, 32)).toString("base64url"), x: Buffer.from(kp.publicKey).toString("base64url") },
  format: "jwk"
})
const sSig = Buffer.alloc(64)

const rows = [
  ["sign: Omega fast Crypto", () => fast.sign(msg, kp.secretKey)],
  ["sign: node:crypto, cached KeyObject", () => crypto.sign(null, msg, priv)],
  ["sign: sodium-native (reference)", () => sodium.crypto_sign_detached(sSig, msg, Buffer.from(kp.secretKey))],
  ["verify: Omega fast Crypto (WASM)", () => fast.verify(sig, msg, kp.publicKey)],
  ["verify: node:crypto, cached KeyObject", () => crypto.verify(null, msg, pub, sig)],
  ["verify: node:crypto, key import per check", () => crypto.verify(null, msg, { key: spki, format: "der", type: "spki" }, sig)],
  ["verify: sodium-native (reference)", () => sodium.crypto_sign_verify_detached(Buffer.from(sig), msg, Buffer.from(kp.publicKey))]
]
console.log(`platform costs, node ${process.version}`)
for (const [name, f] of rows) console.log(name.padEnd(44) + `${perCall(f).toFixed(1)} µs`.padStart(10))

const bind = () =>
  new Promise((resolve) => {
    const s = dgram.createSocket({ type: "udp4", lookup: (h, _o, cb) => cb(null, h, 4) })
    s.on("message", () => {})
    s.bind(0, "127.0.0.1", () => resolve(s))
  })
const from = await bind()
const to = []
for (let i = 0; i < 10; i++) to.push(await bind())
const ports = to.map((s) => s.address().port)
const payload = Buffer.alloc(150, 1)
const bursts = []
for (let r = 0; r < 300; r++) {
  await new Promise((res) => setTimeout(res, 1))
  const t0 = performance.now()
  for (const p of ports) from.send(payload, p, "127.0.0.1")
  bursts.push((performance.now() - t0) * 1000)
}
console.log("10 node:dgram sends in one loop (150 B)".padEnd(44) + `${median(bursts).toFixed(1)} µs`.padStart(10))
for (const s of [from, ...to]) s.close()
