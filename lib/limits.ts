// Every limit and timeout, with its unit in its name: defined here once and nowhere else
// (but ACME's waits, in lib/server/acme/timings.ts, and the cluster's, in
// lib/server/cluster/timings.ts).

/** Largest HTTP request head or TLS ClientHello the server reads to route a connection. */
export const MAX_SNIFF_BYTES = 16 * 1024;
/** Absolute deadline for those first bytes, not reset by a trickle. */
export const SNIFF_TIMEOUT_MS = 10_000;
/** Largest control frame payload, either direction. */
export const MAX_FRAME_BYTES = 16 * 1024;
/** Tunnels one control connection may carry (and one `claim` frame may ask for). */
export const MAX_TUNNELS_PER_SESSION = 50;
/** How long a client waits for the answer to its `claim` (the server may probe a holder first). */
export const CLAIM_TIMEOUT_MS = 10_000;
/** TCP visitors from one IP address connected at once, over all TCP ports. */
export const MAX_TCP_CONNECTIONS_PER_IP = 256;
/** Time a new client connection has to complete its upgrade and first frame. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/** Interval between heartbeats, sent by both sides. */
export const HEARTBEAT_INTERVAL_MS = 10_000;
/** Inbound silence after which a peer is taken as dead. */
export const PEER_TIMEOUT_MS = 30_000;
/**
 * Interval between pings on each idle proxy connection; one unanswered by the
 * next is closed. They also keep NAT mappings alive.
 */
export const PROXY_PING_INTERVAL_MS = 20_000;
/**
 * A proxy connection heard from within this long is taken as alive: its next
 * stream starts at once. A quieter one must ACCEPT its stream first.
 */
export const ACCEPT_AFTER_QUIET_MS = 2_000;
/** How long the server waits for the client's ACCEPT of a stream before trying another connection. */
export const STREAM_ACCEPT_TIMEOUT_MS = 5_000;
/** How long a public connection waits for an idle proxy connection (then 504). */
export const PROXY_WAIT_TIMEOUT_MS = 10_000;
/** How long the client waits for the local app to accept (then 502). */
export const LOCAL_DIAL_TIMEOUT_MS = 5_000;
/** Accept errors that mean resource exhaustion (EMFILE) back off from this... */
export const ACCEPT_BACKOFF_MIN_MS = 5;
/** ...doubling up to this; they never end the server. */
export const ACCEPT_BACKOFF_MAX_MS = 1_000;
/** How long a closing control channel waits for its last frame (bye, shutdown) to go out. */
export const LAST_FRAME_GRACE_MS = 1_000;
/** After an error answer, how long the peer may go on sending before the socket is closed. */
export const LINGER_MS = 1_000;
/** ...and how many bytes of it are read and dropped at most. */
export const LINGER_MAX_BYTES = 64 * 1024;
/** Idle proxy connections the client keeps open by default. */
export const DEFAULT_POOL_SIZE = 8;
/** A tunnel without visitors for this long keeps only PROXY_POOL_QUIET_SIZE idle connections... */
export const PROXY_POOL_QUIET_MS = 60_000;
/** ...(the first visitor after it tops the pool up to its size again). */
export const PROXY_POOL_QUIET_SIZE = 2;
/** What the HTTP-aware client holds of a visitor's bytes while an upgrade waits for its answer. */
export const MAX_HELD_BYTES = 64 * 1024;
/** Request log lines printed per second at most; the rest are summed up in one line. */
export const REQUEST_LOG_LINES_PER_SECOND = 50;
/** How long the request log gathers lines before writing them together. */
export const REQUEST_LOG_BATCH_MS = 20;
/** Idle proxy connections the server holds per session at most. */
export const MAX_IDLE_PROXIES = 32;
/** A relayed connection with no byte either way for this long is closed. */
export const STREAM_IDLE_TIMEOUT_MS = 10 * 60_000;
/** Concurrent public connections per tunnel (then 503). */
export const MAX_STREAMS_PER_TUNNEL = 200;
/** Connections from one IP address whose first bytes are still being read. */
export const MAX_SNIFFING_PER_IP = 50;
/** Connections whose first bytes are still being read, in all. */
export const MAX_SNIFFING_TOTAL = 10_000;
/**
 * The longest PROXY protocol header the server reads from a trusted proxy, as
 * HAProxy's: a version 2 header's 16 fixed bytes and 4 KiB of addresses and
 * TLVs (a version 1 header is at most 107 bytes).
 */
