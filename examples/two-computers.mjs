// `npm run example`: the seed's two-computer example on one machine. A local
// bootstrap node on 127.0.0.1 stands in for the public network; the server
// and the client are separate processes that know only the bootstrap
// address and the server's public key. The client pipes one line through;
// the server prints the client's public key and echoes the line back.
import { spawn } from "node:child_process"
import { once } from "node:events"
import Gateway from "@omegajs/gateway"

// a bootstrap node owns its port: try a few random ones
let boot = null
let port = 0
for (let i = 0; i < 8 && boot === null; i++) {
  port = 20_000 + Math.floor(Math.random() * 40_000)
  const b = Gateway.bootstrapper(port, "127.0.0.1", { host: "127.0.0.1" })
  b.on("error", () => {})
  try {
    await b.ready()
    boot = b
  } catch {
    await b.destroy()
  }
}
if (boot === null) throw new Error("no free port for the bootstrap node")
// a few DHT nodes to store the server's announcement
const nodes = Array.from({ length: 4 }, () => new Gateway({ bootstrap: [`127.0.0.1:${port}`], host: "127.0.0.1", ephemeral: false }))
await Promise.all(nodes.map((n) => n.ready()))
const bootstrap = `127.0.0.1:${port}`

const server = spawn(process.execPath, ["examples/server.mjs", bootstrap], { stdio: ["pipe", "pipe", "inherit"] })
let key = null
let serverOut = ""
server.stdout.setEncoding("utf8")
server.stdout.on("data", (chunk) => {
  serverOut += chunk
  process.stdout.write(`[server] ${chunk}`)
  const m = /Listening on ([0-9a-f]{64})/.exec(serverOut)
  if (m !== null && key === null) {
    key = m[1]
    startClient()
  }
})
// the server echoes what the client sends: its stdin is fed back from its stdout
const timeout = setTimeout(() => {
  console.error("example timed out")
  process.exit(1)
}, 30_000)

function startClient() {
  const client = spawn(process.execPath, ["examples/client.mjs", bootstrap, key], { stdio: ["pipe", "pipe", "inherit"] })
  client.stdout.setEncoding("utf8")
  client.stdout.on("data", async (chunk) => {
    process.stdout.write(`[client] received: ${chunk}`)
    client.stdin.end()
    server.kill("SIGTERM")
    await once(server, "exit")
    await Promise.all([...nodes, boot].map((n) => n.destroy()))
    clearTimeout(timeout)
    console.log("done")
    process.exit(0)
  })
  client.stdin.write("hello from the client\n")
}
// server side: echo each line it prints from the connection back to it
server.stdout.on("data", (chunk) => {
  if (chunk.includes("hello from the client")) server.stdin.write(`echo: ${chunk.split("\n").find((l) => l.includes("hello"))}\n`)
})
