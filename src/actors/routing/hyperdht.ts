/**
 * The HyperDHT layer on a node (hyperdht-records.md §5–§6): storage of
 * announcements, mutable and immutable records on persistent nodes, with
 * the reference's caches, signature and token checks.
 *
 * `makeHyperDht` returns the application-request handler to install as the
 * node's `onRequest`. It runs inside the node actor, synchronously, on the
 * node's clock: plain deterministic code. Only a write's signature check may
 * complete in a later step (an `AsyncVerify` given on real UDP); the write is
 * then stored and answered in that step, on the node's time there.
 */
import * as Result from "effect/Result"
import type { CryptoImpl } from "../../layers/crypto/types.js"
import { copyBytes, decode, encode, equalBytes, toHex, uint } from "../../protocol/encoding.js"
import * as R from "../../protocol/records.js"
import type { DhtNode } from "./node.js"
import { Router } from "./router.js"
import type { IncomingRequest } from "./rpc.js"
import { SourceQuota } from "./limits.js"
import { Cache, RecordCache, UnverifiedBudget } from "./store.js"

export interface HyperDhtOptions {
  /** Entries per cache generation (default 65536; mutable/immutable 32768). */
  readonly maxSize?: number
  /** Announce records' maxAge in ms (default 20 min); also mutable/immutable when given. */
  readonly maxAge?: number
  /**
   * How many bytes of stored data (records, values) this node sends to a
   * source that showed no round-trip token, per source IPv4 address: a
   * burst, refilled at `perSecond` (default 8192 bytes, 2048 bytes/s; see
   * `UnverifiedBudget`). Past it, FIND_PEER / LOOKUP / MUTABLE_GET /
   * IMMUTABLE_GET are answered as by a node that holds nothing (token and
   * closer nodes, no value). `false`: no limit (the reference's behaviour).
   */
  readonly unverifiedReplyBudget?: { readonly burst: number; readonly perSecond: number } | false
  /**
   * How many announcements (records and server entries) one source IPv4
   * address may have stored on this node at once (default
   * MAX_ANNOUNCES_PER_SOURCE); as many refresh tokens, and half as many
   * mutable and as many immutable values. A write past it is dropped and
   * counted (`rejections.sourceQuota`); a refresh of what the source already
   * stored always passes. Local sources (loopback, private ranges) are not
   * counted. `false`: no per-source limit (the reference's behaviour).
   */
  readonly maxRecordsPerSource?: number | false
}

export interface ForwardEntry {
  /** The announcing server's address as this node saw it; null for a server listening on this node. */
  readonly relay: { readonly host: string; readonly port: number } | null
  readonly record: Uint8Array
}

interface RefreshEntry {
  readonly topic: Uint8Array
  readonly record: Uint8Array
  readonly announceSelf: boolean
}

/** Why a write was refused without an answer (hyperdht-records.md §6: silent drops). */
export interface HyperDhtRejections {
  /** ANNOUNCE / UNANNOUNCE / MUTABLE_PUT / IMMUTABLE_PUT without a round-trip token. */
  missingToken: number
  /** ANNOUNCE whose signature does not verify (another key, another node's id or token, another namespace, altered bytes). */
  badAnnounceSignature: number
  /** UNANNOUNCE whose signature does not verify. */
  badUnannounceSignature: number
  /** MUTABLE_PUT whose signature does not verify over (seq, value). */
  badMutableSignature: number
  /** MUTABLE_PUT whose key does not hash to the target; IMMUTABLE_PUT whose value does not. */
  targetMismatch: number
  /** A refresh-only ANNOUNCE naming a refresh token this node does not hold. */
  unknownRefresh: number
  /** No target or value, or a value that does not decode. */
  malformed: number
  /** A valid write of a new entry from a source that already holds its share of the store (`maxRecordsPerSource`). */
  sourceQuota: number
}

