// Redis URLs as `--redis` takes them (pure): read, checked, and redacted for logs.

/**
 * A Redis URL read: itself, whether it is TLS, and a form safe to log.
 *
 * @example
 * ```ts
 * import { parseRedisUrl, type RedisTarget } from "./redis_url.ts";
 * const target: RedisTarget = parseRedisUrl("redis://10.0.0.5:6379/0");
 * console.log(target.tls); // false
 * ```
 */
export interface RedisTarget {
  /** The URL as given (it may hold a password: never log it). */
  readonly url: string;
  /** `rediss://`: TLS. */
  readonly tls: boolean;
  /** The URL with its password (and user) replaced by `***`. */
  readonly redacted: string;
}

/**
 * Reads a `redis://[[user]:password@]host[:port][/db]` or `rediss://` URL.
 * Throws a TypeError (its message holds the URL redacted) for another scheme,
 * a missing host or a database that is not a number.
 *
 * @example
 * ```ts
 * import { parseRedisUrl } from "./redis_url.ts";
 * const target = parseRedisUrl("rediss://:s3cret@redis.internal:6380/2");
 * console.log(target.tls, target.redacted); // true rediss://***@redis.internal:6380/2
 * ```
 */
export function parseRedisUrl(url: string): RedisTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`Invalid Redis URL: expected redis://HOST[:PORT][/DB]`);
  }
  const redacted = redactRedisUrl(url);
  const bad = (why: string) => new TypeError(`Invalid Redis URL ${redacted}: ${why}`);
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw bad("use redis:// or rediss:// (TLS)");
  }
  if (parsed.hostname === "") throw bad("the host is missing");
  if (!/^(\/\d{0,5})?$/.test(parsed.pathname)) throw bad("the database must be a number");
  if (parsed.search !== "" || parsed.hash !== "") throw bad("no query or fragment is read");
  return { url, tls: parsed.protocol === "rediss:", redacted };
}

/**
 * `url` with its credentials replaced by `***`: what logs and errors show.
 *
 * @example
 * ```ts
 * import { redactRedisUrl } from "./redis_url.ts";
 * console.log(redactRedisUrl("redis://:s3cret@10.0.0.5:6379/0")); // redis://***@10.0.0.5:6379/0
 * ```
 */
export function redactRedisUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/?#]*@/i, "$1***@");
}
