/**
 * Signature checks on worker threads (src/layers/crypto/verify-pool.ts):
 * the workers answer exactly as libsodium does (sodium-native as the
 * oracle), every check completes once and asynchronously, nothing is lost
 * before the workers are ready or after the pool closes, and a node on real
 * UDP whose writes are checked by workers stores valid writes and refuses
 * forged ones.
 */
import sodium from "sodium-native"
import { afterEach, describe, expect, it } from "vitest"
import { Gateway } from "../src/index.js"
import { makeFast } from "../src/layers/crypto/fast.js"
import { makeVerifyPool, sharedVerifyPool } from "../src/layers/crypto/verify-pool.js"
import { decode, encode, uint } from "../src/protocol/encoding.js"
import * as R from "../src/protocol/records.js"
import { Result } from "effect"
import { seededRandom } from "../src/util/random.js"
import { HOST, onFreePort, sleep, tracker, withTimeout } from "./support/live.js"

const { track, destroyAll } = tracker()
afterEach(destroyAll)

const buf = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength)
const nativeVerify = (sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean =>
  sig.length === 64 && pk.length === 32 && sodium.crypto_sign_verify_detached(buf(sig), buf(msg), buf(pk))

/** Little-endian 2^252 + 27742317777372353535851937790883648493 (the group order L). */
const L = Uint8Array.from(Buffer.from("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010", "hex"))
const addL = (s: Uint8Array): Uint8Array => {
  const out = new Uint8Array(32)
  let carry = 0
  for (let i = 0; i < 32; i++) {
    const x = s[i]! + L[i]! + carry
    out[i] = x & 0xff
    carry = x >> 8
  }
  return out
}
/** Small-order and non-canonical public keys libsodium refuses. */
const BAD_KEYS = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
].map((h) => Uint8Array.from(Buffer.from(h, "hex")))

const check = (pool: ReturnType<typeof makeVerifyPool>, sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): Promise<boolean> =>
  new Promise((resolve) => pool.verify(sig, msg, pk, resolve))

/**
 * Start workers until `n` are ready: the first check starts the first worker
 * (and is answered locally); then a pair of checks at once starts each next
 * one (the second check finds the ready worker busy with the first).
 */
const waitReady = async (pool: ReturnType<typeof makeVerifyPool>, n: number): Promise<void> => {
  const z = () => check(pool, new Uint8Array(64), new Uint8Array(1), new Uint8Array(32))
  await z()
  for (let i = 0; i < 400 && pool.stats.ready < n; i++) {
    if (pool.stats.ready >= 1 && i % 4 === 0) await Promise.all([z(), z()])
    await sleep(25)
  }
  expect(pool.stats.ready).toBe(n)
}

/** The fast Crypto with a fresh key pair and its signature over `msg`. */
const signed = async (msg: Uint8Array) => {
  const c = await makeFast()
  const kp = c.keyPair()!
  return { c, kp, msg, sig: c.sign(msg, kp.secretKey)! }
}

/** Wait (without adding checks) until `n` workers are ready. */
const untilReady = async (pool: ReturnType<typeof makeVerifyPool>, n: number): Promise<void> => {
  for (let i = 0; i < 400 && pool.stats.ready < n; i++) await sleep(25)
  expect(pool.stats.ready).toBe(n)
}

