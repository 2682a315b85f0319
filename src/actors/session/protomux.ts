/**
 * A minimal protomux core: many logical channels over one message transport
 * (spec: connect.md §6.8, "Protomux framing"). Each frame is one message of
 * the transport (one secret-stream message); the frame codecs live in
 * ../../protocol/blind-relay.ts.
 *
 * Model:
 * - Channel ids are chosen by each sender, start at 1, and are reused once
 *   free (0 is the control channel). A message frame carries the *sender's*
 *   id, so each side keeps two tables: its own channels (by local id) and the
 *   peer's (by remote id).
 * - Both peers send their own open frame; a channel is paired by
 *   (protocol, id). A local open waits for the matching remote open; a remote
 *   open that finds no local channel waiting is offered to `onRemoteOpen`,
 *   which may open the channel at once, keep the remote open pending (its
 *   messages are buffered until `openChannel` pairs it) or let it be rejected.
 * - Close frames are one-way: a channel closed by the peer is closed here
 *   without sending anything back.
 * - Batch frames are decoded (nested batches and channel switches included);
 *   `cork`/`uncork` collect outgoing frames into one batch frame, and the
 *   replies provoked by an incoming batch of several entries go out as one
 *   batch (as the reference does).
 *
 * Plain synchronous code: frames leave through the injected `send`, incoming
 * frames come in through `onMessage`, callbacks run inside those calls.
 * Nothing throws across the API. A frame the reference would treat as a
 * protocol violation (undecodable, an open on a remote id in use or not the
 * next one, a reject for a channel we never opened) is counted and makes the
 * mux fail: every channel closes and `onError` tells the owner, who should
 * destroy the transport, as the reference destroys its stream. Frames for
 * unknown or closed channels, unknown message types and unknown control
 * frames are counted and ignored.
 */
import * as Data from "effect/Data"
import * as Result from "effect/Result"
import {
  batchFrame,
  closeFrame,
  decodeProtomuxFrame,
  encodeProtomuxFrame,
  messageFrame,
  openFrame,
  type ProtomuxFrame,
  rejectFrame
} from "../../protocol/blind-relay.js"
import { toHex } from "../../protocol/encoding.js"

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/**
 * Bytes buffered for remote channels that are not opened locally yet, across
 * the mux; each message counts its length plus 512 (the reference's
 * accounting, where this threshold pauses the stream). A message that would
 * exceed it gets its remote channel rejected and its buffer dropped.
 */
export const MAX_BUFFERED = 32_768

/** Remote opens kept pending (awaiting a local open) at once; more are rejected. */
export const MAX_PENDING_REMOTE_OPENS = 64

/** An outgoing batch is flushed before it grows past this many bytes (the reference's bound). */
export const MAX_BATCH_BYTES = 8 * 1024 * 1024

const BUFFERED_OVERHEAD = 512

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

export type ProtomuxErrorReason =
  /** A frame that does not decode. */
  | "Malformed"
  /** An open frame on a remote id that is in use or skips ahead. */
  | "InvalidOpen"
  /** A reject frame for a channel we are not opening. */
  | "InvalidReject"
  /** A callback (onopen, onclose, onmessage, onRemoteOpen) threw. */
  | "CallbackFailed"
  /** The `send` callback threw. */
  | "SendFailed"

export class ProtomuxError extends Data.TaggedError("ProtomuxError")<{
  readonly reason: ProtomuxErrorReason
  readonly detail: string
}> {
  override get message(): string {
    return `${this.reason}: ${this.detail}`
  }
}

/** Handler of one message type of a channel. */
export interface ProtomuxMessageSpec {
  readonly onmessage?: (payload: Uint8Array, channel: ProtomuxChannel) => void
}

export interface ProtomuxChannelOptions {
  readonly protocol: string
  /** Channel id (e.g. a public key); null or empty = none. */
  readonly id?: Uint8Array | null
  /** Raw handshake bytes appended to our open frame (protocols without a handshake omit it). */
  readonly handshake?: Uint8Array
  /** Refuse to open when a channel with the same (protocol, id) is already open locally (default true). */
  readonly unique?: boolean
  /** Paired: the peer's open frame arrived (its handshake bytes, empty when none). */
  readonly onopen?: (remoteHandshake: Uint8Array, channel: ProtomuxChannel) => void
  /** Closed: by us (`isRemote` false), by the peer's close / reject or the mux shutting down (true). */
  readonly onclose?: (isRemote: boolean, channel: ProtomuxChannel) => void
  /** Message types 0, 1, ... in order; null skips a type (its messages are ignored). */
  readonly messages?: ReadonlyArray<ProtomuxMessageSpec | null>
}

