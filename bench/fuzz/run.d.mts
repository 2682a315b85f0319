// Types of bench/fuzz/run.mjs for the test suite (test/fuzz-live.test.ts).
export interface FuzzLib {
  readonly Gateway: unknown
  readonly Rpc: unknown
  readonly Records: unknown
  readonly Connect: unknown
  readonly Udx: unknown
  readonly E: unknown
}

export interface FuzzOptions {
  readonly count: number
  readonly seed?: number
  readonly burst?: number
  readonly window?: number
  readonly dataBytes?: number
  readonly logEvery?: number
  readonly log?: (line: string) => void
}

export interface FuzzSummary {
  readonly seed: number
  readonly count: number
  readonly runMs: number
  readonly rate: number
  readonly waitedOut: number
  readonly writtenOff: number
  readonly perKind: Record<string, number>
  readonly received: number
  readonly live: { readonly started: number; readonly requests: number; readonly responses: number; readonly withOwnId: number }
  readonly victims: { readonly opened: number; readonly closed: number; readonly dialFailures: number }
  readonly node: Record<string, unknown> & {
    readonly rpcDropped: number
    readonly socketDropped: number
    readonly udxRouted: number
    readonly udxUnknownId: number
    readonly udxDefects: number
  }
  readonly serverErrors: { readonly typed: number; readonly untyped: number }
  readonly blockedSends: { readonly count: number; readonly nonLoopback: number; readonly samples: ReadonlyArray<string> }
  readonly checks: {
    readonly pingFromOmega: boolean
    readonly pingFromReference: boolean
    readonly referenceLookupPeers: number
    readonly referenceFindNodeReachesT: boolean
    readonly tableBefore: ReadonlyArray<string>
    readonly tableAfter: ReadonlyArray<string>
    readonly recordsIntact: boolean
    readonly sentinel: { readonly upOk: boolean; readonly downOk: boolean; readonly up: number; readonly down: number }
    readonly freshConnection: { readonly upOk: boolean; readonly downOk: boolean }
    readonly uncaught: number
    readonly unhandled: number
    readonly gatewayErrors: number
  }
  readonly failures: ReadonlyArray<string>
}

export declare const runFuzz: (lib: FuzzLib, opts: FuzzOptions) => Promise<FuzzSummary>
