/**
 * hyperdht connection messages (spec: connect.md §3.4, §4.2, §6.1–§6.3;
 * hyperdht-records.md §3.7, §3.8, §3.10, §3.11).
 *
 * - `handshake`        the PEER_HANDSHAKE request/response value
 * - `holepunch`        the PEER_HOLEPUNCH request/response value
 * - `noisePayload`     the plaintext carried inside Noise msg1 / msg2
 * - `holepunchPayload` the plaintext sealed inside `holepunch.payload`
 *
 * Types mirror the shapes used by the reference (and by the vector files):
 * absent optional sections are `null`. Flags are never stored; encoders derive
 * them from which sections are present, decoders ignore unknown bits and
 * trailing bytes (as the reference does).
 */
import {
  type Codec,
  codec,
  type IPv4Address,
  type IPv6Address,
  type Reader,
  type Writer
} from "./encoding.js"

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/** Handshake / holepunch routing modes (connect.md §4.2). */
export const FROM_CLIENT = 0
export const FROM_SERVER = 1
export const FROM_RELAY = 2
export const FROM_SECOND_RELAY = 3
export const REPLY = 4

export const Mode = {
  FROM_CLIENT,
  FROM_SERVER,
  FROM_RELAY,
  FROM_SECOND_RELAY,
  REPLY
} as const

/** Any uint is accepted on the wire; routing code checks for the known values. */
export type Mode = number

/** Firewall classes (connect.md §5.1). */
export const FIREWALL_UNKNOWN = 0
export const FIREWALL_OPEN = 1
export const FIREWALL_CONSISTENT = 2
export const FIREWALL_RANDOM = 3

/** Connect error codes carried in payloads (connect.md §3.4, §6.3). */
export const ERROR_NONE = 0
export const ERROR_ABORTED = 1
export const ERROR_VERSION_MISMATCH = 2
export const ERROR_TRY_LATER = 3

/** The only noisePayload version this implementation speaks. */
export const NOISE_PAYLOAD_VERSION = 1

/** A holepunch probe is exactly one zero byte (connect.md §6.1). */
export const HOLEPUNCH_PROBE: Uint8Array = new Uint8Array([0])

/** On puncher sockets any datagram of length <= 1 counts as a probe; content is not checked. */
export const isHolepunchProbe = (datagram: Uint8Array): boolean => datagram.length <= 1

// ---------------------------------------------------------------------------
// handshake (PEER_HANDSHAKE value)
// ---------------------------------------------------------------------------

export interface Handshake {
  readonly mode: Mode
  /** Noise msg1 or msg2. */
  readonly noise: Uint8Array
  readonly peerAddress: IPv4Address | null
  readonly relayAddress: IPv4Address | null
}

const HS_PEER_ADDRESS = 1
const HS_RELAY_ADDRESS = 2

export const handshake: Codec<Handshake> = codec<Handshake>(
  "handshake",
  (w, m) => {
    const flags = (m.peerAddress ? HS_PEER_ADDRESS : 0) | (m.relayAddress ? HS_RELAY_ADDRESS : 0)
    w.uint(flags)
    w.uint(m.mode)
    w.buffer(m.noise)
    if (m.peerAddress) w.ipv4Address(m.peerAddress)
    if (m.relayAddress) w.ipv4Address(m.relayAddress)
  },
  (r) => {
    const flags = r.uint()
    const mode = r.uint()
    const noise = r.buffer()
    const peerAddress = (flags & HS_PEER_ADDRESS) !== 0 ? r.ipv4Address() : null
    const relayAddress = (flags & HS_RELAY_ADDRESS) !== 0 ? r.ipv4Address() : null
    return { mode, noise, peerAddress, relayAddress }
  }
)

// ---------------------------------------------------------------------------
// holepunch (PEER_HOLEPUNCH value)
// ---------------------------------------------------------------------------

export interface Holepunch {
  readonly mode: Mode
  /** Server holepunch slot id. */
  readonly id: number
  /** SecurePayload box (nonce(24) || secretbox(holepunchPayload)). */
  readonly payload: Uint8Array
  readonly peerAddress: IPv4Address | null
}

const HP_PEER_ADDRESS = 1

