// The sniffer on captured bytes from curl, openssl and Chromium, whole and in pieces, and on bad input.

import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { sniff, type SniffResult } from "../lib/sniff.ts";
import { decode, encode, readFixture } from "./helpers.ts";
import { feedSniff, frameProperty, sniffProperty } from "./properties.ts";

const captures: Record<string, { host?: string; sni?: string | null; bytes: number }> = JSON.parse(
  decode(readFixture("captures.json")),
);

function expectedOf(name: string): Partial<SniffResult> {
  const c = captures[name]!;
  if (c.host !== undefined) return { state: "http", host: c.host.replace(/:\d+$/, "") };
  return { state: "tls", serverName: c.sni ?? undefined };
}

function assertMatches(result: SniffResult, expected: Partial<SniffResult>, what: string): void {
  for (const [key, value] of Object.entries(expected)) {
    assert.equal((result as Record<string, unknown>)[key], value, `${what}: ${key}`);
  }
}

for (const name of Object.keys(captures)) {
  Deno.test(`sniff() reads ${name} whole, byte by byte, and split at every offset`, () => {
    const bytes = readFixture(name);
    assert.equal(bytes.length, captures[name]!.bytes);
    const expected = expectedOf(name);
    const whole = sniff(bytes);
    assertMatches(whole, expected, "whole");
    // Byte by byte: every prefix before the end of the head is need-more, then the same answer.
    const oneByOne = feedSniff(bytes, Array.from({ length: bytes.length }, (_, i) => i + 1));
    assert.deepEqual(oneByOne.result, whole);
    const complete = whole.state === "http" ? whole.headLength : bytes.length;
    assert.equal(oneByOne.used, complete);
    for (let cut = 1; cut < bytes.length; cut++) {
      assert.deepEqual(feedSniff(bytes, [cut]).result, whole, `split at ${cut}`);
    }
  });

  Deno.test(`sniff() says need-more for ${name} cut short, and refuses it past the cap`, () => {
    const bytes = readFixture(name);
    const whole = sniff(bytes);
    const complete = whole.state === "http" ? whole.headLength : bytes.length;
    assert.deepEqual(sniff(bytes.subarray(0, complete - 1)), { state: "need-more" });
    const capped = sniff(bytes.subarray(0, complete - 1), complete - 1);
    assert.equal(capped.state, "invalid");
    if (whole.state === "http") assert.equal((capped as { status?: number }).status, 431);
  });
}

/** Rewraps a TLS handshake into records of at most `size` payload bytes. */
function rewrap(hello: Uint8Array, size: number): Uint8Array {
  const message = hello.subarray(5, 5 + ((hello[3]! << 8) | hello[4]!));
  const out: number[] = [];
  for (let at = 0; at < message.length; at += size) {
    const part = message.subarray(at, at + size);
    out.push(0x16, 0x03, 0x01, part.length >> 8, part.length & 0xff, ...part);
  }
  return Uint8Array.from(out);
}

for (const name of ["chromium-clienthello.bin", "openssl-clienthello.bin"]) {
  Deno.test(`sniffTlsSni() reads ${name} rewrapped into many TLS records`, () => {
    const bytes = readFixture(name);
    for (const size of [1, 2, 5, 100, 512, 1000]) {
      const records = rewrap(bytes, size);
      assert.deepEqual(sniff(records), { state: "tls", serverName: "demo.localhost" }, `${size}`);
      for (const cut of [1, 3, 5, 6, 9, Math.floor(records.length / 2), records.length - 1]) {
        assert.deepEqual(
          feedSniff(records, [cut]).result,
          sniff(records),
          `size ${size} cut ${cut}`,
        );
      }
    }
  });
}

/** A minimal ClientHello with the given extensions block (already encoded). */
function clientHello(extensions: number[] | null, lengthDelta = 0): Uint8Array {
  const body = [
    0x03,
    0x03,
    ...new Array(32).fill(7),
    0, // version, random, empty session id
    0x00,
    0x02,
    0x13,
    0x01, // one cipher suite
    0x01,
    0x00, // null compression
  ];
  if (extensions) body.push(extensions.length >> 8, extensions.length & 0xff, ...extensions);
  const length = body.length + lengthDelta;
  const message = [1, length >> 16, (length >> 8) & 0xff, length & 0xff, ...body];
  return Uint8Array.from([0x16, 3, 1, message.length >> 8, message.length & 0xff, ...message]);
}

function sniExtension(name: string, listDelta = 0, nameDelta = 0): number[] {
  const n = [...encode(name)];
  const entry = [0, (n.length + nameDelta) >> 8, (n.length + nameDelta) & 0xff, ...n];
  const list = [(entry.length + listDelta) >> 8, (entry.length + listDelta) & 0xff, ...entry];
  return [0, 0, list.length >> 8, list.length & 0xff, ...list];
}

Deno.test("sniffTlsSni() normalises the server name and handles a hello without extensions", () => {
  assert.deepEqual(sniff(clientHello(sniExtension("Demo.LocalHost."))), {
    state: "tls",
    serverName: "demo.localhost",
  });
  assert.deepEqual(sniff(clientHello(null)), { state: "tls", serverName: undefined });
  assert.deepEqual(sniff(clientHello([])), { state: "tls", serverName: undefined });
});

