// The client's request log: requests paired with their responses on one visitor
// stream, and the terminal line for each (`GET /path → 200  12.3 ms  1.2 KB`).

import { Http1Framer, type MessageHead, switchesProtocols } from "../http1.ts";
import { REQUEST_LOG_BATCH_MS, REQUEST_LOG_LINES_PER_SECOND } from "../protocol.ts";

/** One request and what became of it. */
export interface RequestRecord {
  /** Request method. */
  method: string;
  /** Request target, as sent (path and query). */
  target: string;
  /** Final response status; undefined when no response came. */
  status: number | undefined;
  /** From the request head to the end of the response (to the 101 for an upgrade). */
  durationMs: number;
  /** Response body bytes as sent (chunked framing included). */
  bytes: number;
  /** The protocol switched to (`websocket`), when the request upgraded the stream. */
  upgrade: string | undefined;
  /** Why the exchange is incomplete: `no response`, `cut short`, `bad response`. */
  problem: string | undefined;
}

interface Pending {
  method: string;
  target: string;
  upgrade: string | undefined;
  start: number;
}

/**
 * Pairs the requests of one stream with its responses, in order (pipelining
 * included), and reports each exchange once. Feed it request heads, response
 * bytes as they pass, and `close()` at the end of the stream. It also says
 * whether a request asking to switch protocols (Upgrade, CONNECT) was granted,
 * so that the request side knows whether what follows is still HTTP.
 */
export class ExchangeLog {
  #framer = new Http1Framer("response");
  #pending: Pending[] = [];
  #status: number | undefined;
  #switched = false; // the current response switched protocols
  #bytes = 0;
  #done = false;
  #report: ((record: RequestRecord) => void) | undefined;
  #now: () => number;
  #switch: PromiseWithResolvers<boolean> | undefined;

  /** Reports through `report` (none: it only pairs); `now` is the clock (ms). */
  constructor(
    report: ((record: RequestRecord) => void) | undefined,
    now: () => number = () => performance.now(),
  ) {
    this.#report = report;
    this.#now = now;
  }

  /**
   * Resolves once the last request that asked to switch protocols has the head
   * of its final answer: true only if that answer switched the stream (101, or
   * 2xx to CONNECT); false if it did not, if the responses could not be
   * followed, or if the stream ended first. False when no request asked.
   */
  switched(): Promise<boolean> {
    return this.#switch?.promise ?? Promise.resolve(false);
  }

  /** The visitor sent a request with this head. */
  request(head: MessageHead): void {
    const method = head.method ?? "?";
    const upgrade = method === "CONNECT" ? "connect" : head.get("upgrade")?.toLowerCase();
    if (upgrade !== undefined) {
      this.#switch = Promise.withResolvers();
      if (this.#done) this.#switch.resolve(false); // responses no longer followed: no switch
    }
    if (this.#done) return;
    // Without a report, nothing is kept that only a report would need.
    const report = this.#report !== undefined;
    this.#pending.push({
      method,
      target: report ? head.target ?? "?" : "",
      upgrade,
      start: report ? this.#now() : 0,
    });
    this.#framer.expect(method);
  }

  /** The client refused the visitor's next request itself (it could not be framed). */
  refused(status: number, reason: string): void {
    if (this.#done) return;
    this.#done = true;
    this.#report?.({
      method: "-",
      target: "-",
      status,
      durationMs: 0,
      bytes: 0,
      upgrade: undefined,
      problem: reason,
    });
  }

  /** Response bytes from the app, in order. */
  response(bytes: Uint8Array): void {
    if (this.#done) return;
    for (const event of this.#framer.push(bytes)) {
      switch (event.kind) {
        case "head": {
          const status = event.head.status!;
          // An interim answer (100 Continue): the final one is still to come.
          this.#status = status >= 100 && status < 200 && status !== 101 ? undefined : status;
          this.#bytes = 0;
          // A final answer to a request that asked to switch decides it, at its head.
          const request = this.#pending[0];
          if (this.#status !== undefined && request) {
            this.#switched = switchesProtocols(request.method, event.head);
            if (request.upgrade !== undefined) this.#switch?.resolve(this.#switched);
          }
          break;
        }
        case "body":
          this.#bytes += event.bytes.length;
          break;
        case "end":
          if (this.#status !== undefined) this.#finish(undefined);
          break;
        case "raw": // switched protocols: nothing more to pair
          this.#done = true;
          return;
        case "error":
          this.#finish("bad response");
          this.#done = true;
          this.#switch?.resolve(false);
          return;
      }
    }
  }

  /** The stream is over: report what is still open. */
  close(): void {
    if (!this.#done) {
      for (const event of this.#framer.end()) {
        if (event.kind === "end" && this.#status !== undefined) this.#finish(undefined);
      }
    }
    this.#done = true;
    while (this.#pending.length > 0) {
      this.#finish(this.#status === undefined ? "no response" : "cut short");
    }
    this.#switch?.resolve(false);
  }

  #finish(problem: string | undefined): void {
    const request = this.#pending.shift();
    if (!request) return;
    const switched = problem === undefined && this.#switched;
    this.#report?.({
      method: request.method,
      target: request.target,
      status: this.#status,
      durationMs: this.#now() - request.start,
      bytes: this.#bytes,
      upgrade: switched ? request.upgrade : undefined,
      problem,
    });
    this.#status = undefined;
    this.#switched = false;
    this.#bytes = 0;
  }
}

