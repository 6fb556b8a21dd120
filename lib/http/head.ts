// HTTP/1.x message heads (pure): where a head ends, and one parse of its bytes that
// the sniffer, the framer and the rewriter share. Fields are kept as offsets and
// decoded only when asked for.

import { latin1Bytes, latin1Text } from "../bytes.ts";

/**
 * A parsed message head: the bytes as they arrived and where each field is.
 * Field names and values are decoded only when asked for, so a proxy that
 * looks at a few fields and passes the rest on pays for those few.
 */
export class MessageHead {
  /** Request method, or undefined for a response. */
  readonly method: string | undefined;
  #target: [start: number, end: number] | undefined;
  /** Response status, or undefined for a request. */
  readonly status: number | undefined;
  /** `HTTP/1.1` or `HTTP/1.0`. */
  readonly version: string;
  /** The whole head as it arrived: start line, fields, blank line. */
  readonly bytes: Uint8Array;
  /** Whether some line ends in a bare LF (RFC 9112 lets a recipient accept it). */
  readonly bareLf: boolean;
  // Five offsets per field: name start, colon, value start, value end, line end (past LF).
  #fields: number[];

  /**
   * A head over `bytes`: the start line's parts (the target as where it is in
   * `bytes`) and five offsets per field (see `parseHead`).
   */
  constructor(
    start: { method?: string; target?: [number, number]; status?: number; version: string },
    bytes: Uint8Array,
    fields: number[],
    bareLf = false,
  ) {
    this.bareLf = bareLf;
    this.method = start.method;
    this.#target = start.target;
    this.status = start.status;
    this.version = start.version;
    this.bytes = bytes;
    this.#fields = fields;
  }

  /** Request target (decoded when asked for), or undefined for a response. */
  get target(): string | undefined {
    return this.#target && latin1Text(this.bytes.subarray(this.#target[0], this.#target[1]));
  }

  /** How many header fields there are. */
  get fieldCount(): number {
    return this.#fields.length / 5;
  }

