// An HTTP/1.1 message framer (pure, streaming): where each message's head and body
// begin and end in a byte stream, so a proxy can rewrite heads and pass bodies
// through untouched. It does not decode bodies: chunked framing passes as is.

import { MAX_SNIFF_BYTES } from "./protocol.ts";

/** A parsed message head. Header names keep their case; lookups ignore it. */
export interface MessageHead {
  /** Request method, or undefined for a response. */
  method: string | undefined;
  /** Request target, or undefined for a response. */
  target: string | undefined;
  /** Response status, or undefined for a request. */
  status: number | undefined;
  /** `HTTP/1.1` or `HTTP/1.0`. */
  version: string;
  /** Header fields in order, as sent. */
  headers: [name: string, value: string][];
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

/** The value of header `name` (case-insensitive): the only one, or undefined. */
export function headerValue(head: MessageHead, name: string): string | undefined {
  const lower = name.toLowerCase();
  return head.headers.find(([n]) => n.toLowerCase() === lower)?.[1];
}

/** Serialises a head (request or response line, fields, blank line). */
export function encodeHead(head: MessageHead): Uint8Array {
  const start = head.method !== undefined
    ? `${head.method} ${head.target} ${head.version}`
    : `${head.version} ${head.status} ${reasonOf(head.status ?? 0)}`;
  const lines = [start, ...head.headers.map(([n, v]) => `${n}: ${v}`), "", ""];
  return Uint8Array.from(lines.join("\r\n"), (c) => c.charCodeAt(0) & 0xff);
}

function reasonOf(status: number): string {
  return status === 200 ? "OK" : status === 101 ? "Switching Protocols" : "";
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP\/1\.[01])$/;
const STATUS_LINE = /^(HTTP\/1\.[01]) (\d{3})(?: .*)?$/;

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
  #pending: Uint8Array = new Uint8Array(0); // bytes of an incomplete head
  #body: Body | undefined; // undefined: expecting a head
  #raw = false;
  #failed = false;
  #methods: string[] = [];
  #rawAfterUpgrade: boolean;

  /**
   * A framer for requests or responses; heads longer than `maxHead` are
   * refused (431). With `rawAfterUpgrade`, a request with `Upgrade` or a
   * CONNECT switches the stream to raw bytes (a proxy that does not watch the
   * responses cannot tell whether the switch was accepted, and must not parse
   * WebSocket frames as requests).
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

  /** Switches to raw bytes: for requests, once their response switched protocols. */
  goRaw(): void {
    this.#raw = true;
  }

