/** Run a Node child process to its end, collecting its output; killed (and the promise rejected) after `timeoutMs`. */
import { type ChildProcess, spawn } from "node:child_process"

export interface ChildRun {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export interface ChildOptions {
  readonly cwd?: string | undefined
  readonly env?: NodeJS.ProcessEnv | undefined
  /** Written to the child's stdin (then closed); stdin is ignored without it. */
  readonly input?: string | undefined
  readonly timeoutMs: number
  /** Named in the timeout error. */
  readonly what: string
  /** Live children (a test's afterAll kills what is left). */
  readonly children?: Set<ChildProcess> | undefined
}

export const runNodeChild = (args: ReadonlyArray<string>, o: ChildOptions): Promise<ChildRun> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args], {
      ...(o.cwd !== undefined ? { cwd: o.cwd } : {}),
      ...(o.env !== undefined ? { env: o.env } : {}),
      stdio: [o.input !== undefined ? "pipe" : "ignore", "pipe", "pipe"]
    })
    o.children?.add(child)
    let stdout = ""
    let stderr = ""
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`${o.what} did not finish within ${o.timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`))
    }, o.timeoutMs)
    child.on("error", (e) => {
      clearTimeout(timer)
      o.children?.delete(child)
      reject(e)
    })
    child.on("close", (code) => {
      clearTimeout(timer)
      o.children?.delete(child)
      resolve({ code, stdout, stderr })
    })
    if (o.input !== undefined) child.stdin!.end(o.input)
  })
