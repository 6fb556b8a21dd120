// The inspector's WebSocket frame counter: frames of every length form, masked and not,
// fragmented messages and control frames, fed whole, byte by byte and split at every offset.

import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { type WsCounts, WsFrameCounter } from "../lib/client/inspector/ws_frames.ts";
import { concatBytes } from "../lib/bytes.ts";
import { encode } from "./helpers.ts";

/** One frame as RFC 6455 lays it out; `mask` as a client sends it. */
function frame(opcode: number, payload: Uint8Array, { fin = true, mask = false } = {}): Uint8Array {
  const n = payload.length;
  const extra = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const head = new Uint8Array(2 + extra + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1] = (mask ? 0x80 : 0) | (n < 126 ? n : n < 65536 ? 126 : 127);
  if (extra === 2) new DataView(head.buffer).setUint16(2, n);
  if (extra === 8) new DataView(head.buffer).setBigUint64(2, BigInt(n));
  if (!mask) return concatBytes(head, payload);
  head.set([1, 2, 3, 4], 2 + extra);
  return concatBytes(head, payload.map((b, i) => b ^ [1, 2, 3, 4][i % 4]!));
}

/** Counts of `bytes` pushed in the pieces that `cuts` (ascending offsets) make. */
function countSplit(bytes: Uint8Array, cuts: number[]): { counts: WsCounts; completed: number } {
  const counter = new WsFrameCounter();
  let completed = 0;
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    completed += counter.push(bytes.subarray(from, cut));
    from = cut;
  }
  return { counts: { ...counter.counts }, completed };
}

const big = new Uint8Array(70_000).fill(7);
const conversation = concatBytes(
  frame(1, encode("hello"), { mask: true }),
  frame(2, new Uint8Array(300)), // 16-bit length
  frame(9, encode("ping")),
  frame(1, encode("frag"), { fin: false }),
  frame(10, new Uint8Array(0)), // a control frame between fragments
  frame(0, encode("ment"), { fin: false }),
  frame(0, encode("ed")),
  frame(2, big, { mask: true }), // 64-bit length
  frame(8, new Uint8Array([3, 232])),
);
const expected: WsCounts = {
  messages: 4,
  frames: 9,
  bytes: 5 + 300 + 4 + 4 + 0 + 4 + 2 + big.length + 2,
  pings: 1,
  pongs: 1,
  closed: true,
  invalid: undefined,
};

Deno.test("WsFrameCounter counts a conversation whole, byte by byte and split at every offset", () => {
  assert.deepEqual(countSplit(conversation, []), { counts: expected, completed: 4 });
  // Every offset, except most of those inside `big`'s payload (every 997th there).
  const payloadStart = conversation.length - 4 - big.length;
  const payloadEnd = conversation.length - 4;
  for (let cut = 1; cut < conversation.length; cut++) {
    if (cut > payloadStart + 8 && cut < payloadEnd - 8 && cut % 997 !== 0) continue;
    assert.deepEqual(countSplit(conversation, [cut]).counts, expected, `cut at ${cut}`);
  }
  const bytewise = Array.from({ length: 600 }, (_, i) => i + 1);
  assert.deepEqual(countSplit(conversation, bytewise).counts, expected);
});

Deno.test("WsFrameCounter stops at bytes that are not frames, and says why", () => {
  const cases: [Uint8Array, string][] = [
    [frame(3, encode("x")), "reserved opcode 3"],
    [frame(0xb, encode("x")), "reserved opcode 11"],
    [frame(9, encode("x"), { fin: false }), "fragmented control frame"],
    [frame(9, new Uint8Array(126)), "control frame over 125 bytes"],
    [frame(0, encode("x")), "continuation frame without a message"],
    [
      concatBytes(frame(1, encode("a"), { fin: false }), frame(1, encode("b"))),
      "new message before the last one ended",
    ],
    [Uint8Array.from([0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 1]), "frame length over 2^53"],
  ];
  for (const [bytes, reason] of cases) {
    const counter = new WsFrameCounter();
    counter.push(bytes);
    counter.push(frame(1, encode("after"))); // ignored once invalid
    assert.equal(counter.counts.invalid, reason);
    assert.equal(counter.counts.messages, 0);
  }
});

Deno.test("WsFrameCounter: any frames split anywhere count the same; any bytes never throw", () => {
  const frames = fc.array(
    fc.record({
      opcode: fc.constantFrom(1, 2, 9, 10),
      length: fc.oneof(fc.nat(130), fc.integer({ min: 126, max: 70_000 })),
      mask: fc.boolean(),
      pieces: fc.nat(3), // data messages only: fragments after the first
    }),
    { maxLength: 8 },
  );
  fc.assert(
    fc.property(frames, fc.array(fc.nat(), { maxLength: 6 }), (specs, rawCuts) => {
      const parts: Uint8Array[] = [];
      let messages = 0;
      for (const { opcode, length, mask, pieces } of specs) {
        const control = opcode >= 8;
        const payload = new Uint8Array(control ? Math.min(length, 125) : length);
        if (control || pieces === 0) parts.push(frame(opcode, payload, { mask }));
        else {
          parts.push(frame(opcode, payload, { mask, fin: false }));
          for (let i = 1; i <= pieces; i++) parts.push(frame(0, payload, { fin: i === pieces }));
        }
        if (!control) messages++;
      }
      const bytes = concatBytes(...parts);
      const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const { counts, completed } = countSplit(bytes, cuts);
      assert.equal(counts.invalid, undefined);
      assert.equal(counts.messages, messages);
      assert.equal(completed, messages);
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      new WsFrameCounter().push(bytes);
    }),
    { numRuns: 1000 },
  );
});