export interface HyperDhtStats {
  announces: number
  unannounces: number
  mutablePuts: number
  immutablePuts: number
  /** Writes refused without an answer, all causes: the sum of `rejections`. */
  rejected: number
  rejections: HyperDhtRejections
  /** MUTABLE_PUT with a lower seq than the stored one: answered SEQ_TOO_LOW, nothing changed. */
  seqTooLow: number
  /** MUTABLE_PUT with the stored seq and another value: answered SEQ_REUSED, nothing changed. */
  seqReused: number
  /** Replies to sources without a token whose value was withheld: their budget was spent (`unverifiedReplyBudget`). */
  unverifiedCapped: number
  /** The bytes of stored data so withheld. */
  unverifiedCappedBytes: number
}

export type RejectionCause = keyof HyperDhtRejections

export const emptyHyperDhtStats = (): HyperDhtStats => ({
  announces: 0,
  unannounces: 0,
  mutablePuts: 0,
  immutablePuts: 0,
  rejected: 0,
  rejections: { missingToken: 0, badAnnounceSignature: 0, badUnannounceSignature: 0, badMutableSignature: 0, targetMismatch: 0, unknownRefresh: 0, malformed: 0, sourceQuota: 0 },
  seqTooLow: 0,
  seqReused: 0,
  unverifiedCapped: 0,
  unverifiedCappedBytes: 0
})

const DEFAULT_MAX_SIZE = 65536
/** The default `unverifiedReplyBudget`: about six full LOOKUP replies at once, then one every 0.6 s, per source address. */
export const DEFAULT_UNVERIFIED_BUDGET = { burst: 8192, perSecond: 2048 } as const
const DEFAULT_MAX_AGE = 20 * 60_000
const STORE_MAX_AGE = 48 * 3600_000
/**
 * Announcements one public source address may have stored on a node at once
 * (`maxRecordsPerSource`): 1/64 of the announce store (65,536 per
 * generation), so at least 64 addresses are needed to fill a generation
 * and push honest records out early. An honest host is far below it: a
 * node holds only the announcements of topics close to its id, about
 * 20/N of a host's topics in a network of N nodes (1,024 is a host
 * announcing 50,000 topics on a 1,000-node network).
 */
export const MAX_ANNOUNCES_PER_SOURCE = 1024

/** The per-source quotas of one store (null: no per-source limit). */
export interface SourceQuotas {
  /** Announce records and server entries (forwards), keyed topic + publicKey / topic. */
  readonly announces: SourceQuota
  /** Refresh tokens. */
  readonly refreshes: SourceQuota
  readonly mutables: SourceQuota
  readonly immutables: SourceQuota
}

export class HyperDhtStore {
  readonly records: RecordCache
  readonly forwards: Cache<ForwardEntry>
  readonly bumps: Cache<number>
  readonly refreshes: Cache<RefreshEntry>
  readonly mutables: Cache<Uint8Array>
  readonly immutables: Cache<Uint8Array>
  readonly stats: HyperDhtStats
  /** Who stored what, per source address (null: `maxRecordsPerSource: false`). */
  readonly quotas: SourceQuotas | null

  constructor(options: HyperDhtOptions, now: number, stats: HyperDhtStats = emptyHyperDhtStats()) {
    this.stats = stats
    const maxSize = options.maxSize ?? DEFAULT_MAX_SIZE
    const maxAge = options.maxAge ?? DEFAULT_MAX_AGE
    const storeAge = options.maxAge ?? STORE_MAX_AGE
    this.records = new RecordCache(maxSize, maxAge, now)
    this.forwards = new Cache(maxSize, maxAge, now)
    this.bumps = new Cache(maxSize, maxAge, now)
    this.refreshes = new Cache(maxSize, maxAge, now)
    this.mutables = new Cache(Math.floor(maxSize / 2), storeAge, now)
    this.immutables = new Cache(Math.floor(maxSize / 2), storeAge, now)
    const perSource = options.maxRecordsPerSource ?? MAX_ANNOUNCES_PER_SOURCE
    if (perSource === false) {
      this.quotas = null
      return
    }
    const q: SourceQuotas = {
      announces: new SourceQuota(perSource),
      refreshes: new SourceQuota(perSource),
      mutables: new SourceQuota(Math.max(1, Math.floor(perSource / 2))),
      immutables: new SourceQuota(Math.max(1, Math.floor(perSource / 2)))
    }
    this.quotas = q
    this.records.onEvict = (topic, pk) => q.announces.release(topic + pk)
    this.forwards.onEvict = (topic) => q.announces.release(topic)
    this.refreshes.onEvict = (key) => q.refreshes.release(key)
    this.mutables.onEvict = (key) => q.mutables.release(key)
    this.immutables.onEvict = (key) => q.immutables.release(key)
  }

