// One ACME CA: the account and the orders. The protocol (JWS, nonces, account
// binding, CSRs) is npm:acme-client's, loaded only when ACME is on; its HTTP
// goes through Deno's fetch instead of its own axios, so that every request has
// a deadline and the server's signal, trusts the CA given (node:https ignores
// DENO_CERT), and leaves no socket behind once the server closes.

import { sleep } from "../../io.ts";
import type { AcmeTimings } from "./timings.ts";
import type { Logger } from "../../log.ts";
import { GOTUNNEL_VERSION } from "../../protocol.ts";
import { AcmeError, type AcmeProblem, parseRetryAfter } from "./errors.ts";
import { parseCertificateFile, type StoredCertificate } from "./store.ts";
import type { CertStore } from "./store.ts";

/** The acme-client release this code is written and tested against. */
export const ACME_CLIENT_VERSION = "5.4.0";

/** What answers one kind of challenge: publishes a key authorization, then takes it away. */
export interface ChallengeSolver {
  /** The challenge type it answers. */
  readonly type: "http-01" | "dns-01";
  /** Publishes `keyAuthorization` for `identifier` (the apex for a wildcard); resolves once it is. */
  present(
    identifier: string,
    token: string,
    keyAuthorization: string,
    signal: AbortSignal,
  ): Promise<void>;
  /** Takes it away again. */
  cleanup(
    identifier: string,
    token: string,
    keyAuthorization: string,
    signal: AbortSignal,
  ): Promise<void>;
}

/** What the ACME CA needs to know. */
export interface AcmeCaOptions {
  /** The CA's directory URL. */
  directoryUrl: string;
  /** Contact address of the account. */
  email: string;
  /** CA certificates (PEM) to trust for the directory, besides none: a private CA's root. */
  caCerts?: string[] | undefined;
  /** External account binding, for CAs that need it. */
  eab?: { kid: string; hmacKey: string } | undefined;
  /** Waits and retries. */
  timings: AcmeTimings;
  /** Where the account key and its URL are kept. */
  store: CertStore;
  /** Where logs go. */
  log: Logger;
}

// The small part of acme-client used here, typed by hand so that nothing of it
// is loaded (not even its types) unless ACME is on.
interface LibResponse {
  status: number;
  headers: Record<string, string>;
  data: unknown;
}
interface LibChallenge {
  type: string;
  url: string;
  token: string;
  status: string;
  error?: AcmeProblem;
}
interface LibAuthorization {
  status: string;
  identifier: { type: string; value: string };
  wildcard?: boolean;
  challenges: LibChallenge[];
}
interface LibOrder {
  status: string;
  url: string;
  error?: AcmeProblem;
}
interface LibClient {
  http: { request(url: string, method: string, opts?: { data?: unknown }): Promise<LibResponse> };
  createAccount(data: Record<string, unknown>): Promise<unknown>;
  getAccountUrl(): string;
  createOrder(data: { identifiers: { type: string; value: string }[] }): Promise<LibOrder>;
  getOrder(order: LibOrder): Promise<LibOrder>;
  getAuthorizations(order: LibOrder): Promise<LibAuthorization[]>;
  getChallengeKeyAuthorization(challenge: LibChallenge): Promise<string>;
  completeChallenge(challenge: LibChallenge): Promise<unknown>;
  finalizeOrder(order: LibOrder, csr: Uint8Array): Promise<LibOrder>;
  getCertificate(order: LibOrder): Promise<string>;
}
interface AcmeLib {
  Client: new (options: Record<string, unknown>) => LibClient;
  crypto: {
    createPrivateEcdsaKey(): Promise<Uint8Array>;
    createCsr(
      data: Record<string, unknown>,
      key: Uint8Array | string,
    ): Promise<[Uint8Array, Uint8Array]>;
  };
}

/**
 * The module, named through a variable: with a literal specifier `deno run`
 * would download it (it is in the module graph) even for a server without ACME.
 */
const ACME_CLIENT_MODULE = `npm:acme-client@${ACME_CLIENT_VERSION}`;

/** Loads acme-client (downloaded on first use); fails loudly if its shape is not the one used here. */
async function loadLib(): Promise<AcmeLib> {
  const module = await import(ACME_CLIENT_MODULE);
  const lib = (module.default ?? module) as unknown as AcmeLib;
  if (typeof lib.Client !== "function" || typeof lib.crypto?.createCsr !== "function") {
    throw new Error(`Cannot use acme-client: not the ${ACME_CLIENT_VERSION} API`);
  }
  return lib;
}

