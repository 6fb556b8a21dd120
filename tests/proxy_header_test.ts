// A server behind trusted proxies: PROXY v1/v2 headers on the public and TLS
// ports name the visitor (X-Forwarded-For, per-IP limits), a trusted peer
// without one is closed, an untrusted peer with one is refused.

import assert from "node:assert/strict";
import { concatBytes } from "../lib/bytes.ts";
import { closeQuietly } from "../lib/io.ts";
import { inCidr, parseCidr, parseCidrList } from "../lib/ip.ts";
import { encodeProxyV2, proxySignature } from "../lib/proxy_protocol.ts";
import type { ServerOptions, TunnelServer } from "../lib/server/server.ts";
import { parseExposition, sampleValue } from "./exposition.ts";
import {
  connect,
  decode,
  encode,
  HOST,
  logRecorder,
  openTestTunnel,
  readAll,
  readFixtureText,
  spawnCli,
  startApp,
  startTestServer,
  T,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

const ca = readFixtureText("ca.pem");
const cert = readFixtureText("localhost.pem");
const key = readFixtureText("localhost.key");

/** The address the test balancer says its clients (the tunnel's connections) come from. */
const CLIENT_SOURCE = "198.51.100.9";

const whoami = (host = "demo.localhost"): Uint8Array =>
  encode(`GET /whoami HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

const v1 = (source: string, port = 51000): Uint8Array =>
  encode(`PROXY TCP4 ${source} 192.0.2.1 ${port} 80\r\n`);

/**
 * A load balancer on 127.0.0.1: relays each connection to `port` behind a
 * PROXY v2 header naming `source`, as HAProxy with `send-proxy-v2` would.
 */
function balancer(port: number, source = CLIENT_SOURCE): {
  port: number;
  [Symbol.asyncDispose](): Promise<void>;
} {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const open = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const close = (c: Deno.Conn | undefined): void => {
    if (c && open.delete(c)) closeQuietly(c);
  };
  const copy = async (from: Deno.Conn, to: Deno.Conn): Promise<void> => {
    const buffer = new Uint8Array(16384);
    for (let n; (n = await from.read(buffer)) !== null;) {
      await writeAllTo(to, buffer.subarray(0, n));
    }
    await to.closeWrite();
  };
  const relay = async (visitor: Deno.Conn): Promise<void> => {
    let upstream: Deno.Conn | undefined;
    try {
      upstream = await connect(port);
      open.add(upstream);
      const from = { address: source, port: (visitor.remoteAddr as Deno.NetAddr).port };
      await writeAllTo(upstream, encodeProxyV2(from, { address: HOST, port }));
      const both = (): void => {
        close(visitor);
        close(upstream);
      };
      await Promise.all([copy(visitor, upstream).catch(both), copy(upstream, visitor).catch(both)]);
    } catch {
      // The server went away first: the visitor is closed below.
    } finally {
      close(visitor);
      close(upstream);
    }
  };
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        open.add(conn);
        const task = relay(conn);
        tasks.add(task);
        task.finally(() => tasks.delete(task));
      }
    } catch {
      // The listener was closed.
    }
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await loop;
      for (const c of [...open]) close(c);
      await Promise.all(tasks);
    },
  };
}

/**
 * An app, a server trusting 127.0.0.1 (with `extra`), and a tunnel `demo`
 * whose client reaches the server through a balancer; torn down in reverse.
 */
async function behindBalancer(extra: ServerOptions = {}) {
  const app = startApp();
  const server = await startTestServer({ trustedProxies: ["127.0.0.1/32"], ...extra });
  const lb = balancer(server.addr.port);
  const tunnel = await openTestTunnel({ addr: { port: lb.port } }, app.addr.port, {
    subdomain: "demo",
  });
  return {
    server,
    async [Symbol.asyncDispose]() {
      await tunnel.close();
      await lb[Symbol.asyncDispose]();
      await server.close();
      await app.shutdown();
    },
  };
}

/** Writes `bytes` (as separate writes when several) on a new connection to `port`, reads the whole answer ("" if reset). */
async function exchange(port: number, ...writes: Uint8Array[]): Promise<string> {
  const conn = await connect(port);
  try {
    for (const bytes of writes) await writeAllTo(conn, bytes);
    return decode(await readAll(conn));
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe) return "";
    throw e;
  } finally {
    conn.close();
  }
}

/** The JSON body of an HTTP answer. */
function body(answer: string): Record<string, unknown> {
  assert.match(answer, /^HTTP\/1\.1 200 /, answer);
  return JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));
}

/** A public-connection outcome's count, from the admin listener's /metrics. */
async function outcome(server: TunnelServer, name: string): Promise<number> {
  const res = await fetch(`http://${HOST}:${server.adminAddr!.port}/metrics`);
  const families = parseExposition(await res.text());
  return sampleValue(families, "gotunnel_public_connections_total", { outcome: name });
}

Deno.test("parseCidrList() reads IPv4 and IPv6 ranges and bare addresses, and names a bad entry", () => {
  const ranges = parseCidrList(["10.0.0.0/8, 192.0.2.7", "2001:db8::/32", "::1"]);
  assert.ok(typeof ranges !== "string");
  const inside = (ip: string) => ranges.some((r) => inCidr(ip, r));
  assert.ok(inside("10.255.0.1"));
  assert.ok(inside("::ffff:10.1.2.3"), "IPv4-mapped, as a dual-stack socket reports it");
  assert.ok(inside("192.0.2.7"));
  assert.ok(!inside("192.0.2.8"));
  assert.ok(inside("2001:db8:ffff::1"));
  assert.ok(!inside("2001:db9::1"));
  assert.ok(inside("::1"));
  assert.ok(!inside("11.0.0.1"));
  const odd = parseCidr("10.128.0.0/9");
  assert.ok(typeof odd !== "string" && inCidr("10.200.0.1", odd) && !inCidr("10.1.0.1", odd));
  for (
    const [entries, said] of [
      [["10.0.0.0/33"], /"10\.0\.0\.0\/33": "33" is not a prefix length \(0-32\)/],
      [["10.0.0.1/8"], /bits set past \/8/],
      [["10.0.0.0/8,example.com"], /"example\.com": "example\.com" is not an IPv4 or IPv6/],
      [["10.0.0.0/8,"], /an empty entry/],
      [["2001:db8::/129"], /not a prefix length \(0-128\)/],
      [["300.0.0.1"], /not an IPv4 or IPv6 address/],
    ] as const
  ) {
    const result = parseCidrList(entries);
    assert.ok(typeof result === "string", entries.join());
    assert.match(result, said);
  }
});

Deno.test("proxySignature() tells v1 and v2 from what may become one and from anything else", () => {
  const v2 = encodeProxyV2();
  assert.equal(proxySignature(v2), "v2");
  assert.equal(proxySignature(v2.subarray(0, 11)), "maybe");
  assert.equal(proxySignature(encode("PROXY")), "maybe");
  assert.equal(proxySignature(encode("PROXY UNKNOWN\r\n")), "v1");
  assert.equal(proxySignature(encode("PROPFIND / HTTP/1.1")), "no");
  assert.equal(proxySignature(encode("\r\nGET")), "no");
});

Deno.test({
  name: "a trusted proxy's v1 header names the visitor: the app sees it in X-Forwarded-For",
  ...T,
  async fn() {
    await using stack = await behindBalancer();
    const port = stack.server.addr.port;
    // Header and request in one write: the bytes past the header are the request's.
    const answer = await exchange(port, concatBytes(v1("203.0.113.7"), whoami()));
    assert.equal(body(answer).xff, "203.0.113.7");
    // Split, the header a byte at a time.
    const header = v1("203.0.113.8");
    const bytes = [...header].map((b) => Uint8Array.of(b));
    assert.equal(body(await exchange(port, ...bytes, whoami())).xff, "203.0.113.8");
    const v6 = encode("PROXY TCP6 2001:DB8::7 2001:db8::1 51000 80\r\n");
    assert.equal(body(await exchange(port, v6, whoami())).xff, "2001:db8::7");
  },
});

Deno.test({
  name: "a trusted proxy's v2 header names the visitor; v2 LOCAL keeps the proxy's address",
  ...T,
  async fn() {
    await using stack = await behindBalancer();
    const port = stack.server.addr.port;
    const header = encodeProxyV2({ address: "203.0.113.9", port: 40000 }, {
      address: "192.0.2.1",
      port: 80,
    });
    assert.equal(body(await exchange(port, header, whoami())).xff, "203.0.113.9");
    const v6 = encodeProxyV2({ address: "2001:db8::9", port: 40000 }, {
      address: "2001:db8::1",
      port: 80,
    });
    assert.equal(body(await exchange(port, concatBytes(v6, whoami()))).xff, "2001:db8::9");
    // A health check: LOCAL, the connection's own address.
    assert.equal(body(await exchange(port, encodeProxyV2(), whoami())).xff, "127.0.0.1");
    assert.equal(
      body(await exchange(port, encode("PROXY UNKNOWN\r\n"), whoami())).xff,
      "127.0.0.1",
    );
  },
});

Deno.test({
  name: "a trusted proxy's connection without a valid PROXY header is closed and counted",
  ...T,
  async fn() {
    const logger = logRecorder();
    await using stack = await behindBalancer({ admin: { port: 0, hostname: HOST }, logger });
    const { server } = stack;
    const port = server.addr.port;
    const before = await outcome(server, "proxy_invalid");
    assert.equal(await exchange(port, whoami()), "");
    assert.equal(await exchange(port, encode("PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n"), whoami()), "");
    {
      using cut = await connect(port); // a header cut short by the end of the stream
      await writeAllTo(cut, encode("PROXY TCP4 1.2.3.4"));
      await cut.closeWrite();
      assert.equal(decode(await readAll(cut)), "");
    }
    await waitFor(async () => await outcome(server, "proxy_invalid") === before + 3);
    const reasons = logger.lines
      .filter((l) => l.message === "Trusted proxy's connection closed")
      .map((l) => String(l.fields?.reason));
    assert.deepEqual(reasons, [
      "no PROXY header",
      "invalid PROXY header: a bad address",
      "closed before a PROXY header",
    ]);
  },
});

Deno.test({
  name: "a trusted proxy's connection silent past the sniff deadline is closed",
  ...T,
  async fn() {
    await using stack = await behindBalancer({ limits: { sniffTimeoutMs: 200 } });
    assert.equal(await exchange(stack.server.addr.port), "");
  },
});

Deno.test({
  name: "a PROXY header from an untrusted peer: 400 for v1, closed for v2, counted",
  ...T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer({
      trustedProxies: ["10.0.0.0/8"],
      admin: { port: 0, hostname: HOST },
    });
    await using _tunnel = await openTestTunnel(server, app.addr.port, { subdomain: "demo" });
    const port = server.addr.port;
    const answer = await exchange(port, concatBytes(v1("203.0.113.7"), whoami()));
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /PROXY header is only accepted from --trusted-proxies/);
    const header = encodeProxyV2({ address: "203.0.113.7", port: 1 }, { address: HOST, port });
    assert.equal(await exchange(port, concatBytes(header, whoami())), "");
    assert.equal(await exchange(port, header.subarray(0, 12)), "", "the signature alone");
    assert.equal(await outcome(server, "proxy_refused"), 3);
    // An ordinary visitor from the same untrusted address is served as itself.
    assert.equal(body(await exchange(port, whoami())).xff, "127.0.0.1");
    // So is one whose method starts like the header.
    const propfind =
      "PROPFIND /whoami HTTP/1.1\r\nHost: demo.localhost\r\nConnection: close\r\n\r\n";
    assert.doesNotMatch(await exchange(port, encode(propfind)), /PROXY header/);
  },
});

