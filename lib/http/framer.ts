// An HTTP/1.1 message framer (pure, streaming): where each message's head and body
// begin and end in a byte stream, so a proxy can rewrite heads and pass bodies
// through untouched. It does not decode bodies: chunked framing passes as is.

import { MAX_SNIFF_BYTES } from "../limits.ts";
import { headEnd, type MessageHead, parseHead, validHost } from "./head.ts";

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

  /** Whether it stands between messages: nothing pending, not raw, not failed. */
  get idle(): boolean {
    return this.#body === undefined && this.#pendingLength === 0 && !this.#raw && !this.#failed;
  }

  /** The bytes of a head not complete yet (a view, valid until the next push). */
  get pendingHead(): Uint8Array {
    return this.#pending.subarray(0, this.#pendingLength);
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
