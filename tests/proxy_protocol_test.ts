// PROXY protocol (lib/proxy_protocol.ts): the v2 encoder's bytes, v1 and v2 decoded
// whole, a byte at a time and split at every offset, malformed headers refused,
// properties over random addresses and random bytes; and --proxy-protocol end to end.

import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  decodeProxyHeader,
  encodeProxyV2,
  MAX_PROXY_V1_BYTES,
  parseEndpoint,
  PROXY_V2_SIGNATURE,
  type ProxyDecodeResult,
} from "../lib/proxy_protocol.ts";
import { concatBytes, latin1Bytes } from "../lib/bytes.ts";
import {
  decode,
  encode,
  HOST,
  openTestTunnel,
  rawApp,
  readAll,
  startTestServer,
  T,
  writeAllTo,
} from "./helpers.ts";
import { dialPort, freePortRange } from "./tcp_helpers.ts";

const V4 = {
  source: { address: "203.0.113.7", port: 51000 },
  dest: { address: "192.0.2.1", port: 443 },
};

/** The header of the spec's section 2.2 for V4, by hand. */
const V4_BYTES = concatBytes(
  PROXY_V2_SIGNATURE,
  Uint8Array.of(0x21, 0x11, 0x00, 0x0c, 203, 0, 113, 7, 192, 0, 2, 1, 0xc7, 0x38, 0x01, 0xbb),
);

/** Decodes `bytes` fed one piece at a time (pieces ending at `cuts`): the first answer that is not need-more. */
function feed(bytes: Uint8Array, cuts: number[]): ProxyDecodeResult {
  let result: ProxyDecodeResult = { state: "need-more" };
  for (const end of [...cuts.filter((c) => c > 0 && c < bytes.length), bytes.length]) {
    result = decodeProxyHeader(bytes.subarray(0, end));
    if (result.state !== "need-more") return result;
  }
  return result;
}

Deno.test("encodeProxyV2() writes the spec's bytes for IPv4, and IPv6 or LOCAL when it must", () => {
  assert.deepEqual(encodeProxyV2(V4.source, V4.dest), V4_BYTES);
  const v6 = encodeProxyV2({ address: "2001:db8::1", port: 1 }, { address: "::1", port: 2 });
  assert.equal(v6.length, 16 + 36);
  assert.equal(v6[13], 0x21);
  // A v4 visitor of a v6 listener: both as IPv6, the v4 one mapped.
  const mixed = decodeProxyHeader(encodeProxyV2(V4.source, { address: "::1", port: 22 }));
  assert.equal(mixed.state === "found" && mixed.source?.address, "::ffff:cb00:7107");
  for (
    const local of [
      encodeProxyV2(),
      encodeProxyV2(V4.source),
      encodeProxyV2({ address: "nope", port: 1 }, V4.dest),
    ]
  ) {
    assert.deepEqual(local, concatBytes(PROXY_V2_SIGNATURE, Uint8Array.of(0x20, 0, 0, 0)));
  }
});

