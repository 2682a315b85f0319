/**
 * A simulated day, scaled down (bench/simday.mjs; `npm run simday` is the
 * full one): 200 HyperDHT nodes for 2 simulated hours on the simulated
 * network and a VirtualClock, with the day's fault mix: 30% of the nodes
 * replaced over the run, 5% loss on every link, jitter (reordering) and 1%
 * duplication, a 20% island cut off for 12 minutes and then healed; the
 * workload (lookups, topic lookups and announces, mutable and immutable
 * puts and gets, connections between public keys carrying 64 KiB each way)
 * runs throughout.
 *
 * Goals: lookups ≥ 99% successful; every record readable after its put and
 * later; announced topics found; streams lose 0 bytes (each one delivers
 * everything in order, or fails with a typed error). Operations that cannot
 * succeed because their target is across the partition, reads of records
 * written on the island during the partition, and the 10 minutes after the
 * heal while the two sides' routing tables merge are counted apart and
 * printed, not asserted.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type OpKind, simulateDay, successRate } from "./support/simday.js"

describe("a simulated day (200 nodes, 2 hours, churn 30%, loss 5%, reordering, duplication, a healed partition)", () => {
  it.live("lookups ≥ 99%, records readable, topics found, streams lose 0 bytes", () =>
    Effect.gen(function*() {
      const { report, table } = yield* simulateDay({
        nodes: 200,
        hours: 2,
        seed: 1,
        rates: { lookup: 10, topicLookup: 3, mutablePut: 1, mutableGet: 2, immutablePut: 1, immutableGet: 2, connection: 1 },
        log: null
      })
      console.log(table)
      const ops = report.totals.ops
      const normal = (k: OpKind) => ops[k].normal
      assert.isAtLeast(normal("lookup").attempts, 1000)
      assert.isAtLeast(successRate(normal("lookup")), 0.99, `lookups: ${JSON.stringify(normal("lookup"))}`)
      for (const k of ["topicLookup", "announce", "mutablePut", "mutableReadAfterPut", "mutableGet", "immutablePut", "immutableReadAfterPut", "immutableGet"] as const) {
        assert.isAbove(normal(k).attempts, 0, `${k} attempted`)
        assert.isAtLeast(successRate(normal(k)), 0.99, `${k}: ${JSON.stringify(normal(k))} ${JSON.stringify(report.totals.failures)}`)
      }
      assert.isAtLeast(normal("connection").attempts, 60)
      assert.isAtLeast(successRate(normal("connection")), 0.95, `connections: ${JSON.stringify(normal("connection"))} ${JSON.stringify(report.totals.failures)}`)
      const s = report.totals.streams
      assert.strictEqual(s.bytesLost, 0, "no stream lost, reordered or corrupted a byte")
      assert.strictEqual(s.gaps, 0)
      assert.isAbove(s.completed, 0)
      assert.strictEqual(report.totals.churn.killed, 60, "30% of the nodes replaced")
    }), 180_000)
})