  /** Frames `chunk`, which follows everything pushed before. */
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
    if (this.#body !== undefined || this.#pending.length > 0) {
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
    const start = this.#pending.length;
    const joined = new Uint8Array(start + chunk.length - at);
    joined.set(this.#pending);
    joined.set(chunk.subarray(at), start);
    // RFC 9112 2.2: empty lines before a request line are ignored.
    let skip = 0;
    if (this.#role === "request") {
      while (joined[skip] === 0x0d || joined[skip] === 0x0a) skip++;
    }
    const end = headEnd(joined, Math.max(skip, start - 3));
    if (end < 0) {
      if (joined.length - skip > this.#maxHead) {
        return this.#fail(events, this.#role === "request" ? 431 : 502, "head too large");
      }
      this.#pending = joined.slice(skip);
      return chunk.length;
    }
    if (end - skip > this.#maxHead) {
      return this.#fail(events, this.#role === "request" ? 431 : 502, "head too large");
    }
    this.#pending = new Uint8Array(0);
    const bytes = joined.slice(skip, end);
    const parsed = parseHead(bytes, this.#role);
    if (typeof parsed === "string") {
      return this.#fail(events, this.#role === "request" ? 400 : 502, parsed);
    }
    const framing = this.#framing(parsed);
    if ("error" in framing) {
      return this.#fail(events, this.#role === "request" ? 400 : 502, framing.error);
    }
    events.push({ kind: "head", head: parsed, bytes });
    // Bytes of `chunk` used: everything up to the head's end, less what was pending.
    const used = at + (end - start);
    if ("raw" in framing) {
      events.push({ kind: "end" });
      this.#raw = true;
      return used;
    }
    if (framing.body.type === "none") {
      events.push({ kind: "end" });
      return used;
    }
    this.#body = framing.body;
    return used;
  }

  // How the body of a message with `head` is framed (RFC 9112 section 6.3).
  #framing(head: MessageHead): { body: Body } | { raw: true } | { error: string } {
    const lengths = head.headers.filter(([n]) => n.toLowerCase() === "content-length")
      .flatMap(([, v]) => v.split(",").map((s) => s.trim()));
    const encodings = head.headers.filter(([n]) => n.toLowerCase() === "transfer-encoding")
      .flatMap(([, v]) => v.split(",").map((s) => s.trim().toLowerCase()))
      .filter((s) => s !== "");
    if (this.#role === "request" && this.#rawAfterUpgrade) {
      // The bytes after an upgrade or CONNECT request belong to another protocol.
      if (head.method === "CONNECT" || headerValue(head, "upgrade") !== undefined) {
        return { raw: true };
      }
    }
    if (this.#role === "response") {
      const method = this.#methods.shift() ?? "GET";
      const status = head.status!;
      if (status === 101) return { raw: true };
      if (method === "CONNECT" && status >= 200 && status < 300) return { raw: true };
      if (status >= 100 && status < 200) {
        this.#methods.unshift(method); // the final response is still to come
        return { body: { type: "none" } };
      }
      if (method === "HEAD" || status === 204 || status === 304) return { body: { type: "none" } };
    }
    if (encodings.length > 0 && lengths.length > 0) {
      return { error: "both Content-Length and Transfer-Encoding (request smuggling)" };
    }
    if (encodings.length > 0) {
      if (encodings[encodings.length - 1] !== "chunked") {
        return this.#role === "request"
          ? { error: "Transfer-Encoding without chunked last" }
          : { body: { type: "close" } };
      }
      if (encodings.filter((e) => e === "chunked").length > 1) return { error: "chunked twice" };
      return { body: { type: "chunked", state: "size", left: 0, line: "" } };
    }
    if (lengths.length > 0) {
      if (!lengths.every((l) => /^\d{1,15}$/.test(l))) return { error: "malformed Content-Length" };
      if (new Set(lengths.map(Number)).size > 1) return { error: "conflicting Content-Length" };
      const left = Number(lengths[0]);
      return { body: left === 0 ? { type: "none" } : { type: "length", left } };
    }
    return { body: this.#role === "request" ? { type: "none" } : { type: "close" } };
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

function parseHead(bytes: Uint8Array, role: "request" | "response"): MessageHead | string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  const lines = text.split(/\r?\n/);
  lines.length -= 2; // the blank line and what follows it
  const first = lines.shift() ?? "";
  const head: MessageHead = {
    method: undefined,
    target: undefined,
    status: undefined,
    version: "",
    headers: [],
  };
  if (role === "request") {
    const m = REQUEST_LINE.exec(first);
    if (!m) return "malformed request line";
    [head.method, head.target, head.version] = [m[1]!, m[2]!, m[3]!];
  } else {
    const m = STATUS_LINE.exec(first);
    if (!m) return "malformed status line";
    [head.version, head.status] = [m[1]!, Number(m[2])];
  }
  for (const line of lines) {
    if (line.includes("\r")) return "bare CR in head";
    if (line.startsWith(" ") || line.startsWith("\t")) return "obsolete line folding";
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    if (colon <= 0 || !TOKEN.test(name)) return "malformed header line";
    head.headers.push([name, line.slice(colon + 1).trim()]);
  }
  return head;
}
