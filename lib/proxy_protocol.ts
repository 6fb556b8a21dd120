// The PROXY protocol (HAProxy, versions 1 and 2): a header in front of a TCP
// stream that carries the original client's address. Pure: an encoder of
// version 2 (the client writes it to a local app with --proxy-protocol) and a
// decoder of both versions over a byte prefix (for a server behind a trusted
// proxy). Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt

import { ipv4Bytes, ipv6Bytes, ipv6Text } from "./ip.ts";
import { MAX_PROXY_HEADER_BYTES } from "./limits.ts";

/** The 12 bytes every version 2 header starts with. */
export const PROXY_V2_SIGNATURE: Uint8Array = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
);
/** A version 1 header starts with these bytes... */
const V1_PREFIX = new TextEncoder().encode("PROXY ");
/** ...and is at most this long, CRLF included. */
export const MAX_PROXY_V1_BYTES = 107;
/** The fixed part of a version 2 header: signature, version and command, family, length. */
const V2_FIXED_BYTES = 16;
/** The longest version 2 header this decoder takes (addresses and TLVs), like HAProxy's. */
export const MAX_PROXY_V2_BYTES: number = MAX_PROXY_HEADER_BYTES;

/** An address and port of one end of the proxied connection. */
export interface ProxyEndpoint {
  /** An IPv4 address (`203.0.113.7`) or an IPv6 one without brackets (`2001:db8::1`). */
  address: string;
  /** Its TCP port. */
  port: number;
}

/** A decoded header. */
export interface ProxyHeader {
  /** 1 (text) or 2 (binary). */
  version: 1 | 2;
  /**
   * `proxy`: the connection was relayed for `source`; `local`: the proxy's own
   * connection (a health check), or an address family it could not say (v1
   * `UNKNOWN`, v2 `UNSPEC`): use the connection's own addresses.
   */
  command: "proxy" | "local";
  /** The original client, for `proxy` with a known family. */
  source?: ProxyEndpoint;
  /** The address the client connected to. */
  destination?: ProxyEndpoint;
  /** Bytes the header took: the stream's own bytes start after them. */
  length: number;
}

/** What {@linkcode decodeProxyHeader} found in a prefix of a stream. */
export type ProxyDecodeResult =
  | ({ state: "found" } & ProxyHeader)
  /** A header may be coming: read more bytes and try again. */
  | { state: "need-more" }
  /** The stream does not start with a PROXY header. */
  | { state: "none" }
  /** It starts like one but is malformed: close the connection. */
  | { state: "invalid"; reason: string };

/**
 * Encodes a version 2 header saying that `source` connected to
 * `destination`; without them (or with addresses that do not parse), a LOCAL
 * header (the receiver uses the connection's own addresses). An IPv4 address
 * paired with an IPv6 one is sent as IPv4-mapped IPv6.
 *
 * @example A visitor's address for an app behind the tunnel
 * ```ts
 * import { encodeProxyV2 } from "@gotunnel/gotunnel";
 * const header = encodeProxyV2(
 *   { address: "203.0.113.7", port: 51000 },
 *   { address: "192.0.2.1", port: 20022 },
 * );
 * console.log(header.length); // 28
 * ```
 */
export function encodeProxyV2(source?: ProxyEndpoint, destination?: ProxyEndpoint): Uint8Array {
  const local = (): Uint8Array => {
    const out = new Uint8Array(V2_FIXED_BYTES);
    out.set(PROXY_V2_SIGNATURE);
    out[12] = 0x20; // version 2, LOCAL
    return out; // family UNSPEC, no address bytes
  };
  if (!source || !destination) return local();
  const ports = [source.port, destination.port];
  if (ports.some((p) => !Number.isInteger(p) || p < 0 || p > 65535)) return local();
  let src: Uint8Array | undefined = ipv4Bytes(source.address);
  let dst: Uint8Array | undefined = ipv4Bytes(destination.address);
  if (!src || !dst) {
    const mapped = (a: string): Uint8Array | undefined =>
      ipv4Bytes(a) ? ipv6Bytes(`::ffff:${a}`) : ipv6Bytes(a);
    src = mapped(source.address);
    dst = mapped(destination.address);
  }
  if (!src || !dst) return local();
  const v4 = src.length === 4;
  const addressBytes = v4 ? 12 : 36;
  const out = new Uint8Array(V2_FIXED_BYTES + addressBytes);
  out.set(PROXY_V2_SIGNATURE);
  out[12] = 0x21; // version 2, PROXY
  out[13] = v4 ? 0x11 : 0x21; // TCP over IPv4 or IPv6
  out[14] = 0;
  out[15] = addressBytes;
  out.set(src, 16);
  out.set(dst, 16 + src.length);
  const view = new DataView(out.buffer);
  view.setUint16(16 + src.length * 2, source.port);
  view.setUint16(18 + src.length * 2, destination.port);
  return out;
}

