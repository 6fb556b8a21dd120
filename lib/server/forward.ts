// A routed visitor's connection handed to its tunnel: counted against the
// tunnel's streams, watched while it waits for a proxy connection (a visitor
// that leaves is forwarded nothing), moved to another proxy connection when the
// one it got does not accept the stream, then relayed.

import type { ProxyChannel } from "../channel.ts";
import { httpError } from "../http/response.ts";
import { portName } from "./claim.ts";
import {
  answerAndLinger,
  ByteReader,
  closeQuietly,
  type Conn,
  type Duplex,
  peerOf,
  withFirstRead,
} from "../io.ts";
import { hostWithPort } from "../names.ts";
import { encodeStreamStart, type ServerMessage } from "../protocol.ts";
import { logStream, relayStream } from "../relay.ts";
import type { ServerContext } from "./context.ts";
import type { Session } from "./session.ts";
import type { ServerTunnel } from "./tunnel.ts";
import type { TcpOutcome } from "./outcomes.ts";

/**
 * What a public connection carries: HTTP in the clear, HTTP the server decrypted
 * (its TLS port), TLS relayed end to end, or a TCP port's bytes.
 */
export type Carried = "http" | "https" | "tls" | "tcp";

/**
 * Reads a waiting visitor's connection into its reader (while there is room),
 * so that a visitor that goes away is noticed and what it sends meanwhile is
 * kept for the stream. With `halfClose`, an end of stream is not leaving (a TCP
 * visitor may send everything, half-close, and wait for the answer): it goes
 * to the app as the stream's END.
 */
class VisitorWatch {
  #reader: ByteReader;
  #read: Promise<boolean> | undefined;
  #sent = 0;
  #halfClose: boolean;
  /** Resolves once the visitor's end of stream (unless `halfClose`) or an error was read. */
  readonly gone: Promise<void>;
  #leave!: () => void;

