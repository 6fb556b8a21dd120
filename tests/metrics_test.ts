// The metrics registry and its text renderer (pure), checked by the strict
// exposition parser, which is checked in turn on malformed inputs.

import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  Collected,
  Counter,
  Gauge,
  Histogram,
  MetricsRegistry,
  renderExposition,
} from "../lib/server/metrics.ts";
import { MinuteRate } from "../lib/server/tunnel_stats.ts";
import { parseExposition, sampleValue } from "./exposition.ts";

Deno.test("renderExposition() writes HELP and TYPE, then the samples, escaping as 0.0.4 says", () => {
  const text = renderExposition([{
    name: "demo_total",
    help: "Line one\nwith a \\ backslash",
    type: "counter",
    samples: [
      { name: "demo_total", labels: { path: 'a "quoted" \\ value\nnext' }, value: 3 },
      { name: "demo_total", labels: { path: "plain" }, value: 0.5 },
    ],
  }, {
    name: "odd",
    help: "Special values.",
    type: "gauge",
    samples: [
      { name: "odd", labels: { v: "inf" }, value: Infinity },
      { name: "odd", labels: { v: "-inf" }, value: -Infinity },
      { name: "odd", labels: { v: "nan" }, value: NaN },
    ],
  }]);
  assert.equal(
    text,
    "# HELP demo_total Line one\\nwith a \\\\ backslash\n" +
      "# TYPE demo_total counter\n" +
      'demo_total{path="a \\"quoted\\" \\\\ value\\nnext"} 3\n' +
      'demo_total{path="plain"} 0.5\n' +
      "# HELP odd Special values.\n" +
      "# TYPE odd gauge\n" +
      'odd{v="inf"} +Inf\n' +
      'odd{v="-inf"} -Inf\n' +
      'odd{v="nan"} NaN\n',
  );
  const parsed = parseExposition(text);
  assert.equal(parsed.get("demo_total")?.help, "Line one\nwith a \\ backslash");
  assert.equal(sampleValue(parsed, "demo_total", { path: 'a "quoted" \\ value\nnext' }), 3);
  assert.ok(Number.isNaN(sampleValue(parsed, "odd", { v: "nan" })));
});

Deno.test("renderExposition() refuses invalid metric, sample and label names", () => {
  const family = (name: string, sample: string, labels: Record<string, string> = {}) => ({
    name,
    help: "x",
    type: "gauge" as const,
    samples: [{ name: sample, labels, value: 1 }],
  });
  assert.throws(() => renderExposition([family("1abc", "1abc")]), TypeError);
  assert.throws(() => renderExposition([family("a-b", "a-b")]), TypeError);
  assert.throws(() => renderExposition([family("abc", "other")]), TypeError);
  assert.throws(() => renderExposition([family("abc", "abc", { "a-b": "x" })]), TypeError);
  assert.throws(() => renderExposition([family("abc", "abc", { __name: "x" })]), TypeError);
});

Deno.test("a histogram counts each value in the first bucket whose bound it does not pass", () => {
  const registry = new MetricsRegistry();
  const h = registry.add(new Histogram("wait_seconds", "Waits.", [0.1, 1, 10], ["kind"]));
  for (const v of [0, 0.1, 0.10001, 1, 5, 11, 1000]) h.observe(v, { kind: "a" });
  const parsed = parseExposition(registry.render());
  const bucket = (le: string) => sampleValue(parsed, "wait_seconds_bucket", { kind: "a", le });
  assert.deepEqual([bucket("0.1"), bucket("1"), bucket("10"), bucket("+Inf")], [2, 4, 5, 7]);
  assert.equal(sampleValue(parsed, "wait_seconds_count", { kind: "a" }), 7);
  assert.equal(sampleValue(parsed, "wait_seconds_sum", { kind: "a" }), 1017.20001);
  assert.throws(() => new Histogram("h", "x", [1, 1]), RangeError);
  assert.throws(() => new Histogram("h", "x", []), RangeError);
  assert.throws(() => new Histogram("h", "x", [1], ["le"]), TypeError);
});

Deno.test("metrics without labels exist at 0 from the start; labelled ones once counted", () => {
  const registry = new MetricsRegistry();
  registry.add(new Counter("plain_total", "A counter."));
  registry.add(new Histogram("plain_seconds", "A histogram.", [1]));
  const labelled = registry.add(new Counter("labelled_total", "Labelled.", ["result"]));
  let parsed = parseExposition(registry.render());
  assert.equal(sampleValue(parsed, "plain_total"), 0);
  assert.equal(sampleValue(parsed, "plain_seconds_bucket", { le: "+Inf" }), 0);
  assert.equal(parsed.get("labelled_total")?.samples.length, 0);
  labelled.inc({ result: "ok" }, 0);
  parsed = parseExposition(registry.render());
  assert.equal(sampleValue(parsed, "labelled_total", { result: "ok" }), 0);
});