export const holepunch: Codec<Holepunch> = codec<Holepunch>(
  "holepunch",
  (w, m) => {
    w.uint(m.peerAddress ? HP_PEER_ADDRESS : 0)
    w.uint(m.mode)
    w.uint(m.id)
    w.buffer(m.payload)
    if (m.peerAddress) w.ipv4Address(m.peerAddress)
  },
  (r) => {
    const flags = r.uint()
    const mode = r.uint()
    const id = r.uint()
    const payload = r.buffer()
    const peerAddress = (flags & HP_PEER_ADDRESS) !== 0 ? r.ipv4Address() : null
    return { mode, id, payload, peerAddress }
  }
)

// ---------------------------------------------------------------------------
// noisePayload
// ---------------------------------------------------------------------------

export interface RelayInfo {
  /** The DHT node that relays for the server. */
  readonly relayAddress: IPv4Address
  /** The server's address as that node saw it. */
  readonly peerAddress: IPv4Address
}

export interface HolepunchInfo {
  /** Server holepunch slot id. */
  readonly id: number
  readonly relays: ReadonlyArray<RelayInfo>
}

export interface UdxInfo {
  /** Written as given (the reference always writes 1); not checked on decode. */
  readonly version: number
  /** `features` bit0. Other feature bits are dropped on decode. */
  readonly reusableSocket: boolean
  /** Sender's UDX stream id. */
  readonly id: number
  readonly seq: number
}

export interface SecretStreamInfo {
  /** Written as given (the reference always writes 1); not checked on decode. */
  readonly version: number
}

export interface RelayThroughInfo {
  readonly version: number
  /** Always 0 in the reference; kept so decode/encode is lossless. */
  readonly flags: number
  /** Blind-relay server public key. */
  readonly publicKey: Uint8Array
  /** Pairing token (32 bytes). */
  readonly token: Uint8Array
}

/**
 * Decoded noisePayload: every key present, in the reference decoder's shape.
 * `addresses4` / `addresses6` are `[]` when absent; `relayAddresses` is `null`
 * when absent and may be `[]` when present but empty.
 */
export interface NoisePayload {
  readonly version: number
  readonly error: number
  readonly firewall: number
  readonly holepunch: HolepunchInfo | null
  readonly addresses4: ReadonlyArray<IPv4Address>
  readonly addresses6: ReadonlyArray<IPv6Address>
  readonly udx: UdxInfo | null
  readonly secretStream: SecretStreamInfo | null
  readonly relayThrough: RelayThroughInfo | null
  readonly relayAddresses: ReadonlyArray<IPv4Address> | null
}

/**
 * What a caller (or a vector file) builds: the reference encoder's input
 * shape. Versions default to 1, relayThrough.flags to 0, missing/null address
 * lists to "absent". Normalise with `makeNoisePayload` before encoding.
 */
export interface NoisePayloadInit {
  readonly version?: number
  readonly error: number
  readonly firewall: number
  readonly holepunch?: HolepunchInfo | null
  readonly addresses4?: ReadonlyArray<IPv4Address> | null
  readonly addresses6?: ReadonlyArray<IPv6Address> | null
  readonly udx?: {
    readonly version?: number
    readonly reusableSocket: boolean
    readonly id: number
    readonly seq: number
  } | null
  readonly secretStream?: { readonly version?: number } | null
  readonly relayThrough?: {
    readonly version?: number
    readonly flags?: number
    readonly publicKey: Uint8Array
    readonly token: Uint8Array
  } | null
  readonly relayAddresses?: ReadonlyArray<IPv4Address> | null
}

const EMPTY_V4: ReadonlyArray<IPv4Address> = Object.freeze([])
const EMPTY_V6: ReadonlyArray<IPv6Address> = Object.freeze([])

/** Fill defaults: the result encodes to exactly the bytes the reference encoder writes for `init`. */
export const makeNoisePayload = (init: NoisePayloadInit): NoisePayload => ({
  version: init.version ?? NOISE_PAYLOAD_VERSION,
  error: init.error,
  firewall: init.firewall,
  holepunch: init.holepunch ?? null,
  addresses4: init.addresses4 ?? EMPTY_V4,
  addresses6: init.addresses6 ?? EMPTY_V6,
  udx: init.udx
    ? { version: init.udx.version ?? 1, reusableSocket: init.udx.reusableSocket, id: init.udx.id, seq: init.udx.seq }
    : null,
  secretStream: init.secretStream ? { version: init.secretStream.version ?? 1 } : null,
  relayThrough: init.relayThrough
    ? {
      version: init.relayThrough.version ?? 1,
      flags: init.relayThrough.flags ?? 0,
      publicKey: init.relayThrough.publicKey,
      token: init.relayThrough.token
    }
    : null,
  relayAddresses: init.relayAddresses ?? null
})

