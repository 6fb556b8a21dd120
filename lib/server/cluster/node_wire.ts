// What server nodes say to each other on a node connection (pure): the upgrade that
// opens it on the public port, then length-prefixed JSON frames as on a client's
// connection: the hello and welcome of lib/server/cluster/node_auth.ts, then, for
// each visitor, a `forward` (a visitor for a tunnel the dialled node holds) with
// the bytes read so far as DATA, and its answer. After `forwarded` the visitor's
// bytes go as stream frames, exactly as on a proxy connection (lib/stream_frames.ts:
// DATA, then END or ABORT, each way); once both ways ended with END the connection
// carries the next `forward`. Anything else (a refusal, an ABORT, half a frame)
// ends the connection.

import { concatBytes } from "../../bytes.ts";
import {
  dataFrame,
  decodeJsonFrame,
  type DecodeResult,
  encodeJsonFrame,
  UPGRADE_PATH,
} from "../../protocol.ts";
import type { DirectoryKind } from "./records.ts";

/**
 * Token of the `Upgrade` header that opens a node connection (a client's is `gotunnel`).
 *
 * @example
 * ```ts
 * import { NODE_UPGRADE_TOKEN } from "./node_wire.ts";
 * console.log(NODE_UPGRADE_TOKEN); // gotunnel-node
 * ```
 */
export const NODE_UPGRADE_TOKEN = "gotunnel-node";

const encoder = new TextEncoder();

/**
 * The upgrade request a node sends to open a node connection to `host` (the dialled node's address).
 *
 * @example
 * ```ts
 * import { encodeNodeUpgrade } from "./node_wire.ts";
 * const text = new TextDecoder().decode(encodeNodeUpgrade("10.0.0.2:8080"));
 * console.log(text.split("\r\n")[0]); // GET /_gotunnel HTTP/1.1
 * ```
 */
export function encodeNodeUpgrade(host: string): Uint8Array {
  return encoder.encode(
    `GET ${UPGRADE_PATH} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\n` +
      `Upgrade: ${NODE_UPGRADE_TOKEN}\r\n\r\n`,
  );
}

/**
 * The dialled node's answer to the upgrade, before the welcome frame.
 *
 * @example
 * ```ts
 * import { NODE_UPGRADE_RESPONSE } from "./node_wire.ts";
 * console.log(new TextDecoder().decode(NODE_UPGRADE_RESPONSE).startsWith("HTTP/1.1 101")); // true
 * ```
 */
export const NODE_UPGRADE_RESPONSE: Uint8Array = encoder.encode(
  `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${NODE_UPGRADE_TOKEN}\r\n\r\n`,
);

/** What a forwarded connection carries (as lib/server/forward.ts's `Carried`). */
export type NodeCarried = "http" | "https" | "tls" | "tcp";

/**
 * A visitor handed to the node that holds its tunnel: which item, held by
 * which session (the split-brain check: the owner serves it only if that very
 * session still holds it), the visitor's address, and what the bytes are.
 * The bytes the forwarding node read already follow the frame, as DATA
 * ({@linkcode encodeForward}).
 *
 * @example
 * ```ts
 * import type { NodeForward } from "./node_wire.ts";
 * const forward: NodeForward = {
 *   type: "forward", kind: "name", value: "demo", session: "s1",
 *   peer: "203.0.113.7:50123", carried: "https",
 * };
 * console.log(forward.value); // demo
 * ```
 */
export interface NodeForward {
  /** Always `forward`. */
  type: "forward";
  /** What the tunnel holds: a subdomain, a TCP port, a custom hostname. */
  kind: DirectoryKind;
  /** The subdomain, port (decimal) or hostname. */
  value: string;
  /** The session id the directory gave for it. */
  session: string;
  /** The visitor's address, `ip:port`. */
  peer: string;
  /** HTTP in the clear, HTTP the forwarding node decrypted, TLS end to end, or a TCP port's bytes. */
  carried: NodeCarried;
  /** For a TCP port: the address the visitor reached, `ip:port`. */
  dest?: string;
}

/**
 * A `forward` and the visitor's bytes read so far (none: no DATA frame), as
 * the forwarding node writes them in one go.
 *
 * @example
 * ```ts
 * import { encodeForward } from "./node_wire.ts";
 * const bytes = encodeForward(
 *   { type: "forward", kind: "name", value: "demo", session: "s1", peer: "203.0.113.7:50123", carried: "http" },
 *   new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
 * );
 * console.log(bytes[0]); // 0: a JSON frame first, then a DATA frame (kind 1)
 * ```
 */
