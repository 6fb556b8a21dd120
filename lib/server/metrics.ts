// A small metrics registry: counters, gauges and fixed-bucket histograms with
// label sets, and the Prometheus text exposition format 0.0.4 (a pure renderer).

/** Label names to values, e.g. `{ outcome: "404" }`. */
export type Labels = Readonly<Record<string, string>>;

/** The kinds of metric family the text format knows that we use. */
export type MetricType = "counter" | "gauge" | "histogram";

/** One line of a family: its full name (with `_bucket`, `_sum`… for histograms), labels, value. */
export interface Sample {
  /** The sample's name: the family's, or it with a histogram suffix. */
  readonly name: string;
  /** Its labels, in the order they are written. */
  readonly labels: Labels;
  /** Its value (`Infinity` and `NaN` allowed). */
  readonly value: number;
}

/** A metric family as it is rendered: name, help, type and its samples. */
export interface FamilySnapshot {
  /** The family's name, e.g. `gotunnel_tunnels`. */
  readonly name: string;
  /** One line saying what it counts. */
  readonly help: string;
  /** Its type. */
  readonly type: MetricType;
  /** Its samples (grouped by the renderer as the format requires). */
  readonly samples: readonly Sample[];
}

/** The media type of the text format rendered here. */
export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A HELP text: backslash and line feed escaped. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** A label value: backslash, double quote and line feed escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** A sample value as the format writes it: `+Inf`, `-Inf`, `NaN` or a JavaScript number. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  return `{${entries.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(",")}}`;
}

/**
 * Renders families in the text exposition format 0.0.4: per family a HELP and
 * a TYPE line, then its samples; a family without samples gets its HELP and
 * TYPE only. Throws TypeError on an invalid metric or label name (a bug).
 */
export function renderExposition(families: readonly FamilySnapshot[]): string {
  const lines: string[] = [];
  for (const family of families) {
    if (!METRIC_NAME.test(family.name)) throw new TypeError(`Invalid metric name ${family.name}`);
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`);
    lines.push(`# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) {
      if (!sample.name.startsWith(family.name) || !METRIC_NAME.test(sample.name)) {
        throw new TypeError(`Invalid sample name ${sample.name} in ${family.name}`);
      }
      for (const name of Object.keys(sample.labels)) {
        if (!LABEL_NAME.test(name) || name.startsWith("__")) {
          throw new TypeError(`Invalid label name ${name} in ${family.name}`);
        }
      }
      lines.push(`${sample.name}${formatLabels(sample.labels)} ${formatValue(sample.value)}`);
    }
  }
  return lines.length === 0 ? "" : lines.join("\n") + "\n";
}

/** Values by label set, in the order label sets were first seen. */
class LabeledValues<V> {
  readonly #labelNames: readonly string[];
  readonly #values = new Map<string, { labels: Labels; value: V }>();
  readonly #fresh: () => V;

  constructor(labelNames: readonly string[], fresh: () => V) {
    this.#labelNames = labelNames;
    this.#fresh = fresh;
    if (labelNames.length === 0) this.entry({}); // one series, there (at 0) from the start
  }

  /** The entry for `labels` (created with a fresh value); TypeError for the wrong label names. */
  entry(labels: Labels): { labels: Labels; value: V } {
    const values = this.#labelNames.map((name) => {
      const value = labels[name];
      if (value === undefined) throw new TypeError(`Missing label ${name}`);
      return value;
    });
    if (Object.keys(labels).length !== values.length) {
      throw new TypeError(`Labels ${Object.keys(labels)} are not ${this.#labelNames}`);
    }
    const key = values.join("\u0000");
    let entry = this.#values.get(key);
    if (!entry) {
      const ordered = Object.fromEntries(this.#labelNames.map((name, i) => [name, values[i]!]));
      entry = { labels: ordered, value: this.#fresh() };
      this.#values.set(key, entry);
    }
    return entry;
  }

  entries(): IterableIterator<{ labels: Labels; value: V }> {
    return this.#values.values();
  }
}

/** What every metric in a registry has. */
interface Family {
  readonly name: string;
  snapshot(): FamilySnapshot;
}

/** A value that only goes up, per label set. */
export class Counter implements Family {
  /** The family's name. */
  readonly name: string;
  readonly #help: string;
  readonly #values: LabeledValues<{ n: number }>;

