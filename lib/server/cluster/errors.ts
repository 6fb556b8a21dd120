// The cluster directory's one error: why a claim, release or lookup could not be done.

/**
 * Codes of {@linkcode DirectoryError}: `unavailable` (Redis cannot be reached
 * or did not answer in time: retry later), `closed` (the directory was closed),
 * `node-id-taken` (another live process announces this node id), `redis`
 * (Redis answered with an error: a wrong password, a wrong database, a bug).
 *
 * @example
 * ```ts
 * import type { DirectoryErrorCode } from "./errors.ts";
 * const retry = (code: DirectoryErrorCode) => code === "unavailable";
 * console.log(retry("unavailable"), retry("redis")); // true false
 * ```
 */
export type DirectoryErrorCode = "unavailable" | "closed" | "node-id-taken" | "redis";

/**
 * A directory operation failed; `code` says why, and whether a retry may help.
 *
 * @example Refuse a tunnel while Redis is away
 * ```ts
 * import { DirectoryError } from "./errors.ts";
 * const e = new DirectoryError("unavailable", 'Cannot claim name "demo": registry unavailable, retry');
 * if (e.code === "unavailable") console.log(e.message);
 * ```
 */
export class DirectoryError extends Error {
  /** Why: `unavailable`, `closed`, `node-id-taken` or `redis`. */
  readonly code: DirectoryErrorCode;

  /** Creates an error with a code and a message starting with the failed action. */
  constructor(code: DirectoryErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DirectoryError";
    this.code = code;
  }
}
