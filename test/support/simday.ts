/**
 * The simulated day (bench/simday.mjs) run on this package's sources: the
 * bench takes the implementation's modules as an argument, so the suite
 * runs the same simulation on src/ that `npm run simday` runs on dist/.
 */
import { Effect } from "effect"
import * as Dial from "../../src/actors/holepunch/dial.js"
import * as Host from "../../src/actors/session/host.js"
import * as Server from "../../src/actors/session/server.js"
import * as Gateway from "../../src/api/GatewayService.js"
import * as Records from "../../src/api/records.js"
import { Crypto } from "../../src/layers/Crypto.js"
import { makeFast } from "../../src/layers/crypto/fast.js"
import { SimNetwork } from "../../src/layers/transport/sim.js"
import { Transport } from "../../src/layers/Transport.js"
import { VirtualClock } from "../../src/layers/VirtualClock.js"
import * as R from "../../src/protocol/records.js"
import { patternBytes } from "../../src/util/random.js"

export interface OpCount {
  readonly attempts: number
  readonly ok: number
}

export type OpClass = "normal" | "cross" | "islandWritten" | "healing"

export type OpKind =
  | "lookup"
  | "topicLookup"
  | "announce"
  | "mutablePut"
  | "mutableReadAfterPut"
  | "mutableGet"
  | "immutablePut"
  | "immutableReadAfterPut"
  | "immutableGet"
  | "connection"

export interface SimDayReport {
  readonly totals: {
    readonly ops: Record<OpKind, Record<OpClass, OpCount>>
    readonly exact: number
    readonly aborted: number
    readonly failures: Record<string, Record<string, number>>
    readonly streams: {
      readonly opened: number
      readonly completed: number
      readonly failed: number
      readonly bytesSent: number
      readonly bytesReceived: number
      readonly bytesLost: number
      readonly undeliveredOnFailure: number
      readonly gaps: number
    }
    readonly churn: { readonly killed: number; readonly started: number }
  }
  readonly hours: ReadonlyArray<unknown>
  readonly wallMs: number
  readonly memory: { readonly heapMB: number; readonly rssMB: number; readonly peakHeapMB: number; readonly peakRssMB: number }
}

export interface SimDayOptions {
  readonly nodes?: number
  readonly hours?: number
  readonly seed?: number
  readonly churn?: number
  readonly loss?: number
  readonly duplicate?: number
  readonly rates?: Partial<Record<"lookup" | "topicLookup" | "mutablePut" | "mutableGet" | "immutablePut" | "immutableGet" | "connection", number>>
  readonly log?: ((line: string) => void) | null
}

interface SimDayModule {
  readonly simulateDay: (lib: unknown, options: SimDayOptions) => Effect.Effect<SimDayReport, never, VirtualClock | import("effect/Scope").Scope>
  readonly table: (report: SimDayReport) => string
}

const lib = {
  VirtualClock,
  makeGateway: Gateway.makeGateway,
  GatewayService: Gateway.GatewayService,
  Crypto,
  makeFast,
  SimNetwork,
  Transport,
  Records,
  connectionHost: Host.connectionHost,
  ServerCore: Server.ServerCore,
  dial: Dial.dial,
  patternBytes,
  LOOKUP: R.Command.LOOKUP
}

const benchPath = "../../bench/simday.mjs"

/** Run the simulated day on a VirtualClock; the report and its markdown table. */
export const simulateDay = (options: SimDayOptions) =>
  Effect.gen(function*() {
    const bench = (yield* Effect.promise(() => import(benchPath))) as SimDayModule
    const report = yield* bench.simulateDay(lib, options).pipe(Effect.scoped, Effect.provide(VirtualClock.layer()))
    return { report, table: bench.table(report) }
  })

/** Successes over attempts (1 when nothing was attempted). */
export const successRate = (c: OpCount): number => (c.attempts === 0 ? 1 : c.ok / c.attempts)
