// The flag parser both entrypoints share: every form a user types, and every mistake named.

import assert from "node:assert/strict";
import { parseFlags, UsageError } from "../lib/cli.ts";

const SPEC = {
  port: { type: "string" },
  token: { type: "string", multiple: true },
  quiet: { type: "boolean", short: "q" },
} as const;

Deno.test("flags: values inline or next, switches, short aliases, repeats and --", () => {
  const { values, positionals } = parseFlags(
    ["3000", "--port", "8080", "-q", "--token=a", "--token", "b=c", "-", "--", "--quiet"],
    SPEC,
  );
  assert.deepEqual(values, { port: "8080", quiet: true, token: ["a", "b=c"] });
  assert.deepEqual(positionals, ["3000", "-", "--quiet"]);
  assert.deepEqual(parseFlags(["--port="], SPEC).values, { port: "" });
});

Deno.test("flags: each mistake is a one-line UsageError that says what to do", () => {
  const cases: [string[], RegExp][] = [
    [["--prot", "1"], /^Unknown flag --prot: did you mean --port\?$/],
    [["-x"], /^Unknown flag -x$/],
    [["--port"], /^--port needs a value$/],
    [["--port", "-q"], /^--port needs a value, not -q \(.*write --port=-q\)$/],
    [["--quiet=yes"], /^--quiet takes no value$/],
    [["-q=1"], /^-q takes no value$/],
  ];
  for (const [args, message] of cases) {
    assert.throws(
      () => parseFlags(args, SPEC),
      (e) => e instanceof UsageError && message.test(e.message),
    );
  }
  assert.throws(
    () => parseFlags(["--lport"], SPEC, { lport: "that is ngrok's; use a positional port" }),
    /^UsageError: Unknown flag --lport: that is ngrok's/,
  );
});