  constructor(reader: ByteReader, halfClose: boolean) {
    this.#reader = reader;
    this.#halfClose = halfClose;
    this.gone = new Promise((resolve) => this.#leave = resolve);
    this.#next();
  }

  #next(): void {
    if (this.#reader.room === 0) return this.#read = undefined; // full: wait quietly
    const read = this.#reader.fill();
    this.#read = read;
    read.then((more) => {
      if (this.#read !== read) return; // handed to the stream
      if (more) this.#next();
      else if (!this.#halfClose) this.#leave();
    }, () => {
      if (this.#read === read) this.#leave(); // reset: gone (the stream sees the error itself)
    });
  }

  /** Bytes that went out with `open` (for the metrics). */
  get prefixLength(): number {
    return this.#sent;
  }

  /** The bytes read so far, which go out with `open`; later ones come from `rest()`. */
  prefix(): Uint8Array {
    const bytes = this.#reader.buffered;
    this.#sent = bytes.length;
    return bytes;
  }

  /**
   * Stops watching: what comes first in the stream, in order: the bytes read
   * since `prefix()` (at once: a visitor may be waiting for its answer), then
   * what the read under way brings (null: the visitor's end; its error rejects).
   */
  rest(): Promise<Uint8Array | null>[] {
    const read = this.#read;
    this.#read = undefined;
    const reads: Promise<Uint8Array | null>[] = [];
    const mark = this.#reader.buffered.length;
    if (this.#sent < mark) reads.push(Promise.resolve(this.#reader.buffered.slice(this.#sent)));
    if (read) reads.push(read.then((more) => more ? this.#reader.buffered.slice(mark) : null));
    return reads;
  }
}

/**
 * Where a visitor came from when another node forwarded it: its address, and
 * for a TCP port the address it reached (else both come from `conn`).
 */
export interface Origin {
  /** The visitor's address, `ip:port`. */
  peer: string;
  /** For a TCP port: the address the visitor reached. */
  dest?: string;
}

/** Hands a public connection to an idle proxy connection and relays one stream over it. */
export async function forward(
  ctx: ServerContext,
  conn: Conn,
  reader: ByteReader,
  tunnel: ServerTunnel,
  carried: Carried,
  id: number,
  origin?: Origin,
): Promise<void> {
  const where = { conn: id, tunnel: tunnel.name };
  const session = tunnel.session as Session;
  const http = carried === "http" || carried === "https";
  // TCP visitors are counted apart: they were never sniffed.
  const report = (outcome: TcpOutcome, status: 503 | 504 | "abandoned"): void => {
    if (carried === "tcp") ctx.metrics.tcpConnection(outcome);
    else ctx.metrics.connection(status);
  };
  if (!tunnel.enterStream()) {
    ctx.log.warn("Tunnel at its stream limit", { ...where, max: ctx.limits.maxStreamsPerTunnel });
    report("busy", 503);
    if (http) {
      await answerAndLinger(conn, httpError(503, "Tunnel is busy, try again"));
    }
    return;
  }
  const watch = new VisitorWatch(reader, carried === "tcp");
  const left = new AbortController();
  watch.gone.then(() => left.abort());
  let proxy: ProxyChannel | undefined;
  let reused = false;
  try {
    const peer = origin?.peer ?? peerOf(conn);
    const deadline = Date.now() + ctx.limits.proxyWaitTimeoutMs;
    const waitStarted = performance.now(); // for the metrics
    // A proxy connection a NAT dropped silently looks idle until it fails to
    // accept; nothing of the visitor's went anywhere yet, so the next one gets it.
    for (;;) {
      proxy = await session.takeProxy(Math.max(0, deadline - Date.now()), left.signal);
      if (!proxy) break;
      ctx.conns.add(proxy.conn);
      // A connection heard from lately is alive: the stream starts at once. One quiet
      // for longer may be dead, and the client must take the stream first.
      const quiet = Date.now() - proxy.heardAt >= ctx.limits.acceptAfterQuietMs;
      const open: ServerMessage = carried === "tls" || carried === "tcp"
        ? { type: "open", tunnel: tunnel.id, peer, proto: carried }
        : { type: "open", tunnel: tunnel.id, peer, proto: "http", scheme: carried };
      if (carried === "tcp") open.dest = origin?.dest ?? localOf(conn);
      if (quiet) open.accept = true;
      await proxy.sendStart(encodeStreamStart(open, watch.prefix()));
      if (!quiet || await proxy.readAccept(ctx.limits.streamAcceptTimeoutMs)) break;
      ctx.log.debug("Proxy connection did not accept a stream: trying another", where);
      session.suspectIdle(); // its neighbours went through the same NAT: check them now
      ctx.conns.delete(proxy.conn);
      closeQuietly(proxy.conn);
      proxy = undefined;
    }
    if (proxy) ctx.metrics.proxyWaited(performance.now() - waitStarted);
    if (left.signal.aborted && !proxy) {
      report("abandoned", "abandoned");
      return ctx.log.debug("Visitor left while waiting for the tunnel: nothing forwarded", where);
    }
    if (!proxy) {
      ctx.log.warn("No proxy connection in time", where);
      report("timeout", 504);
      if (http) {
        await answerAndLinger(conn, httpError(504, "Tunnel did not answer in time"));
      }
      return;
    }
    const raw = watch.rest().reduceRight<Duplex>(withFirstRead, conn);
    const relaying = relayStream(raw, proxy, {
      idleTimeoutMs: ctx.limits.streamIdleTimeoutMs,
      signal: tunnel.streamSignal,
    });
    const result = await ctx.metrics.relayed(
      tunnel.stats,
      watch.prefixLength,
      relaying,
      carried === "tcp",
    );
    logStream(ctx.log, result, where);
    ctx.conns.delete(proxy.conn);
    reused = result.reusable && !ctx.closing && session.addProxy(proxy);
  } finally {
    tunnel.leaveStream();
    if (proxy) {
      ctx.conns.delete(proxy.conn);
      if (!reused) closeQuietly(proxy.conn);
    }
  }
}

/** The address a connection reached, `ip:port`. */
function localOf(conn: Conn): string {
  const addr = (conn as Deno.Conn).localAddr as Deno.NetAddr | undefined;
  return addr ? hostWithPort(addr.hostname, addr.port, -1) : "";
}

/**
 * A visitor of a TCP tunnel's port: relayed to the tunnel that holds the port,
 * or closed at once while the port is held for a client that went away.
 */
export async function forwardTcp(
  ctx: ServerContext,
  conn: Deno.TcpConn,
  port: number,
  id: number,
): Promise<void> {
  conn.setNoDelay(true);
  const tunnel = ctx.registry.get(portName(port));
  if (!tunnel) {
    ctx.metrics.tcpConnection("closed");
    return ctx.log.debug("TCP visitor for a held port: closed", { conn: id, port });
  }
  await forward(ctx, conn, new ByteReader(conn, ctx.limits.maxSniffBytes), tunnel, "tcp", id);
}
