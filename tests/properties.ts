// Properties of the pure parsers, shared by the test suite (a few thousand runs)
// and `deno task fuzz` (a million and more).

import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  ABORT_FRAME,
  dataFrame,
  decodeClientFrame,
  decodeServerFrame,
  encodeFrame,
  END_FRAME,
  StreamDecoder,
  type StreamEnd,
} from "../lib/protocol.ts";
import { concatBytes, latin1Bytes, latin1Text } from "../lib/bytes.ts";
import { MAX_FRAME_BYTES } from "../lib/limits.ts";
import { type Http1Event, Http1Framer } from "../lib/http/framer.ts";
import { sniff, type SniffResult } from "../lib/sniff.ts";

/**
 * Sniffs `bytes` as the server reads a socket: the pieces ending at `cuts` (in
 * order) land one after the other in one read buffer, and what it holds so far
 * is sniffed after each piece until the answer is not need-more. Returns that
 * answer and the bytes it was given. The buffer's unread tail holds stale bytes.
 */
export function feedSniff(
  bytes: Uint8Array,
  cuts: number[],
  maxBytes?: number,
): { result: SniffResult; used: number } {
  const buffer = new Uint8Array(bytes.length).fill(0xff);
  let filled = 0;
  let result: SniffResult = { state: "need-more" };
  for (const end of [...cuts.filter((c) => c > 0 && c < bytes.length), bytes.length]) {
    if (end <= filled) continue;
    buffer.set(bytes.subarray(filled, end), filled);
    filled = end;
    result = sniff(buffer.subarray(0, filled), maxBytes);
    if (result.state !== "need-more") break;
  }
  return { result, used: filled };
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

/**
 * sniff() never throws and answers within its cap; fed in pieces as a socket
 * delivers them, its first answer that is not need-more is the answer to the
 * whole (so it never decides before it has the bytes that decide, and keeps no
 * state from one call to the next), given within the bytes it had.
 */
export function sniffProperty(
  fixtures: Uint8Array[],
): fc.IPropertyWithHooks<[Uint8Array, number[], number]> {
  return fc.property(
    sniffInputs(fixtures),
    fc.array(fc.nat(), { maxLength: 4 }),
    fc.nat(),
    (bytes, seeds, capSeed) => {
      const whole = sniff(bytes.slice());
      if (whole.state === "http") assert.ok(whole.headLength <= bytes.length);
      const cuts = seeds.map((s) => s % (bytes.length + 1)).sort((a, b) => a - b);
      const fed = feedSniff(bytes, cuts);
      assert.deepEqual(fed.result, whole, `fed in pieces ending at ${cuts}`);
      if (fed.result.state === "http") assert.ok(fed.result.headLength <= fed.used);
      // With as many bytes as its cap, it answers: no connection waits for more.
      const cap = 1 + capSeed % Math.max(1, bytes.length);
      if (bytes.length >= cap) assert.notEqual(sniff(bytes, cap).state, "need-more");
    },
  );
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

/**
 * A control frame holding `json` whatever it says, its header claiming
 * `size(length)` bytes for the `length` it holds (default: the truth).
 */
export function rawFrame(json: string, size = (length: number) => length): Uint8Array {
  const body = new TextEncoder().encode(json);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, size(body.length));
  out.set(body, 4);
  return out;
}

/** Frame inputs: valid frames, random bytes, and frames with lying lengths or bodies. */
export const frameInputs: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.tuple(jsonish, fc.integer({ min: -8, max: 8 })).map(([text, skew]) =>
    rawFrame(text, (length) => Math.max(0, Math.min(MAX_FRAME_BYTES + 1, length + skew)))
  ),
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

/** A split-independent summary: heads by first line, body bytes joined per message, ends, raw. */
export function http1Summary(events: Http1Event[]): string[] {
  const out: string[] = [];
  let body = "";
  for (const e of events) {
    if (e.kind === "body") {
      body += latin1Text(e.bytes);
      continue;
    }
    if (body) out.push(`body:${body}`), body = "";
    if (e.kind === "head") out.push(`head:${latin1Text(e.bytes).split("\r\n")[0]}`);
    else if (e.kind === "end") out.push("end");
    else if (e.kind === "raw") out.push(`raw:${latin1Text(e.bytes)}`);
    else out.push(`error:${e.status}`);
  }
  if (body) out.push(`body:${body}`);
  // Raw bytes may arrive in several pieces: join them.
  return out.reduce<string[]>((acc, item) => {
    const last = acc[acc.length - 1];
    if (item.startsWith("raw:") && last?.startsWith("raw:")) {
      acc[acc.length - 1] = last + item.slice(4);
    } else acc.push(item);
    return acc;
  }, []);
}

/** Frames `input` (one byte per character) cut at `cuts`; a summary of the events. */
export function frameHttp1(
  role: "request" | "response",
  input: string,
  cuts: number[] = [],
  methods: string[] = [],
) {
  const framer = new Http1Framer(role);
  methods.forEach((m) => framer.expect(m));
  const events: Http1Event[] = [];
  const data = latin1Bytes(input);
  let from = 0;
  for (const cut of [...cuts, data.length]) {
    events.push(...framer.push(data.subarray(from, cut)));
    from = cut;
  }
  events.push(...framer.end());
  return http1Summary(events);
}

const HTTP1_SAMPLES = [
  "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 101 X\r\n\r\nraw",
  "GET /a HTTP/1.1\nHost: y\n\nHEAD /b HTTP/1.0\r\nX:  v \r\n\r\n",
];

/** The HTTP/1.1 framer never throws, and frames any split of its input as it frames it whole. */
export const http1Property: fc.IPropertyWithHooks<[string, number, string]> = fc.property(
  fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.constantFrom(...HTTP1_SAMPLES).chain((s) =>
      fc.tuple(fc.nat(s.length), fc.string({ maxLength: 6 })).map(([at, junk]) =>
        s.slice(0, at) + junk + s.slice(at)
      )
    ),
  ),
  fc.nat(),
  fc.constantFrom("request", "response"),
  (s, seed, role) => {
    const latin = Array.from(s, (c) => c.charCodeAt(0) > 0xff ? "?" : c).join("");
    const cut = latin.length === 0 ? 0 : seed % latin.length;
    const as = role as "request" | "response";
    assert.deepEqual(frameHttp1(as, latin, [cut]), frameHttp1(as, latin));
  },
);

