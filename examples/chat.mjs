// A chat room on a Flock topic: every line you type goes to every peer on the
// topic, and their lines appear here, after their names.
//
//   node examples/chat.mjs
//       The demo: a local network on 127.0.0.1 (a bootstrap node and four DHT
//       nodes), then two chat processes, alice and bob, that meet on a topic
//       and send each other a line. Prints "done" when both lines arrived.
//
//   node examples/chat.mjs --name alice
//       Chat yourself, first terminal: starts a local network in this process,
//       joins the topic, and prints the command for the second terminal:
//   node examples/chat.mjs --bootstrap 127.0.0.1:PORT --topic HEX --name bob
//       Joins that network and topic. (`ogateway --testnet` in a third terminal
//       is a network too: give both chats its bootstrap address.) Without
//       --topic, every chat joins the same room: the hash of "omega chat".
//
// Type a line and press Enter to send it; Ctrl-D or Ctrl-C leaves.
// Run it after `npm run build`. Installed from npm, the Flock is
// `import Flock from "@omegajs/flock"`, the same class as the import below.
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { relative } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import Gateway from "@omegajs/gateway"
import Flock from "@omegajs/gateway/flock"

const HOST = "127.0.0.1"
const script = fileURLToPath(import.meta.url)
const command = `node ${relative(process.cwd(), script)}`

const args = process.argv.slice(2)
if (args.length === 0) await demo()
else await chat(parseArgs({ args, options: { bootstrap: { type: "string" }, topic: { type: "string" }, name: { type: "string" } } }).values)

/** One chat peer: joins the topic and relays lines between stdin, stdout and every peer. */
async function chat({ bootstrap, topic, name = "anonymous" }) {
  // no bootstrap address: this process hosts the network the other chats join
  const network = bootstrap === undefined ? await startNetwork() : null
  bootstrap ??= network.address
  topic ??= Gateway.hash(Buffer.from("omega chat")).toString("hex") // a room everyone can name
  if (!/^[0-9a-f]{64}$/i.test(topic)) throw new Error("--topic must be 32 bytes in hex (64 characters)")
  if (network !== null) {
    console.log(`local network ready at ${bootstrap}; in another terminal:`)
    console.log(`  ${command} --bootstrap ${bootstrap} --topic ${topic} --name bob`)
  }

  // this machine only; drop `host` to chat across machines (with a bootstrap node they all reach)
  const flock = new Flock({ bootstrap: [bootstrap], host: HOST })
  flock.on("connection", (socket) => {
    socket.write(`${name}\n`) // the first line says who we are, every later line is a message
    let peer = null
    const lines = createInterface({ input: socket })
    lines.on("line", (line) => {
      if (peer === null) {
        peer = line
        console.log(`* ${peer} joined (path: ${socket.path})`)
      } else {
        console.log(`${peer}: ${line}`)
      }
    })
    // a connection that ends with an error (the peer left, the Flock closed it) is reported by "left" below
    lines.on("error", () => {})
    socket.on("close", () => console.log(`* ${peer ?? "a peer"} left`))
  })

  await flock.join(Buffer.from(topic, "hex")).flushed() // announced: peers who look the topic up find us
  console.log(`* ${name} is on topic ${topic.slice(0, 12)}… (type a line and press Enter)`)

  const input = createInterface({ input: process.stdin })
  input.on("line", (line) => {
    if (flock.connections.size === 0) console.log("* nobody else here yet")
    for (const socket of flock.connections) socket.write(`${line}\n`)
  })
  let leaving = false
  const leave = async () => {
    if (leaving) return
    leaving = true
    await flock.destroy() // unannounces the topic and closes the connections
    await network?.destroy()
    process.exit(0)
  }
  input.on("close", leave) // end of input (Ctrl-D, or the demo closing our stdin)
  process.once("SIGINT", leave)
}

/** A bootstrap node on a free port of 127.0.0.1 and four DHT nodes that store announcements. */
async function startNetwork() {
  for (let attempt = 0; attempt < 8; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000)
    const bootstrapper = Gateway.bootstrapper(port, HOST, { host: HOST })
    try {
      await bootstrapper.ready()
    } catch {
      await bootstrapper.destroy() // the port was taken: another one
      continue
    }
    const address = `${HOST}:${port}`
    const nodes = Array.from({ length: 4 }, () => new Gateway({ bootstrap: [address], host: HOST, ephemeral: false }))
    await Promise.all(nodes.map((node) => node.ready()))
    return { address, destroy: () => Promise.all([...nodes, bootstrapper].map((node) => node.destroy())) }
  }
  throw new Error("no free port for the bootstrap node")
}

/** The demo: a network, then alice and bob as two processes of this same file, a scripted line each way. */
async function demo() {
  const timeout = setTimeout(() => {
    console.error("the chat demo timed out")
    process.exit(1)
  }, 45_000)
  const network = await startNetwork()
  const topic = randomBytes(32).toString("hex")
  console.log(`local network at ${network.address}, topic ${topic}`)
  console.log("to chat yourself, in two terminals:")
  console.log(`  ${command} --name alice          # hosts a network, prints the next command`)
  console.log(`  ${command} --bootstrap 127.0.0.1:PORT --topic HEX --name bob`)
  console.log("the demo runs these two:")

  // alice first: once she is announced, bob's first lookup of the topic finds her
  const alice = startPeer("alice", network.address, topic)
  await alice.saw("* alice is on topic")
  const bob = startPeer("bob", network.address, topic)
  await Promise.all([alice.saw("* bob joined"), bob.saw("* alice joined")])

  alice.type("hi bob, this is alice")
  bob.type("hello alice, bob here")
  await Promise.all([bob.saw("alice: hi bob, this is alice"), alice.saw("bob: hello alice, bob here")])

  // end of input: each leaves the topic and exits
  const exits = [alice, bob].map((peer) => peer.leave())
  const codes = await Promise.all(exits)
  if (codes.some((code) => code !== 0)) throw new Error(`a chat process exited with ${codes.join(", ")}`)
  await network.destroy()
  clearTimeout(timeout)
  console.log("done")
}

/** A chat process of this file, its output shown after its name; `saw(text)` waits for a line containing text. */
function startPeer(name, bootstrap, topic) {
  const args = ["--bootstrap", bootstrap, "--topic", topic, "--name", name]
  console.log(`  ${command} ${args.join(" ")}`)
  const child = spawn(process.execPath, [script, ...args], { stdio: ["pipe", "pipe", "inherit"] })
  const lines = []
  const waiting = []
  createInterface({ input: child.stdout }).on("line", (line) => {
    console.log(`[${name}] ${line}`)
    lines.push(line)
    for (const w of waiting) if (line.includes(w.text)) w.resolve()
  })
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)))
  return {
    saw: (text) => (lines.some((line) => line.includes(text)) ? Promise.resolve() : new Promise((resolve) => waiting.push({ text, resolve }))),
    type: (line) => child.stdin.write(`${line}\n`),
    leave: () => {
      child.stdin.end()
      return exited
    }
  }
}
