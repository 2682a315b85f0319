/**
 * The protomux core and the blind-relay cores (client, relay server, UDX
 * relaying) driven by hand: frames are carried between muxes by a test
 * link, time is a variable, and byte-level expectations come from
 * test/vectors/connect.json (blindRelay, udxPackets) or are spelled out.
 */
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import {
  BlindRelayClient,
  BlindRelayServer,
  type BlindRelaySession,
  ByteMeter,
  MAX_PENDING_PAIRS_PER_SESSION,
  PAIRING_TIMEOUT,
  RelayAborted,
  type RelayLinkEnd,
  type RelayPairing,
  UdxRelay,
  udxRelayHooks
} from "../src/actors/session/blind-relay.js"
import { Protomux, type ProtomuxChannel, type ProtomuxError, MAX_BUFFERED } from "../src/actors/session/protomux.js"
import {
  batchFrame,
  encodeProtomuxFrame,
  messageFrame,
  openFrame,
  pair as pairCodec,
  unpair as unpairCodec
} from "../src/protocol/blind-relay.js"
import { encodeOrThrow, toHex } from "../src/protocol/encoding.js"
import { hex, loadVectors, utf8 } from "./support/vectors.js"

const V = loadVectors("connect")
const BR = V.blindRelay
const RELAY_PK = hex(BR.relayPublicKey)
const TOKEN = hex(BR.token)

const ok = <A, E>(r: Result.Result<A, E>): A => {
  if (Result.isFailure(r)) throw new Error(`unexpected failure: ${String(r.failure)}`)
  return r.success
}
const enc = (f: Parameters<typeof encodeProtomuxFrame>[0]): string => toHex(ok(encodeProtomuxFrame(f)))
const strHex = (s: string): string => toHex(utf8(s))
const token = (b: number): Uint8Array => new Uint8Array(32).fill(b)
const pairBody = (isInitiator: boolean, t: Uint8Array, id: number): Uint8Array => encodeOrThrow(pairCodec, { isInitiator, token: t, id, seq: 0 })

// ---------------------------------------------------------------------------
// A link between muxes: frames queue until `pump()`; every frame is logged.
// ---------------------------------------------------------------------------

interface LogEntry {
  readonly from: string
  readonly to: string
  readonly hex: string
}

class Net {
  readonly log: Array<LogEntry> = []
  private readonly queue: Array<{ to: Protomux; bytes: Uint8Array }> = []

  /** Two muxes named `a` and `b`, connected. */
  pair(a: string, b: string, opts: { a?: Partial<MuxOpts>; b?: Partial<MuxOpts> } = {}): [Protomux, Protomux, Record<string, Array<ProtomuxError>>] {
    const errors: Record<string, Array<ProtomuxError>> = { [a]: [], [b]: [] }
    let ma: Protomux | null = null
    let mb: Protomux | null = null
    ma = new Protomux({
      ...opts.a,
      send: (f) => this.enqueue(a, b, mb!, f),
      onError: (e) => errors[a]!.push(e)
    })
    mb = new Protomux({
      ...opts.b,
      send: (f) => this.enqueue(b, a, ma!, f),
      onError: (e) => errors[b]!.push(e)
    })
    return [ma, mb, errors]
  }

  private enqueue(from: string, to: string, mux: Protomux, bytes: Uint8Array): void {
    this.log.push({ from, to, hex: toHex(bytes) })
    this.queue.push({ to: mux, bytes })
  }

  /** Deliver until quiet. */
  pump(): void {
    while (this.queue.length > 0) {
      const { to, bytes } = this.queue.shift()!
      to.onMessage(bytes)
    }
  }

  /** Frames sent since index `from` (default all), as "from>to hex". */
  since(i = 0): Array<string> {
    return this.log.slice(i).map((e) => `${e.from}>${e.to} ${e.hex}`)
  }
}

interface MuxOpts {
  onRemoteOpen: (protocol: string, id: Uint8Array | null) => boolean | void
  maxBuffered: number
  maxPendingRemoteOpens: number
}

/** A mux whose frames are only recorded. */
const lone = (opts: Partial<MuxOpts> = {}) => {
  const out: Array<string> = []
  const errors: Array<ProtomuxError> = []
  const mux = new Protomux({ ...opts, send: (f) => out.push(toHex(f)), onError: (e) => errors.push(e) })
  return { mux, out, errors }
}

const recorder = () => {
  const events: Array<string> = []
  const spec = {
    onopen: (hs: Uint8Array, ch: ProtomuxChannel) => events.push(`open ${ch.localId}/${ch.remoteId} hs=${toHex(hs)}`),
    onclose: (isRemote: boolean, _ch: ProtomuxChannel) => events.push(`close remote=${isRemote}`),
    messages: [
      { onmessage: (p: Uint8Array) => events.push(`m0 ${toHex(p)}`) },
      { onmessage: (p: Uint8Array) => events.push(`m1 ${toHex(p)}`) }
    ]
  }
  return { events, spec }
}

// ---------------------------------------------------------------------------
// protomux
// ---------------------------------------------------------------------------