describe("verify pool", () => {
  it("idle workers keep nothing alive: after their checks, the pool adds no resource that holds the process open", async () => {
    const { c, kp, msg, sig } = await signed(Uint8Array.from([4, 5, 6]))
    const holding = () => process.getActiveResourcesInfo().filter((r) => r === "MessagePort" || r === "Worker").length
    const before = holding() // first test of the file: no earlier pool is winding down
    const pool = makeVerifyPool(2, c.verify)
    try {
      await waitReady(pool, 2)
      const onWorkers = pool.stats.workers
      expect(await Promise.all([check(pool, sig, msg, kp.publicKey), check(pool, sig, msg, kp.publicKey)])).toEqual([true, true])
      expect(pool.stats.workers - onWorkers).toBe(2)
      // (a 'message' listener added after unref() used to ref each worker's port again,
      // so a process whose node had checked a signed write never exited)
      expect(holding()).toBe(before)
    } finally {
      pool.close()
    }
  })

  it("workers answer as libsodium does: valid, mutated, small-order keys, non-canonical S", async () => {
    const c = await makeFast()
    const pool = makeVerifyPool(2, c.verify)
    try {
      await waitReady(pool, 2)
      const { workers: workers0, local: local0 } = pool.stats
      const rand = seededRandom(77)
      const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(rand() * 256))
      const cases: Array<{ sig: Uint8Array; msg: Uint8Array; pk: Uint8Array }> = []
      for (let i = 0; i < 60; i++) {
        const kp = c.keyPair(bytes(32))!
        const msg = bytes(1 + (i % 90))
        const sig = c.sign(msg, kp.secretKey)!
        cases.push({ sig, msg, pk: kp.publicKey })
        const flipped = sig.slice()
        flipped[i % 64]! ^= 1 << (i % 8)
        cases.push({ sig: flipped, msg, pk: kp.publicKey })
        const msg2 = msg.slice()
        msg2[0]! ^= 0x80
        cases.push({ sig, msg: msg2, pk: kp.publicKey })
        const nonCanonical = sig.slice()
        nonCanonical.set(addL(sig.subarray(32)), 32)
        cases.push({ sig: nonCanonical, msg, pk: kp.publicKey })
        cases.push({ sig, msg, pk: BAD_KEYS[i % BAD_KEYS.length]! })
      }
      const got = await Promise.all(cases.map((x) => check(pool, x.sig, x.msg, x.pk)))
      const want = cases.map((x) => nativeVerify(x.sig, x.msg, x.pk))
      expect(got).toEqual(want)
      expect(want.filter(Boolean).length).toBe(60) // exactly the untouched signatures hold
      expect(pool.stats.workers - workers0).toBe(cases.length) // all of them checked on the workers
      expect(pool.stats.local - local0).toBe(0)
    } finally {
      pool.close()
    }
  })

  it("workers start on demand: a check at a time keeps one worker; checks arriving while it is busy start the next", async () => {
    const { c, kp, msg, sig } = await signed(Uint8Array.from([7, 8, 9]))
    const pool = makeVerifyPool(2, c.verify)
    try {
      expect(pool.stats.ready).toBe(0) // nothing started before the first check
      await check(pool, sig, msg, kp.publicKey)
      await untilReady(pool, 1)
      for (let i = 0; i < 20; i++) expect(await check(pool, sig, msg, kp.publicKey)).toBe(true)
      await sleep(300) // time enough for a second worker to load, had one been started
      expect(pool.stats.ready).toBe(1)
      // a burst: the first check keeps the ready worker busy, the next ones start the second
      expect(await Promise.all(Array.from({ length: 10 }, () => check(pool, sig, msg, kp.publicKey)))).toEqual(Array(10).fill(true))
      await untilReady(pool, 2)
    } finally {
      pool.close()
    }
  })

  it("each check completes once and never synchronously; before ready and after close they run locally", async () => {
    const { c, kp, msg, sig } = await signed(Uint8Array.from([1, 2, 3]))
    const pool = makeVerifyPool(1, c.verify)
    const calls: Array<boolean> = []
    pool.verify(sig, msg, kp.publicKey, (ok) => calls.push(ok)) // before the worker is ready
    pool.verify(sig, Uint8Array.from([9]), kp.publicKey, (ok) => calls.push(ok))
    pool.verify(sig.subarray(1), msg, kp.publicKey, (ok) => calls.push(ok)) // malformed: local
    expect(calls).toEqual([]) // nothing completed inside verify()
    await waitReady(pool, 1)
    expect(calls).toEqual([true, false, false])
    expect(pool.stats.local).toBe(4) // the three, and waitReady's
    expect(await check(pool, sig, msg, kp.publicKey)).toBe(true)
    expect(pool.stats.workers).toBe(1)
    // close with checks in flight: they complete (locally), once
    const pending = Array.from({ length: 10 }, () => check(pool, sig, msg, kp.publicKey))
    pool.close()
    expect(await withTimeout(Promise.all(pending), 5_000, "pending checks")).toEqual(Array(10).fill(true))
    expect(await check(pool, sig, msg, kp.publicKey)).toBe(true)
    expect(pool.stats.workers + pool.stats.local).toBe(16)
  })

  it("a node whose write checks run on workers stores valid writes and refuses forged ones", async () => {
    const boot = await onFreePort("bootstrapper", (port) => Gateway.bootstrapper(port, HOST, { host: HOST, verifyWorkers: 2 }), track)
    const node = track(new Gateway({ bootstrap: [`${HOST}:${boot.port}`], host: HOST, ephemeral: false, firewalled: false, verifyWorkers: 2 }))
    const client = track(new Gateway({ bootstrap: [`${HOST}:${boot.port}`], host: HOST }))
    for (const g of [node, client]) g.on("error", () => {})
    await withTimeout(Promise.all([node.ready(), client.ready()]), 20_000, "nodes ready")
    const to = { host: HOST, port: node.address()!.port }
    const crypto = await makeFast()
    const kp = crypto.keyPair()!
    const target = crypto.blake2b(kp.publicKey)
    // a token from the node
    const got = await client.request({ command: R.Command.MUTABLE_GET, target, value: Result.getOrThrow(encode(uint, 0)) }, to)
    expect(got.token).not.toBeNull()
    const put = (seq: number, value: Uint8Array, signature: Uint8Array) =>
      client.request({ token: got.token, command: R.Command.MUTABLE_PUT, target, value: Result.getOrThrow(encode(R.mutablePutRequest, { publicKey: kp.publicKey, seq, value, signature })) }, to, { retry: false }).then(
        (r) => `error ${r.error}`,
        (e: { code?: string }) => String(e.code)
      )
    const value = Uint8Array.from(Buffer.from("checked on a worker"))
    const signature = crypto.sign(Result.getOrThrow(R.mutableSignable64(crypto.blake2b, 1, value)), kp.secretKey)!
    const forged = signature.slice()
    forged[5]! ^= 1
    // the nodes' shared pool, once its workers are up
    const shared = sharedVerifyPool(2, crypto.verify)
    await waitReady(shared, 2)
    const before = shared.stats.workers
    // forged: no answer and nothing stored; valid: stored and answered
    expect(await put(1, value, forged)).toBe("REQUEST_TIMEOUT")
    expect(await put(1, value, signature)).toBe("error 0")
    const read = await client.request({ command: R.Command.MUTABLE_GET, target, value: Result.getOrThrow(encode(uint, 0)) }, to)
    const stored = decode(R.mutableGetResponse, read.value!)
    expect(Result.isSuccess(stored) && Buffer.from(stored.success.value).toString()).toBe("checked on a worker")
    expect(shared.stats.workers - before).toBe(2) // both checks ran on a worker
    const store = (node as unknown as { handle: { hyperdht: { store(): { stats: { rejected: number; mutablePuts: number } } | null } } }).handle.hyperdht.store()
    expect(store?.stats.rejected).toBe(1)
    expect(store?.stats.mutablePuts).toBe(1)
  })
})
