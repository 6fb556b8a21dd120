// Which certificates to have, and when to order them: the primary one (the
// wildcard and apex, or the apex alone) from the start, a name's own when its
// tunnel registers and policy allows; each renewed at two thirds of its life,
// every failure retried with backoff (429: after its Retry-After).

import { sleep } from "../../io.ts";
import { ACME_RENEW_AT_FRACTION, type AcmeTimings } from "./timings.ts";
import { describeError, isBug, type Logger } from "../../log.ts";
import type { CertBook } from "./book.ts";
import type { ChallengeSolver } from "./client.ts";
import { AcmeError } from "./errors.ts";
import type { CertStore, StoredCertificate } from "./store.ts";

const HOUR_MS = 60 * 60_000;

/** When a certificate is due for renewal: two thirds into its lifetime. */
export function renewalTime(certificate: StoredCertificate): number {
  const { notBefore, notAfter } = certificate;
  return notBefore + (notAfter - notBefore) * ACME_RENEW_AT_FRACTION;
}

/**
 * How long to wait after the `failures`th failure in a row: a 429's
 * Retry-After (within its bounds); else doubling from the minimum of its kind
 * (unreachable: soon; refused or a failed hook: slowly), never less than a
 * Retry-After the CA sent.
 */
export function retryDelay(error: unknown, failures: number, timings: AcmeTimings): number {
  const kind = error instanceof AcmeError ? error.kind : "unreachable";
  const retryAfter = error instanceof AcmeError && error.retryAfterMs !== undefined
    ? Math.min(error.retryAfterMs, timings.retryAfterMaxMs)
    : undefined;
  if (kind === "rate-limited" && retryAfter !== undefined) {
    return Math.max(retryAfter, timings.retryMinMs);
  }
  const [min, max] = kind === "unreachable"
    ? [timings.retryMinMs, timings.retryMaxMs]
    : [timings.refusedRetryMinMs, timings.refusedRetryMaxMs];
  const backoff = Math.min(max, min * 2 ** Math.min(failures - 1, 30));
  return Math.max(backoff, retryAfter ?? 0);
}

/** What the scheduler works with. */
export interface CertSchedulerOptions {
  /** The server's domain: tunnels are `<name>.<domain>`. */
  domain: string;
  /** DNS-01: one certificate for the domain and `*.<domain>` covers every tunnel. */
  wildcard: boolean;
  /** Orders certificates. */
  ca: {
    order(
      names: string[],
      solver: ChallengeSolver,
      signal: AbortSignal,
    ): Promise<StoredCertificate>;
  };
  /** Answers the challenges. */
  solver: ChallengeSolver;
  /**
   * Answers the challenges of custom hostnames (HTTP-01 on the plain port:
   * the server cannot publish DNS records for another domain). @default {solver}
   */
  hostSolver?: ChallengeSolver;
  /** Keeps certificates across restarts. */
  store: Pick<CertStore, "certificates" | "saveCertificate">;
  /** What the TLS port serves. */
  book: CertBook;
  /** A name that may have its own certificate without `anyName` (`--acme-names`, token scopes). */
  isReserved(name: string): boolean;
  /** Any registered name may have its own certificate, `perHour` new orders an hour at most. */
  anyName: boolean;
  /** New orders an hour for names that are not reserved. */
  perHour: number;
  /** Whether a tunnel holds `name` now. */
  isRegistered(name: string): boolean;
  /** The `https://` URL of a host. */
  httpsUrl(host: string): string;
  /** A certificate went into the book (the server swaps its default one in for the primary). */
  installed(id: string, certificate: StoredCertificate): void;
  /** Waits and retries. */
  timings: AcmeTimings;
  /** Where logs go. */
  log: Logger;
}

interface Job {
  id: string;
  names: string[];
  /** Whether it is for a name that is not reserved (counted against the hourly cap). */
  capped: boolean;
  /** Whether it should still be renewed. */
  keep(): boolean;
  /** Its own challenge solver, if not the scheduler's. */
  solver?: ChallengeSolver | undefined;
}

/** Keeps the certificates the server needs, ordered and renewed, until closed. */
export class CertScheduler {
  #options: CertSchedulerOptions;
  #jobs = new Map<string, Job>();
  #tasks = new Set<Promise<void>>();
  #stop = new AbortController();
  #watchers = new Map<(url: string) => void, string>();
  #capped: number[] = []; // when orders for names that are not reserved started
  #primary: string;

  /** A scheduler; nothing happens until `start()`. */
  constructor(options: CertSchedulerOptions) {
    this.#options = options;
    const { domain, wildcard, store, book } = options;
    this.#primary = wildcard ? `*.${domain}` : domain;
    for (const [id, certificate] of store.certificates) book.set(id, certificate);
  }

  /** The primary certificate's id: `*.<domain>` (DNS-01) or `<domain>`. */
  get primaryId(): string {
    return this.#primary;
  }

