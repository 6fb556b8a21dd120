// TLS to a local app (--local-https), through node:tls adapted to the relay's
// Duplex: the one TLS client here that can skip certificate checks (for
// --allow-invalid-cert) and whose socket can be closed in mid-handshake (a
// Deno TlsConn closed then keeps its TCP socket open).

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

/**
 * Connects to `hostname:port` over TLS and completes the handshake; the
 * certificate is checked against `serverName` (system roots and `caCerts`)
 * unless `allowInvalid`. `signal` aborts the attempt and closes the socket.
 */
export function connectLocalTls(
  hostname: string,
  port: number,
  options: LocalTls,
  signal: AbortSignal,
): Promise<Duplex> {
  const { serverName, caCerts, allowInvalid } = options;
  // allowHalfOpen (passed on to the socket, missing from the types) keeps half-close.
  const connectOptions: tls.ConnectionOptions & { allowHalfOpen: boolean } = {
    host: hostname,
    port,
    ...(isIp(serverName) ? {} : { servername: serverName }),
    // Node's `ca` replaces the roots: keep them, so a publicly trusted app still passes.
    ...(caCerts ? { ca: [...tls.rootCertificates, ...caCerts] } : {}),
    rejectUnauthorized: !allowInvalid,
    allowHalfOpen: true,
    ALPNProtocols: ["http/1.1"],
  };
  const socket = tls.connect(connectOptions);
  const duplex = new NodeSocketDuplex(socket);
  return new Promise((resolve, reject) => {
    const fail = (e: unknown): void => {
      socket.destroy();
      // Node's refusal is a plain Error with a code; the dialer's fallback needs Deno's kind.
      const refused = (e as { code?: string })?.code === "ECONNREFUSED";
      reject(refused ? new Deno.errors.ConnectionRefused("connection refused") : e);
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

  write(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    return new Promise((resolve, reject) => {
      // The callback runs once the bytes are handed to the socket, so `p` may be reused then.
      this.#socket.write(p, (e) => e ? reject(e) : resolve(p.length));
    });
  }

  closeWrite(): Promise<void> {
    const socket = this.#socket;
    if (this.#closed || socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      // end()'s callback does not run if the socket is destroyed meanwhile; "close" always does.
      socket.once("close", () => resolve());
      socket.end(() => resolve());
    });
  }

  close(): void {
    this.#closed = true;
    this.#socket.destroy();
    this.#wake?.();
  }
}
