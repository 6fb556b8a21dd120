// The JSR member packages as `deno run -A jsr:@gotunnel/client` and `jsr:@gotunnel/server` run them:
// their entry files as subprocesses, resolving @gotunnel/gotunnel through the workspace.

import assert from "node:assert/strict";
import { HOST, spawnCli, startApp } from "./helpers.ts";

const T = { timeout: 30_000 };

for (
  const [script, name] of [
    ["packages/server/mod.ts", "gotunnel-server"],
    ["packages/client/mod.ts", "gotunnel-client"],
  ] as const
) {
  Deno.test({
    name: `${script} --version prints the version and --help the usage, both exiting 0`,
    ...T,
    async fn() {
      const version = await spawnCli(script, ["--version"]).exited;
      assert.equal(version.code, 0, version.stderr);
      assert.equal(version.stdout, `${name} 0.1.0\n`);
      const help = await spawnCli(script, ["--help"]).exited;
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /^Usage: /m);
      assert.match(help.stdout, /--version/);
    },
  });
}

Deno.test({
  name: "packages/client/mod.ts exits 2 with a one-line error on a bad flag",
  ...T,
  async fn() {
    const end = await spawnCli("packages/client/mod.ts", ["3000", "--nope"]).exited;
    assert.equal(end.code, 2);
    assert.equal(end.stdout, "");
    assert.match(end.stderr, /^gotunnel-client: .+ \(see --help\)\n$/);
  },
});

Deno.test({
  name: "packages/server/mod.ts and packages/client/mod.ts carry a request end to end",
  ...T,
  async fn() {
    const app = startApp("member-app");
    const http = Deno.createHttpClient({ allowHost: true });
    const server = spawnCli("packages/server/mod.ts", ["--port", "0", "--hostname", HOST]);
    try {
      const port = new URL(await server.firstLine()).port;
      const client = spawnCli("packages/client/mod.ts", [
        String(app.addr.port),
        "--server",
        `http://${HOST}:${port}`,
        "--subdomain",
        "x",
        "--local-host",
        HOST,
      ]);
      try {
        assert.equal(await client.firstLine(), `http://x.localhost:${port}`);
        const res = await fetch(`http://${HOST}:${port}/`, {
          client: http,
          headers: { host: `x.localhost:${port}` },
        });
        assert.equal(res.status, 200);
        assert.equal(await res.text(), "hello from member-app\n");
      } finally {
        const end = await client.stop("SIGINT");
        assert.equal(end.code, 0, end.stderr);
      }
    } finally {
      const end = await server.stop("SIGTERM");
      http.close();
      await app.shutdown();
      assert.equal(end.code, 0, end.stderr);
    }
  },
});
