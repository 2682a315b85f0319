/**
 * An Omega-only network on 127.0.0.1 for tests of the promise facade: a
 * bootstrapper on a free port and `persistent` persistent nodes. `node(opts)`
 * makes a tracked facade that joins it (its 'error' events absorbed: each
 * test checks what it expects). Call `start()` in beforeAll and
 * `net.destroyAll()` in afterAll.
 */
import { Gateway } from "../../src/index.js"
import { HOST, onFreePort, tracker, withTimeout } from "./live.js"

export const omegaNetwork = (persistent = 4) => {
  const net = tracker()
  let bootPort = 0
  const node = (opts: Record<string, unknown> = {}): Gateway => {
    const g = net.track(new Gateway({ bootstrap: [`${HOST}:${bootPort}`], host: HOST, ...opts }))
    g.on("error", () => {})
    return g
  }
  const start = async (): Promise<void> => {
    const boot = await onFreePort("omega bootstrapper", (port) => Gateway.bootstrapper(port, HOST, { host: HOST }), net.track)
    bootPort = boot.port
    const nodes = Array.from({ length: persistent }, () => node({ ephemeral: false, firewalled: false }))
    await withTimeout(Promise.all(nodes.map((n) => n.ready())), 20_000, "network ready")
  }
  return { net, node, start, bootPort: (): number => bootPort }
}