export interface ProtomuxChannel {
  readonly protocol: string
  readonly id: Uint8Array | null
  /** Our id for this channel (0 once closed). */
  readonly localId: number
  /** The peer's id for it (0 until paired, and once closed). */
  readonly remoteId: number
  /** Paired with the peer's open. */
  readonly opened: boolean
  readonly closed: boolean
  /** The peer's handshake bytes (null until paired). */
  readonly remoteHandshake: Uint8Array | null
  /**
   * Send a message of `type`. Allowed as soon as the channel is open locally
   * (the peer buffers it until it pairs). False when closed or when the
   * arguments are not a type number and bytes.
   */
  send(type: number, payload: Uint8Array): boolean
  /** Close the channel (sends a close frame). Idempotent. */
  close(): void
}

export interface ProtomuxOptions {
  /** Transmit one frame (one transport message). */
  readonly send: (frame: Uint8Array) => void
  /**
   * A remote open arrived and no local channel is waiting for it. The
   * handler may call `openChannel` for it right away (it pairs at once).
   * Returning true keeps it pending (messages buffered) until a later
   * `openChannel` or `reject`; otherwise it is rejected.
   */
  readonly onRemoteOpen?: (protocol: string, id: Uint8Array | null) => boolean | void
  /** The mux failed (protocol violation, throwing callback): destroy the transport. */
  readonly onError?: (error: ProtomuxError) => void
  /** Override `MAX_BUFFERED`. */
  readonly maxBuffered?: number
  /** Override `MAX_PENDING_REMOTE_OPENS`. */
  readonly maxPendingRemoteOpens?: number
}

export interface ProtomuxStats {
  readonly framesIn: number
  readonly framesOut: number
  /** Frames that did not decode (each also fails the mux). */
  readonly malformed: number
  /** Other protocol violations (invalid open / reject). */
  readonly violations: number
  /** Messages for unknown / closed channels or unknown types, unknown control frames, empty frames. */
  readonly ignored: number
  /** Remote opens we rejected (no taker, pending cap, buffer overflow, `reject`). */
  readonly rejectedRemote: number
  /** Channels currently open locally (paired or waiting). */
  readonly channels: number
  /** Remote opens awaiting a local open. */
  readonly pendingRemote: number
  /** Bytes buffered for them (with the per-message overhead). */
  readonly buffered: number
}

// ---------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------

const EMPTY = new Uint8Array(0)

const keyOf = (protocol: string, id: Uint8Array | null): string =>
  protocol + "##" + (id !== null && id.length > 0 ? toHex(id) : "")

interface Info {
  readonly key: string
  /** Channels opened locally and not closed. */
  opened: number
  /** Our local ids whose open awaits the peer's open, oldest first. */
  readonly outgoing: Array<number>
  /** Peer ids whose open awaits a local open, oldest first. */
  readonly incoming: Array<number>
}

interface Pending {
  readonly type: number
  readonly payload: Uint8Array
}

/** The peer's channel (by its id). */
interface RemoteSlot {
  readonly info: Info
  readonly handshake: Uint8Array
  /** Buffered messages while no local channel is paired; null once paired. */
  pending: Array<Pending> | null
  bufferedBytes: number
  channel: Channel | null
}

/** What a channel needs from its mux (kept off the mux's public surface). */
interface ChannelOps {
  isDestroyed(): boolean
  emit(frame: ProtomuxFrame): boolean
  closeChannel(ch: Channel, isRemote: boolean): void
}

class Channel implements ProtomuxChannel {
  readonly protocol: string
  readonly id: Uint8Array | null
  localId = 0
  remoteId = 0
  opened = false
  closed = false
  remoteHandshake: Uint8Array | null = null
  readonly handshake: Uint8Array
  readonly onopen: ProtomuxChannelOptions["onopen"]
  readonly onclose: ProtomuxChannelOptions["onclose"]
  readonly messages: ReadonlyArray<ProtomuxMessageSpec | null>

