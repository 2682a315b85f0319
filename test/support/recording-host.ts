/**
 * A simulated host whose sockets report every datagram they send (to record
 * what a peer's node puts on the wire, in order). `onSend` gets the
 * socket's index (in the order the host opened them), the destination, the
 * bytes and the TTL asked for; the datagram then leaves as usual.
 */
import type { SimHost } from "../../src/layers/transport/sim.js"
import { BindError, type Endpoint, type OwnedSocket } from "../../src/layers/Transport.js"

export type OnSend = (socket: number, to: Endpoint, data: Uint8Array, ttl: number | undefined) => void

export const recordingHost = (onSend: OnSend) => (host: SimHost): SimHost => {
  let sockets = 0
  return {
    ...host,
    open: (options) => {
      const s = host.open(options)
      if (s instanceof BindError) return s
      const id = sockets++
      const send = (to: Endpoint, data: Uint8Array, ttl?: number): void => {
        onSend(id, to, data, ttl)
        s.send(to, data, ttl)
      }
      return new Proxy(s, {
        get: (target, key) => {
          if (key === "send") return send
          const v: unknown = Reflect.get(target, key, target)
          return typeof v === "function" ? v.bind(target) : v
        }
      }) as OwnedSocket
    }
  }
}
