// The inspector's HTTP side: routes of the page and the JSON API, each request checked
// by the guard first, every answer with a strict Content-Security-Policy.

import { INSPECTOR_MAX_API_BODY_BYTES, INSPECTOR_MAX_DECODED_BYTES } from "../../limits.ts";
import { describeError, type Logger } from "../../log.ts";
import { GOTUNNEL_VERSION } from "../../protocol.ts";
import { decodeContent } from "./body.ts";
import { curlCommand } from "./curl.ts";
import { type EventStreams, sseEvent } from "./events.ts";
import { refusal } from "./guard.ts";
import { HAR_END, harEntry, harStart } from "./har.ts";
import { PAGE_HTML, PAGE_SCRIPT, PAGE_STYLE } from "./page.ts";
import { readEdit, type ReplayEdit } from "./replay.ts";
import type { CaptureStore } from "./store.ts";
import { detail, parseCaptured, summarize } from "./views.ts";

/** What the routes work with. */
export interface InspectorApi {
  /** The captured exchanges. */
  store: CaptureStore;
  /** The pages' event streams. */
  events: EventStreams;
  /** Where the inspector listens (for the Host and Origin checks). */
  bound: { hostname: string; port: number };
  /** The tunnel's public URL and the local app, for the page's header. */
  status(): Record<string, unknown>;
  /** Replays exchange `id` with `edit`: the new exchange's id, or why not (an HTTP status). */
  replay(
    id: number,
    edit: ReplayEdit,
  ): Promise<{ id: number; error: string | undefined } | { status: number; reason: string }>;
  /** Where failures are logged. */
  log: Logger;
  /** Aborted when the inspector closes: streaming answers end. */
  closing: AbortSignal;
}

/** The policy of every answer: the page's own script and style, nothing inline, no framing. */
export const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; " +
  "style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; " +
  "form-action 'none'; frame-ancestors 'none'";

const SECURITY_HEADERS = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

function answer(
  body: BodyInit | null,
  status: number,
  type: string,
  extra: Record<string, string> = {},
): Response {
  return new Response(body, {
    status,
    headers: { ...SECURITY_HEADERS, "content-type": type, ...extra },
  });
}

const json = (value: unknown, status = 200): Response =>
  answer(JSON.stringify(value), status, "application/json; charset=utf-8");
const problem = (status: number, reason: string): Response => json({ error: reason }, status);

const BODY_PATH = /^\/api\/requests\/(\d+)\/(request|response)\/body$/;
const ITEM_PATH = /^\/api\/requests\/(\d+)(\/replay)?$/;

/** The inspector's request handler. */
export function inspectorHandler(api: InspectorApi): (req: Request) => Promise<Response> {
  return async (req) => {
    // Deno builds the URL from Host: one that does not parse is no Host of ours.
    const path = URL.parse(req.url)?.pathname ?? "";
    const why = refusal(
      {
        method: req.method,
        path,
        host: req.headers.get("host"),
        origin: req.headers.get("origin"),
        fetchSite: req.headers.get("sec-fetch-site"),
        fetchMode: req.headers.get("sec-fetch-mode"),
      },
      api.bound.hostname,
      api.bound.port,
    );
    if (why !== undefined) return problem(403, `Forbidden: ${why}`);
    try {
      return await route(api, req, path);
    } catch (e) {
      api.log.error("Inspector request failed", { path, error: describeError(e) });
      return problem(500, "Internal error");
    }
  };
}

