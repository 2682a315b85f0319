/**
 * The UDX stream core (spec: udx.md §4–§11): one reliable, ordered,
 * congestion-controlled byte stream plus unordered messages, as a plain
 * deterministic state machine.
 *
 * No Effect, no timers, no sockets: time comes in as `now` (milliseconds,
 * fractional allowed) on every input; datagrams leave through the injected
 * `transmit(bytes)` callback (already addressed to the peer by the owner);
 * events (data, message, end, close, drain) go to an injected sink object;
 * timers are exposed as `nextDeadline()` and fired by `onTimers(now)`.
 *
 * Inputs: `onPacket`, `write`, `end`, `destroy`, `sendMessage`, `consumed`,
 * `onTimers`, `flush`. With `autoFlush` (default) every input ends with
 * `flush(now)`; an owner that processes inputs in batches (the session actor)
 * turns it off and calls `flush(now)` once per batch: partial packets are
 * then coalesced and one ACK covers every DATA packet of the batch.
 *
 * Sender: per-packet sequence numbers from 0 (DATA and END consume one),
 * packetisation up to `mss` (mtu − 48 over IPv4), cumulative ACK + SACK
 * processing, RTT/RTO per RFC 6298 (min 1000 / max 30 000 ms), RACK-style
 * time-based loss detection over a send-time-ordered list (RFC 8985), tail
 * loss probes, RTO with the reference's re-arm at 2·rto and "timed out" after
 * 6 expiries of one packet, congestion control (below), token-bucket
 * pacing, the peer's byte receive window (never exceeded),
 * zero-window probing with HEARTBEAT, optional keepalive and optional path
 * MTU probing (doff padding, 1200 → 1500 in steps of 32).
 *
 * Receiver: in-order delivery, an out-of-order ring (bounded), cumulative ACK
 * + up to 50 SACK blocks, HEARTBEAT answered with an ACK, `doff` honoured,
 * END (half close), DESTROY ("connection reset"), MESSAGE, and an advertised
 * window of `rwndMax − buffered bytes` (out-of-order + delivered-but-unread
 * when the owner reports consumption with `consumed`).
 *
 * Congestion control (policy; the reference runs BBR v1): a NewReno-style
 * window in packets (slow start, +1 per round trip, β = 0.7 on each loss
 * episode, 1 after an RTO) bounded above by a BBR-style delay bound,
 * 2.5 × max delivery rate (windowed over 10 rounds, tcp_rate-style samples)
 * × min RTT (10 s window) + room for stretch ACKs. The bound ends slow start
 * when queues build and keeps a stream from filling the bottleneck buffer:
 * on one host the kernel socket buffers are that bottleneck, and filling
 * them cost ~25% throughput and periodic loss bursts in the benchmark.
 *
 * ACK policy: every DATA/END packet is acknowledged; in batched mode one ACK
 * covers a batch, and a non-urgent ACK (no SACK information, no END or
 * HEARTBEAT to answer, fewer than `ackEvery` packets) may wait up to
 * `ackDelay` (1 ms) for more. DATA packets carry the ack too, so a pure ACK
 * is skipped when our own data already carried it.
 *
 * Hot path: no closures, generators or per-packet objects beyond the packet
 * record and its bytes (carved out of shared slabs); header fields are read
 * and written in place.
 */
import * as Data from "effect/Data"

// ---------------------------------------------------------------------------
// Constants (udx.md §12)
// ---------------------------------------------------------------------------

export const UDX_HEADER = 20
export const MTU_BASE = 1200
export const MTU_MAX = 1500
export const MTU_STEP = 32
export const MTU_MAX_PROBES = 3
/** IP + UDP + UDX header bytes over IPv4 / IPv6. */
export const IPV4_OVERHEAD = 48
export const IPV6_OVERHEAD = 68
export const RTO_INITIAL = 1000
export const RTO_MIN = 1000
export const RTO_MAX = 30_000
export const RTT_CLAMP_MAX = 30_000
export const MAX_RTO_EXPIRIES = 6
export const MIN_RTT_WINDOW = 300_000
export const TLP_EXTRA = 2
export const MAX_SACK_BLOCKS = 50
export const HIGH_WATERMARK = 262_144
export const DEFAULT_RWND_MAX = 4_194_304
export const INITIAL_CWND = 10
export const INITIAL_PACING_TOKENS = 25_000
/**
 * After a clean close, retransmitted DATA/END are still acknowledged for
 * max(linger, 15 · rto): the peer retries its END for ~13 · rto before it
 * gives up (the lost-final-ACK problem; TCP's TIME-WAIT).
 */
export const DEFAULT_LINGER = 15_000

const T_DATA = 0x01
const T_END = 0x02
const T_SACK = 0x04
const T_MESSAGE = 0x08
const T_DESTROY = 0x10
const T_HEARTBEAT = 0x20

/** Lowest TLP timeout (ms): keeps probes from firing on ordinary ACK batching delays. */
const TLP_MIN = 10
/** Slots of the out-of-order receive ring are capped here; packets further ahead are dropped. */
const MAX_RECV_AHEAD = 65_536
/** Minimum congestion window (packets). */
const MIN_CWND = 2
/** Multiplicative decrease factor on a loss episode. */
const BETA = 0.7
/** cwnd bound = BDP_GAIN · max delivery rate · min RTT + ACK-aggregation allowance. */
const BDP_GAIN = 2.5
/** Rounds of delivery-rate samples in the max filter. */
const BW_ROUNDS = 10
/** Window of the min-RTT estimate used by congestion control (ms). */
const CC_MIN_RTT_WINDOW = 10_000
/**
 * Packet bytes are carved out of per-stream slabs. A new slab is sized by
 * what is waiting to go out (queued + in flight, rounded up to a power of
 * two) between SLAB_MIN and SLAB_MAX, and never smaller than the one it
 * replaces while the stream is busy; once every packet is acknowledged the
 * slab is let go. A bulk sender gets SLAB_MAX slabs after its first one; an
 * idle connection holds none (a 256 KiB slab per stream from its first
 * packet on made every open connection cost 512 KiB).
 */
const SLAB_MIN = 4 * 1024
const SLAB_MAX = 256 * 1024

// ---------------------------------------------------------------------------
// Errors and events
// ---------------------------------------------------------------------------

export type UdxErrorCode =
  /** The peer sent DESTROY. */
  | "ECONNRESET"
  /** A packet was retransmitted on timeout too often (the peer is gone). */
  | "ETIMEDOUT"
  /** The stream was destroyed locally (with an error) or the owner went away. */
  | "EDESTROYED"
  /** An operation on a stream that is already closed / ended. */
  | "ECLOSED"
  /** A message larger than the path allows. */
  | "EMSGSIZE"
  /** A stream id already in use. */
  | "EIDINUSE"
  /**
   * A defect (an exception: a bug in the stream's code or in a reader it
   * hands data to) while the stream processed a packet or a command; the
   * stream was closed (DESTROY to the peer). `cause` is the exception.
   */
  | "EDEFECT"

export class UdxError extends Data.TaggedError("UdxError")<{
  readonly code: UdxErrorCode
  readonly detail: string
  /** The exception behind an EDEFECT. */
  readonly cause?: unknown
}> {
  override get message(): string {
    return `${this.code}: ${this.detail}`
  }
}

