/** Byte streams for connection tests: deterministic payloads, reading a Duplex to its end, writing with backpressure. */
import { createHash } from "node:crypto"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any

/** `n` bytes of a deterministic pattern (a SHA-256 chain from `seed`), and their digest. */
export const pattern = (n: number, seed: string): { data: Buffer; digest: string } => {
  const data = Buffer.alloc(n)
  let block = createHash("sha256").update(seed).digest()
  for (let i = 0; i < n; i += 32) {
    block.copy(data, i, 0, Math.min(32, n - i))
    block = createHash("sha256").update(block).digest()
  }
  return { data, digest: createHash("sha256").update(data).digest("hex") }
}

/** Read a socket to its end: byte count and digest. */
export const drain = (s: Any): Promise<{ bytes: number; digest: string }> =>
  new Promise((resolve, reject) => {
    const h = createHash("sha256")
    let bytes = 0
    s.on("data", (d: Buffer) => {
      bytes += d.length
      h.update(d)
    })
    s.on("end", () => resolve({ bytes, digest: h.digest("hex") }))
    s.on("error", reject)
  })

/** Write `data` in `chunk`-byte pieces honouring backpressure, then end. */
export const pump = async (s: Any, data: Buffer, chunk = 65_536): Promise<void> => {
  for (let i = 0; i < data.length; i += chunk) {
    if (!s.write(data.subarray(i, i + chunk))) await new Promise<void>((r) => s.once("drain", r))
  }
  s.end()
}
