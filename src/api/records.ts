/**
 * HyperDHT client operations (hyperdht-records.md §7) on a node: lookup,
 * announce, unannounce, findPeer, immutable and mutable put/get. Each is a
 * query actor in the node (../actors/routing/query.ts) with a commit step
 * for writes.
 *
 * Unlike the reference, writes report how many of the closest nodes
 * accepted them (a reply with error 0), fail with `WriteRejected` when none
 * did, and values too large for a 2048-byte datagram are refused up front
 * with `ValueTooLarge` stating the limit.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import type { NodeHandle } from "../actors/routing/driver.js"
import type { HyperDht } from "../actors/routing/hyperdht.js"
import { type Query, QueryError, type QueryOptions } from "../actors/routing/query.js"
import type { IncomingResponse, NodeAddress } from "../actors/routing/rpc.js"
import type { KeyPair } from "../layers/crypto/types.js"
import { decode, encode, equalBytes, type IPv4Address, isBytes, uint } from "../protocol/encoding.js"
import * as R from "../protocol/records.js"
import type { BootstrapInfo, GatewayHandle } from "./GatewayService.js"
import { InvalidArgument } from "./keys.js"

// ---- errors -----------------------------------------------------------------------

export class ValueTooLarge extends Data.TaggedError("ValueTooLarge")<{
  readonly operation: string
  readonly size: number
  readonly limit: number
}> {
  get code(): "VALUE_TOO_LARGE" {
    return "VALUE_TOO_LARGE"
  }
  override get message(): string {
    return `${this.operation}: the value is ${this.size} bytes; the limit is ${this.limit} bytes (a reply carrying it must fit the 2048-byte DHT datagram)`
  }
}

export interface RejectionCounts {
  /** Nodes that answered with error 0. */
  readonly accepted: number
  readonly seqReused: number
  readonly seqTooLow: number
  /** Other error replies (e.g. INVALID_TOKEN, UNKNOWN_COMMAND). */
  readonly otherErrors: number
  /** Commits that got no reply. */
  readonly failed: number
}

/** How one of the closest nodes answered a write (the name of the count it adds to). */
export type WriteOutcomeKind = "accepted" | "seqReused" | "seqTooLow" | "otherError" | "failed"

/** One closest node's answer to a write. */
export interface WriteOutcome {
  readonly to: NodeAddress
  readonly outcome: WriteOutcomeKind
  /** The node's error code (SEQ_REUSED 16, SEQ_TOO_LOW 17, INVALID_TOKEN 2, ...); 0 when accepted or unanswered. */
  readonly error: number
}

export class WriteRejected extends Data.TaggedError("WriteRejected")<{
  readonly operation: string
  /** Closest nodes the write was sent to (0: no persistent node answered the query). */
  readonly attempted: number
  readonly counts: RejectionCounts
  /** Each closest node's answer. */
  readonly writes?: ReadonlyArray<WriteOutcome>
  /** The writing node's bootstrap list and state, when no node was there to write to. */
  readonly bootstrap?: BootstrapInfo
}> {
  get code(): "WRITE_REJECTED" {
    return "WRITE_REJECTED"
  }
  override get message(): string {
    const c = this.counts
    if (this.attempted > 0) {
      return `${this.operation}: none of the ${this.attempted} closest nodes accepted the write (seq reused ${c.seqReused}, seq too low ${c.seqTooLow}, other errors ${c.otherErrors}, no reply ${c.failed})`
    }
    const base = `${this.operation}: no persistent node answered, nothing was stored`
    switch (this.bootstrap?.state) {
      case "unreachable":
        return `${base}: no bootstrap node answered (${this.bootstrap.nodes.join(", ")}); the node is offline or its bootstrap list is wrong`
      case "alone":
        return `${base}: the node has no bootstrap list and no other node has contacted it`
      default:
        return base
    }
  }
}

// ---- limits (hyperdht-records.md §5.3) -----------------------------------------------

/** Reply overhead with an id, a token and 20 closer nodes, before the value's own length prefix. */
const REPLY_OVERHEAD = 10 + 32 + 32 + 121
const uintLen = (n: number): number => (n <= 0xfc ? 1 : n <= 0xffff ? 3 : n <= 0xffffffff ? 5 : 9)

/** Largest immutable value whose IMMUTABLE_GET reply fits 2048 bytes: 1850. */
export const MAX_IMMUTABLE_VALUE = 2048 - REPLY_OVERHEAD - 3

