// The server's limits as command-line flags: the table, the help lines, parsing.

import { LIMIT_RANGES, type ServerLimits } from "../limits.ts";
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
    flag: "proxy-ping",
    key: "proxyPingIntervalMs",
    kind: "duration",
    help: "ping idle tunnel connections this often; dead ones close",
  },
  {
    flag: "accept-timeout",
    key: "streamAcceptTimeoutMs",
    kind: "duration",
    help: "wait for a client to take a visitor (then the next connection)",
  },
  {
    flag: "accept-after-quiet",
    key: "acceptAfterQuietMs",
    kind: "duration",
    help: "a connection quiet this long must take a visitor first (0: always)",
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
    flag: "max-tcp-per-ip",
    key: "maxTcpConnectionsPerIp",
    kind: "count",
    help: "TCP visitors connected at once from one IP, all TCP ports (more are closed)",
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
    help: "new control connections (clients) per IP per minute",
  },
  {
    flag: "max-auth-failures-per-ip-per-minute",
    key: "maxAuthFailuresPerIpPerMinute",
    kind: "count",
    help: "wrong or missing tokens per IP per minute",
  },
];

/** A limit's value as its flag is written: `10s`, or a plain number. */
function show(kind: LimitFlag["kind"], value: number): string {
  return kind === "duration" ? formatDuration(value) : String(value);
}

/** The `--help` lines of the limit flags, with their defaults and ranges. */
export function limitUsage(defaults: ServerLimits): string {
  return LIMIT_FLAGS.map(({ flag, key, kind, help }) => {
    const [min, max] = LIMIT_RANGES[key];
    const range = kind === "count" ? "" : `, ${show(kind, min)}-${show(kind, max)}`;
    const left = `  --${flag} ${kind === "duration" ? "TIME" : "N"}`;
    return `${left.padEnd(42)}${help} (default ${show(kind, defaults[key])}${range})`;
  }).join("\n");
}

/**
 * Reads a duration flag in `[min, max]`; throws RangeError with a one-line
 * reason that gives the range.
 */
export function durationFlag(
  flag: string,
  text: string,
  [min, max]: readonly [number, number],
): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms < min || ms > max) {
    throw new RangeError(
      `Invalid --${flag} ${JSON.stringify(text)}: use ${formatDuration(min)} to ${
        formatDuration(max)
      }`,
    );
  }
  return ms;
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
    const [min, max] = LIMIT_RANGES[key];
    if (kind === "duration") {
      limits[key] = durationFlag(flag, text, [min, max]);
    } else {
      if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
        throw new RangeError(
          `Invalid --${flag} ${JSON.stringify(text)}: use an integer ${min}-${max}`,
        );
      }
      limits[key] = Number(text);
    }
  }
  return limits;
}
