// @omegajs/flock/effect: the Flock service (Flock.layer() over the Gateway service) and the Gateway's Effect face
export * from "@omegajs/gateway/effect"