Deno.test({
  name: "the TLS port reads a trusted proxy's v1 header before the ClientHello",
  ...T,
  async fn() {
    await using stack = await behindBalancer({ tls: { cert, key, port: 0 } });
    const conn = await connect(stack.server.tlsAddr!.port);
    await writeAllTo(conn, v1("203.0.113.10"));
    const tls = await Deno.startTls(conn, { hostname: "demo.localhost", caCerts: [ca] });
    try {
      await writeAllTo(tls, whoami());
      assert.equal(body(decode(await readAll(tls))).xff, "203.0.113.10");
    } finally {
      tls.close();
    }
    // v2, in the same write as the ClientHello would be for HAProxy: here as its own.
    const second = await connect(stack.server.tlsAddr!.port);
    await writeAllTo(
      second,
      encodeProxyV2({ address: "2001:db8::10", port: 1 }, {
        address: "2001:db8::1",
        port: 443,
      }),
    );
    const tls2 = await Deno.startTls(second, { hostname: "demo.localhost", caCerts: [ca] });
    try {
      await writeAllTo(tls2, whoami());
      assert.equal(body(decode(await readAll(tls2))).xff, "2001:db8::10");
    } finally {
      tls2.close();
    }
    // Without a header, no handshake.
    const bare = await connect(stack.server.tlsAddr!.port);
    await assert.rejects(async () => {
      const tls3 = await Deno.startTls(bare, { hostname: "demo.localhost", caCerts: [ca] });
      try {
        await tls3.handshake();
      } finally {
        tls3.close();
      }
    });
  },
});

