// Opening a connection to the server: TCP connect, TLS for https://, Gotunnel
// upgrade, first frame; every step under one deadline and the caller's signal.

import { concatBytes } from "../bytes.ts";
import { TunnelError } from "../errors.ts";
import { headEnd } from "../http/head.ts";
import { ByteReader, closeQuietly, deadline, writeAll } from "../io.ts";
import { HANDSHAKE_TIMEOUT_MS, MAX_SNIFF_BYTES } from "../limits.ts";
import { HTTP_PORT, HTTPS_PORT } from "../names.ts";
import { type ClientMessage, encodeFrame, encodeUpgradeRequest } from "../protocol.ts";

/** Where the server is, parsed once from its URL. */
export interface ServerTarget {
  /** The URL as given, for messages. */
  url: string;
  /** Host name or IP to connect to (IPv6 without brackets). */
  hostname: string;
  /** TCP port. */
  port: number;
  /** Value of the Host header in the upgrade request. */
  host: string;
  /** Whether to speak TLS to the server (`https://`). */
  tls: boolean;
  /** Extra CA certificates (PEM) to trust for the server's certificate. */
  caCerts?: string[];
}

/** Parses `http(s)://host[:port]`; throws TypeError with a one-line reason otherwise. */
export function parseServerUrl(url: string, caCerts?: string[]): ServerTarget {
  let parsed: URL;
  try {
    parsed = new URL(url.includes("://") ? url : `http://${url}`);
  } catch {
    throw new TypeError(`Invalid server URL ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new TypeError(
      `Unsupported scheme "${parsed.protocol}" in server URL ${JSON.stringify(url)}: ` +
        "use http:// or https://",
    );
  }
  if (parsed.pathname !== "/" || parsed.search || parsed.hash || parsed.username) {
    throw new TypeError(`Server URL ${JSON.stringify(url)} must be only scheme, host and port`);
  }
  const tls = parsed.protocol === "https:";
  return {
    url: parsed.origin,
    hostname: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: parsed.port === "" ? (tls ? HTTPS_PORT : HTTP_PORT) : Number(parsed.port),
    host: parsed.host,
    tls,
    ...(caCerts ? { caCerts } : {}),
  };
}

/** A sentence for a failed connect or TLS handshake that says what to try. */
function explain(target: ServerTarget, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof Deno.errors.ConnectionRefused) {
    return `connection refused (is a Gotunnel server running at ${target.url}?)`;
  }
  if (/UnknownIssuer|certificate/i.test(message)) {
    return `${message} (a server with a private CA? pass its certificate with --ca FILE)`;
  }
  if (target.tls && /corrupt message|InvalidContentType|record overflow/i.test(message)) {
    return `the server does not speak TLS on port ${target.port} ` +
      `(try --server http://${target.host})`;
  }
  if (target.tls && error instanceof Deno.errors.UnexpectedEof) {
    return `the server closed the connection during the TLS handshake ` +
      `(a plain http:// port? try --server http://${target.host})`;
  }
  return message;
}

/**
 * Connects to the server, sends the upgrade request and `first` in one write,
 * and reads the `101` answer. The reader holds whatever followed it. Connect,
 * TLS handshake and upgrade together get HANDSHAKE_TIMEOUT_MS; `signal` ends
 * the attempt at any point.
 */
export async function dialServer(
  target: ServerTarget,
  first: ClientMessage,
  capacity: number,
  signal?: AbortSignal,
  after: Uint8Array = new Uint8Array(0),
): Promise<{ conn: Deno.Conn; reader: ByteReader }> {
  const stopped = new AbortController();
  let conn: Deno.Conn | undefined;
  const stop = (): void => {
    stopped.abort();
    if (conn) closeQuietly(conn);
  };
  const timer = deadline(HANDSHAKE_TIMEOUT_MS, stop);
  signal?.addEventListener("abort", stop);
  if (signal?.aborted) stop();
  const why = (e: unknown): string =>
    timer.expired
      ? `no answer in ${HANDSHAKE_TIMEOUT_MS} ms`
      : signal?.aborted
      ? "cancelled"
      : explain(target, e);
  try {
    try {
      const tcp = await Deno.connect({
        hostname: target.hostname,
        port: target.port,
        signal: stopped.signal,
      });
      tcp.setNoDelay(true);
      conn = tcp;
      if (stopped.signal.aborted) throw new Deno.errors.Interrupted("cancelled");
      if (target.tls) {
        const tls = await Deno.startTls(tcp, {
          hostname: target.hostname,
          ...(target.caCerts ? { caCerts: target.caCerts } : {}),
        });
        conn = tls;
        // Closing a TlsConn in mid-handshake (on the deadline) ends this wait,
        // though Deno 2.9.6 keeps its TCP socket until the peer closes it.
        await tls.handshake();
      }
    } catch (e) {
      throw new TunnelError("connect", `Cannot connect to ${target.url}: ${why(e)}`, { cause: e });
    }
    await writeAll(
      conn,
      concatBytes(encodeUpgradeRequest(target.host), encodeFrame(first), after),
    );
    const reader = new ByteReader(conn, Math.max(capacity, MAX_SNIFF_BYTES));
    let end = -1;
    while ((end = headEnd(reader.buffered, 0)) < 0) {
      if (reader.buffered.length >= MAX_SNIFF_BYTES || !await reader.fill()) {
        const hint = target.tls ? "" : ` (an https:// server? try --server https://${target.host})`;
        throw new TunnelError(
          "protocol",
          `Cannot connect to ${target.url}: no Gotunnel upgrade answer${hint}`,
        );
      }
    }
    const statusLine = new TextDecoder().decode(reader.buffered.subarray(0, end)).split(/\r?\n/)[0];
    if (!/^HTTP\/1\.1 101 /.test(statusLine ?? "")) {
      throw new TunnelError(
        "protocol",
        `Cannot connect to ${target.url}: server answered "${statusLine}" instead of a ` +
          `Gotunnel upgrade (is it a Gotunnel server?)`,
      );
    }
    reader.consume(end);
    return { conn, reader };
  } catch (e) {
    if (conn) closeQuietly(conn);
    if (e instanceof TunnelError) throw e;
    throw new TunnelError("connect", `Cannot connect to ${target.url}: ${why(e)}`, { cause: e });
  } finally {
    timer.clear();
    signal?.removeEventListener("abort", stop);
  }
}
