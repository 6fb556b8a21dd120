// Frames, stream frames, names and hosts: the pure parts of the protocol.

import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  checkSubdomain,
  normalizeHost,
  randomSubdomain,
  randomToken,
  routeHost,
  timingSafeEqual,
} from "../lib/names.ts";
import {
  type ClientMessage,
  dataFrame,
  decodeClientFrame,
  decodeServerFrame,
  encodeFrame,
  END_FRAME,
  PROTOCOL_VERSION,
  type ServerMessage,
  StreamDecoder,
} from "../lib/protocol.ts";
import { concatBytes } from "../lib/bytes.ts";
import { MAX_FRAME_BYTES } from "../lib/limits.ts";
import { backoffDelay } from "../lib/client/reconnect.ts";
import { decodeStream, rawFrame, streamNoiseProperty, streamProperty } from "./properties.ts";
import { encode } from "./helpers.ts";

Deno.test("encodeFrame() and the decoders round-trip every message, at every split", () => {
  const client: ClientMessage[] = [
    { type: "hello", version: 1 },
    { type: "hello", version: PROTOCOL_VERSION },
    { type: "hello", version: PROTOCOL_VERSION, token: "t" },
    { type: "claim", tunnels: [{ ref: "web", kind: "http", subdomain: "demo" }] },
    {
      type: "claim",
      tunnels: [
        { ref: "a", kind: "http", host: "app.example.com", lease: "v1.app.example.com.n.1.m" },
        { ref: "b", kind: "tcp", port: 20022, replace: true },
        { ref: "c", kind: "tcp" },
      ],
    },
    { type: "attach", version: PROTOCOL_VERSION, session: "t", secret: "s" },
    { type: "ping" },
    { type: "bye" },
  ];
  const server: ServerMessage[] = [
    { type: "welcome", version: PROTOCOL_VERSION, session: "t", secret: "s", proxyPingMs: 20 },
    {
      type: "claimed",
      tunnels: [
        { ref: "web", ok: true, id: 1, name: "d", url: "http://d.x", lease: "v1.d.n.1.m" },
        { ref: "b", ok: false, code: "port-reserved", message: "held", retryAfterMs: 10 },
      ],
    },
    { type: "error", code: "version", message: "upgrade", version: PROTOCOL_VERSION },
    { type: "lease", tunnel: 2, lease: "v1.tcp:20022.n.1.m" },
    { type: "url", tunnel: 1, url: "https://d.x" },
    { type: "closed", tunnel: 1, code: "replaced", message: "taken over" },
    { type: "error", code: "subdomain-reserved", message: "held", retryAfterMs: 4200 },
    { type: "error", code: "subdomain-taken", message: "in use" },
    { type: "open", tunnel: 1, peer: "127.0.0.1:5000", proto: "http" },
    { type: "open", tunnel: 2, peer: "[::1]:5000", proto: "tcp", dest: "127.0.0.1:20022" },
    { type: "demand", count: 3 },
    { type: "ping" },
  ];
  const check = <M>(messages: M[], decode: (b: Uint8Array) => unknown) => {
    for (const message of messages) {
      const frame = encodeFrame(message as ClientMessage);
      const tail = new Uint8Array([9, 9, 9]);
      const both = new Uint8Array([...frame, ...tail]);
      assert.deepEqual(decode(both), { state: "frame", message, length: frame.length });
      for (let cut = 0; cut < frame.length; cut++) {
        assert.deepEqual(decode(frame.subarray(0, cut)), { state: "need-more" });
      }
    }
  };
  check(client, decodeClientFrame);
  check(server, decodeServerFrame);
});

Deno.test("the decoders refuse oversized, non-JSON, non-object and ill-typed frames", () => {
  const huge = new Uint8Array(4);
  new DataView(huge.buffer).setUint32(0, MAX_FRAME_BYTES + 1);
  assert.equal(decodeClientFrame(huge).state, "invalid"); // refused from the header alone
  for (
    const json of [
      "nope",
      "[1]",
      "null",
      '"x"',
      '{"type":"launch"}',
      '{"type":"hello"}',
      `{"type":"hello","version":${PROTOCOL_VERSION},"token":5}`,
      `{"type":"attach","version":${PROTOCOL_VERSION},"session":"t"}`,
      '{"type":"claim","tunnels":[]}',
      '{"type":"claim","tunnels":[{"ref":"a","kind":"udp"}]}',
      '{"type":"claim","tunnels":[{"ref":"a","kind":"tcp","port":70000}]}',
      '{"type":"claim","tunnels":[{"ref":"a","kind":"http","subdomain":"a","host":"b.c"}]}',
      `{"type":"claim","tunnels":[${Array(51).fill('{"ref":"a","kind":"tcp"}').join(",")}]}`,
    ]
  ) {
    assert.equal(decodeClientFrame(rawFrame(json)).state, "invalid", json);
  }
  assert.equal(decodeClientFrame(new Uint8Array([0, 0, 0, 2, 0xff, 0xfe])).state, "invalid");
  for (
    const json of [
      '{"type":"demand","count":-1}',
      '{"type":"demand","count":1.5}',
      '{"type":"error","code":"teapot","message":"x"}',
      '{"type":"open","tunnel":1,"peer":"x","proto":"udp"}',
      '{"type":"open","peer":"x","proto":"tcp"}',
      '{"type":"claimed","tunnels":[{"ref":"a","ok":true}]}',
      '{"type":"closed","tunnel":1,"code":"teapot","message":"x"}',
      '{"type":"welcome","version":1}',
    ]
  ) {
    assert.equal(decodeServerFrame(rawFrame(json)).state, "invalid", json);
  }
  assert.throws(
    () => encodeFrame({ type: "hello", version: 1, token: "x".repeat(MAX_FRAME_BYTES) }),
    RangeError,
  );
});

