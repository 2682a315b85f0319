import { describe, expect, it } from "vitest"
import { Flock } from "../src/api/flock.js"
import { FakeDhtNetwork } from "./support/flock-fake-dht.js"

const topicOf = (n: number) => new Uint8Array(32).fill(n)
const waitFor = async (f: () => boolean, ms = 5000) => {
  const t0 = Date.now()
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error("timed out")
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe("Flock over an in-memory DHT", () => {
  it("one server, one client - first connection", async () => {
    const net = new FakeDhtNetwork()
    const a = new Flock({ dht: net.node(), backoffs: [100, 200, 300, 400], jitter: 0 })
    const b = new Flock({ dht: net.node(), backoffs: [100, 200, 300, 400], jitter: 0 })
    const gotA: Array<unknown> = []
    const gotB: Array<unknown> = []
    a.on("connection", (s) => gotA.push(s))
    b.on("connection", (s) => gotB.push(s))
    await a.join(topicOf(1), { server: true, client: false }).flushed()
    b.join(topicOf(1), { server: false, client: true })
    await b.flush()
    await waitFor(() => gotA.length === 1 && gotB.length === 1)
    expect(a.connections.size).toBe(1)
    expect(b.connections.size).toBe(1)
    await a.destroy()
    await b.destroy()
  })

  it("port opt gets passed on to the DHT the Flock makes (swarm.js #29); that DHT is destroyed with the Flock", async () => {
    const base = 20_000 + Math.floor(Math.random() * 40_000)
    const f = new Flock({ port: [base, base + 100], host: "127.0.0.1", bootstrap: [] })
    const dht = f.dht as unknown as { ready(): Promise<void>; destroyed: boolean; handle: { sockets(): { server: { local: { port: number } } } } }
    await dht.ready()
    // the server socket's port (address() names the client socket while the node is firewalled, as hyperdht's does)
    const port = dht.handle.sockets().server.local.port
    expect(port).toBeGreaterThanOrEqual(base)
    expect(port).toBeLessThanOrEqual(base + 100)
    await f.destroy()
    expect(dht.destroyed).toBe(true)
  })
})
