// The response side of the HTTP-aware client: each response on a visitor stream
// paired with its request (pipelining included), which decides whether a request
// that asked to switch protocols was granted; observers get one record per exchange.

import { Http1Framer, switchesProtocols } from "../http/framer.ts";
import { concatBytes } from "../bytes.ts";
import type { MessageHead } from "../http/head.ts";

/** One request and what became of it. */
export interface RequestRecord {
  /** Request method. */
  method: string;
  /** Request target, as sent (path and query). */
  target: string;
  /** Final response status; undefined when no response came. */
  status: number | undefined;
  /** From the request head to the end of the response (to the 101 for an upgrade). */
  durationMs: number;
  /** Response body bytes as sent (chunked framing included). */
  bytes: number;
  /** The protocol switched to (`websocket`), when the request upgraded the stream. */
  upgrade: string | undefined;
  /** Why the exchange is incomplete: `no response`, `cut short`, `bad response`. */
  problem: string | undefined;
}

/**
 * Watches the exchanges of one visitor stream (a request log, an inspector); it
 * never changes them. Calls are synchronous and must return at once: the relay
 * does not wait for an observer. Views passed in are valid only during the call.
 */
export interface ExchangeObserver {
  /** A request head, as the visitor sent it (before the client's rewrite). */
  request?(head: MessageHead): void;
  /** Bytes of the current request's body, framing included, as they pass. */
  requestBody?(bytes: Uint8Array): void;
  /** A response head from the app (an interim 1xx too), in request order. */
  response?(head: MessageHead): void;
  /** Bytes of the current response's body, framing included, as they pass. */
  responseBody?(bytes: Uint8Array): void;
  /** An exchange is over (answered, cut short, or refused): its record. */
  exchange?(record: RequestRecord): void;
  /** After a switch (101): the other protocol's bytes, from the visitor or from the app. */
  raw?(from: "visitor" | "app", bytes: Uint8Array): void;
  /** The stream is over. */
  close?(): void;
}

/** What an {@linkcode ExchangeTracker} works with. */
export interface TrackerOptions {
  /** Who watches (none: it only pairs). */
  observer?: ExchangeObserver | undefined;
  /** The clock, in ms. @default {performance.now} */
  now?: () => number;
  /** Changes response heads on their way (see `response()`). */
  rewriteHead?: ((head: MessageHead) => Uint8Array | undefined) | undefined;
}

/** Methods that may be sent again when their connection failed before any answer (RFC 9110 9.2.1). */
const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);
/** A `Connection` value with the `close` option. */
const CLOSE = /(?:^|,)\s*close\s*(?:,|$)/i;

interface Pending {
  method: string;
  target: string;
  upgrade: string | undefined;
  start: number;
}

/**
 * Pairs the requests of one stream with its responses, in order (pipelining
 * included). Feed it request heads, response bytes as they pass, and `close()`
 * at the end of the stream. It says whether a request asking to switch
 * protocols (Upgrade, CONNECT) was granted, so that the request side knows
 * whether what follows is still HTTP, and reports each exchange once to its
 * observer (the request log), which only watches.
 */
export class ExchangeTracker {
  #framer = new Http1Framer("response");
  #pending: Pending[] = [];
  #status: number | undefined;
  #switched = false; // the current response switched protocols
  #bytes = 0;
  #done = false;
  #observer: ExchangeObserver | undefined;
  #records: boolean;
  #raw = false; // switched: what follows is another protocol's bytes
  #appCloses = false; // a response said the app closes the connection after it
  #answered = false; // a response byte has come since the last request was sent
  #closed = false;
  #now: () => number;
  #switch: PromiseWithResolvers<boolean> | undefined;
  #rewriteHead: ((head: MessageHead) => Uint8Array | undefined) | undefined;

  /** A tracker for one stream; see {@linkcode TrackerOptions}. */
  constructor(options: TrackerOptions = {}) {
    this.#observer = options.observer;
    this.#records = options.observer?.exchange !== undefined;
    this.#now = options.now ?? (() => performance.now());
    this.#rewriteHead = options.rewriteHead;
  }

  /**
   * Resolves once the last request that asked to switch protocols has the head
   * of its final answer: true only if that answer switched the stream (101, or
   * 2xx to CONNECT); false if it did not, if the responses could not be
   * followed, or if the stream ended first. False when no request asked.
   */
  switched(): Promise<boolean> {
    return this.#switch?.promise ?? Promise.resolve(false);
  }

  /** Every request has its whole response, and the app keeps its connection open. */
  get settled(): boolean {
    return this.#pending.length === 0 && this.#framer.idle && !this.#done;
  }

  /** Whether the app's connection can carry more requests (no switch, no close, no failure). */
  get reusable(): boolean {
    return !this.#done && !this.#appCloses;
  }

  /**
   * Whether the one request in flight could be sent again on another
   * connection: a safe method, and no byte of an answer came.
   */
  get replayable(): boolean {
    const only = this.#pending.length === 1 ? this.#pending[0]! : undefined;
    return only !== undefined && !this.#answered && SAFE_METHODS.has(only.method);
  }

  /** Whether a request was sent and not one byte of its answer has come. */
  get awaitingAnswer(): boolean {
    return this.#pending.length > 0 && !this.#answered;
  }

