// Argument parsing shared by the two entrypoints (no console, no exit: they do that).

import { parseArgs, type ParseArgsConfig } from "node:util";
import { LOG_LEVELS, type LogLevel } from "./log.ts";

/** A bad flag or value: the entrypoint prints it on one line and exits with status 2. */
export class UsageError extends Error {
  /** Creates a usage error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** A parsed flag: a string, a boolean, or strings for a repeatable flag. */
export type FlagValue = string | boolean | string[] | undefined;

/**
 * Parses `args` strictly; unknown flags and missing values become a UsageError.
 * An unknown flag is answered with the closest known one (`did you mean
 * --subdomain?`), or with `hints[flag]` when a flag of another tool is expected.
 */
export function parseFlags<O extends Options>(
  args: string[],
  options: O,
  hints: Readonly<Record<string, string>> = {},
): { values: Record<string, FlagValue>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Record<string, FlagValue>, positionals };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const unknown = /^Unknown option '(-{1,2}[^'=]+)/.exec(message)?.[1];
    if (unknown !== undefined) {
      const hint = hints[unknown.replace(/^-+/, "")];
      if (hint) throw new UsageError(`Unknown flag ${unknown}: ${hint}`);
      const near = closest(unknown.replace(/^-+/, ""), Object.keys(options));
      throw new UsageError(
        `Unknown flag ${unknown}${near === undefined ? "" : `: did you mean --${near}?`}`,
      );
    }
    throw new UsageError(message.replace(/\s*\n\s*/g, " "));
  }
}

/** The name in `names` nearest to `name` (edit distance at most a third of it), if any. */
export function closest(name: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const candidate of names) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const swap = a[i - 1] === b[j - 1] ? 0 : 1;
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + swap);
    }
    row = next;
  }
  return row[b.length]!;
}

/** Reads an integer flag in `[min, max]`, or the default. */
export function intFlag(
  name: string,
  value: FlagValue,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== "string" || !/^\d+$/.test(value) || n < min || n > max) {
    throw new UsageError(
      `Invalid --${name} ${JSON.stringify(value)}: use an integer ${min}-${max}`,
    );
  }
  return n;
}

/** Reads one of `choices`, or the default. */
export function choiceFlag<T extends string>(
  name: string,
  value: FlagValue,
  fallback: T,
  choices: readonly T[],
): T {
  if (value === undefined) return fallback;
  if (typeof value === "string" && (choices as readonly string[]).includes(value)) {
    return value as T;
  }
  throw new UsageError(
    `Invalid --${name} ${JSON.stringify(value)}: use one of ${choices.join(", ")}`,
  );
}

/** Reads `--log-level`. */
export function logLevelFlag(value: FlagValue): LogLevel {
  return choiceFlag("log-level", value, "info", LOG_LEVELS);
}
