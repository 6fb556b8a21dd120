// Helpers of the TCP tunnel tests: free port ranges found by binding, an echo app
// that keeps half-close, bulk transfers hashed as they pass, descriptor counts.

import { createHash } from "node:crypto";
import { closeQuietly } from "../lib/io.ts";
import { HOST, patternBytes, type RawApp, rawApp, writeAllTo } from "./helpers.ts";

/**
 * `count` consecutive ports of 127.0.0.1 that are free now (each bound and
 * released), from a random place in 20000-59999; a few tries, then it throws.
 * A TCP tunnel's range must be known before its server starts, so this is a
 * probe, not a reservation: the tests that use it tolerate nothing else here.
 */
export function freePortRange(count: number): [number, number] {
  for (let attempt = 0; attempt < 20; attempt++) {
    const from = 20_000 + Math.floor(Math.random() * (40_000 - count));
    const bound: Deno.Listener[] = [];
    try {
      for (let p = from; p < from + count; p++) {
        bound.push(Deno.listen({ hostname: HOST, port: p }));
      }
      return [from, from + count - 1];
    } catch {
      // one of them is taken: try elsewhere
    } finally {
      bound.forEach((l) => l.close());
    }
  }
  throw new Error(`Cannot find ${count} free ports in a row`);
}

/** Descriptors process `pid` holds now (read by `ls`: /proc/self needs --allow-all). */
export function fdsOf(pid: number = Deno.pid): number {
  const { stdout } = new Deno.Command("ls", { args: [`/proc/${pid}/fd`] }).outputSync();
  return new TextDecoder().decode(stdout).trim().split(/\s+/).length;
}

/** An echo app: each connection gets back what it sends, and its half-close after it. */
export function echoApp(): RawApp {
  return rawApp(async (conn) => {
    const buffer = new Uint8Array(256 * 1024);
    for (let n; (n = await conn.read(buffer)) !== null;) {
      await writeAllTo(conn, buffer.subarray(0, n));
    }
    await conn.closeWrite();
    // Wait for the peer's close, so that our close is never a reset under its reads.
    await conn.read(buffer).catch(() => null);
  });
}

/** SHA-256 of a stream of chunks, as they pass. */
export class Sha256Stream {
  #hash = createHash("sha256");
  /** Bytes hashed so far. */
  bytes = 0;
  /** Hashes `chunk`. */
  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
    this.bytes += chunk.length;
  }
  /** The hex digest. */
  digest(): string {
    return this.#hash.digest("hex");
  }
}

/**
 * Sends `total` bytes of a pattern on `conn` and half-closes, while reading
 * what comes back to its end; resolves with the SHA-256 of both ways.
 */
export async function echoBulk(
  conn: Deno.TcpConn,
  total: number,
): Promise<{ sent: string; received: string; receivedBytes: number }> {
  const chunk = patternBytes(1024 * 1024, total);
  const sent = new Sha256Stream();
  const received = new Sha256Stream();
  const writing = (async () => {
    while (sent.bytes < total) {
      const piece = chunk.subarray(0, Math.min(chunk.length, total - sent.bytes));
      sent.update(piece);
      await writeAllTo(conn, piece);
    }
    await conn.closeWrite();
  })();
  const buffer = new Uint8Array(256 * 1024);
  try {
    for (let n; (n = await conn.read(buffer)) !== null;) received.update(buffer.subarray(0, n));
  } finally {
    await writing.catch(() => {});
  }
  await writing;
  return { sent: sent.digest(), received: received.digest(), receivedBytes: received.bytes };
}

/** Connects to a tunnel's TCP port on 127.0.0.1, Nagle off. */
export async function dialPort(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: HOST, port });
  conn.setNoDelay(true);
  return conn;
}

/** Whether a connection to `port` is refused (nothing listens) now. */
export async function refused(port: number): Promise<boolean> {
  try {
    closeQuietly(await Deno.connect({ hostname: HOST, port }));
    return false;
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused) return true;
    throw e;
  }
}
