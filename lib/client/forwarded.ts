// The HTTP-aware client's request rewriting: X-Forwarded-*, Forwarded and Host on
// every request of a connection, bodies passed through untouched.

import { latin1Bytes } from "../bytes.ts";
import type { Writer } from "../channel.ts";
import { Http1Framer } from "../http/framer.ts";
import { type MessageHead, withCrlf } from "../http/head.ts";
import { httpError } from "../http/response.ts";
import { writeAll } from "../io.ts";
import { MAX_HELD_BYTES } from "../limits.ts";
import { logCaught, type Logger } from "../log.ts";
import type { ExchangeTracker } from "./exchanges.ts";

/** First size of a rewriter's head buffer: most rewritten request heads fit. */
const REWRITE_BUFFER_BYTES = 2048;

/** What the client knows about a visitor's connection. */
export interface VisitorInfo {
  /** The visitor's address as `ip:port` (IPv6 in brackets), from the server. */
  peer: string;
  /** How the visitor reached the server. */
  scheme: "http" | "https";
  /** Host header for the local app, when it must not see the public one. */
  hostHeader: string | undefined;
  /**
   * The app's connection may go back to a pool: a visitor's `Connection: close`
   * is kept from the app (the client ends the visitor's stream itself).
   */
  keepAppAlive?: boolean;
  /** The name of the tunnel it came through (the inspector shows it). */
  tunnel?: string | undefined;
}

// RFC 7239 section 4: elements of token=value pairs, a value a token or a quoted-string.
const FORWARDED_TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const FORWARDED_QUOTED =
  '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t\\x20-\\x7e\\x80-\\xff])*"';
const FORWARDED_PAIR = `${FORWARDED_TOKEN}=(?:${FORWARDED_TOKEN}|${FORWARDED_QUOTED})`;
// A non-empty element. Whitespace may only come before one, so that a run of spaces can be
// matched one way only: the regex stays linear (empty elements made it exponential).
const FORWARDED_ELEMENT =
  `(?:${FORWARDED_PAIR}(?:;(?:${FORWARDED_PAIR})?)*|(?:;(?:${FORWARDED_PAIR})?)+)`;
/** A whole Forwarded field value. */
const FORWARDED = new RegExp(
  `^(?:${FORWARDED_ELEMENT})?(?:[ \\t]*,(?:[ \\t]*${FORWARDED_ELEMENT})?)*$`,
);

/** The visitor's address as X-Forwarded-For and Forwarded write it. */
export function visitorNode(peer: string): { ip: string; node: string } {
  const ip = peer.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  return { ip, node: ip.includes(":") ? `"[${ip}]"` : ip };
}

/**
 * The head as the local app should see it: the visitor's address appended to
 * X-Forwarded-For and Forwarded (so a visitor cannot pass itself off as the
 * first hop's own value), X-Forwarded-Proto and -Host set, Host rewritten.
 * The start line and every other field pass on byte for byte. The result is
 * written into `into` when it fits (a view of it is returned), else into a new array.
 * `cache` keeps the appended fields for the next request with the same Host and
 * no forwarding fields of its own: the usual keep-alive connection.
 */
