// An upload sink for the benchmark: reads each request body to the end, then answers
// with the byte count, so an upload is timed until the app has really received it.
// Usage: deno run -A bench/upload_sink.ts  (prints its URL, serves until SIGTERM)

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const encoder = new TextEncoder();

async function serve(conn: Deno.TcpConn): Promise<void> {
  conn.setNoDelay(true);
  const buffer = new Uint8Array(256 * 1024);
  let pending: Uint8Array = new Uint8Array(0);
  for (;;) {
    // Read a request head.
    let end = -1;
    while ((end = findHeadEnd(pending)) < 0) {
      const n = await conn.read(buffer);
      if (n === null) return;
      pending = concat(pending, buffer.subarray(0, n));
    }
    const head = new TextDecoder().decode(pending.subarray(0, end));
    let remaining = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
    const already = Math.min(remaining, pending.length - end);
    remaining -= already;
    pending = pending.slice(end + already);
    let total = already;
    while (remaining > 0) {
      const n = await conn.read(buffer.subarray(0, Math.min(buffer.length, remaining)));
      if (n === null) return;
      remaining -= n;
      total += n;
    }
    const body = `${total}\n`;
    const answer = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    await conn.write(encoder.encode(answer));
  }
}

function findHeadEnd(bytes: Uint8Array): number {
  for (let i = 3; i < bytes.length; i++) {
    if (bytes[i] === 10 && bytes[i - 1] === 13 && bytes[i - 2] === 10 && bytes[i - 3] === 13) {
      return i + 1;
    }
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

Deno.addSignalListener("SIGTERM", () => listener.close());
Deno.stdout.writeSync(encoder.encode(`http://127.0.0.1:${listener.addr.port}\n`));
try {
  for await (const conn of listener) {
    serve(conn).catch(() => {}).finally(() => {
      try {
        conn.close();
      } catch { /* closed */ }
    });
  }
} catch { /* closed */ }
Deno.exit(0);
