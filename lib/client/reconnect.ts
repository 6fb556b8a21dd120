// How a client gets its tunnel back after a lost connection: backoff with jitter,
// refusals that end it, names held or taken that are waited out.

import { TunnelError } from "../errors.ts";
import { sleep } from "../io.ts";
import { PEER_TIMEOUT_MS, RECONNECT_MAX_MS, RECONNECT_MIN_MS } from "../limits.ts";
import { describeError, type Logger } from "../log.ts";
import type { Established } from "./handshake.ts";

/**
 * Refusals after which reconnecting cannot help, from this server or another
 * node of its cluster.
 *
 * @example
 * ```ts
 * import { FATAL_REFUSALS } from "./reconnect.ts";
 * console.log(FATAL_REFUSALS.has("unauthorized"), FATAL_REFUSALS.has("connect")); // true false
 * ```
 */
export const FATAL_REFUSALS: ReadonlySet<string> = new Set([
  "version",
  "invalid-subdomain",
  "unauthorized",
  "replaced",
]);
/** Margin added to a reserved name's time left before claiming it again. */
export const RESERVED_RETRY_MARGIN_MS = 250;

/** The delay before reconnect attempt `attempt` (0-based): doubling, capped, with jitter. */
export function backoffDelay(attempt: number, random: number = Math.random()): number {
  const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** attempt);
  return Math.round(base / 2 + (base / 2) * random);
}

/**
 * Re-establishes a lost tunnel: `establish` again and again with backoff until
 * it works, a refusal makes it pointless (thrown), or `signal` aborts
 * (undefined). A name held for a lease we lack is waited out; a name "taken"
 * is retried while the server may not have noticed our old session is gone.
 */
export async function reconnect(
  establish: () => Promise<Established>,
  signal: AbortSignal,
  log: Logger,
): Promise<Established | undefined> {
  let takenSince: number | undefined;
  for (let attempt = 0; !signal.aborted; attempt++) {
    const delay = backoffDelay(attempt);
    log.info("Reconnecting", { in_ms: delay, attempt: attempt + 1 });
    await sleep(delay, signal);
    if (signal.aborted) return undefined;
    try {
      return await establish();
    } catch (e) {
      if (e instanceof TunnelError && FATAL_REFUSALS.has(e.code)) throw e;
      if (e instanceof TunnelError && e.code === "subdomain-reserved") {
        // Held for a lease we do not have (the server lost its key): wait it out.
        const ms = (e.retryAfterMs ?? RECONNECT_MIN_MS) + RESERVED_RETRY_MARGIN_MS;
        log.warn("Subdomain reserved, waiting", { ms });
        await sleep(ms, signal);
        attempt = -1;
        continue;
      }
      if (e instanceof TunnelError && e.code === "subdomain-taken") {
        // The server may not have noticed yet that our old session is gone (it
        // takes up to PEER_TIMEOUT_MS); after that, someone else holds the name.
        takenSince ??= Date.now();
        if (Date.now() - takenSince > PEER_TIMEOUT_MS + RECONNECT_MAX_MS) throw e;
      } else {
        takenSince = undefined;
      }
      log.warn("Reconnect failed", { error: describeError(e) });
    }
  }
  return undefined;
}

/** Refusals of one tunnel after which claiming it again cannot help. */
const FATAL_CLAIMS: ReadonlySet<string> = new Set([
  "invalid-subdomain",
  "invalid-host",
  "invalid-port",
  "unauthorized",
  "replaced",
  "bad-request",
  "version",
]);

/**
 * What to do with a tunnel the server refused: the milliseconds after which to
 * claim it again, or undefined to give it up. A name held for a lease we lack
 * is waited out (at start only with `wait`); a name taken after a reconnect is
 * claimed again while the server may not have noticed our old connection is
 * gone; at start, anything else ends the tunnel.
 */
export function afterRefusal(
  refusal: { code: string; retryAfterMs?: number | undefined },
  state: { first: boolean; wait: boolean; takenSince: number | undefined; attempts: number },
  now: number = Date.now(),
): number | undefined {
  const { code } = refusal;
  if (code === "subdomain-reserved" || code === "port-reserved") {
    if (state.first && !state.wait) return undefined;
    return (refusal.retryAfterMs ?? RECONNECT_MIN_MS) + RESERVED_RETRY_MARGIN_MS;
  }
  if (state.first || FATAL_CLAIMS.has(code)) return undefined;
  if (code === "subdomain-taken" || code === "port-taken") {
    const since = state.takenSince ?? now;
    if (now - since > PEER_TIMEOUT_MS + RECONNECT_MAX_MS) return undefined;
  }
  return backoffDelay(state.attempts);
}
