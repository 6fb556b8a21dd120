// Replay: a captured request, as it was or edited, sent to the local app again by the
// client itself (not through the tunnel); its answer is captured as a new exchange.

import { latin1Bytes } from "../../bytes.ts";
import { MessageHead, parseHead } from "../../http/head.ts";
import { closeQuietly, writeAll } from "../../io.ts";
import { ExchangeTracker } from "../exchanges.ts";
import type { ExchangeObserver } from "../exchanges.ts";
import { rewriteRequestHead, type VisitorInfo } from "../forwarded.ts";
import type { LocalDialer } from "../local_dialer.ts";
import type { CapturedExchange } from "./store.ts";
import { parseCaptured } from "./views.ts";

/** Changes to a request before it is replayed; what is left out stays as captured. */
export interface ReplayEdit {
  method?: string;
  target?: string;
  /** Every field, in order (replacing the captured ones); Content-Length is set by the replay. */
  headers?: [string, string][];
  /** The body as UTF-8 text... */
  body?: string;
  /** ...or as base64. */
  bodyBase64?: string;
}

/** A request ready to replay, or why it cannot be. */
export type ReplayRequest =
  | { ok: true; head: MessageHead; body: Uint8Array }
  | { ok: false; status: 400 | 409; reason: string };

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// deno-lint-ignore no-control-regex -- control characters are what is refused
const FIELD_VALUE = /^[^\x00-\x08\x0a-\x1f\x7f]*$/;
const TARGET = /^[\x21-\x7e]+$/;
/** Methods whose requests carry a Content-Length even when the body is empty. */
const WITH_BODY = new Set(["POST", "PUT", "PATCH"]);

/** Reads a JSON value as a {@linkcode ReplayEdit}; a string says what is wrong. */
export function readEdit(value: unknown): ReplayEdit | string {
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) return "the edit must be a JSON object";
  const v = value as Record<string, unknown>;
  const edit: ReplayEdit = {};
  for (const key of ["method", "target", "body", "bodyBase64"] as const) {
    if (v[key] === undefined) continue;
    if (typeof v[key] !== "string") return `${key} must be a string`;
    edit[key] = v[key] as string;
  }
  if (v.headers !== undefined) {
    const ok = Array.isArray(v.headers) &&
      v.headers.every((h) =>
        Array.isArray(h) && h.length === 2 && typeof h[0] === "string" && typeof h[1] === "string"
      );
    if (!ok) return "headers must be a list of [name, value] pairs of strings";
    edit.headers = v.headers as [string, string][];
  }
  return edit;
}

/**
 * The request to send for a replay of `original` with `edit` (pure): its head
 * as the visitor would have sent it, and its whole body. The body goes with a
 * Content-Length (chunked framing taken off). An upgrade, and a body the
 * inspector kept only in part, cannot be replayed as they were.
 */
export function replayRequest(original: CapturedExchange, edit: ReplayEdit): ReplayRequest {
  const captured = parseCaptured(original.requestHead, "request");
  if (!captured) return { ok: false, status: 409, reason: "this request could not be read" };
  const method = edit.method ?? original.method;
  const target = edit.target ?? original.target;
  if (!TOKEN.test(method)) return { ok: false, status: 400, reason: "invalid method" };
  if (method === "CONNECT") return { ok: false, status: 400, reason: "CONNECT is not replayed" };
  if (!TARGET.test(target)) return { ok: false, status: 400, reason: "invalid target" };
  let body: Uint8Array;
  if (edit.bodyBase64 !== undefined) {
    try {
      body = Uint8Array.from(atob(edit.bodyBase64), (c) => c.charCodeAt(0));
    } catch {
      return { ok: false, status: 400, reason: "bodyBase64 is not base64" };
    }
  } else if (edit.body !== undefined) body = new TextEncoder().encode(edit.body);
  else if (original.request.truncated) {
    return {
      ok: false,
      status: 409,
      reason: `only ${original.request.kept} of ${original.request.size} body bytes were kept: ` +
        "edit the body to replay it",
    };
  } else body = original.request.content;
  const fields = edit.headers ?? captured.headers;
  let text = `${method} ${target} ${captured.version}\r\n`;
  for (const [name, value] of fields) {
    const lower = name.toLowerCase();
    if (lower === "content-length" || lower === "transfer-encoding") continue;
    if (!TOKEN.test(name)) return { ok: false, status: 400, reason: `invalid header name ${name}` };
    if (!FIELD_VALUE.test(value)) {
      return { ok: false, status: 400, reason: `invalid value for header ${name}` };
    }
    if (lower === "upgrade") {
      return { ok: false, status: 409, reason: "an upgrade (WebSocket) is not replayed" };
    }
    text += `${name}: ${value.trim()}\r\n`;
  }
  if (body.length > 0 || WITH_BODY.has(method)) text += `Content-Length: ${body.length}\r\n`;
  const head = parseHead(latin1Bytes(text + "\r\n"), "request");
  if (!(head instanceof MessageHead)) {
    return { ok: false, status: 400, reason: `the edited request is not valid: ${head}` };
  }
  if (head.version === "HTTP/1.1" && head.get("host") === undefined) {
    return { ok: false, status: 400, reason: "an HTTP/1.1 request needs a Host header" };
  }
  return { ok: true, head, body };
}

