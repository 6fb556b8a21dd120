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

/** Parses `args` strictly; unknown flags and missing values become a UsageError. */
export function parseFlags<O extends Options>(
  args: string[],
  options: O,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Record<string, string | boolean | undefined>, positionals };
  } catch (e) {
    throw new UsageError((e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, " "));
  }
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