  constructor(
    private readonly mux: ChannelOps,
    readonly info: Info,
    o: ProtomuxChannelOptions,
    id: Uint8Array | null
  ) {
    this.protocol = o.protocol
    this.id = id
    this.handshake = o.handshake instanceof Uint8Array ? o.handshake : EMPTY
    this.onopen = o.onopen
    this.onclose = o.onclose
    this.messages = Array.isArray(o.messages) ? o.messages : []
  }

  send(type: number, payload: Uint8Array): boolean {
    if (this.closed || this.mux.isDestroyed()) return false
    if (!Number.isSafeInteger(type) || type < 0 || !(payload instanceof Uint8Array)) return false
    return this.mux.emit(messageFrame(this.localId, type, payload))
  }

  close(): void {
    if (this.closed || this.mux.isDestroyed()) return
    const localId = this.localId
    this.mux.closeChannel(this, false)
    this.mux.emit(closeFrame(localId))
  }
}

/**
 * The multiplexer over one transport. See the file header for the model.
 */
export class Protomux {
  private dead = false
  private failure: ProtomuxError | null = null

  /** Destroyed (by `destroy`, or failed). */
  get destroyed(): boolean {
    return this.dead
  }

  /** Why the mux failed (null while healthy or after a plain `destroy`). */
  get error(): ProtomuxError | null {
    return this.failure
  }

  private readonly sendFrame: (frame: Uint8Array) => void
  private readonly onRemoteOpen: ProtomuxOptions["onRemoteOpen"]
  private readonly onError: ProtomuxOptions["onError"]
  private readonly maxBuffered: number
  private readonly maxPendingRemote: number

  private readonly local: Array<Channel | null> = []
  private readonly free: Array<number> = []
  private readonly remote: Array<RemoteSlot | null> = []
  private readonly infos = new Map<string, Info>()
  private pendingRemote = 0
  private buffered = 0

  private corked = 0
  private batch: Array<ProtomuxFrame> = []
  private batchBytes = 0

  private readonly ops: ChannelOps = {
    isDestroyed: () => this.destroyed,
    emit: (frame) => this.emit(frame),
    closeChannel: (ch, isRemote) => this.closeChannel(ch, isRemote)
  }

  private framesIn = 0
  private framesOut = 0
  private malformed = 0
  private violations = 0
  private ignored = 0
  private rejectedRemote = 0

  constructor(options: ProtomuxOptions) {
    this.sendFrame = options.send
    this.onRemoteOpen = options.onRemoteOpen
    this.onError = options.onError
    this.maxBuffered = options.maxBuffered ?? MAX_BUFFERED
    this.maxPendingRemote = options.maxPendingRemoteOpens ?? MAX_PENDING_REMOTE_OPENS
  }

  // ---- application commands ----

  /**
   * Open a channel: sends our open frame; pairs at once with a pending remote
   * open of the same (protocol, id) (then `onopen` runs and buffered messages
   * are delivered before this returns). Null when the mux is destroyed, the
   * options are invalid, or (`unique`) the channel is already open.
   */
  openChannel(options: ProtomuxChannelOptions): ProtomuxChannel | null {
    if (this.destroyed || options === null || typeof options !== "object" || typeof options.protocol !== "string") return null
    const rawId = options.id ?? null
    if (rawId !== null && !(rawId instanceof Uint8Array)) return null
    const id = rawId !== null && rawId.length > 0 ? rawId : null
    const info = this.info(options.protocol, id)
    if (options.unique !== false && info.opened > 0) return null

    const ch = new Channel(this.ops, info, options, id)
    const slot = this.free.length > 0 ? this.free.pop()! : this.local.push(null) - 1
    ch.localId = slot + 1
    this.local[slot] = ch
    info.opened++

    let paired: RemoteSlot | null = null
    while (info.incoming.length > 0) {
      const remoteId = info.incoming.shift()!
      const r = this.remote[remoteId - 1] ?? null
      if (r === null) continue
      this.pendingRemote--
      ch.remoteId = remoteId
      r.channel = ch
      paired = r
      break
    }
    if (paired === null) info.outgoing.push(ch.localId)

    this.emit(openFrame(ch.localId, ch.protocol, id, ch.handshake))
    if (paired !== null) this.fullyOpen(ch, paired)
    return ch
  }

