// IP addresses as bytes and text, and CIDR ranges of them (pure): the one
// address grammar the PROXY protocol and the trusted proxies share.

import { MAX_TRUSTED_PROXIES } from "./limits.ts";

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/**
 * The 4 bytes of an IPv4 address in dotted-decimal form, or undefined.
 *
 * @example
 * ```ts
 * import { ipv4Bytes } from "./ip.ts";
 * console.log(ipv4Bytes("192.0.2.1")); // Uint8Array(4) [ 192, 0, 2, 1 ]
 * ```
 */
export function ipv4Bytes(text: string): Uint8Array | undefined {
  if (!IPV4.test(text)) return undefined;
  return Uint8Array.from(text.split("."), Number);
}

/**
 * The 16 bytes of an IPv6 address (`::` and a trailing IPv4 part allowed, no
 * brackets, no zone), or undefined.
 *
 * @example
 * ```ts
 * import { ipv6Bytes } from "./ip.ts";
 * console.log(ipv6Bytes("2001:db8::1")?.length); // 16
 * ```
 */
export function ipv6Bytes(text: string): Uint8Array | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || !text.includes(":")) return undefined;
  let tail: Uint8Array | undefined;
  let body = text;
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    tail = ipv4Bytes(text.slice(lastColon + 1));
    if (!tail) return undefined;
    body = text.slice(0, lastColon + 1) + "0:0";
  }
  const halves = body.split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === "") return [];
    const groups = part.split(":");
    if (groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
    return groups.map((g) => parseInt(g, 16));
  };
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  if (!head || !rest) return undefined;
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill(0), ...rest];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  if (tail) out.set(tail, 12);
  return out;
}

/**
 * An IPv6 address's text (RFC 5952: lowercase, the longest run of zero groups as `::`).
 *
 * @example
 * ```ts
 * import { ipv6Bytes, ipv6Text } from "./ip.ts";
 * console.log(ipv6Text(ipv6Bytes("2001:DB8:0:0:0:0:0:1")!)); // "2001:db8::1"
 * ```
 */
export function ipv6Text(bytes: Uint8Array): string {
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[i * 2]! << 8) | bytes[i * 2 + 1]!);
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [best, bestLength] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLength).join(":")}`;
}

/**
 * An address's bytes: 4 for IPv4 (also when mapped into IPv6, `::ffff:a.b.c.d`,
 * as a dual-stack socket reports it), 16 for IPv6; undefined if it is neither.
 */
function addressBytes(text: string): Uint8Array | undefined {
  const v4 = ipv4Bytes(text);
  if (v4) return v4;
  const v6 = ipv6Bytes(text);
  if (!v6) return undefined;
  const mapped = v6.subarray(0, 12).every((b, i) => b === (i < 10 ? 0 : 0xff));
  return mapped ? v6.slice(12) : v6;
}

/** A CIDR range: the first `bits` bits of `prefix` (4 or 16 bytes). */
export interface CidrRange {
  /** The network address's bytes, bits past `bits` zero. */
  prefix: Uint8Array;
  /** How many leading bits an address must share with `prefix`. */
  bits: number;
}

/**
 * Reads `a.b.c.d/n`, `v6::/n` or a bare address (a /32 or a /128); the reason
 * it does not parse otherwise. Bits set past the prefix length are refused
 * (`10.0.0.1/8` is likely a typo for an address or for `10.0.0.0/8`).
 *
 * @example
 * ```ts
 * import { parseCidr } from "./ip.ts";
 * const range = parseCidr("10.0.0.0/8");
 * console.log(typeof range === "string" ? range : range.bits); // 8
 * ```
 */
export function parseCidr(text: string): CidrRange | string {
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  const prefix = addressBytes(address);
  if (!prefix) return `${JSON.stringify(address)} is not an IPv4 or IPv6 address`;
  const max = prefix.length * 8;
  const lengthText = slash < 0 ? String(max) : text.slice(slash + 1);
  // A mapped IPv4 address with an IPv6 prefix length counts the 96 mapped bits.
  const mapped = prefix.length === 4 && address.includes(":");
  const given = /^\d{1,3}$/.test(lengthText) ? Number(lengthText) : NaN;
  const bits = mapped && slash >= 0 ? given - 96 : given;
  if (!Number.isInteger(bits) || bits < 0 || bits > max) {
    return `${JSON.stringify(lengthText)} is not a prefix length (0-${mapped ? 128 : max})`;
  }
  for (let i = 0; i < max; i++) {
    const set = (prefix[i >> 3]! >> (7 - (i & 7))) & 1;
    if (i >= bits && set) return `${JSON.stringify(text)} has bits set past /${given}`;
  }
  return { prefix, bits };
}

/** Whether `address` (IPv4, IPv6 or IPv4-mapped IPv6) is inside `range`. */
export function inCidr(address: string, range: CidrRange): boolean {
  const bytes = addressBytes(address);
  if (!bytes || bytes.length !== range.prefix.length) return false;
  const whole = range.bits >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== range.prefix[i]) return false;
  const rest = range.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole]! & mask) === range.prefix[whole];
}

/**
 * Reads a list of CIDR ranges (each entry may hold several, comma-separated):
 * the ranges, or a one-line reason naming the first bad entry.
 *
 * @example Trust a load balancer's subnet and one IPv6 address
 * ```ts
 * import { inCidr, parseCidrList } from "./ip.ts";
 * const ranges = parseCidrList(["10.0.0.0/8,2001:db8::7"]);
 * if (typeof ranges !== "string") console.log(ranges.some((r) => inCidr("10.1.2.3", r))); // true
 * ```
 */
export function parseCidrList(entries: readonly string[]): CidrRange[] | string {
  const ranges: CidrRange[] = [];
  for (const entry of entries.flatMap((e) => e.split(","))) {
    const text = entry.trim();
    if (text === "") return "an empty entry";
    const range = parseCidr(text);
    if (typeof range === "string") return `${JSON.stringify(text)}: ${range}`;
    ranges.push(range);
    if (ranges.length > MAX_TRUSTED_PROXIES) {
      return `more than ${MAX_TRUSTED_PROXIES} ranges (use wider ones)`;
    }
  }
  return ranges;
}
