// The HTTP-aware client's part in one visitor stream: requests framed and
// rewritten on their way to the app, responses paired with them on their way
// back, and a refusal answered in place of the app.

import type { LinkState } from "./app_pool.ts";
import { type MessageHead, rebuildHead, spliceHead } from "../http/head.ts";

/** The field said to a visitor whose `Connection: close` the app never saw. */
const CONNECTION_CLOSE = new TextEncoder().encode("Connection: close\r\n");
import type { Writer } from "../channel.ts";
import { httpError } from "../http/response.ts";
import type { Logger } from "../log.ts";
import type { StreamAdapter } from "../relay.ts";
import { isolateCookie, isolateCookies } from "./cookies.ts";
import { type ExchangeObserver, ExchangeTracker } from "./exchanges.ts";
import { RequestRewriter, type VisitorInfo } from "./forwarded.ts";

/**
 * A {@linkcode StreamAdapter} for an HTTP visitor: inbound bytes go through a
 * {@linkcode RequestRewriter} to `local`, outbound ones past an
 * {@linkcode ExchangeTracker}. When the rewriter refuses a request, `refused`
 * aborts (the relay then closes the app's side) and the refusal is the stream's
 * last word if nothing went to the visitor yet.
 */
export class HttpStream implements StreamAdapter, LinkState {
  /** Where the relay writes inbound bytes: the request rewriter. */
  readonly inbound: Writer;
  /** Aborted when a request is refused: closes the app's side through the relay. */
  readonly refused: AbortSignal;
  #tracker: ExchangeTracker;
  #rewriter: RequestRewriter;
  #refusal: Uint8Array | undefined;
  #done = false;

  /**
   * The adapter for one visitor, in front of `local`; `observer` watches its
   * exchanges. With `isolateCookiesFor` (the tunnel's public host), Set-Cookie
   * Domain attributes naming a parent of it are dropped.
   */
  constructor(
    local: Writer,
    info: VisitorInfo,
    observer: ExchangeObserver | undefined,
    log: Logger,
    isolateCookiesFor?: string,
  ) {
    const refuse = new AbortController();
    this.refused = refuse.signal;
    this.#tracker = new ExchangeTracker({
      observer,
      rewriteHead: isolateCookiesFor === undefined && !info.keepAppAlive
        ? undefined
        : (head) => this.#rewriteResponse(head, isolateCookiesFor),
    });
    this.inbound = this.#rewriter = new RequestRewriter({
      out: local,
      info,
      tracker: this.#tracker,
      refuse: (answer, status, reason) => {
        this.#refusal = answer;
        this.#tracker.refused(status, reason);
        refuse.abort();
      },
      log,
    });
  }

  // A response head on its way to the visitor: cookies kept to the tunnel's host, and,
  // when the visitor's `Connection: close` was kept from the app, said back to it (the
  // client closes the visitor's connection after this answer, RFC 9112 9.6).
  #rewriteResponse(
    head: MessageHead,
    isolateCookiesFor: string | undefined,
  ): Uint8Array | undefined {
    const closing = (head.status ?? 0) >= 200 && this.#rewriter.visitorClosing;
    if (!closing) {
      return isolateCookiesFor === undefined ? undefined : isolateCookies(head, isolateCookiesFor);
    }
    if (isolateCookiesFor === undefined) {
      return spliceHead(head, (i) => !head.nameIs(i, "connection"), CONNECTION_CLOSE);
    }
    return rebuildHead(head, (i) => {
      if (head.nameIs(i, "connection")) return undefined; // the app's keep-alive is not the visitor's
      const value = head.value(i);
      return isolateCookiesFor !== undefined && head.nameIs(i, "set-cookie")
        ? isolateCookie(value, isolateCookiesFor)
        : value;
    }, ["Connection: close"]);
  }

  /** Every request has its whole answer, and none is half forwarded. */
  get settled(): boolean {
    return this.#rewriter.settled && this.#tracker.settled;
  }

  /** Whether the app's connection could carry another request. */
  get reusable(): boolean {
    return this.#rewriter.reusable && this.#tracker.reusable;
  }

  /**
   * The app has sent the last answer a closing visitor asked for: its pooled
   * connection ends the stream here (the relay sends END with those bytes).
   */
  get done(): boolean {
    // Latched: once the stream ends the tracker closes, and "reusable" no longer says so.
    this.#done ||= this.#rewriter.visitorClosing && this.reusable && this.settled;
    return this.#done;
  }

  /** Whether the visitor asked its connection to end after the answer. */
  get visitorClosing(): boolean {
    return this.#rewriter.visitorClosing;
  }

  /** Whether the one request in flight may be sent again on another connection. */
  get replayable(): boolean {
    return this.#rewriter.settled && this.#tracker.replayable;
  }

  /** A response chunk from the app, on its way to the visitor (see `ExchangeTracker.response`). */
  outbound(bytes: Uint8Array): Uint8Array | undefined {
    return this.#tracker.response(bytes);
  }

  /** At the app's end of stream: what is held back of an incomplete head. */
  flush(): Uint8Array | undefined {
    return this.#tracker.flush();
  }

  /** The app has nothing more to send: no answer to wait for any more. */
  outboundEnded(): void {
    this.#tracker.close();
  }

  /**
   * What to send in place of an ABORT: the refusal, if a request was refused,
   * or a 502 when the app failed before any byte of its answer.
   */
  lastWord(): Uint8Array | undefined {
    if (this.#refusal) return this.#refusal;
    if (!this.#tracker.awaitingAnswer) return undefined;
    return httpError(502, "The local app closed the connection without answering.");
  }

  /** The stream is over: reports what is still open. */
  close(): void {
    this.#tracker.close();
  }
}
