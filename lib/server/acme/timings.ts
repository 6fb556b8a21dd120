// ACME (automatic HTTPS): every wait of an order and every retry, with its unit in
// its name, defined here once (the other limits are in lib/limits.ts).

/** One HTTP request to the ACME server (CA), connect included. */
export const ACME_REQUEST_TIMEOUT_MS = 30_000;
/** From a new order to its certificate: challenges answered, validated, finalized, downloaded. */
export const ACME_ORDER_TIMEOUT_MS = 120_000;
/** While an order is pending or processing, it is polled from this interval... */
export const ACME_POLL_MIN_MS = 100;
/** ...doubling up to this one. */
export const ACME_POLL_MAX_MS = 2_000;
/** How long the DNS hook has to publish (or remove) a record; it is killed after that. */
export const ACME_DNS_HOOK_TIMEOUT_MS = 5 * 60_000;
/** After a failure that is not the CA's answer (unreachable, timeout, 5xx), retry after this... */
export const ACME_RETRY_MIN_MS = 1_000;
/** ...doubling up to this, so a certificate comes well within a minute of the CA's return. */
export const ACME_RETRY_MAX_MS = 30_000;
/**
 * After the CA refused (a problem document: failed validation, bad request),
 * retry after this, doubling: CAs count failed validations (Let's Encrypt: 5 per
 * name per hour).
 */
export const ACME_REFUSED_RETRY_MIN_MS = 60_000;
/** ...up to this. */
export const ACME_REFUSED_RETRY_MAX_MS = 60 * 60_000;
/** The longest `Retry-After` honoured; a longer one is cut to this. */
export const ACME_RETRY_AFTER_MAX_MS = 24 * 60 * 60_000;
/** Stored certificates are checked for renewal this often (besides a timer at each one's renewal time). */
export const ACME_RENEW_CHECK_MS = 12 * 60 * 60_000;
/** A certificate is renewed once this fraction of its lifetime has passed. */
export const ACME_RENEW_AT_FRACTION = 2 / 3;
/** With per-name issuance for any name, new names ordered per hour at most (CAs limit certificates per domain). */
export const ACME_PER_NAME_ORDERS_PER_HOUR = 5;

/** The ACME waits and retries; `startServer({ acme: { timings } })` shortens them in tests. */
export interface AcmeTimings {
  /** One HTTP request to the CA. */
  requestTimeoutMs: number;
  /** A whole order, from creation to certificate. */
  orderTimeoutMs: number;
  /** First interval between polls of a pending order. */
  pollMinMs: number;
  /** Longest interval between polls. */
  pollMaxMs: number;
  /** The DNS hook, per call. */
  dnsHookTimeoutMs: number;
  /** First retry after the CA could not be reached. */
  retryMinMs: number;
  /** Longest retry delay after the CA could not be reached. */
  retryMaxMs: number;
  /** First retry after the CA refused. */
  refusedRetryMinMs: number;
  /** Longest retry delay after the CA refused. */
  refusedRetryMaxMs: number;
  /** Longest `Retry-After` honoured. */
  retryAfterMaxMs: number;
  /** Interval between renewal checks. */
  renewCheckMs: number;
}

/** The defaults of {@linkcode AcmeTimings}, from the constants above. */
export const DEFAULT_ACME_TIMINGS: Readonly<AcmeTimings> = {
  requestTimeoutMs: ACME_REQUEST_TIMEOUT_MS,
  orderTimeoutMs: ACME_ORDER_TIMEOUT_MS,
  pollMinMs: ACME_POLL_MIN_MS,
  pollMaxMs: ACME_POLL_MAX_MS,
  dnsHookTimeoutMs: ACME_DNS_HOOK_TIMEOUT_MS,
  retryMinMs: ACME_RETRY_MIN_MS,
  retryMaxMs: ACME_RETRY_MAX_MS,
  refusedRetryMinMs: ACME_REFUSED_RETRY_MIN_MS,
  refusedRetryMaxMs: ACME_REFUSED_RETRY_MAX_MS,
  retryAfterMaxMs: ACME_RETRY_AFTER_MAX_MS,
  renewCheckMs: ACME_RENEW_CHECK_MS,
};
