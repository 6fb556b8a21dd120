// Opening a connection to the server: TCP connect, Gotunnel upgrade, first frame.

import { TunnelError } from "../errors.ts";
import { ByteReader, closeQuietly, deadline, writeAll } from "../io.ts";
import { describeError } from "../log.ts";
import {
  type ClientMessage,
  concatBytes,
  encodeFrame,
  encodeUpgradeRequest,
  HANDSHAKE_TIMEOUT_MS,
  MAX_SNIFF_BYTES,
} from "../protocol.ts";

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
      `Unsupported server URL scheme "${parsed.protocol}": use http:// or https://`,
    );
  }
  if (parsed.pathname !== "/" || parsed.search || parsed.hash || parsed.username) {
    throw new TypeError(`Server URL ${JSON.stringify(url)} must be only scheme, host and port`);
  }
  const tls = parsed.protocol === "https:";
  return {
    url: parsed.origin,
    hostname: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: parsed.port === "" ? (tls ? 443 : 80) : Number(parsed.port),
    host: parsed.host,
    tls,
    ...(caCerts ? { caCerts } : {}),
  };
}

const HEAD_END = new Uint8Array([13, 10, 13, 10]);

function indexOfHeadEnd(bytes: Uint8Array): number {
  outer: for (let i = 0; i + 4 <= bytes.length; i++) {
    for (let j = 0; j < 4; j++) if (bytes[i + j] !== HEAD_END[j]) continue outer;
    return i + 4;
  }
  return -1;
}

/**
 * Connects to the server, sends the upgrade request and `first` in one write,
 * and reads the `101` answer. The reader holds whatever followed it. Gives up
 * after HANDSHAKE_TIMEOUT_MS, or when `signal` aborts.
 */
export async function dialServer(
  target: ServerTarget,
  first: ClientMessage,
  capacity: number,
  signal?: AbortSignal,
): Promise<{ conn: Deno.Conn; reader: ByteReader }> {
  let conn: Deno.Conn;
  try {
    if (target.tls) {
      conn = await Deno.connectTls({
        hostname: target.hostname,
        port: target.port,
        ...(target.caCerts ? { caCerts: target.caCerts } : {}),
      });
    } else {
      const tcp = await Deno.connect({ hostname: target.hostname, port: target.port });
      tcp.setNoDelay(true);
      conn = tcp;
    }
  } catch (e) {
    const why = e instanceof Deno.errors.ConnectionRefused
      ? "connection refused"
      : e instanceof Error
      ? e.message
      : String(e);
    throw new TunnelError("connect", `Cannot connect to ${target.url}: ${why}`, { cause: e });
  }
  const stop = (): void => closeQuietly(conn);
  const timer = deadline(HANDSHAKE_TIMEOUT_MS, stop);
  signal?.addEventListener("abort", stop);
  if (signal?.aborted) stop();
  try {
    await writeAll(conn, concatBytes(encodeUpgradeRequest(target.host), encodeFrame(first)));
    const reader = new ByteReader(conn, Math.max(capacity, MAX_SNIFF_BYTES));
    let end = -1;
    while ((end = indexOfHeadEnd(reader.buffered)) < 0) {
      if (reader.buffered.length >= MAX_SNIFF_BYTES || !await reader.fill()) {
        throw new TunnelError(
          "protocol",
          `Cannot connect to ${target.url}: no Gotunnel upgrade answer (is it a Gotunnel server?)`,
        );
      }
    }
    const statusLine = new TextDecoder().decode(reader.buffered.subarray(0, end)).split("\r\n")[0];
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
    closeQuietly(conn);
    if (e instanceof TunnelError) throw e;
    const why = timer.expired ? `no answer in ${HANDSHAKE_TIMEOUT_MS} ms` : describeError(e);
    throw new TunnelError("connect", `Cannot connect to ${target.url}: ${why}`, { cause: e });
  } finally {
    timer.clear();
    signal?.removeEventListener("abort", stop);
  }
}
