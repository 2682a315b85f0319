import Flock = require("@omegajs/gateway/flock")
export = Flock
