// The client's proxy connections for one session: a pool kept topped up, each
// carrying one visitor's stream after another to the local app.

import { ProxyChannel } from "../channel.ts";
import { GrowingBuffer } from "../growing_buffer.ts";
import { httpError } from "../http/response.ts";
import { closeQuietly, writeAll } from "../io.ts";
import { MAX_CLIENT_PROXIES, PROXY_POOL_QUIET_SIZE } from "../limits.ts";
import { describeError, isDisconnect, logCaught, type Logger } from "../log.ts";
import {
  dataFrame,
  decodeServerFrame,
  PING_FRAME,
  PROTOCOL_VERSION,
  type ServerMessage,
} from "../protocol.ts";
import { type Duplex, logStream, relayStream } from "../relay.ts";
import { dialServer, type ServerTarget } from "./dial.ts";
import type { VisitorInfo } from "./forwarded.ts";
import { HttpStream } from "./http_stream.ts";
import { AppLink } from "./app_pool.ts";
import type { LocalTarget } from "./local_target.ts";
export type { HttpAwareness } from "./local_target.ts";

/** An idle proxy connection that ends younger than this is not replaced (no spinning). */
const POOL_REFILL_MIN_AGE_MS = 1_000;
/** Read buffer of a proxy connection's upgrade answer. */
const PROXY_READER_BYTES = 4096;

type Open = Extract<ServerMessage, { type: "open" }>;

/** What a pool needs from its session. */
export interface ProxyPoolOptions {
  /** The server. */
  target: ServerTarget;
  /** The session the connections attach to. */
  session: string;
  /** The session's secret. */
  secret: string;
  /** Idle connections to keep ready. */
  size: number;
  /**
   * After this long without a visitor, idle connections beyond
   * PROXY_POOL_QUIET_SIZE close (the first visitor after it tops the pool up).
   */
  quietAfterMs: number;
  /**
   * An idle connection that hears nothing (the server's pings included) for
   * this long is dead and replaced; undefined: never.
   */
  idleSilenceMs: number | undefined;
  /** Visitors served at once at most (more are refused with 503 or a close); 0: no limit. */
  maxStreams: number;
  /** The local side of the tunnel with this id on the session; undefined: none (ended). */
  local(tunnel: number): LocalTarget | undefined;
  /** Where logs go. */
  log: Logger;
  /** Runs a background task that the tunnel waits for when it closes. */
  track(task: Promise<void>): void;
}

/** One session's proxy connections, shared by its tunnels. */
export class ProxyPool {
  #options: ProxyPoolOptions;
  #idle = new Set<Deno.Conn>();
  #conns = new Set<{ close(): void }>();
  #connecting = 0;
  #busy = 0;
  #retired = false;
  #running = 0;
  #drained = Promise.withResolvers<void>();
  #stop = new AbortController();
  #lastVisitor = Date.now();
  #quietTimer: ReturnType<typeof setTimeout> | undefined;
  #shrinking = new Set<Deno.Conn>(); // idle connections closed by a quiet spell: not replaced

  /** A pool for one session; nothing is opened until `open()`. */
  constructor(options: ProxyPoolOptions) {
    this.#options = options;
  }

  /** Resolves once the pool is retired and its last connection has closed. */
  get drained(): Promise<void> {
    return this.#drained.promise;
  }

