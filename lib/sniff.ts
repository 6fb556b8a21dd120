// Routing from the first bytes of a connection: HTTP Host or TLS SNI (pure, no I/O).

import { latin1Text } from "./bytes.ts";
import { parseHead } from "./http/head.ts";
import { MAX_SNIFF_BYTES } from "./limits.ts";
import { normalizeHost } from "./names.ts";

/** An HTTP request head, as far as routing needs it. */
export type SniffedHttp = {
  state: "http";
  method: string;
  target: string;
  /** Normalised Host: lowercase, no port, no trailing dot. */
  host: string;
  /** Whether the host is an IP literal. */
  ip: boolean;
  /** Lowercased `Upgrade` header, if any. */
  upgrade: string | undefined;
  /** Bytes up to and including the blank line that ends the head. */
  headLength: number;
};

/** A TLS ClientHello, as far as routing needs it. */
export type SniffedTls = {
  state: "tls";
  /** Normalised server name from the SNI extension, if the client sent one. */
  serverName: string | undefined;
};

/**
 * What the first bytes of a connection say. `invalid` carries the HTTP status to
 * answer with when the bytes were recognisably HTTP; without one, close.
 */
export type SniffResult =
  | SniffedHttp
  | SniffedTls
  | { state: "need-more" }
  | { state: "invalid"; reason: string; status?: 400 | 431 };

const TLS_HANDSHAKE = 0x16;
const TLS_CLIENT_HELLO = 1;
const TLS_RECORD_HEADER = 5;
const MAX_TLS_RECORD = 16384 + 2048;
const SNI_EXTENSION = 0;
const SNI_HOST_NAME = 0;
const MAX_METHOD_LENGTH = 32;

/**
 * Tells TLS from HTTP by the first byte, and sniffs with the matching parser.
 *
 * @example Route a connection by its first bytes
 * ```ts
 * import { sniff } from "@gotunnel/gotunnel";
 * const first = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: demo.tunnel.example\r\n\r\n");
 * const result = sniff(first);
 * if (result.state === "http") console.log(result.host); // "demo.tunnel.example"
 * ```
 */
export function sniff(bytes: Uint8Array, maxBytes: number = MAX_SNIFF_BYTES): SniffResult {
  if (bytes.length === 0) return { state: "need-more" };
  const first = bytes[0]!;
  if (first === TLS_HANDSHAKE) return sniffTlsSni(bytes, maxBytes);
  if (first >= 0x41 && first <= 0x5a) return sniffHttpHost(bytes, maxBytes);
  return { state: "invalid", reason: "neither HTTP nor TLS" };
}

const bad = (reason: string): SniffResult => ({ state: "invalid", reason, status: 400 });

/**
 * Reads the Host of an HTTP/1.x request head (RFC 9112) with the one head
 * parser: a malformed head, a missing or repeated Host, a malformed Host or an
 * absolute-form target naming another host is 400; a head longer than
 * `maxBytes` is 431. What cannot start a request line is closed at once.
 *
 * @example A head that is not complete yet
 * ```ts
 * import { sniffHttpHost } from "@gotunnel/gotunnel";
 * const part = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: de");
 * console.log(sniffHttpHost(part).state); // "need-more"
 * ```
 */
