// A strict parser of the Prometheus text exposition format 0.0.4, for tests: it
// throws SyntaxError on anything a scraper could misread, and on more than the
// format forbids: blank lines, timestamps, samples without a TYPE, families
// split apart, repeated series, histograms whose buckets do not add up.

/** One sample line. */
export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One family: its TYPE, HELP and samples. */
export interface ParsedFamily {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string | undefined;
  samples: ParsedSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(text: string, line: number): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!FLOAT.test(text)) throw new SyntaxError(`line ${line}: bad value ${JSON.stringify(text)}`);
  return Number(text);
}

/** Reads `{name="value",...}` from `text` at `at`; returns the labels and where it ended. */
function parseLabels(
  text: string,
  at: number,
  line: number,
): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  const fail = (why: string): never => {
    throw new SyntaxError(`line ${line}: ${why} in ${JSON.stringify(text)}`);
  };
  let i = at + 1; // past "{"
  while (text[i] !== "}") {
    const name = /^[^=]*/.exec(text.slice(i))![0];
    if (!LABEL_NAME.test(name) || name.startsWith("__")) fail(`bad label name "${name}"`);
    if (name in labels) fail(`label ${name} repeated`);
    i += name.length;
    if (text[i] !== "=" || text[i + 1] !== '"') fail(`no ="…" after label ${name}`);
    i += 2;
    let value = "";
    for (;;) {
      const c = text[i];
      if (c === undefined) fail("unterminated label value");
      if (c === '"') break;
      if (c === "\\") {
        const next = text[i + 1];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else fail(`bad escape \\${next}`);
        i += 2;
      } else {
        value += c;
        i++;
      }
    }
    labels[name] = value;
    i++; // past the closing quote
    if (text[i] === ",") i++;
    else if (text[i] !== "}") fail("expected , or }");
  }
  return { labels, end: i + 1 };
}

/** A HELP text's escapes undone: only `\\` and `\n` are allowed. */
function unescapeHelp(text: string, line: number): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== "\\") {
      out += c;
      continue;
    }
    const next = text[++i];
    if (next === "\\") out += "\\";
    else if (next === "n") out += "\n";
    else throw new SyntaxError(`line ${line}: bad escape in HELP`);
  }
  return out;
}

/** The family a sample name belongs to, given the declared families. */
function familyOf(name: string, families: Map<string, ParsedFamily>): ParsedFamily | undefined {
  const exact = families.get(name);
  if (exact) return exact.type === "histogram" || exact.type === "summary" ? undefined : exact;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const family = families.get(name.slice(0, -suffix.length));
    if (family?.type === "histogram") return family;
    if (family?.type === "summary" && suffix !== "_bucket") return family;
  }
  return undefined;
}

const seriesKey = (sample: ParsedSample): string =>
  sample.name + JSON.stringify(Object.entries(sample.labels).sort());

/** Checks a histogram's buckets, `_sum` and `_count`, per label set. */
function checkHistogram(family: ParsedFamily): void {
  const sets = new Map<string, { le: number[]; counts: number[]; sum?: number; count?: number }>();
  const fail = (why: string): never => {
    throw new SyntaxError(`histogram ${family.name}: ${why}`);
  };
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const set = sets.get(key) ?? { le: [], counts: [] };
    sets.set(key, set);
    if (sample.name.endsWith("_bucket")) {
      if (le === undefined) fail("a bucket without le");
      const bound = parseValue(le!, 0);
      if (Number.isNaN(bound)) fail("le is NaN");
      set.le.push(bound);
      set.counts.push(sample.value);
    } else if (le !== undefined) fail(`${sample.name} has le`);
    else if (sample.name.endsWith("_sum")) set.sum = sample.value;
    else set.count = sample.value;
  }
  for (const [key, set] of sets) {
    const where = `labels ${key}`;
    if (set.le.at(-1) !== Infinity) fail(`${where}: no +Inf bucket last`);
    for (let i = 1; i < set.le.length; i++) {
      if (!(set.le[i]! > set.le[i - 1]!)) fail(`${where}: le not ascending`);
      if (set.counts[i]! < set.counts[i - 1]!) fail(`${where}: buckets not cumulative`);
    }
    if (set.count === undefined || set.sum === undefined) fail(`${where}: no _count or _sum`);
    if (set.count !== set.counts.at(-1)) fail(`${where}: _count is not the +Inf bucket`);
    if (set.counts.some((c) => c < 0 || !Number.isInteger(c))) fail(`${where}: bad bucket count`);
  }
}