/** Whether `bytes` (maybe shorter) agrees with `prefix` as far as both go. */
function agrees(bytes: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(bytes.length, prefix.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/**
 * Decodes a PROXY header (version 1 or 2) at the start of `bytes`, the first
 * bytes of a stream: `found` with the addresses and the header's length,
 * `need-more` while a header may still be arriving, `none` when the stream
 * does not start with one, `invalid` for a malformed one. Takes whatever
 * prefix it is given (a byte at a time works).
 *
 * @example Read the client's address from a version 1 header
 * ```ts
 * import { decodeProxyHeader } from "@gotunnel/gotunnel";
 * const bytes = new TextEncoder().encode("PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\nGET /");
 * const result = decodeProxyHeader(bytes);
 * if (result.state === "found") console.log(result.source?.address, result.length); // 203.0.113.7 44
 * ```
 */
export function decodeProxyHeader(bytes: Uint8Array): ProxyDecodeResult {
  if (bytes.length === 0) return { state: "need-more" };
  if (agrees(bytes, PROXY_V2_SIGNATURE)) {
    return bytes.length < PROXY_V2_SIGNATURE.length ? { state: "need-more" } : decodeV2(bytes);
  }
  if (agrees(bytes, V1_PREFIX)) {
    return bytes.length < V1_PREFIX.length ? { state: "need-more" } : decodeV1(bytes);
  }
  return { state: "none" };
}

/**
 * Whether a stream starts with a PROXY header's signature, without decoding
 * it: `v1` once `PROXY ` is there, `v2` once the 12-byte signature is,
 * `maybe` while the bytes so far agree with one of them, `no` otherwise. For a
 * server that refuses headers from untrusted peers (they need not be whole).
 *
 * @example A request from a proxy the server does not trust
 * ```ts
 * import { proxySignature } from "./proxy_protocol.ts";
 * console.log(proxySignature(new TextEncoder().encode("PROXY TCP4 "))); // "v1"
 * console.log(proxySignature(new TextEncoder().encode("POST /"))); // "no"
 * ```
 */
export function proxySignature(bytes: Uint8Array): "v1" | "v2" | "maybe" | "no" {
  if (agrees(bytes, PROXY_V2_SIGNATURE)) {
    return bytes.length >= PROXY_V2_SIGNATURE.length ? "v2" : "maybe";
  }
  if (agrees(bytes, V1_PREFIX)) return bytes.length >= V1_PREFIX.length ? "v1" : "maybe";
  return "no";
}

function decodeV2(bytes: Uint8Array): ProxyDecodeResult {
  if (bytes.length < V2_FIXED_BYTES) return { state: "need-more" };
  const versionCommand = bytes[12]!;
  if (versionCommand >> 4 !== 2) return { state: "invalid", reason: "not version 2" };
  const command = versionCommand & 0x0f;
  if (command > 1) return { state: "invalid", reason: `unknown command ${command}` };
  const family = bytes[13]!;
  const length = (bytes[14]! << 8) | bytes[15]!;
  const total = V2_FIXED_BYTES + length;
  if (total > MAX_PROXY_V2_BYTES) {
    return { state: "invalid", reason: `a header of ${total} bytes is too long` };
  }
  if (bytes.length < total) return { state: "need-more" };
  const header: ProxyHeader = { version: 2, command: "local", length: total };
  if (command === 0) return { state: "found", ...header }; // LOCAL: addresses, if any, ignored
  const body = bytes.subarray(V2_FIXED_BYTES, total);
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  const addressFamily = family >> 4;
  const transport = family & 0x0f;
  if (addressFamily === 0) return { state: "found", ...header }; // UNSPEC
  if (transport !== 1 && transport !== 2) {
    return { state: "invalid", reason: `unknown transport ${transport}` };
  }
  if (addressFamily === 1) {
    if (length < 12) return { state: "invalid", reason: "IPv4 addresses cut short" };
    return {
      state: "found",
      ...header,
      command: "proxy",
      source: { address: body.subarray(0, 4).join("."), port: view.getUint16(8) },
      destination: { address: body.subarray(4, 8).join("."), port: view.getUint16(10) },
    };
  }
  if (addressFamily === 2) {
    if (length < 36) return { state: "invalid", reason: "IPv6 addresses cut short" };
    return {
      state: "found",
      ...header,
      command: "proxy",
      source: { address: ipv6Text(body.subarray(0, 16)), port: view.getUint16(32) },
      destination: { address: ipv6Text(body.subarray(16, 32)), port: view.getUint16(34) },
    };
  }
  if (addressFamily === 3) return { state: "found", ...header }; // UNIX: no IP to give
  return { state: "invalid", reason: `unknown address family ${addressFamily}` };
}

function decodeV1(bytes: Uint8Array): ProxyDecodeResult {
  const limit = Math.min(bytes.length, MAX_PROXY_V1_BYTES);
  let end = -1;
  for (let i = V1_PREFIX.length; i < limit; i++) {
    const b = bytes[i]!;
    if (b === 0x0d) {
      end = i;
      break;
    }
    if (b < 0x20 || b > 0x7e) return { state: "invalid", reason: "a byte that is not text" };
  }
  if (end < 0) {
    return bytes.length >= MAX_PROXY_V1_BYTES
      ? { state: "invalid", reason: `no CRLF within ${MAX_PROXY_V1_BYTES} bytes` }
      : { state: "need-more" };
  }
  if (end + 1 >= bytes.length) return { state: "need-more" };
  if (bytes[end + 1] !== 0x0a) return { state: "invalid", reason: "CR without LF" };
  const line = String.fromCharCode(...bytes.subarray(0, end));
  const length = end + 2;
  const parts = line.split(" ");
  if (parts[1] === "UNKNOWN") return { state: "found", version: 1, command: "local", length };
  if (parts.length !== 6) return { state: "invalid", reason: "not six fields" };
  const [, protocol, source, destination, sourcePort, destinationPort] = parts as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const valid = protocol === "TCP4"
    ? (a: string) => ipv4Bytes(a) !== undefined
    : protocol === "TCP6"
    ? (a: string) => ipv6Bytes(a) !== undefined
    : undefined;
  if (!valid) return { state: "invalid", reason: `unknown protocol ${JSON.stringify(protocol)}` };
  if (!valid(source) || !valid(destination)) return { state: "invalid", reason: "a bad address" };
  const port = (text: string): number | undefined =>
    /^(?:0|[1-9]\d{0,4})$/.test(text) && Number(text) <= 65535 ? Number(text) : undefined;
  const from = port(sourcePort);
  const to = port(destinationPort);
  if (from === undefined || to === undefined) return { state: "invalid", reason: "a bad port" };
  const text = (a: string): string => protocol === "TCP6" ? ipv6Text(ipv6Bytes(a)!) : a;
  return {
    state: "found",
    version: 1,
    command: "proxy",
    source: { address: text(source), port: from },
    destination: { address: text(destination), port: to },
    length,
  };
}

/**
 * Reads `ip:port` or `[v6]:port` (as the server writes a peer) into an
 * endpoint; undefined when it does not parse.
 */
export function parseEndpoint(text: string): ProxyEndpoint | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([0-9.]+):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535) return undefined;
  const address = m[1]!;
  if (!ipv4Bytes(address) && !ipv6Bytes(address)) return undefined;
  return { address, port: Number(m[2]) };
}