describe("protomux core", () => {
  it("opens, pairs, exchanges typed messages and closes, byte-exact", () => {
    const net = new Net()
    const [a, b] = net.pair("a", "b")
    const ra = recorder()
    const rb = recorder()
    const ca = a.openChannel({ protocol: "test", ...ra.spec })!
    const cb = b.openChannel({ protocol: "test", id: utf8("x"), ...rb.spec })! // a different channel id: no pairing
    const cb2 = b.openChannel({ protocol: "test", ...rb.spec })!
    expect(ca.localId).toBe(1)
    expect(cb.localId).toBe(1)
    expect(cb2.localId).toBe(2)
    expect(ca.send(0, utf8("early"))).toBe(true) // allowed before the peer's open has arrived
    net.pump()
    expect(net.since()).toEqual([
      `a>b 000101${"04" + strHex("test")}00`,
      `b>a 000101${"04" + strHex("test")}01${strHex("x")}`,
      `b>a 000102${"04" + strHex("test")}00`,
      `a>b 0100${strHex("early")}`,
      // a has no taker for b's "test"/x channel: rejected
      `a>b 000201`
    ])
    expect(ca.opened && cb2.opened).toBe(true)
    expect(ca.remoteId).toBe(2)
    expect(cb2.remoteId).toBe(1)
    expect(cb.closed).toBe(true) // rejected by a
    expect(rb.events).toEqual(["open 2/1 hs=", `m0 ${strHex("early")}`, "close remote=true"])
    expect(ra.events).toEqual(["open 1/2 hs="])

    const n = net.log.length
    ca.send(1, utf8("one"))
    cb2.send(0, utf8("zero"))
    cb2.send(7, utf8("unknown type")) // ignored by a
    net.pump()
    expect(net.since(n)).toEqual([`a>b 0101${strHex("one")}`, `b>a 0200${strHex("zero")}`, `b>a 0207${strHex("unknown type")}`])
    expect(rb.events.at(-1)).toBe(`m1 ${strHex("one")}`)
    expect(ra.events.at(-1)).toBe(`m0 ${strHex("zero")}`)
    expect(a.stats().ignored).toBe(1)

    // close: one-way frame, the peer closes with isRemote
    const m = net.log.length
    ca.close()
    ca.close() // idempotent
    net.pump()
    expect(net.since(m)).toEqual(["a>b 000301"])
    expect(ra.events.at(-1)).toBe("close remote=false")
    expect(rb.events.at(-1)).toBe("close remote=true")
    expect(ca.send(0, utf8("late"))).toBe(false)
    expect(a.isIdle()).toBe(true)
    // ids are reused on both sides
    const again = a.openChannel({ protocol: "test" })!
    expect(again.localId).toBe(1)
    const back = b.openChannel({ protocol: "test" })!
    expect(back.localId).toBe(2) // freed ids are reused last-freed first (1 by a's reject, then 2 by the close)
    net.pump()
    expect(again.opened && back.opened).toBe(true)
  })

  it("delivers the open handshake bytes; `unique` refuses a second channel", () => {
    const net = new Net()
    const [a, b] = net.pair("a", "b")
    const seen: Array<string> = []
    a.openChannel({ protocol: "p", id: utf8("k"), handshake: utf8("hello"), onopen: (hs) => seen.push(`a got ${toHex(hs)}`) })
    b.openChannel({ protocol: "p", id: utf8("k"), handshake: utf8("world"), onopen: (hs) => seen.push(`b got ${toHex(hs)}`) })
    expect(a.openChannel({ protocol: "p", id: utf8("k") })).toBeNull()
    expect(a.isOpen("p", utf8("k"))).toBe(true)
    net.pump()
    expect(net.since()).toEqual([
      `a>b 000101${"01" + strHex("p")}01${strHex("k")}${strHex("hello")}`,
      `b>a 000101${"01" + strHex("p")}01${strHex("k")}${strHex("world")}`
    ])
    expect(seen).toEqual([`b got ${strHex("hello")}`, `a got ${strHex("world")}`])
    // unique: false allows a second one
    expect(a.openChannel({ protocol: "p", id: utf8("k"), unique: false })).not.toBeNull()
  })

  it("buffers messages for a remote open until the local side opens it", () => {
    const net = new Net()
    const asked: Array<string> = []
    const [a, b] = net.pair("a", "b", {
      b: {
        onRemoteOpen: (protocol, id) => {
          asked.push(`${protocol} ${id === null ? "-" : toHex(id)}`)
          return true
        }
      }
    })
    const ca = a.openChannel({ protocol: "later", handshake: utf8("hs") })!
    ca.send(0, utf8("m1"))
    ca.send(1, utf8("m2"))
    ca.send(0, utf8("m3"))
    net.pump()
    expect(asked).toEqual(["later -"])
    expect(b.stats().pendingRemote).toBe(1)
    expect(b.stats().buffered).toBe(3 * 512 + 6)
    expect(ca.opened).toBe(false)
    const rb = recorder()
    const cb = b.openChannel({ protocol: "later", ...rb.spec })!
    // paired at once: onopen, then the buffered messages in order
    expect(rb.events).toEqual([`open 1/1 hs=${strHex("hs")}`, `m0 ${strHex("m1")}`, `m1 ${strHex("m2")}`, `m0 ${strHex("m3")}`])
    expect(cb.opened).toBe(true)
    expect(b.stats().pendingRemote).toBe(0)
    expect(b.stats().buffered).toBe(0)
    net.pump()
    expect(ca.opened).toBe(true)
  })

  it("lets onRemoteOpen open the channel synchronously", () => {
    const net = new Net()
    const events: Array<string> = []
    let bMux: Protomux | null = null
    const [a, b] = net.pair("a", "b", {
      b: {
        onRemoteOpen: (protocol) => {
          bMux!.openChannel({ protocol, onopen: () => events.push("b open"), messages: [{ onmessage: (p) => events.push(`b m ${toHex(p)}`) }] })
        }
      }
    })
    bMux = b
    const ca = a.openChannel({ protocol: "auto", onopen: () => events.push("a open") })!
    ca.send(0, utf8("x"))
    net.pump()
    expect(events).toEqual(["b open", `b m ${strHex("x")}`, "a open"])
  })

  it("rejects a remote open nobody takes; the opener's channel closes and its id is reused", () => {
    const net = new Net()
    const [a, b] = net.pair("a", "b")
    const ra = recorder()
    const ca = a.openChannel({ protocol: "nobody", ...ra.spec })!
    net.pump()
    expect(net.since()).toEqual([`a>b 000101${"06" + strHex("nobody")}00`, "b>a 000201"])
    expect(ca.closed).toBe(true)
    expect(ra.events).toEqual(["close remote=true"])
    expect(b.stats().rejectedRemote).toBe(1)
    const again = a.openChannel({ protocol: "nobody" })!
    expect(again.localId).toBe(1)
    // b treats the reused id as a fresh open (no protocol violation)
    net.pump()
    expect(b.destroyed).toBe(false)
  })

  it("mux.reject refuses pending remote opens", () => {
    const net = new Net()
    const [a, b] = net.pair("a", "b", { b: { onRemoteOpen: () => true } })
    const ca = a.openChannel({ protocol: "q" })!
    net.pump()
    expect(b.reject("q")).toBe(1)
    net.pump()
    expect(ca.closed).toBe(true)
    expect(net.since().at(-1)).toBe("b>a 000201")
  })

  it("decodes batch frames with control entries and channel switches", () => {
    const { mux, out, errors } = lone()
    const r = recorder()
    mux.openChannel({ protocol: "b", ...r.spec })
    // batch: on channel 0 an open (peer id 1), then switch to channel 1: two messages
    const batch = batchFrame([openFrame(1, "b", null), messageFrame(1, 0, utf8("A")), messageFrame(1, 1, utf8("BC"))])
    const bytes = enc(batch)
    expect(bytes).toBe(`000000` + `05` + `0101${"01" + strHex("b")}00` + `0001` + `02` + `00${strHex("A")}` + `03` + `01${strHex("BC")}`)
    mux.onMessage(hex(bytes))
    expect(errors).toEqual([])
    expect(r.events).toEqual(["open 1/1 hs=", `m0 ${strHex("A")}`, `m1 ${strHex("BC")}`])
    // a nested batch: a channel-0 entry of type 0 holding a batch for channel 1
    mux.onMessage(hex(`000000` + `05` + `00` + `01` + `02` + `00${strHex("D")}`))
    expect(r.events.slice(3)).toEqual([`m0 ${strHex("D")}`])
    // an entry length running past the end is clamped to the frame (as the reference)
    mux.onMessage(hex(`000001` + `09` + `01${strHex("FG")}`))
    expect(r.events.at(-1)).toBe(`m1 ${strHex("FG")}`)
    expect(out.length).toBe(1) // only our own open frame
  })

  it("cork/uncork sends one batch frame; a multi-entry batch gets a batched reply", () => {
    const net = new Net()
    const [a, b] = net.pair("a", "b", {
      b: { onRemoteOpen: (p) => void bRef!.openChannel({ protocol: p, messages: [{ onmessage: (x, ch) => ch.send(0, x) }] }) }
    })
    const bRef: Protomux | null = b
    const got: Array<string> = []
    a.cork()
    const ca = a.openChannel({ protocol: "echo", messages: [{ onmessage: (p) => got.push(toHex(p)) }] })!
    ca.send(0, utf8("1"))
    ca.send(0, utf8("2"))
    a.uncork()
    expect(net.since()).toEqual([`a>b 000000` + `08` + `0101${"04" + strHex("echo")}00` + `0001` + `02` + `00${strHex("1")}` + `02` + `00${strHex("2")}`])
    net.pump()
    // b answered the batch (its open + two echoes) with one batch frame
    expect(net.since(1)).toEqual([`b>a 000000` + `08` + `0101${"04" + strHex("echo")}00` + `0001` + `02` + `00${strHex("1")}` + `02` + `00${strHex("2")}`])
    expect(got).toEqual([strHex("1"), strHex("2")])
    expect(ca.opened).toBe(true)
  })

  it("counts and ignores empty frames, unknown channels, unknown control types", () => {
    const { mux, out, errors } = lone()
    mux.onMessage(new Uint8Array(0))
    mux.onMessage(hex("0500aa")) // message on a channel the peer never opened
    mux.onMessage(hex("0009ffff")) // control type 9
    mux.onMessage(hex("000300")) // close of channel 0
    mux.onMessage(hex("000305")) // close of an unknown channel
    expect(errors).toEqual([])
    expect(mux.destroyed).toBe(false)
    expect(mux.stats().ignored).toBe(4)
    expect(out).toEqual([])
  })

  it("an open on channel 0 is refused with a reject", () => {
    const { mux, out, errors } = lone()
    mux.onMessage(hex(`000100${"01" + strHex("x")}00`))
    expect(out).toEqual(["000200"])
    expect(errors).toEqual([])
  })

  const fatal: ReadonlyArray<[string, string, string]> = [
    ["truncated open", "0001", "Malformed"],
    ["open with a string running past the end", `000101${"09" + strHex("abc")}`, "Malformed"],
    ["uint lead byte without its bytes", "ff", "Malformed"],
    ["batch entry that does not decode", "0000000301", "Malformed"],
    ["open that skips remote ids", `000105${"01" + strHex("p")}00`, "InvalidOpen"],
    ["reject for a channel we never opened", "000207", "InvalidReject"]
  ]
  for (const [name, frame, reason] of fatal) {
    it(`fails the mux on a protocol violation: ${name}`, () => {
      const { mux, errors } = lone()
      const closed: Array<boolean> = []
      mux.openChannel({ protocol: "victim", onclose: (isRemote) => closed.push(isRemote) })
      expect(() => mux.onMessage(hex(frame))).not.toThrow()
      expect(errors.map((e) => e.reason)).toEqual([reason])
      expect(errors[0]!._tag).toBe("ProtomuxError")
      expect(mux.destroyed).toBe(true)
      expect(mux.error).toBe(errors[0])
      expect(closed).toEqual([true])
      const s = mux.stats()
      expect(s.malformed + s.violations).toBe(1)
      // later input is ignored; opening is refused
      expect(() => mux.onMessage(hex("0100"))).not.toThrow()
      expect(mux.openChannel({ protocol: "x" })).toBeNull()
    })
  }

  it("fails on a second open for a remote id in use", () => {
    const { mux, errors } = lone({ onRemoteOpen: () => true })
    mux.onMessage(hex(`000101${"01" + strHex("p")}00`))
    mux.onMessage(hex(`000101${"01" + strHex("q")}00`))
    expect(errors.map((e) => e.reason)).toEqual(["InvalidOpen"])
  })

  it("rejects a pending remote channel whose buffer overflows, and opens beyond the pending cap", () => {
    const { mux, out } = lone({ onRemoteOpen: () => true, maxPendingRemoteOpens: 2 })
    mux.onMessage(hex(`000101${"01" + strHex("p")}00`))
    mux.onMessage(hex(`000102${"01" + strHex("q")}00`))
    mux.onMessage(hex(`000103${"01" + strHex("r")}00`)) // third pending: over the cap
    expect(out).toEqual(["000203"])
    const big = new Uint8Array(MAX_BUFFERED - 600)
    mux.onMessage(new Uint8Array([1, 0, ...big]))
    expect(mux.stats().buffered).toBe(512 + big.length)
    mux.onMessage(hex("0100ffff")) // would exceed: channel 1 rejected, its buffer dropped
    expect(out).toEqual(["000203", "000201"])
    expect(mux.stats().buffered).toBe(0)
    expect(mux.stats().pendingRemote).toBe(1)
    expect(mux.stats().rejectedRemote).toBe(2)
    // the rejected channel's id may be opened again
    mux.onMessage(hex(`000101${"01" + strHex("p")}00`))
    expect(mux.destroyed).toBe(false)
  })

  it("a close for a pending remote channel drops it and rejects it", () => {
    const { mux, out } = lone({ onRemoteOpen: () => true })
    mux.onMessage(hex(`000101${"01" + strHex("p")}00`))
    mux.onMessage(hex("0100aa"))
    mux.onMessage(hex("000301"))
    expect(out).toEqual(["000201"])
    expect(mux.stats()).toMatchObject({ pendingRemote: 0, buffered: 0 })
    // opening locally now waits for a fresh remote open
    const ch = mux.openChannel({ protocol: "p" })!
    expect(ch.opened).toBe(false)
  })

  it("a local channel closed before the peer's open frees its id when the open arrives", () => {
    const { mux, out } = lone()
    const ch = mux.openChannel({ protocol: "p" })!
    ch.close()
    expect(out).toEqual([`000101${"01" + strHex("p")}00`, "000301"])
    // id 1 is still reserved: a new channel gets 2
    expect(mux.openChannel({ protocol: "other" })!.localId).toBe(2)
    mux.onMessage(hex(`000101${"01" + strHex("p")}00`))
    expect(mux.openChannel({ protocol: "third" })!.localId).toBe(1)
  })

  it("a throwing callback fails the mux instead of throwing", () => {
    const { mux, errors } = lone({ onRemoteOpen: () => true })
    mux.openChannel({
      protocol: "p",
      messages: [
        {
          onmessage: () => {
            throw new Error("boom")
          }
        }
      ]
    })
    mux.onMessage(hex(`000101${"01" + strHex("p")}00`))
    expect(() => mux.onMessage(hex("0100"))).not.toThrow()
    expect(errors.map((e) => e.reason)).toEqual(["CallbackFailed"])
  })

  it("send refuses bad arguments and a destroyed mux; destroy closes every channel as remote", () => {
    const { mux } = lone()
    const closed: Array<boolean> = []
    const ch = mux.openChannel({ protocol: "p", onclose: (r) => closed.push(r) })!
    expect(ch.send(-1, utf8("x"))).toBe(false)
    expect(ch.send(0, "x" as unknown as Uint8Array)).toBe(false)
    expect(mux.openChannel({ protocol: 5 as unknown as string })).toBeNull()
    mux.destroy()
    expect(closed).toEqual([true])
    expect(ch.send(0, utf8("x"))).toBe(false)
    expect(mux.error).toBeNull()
  })
})

