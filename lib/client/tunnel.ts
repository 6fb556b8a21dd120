// The client: a control session with reconnects, a pool of proxy connections, the local dialer.

import { ControlChannel } from "../control.ts";
import type { HeartbeatTiming } from "../control.ts";
import { TunnelError } from "../errors.ts";
import { type ByteReader, closeQuietly, deadline, httpError, sleep, writeAll } from "../io.ts";
import { describeError, isDisconnect, type Logger, silentLogger } from "../log.ts";
import {
  type ClientMessage,
  decodeServerFrame,
  DEFAULT_POOL_SIZE,
  FRAME_HEADER_BYTES,
  HANDSHAKE_TIMEOUT_MS,
  LOCAL_DIAL_TIMEOUT_MS,
  MAX_CLIENT_PROXIES,
  MAX_FRAME_BYTES,
  MAX_IDLE_PROXIES,
  PEER_TIMEOUT_MS,
  PROTOCOL_VERSION,
  RECONNECT_MAX_MS,
  RECONNECT_MIN_MS,
  type ServerMessage,
} from "../protocol.ts";
import { dataFrame, ProxyChannel } from "../channel.ts";
import { GrowingBuffer, relayStream } from "../relay.ts";
import { dialServer, parseServerUrl, type ServerTarget } from "./dial.ts";

/** Options for {@linkcode openTunnel}. */
export interface TunnelOptions {
  /** Port of the local app. */
  port: number;
  /** Host of the local app. @default {"localhost"} */
  localHost?: string;
  /** URL of the Gotunnel server. @default {"http://localhost:8080"} */
  server?: string;
  /** Subdomain to ask for; a random one when omitted. */
  subdomain?: string;
  /** Idle proxy connections to keep open, ready for visitors. @default {8} */
  pool?: number;
  /** Where logs go. @default {silent} */
  logger?: Logger;
  /** Aborting it closes the tunnel. */
  signal?: AbortSignal;
  /** Called with the public URL each time the tunnel is up: at start and after each reconnect. */
  onReady?: (url: string) => void;
  /** Heartbeat timing of the control connection (tests shorten it). @default {10 s / 30 s} */
  heartbeat?: HeartbeatTiming;
}

/** An open tunnel. */
export interface Tunnel {
  /** The public URL, e.g. `http://demo.localhost:8080`. */
  readonly url: string;
  /** The subdomain the server gave. */
  readonly subdomain: string;
  /** The local address visitors are relayed to (`localHost` and `port`). */
  readonly addr: Deno.NetAddr;
  /**
   * Resolves when the tunnel is closed by `close()` or the signal; rejects with
   * a {@linkcode TunnelError} when the server refuses a reconnect for good.
   */
  readonly finished: Promise<void>;
  /** Closes the control and every proxy and local connection. */
  close(): Promise<void>;
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

type Welcome = Extract<ServerMessage, { type: "welcome" }>;
interface Established {
  conn: Deno.TcpConn;
  reader: ByteReader;
  welcome: Welcome;
}

/** Read buffer of a proxy connection while it waits for its `open` frame. */
const PROXY_READER_BYTES = 4096;
/** Refusals after which reconnecting cannot help. */
const FATAL: ReadonlySet<string> = new Set(["version", "invalid-subdomain", "unauthorized"]);

/** The delay before reconnect attempt `attempt` (0-based): doubling, capped, with jitter. */
export function backoffDelay(attempt: number, random: number = Math.random()): number {
  const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** attempt);
  return Math.round(base / 2 + (base / 2) * random);
}

/**
 * Opens a tunnel from a Gotunnel server to a local port. Resolves when the
 * server has registered it; rejects with a {@linkcode TunnelError} when the
 * server cannot be reached or refuses (subdomain taken or invalid). After
 * that, lost connections are re-established with backoff.
 *
 * @example Expose the app on port 3000 through a server
 * ```ts
 * import { openTunnel, startServer } from "@gotunnel/gotunnel";
 * await using server = await startServer({ port: 0, hostname: "127.0.0.1" });
 * await using tunnel = await openTunnel({
 *   port: 3000,
 *   localHost: "127.0.0.1",
 *   server: `http://127.0.0.1:${server.addr.port}`,
 * });
 * console.log(tunnel.url); // http://<random>.localhost:<port>
 * ```
 */
