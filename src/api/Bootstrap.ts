/**
 * A node's bootstrap configuration as a service: the nodes it joins through,
 * resolved before the node starts.
 *
 *   Bootstrap.layer(["127.0.0.1:49737"])   these entries (host names resolved through `Dns`)
 *   Bootstrap.layerDefault                 OMEGA_BOOTSTRAP if set (empty: none), else the public HyperDHT nodes
 *   Bootstrap.none                         no bootstrap list (the first node of a network)
 *
 * Entries are those of hyperdht's `bootstrap` option: "host:port",
 * "suggestedIP@hostname:port", `{ host, port }` or a port on 127.0.0.1. A
 * malformed entry fails the layer with `InvalidArgument`. A host name is
 * looked up through Effect's `Dns` service (`NodeDns.layer` on Node, a
 * static zone in tests); "suggestedIP@hostname" gives the suggested address
 * and, when the name resolves, its address too (the node pings them all when
 * it bootstraps, hyperdht asks the name only when the suggested address is
 * silent). A name that does not resolve is skipped, as dht-rpc skips it.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Dns from "effect/net/Dns"
import * as NetAddress from "effect/net/NetAddress"
import * as Option from "effect/Option"
import type { BootstrapEntry } from "../actors/routing/driver.js"
import { isIPv4 } from "../protocol/encoding.js"
import { checkBootstrap, defaultBootstrap } from "./GatewayService.js"
import type { InvalidArgument } from "./keys.js"

export type { BootstrapEntry }

export interface BootstrapNode {
  readonly host: string
  readonly port: number
}

export interface BootstrapConfig {
  /** The entries as configured. */
  readonly entries: ReadonlyArray<BootstrapEntry>
  /** The IPv4 addresses the node joins through (empty: it starts a network of its own). */
  readonly nodes: ReadonlyArray<BootstrapNode>
}

/** How long one host name may take to resolve before it is skipped. */
const LOOKUP_TIMEOUT_MS = 5000

/** An entry (already checked by `checkBootstrap`) as host and port. */
const split = (entry: BootstrapEntry): BootstrapNode => {
  if (typeof entry === "number") return { host: "127.0.0.1", port: entry }
  if (typeof entry === "object") return { host: entry.host, port: entry.port }
  const i = entry.lastIndexOf(":")
  return { host: entry.slice(0, i), port: Number(entry.slice(i + 1)) }
}

/** The IPv4 addresses of `name`, none when it does not resolve. */
const lookupIPv4 = (dns: Dns.Dns["Service"], name: string): Effect.Effect<ReadonlyArray<string>> =>
  dns.lookup(name, { family: "IPv4" }).pipe(
    Effect.map((addresses) => addresses.map(NetAddress.formatIp)),
    Effect.timeoutOption(LOOKUP_TIMEOUT_MS),
    Effect.map(Option.getOrElse((): ReadonlyArray<string> => [])),
    Effect.orElseSucceed((): ReadonlyArray<string> => [])
  )

/** Resolve checked entries to IPv4 addresses, in order, without duplicates. */
const resolve = (entries: ReadonlyArray<BootstrapEntry>): Effect.Effect<ReadonlyArray<BootstrapNode>, never, Dns.Dns> =>
  Effect.gen(function*() {
    const out: Array<BootstrapNode> = []
    const add = (host: string, port: number): void => {
      if (!out.some((n) => n.host === host && n.port === port)) out.push({ host, port })
    }
    let dns: Dns.Dns["Service"] | null = null
    for (const entry of entries) {
      const { host, port } = split(entry)
      const at = host.indexOf("@")
      const suggested = at === -1 ? null : host.slice(0, at)
      const name = at === -1 ? host : host.slice(at + 1)
      if (suggested !== null) add(suggested, port)
      if (isIPv4(name)) {
        add(name, port)
        continue
      }
      dns ??= yield* Dns.Dns
      for (const address of yield* lookupIPv4(dns, name)) add(address, port)
    }
    return out
  })

export class Bootstrap extends Context.Service<Bootstrap, BootstrapConfig>()("omega/Bootstrap") {
  /** Check and resolve `entries`: a malformed entry is an `InvalidArgument`. */
  static readonly make = (entries: ReadonlyArray<BootstrapEntry>): Effect.Effect<BootstrapConfig, InvalidArgument, Dns.Dns> =>
    Effect.suspend(() => {
      const bad = checkBootstrap(entries)
      if (bad !== null) return Effect.fail(bad)
      return Effect.map(resolve(entries), (nodes) => ({ entries, nodes }))
    })

  /** These bootstrap entries. */
  static readonly layer = (entries: ReadonlyArray<BootstrapEntry>): Layer.Layer<Bootstrap, InvalidArgument, Dns.Dns> =>
    Layer.effect(Bootstrap, Bootstrap.make(entries))

  /**
   * The library's default list, `defaultBootstrap()`: `OMEGA_BOOTSTRAP` from
   * the environment when set (comma-separated entries; empty: none), else
   * hyperdht's public bootstrap nodes. Read when the layer is built.
   */
  static readonly layerDefault: Layer.Layer<Bootstrap, InvalidArgument, Dns.Dns> = Layer.effect(
    Bootstrap,
    Effect.suspend(() => Bootstrap.make(defaultBootstrap()))
  )

  /** No bootstrap list: the node waits to be contacted (the first node of a network). */
  static readonly none: Layer.Layer<Bootstrap> = Layer.succeed(Bootstrap, { entries: [], nodes: [] })
}