// ---------------------------------------------------------------------------
// blind-relay: the reference flow, byte-exact
// ---------------------------------------------------------------------------

/** The relay with two peers: initiator and responder, each with its own connection (mux pair). */
const relayWorld = (opts: { ids?: readonly [number, number]; server?: Partial<ConstructorParameters<typeof BlindRelayServer>[0]> } = {}) => {
  const clock = { t: 0 }
  const now = () => clock.t
  const net = new Net()
  const created: Array<string> = []
  const released: Array<string> = []
  const server = new BlindRelayServer<string>({
    now,
    createStreams: (t, responder, initiator) => {
      created.push(`${toHex(t).slice(0, 8)} r=${responder.session.info}:${responder.remoteId} i=${initiator.session.info}:${initiator.remoteId}`)
      return opts.ids ?? [0x1000, 0x1001]
    },
    releaseStreams: (ids) => released.push(ids.join(",")),
    ...opts.server
  })
  const [relayI, initiatorMux] = net.pair("relayServer(session of initiator)", "initiatorPeer")
  const [relayR, responderMux] = net.pair("relayServer(session of responder)", "responderPeer")
  return { clock, now, net, server, created, released, relayI, relayR, initiatorMux, responderMux }
}

const clientEvents = () => {
  const paired: Array<RelayPairing> = []
  const aborted: Array<[string, boolean, RelayAborted]> = []
  return {
    paired,
    aborted,
    events: {
      onPaired: (p: RelayPairing) => paired.push(p),
      onAborted: (t: Uint8Array, i: boolean, e: RelayAborted) => aborted.push([toHex(t), i, e])
    }
  }
}

