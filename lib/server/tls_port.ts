// The server's TLS port: node:tls terminates TLS, because in Deno 2.9.6 a
// Deno.TlsConn closed before its handshake completes keeps its TCP socket open
// (a client that sends nothing would hold a descriptor for ever), while a node
// socket closes for real. A node:net server accepts and hands each socket to a
// node:tls server that never listens itself, so that a trusted proxy's PROXY
// header can be read off the TCP socket before the ClientHello. Each
// connection counts against the per-IP limit of connections being routed from
// its TCP accept on, through its handshake.

import tls from "node:tls";
import net from "node:net";
import type { Conn } from "../io.ts";
import { NodeConn } from "../node_conn.ts";
import {
  ProxiedConn,
  readSocketProxyHeader,
  type TrustedProxies,
  visitorAddr,
} from "./proxy_header.ts";

/** ALPN: HTTP/1.1 only, so browsers cannot coalesce subdomains onto one HTTP/2 connection. */
const ALPN = ["http/1.1"];

/** What a TLS port needs from its server. */
export interface TlsPortOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** PEM certificate chain (the default one; none: handshakes wait for `setCertificate` or `sni`). */
  cert?: string | undefined;
  /** PEM private key. */
  key?: string | undefined;
  /**
   * Chooses a certificate by SNI at each handshake (node's official
   * `SNICallback`, called per connection, nothing cached): undefined refuses
   * the handshake. Clients without SNI get the default certificate.
   */
  sni?: ((host: string) => tls.SecureContext | undefined) | undefined;
  /**
   * Time a connection has for its handshake (from its TCP accept, or from its
   * PROXY header; the header has as long).
   */
  handshakeTimeoutMs: number;
  /**
   * Peers whose connections start with a PROXY header, read before the
   * handshake. @default {undefined: none}
   */
  trusted?: TrustedProxies | undefined;
  /**
   * Counts a new TCP connection from `ip` (undefined: a trusted proxy's, until
   * its header names the visitor); false refuses it (it is closed at once).
   */
  admit(ip: string | undefined): boolean;
  /** Uncounts a connection counted by `admit`, once, when it is routed or gone. */
  release(ip: string | undefined): void;
  /** A trusted proxy's connection without a valid PROXY header in time (it is closed). */
  onProxyError(reason: string, ip: string): void;
  /** A connection whose handshake completed; call `routed` once its first bytes are read. */
  onConnection(conn: Conn, routed: () => void): void;
  /** A handshake that failed (for the log). */
  onHandshakeError(error: Error): void;
}

/**
 * Checks that `cert` and `key` make a usable pair (a mismatch is caught here:
 * node's secure contexts do not check it); throws a one-line reason otherwise.
 */
export function checkCertificatePair(cert: string, key: string): void {
  Deno.listenTls({ port: 0, hostname: "127.0.0.1", cert, key }).close();
}

/** node's SNICallback over `choose`: a name nothing covers fails the handshake. */
function sniCallback(
  choose: (host: string) => tls.SecureContext | undefined,
): (servername: string, callback: (e: Error | null, context?: tls.SecureContext) => void) => void {
  return (servername, callback) => {
    const context = choose(servername.toLowerCase());
    if (context) callback(null, context);
    else callback(new Error(`No certificate for ${JSON.stringify(servername)}`));
  };
}

/** A listening TLS port. */
export class TlsPort {
  /** The address it listens on, with the bound port. */
  readonly addr: Deno.NetAddr;
  #server: net.Server;
  #engine: tls.Server;
  #handshaking: Map<string, net.Socket>;

  private constructor(
    server: net.Server,
    engine: tls.Server,
    addr: Deno.NetAddr,
    handshaking: Map<string, net.Socket>,
  ) {
    this.#server = server;
    this.#engine = engine;
    this.addr = addr;
    this.#handshaking = handshaking;
  }

