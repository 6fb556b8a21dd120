// A trusted proxy's PROXY header (v1 or v2), read before anything else on a
// connection: from a Deno conn on the plain port, from a node socket before
// its TLS handshake on the TLS port. The connection is then seen by everyone
// (admission, logs, the `open` sent to the client) from the visitor's address.

import type net from "node:net";
import { concatBytes } from "../bytes.ts";
import { ByteReader, closeQuietly, type Conn, deadline } from "../io.ts";
import { MAX_PROXY_HEADER_BYTES } from "../limits.ts";
import { decodeProxyHeader, type ProxyDecodeResult, type ProxyHeader } from "../proxy_protocol.ts";
import { inCidr, parseCidrList } from "../ip.ts";

/** What reading a trusted proxy's header gave: the header and the bytes read past it, or why not. */
export type HeaderRead =
  | { state: "found"; header: ProxyHeader; rest: Uint8Array }
  | { state: "failed"; reason: string };

/** Which peers may (and must) start their connections with a PROXY header. */
export interface TrustedProxies {
  /** Whether a connection from `ip` must start with a header. */
  trusts(ip: string): boolean;
}

/**
 * The trusted proxies of a server's `trustedProxies` option (CIDR ranges or
 * bare addresses, entries may be comma-separated); undefined for none. Throws
 * RangeError naming the first bad entry.
 *
 * @example
 * ```ts
 * import { trustedProxies } from "./proxy_header.ts";
 * console.log(trustedProxies(["10.0.0.0/8"])?.trusts("10.1.2.3")); // true
 * ```
 */
export function trustedProxies(entries: readonly string[] | undefined): TrustedProxies | undefined {
  if (entries === undefined || entries.length === 0) return undefined;
  const ranges = parseCidrList(entries);
  if (typeof ranges === "string") throw new RangeError(`Invalid trusted proxies: ${ranges}`);
  return { trusts: (ip) => ranges.some((range) => inCidr(ip, range)) };
}

/**
 * The visitor a header names: its source, or for a LOCAL header (a health
 * check) or an address it could not say (UNKNOWN, UNSPEC, UNIX), `own`, the
 * socket's address.
 */
export function visitorAddr(header: ProxyHeader, own: Deno.NetAddr): Deno.NetAddr {
  if (header.command !== "proxy" || !header.source) return own;
  return { transport: "tcp", hostname: header.source.address, port: header.source.port };
}

/**
 * A connection seen from the visitor a PROXY header named: `remoteAddr` is
 * theirs, the bytes read past the header come first, everything else is the
 * inner connection's (`setNoDelay` too, for the relay).
 */
export class ProxiedConn implements Conn {
  /** The visitor's address, from the header. */
  readonly remoteAddr: Deno.NetAddr;
  #conn: Conn;
  #rest: Uint8Array;

  /** `conn` as from `remoteAddr`, whose reads give `rest` first. */
  constructor(conn: Conn, remoteAddr: Deno.NetAddr, rest: Uint8Array = new Uint8Array(0)) {
    this.#conn = conn;
    this.remoteAddr = remoteAddr;
    this.#rest = rest;
  }

  /** The inner connection's local address (where the proxy connected to), if it has one. */
  get localAddr(): Deno.Addr | undefined {
    return (this.#conn as Partial<Deno.Conn>).localAddr;
  }

  /** Reads the bytes past the header first, then the inner connection. */
  async read(p: Uint8Array): Promise<number | null> {
    if (this.#rest.length === 0) return await this.#conn.read(p);
    const n = Math.min(this.#rest.length, p.length);
    p.set(this.#rest.subarray(0, n));
    this.#rest = this.#rest.subarray(n);
    return n;
  }

  /** Writes to the inner connection. */
  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  /** Half-closes the inner connection. */
  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  /** Closes the inner connection (once, however often it is called). */
  close(): void {
    closeQuietly(this.#conn);
  }

  /** Nagle off (or on) on the inner connection, if it is a TCP one. */
  setNoDelay(noDelay = true): void {
    (this.#conn as Partial<Deno.TcpConn>).setNoDelay?.(noDelay);
  }
}

/** A decoder's answer as a read's end, or undefined while a header may still be coming. */
function settle(result: ProxyDecodeResult, bytes: Uint8Array): HeaderRead | undefined {
  switch (result.state) {
    case "need-more":
      return undefined;
    case "none":
      return { state: "failed", reason: "no PROXY header" };
    case "invalid":
      return { state: "failed", reason: `invalid PROXY header: ${result.reason}` };
    case "found": {
      const { state: _, ...header } = result;
      return { state: "found", header, rest: bytes.slice(header.length) };
    }
  }
}

/**
 * Reads a PROXY header from `conn` within `timeoutMs` (at most
 * MAX_PROXY_HEADER_BYTES: the decoder refuses longer ones). At the deadline
 * `conn` is closed, the one way to end a pending read. Throws what the read
 * throws otherwise (a reset).
 */
export async function readProxyHeader(conn: Conn, timeoutMs: number): Promise<HeaderRead> {
  const reader = new ByteReader(conn, MAX_PROXY_HEADER_BYTES);
  const timer = deadline(timeoutMs, () => closeQuietly(conn));
  const late: HeaderRead = { state: "failed", reason: "no PROXY header in time" };
  try {
    for (;;) {
      const read = settle(decodeProxyHeader(reader.buffered), reader.buffered);
      if (read) return read;
      if (!await reader.fill()) {
        return timer.expired ? late : { state: "failed", reason: "closed before a PROXY header" };
      }
    }
  } catch (e) {
    if (timer.expired) return late;
    throw e;
  } finally {
    timer.clear();
  }
}

/**
 * Reads a PROXY header from a node `socket` within `timeoutMs`, before
 * anything else reads it (the TLS port's handshake). Found, the bytes read
 * past the header are put back (`unshift`) and the socket is paused, for the
 * TLS socket that wraps it next; failed, the caller destroys it.
 */
export function readSocketProxyHeader(socket: net.Socket, timeoutMs: number): Promise<HeaderRead> {
  return new Promise((resolve) => {
    let bytes: Uint8Array = new Uint8Array(0);
    const done = (read: HeaderRead): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      resolve(read);
    };
    // Bounded: the decoder says `invalid` past MAX_PROXY_HEADER_BYTES, so at
    // most that and one chunk are ever held.
    const onData = (chunk: Uint8Array): void => {
      bytes = bytes.length === 0 ? chunk : concatBytes(bytes, chunk);
      const read = settle(decodeProxyHeader(bytes), bytes);
      if (!read) return;
      socket.pause();
      if (read.state === "found" && read.rest.length > 0) socket.unshift(read.rest);
      done(read.state === "found" ? { ...read, rest: new Uint8Array(0) } : read);
    };
    const onEnd = (): void => done({ state: "failed", reason: "closed before a PROXY header" });
    const timer = setTimeout(
      () => done({ state: "failed", reason: "no PROXY header in time" }),
      timeoutMs,
    );
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
  });
}
