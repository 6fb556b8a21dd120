// The wire protocol between client and server: handshake, messages, framing, limits.

/** Version carried in `hello` and `attach`; a server refuses any other. */
export const PROTOCOL_VERSION = 1;
/** Package version, reported by `--version` and `GET /api/status`. */
export const GOTUNNEL_VERSION = "0.1.0";

/** Token of the HTTP/1.1 `Upgrade` header that turns a connection into a Gotunnel one. */
export const UPGRADE_TOKEN = "gotunnel";
/** Request target of the upgrade request, on any Host. */
export const UPGRADE_PATH = "/_gotunnel";

// Limits and timeouts. Each is defined here once and nowhere else.
/** Largest HTTP request head or TLS ClientHello the server reads to route a connection. */
export const MAX_SNIFF_BYTES = 16 * 1024;
/** Absolute deadline for those first bytes, not reset by a trickle. */
export const SNIFF_TIMEOUT_MS = 10_000;
/** Largest control frame payload, either direction. */
export const MAX_FRAME_BYTES = 16 * 1024;
/** Time a new client connection has to complete its upgrade and first frame. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/** Interval between heartbeats, sent by both sides. */
export const HEARTBEAT_INTERVAL_MS = 10_000;
/** Inbound silence after which a peer is taken as dead. */
export const PEER_TIMEOUT_MS = 30_000;
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
/** Tunnels one IP address may hold. */
export const MAX_TUNNELS_PER_IP = 10;
/** New control sessions one IP address may open per minute. */
export const MAX_SESSIONS_PER_IP_PER_MINUTE = 30;
/** Largest `demand` count in one frame. */
export const MAX_DEMAND = 1024;
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
/** How long a subdomain stays held for a client that went away without saying bye. */
export const LEASE_MS = 60_000;
/** Bytes of randomness in a session secret. */
export const SECRET_BYTES = 32;
/** Length of a random subdomain. */
export const RANDOM_SUBDOMAIN_LENGTH = 10;
/** Bytes in a frame's length prefix (unsigned, big-endian). */
export const FRAME_HEADER_BYTES = 4;

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
  /** Tunnels one IP may hold. */
  maxTunnelsPerIp: number;
  /** New control sessions one IP may open per minute. */
  maxSessionsPerIpPerMinute: number;
}

/** The defaults of {@linkcode ServerLimits}, from the constants above. */
export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = {
  sniffTimeoutMs: SNIFF_TIMEOUT_MS,
  maxSniffBytes: MAX_SNIFF_BYTES,
  handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
  maxFrameBytes: MAX_FRAME_BYTES,
  heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
  peerTimeoutMs: PEER_TIMEOUT_MS,
  proxyWaitTimeoutMs: PROXY_WAIT_TIMEOUT_MS,
  streamIdleTimeoutMs: STREAM_IDLE_TIMEOUT_MS,
  maxStreamsPerTunnel: MAX_STREAMS_PER_TUNNEL,
  maxIdleProxies: MAX_IDLE_PROXIES,
  maxSniffingPerIp: MAX_SNIFFING_PER_IP,
  maxSniffingTotal: MAX_SNIFFING_TOTAL,
  maxTunnelsPerIp: MAX_TUNNELS_PER_IP,
  maxSessionsPerIpPerMinute: MAX_SESSIONS_PER_IP_PER_MINUTE,
};

/** Why a server refused a client; the client branches on it. */
export type ErrorCode =
  | "version" // protocol version not supported
  | "invalid-subdomain" // malformed subdomain
  | "subdomain-taken" // another client holds it
  | "subdomain-reserved" // held for a client that went away, until its lease ends
  | "replaced" // this session's client came back on a new connection
  | "bad-request" // malformed or unexpected frame
  | "unauthorized" // unknown tunnel or wrong secret
  | "pool-full" // too many idle proxy connections
  | "limit" // a per-IP limit: too many tunnels, or too many new ones a minute
  | "shutdown"; // server is going away

/** Frames a client sends. `hello` opens a control connection, `attach` a proxy one. */
export type ClientMessage =
  | { type: "hello"; version: number; subdomain?: string; token?: string; lease?: string }
  | { type: "attach"; version: number; tunnel: string; secret: string }
  | { type: "ping" }
  | { type: "bye" };

/** Frames a server sends. `open` announces a public connection on a proxy connection. */
export type ServerMessage =
  | {
    type: "welcome";
    version: number;
    tunnel: string;
    secret: string;
    subdomain: string;
    url: string;
    /** Lets this client reclaim the subdomain after a disconnect. */
    lease: string;
  }
  | { type: "error"; code: ErrorCode; message: string; retryAfterMs?: number }
  | { type: "open"; peer: string; proto: "http" | "tls"; scheme?: "http" | "https" }
  | { type: "demand"; count: number }
  | { type: "lease"; lease: string }
  | { type: "ping" };

