// Several watchers of a tunnel's streams (the request log, the inspector, the caller's
// own) as one observer factory, and the capture store they fill.

import {
  INSPECTOR_BODY_BUDGET_BYTES,
  INSPECTOR_LIMIT,
  INSPECTOR_MAX_BODY_BYTES,
} from "../limits.ts";
import { describeError, type Logger } from "../log.ts";
import type { ExchangeObserver, RequestRecord } from "./exchanges.ts";
import type { VisitorInfo } from "./forwarded.ts";
import { captureStream } from "./inspector/capture.ts";
import type { InspectOptions } from "./inspector/inspector.ts";
import { type CapturedExchange, CaptureStore } from "./inspector/store.ts";

/** Makes an observer for a visitor's stream, or none. */
export type ObserverFactory = (visitor: VisitorInfo) => ExchangeObserver | undefined;

/**
 * One factory for all of `factories` (those undefined left out): each stream
 * gets the observers they make, called in order. None: undefined, so a tunnel
 * with no watcher pays nothing; one: that one as it is.
 */
export function combineObservers(
  factories: (ObserverFactory | undefined)[],
): ObserverFactory | undefined {
  const present = factories.filter((f): f is ObserverFactory => f !== undefined);
  if (present.length <= 1) return present[0];
  return (visitor) => {
    const made = present.map((f) => f(visitor)).filter((o): o is ExchangeObserver => !!o);
    return made.length <= 1 ? made[0] : fanOut(made);
  };
}

/** An observer that passes each call to every one of `observers`, in order. */
function fanOut(observers: ExchangeObserver[]): ExchangeObserver {
  return {
    request: (head) => observers.forEach((o) => o.request?.(head)),
    requestBody: (bytes) => observers.forEach((o) => o.requestBody?.(bytes)),
    response: (head) => observers.forEach((o) => o.response?.(head)),
    responseBody: (bytes) => observers.forEach((o) => o.responseBody?.(bytes)),
    exchange: (record) => observers.forEach((o) => o.exchange?.(record)),
    raw: (from, bytes) => observers.forEach((o) => o.raw?.(from, bytes)),
    close: () => observers.forEach((o) => o.close?.()),
  };
}

/** What a tunnel's watchers come from. */
export interface WatchOptions {
  /** The request log's (or the caller's) record of each exchange. */
  onRequest?: ((record: RequestRecord) => void) | undefined;
  /** The caller's own observer. */
  observe?: ObserverFactory | undefined;
  /** The inspector, when on. */
  inspect?: false | InspectOptions | undefined;
  /** The caller's callback per captured exchange. */
  onExchange?: ((exchange: CapturedExchange) => void) | undefined;
}

/**
 * The capture store for the inspector or `onExchange` (undefined when neither
 * asks for one), within the inspector's limits or the defaults.
 */
export function captureStoreFor(options: WatchOptions, log: Logger): CaptureStore | undefined {
  const inspect = options.inspect || undefined;
  if (!inspect && !options.onExchange) return undefined;
  const store = new CaptureStore({
    limit: inspect?.limit ?? INSPECTOR_LIMIT,
    bodyBudgetBytes: inspect?.bodyBudgetBytes ?? INSPECTOR_BODY_BUDGET_BYTES,
    maxBodyBytes: inspect?.maxBodyBytes ?? INSPECTOR_MAX_BODY_BYTES,
  });
  const onExchange = options.onExchange;
  if (onExchange) {
    store.onComplete = (exchange) => {
      try {
        onExchange(exchange);
      } catch (e) {
        log.error("onExchange callback failed", { error: describeError(e) });
      }
    };
  }
  return store;
}

/**
 * Who watches each HTTP stream of the tunnel named `tunnel`: the request log,
 * the caller's observer, the capture.
 */
export function tunnelObservers(
  options: WatchOptions,
  store: CaptureStore | undefined,
  tunnel?: string,
): ObserverFactory | undefined {
  const { onRequest, observe } = options;
  return combineObservers([
    onRequest && (() => ({ exchange: onRequest })),
    observe,
    store && ((visitor) => captureStream(store, { ...visitor, tunnel })),
  ]);
}
