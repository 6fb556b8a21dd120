// What the admin listener answers: the dashboard's files, and `/metrics` and
// `/api/tunnels` behind the bearer token; without a token, loopback names only.

import { httpError, httpResponse } from "../http/response.ts";
import { normalizeHost, timingSafeEqual } from "../names.ts";
import type { AdminStatus } from "./admin_status.ts";
import {
  DASHBOARD_CSP,
  DASHBOARD_CSS,
  DASHBOARD_HTML,
  DASHBOARD_ICON,
  DASHBOARD_JS,
} from "./dashboard.ts";
import { EXPOSITION_CONTENT_TYPE } from "./metrics.ts";

/** What the admin listener shows. */
export interface AdminSource {
  /** The metrics in the text exposition format. */
  metrics(): string;
  /** What `/api/tunnels` answers. */
  status(): AdminStatus;
}

/** The parts of a request the admin listener looks at. */
export interface AdminRequest {
  /** Its method. */
  method: string;
  /** Its target (origin or absolute form). */
  target: string;
  /** Its one Host value. */
  host: string;
  /** Its Authorization value, if any. */
  authorization: string | undefined;
}

/** An answer, and why the request was refused when it was (for the log). */
export interface AdminAnswer {
  /** The complete response, which closes the connection. */
  bytes: Uint8Array;
  /** Set when the request was refused for want of the right token or a loopback name. */
  refused?: string;
}

const encoder = new TextEncoder();

/** The SHA-256 of `text`, in hex: tokens are compared as digests, so as strings of one length. */
export async function tokenDigest(text: string): Promise<string> {
  const bytes = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `hostname` (an address to listen on, or a Host's name) is on loopback only. */
export function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return host === "localhost" || host === "::1" ||
    /^(?:::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Headers on every admin answer: never cached, framed or sniffed, no referrer. */
const COMMON: Readonly<Record<string, string>> = {
  "Cache-Control": "no-store",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
};

const ok = (body: string, type: string, headOnly: boolean, extra = {}): Uint8Array =>
  httpResponse(200, { body, type, headOnly, headers: { ...COMMON, ...extra } });

const refusal = (status: number, body: string, extra = {}): Uint8Array =>
  httpResponse(status, { body: body + "\n", headers: { ...COMMON, ...extra } });

/**
 * Answers one admin request. `expected` is the token's digest when one is
 * required: then `/metrics` and `/api/tunnels` need `Authorization: Bearer
 * <token>` (compared as digests, in constant time); without one, only requests
 * for a loopback name are answered, so a page elsewhere that points a name of
 * its own at 127.0.0.1 (DNS rebinding) cannot read them.
 */
export async function answerAdmin(
  request: AdminRequest,
  source: AdminSource,
  expected: string | undefined,
): Promise<AdminAnswer> {
  const host = normalizeHost(request.host);
  if (expected === undefined && (typeof host === "string" || !isLoopback(host.host))) {
    return {
      bytes: refusal(403, "Forbidden: use a loopback address (or give the server an admin token)"),
      refused: "a host name that is not loopback",
    };
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return { bytes: refusal(405, "Only GET and HEAD are served here", { Allow: "GET, HEAD" }) };
  }
  const headOnly = request.method === "HEAD";
  const path = request.target.replace(/^https?:\/\/[^/]*/i, "").split("?")[0];
  switch (path) {
    case "/":
      return { bytes: httpResponse(308, { headers: { ...COMMON, Location: "/dashboard" } }) };
    case "/dashboard":
      return {
        bytes: ok(DASHBOARD_HTML, "text/html; charset=utf-8", headOnly, {
          "Content-Security-Policy": DASHBOARD_CSP,
        }),
      };
    case "/dashboard.js":
      return { bytes: ok(DASHBOARD_JS, "text/javascript; charset=utf-8", headOnly) };
    case "/dashboard.css":
      return { bytes: ok(DASHBOARD_CSS, "text/css; charset=utf-8", headOnly) };
    case "/dashboard.svg":
      return { bytes: ok(DASHBOARD_ICON, "image/svg+xml", headOnly) };
    case "/metrics":
    case "/api/tunnels":
      break;
    default:
      return { bytes: httpError(404, "Not found") };
  }
  if (expected !== undefined) {
    const token = /^Bearer +(\S{1,1024}) *$/i.exec(request.authorization ?? "")?.[1];
    // Digests have one length, so the comparison's time says nothing of the token's.
    const right = timingSafeEqual(await tokenDigest(token ?? ""), expected) && token !== undefined;
    if (!right) {
      const challenge = request.authorization === undefined
        ? 'Bearer realm="gotunnel"'
        : 'Bearer realm="gotunnel", error="invalid_token"';
      return {
        bytes: refusal(401, "Unauthorized: send Authorization: Bearer <admin token>", {
          "WWW-Authenticate": challenge,
        }),
        refused: request.authorization === undefined ? "no token" : "a wrong token",
      };
    }
  }
  if (path === "/metrics") {
    return { bytes: ok(source.metrics(), EXPOSITION_CONTENT_TYPE, headOnly) };
  }
  return { bytes: ok(JSON.stringify(source.status()) + "\n", "application/json", headOnly) };
}
