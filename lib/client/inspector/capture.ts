// The inspector's observer of one visitor stream: each request head opens an exchange
// in the store, responses go to the oldest unanswered one (pipelining), records close
// them, and WebSocket frames after a switch are counted. It only watches.

import type { ExchangeObserver, RequestRecord } from "../exchanges.ts";
import type { VisitorInfo } from "../forwarded.ts";
import type { MessageHead } from "../../http/head.ts";
import { isChunked } from "./body.ts";
import type { CaptureStore, ExchangeEntry } from "./store.ts";
import { WsFrameCounter } from "./ws_frames.ts";

/**
 * An observer that captures the exchanges of one visitor's stream into
 * `store`. Every call is synchronous and small: a request costs a copy of its
 * head, a body chunk a copy of what the store keeps of it. `replayOf` marks
 * exchanges that replay an earlier one.
 */
export function captureStream(
  store: CaptureStore,
  visitor: VisitorInfo,
  replayOf?: number,
): ExchangeObserver & { readonly last: ExchangeEntry | undefined } {
  return new StreamCapture(store, visitor, replayOf);
}

class StreamCapture implements ExchangeObserver {
  /** The exchange opened last. */
  last: ExchangeEntry | undefined;
  #store: CaptureStore;
  #visitor: VisitorInfo;
  #replayOf: number | undefined;
  #pending: ExchangeEntry[] = []; // opened, not yet finished, in request order
  #sending: ExchangeEntry | undefined; // the request whose body is passing
  #switched: ExchangeEntry | undefined; // the exchange that upgraded the stream

  constructor(store: CaptureStore, visitor: VisitorInfo, replayOf: number | undefined) {
    this.#store = store;
    this.#visitor = visitor;
    this.#replayOf = replayOf;
  }

  request(head: MessageHead): void {
    const entry = this.#open(head.method ?? "?", head.target ?? "?", this.#store.copy(head.bytes));
    entry.request.chunked = isChunked(head.get("transfer-encoding"));
    this.#pending.push(entry);
    this.#sending = entry;
  }

  requestBody(bytes: Uint8Array): void {
    const entry = this.#sending;
    if (entry) this.#store.keep(entry, entry.request, bytes);
  }

  response(head: MessageHead): void {
    const entry = this.#pending[0];
    const status = head.status ?? 0;
    if (!entry || (status >= 100 && status < 200 && status !== 101)) return; // interim: skip it
    entry.status = status;
    entry.responseHead = this.#store.copy(head.bytes);
    entry.response.chunked = isChunked(head.get("transfer-encoding"));
    this.#store.changed(entry);
  }

  responseBody(bytes: Uint8Array): void {
    const entry = this.#pending[0];
    if (entry) this.#store.keep(entry, entry.response, bytes);
  }

  exchange(record: RequestRecord): void {
    let entry: ExchangeEntry | undefined;
    if (record.method === "-") {
      // The client refused a request itself: a CONNECT it read (the newest), or one it could not.
      const last = this.#pending.at(-1);
      if (last?.method === "CONNECT" && last.responseHead === undefined) {
        entry = this.#pending.pop();
      } else entry = this.#open("-", "-", undefined);
    } else entry = this.#pending.shift();
    if (!entry) return; // a record for a request refused above
    if (entry === this.#sending) this.#sending = undefined;
    entry.status = record.status;
    entry.durationMs = record.durationMs;
    entry.problem = record.problem;
    entry.upgrade = record.upgrade;
    entry.state = record.upgrade === undefined ? "complete" : "open";
    if (record.upgrade !== undefined) this.#switched = entry;
    if (record.upgrade === "websocket") entry.frames = [new WsFrameCounter(), new WsFrameCounter()];
    this.#store.completed(entry);
  }

  raw(from: "visitor" | "app", bytes: Uint8Array): void {
    const entry = this.#switched;
    if (!entry?.frames) return;
    const counter = entry.frames[from === "visitor" ? 0 : 1];
    const frames = counter.counts.frames;
    counter.push(bytes);
    if (counter.counts.frames !== frames) this.#store.changed(entry);
  }

  close(): void {
    const entry = this.#switched;
    if (entry === undefined) return;
    entry.state = "complete";
    this.#store.changed(entry);
  }

  #open(method: string, target: string, head: Uint8Array | undefined): ExchangeEntry {
    return this.last = this.#store.open({
      startedAt: Date.now(),
      visitor: this.#visitor.peer,
      tunnel: this.#visitor.tunnel,
      scheme: this.#visitor.scheme,
      method,
      target,
      requestHead: head,
      replayOf: this.#replayOf,
    });
  }
}