/** Parses `text` strictly; SyntaxError names the first problem. */
export function parseExposition(text: string): Map<string, ParsedFamily> {
  if (text !== "" && !text.endsWith("\n")) throw new SyntaxError("no line feed at the end");
  const families = new Map<string, ParsedFamily>();
  const series = new Set<string>();
  const closed = new Set<string>(); // families another one came after: they cannot come back
  let current: string | undefined;
  const enter = (name: string, line: number): void => {
    if (current === name) return;
    if (closed.has(name)) throw new SyntaxError(`line ${line}: ${name} split apart`);
    if (current !== undefined) closed.add(current);
    current = name;
  };
  const lines = text === "" ? [] : text.slice(0, -1).split("\n");
  lines.forEach((raw, index) => {
    const line = index + 1;
    if (raw === "") throw new SyntaxError(`line ${line}: blank`);
    if (raw.startsWith("#")) {
      const meta = /^# (HELP|TYPE) (\S+)(?: (.*))?$/s.exec(raw);
      if (!meta) return; // a comment
      const [, kind, name, rest = ""] = meta;
      if (!METRIC_NAME.test(name!)) throw new SyntaxError(`line ${line}: bad name ${name}`);
      enter(name!, line);
      const family = families.get(name!);
      if (kind === "TYPE") {
        if (!TYPES.has(rest)) throw new SyntaxError(`line ${line}: bad type ${rest}`);
        if (family?.type) throw new SyntaxError(`line ${line}: second TYPE for ${name}`);
        if (family && family.samples.length > 0) {
          throw new SyntaxError(`line ${line}: TYPE after samples`);
        }
        families.set(name!, {
          name: name!,
          type: rest as ParsedFamily["type"],
          help: family?.help,
          samples: [],
        });
      } else {
        if (family?.help !== undefined) throw new SyntaxError(`line ${line}: second HELP`);
        const help = unescapeHelp(rest, line);
        if (family) family.help = help;
        else families.set(name!, { name: name!, type: undefined!, help, samples: [] });
      }
      return;
    }
    const name = /^[^{ ]*/.exec(raw)![0];
    if (!METRIC_NAME.test(name)) throw new SyntaxError(`line ${line}: bad metric name ${name}`);
    let at = name.length;
    let labels: Record<string, string> = {};
    if (raw[at] === "{") ({ labels, end: at } = parseLabels(raw, at, line));
    if (raw[at] !== " ") throw new SyntaxError(`line ${line}: no space before the value`);
    const fields = raw.slice(at + 1).split(" ");
    if (fields.length !== 1) throw new SyntaxError(`line ${line}: a timestamp or junk after value`);
    const value = parseValue(fields[0]!, line);
    const family = familyOf(name, families);
    if (!family || family.type === undefined) {
      throw new SyntaxError(`line ${line}: ${name} has no TYPE`);
    }
    enter(family.name, line);
    const sample = { name, labels, value };
    const key = seriesKey(sample);
    if (series.has(key)) throw new SyntaxError(`line ${line}: ${key} repeated`);
    series.add(key);
    if (family.type === "counter" && !(value >= 0)) {
      throw new SyntaxError(`line ${line}: counter ${name} is ${value}`);
    }
    family.samples.push(sample);
  });
  for (const family of families.values()) {
    if (family.type === undefined) throw new SyntaxError(`${family.name} has HELP but no TYPE`);
    if (family.type === "histogram") checkHistogram(family);
  }
  return families;
}

/** The value of the sample `name` with exactly `labels`; throws if there is none. */
export function sampleValue(
  families: Map<string, ParsedFamily>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const key = seriesKey({ name, labels, value: 0 });
  for (const family of families.values()) {
    for (const sample of family.samples) if (seriesKey(sample) === key) return sample.value;
  }
  throw new Error(`No sample ${key}`);
}
