// The public server: one port for browsers and clients; routes each connection by its first bytes.

import type { HeartbeatTiming } from "../control.ts";
import {
  answerAndLinger,
  ByteReader,
  closeQuietly,
  deadline,
  FRAME_READER_CAPACITY,
  httpError,
  sleep,
  writeAll,
} from "../io.ts";
import { describeError, isDisconnect, type Logger, silentLogger } from "../log.ts";
import {
  checkSubdomain,
  normalizeHost,
  randomSubdomain,
  randomToken,
  routeHost,
  timingSafeEqual,
} from "../names.ts";
import {
  ACCEPT_BACKOFF_MAX_MS,
  ACCEPT_BACKOFF_MIN_MS,
  concatBytes,
  decodeClientFrame,
  DEFAULT_SERVER_LIMITS,
  encodeFrame,
  LINGER_MS,
  MAX_SNIFF_BYTES,
  PROTOCOL_VERSION,
  SECRET_BYTES,
  type ServerLimits,
  type ServerMessage,
  UPGRADE_PATH,
  UPGRADE_RESPONSE,
  UPGRADE_TOKEN,
} from "../protocol.ts";
import { dataFrame, ProxyChannel } from "../channel.ts";
import { relayStream } from "../relay.ts";
import { sniff, type SniffedHttp } from "../sniff.ts";
import { renderPage } from "./pages.ts";
import { Session } from "./session.ts";

/** Options for {@linkcode startServer}. */
export interface ServerOptions {
  /** TCP port for browsers and clients; 0 picks a free one. @default {8080} */
  port?: number;
  /** Address to listen on. @default {"0.0.0.0"} */
  hostname?: string;
  /** Tunnels are `<name>.<domain>`; the domain itself serves the landing page. @default {"localhost"} */
  domain?: string;
  /** Where logs go. @default {silent} */
  logger?: Logger;
  /** Aborting it closes the server. */
  signal?: AbortSignal;
  /** Heartbeat timing for control connections (tests shorten it). @default {10 s / 30 s} */
  heartbeat?: HeartbeatTiming;
  /** Timeouts (tests shorten them). @default {10 s sniff, 5 s handshake, 10 s proxy wait} */
  limits?: Partial<ServerLimits>;
}

