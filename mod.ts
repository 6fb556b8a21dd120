/**
 * Gotunnel: expose a local port at a public subdomain through a self-hosted server.
 *
 * The server routes each public connection by its first bytes (HTTP `Host` or
 * TLS SNI) to the client that owns the subdomain, and relays the raw TCP
 * stream, so HTTP/1.1, WebSocket and end-to-end TLS all pass through.
 *
 * @example A server and a tunnel in one process
 * ```ts
 * import { openTunnel, startServer } from "@gotunnel/gotunnel";
 *
 * const app = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => new Response("hi"));
 * await using server = await startServer({ port: 0, hostname: "127.0.0.1" });
 * await using tunnel = await openTunnel({
 *   port: app.addr.port,
 *   localHost: "127.0.0.1",
 *   server: `http://127.0.0.1:${server.addr.port}`,
 *   subdomain: "demo",
 * });
 * console.log(tunnel.url); // http://demo.localhost:<port>
 * await tunnel.close();
 * await app.shutdown();
 * ```
 *
 * @module
 */

export { startServer } from "./lib/server/server.ts";
export type { ServerOptions, ServerTls, TunnelServer } from "./lib/server/server.ts";
export type { TunnelInfo, TunnelKind } from "./lib/server/tunnel.ts";
export type { AdminOptions } from "./lib/server/admin.ts";
export type { TokenRules, TokenScope } from "./lib/server/auth.ts";
export { DEFAULT_SERVER_LIMITS } from "./lib/limits.ts";
export type { ServerLimits } from "./lib/limits.ts";
export type { ClusterTimings } from "./lib/server/cluster/timings.ts";
export {
  LETS_ENCRYPT_DIRECTORY,
  LETS_ENCRYPT_STAGING_DIRECTORY,
} from "./lib/server/acme/service.ts";
export type { ServerAcme } from "./lib/server/acme/service.ts";
export type { ClusterOptions, ClusterStatus, NodeCount } from "./lib/server/cluster/node.ts";
export { DEFAULT_ACME_TIMINGS } from "./lib/server/acme/timings.ts";
export type { AcmeTimings } from "./lib/server/acme/timings.ts";
export { openTunnel, openTunnels } from "./lib/client/tunnel.ts";
export type { Tunnel, TunnelOptions } from "./lib/client/tunnel.ts";
export type {
  SessionOptions,
  TunnelGroup,
  TunnelHandle,
  TunnelsOptions,
  TunnelSpec,
} from "./lib/client/tunnel_types.ts";
export type { HeartbeatTiming } from "./lib/control.ts";
export type { ExchangeObserver, RequestRecord } from "./lib/client/exchanges.ts";
export type { InspectOptions } from "./lib/client/inspector/inspector.ts";
export type {
  CapturedBody,
  CapturedExchange,
  WebSocketActivity,
} from "./lib/client/inspector/store.ts";
export type { WsCounts } from "./lib/client/inspector/ws_frames.ts";
export type { VisitorInfo } from "./lib/client/forwarded.ts";
export type { MessageHead } from "./lib/http/head.ts";
export { formatRecord } from "./lib/client/request_log.ts";
export type { RecordStyle } from "./lib/client/request_log.ts";
export { TunnelError } from "./lib/errors.ts";
export type { TunnelErrorCode } from "./lib/errors.ts";
export { createLogger, silentLogger } from "./lib/log.ts";
export type { LogFields, Logger, LoggerOptions, LogLevel } from "./lib/log.ts";
export { sniff, sniffHttpHost, sniffTlsSni } from "./lib/sniff.ts";
export type { SniffedHttp, SniffedTls, SniffResult } from "./lib/sniff.ts";
export { GOTUNNEL_VERSION, PROTOCOL_VERSION } from "./lib/protocol.ts";
export type { ErrorCode, TunnelClaim, TunnelGrant } from "./lib/protocol.ts";
export { decodeProxyHeader, encodeProxyV2 } from "./lib/proxy_protocol.ts";
export type { ProxyDecodeResult, ProxyEndpoint, ProxyHeader } from "./lib/proxy_protocol.ts";
