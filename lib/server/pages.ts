// The server's own pages on the apex domain: a landing page and a status API.

import { httpError, httpResponse } from "../http/response.ts";
import { GOTUNNEL_VERSION } from "../protocol.ts";

/** What the server's pages show. */
export interface PageInfo {
  /** The server's URL as clients reach it (`--server`), e.g. `https://tunnel.example`. */
  url: string;
  /** The tunnels' domain. */
  domain: string;
  /** Whether opening a tunnel needs a token. */
  tokenRequired: boolean;
  /** Tunnels registered now (on this node). */
  tunnels: number;
  /** In a cluster: this node's id (which node answered). */
  node?: string | undefined;
}

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function landingPage(info: PageInfo): string {
  const server = escapeHtml(info.url);
  const scheme = escapeHtml(new URL(info.url).protocol);
  const token = info.tokenRequired ? " --token YOUR_TOKEN" : "";
  const tokenNote = info.tokenRequired
    ? "<p>This server requires a token: ask its operator for one, then pass it with " +
      "<code>--token</code> or <code>GOTUNNEL_TOKEN</code>.</p>"
    : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gotunnel</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 44em; margin: 3em auto; padding: 0 1em; line-height: 1.5">
<h1>Gotunnel</h1>
<p>This server exposes apps running on developers' machines at
<code>${scheme}//&lt;name&gt;.${escapeHtml(info.domain)}</code>.</p>
<p>Start your app (say on port 3000), then expose it:</p>
<pre>deno run -A jsr:@gotunnel/client 3000 --server ${server}${token}</pre>
<p>From a checkout of Gotunnel: <code>deno run -A client.ts 3000 --server ${server}${token}</code></p>
${tokenNote}
<p>Status: <a href="/api/status">/api/status</a> &middot; version ${GOTUNNEL_VERSION}</p>
</body></html>
`;
}

/** The complete response to a request for the server's own pages. */
export function renderPage(method: string, target: string, info: PageInfo): Uint8Array {
  if (method !== "GET" && method !== "HEAD") {
    return httpError(405, "Only GET and HEAD are served here");
  }
  const headOnly = method === "HEAD";
  const noStore = { "Cache-Control": "no-store" };
  const path = target.replace(/^https?:\/\/[^/]*/i, "").split("?")[0];
  if (path === "/" || path === "") {
    const body = landingPage(info);
    return httpResponse(200, {
      body,
      type: "text/html; charset=utf-8",
      headers: noStore,
      headOnly,
    });
  }
  if (path === "/api/status") {
    const status = { version: GOTUNNEL_VERSION, tunnels: info.tunnels };
    const body = JSON.stringify(info.node === undefined ? status : { ...status, node: info.node }) +
      "\n";
    return httpResponse(200, { body, type: "application/json", headers: noStore, headOnly });
  }
  return httpError(404, "Not found");
}