describe("blind-relay: client and relay server", () => {
  it("reproduces the reference frames (vector blindRelay) and pairs both peers", () => {
    const w = relayWorld()
    const si = w.server.accept(w.relayI, { id: RELAY_PK, info: "I" })!
    const sr = w.server.accept(w.relayR, { id: RELAY_PK, info: "R" })!
    const ei = clientEvents()
    const er = clientEvents()
    const ci = new BlindRelayClient(w.initiatorMux, { now: w.now, id: RELAY_PK, events: ei.events })
    const cr = new BlindRelayClient(w.responderMux, { now: w.now, id: RELAY_PK, events: er.events })
    ok(ci.pair(true, TOKEN, BR.initiatorRawStreamId))
    ok(cr.pair(false, TOKEN, BR.responderRawStreamId))
    w.net.pump()
    // the vector names the relay side of both connections "relayServer" as a receiver
    const named = w.net.log.map((e) => ({ ...e, to: e.to.startsWith("relayServer") ? "relayServer" : e.to }))
    expect(named).toEqual(BR.frames.map((f: LogEntry) => ({ from: f.from, to: f.to, hex: f.hex })))
    expect(w.created).toEqual([`99999999 r=R:${BR.responderRawStreamId} i=I:${BR.initiatorRawStreamId}`])
    expect(er.paired).toEqual([{ isInitiator: false, token: TOKEN, localStreamId: BR.responderRawStreamId, remoteId: BR.pairResults[0].remoteId }])
    expect(ei.paired).toEqual([{ isInitiator: true, token: TOKEN, localStreamId: BR.initiatorRawStreamId, remoteId: BR.pairResults[1].remoteId }])
    expect(ci.pending + cr.pending).toBe(0)
    expect(ci.opened && cr.opened && si.opened && sr.opened).toBe(true)
    expect(si.activePairs + sr.activePairs).toBe(2)
    expect(w.server.stats()).toMatchObject({
      sessions: { accepted: 2, opened: 2, closed: 0, active: 2 },
      pairings: { requested: 2, matched: 1, cancelled: 0, pending: 0, active: 1 },
      streams: { opened: 2, closed: 0, active: 2 }
    })
    // the other pair order (responder first) gives the same answers
    const w2 = relayWorld()
    w2.server.accept(w2.relayI, { id: RELAY_PK, info: "I" })
    w2.server.accept(w2.relayR, { id: RELAY_PK, info: "R" })
    const e2i = clientEvents()
    const c2r = new BlindRelayClient(w2.responderMux, { now: w2.now, id: RELAY_PK })
    const c2i = new BlindRelayClient(w2.initiatorMux, { now: w2.now, id: RELAY_PK, events: e2i.events })
    ok(c2r.pair(false, TOKEN, BR.responderRawStreamId))
    w2.net.pump()
    ok(c2i.pair(true, TOKEN, BR.initiatorRawStreamId))
    w2.net.pump()
    expect(e2i.paired.map((p) => p.remoteId)).toEqual([0x1001])
    expect(w2.net.log.slice(-2).map((e) => e.hex)).toEqual([BR.frames[6].hex, BR.frames[7].hex])
  })

  it("client: the pair request and unpair are byte-exact; unpair cancels without an event", () => {
    const { mux, out } = lone()
    const e = clientEvents()
    const c = new BlindRelayClient(mux, { now: () => 0, id: RELAY_PK, events: e.events })
    ok(c.pair(true, TOKEN, 0xaaaa))
    expect(out).toEqual([BR.frames[2].hex, BR.frames[4].hex])
    expect(ok(c.unpair(TOKEN))).toBe(true)
    expect(out[2]).toBe("0101" + BR.messageEncodings.unpair)
    expect(c.pending).toBe(0)
    expect(e.aborted).toEqual([])
    // unpair without a waiting pairing still tells the relay (to drop an active pair)
    expect(ok(c.unpair(TOKEN))).toBe(false)
    expect(out.length).toBe(4)
    expect(c.stats()).toMatchObject({ requested: 1, cancelled: 1 })
  })

  it("client: answers with another token or the other isInitiator are ignored", () => {
    const { mux } = lone()
    const e = clientEvents()
    const c = new BlindRelayClient(mux, { now: () => 0, id: RELAY_PK, events: e.events })
    ok(c.pair(true, TOKEN, 7))
    mux.onMessage(hex(`000101${"0b" + strHex("blind-relay")}20${BR.relayPublicKey}`))
    mux.onMessage(hex("0100" + toHex(pairBody(false, TOKEN, 5))))
    mux.onMessage(hex("0100" + toHex(pairBody(true, token(1), 5))))
    mux.onMessage(hex("0100" + "01" + "99".repeat(10))) // malformed
    expect(e.paired).toEqual([])
    expect(c.stats()).toMatchObject({ ignoredAnswers: 2, malformed: 1 })
    mux.onMessage(hex("0100" + toHex(pairBody(true, TOKEN, 5))))
    expect(e.paired.map((p) => p.remoteId)).toEqual([5])
    // a second answer for the same token is ignored
    mux.onMessage(hex("0100" + toHex(pairBody(true, TOKEN, 6))))
    expect(e.paired.length).toBe(1)
    expect(mux.destroyed).toBe(false)
  })

  it("client: pairing times out after 15 s with RELAY_ABORTED", () => {
    const { mux } = lone()
    const e = clientEvents()
    let t = 1000
    const c = new BlindRelayClient(mux, { now: () => t, id: RELAY_PK, events: e.events })
    expect(c.nextDeadline()).toBe(Infinity)
    ok(c.pair(false, TOKEN, 1))
    t = 3000
    ok(c.pair(true, token(2), 2))
    expect(c.nextDeadline()).toBe(1000 + PAIRING_TIMEOUT)
    c.onTimers(1000 + PAIRING_TIMEOUT - 1)
    expect(e.aborted).toEqual([])
    c.onTimers(1000 + PAIRING_TIMEOUT)
    expect(e.aborted.length).toBe(1)
    const [tk, isInitiator, err] = e.aborted[0]!
    expect(tk).toBe(BR.token)
    expect(isInitiator).toBe(false)
    expect(err).toBeInstanceOf(RelayAborted)
    expect(err._tag).toBe("RelayAborted")
    expect(err.code).toBe("RELAY_ABORTED")
    expect(err.reason).toBe("Timeout")
    expect(c.nextDeadline()).toBe(3000 + PAIRING_TIMEOUT)
    c.onTimers(1e9)
    expect(e.aborted.length).toBe(2)
    expect(c.nextDeadline()).toBe(Infinity)
    // the token may be used again
    ok(c.pair(false, TOKEN, 1))
  })

  it("client: API misuse is returned as BlindRelayError", () => {
    const { mux } = lone()
    const c = new BlindRelayClient(mux, { now: () => 0 })
    ok(c.pair(true, TOKEN, 1))
    const dup = c.pair(true, TOKEN, 2)
    expect(Result.isFailure(dup) && dup.failure.code).toBe("ALREADY_PAIRING")
    const bad: Array<Result.Result<unknown, { readonly _tag: string; readonly code: string }>> = [
      c.pair(true, new Uint8Array(31), 1),
      c.pair(true, TOKEN, -1),
      c.pair(true, TOKEN, 2 ** 32),
      c.pair("yes" as unknown as boolean, token(3), 1),
      c.unpair(new Uint8Array(3))
    ]
    for (const r of bad) {
      expect(Result.isFailure(r) && r.failure._tag === "BlindRelayError" && r.failure.code).toBe("INVALID_ARGUMENT")
    }
    // a second client on the same mux cannot open its channel
    const c2 = new BlindRelayClient(mux, { now: () => 0 })
    expect(c2.closed).toBe(true)
    const r = c2.pair(true, token(4), 1)
    expect(Result.isFailure(r) && r.failure.code).toBe("CHANNEL_CLOSED")
  })

  it("client: a closed or rejected channel aborts waiting pairings", () => {
    // closed by the relay
    {
      const { mux } = lone()
      const e = clientEvents()
      let closed = 0
      const c = new BlindRelayClient(mux, { now: () => 0, id: RELAY_PK, events: { ...e.events, onClose: () => closed++ } })
      ok(c.pair(true, TOKEN, 1))
      mux.onMessage(hex(`000101${"0b" + strHex("blind-relay")}20${BR.relayPublicKey}`))
      mux.onMessage(hex("000301"))
      expect(e.aborted.map(([, , err]) => err.reason)).toEqual(["ChannelClosed"])
      expect(closed).toBe(1)
      expect(c.closed).toBe(true)
      const r = c.pair(true, token(5), 1)
      expect(Result.isFailure(r) && r.failure.code).toBe("CHANNEL_CLOSED")
    }
    // rejected (the peer does not speak blind-relay)
    {
      const { mux } = lone()
      const e = clientEvents()
      const c = new BlindRelayClient(mux, { now: () => 0, id: RELAY_PK, events: e.events })
      ok(c.pair(false, TOKEN, 1))
      mux.onMessage(hex("000201"))
      expect(e.aborted.map(([, , err]) => err.reason)).toEqual(["ChannelClosed"])
      expect(c.closed).toBe(true)
    }
    // destroyed by us
    {
      const { mux, out } = lone()
      const e = clientEvents()
      const c = new BlindRelayClient(mux, { now: () => 0, events: e.events })
      ok(c.pair(false, TOKEN, 1))
      c.destroy()
      expect(e.aborted.map(([, , err]) => err.reason)).toEqual(["Destroyed"])
      expect(out.at(-1)).toBe("000301")
    }
  })

  it("client: end() closes the channel once the last pairing is answered", () => {
    const { mux, out } = lone()
    const c = new BlindRelayClient(mux, { now: () => 0 })
    ok(c.pair(true, TOKEN, 1))
    c.end()
    expect(c.closed).toBe(false)
    expect(Result.isFailure(c.pair(true, token(8), 1))).toBe(true)
    mux.onMessage(hex(`000101${"0b" + strHex("blind-relay")}00`))
    mux.onMessage(hex("0100" + toHex(pairBody(true, TOKEN, 9))))
    expect(c.closed).toBe(true)
    expect(out.at(-1)).toBe("000301")
  })
})

