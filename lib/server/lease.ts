// Reconnect leases: a signed token that lets only a tunnel's own client reclaim its
// name (a subdomain, a hostname, or `tcp:<port>`) for a while after a disconnect,
// across server restarts given a stable key.

import { fromBase64url, toBase64url } from "../bytes.ts";
import { randomToken } from "../names.ts";
import { MAX_LEASE_LENGTH } from "../limits.ts";

const encoder = new TextEncoder();

/** Why a subdomain cannot be claimed without its lease right now, and for how long. */
export interface Hold {
  /** Milliseconds until the name is free. */
  leftMs: number;
  /** The lease nonce that may claim it; undefined after a restart (any valid lease may). */
  nonce: string | undefined;
}

/** A verified lease: the session it was issued to, and when. */
export interface LeaseClaim {
  /** The nonce of the session the lease was issued to. */
  nonce: string;
  /** When it was issued (ms since the epoch); sessions get fresh ones as they live. */
  issuedAt: number;
}

/**
 * Issues and checks leases; remembers names held for clients that went away.
 * A lease is `v1.<name>.<nonce>.<issuedAt>.<HMAC-SHA256>` (a name is a
 * subdomain, a hostname, or `tcp:<port>`); the server
 * renews a live session's lease every half lease time, so after a restart a
 * lease that is recent enough comes from the name's last holder.
 */
export class Leases {
  #key: CryptoKey;
  #durationMs: number;
  #startedAt: number;
  #graceUntil: number;
  #held = new Map<string, { nonce: string; until: number }>();

  private constructor(key: CryptoKey, durationMs: number, grace: boolean) {
    this.#key = key;
    this.#durationMs = durationMs;
    this.#startedAt = Date.now();
    this.#graceUntil = grace ? this.#startedAt + durationMs : 0;
  }

  /**
   * Leases signed with `key` (HMAC-SHA256), or with a random key that dies
   * with the process. With a stable key and `grace`, the server may have
   * restarted, so for the first `durationMs` every named claim needs a lease.
   */
  static async create(
    key: Uint8Array | undefined,
    durationMs: number,
    grace: boolean,
  ): Promise<Leases> {
    const material = key ?? crypto.getRandomValues(new Uint8Array(32));
    const cryptoKey = await crypto.subtle.importKey(
      "raw",
      material as Uint8Array<ArrayBuffer>,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    return new Leases(cryptoKey, durationMs, key !== undefined && grace);
  }

  /** How long a name stays held after its client went away. */
  get durationMs(): number {
    return this.#durationMs;
  }

  /** A lease for `subdomain`: for a new session, or renewed for the session with `nonce`. */
  async issue(
    subdomain: string,
    nonce: string = randomToken(16),
  ): Promise<{ lease: string; nonce: string }> {
    const body = `v1.${subdomain}.${nonce}.${Date.now()}`;
    const mac = await crypto.subtle.sign("HMAC", this.#key, encoder.encode(body));
    return { lease: `${body}.${toBase64url(new Uint8Array(mac))}`, nonce };
  }

  /** The claim in `lease` if this key signed it for `subdomain`. */
  async verify(lease: string | undefined, subdomain: string): Promise<LeaseClaim | undefined> {
    if (lease === undefined || lease.length > MAX_LEASE_LENGTH) return undefined;
    // The name may hold dots (a hostname): the last three parts are nonce, time and MAC.
    const parts = lease.split(".");
    if (parts.length < 5 || parts[0] !== "v1") return undefined;
    if (parts.slice(1, -3).join(".") !== subdomain) return undefined;
    const [nonce, issued, signature] = parts.slice(-3) as [string, string, string];
    const issuedAt = Number(issued);
    const mac = fromBase64url(signature);
    if (!mac || !Number.isSafeInteger(issuedAt)) return undefined;
    const body = encoder.encode(parts.slice(0, -1).join("."));
    const valid = await crypto.subtle.verify("HMAC", this.#key, mac, body);
    return valid ? { nonce, issuedAt } : undefined;
  }

  /**
   * Whether `claim` may take `subdomain` while it is held: the hold's own
   * session, or after a restart a lease renewed within a lease time before it.
   */
  mayClaim(hold: Hold, claim: LeaseClaim | undefined): boolean {
    if (!claim) return false;
    if (hold.nonce !== undefined) return hold.nonce === claim.nonce;
    return claim.issuedAt >= this.#startedAt - this.#durationMs;
  }

  /** Holds `subdomain` for the client with `nonce`, for the lease duration. */
  hold(subdomain: string, nonce: string, now: number = Date.now()): void {
    this.sweep(now);
    this.#held.set(subdomain, { nonce, until: now + this.#durationMs });
  }

  /** Frees `subdomain` at once (its client said goodbye, or reclaimed it). */
  release(subdomain: string): void {
    this.#held.delete(subdomain);
  }

  /** Whether `subdomain` is held for a client that went away (not counting a restart's grace). */
  isHeld(subdomain: string, now: number = Date.now()): boolean {
    const entry = this.#held.get(subdomain);
    return entry !== undefined && entry.until > now;
  }

  /** Whether `subdomain` is held for a client that went away (or by a restart). */
  heldFor(subdomain: string, now: number = Date.now()): Hold | undefined {
    const entry = this.#held.get(subdomain);
    if (entry && entry.until > now) return { leftMs: entry.until - now, nonce: entry.nonce };
    if (entry) this.#held.delete(subdomain);
    if (now < this.#graceUntil) return { leftMs: this.#graceUntil - now, nonce: undefined };
    return undefined;
  }

  /** Names held now for clients that went away (not counting a restart's grace). */
  get heldCount(): number {
    this.sweep();
    return this.#held.size;
  }

  /** Forgets expired holds (called now and then, so the map cannot grow without bound). */
  sweep(now: number = Date.now()): void {
    for (const [name, entry] of this.#held) if (entry.until <= now) this.#held.delete(name);
  }
}
