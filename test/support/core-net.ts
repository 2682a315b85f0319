/**
 * A minimal discrete-event network for unit-testing the DHT node core without
 * Effect: nodes' `transmit` schedules deliveries; `run(until)` processes
 * deliveries and node timers in time order. All hosts are open (no NAT).
 */
import { DhtNode, type DhtNodeOptions } from "../../src/actors/routing/node.js"
import { CLIENT, SERVER, type SocketKind } from "../../src/actors/routing/rpc.js"
import { noble } from "../../src/layers/crypto/noble.js"

export { seededRandom } from "../../src/util/random.js"

interface Delivery {
  readonly at: number
  readonly seq: number
  readonly to: string
  readonly from: { host: string; port: number }
  readonly data: Uint8Array
}

export interface SimNode {
  readonly host: string
  readonly serverPort: number
  readonly clientPort: number
  readonly core: DhtNode
  alive: boolean
}

export class CoreNet {
  now = 0
  private seq = 0
  private queue: Array<Delivery> = []
  readonly sockets = new Map<string, { node: SimNode; kind: SocketKind }>()
  readonly nodes: Array<SimNode> = []
  delivered = 0
  dropped = 0

  constructor(readonly random: () => number, readonly latency = 10, readonly lossRate = 0) {}

  add(host: string, port: number, opts: Partial<DhtNodeOptions> = {}): SimNode {
    const ref: { node: SimNode | null } = { node: null }
    const core = new DhtNode(
      {
        crypto: noble,
        random: this.random,
        // table ids and token secrets from the seeded source too: a run is reproducible
        randomBytes: (n) => Uint8Array.from({ length: n }, () => Math.floor(this.random() * 256)),
        serverPort: port,
        ...opts,
        transmit: (socket, to, data) => this.send(ref.node!, socket, to, data)
      },
      this.now
    )
    const node: SimNode = { host, serverPort: port, clientPort: port + 1000, core, alive: true }
    ref.node = node
    this.sockets.set(`${host}:${port}`, { node, kind: SERVER })
    this.sockets.set(`${host}:${port + 1000}`, { node, kind: CLIENT })
    this.nodes.push(node)
    return node
  }

  private send(from: SimNode, socket: SocketKind, to: { host: string; port: number }, data: Uint8Array): void {
    if (!from.alive) return
    if (this.lossRate > 0 && this.random() < this.lossRate) {
      this.dropped++
      return
    }
    const port = socket === SERVER ? from.serverPort : from.clientPort
    this.queue.push({ at: this.now + this.latency, seq: this.seq++, to: `${to.host}:${to.port}`, from: { host: from.host, port }, data: data.slice() })
  }

  /** Process events until `until` (ms) or until nothing is left before it. */
  run(until: number, maxSteps = 5_000_000): void {
    let steps = 0
    while (steps++ < maxSteps) {
      let nextTimer = Infinity
      let timerNode: SimNode | null = null
      for (const n of this.nodes) {
        if (!n.alive) continue
        const d = n.core.nextDeadline()
        if (d < nextTimer) {
          nextTimer = d
          timerNode = n
        }
      }
      let qi = -1
      let qAt = Infinity
      // queue is small enough in these tests for a linear min scan
      for (let i = 0; i < this.queue.length; i++) {
        const d = this.queue[i]!
        if (d.at < qAt || (d.at === qAt && d.seq < this.queue[qi]!.seq)) {
          qAt = d.at
          qi = i
        }
      }
      const next = Math.min(nextTimer, qAt)
      if (next > until) break
      this.now = next
      if (qAt <= nextTimer && qi >= 0) {
        const d = this.queue[qi]!
        this.queue[qi] = this.queue[this.queue.length - 1]!
        this.queue.pop()
        const s = this.sockets.get(d.to)
        if (s === undefined || !s.node.alive) {
          this.dropped++
          continue
        }
        this.delivered++
        s.node.core.onDatagram(this.now, s.kind, d.from, d.data)
      } else if (timerNode !== null) {
        timerNode.core.onTimers(this.now)
      }
    }
    this.now = Math.max(this.now, until)
  }
}
