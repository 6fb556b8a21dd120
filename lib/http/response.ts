// The one builder of the complete HTTP/1.1 responses Gotunnel writes itself:
// error answers, redirects and the server's own pages.

import { latin1Bytes } from "../bytes.ts";

/** Reason phrases of the statuses Gotunnel answers with. */
const REASONS: Readonly<Record<number, string>> = {
  200: "OK",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

const encoder = new TextEncoder();

/** What {@linkcode httpResponse} writes besides the status. */
export interface ResponseParts {
  /** The body (UTF-8). @default {""} */
  body?: string;
  /** Its media type. @default {"text/plain; charset=utf-8"} */
  type?: string;
  /** Further fields, e.g. `Location`. */
  headers?: Readonly<Record<string, string>>;
  /** A response to HEAD: the fields of the body, without it. @default {false} */
  headOnly?: boolean;
}

/** A complete response that closes the connection: status line, fields, body. */
export function httpResponse(status: number, parts: ResponseParts = {}): Uint8Array {
  const body = encoder.encode(parts.body ?? "");
  let head = `HTTP/1.1 ${status} ${REASONS[status] ?? "Unknown"}\r\n` +
    `Content-Type: ${parts.type ?? "text/plain; charset=utf-8"}\r\n` +
    `Content-Length: ${body.length}\r\n`;
  for (const [name, value] of Object.entries(parts.headers ?? {})) head += `${name}: ${value}\r\n`;
  const headBytes = latin1Bytes(head + "Connection: close\r\n\r\n");
  if (parts.headOnly || body.length === 0) return headBytes;
  const out = new Uint8Array(headBytes.length + body.length);
  out.set(headBytes);
  out.set(body, headBytes.length);
  return out;
}

/** A plain-text answer with a one-line body, closing the connection. */
export function httpError(status: number, body: string): Uint8Array {
  return httpResponse(status, { body: body + "\n" });
}

/** A permanent redirect that keeps the method (308). */
export function httpRedirect(location: string): Uint8Array {
  return httpResponse(308, { body: `Moved to ${location}\n`, headers: { Location: location } });
}
