// Hostnames and subdomains: the one normalisation used by registration and routing.

import { toBase64url } from "./bytes.ts";
import { RANDOM_SUBDOMAIN_LENGTH } from "./limits.ts";

/** The default port of `http://` URLs. */
export const HTTP_PORT = 80;
/** The default port of `https://` URLs. */
export const HTTPS_PORT = 443;

const SUBDOMAIN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const REG_NAME = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6_CHARS = /^[0-9a-f:.]+$/;
const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Whether `name` (already lowercase) is a valid subdomain label. */
export function isSubdomain(name: string): boolean {
  return SUBDOMAIN.test(name);
}

/** Lowercases a requested subdomain and says why it is unusable, if it is. */
export function checkSubdomain(name: string): { ok: true; name: string } | {
  ok: false;
  reason: string;
} {
  const lower = name.toLowerCase();
  if (SUBDOMAIN.test(lower)) return { ok: true, name: lower };
  return {
    ok: false,
    reason: `Invalid subdomain ${JSON.stringify(name)}: use 1-63 characters of a-z, 0-9 and "-", ` +
      `not starting or ending with "-"`,
  };
}

/** A random subdomain of lowercase letters and digits, drawn without modulo bias. */
export function randomSubdomain(length: number = RANDOM_SUBDOMAIN_LENGTH): string {
  let out = "";
  const bytes = new Uint8Array(length * 2);
  while (out.length < length) {
    crypto.getRandomValues(bytes);
    for (const b of bytes) {
      if (b < 252 && out.length < length) out += ALPHABET[b % 36];
    }
  }
  return out;
}

/** A normalised hostname: lowercase, no port, no trailing dot, IPv6 without brackets. */
export type NormalizedHost = { host: string; ip: boolean };

/**
 * Normalises the authority of a Host header or URL: strips the port (which must
 * be 1-5 digits up to 65535), lowercases, drops one trailing dot. Returns a
 * reason string when the value is not a valid host.
 */
export function normalizeHost(value: string): NormalizedHost | string {
  let host = value;
  let port: string | undefined;
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    if (close < 0) return "unterminated IPv6 literal";
    const rest = host.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) return "junk after IPv6 literal";
    if (rest !== "") port = rest.slice(1);
    host = host.slice(1, close).toLowerCase();
    if (!IPV6_CHARS.test(host) || !host.includes(":")) return "bad IPv6 literal";
    if (port !== undefined && !validPort(port)) return `bad port ${JSON.stringify(port)}`;
    return { host, ip: true };
  }
  const colon = host.indexOf(":");
  if (colon >= 0) {
    port = host.slice(colon + 1);
    host = host.slice(0, colon);
    if (!validPort(port)) return `bad port ${JSON.stringify(port)}`;
  }
  host = host.toLowerCase();
  if (host.endsWith(".")) host = host.slice(0, -1);
  if (host === "" || host.length > 253 || !REG_NAME.test(host)) return "bad host name";
  return { host, ip: IPV4.test(host) };
}

function validPort(port: string): boolean {
  return /^\d{1,5}$/.test(port) && Number(port) <= 65535;
}

/** Where a normalised host routes on a server for `domain`. */
export type Route =
  | { kind: "apex" }
  | { kind: "tunnel"; name: string }
  | { kind: "other" };

/**
 * Routes a normalised host: the domain itself and IP literals are the server's
 * own pages, `<name>.<domain>` with a valid name is a tunnel, anything else
 * (another domain, a nested subdomain) is `other`.
 */
export function routeHost(host: NormalizedHost, domain: string): Route {
  if (host.ip || host.host === domain) return { kind: "apex" };
  const suffix = "." + domain;
  if (!host.host.endsWith(suffix)) return { kind: "other" };
  const name = host.host.slice(0, -suffix.length);
  return SUBDOMAIN.test(name) ? { kind: "tunnel", name } : { kind: "other" };
}

/** Compares two strings in time that depends only on their lengths. */
export function timingSafeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ (y[i % (y.length || 1)] ?? 0);
  return diff === 0;
}

/** A random token of `bytes` bytes, base64url-encoded. */
export function randomToken(bytes: number): string {
  return toBase64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** Formats `host:port` for a URL, bracketing IPv6 and dropping `defaultPort` (-1: keep every port). */
export function hostWithPort(host: string, port: number, defaultPort = HTTP_PORT): string {
  const h = host.includes(":") ? `[${host}]` : host;
  return port === defaultPort ? h : `${h}:${port}`;
}
