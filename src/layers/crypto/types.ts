/**
 * The Crypto service shape. Every function is synchronous and pure (apart from
 * `randomBytes`): crypto sits on hot paths, so callers fetch the service once
 * (`yield* Crypto`) and then call plain functions.
 *
 * Failures the peer can cause (a bad signature, an invalid point, a forged
 * ciphertext) return `false` / `null` here; the protocol modules above turn
 * them into tagged errors. Arguments of the wrong size are programming errors
 * of our own code and are also answered with `null`/`false`, never a throw.
 */

export interface KeyPair {
  /** 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  /** 64 bytes: 32-byte seed followed by the public key (libsodium layout). */
  readonly secretKey: Uint8Array
}

/** crypto_secretstream_xchacha20poly1305 state: key (32) and nonce = counter(4, LE) || inonce(8). Mutated in place. */
export interface SecretStreamState {
  readonly k: Uint8Array
  readonly nonce: Uint8Array
}

export const SECRETSTREAM_TAG_MESSAGE = 0
export const SECRETSTREAM_TAG_PUSH = 1
export const SECRETSTREAM_TAG_REKEY = 2
export const SECRETSTREAM_TAG_FINAL = 3
export const SECRETSTREAM_HEADERBYTES = 24
export const SECRETSTREAM_ABYTES = 17

export interface SecretStreamPull {
  readonly message: Uint8Array
  readonly tag: number
}

export interface CryptoImpl {
  /** Implementation name, shown by benchmarks ("noble", "fast"). */
  readonly name: string

  randomBytes(n: number): Uint8Array

  /**
   * BLAKE2b (libsodium crypto_generichash). `input` may be a list of parts,
   * hashed as one stream (generichash_batch). `outLen` 16..64, `key` 0..64 bytes.
   */
  blake2b(input: Uint8Array | ReadonlyArray<Uint8Array>, outLen?: number, key?: Uint8Array): Uint8Array

  sha512(input: Uint8Array): Uint8Array

  /** crypto_sign_seed_keypair (random seed when omitted). Returns null for a seed that is not 32 bytes. */
  keyPair(seed?: Uint8Array): KeyPair | null

  /** crypto_sign_detached with a 64-byte libsodium secret key. Null on a malformed key. */
  sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array | null

  /** crypto_sign_verify_detached, with libsodium's rejections (non-canonical S, small-order R or A, non-canonical A). */
  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean

  /**
   * noise-curve-ed DH: clamp(SHA-512(secretKey[0..32])[0..32]) times the remote
   * Ed25519 point, with libsodium crypto_scalarmult_ed25519_noclamp's rejections
   * (non-canonical, small order, not in the prime-order subgroup, identity result).
   */
  dh(secretKey: Uint8Array, remotePublicKey: Uint8Array): Uint8Array | null

  /** ChaCha20-Poly1305 IETF. Output ciphertext || 16-byte tag. */
  aeadEncrypt(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Uint8Array
  aeadDecrypt(key: Uint8Array, nonce: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array | null

  /** crypto_secretbox_easy (XSalsa20-Poly1305): output mac(16) || ciphertext. */
  secretboxSeal(message: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array
  secretboxOpen(box: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array | null

  /** crypto_secretstream_xchacha20poly1305. `header` (24 bytes) is random when omitted. */
  secretstreamInitPush(key: Uint8Array, header?: Uint8Array): { readonly state: SecretStreamState; readonly header: Uint8Array }
  secretstreamPush(state: SecretStreamState, message: Uint8Array, tag?: number, ad?: Uint8Array): Uint8Array
  secretstreamInitPull(key: Uint8Array, header: Uint8Array): SecretStreamState | null
  /** Null when the ciphertext does not authenticate (the state is then left unchanged). */
  secretstreamPull(state: SecretStreamState, ciphertext: Uint8Array, ad?: Uint8Array): SecretStreamPull | null
}
