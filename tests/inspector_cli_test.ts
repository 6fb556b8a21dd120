// The inspector from the command line: client.ts logs its URL and serves it, --no-inspect
// and --raw have none, a taken port is a clear error, a non-loopback address a warning.

import assert from "node:assert/strict";
import { parseInspectAddress } from "../lib/client/options.ts";
import { readClientCommand } from "../lib/client/command.ts";
import { HOST, spawnCli, startApp, startTestServer, T, waitFor } from "./helpers.ts";

const INSPECTOR_LINE = /^Inspector (http:\/\/\S+)$/m;

Deno.test({
  name: "client.ts logs 'Inspector URL' and serves it: requests through the tunnel are listed",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer();
    const client = spawnCli("client.ts", [
      String(app.addr.port),
      "--server",
      `http://${HOST}:${server.addr.port}`,
      "--subdomain",
      "cli-insp",
      "--local-host",
      HOST,
    ]);
    try {
      await client.firstLine();
      await waitFor(() => INSPECTOR_LINE.test(client.output().stderr), 5000, "the inspector line");
      const url = INSPECTOR_LINE.exec(client.output().stderr)![1]!;
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const http = Deno.createHttpClient({ allowHost: true });
      try {
        const visit = await fetch(`http://${HOST}:${server.addr.port}/name`, {
          client: http,
          headers: { host: `cli-insp.localhost:${server.addr.port}` },
        });
        assert.equal(await visit.text(), "hello from app\n");
      } finally {
        http.close();
      }
      let requests: { target: string }[] = [];
      await waitFor(
        async () => {
          requests = (await (await fetch(`${url}/api/requests`)).json()).requests;
          return requests.length === 1;
        },
        5000,
        "the request in the inspector",
      );
      assert.equal(requests[0]!.target, "/name");
    } finally {
      const end = await client.stop("SIGINT");
      assert.equal(end.code, 0, end.stderr);
    }
  },
});

Deno.test({
  name: "client.ts: an inspector port that is taken is an error naming it; --no-inspect has none",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer();
    using taken = Deno.listen({ hostname: HOST, port: 0 });
    const args = [String(app.addr.port), "--server", `http://${HOST}:${server.addr.port}`];
    const refused = await spawnCli("client.ts", [
      ...args,
      "--inspect",
      `${HOST}:${taken.addr.port}`,
    ]).exited;
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      new RegExp(
        `gotunnel-client: Cannot start the inspector on 127\\.0\\.0\\.1:${taken.addr.port}: ` +
          "address in use \\(--inspect another address, or --no-inspect\\)",
      ),
    );
    for (const flag of ["--no-inspect", "--raw"]) {
      const client = spawnCli("client.ts", [...args, flag]);
      await client.firstLine();
      await waitFor(() => /Forwarding/.test(client.output().stderr), 5000, "the forwarding line");
      const end = await client.stop("SIGINT");
      assert.doesNotMatch(end.stderr, /Inspector/, flag);
    }
  },
});

Deno.test({
  name: "client.ts --inspect on an address other than loopback warns that anyone there sees it",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer();
    const client = spawnCli("client.ts", [
      String(app.addr.port),
      "--server",
      `http://${HOST}:${server.addr.port}`,
      "--inspect",
      "127.0.0.2:0", // another address, though still this machine's own
    ]);
    await client.firstLine();
    await waitFor(() => INSPECTOR_LINE.test(client.output().stderr), 5000, "the inspector line");
    const end = await client.stop("SIGINT");
    assert.match(end.stderr, /Inspector listens on 127\.0\.0\.2:\d+: anyone who can reach it/);
    assert.match(end.stderr, /^Inspector http:\/\/127\.0\.0\.2:\d+$/m);
  },
});

Deno.test("--inspect, --no-inspect, --inspect-limit and $GOTUNNEL_INSPECT read into options", async () => {
  assert.deepEqual(parseInspectAddress("4041"), { port: 4041 });
  assert.deepEqual(parseInspectAddress("0.0.0.0:4040"), { hostname: "0.0.0.0", port: 4040 });
  assert.deepEqual(parseInspectAddress("[::1]:0"), { hostname: "::1", port: 0 });
  assert.deepEqual(parseInspectAddress("localhost"), { hostname: "localhost" });
  for (const bad of ["70000", "a b", "host:port", "[::1", ""]) {
    assert.throws(() => parseInspectAddress(bad), /Invalid --inspect/, bad);
  }
  const inspect = async (args: string[], env: Record<string, string> = {}) => {
    const command = await readClientCommand(["3000", ...args], (name) => env[name]);
    return command.kind === "tunnels" ? command.options.inspect : undefined;
  };
  assert.deepEqual(await inspect([]), { limit: 500 }, "on by default: 4040-4050 on 127.0.0.1");
  assert.deepEqual(await inspect(["--inspect-limit", "20", "--inspect", "5000"]), {
    port: 5000,
    limit: 20,
  });
  assert.deepEqual(await inspect([], { GOTUNNEL_INSPECT: "127.0.0.1:0" }), {
    hostname: "127.0.0.1",
    port: 0,
    limit: 500,
  });
  assert.equal(await inspect([], { GOTUNNEL_INSPECT: "off" }), false);
  assert.equal(await inspect(["--no-inspect"]), false);
  assert.equal(await inspect(["--raw"]), false);
  for (
    const args of [
      ["--inspect", "1", "--no-inspect"],
      ["--raw", "--inspect", "1"],
      ["--inspect-limit", "0"],
    ]
  ) {
    await assert.rejects(inspect(args), /--inspect|--no-inspect/, args.join(" "));
  }
});
