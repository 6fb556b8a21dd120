// A new user's first ten minutes: the landing page tells the real command, the
// client says where it forwards, targets and flags are read the way people type
// them, and every error says what to do.

import assert from "node:assert/strict";
import { parseTarget } from "../lib/client/options.ts";
import { UsageError } from "../lib/cli.ts";
import { TunnelError } from "../lib/errors.ts";
import {
  HOST,
  openTestTunnel,
  rawRequest,
  readFixtureText,
  spawnCli,
  startApp,
  startTestServer,
  T,
  tcpHop,
  waitFor,
} from "./helpers.ts";

Deno.test({
  name:
    "the landing page shows the client command for this server, and says when a token is needed",
  ...T,
  async fn() {
    for (const tokens of [undefined, new Map([["a-token-of-16-chars", "*" as const]])]) {
      await using server = await startTestServer(tokens ? { tokens } : {});
      const page = await rawRequest(
        server.addr.port,
        `GET / HTTP/1.1\r\nHost: localhost:${server.addr.port}\r\nConnection: close\r\n\r\n`,
      );
      const command = `client 3000 --server http://localhost:${server.addr.port}`;
      assert.ok(page.includes(`deno run -A jsr:@gotunnel/${command}`), page);
      assert.ok(page.includes(`deno run -A client.ts 3000 --server http://localhost:`));
      assert.equal(page.includes("--token YOUR_TOKEN"), tokens !== undefined);
      assert.equal(/requires a token/.test(page), tokens !== undefined);
    }
  },
});

Deno.test({
  name: "server.ts logs both listen addresses; the landing page names the https:// server",
  ...T,
  async fn() {
    const server = spawnCli("server.ts", [
      "--port=0",
      `--hostname=${HOST}`,
      "--tls-port=0",
      "--tls-cert=tests/fixtures/localhost.pem",
      "--tls-key=tests/fixtures/localhost.key",
    ]);
    const url = await server.firstLine();
    assert.match(url, /^https:\/\/localhost:\d+$/);
    const end = await server.stop("SIGTERM");
    assert.match(end.stderr, new RegExp(`Listening url=${url} addr=127\\.0\\.0\\.1:\\d+`));
    assert.match(end.stderr, /Listening for HTTPS addr=127\.0\.0\.1:\d+/);
  },
});

Deno.test({
  name: "client.ts prints the URL alone on stdout and 'Forwarding URL → app' on stderr",
  ...T,
  async fn() {
    const app = startApp();
    await using server = await startTestServer();
    try {
      const client = spawnCli("client.ts", [
        `http://${HOST}:${app.addr.port}`,
        "--server",
        `http://${HOST}:${server.addr.port}`,
        "--subdomain",
        "banner",
      ]);
      const url = await client.firstLine();
      assert.equal(url, `http://banner.localhost:${server.addr.port}`);
      // The target named a host: it is also the Host header the app sees.
      const answer = await rawRequest(
        server.addr.port,
        `GET /whoami HTTP/1.1\r\nHost: banner.localhost\r\nConnection: close\r\n\r\n`,
      );
      assert.match(answer, new RegExp(`"host":"127\\.0\\.0\\.1:${app.addr.port}"`));
      const end = await client.stop("SIGINT");
      assert.equal(end.stdout, url + "\n");
      assert.ok(end.stderr.includes(`Forwarding ${url} → http://127.0.0.1:${app.addr.port}\n`));
      assert.doesNotMatch(end.stderr, /Nothing is listening/);
    } finally {
      await app.shutdown();
    }
  },
});

Deno.test({
  name: "client.ts warns when nothing listens on the local port, and the tunnel still comes up",
  ...T,
  async fn() {
    await using server = await startTestServer();
    const probe = Deno.listen({ hostname: HOST, port: 0 });
    const port = probe.addr.port;
    probe.close();
    const client = spawnCli("client.ts", [
      `${HOST}:${port}`,
      "--server",
      `http://${HOST}:${server.addr.port}`,
    ]);
    assert.match(await client.firstLine(), /^http:\/\/[a-z0-9]{10}\.localhost:\d+$/);
    const end = await client.stop("SIGINT");
    assert.match(
      end.stderr,
      new RegExp(`Nothing is listening on http://127\\.0\\.0\\.1:${port} yet: start your app`),
    );
  },
});