  /** Apply every store's rotations due at `now` (so the quotas have let go of what expired). */
  expire(now: number): void {
    this.records.expire(now)
    this.forwards.expire(now)
    this.bumps.expire(now)
    this.refreshes.expire(now)
    this.mutables.expire(now)
    this.immutables.expire(now)
  }

  /** May `host` store `key` in the store `which`? (false: refused and counted by the quota). */
  admit(which: keyof SourceQuotas, key: string, host: string): boolean {
    return this.quotas === null || this.quotas[which].admit(key, host)
  }

  /** Count `key` of `which` as stored on behalf of `host`. */
  own(which: keyof SourceQuotas, key: string, host: string): void {
    this.quotas?.[which].add(key, host)
  }
}

const NO_TOKEN_NO_NODES = { token: false, closerNodes: false } as const

/**
 * An asynchronous signature check whose `then` runs inside a later step of
 * the node (see GatewayService: a worker pool, completions posted back
 * through the node's `exec`).
 */
export type AsyncVerify = (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array, then: (ok: boolean) => void) => void

/**
 * The node-side handler: returns false for commands it does not serve (→ UNKNOWN_COMMAND).
 * With `asyncVerify`, writes are stored and answered once their signature
 * check completes; without it (simulations) everything happens in the step
 * that received the request.
 */
export class HyperDht {
  private storeValue: HyperDhtStore | null = null
  private nsValue: R.Namespaces | null = null
  /** The node's request handler (`onRequest`): true when the request was a HyperDHT command it served or refused. */
  readonly handler: (req: IncomingRequest, node: DhtNode) => boolean
  /** PEER_HANDSHAKE / PEER_HOLEPUNCH routing (every node, ephemeral ones too). */
  readonly router: Router
  /** Writes stored and refused (by cause), and replies capped for sources without a token. */
  readonly stats: HyperDhtStats = emptyHyperDhtStats()
  private readonly budget: UnverifiedBudget | null

  constructor(
    private readonly crypto: CryptoImpl,
    private readonly options: HyperDhtOptions = {},
    private readonly asyncVerify: AsyncVerify | null = null
  ) {
    this.handler = (req, node) => this.handle(req, node)
    this.router = new Router((key, now) => this.storeValue?.forwards.get(key, now)?.relay ?? null)
    const b = options.unverifiedReplyBudget ?? DEFAULT_UNVERIFIED_BUDGET
    this.budget = b === false ? null : new UnverifiedBudget(b.burst, b.perSecond)
  }

  private newStore(now: number): HyperDhtStore {
    return new HyperDhtStore(this.options, now, this.stats)
  }

  /**
   * Answer a read with stored data: in full to a source that showed a token
   * (it proved it receives our replies at its address), else within the
   * source's allowance; past it, as a node that holds nothing.
   */
  private replyStored(req: IncomingRequest, node: DhtNode, value: Uint8Array | null, now: number): void {
    if (value !== null && req.token === null && this.budget !== null && !this.budget.take(req.from.host, value.length, now)) {
      this.stats.unverifiedCapped++
      this.stats.unverifiedCappedBytes += value.length
      value = null
    }
    node.reply(req, value)
  }

  /** The namespaces, computed when a signed write first needs them (not on the node's start path). */
  private get ns(): R.Namespaces {
    return (this.nsValue ??= R.namespaces(this.crypto.blake2b))
  }

  private hash(x: Uint8Array): Uint8Array {
    return this.crypto.blake2b(x)
  }

  private checkSignature(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array, then: (ok: boolean) => void): void {
    if (this.asyncVerify === null) then(this.crypto.verify(signature, message, publicKey))
    else this.asyncVerify(signature, message, publicKey, then)
  }

