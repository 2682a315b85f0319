// An isolated DHT on one machine (127.0.0.1): a bootstrap node, five DHT
// nodes that join through it, then a client that announces itself under a
// topic, finds itself with a lookup, and stores and reads back an immutable
// record. Nothing leaves the machine. Run it with `node examples/isolated-dht.mjs`
// after `npm run build`.
import GATEWAY from "@omegajs/gateway"

const HOST = "127.0.0.1"

// 1. The bootstrap node owns its port: try a few random ones (a real one uses
//    its public address and a fixed port, e.g. `ogateway --bootstrap --host <ip>`).
let bootstrapper = null
let port = 0
for (let attempt = 0; attempt < 8 && bootstrapper === null; attempt++) {
  port = 20_000 + Math.floor(Math.random() * 40_000)
  const node = GATEWAY.bootstrapper(port, HOST, { host: HOST })
  try {
    await node.ready()
    bootstrapper = node
  } catch {
    await node.destroy() // the port was taken: another one
  }
}
if (bootstrapper === null) throw new Error("no free port for the bootstrap node")
const bootstrap = [`${HOST}:${port}`]
console.log(`bootstrap node ready at ${bootstrap[0]}`)

// 2. DHT nodes that store records: persistent (they join the routing tables)
const nodes = Array.from({ length: 5 }, () => new GATEWAY({ bootstrap, host: HOST, ephemeral: false }))
await Promise.all(nodes.map((node) => node.ready()))
console.log(`${nodes.length} DHT nodes joined (routing table of the first: ${nodes[0].toArray().length} nodes)`)

// 3. A client: announce, lookup, immutable put / get
const client = new GATEWAY({ bootstrap, host: HOST })
await client.ready()
const topic = GATEWAY.hash(Buffer.from("isolated-dht example topic"))
const keyPair = GATEWAY.keyPair()

const announced = await client.announce(topic, keyPair).finished()
console.log(`announced on ${announced.accepted} of ${announced.closestNodes.length} closest nodes`)

let found = 0
for await (const reply of client.lookup(topic)) {
  if (reply.peers.some((peer) => keyPair.publicKey.equals(peer.publicKey))) found++
}
console.log(`lookup: ${found} nodes list our public key`)

const { hash } = await client.immutablePut(Buffer.from("hello from an isolated DHT"))
const record = await client.immutableGet(hash)
console.log(`immutable record ${hash.toString("hex").slice(0, 16)}…: "${Buffer.from(record.value).toString()}"`)

await Promise.all([client, ...nodes, bootstrapper].map((node) => node.destroy()))
if (found === 0 || record === null) throw new Error("the round trip failed")
console.log("done")
