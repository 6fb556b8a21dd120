// The server's limits as flags, and admission by IP: sniffing connections, tunnels, session rate.

import type { ServerLimits } from "../protocol.ts";

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

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses `500ms`, `10s`, `1.5m`, `1h` into milliseconds; undefined if malformed. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * UNITS[match[2]!]!;
  return Number.isFinite(ms) && ms <= 2 ** 31 - 1 ? Math.round(ms) : undefined;
}

/** Formats milliseconds the way `parseDuration` reads them. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const MINUTE_MS = 60_000;

/**
 * The key per-IP limits count by: an IPv4 address (also when mapped into
 * IPv6), or an IPv6 address's /64 — one host usually has a whole /64.
 */
export function ipKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!ip.includes(":")) return ip;
  const [head = "", tail = ""] = ip.toLowerCase().split("::");
  const front = head ? head.split(":") : [];
  const back = tail ? tail.split(":") : [];
  const groups = ip.includes("::")
    ? [...front, ...Array(Math.max(0, 8 - front.length - back.length)).fill("0"), ...back]
    : front;
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":") + "::/64";
}
/** Size of the per-IP session log at which IPs without recent sessions are forgotten. */
const SESSION_LOG_SWEEP_SIZE = 4096;

/** Counts per client IP, against the limits; counts of 0 mean no limit. */
export class Admission {
  #limits: ServerLimits;
  #sniffing = new Map<string, number>();
  #sniffingTotal = 0;
  #tunnels = new Map<string, number>();
  #sessions = new Map<string, number[]>();

  /** Admission against `limits`. */
  constructor(limits: ServerLimits) {
    this.#limits = limits;
  }

  /** Counts a connection being sniffed; false (and not counted) when over a limit. */
  enterSniffing(address: string): boolean {
    const ip = ipKey(address);
    const { maxSniffingPerIp: perIp, maxSniffingTotal: total } = this.#limits;
    const mine = this.#sniffing.get(ip) ?? 0;
    if ((perIp > 0 && mine >= perIp) || (total > 0 && this.#sniffingTotal >= total)) return false;
    this.#sniffing.set(ip, mine + 1);
    this.#sniffingTotal++;
    return true;
  }

  /** Uncounts a connection counted by `enterSniffing`. */
  leaveSniffing(address: string): void {
    const ip = ipKey(address);
    const mine = (this.#sniffing.get(ip) ?? 1) - 1;
    if (mine > 0) this.#sniffing.set(ip, mine);
    else this.#sniffing.delete(ip);
    this.#sniffingTotal--;
  }

  /**
   * Whether `ip` may open one more tunnel now: undefined if so (and the new
   * session is counted against the per-minute rate), else why not.
   */
  checkNewTunnel(address: string, now: number = Date.now()): string | undefined {
    const ip = ipKey(address);
    const { maxTunnelsPerIp: perIp, maxSessionsPerIpPerMinute: rate } = this.#limits;
    if (perIp > 0 && (this.#tunnels.get(ip) ?? 0) >= perIp) {
      return `Too many tunnels from ${ip}: at most ${perIp}`;
    }
    if (rate > 0) {
      const recent = (this.#sessions.get(ip) ?? []).filter((t) => now - t < MINUTE_MS);
      if (recent.length >= rate) {
        this.#sessions.set(ip, recent);
        return `Too many new tunnels from ${ip}: at most ${rate} a minute`;
      }
      recent.push(now);
      this.#sessions.set(ip, recent);
      if (this.#sessions.size > SESSION_LOG_SWEEP_SIZE) this.#sweep(now);
    }
    return undefined;
  }

  // Forgets IPs with no session in the last minute, so the map cannot grow without bound.
  #sweep(now: number): void {
    for (const [ip, times] of this.#sessions) {
      if (times.every((t) => now - t >= MINUTE_MS)) this.#sessions.delete(ip);
    }
  }

  /** Counts a registered tunnel of `ip`. */
  addTunnel(address: string): void {
    const ip = ipKey(address);
    this.#tunnels.set(ip, (this.#tunnels.get(ip) ?? 0) + 1);
  }

  /** Uncounts a tunnel of `ip`. */
  removeTunnel(address: string): void {
    const ip = ipKey(address);
    const left = (this.#tunnels.get(ip) ?? 1) - 1;
    if (left > 0) this.#tunnels.set(ip, left);
    else this.#tunnels.delete(ip);
  }
}

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
