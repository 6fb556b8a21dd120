// The client's proxy connections for one session: a pool kept topped up, each
// carrying one visitor's stream after another to the local app.

import { dataFrame, ProxyChannel } from "../channel.ts";
import { closeQuietly, httpError, writeAll } from "../io.ts";
import { describeError, isDisconnect, type Logger } from "../log.ts";
import {
  decodeServerFrame,
  LOCAL_DIAL_TIMEOUT_MS,
  MAX_CLIENT_PROXIES,
  PROTOCOL_VERSION,
  type ServerMessage,
} from "../protocol.ts";
import { hostWithPort } from "../names.ts";
import { type Duplex, GrowingBuffer, relayStream } from "../relay.ts";
import { dialServer, type ServerTarget } from "./dial.ts";
import { RequestRewriter } from "./forwarded.ts";
import { connectLocalTls, type LocalTls } from "./local_tls.ts";
import { ExchangeLog, type RequestRecord } from "./request_log.ts";

/** Read buffer of a proxy connection's upgrade answer. */
const PROXY_READER_BYTES = 4096;

type Open = Extract<ServerMessage, { type: "open" }>;

/** What a pool needs from its tunnel. */
export interface ProxyPoolOptions {
  /** The server. */
  target: ServerTarget;
  /** The session the connections attach to. */
  tunnel: string;
  /** The session's secret. */
  secret: string;
  /** Idle connections to keep ready. */
  size: number;
  /** Reaches the local app. */
  dialer: LocalDialer;
  /** HTTP awareness: rewrite each request head (undefined: a plain TCP relay). */
  http: HttpAwareness | undefined;
  /** Where logs go. */
  log: Logger;
  /** Runs a background task that the tunnel waits for when it closes. */
  track(task: Promise<void>): void;
}

/** What the client does with HTTP it relays. */
export interface HttpAwareness {
  /** Host header for the local app instead of the public one. */
  hostHeader: string | undefined;
  /** Gets one record per request, once its response is complete. */
  onRequest: ((record: RequestRecord) => void) | undefined;
}