async function route(api: InspectorApi, req: Request, path: string): Promise<Response> {
  const method = req.method;
  const only = (allowed: string): Response | undefined =>
    allowed.split(",").includes(method) ? undefined : problem(405, `Use ${allowed}`);
  switch (path) {
    case "/":
      return only("GET") ?? answer(PAGE_HTML, 200, "text/html; charset=utf-8");
    case "/inspector.js":
      return only("GET") ?? answer(PAGE_SCRIPT, 200, "text/javascript; charset=utf-8");
    case "/inspector.css":
      return only("GET") ?? answer(PAGE_STYLE, 200, "text/css; charset=utf-8");
    case "/api/status":
      return only("GET") ?? json(api.status());
    case "/api/events":
      return only("GET") ?? events(api);
    case "/api/requests.har":
      return only("GET") ?? har(api);
    case "/api/requests":
      if (method === "DELETE") {
        api.store.clear();
        api.events.send(sseEvent("reset", snapshot(api.store)));
        return answer(null, 204, "text/plain");
      }
      return only("GET,DELETE") ?? json({ requests: api.store.list().map(summarize) });
  }
  const body = BODY_PATH.exec(path);
  if (body) {
    const entry = api.store.get(Number(body[1]));
    if (!entry) return problem(404, "No such request (cleared, or older than the last ones kept)");
    const bytes = (body[2] === "request" ? entry.request : entry.response).content;
    return only("GET") ??
      answer(bytes as Uint8Array<ArrayBuffer>, 200, "application/octet-stream", {
        "content-disposition": `attachment; filename="${entry.id}-${body[2]}.bin"`,
      });
  }
  const item = ITEM_PATH.exec(path);
  if (!item) return problem(404, "Not found");
  const id = Number(item[1]);
  if (item[2]) {
    const refused = only("POST");
    if (refused) return refused;
    const edit = await readJson(req);
    if (typeof edit === "string") return problem(400, edit);
    const result = await api.replay(id, edit);
    return "status" in result ? problem(result.status, result.reason) : json(result, 201);
  }
  const refused = only("GET");
  if (refused) return refused;
  const entry = api.store.get(id);
  if (!entry) return problem(404, "No such request (cleared, or older than the last ones kept)");
  const view = detail(entry, `/api/requests/${id}`);
  const head = parseCaptured(entry.requestHead, "request");
  const curl = head
    ? curlCommand({
      method: entry.method,
      url: view.url,
      headers: head.headers,
      body: entry.request.content,
      truncated: entry.request.truncated,
    })
    : null;
  return json({ ...view, curl });
}

/** The body of an edited replay, bounded; a string says what is wrong. */
async function readJson(req: Request): Promise<ReplayEdit | string> {
  const length = Number(req.headers.get("content-length") ?? 0);
  if (length > INSPECTOR_MAX_API_BODY_BYTES) return "the edit is too large";
  const text = await req.text();
  if (text.length > INSPECTOR_MAX_API_BODY_BYTES) return "the edit is too large";
  if (text.trim() === "") return {};
  try {
    return readEdit(JSON.parse(text));
  } catch {
    return "the edit is not JSON";
  }
}

/** What a page needs to start over: every summary, newest first, and the ring's size. */
export function snapshot(store: CaptureStore): Record<string, unknown> {
  return { limit: store.limits.limit, requests: store.list().map(summarize) };
}

function events(api: InspectorApi): Response {
  const stream = api.events.open(sseEvent("reset", snapshot(api.store)));
  if (!stream) return problem(503, "Too many inspector pages open");
  return answer(stream, 200, "text/event-stream; charset=utf-8");
}

/** HAR 1.2 of every kept exchange, oldest first, written one entry at a time. */
function har(api: InspectorApi): Response {
  const entries = api.store.list().reverse();
  const encoder = new TextEncoder();
  let next = 0;
  const end = (controller: ReadableStreamDefaultController<Uint8Array>) => () => {
    try {
      controller.error(new Error("inspector closed"));
    } catch {
      // Already done.
    }
  };
  let stop: (() => void) | undefined;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      stop = end(controller);
      api.closing.addEventListener("abort", stop, { once: true });
      controller.enqueue(encoder.encode(harStart({ name: "Gotunnel", version: GOTUNNEL_VERSION })));
    },
    cancel() {
      if (stop) api.closing.removeEventListener("abort", stop);
    },
    async pull(controller) {
      const entry = entries[next];
      if (!entry) {
        controller.enqueue(encoder.encode(HAR_END));
        controller.close();
        if (stop) api.closing.removeEventListener("abort", stop);
        return;
      }
      const head = parseCaptured(entry.responseHead, "response");
      const decoded = await decodeContent(
        entry.response.content,
        head?.get("content-encoding"),
        INSPECTOR_MAX_DECODED_BYTES,
      );
      controller.enqueue(
        encoder.encode((next > 0 ? "," : "") + JSON.stringify(harEntry(entry, decoded))),
      );
      next++;
    },
  });
  return answer(stream, 200, "application/json; charset=utf-8", {
    "content-disposition": 'attachment; filename="gotunnel.har"',
  });
}