// ---------------------------------------------------------------------------
// Relay server: matching rules and abuse limits
// ---------------------------------------------------------------------------

/** A relay server with sessions fed frames directly (no client core). */
const relayBench = (options: Partial<ConstructorParameters<typeof BlindRelayServer<number>>[0]> = {}) => {
  const clock = { t: 0 }
  let next = 0x100
  const created: Array<[number, number, number, number]> = []
  const released: Array<string> = []
  const server = new BlindRelayServer<number>({
    now: () => clock.t,
    createStreams: (_t, r: RelayLinkEnd<number>, i: RelayLinkEnd<number>) => {
      created.push([r.session.info!, r.remoteId, i.session.info!, i.remoteId])
      const ids = [next, next + 1] as const
      next += 2
      return ids
    },
    releaseStreams: (ids) => released.push(ids.join(",")),
    ...options
  })
  const sessions: Array<{ mux: Protomux; out: Array<string>; session: BlindRelaySession<number> }> = []
  const session = () => {
    const l = lone()
    const s = server.accept(l.mux, { info: sessions.length })!
    l.mux.onMessage(hex(`000101${"0b" + strHex("blind-relay")}00`))
    const entry = { mux: l.mux, out: l.out, session: s }
    sessions.push(entry)
    return {
      ...entry,
      pair: (isInitiator: boolean, t: Uint8Array, id: number) => l.mux.onMessage(new Uint8Array([1, 0, ...pairBody(isInitiator, t, id)])),
      unpair: (t: Uint8Array) => l.mux.onMessage(new Uint8Array([1, 1, ...encodeOrThrow(unpairCodec, { token: t })])),
      close: () => l.mux.onMessage(hex("000301")),
      /** Pair answers sent to this session, as [isInitiator, token byte, id]. */
      answers: () =>
        l.out
          .filter((h) => h.startsWith("0100"))
          .map((h) => {
            const b = hex(h)
            return [b[2] === 1, b[3]!, Number(new DataView(b.buffer, b.byteOffset).getUint8(35)) === 0xfd ? b[36]! | (b[37]! << 8) : b[35]!]
          })
    }
  }
  return { clock, server, created, released, session }
}

