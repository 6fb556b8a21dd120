// The plain port's accept loop: accept errors (EMFILE) back off and never end the
// server; a peer gone before its accept is only a debug line.

import { sleep } from "../io.ts";
import { ACCEPT_BACKOFF_MAX_MS, ACCEPT_BACKOFF_MIN_MS } from "../limits.ts";
import { describeError, isDisconnect, type Logger } from "../log.ts";

/**
 * Accepts from `listener` and hands each connection to `handle` until the
 * listener is closed or `signal` aborts.
 */
export async function acceptLoop(
  listener: Deno.Listener<Deno.Conn>,
  handle: (conn: Deno.Conn) => void,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  let backoff = ACCEPT_BACKOFF_MIN_MS;
  while (!signal.aborted) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
      backoff = ACCEPT_BACKOFF_MIN_MS;
    } catch (e) {
      if (signal.aborted || e instanceof Deno.errors.BadResource) break; // closed
      if (isDisconnect(e)) {
        // One peer reset before we accepted it: not the listener's fault.
        log.debug("Accepted connection was already gone", { error: describeError(e) });
        continue;
      }
      log.warn("Accept failed, backing off", { error: describeError(e), ms: backoff });
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, ACCEPT_BACKOFF_MAX_MS);
      continue;
    }
    handle(conn);
  }
}