/** A decoder's answer: a message and the bytes it used, or why it cannot give one. */
export type DecodeResult<M> =
  | { state: "frame"; message: M; length: number }
  | { state: "need-more" }
  | { state: "invalid"; reason: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes one message as a length-prefixed JSON frame. */
export function encodeFrame(message: ClientMessage | ServerMessage): Uint8Array {
  const json = encoder.encode(JSON.stringify(message));
  if (json.length > MAX_FRAME_BYTES) {
    throw new RangeError(`Cannot encode frame: ${json.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  }
  const frame = new Uint8Array(FRAME_HEADER_BYTES + json.length);
  new DataView(frame.buffer).setUint32(0, json.length);
  frame.set(json, FRAME_HEADER_BYTES);
  return frame;
}

/** Decodes the first frame in `bytes` as a client message, of at most `maxBytes`. */
export function decodeClientFrame(
  bytes: Uint8Array,
  maxBytes: number = MAX_FRAME_BYTES,
): DecodeResult<ClientMessage> {
  return decodeFrame(bytes, parseClientMessage, maxBytes);
}

/** Decodes the first frame in `bytes` as a server message. */
export function decodeServerFrame(bytes: Uint8Array): DecodeResult<ServerMessage> {
  return decodeFrame(bytes, parseServerMessage);
}

function decodeFrame<M>(
  bytes: Uint8Array,
  parse: (value: Record<string, unknown>) => M | string,
  maxBytes = MAX_FRAME_BYTES,
): DecodeResult<M> {
  if (bytes.length < FRAME_HEADER_BYTES) return { state: "need-more" };
  const size = new DataView(bytes.buffer, bytes.byteOffset, FRAME_HEADER_BYTES).getUint32(0);
  if (size > maxBytes) {
    return { state: "invalid", reason: `frame of ${size} bytes exceeds ${maxBytes}` };
  }
  const end = FRAME_HEADER_BYTES + size;
  if (bytes.length < end) return { state: "need-more" };
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes.subarray(FRAME_HEADER_BYTES, end)));
  } catch {
    return { state: "invalid", reason: "frame is not UTF-8 JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { state: "invalid", reason: "frame is not a JSON object" };
  }
  const message = parse(value as Record<string, unknown>);
  if (typeof message === "string") return { state: "invalid", reason: message };
  return { state: "frame", message, length: end };
}

const isString = (v: unknown): v is string => typeof v === "string";
const isCount = (v: unknown): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= MAX_DEMAND;
const ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "version",
  "invalid-subdomain",
  "subdomain-taken",
  "subdomain-reserved",
  "replaced",
  "bad-request",
  "unauthorized",
  "pool-full",
  "limit",
  "shutdown",
]);

function parseClientMessage(v: Record<string, unknown>): ClientMessage | string {
  switch (v.type) {
    case "hello": {
      if (typeof v.version !== "number") return "hello without a numeric version";
      const hello: ClientMessage = { type: "hello", version: v.version };
      if (v.subdomain !== undefined) {
        if (!isString(v.subdomain)) return "hello with a non-string subdomain";
        hello.subdomain = v.subdomain;
      }
      if (v.token !== undefined) {
        if (!isString(v.token)) return "hello with a non-string token";
        hello.token = v.token;
      }
      if (v.lease !== undefined) {
        if (!isString(v.lease)) return "hello with a non-string lease";
        hello.lease = v.lease;
      }
      return hello;
    }
    case "attach":
      if (typeof v.version !== "number" || !isString(v.tunnel) || !isString(v.secret)) {
        return "attach needs version, tunnel and secret";
      }
      return { type: "attach", version: v.version, tunnel: v.tunnel, secret: v.secret };
    case "ping":
    case "bye":
      return { type: v.type };
    default:
      return `unknown client frame type ${JSON.stringify(v.type)}`;
  }
}

function parseServerMessage(v: Record<string, unknown>): ServerMessage | string {
  switch (v.type) {
    case "welcome": {
      const { version, tunnel, secret, subdomain, url, lease } = v;
      if (
        typeof version !== "number" || !isString(tunnel) || !isString(secret) ||
        !isString(subdomain) || !isString(url) || !isString(lease)
      ) return "welcome with missing fields";
      return { type: "welcome", version, tunnel, secret, subdomain, url, lease };
    }
    case "error": {
      if (!isString(v.code) || !ERROR_CODES.has(v.code) || !isString(v.message)) {
        return "error frame with unknown code";
      }
      const error: ServerMessage = { type: "error", code: v.code as ErrorCode, message: v.message };
      if (typeof v.retryAfterMs === "number" && v.retryAfterMs >= 0) {
        error.retryAfterMs = v.retryAfterMs;
      }
      return error;
    }
    case "open":
      if (!isString(v.peer) || (v.proto !== "http" && v.proto !== "tls")) {
        return "open frame with bad fields";
      }
      if (v.scheme !== undefined && v.scheme !== "http" && v.scheme !== "https") {
        return "open frame with a bad scheme";
      }
      return v.scheme === undefined
        ? { type: "open", peer: v.peer, proto: v.proto }
        : { type: "open", peer: v.peer, proto: v.proto, scheme: v.scheme };
    case "demand":
      if (!isCount(v.count)) return "demand frame with bad count";
      return { type: "demand", count: v.count };
    case "lease":
      if (!isString(v.lease)) return "lease frame without a lease";
      return { type: "lease", lease: v.lease };
    case "ping":
      return { type: "ping" };
    default:
      return `unknown server frame type ${JSON.stringify(v.type)}`;
  }
}

/** The upgrade request a client sends to open a control or proxy connection. */
export function encodeUpgradeRequest(host: string): Uint8Array {
  return encoder.encode(
    `GET ${UPGRADE_PATH} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\n` +
      `Upgrade: ${UPGRADE_TOKEN}\r\nUser-Agent: gotunnel/${GOTUNNEL_VERSION}\r\n\r\n`,
  );
}

/** The server's answer to an accepted upgrade request. */
export const UPGRADE_RESPONSE: Uint8Array = encoder.encode(
  `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${UPGRADE_TOKEN}\r\n\r\n`,
);

/** Concatenates byte arrays (few, small: handshakes and prefixes). */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
