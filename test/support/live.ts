/** Helpers for tests over real sockets on 127.0.0.1: timeouts, ports, cleanup of every node. */

export const HOST = "127.0.0.1"

export interface Closable {
  destroy(): Promise<unknown>
}

export const withTimeout = <A>(p: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms)
    })
  ]).finally(() => clearTimeout(timer))
}

export const randomPort = (): number => 20_000 + Math.floor(Math.random() * 40_000)

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Track nodes as they are made; `destroyAll` (register it in afterEach) destroys every one, bounded in time. */
export const tracker = () => {
  const open: Array<Closable> = []
  return {
    track: <T extends Closable>(n: T): T => {
      open.push(n)
      return n
    },
    destroyAll: async (): Promise<void> => {
      const all = open.splice(0)
      await Promise.all(all.map((n) => withTimeout(Promise.resolve().then(() => n.destroy()), 10_000, "destroy").catch(() => {})))
    }
  }
}

interface Readyable extends Closable {
  ready(): Promise<unknown>
}

/**
 * Start a node that must own a port (a bootstrapper) on a random free port:
 * `make(port)` builds it, `track` registers it for cleanup; a bind failure
 * (EADDRINUSE) tries another port, up to 8 times.
 */
export const onFreePort = async <N extends Readyable>(
  what: string,
  make: (port: number) => N,
  track: <T extends Closable>(n: T) => T
): Promise<{ node: N; port: number }> => {
  let lastErr: unknown = null
  for (let attempt = 0; attempt < 8; attempt++) {
    const port = randomPort()
    const node = track(make(port))
    const emitter = node as unknown as { on?: (e: string, f: () => void) => unknown }
    if (typeof emitter.on === "function") emitter.on("error", () => {}) // a bind failure is also reported by ready()
    try {
      await withTimeout(node.ready(), 10_000, `${what} ready`)
      return { node, port }
    } catch (err) {
      lastErr = err // EADDRINUSE: another port
      await node.destroy().catch(() => {})
    }
  }
  throw lastErr
}
