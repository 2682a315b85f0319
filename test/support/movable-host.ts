/**
 * A machine that changes networks on the simulated network: one `Transport`
 * whose sockets live on a `SimHost` (its interface, behind its NAT) and move
 * to another one on `move`, keeping their ports, as a laptop's sockets bound
 * to 0.0.0.0 do when it leaves one Wi-Fi for another. What the node sees:
 * its interface addresses change (`localAddresses`), and its datagrams
 * leave from, and come back to, the new network's public address.
 *
 * `linger` keeps the old network's sockets receiving for a while after the
 * move (the old interface still up, make-before-break): replies to requests
 * sent before the move still arrive, naming the old public address.
 */
import { Effect } from "effect"
import type { SimHost } from "../../src/layers/transport/sim.js"
import { BindError, type BindOptions, bindScoped, type Datagram, type Endpoint, type OwnedSocket, type SocketStats, type Transport } from "../../src/layers/Transport.js"

class MovableSocket implements OwnedSocket {
  private receiver: ((d: Datagram) => void) | null = null
  /** The old networks' sockets, still receiving until they close. */
  private readonly lingering = new Set<OwnedSocket>()
  private isClosed = false

  constructor(private readonly owner: MovableHost, private inner: OwnedSocket) {}

  get local(): Endpoint {
    return this.inner.local
  }

  send(to: Endpoint, data: Uint8Array, ttl?: number): void {
    this.inner.send(to, data, ttl)
  }

  get receive(): Effect.Effect<ReadonlyArray<Datagram>> {
    return Effect.suspend(() => this.inner.receive)
  }

  setReceiver(f: ((d: Datagram) => void) | null): void {
    this.receiver = f
    this.inner.setReceiver(f)
    for (const s of this.lingering) s.setReceiver(f)
  }

  stats(): SocketStats {
    return this.inner.stats()
  }

  get close(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.isClosed = true
      this.owner.sockets.delete(this)
      const all = [this.inner, ...this.lingering]
      this.lingering.clear()
      return Effect.asVoid(Effect.forEach(all, (s) => s.close))
    })
  }

  /** Bind again on `host` (the same port when free); the old socket lingers `linger` ms, then closes. */
  rebind(host: SimHost, linger: number): void {
    if (this.isClosed) return
    let next = host.open({ port: this.inner.local.port })
    if (next instanceof BindError) next = host.open()
    if (next instanceof BindError) throw new Error(`movable host: cannot bind on ${host.ip}: ${next.message}`)
    next.setReceiver(this.receiver)
    const old = this.inner
    this.inner = next
    if (linger <= 0) {
      Effect.runFork(old.close)
      return
    }
    this.lingering.add(old)
    host.schedule!(this.owner.now() + linger, () => {
      if (!this.lingering.delete(old)) return
      Effect.runFork(old.close)
    })
  }
}

export class MovableHost {
  readonly sockets = new Set<MovableSocket>()
  /** Extra interface addresses (a VPN, a container bridge) besides the current host's. */
  extraAddresses: ReadonlyArray<string> = []
  readonly transport: Transport["Service"]

  constructor(public current: SimHost, readonly now: () => number) {
    const open = (options?: BindOptions): MovableSocket | BindError => {
      const inner = this.current.open(options)
      if (inner instanceof BindError) return inner
      const s = new MovableSocket(this, inner)
      this.sockets.add(s)
      return s
    }
    this.transport = {
      open,
      bind: (options) => bindScoped(() => open(options)),
      localAddresses: () => [this.current.ip, ...this.extraAddresses],
      schedule: (at, f) => this.current.schedule!(at, f)
    }
  }

  /** Move every socket to `to` (see the module comment); the old host keeps no socket of ours once `linger` ms have passed. */
  move(to: SimHost, opts: { readonly linger?: number } = {}): void {
    this.current = to
    for (const s of [...this.sockets]) s.rebind(to, opts.linger ?? 0)
  }
}