  /** Reject every remote open of (protocol, id) that is still pending. Returns how many. */
  reject(protocol: string, id: Uint8Array | null = null): number {
    if (this.destroyed || typeof protocol !== "string") return 0
    const info = this.infos.get(keyOf(protocol, id instanceof Uint8Array ? id : null))
    if (info === undefined) return 0
    let n = 0
    while (info.incoming.length > 0) {
      const remoteId = info.incoming.shift()!
      if (this.remote[remoteId - 1] == null) continue
      this.rejectRemote(remoteId)
      n++
    }
    this.gc(info)
    return n
  }

  /** Collect outgoing frames into one batch frame until the matching `uncork`. */
  cork(): void {
    this.corked++
  }

  uncork(): void {
    if (this.corked === 0) return
    if (--this.corked === 0) this.flushBatch()
  }

  /**
   * Shut down without sending anything (the transport closed, or the owner
   * is tearing it down): every channel closes with `isRemote` true.
   */
  destroy(): void {
    if (this.dead) return
    this.dead = true
    this.batch = []
    this.batchBytes = 0
    for (const ch of this.local) {
      if (ch !== null) this.closeChannel(ch, true)
    }
    for (let i = 0; i < this.remote.length; i++) this.remote[i] = null
    this.infos.clear()
    this.pendingRemote = 0
    this.buffered = 0
  }

  // ---- getters ----

  /** True when no channel is open locally. */
  isIdle(): boolean {
    return this.local.every((c) => c === null)
  }

  /** Whether a channel with (protocol, id) is open locally. */
  isOpen(protocol: string, id: Uint8Array | null = null): boolean {
    const info = this.infos.get(keyOf(protocol, id))
    return info !== undefined && info.opened > 0
  }

  channels(): ReadonlyArray<ProtomuxChannel> {
    return this.local.filter((c): c is Channel => c !== null)
  }

  stats(): ProtomuxStats {
    return {
      framesIn: this.framesIn,
      framesOut: this.framesOut,
      malformed: this.malformed,
      violations: this.violations,
      ignored: this.ignored,
      rejectedRemote: this.rejectedRemote,
      channels: this.local.reduce((n, c) => (c === null ? n : n + 1), 0),
      pendingRemote: this.pendingRemote,
      buffered: this.buffered
    }
  }

  // ---- input ----