/** Largest mutable value for a given seq (1782 for seq < 253). */
export const maxMutableValue = (seq: number): number => 2048 - REPLY_OVERHEAD - 3 - uintLen(seq) - 3 - 64

// ---- results --------------------------------------------------------------------------

export interface Peer {
  readonly publicKey: Uint8Array
  readonly relayAddresses: ReadonlyArray<IPv4Address>
}

export interface LookupResult {
  readonly token: Uint8Array | null
  readonly from: NodeAddress
  readonly to: IPv4Address
  readonly peers: ReadonlyArray<Peer>
  readonly bump: number
}

export interface FindPeerResult {
  readonly token: Uint8Array | null
  readonly from: NodeAddress
  readonly to: IPv4Address
  readonly peer: Peer
}

export interface WriteSummary extends RejectionCounts {
  readonly closestNodes: ReadonlyArray<NodeAddress>
  /** Each closest node's answer, in the order they arrived. */
  readonly writes: ReadonlyArray<WriteOutcome>
}

export interface ImmutablePutResult extends WriteSummary {
  readonly hash: Uint8Array
}

export interface MutablePutResult extends WriteSummary {
  readonly publicKey: Uint8Array
  readonly seq: number
  readonly signature: Uint8Array
}

export interface ImmutableGetResult {
  readonly token: Uint8Array | null
  readonly from: NodeAddress
  readonly to: IPv4Address
  readonly value: Uint8Array
}

export interface MutableGetResult {
  readonly token: Uint8Array | null
  readonly from: NodeAddress
  readonly to: IPv4Address
  readonly seq: number
  readonly value: Uint8Array
  readonly signature: Uint8Array
}

// ---- helpers ------------------------------------------------------------------------------

/** Keep the `Some` results of `f`. */
const filterMapOption =
  <A, B>(f: (a: A) => Option.Option<B>) =>
  <E, R>(self: Stream.Stream<A, E, R>): Stream.Stream<B, E, R> =>
    self.pipe(
      Stream.map(f),
      Stream.filter(Option.isSome),
      Stream.map((o) => o.value)
    )


/** The answers to a write's commits so far: the counts and each node's outcome. */
export interface Tally {
  accepted: number
  seqReused: number
  seqTooLow: number
  otherErrors: number
  failed: number
  readonly writes: Array<WriteOutcome>
}

const newTally = (): Tally => ({ accepted: 0, seqReused: 0, seqTooLow: 0, otherErrors: 0, failed: 0, writes: [] })

const countsOf = (t: Tally): RejectionCounts => ({ accepted: t.accepted, seqReused: t.seqReused, seqTooLow: t.seqTooLow, otherErrors: t.otherErrors, failed: t.failed })

const record = (tally: Tally, to: NodeAddress, outcome: WriteOutcomeKind, error: number): void => {
  if (outcome === "otherError") tally.otherErrors++
  else tally[outcome]++
  tally.writes.push({ to, outcome, error })
}

/**
 * A commit function for the query: send `request(reply)` with the reply's
 * token to each closest reply, tally the answers. A commit "succeeds" only on
 * error 0.
 */
const committer = (
  h: NodeHandle,
  tally: Tally,
  build: (reply: IncomingResponse, q: Query) => { readonly command: number; readonly target: Uint8Array; readonly value: Uint8Array } | null
) =>
(reply: IncomingResponse, q: Query, done: (err: unknown | null) => void): void => {
  const args = reply.token === null ? null : build(reply, q)
  if (args === null) {
    record(tally, reply.from, "failed", 0)
    return done(new Error("no token from this node"))
  }
  const r = h.core.directRequest(
    { token: reply.token, command: args.command, target: args.target, value: args.value },
    reply.from,
    {},
    (res) => {
      if (res.error === 0) {
        record(tally, reply.from, "accepted", 0)
        done(null)
      } else {
        record(tally, reply.from, res.error === R.ErrorCode.SEQ_REUSED ? "seqReused" : res.error === R.ErrorCode.SEQ_TOO_LOW ? "seqTooLow" : "otherError", res.error)
        done(new Error(`error ${res.error}`))
      }
    },
    (err) => {
      record(tally, reply.from, "failed", 0)
      done(err)
    }
  )
  if (r === null) {
    record(tally, reply.from, "failed", 0)
    done(new Error("node destroyed"))
  }
}

/**
 * A finished write query as its summary, or the WriteRejected when no node
 * accepted (naming the node's bootstrap state when there was nobody to
 * write to).
 */
