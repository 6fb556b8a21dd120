// The HTTP-aware client's part in one visitor stream: requests framed and
// rewritten on their way to the app, responses paired with them on their way
// back, and a refusal answered in place of the app.

import type { Writer } from "../channel.ts";
import type { Logger } from "../log.ts";
import type { StreamAdapter } from "../relay.ts";
import { isolateCookies } from "./cookies.ts";
import { type ExchangeObserver, ExchangeTracker } from "./exchanges.ts";
import { RequestRewriter, type VisitorInfo } from "./forwarded.ts";

/**
 * A {@linkcode StreamAdapter} for an HTTP visitor: inbound bytes go through a
 * {@linkcode RequestRewriter} to `local`, outbound ones past an
 * {@linkcode ExchangeTracker}. When the rewriter refuses a request, `refused`
 * aborts (the relay then closes the app's side) and the refusal is the stream's
 * last word if nothing went to the visitor yet.
 */
export class HttpStream implements StreamAdapter {
  /** Where the relay writes inbound bytes: the request rewriter. */
  readonly inbound: Writer;
  /** Aborted when a request is refused: closes the app's side through the relay. */
  readonly refused: AbortSignal;
  #tracker: ExchangeTracker;
  #refusal: Uint8Array | undefined;

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
      rewriteHead: isolateCookiesFor === undefined
        ? undefined
        : (head) => isolateCookies(head, isolateCookiesFor),
    });
    this.inbound = new RequestRewriter({
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

  /** The refusal to send in place of an ABORT, if a request was refused. */
  lastWord(): Uint8Array | undefined {
    return this.#refusal;
  }

  /** The stream is over: reports what is still open. */
  close(): void {
    this.#tracker.close();
  }
}
