// TLS to a local app (--local-https), through node:tls adapted to the relay's
// Duplex: the one TLS client here that can skip certificate checks (for
// --allow-invalid-cert) and whose socket can be closed in mid-handshake (a
// Deno TlsConn closed then keeps its TCP socket open).

import tls from "node:tls";
import type { Duplex } from "../io.ts";
import { NodeConn } from "../node_conn.ts";

/** How the client speaks TLS to a local app. */
export interface LocalTls {
  /** Name sent as SNI and checked in the certificate (the `--local-host`). */
  serverName: string;
  /** Extra CA certificates (PEM) to trust. */
  caCerts: string[] | undefined;
  /** Accept any certificate: self-signed, expired, or for another name. */
  allowInvalid: boolean;
}

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
  const duplex = new NodeConn(socket);
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
