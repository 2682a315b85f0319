// @omegajs/flock for require(): the Flock class itself
module.exports = require("@omegajs/gateway/flock")
