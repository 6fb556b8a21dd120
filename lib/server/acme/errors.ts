// How an ACME attempt failed, which decides when it is tried again.

/** An RFC 7807 problem document, as a CA sends it (RFC 8555 section 6.7). */
export interface AcmeProblem {
  /** E.g. `urn:ietf:params:acme:error:rateLimited`. */
  type?: string;
  /** The CA's sentence. */
  detail?: string;
  /** The HTTP status. */
  status?: number;
  /** Per-identifier problems. */
  subproblems?: unknown[];
}

/**
 * Why an attempt failed: `unreachable` (no answer, a timeout, a 5xx: retried
 * soon), `rate-limited` (429: retried after its `Retry-After`), `refused` (the
 * CA's problem document, a failed validation: retried slowly), `hook` (the
 * DNS hook failed: retried slowly).
 */
export type AcmeErrorKind = "unreachable" | "rate-limited" | "refused" | "hook";

/** A failed ACME step, with the CA's problem document when it sent one. */
export class AcmeError extends Error {
  override name = "AcmeError";
  /** What kind of failure, for the retry. */
  readonly kind: AcmeErrorKind;
  /** The CA's problem document, if any. */
  readonly problem: AcmeProblem | undefined;
  /** The CA's `Retry-After`, in ms, if it sent one. */
  readonly retryAfterMs: number | undefined;

  /** An error of `kind`; `options` may carry the problem, the retry-after and a cause. */
  constructor(
    kind: AcmeErrorKind,
    message: string,
    options: { problem?: AcmeProblem; retryAfterMs?: number | undefined; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.kind = kind;
    this.problem = options.problem;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** A `Retry-After` value (seconds, or an HTTP date) in ms from `now`; undefined if absent or bad. */
export function parseRetryAfter(
  value: string | null,
  now: number = Date.now(),
): number | undefined {
  if (value === null) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
