// Reconnect leases: a signed token that lets only a tunnel's own client reclaim its
// subdomain for a while after a disconnect, across server restarts given a stable key.

import { randomToken } from "../names.ts";

const encoder = new TextEncoder();

function base64url(bytes: ArrayBuffer): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replaceAll("+", "-")
    .replaceAll("/", "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> | undefined {
  try {
    const raw = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** Why a subdomain cannot be claimed without its lease right now, and for how long. */
export interface Hold {
  /** Milliseconds until the name is free. */
  leftMs: number;
  /** The lease nonce that may claim it; undefined after a restart (any valid lease may). */
  nonce: string | undefined;
}

/** Issues and checks leases; remembers names held for clients that went away. */
export class Leases {
  #key: CryptoKey;
  #durationMs: number;
  #graceUntil: number;
  #held = new Map<string, { nonce: string; until: number }>();

  private constructor(key: CryptoKey, durationMs: number, graceUntil: number) {
    this.#key = key;
    this.#durationMs = durationMs;
    this.#graceUntil = graceUntil;
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
    return new Leases(cryptoKey, durationMs, key && grace ? Date.now() + durationMs : 0);
  }

  /** How long a name stays held after its client went away. */
  get durationMs(): number {
    return this.#durationMs;
  }

  /** A new lease for `subdomain`, and its nonce. */
  async issue(subdomain: string): Promise<{ lease: string; nonce: string }> {
    const nonce = randomToken(16);
    const body = `v1.${subdomain}.${nonce}`;
    const mac = await crypto.subtle.sign("HMAC", this.#key, encoder.encode(body));
    return { lease: `${body}.${base64url(mac)}`, nonce };
  }

  /** The nonce of `lease` if it is a lease this key signed for `subdomain`. */
  async verify(lease: string | undefined, subdomain: string): Promise<string | undefined> {
    if (lease === undefined || lease.length > 256) return undefined;
    const parts = lease.split(".");
    if (parts.length !== 4 || parts[0] !== "v1" || parts[1] !== subdomain) return undefined;
    const mac = fromBase64url(parts[3]!);
    if (!mac) return undefined;
    const body = encoder.encode(parts.slice(0, 3).join("."));
    return await crypto.subtle.verify("HMAC", this.#key, mac, body) ? parts[2] : undefined;
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

  /** Whether `subdomain` is held for a client that went away (or by a restart). */
  heldFor(subdomain: string, now: number = Date.now()): Hold | undefined {
    const entry = this.#held.get(subdomain);
    if (entry && entry.until > now) return { leftMs: entry.until - now, nonce: entry.nonce };
    if (entry) this.#held.delete(subdomain);
    if (now < this.#graceUntil) return { leftMs: this.#graceUntil - now, nonce: undefined };
    return undefined;
  }

  /** Forgets expired holds (called now and then, so the map cannot grow without bound). */
  sweep(now: number = Date.now()): void {
    for (const [name, entry] of this.#held) if (entry.until <= now) this.#held.delete(name);
  }
}
