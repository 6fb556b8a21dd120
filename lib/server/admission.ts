// Admission by client IP against the server's limits: connections being routed,
// TCP visitors connected, tunnels held, new control connections a minute.

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
  #tcp = new Map<string, number>();
  #sessions = new MinuteCounter();
  #failures = new MinuteCounter();

  /** Admission against `limits`. */
  constructor(limits: ServerLimits) {
    this.#limits = limits;
  }

  /**
   * Counts a connection being sniffed; false (and not counted) when over a
   * limit. Without an address (a trusted proxy's connection whose PROXY header
   * has yet to name its visitor) it counts against the total only.
   */
  enterSniffing(address: string | undefined): boolean {
    const ip = address === undefined ? undefined : ipKey(address);
    const { maxSniffingPerIp: perIp, maxSniffingTotal: total } = this.#limits;
    const mine = ip === undefined ? 0 : this.#sniffing.get(ip) ?? 0;
    if ((perIp > 0 && mine >= perIp) || (total > 0 && this.#sniffingTotal >= total)) return false;
    if (ip !== undefined) this.#sniffing.set(ip, mine + 1);
    this.#sniffingTotal++;
    return true;
  }

  /** Uncounts a connection counted by `enterSniffing` (with the same address). */
  leaveSniffing(address: string | undefined): void {
    this.#sniffingTotal--;
    if (address === undefined) return;
    const ip = ipKey(address);
    const mine = (this.#sniffing.get(ip) ?? 1) - 1;
    if (mine > 0) this.#sniffing.set(ip, mine);
    else this.#sniffing.delete(ip);
  }

  /** Counts a TCP visitor from `address`; false (and not counted) over its per-IP limit. */
  enterTcp(address: string): boolean {
    const ip = ipKey(address);
    const max = this.#limits.maxTcpConnectionsPerIp;
    const mine = this.#tcp.get(ip) ?? 0;
    if (max > 0 && mine >= max) return false;
    this.#tcp.set(ip, mine + 1);
    return true;
  }

  /** Uncounts a TCP visitor counted by `enterTcp`. */
  leaveTcp(address: string): void {
    const ip = ipKey(address);
    const left = (this.#tcp.get(ip) ?? 1) - 1;
    if (left > 0) this.#tcp.set(ip, left);
    else this.#tcp.delete(ip);
  }

  /**
   * Takes a tunnel slot for `ip` if it holds fewer than its limit: undefined if
   * taken (give it back with `releaseTunnel`), else why not.
   */
  reserveTunnel(address: string): string | undefined {
    const ip = ipKey(address);
    const perIp = this.#limits.maxTunnelsPerIp;
    const held = this.#tunnels.get(ip) ?? 0;
    if (perIp > 0 && held >= perIp) return `Too many tunnels from ${ip}: at most ${perIp}`;
    this.#tunnels.set(ip, held + 1);
    return undefined;
  }

  /** Why `address` cannot have one more tunnel now (at its limit), or undefined if it can. */
  tunnelsFull(address: string): string | undefined {
    const ip = ipKey(address);
    const perIp = this.#limits.maxTunnelsPerIp;
    const held = this.#tunnels.get(ip) ?? 0;
    return perIp > 0 && held >= perIp ? `Too many tunnels from ${ip}: at most ${perIp}` : undefined;
  }

  /** Gives back a slot taken by `reserveTunnel`. */
  releaseTunnel(address: string): void {
    const ip = ipKey(address);
    const left = (this.#tunnels.get(ip) ?? 1) - 1;
    if (left > 0) this.#tunnels.set(ip, left);
    else this.#tunnels.delete(ip);
  }

  /**
   * Counts a tunnel that passed its token check against the per-minute rate of
   * new tunnels: undefined if within it, else why not.
   */
  countNewTunnel(address: string, now: number = Date.now()): string | undefined {
    const rate = this.#limits.maxSessionsPerIpPerMinute;
    if (!this.#sessions.count(ipKey(address), rate, now)) {
      return `Too many new tunnels from ${ipKey(address)}: at most ${rate} a minute`;
    }
    return undefined;
  }

  /**
   * Counts a missing or wrong token: false once `ip` is over its failures a
   * minute (its failures are then answered `limit`). A right token is never
   * refused by it: only failures count.
   */
  countAuthFailure(address: string, now: number = Date.now()): boolean {
    return this.#failures.count(ipKey(address), this.#limits.maxAuthFailuresPerIpPerMinute, now);
  }
}

/** Events per key in a sliding minute, for per-IP rates; forgets quiet keys as it grows. */
class MinuteCounter {
  #times = new Map<string, number[]>();

  /** Counts one event for `key`: false (and not counted) when it had `limit` (0: none) already. */
  count(key: string, limit: number, now: number): boolean {
    if (limit === 0) return true;
    const recent = (this.#times.get(key) ?? []).filter((t) => now - t < MINUTE_MS);
    if (recent.length >= limit) {
      this.#times.set(key, recent);
      return false;
    }
    recent.push(now);
    this.#times.set(key, recent);
    if (this.#times.size > SESSION_LOG_SWEEP_SIZE) {
      for (const [k, times] of this.#times) {
        if (times.every((t) => now - t >= MINUTE_MS)) this.#times.delete(k);
      }
    }
    return true;
  }
}