  /** A counter named `name` with these label names. */
  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    this.name = name;
    this.#help = help;
    this.#values = new LabeledValues(labelNames, () => ({ n: 0 }));
  }

  /** Adds `by` (not negative) to the label set's value. */
  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new RangeError(`Cannot add ${by} to counter ${this.name}`);
    this.#values.entry(labels).value.n += by;
  }

  /** The label set's value now (0 if never counted). */
  get(labels: Labels = {}): number {
    return this.#values.entry(labels).value.n;
  }

  /** Every label set with its value. */
  values(): { labels: Labels; value: number }[] {
    return [...this.#values.entries()].map(({ labels, value }) => ({ labels, value: value.n }));
  }

  /** The family as it is rendered. */
  snapshot(): FamilySnapshot {
    const samples = this.values().map(({ labels, value }) => ({ name: this.name, labels, value }));
    return { name: this.name, help: this.#help, type: "counter", samples };
  }
}

/** A value that goes up and down, per label set. */
export class Gauge implements Family {
  /** The family's name. */
  readonly name: string;
  readonly #help: string;
  readonly #values: LabeledValues<{ n: number }>;

  /** A gauge named `name` with these label names. */
  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    this.name = name;
    this.#help = help;
    this.#values = new LabeledValues(labelNames, () => ({ n: 0 }));
  }

  /** Sets the label set's value. */
  set(labels: Labels, value: number): void {
    this.#values.entry(labels).value.n = value;
  }

  /** Adds `by` (maybe negative) to the label set's value. */
  add(labels: Labels, by: number): void {
    this.#values.entry(labels).value.n += by;
  }

  /** The label set's value now (0 if never set). */
  get(labels: Labels = {}): number {
    return this.#values.entry(labels).value.n;
  }

  /** The family as it is rendered. */
  snapshot(): FamilySnapshot {
    const samples = [...this.#values.entries()].map(({ labels, value }) => ({
      name: this.name,
      labels,
      value: value.n,
    }));
    return { name: this.name, help: this.#help, type: "gauge", samples };
  }
}

/** A distribution of observations in fixed buckets (upper bounds, inclusive). */
export class Histogram implements Family {
  /** The family's name. */
  readonly name: string;
  readonly #help: string;
  readonly #bounds: readonly number[];
  readonly #values: LabeledValues<{ counts: number[]; sum: number; count: number }>;

  /** A histogram named `name` with these bucket bounds (ascending, finite) and label names. */
  constructor(
    name: string,
    help: string,
    bounds: readonly number[],
    labelNames: readonly string[] = [],
  ) {
    const ascending = bounds.every((b, i) => Number.isFinite(b) && (i === 0 || b > bounds[i - 1]!));
    if (bounds.length === 0 || !ascending) {
      throw new RangeError(`Histogram ${name} needs ascending finite bucket bounds`);
    }
    if (labelNames.includes("le")) throw new TypeError(`Histogram ${name} cannot use label le`);
    this.name = name;
    this.#help = help;
    this.#bounds = bounds;
    this.#values = new LabeledValues(labelNames, () => ({
      counts: new Array<number>(bounds.length).fill(0),
      sum: 0,
      count: 0,
    }));
  }

  /** Counts `value` in its bucket (above the last bound: only in `+Inf`). */
  observe(value: number, labels: Labels = {}): void {
    const entry = this.#values.entry(labels).value;
    const at = this.#bounds.findIndex((bound) => value <= bound);
    if (at >= 0) entry.counts[at]!++;
    entry.sum += value;
    entry.count++;
  }

  /** Observations of the label set so far. */
  count(labels: Labels = {}): number {
    return this.#values.entry(labels).value.count;
  }

  /** The family as it is rendered: cumulative buckets, `+Inf`, `_sum` and `_count`. */
  snapshot(): FamilySnapshot {
    const samples: Sample[] = [];
    for (const { labels, value } of this.#values.entries()) {
      let cumulative = 0;
      this.#bounds.forEach((bound, i) => {
        cumulative += value.counts[i]!;
        samples.push({
          name: `${this.name}_bucket`,
          labels: { ...labels, le: formatValue(bound) },
          value: cumulative,
        });
      });
      samples.push({
        name: `${this.name}_bucket`,
        labels: { ...labels, le: "+Inf" },
        value: value.count,
      });
      samples.push({ name: `${this.name}_sum`, labels, value: value.sum });
      samples.push({ name: `${this.name}_count`, labels, value: value.count });
    }
    return { name: this.name, help: this.#help, type: "histogram", samples };
  }
}

/**
 * A family whose values are read when it is rendered, from state kept
 * elsewhere (a count of live things, a counter a session keeps).
 */
export class Collected implements Family {
  /** The family's name. */
  readonly name: string;
  readonly #help: string;
  readonly #type: "counter" | "gauge";
  readonly #collect: () => Iterable<{ labels: Labels; value: number }>;

  /** A family named `name` whose values `collect` reads. */
  constructor(
    name: string,
    help: string,
    type: "counter" | "gauge",
    collect: () => Iterable<{ labels: Labels; value: number }>,
  ) {
    this.name = name;
    this.#help = help;
    this.#type = type;
    this.#collect = collect;
  }

  /** The family as it is rendered. */
  snapshot(): FamilySnapshot {
    const samples = [...this.#collect()].map(({ labels, value }) => ({
      name: this.name,
      labels,
      value,
    }));
    return { name: this.name, help: this.#help, type: this.#type, samples };
  }
}

/** Metric families by name, rendered in the order they were added. */
export class MetricsRegistry {
  readonly #families: Family[] = [];

  /** Adds a family; TypeError if its name is taken. */
  add<F extends Family>(family: F): F {
    if (this.#families.some((f) => f.name === family.name)) {
      throw new TypeError(`Metric ${family.name} registered twice`);
    }
    this.#families.push(family);
    return family;
  }

  /** Every family as it is rendered. */
  snapshot(): FamilySnapshot[] {
    return this.#families.map((family) => family.snapshot());
  }

  /** The text exposition format of every family. */
  render(): string {
    return renderExposition(this.snapshot());
  }
}