export function sniffHttpHost(bytes: Uint8Array, maxBytes: number = MAX_SNIFF_BYTES): SniffResult {
  // Reject what cannot become a request line early, so garbage never waits for the deadline.
  // Methods are tokens; every registered one is uppercase letters, "-" and "_". Holding
  // them to that tells an SSH banner ("SSH-2.0-...") from HTTP by its fifth byte.
  for (let i = 0; i < Math.min(bytes.length, MAX_METHOD_LENGTH + 1); i++) {
    const b = bytes[i]!;
    if (b === 0x20) break;
    if (i === MAX_METHOD_LENGTH || !isMethodChar(b)) {
      return { state: "invalid", reason: "not an HTTP request line" };
    }
  }
  const head = parseHead(bytes.subarray(0, maxBytes), "request");
  if (head === null) {
    if (bytes.length < maxBytes) return { state: "need-more" };
    return { state: "invalid", reason: `request head exceeds ${maxBytes} bytes`, status: 431 };
  }
  if (typeof head === "string") {
    if (head !== "malformed request line") return bad(head);
    // A first line that does not even claim to be HTTP: not a visitor to answer.
    const lf = bytes.indexOf(0x0a);
    return latin1Text(bytes.subarray(0, lf < 0 ? bytes.length : lf)).includes(" HTTP/")
      ? bad(head)
      : { state: "invalid", reason: "not an HTTP request line" };
  }
  const hosts = head.values("host");
  if (hosts.length === 0) return bad("missing Host header");
  if (hosts.length > 1) return bad("more than one Host header");
  const host = normalizeHost(hosts[0]!);
  if (typeof host === "string") return bad(`bad Host header: ${host}`);
  const target = head.target!;
  const absolute = /^https?:\/\/([^/?#]*)/i.exec(target);
  if (absolute) {
    const authority = absolute[1]!;
    const targetHost = authority.includes("@") ? "userinfo" : normalizeHost(authority);
    if (typeof targetHost === "string" || targetHost.host !== host.host) {
      return bad("request target names another host than Host");
    }
  }
  return {
    state: "http",
    method: head.method!,
    target,
    host: host.host,
    ip: host.ip,
    upgrade: head.get("upgrade")?.toLowerCase(),
    headLength: head.bytes.length,
  };
}

function isMethodChar(b: number): boolean {
  return (b >= 0x41 && b <= 0x5a) || b === 0x2d || b === 0x5f;
}

const malformed = (what: string): SniffResult => ({
  state: "invalid",
  reason: `malformed ClientHello: ${what}`,
});

/**
 * Reads the server name of a TLS ClientHello, which may span several records
 * and arrive in any number of pieces. A ClientHello that claims more than
 * `maxBytes`, or is malformed, is invalid.
 *
 * @example Anything that is not a ClientHello is invalid
 * ```ts
 * import { sniffTlsSni } from "@gotunnel/gotunnel";
 * console.log(sniffTlsSni(Uint8Array.of(0x16, 3, 1, 0, 5, 2, 0, 0, 1, 0)).state); // "invalid"
 * ```
 */
export function sniffTlsSni(bytes: Uint8Array, maxBytes: number = MAX_SNIFF_BYTES): SniffResult {
  // Walk the record headers without copying; gather the handshake bytes only once
  // the whole ClientHello is there, so a trickle costs O(records) per call.
  const fragments: [number, number][] = [];
  let total = 0;
  let at = 0;
  let needed = -1; // handshake message length including its 4-byte header, once known
  while (needed < 0 || total < needed) {
    if (at + TLS_RECORD_HEADER > bytes.length) return needMoreTls(bytes, maxBytes);
    if (bytes[at] !== TLS_HANDSHAKE) return malformed("record is not a handshake");
    if (bytes[at + 1] !== 3) return malformed("bad record version");
    const length = (bytes[at + 3]! << 8) | bytes[at + 4]!;
    if (length === 0 || length > MAX_TLS_RECORD) return malformed("bad record length");
    const start = at + TLS_RECORD_HEADER;
    const end = Math.min(start + length, bytes.length);
    fragments.push([start, end]);
    total += end - start;
    if (needed < 0 && total >= 4) {
      const header = gather(bytes, fragments, 4);
      if (header[0] !== TLS_CLIENT_HELLO) return malformed("first message is not ClientHello");
      needed = 4 + ((header[1]! << 16) | (header[2]! << 8) | header[3]!);
      if (needed > maxBytes) return tooLarge(maxBytes);
    }
    if (end < start + length) {
      return needed >= 0 && total >= needed ? parseHello(bytes, fragments, needed) : needMoreTls(
        bytes,
        maxBytes,
      );
    }
    at = end;
  }
  return parseHello(bytes, fragments, needed);
}

function parseHello(bytes: Uint8Array, fragments: [number, number][], needed: number): SniffResult {
  return parseClientHello(gather(bytes, fragments, needed).subarray(4));
}

/** The first `length` bytes of the concatenated fragments. */
function gather(bytes: Uint8Array, fragments: [number, number][], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let filled = 0;
  for (const [start, end] of fragments) {
    const take = Math.min(end - start, length - filled);
    out.set(bytes.subarray(start, start + take), filled);
    filled += take;
    if (filled === length) break;
  }
  return out;
}

function tooLarge(maxBytes: number): SniffResult {
  return { state: "invalid", reason: `ClientHello exceeds ${maxBytes} bytes` };
}

function needMoreTls(bytes: Uint8Array, maxBytes: number): SniffResult {
  return bytes.length >= maxBytes ? tooLarge(maxBytes) : { state: "need-more" };
}

function parseClientHello(body: Uint8Array): SniffResult {
  let at = 2 + 32; // legacy_version, random
  const u8 = (): number => body[at++] ?? -1;
  const u16 = (): number => {
    const hi = body[at];
    const lo = body[at + 1];
    at += 2;
    return hi === undefined || lo === undefined ? -1 : (hi << 8) | lo;
  };
  const sessionId = u8();
  if (sessionId < 0 || sessionId > 32) return malformed("session id");
  at += sessionId;
  const suites = u16();
  if (suites < 2 || suites % 2 !== 0) return malformed("cipher suites");
  at += suites;
  const compression = u8();
  if (compression < 1) return malformed("compression methods");
  at += compression;
  if (at > body.length) return malformed("truncated before extensions");
  if (at === body.length) return { state: "tls", serverName: undefined };
  const extensionsLength = u16();
  const extensionsEnd = at + extensionsLength;
  if (extensionsLength < 0 || extensionsEnd !== body.length) return malformed("extensions length");
  let serverName: string | undefined;
  while (at < extensionsEnd) {
    const type = u16();
    const length = u16();
    const end = at + length;
    if (type < 0 || length < 0 || end > extensionsEnd) return malformed("extension length");
    if (type === SNI_EXTENSION) {
      if (serverName !== undefined) return malformed("two server_name extensions");
      const name = readServerName(body, at, end);
      if (name === null) return malformed("server_name extension");
      serverName = name;
    }
    at = end;
  }
  return { state: "tls", serverName };
}

/** The first host_name in a server_name extension, `undefined` without one, null if malformed. */
function readServerName(body: Uint8Array, start: number, end: number): string | undefined | null {
  if (end - start < 2) return null;
  const listEnd = start + 2 + ((body[start]! << 8) | body[start + 1]!);
  if (listEnd !== end) return null;
  let at = start + 2;
  while (at < listEnd) {
    if (at + 3 > listEnd) return null;
    const type = body[at]!;
    const length = (body[at + 1]! << 8) | body[at + 2]!;
    at += 3;
    if (at + length > listEnd || length === 0) return null;
    if (type === SNI_HOST_NAME) {
      const name = latin1Text(body.subarray(at, at + length));
      if (name.includes(":")) return null;
      const host = normalizeHost(name);
      return typeof host === "string" ? null : host.host;
    }
    at += length;
  }
  return undefined;
}
