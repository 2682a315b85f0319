/** Node makers for tests on one local network (127.0.0.1): reference and Omega nodes joined to its bootstrap node, tracked for cleanup. */
import HyperDHT from "hyperdht"
import { Gateway } from "../../src/index.js"
import { type Closable, HOST } from "./live.js"

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