/** How a record is printed. */
export interface RecordStyle {
  /** Columns padded to line up (a terminal). */
  aligned: boolean;
  /** ANSI colours (a terminal without NO_COLOR). */
  color: boolean;
}

/**
 * The style for a stream: aligned and coloured on a terminal, colour off when
 * `NO_COLOR` is set to anything but the empty string (no-color.org); plain
 * lines otherwise, for files and pipes.
 */
export function recordStyle(terminal: boolean, noColor: string | undefined): RecordStyle {
  return { aligned: terminal, color: terminal && (noColor === undefined || noColor === "") };
}

/** Widest target column in aligned output; longer targets are cut with `…`. */
const TARGET_COLUMNS = 48;
/** Narrowest target column in aligned output. */
const MIN_TARGET_COLUMNS = 24;

/** `12.3 ms`, `850 ms`, `2.4 s`. */
export function formatDuration(ms: number): string {
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** `0 B`, `512 B`, `1.2 KB`, `3.4 MB`, `1.1 GB` (powers of 1000). */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 999.95 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** Control characters a visitor could use to drive the terminal (escape sequences). */
// deno-lint-ignore no-control-regex -- finding control characters is the point
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;
// deno-lint-ignore no-control-regex -- finding control characters is the point
const CONTROLS = /[\x00-\x1f\x7f-\x9f]/g;

/** `text` with control characters shown as `\xNN`, safe to print to a terminal. */
export function printable(text: string): string {
  if (!CONTROL.test(text)) return text;
  return text.replace(CONTROLS, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

const paint = (on: boolean, code: number, text: string): string =>
  on ? `\x1b[${code}m${text}\x1b[0m` : text;

function statusColor(status: number | undefined): number {
  if (status === undefined || status >= 500) return 31; // red
  if (status >= 400) return 33; // yellow
  if (status >= 300) return 36; // cyan
  return 32; // green
}

/** One log line for `record`, e.g. `GET /path → 200  12.3 ms  1.2 KB`. */
export function formatRecord(
  record: RequestRecord,
  style: RecordStyle = { aligned: false, color: false },
): string {
  const { aligned, color } = style;
  let target = printable(record.target);
  if (aligned) {
    if (target.length > TARGET_COLUMNS) target = target.slice(0, TARGET_COLUMNS - 1) + "…";
    target = target.padEnd(MIN_TARGET_COLUMNS);
  }
  const method = aligned ? printable(record.method).padEnd(7) : printable(record.method);
  const status = paint(color, statusColor(record.status), `${record.status ?? "---"}`);
  const duration = formatDuration(record.durationMs);
  const tail = record.upgrade !== undefined
    ? `⇄ ${printable(record.upgrade)}`
    : formatBytes(record.bytes);
  const columns = [
    `${paint(color, 1, method)} ${target} → ${status}`,
    aligned ? duration.padStart(8) : duration,
    aligned && record.upgrade === undefined ? tail.padStart(8) : tail,
  ];
  if (record.problem) columns.push(paint(color, 31, `(${record.problem})`));
  return columns.join(aligned ? "  " : " ");
}

/** Counts of the requests a throttled log did not print, by status class. */
function summary(counts: Map<string, number>, total: number, ms: number): string {
  const classes = [...counts].sort(([a], [b]) => a.localeCompare(b))
    .map(([name, n]) => `${name} ${n.toLocaleString("en-US")}`).join(", ");
  return `… ${total.toLocaleString("en-US")} more requests in ${formatDuration(ms)} (${classes})`;
}

/**
 * A request log printer. Lines are batched and written together every
 * `batchMs`, and at most `perSecond` are printed a second: beyond that, one
 * line sums up the rest by status class (a terminal cannot show 10,000 lines a
 * second, and would spend a core trying). `flush()` writes what is queued.
 */
export function requestPrinter(
  write: (text: string) => void,
  style: RecordStyle,
  { batchMs = REQUEST_LOG_BATCH_MS, perSecond = REQUEST_LOG_LINES_PER_SECOND } = {},
): { log: (record: RequestRecord) => void; flush: () => void } {
  let lines: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let windowStart = -Infinity;
  let printed = 0;
  let skipped = 0;
  const skippedBy = new Map<string, number>();
  const closeWindow = (now: number): void => {
    if (skipped > 0) {
      lines.push(paint(style.color, 2, summary(skippedBy, skipped, now - windowStart)));
    }
    windowStart = now;
    printed = skipped = 0;
    skippedBy.clear();
  };
  const flush = (final = true): void => {
    clearTimeout(timer);
    timer = undefined;
    const now = performance.now();
    if (skipped > 0 && (final || now - windowStart >= 1000)) closeWindow(now);
    // Still throttled: the summary is due at the end of this second.
    if (skipped > 0) timer = setTimeout(() => flush(false), 1000 - (now - windowStart));
    if (lines.length > 0) {
      const text = lines.join("\n") + "\n";
      lines = [];
      write(text);
    }
  };
  return {
    log(record) {
      const now = performance.now();
      if (now - windowStart >= 1000) closeWindow(now);
      if (printed < perSecond) {
        printed++;
        lines.push(formatRecord(record, style));
      } else {
        skipped++;
        const group = record.status === undefined ? "none" : `${Math.floor(record.status / 100)}xx`;
        skippedBy.set(group, (skippedBy.get(group) ?? 0) + 1);
      }
      // While throttled, the summary waits for the end of its second.
      timer ??= setTimeout(() => flush(false), skipped > 0 ? 1000 - (now - windowStart) : batchMs);
    },
    flush: () => flush(true),
  };
}
