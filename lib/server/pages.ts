// The server's own pages on the apex domain: a landing page and a status API.

import { httpError } from "../io.ts";
import { GOTUNNEL_VERSION } from "../protocol.ts";

const encoder = new TextEncoder();

/** What the status API reports. */
export interface ServerStatus {
  /** Tunnels registered now. */
  tunnels: number;
}

function respond(status: string, type: string, body: string, head: boolean): Uint8Array {
  const bytes = encoder.encode(body);
  const headers = `HTTP/1.1 ${status}\r\nContent-Type: ${type}\r\n` +
    `Content-Length: ${bytes.length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n`;
  return head ? encoder.encode(headers) : encoder.encode(headers + body);
}

function landingPage(domain: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gotunnel</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 3em auto; line-height: 1.5">
<h1>Gotunnel</h1>
<p>This server exposes apps running on developers' machines at <code>http://&lt;name&gt;.${domain}</code>.</p>
<p>Expose your app on port 3000:</p>
<pre>deno run -A jsr:@gotunnel/gotunnel/client 3000 --server http://${domain}</pre>
<p>Status: <a href="/api/status">/api/status</a> &middot; version ${GOTUNNEL_VERSION}</p>
</body></html>
`;
}

/** The complete response to a request for the server's own pages. */
export function renderPage(
  method: string,
  target: string,
  domain: string,
  status: ServerStatus,
): Uint8Array {
  if (method !== "GET" && method !== "HEAD") {
    return httpError(405, "Method Not Allowed", "Only GET and HEAD are served here");
  }
  const head = method === "HEAD";
  const path = target.replace(/^https?:\/\/[^/]*/i, "").split("?")[0];
  if (path === "/" || path === "") {
    return respond("200 OK", "text/html; charset=utf-8", landingPage(domain), head);
  }
  if (path === "/api/status") {
    const json = JSON.stringify({ version: GOTUNNEL_VERSION, tunnels: status.tunnels }) + "\n";
    return respond("200 OK", "application/json", json, head);
  }
  return httpError(404, "Not Found", "Not found");
}
