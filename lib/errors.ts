// The one domain error: a refusal or failure callers branch on by `code`.

import type { ErrorCode } from "./protocol.ts";

/**
 * Codes of {@linkcode TunnelError}: the server's refusals plus local failures
 * (`inspect`: the inspector's address could not be had).
 */
export type TunnelErrorCode = ErrorCode | "connect" | "protocol" | "inspect";

/**
 * A tunnel could not be opened or kept; `code` says why.
 *
 * @example Branch on why a tunnel was refused
 * ```ts
 * import { openTunnel, TunnelError } from "@gotunnel/gotunnel";
 * try {
 *   await openTunnel({ port: 3000, server: "http://127.0.0.1:9", leaseFile: false });
 * } catch (e) {
 *   if (e instanceof TunnelError && e.code === "connect") console.log("no server there");
 * }
 * ```
 */
export class TunnelError extends Error {
  /** Why: a server refusal (`subdomain-taken`, ...), `connect`, `protocol` or `inspect`. */
  readonly code: TunnelErrorCode;

  /** For `subdomain-reserved`: milliseconds until the name is free. */
  readonly retryAfterMs: number | undefined;

  /** Creates an error with a code and a message starting with the failed action. */
  constructor(
    code: TunnelErrorCode,
    message: string,
    options?: ErrorOptions & { retryAfterMs?: number | undefined },
  ) {
    super(message, options);
    this.name = "TunnelError";
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }
}
