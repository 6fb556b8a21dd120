// `startInspector`: the client inspector's server on a free port near 4040, its event
// streams fed from the capture store in batches, and replays to the local app.

import {
  INSPECTOR_EVENT_BACKLOG_BYTES,
  INSPECTOR_EVENT_BATCH_MS,
  INSPECTOR_EVENT_HEARTBEAT_MS,
  INSPECTOR_LAST_PORT,
  INSPECTOR_MAX_EVENT_STREAMS,
  INSPECTOR_MAX_REPLAYS,
  INSPECTOR_PORT,
  INSPECTOR_REPLAY_TIMEOUT_MS,
} from "../../limits.ts";
import { TunnelError } from "../../errors.ts";
import { describeError, type Logger } from "../../log.ts";
import { hostWithPort } from "../../names.ts";
import type { VisitorInfo } from "../forwarded.ts";
import type { LocalDialer } from "../local_dialer.ts";
import { captureStream } from "./capture.ts";
import { EventStreams, sseEvent } from "./events.ts";
import { replayRequest, sendReplay } from "./replay.ts";
import { type InspectorApi, inspectorHandler } from "./server.ts";
import type { CaptureStore } from "./store.ts";
import { summarize } from "./views.ts";

/** Where the inspector listens and how much it keeps. */
export interface InspectOptions {
  /** Address to listen on; anything but loopback is warned about. @default {"127.0.0.1"} */
  hostname?: string;
  /**
   * Port to listen on; 0 picks a free one. When omitted: 4040, or the next
   * free port up to 4050, or else a free one.
   */
  port?: number;
  /** Exchanges kept (a ring: the oldest goes first). @default {500} */
  limit?: number;
  /** Body bytes kept in all; the oldest bodies are dropped for new ones. @default {67108864} (64 MiB) */
  bodyBudgetBytes?: number;
  /** Bytes kept of one body; the rest is counted, not kept. @default {1048576} (1 MiB) */
  maxBodyBytes?: number;
}

/** One HTTP tunnel the inspector shows. */
export interface InspectedTunnel {
  /** Its name. */
  name: string;
  /** Reaches its local app, for replays. */
  dialer: LocalDialer;
  /** The Host header the app sees instead of the public one, as the tunnel sends it. */
  hostHeader: string | undefined;
  /** Its public URL (empty until it is up). */
  url: string;
}

/** What the inspector works with, from its client. */
export interface InspectorParts {
  /** The captured exchanges. */
  store: CaptureStore;
  /** The client's HTTP tunnels now, the first one the default for exchanges without a name. */
  tunnels(): InspectedTunnel[];
  /** Where logs go. */
  log: Logger;
}

/** A running inspector. */
export interface InspectorServer {
  /** Its page, e.g. `http://127.0.0.1:4040`. */
  readonly url: string;
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Stops it: event streams end, replays stop, the listener closes. */
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "[::1]", "localhost"]);

