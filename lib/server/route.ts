// A public connection: read its first bytes, route by Host or SNI, answer or forward it.

import { headEnd } from "../http/head.ts";
import { httpError, httpRedirect } from "../http/response.ts";
import {
  answerAndLinger,
  ByteReader,
  closeQuietly,
  type Conn,
  deadline,
  sleep,
  writeAll,
} from "../io.ts";
import { LINGER_MS } from "../limits.ts";
import { hostWithPort, HTTPS_PORT, type NormalizedHost, type Route, routeHost } from "../names.ts";
import { UPGRADE_PATH, UPGRADE_TOKEN } from "../protocol.ts";
import { proxySignature } from "../proxy_protocol.ts";
import { sniff, type SniffedHttp, type SniffResult } from "../sniff.ts";
import type { Outcome, ServerContext } from "./context.ts";
import { forward } from "./forward.ts";
import { handleClient } from "./handshake.ts";
import { renderPage } from "./pages.ts";
import type { ServerTunnel } from "./tunnel.ts";
import { NODE_UPGRADE_TOKEN } from "./cluster/node_wire.ts";
import { serveNode } from "./cluster/node_serve.ts";
import { forwardRemote } from "./cluster/remote.ts";
import type { DirectoryKind } from "./cluster/records.ts";

const REQUEST_TIMEOUT_ANSWER = httpError(408, "Request timeout");
const PROXY_REFUSED_ANSWER = httpError(
  400,
  "Bad request: a PROXY header is only accepted from --trusted-proxies",
);

/** What a connection's first bytes are: sniffed, or a PROXY header where none is trusted. */
type FirstBytes = SniffResult | { state: "proxy"; version: "v1" | "v2" };

/**
 * Sniffs the first bytes, but refuses a PROXY header (v1 or v2): a trusted
 * proxy's was read and taken off before routing, so here one comes from a
 * peer that may not say who its visitor is. Checked first, because the
 * sniffer would close a v2 header as garbage and a v1 one as a malformed line.
 */
function sniffFirst(bytes: Uint8Array, maxBytes: number): FirstBytes {
  const signature = proxySignature(bytes);
  if (signature === "maybe") return { state: "need-more" };
  if (signature !== "no") return { state: "proxy", version: signature };
  return sniff(bytes, maxBytes);
}

/**
 * Whether new bytes (from `before` on) can change a need-more answer: an HTTP
 * head is parsed once its blank line has arrived (and within its first bytes,
 * where the method is checked); TLS is cheap to re-walk. Only the new bytes are
 * searched, so a trickle costs linear time, not quadratic.
 */
function worthSniffing(bytes: Uint8Array, before: number, maxBytes: number): boolean {
  if (bytes[0] === 0x16 || before < 64 || bytes.length >= maxBytes) return true;
  return headEnd(bytes, before - 3) >= 0;
}

/**
 * Routes a new connection by its first bytes, calling `routed` once they are
 * read (or given up on), or for a client's upgrade once it proved who it is:
 * until then the connection counts against the per-IP limit of connections
 * being routed. Owns `conn` until it returns; the caller closes it afterwards
 * unless it was kept by a session.
 */
