// Tokens: who may open tunnels, and for which subdomains.

import assert from "node:assert/strict";
import { TunnelError } from "../lib/errors.ts";
import { Auth, parseTokensFile, type TokenScope } from "../lib/server/auth.ts";
import { HOST, openTestTunnel, spawnCli, startTestServer, T } from "./helpers.ts";

const ANY = "any-subdomain-token-0123456789";
const SCOPED = "only-demo-and-docs-0123456789";

const refused = (pattern: RegExp) => (e: unknown): boolean =>
  e instanceof TunnelError && e.code === "unauthorized" && pattern.test(e.message);

Deno.test({
  name: "a server with tokens refuses clients without one or with a wrong one",
  ...T,
  async fn() {
    await using server = await startTestServer({ tokens: new Map([[ANY, "*"]]) });
    await assert.rejects(openTestTunnel(server, 9), refused(/requires a token/));
    await assert.rejects(openTestTunnel(server, 9, { token: ANY + "x" }), refused(/Invalid token/));
    const ok = await openTestTunnel(server, 9, { token: ANY, subdomain: "mine" });
    assert.equal(ok.subdomain, "mine");
    await ok.close();
    const random = await openTestTunnel(server, 9, { token: ANY });
    assert.match(random.subdomain, /^[a-z0-9]{10}$/);
    await random.close();
  },
});

Deno.test({
  name: "a scoped token claims only its subdomains",
  ...T,
  async fn() {
    await using server = await startTestServer({ tokens: new Map([[SCOPED, ["demo", "docs"]]]) });
    const demo = await openTestTunnel(server, 9, { token: SCOPED, subdomain: "demo" });
    await demo.close();
    await assert.rejects(
      openTestTunnel(server, 9, { token: SCOPED, subdomain: "blog" }),
      refused(/may only claim "demo", "docs", not "blog"/),
    );
    await assert.rejects(openTestTunnel(server, 9, { token: SCOPED }), refused(/--subdomain/));
  },
});

Deno.test("parseTokensFile() reads tokens, scopes and comments, and names a bad line", () => {
  const rules = parseTokensFile(
    `# team tokens\n${ANY}\n${SCOPED} demo,Docs  # the docs site\n\nstar-token-0123456789 *\n`,
  );
  assert.deepEqual([...rules], [[ANY, "*"], [SCOPED, ["demo", "docs"]], [
    "star-token-0123456789",
    "*",
  ]]);
  assert.throws(() => parseTokensFile("short demo"), /Line 1/);
  assert.throws(() => parseTokensFile(`${ANY}\n${SCOPED} bad_name`), /Line 2: invalid subdomain/);
  assert.throws(() => parseTokensFile(`${ANY} a b`), /Line 1/);
});

Deno.test("parseTokensFile() reads port ranges and hostnames in scopes, and names a bad one", () => {
  const rules = parseTokensFile(
    `${SCOPED} demo,tcp:20000-20010,tcp:2222,host:App.Example.com,host:*.example.org\n`,
  );
  assert.deepEqual([...rules], [[SCOPED, [
    "demo",
    "tcp:20000-20010",
    "tcp:2222",
    "host:app.example.com",
    "host:*.example.org",
  ]]]);
  for (const bad of ["tcp:0", "tcp:20010-20000", "tcp:70000", "tcp:x", "host:1.2.3.4", "host:*"]) {
    assert.throws(() => parseTokensFile(`${SCOPED} ${bad}`), /Line 1: invalid/, bad);
  }
});

