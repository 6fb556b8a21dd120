// The wire protocol between client and server: the upgrade handshake, control
// messages and their frames, and the stream frames of proxy connections. Pure:
// encoders and decoders over bytes, no sockets.

import { concatBytes } from "./bytes.ts";
import { MAX_FRAME_BYTES } from "./limits.ts";

/**
 * Version carried in `hello` and `attach`; a server refuses any other.
 *
 * @example
 * ```ts
 * import { PROTOCOL_VERSION } from "@gotunnel/gotunnel";
 * console.log(`speaks protocol ${PROTOCOL_VERSION}`);
 * ```
 */
export const PROTOCOL_VERSION = 2;
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
  | {
    type: "hello";
    version: number;
    subdomain?: string;
    token?: string;
    lease?: string;
    /** Take the name over from a live session of the same client (same lease). */
    replace?: boolean;
  }
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
    /**
     * How often the server pings each idle proxy connection: one that hears
     * nothing for three times this long is dead (a NAT dropped it) and is replaced.
     */
    proxyPingMs?: number;
  }
  | { type: "error"; code: ErrorCode; message: string; retryAfterMs?: number }
  | {
    type: "open";
    peer: string;
    proto: "http" | "tls";
    scheme?: "http" | "https";
    /**
     * The connection was quiet for a while (a NAT may have dropped it): the
     * client answers ACCEPT first, before anything else of the stream.
     */
    accept?: true;
  }
  | { type: "demand"; count: number }
  | { type: "lease"; lease: string }
  /**
   * The tunnel's public URL changed after the welcome: its `https://` URL is
   * ready (the server obtained its certificate). Optional: a client that does
   * not know it ignores nothing else.
   */
  | { type: "url"; url: string }
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
      if (v.replace === true) hello.replace = true;
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
      const welcome: ServerMessage = {
        type: "welcome",
        version,
        tunnel,
        secret,
        subdomain,
        url,
        lease,
      };
      if (typeof v.proxyPingMs === "number" && v.proxyPingMs > 0) {
        welcome.proxyPingMs = v.proxyPingMs;
      }
      return welcome;
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
      {
        const open: ServerMessage = { type: "open", peer: v.peer, proto: v.proto };
        if (v.scheme !== undefined) open.scheme = v.scheme;
        if (v.accept === true) open.accept = true;
        return open;
      }
    case "demand":
      if (!isCount(v.count)) return "demand frame with bad count";
      return { type: "demand", count: v.count };
    case "lease":
      if (!isString(v.lease)) return "lease frame without a lease";
      return { type: "lease", lease: v.lease };
    case "url":
      if (!isString(v.url)) return "url frame without a url";
      return { type: "url", url: v.url };
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

/**
 * A direction's last bytes: a DATA frame (none for no bytes) and END, to send
 * in one write.
 *
 * @example
 * ```ts
 * import { lastDataFrame } from "./protocol.ts";
 * console.log(lastDataFrame(new Uint8Array([104, 105]))); // DATA "hi", then END
 * ```
 */
export function lastDataFrame(payload: Uint8Array): Uint8Array {
  const data = payload.length > 0 ? FRAME_HEADER_BYTES + payload.length : 0;
  const frames = new Uint8Array(data + END_FRAME.length);
  if (data > 0) {
    putDataHeader(frames, payload.length);
    frames.set(payload, FRAME_HEADER_BYTES);
  }
  frames.set(END_FRAME, data);
  return frames;
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
