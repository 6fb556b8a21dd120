// The client's request log: one terminal line per exchange
// (`GET /path → 200  12.3 ms  1.2 KB`), batched and throttled.

import { REQUEST_LOG_BATCH_MS, REQUEST_LOG_LINES_PER_SECOND } from "../limits.ts";
import { formatBytes, formatElapsed } from "../units.ts";
import type { RequestRecord } from "./exchanges.ts";

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

/**
 * One log line for `record`, e.g. `GET /path → 200  12.3 ms  1.2 KB`.
 *
 * @example Log requests from the library the way the CLI does
 * ```ts
 * import { formatRecord } from "@gotunnel/gotunnel";
 * const line = formatRecord({
 *   method: "GET", target: "/", status: 200, durationMs: 3.1, bytes: 1600,
 *   upgrade: undefined, problem: undefined,
 * });
 * console.log(line); // GET / → 200 3.1 ms 1.6 KB
 * ```
 */
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
  const duration = formatElapsed(record.durationMs);
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
  return `… ${total.toLocaleString("en-US")} more requests in ${formatElapsed(ms)} (${classes})`;
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
