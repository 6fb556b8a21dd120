// The wire protocol between client and server: the upgrade handshake, control
// messages and their frames, and the stream frames of proxy connections. Pure:
// encoders and decoders over bytes, no sockets.

import { concatBytes } from "./bytes.ts";
import { MAX_FRAME_BYTES, MAX_TUNNELS_PER_SESSION } from "./limits.ts";

/**
 * Version carried in `hello` and `attach`; a server refuses any other, and
 * says so with an `error` of code `version` that carries its own. Version 3
 * carries several tunnels per control connection (`claim`, a tunnel id in each
 * `open`), TCP tunnels and custom hostnames.
 *
 * @example
 * ```ts
 * import { PROTOCOL_VERSION } from "@gotunnel/gotunnel";
 * console.log(`speaks protocol ${PROTOCOL_VERSION}`);
 * ```
 */
export const PROTOCOL_VERSION = 3;
/**
 * Package version, reported by `--version` and `GET /api/status`.
 *
 * @example
 * ```ts
 * import { GOTUNNEL_VERSION } from "@gotunnel/gotunnel";
 * console.log(`gotunnel ${GOTUNNEL_VERSION}`);
 * ```
 */
export const GOTUNNEL_VERSION = "0.1.0";

/** Bytes in a frame's header: a length (control frames) or a kind and a length (stream frames). */
export const FRAME_HEADER_BYTES = 4;
/** Largest `demand` count in one frame. */
export const MAX_DEMAND = 1024;

/** Token of the HTTP/1.1 `Upgrade` header that turns a connection into a Gotunnel one. */
export const UPGRADE_TOKEN = "gotunnel";
/** Request target of the upgrade request, on any Host. */
export const UPGRADE_PATH = "/_gotunnel";

/** Why a server refused a client or one of its tunnels; the client branches on it. */
export type ErrorCode =
  | "version" // protocol version not supported
  | "invalid-subdomain" // malformed subdomain
  | "invalid-host" // malformed custom hostname, or one under the server's own domain
  | "invalid-port" // TCP port outside the server's range, or TCP tunnels off
  | "subdomain-taken" // another client holds it (a subdomain or a custom hostname)
  | "subdomain-reserved" // held for a client that went away, until its lease ends
  | "port-taken" // another tunnel holds the TCP port, or the server's host uses it
  | "port-reserved" // the TCP port is held for a client that went away, until its lease ends
  | "replaced" // this session's (or tunnel's) client came back on a new connection
  | "bad-request" // malformed or unexpected frame
  | "unauthorized" // unknown tunnel or wrong secret, or a token that does not allow it
  | "pool-full" // too many idle proxy connections
  | "limit" // a per-IP limit: too many tunnels, or too many new ones a minute
  | "shutdown"; // server is going away

/** One tunnel a client asks for in a `claim`: a name (HTTP and TLS by SNI) or a TCP port. */
export type TunnelClaim =
  | {
    /** The client's key for it, repeated in the answer. */
    ref: string;
    kind: "http";
    /** The subdomain it wants (none: a random one). */
    subdomain?: string;
    /** A full hostname outside the server's domain, instead of a subdomain. */
    host?: string;
    /** The lease it holds for that name. */
    lease?: string;
    /** Take the name over from a live tunnel of the same client (same lease). */
    replace?: boolean;
  }
  | {
    ref: string;
    kind: "tcp";
    /** The port it wants (none: a free one of the server's range). */
    port?: number;
    lease?: string;
    replace?: boolean;
  };

/** The server's answer to one {@linkcode TunnelClaim}. */
export type TunnelGrant =
  | {
    ref: string;
    ok: true;
    /** The tunnel's id on this control connection, named in each `open`. */
    id: number;
    /** What it holds: a subdomain, a hostname, or `tcp:<port>`. */
    name: string;
    /** Its public URL (`http://…`, `https://…` or `tcp://host:port`). */
    url: string;
    /** Lets this client reclaim the name after a disconnect. */
    lease: string;
  }
  | { ref: string; ok: false; code: ErrorCode; message: string; retryAfterMs?: number };

/**
 * Frames a client sends. `hello` opens a control connection, `claim` asks for
 * tunnels on it, `attach` opens a proxy connection.
 */
export type ClientMessage =
  | { type: "hello"; version: number; token?: string }
  | { type: "claim"; tunnels: TunnelClaim[] }
  | { type: "attach"; version: number; session: string; secret: string }
  | { type: "ping" }
  | { type: "bye" };