  /** Field `i`'s name, case as sent. */
  name(i: number): string {
    return latin1Text(this.bytes.subarray(this.#fields[i * 5]!, this.#fields[i * 5 + 1]!));
  }

  /** Field `i`'s value, without surrounding whitespace. */
  value(i: number): string {
    return latin1Text(this.bytes.subarray(this.#fields[i * 5 + 2]!, this.#fields[i * 5 + 3]!));
  }

  /** Field `i`'s value as bytes (a view of `bytes`). */
  valueBytes(i: number): Uint8Array {
    return this.bytes.subarray(this.#fields[i * 5 + 2]!, this.#fields[i * 5 + 3]!);
  }

  /** Where field `i`'s line starts in `bytes`. */
  lineStart(i: number): number {
    return this.#fields[i * 5]!;
  }

  /** Where field `i`'s line ends in `bytes`, past its line break. */
  lineEnd(i: number): number {
    return this.#fields[i * 5 + 4]!;
  }

  /** Whether field `i` is named `lower` (lower-case letters and `-`), compared as bytes. */
  nameIs(i: number, lower: string): boolean {
    const start = this.#fields[i * 5]!;
    if (this.#fields[i * 5 + 1]! - start !== lower.length) return false;
    for (let k = 0; k < lower.length; k++) {
      if ((this.bytes[start + k]! | 0x20) !== lower.charCodeAt(k)) return false;
    }
    return true;
  }

  /** Values of every field named `lower` (lower-case letters and `-`), in order. */
  values(lower: string): string[] {
    const found: string[] = [];
    for (let i = 0; i < this.fieldCount; i++) if (this.nameIs(i, lower)) found.push(this.value(i));
    return found;
  }

  /** The first value of field `lower` (lower-case letters and `-`), or undefined. */
  get(lower: string): string | undefined {
    for (let i = 0; i < this.fieldCount; i++) if (this.nameIs(i, lower)) return this.value(i);
    return undefined;
  }

  /** Every field as `[name, value]`, in order. */
  get headers(): [name: string, value: string][] {
    const all: [string, string][] = [];
    for (let i = 0; i < this.fieldCount; i++) all.push([this.name(i), this.value(i)]);
    return all;
  }
}

/** 1 for the bytes of an RFC 3986 reg-name or IPv4 address (unreserved, sub-delims, `%`). */
const REG_NAME = new Uint8Array(256);
for (const c of "._~%!$&'()*+,;=-") REG_NAME[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) REG_NAME[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) REG_NAME[c] = REG_NAME[c + 0x20] = 1;

const isHex = (b: number | undefined): boolean =>
  b !== undefined && ((b >= 0x30 && b <= 0x39) || ((b | 0x20) >= 0x61 && (b | 0x20) <= 0x66));

/**
 * Whether `bytes` is a Host value: an IP literal in brackets or a reg-name, and
 * an optional port (RFC 9110 7.2). No quotes, spaces or backslashes get through.
 */
export function validHost(bytes: Uint8Array): boolean {
  let i = 0;
  if (bytes[0] === 0x5b) { // [ an IPv6 literal: hex digits, ":" (at least one) and "."
    let colons = 0;
    for (i = 1; i < bytes.length && bytes[i] !== 0x5d; i++) {
      const b = bytes[i]!;
      if (b === 0x3a) colons++;
      else if (!isHex(b) && b !== 0x2e) return false;
    }
    if (i === bytes.length || colons === 0) return false;
    i++;
  } else {
    for (; REG_NAME[bytes[i]!] === 1; i++) {
      if (bytes[i] === 0x25 && !(isHex(bytes[i + 1]) && isHex(bytes[i + 2]))) return false; // %XX
    }
  }
  if (i === bytes.length) return true;
  if (bytes[i] !== 0x3a || bytes.length - i - 1 > 5) return false;
  for (i++; i < bytes.length; i++) if (bytes[i]! < 0x30 || bytes[i]! > 0x39) return false;
  return true;
}
/** Offset just past the blank line ending a head, searching from `from`; -1 if none yet. */
export function headEnd(bytes: Uint8Array, from: number): number {
  for (let i = Math.max(0, from); i < bytes.length; i++) {
    if (bytes[i] !== 0x0a) continue;
    if (bytes[i + 1] === 0x0a) return i + 2;
    if (bytes[i + 1] === 0x0d && bytes[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

/** 1 for the bytes that may appear in a token (a header name, a method). */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = TCHAR[c + 0x20] = 1;

/** `HTTP/1.1` or `HTTP/1.0` at `bytes[at]`, or undefined. */
function versionAt(bytes: Uint8Array, at: number): string | undefined {
  for (let k = 0; k < 7; k++) if (bytes[at + k] !== HTTP_1_DOT[k]) return undefined;
  return bytes[at + 7] === 0x31 ? "HTTP/1.1" : bytes[at + 7] === 0x30 ? "HTTP/1.0" : undefined;
}

const HTTP_1_DOT = [0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, 0x2e]; // "HTTP/1."

/** The common methods as strings, so most request lines decode nothing but their target. */
const METHODS = new Map(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"].map(
  (m) => [m.length * 256 + m.charCodeAt(0), m],
));

// A request line (method SP target SP version) or a status line (version SP status
// [SP reason]) in `bytes[0, end)`, read byte by byte: a token for a method, no
// controls or spaces in a target, no CR in a reason.
function parseStartLine(
  bytes: Uint8Array,
  end: number,
  role: "request" | "response",
): { method?: string; target?: [number, number]; status?: number; version: string } | string {
  if (role === "response") {
    const version = versionAt(bytes, 0);
    let status = 0;
    for (let k = 9; k < 12; k++) {
      const digit = bytes[k]! - 0x30;
      if (!(digit >= 0 && digit <= 9)) return "malformed status line";
      status = status * 10 + digit;
    }
    if (!version || bytes[8] !== 0x20 || (end > 12 && bytes[12] !== 0x20)) {
      return "malformed status line";
    }
    for (let k = 12; k < end; k++) if (bytes[k] === 0x0d) return "bare CR in head";
    return { version, status };
  }
  let i = 0;
  while (TCHAR[bytes[i]!] === 1) i++;
  if (i === 0 || bytes[i] !== 0x20) return "malformed request line";
  let method = METHODS.get(i * 256 + bytes[0]!);
  for (let k = 1; method !== undefined && k < i; k++) {
    if (bytes[k] !== method.charCodeAt(k)) method = undefined;
  }
  method ??= latin1Text(bytes.subarray(0, i));
  const from = ++i;
  while (i < end && bytes[i]! > 0x20 && bytes[i] !== 0x7f) i++;
  const version = versionAt(bytes, i + 1);
  if (i === from || bytes[i] !== 0x20 || !version || i + 9 !== end) {
    return "malformed request line";
  }
  return { method, target: [from, i], version };
}

/**
 * Parses the head at the start of `bytes` (start line, fields, blank line) in
 * one pass of plain loops, cheaper than native calls per line on heads this
 * short; only the start line becomes strings here. Null when the blank line is
 * not in `bytes` yet; a reason when what is there cannot be a head. A reason
 * found in a prefix is the reason for any longer input.
 */
export function parseHead(
  bytes: Uint8Array,
  role: "request" | "response",
): MessageHead | string | null {
  const n = bytes.length;
  let i = 0;
  for (; i < n && bytes[i] !== 0x0a; i++) if (bytes[i] === 0) return "NUL in head";
  if (i === n) return null;
  let bareLf = !(i > 0 && bytes[i - 1] === 0x0d);
  const start = parseStartLine(bytes, bareLf ? i : i - 1, role);
  if (typeof start === "string") return start;
  const fields: number[] = [];
  for (let at = ++i; i < n; at = ++i) {
    if (bytes[i] === 0x0a) return new MessageHead(start, bytes.subarray(0, i + 1), fields, true);
    if (bytes[i] === 0x0d) {
      if (i + 1 === n) return null;
      if (bytes[i + 1] === 0x0a) {
        return new MessageHead(start, bytes.subarray(0, i + 2), fields, bareLf);
      }
    }
    if (bytes[i] === 0x20 || bytes[i] === 0x09) return "obsolete line folding";
    while (TCHAR[bytes[i]!] === 1) i++; // stops at the end too: TCHAR[undefined]
    if (i === n) return null;
    if (i === at || bytes[i] !== 0x3a) return "malformed header line";
    const colon = i++;
    while (bytes[i] === 0x20 || bytes[i] === 0x09) i++;
    const from = i;
    let to = i; // just past the value's last character that is not whitespace
    for (; i < n; i++) {
      const b = bytes[i]!;
      if (b === 0x0a) break;
      if (b === 0x0d) {
        if (i + 1 < n && bytes[i + 1] !== 0x0a) return "bare CR in head";
      } else if (b === 0) return "NUL in head";
      else if (b < 0x20 && b !== 0x09 || b === 0x7f) return "control character in a field value";
      else if (b !== 0x20 && b !== 0x09) to = i + 1;
    }
    if (i === n) return null;
    if (bytes[i - 1] !== 0x0d) bareLf = true;
    fields.push(at, colon, from, to, i + 1);
  }
  return null;
}

/** `head`'s bytes with every line ending in CRLF, parsed again (a head with bare LFs is rare). */
export function withCrlf(head: MessageHead, role: "request" | "response"): MessageHead {
  if (!head.bareLf) return head;
  const src = head.bytes;
  const out = new Uint8Array(src.length * 2);
  let n = 0;
  for (let i = 0; i < src.length; i++) {
    if (src[i] === 0x0a && (i === 0 || src[i - 1] !== 0x0d)) out[n++] = 0x0d;
    out[n++] = src[i]!;
  }
  const again = parseHead(out.subarray(0, n), role);
  // A head that parsed with bare LFs parses with CRLFs: same fields, same start line.
  if (!(again instanceof MessageHead)) throw new TypeError("Head stopped parsing with CRLF");
  return again;
}

/**
 * `head` as new bytes, spliced: its start line and every field line `keep(i)`
 * allows, copied as they are, then `extra` (whole lines) and the blank line.
 * No field is decoded: the cheap way to drop or add a field.
 *
 * @example
 * ```ts
 * import { parseHead, spliceHead } from "./head.ts";
 * const head = parseHead(new TextEncoder().encode("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"), "response");
 * if (typeof head !== "string" && head !== null) {
 *   const out = spliceHead(head, (i) => !head.nameIs(i, "a"), new TextEncoder().encode("C: 3\r\n"));
 *   console.log(new TextDecoder().decode(out)); // HTTP/1.1 200 OK, B: 2, C: 3
 * }
 * ```
 */
export function spliceHead(
  head: MessageHead,
  keep: (i: number) => boolean,
  extra: Uint8Array,
): Uint8Array {
  const bytes = head.bytes;
  const count = head.fieldCount;
  const startLineEnd = count > 0 ? head.lineStart(0) : bytes.indexOf(0x0a) + 1;
  let size = startLineEnd + extra.length + 2;
  for (let i = 0; i < count; i++) if (keep(i)) size += head.lineEnd(i) - head.lineStart(i);
  const out = new Uint8Array(size);
  out.set(bytes.subarray(0, startLineEnd));
  let at = startLineEnd;
  for (let i = 0; i < count; i++) {
    if (!keep(i)) continue;
    out.set(bytes.subarray(head.lineStart(i), head.lineEnd(i)), at);
    at += head.lineEnd(i) - head.lineStart(i);
  }
  out.set(extra, at);
  out[size - 2] = 0x0d;
  out[size - 1] = 0x0a;
  return out;
}

/**
 * `head` as new bytes (CRLF line ends): its start line, each field `i` with the
 * value `value(i)` gives (undefined drops the field), then the `extra` lines.
 */
export function rebuildHead(
  head: MessageHead,
  value: (i: number) => string | undefined,
  extra: readonly string[] = [],
): Uint8Array {
  const bytes = head.bytes;
  let text = latin1Text(bytes.subarray(0, bytes.indexOf(0x0a))).replace(/\r$/, "") + "\r\n";
  for (let i = 0; i < head.fieldCount; i++) {
    const v = value(i);
    if (v !== undefined) text += `${head.name(i)}: ${v}\r\n`;
  }
  for (const line of extra) text += line + "\r\n";
  return latin1Bytes(text + "\r\n");
}