Deno.test("decodeProxyHeader() reads v1 and v2 whole, a byte at a time and split at every offset", () => {
  const v1 = latin1Bytes("PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n");
  const v1v6 = latin1Bytes("PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 1 2\r\n");
  const unknown = latin1Bytes("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
  const body = encode("GET / HTTP/1.1\r\n\r\n");
  const cases: [Uint8Array, Partial<Extract<ProxyDecodeResult, { state: "found" }>>][] = [
    [V4_BYTES, {
      version: 2,
      command: "proxy",
      source: V4.source,
      destination: V4.dest,
      length: 28,
    }],
    [v1, {
      version: 1,
      command: "proxy",
      source: V4.source,
      destination: V4.dest,
      length: v1.length,
    }],
    [v1v6, {
      version: 1,
      source: { address: "2001:db8::1", port: 1 },
      destination: { address: "::1", port: 2 },
    }],
    [unknown, { version: 1, command: "local", length: unknown.length }],
    [encodeProxyV2(), { version: 2, command: "local", length: 16 }],
  ];
  for (const [header, expected] of cases) {
    const bytes = concatBytes(header, body);
    const whole = decodeProxyHeader(bytes);
    assert.equal(whole.state, "found");
    for (const [key, value] of Object.entries(expected)) {
      assert.deepEqual((whole as unknown as Record<string, unknown>)[key], value, key);
    }
    const byteAtATime = feed(bytes, Array.from({ length: bytes.length }, (_, i) => i));
    assert.deepEqual(byteAtATime, whole);
    for (let cut = 0; cut <= bytes.length; cut++) {
      assert.deepEqual(feed(bytes, [cut]), whole, `split at ${cut}`);
      if (cut < header.length) {
        assert.deepEqual(
          decodeProxyHeader(bytes.subarray(0, cut)),
          { state: "need-more" },
          `cut ${cut}`,
        );
      }
    }
  }
});

Deno.test("decodeProxyHeader() says none for other protocols and refuses malformed headers", () => {
  for (
    const other of ["GET / HTTP/1.1\r\n", "\x16\x03\x01", "SSH-2.0-OpenSSH", "PROXYY", "\r\n\r\nX"]
  ) {
    assert.deepEqual(decodeProxyHeader(latin1Bytes(other)), { state: "none" }, other);
  }
  const invalid = [
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
    "PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
    "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
    "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
    `PROXY ${"x".repeat(MAX_PROXY_V1_BYTES)}`,
    "PROXY \x00",
  ];
  for (const text of invalid) {
    assert.equal(decodeProxyHeader(latin1Bytes(text)).state, "invalid", JSON.stringify(text));
  }
  const v2 = (versionCommand: number, family: number, length: number, extra = 0) =>
    concatBytes(
      PROXY_V2_SIGNATURE,
      Uint8Array.of(versionCommand, family, length >> 8, length & 0xff),
      new Uint8Array(extra),
    );
  assert.equal(decodeProxyHeader(v2(0x11, 0x11, 12, 12)).state, "invalid"); // version 1 in v2 form
  assert.equal(decodeProxyHeader(v2(0x22, 0x11, 12, 12)).state, "invalid"); // command 2
  assert.equal(decodeProxyHeader(v2(0x21, 0x11, 4, 4)).state, "invalid"); // IPv4 cut short
  assert.equal(decodeProxyHeader(v2(0x21, 0x13, 12, 12)).state, "invalid"); // transport 3
  assert.equal(decodeProxyHeader(v2(0x21, 0x41, 12, 12)).state, "invalid"); // family 4
  assert.equal(decodeProxyHeader(v2(0x21, 0x11, 0xffff)).state, "invalid"); // too long, at once
  assert.equal(decodeProxyHeader(v2(0x21, 0x11, 12, 11)).state, "need-more");
  // TLVs after the addresses are part of the header.
  const withTlv = decodeProxyHeader(v2(0x21, 0x11, 12 + 5, 12 + 5));
  assert.equal(withTlv.state === "found" && withTlv.length, 16 + 17);
});

Deno.test("encodeProxyV2() and decodeProxyHeader() agree on any address and port (fast-check)", () => {
  const endpoint = fc.record({
    address: fc.oneof(fc.ipV4(), fc.ipV6()),
    port: fc.integer({ min: 0, max: 65535 }),
  });
  fc.assert(
    fc.property(
      endpoint,
      endpoint,
      fc.uint8Array({ maxLength: 64 }),
      fc.nat(200),
      (source, dest, tail, cut) => {
        const header = encodeProxyV2(source, dest);
        const bytes = concatBytes(header, tail);
        const result = decodeProxyHeader(bytes);
        assert.equal(result.state, "found");
        if (result.state !== "found") return;
        assert.equal(result.length, header.length);
        assert.equal(result.source?.port, source.port);
        assert.equal(result.destination?.port, dest.port);
        // The decoded addresses say the same: encoded again, the same header.
        assert.deepEqual(encodeProxyV2(result.source, result.destination), header);
        assert.deepEqual(feed(bytes, [cut % (bytes.length + 1)]), result);
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("decodeProxyHeader() never throws and never claims more bytes than it got (fast-check)", () => {
  const near = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.uint8Array({ maxLength: 120 }).map((b) => concatBytes(PROXY_V2_SIGNATURE, b)),
    fc.string({ maxLength: 120 }).map((s) => latin1Bytes(`PROXY ${s}`)),
  );
  fc.assert(
    fc.property(near, (bytes) => {
      const result = decodeProxyHeader(bytes);
      assert.ok(["found", "need-more", "none", "invalid"].includes(result.state));
      if (result.state === "found") assert.ok(result.length <= bytes.length);
    }),
    { numRuns: 5000 },
  );
});

Deno.test("parseEndpoint() reads a peer as the server writes it", () => {
  assert.deepEqual(parseEndpoint("127.0.0.1:5000"), { address: "127.0.0.1", port: 5000 });
  assert.deepEqual(parseEndpoint("[::1]:22"), { address: "::1", port: 22 });
  for (const bad of ["::1:22", "[::1]", "1.2.3.4:70000", "host:1", ""]) {
    assert.equal(parseEndpoint(bad), undefined, bad);
  }
});

Deno.test({
  name: "--proxy-protocol: the app reads the visitor's address and the tunnel's port first",
  ...T,
  async fn() {
    let seen: ProxyDecodeResult | undefined;
    await using app = rawApp(async (conn) => {
      const buffer = new Uint8Array(4096);
      let bytes: Uint8Array = new Uint8Array();
      do {
        const n = await conn.read(buffer);
        if (n === null) return;
        bytes = concatBytes(bytes, buffer.subarray(0, n));
        seen = decodeProxyHeader(bytes);
      } while (seen.state === "need-more");
      if (seen.state !== "found") return;
      await writeAllTo(conn, bytes.subarray(seen.length)); // the visitor's own bytes, echoed
      for (let n; (n = await conn.read(buffer)) !== null;) {
        await writeAllTo(conn, buffer.subarray(0, n));
      }
      await conn.closeWrite();
    });
    await using server = await startTestServer({ tcpPorts: [freePortRange(2)] });
    await using tunnel = await openTestTunnel(server, app.port, { tcp: true, proxyProtocol: true });
    using conn = await dialPort(tunnel.remotePort!);
    await writeAllTo(conn, encode("hello"));
    await conn.closeWrite();
    assert.equal(decode(await readAll(conn)), "hello");
    assert.equal(seen?.state, "found");
    if (seen?.state !== "found") return;
    assert.equal(seen.version, 2);
    assert.deepEqual(seen.source, { address: HOST, port: (conn.localAddr as Deno.NetAddr).port });
    assert.deepEqual(seen.destination, { address: HOST, port: tunnel.remotePort });
  },
});