/** What the decoder returns for a payload whose version is not 1. */
const foreignVersion = (version: number): NoisePayload => ({
  version,
  error: 0,
  firewall: 0,
  holepunch: null,
  addresses4: [],
  addresses6: [],
  udx: null,
  secretStream: null,
  relayThrough: null,
  relayAddresses: null
})

const NP_HOLEPUNCH = 1
const NP_ADDRESSES4 = 2
const NP_ADDRESSES6 = 4
const NP_UDX = 8
const NP_SECRET_STREAM = 16
const NP_RELAY_THROUGH = 32
const NP_RELAY_ADDRESSES = 64

const writeRelayInfo = (w: Writer, v: RelayInfo): void => {
  if (v === null || typeof v !== "object") return w.fail("relayInfo", "value is not an object")
  w.ipv4Address(v.relayAddress)
  w.ipv4Address(v.peerAddress)
}

const readRelayInfo = (r: Reader): RelayInfo => {
  const relayAddress = r.ipv4Address()
  const peerAddress = r.ipv4Address()
  return { relayAddress, peerAddress }
}

const writeIPv6Address = (w: Writer, v: IPv6Address): void => w.ipv6Address(v)
const readIPv6Address = (r: Reader): IPv6Address => r.ipv6Address()

const encodeNoisePayload = (w: Writer, m: NoisePayload): void => {
  const version = m.version ?? NOISE_PAYLOAD_VERSION
  if (version !== NOISE_PAYLOAD_VERSION) {
    // A payload of a foreign version carries nothing we know how to lay out;
    // mirror the decoder, which stops right after the version.
    w.uint(version)
    return
  }
  const hasA4 = m.addresses4 != null && m.addresses4.length > 0
  const hasA6 = m.addresses6 != null && m.addresses6.length > 0
  let flags = 0
  if (m.holepunch) flags |= NP_HOLEPUNCH
  if (hasA4) flags |= NP_ADDRESSES4
  if (hasA6) flags |= NP_ADDRESSES6
  if (m.udx) flags |= NP_UDX
  if (m.secretStream) flags |= NP_SECRET_STREAM
  if (m.relayThrough) flags |= NP_RELAY_THROUGH
  if (m.relayAddresses) flags |= NP_RELAY_ADDRESSES

  w.uint(version)
  w.uint(flags)
  w.uint(m.error)
  w.uint(m.firewall)
  if (m.holepunch) {
    w.uint(m.holepunch.id)
    w.array(m.holepunch.relays, writeRelayInfo)
  }
  if (hasA4) w.ipv4AddressArray(m.addresses4)
  if (hasA6) w.array(m.addresses6, writeIPv6Address)
  if (m.udx) {
    w.uint(m.udx.version ?? 1)
    w.uint(m.udx.reusableSocket ? 1 : 0)
    w.uint(m.udx.id)
    w.uint(m.udx.seq)
  }
  if (m.secretStream) w.uint(m.secretStream.version ?? 1)
  if (m.relayThrough) {
    w.uint(m.relayThrough.version ?? 1)
    w.uint(m.relayThrough.flags ?? 0)
    w.fixed32(m.relayThrough.publicKey)
    w.fixed32(m.relayThrough.token)
  }
  if (m.relayAddresses) w.ipv4AddressArray(m.relayAddresses)
}

