// Automatic HTTPS for a server: the options, and the pieces put together (cert
// dir, CA, challenges, scheduler, the certificates the TLS port serves).

import {
  ACME_PER_NAME_ORDERS_PER_HOUR,
  type AcmeTimings,
  DEFAULT_ACME_TIMINGS,
} from "./timings.ts";
import type { Logger } from "../../log.ts";
import { isSubdomain } from "../../names.ts";
import { CertBook } from "./book.ts";
import { Http01Tokens, runDnsHook } from "./challenges.ts";
import { AcmeCa, type ChallengeSolver } from "./client.ts";
import { CertScheduler } from "./scheduler.ts";
import { CertStore, defaultCertDir, type StoredCertificate } from "./store.ts";
import type { TunnelCertificates } from "../context.ts";

import {
  DEFAULT_ACME_TLS_PORT,
  LETS_ENCRYPT_DIRECTORY,
  LETS_ENCRYPT_STAGING_DIRECTORY,
} from "./defaults.ts";
export { DEFAULT_ACME_TLS_PORT, LETS_ENCRYPT_DIRECTORY, LETS_ENCRYPT_STAGING_DIRECTORY };

/**
 * Automatic HTTPS: certificates from an ACME CA (Let's Encrypt by default),
 * obtained, stored and renewed by the server. With `dnsHook`, one wildcard
 * certificate covers every tunnel (DNS-01); without it, the apex has one and
 * names get their own over HTTP-01 on the plain port (reserved names, or any
 * name with `perName`).
 *
 * @example Wildcard certificates from Let's Encrypt through a DNS hook
 * ```ts ignore
 * import { startServer } from "@gotunnel/gotunnel";
 * await using server = await startServer({
 *   domain: "tunnel.example",
 *   port: 80,
 *   acme: {
 *     email: "ops@example.com",
 *     agreeToTerms: true,
 *     dnsHook: "/etc/gotunnel/dns-hook.sh",
 *     port: 443,
 *   },
 * });
 * ```
 */
export interface ServerAcme {
  /** Contact address of the CA account; CAs write to it about expiry and incidents. */
  email: string;
  /** That you accept the CA's terms of service (Let's Encrypt's: its subscriber agreement). Must be true. */
  agreeToTerms: boolean;
  /** The CA's directory URL. @default {LETS_ENCRYPT_DIRECTORY} */
  directoryUrl?: string;
  /** CA certificates (PEM) to trust for the directory: a private ACME server's (pebble, step-ca). @default {system roots} */
  caCerts?: string[];
  /** External account binding, for CAs that need it (ZeroSSL, Google, many private ones). */
  eab?: { kid: string; hmacKey: string };
  /**
   * A program run as `HOOK set _acme-challenge.<domain> VALUE` and
   * `HOOK unset _acme-challenge.<domain> VALUE`, which publishes (or removes) a
   * TXT record and exits 0 once it is visible to the CA: turns on wildcard mode
   * (DNS-01). @default {undefined: per-name mode, HTTP-01}
   */
  dnsHook?: string;
  /** Subdomain labels that get their own certificate when registered (HTTP-01 mode), besides token scopes' names. @default {[]} */
  names?: string[];
  /** Any registered name gets its own certificate (HTTP-01 mode), at most `ordersPerHour` new ones an hour. @default {false} */
  perName?: boolean;
  /** With `perName`: new certificates an hour for names that are not reserved. @default {5} */
  ordersPerHour?: number;
  /** Where the account key and certificates are kept. @default {"$XDG_DATA_HOME/gotunnel/certs", else "~/.local/share/gotunnel/certs"} */
  certDir?: string;
  /** The HTTPS port; 0 picks a free one. @default {8443} */
  port?: number;
  /** Waits and retries (tests shorten them). @default {DEFAULT_ACME_TIMINGS} */
  timings?: Partial<AcmeTimings>;
}

/** What the service needs from its server once it listens. */
export interface AcmeHost {
  /** The `https://` URL of a host on the TLS port. */
  httpsUrl(host: string): string;
  /** Whether `name` is reserved for certificates by the server (token scopes). */
  isScoped(name: string): boolean;
  /** Whether a tunnel holds `name` now. */
  isRegistered(name: string): boolean;
  /** The primary certificate changed: serve it to clients that send no SNI. */
  setDefault(certificate: StoredCertificate): void;
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/** Checks the options; throws TypeError or RangeError naming the bad one. */
function checkOptions(options: ServerAcme): void {
  if (options.agreeToTerms !== true) {
    throw new TypeError(
      "ACME needs agreeToTerms: true (--acme-agree-tos): read the CA's terms first",
    );
  }
  if (!/^[^\s@]+@[^\s@]+$/.test(options.email)) {
    throw new TypeError(`Invalid ACME email ${JSON.stringify(options.email)}`);
  }
  const bad = (options.names ?? []).find((n) => !isSubdomain(n));
  if (bad !== undefined) {
    throw new TypeError(`Invalid ACME name ${JSON.stringify(bad)}: use a subdomain label`);
  }
  const perHour = options.ordersPerHour ?? ACME_PER_NAME_ORDERS_PER_HOUR;
  if (!Number.isInteger(perHour) || perHour < 1) {
    throw new RangeError(`Invalid ordersPerHour ${perHour}: use 1 or more`);
  }
}

/** Automatic HTTPS, from the cert dir opened (and locked) to the scheduler closed. */
export class AcmeService {
  /** The certificates the TLS port serves. */
  readonly book: CertBook;
  #options: ServerAcme;
  #domain: string;
  #store: CertStore;
  #ca: AcmeCa;
  #tokens = new Http01Tokens();
  #scheduler: CertScheduler | undefined;
  #log: Logger;

