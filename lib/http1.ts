// An HTTP/1.1 message framer (pure, streaming): where each message's head and body
// begin and end in a byte stream, so a proxy can rewrite heads and pass bodies
// through untouched. It does not decode bodies: chunked framing passes as is.

import { latin1Text } from "./latin1.ts";
import { MAX_SNIFF_BYTES } from "./protocol.ts";

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
  ) {
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

/** What the framer found in the bytes pushed so far. */
export type Http1Event =
  /** A complete head; `bytes` is exactly how it arrived. */
  | { kind: "head"; head: MessageHead; bytes: Uint8Array }
  /** Body bytes, framing included (chunk sizes and trailers pass through). */
  | { kind: "body"; bytes: Uint8Array }
  /** The current message is complete. */
  | { kind: "end" }
  /** The stream switched protocols (101, or CONNECT with 2xx): the rest is raw bytes. */
  | { kind: "raw"; bytes: Uint8Array }
  /** The stream is not valid HTTP/1.1 from here on; answer `status` and stop. */
  | { kind: "error"; status: 400 | 431 | 502; reason: string };

const DIGITS = /^\d{1,15}$/;
/**
 * Whether a final response with `head`, to a request with `method`, switches
 * the stream to other bytes: 101, or a 2xx to CONNECT without body framing (RFC
 * 9110 9.3.6: one that has it did not connect).
 */
export function switchesProtocols(method: string, head: MessageHead): boolean {
  const status = head.status ?? 0;
  if (status === 101) return true;
  return method === "CONNECT" && status >= 200 && status < 300 &&
    head.get("content-length") === undefined && head.get("transfer-encoding") === undefined;
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
function validHost(bytes: Uint8Array): boolean {
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
const NOTHING = new Uint8Array(0);

type Body =
  | { type: "none" }
  | { type: "length"; left: number }
  | {
    type: "chunked";
    state: "size" | "data" | "data-crlf" | "trailer";
    left: number;
    line: string;
  }
  | { type: "close" };

/**
 * Frames one direction of an HTTP/1.1 connection. For responses, call
 * `expect(method)` for each request in order (pipelining), so that responses
 * to HEAD have no body; CONNECT answered 2xx and 101 switch to raw bytes.
 */
export class Http1Framer {
  #role: "request" | "response";
  #maxHead: number;
  // An incomplete head: its first `#pendingLength` bytes in a buffer that grows by
  // doubling, so a head trickled a byte at a time costs linear time.
  #pending: Uint8Array = NOTHING;
  #pendingLength = 0;
  #body: Body | undefined; // undefined: expecting a head
  #raw = false;
  #failed = false;
  #methods: string[] = [];
  #rawAfterUpgrade: boolean;
  #switchAfter = false; // the message being read asks to switch protocols

  /**
   * A framer for requests or responses; heads longer than `maxHead` are
   * refused (431). With `rawAfterUpgrade`, the bytes after a request with
   * `Upgrade` or a CONNECT (and its body) come out raw: they may belong to
   * another protocol. Whoever watches the responses then calls `resume()` if
   * the switch was refused, and the raw bytes are pushed again as HTTP.
   */
  constructor(
    role: "request" | "response",
    maxHead: number = MAX_SNIFF_BYTES,
    rawAfterUpgrade = false,
  ) {
    this.#role = role;
    this.#maxHead = maxHead;
    this.#rawAfterUpgrade = rawAfterUpgrade;
  }

  /** Responses: a request with `method` was sent; its response comes in that order. */
  expect(method: string): void {
    this.#methods.push(method);
  }

  /** Whether the stream has switched to raw bytes. */
  get raw(): boolean {
    return this.#raw;
  }

  /** Back to framing HTTP after a switch the other side refused (no 101, no 2xx to CONNECT). */
  resume(): void {
    this.#raw = false;
  }

  /**
   * Frames `chunk`, which follows everything pushed before. The events' bytes
   * (and their heads') may be views into `chunk` or the framer's own buffer:
   * use them before reusing `chunk` and before the next push.
   */
  push(chunk: Uint8Array): Http1Event[] {
    const events: Http1Event[] = [];
    if (this.#failed) return events;
    let at = 0;
    while (at < chunk.length) {
      if (this.#raw) {
        events.push({ kind: "raw", bytes: chunk.subarray(at) });
        return events;
      }
      if (this.#body === undefined) {
        at = this.#readHead(chunk, at, events);
        if (this.#failed) return events;
        continue;
      }
      at = this.#readBody(chunk, at, events);
      if (this.#failed) return events;
    }
    return events;
  }

  /** The stream ended: a close-delimited body ends here; anything else is cut short. */
  end(): Http1Event[] {
    if (this.#failed || this.#raw) return [];
    if (this.#body?.type === "close") {
      this.#body = undefined;
      return [{ kind: "end" }];
    }
    if (this.#body !== undefined || this.#pendingLength > 0) {
      this.#failed = true;
      return [{ kind: "error", status: 502, reason: "message cut short" }];
    }
    return [];
  }

  #fail(events: Http1Event[], status: 400 | 431 | 502, reason: string): number {
    this.#failed = true;
    events.push({ kind: "error", status, reason });
    return Number.MAX_SAFE_INTEGER;
  }

  // Accumulates a head; on its blank line parses it and decides how the body is framed.
  #readHead(chunk: Uint8Array, at: number, events: Http1Event[]): number {
    const start = this.#pendingLength;
    const limit = this.#maxHead + 4; // a head's worth of bytes, and its blank line
    let joined: Uint8Array;
    let parsed: MessageHead | string | null;
    if (start === 0) {
      // RFC 9112 2.2: empty lines before a request line are ignored.
      if (this.#role === "request") {
        while (chunk[at] === 0x0d || chunk[at] === 0x0a) at++;
      }
      // The usual case, a head within one chunk: found and parsed in one pass.
      joined = chunk.subarray(at, at + limit);
      parsed = parseHead(joined, this.#role);
      // Whatever the split, a head is judged only once its blank line is in.
      if (typeof parsed === "string" && headEnd(joined, 0) < 0) parsed = null;
    } else {
      // A head over several chunks: find its end first, looking only at new bytes.
      const more = chunk.subarray(at, at + limit - start);
      this.#reserve(start + more.length);
      this.#pending.set(more, start);
      joined = this.#pending.subarray(0, start + more.length);
      const end = headEnd(joined, start - 3);
      parsed = end < 0 ? null : parseHead(joined.subarray(0, end), this.#role);
    }
    if (parsed === null) {
      if (joined.length > this.#maxHead) {
        return this.#fail(events, this.#role === "request" ? 431 : 502, "head too large");
      }
      if (start === 0) {
        this.#reserve(joined.length);
        this.#pending.set(joined);
      }
      this.#pendingLength = joined.length;
      return chunk.length;
    }
    if (typeof parsed === "string") {
      return this.#fail(events, this.#role === "request" ? 400 : 502, parsed);
    }
    const bytes = parsed.bytes; // a view: events are used before the chunk is
    if (bytes.length > this.#maxHead) {
      return this.#fail(events, this.#role === "request" ? 431 : 502, "head too large");
    }
    if (start > 0) this.#pending = NOTHING; // `bytes` is a view of it: not to be written again
    this.#pendingLength = 0;
    const framing = this.#framing(parsed);
    if ("error" in framing) {
      return this.#fail(events, this.#role === "request" ? 400 : 502, framing.error);
    }
    events.push({ kind: "head", head: parsed, bytes });
    // Bytes of `chunk` used: everything up to the head's end, less what was pending.
    const used = at + bytes.length - start;
    if ("raw" in framing) {
      events.push({ kind: "end" });
      this.#raw = true;
      return used;
    }
    this.#switchAfter = framing.switchAfter;
    if (framing.body.type === "none") {
      this.#finish(events);
      return used;
    }
    this.#body = framing.body;
    return used;
  }

  // Room for `length` pending bytes, keeping those already there.
  #reserve(length: number): void {
    if (this.#pending.length >= length) return;
    const grown = new Uint8Array(Math.max(length, this.#pending.length * 2, 256));
    grown.set(this.#pending.subarray(0, this.#pendingLength));
    this.#pending = grown;
  }

  // How the body of a message with `head` is framed (RFC 9112 section 6.3), and, for
  // a request, whether it asks to switch protocols after it. Requests are held to
  // the strict reading a proxy needs: anything two servers could frame apart is refused.
  #framing(
    head: MessageHead,
  ): { body: Body; switchAfter: boolean } | { raw: true } | { error: string } {
    // One pass over the fields; most names are ruled out by their length alone.
    const lengths: string[] = [];
    const encodings: string[] = [];
    let encodingLines = 0;
    let upgrade = false;
    let hosts = 0;
    let host = -1;
    for (let i = 0; i < head.fieldCount; i++) {
      if (head.nameIs(i, "content-length")) {
        for (const part of head.value(i).split(",")) lengths.push(part.trim());
      } else if (head.nameIs(i, "transfer-encoding")) {
        encodingLines++;
        for (const part of head.value(i).split(",")) {
          const coding = part.trim().toLowerCase();
          if (coding !== "") encodings.push(coding);
        }
      } else if (head.nameIs(i, "upgrade")) upgrade = true;
      else if (head.nameIs(i, "host")) {
        hosts++;
        host = i;
      }
    }
    let switchAfter = false;
    if (this.#role === "request") {
      // RFC 9112 3.2: exactly one valid Host in HTTP/1.1, at most one in HTTP/1.0.
      if (hosts > 1) return { error: "more than one Host" };
      if (hosts === 0 && head.version === "HTTP/1.1") return { error: "no Host" };
      if (host >= 0 && !validHost(head.valueBytes(host))) return { error: "invalid Host" };
      if (encodingLines > 0) {
        if (lengths.length > 0) {
          return { error: "both Content-Length and Transfer-Encoding (request smuggling)" };
        }
        if (head.version === "HTTP/1.0") return { error: "Transfer-Encoding in HTTP/1.0" };
        if (encodingLines > 1 || encodings.length !== 1 || encodings[0] !== "chunked") {
          return { error: "Transfer-Encoding other than chunked" };
        }
      }
      // The bytes after an upgrade or CONNECT request may belong to another protocol.
      switchAfter = this.#rawAfterUpgrade && (head.method === "CONNECT" || upgrade);
    } else {
      const method = this.#methods.shift() ?? "GET";
      const status = head.status!;
      if (switchesProtocols(method, head)) return { raw: true };
      if (status >= 100 && status < 200) {
        this.#methods.unshift(method); // the final response is still to come
        return { body: { type: "none" }, switchAfter };
      }
      if (method === "HEAD" || status === 204 || status === 304) {
        return { body: { type: "none" }, switchAfter };
      }
    }
    if (encodings.length > 0 && lengths.length > 0) {
      return { error: "both Content-Length and Transfer-Encoding" };
    }
    if (encodings.length > 0) {
      if (encodings[encodings.length - 1] !== "chunked") {
        return { body: { type: "close" }, switchAfter };
      }
      if (encodings.filter((e) => e === "chunked").length > 1) return { error: "chunked twice" };
      return { body: { type: "chunked", state: "size", left: 0, line: "" }, switchAfter };
    }
    if (lengths.length > 0) {
      if (!lengths.every((l) => DIGITS.test(l))) return { error: "malformed Content-Length" };
      const left = Number(lengths[0]);
      if (lengths.some((l) => Number(l) !== left)) return { error: "conflicting Content-Length" };
      return { body: left === 0 ? { type: "none" } : { type: "length", left }, switchAfter };
    }
    return { body: this.#role === "request" ? { type: "none" } : { type: "close" }, switchAfter };
  }

  #readBody(chunk: Uint8Array, at: number, events: Http1Event[]): number {
    const body = this.#body!;
    if (body.type === "close") {
      events.push({ kind: "body", bytes: chunk.subarray(at) });
      return chunk.length;
    }
    if (body.type === "length") {
      const take = Math.min(body.left, chunk.length - at);
      events.push({ kind: "body", bytes: chunk.subarray(at, at + take) });
      body.left -= take;
      if (body.left === 0) this.#finish(events);
      return at + take;
    }
    if (body.type !== "chunked") return chunk.length; // "none" is never kept as a body
    // Chunked: walk the framing, passing every byte through as body.
    const start = at;
    while (at < chunk.length && this.#body === body) {
      if (body.state === "data") {
        const take = Math.min(body.left, chunk.length - at);
        at += take;
        body.left -= take;
        if (body.left === 0) body.state = "data-crlf";
        continue;
      }
      const b = chunk[at++]!;
      body.line += String.fromCharCode(b);
      if (body.line.length > MAX_CHUNK_LINE) {
        events.push({ kind: "body", bytes: chunk.subarray(start, at) });
        return this.#fail(events, this.#role === "request" ? 400 : 502, "chunk line too long");
      }
      if (b !== 0x0a) continue;
      const line = body.line.replace(/\r?\n$/, "");
      body.line = "";
      if (body.state === "data-crlf") {
        if (line !== "") {
          events.push({ kind: "body", bytes: chunk.subarray(start, at) });
          return this.#fail(
            events,
            this.#role === "request" ? 400 : 502,
            "chunk data without CRLF",
          );
        }
        body.state = "size";
      } else if (body.state === "size") {
        const size = /^([0-9a-fA-F]{1,12})(?:[ \t]*;.*)?$/.exec(line);
        if (!size) {
          events.push({ kind: "body", bytes: chunk.subarray(start, at) });
          return this.#fail(events, this.#role === "request" ? 400 : 502, "bad chunk size");
        }
        body.left = parseInt(size[1]!, 16);
        body.state = body.left === 0 ? "trailer" : "data";
      } else if (line === "") { // the blank line after the trailers ends the message
        events.push({ kind: "body", bytes: chunk.subarray(start, at) });
        this.#finish(events);
        return at;
      }
    }
    events.push({ kind: "body", bytes: chunk.subarray(start, at) });
    return at;
  }

  #finish(events: Http1Event[]): void {
    this.#body = undefined;
    events.push({ kind: "end" });
    if (this.#switchAfter) this.#raw = true;
    this.#switchAfter = false;
  }
}

/** Longest chunk-size or trailer line accepted. */
const MAX_CHUNK_LINE = 8192;

/** Offset just past the blank line ending a head, searching from `from`; -1 if none yet. */
function headEnd(bytes: Uint8Array, from: number): number {
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

// Parses the head at the start of `bytes` (start line, fields, blank line) in one
// pass of plain loops, cheaper than native calls per line on heads this short;
// only the start line becomes strings here. Null when the blank line is not in
// `bytes` yet.
function parseHead(bytes: Uint8Array, role: "request" | "response"): MessageHead | string | null {
  const n = bytes.length;
  let i = 0;
  for (; i < n && bytes[i] !== 0x0a; i++) if (bytes[i] === 0) return "NUL in head";
  if (i === n) return null;
  const start = parseStartLine(bytes, i > 0 && bytes[i - 1] === 0x0d ? i - 1 : i, role);
  if (typeof start === "string") return start;
  const fields: number[] = [];
  for (let at = ++i; i < n; at = ++i) {
    if (bytes[i] === 0x0a) return new MessageHead(start, bytes.subarray(0, i + 1), fields);
    if (bytes[i] === 0x0d) {
      if (i + 1 === n) return null;
      if (bytes[i + 1] === 0x0a) return new MessageHead(start, bytes.subarray(0, i + 2), fields);
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
      else if (b !== 0x20 && b !== 0x09) to = i + 1;
    }
    if (i === n) return null;
    fields.push(at, colon, from, to, i + 1);
  }
  return null;
}
