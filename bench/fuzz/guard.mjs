// Network safety for the live fuzzer: every node:dgram send in this process
// (the fuzzer's sockets and Omega's) may go only to 127.0.0.1 ports bound by
// this run. Fuzzed addresses (closer nodes, PING_NAT ports, relay and peer
// addresses of handshakes) can make a node aim at anything; such sends are
// dropped here and counted, so nothing reaches another program on the
// machine or the internet.
import dgram from "node:dgram"

export const installSendGuard = () => {
  const ports = new Set()
  const blocked = { count: 0, nonLoopback: 0, samples: [] }
  const protoSend = dgram.Socket.prototype.send
  const protoBind = dgram.Socket.prototype.bind
  dgram.Socket.prototype.bind = function guardedBind(...args) {
    this.once("listening", () => {
      try {
        ports.add(this.address().port)
      } catch {
        // closed before listening
      }
    })
    const r = protoBind.apply(this, args)
    try {
      ports.add(this.address().port) // bound synchronously (exclusive, no lookup)
    } catch {
      // bound later: 'listening'
    }
    return r
  }
  // (msg, [offset, length,] port, [address], [callback])
  dgram.Socket.prototype.send = function guardedSend(...args) {
    const rest = args.slice(1)
    if (typeof rest[0] === "number" && typeof rest[1] === "number" && typeof rest[2] === "number") rest.splice(0, 2)
    const port = rest[0]
    const address = typeof rest[1] === "string" ? rest[1] : "127.0.0.1"
    if (address !== "127.0.0.1" || !ports.has(port)) {
      blocked.count++
      if (!address.startsWith("127.")) blocked.nonLoopback++
      if (blocked.samples.length < 10) blocked.samples.push(`${address}:${String(port)}`)
      const cb = args.findLast((a) => typeof a === "function")
      if (cb !== undefined) queueMicrotask(() => cb(null, 0))
      return
    }
    return protoSend.apply(this, args)
  }
  return {
    ports,
    blocked,
    allow: (port) => ports.add(port),
    restore: () => {
      dgram.Socket.prototype.send = protoSend
      dgram.Socket.prototype.bind = protoBind
    }
  }
}
