// The seed's server example (hyperdht README), on Omega. Usage:
//   node examples/server.mjs <bootstrap host:port>
// Prints its public key, then prints the public key of each client and
// pipes stdin/stdout through the connection.
import Gateway from "@omegajs/gateway"

const bootstrap = process.argv[2]
if (bootstrap === undefined) throw new Error("usage: node examples/server.mjs <bootstrap host:port>")

const node = new Gateway({ bootstrap: [bootstrap], host: "127.0.0.1" })
const server = node.createServer()
server.on("connection", (socket) => {
  console.log("Remote public key", socket.remotePublicKey.toString("hex"))
  process.stdin.pipe(socket).pipe(process.stdout)
  socket.on("error", (err) => console.error("connection error", err.code ?? err.message))
})
const keyPair = Gateway.keyPair()
await server.listen(keyPair)
console.log("Listening on", keyPair.publicKey.toString("hex"))
process.once("SIGTERM", async () => {
  await node.destroy()
  process.exit(0)
})
