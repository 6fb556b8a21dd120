// An app, a server and a tunnel with its inspector on a free port, for the inspector's
// API and browser tests.

import { gzipSync } from "node:zlib";
import type { CapturedExchange } from "../lib/client/inspector/store.ts";
import { encode, HOST, openTestTunnel, serveApp, startTestServer } from "./helpers.ts";

/** An app that says what it got (method, target, X-Flavour, the body); `/gzip`, `/ws` echo. */
export function echoApp() {
  return serveApp(async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/ws") {
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.onmessage = (e) => socket.send(`echo:${e.data}`);
      return response;
    }
    if (url.pathname === "/gzip") {
      return new Response(new Uint8Array(gzipSync(encode(JSON.stringify({ zipped: true })))), {
        headers: { "content-type": "application/json", "content-encoding": "gzip" },
      });
    }
    if (url.pathname.startsWith("/missing")) return new Response("Not found\n", { status: 404 });
    return Response.json({
      method: req.method,
      target: url.pathname + url.search,
      flavour: req.headers.get("x-flavour"),
      xff: req.headers.get("x-forwarded-for"),
      body: await req.text(),
    }, { headers: { "set-cookie": "session=abc; Path=/; HttpOnly" } });
  });
}

/** An app, a server, a tunnel with an inspector on a free port, and clients for both. */
export async function inspected(extra: Parameters<typeof openTestTunnel>[2] = {}) {
  const app = echoApp();
  const server = await startTestServer();
  const exchanges: CapturedExchange[] = [];
  const tunnel = await openTestTunnel(server, app.addr.port, {
    subdomain: "insp",
    inspect: { port: 0 },
    onExchange: (e) => exchanges.push(e),
    ...extra,
  });
  const http = Deno.createHttpClient({ allowHost: true });
  const inspector = new URL(tunnel.inspector!.url);
  return {
    app,
    serverPort: server.addr.port,
    tunnel,
    exchanges,
    inspector,
    /** Through the tunnel, as a visitor. */
    visit: (path: string, init: RequestInit = {}) =>
      fetch(`http://${HOST}:${server.addr.port}${path}`, {
        ...init,
        client: http,
        headers: { host: `insp.localhost:${server.addr.port}`, ...init.headers },
      }),
    /** To the inspector, with its own Host unless told otherwise. */
    api: (path: string, init: RequestInit = {}) =>
      fetch(`http://${HOST}:${inspector.port}${path}`, {
        ...init,
        client: http,
        headers: { host: inspector.host, ...init.headers },
      }),
    async [Symbol.asyncDispose]() {
      http.close();
      await tunnel.close();
      await server.close();
      await app.shutdown();
    },
  };
}