export const MAX_PROXY_HEADER_BYTES = 16 + 4096;
/** CIDR ranges `--trusted-proxies` may list (each address is matched against all of them). */
export const MAX_TRUSTED_PROXIES = 256;
/** Tunnels one IP address may hold. */
export const MAX_TUNNELS_PER_IP = 10;
/** New control sessions one IP address may open per minute. */
export const MAX_SESSIONS_PER_IP_PER_MINUTE = 30;
/** Missing or wrong tokens one IP address may send per minute (then `limit`). */
export const MAX_AUTH_FAILURES_PER_IP_PER_MINUTE = 30;
/**
 * How long the client keeps an idle connection to the local app for the next
 * visitor: below the keep-alive timeouts of common app servers (Node.js and
 * uvicorn 5 s, Apache 5 s, nginx 75 s), so that the app rarely closes one first.
 */
export const APP_POOL_IDLE_MS = 2_000;
/**
 * Idle connections to the local app the client keeps at most: enough for a
 * burst of concurrent visitors to find one each (below it, every visitor past
 * it costs a connect and a close).
 */
export const APP_POOL_MAX_IDLE = 128;
/** A request sent on a reused app connection is kept (to send again) up to this size. */
export const APP_REPLAY_MAX_BYTES = 64 * 1024;
/** A relay direction reads into a buffer of this size at first (idle connections stay cheap)... */
export const RELAY_BUFFER_SMALL_BYTES = 8 * 1024;
/**
 * ...then into two of this size in turn once reads keep filling it (room for a
 * 64 KiB answer and its head in one read: 64 KiB made such answers two reads
 * and two writes, and cost the 64 KiB keep-alive row a quarter of its rate)...
 */
export const RELAY_BUFFER_MEDIUM_BYTES = 128 * 1024;
/** ...and into two of this size once it is a bulk flow. */
export const RELAY_BUFFER_LARGE_BYTES = 256 * 1024;
/** Medium relay buffers in use at once, at most (64 MiB): past it, flows stay small. */
export const RELAY_MEDIUM_BUFFERS_MAX = 512;
/** Large relay buffers in use at once, at most (16 MiB): past it, flows stay medium. */
export const RELAY_LARGE_BUFFERS_MAX = 64;
/**
 * How often relay buffer free lists are cut to what the last period's
 * concurrency needs (so two periods after a load, all of them are freed).
 */
