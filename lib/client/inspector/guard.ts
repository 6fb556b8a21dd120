// Who may talk to the inspector (pure): its own Host names only (DNS rebinding), no
// foreign Origin on what changes state (CSRF), no cross-site reads of its API.

import { hostWithPort } from "../../names.ts";

/** The request facts the guard looks at. */
export interface GuardedRequest {
  method: string;
  path: string;
  host: string | null;
  origin: string | null;
  /** `Sec-Fetch-Site`, which browsers send. */
  fetchSite: string | null;
  /** `Sec-Fetch-Mode`. */
  fetchMode: string | null;
}

const LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"];
const WILDCARDS = new Set(["0.0.0.0", "::", "[::]"]);
const IP_LITERAL = /^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]+\])$/;

/**
 * Whether `host` (a Host header or the host of an Origin) names the inspector
 * bound at `hostname:port`: a loopback name, the address it was given, and, when
 * that is a wildcard (0.0.0.0, ::), any IP address. Never a DNS name other than
 * `localhost`: a page from a rebound name cannot pass.
 */
export function isOwnHost(host: string, hostname: string, port: number): boolean {
  const lower = host.toLowerCase();
  const match = /^(.*?)(?::(\d+))?$/.exec(lower);
  if (!match) return false;
  const name = match[1]!;
  const given = match[2] === undefined ? 80 : Number(match[2]);
  if (given !== port) return false;
  const own = hostWithPort(hostname.toLowerCase(), port, -1).replace(/:\d+$/, "");
  if (LOOPBACK_NAMES.includes(name) || name === own) return true;
  return WILDCARDS.has(hostname) && IP_LITERAL.test(name);
}

/** Methods that change state; they must come with no Origin or the inspector's own. */
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * Why the inspector at `hostname:port` refuses `req` (answered 403), or
 * undefined when it may go on.
 */
export function refusal(req: GuardedRequest, hostname: string, port: number): string | undefined {
  if (req.host === null || !isOwnHost(req.host, hostname, port)) {
    return "Host is not this inspector's address (DNS rebinding?)";
  }
  if (UNSAFE.has(req.method) && req.origin !== null) {
    let origin: URL | undefined;
    try {
      origin = new URL(req.origin);
    } catch {
      origin = undefined;
    }
    if (origin?.protocol !== "http:" || !isOwnHost(origin.host, hostname, port)) {
      return "Origin is another site (cross-site request forgery?)";
    }
  }
  // Another site may link to the page, but not read or drive the API from its pages.
  if (req.fetchSite === "cross-site" && req.path !== "/" && req.fetchMode !== "navigate") {
    return "a cross-site request to the API";
  }
  return undefined;
}
