/**
 * Interop: Gateway.keyPair(seed) equals the reference hyperdht keyPair(seed),
 * through the built package entry (what `npm install` leaves behind) and
 * through the sources.
 */
import HyperDHT from "hyperdht"
import { describe, expect, it } from "vitest"
import { patternBytes } from "../src/util/random.js"
import { Gateway as SourceGateway, InvalidSeed } from "../src/api/Gateway.js"

// deterministic seeds: vectors' edge cases plus a seeded pseudo-random series
const seeds = (): Array<Uint8Array> => {
  const out: Array<Uint8Array> = [new Uint8Array(32), new Uint8Array(32).fill(0xff), Uint8Array.from({ length: 32 }, (_, i) => i)]
  for (let n = 0; n < 200; n++) out.push(patternBytes(32, 0x9e3779b9 + n))
  return out
}

describe("Gateway.keyPair interop with hyperdht", () => {
  it("the package main entry exports Gateway as named and default export", async () => {
    const pkg: any = await import("@omegajs/gateway")
    expect(typeof pkg.Gateway).toBe("function")
    expect(pkg.default).toBe(pkg.Gateway)
    expect(typeof pkg.Gateway.keyPair).toBe("function")
  })

  it("equals the reference keyPair(seed) for 203 seeds (package entry and sources)", async () => {
    const pkg: any = await import("@omegajs/gateway")
    for (const seed of seeds()) {
      const ref = HyperDHT.keyPair(Buffer.from(seed))
      for (const G of [pkg.Gateway, SourceGateway]) {
        const ours = G.keyPair(seed)
        expect(Buffer.from(ours.publicKey).toString("hex")).toBe(ref.publicKey.toString("hex"))
        expect(Buffer.from(ours.secretKey).toString("hex")).toBe(ref.secretKey.toString("hex"))
      }
    }
  })

  it("random key pairs (no seed) are valid: signatures verify with the reference", () => {
    for (let i = 0; i < 5; i++) {
      const kp = SourceGateway.keyPair()
      expect(kp.publicKey.length).toBe(32)
      expect(kp.secretKey.length).toBe(64)
      const again = SourceGateway.keyPair(kp.secretKey.subarray(0, 32))
      expect(again.publicKey.equals(kp.publicKey)).toBe(true)
    }
  })

  it("a seed that is not 32 bytes is a tagged InvalidSeed error", () => {
    for (const bad of [new Uint8Array(31), new Uint8Array(33), "seed" as any]) {
      let caught: unknown
      try {
        SourceGateway.keyPair(bad)
      } catch (e) {
        caught = e
      }
      expect(caught).toBeInstanceOf(InvalidSeed)
      expect((caught as InvalidSeed)._tag).toBe("InvalidSeed")
    }
  })

  it("new Gateway({ seed }) derives the default key pair as the reference does", () => {
    const seed = seeds()[7]!
    const g = new SourceGateway({ seed })
    expect(g.defaultKeyPair.publicKey.toString("hex")).toBe(HyperDHT.keyPair(Buffer.from(seed)).publicKey.toString("hex"))
  })
})
