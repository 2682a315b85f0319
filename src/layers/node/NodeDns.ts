/**
 * Effect's `Dns` service (`effect/net/Dns`) on Node's resolver: `lookup`
 * through `dns.lookup` (the operating system's resolver, hosts file
 * included). The only DNS a node does is resolving the host names of its
 * bootstrap list (`Bootstrap.layer`); tests provide `Dns.layerStatic`
 * instead, so they never ask a real resolver.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Dns from "effect/net/Dns"
import * as NetAddress from "effect/net/NetAddress"
import * as Result from "effect/Result"
import { lookup } from "node:dns/promises"

const reasons: Readonly<Record<string, Dns.DnsErrorReason>> = {
  ENOTFOUND: "NotFound",
  ENODATA: "NotFound",
  ETIMEOUT: "Timeout",
  EAI_AGAIN: "Temporary",
  EAI_FAIL: "Refused",
  ESERVFAIL: "ServerFailure",
  EREFUSED: "Refused",
  ECONNREFUSED: "Refused",
  EBADNAME: "BadName",
  ENONAME: "BadName"
}

const reasonOf = (cause: unknown): Dns.DnsErrorReason => {
  const code = typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : ""
  return reasons[code] ?? "Unknown"
}

export const dns: Dns.Dns["Service"] = Dns.make({
  lookup: (host, family) =>
    Effect.tryPromise({
      try: () => lookup(host, { all: true, family: family === "IPv4" ? 4 : family === "IPv6" ? 6 : 0 }),
      catch: (cause) => new Dns.DnsError({ reason: reasonOf(cause), method: "lookup", hostname: host, cause })
    }).pipe(
      Effect.map((entries) => {
        const out: Array<NetAddress.IpAddress> = []
        for (const e of entries) {
          const ip = NetAddress.ipFromString(e.address)
          if (Result.isSuccess(ip)) out.push(ip.success)
        }
        return out
      })
    )
})

/** `Dns` on Node's resolver. */
export const layer: Layer.Layer<Dns.Dns> = Layer.succeed(Dns.Dns, dns)