Deno.test("parseTarget() reads a port, host:port, [v6]:port and http(s) URLs", () => {
  assert.deepEqual(parseTarget("3000"), {
    host: "localhost",
    port: 3000,
    hostGiven: false,
    https: false,
  });
  assert.deepEqual(parseTarget("localhost:3000"), {
    host: "localhost",
    port: 3000,
    hostGiven: true,
    https: false,
  });
  assert.deepEqual(parseTarget("[::1]:8080"), {
    host: "::1",
    port: 8080,
    hostGiven: true,
    https: false,
  });
  assert.deepEqual(parseTarget("http://127.0.0.1:3000"), {
    host: "127.0.0.1",
    port: 3000,
    hostGiven: true,
    https: false,
  });
  assert.deepEqual(parseTarget("https://localhost:8443"), {
    host: "localhost",
    port: 8443,
    hostGiven: true,
    https: true,
  });
  assert.equal(parseTarget("https://app.internal").port, 443);
  for (const bad of ["0", "70000", "host:", "ftp://x:1", "http://x:1/path", "a b:1", ":3000"]) {
    assert.throws(() => parseTarget(bad), UsageError, bad);
  }
});

Deno.test({
  name: "an https:// target implies --local-https; --allow-invalid-cert needs it",
  ...T,
  async fn() {
    const ok = await spawnCli("client.ts", ["http://127.0.0.1:1", "--allow-invalid-cert"]).exited;
    assert.equal(ok.code, 2);
    assert.match(ok.stderr, /--allow-invalid-cert needs --local-https \(or an https:\/\/ target\)/);
  },
});

const usage: [string, string[], RegExp][] = [
  ["client.ts", ["--port", "3000"], /Unknown flag --port: the local port is positional/],
  [
    "client.ts",
    ["3000", "--subdomian", "x"],
    /Unknown flag --subdomian: did you mean --subdomain\?/,
  ],
  ["server.ts", ["--domian", "x"], /Unknown flag --domian: did you mean --domain\?/],
  ["client.ts", ["3000", "--zzzzzzzz"], /Unknown flag --zzzzzzzz \(see --help\)/],
  [
    "server.ts",
    ["--tls-cert", "tests/fixtures/localhost.key", "--tls-key", "tests/fixtures/localhost.pem"],
    /--tls-cert tests\/fixtures\/localhost\.key holds no PEM certificate but a private key: are --tls-cert and --tls-key swapped\?/,
  ],
  [
    "server.ts",
    ["--tls-cert", "tests/fixtures/localhost.pem", "--tls-key", "no-such.key"],
    /Cannot read --tls-key no-such\.key: /,
  ],
];
for (const [script, args, expected] of usage) {
  Deno.test({
    name: `${script} ${args.join(" ")}: a usage error that says what to do`,
    ...T,
    async fn() {
      const end = await spawnCli(script, args).exited;
      assert.equal(end.code, 2);
      assert.match(end.stderr, expected);
    },
  });
}

Deno.test({
  name: "server.ts with a busy TLS port names the TLS port",
  ...T,
  async fn() {
    const busy = Deno.listen({ hostname: HOST, port: 0 });
    try {
      const end = await spawnCli("server.ts", [
        "--port=0",
        `--hostname=${HOST}`,
        `--tls-port=${busy.addr.port}`,
        "--tls-cert=tests/fixtures/localhost.pem",
        "--tls-key=tests/fixtures/localhost.key",
      ]).exited;
      assert.equal(end.code, 1);
      assert.match(
        end.stderr,
        new RegExp(
          `Cannot listen on 127\\.0\\.0\\.1:${busy.addr.port} \\(TLS port\\): address already in use`,
        ),
      );
    } finally {
      busy.close();
    }
  },
});

