// ChannelStream: one stream of a proxy channel read and written as a plain
// connection, over real loopback sockets: DATA in order, END as end of stream,
// ABORT as an error; a clean stream leaves the channel in step, anything else
// closes it.

import assert from "node:assert/strict";
import { concatBytes } from "../lib/bytes.ts";
import { ProxyChannel } from "../lib/channel.ts";
import { ChannelStream } from "../lib/channel_stream.ts";
import { ByteReader, closeQuietly } from "../lib/io.ts";
import {
  ABORT_FRAME,
  dataFrame,
  decodeJsonFrame,
  encodeJsonFrame,
  END_FRAME,
} from "../lib/protocol.ts";
import { decode, encode, HOST, patternBytes, T } from "./helpers.ts";

/** Two ends of one loopback connection: `near` gets a channel, `far` speaks raw frames. */
async function pair(): Promise<
  { near: Deno.Conn; far: Deno.Conn; [Symbol.dispose](): void }
> {
  using listener = Deno.listen({ hostname: HOST, port: 0 });
  const [near, far] = await Promise.all([
    listener.accept(),
    Deno.connect({ hostname: HOST, port: listener.addr.port }),
  ]);
  return {
    near,
    far,
    [Symbol.dispose]() {
      closeQuietly(near);
      closeQuietly(far);
    },
  };
}

/** Reads from `stream` until its end of stream. */
async function readToEnd(stream: ChannelStream, chunk = 4096): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(chunk);
  for (let n; (n = await stream.read(buffer)) !== null;) parts.push(buffer.slice(0, n));
  return concatBytes(...parts);
}

const decodeAny = (bytes: Uint8Array) => decodeJsonFrame(bytes, (v) => v);

Deno.test({
  name: "ChannelStream reads DATA to END, writes DATA and END, and leaves the channel in step",
  ...T,
  async fn() {
    using ends = await pair();
    const channel = new ProxyChannel(ends.near);
    const body = patternBytes(300_000);
    // Frames split in odd places, and the next message right behind the END.
    const frames = concatBytes(
      dataFrame(body.subarray(0, 5)),
      dataFrame(body.subarray(5)),
      END_FRAME,
      encodeJsonFrame({ type: "next" }),
    );
    const writing = (async () => {
      for (let at = 0; at < frames.length; at += 7001) {
        await ends.far.write(frames.subarray(at, at + 7001));
      }
    })();
    const stream = new ChannelStream(channel, ends.near.remoteAddr);
    assert.deepEqual(await readToEnd(stream, 1000), body);
    assert.equal(await stream.read(new Uint8Array(10)), null, "END stays the end");
    await writing;
    assert.equal(await stream.write(encode("answer")), 6);
    await stream.closeWrite();
    assert.ok(stream.clean);
    stream.close();
    // The far side sees DATA "answer" then END; the channel reads the next message.
    const far = new ByteReader(ends.far, 1024);
    while (far.buffered.length < 14) assert.ok(await far.fill());
    assert.deepEqual(
      far.buffered.slice(0, 14),
      concatBytes(dataFrame(encode("answer")), END_FRAME),
    );
    assert.deepEqual(await channel.readMessage(decodeAny), { type: "next" });
  },
});

Deno.test({
  name: "ChannelStream: an ABORT fails the read, and close() then closes the channel's connection",
  ...T,
  async fn() {
    using ends = await pair();
    const stream = new ChannelStream(new ProxyChannel(ends.near), ends.near.remoteAddr);
    await ends.far.write(concatBytes(dataFrame(encode("part")), ABORT_FRAME));
    const buffer = new Uint8Array(64);
    assert.equal(decode(buffer.subarray(0, (await stream.read(buffer))!)), "part");
    await assert.rejects(stream.read(buffer), Deno.errors.ConnectionReset);
    await stream.closeWrite();
    assert.equal(stream.clean, false);
    stream.close();
    // The far side reads our END, then the end of the connection.
    const far = new ByteReader(ends.far, 1024);
    while (await far.fill());
    assert.deepEqual(far.buffered, END_FRAME);
  },
});

Deno.test({
  name:
    "ChannelStream closed before the other side's END: the connection goes, a pending read fails",
  ...T,
  async fn() {
    using ends = await pair();
    const stream = new ChannelStream(new ProxyChannel(ends.near), ends.near.remoteAddr);
    await ends.far.write(dataFrame(encode("a")));
    const buffer = new Uint8Array(64);
    assert.equal(await stream.read(buffer), 1);
    const pending = stream.read(buffer);
    stream.close();
    await assert.rejects(pending, Deno.errors.BadResource);
    await stream.received;
    assert.equal(await ends.far.read(buffer), null, "the far side sees the connection end");
  },
});

Deno.test({
  name: "ChannelStream: a stray frame inside the stream fails the read and closes the connection",
  ...T,
  async fn() {
    using ends = await pair();
    const stream = new ChannelStream(new ProxyChannel(ends.near), ends.near.remoteAddr);
    await ends.far.write(encodeJsonFrame({ type: "forward" })); // a message where DATA belongs
    await assert.rejects(stream.read(new Uint8Array(64)), SyntaxError);
    assert.equal(stream.clean, false);
    assert.equal(await ends.far.read(new Uint8Array(64)), null);
  },
});
