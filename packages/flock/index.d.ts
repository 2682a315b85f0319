export * from "@omegajs/gateway/flock"
export { default } from "@omegajs/gateway/flock"
