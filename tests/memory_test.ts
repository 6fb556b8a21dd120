// Memory given back after a load: relay buffer free lists cut to recent
// concurrency, and the C heap trimmed where FFI is allowed.

import assert from "node:assert/strict";
import { ByteArena } from "../lib/arena.ts";
import { bufferCounts, GrowingBuffer, trimFreeBuffers } from "../lib/growing_buffer.ts";
import {
  RELAY_BUFFER_LARGE_BYTES as LARGE,
  RELAY_BUFFER_MEDIUM_BYTES as MEDIUM,
  RELAY_BUFFER_SMALL_BYTES as SMALL,
  RELAY_LARGE_BUFFERS_MAX,
} from "../lib/limits.ts";

/** Reports full reads into `buffer` until it reads into `bytes`-sized buffers. */
function growTo(buffer: GrowingBuffer, bytes: number): void {
  for (let i = 0; buffer.buffer.length < bytes; i++) {
    assert.ok(i < 100, `never grew to ${bytes}`);
    buffer.filled(buffer.buffer.length);
  }
}

const free = () => bufferCounts().map((tier) => tier.free);
const live = () => bufferCounts().map((tier) => tier.live);

function emptyFreeLists(): void {
  trimFreeBuffers();
  trimFreeBuffers(); // whatever earlier tests left: gone
  assert.deepEqual(free(), [0, 0, 0]);
}

Deno.test("relay buffers: small, then two medium, then two large ones in turn", () => {
  emptyFreeLists();
  const reads = new GrowingBuffer(4);
  assert.equal(reads.whole.length, SMALL);
  reads.filled(100); // a short read: no growth
  reads.filled(SMALL - 4);
  assert.equal(reads.large, false);
  reads.filled(SMALL - 4); // two full reads in a row
  assert.equal(reads.whole.length, MEDIUM);
  const first = reads.whole;
  reads.filled(10);
  assert.notEqual(reads.whole, first, "medium buffers are used in turn");
  growTo(reads, LARGE - 4);
  assert.equal(reads.whole.length, LARGE);
  assert.deepEqual(live(), [0, 0, 2]);
  reads.release();
  assert.deepEqual(free(), [0, 0, 2]);
});

Deno.test("relay buffers: large ones are capped; flows past the cap stay medium", () => {
  emptyFreeLists();
  const flows = Array.from({ length: RELAY_LARGE_BUFFERS_MAX / 2 + 3 }, () => new GrowingBuffer());
  for (const flow of flows.slice(0, RELAY_LARGE_BUFFERS_MAX / 2)) growTo(flow, LARGE);
  for (const flow of flows.slice(RELAY_LARGE_BUFFERS_MAX / 2)) {
    growTo(flow, MEDIUM);
    for (let i = 0; i < 50; i++) flow.filled(flow.buffer.length);
    assert.equal(flow.buffer.length, MEDIUM);
  }
  assert.deepEqual(live(), [0, 6, RELAY_LARGE_BUFFERS_MAX]);
  for (const flow of flows) flow.release();
});

Deno.test("relay buffers: a load's free buffers are kept one period, then dropped", () => {
  emptyFreeLists();
  const buffers = Array.from({ length: 43 }, () => new GrowingBuffer());
  for (const buffer of buffers.slice(40)) growTo(buffer, MEDIUM);
  for (const buffer of buffers) buffer.release();
  assert.deepEqual(free(), [40, 6, 0]);
  // Right after the load: what its concurrency used may be needed again soon.
  assert.equal(trimFreeBuffers(), 0);
  // A quiet period later: everything goes.
  assert.equal(trimFreeBuffers(), 40 * SMALL + 6 * MEDIUM);
  assert.deepEqual(free(), [0, 0, 0]);
});

Deno.test("relay buffers: buffers in use are not counted as free to keep", () => {
  emptyFreeLists();
  for (const buffer of Array.from({ length: 10 }, () => new GrowingBuffer())) buffer.release();
  const held = [new GrowingBuffer(), new GrowingBuffer()]; // taken from the 10 free ones
  assert.equal(trimFreeBuffers(), 0); // peak 10, 2 in use: keep 8 (all that are free)
  assert.equal(trimFreeBuffers(), 8 * SMALL); // peak 2, 2 in use: keep none
  for (const buffer of held) buffer.release();
  assert.deepEqual(free(), [2, 0, 0]);
});

Deno.test("malloc_trim through FFI works under deno run -A (no unstable flag), and is skipped without FFI", async () => {
  const script = `import { releaseFreeMemory } from ${
    JSON.stringify(new URL("../lib/memory.ts", import.meta.url).href)
  }; console.log(releaseFreeMemory());`;
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(file, script);
  const run = async (...flags: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...flags, file],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout).trim() || new TextDecoder().decode(out.stderr);
  };
  assert.equal(await run("-A"), Deno.build.os === "linux" ? "true" : "false");
  assert.equal(await run("--allow-read"), "false");
  await Deno.remove(file);
});

Deno.test("ByteArena: small copies share a slab and outlive their source; large ones get their own", () => {
  const arena = new ByteArena(64);
  const source = new Uint8Array([1, 2, 3]);
  const a = arena.copy(source);
  source.fill(9); // the source buffer is reused
  const b = arena.copy(new Uint8Array([4, 5]));
  assert.deepEqual([...a, ...b], [1, 2, 3, 4, 5]);
  assert.equal(a.buffer, b.buffer, "one slab");
  const big = arena.copy(new Uint8Array(33)); // over half the slab
  assert.notEqual(big.buffer, a.buffer);
  const filler = Array.from({ length: 5 }, () => arena.copy(new Uint8Array(32)));
  assert.notEqual(filler.at(-1)!.buffer, a.buffer, "a full slab is followed by a new one");
  assert.deepEqual([...a], [1, 2, 3], "earlier copies are untouched");
});
