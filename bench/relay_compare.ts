// `deno task bench:relay`: throughput of the read/write loop relay against pipeTo relays.
//
// A sender pushes SIZE_MB through a one-hop relay to a receiver, all on 127.0.0.1,
// RUNS times per variant; prints the median MB/s and whether half-close survived
// (the receiver answers after EOF and the sender must get that answer).

import { pipe } from "./pipe.ts";

const SIZE_MB = Number(Deno.env.get("SIZE_MB") ?? 512);
const RUNS = Number(Deno.env.get("RUNS") ?? 5);
const CHUNK = new Uint8Array(256 * 1024).fill(7);

type Relay = (a: Deno.TcpConn, b: Deno.TcpConn) => Promise<void>;

/** Our relay: a read/write loop with a reused, growing buffer; half-close kept. */
const loop: Relay = async (a, b) => void await pipe(a, b);

/** pipeTo over conn.readable/writable: the stream closes the socket at EOF. */
const pipeToNative: Relay = async (a, b) => {
  await Promise.allSettled([
    a.readable.pipeTo(b.writable, { preventClose: true }).then(() => b.closeWrite()),
    b.readable.pipeTo(a.writable, { preventClose: true }).then(() => a.closeWrite()),
  ]);
  for (const c of [a, b]) {
    try {
      c.close();
    } catch { /* closed by the stream */ }
  }
};

/** pipeTo over a byte stream that reads with conn.read, so EOF does not close the socket. */
const pipeToHalfClose: Relay = async (a, b) => {
  const readable = (conn: Deno.TcpConn): ReadableStream<Uint8Array> => {
    const source: UnderlyingByteSource = {
      type: "bytes",
      autoAllocateChunkSize: 64 * 1024,
      async pull(controller) {
        const view = controller.byobRequest!.view as Uint8Array;
        const n = await conn.read(view);
        if (n === null) {
          controller.close();
          controller.byobRequest!.respond(0);
        } else controller.byobRequest!.respond(n);
      },
    };
    return new ReadableStream(source);
  };
  const writable = (conn: Deno.TcpConn) =>
    new WritableStream<Uint8Array>({
      async write(chunk) {
        for (let at = 0; at < chunk.length;) at += await conn.write(chunk.subarray(at));
      },
      close: () => conn.closeWrite(),
    });
  await Promise.allSettled([
    readable(a).pipeTo(writable(b)),
    readable(b).pipeTo(writable(a)),
  ]);
  a.close();
  b.close();
};

async function runOnce(fn: Relay): Promise<{ mbps: number; halfClose: boolean }> {
  const sink = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const front = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const receiving = (async () => {
    const conn = await sink.accept();
    const buf = new Uint8Array(256 * 1024);
    let total = 0;
    for (let n; (n = await conn.read(buf)) !== null;) total += n;
    await conn.write(new TextEncoder().encode(`got ${total}`));
    conn.close();
  })();
  const relaying = (async () => {
    const a = await front.accept();
    const b = await Deno.connect({ hostname: "127.0.0.1", port: sink.addr.port });
    a.setNoDelay(true);
    b.setNoDelay(true);
    await fn(a, b);
  })();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: front.addr.port });
  const bytes = SIZE_MB * 1024 * 1024;
  const start = performance.now();
  for (let sent = 0; sent < bytes; sent += CHUNK.length) {
    for (let at = 0; at < CHUNK.length;) at += await conn.write(CHUNK.subarray(at));
  }
  await conn.closeWrite();
  const answer = new Uint8Array(64);
  let text = "";
  try {
    for (let n; (n = await conn.read(answer)) !== null;) {
      text += new TextDecoder().decode(answer.subarray(0, n));
    }
  } catch { /* reset: half-close lost */ }
  const seconds = (performance.now() - start) / 1000;
  conn.close();
  await Promise.allSettled([receiving, relaying]);
  sink.close();
  front.close();
  return { mbps: bytes / 1e6 / seconds, halfClose: text === `got ${bytes}` };
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

const rows: string[] = [];
let loopMbps = 0;
for (
  const [name, fn] of [
    ["read/write loop (lib/relay.ts)", loop],
    ["pipeTo, conn.readable/writable", pipeToNative],
    ["pipeTo, byte streams over read/write", pipeToHalfClose],
  ] as const
) {
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await runOnce(fn));
  const mbps = median(runs.map((r) => r.mbps));
  if (fn === loop) loopMbps = mbps;
  const half = runs.every((r) => r.halfClose) ? "kept" : "lost";
  rows.push(`| ${name} | ${mbps.toFixed(0)} | ${(mbps / loopMbps).toFixed(2)} | ${half} |`);
}
// deno-lint-ignore no-console -- a benchmark prints its table
console.log(
  `${SIZE_MB} MiB one way through one relay hop, median of ${RUNS} (Deno ${Deno.version.deno})\n\n` +
    "| relay | MB/s | vs loop | half-close |\n|---|---:|---:|---|\n" + rows.join("\n"),
);
