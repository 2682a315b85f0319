// Mutable records: a value signed by a key pair and stored under the hash of
// its public key, replaced by writing a higher `seq`. Anyone who knows the
// public key reads the latest value (its signature checked). On a local
// network (127.0.0.1): a bootstrap node, four DHT nodes, a writer and a
// reader. Run it with `node examples/mutable-records.mjs` after `npm run build`.
import GATEWAY from "@omegajs/gateway"

const HOST = "127.0.0.1"

let bootstrapper = null
let port = 0
for (let attempt = 0; attempt < 8 && bootstrapper === null; attempt++) {
  port = 20_000 + Math.floor(Math.random() * 40_000)
  const node = GATEWAY.bootstrapper(port, HOST, { host: HOST })
  try {
    await node.ready()
    bootstrapper = node
  } catch {
    await node.destroy()
  }
}
if (bootstrapper === null) throw new Error("no free port for the bootstrap node")
const bootstrap = [`${HOST}:${port}`]
const nodes = Array.from({ length: 4 }, () => new GATEWAY({ bootstrap, host: HOST, ephemeral: false }))
await Promise.all(nodes.map((node) => node.ready()))

const writer = new GATEWAY({ bootstrap, host: HOST })
const reader = new GATEWAY({ bootstrap, host: HOST })
await Promise.all([writer.ready(), reader.ready()])

// the writer's identity: the same seed always gives the same key pair
const keyPair = GATEWAY.keyPair(GATEWAY.hash(Buffer.from("mutable-records example seed")))
console.log("public key", keyPair.publicKey.toString("hex"))

const first = await writer.mutablePut(keyPair, Buffer.from("version 1"), { seq: 1 })
console.log(`seq ${first.seq} stored on ${first.accepted} nodes`)
const v1 = await reader.mutableGet(keyPair.publicKey)
console.log(`reader sees seq ${v1.seq}: "${v1.value.toString()}"`)

const second = await writer.mutablePut(keyPair, Buffer.from("version 2"), { seq: 2 })
console.log(`seq ${second.seq} stored on ${second.accepted} nodes`)
const v2 = await reader.mutableGet(keyPair.publicKey)
console.log(`reader sees seq ${v2.seq}: "${v2.value.toString()}"`)

// an older seq is refused by every node that holds a newer one
try {
  await writer.mutablePut(keyPair, Buffer.from("stale"), { seq: 1 })
  throw new Error("a stale write was accepted")
} catch (err) {
  if (err.code !== "WRITE_REJECTED") throw err
  console.log(`stale write refused (${err.name}, ${err.counts.seqTooLow} nodes answered SEQ_TOO_LOW)`)
}

await Promise.all([writer, reader, ...nodes, bootstrapper].map((node) => node.destroy()))
if (v1.value.toString() !== "version 1" || v2.value.toString() !== "version 2") throw new Error("wrong values read back")
console.log("done")