export function encodeForward(forward: NodeForward, prefix: Uint8Array): Uint8Array {
  const frame = encodeJsonFrame(forward);
  return prefix.length === 0 ? frame : concatBytes(frame, dataFrame(prefix));
}

/**
 * The owner's answer to a `forward`: `forwarded` (the stream's frames flow from now on),
 * or `refused` with the status the forwarding node answers the visitor with
 * (502: the tunnel is not here any more, e.g. its client is reconnecting) and why.
 *
 * @example
 * ```ts
 * import type { NodeAnswer } from "./node_wire.ts";
 * const answer: NodeAnswer = { type: "refused", status: 502, reason: "not held by that session" };
 * console.log(answer.type); // refused
 * ```
 */
export type NodeAnswer =
  | { type: "forwarded" }
  | { type: "refused"; status: 502 | 503; reason: string };

const KINDS = new Set(["name", "port", "host"]);
const CARRIED = new Set(["http", "https", "tls", "tcp"]);
const MAX_FIELD = 512;
const isText = (v: unknown): v is string =>
  typeof v === "string" && v.length > 0 && v.length <= MAX_FIELD;

function parseForward(v: Record<string, unknown>): NodeForward | string {
  if (v.type !== "forward") return `expected forward, got ${String(v.type).slice(0, 40)}`;
  if (!KINDS.has(v.kind as string)) return "forward of an unknown kind";
  if (!isText(v.value) || !isText(v.session) || !isText(v.peer)) return "forward with bad fields";
  if (!CARRIED.has(v.carried as string)) return "forward with a bad carried";
  if (v.dest !== undefined && !isText(v.dest)) return "forward with a bad dest";
  const forward: NodeForward = {
    type: "forward",
    kind: v.kind as DirectoryKind,
    value: v.value,
    session: v.session,
    peer: v.peer,
    carried: v.carried as NodeCarried,
  };
  if (v.dest !== undefined) forward.dest = v.dest as string;
  return forward;
}

function parseAnswer(v: Record<string, unknown>): NodeAnswer | string {
  if (v.type === "forwarded") return { type: "forwarded" };
  if (v.type !== "refused") return "answer of an unknown type";
  if ((v.status !== 502 && v.status !== 503) || typeof v.reason !== "string") {
    return "refusal with bad fields";
  }
  return { type: "refused", status: v.status, reason: v.reason.slice(0, MAX_FIELD) };
}

/**
 * Decodes the first frame in `bytes` as a `forward`.
 *
 * @example
 * ```ts
 * import { encodeJsonFrame } from "../../protocol.ts";
 * import { decodeForward } from "./node_wire.ts";
 * const frame = encodeJsonFrame({ type: "forward", kind: "port", value: "20022", session: "s", peer: "1.2.3.4:5", carried: "tcp" });
 * console.log(decodeForward(frame).state); // frame
 * ```
 */
export function decodeForward(bytes: Uint8Array): DecodeResult<NodeForward> {
  return decodeJsonFrame(bytes, parseForward);
}

/**
 * Decodes the first frame in `bytes` as an answer to a `forward`.
 *
 * @example
 * ```ts
 * import { encodeJsonFrame } from "../../protocol.ts";
 * import { decodeAnswer } from "./node_wire.ts";
 * console.log(decodeAnswer(encodeJsonFrame({ type: "forwarded" })).state); // frame
 * ```
 */
export function decodeAnswer(bytes: Uint8Array): DecodeResult<NodeAnswer> {
  return decodeJsonFrame(bytes, parseAnswer);
}

/**
 * Decodes the first frame in `bytes` as any JSON object (a hello or welcome,
 * checked by lib/server/cluster/node_auth.ts).
 *
 * @example
 * ```ts
 * import { encodeJsonFrame } from "../../protocol.ts";
 * import { decodeObject } from "./node_wire.ts";
 * console.log(decodeObject(encodeJsonFrame({ type: "node-hello" })).state); // frame
 * ```
 */
export function decodeObject(bytes: Uint8Array): DecodeResult<Record<string, unknown>> {
  return decodeJsonFrame(bytes, (v) => v);
}