const settleWrite = (h: NodeHandle, operation: string, tally: Tally, query: Query | null, failed: boolean): WriteSummary | WriteRejected => {
  const replies = query?.closestReplies ?? []
  if (failed || tally.accepted === 0) {
    const bootstrap = (h as Partial<GatewayHandle>).bootstrap
    return new WriteRejected({
      operation,
      attempted: replies.length,
      counts: countsOf(tally),
      writes: [...tally.writes],
      ...(replies.length === 0 && bootstrap !== undefined ? { bootstrap: { nodes: bootstrap.nodes, state: bootstrap.state } } : {})
    })
  }
  return { ...countsOf(tally), closestNodes: replies.map((r) => r.from), writes: [...tally.writes] }
}

/** Run a write query to completion and turn the tally into a summary or a WriteRejected. */
const runWrite = (
  h: NodeHandle,
  operation: string,
  args: { readonly target: Uint8Array; readonly command: number; readonly value?: Uint8Array | null },
  opts: QueryOptions,
  tally: Tally,
  commit: NonNullable<QueryOptions["commit"]>
): Effect.Effect<WriteSummary, WriteRejected> =>
  writeSummary(h, operation, tally, args, { ...opts, commit }, () => {})

/** Run a write query; its tally as a summary, or a WriteRejected when no node accepted. */
const writeSummary = (
  h: NodeHandle,
  operation: string,
  tally: Tally,
  args: { readonly target: Uint8Array; readonly command: number; readonly value?: Uint8Array | null },
  opts: QueryOptions,
  onreply: (r: IncomingResponse) => void
): Effect.Effect<WriteSummary, WriteRejected> => {
  return Effect.suspend(() => {
    let query: Query | null = null
    return Effect.flatMap(Effect.result(h.runQuery(args, opts, onreply, (q) => (query = q))), (ended) => {
      const s = settleWrite(h, operation, tally, query, Result.isFailure(ended))
      return s instanceof WriteRejected ? Effect.fail(s) : Effect.succeed(s)
    })
  })
}

// ---- operations -------------------------------------------------------------------------------

/** LOOKUP: a stream of replies that carry peers for `topic`. */
export const lookup = (h: NodeHandle, topic: Uint8Array, opts: QueryOptions = {}): Stream.Stream<LookupResult, QueryError | InvalidArgument> => {
  const args = lookupQuery(topic)
  return args instanceof InvalidArgument ? Stream.fail(args) : h.query(args, opts).pipe(filterMapOption(toLookupResult))
}

/** A query's target and command (the arguments of NodeHandle.query / runQuery). */
export interface QueryArgs {
  readonly target: Uint8Array
  readonly command: number
}

/** LOOKUP's query arguments for `topic`, or the InvalidArgument a malformed topic gets. */
export const lookupQuery = (topic: Uint8Array): QueryArgs | InvalidArgument =>
  isBytes(topic, 32) ? { target: topic, command: R.Command.LOOKUP } : new InvalidArgument({ argument: "topic", detail: "expected 32 bytes" })

/** FIND_PEER's query arguments for `publicKey` (target BLAKE2b(publicKey) unless `hash: false`), or an InvalidArgument. */
export const findPeerQuery = (blake2b: (b: Uint8Array) => Uint8Array, publicKey: Uint8Array, opts: { readonly hash?: boolean } = {}): QueryArgs | InvalidArgument =>
  isBytes(publicKey, 32)
    ? { target: opts.hash === false ? publicKey : blake2b(publicKey), command: R.Command.FIND_PEER }
    : new InvalidArgument({ argument: "publicKey", detail: "expected 32 bytes" })

/** A LOOKUP reply as a LookupResult, or null when it carries no (decodable) peer list. */
export const lookupResultOf = (r: IncomingResponse): LookupResult | null => {
  if (r.value === null) return null
  const m = decode(R.lookupReply, r.value)
  if (Result.isFailure(m)) return null
  return { token: r.token, from: r.from, to: r.to, peers: m.success.peers, bump: m.success.bump }
}

const toLookupResult = (r: IncomingResponse): Option.Option<LookupResult> => Option.fromNullishOr(lookupResultOf(r))

export interface AnnounceOptions extends QueryOptions {
  readonly bump?: number
  /** Unannounce from the current holders first, so new relay addresses replace old ones everywhere. */
  readonly clear?: boolean
}