/** A running server. */
export interface TunnelServer {
  /** The address the server listens on, with the bound port. */
  readonly addr: Deno.NetAddr;
  /** The server's own URL, e.g. `http://localhost:8080`. */
  readonly url: string;
  /** Resolves when the server has closed and every connection is closed. */
  readonly finished: Promise<void>;
  /** Number of tunnels registered now. */
  readonly tunnelCount: number;
  /** Stops accepting, closes every connection, resolves when all are closed. */
  close(): Promise<void>;
  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

const REQUEST_TIMEOUT_ANSWER = httpError(408, "Request Timeout", "Request timeout");

/** Formats `host:port` for a URL, bracketing IPv6 and dropping port 80. */
export function hostWithPort(host: string, port: number): string {
  const h = host.includes(":") ? `[${host}]` : host;
  return port === 80 ? h : `${h}:${port}`;
}

/**
 * Whether new bytes (from `before` on) can change a need-more answer: an HTTP
 * head is parsed once its blank line has arrived (and within its first bytes,
 * where the method is checked); TLS is cheap to re-walk. Only the new bytes are
 * searched, so a trickle costs linear time, not quadratic.
 */
function worthSniffing(bytes: Uint8Array, before: number): boolean {
  if (bytes[0] === 0x16 || before < 64 || bytes.length >= MAX_SNIFF_BYTES) return true;
  for (
    let lf = bytes.indexOf(0x0a, Math.max(0, before - 2));
    lf >= 0;
    lf = bytes.indexOf(0x0a, lf + 1)
  ) {
    if (bytes[lf + 1] === 0x0a || (bytes[lf + 1] === 0x0d && bytes[lf + 2] === 0x0a)) return true;
  }
  return false;
}

/** Formats a remote address as `ip:port`. */
function peerOf(conn: Deno.Conn): string {
  const { hostname, port } = conn.remoteAddr as Deno.NetAddr;
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/** What a connection handler did with its connection: `kept` hands it to a session. */
type Outcome = void | "kept";

/**
 * Starts a Gotunnel server listening on one TCP port. Resolves once it listens.
 *
 * @example Start on a free port and stop again
 * ```ts
 * import { startServer } from "@gotunnel/gotunnel";
 * await using server = await startServer({ port: 0, hostname: "127.0.0.1" });
 * console.log(server.url); // http://localhost:<port>
 * ```
 */
export async function startServer(options: ServerOptions = {}): Promise<TunnelServer> {
  const normalized = normalizeHost(options.domain ?? "localhost");
  if (typeof normalized === "string" || normalized.ip) {
    throw new TypeError(`Invalid domain ${JSON.stringify(options.domain)}: use a DNS name`);
  }
  const domain = normalized.host;
  const log = options.logger ?? silentLogger;
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
  const listener = Deno.listen({
    port: options.port ?? 8080,
    hostname: options.hostname ?? "0.0.0.0",
  });
  const addr = listener.addr;
  const url = `http://${hostWithPort(domain, addr.port)}`;
  const sessionsByName = new Map<string, Session>();
  const sessionsById = new Map<string, Session>();
  const conns = new Set<Deno.Conn>();
  const controlConns = new Set<Deno.Conn>(); // closed by their sessions, after a last frame
  const tasks = new Set<Promise<void>>();
  let closing = false;
  let nextId = 1;
  const stopAccepting = new AbortController();

  const track = (task: Promise<void>): void => {
    tasks.add(task);
    task.finally(() => tasks.delete(task));
  };

  const acceptLoop = async (): Promise<void> => {
    let backoff = ACCEPT_BACKOFF_MIN_MS;
    while (!closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
        backoff = ACCEPT_BACKOFF_MIN_MS;
      } catch (e) {
        if (closing || e instanceof Deno.errors.BadResource) break;
        if (isDisconnect(e)) {
          // One peer reset before we accepted it: not the listener's fault.
          log.debug("Accepted connection was already gone", { error: describeError(e) });
          continue;
        }
        log.warn("Accept failed, backing off", { error: describeError(e), ms: backoff });
        await sleep(backoff, stopAccepting.signal);
        backoff = Math.min(backoff * 2, ACCEPT_BACKOFF_MAX_MS);
        continue;
      }
      const id = nextId++;
      conns.add(conn);
      track(
        handleConnection(conn, id)
          .catch((e): Outcome => {
            const fields = { conn: id, error: describeError(e) };
            if (isDisconnect(e)) log.debug("Connection ended", fields);
            else log.warn("Connection failed", fields);
          })
          .then((outcome) => {
            conns.delete(conn);
            if (outcome !== "kept") closeQuietly(conn);
          }),
      );
    }
  };

  // Owns `conn` until it returns; the caller closes it afterwards unless it was kept.
  const handleConnection = async (conn: Deno.TcpConn, id: number): Promise<Outcome> => {
    conn.setNoDelay(true);
    const reader = new ByteReader(conn, MAX_SNIFF_BYTES);
    // At the deadline a pending read cannot be cancelled, only ended by closing the
    // socket. Answer 408 if the bytes so far look like HTTP and half-close; the
    // loop below goes on reading (and dropping) until the peer closes or the
    // linger time is up.
    const lingerAbort = new AbortController();
    const answerTimeout = async (): Promise<void> => {
      const first = reader.buffered[0];
      if (first !== undefined && first !== 0x16) {
        try {
          await writeAll(conn, REQUEST_TIMEOUT_ANSWER);
          await conn.closeWrite();
          await sleep(LINGER_MS, lingerAbort.signal);
        } catch {
          // The peer is gone: nothing to answer.
        }
      }
      closeQuietly(conn);
    };
    let expired: Promise<void> | undefined;
    const timer = deadline(limits.sniffTimeoutMs, () => expired = answerTimeout());
    let result = sniff(reader.buffered);
    try {
      while (result.state === "need-more") {
        const before = reader.buffered.length;
        if (!await reader.fill()) break;
        if (timer.expired) reader.consume(reader.buffered.length); // drop: answered already
        else if (worthSniffing(reader.buffered, before)) result = sniff(reader.buffered);
      }
    } catch (e) {
      if (!timer.expired) throw e;
    } finally {
      timer.clear();
    }
    if (timer.expired) {
      log.debug("Sniff deadline passed", { conn: id });
      lingerAbort.abort(); // the peer closed, or the socket is closed: no need to wait
      return await expired;
    }
    if (result.state === "need-more") return log.debug("Closed before routing", { conn: id });
    switch (result.state) {
      case "invalid":
        log.debug("Unroutable connection", { conn: id, reason: result.reason });
        if (result.status === 431) {
          await answerAndLinger(
            conn,
            httpError(431, "Request Header Fields Too Large", result.reason),
          );
        } else if (result.status === 400) {
          await answerAndLinger(
            conn,
            httpError(400, "Bad Request", `Bad request: ${result.reason}`),
          );
        }
        return;
      case "tls": {
        const route = result.serverName === undefined
          ? undefined
          : routeHost({ host: result.serverName, ip: false }, domain);
        const session = route?.kind === "tunnel" ? sessionsByName.get(route.name) : undefined;
        if (!session) return log.debug("TLS for no tunnel", { conn: id, sni: result.serverName });
        return await forward(conn, reader.buffered, session, "tls", id);
      }
      case "http":
        return await routeHttp(conn, reader, result, id);
    }
  };

  const routeHttp = async (
    conn: Deno.Conn,
    reader: ByteReader,
    head: SniffedHttp,
    id: number,
  ): Promise<Outcome> => {
    if (head.upgrade === UPGRADE_TOKEN && head.target === UPGRADE_PATH) {
      reader.consume(head.headLength);
      return await handleClient(conn, reader, id);
    }
    const route = routeHost({ host: head.host, ip: head.ip }, domain);
    if (route.kind === "apex") {
      return await answerAndLinger(
        conn,
        renderPage(head.method, head.target, domain, { tunnels: sessionsByName.size }),
      );
    }
    const session = route.kind === "tunnel" ? sessionsByName.get(route.name) : undefined;
    if (!session) {
      const body = route.kind === "tunnel"
        ? `Tunnel ${head.host} not found`
        : `Unknown host ${head.host}`;
      return await answerAndLinger(conn, httpError(404, "Not Found", body));
    }
    await forward(conn, reader.buffered, session, "http", id);
  };

  // Hands a public connection to an idle proxy connection and relays until both ends close.
  const forward = async (
    conn: Deno.Conn,
    prefix: Uint8Array,
    session: Session,
    proto: "http" | "tls",
    id: number,
  ): Promise<void> => {
    const proxy = await session.takeProxy(limits.proxyWaitTimeoutMs);
    if (!proxy) {
      log.warn("No proxy connection in time", { conn: id, subdomain: session.subdomain });
      if (proto === "http") {
        await answerAndLinger(
          conn,
          httpError(504, "Gateway Timeout", "Tunnel did not answer in time"),
        );
      }
      return;
    }
    conns.add(proxy.conn);
    let reused = false;
    try {
      const open: ServerMessage = { type: "open", peer: peerOf(conn), proto };
      const data = prefix.length > 0 ? dataFrame(prefix) : new Uint8Array(0);
      await writeAll(proxy.conn, concatBytes(encodeFrame(open), data));
      const result = await relayStream(conn, proxy);
      log.debug("Stream done", {
        conn: id,
        subdomain: session.subdomain,
        in: result.sent,
        out: result.received,
        reusable: result.reusable,
      });
      conns.delete(proxy.conn);
      reused = result.reusable && !closing && session.addProxy(proxy);
    } finally {
      conns.delete(proxy.conn);
      if (!reused) closeQuietly(proxy.conn);
    }
  };

  // An upgraded client connection: `hello` opens a session, `attach` adds a proxy connection.
  const handleClient = async (
    conn: Deno.Conn,
    bytes: ByteReader,
    id: number,
  ): Promise<Outcome> => {
    const reader = new ByteReader(conn, FRAME_READER_CAPACITY, bytes.buffered);
    const timer = deadline(limits.handshakeTimeoutMs, () => closeQuietly(conn));
    let first;
    try {
      first = await reader.readFrame(decodeClientFrame);
    } catch (e) {
      if (timer.expired) return log.debug("Handshake timed out", { conn: id });
      if (!(e instanceof SyntaxError)) throw e;
      return await refuse(conn, "bad-request", `Cannot read first frame: ${e.message}`);
    } finally {
      timer.clear();
    }
    if (first === null) return;
    if (first.type !== "hello" && first.type !== "attach") {
      return await refuse(conn, "bad-request", `Expected hello or attach, got ${first.type}`);
    }
    if (first.version !== PROTOCOL_VERSION) {
      return await refuse(
        conn,
        "version",
        `Protocol version ${first.version} is not supported; this server speaks ${PROTOCOL_VERSION}`,
      );
    }
    if (first.type === "attach") {
      const session = sessionsById.get(first.tunnel);
      if (!session || !timingSafeEqual(first.secret, session.secret)) {
        return await refuse(conn, "unauthorized", "Cannot attach: unknown tunnel or wrong secret");
      }
      if (reader.buffered.length > 0) {
        return await refuse(conn, "bad-request", "Unexpected bytes after attach");
      }
      await writeAll(conn, UPGRADE_RESPONSE);
      if (!session.addProxy(new ProxyChannel(conn))) {
        return await refuse(conn, "pool-full", "Too many idle proxy connections", false);
      }
      return "kept"; // the session owns it now, then each stream that takes it
    }
    let name: string;
    if (first.subdomain !== undefined) {
      const checked = checkSubdomain(first.subdomain);
      if (!checked.ok) return await refuse(conn, "invalid-subdomain", checked.reason);
      name = checked.name;
      if (sessionsByName.has(name)) {
        return await refuse(
          conn,
          "subdomain-taken",
          `Cannot register subdomain "${name}": already in use`,
        );
      }
    } else {
      do name = randomSubdomain(); while (sessionsByName.has(name));
    }
    const session = new Session(
      { id: randomToken(16), secret: randomToken(SECRET_BYTES), subdomain: name, log },
      conn,
      reader,
      options.heartbeat,
    );
    sessionsByName.set(name, session);
    sessionsById.set(session.id, session);
    controlConns.add(conn);
    let reason = "welcome not delivered";
    try {
      const tunnelUrl = url.replace("//", `//${name}.`);
      log.info("Tunnel registered", { conn: id, subdomain: name, peer: peerOf(conn) });
      await writeAll(
        conn,
        concatBytes(
          UPGRADE_RESPONSE,
          encodeFrame({
            type: "welcome",
            version: PROTOCOL_VERSION,
            tunnel: session.id,
            secret: session.secret,
            subdomain: name,
            url: tunnelUrl,
          }),
        ),
      );
      reason = await session.run();
    } finally {
      session.close();
      controlConns.delete(conn);
      sessionsByName.delete(name);
      sessionsById.delete(session.id);
      log.info("Tunnel closed", { conn: id, subdomain: name, reason });
    }
  };

  const refuse = async (
    conn: Deno.Conn,
    code: Extract<ServerMessage, { type: "error" }>["code"],
    message: string,
    upgrade = true,
  ): Promise<void> => {
    log.debug("Refused client", { code, message });
    const short = message.length > 200 ? message.slice(0, 200) + "…" : message;
    const frame = encodeFrame({ type: "error", code, message: short });
    await writeAll(conn, upgrade ? concatBytes(UPGRADE_RESPONSE, frame) : frame);
  };

  const accepting = acceptLoop();
  const finished = Promise.withResolvers<void>();
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      stopAccepting.abort();
      closeQuietly(listener);
      await accepting;
      for (const session of sessionsByName.values()) {
        session.close({ type: "error", code: "shutdown", message: "Server is shutting down" });
      }
      for (const conn of conns) if (!controlConns.has(conn)) closeQuietly(conn);
      while (tasks.size > 0) await Promise.allSettled([...tasks]);
      log.info("Server closed");
      finished.resolve();
    })();
    return closed;
  };
  const onAbort = (): void => void close();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  finished.promise.then(() => options.signal?.removeEventListener("abort", onAbort));
  if (options.signal?.aborted) void close();
  log.info("Listening", { url, addr: `${addr.hostname}:${addr.port}` });

  await Promise.resolve();
  return {
    addr,
    url,
    finished: finished.promise,
    get tunnelCount() {
      return sessionsByName.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
