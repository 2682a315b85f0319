// The node:dgram ceiling on loopback: two sockets, a closed loop of `window`
// datagrams of `size` bytes in flight (every datagram received triggers one
// more send), measured for `seconds` after a warm-up. What any pure-JS UDP
// stack pays per datagram at best. Returns the raw counts; callers derive
// their own units.
import * as dgram from "node:dgram"

const delay = (ms) => new Promise((r) => setTimeout(r, ms))

/** @returns {Promise<{ datagrams: number, seconds: number, cpuMs: number, size: number }>} */
export async function dgramClosedLoop({ size, seconds, host = "127.0.0.1", window = 128, bufferSize = 1 << 20, warmupMs = 300 }) {
  const payload = new Uint8Array(size).fill(7)
  const bind = () =>
    new Promise((resolve) => {
      const s = dgram.createSocket({ type: "udp4", recvBufferSize: bufferSize, sendBufferSize: bufferSize })
      s.bind(0, host, () => resolve(s))
    })
  const a = await bind()
  const b = await bind()
  const port = b.address().port
  let received = 0
  b.on("message", () => {
    received++
    a.send(payload, port, host)
  })
  for (let i = 0; i < window; i++) a.send(payload, port, host)
  await delay(warmupMs)
  const c0 = process.cpuUsage()
  const n0 = received
  const t0 = performance.now()
  await delay(seconds * 1000)
  const datagrams = received - n0
  const elapsed = (performance.now() - t0) / 1000
  const c = process.cpuUsage(c0)
  a.close()
  b.close()
  return { datagrams, seconds: elapsed, cpuMs: (c.user + c.system) / 1000, size }
}
