/** Node Buffers (whose slice() is a view) as inputs: results unchanged, inputs never mutated. */
import { beforeAll, describe, expect, it } from "vitest"
import type { CryptoImpl } from "../src/layers/crypto/types.js"
import { toHex } from "../src/protocol/encoding.js"
import { cryptoImpls } from "./support/impls.js"

let impls: ReadonlyArray<CryptoImpl> = []
beforeAll(async () => {
  impls = await cryptoImpls()
})

describe("crypto with Buffer inputs", () => {
  it("verify / dh do not mutate a Buffer public key whose top bit is set; unaligned Buffer views work", () => {
    for (const c of impls) {
      const kp = c.keyPair(new Uint8Array(32).fill(5))!
      const msg = Buffer.from("message")
      const sig = c.sign(msg, kp.secretKey)!
      // a public key with bit 255 set (sign of x): a masking bug would clear it in place
      const pool = Buffer.alloc(100)
      const pk = pool.subarray(3, 35) // unaligned view into a shared buffer
      pk.set(kp.publicKey)
      const before = toHex(pk)
      expect(c.verify(Buffer.from(sig), msg, pk)).toBe(true)
      c.dh(kp.secretKey, pk)
      expect(toHex(pk)).toBe(before)
      // secretstream with an unaligned Buffer key and header
      const keyPool = Buffer.alloc(80, 7)
      const key = keyPool.subarray(1, 33)
      const header = keyPool.subarray(35, 59)
      const push = c.secretstreamInitPush(key, header)
      const pull = c.secretstreamInitPull(new Uint8Array(key), new Uint8Array(header))!
      const ct = c.secretstreamPush(push.state, Buffer.from("hello"))
      expect(Buffer.from(c.secretstreamPull(pull, ct)!.message).toString()).toBe("hello")
      expect(toHex(keyPool)).toBe("07".repeat(80))
    }
  })
})