/** Frames a server sends. `open` announces a public connection on a proxy connection. */
export type ServerMessage =
  | {
    type: "welcome";
    version: number;
    /** The control connection's id, named by `attach`. */
    session: string;
    secret: string;
    /**
     * How often the server pings each idle proxy connection: one that hears
     * nothing for three times this long is dead (a NAT dropped it) and is replaced.
     */
    proxyPingMs?: number;
  }
  | { type: "claimed"; tunnels: TunnelGrant[] }
  | {
    type: "error";
    code: ErrorCode;
    message: string;
    retryAfterMs?: number;
    /** With code `version`: the protocol version the server speaks. */
    version?: number;
  }
  | {
    type: "open";
    /** Which of the connection's tunnels the visitor came to. */
    tunnel: number;
    peer: string;
    /** HTTP, TLS routed by SNI, or a TCP port's bytes. */
    proto: "http" | "tls" | "tcp";
    scheme?: "http" | "https";
    /** The address the visitor connected to, `ip:port` (TCP tunnels, for PROXY headers). */
    dest?: string;
    /**
     * The connection was quiet for a while (a NAT may have dropped it): the
     * client answers ACCEPT first, before anything else of the stream.
     */
    accept?: true;
  }
  | { type: "demand"; count: number }
  | { type: "lease"; tunnel: number; lease: string }
  /**
   * A tunnel's public URL changed after it was granted: its `https://` URL is
   * ready (the server obtained its certificate).
   */
  | { type: "url"; tunnel: number; url: string }
  /** A tunnel ended by the server (replaced, token revoked); the others go on. */
  | { type: "closed"; tunnel: number; code: ErrorCode; message: string }
  /** A heartbeat; with `echo`, the client answers with a ping at once (a liveness probe). */
  | { type: "ping"; echo?: true };

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
const isId = (v: unknown): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
const isPort = (v: unknown): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 65535;
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "version",
  "invalid-subdomain",
  "invalid-host",
  "invalid-port",
  "subdomain-taken",
  "subdomain-reserved",
  "port-taken",
  "port-reserved",
  "replaced",
  "bad-request",
  "unauthorized",
  "pool-full",
  "limit",
  "shutdown",
]);
const isCode = (v: unknown): v is ErrorCode => isString(v) && ERROR_CODES.has(v);
/** Longest `ref` of a claim: a config file's tunnel name. */
const MAX_REF_LENGTH = 64;

function parseClaim(v: unknown): TunnelClaim | string {
  if (!isRecord(v) || !isString(v.ref) || v.ref.length > MAX_REF_LENGTH) {
    return "claim with a bad ref";
  }
  const { ref } = v;
  if (v.lease !== undefined && !isString(v.lease)) return "claim with a non-string lease";
  const extra = {
    ...(v.lease === undefined ? {} : { lease: v.lease as string }),
    ...(v.replace === true ? { replace: true } : {}),
  };
  if (v.kind === "tcp") {
    if (v.port !== undefined && !isPort(v.port)) return "claim with a bad port";
    return { ref, kind: "tcp", ...(v.port === undefined ? {} : { port: v.port }), ...extra };
  }
  if (v.kind !== "http") return "claim of an unknown kind";
  if (v.subdomain !== undefined && !isString(v.subdomain)) return "claim with a bad subdomain";
  if (v.host !== undefined && !isString(v.host)) return "claim with a bad host";
  if (v.subdomain !== undefined && v.host !== undefined) return "claim with subdomain and host";
  return {
    ref,
    kind: "http",
    ...(v.subdomain === undefined ? {} : { subdomain: v.subdomain }),
    ...(v.host === undefined ? {} : { host: v.host }),
    ...extra,
  };
}

function parseGrant(v: unknown): TunnelGrant | string {
  if (!isRecord(v) || !isString(v.ref)) return "grant without a ref";
  if (v.ok === true) {
    if (!isId(v.id) || !isString(v.name) || !isString(v.url) || !isString(v.lease)) {
      return "grant with missing fields";
    }
    return { ref: v.ref, ok: true, id: v.id, name: v.name, url: v.url, lease: v.lease };
  }
  if (!isCode(v.code) || !isString(v.message)) return "refusal with an unknown code";
  const refusal: TunnelGrant = { ref: v.ref, ok: false, code: v.code, message: v.message };
  if (typeof v.retryAfterMs === "number" && v.retryAfterMs >= 0) {
    refusal.retryAfterMs = v.retryAfterMs;
  }
  return refusal;
}

