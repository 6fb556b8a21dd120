// The HTTP-aware client's request rewriting: X-Forwarded-*, Forwarded and Host on
// every request of a connection, bodies passed through untouched.

import type { Writer } from "../channel.ts";
import { encodeHead, type Http1Event, Http1Framer, type MessageHead } from "../http1.ts";
import { httpError, writeAll } from "../io.ts";

/** What the client knows about a visitor's connection. */
export interface VisitorInfo {
  /** The visitor's address as `ip:port` (IPv6 in brackets), from the server. */
  peer: string;
  /** How the visitor reached the server. */
  scheme: "http" | "https";
  /** Host header for the local app, when it must not see the public one. */
  hostHeader: string | undefined;
}

const REPLACED = new Set(["x-forwarded-proto", "x-forwarded-host"]);

/**
 * The head as the local app should see it: the visitor's address appended to
 * X-Forwarded-For and Forwarded (so a visitor cannot pass itself off as the
 * first hop's own value), X-Forwarded-Proto and -Host set, Host rewritten.
 */
export function rewriteRequestHead(head: MessageHead, info: VisitorInfo): MessageHead {
  const ip = info.peer.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  const host = head.headers.find(([n]) => n.toLowerCase() === "host")?.[1] ?? "";
  const headers: [string, string][] = [];
  let forwardedFor: string | undefined;
  let forwarded: string | undefined;
  for (const [name, value] of head.headers) {
    const lower = name.toLowerCase();
    if (lower === "x-forwarded-for") {
      forwardedFor = forwardedFor ? `${forwardedFor}, ${value}` : value;
    } else if (lower === "forwarded") forwarded = forwarded ? `${forwarded}, ${value}` : value;
    else if (lower === "host" && info.hostHeader !== undefined) {
      headers.push([name, info.hostHeader]);
    } else if (!REPLACED.has(lower)) headers.push([name, value]);
  }
  const node = ip.includes(":") ? `"[${ip}]"` : ip;
  const element = `for=${node};host="${host.replace(/"/g, "")}";proto=${info.scheme}`;
  headers.push(["X-Forwarded-For", forwardedFor ? `${forwardedFor}, ${ip}` : ip]);
  headers.push(["X-Forwarded-Proto", info.scheme]);
  headers.push(["X-Forwarded-Host", host]);
  headers.push(["Forwarded", forwarded ? `${forwarded}, ${element}` : element]);
  return { ...head, headers };
}

/**
 * A writer in front of the local app's connection that frames the visitor's
 * requests and rewrites each head; bodies and upgraded streams pass through.
 * A request that cannot be framed (smuggling, malformed) is answered 400 and
 * the stream is failed.
 */
export class RequestRewriter implements Writer {
  #out: Writer;
  #info: VisitorInfo;
  #framer = new Http1Framer("request", undefined, true);
  #refuse: (answer: Uint8Array, reason: string) => void;
  #observe: ((head: MessageHead) => void) | undefined;
  #failed = false;

  /**
   * Rewrites into `out`; `refuse` gets the error answer for the visitor and
   * why, `observe` each request head as the visitor sent it.
   */
  constructor(
    out: Writer,
    info: VisitorInfo,
    refuse: (answer: Uint8Array, reason: string) => void,
    observe?: (head: MessageHead) => void,
  ) {
    this.#out = out;
    this.#info = info;
    this.#refuse = refuse;
    this.#observe = observe;
  }

  /** Frames `p` and writes it on, rewritten; always takes all of it. */
  async write(p: Uint8Array): Promise<number> {
    if (this.#failed) return p.length;
    for (const event of this.#framer.push(p)) await this.#emit(event);
    return p.length;
  }

  async #emit(event: Http1Event): Promise<void> {
    switch (event.kind) {
      case "head":
        this.#observe?.(event.head);
        return await writeAll(this.#out, encodeHead(rewriteRequestHead(event.head, this.#info)));
      case "body":
      case "raw":
        return await writeAll(this.#out, event.bytes);
      case "error":
        this.#failed = true;
        this.#refuse(
          httpError(event.status, "Bad Request", `Bad request: ${event.reason}`),
          event.reason,
        );
        return;
      case "end":
        return;
    }
  }
}
