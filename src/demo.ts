/**
 * `npm run demo`: two in-process peers run the HyperDHT Noise IK handshake,
 * open secret streams with the resulting keys and exchange messages; the
 * PEER_HANDSHAKE value that carries message 1 over the DHT is shown too.
 * No network needed.
 */
import * as Result from "effect/Result"
import * as Derive from "./layers/crypto/derive.js"
import { noble } from "./layers/crypto/noble.js"
import * as Noise from "./layers/crypto/noise.js"
import type { CryptoImpl } from "./layers/crypto/types.js"
import * as Connect from "./protocol/connect.js"
import * as Rpc from "./protocol/dht-rpc.js"
import { encode, toHex } from "./protocol/encoding.js"
import * as Records from "./protocol/records.js"

const run = (c: CryptoImpl): void => {
  const server = c.keyPair(new Uint8Array(32).fill(2))!
  const client = c.keyPair(new Uint8Array(32).fill(1))!
  const prologue = Derive.dhtNamespaces(c).PEER_HANDSHAKE
  console.log(`server public key  ${toHex(server.publicKey)}`)
  console.log(`server DHT target  ${toHex(Derive.target(c, server.publicKey))}`)

  const ini = Noise.initiator(c, { staticKeyPair: client, remoteStaticKey: server.publicKey, prologue })
  const res = Noise.responder(c, { staticKeyPair: server, prologue })
  const msg1 = Result.getOrThrow(Noise.writeMessage1(ini, new TextEncoder().encode("hello from the client")))
  const r1 = Result.getOrThrow(Noise.readMessage1(res, msg1))
  const w2 = Result.getOrThrow(Noise.writeMessage2(res, new TextEncoder().encode("hello from the server")))
  const r2 = Result.getOrThrow(Noise.readMessage2(ini, w2.message))
  console.log(`noise msg1 ${msg1.length} bytes, msg2 ${w2.message.length} bytes`)
  // how msg1 travels: a PEER_HANDSHAKE value inside a dht-rpc request to a relay node
  const value = Result.getOrThrow(encode(Connect.handshake, { mode: Connect.FROM_CLIENT, noise: msg1, peerAddress: null, relayAddress: null }))
  const datagram = Result.getOrThrow(Rpc.encodeRequest({
    tid: 0x1234,
    to: { host: "127.0.0.1", port: 49737 },
    id: null,
    token: null,
    internal: false,
    command: Records.Command.PEER_HANDSHAKE,
    target: Derive.target(c, server.publicKey),
    value
  }))
  console.log(`PEER_HANDSHAKE datagram (${datagram.length} bytes): ${toHex(datagram).slice(0, 72)}…`)
  console.log(`server read: "${new TextDecoder().decode(r1.payload)}"; client read: "${new TextDecoder().decode(r2.payload)}"`)
  console.log(`handshake hash     ${toHex(r2.split.handshakeHash).slice(0, 32)}…  (same on both sides: ${toHex(r2.split.handshakeHash) === toHex(w2.split.handshakeHash)})`)

  const push = c.secretstreamInitPush(r2.split.tx)
  const pull = c.secretstreamInitPull(w2.split.rx, push.header)!
  for (const text of ["first message", "second message"]) {
    const ct = c.secretstreamPush(push.state, new TextEncoder().encode(text))
    const pt = c.secretstreamPull(pull, ct)!
    console.log(`secret stream: ${ct.length} bytes on the wire -> "${new TextDecoder().decode(pt.message)}"`)
  }
}

run(noble)
