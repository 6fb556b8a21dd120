// One tunnel on the client, across control connections: what it asks the server
// for (a subdomain, a hostname or a port, with its lease), what it got (its id on
// the current connection, its name and URL), its local side, and whether it is
// up, waiting to claim again, or lost for good.

import type { TunnelError } from "../errors.ts";
import type { TunnelClaim, TunnelGrant } from "../protocol.ts";
import type { LeaseKeeper } from "./lease_store.ts";
import { LocalTarget } from "./local_target.ts";
import type { TunnelHandle, TunnelSpec } from "./tunnel_types.ts";

/** Where a tunnel stands. */
export type TunnelState = "pending" | "up" | "failed";

/** A tunnel of a client: a {@linkcode TunnelHandle} and what the client does with it. */
export class ClientTunnel implements TunnelHandle {
  /** Its name. */
  readonly name: string;
  /** Its key in claims and grants. */
  readonly ref: string;
  /** What it was opened with. */
  readonly spec: TunnelSpec;
  /** Its local side. */
  readonly local: LocalTarget;
  #localHost: string;
  #grant: Extract<TunnelGrant, { ok: true }> | undefined;
  #lease: string | undefined;
  #state: TunnelState = "pending";
  #error: TunnelError | undefined;
  #settled = Promise.withResolvers<void>();
  /** When the server first said its name was taken in a row of refusals (ms since the epoch). */
  takenSince: number | undefined;
  /** Reclaims in a row after refusals, for the backoff. */
  attempts = 0;

  /** The tunnel `spec`, the `index`th of its client; `ca` is trusted for a `localHttps` app. */
  constructor(spec: TunnelSpec, index: number, ca: string[] | undefined) {
    checkSpec(spec);
    this.spec = spec;
    this.name = spec.name ?? `tunnel${index + 1}`;
    this.ref = this.name;
    this.#localHost = spec.localHost ?? "localhost";
    this.local = new LocalTarget(this.#localHost, spec.port, {
      tls: spec.localHttps
        ? {
          serverName: this.#localHost,
          caCerts: ca,
          allowInvalid: spec.allowInvalidCert === true,
        }
        : undefined,
      http: !spec.raw && !spec.tcp,
      proxyProtocol: spec.proxyProtocol === true,
    });
  }

  /** `http` or `tcp`. */
  get kind(): "http" | "tcp" {
    return this.spec.tcp ? "tcp" : "http";
  }

  /** The public URL; empty while not up. */
  get url(): string {
    return this.#grant?.url ?? "";
  }

  /** The subdomain or hostname it holds (empty for a TCP tunnel, or before its grant). */
  get subdomain(): string {
    return this.kind === "tcp" ? "" : this.#grant?.name ?? "";
  }

  /** The TCP port it holds. */
  get remotePort(): number | undefined {
    const name = this.#grant?.name;
    return name?.startsWith("tcp:") ? Number(name.slice(4)) : undefined;
  }

  /** The local address visitors are relayed to. */
  get addr(): Deno.NetAddr {
    return { transport: "tcp", hostname: this.#localHost, port: this.spec.port };
  }

  /** Why it was lost for good. */
  get error(): TunnelError | undefined {
    return this.#error;
  }

  /** Where it stands. */
  get state(): TunnelState {
    return this.#state;
  }

  /** Its id on the current control connection, while up. */
  get id(): number | undefined {
    return this.#state === "up" ? this.#grant?.id : undefined;
  }

  /** The name its lease is for: the one it holds, else the one it asks for. */
  get leaseName(): string | undefined {
    if (this.#grant) return this.#grant.name;
    if (this.spec.tcp) {
      return this.spec.remotePort === undefined ? undefined : `tcp:${this.spec.remotePort}`;
    }
    return this.spec.customDomain?.toLowerCase() ?? this.spec.subdomain?.toLowerCase();
  }

  /** Resolves once it is up or lost for good, the first time. */
  get settled(): Promise<void> {
    return this.#settled.promise;
  }

  /**
   * What to ask the server for: the name it held before (after a reconnect), or
   * the one in its spec, with the lease it holds for it (in memory or the file).
   */
  async claim(leases: LeaseKeeper, replace: boolean): Promise<TunnelClaim> {
    const name = this.leaseName;
    const lease = this.#lease ?? (name === undefined ? undefined : await leases.load(name));
    const extra = {
      ...(lease === undefined ? {} : { lease }),
      ...(replace ? { replace: true } : {}),
    };
    if (this.spec.tcp) {
      const port = this.remotePort ?? this.spec.remotePort;
      return { ref: this.ref, kind: "tcp", ...(port === undefined ? {} : { port }), ...extra };
    }
    if (this.spec.customDomain !== undefined) {
      return { ref: this.ref, kind: "http", host: this.spec.customDomain, ...extra };
    }
    const subdomain = this.#grant?.name ?? this.spec.subdomain;
    return {
      ref: this.ref,
      kind: "http",
      ...(subdomain === undefined ? {} : { subdomain }),
      ...extra,
    };
  }

  /** The server granted it on the current connection. */
  granted(grant: Extract<TunnelGrant, { ok: true }>): void {
    this.#grant = grant;
    this.#lease = grant.lease;
    this.#state = "up";
    this.takenSince = undefined;
    this.attempts = 0;
    this.#settled.resolve();
  }

  /** A renewed lease. */
  renewed(lease: string): void {
    this.#lease = lease;
  }

  /** Its `https://` URL is ready. */
  moved(url: string): void {
    if (this.#grant) this.#grant = { ...this.#grant, url };
  }

  /** Its control connection is gone: it waits to be claimed again. */
  lost(): void {
    if (this.#state === "up") this.#state = "pending";
  }

  /** Lost for good, with `error`. */
  failed(error: TunnelError): void {
    if (this.#state === "failed") return;
    this.#state = "failed";
    this.#error = error;
    this.#settled.resolve();
  }
}

/** Checks one tunnel's options; throws TypeError or RangeError naming the bad one. */
export function checkSpec(spec: TunnelSpec): void {
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) {
    throw new RangeError(`Invalid local port ${spec.port}: use 1-65535`);
  }
  if (spec.hostHeader !== undefined && !/^[\x21-\x7e]+$/.test(spec.hostHeader)) {
    throw new TypeError(`hostHeader must be printable ASCII: ${JSON.stringify(spec.hostHeader)}`);
  }
  if (spec.remotePort !== undefined) {
    if (!spec.tcp) throw new TypeError("remotePort needs tcp: true");
    if (!Number.isInteger(spec.remotePort) || spec.remotePort < 1 || spec.remotePort > 65535) {
      throw new RangeError(`Invalid remotePort ${spec.remotePort}: use 1-65535`);
    }
  }
  if (spec.tcp && (spec.subdomain !== undefined || spec.customDomain !== undefined)) {
    throw new TypeError("A TCP tunnel has a port, not a subdomain or custom domain");
  }
  if (spec.subdomain !== undefined && spec.customDomain !== undefined) {
    throw new TypeError("Give a subdomain or a custom domain, not both");
  }
  if (spec.proxyProtocol && !spec.tcp && !spec.raw) {
    throw new TypeError("proxyProtocol needs tcp or raw: HTTP visitors share app connections");
  }
}