export async function routeConnection(
  ctx: ServerContext,
  conn: Conn,
  id: number,
  routed: () => void,
  secure = false,
): Promise<Outcome> {
  if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
  const maxBytes = ctx.limits.maxSniffBytes;
  const reader = new ByteReader(conn, maxBytes);
  // At the deadline a pending read cannot be cancelled, only ended by closing the
  // socket. Answer 408 if the bytes so far look like HTTP and half-close; the
  // loop below goes on reading (and dropping) until the peer closes or the
  // linger time is up.
  const lingerAbort = new AbortController();
  const answerTimeout = async (): Promise<void> => {
    const first = reader.buffered[0];
    ctx.metrics.connection(first !== undefined && first !== 0x16 ? 408 : "closed");
    if (first !== undefined && first !== 0x16) {
      try {
        await writeAll(conn, REQUEST_TIMEOUT_ANSWER);
        await conn.closeWrite();
        await sleep(LINGER_MS, lingerAbort.signal);
      } catch {
        // The peer is gone: nothing to answer.
      }
    }
    closeQuietly(conn);
  };
  let expired: Promise<void> | undefined;
  const sniffStarted = performance.now(); // for the metrics
  const timer = deadline(ctx.limits.sniffTimeoutMs, () => expired = answerTimeout());
  let result = sniffFirst(reader.buffered, maxBytes);
  try {
    while (result.state === "need-more") {
      const before = reader.buffered.length;
      if (!await reader.fill()) break;
      if (timer.expired) reader.consume(reader.buffered.length); // drop: answered already
      else if (worthSniffing(reader.buffered, before, maxBytes)) {
        result = sniffFirst(reader.buffered, maxBytes);
      }
    }
  } catch (e) {
    if (!timer.expired) ctx.metrics.connection("closed"); // reset while its first bytes came
    if (!timer.expired) throw e;
  } finally {
    timer.clear();
    ctx.metrics.sniffed(performance.now() - sniffStarted);
    if (!isUpgrade(result)) routed();
  }
  if (timer.expired) {
    ctx.log.debug("Sniff deadline passed", { conn: id });
    lingerAbort.abort(); // the peer closed, or the socket is closed: no need to wait
    return await expired;
  }
  switch (result.state) {
    case "need-more":
      ctx.metrics.connection("closed");
      return ctx.log.debug("Closed before routing", { conn: id });
    case "invalid":
      ctx.log.debug("Unroutable connection", { conn: id, reason: result.reason });
      ctx.metrics.connection(result.status ?? "closed");
      if (result.status === 431) {
        await answerAndLinger(conn, httpError(431, result.reason));
      } else if (result.status === 400) {
        await answerAndLinger(conn, httpError(400, `Bad request: ${result.reason}`));
      }
      return;
    case "proxy":
      ctx.log.debug("PROXY header from an untrusted peer: refused", {
        conn: id,
        version: result.version,
      });
      ctx.metrics.connection("proxy_refused");
      if (result.version === "v1") await answerAndLinger(conn, PROXY_REFUSED_ANSWER);
      return;
    case "tls": {
      const host = result.serverName === undefined
        ? undefined
        : { host: result.serverName, ip: false };
      const found = findTunnel(ctx, host);
      if (found.tunnel) return await forward(ctx, conn, reader, found.tunnel, "tls", id);
      const item = ctx.cluster && host ? remoteItem(ctx, found.route, host.host) : undefined;
      if (item && await forwardRemote(ctx, conn, reader, item, "tls", id) === "forwarded") return;
      ctx.metrics.connection("closed");
      return ctx.log.debug("TLS for no tunnel", { conn: id, sni: result.serverName });
    }
    case "http":
      return await routeHttp(ctx, conn, reader, result, id, secure, routed);
  }
}

/** Whether sniffed bytes are a Gotunnel client's (or another node's) upgrade request. */
function isUpgrade(result: FirstBytes): boolean {
  return result.state === "http" && result.target === UPGRADE_PATH &&
    (result.upgrade === UPGRADE_TOKEN || result.upgrade === NODE_UPGRADE_TOKEN);
}

/** What the cluster directory calls the item a host routes to, if it may be another node's. */
function remoteItem(
  ctx: ServerContext,
  route: Route,
  host: string,
): { kind: DirectoryKind; value: string } | undefined {
  if (route.kind === "tunnel") return { kind: "name", value: route.name };
  if (route.kind === "other" && host !== ctx.domain) return { kind: "host", value: host };
  return undefined;
}