/** What {@linkcode sendReplay} works with. */
export interface ReplayTarget {
  /** Reaches the local app, as the tunnel does. */
  dialer: LocalDialer;
  /** The visitor to name in X-Forwarded-For and how the app sees Host, as for the original. */
  visitor: VisitorInfo;
  /** Watches the replayed exchange (the inspector's capture). */
  observer: ExchangeObserver;
  /** The whole replay's deadline. */
  timeoutMs: number;
  /** Ends the replay at once. */
  signal: AbortSignal;
}

/**
 * Sends `request` to the local app on a connection of its own, rewritten as
 * the tunnel rewrites requests (X-Forwarded-*, Host), and reads the answer up
 * to its end, the app's close, the deadline or the signal. The observer sees
 * the exchange as it would through the tunnel.
 */
export async function sendReplay(
  request: { head: MessageHead; body: Uint8Array },
  target: ReplayTarget,
): Promise<{ error: string | undefined }> {
  let done = false;
  let error: string | undefined;
  const watch: ExchangeObserver = target.observer;
  const tracker = new ExchangeTracker({
    observer: {
      request: (head) => watch.request?.(head),
      requestBody: (bytes) => watch.requestBody?.(bytes),
      response: (head) => watch.response?.(head),
      responseBody: (bytes) => watch.responseBody?.(bytes),
      exchange(record) {
        done = true;
        watch.exchange?.(record);
      },
      close: () => watch.close?.(),
    },
  });
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), target.timeoutMs);
  const cancel = (): void => stop.abort();
  target.signal.addEventListener("abort", cancel, { once: true });
  if (target.signal.aborted) cancel();
  tracker.request(request.head);
  let conn: Awaited<ReturnType<LocalDialer["dial"]>> | undefined;
  const onStop = (): void => {
    if (conn) closeQuietly(conn);
  };
  stop.signal.addEventListener("abort", onStop, { once: true });
  try {
    conn = await target.dialer.dial(false, stop.signal);
    const head = rewriteRequestHead(request.head, target.visitor);
    await writeAll(conn, head);
    if (request.body.length > 0) {
      tracker.requestBody(request.body);
      await writeAll(conn, request.body);
    }
    const buffer = new Uint8Array(64 * 1024);
    while (!done && !stop.signal.aborted) {
      const n = await conn.read(buffer);
      if (n === null) break;
      tracker.response(buffer.subarray(0, n));
    }
  } catch (e) {
    // Refused, reset or stopped: the capture records an exchange without an answer, and why.
    error = stop.signal.aborted
      ? (target.signal.aborted ? "the inspector closed" : `no answer in ${target.timeoutMs} ms`)
      : `cannot reach the local app at ${target.dialer.where}: ${
        e instanceof Deno.errors.ConnectionRefused ? "connection refused" : String(e)
      }`;
  } finally {
    clearTimeout(timer);
    target.signal.removeEventListener("abort", cancel);
    if (conn) closeQuietly(conn);
    tracker.close();
  }
  if (!done && error === undefined && stop.signal.aborted) {
    error = target.signal.aborted ? "the inspector closed" : `no answer in ${target.timeoutMs} ms`;
  }
  return { error };
}