/** Where a stream core reports what happened. Called synchronously from its inputs. */
export interface UdxStreamEvents {
  /** In-order payload (a view into the received datagram; never empty). */
  onData(chunk: Uint8Array): void
  /** The peer's END was consumed: no more data will arrive. */
  onEnd(): void
  /** An unordered message. */
  onMessage(message: Uint8Array): void
  /** The stream closed: `null` = clean (both sides ended) or local destroy. */
  onClose(error: UdxError | null): void
  /** Queued (unsent) bytes fell to the high watermark or below after being above it. */
  onDrain(): void
}

export interface UdxStreamOptions {
  /** Our stream id (peers address packets to it). */
  readonly localId: number
  /** Send one datagram to the peer (synchronous, fire-and-forget). */
  readonly transmit: (bytes: Uint8Array) => void
  readonly events: UdxStreamEvents
  /** Base MTU (IP datagram bytes). Default 1200. */
  readonly mtu?: number
  /** Largest MTU to probe for; > mtu enables path MTU probing (max 1500). Default = mtu (no probing). */
  readonly maxMtu?: number
  /** The peer is an IPv6 address (68 bytes overhead instead of 48). */
  readonly ipv6?: boolean
  /** Receive window we advertise when nothing is buffered. Default 4 MiB. */
  readonly rwndMax?: number
  /** Write high watermark (bytes queued and not yet sent). Default 262 144. */
  readonly highWaterMark?: number
  /** HEARTBEAT interval while nothing is outstanding (ms); 0 = off (default). */
  readonly keepAlive?: number
  /** Run `flush(now)` at the end of every input (default true). */
  readonly autoFlush?: boolean
  /**
   * In batched mode (`autoFlush: false`): send an ACK as soon as this many
   * DATA/END packets are unacknowledged, without waiting for `flush`. Default 32.
   */
  readonly ackEvery?: number
  /**
   * In batched mode: an ACK that is not urgent (no out-of-order data, no
   * HEARTBEAT/END to answer, fewer than `ackEvery` packets) may wait this long
   * (ms) for more packets to cover. Default 1 in batched mode, 0 with autoFlush.
   */
  readonly ackDelay?: number
  /**
   * Count delivered bytes as buffered until the owner reports them with
   * `consumed(n)` (flow control toward a slow reader). Default false: the
   * window covers only out-of-order data (the reference always advertises
   * its maximum).
   */
  readonly manualConsume?: boolean
  /** After a clean close keep answering retransmitted DATA/END with ACKs for at least this long (ms; 0 = off). Default 15 000. */
  readonly linger?: number
  /** Enable tail loss probes (default true). */
  readonly tlp?: boolean
  /** Enable pacing (default true). */
  readonly pacing?: boolean
  /** Upper bound for the congestion window (packets). Default 1 000 000 (effectively the peer's window). */
  readonly maxCwnd?: number
}

