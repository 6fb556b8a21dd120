// A small levelled logger: text or JSON lines to a sink (stderr by default).

/** Severity levels, lowest first; `silent` turns logging off. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

/** Structured context attached to a log line. */
export type LogFields = Record<string, unknown>;

/** What the server and client log through. The library is silent unless given one. */
export interface Logger {
  /** Routine detail: connections opened and closed, expected disconnects. */
  debug(message: string, fields?: LogFields): void;
  /** Lifecycle: listening, tunnel registered, reconnected. */
  info(message: string, fields?: LogFields): void;
  /** Something went wrong for one connection or peer; the process goes on. */
  warn(message: string, fields?: LogFields): void;
  /** Something went wrong for the whole server or tunnel. */
  error(message: string, fields?: LogFields): void;
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. @default {"info"} */
  level?: LogLevel;
  /** `text` for people, `json` for log collectors. @default {"text"} */
  format?: "text" | "json";
  /** Where lines go. @default {a synchronous write to stderr} */
  sink?: (line: string) => void;
}

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };

/** The names of the log levels, for flag parsing. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];

/**
 * A logger that drops everything: the library's default.
 *
 * @example Keep warnings and errors only, dropping the rest
 * ```ts
 * import { createLogger, silentLogger } from "@gotunnel/gotunnel";
 * const log = { ...silentLogger, warn: createLogger().warn, error: createLogger().error };
 * log.debug("not shown");
 * ```
 */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

const encoder = new TextEncoder();
const writeStderr = (line: string): void => {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
};

/**
 * Creates a logger writing one line per entry at or above `level`.
 *
 * @example JSON lines for a log collector
 * ```ts
 * import { createLogger } from "@gotunnel/gotunnel";
 * const lines: string[] = [];
 * const log = createLogger({ format: "json", sink: (line) => lines.push(line) });
 * log.info("Tunnel ready", { url: "https://demo.tunnel.example" });
 * console.log(JSON.parse(lines[0]!).msg); // "Tunnel ready"
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = RANK[options.level ?? "info"];
  const sink = options.sink ?? writeStderr;
  const json = options.format === "json";
  const emit = (level: Exclude<LogLevel, "silent">) => (msg: string, fields?: LogFields) => {
    if (RANK[level] < min) return;
    const time = new Date().toISOString();
    if (json) {
      sink(JSON.stringify({ time, level, msg, ...fields }));
      return;
    }
    let line = `${time} ${level.toUpperCase().padEnd(5)} ${msg}`;
    for (const [key, value] of Object.entries(fields ?? {})) {
      line += ` ${key}=${typeof value === "string" ? value : JSON.stringify(value)}`;
    }
    sink(line);
  };
  return { debug: emit("debug"), info: emit("info"), warn: emit("warn"), error: emit("error") };
}

/** A short description of an error for logs. */
export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Whether an error is an ordinary disconnect (reset, broken pipe, closed), logged at debug. */
export function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.Interrupted;
}

/**
 * Whether an error is a bug in this program rather than something a peer or
 * the network did: a TypeError, RangeError or ReferenceError, or an assertion.
 */
export function isBug(error: unknown): boolean {
  return error instanceof TypeError || error instanceof RangeError ||
    error instanceof ReferenceError || (error as { name?: unknown })?.name === "AssertionError";
}

/**
 * Logs an error caught where the stream it ended goes on being handled (a
 * closed socket, a failed stream): at `error` when it is a bug, else at `debug`.
 */
export function logCaught(log: Logger, message: string, error: unknown, fields?: LogFields): void {
  const all = { ...fields, error: describeError(error) };
  if (isBug(error)) log.error(message, all);
  else log.debug(message, all);
}

/** How long `throttleWarnings` gathers repeats of a warning before it says how many there were. */
export const WARNING_REPEAT_INTERVAL_MS = 10_000;

/**
 * `log` with its warnings rate-limited: the first of each message is written
 * at once; repeats within `intervalMs` are counted and summed up in one line
 * at the end of the interval (`… repeated N times in 10 s`), so that a flood of
 * bad connections cannot flood the log. Other levels pass through. `close()`
 * writes what is pending and stops the timer.
 */
export function throttleWarnings(
  log: Logger,
  intervalMs: number = WARNING_REPEAT_INTERVAL_MS,
): Logger & { close(): void } {
  const repeats = new Map<string, { count: number; fields: LogFields | undefined }>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = (): void => {
    timer = undefined;
    for (const [message, { count, fields }] of repeats) {
      if (count > 0) {
        log.warn(`${message} (repeated ${count} times in ${intervalMs / 1000} s)`, fields);
      }
    }
    repeats.clear();
  };
  return {
    debug: (message, fields) => log.debug(message, fields),
    info: (message, fields) => log.info(message, fields),
    error: (message, fields) => log.error(message, fields),
    warn(message, fields) {
      const seen = repeats.get(message);
      if (seen) {
        seen.count++;
        seen.fields = fields;
        return;
      }
      repeats.set(message, { count: 0, fields });
      log.warn(message, fields);
      timer ??= setTimeout(flush, intervalMs);
    },
    close() {
      clearTimeout(timer);
      flush();
    },
  };
}
