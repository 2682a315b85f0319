/** Node makers for tests on one local network (127.0.0.1): reference and Omega nodes joined to its bootstrap node, tracked for cleanup. */
import HyperDHT from "hyperdht"
import { Gateway } from "../../src/index.js"
import { type Closable, HOST, onFreePort, randomPort, withTimeout } from "./live.js"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any

export const nodeMakers = (track: <T extends Closable>(n: T) => T, bootPort: () => number) => ({
  /** A reference (hyperdht) node. */
  refNode: (opts: Record<string, unknown> = {}): Any => track(new HyperDHT({ bootstrap: [`${HOST}:${bootPort()}`], host: HOST, ...opts }) as Any),
  /** An Omega node ('error' absorbed: a failed start is reported by ready()). */
  omegaNode: (opts: Record<string, unknown> = {}): Gateway => {
    const g = track(new Gateway({ bootstrap: [`${HOST}:${bootPort()}`], host: HOST, ...opts }))
    g.on("error", () => {})
    return g
  }
})

/**
 * The usual mixed local network: a reference bootstrapper on a free port and
 * three persistent nodes of each implementation, ready. Returns the
 * bootstrapper's port (`bootPort` of the makers must return it from then on).
 */
export const startMixedNetwork = async (track: <T extends Closable>(n: T) => T, setBootPort: (port: number) => void): Promise<number> => {
  const boot = await onFreePort("reference bootstrapper", (port) => HyperDHT.bootstrapper(port, HOST, { host: HOST }), track)
  setBootPort(boot.port)
  const { refNode, omegaNode } = nodeMakers(track, () => boot.port)
  const persistent: Array<Closable & { ready(): Promise<unknown> }> = []
  for (let i = 0; i < 3; i++) persistent.push(refNode({ ephemeral: false, firewalled: false, port: randomPort() }))
  for (let i = 0; i < 3; i++) persistent.push(omegaNode({ ephemeral: false, firewalled: false }))
  await withTimeout(Promise.all(persistent.map((n) => n.ready())), 20_000, "network ready")
  return boot.port
}