describe("blind-relay server: matching and limits", () => {
  it("matches by token across sessions; other tokens and same-side duplicates do not match", () => {
    const r = relayBench()
    const a = r.session()
    const b = r.session()
    a.pair(true, token(1), 11)
    b.pair(true, token(2), 22) // another token
    b.pair(true, token(1), 23) // same token, same side: duplicate
    expect(r.created).toEqual([])
    expect(r.server.stats().rejected.duplicate).toBe(1)
    expect(r.server.stats().pairings.pending).toBe(2)
    b.pair(false, token(1), 24)
    expect(r.created).toEqual([[1, 24, 0, 11]])
    expect(a.answers()).toEqual([[true, 1, 0x101]])
    expect(b.answers()).toEqual([[false, 1, 0x100]])
    expect(r.server.stats().pairings).toMatchObject({ pending: 1, matched: 1, active: 1 })
    // the active token cannot be paired again
    a.pair(true, token(1), 12)
    expect(r.server.stats().rejected.activeToken).toBe(1)
    // both halves from the same session are allowed (as the reference)
    a.pair(true, token(3), 1)
    a.pair(false, token(3), 2)
    expect(r.created.at(-1)).toEqual([0, 2, 0, 1])
  })

  it("unpair cancels a waiting pair (any holder of the token) or releases an active one", () => {
    const r = relayBench()
    const a = r.session()
    const b = r.session()
    a.pair(true, token(1), 1)
    b.unpair(token(1))
    expect(r.server.stats().pairings).toMatchObject({ pending: 0, cancelled: 1 })
    expect(a.session.pendingPairs).toBe(0)
    // the cancelled token is spent: the late other half does not start a new wait
    b.pair(false, token(1), 2)
    expect(r.server.stats().rejected.replayedToken).toBe(1)
    expect(r.server.stats().pairings.pending).toBe(0)
    b.pair(false, token(4), 2) // starts a new waiting pair
    expect(r.created).toEqual([])
    a.pair(true, token(4), 1)
    expect(r.created.length).toBe(1)
    // an unpair from a session that is not in the pair does nothing
    const c = r.session()
    c.unpair(token(4))
    expect(r.released).toEqual([])
    b.unpair(token(4))
    expect(r.released).toEqual(["256,257"])
    expect(r.server.stats()).toMatchObject({ pairings: { active: 0, cancelled: 2 }, streams: { opened: 2, closed: 2, active: 0 } })
    expect(a.session.activePairs + b.session.activePairs).toBe(0)
  })

  it("session close drops its waiting pairs and releases its active pairs", () => {
    const r = relayBench()
    const a = r.session()
    const b = r.session()
    a.pair(true, token(1), 1)
    b.pair(false, token(1), 2)
    a.pair(true, token(2), 3)
    a.close()
    expect(a.session.closed).toBe(true)
    expect(r.released).toEqual(["256,257"])
    expect(b.session.activePairs).toBe(0)
    expect(r.server.stats()).toMatchObject({
      sessions: { accepted: 2, closed: 1, active: 1 },
      pairings: { pending: 0, active: 0, cancelled: 1 }
    })
    // b's late half for token 2 just waits (no partner any more)
    b.pair(false, token(2), 4)
    expect(r.created.length).toBe(1)
  })

  it("streamClosed releases the pair; destroy / end close the session", () => {
    const r = relayBench()
    const a = r.session()
    const b = r.session()
    a.pair(true, token(1), 1)
    b.pair(false, token(1), 2)
    r.server.streamClosed(0x101)
    expect(r.released).toEqual(["256,257"])
    r.server.streamClosed(0x101) // once
    expect(r.released.length).toBe(1)
    a.pair(true, token(4), 1)
    a.session.end()
    expect(a.session.closed).toBe(false) // waits for its pending pair
    b.pair(false, token(4), 2)
    expect(a.session.closed).toBe(true)
    expect(a.out.at(-1)).toBe("000301")
    b.session.destroy()
    expect(b.session.closed).toBe(true)
    expect(r.server.stats().sessions.active).toBe(0)
  })

  it("limit: pending pairs per session", () => {
    const r = relayBench()
    const a = r.session()
    for (let i = 0; i < MAX_PENDING_PAIRS_PER_SESSION + 3; i++) a.pair(true, token(i), i)
    expect(a.session.pendingPairs).toBe(MAX_PENDING_PAIRS_PER_SESSION)
    expect(r.server.stats().rejected.pendingPerSession).toBe(3)
    // joining someone else's pair is not limited by it
    const b = r.session()
    b.pair(false, token(0), 99)
    expect(r.created.length).toBe(1)
    expect(a.session.pendingPairs).toBe(MAX_PENDING_PAIRS_PER_SESSION - 1)
  })

  it("limit: pending pairs across sessions", () => {
    const r = relayBench({ maxPendingTotal: 3 })
    const ss = [r.session(), r.session(), r.session(), r.session()]
    ss.forEach((s, i) => s.pair(true, token(i), i))
    expect(r.server.stats().pairings.pending).toBe(3)
    expect(r.server.stats().rejected.pendingTotal).toBe(1)
    // completing one frees room
    r.session().pair(false, token(0), 50)
    ss[3]!.pair(true, token(3), 3)
    expect(r.server.stats().pairings.pending).toBe(3)
    expect(r.server.stats().rejected.pendingTotal).toBe(1)
  })

  it("limit: active pairs per session", () => {
    const r = relayBench({ maxActivePerSession: 2 })
    const a = r.session()
    const b = r.session()
    for (let i = 0; i < 3; i++) {
      a.pair(true, token(i), i)
      b.pair(false, token(i), 10 + i)
    }
    expect(r.created.length).toBe(2)
    expect(r.server.stats().rejected.activePerSession).toBe(2) // a's and b's third requests
    // a waiting half whose session filled up meanwhile is dropped at match time
    const c = r.session()
    const d = r.session()
    c.pair(true, token(7), 1)
    c.pair(true, token(8), 2)
    const e = r.session()
    e.pair(false, token(8), 3)
    d.pair(false, token(9), 4)
    expect(c.session.activePairs).toBe(1)
    // now fill c up with another pair, then let token 7's partner arrive
    c.pair(true, token(9), 5) // matches d's token 9: c has 2 active
    expect(c.session.activePairs).toBe(2)
    const n = r.created.length
    r.session().pair(false, token(7), 6)
    expect(r.created.length).toBe(n)
    expect(r.server.stats().rejected.activePerSession).toBe(3)
    expect(r.server.stats().pairings.pending).toBe(0)
  })

  it("limit: a half pair expires after the pairing timeout", () => {
    const r = relayBench()
    const a = r.session()
    r.clock.t = 500
    a.pair(true, token(1), 1)
    r.clock.t = 2000
    a.pair(true, token(2), 2)
    expect(r.server.nextDeadline()).toBe(500 + PAIRING_TIMEOUT)
    r.server.onTimers(500 + PAIRING_TIMEOUT - 1)
    expect(r.server.stats().pairings.pending).toBe(2)
    r.server.onTimers(500 + PAIRING_TIMEOUT)
    expect(r.server.stats().pairings).toMatchObject({ pending: 1, expired: 1 })
    expect(a.session.pendingPairs).toBe(1)
    expect(r.server.nextDeadline()).toBe(2000 + PAIRING_TIMEOUT)
    // the late partner of the expired half starts a new wait instead of matching
    r.session().pair(false, token(1), 9)
    expect(r.created).toEqual([])
  })

  it("cap: a token whose pair ended (released, cancelled or expired) is never paired again", () => {
    const r = relayBench()
    const a = r.session()
    const b = r.session()
    a.pair(true, token(1), 1)
    b.pair(false, token(1), 2)
    expect(r.created.length).toBe(1)
    a.unpair(token(1))
    expect(r.server.stats().pairings.active).toBe(0)
    // the same token again, from either side or a new session: refused
    a.pair(true, token(1), 3)
    b.pair(false, token(1), 4)
    r.session().pair(true, token(1), 5)
    expect(r.created.length).toBe(1)
    expect(r.server.stats().rejected.replayedToken).toBe(3)
    // a cancelled waiting half and an expired one burn their token too
    a.pair(true, token(2), 6)
    a.unpair(token(2))
    a.pair(true, token(3), 7)
    r.server.onTimers(PAIRING_TIMEOUT)
    b.pair(false, token(2), 8)
    b.pair(false, token(3), 9)
    expect(r.server.stats().rejected.replayedToken).toBe(5)
    expect(r.server.stats().pairings.pending).toBe(0)
  })

  it("cap: a matched pair ends at its lifetime, and the owner is asked to tell both peers", () => {
    const released: Array<[string, boolean]> = []
    const r = relayBench({ maxPairLifetime: 10_000, releaseStreams: (ids, abort) => released.push([ids.join(","), abort]) })
    const a = r.session()
    const b = r.session()
    r.clock.t = 100
    a.pair(true, token(1), 1)
    b.pair(false, token(1), 2)
    r.clock.t = 5000
    a.pair(true, token(2), 3)
    b.pair(false, token(2), 4)
    expect(r.server.nextDeadline()).toBe(10_100)
    r.server.onTimers(10_099)
    expect(r.server.stats().pairings.active).toBe(2)
    r.server.onTimers(10_100)
    expect(released).toEqual([["256,257", true]])
    expect(r.server.stats().pairings).toMatchObject({ active: 1, lifetimeEnded: 1 })
    expect(a.session.activePairs).toBe(1)
    expect(r.server.nextDeadline()).toBe(15_000)
    // a pair that ends otherwise is released without the abort
    b.unpair(token(2))
    expect(released.at(-1)).toEqual(["258,259", false])
    expect(r.server.nextDeadline()).toBe(Infinity)
  })

  it("cap: sessions at once", () => {
    const r = relayBench({ maxSessions: 2 })
    const a = r.session()
    r.session()
    expect(r.server.accept(lone().mux)).toBeNull()
    expect(r.server.stats().rejected.sessions).toBe(1)
    a.close()
    expect(r.server.accept(lone().mux)).not.toBeNull()
  })

  it("createStreams failing (null, throwing, bad or reused ids) drops the pair", () => {
    let mode = 0
    const r = relayBench({
      createStreams: () => {
        if (mode === 0) return null
        if (mode === 1) throw new Error("no sockets")
        if (mode === 2) return [5, 5] as const
        return [1, 2] as const
      }
    })
    const a = r.session()
    const b = r.session()
    for (mode = 0; mode < 4; mode++) {
      a.pair(true, token(mode), 1)
      b.pair(false, token(mode), 2)
    }
    // mode 3 succeeded with [1, 2]; a fifth pair reusing those ids fails
    a.pair(true, token(9), 1)
    b.pair(false, token(9), 2)
    expect(r.server.stats().rejected.createFailed).toBe(4)
    expect(r.server.stats().hookErrors).toBe(1)
    expect(r.server.stats().pairings.active).toBe(1)
    expect(a.answers().length).toBe(1)
  })

  it("malformed pair / unpair messages are counted and dropped; the session stays up", () => {
    const r = relayBench()
    const a = r.session()
    a.mux.onMessage(hex("0100" + "01" + "99".repeat(31)))
    a.mux.onMessage(hex("0101" + "00"))
    a.mux.onMessage(new Uint8Array([1, 0, ...pairBody(true, token(1), 0).subarray(0, 33), 0xff, 0, 0, 0, 0, 0, 0, 0x20, 0, 0]))
    expect(r.server.stats().rejected.malformed).toBe(3)
    expect(a.session.closed).toBe(false)
    expect(a.mux.destroyed).toBe(false)
    a.pair(true, token(1), 1)
    expect(r.server.stats().pairings.pending).toBe(1)
  })

  it("a session accepted after its client's open and pair arrived (held by the mux) is answered", () => {
    const r = relayBench()
    const a = r.session()
    a.pair(true, token(1), 11)
    const l = lone({ onRemoteOpen: () => true })
    l.mux.onMessage(hex(`000101${"0b" + strHex("blind-relay")}00`))
    l.mux.onMessage(new Uint8Array([1, 0, ...pairBody(false, token(1), 22)]))
    expect(r.created).toEqual([])
    const s = r.server.accept(l.mux, { info: 7 })!
    expect(s.opened).toBe(true)
    expect(r.created).toEqual([[7, 22, 0, 11]])
    // our open, then the answer on our channel 1
    expect(l.out).toEqual([`000101${"0b" + strHex("blind-relay")}00`, "0100" + toHex(pairBody(false, token(1), 0x100))])
    expect(r.server.stats().sessions).toMatchObject({ accepted: 2, opened: 2 })
  })

  it("accept fails on a destroyed mux or a second session on one mux; close() ends everything", () => {
    const r = relayBench()
    const l = lone()
    expect(r.server.accept(l.mux)).not.toBeNull()
    expect(r.server.accept(l.mux)).toBeNull()
    const d = lone()
    d.mux.destroy()
    expect(r.server.accept(d.mux)).toBeNull()
    const a = r.session()
    a.pair(true, token(1), 1)
    r.server.close()
    expect(r.server.sessions()).toEqual([])
    expect(r.server.stats().pairings.pending).toBe(0)
    expect(l.out.at(-1)).toBe("000301")
  })
})

