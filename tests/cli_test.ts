// The entrypoints as a user runs them: subprocesses of this Deno, real flags, real exit codes.

import assert from "node:assert/strict";
import { CLIENT_FLAGS } from "../lib/client/options.ts";
import { SERVER_FLAGS } from "../lib/server/options.ts";
import { HOST, rawApp, spawnCli, startApp, startTestServer, T } from "./helpers.ts";

Deno.test({
  name: "server.ts prints its URL alone on stdout, serves, and exits 0 on SIGTERM",
  ...T,
  async fn() {
    const server = spawnCli("server.ts", ["--port", "0", "--hostname", HOST]);
    const line = await server.firstLine();
    assert.match(line, /^http:\/\/localhost:\d+$/);
    const res = await fetch(`http://${HOST}:${new URL(line).port}/api/status`);
    assert.deepEqual(await res.json(), { version: "0.1.0", tunnels: 0 });
    const end = await server.stop("SIGTERM");
    assert.equal(end.code, 0, end.stderr);
    assert.equal(end.stdout, line + "\n");
    assert.match(end.stderr, /Listening/);
  },
});

Deno.test({
  name: "client.ts prints the tunnel URL, and exits 1 with a clear line when the name is taken",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer();
    const args = [String(app.addr.port), "--server", `http://${HOST}:${server.addr.port}`];
    const first = spawnCli("client.ts", [...args, "--subdomain", "cli", "--local-host", HOST]);
    assert.equal(await first.firstLine(), `http://cli.localhost:${server.addr.port}`);
    // Another user (no lease for "cli" in their cache) asks for the same name.
    const elsewhere = await Deno.makeTempDir();
    const second = await spawnCli("client.ts", [...args, "--subdomain", "cli"], {
      XDG_CACHE_HOME: elsewhere,
    }).exited;
    await Deno.remove(elsewhere, { recursive: true });
    assert.equal(second.code, 1);
    assert.equal(second.stdout, "");
    assert.match(
      second.stderr,
      /^gotunnel-client: Cannot register subdomain "cli": already in use\n$/m,
    );
    assert.equal((await first.stop("SIGINT")).code, 0);
  },
});

Deno.test({
  name: "client.ts exits 1 when the server cannot be reached",
  ...T,
  async fn() {
    // A listener that closes every connection at once: not a Gotunnel server.
    await using closer = rawApp(() => {});
    const end = await spawnCli("client.ts", ["3000", "--server", `http://${HOST}:${closer.port}`])
      .exited;
    assert.equal(end.code, 1);
    assert.match(end.stderr, /gotunnel-client: Cannot connect to http:\/\/127\.0\.0\.1:\d+: /);
  },
});

for (
  const [script, name, flags] of [
    ["server.ts", "gotunnel-server", SERVER_FLAGS],
    ["client.ts", "gotunnel-client", CLIENT_FLAGS],
  ] as const
) {
  Deno.test({
    name: `${script} --help lists every flag the parser takes, --version prints the version`,
    ...T,
    async fn() {
      const help = await spawnCli(script, ["--help"]).exited;
      assert.equal(help.code, 0);
      assert.match(help.stdout, /^Usage: /m);
      // Each option line starts with its flag (and its short form): `  -h, --help   show...`.
      const documented = [...help.stdout.matchAll(/^ +(?:-(\w), )?--([\w-]+)/gm)]
        .map(([, short, flag]) => short ? `-${short}, --${flag}` : `--${flag}`);
      const taken = Object.entries(flags).map(([flag, spec]) =>
        "short" in spec ? `-${spec.short}, --${flag}` : `--${flag}`
      );
      assert.deepEqual(documented.toSorted(), taken.toSorted());
      assert.match(help.stdout, /Examples:/);
      const version = await spawnCli(script, ["--version"]).exited;
      assert.equal(version.stdout, `${name} 0.1.0\n`);
    },
  });
}

const badArgs: [string, string[]][] = [
  ["server.ts", ["--nope"]],
  ["server.ts", ["--port", "http"]],
  ["server.ts", ["--port", "70000"]],
  ["server.ts", ["--domain", "not a domain"]],
  ["server.ts", ["--log-format", "xml"]],
  ["server.ts", ["extra"]],
  // ACME: terms never accepted silently; flags that need another, or exclude one.
  ["server.ts", ["--acme-email", "ops@example.com"]],
  ["server.ts", ["--acme-dns-hook", "/bin/true"]],
  ["server.ts", ["--acme-email", "ops@example.com", "--acme-agree-tos", "--acme-names", "a.b"]],
  ["server.ts", [
    "--acme-email",
    "ops@example.com",
    "--acme-agree-tos",
    "--acme-orders-per-hour",
    "9",
  ]],
  ["server.ts", [
    "--acme-email",
    "ops@example.com",
    "--acme-agree-tos",
    "--acme-staging",
    "--acme-directory",
    "https://ca.test/dir",
  ]],
  ["server.ts", [
    "--acme-email",
    "ops@example.com",
    "--acme-agree-tos",
    "--tls-cert",
    "tests/fixtures/localhost.pem",
    "--tls-key",
    "tests/fixtures/localhost.key",
  ]],
  ["client.ts", []],
  ["client.ts", ["--nope", "3000"]],
  ["client.ts", ["0"]],
  ["client.ts", ["3000", "4000"]],
  ["client.ts", ["3000", "--pool", "0"]],
  ["client.ts", ["3000", "--subdomain", "-x-"]],
  ["client.ts", ["3000", "--subdomain=-x-"]],
  ["client.ts", ["3000", "--subdomain", "a.b"]],
  ["client.ts", ["3000", "--server", "ftp://example.com"]],
  ["client.ts", ["3000", "--log-level", "loud"]],
  ["client.ts", ["3000", "--server"]],
  ["client.ts", ["3000", "--local-host", "a b"]],
];
for (const [script, args] of badArgs) {
  Deno.test({
    name: `${script} ${args.join(" ")} exits 2 with a one-line error`,
    ...T,
    async fn() {
      const end = await spawnCli(script, args).exited;
      assert.equal(end.code, 2);
      assert.equal(end.stdout, "");
      assert.match(end.stderr, /^gotunnel-(server|client): .+ \(see --help\)\n$/);
    },
  });
}

Deno.test({
  name: "deno task demo: the demo runs end to end and exits 0 with --once",
  ...T,
  async fn() {
    const end = await spawnCli("examples/demo.ts", ["--once"]).exited;
    assert.equal(end.code, 0, end.stderr);
    assert.match(end.stdout, /GET http:\/\/demo\.localhost:\d+\/ through the tunnel: 200/);
    assert.match(end.stdout, /Hello through Gotunnel!/);
    // The HTTP-aware client told the app who asked and by which public name.
    assert.match(
      end.stdout,
      /as demo\.localhost:\d+\s+\(X-Forwarded-Host[^]*by visitor 127\.0\.0\.1/,
    );
  },
});