export function rewriteRequestHead(
  head: MessageHead,
  info: VisitorInfo,
  visitor: { ip: string; node: string } = visitorNode(info.peer),
  into?: Uint8Array,
  cache?: RewriteCache,
): Uint8Array {
  const { ip, node } = visitor;
  const bytes = head.bytes;
  const rewriteHost = info.hostHeader !== undefined;
  // [start, end) ranges of `bytes` to copy, in order; neighbouring lines make one range.
  const kept: number[] = [];
  const count = head.fieldCount;
  kept.push(
    0,
    count > 0 ? head.lineStart(0) : bytes.length - (bytes[bytes.length - 2] === 0x0d ? 2 : 1),
  );
  let host: string | undefined;
  let forwardedFor: string | undefined;
  let forwarded: string | undefined;
  let hostAt = -1; // the index in `kept` before which the new Host line goes
  for (let i = 0; i < count; i++) {
    let keep = false;
    if (head.nameIs(i, "host")) {
      host ??= head.value(i);
      if (!rewriteHost) keep = true;
      else if (hostAt < 0) hostAt = kept.length;
    } else if (head.nameIs(i, "x-forwarded-for")) {
      const value = head.value(i);
      forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
    } else if (info.keepAppAlive && head.nameIs(i, "connection") && isClose(head.value(i))) {
      keep = false; // the visitor's close is the client's business, not the app's
    } else if (head.nameIs(i, "forwarded")) {
      // Kept only if it parses: an open quote would swallow the element appended after it.
      const value = head.value(i);
      if (value.includes("=") && FORWARDED.test(value)) {
        forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`;
      }
    } else {
      keep = !head.nameIs(i, "x-forwarded-proto") && !head.nameIs(i, "x-forwarded-host");
    }
    if (!keep) continue;
    const start = head.lineStart(i);
    if (kept[kept.length - 1] === start && hostAt !== kept.length) {
      kept[kept.length - 1] = head.lineEnd(i);
    } else kept.push(start, head.lineEnd(i));
  }
  host ??= "";
  const own = forwardedFor !== undefined || forwarded !== undefined;
  let added: Uint8Array;
  if (!own && cache?.host === host) added = cache.added;
  else {
    // No Host (HTTP/1.0 may omit it): no X-Forwarded-Host and no host= to report.
    const quoted = host.includes('"') ? host.replaceAll('"', "") : host;
    const element = `for=${node}${host ? `;host="${quoted}"` : ""};proto=${info.scheme}`;
    const text =
      `X-Forwarded-For: ${forwardedFor === undefined ? ip : `${forwardedFor}, ${ip}`}\r\n` +
      `X-Forwarded-Proto: ${info.scheme}\r\n${host ? `X-Forwarded-Host: ${host}\r\n` : ""}` +
      `Forwarded: ${forwarded === undefined ? element : `${forwarded}, ${element}`}\r\n\r\n`;
    added = latin1Bytes(text);
    if (cache && !own) [cache.host, cache.added] = [host, added];
  }
  const hostLine = cache?.hostLine ??
    latin1Bytes(rewriteHost ? `Host: ${info.hostHeader}\r\n` : "");
  if (cache) cache.hostLine = hostLine;
  let length = added.length + hostLine.length;
  for (let k = 0; k < kept.length; k += 2) length += kept[k + 1]! - kept[k]!;
  const out = into && into.length >= length ? into.subarray(0, length) : new Uint8Array(length);
  let at = 0;
  for (let k = 0; k < kept.length; k += 2) {
    if (hostAt === k) at = put(out, at, hostLine);
    at = put(out, at, bytes.subarray(kept[k]!, kept[k + 1]!));
  }
  if (hostAt < 0 || hostAt >= kept.length) at = put(out, at, hostLine);
  out.set(added, at);
  return out;
}

/** Whether a `Connection` value is exactly `close`. */
function isClose(value: string): boolean {
  return value.length === 5 && value.toLowerCase() === "close";
}

/** A `Connection` value with the `close` option among others. */
const HAS_CLOSE = /(?:^|,)\s*close\s*(?:,|$)/i;

/** The fields {@linkcode rewriteRequestHead} appended last, and the Host they were for. */
export interface RewriteCache {
  /** The Host value the fields were made for; undefined before the first request. */
  host: string | undefined;
  /** The appended fields and the blank line, as bytes. */
  added: Uint8Array;
  /** The `Host` line that replaces the visitor's (empty when Host is kept), once made. */
  hostLine?: Uint8Array;
}

function put(out: Uint8Array, at: number, bytes: Uint8Array): number {
  out.set(bytes, at);
  return at + bytes.length;
}

/** What a {@linkcode RequestRewriter} works with. */
export interface RewriterParts {
  /** The local app's connection, where rewritten requests go. */
  out: Writer;
  /** The visitor, as the server described it. */
  info: VisitorInfo;
  /** Sees each request and decides, from the app's answers, whether a switch happened. */
  tracker: ExchangeTracker;
  /** Gets the error answer for the visitor, its status and why, when a request is refused. */
  refuse(answer: Uint8Array, status: number, reason: string): void;
  /** Where a failure of the app's connection is logged. */
  log: Logger;
}

/**
 * A writer in front of the local app's connection that frames the visitor's
 * requests and rewrites each head; bodies pass through. After a request that
 * asks to switch protocols, what the visitor sends next is held (copied, up to
 * MAX_HELD_BYTES, so the stream's end can still be read) until the head of the
 * app's answer says whether it is another protocol (passed on as it is) or more
 * HTTP. A request that cannot be framed safely is answered with 400 (431 for a
 * head too large, 405 for CONNECT: the app is an origin server, not a proxy)
 * and the stream is failed.
 */
export class RequestRewriter implements Writer {
  #out: Writer;
  #visitor: { ip: string; node: string };
  #scratch: Uint8Array = new Uint8Array(REWRITE_BUFFER_BYTES);
  #cache: RewriteCache = { host: undefined, added: new Uint8Array(0) };
  #framer = new Http1Framer("request", undefined, true);
  #refuse: (answer: Uint8Array, status: number, reason: string) => void;
  #exchanges: ExchangeTracker;
  #log: Logger;
  #switched = false;
  #failed = false;
  #visitorClosing = false;
  #keepsApp: boolean; // false once a request rules out reusing the app's connection
  #plainInfo: VisitorInfo;
  #keepInfo: VisitorInfo;
  // After an upgrade request: copies of what the visitor sent next, in order, and the
  // task that passes them on once the answer is known (and whatever comes meanwhile).
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #pumping = false;
  #pumped: Promise<void> = Promise.resolve();

  /** A rewriter in front of `parts.out`; see {@linkcode RewriterParts}. */
  constructor(parts: RewriterParts) {
    this.#out = parts.out;

    this.#visitor = visitorNode(parts.info.peer);
    this.#refuse = parts.refuse;
    this.#exchanges = parts.tracker;
    this.#log = parts.log;
    this.#keepsApp = parts.info.keepAppAlive === true;
    this.#plainInfo = { ...parts.info, keepAppAlive: false };
    this.#keepInfo = { ...parts.info, keepAppAlive: true };
  }

  /** Whether no request is half forwarded (nothing held, nothing failed). */
  get settled(): boolean {
    return this.#framer.idle && !this.#pumping && !this.#failed;
  }

  /** Whether every request so far lets the app's connection carry another. */
  get reusable(): boolean {
    return this.#keepsApp && !this.#failed && !this.#switched;
  }

  /** Whether the visitor asked for its connection to end (its `Connection: close` was kept from the app). */
  get visitorClosing(): boolean {
    return this.#visitorClosing;
  }

  /** Frames `p` and writes it on, rewritten; always takes all of it. */
  async write(p: Uint8Array): Promise<number> {
    // Held bytes are bounded: past the bound the visitor waits for the answer.
    if (this.#pumping && this.#queuedBytes + p.length > MAX_HELD_BYTES) await this.drain();
    if (this.#failed) return p.length;
    if (this.#pumping) this.#enqueue(p.slice(), false);
    else await this.#frame(p);
    return p.length;
  }

  /** Resolves once every byte taken so far has been written on (or dropped). */
  async drain(): Promise<void> {
    while (this.#pumping) await this.#pumped;
  }

  async #frame(p: Uint8Array): Promise<void> {
    for (const event of this.#framer.push(p)) {
      if (event.kind === "head") {
        this.#exchanges.request(event.head);
        if (this.#keepsApp) this.#noteConnection(event.head);
        if (event.head.method === "CONNECT") {
          return this.#fail(405, "CONNECT is not relayed to an app (use --raw for a proxy)");
        }
        // A bare LF that this parser accepts may end a line for us but not for the app:
        // what goes on ends every line with CRLF.
        await writeAll(this.#out, this.#rewrite(withCrlf(event.head, "request")));
      } else if (event.kind === "body") {
        this.#exchanges.requestBody(event.bytes);
        await writeAll(this.#out, event.bytes);
      } else if (event.kind === "raw") {
        // Bytes after an upgrade request (always the last event).
        if (this.#switched) {
          this.#exchanges.visitorRaw(event.bytes);
          await writeAll(this.#out, event.bytes);
        } else this.#enqueue(event.bytes.slice(), true); // before anything queued after them
      } else if (event.kind === "error") {
        return this.#fail(event.status, event.reason);
      }
    }
  }

  #enqueue(bytes: Uint8Array, first: boolean): void {
    if (first) this.#queue.unshift(bytes);
    else this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    if (this.#pumping) return;
    this.#pumping = true;
    this.#pumped = this.#pump();
  }

  // Passes the queue on in order. While the framer is raw after an upgrade request
  // the answer decides: switched, the bytes go as they are; refused, they are framed
  // as requests again (and another upgrade request among them queues the rest anew).
  async #pump(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#failed) {
        if (this.#framer.raw && !this.#switched) {
          if (await this.#exchanges.switched()) this.#switched = true;
          else this.#framer.resume();
        }
        const bytes = this.#queue.shift()!;
        this.#queuedBytes -= bytes.length;
        if (this.#switched) {
          this.#exchanges.visitorRaw(bytes);
          await writeAll(this.#out, bytes);
        } else await this.#frame(bytes);
      }
    } catch (e) {
      // The app's connection failed (the relay sees it on its side too), or a bug.
      this.#failed = true;
      logCaught(this.#log, "Held bytes not passed on", e);
    }
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#pumping = false;
  }

  // With a pooled app connection: a visitor's `Connection: close` is kept from the
  // app (the stream ends after its answer); HTTP/1.0, an upgrade, or a close among
  // other options means the app closes, and its connection is not reused.
  #noteConnection(head: MessageHead): void {
    const values = head.values("connection");
    if (head.version !== "HTTP/1.1" || head.get("upgrade") !== undefined) this.#keepsApp = false;
    else if (values.length > 0 && values.every(isClose)) this.#visitorClosing = true;
    else if (values.some((v) => HAS_CLOSE.test(v))) this.#keepsApp = false;
  }

  #fail(status: number, reason: string): void {
    this.#failed = true;
    const answer = httpError(status, `Bad request: ${reason}`);
    this.#refuse(answer, status, reason);
  }

  // The rewritten head, in a buffer kept for the next one (each is written before the next).
  // A visitor's `Connection: close` is kept from the app only when the client ends the
  // stream itself after the answer (the app's connection then goes back to the pool).
  #rewrite(head: MessageHead): Uint8Array {
    const info = this.#keepsApp && this.#visitorClosing ? this.#keepInfo : this.#plainInfo;
    const out = rewriteRequestHead(head, info, this.#visitor, this.#scratch, this.#cache);
    if (out.buffer !== this.#scratch.buffer) this.#scratch = out; // grown: keep the larger one
    return out;
  }
}