  private constructor(
    options: ServerAcme,
    domain: string,
    store: CertStore,
    ca: AcmeCa,
    log: Logger,
  ) {
    this.#options = options;
    this.#domain = domain;
    this.#store = store;
    this.#ca = ca;
    this.#log = log;
    this.book = new CertBook();
  }

  /**
   * Checks the options, opens and locks the cert dir (reading what it holds)
   * and loads the ACME library; orders nothing yet. Throws if any fails.
   */
  static async open(options: ServerAcme, domain: string, log: Logger): Promise<AcmeService> {
    checkOptions(options);
    const directoryUrl = options.directoryUrl ?? LETS_ENCRYPT_DIRECTORY;
    const timings = { ...DEFAULT_ACME_TIMINGS, ...options.timings };
    const store = await CertStore.open(options.certDir ?? defaultCertDir(env), directoryUrl);
    try {
      const ca = await AcmeCa.open({
        directoryUrl,
        email: options.email,
        caCerts: options.caCerts,
        eab: options.eab,
        timings,
        store,
        log,
      });
      return new AcmeService({ ...options, directoryUrl, timings }, domain, store, ca, log);
    } catch (e) {
      store.close();
      throw e;
    }
  }

  /** The HTTPS port asked for. */
  get port(): number {
    return this.#options.port ?? DEFAULT_ACME_TLS_PORT;
  }

  /** The plain port's answer to a request for an HTTP-01 token being validated now. */
  answer(method: string, target: string): Uint8Array | undefined {
    return this.#tokens.answer(method, target);
  }

  /** Whether a certificate served now covers `host`. */
  covers(host: string): boolean {
    return this.book.covers(host);
  }

  /** Starts ordering and renewing, for a server that listens now. */
  start(host: AcmeHost): void {
    const options = this.#options;
    const names = new Set(options.names ?? []);
    const timings = { ...DEFAULT_ACME_TIMINGS, ...options.timings };
    const scheduler = new CertScheduler({
      domain: this.#domain,
      wildcard: options.dnsHook !== undefined,
      ca: this.#ca,
      solver: this.#solver(timings),
      hostSolver: this.#http01(),
      store: this.#store,
      book: this.book,
      isReserved: (name) => names.has(name) || host.isScoped(name),
      anyName: options.perName === true,
      perHour: options.ordersPerHour ?? ACME_PER_NAME_ORDERS_PER_HOUR,
      isRegistered: (name) => host.isRegistered(name),
      httpsUrl: (name) => host.httpsUrl(name),
      installed: (id, certificate) => {
        if (id === scheduler.primaryId) host.setDefault(certificate);
      },
      timings,
      log: this.#log,
    });
    this.#scheduler = scheduler;
    scheduler.start();
  }

  /** A tunnel registered `name`; see {@linkcode CertScheduler.registered}. */
  registered(name: string, ready: (url: string) => void): () => void {
    return this.#scheduler?.registered(name, ready) ?? (() => {});
  }

  /** A tunnel registered the custom hostname `host`; see {@linkcode CertScheduler.registeredHost}. */
  registeredHost(host: string, ready: (url: string) => void): () => void {
    return this.#scheduler?.registeredHost(host, ready) ?? (() => {});
  }

  /** How sessions see it: a tunnel's URL follows its certificate. */
  tunnels(
    plainUrl: (host: string) => string,
    httpsUrl: (host: string) => string,
  ): TunnelCertificates {
    return {
      urlFor: (host) => this.covers(host) ? httpsUrl(host) : plainUrl(host),
      watch: (name, custom, ready) =>
        custom ? this.registeredHost(name, ready) : this.registered(name, ready),
    };
  }

  /** Stops ordering, closes the CA client, releases the cert dir. */
  async close(): Promise<void> {
    await this.#scheduler?.close();
    this.#ca.close();
    this.#store.close();
  }

  // HTTP-01: tokens answered on the plain port.
  #http01(): ChallengeSolver {
    const tokens = this.#tokens;
    return {
      type: "http-01",
      present: (_identifier, token, keyAuthorization) => {
        tokens.add(token, keyAuthorization);
        return Promise.resolve();
      },
      cleanup: (_identifier, token) => {
        tokens.delete(token);
        return Promise.resolve();
      },
    };
  }

  #solver(timings: AcmeTimings): ChallengeSolver {
    const hook = this.#options.dnsHook;
    if (hook === undefined) return this.#http01();
    const record = (identifier: string): string =>
      `_acme-challenge.${identifier.replace(/^\*\./, "")}`;
    return {
      type: "dns-01",
      present: (identifier, _token, value, signal) =>
        runDnsHook(hook, "set", record(identifier), value, timings.dnsHookTimeoutMs, signal),
      cleanup: (identifier, _token, value, signal) =>
        runDnsHook(hook, "unset", record(identifier), value, timings.dnsHookTimeoutMs, signal),
    };
  }
}
