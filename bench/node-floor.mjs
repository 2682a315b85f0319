// The memory floor of a node in Omega's design, measured the way bench:dht
// measures a node (JS heap growth per instance after GC, once the code runs
// warm): what every DHT node must hold before any DHT state at all.
//
//   actor      one fiber in its own Scope, blocked in Queue.takeAll on its
//              unbounded mailbox (the actor shape the design prescribes)
//   sockets    two bound node:dgram udp4 sockets with a 'message' listener
//              (server and client socket; no native addon)
//   both       the two together
//
// Usage: npm run bench:floor   (node --expose-gc bench/node-floor.mjs [N])
// Compare with `npm run bench:dht`'s "second batch: JS heap per node" of the
// reference: a node at 0.5x the reference must fit its whole state in half
// of that figure.
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import dgram from "node:dgram"

const N = Number(process.argv[2] ?? 200)

const settle = async () => {
  global.gc()
  await new Promise((r) => setTimeout(r, 100))
  global.gc()
  return process.memoryUsage().heapUsed
}

const actor = () =>
  Effect.runSync(
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const mailbox = yield* Queue.unbounded()
      let handled = 0
      const loop = Effect.gen(function*() {
        while (true) {
          const batch = yield* Queue.takeAll(mailbox)
          handled += batch.length
        }
      })
      yield* Effect.forkIn(loop, scope, { startImmediately: true })
      return { scope, mailbox, handled: () => handled }
    })
  )

const bind = () =>
  new Promise((resolve) => {
    const s = dgram.createSocket("udp4")
    s.on("message", () => {})
    s.bind(0, "127.0.0.1", () => resolve(s))
  })

const kinds = {
  actor: async () => ({ actor: actor() }),
  sockets: async () => ({ sockets: [await bind(), await bind()] }),
  both: async () => ({ actor: actor(), sockets: [await bind(), await bind()] })
}

const measure = async (make) => {
  for (let i = 0; i < 20; i++) await make() // warm: compiled code out of the figure
  const h0 = await settle()
  const xs = []
  for (let i = 0; i < N; i++) xs.push(await make())
  const h1 = await settle()
  for (const x of xs) {
    if (x.actor) Effect.runSync(Scope.close(x.actor.scope, Exit.void))
    if (x.sockets) for (const s of x.sockets) s.close()
  }
  return (h1 - h0) / N / 1024
}

console.log(`memory floor of one node (JS heap per instance, ${N} instances, node ${process.version})`)
for (const [name, make] of Object.entries(kinds)) {
  const kb = await measure(make)
  console.log(name.padEnd(10) + `${kb.toFixed(2)} KB`.padStart(10))
}
process.exit(0)