  private handle(req: IncomingRequest, node: DhtNode): boolean {
    if (req.command <= R.Command.PEER_HOLEPUNCH) return this.router.handle(req, node)
    // storage commands are served by persistent nodes only
    const id = node.id
    if (id === null) return false
    const now = node.time
    const s = (this.storeValue ??= this.newStore(now))
    s.expire(now)
    const target = req.target
    switch (req.command) {
      case R.Command.FIND_PEER: {
        if (target === null) return true
        const entry = s.forwards.get(toHex(target), now)
        this.replyStored(req, node, entry?.record ?? null, now)
        return true
      }
      case R.Command.LOOKUP: {
        if (target === null) return true
        const key = toHex(target)
        const recs = s.records.get(key, 20, now, node.random)
        if (recs.length < 20) {
          const fwd = s.forwards.get(key, now)
          if (fwd !== undefined) recs.push(fwd.record)
        }
        if (recs.length === 0) {
          node.reply(req, null)
          return true
        }
        const value = encode(R.lookupRawReply, { peers: recs, bump: s.bumps.get(key, now) ?? 0 })
        this.replyStored(req, node, Result.isSuccess(value) ? value.success : null, now)
        return true
      }
      case R.Command.ANNOUNCE:
        this.onAnnounce(s, req, node, id, now)
        return true
      case R.Command.UNANNOUNCE:
        this.onUnannounce(s, req, node, id)
        return true
      case R.Command.MUTABLE_PUT:
        this.onMutablePut(s, req, node)
        return true
      case R.Command.MUTABLE_GET: {
        if (target === null || req.value === null) return true
        const minSeq = decode(uint, req.value)
        if (Result.isFailure(minSeq)) return true
        const stored = s.mutables.get(toHex(target), now)
        if (stored !== undefined) {
          const m = decode(R.mutableGetResponse, stored)
          if (Result.isSuccess(m) && m.success.seq >= minSeq.success) {
            this.replyStored(req, node, stored, now)
            return true
          }
        }
        node.reply(req, null)
        return true
      }
      case R.Command.IMMUTABLE_PUT: {
        if (req.token === null) return this.reject("missingToken")
        if (target === null || req.value === null) return this.reject("malformed")
        if (!equalBytes(this.hash(req.value), target)) return this.reject("targetMismatch")
        const key = toHex(target)
        if (!s.admit("immutables", key, req.from.host)) return this.reject("sourceQuota")
        s.immutables.set(key, copyBytes(req.value), now)
        s.own("immutables", key, req.from.host)
        this.stats.immutablePuts++
        node.reply(req, null)
        return true
      }
      case R.Command.IMMUTABLE_GET: {
        if (target === null) return true
        this.replyStored(req, node, s.immutables.get(toHex(target), now) ?? null, now)
        return true
      }
    }
    return false
  }

  private reject(cause: RejectionCause): true {
    this.stats.rejected++
    this.stats.rejections[cause]++
    return true
  }

  private onAnnounce(s: HyperDhtStore, req: IncomingRequest, node: DhtNode, id: Uint8Array, now: number): void {
    const target = req.target
    if (req.token === null) return void this.reject("missingToken")
    if (target === null || req.value === null) return void this.reject("malformed")
    const m = decode(R.announce, req.value)
    if (Result.isFailure(m)) return void this.reject("malformed")
    const ann = m.success
    const topic = toHex(target)
    if (ann.peer === null) {
      if (ann.refresh === null) return void this.reject("malformed")
      const key = toHex(this.hash(ann.refresh))
      const entry = s.refreshes.get(key, now)
      if (entry === undefined) return void this.reject("unknownRefresh")
      const from = req.from.host
      const entryTopic = toHex(entry.topic)
      const entryKey = entry.announceSelf ? entryTopic : entryTopic + toHex(entry.record.subarray(0, 32))
      const next = toHex(ann.refresh)
      if (!s.admit("announces", entryKey, from) || !s.admit("refreshes", next, from)) return void this.reject("sourceQuota")
      if (entry.announceSelf) s.forwards.set(entryTopic, { relay: { host: req.from.host, port: req.from.port }, record: entry.record }, now)
      else s.records.add(entryTopic, entryKey.slice(64), entry.record, now)
      s.own("announces", entryKey, from)
      s.refreshes.delete(key, now)
      s.refreshes.set(next, entry, now)
      s.own("refreshes", next, from)
      node.reply(req, null, NO_TOKEN_NO_NODES)
      return
    }
    if (ann.signature === null) return void this.reject("malformed")
    const peerBytes = encode(R.peer, ann.peer)
    if (Result.isFailure(peerBytes)) return void this.reject("malformed")
    const signable = R.annSignable(this.crypto.blake2b, target, id, req.token, peerBytes.success, ann.refresh, this.ns.ANNOUNCE)
    if (Result.isFailure(signable)) return void this.reject("malformed")
    const peer = ann.peer
    this.checkSignature(ann.signature, signable.success, peer.publicKey, (ok) => {
      if (ok) this.storeAnnounce(s, req, node, target, topic, ann, peer)
      else this.reject("badAnnounceSignature")
    })
  }

