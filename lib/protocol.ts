// The wire protocol between client and server: the upgrade handshake, control
// messages and their frames, and the stream frames of proxy connections. Pure:
// encoders and decoders over bytes, no sockets.

import { concatBytes } from "./bytes.ts";
import { dataFrame, FRAME_HEADER_BYTES } from "./stream_frames.ts";
import type {
  ClientMessage,
  ErrorCode,
  ServerMessage,
  TunnelClaim,
  TunnelGrant,
} from "./messages.ts";
import { MAX_FRAME_BYTES, MAX_TUNNEL_NAME_LENGTH, MAX_TUNNELS_PER_SESSION } from "./limits.ts";

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

/** Largest `demand` count in one frame. */
export const MAX_DEMAND = 1024;

/** Token of the HTTP/1.1 `Upgrade` header that turns a connection into a Gotunnel one. */
export const UPGRADE_TOKEN = "gotunnel";
/** Request target of the upgrade request, on any Host. */
export const UPGRADE_PATH = "/_gotunnel";

export {
  ABORT_FRAME,
  ACCEPT_FRAME,
  dataFrame,
  END_FRAME,
  FRAME_HEADER_BYTES,
  FrameKind,
  lastDataFrame,
  MAX_DATA_BYTES,
  putDataHeader,
  StreamDecoder,
} from "./stream_frames.ts";
export type { StreamDecodeResult, StreamEnd } from "./stream_frames.ts";
export type {
  ClientMessage,
  ErrorCode,
  ServerMessage,
  TunnelClaim,
  TunnelGrant,
} from "./messages.ts";

/** A decoder's answer: a message and the bytes it used, or why it cannot give one. */
export type DecodeResult<M> =
  | { state: "frame"; message: M; length: number }
  | { state: "need-more" }
  | { state: "invalid"; reason: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes one message as a length-prefixed JSON frame. */
export function encodeFrame(message: ClientMessage | ServerMessage): Uint8Array {
  return encodeJsonFrame(message);
}

/**
 * Frames any JSON object as a control frame (a message of another connection
 * type, e.g. between server nodes); a RangeError beyond MAX_FRAME_BYTES.
 *
 * @example
 * ```ts
 * import { encodeJsonFrame } from "./protocol.ts";
 * console.log(encodeJsonFrame({ type: "hi" }).length); // 17: 4 bytes of header, 13 of JSON
 * ```
 */
export function encodeJsonFrame(message: object): Uint8Array {
  const json = encoder.encode(JSON.stringify(message));
  if (json.length > MAX_FRAME_BYTES) {
    throw new RangeError(`Cannot encode frame: ${json.length} bytes exceeds ${MAX_FRAME_BYTES}`);
  }
  const frame = new Uint8Array(FRAME_HEADER_BYTES + json.length);
  new DataView(frame.buffer).setUint32(0, json.length);
  frame.set(json, FRAME_HEADER_BYTES);
  return frame;
}

/** Room left in a frame for the message around a list (type, key, brackets), in bytes. */
const LIST_FRAME_OVERHEAD_BYTES = 64;

/**
 * Splits `items` (claims or grants) into lists whose frames stay within
 * `maxBytes`, in order; an item too large for any frame alone is a RangeError.
 * A `claim` or `claimed` of many tunnels with long names may need several frames.
 */
export function frameBatches<T>(items: readonly T[], maxBytes: number = MAX_FRAME_BYTES): T[][] {
  const batches: T[][] = [];
  let batch: T[] = [];
  let size = LIST_FRAME_OVERHEAD_BYTES;
  for (const item of items) {
    const bytes = encoder.encode(JSON.stringify(item)).length + 1; // and its comma
    if (bytes + LIST_FRAME_OVERHEAD_BYTES > maxBytes) {
      throw new RangeError(`Cannot encode a list item of ${bytes} bytes in a frame`);
    }
    if (size + bytes > maxBytes && batch.length > 0) {
      batches.push(batch);
      batch = [];
      size = LIST_FRAME_OVERHEAD_BYTES;
    }
    batch.push(item);
    size += bytes;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
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

/**
 * Decodes the first frame in `bytes` as a JSON object that `parse` checks (a
 * message of another connection type, e.g. between server nodes), of at most `maxBytes`.
 *
 * @example
 * ```ts
 * import { decodeJsonFrame, encodeJsonFrame } from "./protocol.ts";
 * const bytes = encodeJsonFrame({ type: "hi" });
 * const result = decodeJsonFrame(bytes, (v) => v.type === "hi" ? "hi" : "not hi");
 * console.log(result.state === "frame" && result.message); // hi
 * ```
 */
export function decodeJsonFrame<M>(
  bytes: Uint8Array,
  parse: (value: Record<string, unknown>) => M | string,
  maxBytes: number = MAX_FRAME_BYTES,
): DecodeResult<M> {
  return decodeFrame(bytes, parse, maxBytes);
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
  "unavailable",
  "shutdown",
]);
const isCode = (v: unknown): v is ErrorCode => isString(v) && ERROR_CODES.has(v);

function parseClaim(v: unknown): TunnelClaim | string {
  if (!isRecord(v) || !isString(v.ref) || v.ref.length > MAX_TUNNEL_NAME_LENGTH) {
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

/** A `ping` frame, either way (on idle proxy connections, the server's and the client's answer). */
export const PING_FRAME: Uint8Array = encodeFrame({ type: "ping" });

/** The start of a stream as the server writes it: `open`, then the bytes read so far as DATA. */
export function encodeStreamStart(open: ServerMessage, prefix: Uint8Array): Uint8Array {
  const first = encodeFrame(open);
  return prefix.length === 0 ? first : concatBytes(first, dataFrame(prefix));
}