/** Starts the inspector of a tunnel; throws if its address cannot be had. */
export function startInspector(where: InspectOptions, parts: InspectorParts): InspectorServer {
  const { store, log } = parts;
  const hostname = where.hostname ?? "127.0.0.1";
  const stop = new AbortController();
  const tasks = new Set<Promise<unknown>>();
  const events = new EventStreams({
    maxStreams: INSPECTOR_MAX_EVENT_STREAMS,
    backlogBytes: INSPECTOR_EVENT_BACKLOG_BYTES,
    heartbeatMs: INSPECTOR_EVENT_HEARTBEAT_MS,
  });
  // Changes reach the pages in batches, and cost nothing while no page is open.
  const dirty = new Set<number>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = (): void => {
    timer = undefined;
    let text = "";
    for (const id of dirty) {
      const entry = store.get(id);
      if (entry) text += sseEvent("exchange", summarize(entry));
    }
    dirty.clear();
    if (text) events.send(text);
  };
  store.onChange = (entry) => {
    if (events.size === 0) return;
    dirty.add(entry.id);
    timer ??= setTimeout(flush, INSPECTOR_EVENT_BATCH_MS);
  };
  let replays = 0;
  const bound = { hostname, port: 0 };
  const api: InspectorApi = {
    store,
    events,
    bound,
    log,
    closing: stop.signal,
    status: () => ({
      url: parts.tunnels()[0]?.url ?? "",
      local: parts.tunnels()[0]?.dialer.where ?? "",
      tunnels: parts.tunnels().map((t) => ({ name: t.name, url: t.url, local: t.dialer.where })),
      exchanges: store.size,
      bodyBytes: store.bodyBytes,
      limits: store.limits,
      rssBytes: Deno.memoryUsage().rss,
    }),
    async replay(id, edit) {
      const original = store.get(id);
      if (!original) return { status: 404, reason: "No such request" };
      if (replays >= INSPECTOR_MAX_REPLAYS) return { status: 429, reason: "Too many replays" };
      const request = replayRequest(original, edit);
      if (!request.ok) return { status: request.status, reason: request.reason };
      const tunnels = parts.tunnels();
      const tunnel = tunnels.find((t) => t.name === original.tunnel) ?? tunnels[0];
      if (!tunnel) return { status: 409, reason: "Its tunnel is gone" };
      const visitor: VisitorInfo = {
        peer: original.visitor,
        scheme: original.scheme,
        hostHeader: tunnel.hostHeader,
        tunnel: original.tunnel,
      };
      const observer = captureStream(store, visitor, id);
      replays++;
      const task = sendReplay(request, {
        dialer: tunnel.dialer,
        visitor,
        observer,
        timeoutMs: INSPECTOR_REPLAY_TIMEOUT_MS,
        signal: stop.signal,
      });
      tasks.add(task);
      let error: string | undefined;
      try {
        ({ error } = await task);
      } finally {
        replays--;
        tasks.delete(task);
      }
      const entry = observer.last!;
      if (error !== undefined) {
        entry.problem = error;
        store.changed(entry);
      }
      return { id: entry.id, error };
    },
  };
  const server = serveOnFirstFree(
    hostname,
    inspectorPorts(where.port),
    inspectorHandler(api),
    stop.signal,
    log,
  );
  bound.port = server.addr.port;
  // A wildcard address is shown as the loopback one, where the page surely answers.
  const shown = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "::1" : hostname;
  const url = `http://${hostWithPort(shown, server.addr.port, -1)}`;
  if (!LOOPBACK.has(hostname)) {
    log.warn(
      `Inspector listens on ${hostWithPort(hostname, server.addr.port, -1)}: anyone who can ` +
        "reach it sees the requests through the tunnel and can replay them",
    );
  }
  let closing: Promise<void> | undefined;
  return {
    url,
    addr: server.addr,
    close() {
      closing ??= (async () => {
        stop.abort();
        clearTimeout(timer);
        events.close();
        await Promise.allSettled([...tasks]);
        await server.shutdown();
      })();
      return closing;
    },
  };
}

/** The ports to try in order: `port` alone, or when undefined 4040 to 4050, then any (0). */
export function inspectorPorts(port: number | undefined): number[] {
  if (port !== undefined) return [port];
  const range = Array.from(
    { length: INSPECTOR_LAST_PORT - INSPECTOR_PORT + 1 },
    (_, i) => INSPECTOR_PORT + i,
  );
  return [...range, 0];
}

/** Serves `handler` on the first of `ports` that is free; throws if none is. */
export function serveOnFirstFree(
  hostname: string,
  ports: number[],
  handler: (req: Request) => Promise<Response>,
  signal: AbortSignal,
  log: Logger,
): Deno.HttpServer<Deno.NetAddr> {
  for (const candidate of ports) {
    try {
      return Deno.serve({
        hostname,
        port: candidate,
        signal,
        onListen() {},
        onError(e) {
          log.error("Inspector request failed", { error: describeError(e) });
          return new Response("Internal error", { status: 500 });
        },
      }, handler);
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse) || candidate === ports.at(-1)) {
        const why = e instanceof Deno.errors.AddrInUse ? "address in use" : String(e);
        throw new TunnelError(
          "inspect",
          `Cannot start the inspector on ${hostWithPort(hostname, candidate, -1)}: ${why}`,
          { cause: e },
        );
      }
    }
  }
  throw new RangeError("No port to try");
}