  private storeAnnounce(
    s: HyperDhtStore,
    req: IncomingRequest,
    node: DhtNode,
    target: Uint8Array,
    topic: string,
    ann: R.Announce,
    peer: R.Peer
  ): void {
    const now = node.time
    s.expire(now)
    const stored = encode(R.peer, { publicKey: peer.publicKey, relayAddresses: peer.relayAddresses.slice(0, 3) })
    if (Result.isFailure(stored)) return void this.reject("malformed")
    const record = stored.success
    const pk = toHex(peer.publicKey)
    const announceSelf = equalBytes(this.hash(peer.publicKey), target)
    const from = req.from.host
    const entryKey = announceSelf ? topic : topic + pk
    const refreshKey = ann.refresh !== null ? toHex(ann.refresh) : null
    if (!s.admit("announces", entryKey, from) || (refreshKey !== null && !s.admit("refreshes", refreshKey, from))) return void this.reject("sourceQuota")
    if (announceSelf) {
      s.forwards.set(topic, { relay: { host: req.from.host, port: req.from.port }, record }, now)
      s.records.remove(topic, pk, now)
    } else {
      s.records.add(topic, pk, record, now)
      if (ann.bump > 0) {
        const prev = s.bumps.get(topic, now) ?? 0
        if (ann.bump > prev && ann.bump <= now + 60_000) s.bumps.set(topic, ann.bump, now)
      }
    }
    s.own("announces", entryKey, from)
    if (refreshKey !== null) {
      s.refreshes.set(refreshKey, { topic: copyBytes(target), record, announceSelf }, now)
      s.own("refreshes", refreshKey, from)
    }
    this.stats.announces++
    node.reply(req, null, NO_TOKEN_NO_NODES)
  }

  private onUnannounce(s: HyperDhtStore, req: IncomingRequest, node: DhtNode, id: Uint8Array): void {
    const target = req.target
    if (req.token === null) return void this.reject("missingToken")
    if (target === null || req.value === null) return void this.reject("malformed")
    const m = decode(R.announce, req.value)
    if (Result.isFailure(m) || m.success.peer === null || m.success.signature === null) return void this.reject("malformed")
    const ann = m.success
    const peer = ann.peer!
    const peerBytes = encode(R.peer, peer)
    if (Result.isFailure(peerBytes)) return void this.reject("malformed")
    const signable = R.annSignable(this.crypto.blake2b, target, id, req.token, peerBytes.success, ann.refresh, this.ns.UNANNOUNCE)
    if (Result.isFailure(signable)) return void this.reject("malformed")
    this.checkSignature(ann.signature!, signable.success, peer.publicKey, (ok) => {
      if (ok) this.removeAnnounce(s, req, node, target, peer)
      else this.reject("badUnannounceSignature")
    })
  }

  private removeAnnounce(s: HyperDhtStore, req: IncomingRequest, node: DhtNode, target: Uint8Array, peer: R.Peer): void {
    const now = node.time
    const topic = toHex(target)
    if (equalBytes(this.hash(peer.publicKey), target)) {
      const fwd = s.forwards.get(topic, now)
      if (fwd !== undefined && fwd.relay !== null) s.forwards.delete(topic, now)
    }
    s.records.remove(topic, toHex(peer.publicKey), now)
    this.stats.unannounces++
    node.reply(req, null, NO_TOKEN_NO_NODES)
  }

