// The seed's client example (hyperdht README), on Omega. Usage:
//   node examples/client.mjs <bootstrap host:port> <server public key (hex)>
// Pipes stdin to the server and the server's answers to stdout.
import Gateway from "@omegajs/gateway"

const [bootstrap, key] = process.argv.slice(2)
if (bootstrap === undefined || key === undefined) throw new Error("usage: node examples/client.mjs <bootstrap host:port> <public key>")

const node = new Gateway({ bootstrap: [bootstrap], host: "127.0.0.1" })
const socket = node.connect(Buffer.from(key, "hex"))
let opened = false
socket.on("open", () => {
  opened = true
  console.error(`connected (${socket.path})`)
})
socket.on("error", (err) => {
  if (opened) return console.error("connection closed by the server")
  console.error("connect failed:", err.code, err.message)
  process.exitCode = 1
})
socket.on("close", () => node.destroy())
process.stdin.pipe(socket).pipe(process.stdout)