export const MEMORY_TRIM_INTERVAL_MS = 5_000;
/** Visitors a client serves at once by default (each is a connection to the local app). */
export const DEFAULT_CLIENT_MAX_STREAMS = 256;
/** Proxy connections a client keeps idle or opening at most, whatever the server asks. */
export const MAX_CLIENT_PROXIES = 1024;
/** Reconnect backoff: first delay, doubled after each failure up to the maximum. */
export const RECONNECT_MIN_MS = 1_000;
/** Reconnect backoff ceiling. */
export const RECONNECT_MAX_MS = 30_000;
/** A graceful shutdown lets relayed connections finish for this long. */
export const SHUTDOWN_GRACE_MS = 30_000;
/** How often a shutdown checks whether everything has finished. */
export const SHUTDOWN_POLL_MS = 50;
/** How long a live session of the same client has to answer a ping before a new one replaces it. */
export const LIVENESS_PROBE_MS = 2_000;
/** The longest lease either side keeps or checks: a 253-character hostname and the rest. */
export const MAX_LEASE_LENGTH = 400;
/** The longest name of a tunnel (a config file's key; `ref` in claims and grants). */
export const MAX_TUNNEL_NAME_LENGTH = 64;
/** Bind attempts at most when the server picks a free TCP port (each a failed bind when busy). */
export const TCP_PORT_PICK_ATTEMPTS = 1024;
/** How long a subdomain stays held for a client that went away without saying bye. */
export const LEASE_MS = 60_000;
/** Bytes of randomness in a session secret. */
export const SECRET_BYTES = 32;
/** Length of a random subdomain. */
export const RANDOM_SUBDOMAIN_LENGTH = 10;
/** The window of a tunnel's streams-a-second figure (dashboard, `/api/tunnels`), in seconds. */
export const RATE_WINDOW_S = 60;
/** Upper bounds (seconds) of the buckets of the proxy-wait histogram: 0 is the common case. */
export const PROXY_WAIT_BUCKETS_S: readonly number[] = [
  0.001,
  0.005,
  0.025,
  0.1,
  0.25,
  1,
  2.5,
  5,
  10,
];
/** Upper bounds (seconds) of the buckets of the sniff-duration histogram. */
export const SNIFF_BUCKETS_S: readonly number[] = [0.001, 0.005, 0.025, 0.1, 0.25, 1, 2.5, 10];
/** Shortest admin token (`--admin-token`), as for tunnel tokens. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;
/** Admin connections open at once; more are closed at accept (a scraper and a few dashboards). */
export const MAX_ADMIN_CONNECTIONS = 32;
/** How often the dashboard asks for `/api/tunnels`. */
export const DASHBOARD_POLL_MS = 2_000;
/** How long the dashboard waits for one answer before it says the server is unreachable. */
export const DASHBOARD_FETCH_TIMEOUT_MS = 5_000;

/** The client inspector's first port choice, on 127.0.0.1... */
export const INSPECTOR_PORT = 4040;
/** ...then the next free one up to this, then a random one. */
export const INSPECTOR_LAST_PORT = 4050;
/** Exchanges the inspector keeps (a ring: the oldest goes first). */
export const INSPECTOR_LIMIT = 500;
/** Body bytes the inspector keeps in all; the oldest exchanges' bodies are dropped first. */
export const INSPECTOR_BODY_BUDGET_BYTES = 64 * 1024 * 1024;
/** The inspector keeps body bytes in slabs of this size, written again once freed... */
export const INSPECTOR_BODY_SLAB_BYTES = 1024 * 1024;
/** ...and keeps this many free slabs for that (more go to the collector). */
export const INSPECTOR_FREE_SLABS = 4;
/**
 * Copies that outlive a reused buffer (inspector captures, requests kept to
 * send again) share slabs of this size; a copy over half of it gets its own.
 * (Copies live in arrival order, so slabs free up in order too; a slab lives
 * while any copy in it is kept.)
 */
export const ARENA_SLAB_BYTES = 256 * 1024;
/** Bytes kept of one body; the rest is counted, not kept (the body is marked truncated). */
export const INSPECTOR_MAX_BODY_BYTES = 1024 * 1024;
/** Largest body the inspector decodes (gzip, br, deflate) for a HAR export or a replay. */
export const INSPECTOR_MAX_DECODED_BYTES = 8 * 1024 * 1024;
/** Changed exchanges are sent to the inspector's pages together, at most this often. */
export const INSPECTOR_EVENT_BATCH_MS = 50;
/** A comment line on idle event streams this often, so dead pages are noticed. */
export const INSPECTOR_EVENT_HEARTBEAT_MS = 15_000;
/** Event streams open at once (more are refused with 503). */
export const INSPECTOR_MAX_EVENT_STREAMS = 16;
/** Unsent bytes an event stream may fall behind before it is closed (the page reconnects). */
export const INSPECTOR_EVENT_BACKLOG_BYTES = 1024 * 1024;
/** A replay has this long to connect, send and get its whole answer. */
export const INSPECTOR_REPLAY_TIMEOUT_MS = 30_000;
/** Replays in flight at once (more are refused with 429). */
export const INSPECTOR_MAX_REPLAYS = 8;
/** Largest request body of the inspector's own API (an edited replay). */
export const INSPECTOR_MAX_API_BODY_BYTES = 4 * 1024 * 1024;

