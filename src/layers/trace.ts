/**
 * Step marks: where a connection's time goes inside a real process. Each
 * `mark` hands its label to the tracer a measuring harness installed as
 * `globalThis.__omegaTrace` (the NAT lab's agent does, with NATLAB_TRACE; see
 * bench/natlab/steps.mjs), and does nothing else: without a tracer a mark is
 * one property read. Marks sit on a dial's and a server's steps, once per
 * step of a connection, never per datagram or chunk.
 */
type Tracer = (label: string) => void

export const mark = (label: string): void => {
  const t = (globalThis as { readonly __omegaTrace?: Tracer }).__omegaTrace
  if (t !== undefined) t(label)
}