Deno.test("counters and gauges check their labels; a counter never goes down", () => {
  const registry = new MetricsRegistry();
  const c = registry.add(new Counter("c_total", "C.", ["a", "b"]));
  const g = registry.add(new Gauge("g", "G."));
  c.inc({ b: "2", a: "1" }, 2);
  c.inc({ a: "1", b: "2" });
  assert.equal(c.get({ a: "1", b: "2" }), 3);
  assert.throws(() => c.inc({ a: "1" }), TypeError);
  assert.throws(() => c.inc({ a: "1", b: "2", c: "3" }), TypeError);
  assert.throws(() => c.inc({ a: "1", b: "2" }, -1), RangeError);
  g.set({}, 5);
  g.add({}, -7);
  assert.equal(g.get(), -2);
  assert.throws(() => registry.add(new Gauge("g", "again")), TypeError);
  registry.add(
    new Collected("live", "Read when rendered.", "gauge", () => [
      { labels: { x: "1" }, value: 42 },
    ]),
  );
  const parsed = parseExposition(registry.render());
  assert.equal(sampleValue(parsed, "c_total", { a: "1", b: "2" }), 3);
  assert.equal(sampleValue(parsed, "g"), -2);
  assert.equal(sampleValue(parsed, "live", { x: "1" }), 42);
});

Deno.test("any label value and help text survive rendering and strict parsing", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary" }), fc.string({ unit: "binary" }), (value, help) => {
      const registry = new MetricsRegistry();
      registry.add(new Counter("p_total", help, ["v"])).inc({ v: value }, 7);
      const parsed = parseExposition(registry.render());
      assert.equal(sampleValue(parsed, "p_total", { v: value }), 7);
      assert.equal(parsed.get("p_total")?.help, help);
    }),
    { numRuns: 300 },
  );
});

const HEAD = "# HELP m_total x\n# TYPE m_total counter\n";
const HISTOGRAM = "# TYPE h histogram\n";
const MALFORMED: [string, string][] = [
  ["a sample without TYPE", "m 1\n"],
  ["no line feed at the end", HEAD + "m_total 1"],
  ["a blank line", HEAD + "\nm_total 1\n"],
  ["a timestamp", HEAD + "m_total 1 1700000000000\n"],
  ["a bad value", HEAD + "m_total one\n"],
  ["a negative counter", HEAD + "m_total -1\n"],
  ["a repeated series", HEAD + 'm_total{a="1"} 1\nm_total{a="1"} 2\n'],
  ["a repeated label", HEAD + 'm_total{a="1",a="2"} 1\n'],
  ["a bad escape", HEAD + 'm_total{a="\\t"} 1\n'],
  ["an unterminated value", HEAD + 'm_total{a="1} 1\n'],
  ["a reserved label name", HEAD + 'm_total{__a="1"} 1\n'],
  ["a bad label name", HEAD + 'm_total{a-b="1"} 1\n'],
  ["no comma between labels", HEAD + 'm_total{a="1"b="2"} 1\n'],
  ["a TYPE after samples", "# HELP g x\ng 1\n# TYPE g gauge\n"],
  ["a second TYPE", "# TYPE g gauge\n# TYPE g gauge\ng 1\n"],
  ["a bad type", "# TYPE g meter\ng 1\n"],
  ["a family split apart", '# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x="1"} 2\n'],
  ["a counter sample named like a bucket", HEAD + 'm_total_bucket{le="1"} 1\n'],
  ["no +Inf bucket", HISTOGRAM + 'h_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
  [
    "buckets that go down",
    HISTOGRAM + 'h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
  ],
  [
    "bounds out of order",
    HISTOGRAM + 'h_bucket{le="2"} 1\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\n' +
    "h_count 1\n",
  ],
  ["a count that is not +Inf's", HISTOGRAM + 'h_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'],
  ["no _sum", HISTOGRAM + 'h_bucket{le="+Inf"} 1\nh_count 1\n'],
  ["le on _sum", HISTOGRAM + 'h_bucket{le="+Inf"} 1\nh_sum{le="1"} 1\nh_count 1\n'],
  ["HELP without TYPE", "# HELP g x\n"],
  ["a bad escape in HELP", "# HELP g a\\tb\n# TYPE g gauge\ng 1\n"],
];

Deno.test("parseExposition() refuses every malformed input it is shown", () => {
  for (const [what, text] of MALFORMED) {
    assert.throws(() => parseExposition(text), SyntaxError, what);
  }
  // ...and takes the forms the format allows: comments, a trailing comma, no HELP.
  const ok = parseExposition('# a comment\n# TYPE g gauge\ng{a="1",} 1e3\ng{a="2"} -.5\n');
  assert.equal(sampleValue(ok, "g", { a: "1" }), 1000);
  assert.equal(sampleValue(ok, "g", { a: "2" }), -0.5);
});

Deno.test("MinuteRate counts the last 60 seconds, slot by slot", () => {
  const rate = new MinuteRate();
  const t0 = 1_700_000_000_000;
  assert.equal(rate.count(t0), 0);
  for (let i = 0; i < 30; i++) rate.add(t0 + i * 1000);
  rate.add(t0 + 29_500);
  assert.equal(rate.count(t0 + 29_999), 31);
  assert.equal(rate.perSecond(t0 + 29_999), 31 / 60);
  assert.equal(rate.count(t0 + 60_000), 30); // the first second has left the window
  assert.equal(rate.count(t0 + 88_000), 2); // only the second of t0 + 29 s is left
  assert.equal(rate.count(t0 + 89_000), 0);
  rate.add(t0 + 120_000); // reuses the slot of t0
  assert.equal(rate.count(t0 + 120_000), 1);
});