/**
 * The server's limits and timeouts; each is a server option and a CLI flag.
 * For counts, 0 means no limit.
 */
export interface ServerLimits {
  /** Absolute deadline for the first bytes of a public connection (then 408 or close). */
  sniffTimeoutMs: number;
  /** Largest HTTP request head or TLS ClientHello read to route (then 431 or close). */
  maxSniffBytes: number;
  /** Time a client connection has for its upgrade and first frame. */
  handshakeTimeoutMs: number;
  /** Largest control frame a client may send. */
  maxFrameBytes: number;
  /** Interval between heartbeats on control connections. */
  heartbeatIntervalMs: number;
  /** Inbound silence after which a client is taken as dead. */
  peerTimeoutMs: number;
  /** How long a visitor waits for an idle proxy connection (then 504). */
  proxyWaitTimeoutMs: number;
  /** Interval between pings on idle proxy connections; one not answered by the next is closed. */
  proxyPingIntervalMs: number;
  /** How long the client has to accept a stream before the visitor moves to another connection. */
  streamAcceptTimeoutMs: number;
  /** A proxy connection quiet for longer must accept its next stream first (0: always). */
  acceptAfterQuietMs: number;
  /** A relayed connection idle both ways for this long is closed. */
  streamIdleTimeoutMs: number;
  /** Concurrent public connections per tunnel (then 503). */
  maxStreamsPerTunnel: number;
  /** Idle proxy connections held per tunnel. */
  maxIdleProxies: number;
  /** Connections from one IP still being sniffed (more are closed). */
  maxSniffingPerIp: number;
  /** Connections still being sniffed, in all (more are closed). */
  maxSniffingTotal: number;
  /** TCP visitors one IP may have connected at once, over all TCP ports (more are closed). */
  maxTcpConnectionsPerIp: number;
  /** Tunnels one IP may hold. */
  maxTunnelsPerIp: number;
  /** New control connections one IP may open per minute (only those whose token passed count). */
  maxSessionsPerIpPerMinute: number;
  /** Missing or wrong tokens one IP may send per minute; past it they are answered `limit`. */
  maxAuthFailuresPerIpPerMinute: number;
}

/**
 * The defaults of {@linkcode ServerLimits}, from the constants above.
 *
 * @example Raise one limit, keep the others
 * ```ts
 * import { DEFAULT_SERVER_LIMITS, startServer } from "@gotunnel/gotunnel";
 * await using server = await startServer({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   limits: { maxStreamsPerTunnel: DEFAULT_SERVER_LIMITS.maxStreamsPerTunnel * 2 },
 * });
 * ```
 */
export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = {
  sniffTimeoutMs: SNIFF_TIMEOUT_MS,
  maxSniffBytes: MAX_SNIFF_BYTES,
  handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
  maxFrameBytes: MAX_FRAME_BYTES,
  heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
  peerTimeoutMs: PEER_TIMEOUT_MS,
  proxyWaitTimeoutMs: PROXY_WAIT_TIMEOUT_MS,
  proxyPingIntervalMs: PROXY_PING_INTERVAL_MS,
  streamAcceptTimeoutMs: STREAM_ACCEPT_TIMEOUT_MS,
  acceptAfterQuietMs: ACCEPT_AFTER_QUIET_MS,
  streamIdleTimeoutMs: STREAM_IDLE_TIMEOUT_MS,
  maxStreamsPerTunnel: MAX_STREAMS_PER_TUNNEL,
  maxIdleProxies: MAX_IDLE_PROXIES,
  maxSniffingPerIp: MAX_SNIFFING_PER_IP,
  maxSniffingTotal: MAX_SNIFFING_TOTAL,
  maxTcpConnectionsPerIp: MAX_TCP_CONNECTIONS_PER_IP,
  maxTunnelsPerIp: MAX_TUNNELS_PER_IP,
  maxSessionsPerIpPerMinute: MAX_SESSIONS_PER_IP_PER_MINUTE,
  maxAuthFailuresPerIpPerMinute: MAX_AUTH_FAILURES_PER_IP_PER_MINUTE,
};

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const COUNT: readonly [number, number] = [0, 2 ** 31 - 1];