const BAD_NONCE = "urn:ietf:params:acme:error:badNonce";
const decoder = new TextDecoder();

/** An ACME CA: its account, and certificates ordered from it. */
export class AcmeCa {
  #lib: AcmeLib;
  #options: AcmeCaOptions;
  #http: Deno.HttpClient;
  #account: Promise<{ key: string; url: string }> | undefined;

  private constructor(lib: AcmeLib, options: AcmeCaOptions) {
    this.#lib = lib;
    this.#options = options;
    this.#http = Deno.createHttpClient(options.caCerts ? { caCerts: options.caCerts } : {});
  }

  /** Loads acme-client and prepares the CA (no request is made yet). */
  static async open(options: AcmeCaOptions): Promise<AcmeCa> {
    return new AcmeCa(await loadLib(), options);
  }

  /**
   * Orders a certificate for `names` (the first is its common name), answering
   * each authorization with `solver`; resolves with the certificate and its new
   * key. Rejects with an {@linkcode AcmeError}, or when `signal` aborts.
   */
  async order(
    names: string[],
    solver: ChallengeSolver,
    signal: AbortSignal,
  ): Promise<StoredCertificate> {
    const { orderTimeoutMs } = this.#options.timings;
    const late = new AbortController();
    const timer = setTimeout(() => late.abort(), orderTimeoutMs);
    const orderSignal = AbortSignal.any([signal, late.signal]);
    const cleanups: (() => Promise<void>)[] = [];
    try {
      const account = await this.#registered(orderSignal);
      const client = this.#client(account.key, account.url, orderSignal);
      let order = await client.createOrder({
        identifiers: names.map((value) => ({ type: "dns", value })),
      });
      const challenges: LibChallenge[] = [];
      for (const authz of await client.getAuthorizations(order)) {
        if (authz.status === "valid") continue; // reused from an earlier order
        const challenge = authz.challenges.find((c) => c.type === solver.type);
        const identifier = authz.identifier.value;
        if (!challenge) {
          throw new AcmeError(
            "refused",
            `The CA offers no ${solver.type} challenge for ${identifier}`,
          );
        }
        const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
        cleanups.push(() => solver.cleanup(identifier, challenge.token, keyAuthorization, signal));
        await solver.present(identifier, challenge.token, keyAuthorization, orderSignal);
        challenges.push(challenge);
      }
      for (const challenge of challenges) await client.completeChallenge(challenge);
      order = await this.#poll(client, order, "ready", orderSignal);
      const key = await this.#lib.crypto.createPrivateEcdsaKey();
      const [, csr] = await this.#lib.crypto.createCsr(
        { commonName: names[0], altNames: names },
        key,
      );
      if (order.status !== "valid") order = await client.finalizeOrder(order, csr);
      order = await this.#poll(client, order, "valid", orderSignal);
      const chain = await client.getCertificate(order);
      return parseCertificateFile(decoder.decode(key) + "\n" + chain);
    } catch (e) {
      if (late.signal.aborted && !signal.aborted) {
        throw new AcmeError(
          "unreachable",
          `Order for ${names.join(", ")} not done within ${orderTimeoutMs} ms`,
          { cause: e },
        );
      }
      throw e;
    } finally {
      clearTimeout(timer);
      for (const cleanup of cleanups) {
        await cleanup().catch((e) =>
          this.#options.log.warn("Cannot clean up an ACME challenge", { error: `${e}` })
        );
      }
    }
  }

  /** Closes the HTTP client (and its connections to the CA). */
  close(): void {
    this.#http.close();
  }

  // The account, registered once (its key stored before, its URL after).
  #registered(signal: AbortSignal): Promise<{ key: string; url: string }> {
    this.#account ??= (async () => {
      const { store, email } = this.#options;
      let key = store.account?.key;
      if (key === undefined) {
        key = decoder.decode(await this.#lib.crypto.createPrivateEcdsaKey());
        await store.saveAccount({ key, url: undefined });
      }
      let url = store.account?.url;
      if (url === undefined) {
        const client = this.#client(key, undefined, signal);
        await client.createAccount({ termsOfServiceAgreed: true, contact: [`mailto:${email}`] });
        url = client.getAccountUrl();
        await store.saveAccount({ key, url });
        this.#options.log.info("ACME account registered", { account: url });
      }
      return { key, url };
    })();
    const account = this.#account;
    account.catch(() => {
      if (this.#account === account) this.#account = undefined; // try again next time
    });
    return account;
  }

  // A library client whose every request goes through fetch with `signal`.
  #client(key: string, url: string | undefined, signal: AbortSignal): LibClient {
    const { directoryUrl, eab } = this.#options;
    const client = new this.#lib.Client({
      directoryUrl,
      accountKey: key,
      ...(url === undefined ? {} : { accountUrl: url }),
      ...(eab ? { externalAccountBinding: { kid: eab.kid, hmacKey: eab.hmacKey } } : {}),
    });
    if (typeof client.http?.request !== "function") {
      throw new Error(
        `Cannot use acme-client: not the ${ACME_CLIENT_VERSION} API (no http.request)`,
      );
    }
    client.http.request = (target, method, opts = {}) =>
      this.#request(target, method, opts.data, signal);
    return client;
  }

  // One request to the CA, answered as acme-client's axios would (status,
  // lower-case headers, JSON parsed). Failures become AcmeErrors: no answer or
  // 5xx `unreachable`, 429 `rate-limited`, another 4xx `refused` (a bad nonce
  // is returned, for acme-client to retry).
  async #request(
    url: string,
    method: string,
    data: unknown,
    signal: AbortSignal,
  ): Promise<LibResponse> {
    const { requestTimeoutMs } = this.#options.timings;
    const late = new AbortController();
    const timer = setTimeout(() => late.abort(), requestTimeoutMs);
    const verb = method.toUpperCase();
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, {
        method: verb,
        client: this.#http,
        signal: AbortSignal.any([signal, late.signal]),
        headers: {
          "content-type": "application/jose+json",
          "user-agent": `gotunnel/${GOTUNNEL_VERSION} acme-client/${ACME_CLIENT_VERSION}`,
        },
        ...(data === undefined ? {} : { body: JSON.stringify(data) }),
      });
      text = verb === "HEAD" ? "" : await response.text();
    } catch (e) {
      if (signal.aborted) throw e;
      const why = late.signal.aborted ? `no answer within ${requestTimeoutMs} ms` : `${e}`;
      throw new AcmeError("unreachable", `Cannot reach the ACME server (${verb} ${url}): ${why}`, {
        cause: e,
      });
    } finally {
      clearTimeout(timer);
    }
    const headers: Record<string, string> = {};
    response.headers.forEach((value, name) => headers[name] = value);
    let body: unknown = text;
    if (/json/.test(headers["content-type"] ?? "") && text !== "") {
      try {
        body = JSON.parse(text);
      } catch {
        // left as text
      }
    }
    const status = response.status;
    if (status < 400) return { status, headers, data: body };
    const problem = typeof body === "object" && body !== null ? body as AcmeProblem : undefined;
    if (status === 400 && problem?.type === BAD_NONCE) return { status, headers, data: body };
    const said = `${verb} ${url}: ${status}` + (problem?.detail ? ` ${problem.detail}` : "");
    if (status === 429) {
      throw new AcmeError("rate-limited", `The ACME server is rate limiting (${said})`, {
        ...(problem ? { problem } : {}),
        retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
      });
    }
    const kind = status >= 500 ? "unreachable" : "refused";
    throw new AcmeError(kind, `The ACME server refused (${said})`, {
      ...(problem ? { problem } : {}),
      retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
    });
  }

  // Polls `order` until it is `want` (or past it), with a growing interval.
  async #poll(
    client: LibClient,
    order: LibOrder,
    want: "ready" | "valid",
    signal: AbortSignal,
  ): Promise<LibOrder> {
    const { pollMinMs, pollMaxMs } = this.#options.timings;
    let wait = pollMinMs;
    for (;;) {
      if (order.status === want || order.status === "valid") return order;
      if (order.status === "invalid") throw await this.#invalid(client, order);
      await sleep(wait, signal);
      signal.throwIfAborted();
      wait = Math.min(wait * 2, pollMaxMs);
      order = await client.getOrder(order);
    }
  }

  // Why an order became invalid: the first failed challenge's problem document.
  async #invalid(client: LibClient, order: LibOrder): Promise<AcmeError> {
    for (const authz of await client.getAuthorizations(order)) {
      const failed = authz.challenges.find((c) => c.error);
      if (failed?.error) {
        return new AcmeError(
          "refused",
          `Validation of ${authz.identifier.value} (${failed.type}) failed: ${
            failed.error.detail ?? failed.error.type
          }`,
          { problem: failed.error },
        );
      }
    }
    return new AcmeError("refused", `Order ${order.url} became invalid`, {
      ...(order.error ? { problem: order.error } : {}),
    });
  }
}
