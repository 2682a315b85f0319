// @omegajs/flock: the Flock class and its types, from @omegajs/gateway (one build, one DHT)
export * from "@omegajs/gateway/flock"
export { default } from "@omegajs/gateway/flock"
