/**
 * The CommonJS entry of `@omegajs/gateway`: `require("@omegajs/gateway")`
 * is the Gateway class itself, as `require("hyperdht")` is HyperDHT:
 *
 *   const GATEWAY = require("@omegajs/gateway")
 *   const node = new GATEWAY()
 *
 * It loads the ES module entry (./index.ts) with `require()`, which Node
 * supports from 20.19 and 22.12 on, so both entries share one module
 * instance: one Gateway class, one set of error classes. The rest of the
 * ES entry is there for CommonJS users too: `require("@omegajs/gateway/effect")`,
 * or the named exports through `import()`.
 */
import Entry = require("./index.js")
import Gateway = Entry.Gateway

export = Gateway
