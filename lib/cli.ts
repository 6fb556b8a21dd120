// Argument parsing shared by the two entrypoints (no console, no exit: they do that).

import { LOG_LEVELS, type LogLevel } from "./log.ts";

/** A bad flag or value: the entrypoint prints it on one line and exits with status 2. */
export class UsageError extends Error {
  /** Creates a usage error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** How a flag is written: a value or a switch, a one-letter alias, repeatable. */
export interface FlagSpec {
  /** `string` takes a value (`--name v` or `--name=v`); `boolean` takes none. */
  type: "string" | "boolean";
  /** A one-letter alias (`-h`). */
  short?: string;
  /** Repeatable: the values come as an array. */
  multiple?: boolean;
}

/** A parsed flag: a string, a boolean, or strings for a repeatable flag. */
export type FlagValue = string | boolean | string[] | undefined;

/**
 * Parses `args` strictly (no node:util: it costs each process a megabyte or
 * two of memory): `--name value`, `--name=value`, `-x`, `--` ending the flags.
 * Unknown flags, missing values and values given to a switch are UsageErrors;
 * an unknown flag is answered with the closest known one (`did you mean
 * --subdomain?`), or with `hints[flag]` when a flag of another tool is expected.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./cli.ts";
 * const { values } = parseFlags(["--port=8080", "-q"], {
 *   port: { type: "string" },
 *   quiet: { type: "boolean", short: "q" },
 * });
 * console.log(values.port, values.quiet); // 8080 true
 * ```
 */
export function parseFlags(
  args: string[],
  options: Readonly<Record<string, FlagSpec>>,
  hints: Readonly<Record<string, string>> = {},
): { values: Record<string, FlagValue>; positionals: string[] } {
  const values: Record<string, FlagValue> = {};
  const positionals: string[] = [];
  const shorts = new Map(
    Object.entries(options).flatMap(([name, spec]) => spec.short ? [[spec.short, name]] : []),
  );
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const written = eq < 0 ? arg : arg.slice(0, eq);
    const name = written.startsWith("--") ? written.slice(2) : shorts.get(written.slice(1));
    const spec = name === undefined ? undefined : options[name];
    if (name === undefined || spec === undefined) throw unknownFlag(written, options, hints);
    let value: string | boolean = true;
    if (spec.type === "boolean") {
      if (eq >= 0) throw new UsageError(`${written} takes no value`);
    } else if (eq >= 0) value = arg.slice(eq + 1);
    else {
      const next = args[i + 1];
      if (next === undefined) throw new UsageError(`${written} needs a value`);
      if (next.startsWith("-") && next !== "-") {
        throw new UsageError(
          `${written} needs a value, not ${next} (for a value that starts with -, write ${written}=${next})`,
        );
      }
      value = next;
      i++;
    }
    if (spec.multiple) values[name] = [...(values[name] as string[] | undefined ?? []), `${value}`];
    else values[name] = value;
  }
  return { values, positionals };
}

function unknownFlag(
  written: string,
  options: Readonly<Record<string, FlagSpec>>,
  hints: Readonly<Record<string, string>>,
): UsageError {
  const bare = written.replace(/^-+/, "");
  const hint = hints[bare];
  if (hint) return new UsageError(`Unknown flag ${written}: ${hint}`);
  const near = closest(bare, Object.keys(options));
  return new UsageError(
    `Unknown flag ${written}${near === undefined ? "" : `: did you mean --${near}?`}`,
  );
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
