// Admission by client IP against the server's limits: connections being routed,
// tunnels held, new tunnels a minute.

import type { ServerLimits } from "../limits.ts";

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