  /** Listens; rejects (with `Deno.errors.AddrInUse` for a busy port) if it cannot. */
  static async open(options: TlsPortOptions): Promise<TlsPort> {
    const { cert, key, sni } = options;
    if (cert !== undefined && key !== undefined) checkCertificatePair(cert, key);
    // Never listens: sockets come from `server` below, as node's docs allow.
    const engine = tls.createServer({
      ...(cert !== undefined && key !== undefined ? { cert, key } : {}),
      ...(sni ? { SNICallback: sniCallback(sni) } : {}),
      ALPNProtocols: ALPN,
      handshakeTimeout: options.handshakeTimeoutMs,
      allowHalfOpen: true,
    } as tls.TlsOptions);
    // Admission is per TCP connection, from accept to its first bytes after the
    // handshake (the handler's `routed`): keyed by its address and port. A
    // trusted proxy's counts against the total only until its header names
    // the visitor, then against the visitor's IP.
    const handshaking = new Map<string, net.Socket>();
    const admitted = new Map<string, string | undefined>();
    const visitors = new Map<string, Deno.NetAddr>();
    const keyOf = (s: net.Socket): string => `${s.remoteAddress}|${s.remotePort}`;
    const settle = (key: string): void => {
      handshaking.delete(key);
      visitors.delete(key);
      if (!admitted.has(key)) return;
      const ip = admitted.get(key);
      admitted.delete(key);
      options.release(ip);
    };
    const proxied = async (socket: net.Socket, key: string, own: Deno.NetAddr): Promise<void> => {
      const read = await readSocketProxyHeader(socket, options.handshakeTimeoutMs);
      if (!handshaking.has(key)) return; // closed meanwhile (by the peer, or by close())
      if (read.state === "failed") {
        options.onProxyError(read.reason, own.hostname);
        return void socket.destroy();
      }
      const visitor = visitorAddr(read.header, own);
      settle(key);
      if (!options.admit(visitor.hostname)) return void socket.destroy();
      admitted.set(key, visitor.hostname);
      handshaking.set(key, socket);
      visitors.set(key, visitor);
      engine.emit("connection", socket);
    };
    const server = net.createServer({ allowHalfOpen: true }, (socket: net.Socket) => {
      const ip = (socket.remoteAddress ?? "").replace(/^::ffff:(?=\d+\.)/, "");
      const trusted = options.trusted?.trusts(ip) === true;
      if (!options.admit(trusted ? undefined : ip)) return void socket.destroy();
      const key = keyOf(socket);
      admitted.set(key, trusted ? undefined : ip);
      handshaking.set(key, socket);
      socket.on("close", () => settle(key));
      socket.on("error", () => socket.destroy());
      if (!trusted) return void engine.emit("connection", socket);
      void proxied(socket, key, { transport: "tcp", hostname: ip, port: socket.remotePort ?? 0 });
    });
    engine.on("tlsClientError", (error: Error, socket: net.Socket) => {
      options.onHandshakeError(error);
      socket.destroy();
    });
    engine.on("secureConnection", (socket: tls.TLSSocket) => {
      const key = keyOf(socket);
      handshaking.delete(key);
      socket.setNoDelay(true);
      const visitor = visitors.get(key);
      const conn = visitor ? new ProxiedConn(new NodeConn(socket), visitor) : new NodeConn(socket);
      options.onConnection(conn, () => settle(key));
    });
    await new Promise<void>((resolve, reject) => {
      const fail = (e: Error & { code?: string }): void => {
        reject(e.code === "EADDRINUSE" ? new Deno.errors.AddrInUse(e.message) : e);
      };
      server.once("error", fail);
      server.listen(options.port, options.hostname, () => {
        server.off("error", fail);
        resolve();
      });
    });
    const address = server.address() as net.AddressInfo;
    return new TlsPort(
      server,
      engine,
      { transport: "tcp", hostname: address.address, port: address.port },
      handshaking,
    );
  }

  /**
   * Swaps the certificate: new handshakes get the new one, open connections
   * are untouched, the port is never rebound. Throws (keeping the old one) if
   * the pair is unusable.
   */
  setCertificate(cert: string, key: string): void {
    checkCertificatePair(cert, key);
    this.#engine.setSecureContext({ cert, key });
  }

  /**
   * Stops accepting and destroys connections still in their handshake; the
   * others belong to their handlers, which the server closes.
   */
  close(): void {
    this.#server.close();
    for (const socket of this.#handshaking.values()) socket.destroy();
    this.#handshaking.clear();
  }
}
