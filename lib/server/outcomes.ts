// What the server counts, by name: the outcome of each public connection and TCP
// visitor, the handshake failures, registration and attach results. Every series
// of lib/server/server_metrics.ts exists (at 0) from the start, from these lists.

/**
 * What the server did with a public connection, each counted once: `routed`
 * (relayed to a tunnel), `forwarded` (to the node that holds its tunnel),
 * `client` (a Gotunnel client's upgrade), `node` (another node's), `page` (the
 * server's own pages), `redirect` (308 to HTTPS), an HTTP status it answered
 * with, `limit` (closed at accept: too many connections being routed),
 * `abandoned` (the visitor left while waiting for the tunnel), `closed` (no
 * route: closed before a head, not HTTP, TLS for no tunnel), `tls_error` (a
 * failed TLS handshake on the TLS port), `proxy_refused` (a PROXY header from
 * a peer not in `trustedProxies`: 400 for v1, closed for v2), `proxy_invalid`
 * (a trusted proxy's connection without a valid PROXY header in time: closed).
 */
export type ConnectionOutcome = typeof CONNECTION_OUTCOMES[number];

/** Outcomes of public connections that were served, not refused. */
export const SERVED_OUTCOMES = [
  "routed",
  "forwarded",
  "client",
  "node",
  "page",
  "redirect",
] as const;

/** Every outcome, so that each series exists (at 0) from the start. */
export const CONNECTION_OUTCOMES = [
  ...SERVED_OUTCOMES,
  ...[
    "400",
    "404",
    "408",
    "431",
    "502",
    "503",
    "504",
  ],
  ...["limit", "abandoned", "closed", "tls_error", "proxy_refused", "proxy_invalid"],
] as const;

/**
 * What the server did with a visitor of a TCP tunnel's port: `routed`
 * (relayed), `limit` (closed at accept: too many from its IP), `busy` (the
 * tunnel at its stream limit), `timeout` (no proxy connection in time),
 * `abandoned` (it left while waiting), `closed` (its port is held for a client
 * that went away).
 */
export type TcpOutcome = typeof TCP_OUTCOMES[number];

/** Every TCP visitor outcome. */
export const TCP_OUTCOMES = ["routed", "limit", "busy", "timeout", "abandoned", "closed"] as const;

/**
 * Where a client's handshake was refused: before a `hello` or `attach` could be
 * judged (`first`: unreadable frame, wrong version), or judging one.
 */
export type HandshakeStage = "first" | "hello" | "attach";

/** Why a client's connection ended without a first frame to refuse. */
export type HandshakeFailure = "timeout" | "closed";

/** Every reason a handshake failed, so that each series exists from the start. */
export const HANDSHAKE_FAILURES = ["timeout", "closed", "bad-request", "version"] as const;
/** Every result of a tunnel's registration. */
export const REGISTRATION_RESULTS = [
  "registered",
  "invalid-subdomain",
  "unauthorized",
  "limit",
  "subdomain-taken",
  "subdomain-reserved",
  "invalid-host",
  "invalid-port",
  "port-taken",
  "port-reserved",
  "bad-request",
  "unavailable",
] as const;
/** Every result of an attach. */
export const ATTACH_RESULTS = ["attached", "unauthorized", "bad-request", "pool-full"] as const;
