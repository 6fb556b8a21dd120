// A node socket (node:net, node:tls) behind the Conn interface the relay and the
// handlers drive: for TLS through node:tls, the one TLS in Deno 2.9.6 whose
// socket really closes when closed in mid-handshake.

import type net from "node:net";
import type { Conn } from "./io.ts";

/** Inbound bytes a node socket may queue before it is paused (back-pressure). */
const NODE_QUEUE_HIGH_BYTES = 256 * 1024;

/**
 * A node socket seen as a {@linkcode Conn}: reads come from a bounded queue
 * (the socket is paused above NODE_QUEUE_HIGH_BYTES), writes resolve once node
 * has taken the bytes, `closeWrite()` is `end()` (half-open allowed),
 * `close()` is `destroy()`, which really closes it, mid-handshake too.
 */
export class NodeConn implements Conn {
  /** The peer's address (as node reported it at connection). */
  readonly remoteAddr: Deno.NetAddr;
  #socket: net.Socket;
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #closed = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  /** Wraps `socket`, from now on its one reader. */
  constructor(socket: net.Socket) {
    this.#socket = socket;
    this.remoteAddr = {
      transport: "tcp",
      hostname: (socket.remoteAddress ?? "0.0.0.0").replace(/^::ffff:(?=\d+\.)/, ""),
      port: socket.remotePort ?? 0,
    };
    const wake = (): void => {
      this.#wake?.();
      this.#wake = undefined;
    };
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued > NODE_QUEUE_HIGH_BYTES) socket.pause();
      wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      wake();
    });
    socket.on("error", (e: Error) => {
      this.#error ??= e;
      wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      wake();
    });
  }

  /** Reads queued bytes into `p`; null at the end of stream. */
  async read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) throw new Deno.errors.BadResource("closed");
    while (this.#chunks.length === 0) {
      if (this.#closed) throw new Deno.errors.BadResource("closed");
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0]!;
      const take = Math.min(chunk.length, p.length - n);
      p.set(chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    this.#queued -= n;
    if (this.#queued <= NODE_QUEUE_HIGH_BYTES / 2 && this.#socket.isPaused()) this.#socket.resume();
    return n;
  }

  /** Hands `p` to the socket; resolves once it took it. */
  write(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    return new Promise((resolve, reject) => {
      // The callback runs once the bytes are handed to the socket, so `p` may be reused then.
      this.#socket.write(p, (e) => e ? reject(e) : resolve(p.length));
    });
  }

  /** Ends the writing direction. */
  closeWrite(): Promise<void> {
    const socket = this.#socket;
    if (this.#closed || socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      // end()'s callback does not run if the socket is destroyed meanwhile; "close" always does.
      socket.once("close", () => resolve());
      socket.end(() => resolve());
    });
  }

  /** Destroys the socket. */
  close(): void {
    this.#closed = true;
    this.#socket.destroy();
    this.#wake?.();
  }
}
