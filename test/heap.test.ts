import { describe, expect, it } from "vitest"
import { Heap } from "../src/util/heap.js"

interface E {
  readonly at: number
  readonly seq: number
}

describe("Heap", () => {
  it("pops in (at, seq) order, matching a sort, across interleaved pushes and pops", () => {
    let seed = 12345
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed / 2147483648
    }
    for (let round = 0; round < 20; round++) {
      const h = new Heap<E>()
      const model: Array<E> = []
      let seq = 0
      for (let step = 0; step < 2000; step++) {
        if (rand() < 0.6) {
          // few distinct times, so ties (ordered by seq) are common
          const e = { at: Math.floor(rand() * 50) + (rand() < 0.3 ? 0.5 : 0), seq: seq++ }
          h.push(e)
          model.push(e)
        } else {
          model.sort((a, b) => a.at - b.at || a.seq - b.seq)
          expect(h.pop()).toBe(model.shift())
        }
        expect(h.size).toBe(model.length)
        model.sort((a, b) => a.at - b.at || a.seq - b.seq)
        expect(h.peek()).toBe(model[0])
      }
      while (h.size > 0) {
        model.sort((a, b) => a.at - b.at || a.seq - b.seq)
        expect(h.pop()).toBe(model.shift())
      }
      expect(h.pop()).toBeUndefined()
    }
  })
})