/** What a {@linkcode StreamDecoder} made of a stream fed to it in chunks. */
export interface DecodedStream {
  /** The payload bytes, joined. */
  payload: Uint8Array;
  /** How the stream ended; undefined if the chunks ran out first. */
  end: StreamEnd | undefined;
  /** The bytes after the end frame: what follows the stream on the connection. */
  after: Uint8Array;
  /** Why the decoder refused the bytes, if it did. */
  invalid: string | undefined;
}

/**
 * Feeds `bytes` to a fresh StreamDecoder in chunks ending at `cuts`, as a relay
 * reads them (a copy each: it decodes in place), and checks each answer stays
 * within its chunk. Stops at the end or at invalid bytes.
 */
export function decodeStream(bytes: Uint8Array, cuts: number[]): DecodedStream {
  const decoder = new StreamDecoder();
  const payload: Uint8Array[] = [];
  const decoded = (
    end: StreamEnd | undefined,
    after: Uint8Array = new Uint8Array(),
    invalid?: string,
  ): DecodedStream => ({ payload: concatBytes(...payload), end, after, invalid });
  let from = 0;
  for (const cut of [...cuts.filter((c) => c >= 0 && c <= bytes.length), bytes.length]) {
    const to = Math.max(from, cut);
    const chunk = bytes.slice(from, to);
    from = to;
    const result = decoder.decode(chunk);
    if (result.state === "invalid") return decoded(undefined, undefined, result.reason);
    assert.ok(result.payload >= 0 && result.payload <= chunk.length);
    payload.push(chunk.subarray(0, result.payload));
    if (result.state === "end") {
      assert.ok(result.payload <= result.used && result.used <= chunk.length);
      return decoded(result.how, concatBytes(chunk.subarray(result.used), bytes.subarray(from)));
    }
  }
  return decoded(undefined);
}

/** A DATA payload: mostly small, sometimes past 16 bits of length (a frame's length has 24). */
const payloadInput: fc.Arbitrary<Uint8Array> = fc.oneof(
  { arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }), weight: 20 },
  {
    arbitrary: fc.tuple(fc.integer({ min: 0xff00, max: 0x1_0100 }), fc.nat(255)).map(
      ([length, seed]) => {
        const out = new Uint8Array(length);
        for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 0xff;
        return out;
      },
    ),
    weight: 1,
  },
);

/**
 * The stream decoder, fed an encoded stream (DATA frames, END or ABORT, then
 * the bytes of what follows) split at any offsets, gives back the payload
 * bytes, the end and what follows, whole; it never throws.
 */
export const streamProperty: fc.IPropertyWithHooks<
  [Uint8Array[], StreamEnd, Uint8Array, number[]]
> = fc.property(
  fc.array(payloadInput, { maxLength: 8 }),
  fc.constantFrom<StreamEnd>("end", "abort"),
  fc.uint8Array({ maxLength: 16 }),
  fc.array(fc.nat(), { maxLength: 8 }),
  (payloads, how, after, seeds) => {
    const stream = concatBytes(
      ...payloads.map((p) => dataFrame(p)),
      how === "end" ? END_FRAME : ABORT_FRAME,
      after,
    );
    const cuts = seeds.map((s) => s % (stream.length + 1));
    assert.deepEqual(decodeStream(stream, cuts), {
      payload: concatBytes(...payloads),
      end: how,
      after,
      invalid: undefined,
    });
  },
);

/** The stream decoder never throws on any bytes in any chunks, and answers within each chunk. */
export const streamNoiseProperty: fc.IPropertyWithHooks<[Uint8Array, number[]]> = fc.property(
  fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    // Bytes that look like frames: kinds 0-4, short lengths, payload bytes.
    fc.array(
      fc.tuple(fc.nat(4), fc.nat(8), fc.uint8Array({ maxLength: 8 })).map(([kind, length, rest]) =>
        Uint8Array.of(kind, 0, 0, length, ...rest)
      ),
      { maxLength: 8 },
    ).map((frames) => concatBytes(...frames)),
  ),
  fc.array(fc.nat(), { maxLength: 8 }),
  (bytes, seeds) => {
    decodeStream(bytes, seeds.map((s) => s % (bytes.length + 1)));
  },
);