/** A query's arguments, its options (with the commit step) and its end as a write's result. */
export interface WritePlan {
  readonly args: QueryArgs
  readonly opts: QueryOptions
  /** The answers so far, each node's as it arrives. */
  readonly tally: Tally
  /** The finished query (null if it never started) as the write's summary or its WriteRejected. */
  readonly settle: (query: Query | null, failed: boolean) => WriteSummary | WriteRejected
}

/**
 * An announce as a query to run: a LOOKUP of `topic` whose commit step sends
 * the signed ANNOUNCE of `keyPair.publicKey` (with up to 3 `relayAddresses`)
 * to each of the closest nodes. Or the InvalidArgument of a malformed
 * argument. (`clear` is the caller's: unannounce first.)
 */
export const announcePlan = (
  h: NodeHandle,
  topic: Uint8Array,
  keyPair: KeyPair,
  relayAddresses: ReadonlyArray<IPv4Address> = [],
  opts: AnnounceOptions = {}
): WritePlan | InvalidArgument => {
  if (!isBytes(topic, 32)) return new InvalidArgument({ argument: "topic", detail: "expected 32 bytes" })
  if (!isBytes(keyPair?.publicKey, 32) || !isBytes(keyPair?.secretKey, 64)) {
    return new InvalidArgument({ argument: "keyPair", detail: "expected { publicKey: 32 bytes, secretKey: 64 bytes }" })
  }
  const relays = Array.isArray(relayAddresses) ? relayAddresses.slice(0, 3) : []
  const peerBytes = encode(R.peer, { publicKey: keyPair.publicKey, relayAddresses: relays })
  if (Result.isFailure(peerBytes)) return new InvalidArgument({ argument: "relayAddresses", detail: peerBytes.failure.detail })
  const c = h.core.crypto
  const ns = R.namespaces(c.blake2b)
  const tally = newTally()
  const commit = committer(h, tally, (reply) => {
    if (reply.from.id === null || reply.token === null) return null
    const signable = R.annSignable(c.blake2b, topic, reply.from.id, reply.token, peerBytes.success, null, ns.ANNOUNCE)
    if (Result.isFailure(signable)) return null
    const signature = c.sign(signable.success, keyPair.secretKey)
    if (signature === null) return null
    const value = encode(R.announce, { peer: { publicKey: keyPair.publicKey, relayAddresses: relays }, refresh: null, signature, bump: opts.bump ?? 0 })
    return Result.isSuccess(value) ? { command: R.Command.ANNOUNCE, target: topic, value: value.success } : null
  })
  const { bump: _bump, clear: _clear, ...queryOpts } = opts
  return {
    args: { target: topic, command: R.Command.LOOKUP },
    opts: { ...queryOpts, commit },
    tally,
    settle: (query, failed) => settleWrite(h, "announce", tally, query, failed)
  }
}

/**
 * ANNOUNCE `keyPair.publicKey` with `relayAddresses` under `topic`: a LOOKUP,
 * then a signed ANNOUNCE to each of the closest nodes. Returns the lookup
 * replies and how many closest nodes accepted the announcement.
 */
export const announce = (
  h: NodeHandle,
  topic: Uint8Array,
  keyPair: KeyPair,
  relayAddresses: ReadonlyArray<IPv4Address> = [],
  opts: AnnounceOptions = {}
): Effect.Effect<WriteSummary & { readonly replies: ReadonlyArray<LookupResult> }, WriteRejected | InvalidArgument> =>
  Effect.gen(function*() {
    const plan = announcePlan(h, topic, keyPair, relayAddresses, opts)
    if (plan instanceof InvalidArgument) return yield* plan
    if (opts.clear === true) yield* Effect.ignore(unannounce(h, topic, keyPair, opts))
    const collected: Array<LookupResult> = []
    let query: Query | null = null
    const ended = yield* Effect.result(h.runQuery(plan.args, plan.opts, (r) => {
      const x = lookupResultOf(r)
      if (x !== null) collected.push(x)
    }, (q) => (query = q)))
    const summary = plan.settle(query, Result.isFailure(ended))
    if (summary instanceof WriteRejected) return yield* summary
    return { ...summary, replies: collected }
  })

