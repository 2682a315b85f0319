export * from "@omegajs/gateway/effect"
