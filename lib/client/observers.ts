// Several watchers of a tunnel's streams (the request log, the inspector, the caller's
// own) as one observer factory.

import type { ExchangeObserver } from "./exchanges.ts";
import type { VisitorInfo } from "./forwarded.ts";

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