  private onMutablePut(s: HyperDhtStore, req: IncomingRequest, node: DhtNode): void {
    const target = req.target
    if (req.token === null) return void this.reject("missingToken")
    if (target === null || req.value === null) return void this.reject("malformed")
    const m = decode(R.mutablePutRequest, req.value)
    if (Result.isFailure(m)) return void this.reject("malformed")
    const put = m.success
    if (!equalBytes(this.hash(put.publicKey), target)) return void this.reject("targetMismatch")
    const signable = R.mutableSignable64(this.crypto.blake2b, put.seq, put.value)
    if (Result.isFailure(signable)) return void this.reject("malformed")
    this.checkSignature(put.signature, signable.success, put.publicKey, (ok) => {
      if (ok) this.storeMutable(s, req, node, target, put)
      else this.reject("badMutableSignature")
    })
  }

  private storeMutable(s: HyperDhtStore, req: IncomingRequest, node: DhtNode, target: Uint8Array, put: R.MutablePutRequest): void {
    const now = node.time
    s.expire(now)
    const key = toHex(target)
    const storedBytes = s.mutables.get(key, now)
    if (storedBytes !== undefined) {
      const stored = decode(R.mutableGetResponse, storedBytes)
      if (Result.isSuccess(stored)) {
        if (stored.success.seq === put.seq && !equalBytes(stored.success.value, put.value)) {
          this.stats.seqReused++
          node.error(req, R.ErrorCode.SEQ_REUSED)
          return
        }
        if (put.seq < stored.success.seq) {
          this.stats.seqTooLow++
          node.error(req, R.ErrorCode.SEQ_TOO_LOW)
          return
        }
      }
    }
    const value = encode(R.mutableGetResponse, { seq: put.seq, value: put.value, signature: put.signature })
    if (Result.isFailure(value)) return void this.reject("malformed")
    if (!s.admit("mutables", key, req.from.host)) return void this.reject("sourceQuota")
    s.mutables.set(key, value.success, now)
    s.own("mutables", key, req.from.host)
    this.stats.mutablePuts++
    node.reply(req, null)
  }

  /** The store (null until the node first served a storage command as a persistent node). */
  store(): HyperDhtStore | null {
    return this.storeValue
  }

  /**
   * Drop this node's own copy of (topic, publicKey), as the reference's
   * `lookupAndUnannounce` does before its query ("unlink self"): a client
   * unannouncing from a node that is itself one of the holders must not
   * leave that copy behind (its own LOOKUP never asks itself). Call it
   * inside the node actor with the node's time.
   */
  unannounceLocal(topic: Uint8Array, publicKey: Uint8Array, now: number): void {
    const store = this.storeValue
    if (store === null) return
    const key = toHex(topic)
    if (equalBytes(this.hash(publicKey), topic)) {
      const fwd = store.forwards.get(key, now)
      if (fwd !== undefined && fwd.relay !== null) store.forwards.delete(key, now)
    }
    store.records.remove(key, toHex(publicKey), now)
  }

  /** Pin a router entry for a server listening on this node (FIND_PEER answers it). */
  listen(publicKey: Uint8Array, now: number): void {
    const s = (this.storeValue ??= this.newStore(now))
    const record = encode(R.peer, { publicKey, relayAddresses: [] })
    if (Result.isSuccess(record)) s.forwards.retain(toHex(this.hash(publicKey)), { relay: null, record: record.success })
  }

  unlisten(publicKey: Uint8Array): void {
    this.storeValue?.forwards.release(toHex(this.hash(publicKey)))
  }
}

/** The HyperDHT storage layer for one node (see HyperDht). */
export const makeHyperDht = (crypto: CryptoImpl, options: HyperDhtOptions = {}, asyncVerify: AsyncVerify | null = null): HyperDht =>
  new HyperDht(crypto, options, asyncVerify)
