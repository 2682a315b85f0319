/**
 * `networkChange()` on the promise facade (the host changed networks and the
 * application knows it first): over UDP on 127.0.0.1, an open persistent
 * node re-learns its state and stays what it was (no move happened, so no
 * 'network-update' for a changed view), and a server on it is reached by
 * key afterwards. The moves themselves are
 * simulated in test/network-change.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Gateway } from "../src/index.js"
import { withTimeout } from "./support/live.js"
import { omegaNetwork } from "./support/omega-net.js"

const { net, node, start } = omegaNetwork(4)
beforeAll(start, 30_000)
afterAll(() => net.destroyAll(), 30_000)

describe("networkChange() on the facade", () => {
  it("re-probes the node: 'network-change' at once, the same open address after, and a server on it is still reached by key", async () => {
    const a = node({ ephemeral: false, firewalled: false })
    await a.ready()
    const before = a.remoteAddress()
    expect(before).not.toBeNull()
    const seen: Array<string> = []
    a.on("network-change", () => seen.push("network-change"))
    const server = a.createServer()
    const keyPair = Gateway.keyPair()
    server.on("connection", (s: any) => {
      s.on("error", () => {})
      s.on("data", (d: Uint8Array) => s.write(d))
    })
    await server.listen(keyPair)
    await a.networkChange()
    expect(seen).toContain("network-change")
    // the re-probe settles on the same view: open, same address
    await withTimeout((async () => {
      for (;;) {
        const r = a.remoteAddress()
        if (r !== null && !a.firewalled) return r
        await new Promise((res) => setTimeout(res, 20))
      }
    })(), 10_000, "open again")
    expect(a.remoteAddress()).toEqual(before)
    const b = node()
    await b.ready()
    const socket = b.connect(keyPair.publicKey)
    socket.on("error", () => {})
    const echoed = await withTimeout(new Promise<string>((resolve) => {
      socket.once("data", (d: Uint8Array) => resolve(Buffer.from(d).toString()))
      socket.write(Buffer.from("after the change"))
    }), 10_000, "echo")
    expect(echoed).toBe("after the change")
    socket.destroy()
  }, 30_000)
})