const decodeNoisePayload = (r: Reader): NoisePayload => {
  const version = r.uint()
  if (version !== NOISE_PAYLOAD_VERSION) return foreignVersion(version)
  const flags = r.uint()
  const error = r.uint()
  const firewall = r.uint()

  let holepunchInfo: HolepunchInfo | null = null
  if ((flags & NP_HOLEPUNCH) !== 0) {
    const id = r.uint()
    const relays = r.array(readRelayInfo, 12)
    holepunchInfo = { id, relays }
  }
  const addresses4 = (flags & NP_ADDRESSES4) !== 0 ? r.ipv4AddressArray() : []
  const addresses6 = (flags & NP_ADDRESSES6) !== 0 ? r.array(readIPv6Address, 18) : []
  let udx: UdxInfo | null = null
  if ((flags & NP_UDX) !== 0) {
    const v = r.uint()
    const features = r.uint()
    const id = r.uint()
    const seq = r.uint()
    udx = { version: v, reusableSocket: (features & 1) !== 0, id, seq }
  }
  const secretStream = (flags & NP_SECRET_STREAM) !== 0 ? { version: r.uint() } : null
  let relayThrough: RelayThroughInfo | null = null
  if ((flags & NP_RELAY_THROUGH) !== 0) {
    const v = r.uint()
    const f = r.uint()
    const publicKey = r.fixed32()
    const token = r.fixed32()
    relayThrough = { version: v, flags: f, publicKey, token }
  }
  const relayAddresses = (flags & NP_RELAY_ADDRESSES) !== 0 ? r.ipv4AddressArray() : null
  return {
    version,
    error,
    firewall,
    holepunch: holepunchInfo,
    addresses4,
    addresses6,
    udx,
    secretStream,
    relayThrough,
    relayAddresses
  }
}

/**
 * noisePayload codec. Encoding a value whose `version` is not 1 writes only
 * the version (mirroring the decoder, which stops there).
 */
export const noisePayload: Codec<NoisePayload> = codec<NoisePayload>("noisePayload", encodeNoisePayload, decodeNoisePayload)

// ---------------------------------------------------------------------------
// holepunchPayload
// ---------------------------------------------------------------------------

export interface HolepunchPayload {
  readonly error: number
  readonly firewall: number
  /** Client's message counter. */
  readonly round: number
  readonly connected: boolean
  readonly punching: boolean
  /** Present (flag set) whenever non-null, even if empty. */
  readonly addresses: ReadonlyArray<IPv4Address> | null
  readonly remoteAddress: IPv4Address | null
  readonly token: Uint8Array | null
  readonly remoteToken: Uint8Array | null
}

const HPP_CONNECTED = 1
const HPP_PUNCHING = 2
const HPP_ADDRESSES = 4
const HPP_REMOTE_ADDRESS = 8
const HPP_TOKEN = 16
const HPP_REMOTE_TOKEN = 32

export const holepunchPayload: Codec<HolepunchPayload> = codec<HolepunchPayload>(
  "holepunchPayload",
  (w, m) => {
    const flags =
      (m.connected ? HPP_CONNECTED : 0) |
      (m.punching ? HPP_PUNCHING : 0) |
      (m.addresses ? HPP_ADDRESSES : 0) |
      (m.remoteAddress ? HPP_REMOTE_ADDRESS : 0) |
      (m.token ? HPP_TOKEN : 0) |
      (m.remoteToken ? HPP_REMOTE_TOKEN : 0)
    w.uint(flags)
    w.uint(m.error)
    w.uint(m.firewall)
    w.uint(m.round)
    if (m.addresses) w.ipv4AddressArray(m.addresses)
    if (m.remoteAddress) w.ipv4Address(m.remoteAddress)
    if (m.token) w.fixed32(m.token)
    if (m.remoteToken) w.fixed32(m.remoteToken)
  },
  (r) => {
    const flags = r.uint()
    const error = r.uint()
    const firewall = r.uint()
    const round = r.uint()
    const addresses = (flags & HPP_ADDRESSES) !== 0 ? r.ipv4AddressArray() : null
    const remoteAddress = (flags & HPP_REMOTE_ADDRESS) !== 0 ? r.ipv4Address() : null
    const token = (flags & HPP_TOKEN) !== 0 ? r.fixed32() : null
    const remoteToken = (flags & HPP_REMOTE_TOKEN) !== 0 ? r.fixed32() : null
    return {
      error,
      firewall,
      round,
      connected: (flags & HPP_CONNECTED) !== 0,
      punching: (flags & HPP_PUNCHING) !== 0,
      addresses,
      remoteAddress,
      token,
      remoteToken
    }
  }
)