/**
 * The least and greatest value of each limit as a flag, inclusive (shown in
 * `--help`). Durations below their least would spin or refuse everyone (a 0 ms
 * heartbeat); byte limits below 4 KiB would refuse ordinary ClientHellos and frames.
 */
export const LIMIT_RANGES: Readonly<Record<keyof ServerLimits, readonly [number, number]>> = {
  sniffTimeoutMs: [100, 10 * MINUTE],
  maxSniffBytes: [4096, 1024 * 1024],
  handshakeTimeoutMs: [100, 10 * MINUTE],
  maxFrameBytes: [4096, 1024 * 1024],
  heartbeatIntervalMs: [SECOND, 10 * MINUTE],
  peerTimeoutMs: [2 * SECOND, HOUR],
  proxyWaitTimeoutMs: [100, 10 * MINUTE],
  proxyPingIntervalMs: [SECOND, 10 * MINUTE],
  streamAcceptTimeoutMs: [100, MINUTE],
  acceptAfterQuietMs: [0, 10 * MINUTE],
  streamIdleTimeoutMs: [SECOND, 24 * HOUR],
  maxStreamsPerTunnel: COUNT,
  maxIdleProxies: COUNT,
  maxSniffingPerIp: COUNT,
  maxSniffingTotal: COUNT,
  maxTcpConnectionsPerIp: COUNT,
  maxTunnelsPerIp: COUNT,
  maxSessionsPerIpPerMinute: COUNT,
  maxAuthFailuresPerIpPerMinute: COUNT,
};

/**
 * The ranges `startServer` accepts: the flags' maxima, but any duration from
 * 1 ms (tests and embedders shorten timeouts; 0 would spin).
 */
export const LIBRARY_LIMIT_RANGES: Readonly<Record<keyof ServerLimits, readonly [number, number]>> =
  Object.fromEntries(
    Object.entries(LIMIT_RANGES).map((
      [key, [min, max]],
    ) => [key, [key.endsWith("Ms") ? Math.min(min, 1) : min, max]]),
  ) as unknown as Record<keyof ServerLimits, readonly [number, number]>;

/** The least and greatest lease time as a flag: renewals go out every half lease. */
export const LEASE_RANGE_MS: readonly [number, number] = [5 * SECOND, 24 * HOUR];

/**
 * Why `limits` cannot be used, naming the first limit outside `ranges` (and a
 * heartbeat that does not come well within the peer timeout); undefined if they can.
 */
export function checkLimits(
  limits: ServerLimits,
  ranges: Readonly<Record<keyof ServerLimits, readonly [number, number]>> = LIBRARY_LIMIT_RANGES,
): string | undefined {
  for (const key of Object.keys(ranges) as (keyof ServerLimits)[]) {
    const [min, max] = ranges[key];
    const value = limits[key];
    if (!Number.isInteger(value) || value < min || value > max) {
      return `${key} ${value} is outside ${min}-${max}`;
    }
  }
  if (limits.heartbeatIntervalMs * 2 > limits.peerTimeoutMs) {
    return `peerTimeoutMs ${limits.peerTimeoutMs} must be at least twice heartbeatIntervalMs ` +
      `${limits.heartbeatIntervalMs}`;
  }
  return undefined;
}