/** UNANNOUNCE our key from every node that holds it (or returned a full page of records). */
export const unannounce = (h: NodeHandle, topic: Uint8Array, keyPair: KeyPair, opts: QueryOptions = {}): Effect.Effect<number, InvalidArgument | QueryError> =>
  Effect.gen(function*() {
    if (!isBytes(topic, 32)) return yield* new InvalidArgument({ argument: "topic", detail: "expected 32 bytes" })
    if (!isBytes(keyPair?.publicKey, 32) || !isBytes(keyPair?.secretKey, 64)) {
      return yield* new InvalidArgument({ argument: "keyPair", detail: "expected { publicKey: 32 bytes, secretKey: 64 bytes }" })
    }
    const c = h.core.crypto
    const ns = R.namespaces(c.blake2b)
    // a HyperDHT node (GatewayHandle) first drops its own copy: its LOOKUP never asks itself
    const local = (h as NodeHandle & { readonly hyperdht?: HyperDht }).hyperdht
    if (local !== undefined) yield* h.run((_node, now) => local.unannounceLocal(topic, keyPair.publicKey, now))
    const peerBytes = Result.getOrThrow(encode(R.peer, { publicKey: keyPair.publicKey, relayAddresses: [] }))
    const holders: Array<LookupResult> = []
    yield* Stream.runForEach(lookup(h, topic, opts), (r) =>
      Effect.sync(() => {
        if (r.token === null || r.from.id === null) return
        if (r.peers.length >= 20 || r.peers.some((p) => equalBytes(p.publicKey, keyPair.publicKey))) holders.push(r)
      })
    ).pipe(Effect.catchTag("InvalidArgument", (e) => Effect.die(e)))
    const results = yield* Effect.forEach(
      holders,
      (r) => {
        const signable = Result.getOrThrow(R.annSignable(c.blake2b, topic, r.from.id!, r.token!, peerBytes, null, ns.UNANNOUNCE))
        const signature = c.sign(signable, keyPair.secretKey)!
        const value = Result.getOrThrow(encode(R.announce, { peer: { publicKey: keyPair.publicKey, relayAddresses: [] }, refresh: null, signature, bump: 0 }))
        return Effect.result(h.request({ token: r.token, command: R.Command.UNANNOUNCE, target: topic, value }, r.from))
      },
      { concurrency: "unbounded" }
    )
    return results.filter((x) => Result.isSuccess(x) && x.success.error === 0).length
  })

/** FIND_PEER: replies that carry the peer record of `publicKey` (its announced relays). */
export const findPeer = (
  h: NodeHandle,
  publicKey: Uint8Array,
  opts: QueryOptions & { readonly hash?: boolean } = {}
): Stream.Stream<FindPeerResult, QueryError | InvalidArgument> => {
  const args = findPeerQuery((b) => h.core.crypto.blake2b(b), publicKey, opts)
  if (args instanceof InvalidArgument) return Stream.fail(args)
  return h.query(args, opts).pipe(filterMapOption((r) => Option.fromNullishOr(findPeerResultOf(r))))
}

/** A FIND_PEER reply as a FindPeerResult, or null when it carries no (decodable) record. */
export const findPeerResultOf = (r: IncomingResponse): FindPeerResult | null => {
  if (r.value === null) return null
  const m = decode(R.peer, r.value)
  return Result.isSuccess(m) ? { token: r.token, from: r.from, to: r.to, peer: m.success } : null
}

/** Store an immutable value under BLAKE2b-256(value) on the closest nodes. */
export const immutablePut = (h: NodeHandle, value: Uint8Array, opts: QueryOptions = {}): Effect.Effect<ImmutablePutResult, WriteRejected | ValueTooLarge | InvalidArgument> =>
  Effect.gen(function*() {
    if (!isBytes(value)) return yield* new InvalidArgument({ argument: "value", detail: "expected a Uint8Array" })
    if (value.length > MAX_IMMUTABLE_VALUE) return yield* new ValueTooLarge({ operation: "immutablePut", size: value.length, limit: MAX_IMMUTABLE_VALUE })
    const target = h.core.crypto.blake2b(value)
    const tally = newTally()
    const commit = committer(h, tally, () => ({ command: R.Command.IMMUTABLE_PUT, target, value }))
    const s = yield* runWrite(h, "immutablePut", { target, command: R.Command.IMMUTABLE_GET }, opts, tally, commit)
    return { ...s, hash: target }
  })