Deno.test("sniffTlsSni() refuses lengths that point past the end or claim 16 MB", () => {
  const cases: [string, Uint8Array][] = [
    ["name length past the list", clientHello(sniExtension("demo.localhost", 0, 40))],
    ["list length past the extension", clientHello(sniExtension("demo.localhost", 9))],
    ["extension length past the hello", clientHello([0, 0, 0, 200, 0, 1])],
    ["hello shorter than its parts", clientHello(null, -5)],
    ["empty server name", clientHello(sniExtension(""))],
    ["server name with a port", clientHello(sniExtension("demo.localhost:443"))],
    ["server name with a space", clientHello(sniExtension("demo localhost"))],
  ];
  for (const [what, bytes] of cases) assert.equal(sniff(bytes).state, "invalid", what);
  // A hello that claims 16 MB is refused from its first record header and handshake header.
  const huge = Uint8Array.from([0x16, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff]);
  assert.equal(sniff(huge).state, "invalid");
  // So is a record that claims more than TLS allows, a non-handshake record, a non-ClientHello.
  assert.equal(sniff(Uint8Array.from([0x16, 3, 1, 0xff, 0xff])).state, "invalid");
  assert.equal(sniff(Uint8Array.from([0x16, 3, 1, 0, 0])).state, "invalid");
  assert.equal(sniff(Uint8Array.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0])).state, "invalid");
  // A handshake record, then an alert record before the ClientHello is complete.
  assert.equal(
    sniff(Uint8Array.from([0x16, 3, 1, 0, 2, 1, 0, 0x15, 3, 1, 0, 2, 2, 0])).state,
    "invalid",
  );
});

const http = (head: string): SniffResult => sniff(encode(head));
const status = (r: SniffResult): number | undefined =>
  r.state === "invalid" ? r.status ?? 0 : undefined;

Deno.test("sniffHttpHost() normalises Host: port, case, trailing dot, IPv6", () => {
  const host = (value: string) => {
    const r = http(`GET / HTTP/1.1\r\nHost: ${value}\r\n\r\n`);
    return r.state === "http" ? [r.host, r.ip] : r;
  };
  assert.deepEqual(host("Demo.LOCALHOST:8080"), ["demo.localhost", false]);
  assert.deepEqual(host("demo.localhost."), ["demo.localhost", false]);
  assert.deepEqual(host("demo.localhost.:80"), ["demo.localhost", false]);
  assert.deepEqual(host("127.0.0.1:8080"), ["127.0.0.1", true]);
  assert.deepEqual(host("[::1]:8080"), ["::1", true]);
  assert.deepEqual(host("  demo.localhost  "), ["demo.localhost", false]);
});

Deno.test("sniffHttpHost() answers 400 for a missing, repeated, malformed or contradicted Host", () => {
  const cases = [
    "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a.localhost\r\nhOsT: a.localhost\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a.localhost:99999\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a.localhost:8o\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a.localhost:\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: \r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: user@a.localhost\r\n\r\n",
    "GET http://b.localhost/ HTTP/1.1\r\nHost: a.localhost\r\n\r\n",
    "GET http://x@a.localhost/ HTTP/1.1\r\nHost: a.localhost\r\n\r\n",
    "GET / HTTP/1.1\r\nHost : a.localhost\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a.localhost\r\n folded\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a.localhost\r\nX: a\rb\r\n\r\n",
    "GET / HTTP/1.1\r\n: empty-name\r\nHost: a.localhost\r\n\r\n",
    "GET  / HTTP/1.1\r\nHost: a.localhost\r\n\r\n",
    "GET / HTTP/1.1 \r\nHost: a.localhost\r\n\r\n",
  ];
  for (const head of cases) assert.equal(status(http(head)), 400, JSON.stringify(head));
  // An absolute-form target that agrees with Host is fine.
  const ok = http("GET http://A.localhost:8080/x HTTP/1.1\r\nHost: a.localhost\r\n\r\n");
  assert.equal(ok.state === "http" && ok.host, "a.localhost");
});

Deno.test("sniff() closes on garbage and SSH banners at once, without waiting for more", () => {
  for (const bytes of ["SSH-2.0-OpenSSH_9.2p1\r\n", "\x00\x01\x02", "hello\r\n", "{}", "\r\n"]) {
    const r = sniff(encode(bytes));
    assert.equal(r.state, "invalid", JSON.stringify(bytes));
    assert.equal(status(r), 0, JSON.stringify(bytes));
  }
  assert.equal(sniff(encode("SSH-2.0")).state, "invalid"); // even before the line ends
  assert.equal(sniff(encode("A".repeat(40))).state, "invalid"); // no method is that long
});

Deno.test("sniffHttpHost() answers 431 past the cap and reads the Upgrade header", () => {
  const big = `GET / HTTP/1.1\r\nHost: a.localhost\r\nX: ${"y".repeat(20_000)}\r\n\r\n`;
  assert.equal(status(http(big)), 431);
  const up = http("GET /_gotunnel HTTP/1.1\r\nHost: 10.0.0.1\r\nUpgrade: GoTunnel\r\n\r\nrest");
  assert.equal(up.state === "http" && up.upgrade, "gotunnel");
  assert.equal(up.state === "http" && up.headLength, 62);
  // Bare LF line endings are accepted, as RFC 9112 allows.
  assert.equal(http("GET / HTTP/1.0\nHost: a.localhost\n\n").state, "http");
});

Deno.test("sniff() never throws and gives the same answer for any split (property)", () => {
  fc.assert(sniffProperty(Object.keys(captures).map(readFixture)), { numRuns: 3000 });
});

Deno.test("the frame decoders never throw and agree with the encoder (property)", () => {
  fc.assert(frameProperty, { numRuns: 3000 });
});