Deno.test("Auth scopes: * is any subdomain and port but no hostname; lists allow what they name", async () => {
  const auth = await Auth.create(
    new Map<string, TokenScope>([
      [ANY, "*"],
      [SCOPED, ["demo", "tcp:20000-20010", "host:*.example.org"]],
    ]),
  );
  const key = async (token: string) => {
    const who = await auth.identify(token);
    assert.ok(who.ok);
    return who.key;
  };
  const any = await key(ANY);
  const scoped = await key(SCOPED);
  assert.equal(auth.refusal(any, { kind: "port", port: 1 }), undefined);
  assert.equal(auth.refusal(any, { kind: "subdomain", name: undefined }), undefined);
  assert.match(auth.refusal(any, { kind: "host", host: "a.example.org" })!, /host:a\.example\.org/);
  assert.equal(auth.refusal(scoped, { kind: "port", port: 20005 }), undefined);
  assert.equal(auth.refusal(scoped, { kind: "port", port: undefined }), undefined);
  assert.match(auth.refusal(scoped, { kind: "port", port: 20011 })!, /only 20000-20010/);
  assert.equal(auth.refusal(scoped, { kind: "host", host: "shop.example.org" }), undefined);
  assert.ok(auth.refusal(scoped, { kind: "host", host: "example.org" }));
  assert.ok(auth.refusal(scoped, { kind: "host", host: "a.b.example.orgx" }));
  assert.deepEqual(auth.portRanges(scoped), [[20000, 20010]]);
  assert.equal(auth.portRanges(any), undefined);
  // With no tokens at all, ports are open and hostnames closed.
  const open = await Auth.create(undefined);
  assert.equal(open.refusal(undefined, { kind: "port", port: 1 }), undefined);
  assert.ok(open.refusal(undefined, { kind: "host", host: "a.example.org" }));
});

Deno.test({
  name: "client.ts with a wrong token exits 1 at once with a clear line",
  ...T,
  async fn() {
    await using server = await startTestServer({ tokens: new Map([[ANY, "*"]]) });
    const started = Date.now();
    const end = await spawnCli("client.ts", [
      "3000",
      "--server",
      `http://${HOST}:${server.addr.port}`,
      "--token",
      "wrong-token-0123456789",
    ]).exited;
    assert.equal(end.code, 1);
    assert.match(end.stderr, /gotunnel-client: Cannot open tunnel: Invalid token\n$/);
    assert.ok(Date.now() - started < 10_000, "no retry loop");
  },
});

Deno.test({
  name:
    "server.ts takes tunnels with the tokens of --token and --tokens-file (scoped as the file " +
    "says), and refuses bad ones with status 2",
  ...T,
  async fn() {
    const file = await Deno.makeTempFile();
    await Deno.writeTextFile(file, `${SCOPED} demo\n`);
    const args = ["--port", "0", "--hostname", HOST];
    const server = spawnCli("server.ts", [...args, "--token", ANY, "--tokens-file", file]);
    try {
      const cli = { addr: { port: Number(new URL(await server.firstLine()).port) } };
      const demo = await openTestTunnel(cli, 9, { token: SCOPED, subdomain: "demo" });
      assert.equal(demo.subdomain, "demo");
      await demo.close();
      await assert.rejects(
        openTestTunnel(cli, 9, { token: SCOPED, subdomain: "docs" }),
        refused(/may only claim "demo", not "docs"/),
      );
      const any = await openTestTunnel(cli, 9, { token: ANY, subdomain: "docs" });
      assert.equal(any.subdomain, "docs");
      await any.close();
      await assert.rejects(openTestTunnel(cli, 9), refused(/requires a token/));
      const end = await server.stop("SIGTERM");
      assert.equal(end.code, 0);
      assert.doesNotMatch(end.stderr, /Open server/);
      await Deno.writeTextFile(file, "short demo\n");
      for (
        const bad of [["--token", "short"], ["--tokens-file", file], [
          "--tokens-file",
          file + ".missing",
        ]]
      ) {
        const end = await spawnCli("server.ts", [...args, ...bad]).exited;
        assert.equal(end.code, 2, bad.join(" "));
        assert.match(end.stderr, /^gotunnel-server: .+\n$/);
      }
      const open = spawnCli("server.ts", args);
      await open.firstLine();
      assert.match((await open.stop("SIGTERM")).stderr, /Open server/);
    } finally {
      await server.stop();
      await Deno.remove(file);
    }
  },
});