export async function openTunnel(options: TunnelOptions): Promise<Tunnel> {
  const client = new TunnelClient(options);
  await client.start();
  return client;
}

class TunnelClient implements Tunnel {
  #options: TunnelOptions;
  #localHost: string;
  #dialer: LocalDialer;
  #target: ServerTarget;
  #log: Logger;
  #pool: number;
  #welcome: Welcome | undefined;
  #control: ControlChannel<ServerMessage, ClientMessage> | undefined;
  #generation = 0;
  #idle = new Set<Deno.Conn>();
  #connecting = 0;
  #conns = new Set<Deno.Conn>();
  #tasks = new Set<Promise<void>>();
  #stop = new AbortController();
  #finished = Promise.withResolvers<void>();
  #closing: Promise<void> | undefined;

  constructor(options: TunnelOptions) {
    this.#options = options;
    this.#target = parseServerUrl(options.server ?? "http://localhost:8080");
    this.#log = options.logger ?? silentLogger;
    this.#localHost = options.localHost ?? "localhost";
    this.#dialer = new LocalDialer(this.#localHost, options.port);
    this.#pool = Math.min(options.pool ?? DEFAULT_POOL_SIZE, MAX_IDLE_PROXIES);
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new RangeError(`Invalid local port ${options.port}: use 1-65535`);
    }
    this.#finished.promise.catch(() => {}); // callers may never look
  }

  get url(): string {
    return this.#welcome?.url ?? "";
  }

  get subdomain(): string {
    return this.#welcome?.subdomain ?? "";
  }

  get addr(): Deno.NetAddr {
    return { transport: "tcp", hostname: this.#localHost, port: this.#options.port };
  }

  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  async start(): Promise<void> {
    const signal = this.#options.signal;
    const onAbort = (): void => void this.close();
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#finished.promise.finally(() => signal?.removeEventListener("abort", onAbort))
      .catch(() => {});
    if (signal?.aborted) this.#stop.abort();
    let first: Established;
    try {
      first = await this.#establish();
    } catch (e) {
      await this.close();
      throw e;
    }
    this.#track(this.#loop(first));
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      this.#control?.close("client closing", { type: "bye" });
      for (const conn of this.#conns) closeQuietly(conn);
      while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
      this.#finished.resolve();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.catch((e) => this.#log.error("Internal error", { error: describeError(e) }))
      .finally(() => this.#tasks.delete(task));
  }

  // Opens a control connection and reads the welcome; throws TunnelError on refusal.
  async #establish(): Promise<Established> {
    const hello: ClientMessage = { type: "hello", version: PROTOCOL_VERSION };
    const subdomain = this.#welcome?.subdomain ?? this.#options.subdomain;
    if (subdomain !== undefined) hello.subdomain = subdomain;
    const { conn, reader } = await dialServer(
      this.#target,
      hello,
      FRAME_HEADER_BYTES + MAX_FRAME_BYTES,
      this.#stop.signal,
    );
    let reply: ServerMessage | null;
    const stop = (): void => closeQuietly(conn);
    const timer = deadline(HANDSHAKE_TIMEOUT_MS, stop);
    this.#stop.signal.addEventListener("abort", stop);
    if (this.#stop.signal.aborted) stop();
    try {
      reply = await reader.readFrame(decodeServerFrame);
    } catch (e) {
      closeQuietly(conn);
      const why = timer.expired ? `no welcome in ${HANDSHAKE_TIMEOUT_MS} ms` : describeError(e);
      throw new TunnelError("protocol", `Cannot open tunnel: ${why}`, { cause: e });
    } finally {
      timer.clear();
      this.#stop.signal.removeEventListener("abort", stop);
    }
    if (reply?.type === "welcome") return { conn, reader, welcome: reply };
    closeQuietly(conn);
    if (reply?.type === "error") throw new TunnelError(reply.code, reply.message);
    throw new TunnelError("protocol", "Cannot open tunnel: server closed without a welcome");
  }

  async #loop(first: Established): Promise<void> {
    let session: Established | undefined = first;
    while (session) {
      if (this.#stop.signal.aborted) return closeQuietly(session.conn);
      const reason = await this.#serve(session);
      if (this.#stop.signal.aborted) return;
      this.#log.warn("Lost connection to server", { reason });
      try {
        session = await this.#reconnect();
      } catch (e) {
        this.#log.error("Server refused reconnect", { error: describeError(e) });
        this.#finished.reject(e);
        void this.close();
        return;
      }
    }
  }

  async #serve({ conn, reader, welcome }: Established): Promise<string> {
    const generation = ++this.#generation;
    this.#welcome = welcome;
    const control = new ControlChannel<ServerMessage, ClientMessage>(
      conn,
      reader,
      decodeServerFrame,
      this.#log,
      this.#options.heartbeat,
    );
    this.#control = control; // it owns `conn`; close() sends bye through it
    this.#log.info("Tunnel ready", { url: welcome.url });
    try {
      this.#options.onReady?.(welcome.url);
    } catch (e) {
      this.#log.error("onReady callback failed", { error: describeError(e) });
    }
    this.#openProxies(this.#pool, generation, welcome);
    const reason = await control.run((message) => {
      if (message.type === "demand") this.#openProxies(message.count, generation, welcome);
      else if (message.type === "error") {
        this.#log.warn("Server says", { code: message.code, message: message.message });
      }
    });
    // Idle proxies of a dead session may be dead too; close them rather than wait.
    for (const idle of this.#idle) closeQuietly(idle);
    return reason;
  }

  async #reconnect(): Promise<Established | undefined> {
    let takenSince: number | undefined;
    for (let attempt = 0; !this.#stop.signal.aborted; attempt++) {
      const delay = backoffDelay(attempt);
      this.#log.info("Reconnecting", { in_ms: delay, attempt: attempt + 1 });
      await sleep(delay, this.#stop.signal);
      if (this.#stop.signal.aborted) return undefined;
      try {
        return await this.#establish();
      } catch (e) {
        if (e instanceof TunnelError && FATAL.has(e.code)) throw e;
        if (e instanceof TunnelError && e.code === "subdomain-taken") {
          // The server may not have noticed yet that our old session is gone (it
          // takes up to PEER_TIMEOUT_MS); after that, someone else holds the name.
          takenSince ??= Date.now();
          if (Date.now() - takenSince > PEER_TIMEOUT_MS + RECONNECT_MAX_MS) throw e;
        } else {
          takenSince = undefined;
        }
        this.#log.warn("Reconnect failed", { error: describeError(e) });
      }
    }
    return undefined;
  }

  #openProxies(count: number, generation: number, welcome: Welcome): void {
    const room = MAX_CLIENT_PROXIES - this.#idle.size - this.#connecting;
    for (let i = 0; i < Math.min(count, room); i++) {
      this.#track(this.#runProxy(generation, welcome));
    }
  }

  // One proxy connection for its whole life: idle until `open`, a stream, idle again...
  async #runProxy(generation: number, welcome: Welcome): Promise<void> {
    let dialed;
    this.#connecting++;
    try {
      dialed = await dialServer(
        this.#target,
        {
          type: "attach",
          version: PROTOCOL_VERSION,
          tunnel: welcome.tunnel,
          secret: welcome.secret,
        },
        PROXY_READER_BYTES,
        this.#stop.signal,
      );
    } catch (e) {
      this.#log.debug("Cannot open proxy connection", { error: describeError(e) });
      return;
    } finally {
      this.#connecting--;
    }
    const { conn, reader } = dialed;
    const channel = new ProxyChannel(conn, reader.buffered.slice());
    this.#conns.add(conn);
    try {
      while (!this.#stop.signal.aborted && generation === this.#generation) {
        let message: ServerMessage | null = null;
        this.#idle.add(conn);
        try {
          message = await channel.readMessage(decodeServerFrame);
        } catch (e) {
          if (!isDisconnect(e)) this.#log.warn("Bad frame on proxy", { error: describeError(e) });
        } finally {
          this.#idle.delete(conn);
        }
        if (message?.type === "open") {
          // Keep `pool` connections ready: replace this one while it is busy.
          this.#openProxies(this.#pool - this.#idle.size - this.#connecting, generation, welcome);
          if (await this.#serveVisitor(channel, message)) continue;
        } else if (message?.type === "error") {
          const level = message.code === "pool-full" ? "debug" : "warn";
          this.#log[level]("Proxy connection refused", {
            code: message.code,
            msg: message.message,
          });
        } else if (message) {
          this.#log.warn("Unexpected frame on proxy", { type: message.type });
        }
        break;
      }
    } finally {
      this.#conns.delete(conn);
      closeQuietly(conn);
    }
  }

  // One visitor's stream; true when the channel may carry the next one.
  async #serveVisitor(
    channel: ProxyChannel,
    open: Extract<ServerMessage, { type: "open" }>,
  ): Promise<boolean> {
    const where = `${this.#localHost}:${this.#options.port}`;
    let local: Deno.TcpConn;
    try {
      local = await this.#dialer.dial();
    } catch (e) {
      this.#log.warn("Cannot reach local app", { local: where, error: describeError(e) });
      return await this.#refuseVisitor(channel, open, e);
    }
    this.#conns.add(local);
    try {
      const result = await relayStream(local, channel);
      this.#log.debug("Visitor done", {
        peer: open.peer,
        in: result.received,
        out: result.sent,
        reusable: result.reusable,
      });
      return result.reusable;
    } finally {
      this.#conns.delete(local);
      closeQuietly(local);
    }
  }

  // The app cannot be reached: an HTTP visitor gets 502, a TLS one a close.
  async #refuseVisitor(
    channel: ProxyChannel,
    open: Extract<ServerMessage, { type: "open" }>,
    error: unknown,
  ): Promise<boolean> {
    const where = `${this.#localHost}:${this.#options.port}`;
    const reads = new GrowingBuffer();
    try {
      if (open.proto === "http") {
        const why = error instanceof Deno.errors.ConnectionRefused
          ? "connection refused"
          : `${error}`;
        const answer = httpError(
          502,
          "Bad Gateway",
          `Gotunnel: cannot reach the local app at ${where}: ${why}`,
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
}

/**
 * Connects to the local app. `localhost` means either loopback address: dev
 * servers bind to 127.0.0.1 or to ::1 depending on the runtime, so on a refusal
 * the other one is tried, and the one that answered is tried first next time.
 */
class LocalDialer {
  #candidates: string[];
  #port: number;

  constructor(hostname: string, port: number) {
    this.#candidates = hostname === "localhost" ? ["127.0.0.1", "::1"] : [hostname];
    this.#port = port;
  }

  async dial(): Promise<Deno.TcpConn> {
    let error: unknown;
    for (const hostname of [...this.#candidates]) {
      try {
        const conn = await dialWithTimeout(hostname, this.#port);
        if (hostname !== this.#candidates[0]) {
          this.#candidates = [
            hostname,
            ...this.#candidates.filter((h) => h !== hostname),
          ];
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

/** Connects, giving up after LOCAL_DIAL_TIMEOUT_MS. */
async function dialWithTimeout(hostname: string, port: number): Promise<Deno.TcpConn> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connecting = Deno.connect({ hostname, port });
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      connecting.then(closeQuietly, () => {});
      reject(new Deno.errors.TimedOut(`no answer in ${LOCAL_DIAL_TIMEOUT_MS} ms`));
    }, LOCAL_DIAL_TIMEOUT_MS);
  });
  try {
    const conn = await Promise.race([connecting, timeout]);
    conn.setNoDelay(true);
    return conn;
  } finally {
    clearTimeout(timer);
  }
}