/** A list of at most MAX_TUNNELS_PER_SESSION items, each parsed, or why not. */
function parseList<T>(v: unknown, parse: (item: unknown) => T | string): T[] | string {
  if (!Array.isArray(v) || v.length === 0) return "an empty or missing tunnel list";
  if (v.length > MAX_TUNNELS_PER_SESSION) {
    return `${v.length} tunnels in one frame: at most ${MAX_TUNNELS_PER_SESSION}`;
  }
  const out: T[] = [];
  for (const item of v) {
    const parsed = parse(item);
    if (typeof parsed === "string") return parsed;
    out.push(parsed);
  }
  return out;
}

function parseClientMessage(v: Record<string, unknown>): ClientMessage | string {
  switch (v.type) {
    case "hello": {
      // Any other version is read for its number alone: the server refuses it by
      // version (with an "upgrade" sentence), whatever else an older client sent.
      if (typeof v.version !== "number") return "hello without a numeric version";
      const hello: ClientMessage = { type: "hello", version: v.version };
      if (v.version !== PROTOCOL_VERSION) return hello;
      if (v.token !== undefined) {
        if (!isString(v.token)) return "hello with a non-string token";
        hello.token = v.token;
      }
      return hello;
    }
    case "claim": {
      const tunnels = parseList(v.tunnels, parseClaim);
      return typeof tunnels === "string" ? tunnels : { type: "claim", tunnels };
    }
    case "attach":
      if (typeof v.version !== "number") return "attach without a numeric version";
      if (v.version !== PROTOCOL_VERSION) {
        return { type: "attach", version: v.version, session: "", secret: "" };
      }
      if (!isString(v.session) || !isString(v.secret)) {
        return "attach needs version, session and secret";
      }
      return { type: "attach", version: v.version, session: v.session, secret: v.secret };
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
      const { version, session, secret } = v;
      if (typeof version !== "number" || !isString(session) || !isString(secret)) {
        return "welcome with missing fields";
      }
      const welcome: ServerMessage = { type: "welcome", version, session, secret };
      if (typeof v.proxyPingMs === "number" && v.proxyPingMs > 0) {
        welcome.proxyPingMs = v.proxyPingMs;
      }
      return welcome;
    }
    case "claimed": {
      const tunnels = parseList(v.tunnels, parseGrant);
      return typeof tunnels === "string" ? tunnels : { type: "claimed", tunnels };
    }
    case "error": {
      if (!isCode(v.code) || !isString(v.message)) return "error frame with unknown code";
      const error: ServerMessage = { type: "error", code: v.code, message: v.message };
      if (typeof v.retryAfterMs === "number" && v.retryAfterMs >= 0) {
        error.retryAfterMs = v.retryAfterMs;
      }
      if (typeof v.version === "number") error.version = v.version;
      return error;
    }
    case "open": {
      if (
        !isId(v.tunnel) || !isString(v.peer) ||
        (v.proto !== "http" && v.proto !== "tls" && v.proto !== "tcp")
      ) {
        return "open frame with bad fields";
      }
      if (v.scheme !== undefined && v.scheme !== "http" && v.scheme !== "https") {
        return "open frame with a bad scheme";
      }
      if (v.dest !== undefined && !isString(v.dest)) return "open frame with a bad dest";
      const open: ServerMessage = { type: "open", tunnel: v.tunnel, peer: v.peer, proto: v.proto };
      if (v.scheme !== undefined) open.scheme = v.scheme;
      if (v.dest !== undefined) open.dest = v.dest;
      if (v.accept === true) open.accept = true;
      return open;
    }
    case "demand":
      if (!isCount(v.count)) return "demand frame with bad count";
      return { type: "demand", count: v.count };
    case "lease":
      if (!isId(v.tunnel) || !isString(v.lease)) return "lease frame without a tunnel or lease";
      return { type: "lease", tunnel: v.tunnel, lease: v.lease };
    case "url":
      if (!isId(v.tunnel) || !isString(v.url)) return "url frame without a tunnel or url";
      return { type: "url", tunnel: v.tunnel, url: v.url };
    case "closed":
      if (!isId(v.tunnel) || !isCode(v.code) || !isString(v.message)) {
        return "closed frame with bad fields";
      }
      return { type: "closed", tunnel: v.tunnel, code: v.code, message: v.message };
    case "ping":
      return v.echo === true ? { type: "ping", echo: true } : { type: "ping" };
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

// Stream frames. On a proxy connection, frames share the control frames' 4-byte
// header: its first byte is the kind, the other three the payload length. A JSON
// frame (kind 0) is a control frame unchanged (they are at most 16 KiB, so their
// first byte is 0). Between streams the server may send `ping` on an idle proxy
// connection and the client answers `ping` (a dead one is found and closed). A
// stream starts with the server's `open`; on a connection quiet for a while the
// `open` asks for the client's ACCEPT first (until it comes, a visitor can be
// moved to another connection, as a NAT may have dropped this one); then DATA
// frames ending, per direction, in one END (half-close) or ABORT (the stream
// failed). Once both directions have ended, the connection carries the next
// `open`: proxy connections are reused, not redialled.

/** Frame kinds on a proxy connection. */
export const FrameKind = { json: 0, data: 1, end: 2, abort: 3, accept: 4 } as const;

/** Largest DATA payload: the 24-bit length of the header. */
export const MAX_DATA_BYTES = 0xff_ffff;

/** How a direction of a stream ended. */
export type StreamEnd = "end" | "abort";

/** The END frame (this direction is over: a half-close). */
export const END_FRAME: Uint8Array = Uint8Array.of(FrameKind.end, 0, 0, 0);
/** The ABORT frame (this direction failed: close the connection). */
export const ABORT_FRAME: Uint8Array = Uint8Array.of(FrameKind.abort, 0, 0, 0);
/** The ACCEPT frame: the client's first answer to `open`, before anything else of the stream. */
export const ACCEPT_FRAME: Uint8Array = Uint8Array.of(FrameKind.accept, 0, 0, 0);
/** A `ping` frame, either way (on idle proxy connections, the server's and the client's answer). */
export const PING_FRAME: Uint8Array = encodeFrame({ type: "ping" });

/** Writes a DATA header for `length` payload bytes into `buffer[0..4]`. */
export function putDataHeader(buffer: Uint8Array, length: number): void {
  if (length < 1 || length > MAX_DATA_BYTES) throw new RangeError(`Bad DATA length ${length}`);
  buffer[0] = FrameKind.data;
  buffer[1] = length >>> 16;
  buffer[2] = (length >>> 8) & 0xff;
  buffer[3] = length & 0xff;
}

/** A whole DATA frame holding `payload` (a copy; for small, one-off payloads). */
export function dataFrame(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  putDataHeader(frame, payload.length);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/** The start of a stream as the server writes it: `open`, then the bytes read so far as DATA. */
export function encodeStreamStart(open: ServerMessage, prefix: Uint8Array): Uint8Array {
  const first = encodeFrame(open);
  return prefix.length === 0 ? first : concatBytes(first, dataFrame(prefix));
}

/** What {@linkcode StreamDecoder.decode} found in a chunk. */
export type StreamDecodeResult =
  /** The chunk held only DATA: its payload is now its first `payload` bytes. */
  | { state: "data"; payload: number }
  /**
   * The direction ended (`how`) after the chunk's first `used` bytes; the
   * payload before it is the chunk's first `payload` bytes, and the bytes from
   * `used` on belong to what follows the stream.
   */
  | { state: "end"; how: StreamEnd; payload: number; used: number }
  /** Not a stream frame: the connection is out of step. */
  | { state: "invalid"; reason: string };

/**
 * Decodes one direction of a stream, chunk by chunk, in place: each chunk's
 * payload bytes are moved over the frame headers between them to its start, so
 * a relay writes them on with one write per chunk. Headers may be split
 * across chunks. No I/O: the relay and the fuzzer feed it alike.
 */
export class StreamDecoder {
  #header = new Uint8Array(FRAME_HEADER_BYTES);
  #have = 0; // header bytes gathered
  #remaining = 0; // payload bytes of the current DATA frame still to come

  /** Decodes `chunk`, which follows what was decoded before; moves its payload to its start. */
  decode(chunk: Uint8Array): StreamDecodeResult {
    let at = 0;
    let out = 0;
    while (at < chunk.length) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.length - at);
        if (out !== at) chunk.copyWithin(out, at, at + take);
        out += take;
        at += take;
        this.#remaining -= take;
        continue;
      }
      const take = Math.min(FRAME_HEADER_BYTES - this.#have, chunk.length - at);
      this.#header.set(chunk.subarray(at, at + take), this.#have);
      this.#have += take;
      at += take;
      if (this.#have < FRAME_HEADER_BYTES) break;
      this.#have = 0;
      const h = this.#header;
      const kind = h[0]!;
      const length = (h[1]! << 16) | (h[2]! << 8) | h[3]!;
      if (kind === FrameKind.data && length > 0) {
        this.#remaining = length;
      } else if ((kind === FrameKind.end || kind === FrameKind.abort) && length === 0) {
        return {
          state: "end",
          how: kind === FrameKind.end ? "end" : "abort",
          payload: out,
          used: at,
        };
      } else {
        return {
          state: "invalid",
          reason: `unexpected frame (kind ${kind}, ${length} bytes) in a stream`,
        };
      }
    }
    return { state: "data", payload: out };
  }
}
