// Connecting to the local app: plain TCP or TLS (--local-https), both loopback
// addresses for `localhost`, every attempt bounded by a deadline and a signal.

import { closeQuietly } from "../io.ts";
import { LOCAL_DIAL_TIMEOUT_MS } from "../limits.ts";
import { hostWithPort } from "../names.ts";
import type { Duplex } from "../relay.ts";
import type { LocalTls } from "./local_tls.ts";

/**
 * Connects to the local app. `localhost` means either loopback address: dev
 * servers bind to 127.0.0.1 or to ::1 depending on the runtime, so on a refusal
 * the other one is tried, and the one that answered is tried first next time.
 */
export class LocalDialer {
  /** `host:port` (with `https://` for a TLS app), for messages. */
  readonly where: string;
  #candidates: string[];
  #port: number;
  #tls: LocalTls | undefined;

  /** A dialer for `hostname:port`, speaking TLS to it when `tls` is given. */
  constructor(hostname: string, port: number, tls?: LocalTls) {
    this.where = `${tls ? "https://" : ""}${hostWithPort(hostname, port, -1)}`;
    this.#candidates = hostname === "localhost" ? ["127.0.0.1", "::1"] : [hostname];
    this.#port = port;
    this.#tls = tls;
  }

  /**
   * Connects (LOCAL_DIAL_TIMEOUT_MS at most per address, TLS handshake
   * included), Nagle off. `plain` skips TLS: for visitors whose own TLS goes
   * to the app end to end. `signal` ends the attempt at once.
   */
  async dial(plain = false, signal?: AbortSignal): Promise<Duplex> {
    let error: unknown;
    for (const hostname of [...this.#candidates]) {
      try {
        const conn = await dialOnce(hostname, this.#port, plain ? undefined : this.#tls, signal);
        if (hostname !== this.#candidates[0]) {
          this.#candidates = [hostname, ...this.#candidates.filter((h) => h !== hostname)];
        }
        return conn;
      } catch (e) {
        error ??= e;
        if (!(e instanceof Deno.errors.ConnectionRefused)) break;
      }
    }
    throw error;
  }
}

/** Connects (and shakes hands, with `tls`), giving up after LOCAL_DIAL_TIMEOUT_MS or on `signal`. */
async function dialOnce(
  hostname: string,
  port: number,
  tls: LocalTls | undefined,
  signal: AbortSignal | undefined,
): Promise<Duplex> {
  const stop = new AbortController();
  const timer = setTimeout(
    () => stop.abort(new Deno.errors.TimedOut(`no answer in ${LOCAL_DIAL_TIMEOUT_MS} ms`)),
    LOCAL_DIAL_TIMEOUT_MS,
  );
  const cancel = (): void => stop.abort(new Deno.errors.Interrupted("cancelled"));
  signal?.addEventListener("abort", cancel, { once: true });
  if (signal?.aborted) cancel();
  try {
    if (tls) {
      // Loaded only for --local-https: node:tls costs a client ~5 MiB of RSS.
      const { connectLocalTls } = await import("./local_tls.ts");
      return await connectLocalTls(hostname, port, tls, stop.signal);
    }
    const tcp = await Deno.connect({ hostname, port, signal: stop.signal }).catch((e) => {
      throw stop.signal.aborted ? stop.signal.reason : e;
    });
    if (stop.signal.aborted) throw closeQuietly(tcp), stop.signal.reason;
    tcp.setNoDelay(true);
    return tcp;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", cancel);
  }
}