export interface UdxStreamStats {
  readonly packetsSent: number
  readonly packetsReceived: number
  readonly bytesSent: number
  readonly bytesReceived: number
  readonly dataPacketsSent: number
  readonly dataPacketsReceived: number
  readonly retransmits: number
  readonly fastRecoveries: number
  readonly rtoCount: number
  readonly tlpCount: number
  readonly acksSent: number
  readonly duplicatesReceived: number
  readonly invalid: number
  readonly messagesSent: number
  readonly messagesReceived: number
  readonly srtt: number
  readonly rttvar: number
  readonly minRtt: number
  readonly rto: number
  readonly cwnd: number
  readonly ssthresh: number
  readonly inflight: number
  readonly sendRwnd: number
  readonly recvRwnd: number
  readonly mtu: number
  readonly mss: number
  readonly queued: number
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const u32 = (b: Uint8Array, p: number): number => (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0

const put32 = (b: Uint8Array, p: number, n: number): void => {
  b[p] = n
  b[p + 1] = n >>> 8
  b[p + 2] = n >>> 16
  b[p + 3] = n >>> 24
}

/** Serial difference a − b as a signed 32-bit number (udx.md §7.1). */
const sdiff = (a: number, b: number): number => (a - b) | 0

const EMPTY = new Uint8Array(0)

const STATE_OPEN = 0
const STATE_RECOVERY = 1
const STATE_LOSS = 2

const MTU_COMPLETE = 0
const MTU_BASE_STATE = 1
const MTU_SEARCH = 2

/** One DATA/END packet we sent, kept until acknowledged. */
class OutPacket {
  seq = 0
  type = 0
  /** The whole datagram (header, optional probe padding, payload). */
  buf: Uint8Array = EMPTY
  /** Payload bytes (excluding padding). */
  size = 0
  timeSent = 0
  transmits = 0
  rtoCount = 0
  /** Counted in the pipe (sent, not acked/sacked, not marked lost). */
  inPipe = false
  sacked = false
  acked = false
  /** Marked lost, waiting in the retransmit queue. */
  lost = false
  /** An MTU probe carrying padding. */
  probe = false
  /** The probe's target IP size. */
  probeSize = 0
  // delivery-rate sampling state at (re)transmission
  delivered = 0
  deliveredTime = 0
  firstSentTime = 0
  appLimited = false
  // send-time ordered list of packets in the pipe
  prev: OutPacket | null = null
  next: OutPacket | null = null
}

// ---------------------------------------------------------------------------
// The core
// ---------------------------------------------------------------------------

export class UdxStreamCore {
  readonly localId: number
  remoteId = 0
  connected = false
  /** closed = no more application-visible activity (the close event fired). */
  closed = false
  /** After a clean close: still answering retransmissions until `lingerUntil`. */
  lingering = false
  /** Nothing left to do (closed and not lingering): the owner may drop the core. */
  finished = false
  closeError: UdxError | null = null

  private readonly transmitFn: (bytes: Uint8Array) => void
  private readonly events: UdxStreamEvents
  private readonly autoFlush: boolean
  private readonly ackEvery: number
  private readonly ackDelay: number
  private readonly manualConsume: boolean
  private readonly lingerMs: number
  private readonly tlpEnabled: boolean
  private readonly pacingEnabled: boolean
  private readonly keepAliveMs: number
  private readonly maxCwnd: number
  readonly highWaterMark: number
  readonly rwndMax: number
  private readonly overhead: number

  // ---- MTU ----
  mtu: number
  mss: number
  private readonly mtuMax: number
  private mtuState: number
  private probeSize: number
  private probeFailures = 0
  private probeOut: OutPacket | null = null

  // ---- sender ----
  /** Next sequence number to assign. */
  seqNext = 0
  /** Lowest sequence number not cumulatively acknowledged. */
  remoteAcked = 0
  // both rings start small and double on demand (an idle connection holds little)
  private ring: Array<OutPacket | undefined> = new Array(16)
  private ringMask = 15
  private writeQueue: Array<Uint8Array> = []
  private writeHead = 0
  private writeOffset = 0
  /** Bytes written and not yet packetised. */
  queuedBytes = 0
  private aboveHwm = false
  private endRequested = false
  /** Sequence number of our END packet, or -1 while not sent. */
  private endSeq = -1
  /** Our END was acknowledged. */
  localEnded = false
  sendRwnd = DEFAULT_RWND_MAX
  private wl1 = 0
  private wl2 = 0
  inflight = 0
  inflightBytes = 0
  private sackedCount = 0
  private retransmitQueue: Array<OutPacket> = []
  private retransmitHead = 0
  private listHead: OutPacket | null = null
  private listTail: OutPacket | null = null
  private slab: Uint8Array = new Uint8Array(0)
  private slabOffset = 0

  // congestion control
  private state = STATE_OPEN
  private highSeq = 0
  cwnd = INITIAL_CWND
  ssthresh = Infinity
  private cwndCount = 0
  private cwndLimited = false
  // delivery-rate sampler (tcp_rate style) and filters for the cwnd bound
  private delivered = 0
  private deliveredTime = 0
  private firstSentTime = 0
  private appLimitedUntil = 0
  private rsPriorDelivered = -1
  private rsPriorTime = 0
  private rsSendElapsed = 0
  private rsAppLimited = false
  private nextRoundDelivered = 0
  private readonly bwRounds = new Float64Array(BW_ROUNDS)
  private bwRound = 0
  /** Max delivery rate over the last rounds (packets per ms). */
  bwMax = 0
  private ccMinRtt = Infinity
  private ccMinRttStamp = 0

  // RTT
  srtt = 0
  rttvar = 0
  rto = RTO_INITIAL
  minRtt = Infinity
  private minRttStamp = 0
  private hasRtt = false

  // RACK
  private rackTime = -1
  private rackSeq = 0
  private rackRtt = 0
  private fack = 0
  private reorderingSeen = false

  // TLP
  private tlpInFlight = false

  // timers (absolute ms; Infinity = off)
  private rtoAt = Infinity
  private rackAt = Infinity
  private tlpAt = Infinity
  private zwpAt = Infinity
  private zwpCount = 0
  private paceAt = Infinity
  private lingerAt = Infinity
  private ackAt = Infinity
  /** An ACK must go out at the next flush (HEARTBEAT / END received). */
  private ackUrgent = false
  private lastTx = 0

  // pacing
  private tokens = INITIAL_PACING_TOKENS
  private lastRefill = -1

  // ---- receiver ----
  /** Next sequence number expected from the peer (cumulative ack). */
  ack = 0
  private inPayload: Array<Uint8Array | undefined> = new Array(16)
  private inType: Uint8Array = new Uint8Array(16)
  private inMask = 15
  private oooCount = 0
  private oooBytes = 0
  private unreadBytes = 0
  private remoteEnding = false
  private remoteEndSeq = 0
  /** The reader saw end-of-stream. */
  remoteEnded = false
  private ackPending = 0
  /** The ack value carried by the last packet we sent. */
  private lastAckSent = -1
  private lastRwndSent = -1

  // ---- stats ----
  private s = {
    packetsSent: 0,
    packetsReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    dataPacketsSent: 0,
    dataPacketsReceived: 0,
    retransmits: 0,
    fastRecoveries: 0,
    rtoCount: 0,
    tlpCount: 0,
    acksSent: 0,
    duplicatesReceived: 0,
    invalid: 0,
    messagesSent: 0,
    messagesReceived: 0
  }

  constructor(options: UdxStreamOptions, now = 0) {
    this.localId = options.localId >>> 0
    this.transmitFn = options.transmit
    this.events = options.events
    this.autoFlush = options.autoFlush !== false
    this.ackEvery = Math.max(1, options.ackEvery ?? 32)
    this.ackDelay = Math.max(0, options.ackDelay ?? (this.autoFlush ? 0 : 1))
    this.manualConsume = options.manualConsume === true
    this.lingerMs = options.linger ?? DEFAULT_LINGER
    this.tlpEnabled = options.tlp !== false
    this.pacingEnabled = options.pacing !== false
    this.keepAliveMs = options.keepAlive ?? 0
    this.maxCwnd = Math.max(MIN_CWND, options.maxCwnd ?? 1_000_000)
    this.highWaterMark = options.highWaterMark ?? HIGH_WATERMARK
    this.rwndMax = options.rwndMax ?? DEFAULT_RWND_MAX
    this.overhead = options.ipv6 === true ? IPV6_OVERHEAD : IPV4_OVERHEAD
    this.mtu = Math.max(this.overhead + 1, options.mtu ?? MTU_BASE)
    this.mss = this.mtu - this.overhead
    this.mtuMax = Math.min(MTU_MAX, Math.max(this.mtu, options.maxMtu ?? this.mtu))
    this.mtuState = this.mtuMax > this.mtu ? MTU_BASE_STATE : MTU_COMPLETE
    this.probeSize = Math.min(this.mtu + MTU_STEP, this.mtuMax)
    this.lastTx = now
    this.lastRefill = now
  }

  // =========================================================================
  // Public inputs
  // =========================================================================

  /** Set the peer's stream id; the owner addresses `transmit` to the peer from now on. */
  connect(now: number, remoteId: number): void {
    if (this.closed) return
    this.remoteId = remoteId >>> 0
    this.connected = true
    this.lastTx = now
    if (this.autoFlush) this.flush(now)
  }

  /** Queue bytes to send. Returns false when the queue is above the high watermark. */
  write(now: number, chunk: Uint8Array): boolean {
    if (this.closed || this.endRequested) return false
    if (chunk.length > 0) {
      this.writeQueue.push(chunk)
      this.queuedBytes += chunk.length
    }
    const ok = this.queuedBytes <= this.highWaterMark
    if (!ok) this.aboveHwm = true
    if (this.autoFlush) this.flush(now)
    return ok
  }

  /** Half close: the last packet carries END (an END-only packet when nothing is queued). */
  end(now: number): void {
    if (this.closed || this.endRequested) return
    this.endRequested = true
    if (this.autoFlush) this.flush(now)
  }

  /**
   * Abort: send DESTROY (if connected) and close at once. `error` is what the
   * local close event reports (default none).
   */
  destroy(now: number, error: UdxError | null = null): void {
    if (this.closed) {
      if (this.lingering) this.finish()
      return
    }
    if (this.connected) {
      const b = new Uint8Array(UDX_HEADER)
      this.header(b, T_DESTROY, 0, this.seqNext)
      this.seqNext = (this.seqNext + 1) >>> 0
      this.tx(now, b)
    }
    this.close(error, false)
  }

  /** Send an unordered message. Returns false if not connected, closed or larger than the mss. */
  sendMessage(now: number, data: Uint8Array): boolean {
    if (this.closed || !this.connected || data.length > this.mss) return false
    const b = new Uint8Array(UDX_HEADER + data.length)
    this.header(b, T_MESSAGE, 0, this.seqNext)
    b.set(data, UDX_HEADER)
    this.s.messagesSent++
    this.tx(now, b)
    return true
  }

  /** The application consumed `n` delivered bytes (only with `manualConsume`). */
  consumed(now: number, n: number): void {
    if (!this.manualConsume || n <= 0) return
    this.unreadBytes = Math.max(0, this.unreadBytes - n)
    if (this.closed || !this.connected) return
    // window update: the last advertisement was small and the window grew a lot
    const w = this.recvWindow()
    const last = this.lastRwndSent
    if (last >= 0 && last < this.rwndMax / 2 && w - last >= Math.max(this.rwndMax / 4, 2 * this.mss)) {
      this.sendAck(now)
    }
  }

  /** A datagram addressed to this stream (the owner matched the id). Never throws. */
  onPacket(now: number, buf: Uint8Array): void {
    const len = buf.length
    if (len < UDX_HEADER || buf[0] !== 0xff || buf[1] !== 0x01) {
      this.s.invalid++
      return
    }
    const type = buf[2]!
    const doff = buf[3]!
    const seq = u32(buf, 12)
    this.s.packetsReceived++
    this.s.bytesReceived += len

    if (this.closed) {
      // lingering after a clean close: re-acknowledge retransmitted DATA/END
      if (this.lingering && (type & (T_DATA | T_END)) !== 0) this.sendAck(now)
      return
    }
    if (!this.connected) {
      this.s.invalid++
      return
    }

    // §5 step 3: HEARTBEAT is answered with an ACK and nothing else is processed
    if ((type & T_HEARTBEAT) !== 0) {
      this.ackPending++
      this.ackCarried = false
      this.ackUrgent = true
      if (this.autoFlush || this.ackPending >= this.ackEvery) this.sendAck(now)
      return
    }
    // §3.2: doff beyond the datagram drops the packet
    if (doff > len - UDX_HEADER) {
      this.s.invalid++
      return
    }
    const isData = (type & (T_DATA | T_END)) !== 0
    const d = sdiff(seq, this.ack)
    if (d >= 0) {
      if (isData) {
        this.s.dataPacketsReceived++
        if (!this.remoteEnding || sdiff(seq, this.remoteEndSeq) <= 0) {
          if (d === 0 && (type & T_DATA) !== 0) {
            this.ack = (this.ack + 1) >>> 0
            const payload = buf.subarray(UDX_HEADER + doff)
            if (payload.length > 0) this.deliver(payload)
          } else if (d < MAX_RECV_AHEAD) {
            this.bufferPacket(seq, d, type, buf.subarray(UDX_HEADER + doff))
          } else {
            this.s.invalid++
          }
        }
      }
      if ((type & T_END) !== 0 && !this.remoteEnding) {
        this.remoteEnding = true
        this.remoteEndSeq = seq
      }
      if ((type & T_END) !== 0) this.ackUrgent = true
      if ((type & T_DESTROY) !== 0) {
        this.close(new UdxError({ code: "ECONNRESET", detail: "the peer destroyed the stream" }), false)
        return
      }
    } else if (isData) {
      this.s.dataPacketsReceived++
      this.s.duplicatesReceived++
    }
    if ((type & T_MESSAGE) !== 0) {
      this.s.messagesReceived++
      this.events.onMessage(buf.subarray(UDX_HEADER + doff))
      if (this.closed) return
    }
    // §5 step 7: release buffered packets that are now in order
    if (this.oooCount > 0) this.drainBuffered()
    if (this.closed) return

    // §5 step 8: the ack / rwnd / SACK fields
    const bail = this.processAck(now, buf, type, doff, seq)
    if (this.closed) return
    if (isData && !bail) {
      this.ackPending++
      this.ackCarried = false
      if (!this.autoFlush && this.ackPending >= this.ackEvery) this.sendAck(now)
    }
    if (this.autoFlush) this.flush(now)
  }

  /** Fire every timer that is due. */
  onTimers(now: number): void {
    if (this.closed) {
      if (this.lingering && now >= this.lingerAt) this.finish()
      return
    }
    if (now >= this.rtoAt) this.onRto(now)
    if (this.closed) return
    if (now >= this.rackAt) {
      this.rackAt = Infinity
      this.detectLoss(now)
    }
    if (now >= this.tlpAt) this.onTlp(now)
    if (now >= this.zwpAt) {
      if (this.sendRwnd === 0 && this.connected && this.inflight === 0 && (this.queuedBytes > 0 || (this.endRequested && this.endSeq === -1))) {
        this.sendHeartbeat(now)
        this.zwpAt = now + (this.zwpCount++ === 0 ? this.rto : 2 * this.rto)
      } else {
        this.zwpAt = Infinity
      }
    }
    if (this.keepAliveMs > 0 && this.connected && this.seqNext === this.remoteAcked && now >= this.lastTx + this.keepAliveMs) {
      this.sendHeartbeat(now)
    }
    if (now >= this.paceAt) this.paceAt = Infinity
    if (now >= this.ackAt) {
      this.ackAt = Infinity
      if (this.ackPending > 0) this.sendAck(now)
    }
    if (this.autoFlush) this.flush(now)
  }

  /**
   * End of a batch of inputs: send what the windows allow (including a
   * partially filled packet), then one ACK for everything received.
   */
  flush(now: number): void {
    if (this.closed) return
    if (this.connected) {
      this.pump(now, true)
      if (this.closed) return
      if (this.ackPending > 0) {
        // Every packet carries the cumulative ack: a pure ACK is only needed
        // when nothing carrying the current ack/rwnd went out since the last
        // DATA/END/HEARTBEAT arrived, or for SACK information.
        if (this.ackCarried && this.oooCount === 0 && this.lastAckSent === this.ack && this.lastRwndSent === this.recvWindow()) {
          this.ackPending = 0
          this.ackUrgent = false
          this.ackAt = Infinity
        } else if (this.oooCount > 0 || this.ackUrgent || this.ackDelay === 0 || this.ackPending >= this.ackEvery || now >= this.ackAt) {
          this.sendAck(now)
        } else if (this.ackAt === Infinity) {
          this.ackAt = now + this.ackDelay
        }
      }
      this.checkEnd()
    }
  }

  /** The earliest time `onTimers` has something to do (Infinity = nothing). */
  nextDeadline(): number {
    if (this.closed) return this.lingering ? this.lingerAt : Infinity
    let t = this.rtoAt
    if (this.rackAt < t) t = this.rackAt
    if (this.tlpAt < t) t = this.tlpAt
    if (this.zwpAt < t) t = this.zwpAt
    if (this.paceAt < t) t = this.paceAt
    if (this.ackAt < t) t = this.ackAt
    if (this.keepAliveMs > 0 && this.connected && this.seqNext === this.remoteAcked) {
      const k = this.lastTx + this.keepAliveMs
      if (k < t) t = k
    }
    return t
  }

  stats(): UdxStreamStats {
    return {
      ...this.s,
      srtt: this.srtt,
      rttvar: this.rttvar,
      minRtt: this.minRtt === Infinity ? 0 : this.minRtt,
      rto: this.rto,
      cwnd: this.cwnd,
      ssthresh: this.ssthresh,
      inflight: this.inflight,
      sendRwnd: this.sendRwnd,
      recvRwnd: this.recvWindow(),
      mtu: this.mtu,
      mss: this.mss,
      queued: this.queuedBytes
    }
  }

  /** Packets sent and not yet cumulatively acknowledged. */
  get outstanding(): number {
    return (this.seqNext - this.remoteAcked) >>> 0
  }

  // =========================================================================
  // Receiving
  // =========================================================================

  /** A non-heartbeat packet (carrying ack/rwnd) went out since the last packet that needs an ACK arrived. */
  private ackCarried = true

  private deliver(payload: Uint8Array): void {
    if (this.manualConsume) this.unreadBytes += payload.length
    this.events.onData(payload)
  }

  private bufferPacket(seq: number, d: number, type: number, payload: Uint8Array): void {
    if (d > this.inMask) this.growIn(d)
    const i = seq & this.inMask
    if (this.inPayload[i] !== undefined) {
      this.s.duplicatesReceived++
      return
    }
    this.inPayload[i] = (type & T_DATA) !== 0 ? payload : EMPTY
    this.inType[i] = type
    this.oooCount++
    this.oooBytes += payload.length
  }

  private growIn(d: number): void {
    let cap = this.inMask + 1
    while (cap <= d) cap *= 2
    const payload: Array<Uint8Array | undefined> = new Array(cap)
    const types = new Uint8Array(cap)
    const oldMask = this.inMask
    const mask = cap - 1
    for (let k = 0; k <= oldMask; k++) {
      const s = (this.ack + k) >>> 0
      const p = this.inPayload[s & oldMask]
      if (p !== undefined) {
        payload[s & mask] = p
        types[s & mask] = this.inType[s & oldMask]!
      }
    }
    this.inPayload = payload
    this.inType = types
    this.inMask = mask
  }

  private drainBuffered(): void {
    while (this.oooCount > 0) {
      const i = this.ack & this.inMask
      const p = this.inPayload[i]
      if (p === undefined) return
      this.inPayload[i] = undefined
      this.oooCount--
      this.oooBytes -= p.length
      this.ack = (this.ack + 1) >>> 0
      if ((this.inType[i]! & T_DATA) !== 0 && p.length > 0) {
        this.deliver(p)
        if (this.closed) return
      }
    }
  }

  private recvWindow(): number {
    const w = this.rwndMax - this.oooBytes - this.unreadBytes
    return w > 0 ? w : 0
  }

  /** End-of-stream to the reader once the END is consumed and acknowledged; close when both sides ended. */
  private checkEnd(): void {
    if (this.remoteEnding && !this.remoteEnded && sdiff(this.remoteEndSeq, this.ack) < 0 && sdiff(this.lastAckSent, this.ack) === 0) {
      this.remoteEnded = true
      this.events.onEnd()
      if (this.closed) return
    }
    if (this.remoteEnded && this.localEnded && !this.closed) this.close(null, true)
  }

  // =========================================================================
  // Processing acknowledgements (§6)
  // =========================================================================

  // per-ACK scratch (no allocation)
  private newest: OutPacket | null = null
  private deliveredNow = 0

  /** Returns true when the packet acknowledges something never sent (the rest is ignored). */
  private processAck(now: number, buf: Uint8Array, type: number, doff: number, pseq: number): boolean {
    const ack = u32(buf, 16)
    const rwnd = u32(buf, 8)
    if (sdiff(ack, this.seqNext) > 0) return true

    // window update (RFC 793 style)
    if (sdiff(ack, this.remoteAcked) >= 0 && (sdiff(this.wl1, pseq) < 0 || (this.wl1 === pseq && sdiff(this.wl2, ack) <= 0))) {
      this.sendRwnd = rwnd
      this.wl1 = pseq
      this.wl2 = ack
      if (rwnd > 0) {
        this.zwpAt = Infinity
        this.zwpCount = 0
      }
    }

    if (this.state !== STATE_OPEN && sdiff(ack, this.highSeq) >= 0) this.exitRecovery()

    this.newest = null
    this.deliveredNow = 0
    const advanced = sdiff(ack, this.remoteAcked) > 0
    if (advanced) {
      const mask = this.ringMask
      const ring = this.ring
      for (let s = this.remoteAcked; s !== ack; s = (s + 1) >>> 0) {
        const p = ring[s & mask]
        ring[s & mask] = undefined
        if (p !== undefined) this.onDelivered(p, now, true)
      }
      this.remoteAcked = ack
      if (this.mtuState === MTU_BASE_STATE) this.mtuState = MTU_SEARCH
      // our END acknowledged?
      if (this.endSeq !== -1 && !this.localEnded && sdiff(ack, this.endSeq) > 0) {
        this.localEnded = true
      }
    }

    if ((type & T_SACK) !== 0) {
      const body = buf.length - UDX_HEADER
      const region = doff > 0 && doff < body ? doff : body
      const n = Math.min(region >> 3, 1024)
      let p = UDX_HEADER
      // a block must lie within [remoteAcked, seqNext]: compared as offsets
      // from remoteAcked (three pairwise sdiff checks let a block of up to
      // 2^31 sequence numbers through across the wrap, and sackRange walks it)
      const acked = this.remoteAcked
      const limit = (this.seqNext - acked) >>> 0
      for (let k = 0; k < n; k++, p += 8) {
        const start = u32(buf, p)
        const end = u32(buf, p + 4)
        const a = (start - acked) >>> 0
        const b = (end - acked) >>> 0
        if (a >= b || b > limit) continue
        this.sackRange(start, end, now)
      }
    }

    if (this.deliveredNow > 0) {
      const nw = this.newest as OutPacket | null
      if (nw !== null && nw.transmits === 1) this.rttSample(now - nw.timeSent, now)
      this.tlpInFlight = false
      this.rateSample(now)
      this.cc_onAck(this.deliveredNow)
    }

    // timers
    if (advanced) {
      if (this.seqNext !== this.remoteAcked) this.rtoAt = now + this.rto
      else {
        this.rtoAt = Infinity
        this.tlpAt = Infinity
        this.rackAt = Infinity
        this.newest = null
        if (this.slab.length > 0) this.releaseSlab()
      }
    }
    if (this.deliveredNow > 0 || (type & T_SACK) !== 0) this.detectLoss(now)
    if (advanced && this.tlpEnabled && this.state === STATE_OPEN && this.sackedCount === 0 && this.inflight > 0) this.armTlp(now)
    return false
  }

  private sackRange(start: number, end: number, now: number): void {
    const ring = this.ring
    const mask = this.ringMask
    for (let s = start; s !== end; s = (s + 1) >>> 0) {
      const p = ring[s & mask]
      if (p === undefined || p.sacked || p.acked) continue
      p.sacked = true
      this.sackedCount++
      this.onDelivered(p, now, false)
    }
  }

  /** A packet was acknowledged cumulatively (`cumulative`) or selectively. */
  private onDelivered(p: OutPacket, now: number, cumulative: boolean): void {
    if (cumulative) {
      p.acked = true
      if (p.sacked) {
        this.sackedCount--
        return
      }
    }
    if (p.inPipe) this.removeFromPipe(p)
    this.deliveredNow++
    this.delivered++
    this.deliveredTime = now
    if (p.delivered >= this.rsPriorDelivered) {
      this.rsPriorDelivered = p.delivered
      this.rsPriorTime = p.deliveredTime
      this.rsSendElapsed = p.timeSent - p.firstSentTime
      this.rsAppLimited = p.appLimited
      this.firstSentTime = p.timeSent
    }
    if (p.delivered >= this.nextRoundDelivered) {
      // a round trip ended: start a new slot of the bandwidth filter
      this.nextRoundDelivered = this.delivered
      this.bwRound = (this.bwRound + 1) % BW_ROUNDS
      this.bwRounds[this.bwRound] = 0
    }
    if (p.probe) this.onProbeAcked(p)
    // RACK
    if (p.transmits === 1) {
      if (sdiff(p.seq, this.fack) < 0) this.reorderingSeen = true
    }
    if (sdiff(p.seq, this.fack) > 0) this.fack = p.seq
    const rtt = now - p.timeSent
    if (p.transmits === 1 || rtt >= this.minRtt) {
      if (p.timeSent > this.rackTime || (p.timeSent === this.rackTime && sdiff(p.seq, this.rackSeq) > 0)) {
        this.rackTime = p.timeSent
        this.rackSeq = p.seq
        this.rackRtt = rtt
      }
    }
    const nw = this.newest
    if (nw === null || p.timeSent > nw.timeSent || (p.timeSent === nw.timeSent && sdiff(p.seq, nw.seq) > 0)) this.newest = p
  }

  private rttSample(r: number, now: number): void {
    if (r < 0) r = 0
    if (!this.hasRtt) {
      if (r > RTT_CLAMP_MAX) r = RTT_CLAMP_MAX
      this.srtt = r
      this.rttvar = r / 2
      this.hasRtt = true
    } else {
      const lim = this.srtt + 5 * this.rttvar
      if (r > lim && r > 5000) r = Math.min(lim, RTT_CLAMP_MAX)
      this.rttvar = (3 * this.rttvar + Math.abs(this.srtt - r)) / 4
      this.srtt = (7 * this.srtt + r) / 8
    }
    this.rto = Math.min(RTO_MAX, Math.max(RTO_MIN, Math.ceil(this.srtt + 4 * this.rttvar)))
    if (r <= this.minRtt || now - this.minRttStamp > MIN_RTT_WINDOW) {
      this.minRtt = r
      this.minRttStamp = now
    }
    if (r <= this.ccMinRtt || now - this.ccMinRttStamp > CC_MIN_RTT_WINDOW) {
      this.ccMinRtt = r
      this.ccMinRttStamp = now
    }
  }

  /** One delivery-rate sample per ACK into the windowed max filter. */
  private rateSample(now: number): void {
    if (this.appLimitedUntil !== 0 && this.delivered > this.appLimitedUntil) this.appLimitedUntil = 0
    if (this.rsPriorDelivered < 0) return
    const ackElapsed = now - this.rsPriorTime
    const interval = ackElapsed > this.rsSendElapsed ? ackElapsed : this.rsSendElapsed
    const count = this.delivered - this.rsPriorDelivered
    this.rsPriorDelivered = -1
    // too short an interval overestimates (ACK compression)
    if (interval <= 0 || interval < this.ccMinRtt) return
    const rate = count / interval
    if (this.rsAppLimited && rate < this.bwMax) return
    const slot = this.bwRound
    if (rate > this.bwRounds[slot]!) this.bwRounds[slot] = rate
    let max = 0
    for (let i = 0; i < BW_ROUNDS; i++) if (this.bwRounds[i]! > max) max = this.bwRounds[i]!
    this.bwMax = max
  }

  /**
   * Delay-based bound on the window: a few BDPs (max delivery rate × min RTT)
   * plus room for stretch ACKs. Keeps the window from filling the
   * bottleneck's buffer (e.g. socket buffers on one host: bursts of
   * thousands of packets cost CPU and losses for nothing).
   */
  cwndBound(): number {
    if (this.bwMax <= 0 || this.ccMinRtt === Infinity) return Infinity
    return Math.ceil(BDP_GAIN * this.bwMax * this.ccMinRtt) + this.ackEvery + 8
  }

  // =========================================================================
  // Loss detection and recovery (§7)
  // =========================================================================

  private detectLoss(now: number): void {
    if (this.rackTime < 0) return
    const reoWnd = !this.reorderingSeen && (this.state !== STATE_OPEN || this.sackedCount >= 3)
      ? 0
      : Math.min(this.minRtt === Infinity ? 0 : this.minRtt / 4, this.srtt)
    let lostAny = false
    let p = this.listHead
    this.rackAt = Infinity
    while (p !== null) {
      if (!(p.timeSent < this.rackTime || (p.timeSent === this.rackTime && sdiff(p.seq, this.rackSeq) < 0))) break
      const deadline = p.timeSent + this.rackRtt + reoWnd
      if (now < deadline) {
        this.rackAt = deadline
        break
      }
      const next: OutPacket | null = p.next
      if (this.markLost(p)) lostAny = true
      p = next
    }
    if (lostAny && this.state === STATE_OPEN) this.enterRecovery()
  }

  /** Returns true if a non-probe packet was marked. */
  private markLost(p: OutPacket): boolean {
    if (p.inPipe) this.removeFromPipe(p)
    if (p.lost) return false
    p.lost = true
    this.retransmitQueue.push(p)
    if (p.probe) {
      this.onProbeLost(p)
      return false
    }
    return true
  }

  private enterRecovery(): void {
    this.state = STATE_RECOVERY
    this.highSeq = this.seqNext
    this.s.fastRecoveries++
    this.tlpAt = Infinity
    this.ssthresh = Math.max(MIN_CWND, Math.floor(this.cwnd * BETA))
    this.cwnd = this.ssthresh
    this.cwndCount = 0
  }

  private exitRecovery(): void {
    this.state = STATE_OPEN
  }

  private onRto(now: number): void {
    if (this.seqNext === this.remoteAcked) {
      this.rtoAt = Infinity
      return
    }
    const head = this.ring[this.remoteAcked & this.ringMask]
    if (head !== undefined && head.rtoCount >= MAX_RTO_EXPIRIES) {
      this.close(new UdxError({ code: "ETIMEDOUT", detail: "the peer stopped acknowledging" }), false)
      return
    }
    this.s.rtoCount++
    const firstLoss = this.state !== STATE_LOSS
    this.state = STATE_LOSS
    this.highSeq = this.seqNext
    this.tlpInFlight = false
    this.tlpAt = Infinity
    this.rtoAt = now + 2 * this.rto
    // congestion: one loss episode per RTO series
    if (firstLoss) this.ssthresh = Math.max(MIN_CWND, Math.floor(Math.max(this.inflight, this.cwnd) * BETA))
    this.cwnd = 1
    this.cwndCount = 0
    if (head !== undefined && !head.acked) {
      head.rtoCount++
      if (!head.sacked) this.markLost(head)
    }
    // Everything still in the pipe is presumed lost (RFC 6675 §5.1 / RFC 5681
    // after a timeout): with cwnd back at 1 nothing could be resent otherwise.
    // The retransmit queue keeps send-time order, so the oldest go first.
    let p = this.listHead
    while (p !== null) {
      const next: OutPacket | null = p.next
      this.markLost(p)
      p = next
    }
  }

  private armTlp(now: number): void {
    if (this.tlpInFlight) return
    let pto = this.hasRtt ? Math.max(2 * this.srtt, TLP_MIN) : RTO_INITIAL
    if (this.inflight === 1) pto += TLP_EXTRA
    const at = now + pto
    this.tlpAt = at < this.rtoAt ? at : this.rtoAt
  }

  private onTlp(now: number): void {
    this.tlpAt = Infinity
    if (this.tlpInFlight || this.state !== STATE_OPEN || this.seqNext === this.remoteAcked) return
    this.tlpInFlight = true
    this.s.tlpCount++
    // new data if any (ignoring cwnd), else the highest sent packet again
    if (!this.sendNewPacket(now, true, true)) {
      const p = this.ring[((this.seqNext - 1) >>> 0) & this.ringMask]
      if (p !== undefined && !p.acked && !p.sacked) this.retransmit(p, now)
    }
    this.rtoAt = now + this.rto
  }

  // =========================================================================
  // Congestion control: NewReno-style window in packets
  // =========================================================================

  private cc_onAck(acked: number): void {
    if (this.state === STATE_RECOVERY) return
    if (!this.cwndLimited && this.inflight + acked < this.cwnd / 2) return
    const slowStart = this.cwnd < this.ssthresh
    if (slowStart) {
      this.cwnd += acked
    } else {
      this.cwndCount += acked
      if (this.cwndCount >= this.cwnd) {
        const inc = Math.floor(this.cwndCount / this.cwnd)
        this.cwndCount -= inc * this.cwnd
        this.cwnd += inc
      }
    }
    const bound = this.cwndBound()
    if (this.cwnd > bound) {
      // the path's queue is building: stop growing (and leave slow start)
      this.cwnd = Math.max(MIN_CWND, bound)
      if (slowStart) this.ssthresh = this.cwnd
    }
    if (this.cwnd > this.maxCwnd) this.cwnd = this.maxCwnd
  }

  private pacingRate(): number {
    // bytes per ms: gain · cwnd · mss / srtt
    const srtt = this.hasRtt ? Math.max(this.srtt, 0.05) : 1
    const gain = this.cwnd < this.ssthresh ? 2.88539 : 1.25
    return (gain * this.cwnd * this.mss) / srtt
  }

  // =========================================================================
  // Sending
  // =========================================================================

  private pump(now: number, flushing: boolean): void {
    if (!this.connected || this.closed) return
    // retransmissions first (they obey cwnd and pacing, not rwnd)
    while (this.retransmitHead < this.retransmitQueue.length) {
      const p = this.retransmitQueue[this.retransmitHead]!
      if (p.acked || p.sacked || !p.lost) {
        this.retransmitHead++
        continue
      }
      if (this.inflight >= this.cwnd) {
        this.cwndLimited = true
        return this.compactRetransmitQueue()
      }
      if (!this.paceOk(now)) return this.compactRetransmitQueue()
      this.retransmitHead++
      this.retransmit(p, now)
    }
    this.compactRetransmitQueue()
    // new data
    while (true) {
      if (this.inflight >= this.cwnd) {
        this.cwndLimited = true
        return
      }
      if (this.queuedBytes === 0 && !(this.endRequested && this.endSeq === -1)) {
        // application-limited: rate samples until this data is delivered don't lower the estimate
        this.cwndLimited = false
        if (this.retransmitHead >= this.retransmitQueue.length) this.appLimitedUntil = Math.max(1, this.delivered + this.inflight)
        return
      }
      if (this.queuedBytes < this.mss && !flushing && !this.endRequested) return
      if (!this.paceOk(now)) return
      if (!this.sendNewPacket(now, flushing, false)) return
    }
  }

  private compactRetransmitQueue(): void {
    if (this.retransmitHead === 0) return
    if (this.retransmitHead >= this.retransmitQueue.length) {
      this.retransmitQueue.length = 0
      this.retransmitHead = 0
    } else if (this.retransmitHead > 1024 && this.retransmitHead * 2 > this.retransmitQueue.length) {
      this.retransmitQueue = this.retransmitQueue.slice(this.retransmitHead)
      this.retransmitHead = 0
    }
  }

  private paceOk(now: number): boolean {
    if (!this.pacingEnabled) return true
    if (now > this.lastRefill) {
      // refill; the bucket holds at most 2 ms worth of the pacing rate
      const rate = this.pacingRate()
      const cap = Math.max(2 * rate, INITIAL_PACING_TOKENS)
      const t = this.tokens + (now - this.lastRefill) * rate
      this.tokens = t < cap ? t : cap
      this.lastRefill = now
    }
    if (this.tokens > 0) return true
    if (this.paceAt === Infinity || this.paceAt <= now) {
      this.paceAt = now + Math.max(0.25, Math.min(1, (this.mtu + 1) / this.pacingRate()))
    }
    return false
  }

  /**
   * Packetise and send the next new DATA/END packet if the receive window
   * allows. `ignoreCwnd` is for TLP. Returns false when nothing was sent.
   */
  private sendNewPacket(now: number, flushing: boolean, ignoreCwnd: boolean): boolean {
    void ignoreCwnd
    const endPending = this.endRequested && this.endSeq === -1
    let len = this.queuedBytes < this.mss ? this.queuedBytes : this.mss
    if (len === 0 && !endPending) return false
    if (len < this.mss && !flushing && !endPending) return false
    // the peer's receive window, in bytes (never exceeded)
    const room = this.sendRwnd - this.inflightBytes
    if (room < len) {
      if (room <= 0 || this.inflight > 0) {
        if (this.sendRwnd === 0 && this.inflight === 0 && this.zwpAt === Infinity) {
          this.zwpAt = now
          this.zwpCount = 0
        }
        return false
      }
      len = room
    }
    const seq = this.seqNext
    const withEnd = endPending && len === this.queuedBytes
    if (len === 0 && !withEnd) return false
    const type = (len > 0 ? T_DATA : 0) | (withEnd ? T_END : 0)

    // MTU probe: pad a full-size new packet up to the probe size
    let pad = 0
    if (this.mtuState === MTU_SEARCH && this.probeOut === null && len === this.mss && !ignoreCwnd) {
      const want = this.probeSize - (UDX_HEADER + len + (this.overhead - UDX_HEADER))
      if (want > 0 && want <= 255) pad = want
    }

    const total = UDX_HEADER + pad + len
    const b = this.alloc(total)
    if (pad > 0) b.fill(0, UDX_HEADER, UDX_HEADER + pad)
    this.copyOut(b, UDX_HEADER + pad, len)
    this.header(b, type, pad, seq)

    const p = new OutPacket()
    p.seq = seq
    p.type = type
    p.buf = b
    p.size = len
    if (pad > 0) {
      p.probe = true
      p.probeSize = this.probeSize
      this.probeOut = p
    }
    if (((seq - this.remoteAcked) >>> 0) > this.ringMask) this.growRing()
    this.ring[seq & this.ringMask] = p
    this.seqNext = (seq + 1) >>> 0
    if (withEnd) this.endSeq = seq
    this.s.dataPacketsSent++
    this.transmitPacket(p, now)
    if (this.tlpEnabled && this.state === STATE_OPEN && this.sackedCount === 0 && !ignoreCwnd) this.armTlp(now)
    if (this.aboveHwm && this.queuedBytes <= this.highWaterMark) {
      this.aboveHwm = false
      this.events.onDrain()
    }
    return true
  }

  private retransmit(p: OutPacket, now: number): void {
    p.lost = false
    if (p.probe) {
      // drop the padding
      const b = this.alloc(UDX_HEADER + p.size)
      b.set(p.buf.subarray(p.buf.length - p.size), UDX_HEADER)
      p.buf = b
      p.probe = false
    }
    this.header(p.buf, p.type, 0, p.seq)
    this.s.retransmits++
    this.transmitPacket(p, now)
  }

  private transmitPacket(p: OutPacket, now: number): void {
    // a tail loss probe resends a packet still in flight: it leaves the pipe
    // (and the send-time list) before it re-enters at the tail, else it
    // would be counted twice and linked twice
    if (p.inPipe) this.removeFromPipe(p)
    if (this.inflight === 0) {
      this.firstSentTime = now
      this.deliveredTime = now
    }
    p.delivered = this.delivered
    p.deliveredTime = this.deliveredTime
    p.firstSentTime = this.firstSentTime
    p.appLimited = this.appLimitedUntil !== 0
    p.timeSent = now
    p.transmits++
    p.inPipe = true
    this.inflight++
    this.inflightBytes += p.size
    // append to the send-time ordered list
    p.next = null
    p.prev = this.listTail
    if (this.listTail !== null) this.listTail.next = p
    else this.listHead = p
    this.listTail = p
    if (this.pacingEnabled) {
      this.tokens -= p.buf.length
      if (this.tokens < 0) this.tokens = 0
    }
    if (this.rtoAt === Infinity) this.rtoAt = now + this.rto
    this.tx(now, p.buf)
  }

  private removeFromPipe(p: OutPacket): void {
    p.inPipe = false
    this.inflight--
    this.inflightBytes -= p.size
    const prev = p.prev
    const next = p.next
    if (prev !== null) prev.next = next
    else this.listHead = next
    if (next !== null) next.prev = prev
    else this.listTail = prev
    p.prev = null
    p.next = null
  }

  private growRing(): void {
    const oldMask = this.ringMask
    const cap = (oldMask + 1) * 2
    const ring: Array<OutPacket | undefined> = new Array(cap)
    const mask = cap - 1
    for (let s = this.remoteAcked; s !== this.seqNext; s = (s + 1) >>> 0) ring[s & mask] = this.ring[s & oldMask]
    this.ring = ring
    this.ringMask = mask
  }

  private alloc(n: number): Uint8Array {
    if (this.slabOffset + n > this.slab.length) {
      this.slab = new Uint8Array(this.slabSize(n))
      this.slabOffset = 0
    }
    const b = this.slab.subarray(this.slabOffset, this.slabOffset + n)
    this.slabOffset += (n + 7) & ~7
    return b
  }

  /** The size of the next slab, for a packet of `n` bytes (see SLAB_MIN). */
  private slabSize(n: number): number {
    const want = this.queuedBytes + this.inflightBytes + n
    let size = this.slab.length > SLAB_MIN ? this.slab.length : SLAB_MIN
    while (size < want && size < SLAB_MAX) size *= 2
    return n > size ? n : size
  }

  /** Bytes of the packet slab this stream holds (0 when idle). */
  get slabBytes(): number {
    return this.slab.length
  }

  /** Every packet was acknowledged: the slab holds nothing we still need. */
  private releaseSlab(): void {
    this.slab = EMPTY
    this.slabOffset = 0
  }

  /** Move `len` queued bytes into `b` at `at`. */
  private copyOut(b: Uint8Array, at: number, len: number): void {
    let need = len
    while (need > 0) {
      const chunk = this.writeQueue[this.writeHead]!
      const avail = chunk.length - this.writeOffset
      if (avail <= need) {
        b.set(this.writeOffset === 0 ? chunk : chunk.subarray(this.writeOffset), at)
        at += avail
        need -= avail
        this.writeQueue[this.writeHead] = EMPTY
        this.writeHead++
        this.writeOffset = 0
      } else {
        b.set(chunk.subarray(this.writeOffset, this.writeOffset + need), at)
        this.writeOffset += need
        need = 0
      }
    }
    this.queuedBytes -= len
    if (this.writeHead === this.writeQueue.length) {
      this.writeQueue.length = 0
      this.writeHead = 0
    } else if (this.writeHead > 64 && this.writeHead * 2 > this.writeQueue.length) {
      this.writeQueue = this.writeQueue.slice(this.writeHead)
      this.writeHead = 0
    }
  }

  private header(b: Uint8Array, type: number, doff: number, seq: number): void {
    b[0] = 0xff
    b[1] = 0x01
    b[2] = type
    b[3] = doff
    put32(b, 4, this.remoteId)
    const w = this.recvWindow()
    put32(b, 8, w)
    put32(b, 12, seq)
    put32(b, 16, this.ack)
    this.lastAckSent = this.ack
    this.lastRwndSent = w
    if (type !== T_HEARTBEAT) this.ackCarried = true
  }

  private tx(now: number, b: Uint8Array): void {
    this.lastTx = now
    this.s.packetsSent++
    this.s.bytesSent += b.length
    this.transmitFn(b)
  }

  private sendHeartbeat(now: number): void {
    const b = new Uint8Array(UDX_HEADER)
    this.header(b, T_HEARTBEAT, 0, this.seqNext)
    this.tx(now, b)
  }

  /** A pure ACK (with SACK blocks when out-of-order packets are buffered). */
  private sendAck(now: number): void {
    this.ackPending = 0
    this.ackUrgent = false
    this.ackAt = Infinity
    if (!this.connected) return
    let b: Uint8Array
    if (this.oooCount > 0 && !this.closed) {
      // scan s = ack+1 ... growing blocks over buffered packets
      const blocks: Array<number> = []
      let remaining = this.oooCount
      let start = -1
      const limit = this.inMask
      for (let k = 1; k <= limit && remaining > 0; k++) {
        const s = (this.ack + k) >>> 0
        const present = this.inPayload[s & this.inMask] !== undefined
        if (present) {
          remaining--
          if (start === -1) start = s
        } else if (start !== -1) {
          blocks.push(start, s)
          start = -1
          if (blocks.length >= MAX_SACK_BLOCKS * 2) break
        }
      }
      if (start !== -1 && blocks.length < MAX_SACK_BLOCKS * 2) {
        let e = start
        while (this.inPayload[e & this.inMask] !== undefined && sdiff(e, this.ack) <= limit) e = (e + 1) >>> 0
        blocks.push(start, e)
      }
      b = new Uint8Array(UDX_HEADER + blocks.length * 4)
      this.header(b, T_SACK, 0, this.seqNext)
      for (let k = 0; k < blocks.length; k++) put32(b, UDX_HEADER + 4 * k, blocks[k]!)
    } else {
      b = new Uint8Array(UDX_HEADER)
      this.header(b, 0, 0, this.seqNext)
    }
    this.s.acksSent++
    this.tx(now, b)
  }

  // =========================================================================
  // MTU probing (§8.5)
  // =========================================================================

  private onProbeAcked(p: OutPacket): void {
    if (this.probeOut !== p) return
    this.probeOut = null
    if (p.probeSize > this.mtu) {
      this.mtu = p.probeSize
      this.mss = this.mtu - this.overhead
    }
    if (this.mtu >= this.mtuMax) this.mtuState = MTU_COMPLETE
    else this.probeSize = Math.min(this.mtu + MTU_STEP, this.mtuMax)
  }

  private onProbeLost(p: OutPacket): void {
    if (this.probeOut === p) this.probeOut = null
    if (++this.probeFailures >= MTU_MAX_PROBES) this.mtuState = MTU_COMPLETE
  }

  // =========================================================================
  // Closing
  // =========================================================================

  private close(error: UdxError | null, clean: boolean): void {
    if (this.closed) return
    this.closed = true
    this.closeError = error
    this.rtoAt = this.rackAt = this.tlpAt = this.zwpAt = this.paceAt = this.ackAt = Infinity
    this.writeQueue = []
    this.writeHead = 0
    this.queuedBytes = 0
    this.retransmitQueue = []
    this.retransmitHead = 0
    this.listHead = this.listTail = null
    this.ring = new Array(1)
    this.ringMask = 0
    this.releaseSlab()
    if (!clean) {
      this.inPayload = new Array(1)
      this.inMask = 0
      this.oooCount = 0
    }
    if (clean && this.lingerMs > 0 && this.connected) {
      this.lingering = true
      this.lingerAt = this.lastTx + Math.max(this.lingerMs, 15 * this.rto)
    } else {
      this.finished = true
    }
    this.events.onClose(error)
  }

  private finish(): void {
    this.lingering = false
    this.lingerAt = Infinity
    this.finished = true
  }
}
