// The certificates the TLS port serves, chosen by SNI at each handshake: the
// name's own certificate, else one whose wildcard or name covers it; none
// for a name nothing covers (the handshake is refused). Expired ones never.

import tls from "node:tls";
import type { StoredCertificate } from "./store.ts";

interface Entry {
  certificate: StoredCertificate;
  context: tls.SecureContext;
}

/** Whether certificate name `pattern` (maybe `*.`) covers `host`. */
export function nameCovers(pattern: string, host: string): boolean {
  if (pattern === host) return true;
  if (!pattern.startsWith("*.")) return false;
  const dot = host.indexOf(".");
  return dot > 0 && host.slice(dot + 1) === pattern.slice(2);
}

/** Certificates by id, each with the secure context node:tls serves it with. */
export class CertBook {
  #entries = new Map<string, Entry>();
  #now: () => number;

  /** A book; `now` is the clock expiry is judged by. */
  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Puts `certificate` under `id`, in place of the one before it (which is never served again). */
  set(id: string, certificate: StoredCertificate): void {
    const context = tls.createSecureContext({ cert: certificate.cert, key: certificate.key });
    this.#entries.set(id, { certificate, context });
  }

  /** The certificate under `id`, if any (expired or not). */
  get(id: string): StoredCertificate | undefined {
    return this.#entries.get(id)?.certificate;
  }

  /** Whether an unexpired certificate covers `host`. */
  covers(host: string): boolean {
    return this.#find(host) !== undefined;
  }

  /** The context for a handshake naming `host`: the best unexpired certificate that covers it. */
  contextFor(host: string): tls.SecureContext | undefined {
    return this.#find(host)?.context;
  }

  #find(host: string): Entry | undefined {
    const now = this.#now();
    let best: Entry | undefined;
    for (const entry of this.#entries.values()) {
      const { names, notAfter, notBefore } = entry.certificate;
      if (notAfter <= now || notBefore > now) continue;
      if (names.includes(host)) {
        // The name's own certificate first, the newest if there were two.
        if (
          !best || !best.certificate.names.includes(host) || notAfter > best.certificate.notAfter
        ) {
          best = entry;
        }
      } else if (!best && names.some((n) => nameCovers(n, host))) {
        best = entry;
      }
    }
    return best;
  }
}