/** The first stored value whose hash matches, or null. */
export const immutableGet = (h: NodeHandle, hash: Uint8Array, opts: QueryOptions = {}): Effect.Effect<ImmutableGetResult | null, QueryError | InvalidArgument> =>
  Effect.gen(function*() {
    if (!isBytes(hash, 32)) return yield* new InvalidArgument({ argument: "hash", detail: "expected 32 bytes" })
    const c = h.core.crypto
    let found: ImmutableGetResult | null = null
    yield* h.runQuery({ target: hash, command: R.Command.IMMUTABLE_GET }, opts, (r, stop) => {
      if (r.value !== null && equalBytes(c.blake2b(r.value), hash)) {
        found = { token: r.token, from: r.from, to: r.to, value: r.value }
        stop()
      }
    })
    return found
  })

/** Store a signed mutable value under BLAKE2b-256(publicKey). */
export const mutablePut = (
  h: NodeHandle,
  keyPair: KeyPair,
  value: Uint8Array,
  opts: QueryOptions & { readonly seq?: number } = {}
): Effect.Effect<MutablePutResult, WriteRejected | ValueTooLarge | InvalidArgument> =>
  Effect.gen(function*() {
    if (!isBytes(keyPair?.publicKey, 32) || !isBytes(keyPair?.secretKey, 64)) {
      return yield* new InvalidArgument({ argument: "keyPair", detail: "expected { publicKey: 32 bytes, secretKey: 64 bytes }" })
    }
    if (!isBytes(value)) return yield* new InvalidArgument({ argument: "value", detail: "expected a Uint8Array" })
    const seq = opts.seq ?? 0
    if (!Number.isSafeInteger(seq) || seq < 0) return yield* new InvalidArgument({ argument: "seq", detail: `${seq} is not an unsigned integer` })
    const limit = maxMutableValue(seq)
    if (value.length > limit) return yield* new ValueTooLarge({ operation: "mutablePut", size: value.length, limit })
    const c = h.core.crypto
    const signable = Result.getOrThrow(R.mutableSignable64(c.blake2b, seq, value))
    const signature = c.sign(signable, keyPair.secretKey)
    if (signature === null) return yield* new InvalidArgument({ argument: "keyPair", detail: "the secret key cannot sign" })
    const target = c.blake2b(keyPair.publicKey)
    const put = encode(R.mutablePutRequest, { publicKey: keyPair.publicKey, seq, value, signature })
    if (Result.isFailure(put)) return yield* new InvalidArgument({ argument: "value", detail: put.failure.detail })
    const tally = newTally()
    const commit = committer(h, tally, () => ({ command: R.Command.MUTABLE_PUT, target, value: put.success }))
    const s = yield* runWrite(h, "mutablePut", { target, command: R.Command.MUTABLE_GET, value: Result.getOrThrow(encode(uint, 0)) }, opts, tally, commit)
    return { ...s, publicKey: keyPair.publicKey, seq, signature }
  })

/** The latest (or, with latest: false, the first) verified value signed by `publicKey`, or null. */
export const mutableGet = (
  h: NodeHandle,
  publicKey: Uint8Array,
  opts: QueryOptions & { readonly seq?: number; readonly latest?: boolean } = {}
): Effect.Effect<MutableGetResult | null, QueryError | InvalidArgument> =>
  Effect.gen(function*() {
    if (!isBytes(publicKey, 32)) return yield* new InvalidArgument({ argument: "publicKey", detail: "expected 32 bytes" })
    const minSeq = opts.seq ?? 0
    if (!Number.isSafeInteger(minSeq) || minSeq < 0) return yield* new InvalidArgument({ argument: "seq", detail: `${minSeq} is not an unsigned integer` })
    const c = h.core.crypto
    const target = c.blake2b(publicKey)
    const latest = opts.latest !== false
    // With `latest`, only a higher seq than the best verified one can change
    // the result, so replies that cannot are not verified at all: the k
    // closest nodes usually all hold the same record, and a signature check
    // is the dearest step of a read.
    let best: MutableGetResult | null = null
    yield* h.runQuery({ target, command: R.Command.MUTABLE_GET, value: Result.getOrThrow(encode(uint, minSeq)) }, opts, (r, stop) => {
      if (r.value === null) return
      const m = decode(R.mutableGetResponse, r.value)
      if (Result.isFailure(m) || m.success.seq < minSeq) return
      if (best !== null && m.success.seq <= best.seq) return
      const signable = R.mutableSignable64(c.blake2b, m.success.seq, m.success.value)
      if (Result.isFailure(signable) || !c.verify(m.success.signature, signable.success, publicKey)) return
      best = { token: r.token, from: r.from, to: r.to, seq: m.success.seq, value: m.success.value, signature: m.success.signature }
      if (!latest) stop()
    })
    return best
  })

export { InvalidArgument, QueryError }