async function routeHttp(
  ctx: ServerContext,
  conn: Conn,
  reader: ByteReader,
  head: SniffedHttp,
  id: number,
  secure: boolean,
  routed: () => void,
): Promise<Outcome> {
  if (isUpgrade(head)) {
    reader.consume(head.headLength);
    if (head.upgrade === NODE_UPGRADE_TOKEN) {
      ctx.metrics.connection("node");
      return await serveNode(ctx, conn, reader, id, routed);
    }
    ctx.metrics.connection("client");
    return await handleClient(ctx, conn, reader, id, routed);
  }
  // ACME HTTP-01: a token being validated now is answered whatever the Host.
  const challenge = secure ? undefined : ctx.acme?.answer(head.method, head.target);
  if (challenge) return await answerAndLinger(conn, challenge);
  const host = { host: head.host, ip: head.ip };
  const found = findTunnel(ctx, host);
  const { route, tunnel } = found;
  if (route.kind === "apex" && !tunnel) {
    ctx.metrics.connection("page");
    const page = renderPage(head.method, head.target, {
      url: ctx.url,
      domain: ctx.domain,
      tokenRequired: ctx.auth.required,
      tunnels: ctx.registry.size,
      node: ctx.cluster?.id,
    });
    return await answerAndLinger(conn, page);
  }
  // Plain requests for a subdomain (or a custom hostname with its own certificate) go to HTTPS.
  const own = route.kind === "tunnel"
    ? `${route.name}.${ctx.domain}`
    : found.own
    ? tunnel?.name
    : undefined;
  if (
    !secure && own !== undefined && ctx.redirectPort !== undefined &&
    (ctx.acme?.covers(own) ?? route.kind === "tunnel")
  ) {
    const path = head.target.replace(/^https?:\/\/[^/]*/i, "") || "/";
    const location = `https://${hostWithPort(head.host, ctx.redirectPort, HTTPS_PORT)}${path}`;
    ctx.metrics.connection("redirect");
    return await answerAndLinger(conn, httpRedirect(location));
  }
  if (!tunnel && ctx.cluster) {
    const item = remoteItem(ctx, route, head.host);
    const carried = secure ? "https" : "http";
    const outcome = item && await forwardRemote(ctx, conn, reader, item, carried, id);
    if (outcome === "forwarded") return;
    if (outcome === "held") {
      ctx.metrics.connection(502);
      const body = `Tunnel ${head.host} is reconnecting, try again shortly`;
      return await answerAndLinger(conn, httpError(502, body));
    }
    if (outcome === "unavailable") {
      ctx.metrics.connection(503);
      const body = `Cannot find tunnel ${head.host} now: the registry is unavailable, try again`;
      return await answerAndLinger(conn, httpError(503, body));
    }
  }
  if (!tunnel) {
    if (route.kind === "tunnel" && ctx.leases.isHeld(route.name)) {
      const body = `Tunnel ${head.host} is reconnecting, try again shortly`;
      ctx.metrics.connection(502);
      return await answerAndLinger(conn, httpError(502, body));
    }
    ctx.metrics.connection(404);
    const body = route.kind === "tunnel"
      ? `Tunnel ${head.host} not found`
      : `Unknown host ${head.host}`;
    return await answerAndLinger(conn, httpError(404, body));
  }
  await forward(ctx, conn, reader, tunnel, secure ? "https" : "http", id);
}

/**
 * The tunnel a host routes to: a subdomain's, a custom hostname's, or else the
 * default tunnel (for the apex only with `apex`); `own` when reached by its own name.
 */
export function findTunnel(
  ctx: ServerContext,
  host: NormalizedHost | undefined,
): { route: Route; tunnel: ServerTunnel | undefined; own: boolean } {
  const route: Route = host === undefined ? { kind: "other" } : routeHost(host, ctx.domain);
  const name = route.kind === "tunnel"
    ? route.name
    : route.kind === "other" && host !== undefined
    ? host.host
    : undefined;
  const own = name === undefined ? undefined : ctx.registry.get(name);
  if (own?.kind === "http") return { route, tunnel: own, own: true };
  const fallback = ctx.defaultTunnel;
  if (!fallback || (route.kind === "apex" && !fallback.apex)) {
    return { route, tunnel: undefined, own: false };
  }
  // A name held for its client that went away stays its own: it answers 502, not the default.
  if (route.kind === "tunnel" && ctx.leases.isHeld(route.name)) {
    return { route, tunnel: undefined, own: false };
  }
  const tunnel = ctx.registry.get(fallback.name);
  return { route, tunnel: tunnel?.kind === "http" ? tunnel : undefined, own: false };
}
