import { Result } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import * as Derive from "../src/layers/crypto/derive.js"
import * as Noise from "../src/layers/crypto/noise.js"
import type { CryptoImpl } from "../src/layers/crypto/types.js"
import { toHex } from "../src/protocol/encoding.js"
import { cryptoImpls } from "./support/impls.js"
import { hex, loadVectors, utf8 } from "./support/vectors.js"

const C = loadVectors("connect")
const D = loadVectors("dht")
const H = D.hyperdht

let impls: ReadonlyArray<CryptoImpl> = []
beforeAll(async () => {
  impls = await cryptoImpls()
})

const forEachImpl = (name: string, f: (c: CryptoImpl) => void) =>
  it(name, () => {
    expect(impls.length).toBeGreaterThan(0)
    for (const c of impls) {
      try {
        f(c)
      } catch (e) {
        throw new Error(`[${c.name}] ${String((e as Error).message)}`)
      }
    }
  })

const concat = (...parts: Array<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

describe("connect.json crypto vectors", () => {
  forEachImpl("namespaces", (c) => {
    const dht = C.namespaces["hyperswarm/dht"]
    expect(toHex(c.blake2b(utf8("hyperswarm/dht")))).toBe(dht.nameHash)
    const ns = Derive.dhtNamespaces(c)
    expect(toHex(ns.ANNOUNCE)).toBe(dht.ANNOUNCE_4)
    expect(toHex(ns.UNANNOUNCE)).toBe(dht.UNANNOUNCE_5)
    expect(toHex(ns.MUTABLE_PUT)).toBe(dht.MUTABLE_PUT_6)
    expect(toHex(ns.PEER_HANDSHAKE)).toBe(dht.PEER_HANDSHAKE_0)
    expect(toHex(ns.PEER_HOLEPUNCH)).toBe(dht.PEER_HOLEPUNCH_1)
    expect(toHex(ns.PLUGIN)).toBe(dht.PLUGIN_10)
    const ss = C.namespaces["hyperswarm/secret-stream"]
    expect(toHex(c.blake2b(utf8("hyperswarm/secret-stream")))).toBe(ss.nameHash)
    const s = Derive.secretStreamNamespaces(c)
    expect(toHex(s.INITIATOR)).toBe(ss.INITIATOR_0)
    expect(toHex(s.RESPONDER)).toBe(ss.RESPONDER_1)
    expect(toHex(s.SEND)).toBe(ss.SEND_2)
  })

  forEachImpl("keyPairs", (c) => {
    for (const who of ["client", "server", "clientEphemeral", "serverEphemeral"]) {
      const v = C.keyPairs[who]
      const kp = c.keyPair(hex(v.seed))!
      expect(toHex(kp.publicKey)).toBe(v.publicKey)
      expect(toHex(kp.secretKey)).toBe(v.secretKey)
    }
  })

  forEachImpl("target", (c) => {
    expect(toHex(Derive.target(c, hex(C.target.publicKey)))).toBe(C.target.target)
  })

  forEachImpl("ed25519Dh", (c) => {
    const v = C.ed25519Dh
    const local = c.keyPair(hex(v.localSeed))!
    expect(toHex(c.dh(local.secretKey, hex(v.remotePublicKey))!)).toBe(v.sharedSecret)
    const server = c.keyPair(hex(C.keyPairs.server.seed))!
    expect(toHex(c.dh(server.secretKey, local.publicKey)!)).toBe(v.symmetricCheck)
  })

  forEachImpl("noiseIK", (c) => {
    const v = C.noiseIK
    expect(toHex(utf8(Noise.PROTOCOL_NAME))).toBe(v.protocolNameHex)
    const kp = (seed: string) => c.keyPair(hex(seed))!
    const client = kp(C.keyPairs.client.seed)
    const server = kp(C.keyPairs.server.seed)
    const ini = Noise.initiator(c, {
      staticKeyPair: client,
      remoteStaticKey: server.publicKey,
      prologue: hex(v.prologue),
      ephemeralKeyPair: kp(v.initiatorEphemeralSeed)
    })
    const res = Noise.responder(c, { staticKeyPair: server, prologue: hex(v.prologue), ephemeralKeyPair: kp(v.responderEphemeralSeed) })
    const h0 = v.trace[0].h0
    expect(toHex(Noise.handshakeHash(ini))).toBe(v.trace[2].h) // after prologue + responder static
    expect(h0.startsWith(v.protocolNameHex)).toBe(true)

    const m1 = Noise.writeMessage1(ini, hex(v.payload1Plain))
    expect(Result.isSuccess(m1)).toBe(true)
    const msg1 = Result.getOrThrow(m1)
    expect(toHex(msg1)).toBe(v.message1)

    const r1 = Result.getOrThrow(Noise.readMessage1(res, msg1))
    expect(toHex(r1.payload)).toBe(v.payload1Plain)
    expect(toHex(r1.remoteStaticKey)).toBe(v.initiatorStatic)
    // the responder's h after reading msg1 equals the last responder decryptAndHash h of the trace
    expect(toHex(Noise.handshakeHash(res))).toBe(v.trace[14].h)

    const w2 = Result.getOrThrow(Noise.writeMessage2(res, hex(v.payload2Plain)))
    expect(toHex(w2.message)).toBe(v.message2)
    const r2 = Result.getOrThrow(Noise.readMessage2(ini, w2.message))
    expect(toHex(r2.payload)).toBe(v.payload2Plain)

    expect(toHex(r2.split.handshakeHash)).toBe(v.handshakeHash)
    expect(toHex(w2.split.handshakeHash)).toBe(v.handshakeHash)
    expect(toHex(r2.split.tx)).toBe(v.initiatorTx)
    expect(toHex(r2.split.rx)).toBe(v.initiatorRx)
    expect(toHex(w2.split.tx)).toBe(v.responderTx)
    expect(toHex(w2.split.rx)).toBe(v.responderRx)
    expect(toHex(Derive.holepunchSecret(c, r2.split.handshakeHash))).toBe(v.holepunchSecret)
    expect(toHex(Derive.streamId(c, r2.split.handshakeHash, true))).toBe(v.streamIdInitiator)
    expect(toHex(Derive.streamId(c, r2.split.handshakeHash, false))).toBe(v.streamIdResponder)

    // every DH and key in the transcript
    const dhs = v.trace.filter((t: any) => t.op === "mixKey" && t.who === "initiator").map((t: any) => t.dh)
    const cE = kp(v.initiatorEphemeralSeed)
    const sE = kp(v.responderEphemeralSeed)
    expect([
      toHex(c.dh(cE.secretKey, server.publicKey)!),
      toHex(c.dh(client.secretKey, server.publicKey)!),
      toHex(c.dh(cE.secretKey, sE.publicKey)!),
      toHex(c.dh(client.secretKey, sE.publicKey)!)
    ]).toEqual(dhs)
  })

  forEachImpl("noiseIK rejects tampering and bad keys", (c) => {
    const v = C.noiseIK
    const kp = (seed: string) => c.keyPair(hex(seed))!
    const server = kp(C.keyPairs.server.seed)
    const ini = Noise.initiator(c, { staticKeyPair: kp(C.keyPairs.client.seed), remoteStaticKey: server.publicKey, prologue: hex(v.prologue) })
    const msg1 = Result.getOrThrow(Noise.writeMessage1(ini, hex(v.payload1Plain)))
    const bad = msg1.slice()
    bad[bad.length - 1]! ^= 1
    const res = Noise.responder(c, { staticKeyPair: server, prologue: hex(v.prologue) })
    const r = Noise.readMessage1(res, bad)
    expect(Result.isFailure(r) && r.failure.reason).toBe("DecryptFailed")
    // a small-order ephemeral key is rejected like libsodium does
    const small = msg1.slice()
    small.set(hex("0100000000000000000000000000000000000000000000000000000000000000"), 0)
    const r2 = Noise.readMessage1(Noise.responder(c, { staticKeyPair: server, prologue: hex(v.prologue) }), small)
    expect(Result.isFailure(r2) && r2.failure.reason).toBe("InvalidKey")
    const short = Noise.readMessage1(Noise.responder(c, { staticKeyPair: server, prologue: hex(v.prologue) }), msg1.subarray(0, 50))
    expect(Result.isFailure(short) && short.failure.reason).toBe("MessageTooShort")
  })

  forEachImpl("securePayload", (c) => {
    const v = C.securePayload
    const wire = Derive.sealPayload(c, hex(v.holepunchSecret), hex(v.plaintext), hex(v.nonce))
    expect(toHex(wire)).toBe(v.wire)
    expect(toHex(Derive.openPayload(c, hex(v.holepunchSecret), wire)!)).toBe(v.plaintext)
    const tampered = wire.slice()
    tampered[30]! ^= 0x80
    expect(Derive.openPayload(c, hex(v.holepunchSecret), tampered)).toBeNull()
    expect(Derive.openPayload(c, hex(v.holepunchSecret), wire.subarray(0, 40))).toBeNull()
    expect(toHex(Derive.addressToken(c, hex(v.token.localSecret), v.token.host))).toBe(v.token.token)
  })

  forEachImpl("secretstream", (c) => {
    const v = C.secretstream
    const { state, header } = c.secretstreamInitPush(hex(v.key), hex(v.header))
    expect(toHex(header)).toBe(v.header)
    const pull = c.secretstreamInitPull(hex(v.key), hex(v.header))!
    v.messages.forEach((m: any, i: number) => {
      const ct = c.secretstreamPush(state, hex(m.plaintext), m.tag)
      expect(toHex(ct)).toBe(m.ciphertext)
      const p = c.secretstreamPull(pull, ct)!
      expect(toHex(p.message)).toBe(v.pullCheck[i])
      expect(p.tag).toBe(m.tag)
    })
    // tag sequence including REKEY, PUSH, FINAL
    const t = v.tagSequence
    const ts = c.secretstreamInitPush(hex(t.key), hex(t.header)).state
    const tp = c.secretstreamInitPull(hex(t.key), hex(t.header))!
    for (const m of t.messages) {
      const ct = c.secretstreamPush(ts, hex(m.plaintext), m.tag)
      expect(toHex(ct)).toBe(m.ciphertext)
      const p = c.secretstreamPull(tp, ct)!
      expect([toHex(p.message), p.tag]).toEqual([m.plaintext, m.tag])
    }
    // additional data
    const a = v.withAdditionalData
    const as = c.secretstreamInitPush(hex(a.key), hex(a.header)).state
    const ct = c.secretstreamPush(as, hex(a.plaintext), a.tag, hex(a.ad))
    expect(toHex(ct)).toBe(a.ciphertext)
    const ap = c.secretstreamInitPull(hex(a.key), hex(a.header))!
    expect(c.secretstreamPull(ap, ct)).toBeNull() // wrong (missing) AD does not authenticate
    expect(toHex(c.secretstreamPull(ap, ct, hex(a.ad))!.message)).toBe(a.plaintext) // state untouched by the failure
  })

  forEachImpl("secretStreamWire", (c) => {
    const v = C.secretStreamWire
    const hh = hex(v.handshakeHash)
    expect(toHex(Derive.streamId(c, hh, true))).toBe(v.expectedStreamId)
    const header = hex(v.headerFrameParsed.secretstreamHeader)
    const { state } = c.secretstreamInitPush(hex(v.pushKey), header)
    const frame = (body: Uint8Array) => concat(Uint8Array.of(body.length & 0xff, (body.length >> 8) & 0xff, body.length >> 16), body)
    expect(toHex(frame(concat(Derive.streamId(c, hh, true), header)))).toBe(v.headerFrame)
    for (const f of v.frames) {
      expect(toHex(frame(c.secretstreamPush(state, hex(f.plaintext))))).toBe(f.frame)
    }
    // the responder side decodes them (pull key = responder rx = initiator tx)
    const pull = c.secretstreamInitPull(hex(C.noiseIK.responderRx), header)!
    const texts = v.frames.map((f: any) => toHex(c.secretstreamPull(pull, hex(f.frame).subarray(3))!.message))
    expect(texts).toEqual(v.responderDecoded.filter((s: string) => !s.startsWith("message:")))
    // unordered messages
    const u = v.unordered
    const sk = Derive.sendKey(c, hh, true)
    expect(toHex(sk)).toBe(u.sendKeyInitiator)
    expect(toHex(Derive.sendKey(c, hh, false))).toBe(u.recvKeyInitiator)
    const counter = hex(u.initialCounterRandom)
    for (const m of u.messages) {
      for (let i = 0; i < 8; i++) if (++counter[i]! <= 0xff && counter[i] !== 0) break // sodium_increment
      const nonce = concat(counter, new Uint8Array(16))
      const wire = concat(counter, c.secretboxSeal(hex(m.plaintext), nonce, sk))
      expect(toHex(wire)).toBe(m.wire)
      expect(toHex(c.secretboxOpen(wire.subarray(8), nonce, sk)!)).toBe(m.plaintext)
    }
  })
})

describe("dht.json crypto vectors", () => {
  forEachImpl("hyperdht.namespaces", (c) => {
    const v = H.namespaces
    expect(toHex(c.blake2b(utf8(v.rootHashOf)))).toBe(v.root)
    const ns = Derive.dhtNamespaces(c)
    for (const k of ["ANNOUNCE", "UNANNOUNCE", "MUTABLE_PUT", "PEER_HANDSHAKE", "PEER_HOLEPUNCH", "PLUGIN"] as const) {
      expect(toHex(ns[k])).toBe(v[k])
    }
  })

  forEachImpl("hyperdht.keyPairs", (c) => {
    for (const v of H.keyPairs) {
      const kp = c.keyPair(hex(v.seedHex))!
      expect(toHex(kp.publicKey)).toBe(v.publicKey)
      expect(toHex(kp.secretKey)).toBe(v.secretKey)
      expect(toHex(Derive.target(c, kp.publicKey))).toBe(v.targetHashOfPublicKey)
    }
  })

  forEachImpl("hyperdht.hash", (c) => {
    for (const v of H.hash) expect(toHex(c.blake2b(utf8(v.inputUtf8)))).toBe(v.hash)
  })

  forEachImpl("hyperdht.mutable signatures", (c) => {
    const kp = c.keyPair(hex(H.mutable.keyPairSeedHex))!
    const ns = Derive.dhtNamespaces(c)
    for (const v of [H.mutable, H.mutableEmptyValue]) {
      const signable = concat(ns.MUTABLE_PUT, c.blake2b(hex(v.mutableSignableHex)))
      expect(toHex(signable)).toBe(v.signable64Hex)
      const sig = c.sign(signable, kp.secretKey)!
      expect(toHex(sig)).toBe(v.signature)
      expect(c.verify(sig, signable, kp.publicKey)).toBe(true)
    }
    expect(toHex(c.blake2b(hex(H.mutable.mutableSignableHex)))).toBe(H.mutable.mutableSignableHash)
  })

  forEachImpl("hyperdht.announce / unannounce signatures", (c) => {
    const a = H.announce
    const kp = c.keyPair(hex(a.keyPairSeedHex))!
    const ns = Derive.dhtNamespaces(c)
    expect(toHex(c.blake2b(utf8(a.topicIsHashOfUtf8)))).toBe(a.target)
    const inner = [hex(a.target), hex(a.storingNode.id), hex(a.token), hex(a.peerRecordHex)]
    expect(toHex(c.blake2b(inner))).toBe(a.signableHash)
    const signable = concat(ns.ANNOUNCE, c.blake2b(inner))
    expect(toHex(signable)).toBe(a.signable64Hex)
    expect(toHex(c.sign(signable, kp.secretKey)!)).toBe(a.signature)
    expect(a.withBump.signature).toBe(a.signature)
    const withRefresh = [...inner, hex(a.withRefresh.refresh)]
    expect(toHex(c.blake2b(withRefresh))).toBe(a.withRefresh.signableHash)
    expect(toHex(c.sign(concat(ns.ANNOUNCE, c.blake2b(withRefresh)), kp.secretKey)!)).toBe(a.withRefresh.signature)
    const u = H.unannounce
    const uInner = [hex(u.target), hex(u.nodeId), hex(u.token), hex(u.peerRecordHex)]
    expect(toHex(c.blake2b(uInner))).toBe(u.signableHash)
    const uSignable = concat(ns.UNANNOUNCE, c.blake2b(uInner))
    expect(toHex(uSignable)).toBe(u.signable64Hex)
    expect(toHex(c.sign(uSignable, kp.secretKey)!)).toBe(u.signature)
    expect(c.verify(hex(u.signature), uSignable, kp.publicKey)).toBe(true)
    expect(c.verify(hex(u.signature), signable, kp.publicKey)).toBe(false)
  })

  forEachImpl("hyperdht.holepunchPayload sealed", (c) => {
    const v = H.holepunchPayload
    const wire = Derive.sealPayload(c, hex(v.sealed.keyHex), hex(v.plaintextHex), hex(v.sealed.nonceHex))
    expect(toHex(wire)).toBe(v.sealed.wireHex)
    expect(toHex(Derive.openPayload(c, hex(v.sealed.keyHex), wire)!)).toBe(v.plaintextHex)
  })

  forEachImpl("hyperdht.holepunchSecret", (c) => {
    const v = H.holepunchSecret
    expect(toHex(Derive.holepunchSecret(c, hex(v.handshakeHashHex)))).toBe(v.holepunchSecret)
  })

  forEachImpl("hyperdht.securePayloadToken", (c) => {
    const v = H.securePayloadToken
    expect(toHex(Derive.addressToken(c, hex(v.localSecretHex), v.host))).toBe(v.token)
  })
})
