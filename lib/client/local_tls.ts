// TLS to a local app (--local-https): verified with Deno's own TLS, or, with
// --allow-invalid-cert, through node:tls, the one TLS client here that can skip
// certificate checks, adapted to the relay's Duplex.

import tls from "node:tls";
import type { Duplex } from "../relay.ts";

/** How the client speaks TLS to a local app. */
export interface LocalTls {
  /** Name sent as SNI and checked in the certificate (the `--local-host`). */
  serverName: string;
  /** Extra CA certificates (PEM) to trust. */
  caCerts: string[] | undefined;
  /** Accept any certificate: self-signed, expired, or for another name. */
  allowInvalid: boolean;
}

/** Inbound bytes a node socket may queue before it is paused (back-pressure). */
const NODE_QUEUE_HIGH_BYTES = 256 * 1024;

/** Hostnames that are IP literals cannot be sent as SNI. */
const isIp = (name: string): boolean => /^[\d.]+$/.test(name) || name.includes(":");

/** Starts TLS on `tcp` and completes the handshake, certificate checked. */
export async function startLocalTls(tcp: Deno.TcpConn, options: LocalTls): Promise<Deno.TlsConn> {
  const conn = await Deno.startTls(tcp, {
    hostname: options.serverName,
    alpnProtocols: ["http/1.1"],
    ...(options.caCerts ? { caCerts: options.caCerts } : {}),
  });
  try {
    await conn.handshake();
  } catch (e) {
    conn.close();
    throw e;
  }
  return conn;
}

/**
 * Connects to `hostname:port` over TLS without checking the certificate, and
 * completes the handshake. `signal` aborts the attempt.
 */
export function connectInsecureTls(
  hostname: string,
  port: number,
  serverName: string,
  signal: AbortSignal,
): Promise<Duplex> {
  // allowHalfOpen (passed on to the socket, missing from the types) keeps half-close.
  const options: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
    host: hostname,
    port,
    ...(isIp(serverName) ? {} : { servername: serverName }),
    rejectUnauthorized: false,
    allowHalfOpen: true,
    ALPNProtocols: ["http/1.1"],
  };
  const socket = tls.connect(options);
  const duplex = new NodeSocketDuplex(socket);
  return new Promise((resolve, reject) => {
    const fail = (e: unknown): void => {
      socket.destroy();
      reject(e);
    };
    const onAbort = (): void => fail(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("error", fail);
    socket.once("secureConnect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.off("error", fail);
      socket.setNoDelay(true);
      resolve(duplex);
    });
  });
}

/** A node socket seen as a Duplex: reads from a bounded queue, writes resolve once flushed. */
class NodeSocketDuplex implements Duplex {
  #socket: tls.TLSSocket;
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #closed = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
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

  async read(p: Uint8Array): Promise<number | null> {
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

  write(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    return new Promise((resolve, reject) => {
      // The callback runs once the bytes are handed to the socket, so `p` may be reused then.
      this.#socket.write(p, (e) => e ? reject(e) : resolve(p.length));
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.#socket.end(resolve));
  }

  close(): void {
    this.#closed = true;
    this.#socket.destroy();
    this.#wake?.();
  }
}