Deno.test({
  name: "the per-IP limit of connections being routed counts the header's visitor, not the proxy",
  ...T,
  async fn() {
    const logger = logRecorder();
    await using stack = await behindBalancer({ limits: { maxSniffingPerIp: 1 }, logger });
    const port = stack.server.addr.port;
    const read = (source: string) =>
      logger.lines.some((l) => l.message === "PROXY header read" && l.fields?.visitor === source);
    const silent: Deno.TcpConn[] = [];
    try {
      // Two silent visitors from different addresses, both from the proxy's: both admitted.
      for (const [source, port_] of [["203.0.113.1", 1001], ["203.0.113.2", 1002]] as const) {
        const conn = await connect(port);
        silent.push(conn);
        await writeAllTo(conn, v1(source, port_));
        await waitFor(() => read(`${source}:${port_}`), 5000, `${source}'s header`);
      }
      // A third from the first one's address is over its limit: closed at once.
      const over = await connect(port);
      silent.push(over);
      await writeAllTo(over, v1("203.0.113.1", 1003));
      assert.equal(decode(await readAll(over)), "");
      assert.ok(
        logger.lines.some((l) => l.message === "Over the limit of connections being routed"),
      );
      // The first two are still open and routed as usual once their heads come.
      for (const conn of silent.slice(0, 2)) {
        await writeAllTo(conn, whoami());
        assert.match(decode(await readAll(conn)), /^HTTP\/1\.1 200 /);
      }
    } finally {
      for (const conn of silent) conn.close();
    }
  },
});

Deno.test({
  name: "--trusted-proxies: a bad entry exits 2 naming it; trustedProxies: a RangeError",
  ...T,
  async fn() {
    for (
      const [args, said] of [
        [
          ["--trusted-proxies", "10.0.0.0/8,10.0.0.1/33"],
          /Invalid --trusted-proxies: "10\.0\.0\.1\/33"/,
        ],
        [["--trusted-proxies", "lb.internal"], /Invalid --trusted-proxies: "lb\.internal"/],
      ] as const
    ) {
      const end = await spawnCli("server.ts", [...args]).exited;
      assert.equal(end.code, 2, args.join(" "));
      assert.match(end.stderr, said);
    }
    await assert.rejects(startTestServer({ trustedProxies: ["10.0.0.0/40"] }), RangeError);
    const help = await spawnCli("server.ts", ["--help"]).exited;
    assert.match(help.stdout, /--trusted-proxies CIDR/);
  },
});
