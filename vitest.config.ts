import { defineConfig } from "vitest/config"

// Node 20 lacks Map.groupBy / Object.groupBy (added in Node 21); vitest 5's
// reporter uses them when printing failures. This file runs in the main
// vitest process, so patching here is enough.
const g = globalThis as any
if (typeof g.Map.groupBy !== "function") {
  g.Map.groupBy = <K, V>(items: Iterable<V>, key: (v: V, i: number) => K) => {
    const m = new Map<K, Array<V>>()
    let i = 0
    for (const v of items) {
      const k = key(v, i++)
      const a = m.get(k)
      if (a) a.push(v)
      else m.set(k, [v])
    }
    return m
  }
}
if (typeof g.Object.groupBy !== "function") {
  g.Object.groupBy = <V>(items: Iterable<V>, key: (v: V, i: number) => PropertyKey) => {
    const o: Record<PropertyKey, Array<V>> = Object.create(null)
    let i = 0
    for (const v of items) {
      const k = key(v, i++)
      ;(o[k] ??= []).push(v)
    }
    return o
  }
}

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/setup/network-guard.ts"],
    testTimeout: 60_000
  }
})
