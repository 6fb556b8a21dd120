// The server's limits as command-line flags: the table, the help lines, parsing.

import type { ServerLimits } from "../limits.ts";
import { formatDuration, parseDuration } from "../units.ts";

/** One limit as a command-line flag. */
export interface LimitFlag {
  /** Flag name without dashes. */
  flag: string;
  /** The limit it sets. */
  key: keyof ServerLimits;
  /** `duration` takes `500ms`, `10s`, `10m`, `1h`; `count` and `bytes` an integer (0: no limit). */
  kind: "duration" | "count" | "bytes";
  /** One line for `--help`. */
  help: string;
}

/** Every server limit, as the flag that sets it. */
export const LIMIT_FLAGS: readonly LimitFlag[] = [
  {
    flag: "sniff-timeout",
    key: "sniffTimeoutMs",
    kind: "duration",
    help: "deadline for a connection's first bytes (then 408)",
  },
  {
    flag: "max-head-bytes",
    key: "maxSniffBytes",
    kind: "bytes",
    help: "largest request head or ClientHello (then 431)",
  },
  {
    flag: "handshake-timeout",
    key: "handshakeTimeoutMs",
    kind: "duration",
    help: "time a client has for its handshake",
  },
  {
    flag: "max-frame-bytes",
    key: "maxFrameBytes",
    kind: "bytes",
    help: "largest control frame from a client",
  },
  {
    flag: "heartbeat",
    key: "heartbeatIntervalMs",
    kind: "duration",
    help: "interval between heartbeats",
  },
  {
    flag: "peer-timeout",
    key: "peerTimeoutMs",
    kind: "duration",
    help: "silence after which a client is dead",
  },
  {
    flag: "proxy-wait",
    key: "proxyWaitTimeoutMs",
    kind: "duration",
    help: "wait for a free tunnel connection (then 504)",
  },
  {
    flag: "idle-timeout",
    key: "streamIdleTimeoutMs",
    kind: "duration",
    help: "close a relayed connection idle this long",
  },
  {
    flag: "max-streams-per-tunnel",
    key: "maxStreamsPerTunnel",
    kind: "count",
    help: "concurrent visitors per tunnel (then 503)",
  },
  {
    flag: "max-idle-proxies",
    key: "maxIdleProxies",
    kind: "count",
    help: "idle pooled connections per tunnel",
  },
  {
    flag: "max-sniffing-per-ip",
    key: "maxSniffingPerIp",
    kind: "count",
    help: "connections being routed, per IP",
  },
  {
    flag: "max-sniffing",
    key: "maxSniffingTotal",
    kind: "count",
    help: "connections being routed, in all",
  },
  {
    flag: "max-tunnels-per-ip",
    key: "maxTunnelsPerIp",
    kind: "count",
    help: "tunnels per client IP",
  },
  {
    flag: "max-sessions-per-ip-per-minute",
    key: "maxSessionsPerIpPerMinute",
    kind: "count",
    help: "new tunnels per client IP per minute",
  },
];

/** The `--help` lines of the limit flags, with their defaults. */
export function limitUsage(defaults: ServerLimits): string {
  return LIMIT_FLAGS.map(({ flag, key, kind, help }) => {
    const value = kind === "duration" ? formatDuration(defaults[key]) : String(defaults[key]);
    const left = `  --${flag} ${kind === "duration" ? "TIME" : "N"}`;
    return `${left.padEnd(42)}${help} (default ${value})`;
  }).join("\n");
}

/** Reads the limit flags present in `values`; throws RangeError with a one-line reason. */
export function readLimitFlags(
  values: Record<string, string | boolean | string[] | undefined>,
): Partial<ServerLimits> {
  const limits: Partial<ServerLimits> = {};
  for (const { flag, key, kind } of LIMIT_FLAGS) {
    const raw = values[flag];
    if (raw === undefined) continue;
    const text = String(raw);
    if (kind === "duration") {
      const ms = parseDuration(text);
      if (ms === undefined || ms <= 0) {
        throw new RangeError(`Invalid --${flag} ${JSON.stringify(text)}: use e.g. 500ms, 10s, 10m`);
      }
      limits[key] = ms;
    } else {
      const min = kind === "bytes" ? MIN_BYTES_LIMIT : 0;
      if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > 2 ** 31 - 1) {
        throw new RangeError(`Invalid --${flag} ${JSON.stringify(text)}: use an integer >= ${min}`);
      }
      limits[key] = Number(text);
    }
  }
  return limits;
}

/** Byte limits below this would refuse ordinary ClientHellos and frames. */
const MIN_BYTES_LIMIT = 4096;
