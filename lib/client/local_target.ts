// Where one tunnel's visitors go on this machine: the local app's dialer, the
// keep-alive pool for HTTP visitors, what the client does with HTTP, and for TCP
// and raw tunnels whether a PROXY protocol header goes first.

import { closeQuietly, writeAll } from "../io.ts";
import { encodeProxyV2, parseEndpoint } from "../proxy_protocol.ts";
import type { Duplex } from "../relay.ts";
import { AppPool } from "./app_pool.ts";
import type { ExchangeObserver } from "./exchanges.ts";
import type { VisitorInfo } from "./forwarded.ts";
import { LocalDialer } from "./local_dialer.ts";
import type { LocalTls } from "./local_tls.ts";

/** What the client does with HTTP it relays. */
export interface HttpAwareness {
  /** Host header for the local app instead of the public one. */
  hostHeader: string | undefined;
  /** Watches a visitor's exchanges (the request log, an inspector); none: nothing watches. */
  observe: ((visitor: VisitorInfo) => ExchangeObserver | undefined) | undefined;
  /** The tunnel's public host, when Set-Cookie Domain attributes above it are dropped. */
  isolateCookiesFor: string | undefined;
}

/** A tunnel's local side, as its proxy connections serve it. */
export class LocalTarget {
  /** Reaches the local app. */
  readonly dialer: LocalDialer;
  /** Keep-alive connections to the app, for HTTP visitors (none for TCP and raw tunnels). */
  readonly appPool: AppPool | undefined;
  /** What the client does with HTTP (undefined: bytes only, as for `--tcp` and `--raw`). */
  http: HttpAwareness | undefined;
  /** Whether each visitor's connection to the app starts with a PROXY protocol v2 header. */
  readonly proxyProtocol: boolean;

  /** The app at `hostname:port` (over TLS with `tls`); `http` undefined relays bytes only. */
  constructor(
    hostname: string,
    port: number,
    options: { tls?: LocalTls | undefined; http: boolean; proxyProtocol: boolean },
  ) {
    this.dialer = new LocalDialer(hostname, port, options.tls);
    this.appPool = options.http ? new AppPool(this.dialer) : undefined;
    this.http = options.http
      ? { hostHeader: undefined, observe: undefined, isolateCookiesFor: undefined }
      : undefined;
    this.proxyProtocol = options.proxyProtocol;
  }

  /**
   * A connection of its own to the app for one visitor (TLS end to end, TCP,
   * raw), with the visitor's PROXY header first when asked for.
   */
  async dialFor(
    visitor: { peer: string; dest?: string | undefined; tls: boolean },
    signal: AbortSignal,
  ): Promise<Duplex> {
    const conn = await this.dialer.dial(visitor.tls, signal);
    if (!this.proxyProtocol) return conn;
    const header = encodeProxyV2(
      parseEndpoint(visitor.peer),
      visitor.dest === undefined ? undefined : parseEndpoint(visitor.dest),
    );
    try {
      await writeAll(conn, header);
    } catch (e) {
      closeQuietly(conn);
      throw e;
    }
    return conn;
  }

  /** Closes the idle connections to the app. */
  close(): void {
    this.appPool?.close();
  }
}
