import { readFileSync } from "node:fs"
import { fromHex } from "../../src/protocol/encoding.js"

export const loadVectors = (name: "dht" | "connect"): any =>
  JSON.parse(readFileSync(new URL(`../vectors/${name}.json`, import.meta.url), "utf8"))

/** Hex to bytes; throws on malformed hex (test vectors only). */
export const hex = (s: string): Uint8Array => {
  const b = fromHex(s)
  if (b === null) throw new Error(`bad hex in vector: ${s.slice(0, 20)}`)
  return b
}

export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)