  /** Opens `count` more connections (bounded by MAX_CLIENT_PROXIES in all). */
  open(count: number): void {
    if (this.#retired) return;
    this.#quietTimer ??= setTimeout(() => this.#checkQuiet(), this.#options.quietAfterMs);
    const room = MAX_CLIENT_PROXIES - this.#idle.size - this.#connecting;
    for (let i = 0; i < Math.min(count, room); i++) {
      this.#running++;
      this.#options.track(
        this.#run().finally(() => {
          this.#running--;
          this.#checkDrained();
        }),
      );
    }
  }

  /**
   * The session is over: idle connections close now (they may be dead too),
   * busy ones after their current stream.
   */
  retire(): void {
    this.#retired = true;
    clearTimeout(this.#quietTimer);
    for (const conn of this.#idle) closeQuietly(conn);
    this.#checkDrained();
  }

  // A tunnel without visitors for a while keeps only a few idle connections: each costs
  // the server a socket and its watch (an idle public server holds thousands of tunnels).
  #checkQuiet(): void {
    if (this.#retired) return;
    const quiet = Date.now() - this.#lastVisitor;
    const { quietAfterMs } = this.#options;
    if (quiet >= quietAfterMs) {
      for (const conn of [...this.#idle].slice(PROXY_POOL_QUIET_SIZE)) {
        this.#shrinking.add(conn);
        closeQuietly(conn);
      }
    }
    this.#quietTimer = setTimeout(
      () => this.#checkQuiet(),
      quiet >= quietAfterMs ? quietAfterMs : quietAfterMs - quiet,
    );
  }

  #checkDrained(): void {
    if (this.#retired && this.#running === 0) this.#drained.resolve();
  }

  /** Closes every connection at once, busy or not. */
  close(): void {
    this.retire();
    this.#stop.abort();
    for (const conn of this.#conns) closeQuietly(conn);
  }

  // One proxy connection for its whole life: idle until `open`, a stream, idle again...
  async #run(): Promise<void> {
    const { target, session, secret, log } = this.#options;
    let dialed;
    this.#connecting++;
    try {
      dialed = await dialServer(
        target,
        { type: "attach", version: PROTOCOL_VERSION, session, secret },
        PROXY_READER_BYTES,
        this.#stop.signal,
      );
    } catch (e) {
      log.debug("Cannot open proxy connection", { error: describeError(e) });
      return;
    } finally {
      this.#connecting--;
    }
    const { conn, reader } = dialed;
    const channel = new ProxyChannel(conn, reader.buffered.slice());
    this.#conns.add(conn);
    const attachedAt = Date.now();
    let lostIdle = false;
    try {
      while (!this.#retired) {
        let message: ServerMessage | null = null;
        this.#idle.add(conn);
        const silent = this.#options.idleSilenceMs;
        const timer = silent === undefined ? undefined : setTimeout(() => {
          log.debug("Idle proxy connection silent: replacing it", { ms: silent });
          closeQuietly(conn); // the read below ends, and the pool is refilled
        }, silent);
        try {
          message = await channel.readMessage(decodeServerFrame);
        } catch (e) {
          if (!isDisconnect(e)) log.warn("Bad frame on proxy", { error: describeError(e) });
        } finally {
          clearTimeout(timer);
          this.#idle.delete(conn);
        }
        lostIdle = message === null && !this.#shrinking.delete(conn);
        if (message?.type === "ping") {
          // The server checks that idle connections are alive: answer at once.
          if (await writeAll(conn, PING_FRAME).then(() => true, () => false)) continue;
        } else if (message?.type === "open") {
          log.debug("Visitor arrived", { peer: message.peer, proto: message.proto });
          this.#lastVisitor = Date.now();
          if (message.accept && !await channel.sendAccept().then(() => true, () => false)) break;
          // Keep `size` connections ready: replace this one while it is busy.
          this.open(this.#options.size - this.#idle.size - this.#connecting);
          this.#busy++;
          try {
            if (await this.#serveVisitor(channel, message)) continue;
          } finally {
            this.#busy--;
          }
        } else if (message?.type === "error") {
          const level = message.code === "pool-full" ? "debug" : "warn";
          log[level]("Proxy connection refused", { code: message.code, msg: message.message });
        } else if (message) {
          log.warn("Unexpected frame on proxy", { type: message.type });
        }
        break;
      }
    } finally {
      this.#conns.delete(conn);
      closeQuietly(conn);
    }
    // The server closed it while idle (it found it dead, or a network dropped it):
    // keep the pool at its size. One that lived less than a second is not replaced,
    // so a server that closes at once cannot make the pool spin.
    if (lostIdle && !this.#retired && Date.now() - attachedAt >= POOL_REFILL_MIN_AGE_MS) {
      this.open(this.#options.size - this.#idle.size - this.#connecting);
    }
  }

  // One visitor's stream; true when the channel may carry the next one.
  async #serveVisitor(channel: ProxyChannel, open: Open): Promise<boolean> {
    const { log, maxStreams } = this.#options;
    const target = this.#options.local(open.tunnel);
    if (!target) {
      log.warn("Visitor for a tunnel that is gone: refused", { tunnel: open.tunnel });
      return await refuseVisitor(channel, open, 502, "this tunnel is closing", log);
    }
    if (maxStreams > 0 && this.#busy > maxStreams) {
      // A server (or anyone on a plain http:// link) cannot make us flood the app.
      log.warn("At the limit of connections to the local app: visitor refused", {
        max: maxStreams,
      });
      return await refuseVisitor(
        channel,
        open,
        503,
        `the tunnel's client is at its limit of ${maxStreams} connections to the app`,
        log,
      );
    }
    const { dialer } = target;
    const http = open.proto === "http" ? target.http : undefined;
    let local: Duplex;
    let link: AppLink | undefined;
    try {
      // HTTP visitors share keep-alive connections to the app; TLS (end to end, opaque),
      // TCP and raw ones get their own.
      if (http && target.appPool) {
        local = link = await AppLink.open(target.appPool, this.#stop.signal);
      } else {
        local = await target.dialFor(
          { peer: open.peer, dest: open.dest, tls: open.proto === "tls" },
          this.#stop.signal,
        );
      }
    } catch (e) {
      log.warn("Cannot reach local app", { local: dialer.where, error: describeError(e) });
      return await refuseVisitor(channel, open, 502, unreachable(dialer.where, e, log), log);
    }
    this.#conns.add(local);
    let stream: HttpStream | undefined;
    if (http) {
      const visitor: VisitorInfo = {
        peer: open.peer,
        scheme: open.scheme ?? "http",
        hostHeader: http.hostHeader,
        keepAppAlive: link !== undefined,
      };
      stream = new HttpStream(local, visitor, http.observe?.(visitor), log, http.isolateCookiesFor);
      link?.watch(stream);
    }
    try {
      const result = await relayStream(local, channel, {
        ...(stream ? { adapter: stream, signal: stream.refused } : {}),
      });
      logStream(log, result, { peer: open.peer });
      return result.reusable;
    } finally {
      stream?.close();
      this.#conns.delete(local);
      closeQuietly(local);
    }
  }
}

// Why the app cannot be reached, with a hint when a flag would help (also logged).
function unreachable(where: string, error: unknown, log: Logger): string {
  const why = error instanceof Deno.errors.ConnectionRefused ? "connection refused" : `${error}`;
  const hint = /certificate/i.test(why)
    ? " (a self-signed development certificate? --allow-invalid-cert accepts it)"
    : "";
  if (hint) log.warn(`Local app's certificate refused${hint}`, { local: where });
  return `cannot reach the local app at ${where}: ${why}${hint}`;
}

// A visitor the client will not serve: an HTTP one gets `status` with `why`, a TLS
// one a close; its bytes are read and dropped to the end, so the channel stays in step.
async function refuseVisitor(
  channel: ProxyChannel,
  open: Open,
  status: number,
  why: string,
  log: Logger,
): Promise<boolean> {
  const reads = new GrowingBuffer();
  try {
    if (open.proto === "http") {
      await writeAll(channel.conn, dataFrame(httpError(status, `Gotunnel: ${why}`)));
      await channel.sendEnd("end");
    } else {
      await channel.sendEnd("abort");
    }
    await channel.receive(undefined, reads); // the visitor's bytes, dropped, to its end
    return true;
  } catch (e) {
    logCaught(log, "Proxy connection lost while refusing a visitor", e);
    return false;
  } finally {
    reads.release();
  }
}
