// What the inspector's JSON API says about an exchange (pure): a summary for the list
// and the event stream, a detail with heads, headers and body facts.

import { latin1Text } from "../../bytes.ts";
import { MessageHead, parseHead } from "../../http/head.ts";
import type { CapturedBody, CapturedExchange } from "./store.ts";
import type { WsCounts } from "./ws_frames.ts";

/** One line of the list: what `GET /api/requests` and the event stream send. */
export interface ExchangeSummary {
  id: number;
  /** ISO 8601. */
  startedAt: string;
  method: string;
  target: string;
  status: number | null;
  durationMs: number | null;
  /** Body bytes that passed each way (chunk framing included). */
  requestBytes: number;
  responseBytes: number;
  visitor: string;
  /** The tunnel it came through (null when the client has one). */
  tunnel: string | null;
  scheme: "http" | "https";
  state: "pending" | "open" | "complete";
  upgrade: string | null;
  websocket: { fromVisitor: WsSummary; fromApp: WsSummary } | null;
  problem: string | null;
  replayOf: number | null;
}

/** WebSocket counts of one direction. */
export interface WsSummary {
  messages: number;
  frames: number;
  bytes: number;
  closed: boolean;
}

/** A head as `GET /api/requests/:id` shows it. */
export interface HeadView {
  /** The head exactly as it passed (latin1: one character per byte). */
  raw: string;
  /** Its fields in order. */
  headers: [name: string, value: string][];
  /** `HTTP/1.1` or `HTTP/1.0`. */
  httpVersion: string;
}

/** Facts about a body; its bytes are at `url`. */
export interface BodyView {
  size: number;
  kept: number;
  truncated: boolean;
  chunked: boolean;
  /** Bytes at `url`: the kept body without chunked framing (content codings still on). */
  contentBytes: number;
  contentType: string | null;
  contentEncoding: string | null;
  url: string;
}

/** Everything about one exchange, for `GET /api/requests/:id`. */
export interface ExchangeDetail extends ExchangeSummary {
  /** `scheme://host` + target, the public URL the visitor asked for. */
  url: string;
  request: { head: HeadView | null; body: BodyView };
  response: { head: HeadView | null; body: BodyView };
}

const ws = (c: Readonly<WsCounts>): WsSummary => ({
  messages: c.messages,
  frames: c.frames,
  bytes: c.bytes,
  closed: c.closed,
});

/** The list line of `e`. */
export function summarize(e: CapturedExchange): ExchangeSummary {
  const socket = e.websocket;
  return {
    id: e.id,
    startedAt: new Date(e.startedAt).toISOString(),
    method: e.method,
    target: e.target,
    status: e.status ?? null,
    durationMs: e.durationMs ?? null,
    requestBytes: e.request.size,
    responseBytes: e.response.size,
    visitor: e.visitor,
    tunnel: e.tunnel ?? null,
    scheme: e.scheme,
    state: e.state,
    upgrade: e.upgrade ?? null,
    websocket: socket ? { fromVisitor: ws(socket.fromVisitor), fromApp: ws(socket.fromApp) } : null,
    problem: e.problem ?? null,
    replayOf: e.replayOf ?? null,
  };
}

/** A captured head parsed again (it parsed when it passed). */
export function parseCaptured(
  bytes: Uint8Array | undefined,
  role: "request" | "response",
): MessageHead | undefined {
  if (bytes === undefined) return undefined;
  const head = parseHead(bytes, role);
  return head instanceof MessageHead ? head : undefined;
}

function headView(head: MessageHead | undefined): HeadView | null {
  if (!head) return null;
  return { raw: latin1Text(head.bytes), headers: head.headers, httpVersion: head.version };
}

function bodyView(body: CapturedBody, head: MessageHead | undefined, url: string): BodyView {
  return {
    size: body.size,
    kept: body.kept,
    truncated: body.truncated,
    chunked: body.chunked,
    contentBytes: body.content.length,
    contentType: head?.get("content-type") ?? null,
    contentEncoding: head?.get("content-encoding") ?? null,
    url,
  };
}

/** The public URL of a request: its scheme, its Host and its target. */
export function requestUrl(e: CapturedExchange, head: MessageHead | undefined): string {
  if (/^https?:\/\//i.test(e.target)) return e.target; // absolute-form
  return `${e.scheme}://${head?.get("host") ?? "unknown"}${e.target.startsWith("/") ? "" : "/"}${
    e.target === "-" ? "" : e.target
  }`;
}

/** Everything about `e`; body URLs are under `base` (`/api/requests/:id`). */
export function detail(e: CapturedExchange, base: string): ExchangeDetail {
  const request = parseCaptured(e.requestHead, "request");
  const response = parseCaptured(e.responseHead, "response");
  return {
    ...summarize(e),
    url: requestUrl(e, request),
    request: {
      head: headView(request),
      body: bodyView(e.request, request, `${base}/request/body`),
    },
    response: {
      head: headView(response),
      body: bodyView(e.response, response, `${base}/response/body`),
    },
  };
}
