// `deno task fuzz`: the parsers' properties on RUNS inputs each (default 1,000,000).
// Stops at the first counterexample and prints it (fast-check shrinks it first).

import fc from "npm:fast-check@4.10.2";
import {
  frameProperty,
  http1Property,
  sniffProperty,
  streamNoiseProperty,
  streamProperty,
} from "../tests/properties.ts";

const RUNS = Number(Deno.env.get("RUNS") ?? 1_000_000);
const fixtures = [
  "chromium-clienthello.bin",
  "chromium-http-get.bin",
  "curl-http-get.bin",
  "curl-http-post.bin",
  "openssl-clienthello.bin",
  "openssl-clienthello-nosni.bin",
].map((name) => Deno.readFileSync(new URL(`../tests/fixtures/${name}`, import.meta.url)));

for (
  const [name, property] of [
    ["sniff", sniffProperty(fixtures)],
    ["frames", frameProperty],
    ["http1", http1Property],
    ["stream", streamProperty],
    ["stream-noise", streamNoiseProperty],
  ] as const
) {
  const started = performance.now();
  fc.assert(property as fc.IPropertyWithHooks<unknown[]>, { numRuns: RUNS });
  // deno-lint-ignore no-console -- the report is the output
  console.log(
    `${name}: ${RUNS.toLocaleString("en-US")} inputs, no failure (${
      ((performance.now() - started) / 1000).toFixed(1)
    } s)`,
  );
}