// ---------------------------------------------------------------------------
// UDX relaying (udx.md §9)
// ---------------------------------------------------------------------------

describe("UdxRelay: relaying on the datagram path", () => {
  const P = V.udxPackets
  const A = { host: "10.0.0.1", port: 1111 }
  const B = { host: "10.0.0.2", port: 2222 }
  const withId = (h: string, id: number): Uint8Array => {
    const b = hex(h)
    new DataView(b.buffer, b.byteOffset).setUint32(4, id, true)
    return b
  }

  const setup = () => {
    const sent: Array<[string, string, string]> = []
    const closed: Array<number> = []
    const relay = new UdxRelay<string>({
      send: (socket, to, d) => sent.push([socket, `${to.host}:${to.port}`, toHex(d)]),
      onClose: (id) => closed.push(id)
    })
    // A's stream is 0x11111111, B's 0x22222222; relay stream 0x1001 serves A, 0x1000 serves B
    expect(relay.link({ id: 0x1001, remoteId: 0x11111111 }, { id: 0x1000, remoteId: 0x22222222 })).toBe(true)
    return { relay, sent, closed }
  }

  it("connects each relay stream to its first sender and forwards with the id rewritten", () => {
    const { relay, sent } = setup()
    // A's first DATA (addressed to its relay stream): B not seen yet, dropped
    expect(relay.handle("s1", { from: A, data: withId(P.dataHello.hex, 0x1001) })).toBe(true)
    expect(sent).toEqual([])
    expect(relay.stats()).toMatchObject({ forwarded: 0, unconnected: 1, firewallConnects: 1 })
    // B's ACK goes to A with A's own stream id: the captured packet, verbatim
    expect(relay.handle("s1", { from: B, data: withId(P.pureAck.hex, 0x1000) })).toBe(true)
    expect(sent).toEqual([["s1", "10.0.0.1:1111", P.pureAck.hex]])
    // A's retransmission now reaches B, byte for byte as captured
    relay.handle("s1", { from: A, data: withId(P.dataHello.hex, 0x1001) })
    relay.handle("s1", { from: A, data: withId(P.message.hex, 0x1001) })
    expect(sent.slice(1)).toEqual([
      ["s1", "10.0.0.2:2222", P.dataHello.hex],
      ["s1", "10.0.0.2:2222", P.message.hex]
    ])
    expect(relay.get(0x1001)).toMatchObject({ remote: A, socket: "s1", packets: 3, highestSeq: 1, relayTo: 0x1000 })
    expect(relay.stats().forwarded).toBe(3)
  })

  it("a packet on another socket re-points the stream; one from another address on the same socket does not", () => {
    const { relay, sent } = setup()
    relay.handle("s1", { from: B, data: withId(P.pureAck.hex, 0x1000) })
    relay.handle("s1", { from: A, data: withId(P.dataHello.hex, 0x1001) })
    relay.handle("s2", { from: { host: "10.0.0.9", port: 9 }, data: withId(P.pureAck.hex, 0x1000) })
    expect(relay.get(0x1000)).toMatchObject({ socket: "s2", remote: { host: "10.0.0.9", port: 9 } })
    relay.handle("s1", { from: A, data: withId(P.dataHello.hex, 0x1001) })
    expect(sent.at(-1)).toEqual(["s2", "10.0.0.9:9", P.dataHello.hex])
    relay.handle("s2", { from: B, data: withId(P.pureAck.hex, 0x1000) })
    expect(relay.get(0x1000)!.remote).toEqual({ host: "10.0.0.9", port: 9 })
  })

  it("a DESTROY is forwarded, then closes both relay streams; destroy() is silent", () => {
    const { relay, sent, closed } = setup()
    relay.handle("s", { from: A, data: withId(P.dataHello.hex, 0x1001) })
    relay.handle("s", { from: B, data: withId(P.pureAck.hex, 0x1000) })
    relay.handle("s", { from: B, data: withId(P.destroy.hex, 0x1000) })
    expect(sent.at(-1)![2]).toBe(toHex(withId(P.destroy.hex, 0x11111111)))
    expect(closed).toEqual([0x1000, 0x1001])
    expect(relay.stats()).toMatchObject({ streams: 0, destroyedByPeer: 1 })
    // later packets for those ids are not ours any more
    expect(relay.handle("s", { from: A, data: withId(P.dataHello.hex, 0x1001) })).toBe(false)

    const s2 = setup()
    s2.relay.handle("s", { from: A, data: withId(P.dataHello.hex, 0x1001) })
    s2.relay.destroy(0x1001)
    expect(s2.closed).toEqual([0x1001, 0x1000])
    expect(s2.sent).toEqual([])
  })

  it("a byte meter caps what one peer sends through the relay; DESTROY is never charged", () => {
    const sent: Array<string> = []
    const clock = { t: 0 }
    const relay = new UdxRelay<string>({ send: (_s, to) => sent.push(`${to.host}:${to.port}`), now: () => clock.t })
    const meter = new ByteMeter(3000)
    relay.link({ id: 0x1001, remoteId: 0x11111111, meter }, { id: 0x1000, remoteId: 0x22222222 })
    relay.handle("s", { from: B, data: withId(P.pureAck.hex, 0x1000) })
    const big = new Uint8Array(1000)
    big.set(withId(P.dataHello.hex, 0x1001).subarray(0, 20))
    for (let i = 0; i < 5; i++) relay.handle("s", { from: A, data: big })
    // a second's budget: 3 packets of 1000 bytes pass, 2 are dropped
    expect(sent.filter((d) => d === "10.0.0.2:2222").length).toBe(3)
    expect(relay.stats().rateLimited).toBe(2)
    expect(meter.dropped).toBe(2)
    // B is not metered
    for (let i = 0; i < 5; i++) relay.handle("s", { from: B, data: withId(P.pureAck.hex, 0x1000) })
    expect(relay.stats().rateLimited).toBe(2)
    // half a second refills half the budget
    clock.t = 500
    relay.handle("s", { from: A, data: big })
    relay.handle("s", { from: A, data: big })
    expect(relay.stats().rateLimited).toBe(3)
    relay.handle("s", { from: A, data: withId(P.destroy.hex, 0x1001) })
    expect(relay.stats()).toMatchObject({ rateLimited: 3, streams: 0 })
  })

  it("abort() sends each peer a DESTROY past what its partner sent, then closes both streams", () => {
    const { relay, sent, closed } = setup()
    relay.handle("s1", { from: A, data: withId(P.dataHello.hex, 0x1001) })
    relay.handle("s2", { from: B, data: withId(P.pureAck.hex, 0x1000) })
    sent.length = 0
    relay.abort(0x1001)
    const seqA = relay.get(0x1001)
    expect(seqA).toBeUndefined()
    expect(sent.length).toBe(2)
    const [toB, toA] = [sent.find((x) => x[1] === "10.0.0.2:2222")!, sent.find((x) => x[1] === "10.0.0.1:1111")!]
    const view = (h: string) => new DataView(hex(h).buffer)
    // to A over A's socket: A's stream id, type DESTROY, seq past B's highest
    expect(toA[0]).toBe("s1")
    expect(hex(toA[2]).subarray(0, 4)).toEqual(new Uint8Array([0xff, 1, 0x10, 0]))
    expect(view(toA[2]).getUint32(4, true)).toBe(0x11111111)
    expect(view(toB[2]).getUint32(4, true)).toBe(0x22222222)
    // A sent seq 0 (dataHello): B's DESTROY is seq 1
    expect(view(toB[2]).getUint32(12, true)).toBe(1)
    expect(closed.sort()).toEqual([0x1000, 0x1001])
    expect(relay.stats().aborted).toBe(1)
  })

  it("leaves non-UDX datagrams and unknown ids to the next handler; refuses bad links", () => {
    const { relay } = setup()
    for (const h of ["", "00", "ff01000000000000", "ff0201001001000000004000000000000000000000", P.dataHello.hex]) {
      expect(relay.handle("s", { from: A, data: hex(h) })).toBe(false)
    }
    expect(relay.link({ id: 0x1000, remoteId: 1 }, { id: 5, remoteId: 2 })).toBe(false)
    expect(relay.link({ id: 5, remoteId: 1 }, { id: 5, remoteId: 2 })).toBe(false)
    expect(relay.link({ id: -1, remoteId: 1 }, { id: 6, remoteId: 2 })).toBe(false)
    expect(relay.stats().streams).toBe(2)
  })

  it("backs a BlindRelayServer: pairing links relay streams, a DESTROY releases the pair", () => {
    let server: BlindRelayServer | null = null
    const relay = new UdxRelay<string>({ send: () => {}, onClose: (id) => server!.streamClosed(id) })
    const ids = [0x1000, 0x1000, 0x2000, 0x3000]
    server = new BlindRelayServer({ now: () => 0, ...udxRelayHooks<undefined, string>(relay, () => ids.shift() ?? 1) })
    const net = new Net()
    const [r1, p1] = net.pair("relay", "p1")
    const [r2, p2] = net.pair("relay", "p2")
    server.accept(r1)
    server.accept(r2)
    const e1 = clientEvents()
    const e2 = clientEvents()
    ok(new BlindRelayClient(p1, { now: () => 0, events: e1.events }).pair(true, TOKEN, 0xaaaa))
    ok(new BlindRelayClient(p2, { now: () => 0, events: e2.events }).pair(false, TOKEN, 0xbbbb))
    net.pump()
    // the duplicate candidate id was skipped
    expect(e2.paired[0]!.remoteId).toBe(0x1000)
    expect(e1.paired[0]!.remoteId).toBe(0x2000)
    expect(relay.get(0x1000)).toMatchObject({ remoteId: 0xbbbb, relayTo: 0x2000 })
    expect(relay.get(0x2000)).toMatchObject({ remoteId: 0xaaaa, relayTo: 0x1000 })
    relay.handle("s", { from: A, data: withId(P.destroy.hex, 0x2000) })
    expect(server.stats().pairings.active).toBe(0)
    expect(relay.stats().streams).toBe(0)
  })
})