Deno.test("checkSubdomain() takes 1-63 of [a-z0-9-], lowercased, no dash at either end", () => {
  for (const ok of ["a", "demo", "my-app-2", "x".repeat(63), "0"]) {
    assert.deepEqual(checkSubdomain(ok), { ok: true, name: ok });
  }
  assert.deepEqual(checkSubdomain("Demo"), { ok: true, name: "demo" });
  for (const bad of ["", "-a", "a-", "a.b", "a_b", "x".repeat(64), "é", "a b"]) {
    assert.equal(checkSubdomain(bad).ok, false, bad);
  }
});

Deno.test("randomSubdomain() and randomToken() give fresh values of the right shape", () => {
  const names = new Set(Array.from({ length: 1000 }, () => randomSubdomain()));
  assert.equal(names.size, 1000);
  for (const name of names) assert.match(name, /^[a-z0-9]{10}$/);
  const token = randomToken(32);
  assert.match(token, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(token, randomToken(32));
});

Deno.test("normalizeHost() and routeHost() route apex, IPs, tunnels and strangers", () => {
  const route = (value: string) => {
    const host = normalizeHost(value);
    return typeof host === "string" ? host : routeHost(host, "tunnel.example");
  };
  assert.deepEqual(route("tunnel.example"), { kind: "apex" });
  assert.deepEqual(route("TUNNEL.example.:443"), { kind: "apex" });
  assert.deepEqual(route("192.0.2.1"), { kind: "apex" });
  assert.deepEqual(route("[2001:db8::1]:80"), { kind: "apex" });
  assert.deepEqual(route("Demo.tunnel.example"), { kind: "tunnel", name: "demo" });
  assert.deepEqual(route("a.demo.tunnel.example"), { kind: "other" });
  assert.deepEqual(route("-x.tunnel.example"), { kind: "other" });
  assert.deepEqual(route("example.com"), { kind: "other" });
  assert.deepEqual(route("eviltunnel.example"), { kind: "other" });
  assert.equal(typeof route("a:b:c"), "string");
  assert.equal(typeof route("a..b"), "string");
});

Deno.test("timingSafeEqual() compares whole strings", () => {
  assert.ok(timingSafeEqual("secret", "secret"));
  assert.ok(!timingSafeEqual("secret", "secreT"));
  assert.ok(!timingSafeEqual("secret", "secret2"));
  assert.ok(!timingSafeEqual("", "x"));
  assert.ok(timingSafeEqual("", ""));
});

Deno.test("backoffDelay() doubles from 1 s to 30 s with jitter in the upper half", () => {
  assert.equal(backoffDelay(0, 0), 500);
  assert.equal(backoffDelay(0, 1), 1000);
  assert.equal(backoffDelay(3, 1), 8000);
  assert.equal(backoffDelay(10, 1), 30_000);
  assert.equal(backoffDelay(10, 0), 15_000);
});

Deno.test("StreamDecoder gives back payload, end and what follows: whole, byte by byte, split anywhere", () => {
  const stream = concatBytes(
    dataFrame(encode("hello, ")),
    dataFrame(encode("world")),
    END_FRAME,
    encode("NEXT"),
  );
  const expected = {
    payload: encode("hello, world"),
    end: "end",
    after: encode("NEXT"),
    invalid: undefined,
  };
  assert.deepEqual(decodeStream(stream, []), expected, "whole");
  const bytes = Array.from({ length: stream.length }, (_, i) => i);
  assert.deepEqual(decodeStream(stream, bytes), expected, "byte by byte");
  for (let cut = 0; cut <= stream.length; cut++) {
    assert.deepEqual(decodeStream(stream, [cut]), expected, `split at ${cut}`);
  }
});

Deno.test("StreamDecoder refuses what is not a stream frame: empty DATA, long END, JSON, kind 4", () => {
  for (
    const header of [[1, 0, 0, 0], [2, 0, 0, 1], [3, 1, 0, 0], [0, 0, 0, 2], [4, 0, 0, 0]]
  ) {
    const result = new StreamDecoder().decode(Uint8Array.from([...header, 0x7b, 0x7d]));
    assert.equal(result.state, "invalid", `${header}`);
  }
});

Deno.test("StreamDecoder decodes any stream split anywhere, and never throws (property)", () => {
  fc.assert(streamProperty, { numRuns: 3000 });
  fc.assert(streamNoiseProperty, { numRuns: 3000 });
});
