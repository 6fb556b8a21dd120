// The admin listener's flags: `--admin ADDR`, `--admin-token`, `--metrics-per-tunnel`.

import { type FlagValue, UsageError } from "../cli.ts";
import { normalizeHost } from "../names.ts";
import { type AdminOptions, checkAdminOptions } from "./admin.ts";

/** The admin flags, as `node:util` `parseArgs` takes them. */
export const ADMIN_FLAGS = {
  admin: { type: "string" },
  "admin-token": { type: "string" },
  "metrics-per-tunnel": { type: "boolean" },
} as const;

/** The admin flags' lines in `--help`. */
export const ADMIN_USAGE =
  `  --admin ADDR       serve /metrics, /dashboard and /api/tunnels on ADDR (HOST:PORT, or a
                     port on 127.0.0.1); off by default; off loopback it needs --admin-token
  --admin-token T    require "Authorization: Bearer T" (16+ characters) for the admin data,
                     on loopback too (default $GOTUNNEL_ADMIN_TOKEN)
  --metrics-per-tunnel
                     also series labelled with each tunnel's name (one set per tunnel)`;

/** `HOST:PORT`, `[IPV6]:PORT` or `PORT` (on 127.0.0.1) as a hostname and a port. */
export function parseAdminAddress(value: string): { hostname: string; port: number } {
  const bad = (): UsageError =>
    new UsageError(`Invalid --admin ${JSON.stringify(value)}: use HOST:PORT, e.g. 127.0.0.1:9090`);
  if (/^\d{1,5}$/.test(value)) {
    const port = Number(value);
    if (port > 65535) throw bad();
    return { hostname: "127.0.0.1", port };
  }
  const match = /^(\[[^\]]*\]|[^:[\]]+):(\d{1,5})$/.exec(value);
  if (!match) throw bad();
  const host = normalizeHost(match[1]!);
  const port = Number(match[2]);
  if (typeof host === "string" || port > 65535) throw bad();
  return { hostname: host.host, port };
}

/**
 * Reads the admin flags: undefined without `--admin`; a UsageError for a bad
 * address, a short token, or an address off loopback without a token.
 */
export function readAdminFlags(
  values: Record<string, FlagValue>,
  env: (name: string) => string | undefined,
): AdminOptions | undefined {
  const address = values.admin;
  const flagToken = typeof values["admin-token"] === "string" ? values["admin-token"] : undefined;
  if (typeof address !== "string") {
    if (flagToken !== undefined || values["metrics-per-tunnel"]) {
      throw new UsageError("--admin-token and --metrics-per-tunnel need --admin ADDR");
    }
    return undefined;
  }
  const token = flagToken ?? env("GOTUNNEL_ADMIN_TOKEN");
  const options: AdminOptions = {
    ...parseAdminAddress(address),
    ...(token === undefined ? {} : { token }),
    perTunnelMetrics: values["metrics-per-tunnel"] === true,
  };
  const why = checkAdminOptions(options);
  if (why) throw new UsageError(`Invalid --admin: ${why}`);
  return options;
}