  /** Orders (or renews) the primary certificate and the stored ones of reserved names. */
  start(): void {
    const { domain, wildcard, store } = this.#options;
    const primary = this.#options.book.get(this.#primary);
    if (primary) this.#options.installed(this.#primary, primary);
    this.#ensure({
      id: this.#primary,
      names: wildcard ? [domain, `*.${domain}`] : [domain],
      capped: false,
      keep: () => true,
    });
    for (const id of store.certificates.keys()) {
      const name = this.#nameOf(id);
      if (name !== undefined && !wildcard && this.#options.isReserved(name)) this.#perName(name);
    }
  }

  /** Whether a served certificate covers `host` now. */
  covers(host: string): boolean {
    return this.#options.book.covers(host);
  }

  /**
   * A tunnel registered `name`: `ready` is called once with its `https://` URL
   * when a certificate covers it (now, if one does). Orders the name's own
   * certificate if it has none and policy allows. Returns the unsubscribe.
   */
  registered(name: string, ready: (url: string) => void): () => void {
    const host = `${name}.${this.#options.domain}`;
    if (this.covers(host)) {
      ready(this.#options.httpsUrl(host));
      return () => {};
    }
    this.#watchers.set(ready, host);
    if (!this.#options.wildcard) this.#perName(name);
    return () => void this.#watchers.delete(ready);
  }

  /**
   * A tunnel registered the custom hostname `host` (its token's scope allowed
   * it): `ready` is called once with its `https://` URL when a certificate
   * covers it; its own certificate is ordered over HTTP-01 if it has none.
   * Returns the unsubscribe.
   */
  registeredHost(host: string, ready: (url: string) => void): () => void {
    if (this.covers(host)) {
      ready(this.#options.httpsUrl(host));
      return () => {};
    }
    this.#watchers.set(ready, host);
    this.#ensure({
      id: host,
      names: [host],
      capped: false,
      keep: () => this.#options.isRegistered(host),
      solver: this.#options.hostSolver,
    });
    return () => void this.#watchers.delete(ready);
  }

  /** Stops every order and wait; resolves when all have ended. */
  async close(): Promise<void> {
    this.#stop.abort();
    this.#watchers.clear();
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  #nameOf(id: string): string | undefined {
    const suffix = `.${this.#options.domain}`;
    if (!id.endsWith(suffix)) return undefined;
    const name = id.slice(0, -suffix.length);
    return name.includes(".") || name.includes("*") ? undefined : name;
  }

  // A name's own certificate, if reserved or if any name may have one.
  #perName(name: string): void {
    const host = `${name}.${this.#options.domain}`;
    if (this.#jobs.has(host)) return;
    const reserved = (): boolean => this.#options.isReserved(name);
    if (!reserved() && !this.#options.anyName) {
      this.#options.log.debug("No certificate ordered for a name that is not reserved", {
        subdomain: name,
      });
      return;
    }
    this.#ensure({
      id: host,
      names: [host],
      capped: !reserved(),
      keep: () => reserved() || this.#options.isRegistered(name),
    });
  }

  #ensure(job: Job): void {
    if (this.#jobs.has(job.id) || this.#stop.signal.aborted) return;
    this.#jobs.set(job.id, job);
    const task = this.#run(job)
      .catch((e) =>
        this.#options.log.error("Certificate scheduler failed", { error: describeError(e) })
      )
      .finally(() => {
        this.#jobs.delete(job.id);
        this.#tasks.delete(task);
      });
    this.#tasks.add(task);
  }

  // Keeps one certificate: orders it when missing or due, sleeps until it is due
  // (at most the renewal check interval), retries failures with backoff.
  async #run(job: Job): Promise<void> {
    const { book, log, timings, ca, solver, store } = this.#options;
    const signal = this.#stop.signal;
    let failures = 0;
    while (!signal.aborted) {
      const current = book.get(job.id);
      const now = Date.now();
      const matches = current !== undefined && job.names.every((n) => current.names.includes(n));
      if (matches && now < renewalTime(current)) {
        await sleep(Math.min(renewalTime(current) - now, timings.renewCheckMs), signal);
        continue;
      }
      if (current !== undefined && !job.keep()) {
        return log.info("Certificate not renewed: its name is no longer in use", { id: job.id });
      }
      if (job.capped) {
        const wait = this.#capWait(now);
        if (wait > 0) {
          log.warn("Certificate order waits: per-name orders an hour are used up", {
            names: job.names,
            per_hour: this.#options.perHour,
            wait_ms: wait,
          });
          await sleep(wait, signal);
          continue;
        }
        this.#capped.push(now);
      }
      const started = performance.now();
      log.info(current ? "Renewing certificate" : "Ordering certificate", { names: job.names });
      try {
        const certificate = await ca.order(job.names, job.solver ?? solver, signal);
        await store.saveCertificate(job.id, certificate);
        book.set(job.id, certificate);
        this.#options.installed(job.id, certificate);
        failures = 0;
        log.info("Certificate ready", {
          names: job.names,
          not_after: new Date(certificate.notAfter).toISOString(),
          ms: Math.round(performance.now() - started),
        });
        this.#notify();
      } catch (e) {
        if (signal.aborted) return;
        failures++;
        const delay = retryDelay(e, failures, timings);
        const fields = {
          names: job.names,
          error: describeError(e),
          ...(e instanceof AcmeError && e.problem ? { problem: e.problem } : {}),
          retry_in_ms: delay,
        };
        if (isBug(e)) log.error("Certificate order failed", fields);
        else log.warn("Certificate order failed", fields);
        await sleep(delay, signal);
      }
    }
  }

  // How long until a capped order may start (0: now).
  #capWait(now: number): number {
    this.#capped = this.#capped.filter((at) => at > now - HOUR_MS);
    if (this.#capped.length < this.#options.perHour) return 0;
    return this.#capped[0]! + HOUR_MS - now;
  }

  // Tells the tunnels waiting for a certificate that now has one.
  #notify(): void {
    for (const [ready, host] of [...this.#watchers]) {
      if (!this.covers(host)) continue;
      this.#watchers.delete(ready);
      try {
        ready(this.#options.httpsUrl(host));
      } catch (e) {
        this.#options.log.error("Cannot tell a tunnel its https URL", { error: describeError(e) });
      }
    }
  }
}
