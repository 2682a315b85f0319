/**
 * Supervision of the DHT node's actor (issue 21, item 1): a defect inside a
 * step the actor runs from its mailbox closes the node cleanly. The failure
 * reaches the user as a typed NodeActorFailed ('error' on the facade) and
 * the log; the node does not stay half alive: its sockets close, 'close' is
 * emitted, and later operations fail at once instead of hanging.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Gateway, NodeActorFailed } from "../src/index.js"
import { HOST, onFreePort, tracker, withTimeout } from "./support/live.js"

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any

const net = tracker()
let bootPort = 0

beforeAll(async () => {
  const boot = await onFreePort("omega bootstrapper", (port) => Gateway.bootstrapper(port, HOST, { host: HOST }), net.track)
  bootPort = boot.port
}, 30_000)

afterAll(async () => {
  await net.destroyAll()
}, 30_000)

describe("the DHT node's actor under a defect", () => {
  it("a throwing step in the actor's loop: 'error' with NodeActorFailed, the node closes, later operations fail at once", async () => {
    const node = net.track(new Gateway({ bootstrap: [`${HOST}:${bootPort}`], host: HOST }))
    await withTimeout(node.ready(), 10_000, "ready")
    const errors: Array<unknown> = []
    node.on("error", (e) => errors.push(e))
    const closed = new Promise<void>((resolve) => node.once("close", () => resolve()))
    const handle = (node as Any).handle
    // a step queued while another runs goes through the actor's mailbox loop
    handle.exec(() => {
      handle.exec(() => {
        throw new Error("injected defect")
      })
    })
    await withTimeout(closed, 10_000, "the node closes")
    expect(errors.length).toBe(1)
    expect(errors[0]).toBeInstanceOf(NodeActorFailed)
    expect((errors[0] as NodeActorFailed).message).toContain("injected defect")
    expect((errors[0] as NodeActorFailed).code).toBe("NODE_DESTROYED")
    expect(node.destroyed).toBe(true)
    // nothing half alive: a lookup now fails quickly
    const lookup = node.lookup(new Uint8Array(32).fill(1))
    const outcome = await withTimeout(lookup.finished().then(() => "finished", (e: Any) => `rejected: ${e?.message ?? e}`), 5_000, "lookup after the failure")
    expect(outcome).toMatch(/^rejected: /)
  }, 30_000)
})
