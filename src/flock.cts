/**
 * The CommonJS Flock entry: `require("@omegajs/flock")` is the Flock class
 * itself, as `require("hyperswarm")` is Hyperswarm. It loads the ES module
 * entry (./flock.ts) with `require()` (Node 20.19 / 22.12 and later), so
 * both entries share one module instance.
 */
import Entry = require("./flock.js")
import Flock = Entry.Flock

export = Flock
