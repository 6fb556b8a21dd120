// Properties of the pure parsers, shared by the test suite (a few thousand runs)
// and `deno task fuzz` (a million and more).

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeClientFrame,
  decodeServerFrame,
  encodeFrame,
  MAX_FRAME_BYTES,
} from "../lib/protocol.ts";
import { sniff, type SniffResult } from "../lib/sniff.ts";

/** Sniffs `bytes` as a socket would deliver them, in pieces ending at `cut`. */
function sniffSplit(bytes: Uint8Array, cut: number): SniffResult {
  const first = sniff(bytes.subarray(0, cut));
  return first.state === "need-more" ? sniff(bytes) : first;
}

/** Inputs near real ones: captured first bytes with bytes inserted, changed and cut. */
export function sniffInputs(fixtures: Uint8Array[]): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 600 }),
    fc.constantFrom(...fixtures).chain((f) =>
      fc.tuple(fc.nat(f.length), fc.uint8Array({ maxLength: 8 }), fc.nat(f.length), fc.nat(255))
        .map(([at, junk, cut, flip]) => {
          const mutated = Uint8Array.from([...f.subarray(0, at), ...junk, ...f.subarray(at)]);
          const at2 = flip % Math.max(1, mutated.length);
          if (mutated.length > 0) mutated[at2] = mutated[at2]! ^ flip;
          return mutated.subarray(0, cut + 8);
        })
    ),
  );
}

/** sniff() never throws, answers within its cap, and agrees with itself on any split. */
export function sniffProperty(fixtures: Uint8Array[]): fc.IPropertyWithHooks<[Uint8Array, number]> {
  return fc.property(sniffInputs(fixtures), fc.nat(), (bytes, seed) => {
    const whole = sniff(bytes);
    if (whole.state === "http") assert.ok(whole.headLength <= bytes.length);
    const cut = bytes.length === 0 ? 0 : seed % bytes.length;
    assert.deepEqual(sniffSplit(bytes, cut), whole);
  });
}

const jsonish = fc.oneof(
  fc.json(),
  fc.record({
    type: fc.constantFrom("hello", "attach", "ping", "bye", "welcome", "error", "open", "demand"),
    version: fc.oneof(fc.integer(), fc.string()),
    subdomain: fc.oneof(fc.string(), fc.integer()),
    count: fc.oneof(fc.integer(), fc.double()),
    code: fc.string(),
    message: fc.string(),
    peer: fc.string(),
    proto: fc.constantFrom("http", "tls", "udp"),
  }, { requiredKeys: ["type"] }).map((o) => JSON.stringify(o)),
);

/** Frame inputs: valid frames, random bytes, and frames with lying lengths or bodies. */
export const frameInputs: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.tuple(jsonish, fc.integer({ min: -8, max: 8 })).map(([text, skew]) => {
    const body = new TextEncoder().encode(text);
    const out = new Uint8Array(4 + body.length);
    new DataView(out.buffer).setUint32(
      0,
      Math.max(0, Math.min(MAX_FRAME_BYTES + 1, body.length + skew)),
    );
    out.set(body, 4);
    return out;
  }),
);

/** The decoders never throw, and a frame they accept re-encodes to a frame they accept alike. */
export const frameProperty: fc.IPropertyWithHooks<[Uint8Array, number]> = fc.property(
  frameInputs,
  fc.nat(),
  (bytes, seed) => {
    for (const decode of [decodeClientFrame, decodeServerFrame]) {
      const result = decode(bytes);
      if (result.state !== "frame") continue;
      assert.ok(result.length <= bytes.length);
      const again = decode(encodeFrame(result.message));
      assert.deepEqual(again.state === "frame" && again.message, result.message);
      // Any prefix of a frame is need-more, never something else.
      const cut = seed % result.length;
      assert.deepEqual(decode(bytes.subarray(0, cut)), { state: "need-more" });
    }
  },
);