/** One session's proxy connections. */
export class ProxyPool {
  #options: ProxyPoolOptions;
  #idle = new Set<Deno.Conn>();
  #conns = new Set<{ close(): void }>();
  #connecting = 0;
  #retired = false;
  #running = 0;
  #drained = Promise.withResolvers<void>();
  #stop = new AbortController();

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
    for (const conn of this.#idle) closeQuietly(conn);
    this.#checkDrained();
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
    const { target, tunnel, secret, log } = this.#options;
    let dialed;
    this.#connecting++;
    try {
      dialed = await dialServer(
        target,
        { type: "attach", version: PROTOCOL_VERSION, tunnel, secret },
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
    try {
      while (!this.#retired) {
        let message: ServerMessage | null = null;
        this.#idle.add(conn);
        try {
          message = await channel.readMessage(decodeServerFrame);
        } catch (e) {
          if (!isDisconnect(e)) log.warn("Bad frame on proxy", { error: describeError(e) });
        } finally {
          this.#idle.delete(conn);
        }
        if (message?.type === "open") {
          // Keep `size` connections ready: replace this one while it is busy.
          this.open(this.#options.size - this.#idle.size - this.#connecting);
          if (await this.#serveVisitor(channel, message)) continue;
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
  }

  // One visitor's stream; true when the channel may carry the next one.
  async #serveVisitor(channel: ProxyChannel, open: Open): Promise<boolean> {
    const { dialer, log } = this.#options;
    let local: Duplex;
    try {
      local = await dialer.dial(open.proto === "tls");
    } catch (e) {
      log.warn("Cannot reach local app", { local: dialer.where, error: describeError(e) });
      return await refuseVisitor(channel, open, dialer.where, e);
    }
    this.#conns.add(local);
    const http = open.proto === "http" ? this.#options.http : undefined;
    const exchanges = http ? new ExchangeLog(http.onRequest) : undefined;
    try {
      let refusal: Uint8Array | undefined;
      const refuse = new AbortController(); // closes the app's side, through the relay
      const rewriter = http && exchanges
        ? new RequestRewriter(local, {
          peer: open.peer,
          scheme: open.scheme ?? "http",
          hostHeader: http.hostHeader,
        }, (answer, status, reason) => {
          refusal = answer; // sent instead of an ABORT if nothing went to the visitor yet
          exchanges.refused(status, reason);
          refuse.abort();
        }, exchanges)
        : local;
      const result = await relayStream(local, channel, {
        inboundSink: rewriter,
        lastWord: () => refusal,
        signal: refuse.signal,
        ...(exchanges
          ? {
            onOutbound: (bytes: Uint8Array) => exchanges.response(bytes),
            onOutboundEnd: () => exchanges.close(), // no answer to wait for any more
          }
          : {}),
      });
      log.debug("Visitor done", {
        peer: open.peer,
        in: result.received,
        out: result.sent,
        reusable: result.reusable,
      });
      return result.reusable;
    } finally {
      exchanges?.close();
      this.#conns.delete(local);
      closeQuietly(local);
    }
  }
}

// The app cannot be reached: an HTTP visitor gets 502, a TLS one a close.
async function refuseVisitor(
  channel: ProxyChannel,
  open: Open,
  where: string,
  error: unknown,
): Promise<boolean> {
  const reads = new GrowingBuffer();
  try {
    if (open.proto === "http") {
      const why = error instanceof Deno.errors.ConnectionRefused
        ? "connection refused"
        : `${error}`;
      const hint = /certificate/i.test(why)
        ? " (a self-signed development certificate? --allow-invalid-cert accepts it)"
        : "";
      const answer = httpError(
        502,
        "Bad Gateway",
        `Gotunnel: cannot reach the local app at ${where}: ${why}${hint}`,
      );
      await writeAll(channel.conn, dataFrame(answer));
      await channel.sendEnd("end");
    } else {
      await channel.sendEnd("abort");
    }
    await channel.receive(undefined, reads); // the visitor's bytes, dropped, to its end
    return true;
  } catch {
    return false;
  } finally {
    reads.release();
  }
}

/**
 * Connects to the local app. `localhost` means either loopback address: dev
 * servers bind to 127.0.0.1 or to ::1 depending on the runtime, so on a refusal
 * the other one is tried, and the one that answered is tried first next time.
 */
export class LocalDialer {
  /** `host:port`, for messages. */
  readonly where: string;
  #candidates: string[];
  #port: number;
  #tls: LocalTls | undefined;

  /** A dialer for `hostname:port`, speaking TLS to it when `tls` is given. */
  constructor(hostname: string, port: number, tls?: LocalTls) {
    this.where = `${tls ? "https://" : ""}${hostWithPort(hostname, port, -1)}`;
    this.#candidates = hostname === "localhost" ? ["127.0.0.1", "::1"] : [hostname];
    this.#port = port;
    this.#tls = tls;
  }

  /**
   * Connects (LOCAL_DIAL_TIMEOUT_MS at most per address, TLS handshake
   * included), Nagle off. `plain` skips TLS: for visitors whose own TLS goes
   * to the app end to end.
   */
  async dial(plain = false): Promise<Duplex> {
    let error: unknown;
    for (const hostname of [...this.#candidates]) {
      try {
        const conn = await dialWithTimeout(hostname, this.#port, plain ? undefined : this.#tls);
        if (hostname !== this.#candidates[0]) {
          this.#candidates = [hostname, ...this.#candidates.filter((h) => h !== hostname)];
        }
        return conn;
      } catch (e) {
        error ??= e;
        if (!(e instanceof Deno.errors.ConnectionRefused)) break;
      }
    }
    throw error;
  }
}

/** Connects (and shakes hands, with `tls`), giving up after LOCAL_DIAL_TIMEOUT_MS. */
async function dialWithTimeout(
  hostname: string,
  port: number,
  tls: LocalTls | undefined,
): Promise<Duplex> {
  const stop = new AbortController();
  const connect = async (): Promise<Duplex> => {
    if (tls) return await connectLocalTls(hostname, port, tls, stop.signal);
    const tcp = await Deno.connect({ hostname, port });
    if (stop.signal.aborted) throw closeQuietly(tcp), stop.signal.reason;
    tcp.setNoDelay(true);
    return tcp;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connecting = connect();
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new Deno.errors.TimedOut(`no answer in ${LOCAL_DIAL_TIMEOUT_MS} ms`);
      stop.abort(error);
      connecting.then(closeQuietly, () => {});
      reject(error);
    }, LOCAL_DIAL_TIMEOUT_MS);
  });
  try {
    return await Promise.race([connecting, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
