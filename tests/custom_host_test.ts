// Custom hostnames (a client's own name, CNAME'd to the server, with a token whose
// scope names it) and the default tunnel (a server for one app, no wildcard DNS).

import assert from "node:assert/strict";
import { TunnelError } from "../lib/errors.ts";
import type { TokenScope } from "../lib/server/auth.ts";
import {
  connect,
  HOST,
  openTestTunnel,
  pingOverTls,
  pongApp,
  rawRequest,
  readFixtureText,
  startApp,
  startTestServer,
  T,
} from "./helpers.ts";

const TLS = { cert: readFixtureText("localhost.pem"), key: readFixtureText("localhost.key") };
const CA = [readFixtureText("ca.pem")];
const SCOPED = "token-for-app-localhost";
const WILDCARD = "token-for-gotunnel-test";
const ANY = "token-for-any-subdomain";

const get = (port: number, host: string): Promise<string> =>
  rawRequest(port, `GET /whoami HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

Deno.test({
  name: "a custom hostname with a scoped token is routed by Host and by TLS SNI; its URL says it",
  ...T,
  async fn() {
    const app = startApp("custom");
    await using tlsApp = pongApp(TLS);
    await using server = await startTestServer({
      domain: "tunnel.test",
      tokens: new Map<string, TokenScope>([
        [SCOPED, ["host:app.localhost"]],
        [WILDCARD, ["host:*.gotunnel.test"]],
      ]),
    });
    try {
      await using tunnel = await openTestTunnel(server, app.addr.port, {
        customDomain: "App.Localhost",
        token: SCOPED,
      });
      assert.equal(tunnel.url, `http://app.localhost:${server.addr.port}`);
      assert.equal(tunnel.subdomain, "app.localhost");
      const answer = await get(server.addr.port, `app.localhost:${server.addr.port}`);
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.match(answer, /"name":"custom"/);
      // A name under a wildcard scope, with TLS end to end to the app, routed by its SNI.
      await using secure = await openTestTunnel(server, tlsApp.port, {
        customDomain: "shop.gotunnel.test",
        token: WILDCARD,
      });
      assert.equal(secure.url, `http://shop.gotunnel.test:${server.addr.port}`);
      const tcp = await connect(server.addr.port);
      assert.equal(await pingOverTls(tcp, "shop.gotunnel.test", CA), "pong:ping");
      // Other names stay unknown.
      assert.match(await get(server.addr.port, "other.localhost"), /^HTTP\/1\.1 404 /);
    } finally {
      await app.shutdown();
    }
  },
});

Deno.test({
  name:
    "a custom hostname is refused without a token scoped to it, without a token, or under the domain",
  ...T,
  async fn() {
    await using server = await startTestServer({
      domain: "tunnel.test",
      tokens: new Map<string, TokenScope>([[SCOPED, ["host:app.localhost"]], [ANY, "*"]]),
    });
    const refused = (code: string, pattern: RegExp) => (e: unknown) =>
      e instanceof TunnelError && e.code === code && pattern.test(e.message);
    await assert.rejects(
      openTestTunnel(server, 9, { customDomain: "app.localhost", token: ANY }),
      refused("unauthorized", /only a token whose scope names it \(host:app\.localhost\)/),
    );
    await assert.rejects(
      openTestTunnel(server, 9, { customDomain: "other.localhost", token: SCOPED }),
      refused("unauthorized", /"other\.localhost"/),
    );
    await assert.rejects(
      openTestTunnel(server, 9, { customDomain: "x.tunnel.test", token: SCOPED }),
      refused("invalid-host", /under the server's own domain/),
    );
    await assert.rejects(
      openTestTunnel(server, 9, { customDomain: "127.0.0.1", token: SCOPED }),
      refused("invalid-host", /DNS name/),
    );
    // An open server (no tokens) never gives out a custom hostname.
    await using open = await startTestServer({ domain: "tunnel.test" });
    await assert.rejects(
      openTestTunnel(open, 9, { customDomain: "app.localhost" }),
      refused("unauthorized", /host:app\.localhost/),
    );
  },
});

Deno.test({
  name: "--default-tunnel takes unknown hosts; the apex and IP addresses only with its apex option",
  ...T,
  async fn() {
    const app = startApp("main");
    try {
      for (const apex of [false, true]) {
        await using server = await startTestServer({
          domain: "tunnel.test",
          defaultTunnel: "main",
          defaultTunnelApex: apex,
        });
        const port = server.addr.port;
        // Before the tunnel is there: the usual answers.
        assert.match(await get(port, "unknown.example"), /^HTTP\/1\.1 404 /);
        await using _tunnel = await openTestTunnel(server, app.addr.port, { subdomain: "main" });
        for (const host of ["unknown.example", "nothing.tunnel.test", "main.tunnel.test"]) {
          const answer = await get(port, host);
          assert.match(answer, /"name":"main"/, host);
        }
        for (const host of ["tunnel.test", HOST]) {
          const answer = await get(port, host);
          if (apex) assert.match(answer, /"name":"main"/, host);
          else assert.doesNotMatch(answer, /"name":"main"/, host); // the landing page
        }
      }
    } finally {
      await app.shutdown();
    }
  },
});
