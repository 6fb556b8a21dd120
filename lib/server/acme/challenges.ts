// Answering ACME challenges: HTTP-01 tokens served on the plain port (for any
// Host), and the DNS hook that publishes DNS-01 TXT records.

import { httpResponse } from "../../http/response.ts";
import { AcmeError } from "./errors.ts";

/** Where HTTP-01 tokens are fetched from. */
export const HTTP01_PREFIX = "/.well-known/acme-challenge/";

/** The HTTP-01 tokens being validated now, each with its key authorization. */
export class Http01Tokens {
  #tokens = new Map<string, string>();

  /** Serves `keyAuthorization` at the token's path until `delete`. */
  add(token: string, keyAuthorization: string): void {
    this.#tokens.set(token, keyAuthorization);
  }

  /** Stops serving `token`. */
  delete(token: string): void {
    this.#tokens.delete(token);
  }

  /**
   * The whole answer to `GET target` when it asks for a token being validated
   * now; undefined otherwise (the request is routed as usual, so an app behind
   * a tunnel can answer its own challenges).
   */
  answer(method: string, target: string): Uint8Array | undefined {
    if ((method !== "GET" && method !== "HEAD") || !target.startsWith(HTTP01_PREFIX)) return;
    const keyAuthorization = this.#tokens.get(target.slice(HTTP01_PREFIX.length));
    if (keyAuthorization === undefined) return;
    return httpResponse(200, {
      body: keyAuthorization,
      type: "application/octet-stream",
      headOnly: method === "HEAD",
    });
  }
}

/** Lines of a failed hook's output kept for the log. */
const HOOK_OUTPUT_CHARS = 2_000;

/**
 * Runs the DNS hook as `command set|unset <record> <value>` (lego's and
 * acme.sh's exec style) and resolves once it exited 0; rejects with an
 * {@linkcode AcmeError} of kind `hook` (its status and output) otherwise, or
 * when it runs past `timeoutMs` or `signal` aborts (it is killed).
 */
export async function runDnsHook(
  command: string,
  action: "set" | "unset",
  record: string,
  value: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  const onAbort = (): void => stop.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args: [action, record, value],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: stop.signal,
    }).spawn();
  } catch (e) {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
    throw new AcmeError("hook", `Cannot run the DNS hook ${command}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  try {
    const { code, stdout, stderr } = await child.output();
    if (code === 0) return;
    const said = new TextDecoder().decode(stderr).trim() || new TextDecoder().decode(stdout).trim();
    const why = stop.signal.aborted
      ? signal.aborted ? "stopped" : `still running after ${timeoutMs} ms, killed`
      : `exited with status ${code}`;
    throw new AcmeError(
      "hook",
      `DNS hook ${action} ${record} ${why}` + (said ? `: ${said.slice(-HOOK_OUTPUT_CHARS)}` : ""),
    );
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}
