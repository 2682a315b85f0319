import type { CryptoImpl } from "../../src/layers/crypto/types.js"
import { makeFast } from "../../src/layers/crypto/fast.js"
import { noble } from "../../src/layers/crypto/noble.js"

/** Every Crypto implementation; each must pass the same vectors. */
export const cryptoImpls = async (): Promise<ReadonlyArray<CryptoImpl>> => [noble, await makeFast()]