  /** The visitor sent a request with this head. */
  request(head: MessageHead): void {
    this.#observer?.request?.(head);
    const method = head.method ?? "?";
    const upgrade = method === "CONNECT" ? "connect" : head.get("upgrade")?.toLowerCase();
    if (upgrade !== undefined) {
      this.#switch = Promise.withResolvers();
      if (this.#done) this.#switch.resolve(false); // responses no longer followed: no switch
    }
    if (this.#done) return;
    // Without a record to make, nothing is kept that only a record would need.
    const report = this.#records;
    this.#pending.push({
      method,
      target: report ? head.target ?? "?" : "",
      upgrade,
      start: report ? this.#now() : 0,
    });
    this.#framer.expect(method);
    this.#answered = false;
  }

  /** Bytes of the current request's body, on their way to the app. */
  requestBody(bytes: Uint8Array): void {
    this.#observer?.requestBody?.(bytes);
  }

  /** After a switch: the visitor's bytes, on their way to the app as they are. */
  visitorRaw(bytes: Uint8Array): void {
    this.#observer?.raw?.("visitor", bytes);
  }

  /** The client refused the visitor's next request itself (it could not be framed). */
  refused(status: number, reason: string): void {
    if (this.#done) return;
    this.#done = true;
    this.#observer?.exchange?.({
      method: "-",
      target: "-",
      status,
      durationMs: 0,
      bytes: 0,
      upgrade: undefined,
      problem: reason,
    });
  }

  /**
   * Response bytes from the app, in order. Without `rewriteHead`, they go on
   * as they are (undefined). With it, the bytes to send instead: each complete
   * head as `rewriteHead` made it, and a head not complete yet held back until it is.
   */
  response(bytes: Uint8Array): Uint8Array | undefined {
    this.#answered = true;
    if (this.#raw) this.#observer?.raw?.("app", bytes);
    if (this.#done) return undefined;
    let held = this.#framer.pendingHead.length; // a head's first bytes, held back before
    const out: Uint8Array[] = [];
    let changed = held > 0;
    let pos = 0;
    for (const event of this.#framer.push(bytes)) {
      switch (event.kind) {
        case "head": {
          const status = event.head.status!;
          // An interim answer (100 Continue): the final one is still to come.
          this.#status = status >= 100 && status < 200 && status !== 101 ? undefined : status;
          this.#bytes = 0;
          // A final answer to a request that asked to switch decides it, at its head.
          const request = this.#pending[0];
          if (this.#status !== undefined && request) {
            this.#switched = switchesProtocols(request.method, event.head);
            if (request.upgrade !== undefined) this.#switch?.resolve(this.#switched);
          }
          this.#observer?.response?.(event.head);
          if (event.head.version !== "HTTP/1.1" || CLOSE.test(event.head.get("connection") ?? "")) {
            this.#appCloses = true;
          }
          if (this.#rewriteHead) {
            const rewritten = this.#rewriteHead(event.head);
            if (rewritten) changed = true;
            out.push(rewritten ?? event.bytes.slice());
          }
          pos += event.bytes.length - held;
          held = 0;
          break;
        }
        case "body":
          this.#bytes += event.bytes.length;
          this.#observer?.responseBody?.(event.bytes);
          out.push(event.bytes);
          pos += event.bytes.length;
          break;
        case "end":
          if (this.#status !== undefined) this.#finish(undefined);
          break;
        case "raw": // switched protocols: nothing more to pair
          this.#done = true;
          this.#raw = true;
          this.#observer?.raw?.("app", event.bytes);
          out.push(event.bytes);
          pos += event.bytes.length;
          break;
        case "error":
          this.#finish("bad response");
          this.#done = true;
          this.#switch?.resolve(false);
          // What cannot be framed goes on as it came.
          if (held > 0) out.push(this.#framer.pendingHead.slice(0, held));
          out.push(bytes.subarray(pos));
          pos = bytes.length;
          break;
      }
    }
    if (!this.#rewriteHead) return undefined;
    if (pos < bytes.length) changed = true; // the start of a head: held back
    return changed ? concatBytes(...out) : undefined;
  }

  /** The stream's end: what is held back of an incomplete head goes on as it is. */
  flush(): Uint8Array | undefined {
    const held = this.#framer.pendingHead;
    return this.#rewriteHead && held.length > 0 ? held.slice() : undefined;
  }

  /** The app's side is over: report what is still open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#done) {
      for (const event of this.#framer.end()) {
        if (event.kind === "end" && this.#status !== undefined) this.#finish(undefined);
      }
    }
    this.#done = true;
    while (this.#pending.length > 0) {
      this.#finish(this.#status === undefined ? "no response" : "cut short");
    }
    this.#switch?.resolve(false);
    this.#observer?.close?.();
  }

  #finish(problem: string | undefined): void {
    const request = this.#pending.shift();
    if (!request) return;
    const switched = problem === undefined && this.#switched;
    this.#observer?.exchange?.({
      method: request.method,
      target: request.target,
      status: this.#status,
      durationMs: this.#now() - request.start,
      bytes: this.#bytes,
      upgrade: switched ? request.upgrade : undefined,
      problem,
    });
    this.#status = undefined;
    this.#switched = false;
    this.#bytes = 0;
  }
}
