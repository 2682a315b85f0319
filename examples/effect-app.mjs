// An Effect app on the Effect face (`@omegajs/gateway/effect`): the program
// asks for the `Gateway` service and is given a node by a Layer; the local
// network it joins (a bootstrap node and four DHT nodes on 127.0.0.1) is
// built from the same Layers, in the program's scope, and destroyed with it.
// Failures are tagged errors handled with `catchTag`. Run it with
// `node examples/effect-app.mjs` after `npm run build`.
import { Console, Context, Effect, Layer, Stream } from "effect"
import { Gateway } from "@omegajs/gateway/effect"

const HOST = "127.0.0.1"

/** A node built from `layer`, alive until the enclosing scope closes. */
const startNode = (layer) => Effect.map(Layer.build(layer), (context) => Context.get(context, Gateway))

/** A bootstrap node on a free port (a taken port fails with BindError: try another). */
const startBootstrapper = (attempt = 0) => {
  const port = 20_000 + Math.floor(Math.random() * 40_000)
  return startNode(Gateway.bootstrapper(port, HOST, { host: HOST })).pipe(
    Effect.as(port),
    Effect.catchTag("BindError", (e) => (attempt < 8 ? startBootstrapper(attempt + 1) : Effect.fail(e)))
  )
}

/** The local network: its bootstrap address once every node has bootstrapped. */
const localNetwork = Effect.gen(function* () {
  const port = yield* startBootstrapper()
  const bootstrap = [`${HOST}:${port}`]
  const nodes = yield* Effect.forEach(
    [1, 2, 3, 4],
    () => startNode(Gateway.layer({ bootstrap, host: HOST, ephemeral: false, firewalled: false }))
  )
  yield* Effect.forEach(nodes, (node) => node.ready, { concurrency: "unbounded" })
  yield* Console.log(`local network: bootstrap ${bootstrap[0]} and ${nodes.length} DHT nodes`)
  return bootstrap
})

/** The app: announce, look up, store and read a mutable record. */
const app = Effect.gen(function* () {
  const gateway = yield* Gateway
  yield* gateway.ready
  const keyPair = yield* gateway.keyPair()
  const topic = yield* gateway.hash(new TextEncoder().encode("effect-app example topic"))

  // an announce is a lookup stream whose closest nodes then store the record
  yield* gateway.announce(topic, keyPair).pipe(Stream.runDrain)
  const replies = yield* gateway.lookup(topic).pipe(Stream.runCollect)
  const holders = replies.filter((r) => r.peers.some((p) => Buffer.from(p.publicKey).equals(Buffer.from(keyPair.publicKey))))
  yield* Console.log(`lookup: ${holders.length} nodes hold our announcement`)

  const put = yield* gateway.mutablePut(keyPair, new TextEncoder().encode("hello from Effect"), { seq: 1 })
  const got = yield* gateway.mutableGet(keyPair.publicKey)
  yield* Console.log(`mutable record seq ${put.seq} on ${put.accepted} nodes, read back: "${new TextDecoder().decode(got.value)}"`)

  // a stale write is a typed failure
  const stale = yield* gateway.mutablePut(keyPair, new TextEncoder().encode("stale"), { seq: 0 }).pipe(
    Effect.as("accepted"),
    Effect.catchTag("WriteRejected", (e) => Effect.succeed(`refused (${e.counts.seqTooLow} nodes: seq too low)`))
  )
  yield* Console.log(`stale write: ${stale}`)
  if (holders.length === 0 || got === null) return yield* Effect.fail(new Error("the round trip failed"))
})

const main = Effect.gen(function* () {
  const bootstrap = yield* localNetwork
  yield* app.pipe(Effect.provide(Gateway.layer({ bootstrap, host: HOST })))
  yield* Console.log("done")
}).pipe(Effect.scoped)

Effect.runPromise(main).then(
  () => process.exit(0),
  (err) => {
    console.error(err)
    process.exit(1)
  }
)