  /** One frame from the transport. Never throws. */
  onMessage(bytes: Uint8Array): void {
    if (this.destroyed) return
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
      this.ignored++ // the reference ignores empty frames
      return
    }
    this.framesIn++
    const decoded = decodeProtomuxFrame(bytes)
    if (Result.isFailure(decoded)) {
      this.malformed++
      this.fail("Malformed", decoded.failure.message)
      return
    }
    this.dispatch(decoded.success)
  }

  // ---- internals ----

  private dispatch(frame: ProtomuxFrame): void {
    if (this.destroyed) return
    switch (frame._tag) {
      case "Message":
        return this.onChannelMessage(frame.channel, frame.type, frame.payload)
      case "Open":
        return this.onOpen(frame.localId, frame.protocol, frame.id, frame.handshake)
      case "Reject":
        return this.onReject(frame.remoteId)
      case "Close":
        return this.onClose(frame.localId)
      case "Batch": {
        // replies to a batch of several entries go back as one batch
        const cork = frame.frames.length > 1
        if (cork) this.cork()
        for (const f of frame.frames) {
          if (this.destroyed) break
          this.dispatch(f)
        }
        if (cork && !this.destroyed) this.uncork()
        return
      }
      case "UnknownControl":
        this.ignored++
        return
    }
  }

  private onChannelMessage(remoteId: number, type: number, payload: Uint8Array): void {
    const r = remoteId <= this.remote.length ? this.remote[remoteId - 1] ?? null : null
    if (r === null) {
      this.ignored++ // closed or unknown channel: could be a message in flight
      return
    }
    if (r.pending !== null) {
      const size = BUFFERED_OVERHEAD + payload.length
      if (this.buffered + size > this.maxBuffered) {
        this.removeIncoming(r.info, remoteId)
        this.rejectRemote(remoteId)
        this.gc(r.info)
        return
      }
      r.pending.push({ type, payload: new Uint8Array(payload) })
      r.bufferedBytes += size
      this.buffered += size
      return
    }
    const ch = r.channel
    if (ch === null) return
    this.deliver(ch, type, payload)
  }

  private deliver(ch: Channel, type: number, payload: Uint8Array): void {
    const spec = type < ch.messages.length ? ch.messages[type] : undefined
    if (spec === undefined || spec === null || spec.onmessage === undefined) {
      this.ignored++
      return
    }
    try {
      spec.onmessage(payload, ch)
    } catch (e) {
      this.fail("CallbackFailed", `onmessage of ${ch.protocol} type ${type} threw: ${String(e)}`)
    }
  }

  private onOpen(remoteId: number, protocol: string, rawId: Uint8Array | null, handshake: Uint8Array): void {
    // the peer tried to open the control channel: refuse it
    if (remoteId === 0) {
      this.rejectedRemote++
      this.emit(rejectFrame(0))
      return
    }
    const rid = remoteId - 1
    // the peer may grow its ids by one at a time
    if (this.remote.length === rid) this.remote.push(null)
    if (rid >= this.remote.length || this.remote[rid] !== null) {
      this.violations++
      this.fail("InvalidOpen", `open on remote channel ${remoteId}, which is in use or out of sequence`)
      return
    }
    const id = rawId !== null && rawId.length > 0 ? new Uint8Array(rawId) : null
    const info = this.info(protocol, id)
    const hs = new Uint8Array(handshake)

    if (info.outgoing.length > 0) {
      const localId = info.outgoing.shift()!
      const ch = this.local[localId - 1] ?? null
      if (ch === null || ch.closed) {
        // we closed that channel before the peer's open arrived: its id is free now
        this.free.push(localId - 1)
        this.gc(info)
        return
      }
      const r: RemoteSlot = { info, handshake: hs, pending: null, bufferedBytes: 0, channel: ch }
      this.remote[rid] = r
      ch.remoteId = remoteId
      this.fullyOpen(ch, r)
      return
    }

    if (this.pendingRemote >= this.maxPendingRemote) {
      this.rejectedRemote++
      this.emit(rejectFrame(remoteId))
      this.gc(info)
      return
    }
    this.remote[rid] = { info, handshake: hs, pending: [], bufferedBytes: 0, channel: null }
    this.pendingRemote++
    info.incoming.push(remoteId)

    let keep = false
    if (this.onRemoteOpen !== undefined) {
      try {
        keep = this.onRemoteOpen(protocol, id) === true
      } catch (e) {
        this.fail("CallbackFailed", `onRemoteOpen threw: ${String(e)}`)
        return
      }
    }
    if (this.destroyed) return
    const r = this.remote[rid]
    // still waiting for a local open (the handler did not open it)?
    if (!keep && r !== null && r !== undefined && r.channel === null && info.incoming.includes(remoteId)) {
      this.removeIncoming(info, remoteId)
      this.rejectRemote(remoteId)
      this.gc(info)
    }
  }

  private onReject(localId: number): void {
    for (const info of this.infos.values()) {
      const i = info.outgoing.indexOf(localId)
      if (i === -1) continue
      info.outgoing.splice(i, 1)
      this.free.push(localId - 1)
      const ch = this.local[localId - 1] ?? null
      if (ch !== null && !ch.closed) this.closeChannel(ch, true)
      this.gc(info)
      return
    }
    this.violations++
    this.fail("InvalidReject", `reject for channel ${localId}, which is not awaiting the peer`)
  }

  private onClose(remoteId: number): void {
    if (remoteId === 0) return
    const r = remoteId <= this.remote.length ? this.remote[remoteId - 1] ?? null : null
    if (r === null) {
      this.ignored++
      return
    }
    if (r.channel !== null) {
      this.closeChannel(r.channel, true)
      return
    }
    // closed before we opened our side: drop it, and reject it so the peer can reuse its id
    this.removeIncoming(r.info, remoteId)
    this.rejectRemote(remoteId)
    this.gc(r.info)
  }

  /** Pair `ch` with the peer's open: `onopen`, then the buffered messages. */
  private fullyOpen(ch: Channel, r: RemoteSlot): void {
    ch.remoteHandshake = r.handshake
    const pending = r.pending
    r.pending = null
    if (pending !== null) {
      this.buffered -= r.bufferedBytes
      r.bufferedBytes = 0
    }
    ch.opened = true
    if (ch.onopen !== undefined) {
      try {
        ch.onopen(r.handshake, ch)
      } catch (e) {
        this.fail("CallbackFailed", `onopen of ${ch.protocol} threw: ${String(e)}`)
        return
      }
    }
    if (pending === null) return
    for (const p of pending) {
      if (this.destroyed || ch.closed) return
      this.deliver(ch, p.type, p.payload)
    }
  }

  /** Close bookkeeping (no frame). */
  private closeChannel(ch: Channel, isRemote: boolean): void {
    if (ch.closed) return
    ch.closed = true
    const info = ch.info
    info.opened--
    const localId = ch.localId
    if (ch.remoteId > 0) {
      this.remote[ch.remoteId - 1] = null
      ch.remoteId = 0
      // paired: the peer knows our id, so it is free once our close is out
      this.free.push(localId - 1)
    }
    // unpaired: the id stays reserved (in `outgoing`) until the peer's open or reject
    this.local[localId - 1] = null
    ch.localId = 0
    this.gc(info)
    if (ch.onclose !== undefined) {
      try {
        ch.onclose(isRemote, ch)
      } catch (e) {
        if (!this.destroyed) this.fail("CallbackFailed", `onclose of ${ch.protocol} threw: ${String(e)}`)
      }
    }
  }

  private rejectRemote(remoteId: number): void {
    const r = this.remote[remoteId - 1] ?? null
    if (r !== null) {
      if (r.pending !== null) this.pendingRemote--
      this.buffered -= r.bufferedBytes
    }
    this.remote[remoteId - 1] = null
    this.rejectedRemote++
    this.emit(rejectFrame(remoteId))
  }

  private removeIncoming(info: Info, remoteId: number): void {
    const i = info.incoming.indexOf(remoteId)
    if (i !== -1) info.incoming.splice(i, 1)
  }

  private info(protocol: string, id: Uint8Array | null): Info {
    const key = keyOf(protocol, id)
    let info = this.infos.get(key)
    if (info === undefined) {
      info = { key, opened: 0, outgoing: [], incoming: [] }
      this.infos.set(key, info)
    }
    return info
  }

  private gc(info: Info): void {
    if (info.opened === 0 && info.outgoing.length === 0 && info.incoming.length === 0) this.infos.delete(info.key)
  }

  /** Send a frame now, or add it to the open batch. False if it could not be encoded / sent. */
  private emit(frame: ProtomuxFrame): boolean {
    if (this.destroyed) return false
    if (this.corked > 0) {
      const size = frame._tag === "Message" ? frame.payload.length + 16 : 64
      if (this.batchBytes + size > MAX_BATCH_BYTES) this.flushBatch()
      this.batch.push(frame)
      this.batchBytes += size
      return true
    }
    const r = encodeProtomuxFrame(frame)
    if (Result.isFailure(r)) return false
    return this.transmit(r.success)
  }

  private flushBatch(): void {
    const frames = this.batch
    this.batch = []
    this.batchBytes = 0
    if (frames.length === 0 || this.destroyed) return
    const r = encodeProtomuxFrame(batchFrame(frames))
    if (Result.isFailure(r)) return
    this.transmit(r.success)
  }

  private transmit(bytes: Uint8Array): boolean {
    this.framesOut++
    try {
      this.sendFrame(bytes)
      return true
    } catch (e) {
      this.fail("SendFailed", String(e))
      return false
    }
  }

  private fail(reason: ProtomuxErrorReason, detail: string): void {
    if (this.destroyed) return
    const error = new ProtomuxError({ reason, detail })
    this.failure = error
    this.destroy()
    if (this.onError !== undefined) {
      try {
        this.onError(error)
      } catch {
        // the owner's handler must not break the caller of onMessage
      }
    }
  }
}
