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

Deno.test("flags: --trusted-proxies takes CIDRs and addresses, repeated or comma-separated, and names a bad one", async () => {
  const { readServerCommand } = await import("../lib/server/options.ts");
  const command = await readServerCommand([
    "--trusted-proxies",
    "10.0.0.0/8,192.0.2.7",
    "--trusted-proxies=fd00::/8",
  ]);
  assert.ok(command.kind === "serve");
  assert.deepEqual(command.options.trustedProxies, ["10.0.0.0/8,192.0.2.7", "fd00::/8"]);
  const plain = await readServerCommand([]);
  assert.ok(plain.kind === "serve" && plain.options.trustedProxies === undefined, "off by default");
  const cases: [string, RegExp][] = [
    [
      "10.0.0.0/8,10.0.0.0/40",
      /^Invalid --trusted-proxies: "10\.0\.0\.0\/40": "40" is not a prefix length \(0-32\)$/,
    ],
    [
      "lb.internal",
      /^Invalid --trusted-proxies: "lb\.internal": "lb\.internal" is not an IPv4 or IPv6 address$/,
    ],
    ["10.0.0.0/8,,fd00::/8", /^Invalid --trusted-proxies: an empty entry$/],
    ["", /^Invalid --trusted-proxies: an empty entry$/],
  ];
  for (const [value, message] of cases) {
    await assert.rejects(
      readServerCommand(["--trusted-proxies", value]),
      (e) => e instanceof UsageError && message.test(e.message),
      value,
    );
  }
});