Deno.test({
  name:
    "client errors say what to try: not running, https to a plain port, http to TLS, unknown CA",
  ...T,
  async fn() {
    const probe = Deno.listen({ hostname: HOST, port: 0 });
    const nobody = probe.addr.port;
    probe.close();
    const refused = await spawnCli("client.ts", ["3000", "--server", `http://${HOST}:${nobody}`])
      .exited;
    assert.match(
      refused.stderr,
      /connection refused \(is a Gotunnel server running at http:\/\/127\.0\.0\.1:\d+\?\)/,
    );
    await using plain = await startTestServer();
    const toPlain = await spawnCli("client.ts", [
      "3000",
      "--server",
      `https://${HOST}:${plain.addr.port}`,
    ]).exited;
    assert.equal(toPlain.code, 1);
    assert.match(
      toPlain.stderr,
      /closed the connection during the TLS handshake \(a plain http:\/\/ port\? try --server http:\/\/127\.0\.0\.1:\d+\)/,
    );
    // A plain port that answers TLS with HTTP bytes.
    const http = Deno.listen({ hostname: HOST, port: 0 });
    const answering = (async () => {
      for await (const conn of http) {
        await conn.write(new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\n\r\n"));
        conn.close();
      }
    })();
    const toHttp = await spawnCli("client.ts", [
      "3000",
      "--server",
      `https://${HOST}:${http.addr.port}`,
    ])
      .exited;
    http.close();
    await answering;
    assert.match(
      toHttp.stderr,
      /does not speak TLS on port \d+ \(try --server http:\/\/127\.0\.0\.1:\d+\)/,
    );
    await using secure = await startTestServer({
      tls: {
        cert: readFixtureText("localhost.pem"),
        key: readFixtureText("localhost.key"),
        port: 0,
      },
    });
    const unknownCa = await spawnCli("client.ts", [
      "3000",
      "--server",
      `https://localhost:${secure.tlsAddr!.port}`,
    ]).exited;
    assert.equal(unknownCa.code, 1);
    assert.match(unknownCa.stderr, /UnknownIssuer.*pass its certificate with --ca FILE/);
  },
});

Deno.test({
  name: "a name reserved for its previous client: the client's error mentions --wait",
  ...T,
  async fn() {
    await using server = await startTestServer({ leaseMs: 10_000 });
    const app = startApp();
    try {
      await using hop = tcpHop(server.addr.port);
      const gone = await openTestTunnel(server, app.addr.port, {
        subdomain: "held",
        server: `http://${HOST}:${hop.port}`,
      });
      await waitFor(() => server.tunnels()[0]?.answered === true, 5_000, "the welcome answered");
      hop.refuse(); // it cannot come back...
      hop.cut(); // ...and said no bye: the name is held for the lease
      await waitFor(() => server.tunnelCount === 0, 5_000, "the server to notice");
      const elsewhere = await Deno.makeTempDir();
      const other = await spawnCli("client.ts", [
        "3000",
        "--server",
        `http://${HOST}:${server.addr.port}`,
        "--subdomain",
        "held",
      ], { XDG_CACHE_HOME: elsewhere }).exited;
      await Deno.remove(elsewhere, { recursive: true });
      assert.equal(other.code, 1);
      assert.match(
        other.stderr,
        /reserved for its previous client .* \(--wait waits until it is free\)/,
      );
      await gone.close();
    } finally {
      await app.shutdown();
    }
  },
});

Deno.test({
  name: "a half-dead tunnel of the same client is replaced after a 2 s probe, a live one is not",
  ...T,
  async fn() {
    await using server = await startTestServer();
    const file = await Deno.makeTempFile();
    try {
      await using hop = tcpHop(server.addr.port);
      const stale = await openTestTunnel(server, 9, {
        subdomain: "moved",
        server: `http://${HOST}:${hop.port}`,
        leaseFile: file,
      });
      await waitFor(() => Deno.readTextFileSync(file).includes("moved"), 5_000, "the lease file");
      // The same user (same lease file, same server URL) starts a second client.
      const again = { subdomain: "moved", server: `http://${HOST}:${hop.port}`, leaseFile: file };
      await assert.rejects(
        openTestTunnel(server, 9, again),
        (e) => e instanceof TunnelError && /already online from this machine/.test(e.message),
      );
      hop.blackhole(); // the old network is gone, silently: its session cannot answer
      const started = performance.now();
      const fresh = await openTestTunnel(server, 9, again);
      const took = performance.now() - started;
      assert.ok(took >= 1_900 && took < 5_000, `replaced after ${took.toFixed(0)} ms`);
      assert.equal(server.tunnelCount, 1);
      await fresh.close();
      await stale.close();
    } finally {
      await Deno.remove(file);
    }
  },
});
