// Test helpers: a sample app, a server+tunnel stack, deterministic bytes, raw HTTP,
// hand-written apps, a TCP hop, CLI subprocesses, waits with a deadline.

import { openTunnel, type Tunnel, type TunnelOptions } from "../lib/client/tunnel.ts";
import type { RequestRecord } from "../lib/client/exchanges.ts";
import { ByteReader, closeQuietly, FRAME_READER_CAPACITY } from "../lib/io.ts";
import { concatBytes, latin1Bytes, latin1Text } from "../lib/bytes.ts";
import { isBug, type LogFields, type Logger } from "../lib/log.ts";
import {
  decodeServerFrame,
  encodeFrame,
  encodeUpgradeRequest,
  PROTOCOL_VERSION,
  type ServerMessage,
  type TunnelClaim,
  UPGRADE_RESPONSE,
} from "../lib/protocol.ts";
import type { ServerLimits } from "../lib/limits.ts";
import { startServer, type TunnelServer } from "../lib/server/server.ts";

export const HOST = "127.0.0.1";
/** Options of every network test: sanitizers are on (deno.json), and each gets a deadline. */
export const T = { timeout: 30_000 };
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** UTF-8 bytes of `text`. */
export const encode = (text: string): Uint8Array<ArrayBuffer> => encoder.encode(text);
/** `bytes` as UTF-8 text. */
export const decode = (bytes: Uint8Array): string => decoder.decode(bytes);

/** Deterministic pseudo-random bytes (xorshift32), so both ends can check a hash. */
export function patternBytes(length: number, seed = 0x9e3779b9): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  const words = new Uint32Array(out.buffer, 0, length >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  for (let i = words.length * 4; i < length; i++) out[i] = i & 0xff;
  return out;
}

export async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An HTTP app on a free port of 127.0.0.1 (or `hostname`), over TLS with `tls`. */
export function serveApp(
  handler: Deno.ServeHandler<Deno.NetAddr>,
  options: { hostname?: string; tls?: { cert: string; key: string } } = {},
): Deno.HttpServer<Deno.NetAddr> {
  const where = { port: 0, hostname: options.hostname ?? HOST, onListen() {} };
  return Deno.serve(options.tls ? { ...where, ...options.tls } : where, handler);
}

/** A sample app: `/bytes/N`, `POST /sha256`, `/chunked`, `/ws` echo, `/whoami`, `/name`. */
export function startApp(name = "app"): Deno.HttpServer<Deno.NetAddr> {
  return serveApp(async (req, info) => {
    const url = new URL(req.url);
    const [, route, arg] = url.pathname.split("/");
    switch (route) {
      case "bytes":
        return new Response(patternBytes(Number(arg)));
      case "sha256": {
        // A visitor that leaves mid-upload (tests do) is not the app's error.
        const bytes = await req.arrayBuffer().catch(() => undefined);
        if (!bytes) return new Response("upload cut short\n", { status: 400 });
        const body = new Uint8Array(bytes);
        return Response.json({ length: body.length, sha256: await sha256(body) });
      }
      case "chunked": {
        const parts = ["first,", "second,", "third"];
        const stream = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const next = parts.shift();
            if (next === undefined) return controller.close();
            controller.enqueue(encoder.encode(next));
            await new Promise((r) => setTimeout(r, 10));
          },
        });
        return new Response(stream);
      }
      case "ws": {
        const { socket, response } = Deno.upgradeWebSocket(req);
        socket.onmessage = (e) => socket.send(`echo:${e.data}`);
        return response;
      }
      case "whoami":
        return Response.json({
          name,
          host: req.headers.get("host"),
          port: (info.remoteAddr as Deno.NetAddr).port,
          xff: req.headers.get("x-forwarded-for"),
          xfp: req.headers.get("x-forwarded-proto"),
          xfh: req.headers.get("x-forwarded-host"),
          forwarded: req.headers.get("forwarded"),
        });
      default:
        return new Response(`hello from ${name}\n`);
    }
  });
}

/** A server on a free port of 127.0.0.1. */
export function startTestServer(
  extra: Parameters<typeof startServer>[0] = {},
): Promise<TunnelServer> {
  return startServer({ port: 0, hostname: HOST, ...extra });
}

/** A tunnel from `server` (in this process, or a CLI's port) to a local port on 127.0.0.1. */
export function openTestTunnel(
  server: { addr: { port: number } },
  port: number,
  extra: Partial<TunnelOptions> = {},
): Promise<Tunnel> {
  return openTunnel({
    port,
    localHost: HOST,
    server: `http://${HOST}:${server.addr.port}`,
    leaseFile: false,
    ...extra,
  });
}

/** A tunnel from `server` to `port` as `subdomain`, keeping the request log's records. */
export async function recordingTunnel(
  server: { addr: { port: number } },
  port: number,
  subdomain: string,
): Promise<Tunnel & { records: RequestRecord[] }> {
  const records: RequestRecord[] = [];
  const tunnel = await openTestTunnel(server, port, {
    subdomain,
    onRequest: (r) => records.push(r),
  });
  return Object.assign(tunnel, { records });
}

/** An app, a server and a tunnel to it, torn down in reverse order. */
export async function startStack(
  subdomain = "demo",
  tunnelExtra: Partial<TunnelOptions> = {},
  limits: Partial<ServerLimits> = {},
): Promise<
  {
    app: Deno.HttpServer<Deno.NetAddr>;
    server: TunnelServer;
    tunnel: Tunnel;
    http: Deno.HttpClient;
    fetch(path: string, init?: RequestInit): Promise<Response>;
    host: string;
    [Symbol.asyncDispose](): Promise<void>;
  }
> {
  const app = startApp();
  const server = await startTestServer({ limits });
  const tunnel = await openTestTunnel(server, app.addr.port, { subdomain, ...tunnelExtra });
  const http = Deno.createHttpClient({ allowHost: true });
  const host = `${subdomain}.localhost:${server.addr.port}`;
  return {
    app,
    server,
    tunnel,
    http,
    host,
    fetch: (path, init = {}) =>
      fetch(`http://${HOST}:${server.addr.port}${path}`, {
        ...init,
        client: http,
        headers: { ...init.headers as Record<string, string>, host },
      }),
    async [Symbol.asyncDispose]() {
      http.close();
      await tunnel.close();
      await server.close();
      await app.shutdown();
    },
  };
}

/** Connects to `port` on 127.0.0.1, with Nagle off. */
export async function connect(port: number): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: HOST, port });
  conn.setNoDelay(true);
  return conn;
}

/** Reads until end of stream. */
export async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Sends one raw request with `Connection: close` and returns the whole answer as text. */
export async function rawRequest(port: number, head: string, body = ""): Promise<string> {
  const conn = await connect(port);
  try {
    await conn.write(encoder.encode(head + body));
    return decoder.decode(await readAll(conn));
  } finally {
    conn.close();
  }
}

/**
 * Sends the request `head` `count` times on one connection to `port`, each
 * once the previous answer (a 200 with a Content-Length) has come; returns
 * their JSON bodies.
 */
export async function keepAlive(
  port: number,
  head: string,
  count: number,
): Promise<Record<string, unknown>[]> {
  using conn = await connect(port);
  const complete = (text: string): boolean => {
    const end = text.indexOf("\r\n\r\n");
    const length = /\r\ncontent-length: (\d+)\r\n/i.exec(text.slice(0, end + 2))?.[1];
    return end >= 0 && length !== undefined && text.length >= end + 4 + Number(length);
  };
  const bodies: Record<string, unknown>[] = [];
  for (let i = 0; i < count; i++) {
    await writeAllTo(conn, encode(head));
    const answer = await readUntil(conn, complete);
    if (!answer.startsWith("HTTP/1.1 200 ")) throw new Error(`answer ${i}: ${answer}`);
    bodies.push(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)));
  }
  return bodies;
}

/** Writes all bytes. */
export async function writeAllTo(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/**
 * Sends `messages` on a WebSocket to `/ws` of the app behind the tunnel whose
 * Host `host` routes on `port` (Deno cannot resolve *.localhost nor set Host on
 * a WebSocket, so a hop on 127.0.0.1 puts the Host in, as DNS would); resolves
 * with as many answers, then closes.
 */
export async function webSocketEcho(
  port: number,
  host: string,
  messages: string[],
): Promise<string[]> {
  await using hop = tcpHop(port, { host });
  const ws = new WebSocket(`ws://${HOST}:${hop.port}/ws`);
  const answers: string[] = [];
  const done = Promise.withResolvers<void>();
  ws.onopen = () => messages.forEach((m) => ws.send(m));
  ws.onmessage = (e) => {
    answers.push(e.data);
    if (answers.length === messages.length) ws.close();
  };
  ws.onclose = () => done.resolve();
  ws.onerror = (e) => done.reject(new Error(`WebSocket error: ${(e as ErrorEvent).message}`));
  await done.promise;
  return answers;
}

/** Resolves when `check` returns (or resolves with) true, polling; rejects after `ms`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  ms = 5000,
  what = "condition",
): Promise<void> {
  const end = performance.now() + ms;
  while (!await check()) {
    if (performance.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Reads from `conn` until the text received so far (after `seen`) matches `until`. */
export async function readUntil(
  conn: Deno.Conn,
  until: RegExp | ((text: string) => boolean),
  seen = "",
): Promise<string> {
  const done = typeof until === "function" ? until : (text: string) => until.test(text);
  const buffer = new Uint8Array(16384);
  let text = seen;
  while (!done(text)) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`closed before ${until}; got ${JSON.stringify(text)}`);
    text += decode(buffer.subarray(0, n));
  }
  return text;
}

export const readFixture = (name: string): Uint8Array =>
  Deno.readFileSync(new URL(`./fixtures/${name}`, import.meta.url));

/** A fixture as text (PEM certificates and keys). */
export const readFixtureText = (name: string): string =>
  new TextDecoder().decode(readFixture(name));

/** A CLI subprocess (`deno run -A <script> ...`) whose output is collected as it comes. */
export interface Cli {
  /** Resolves with the first stdout line; rejects if the process exits first. */
  firstLine(): Promise<string>;
  /** Sends `signal` (if still running) and resolves with status and all output. */
  stop(signal?: Deno.Signal): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Sends `signal` without waiting. */
  kill(signal: Deno.Signal): void;
  /** Resolves when the process exits by itself. */
  exited: Promise<{ code: number; stdout: string; stderr: string }>;
  /** What it has written so far. */
  output(): { stdout: string; stderr: string };
  /** Its process id. */
  readonly pid: number;
}

/** A cache folder for CLI clients' lease files, shared by the CLIs this test process starts. */
let cacheHome: string | undefined;

/**
 * Starts `deno run -A <script> ...args` from the project root. Clients keep
 * their leases under XDG_CACHE_HOME: a temporary folder, unless `env` says;
 * their inspector listens on a free port (GOTUNNEL_INSPECT), unless `env` says.
 */
export function spawnCli(script: string, args: string[], env: Record<string, string> = {}): Cli {
  cacheHome ??= Deno.makeTempDirSync({ prefix: "gotunnel-test-cache-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    // A client's inspector on a free port: tests never take 4040-4050 from a developer.
    env: { NO_COLOR: "1", XDG_CACHE_HOME: cacheHome, GOTUNNEL_INSPECT: "127.0.0.1:0", ...env },
  }).spawn();
  let stdout = "";
  let stderr = "";
  const collect = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) add(decoder.decode(chunk, { stream: true }));
  };
  const collecting = Promise.all([
    collect(child.stdout, (s) => stdout += s),
    collect(child.stderr, (s) => stderr += s),
  ]);
  let running = true;
  const exited = (async () => {
    const status = await child.status;
    running = false;
    await collecting;
    return { code: status.code, stdout, stderr };
  })();
  return {
    async firstLine() {
      while (!stdout.includes("\n")) {
        if (!running) throw new Error(`exited before printing a line; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return stdout.slice(0, stdout.indexOf("\n"));
    },
    stop(signal: Deno.Signal = "SIGTERM") {
      if (running) child.kill(signal);
      return exited;
    },
    kill(signal: Deno.Signal) {
      if (running) child.kill(signal);
    },
    exited,
    output: () => ({ stdout, stderr }),
    pid: child.pid,
  };
}

/** Who sent bytes through a {@linkcode Hop}: the side that dialled it, or the side it dials. */
export type Speaker = "client" | "server";

/** A TCP hop between two ends: the network, as a test can see and break it. */
export interface Hop {
  /** The port to dial instead of the far end's. */
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /**
   * Who spoke on the `index`th connection, in order, repeats merged: after
   * `["client", "server", "client"]` the client has answered the server's first words.
   */
  turns(index: number): Speaker[];
  /** Closes every connection at once: both ends see it. */
  cut(): void;
  /** Stops accepting: new connections are refused. */
  refuse(): void;
  /**
   * Existing connections (those whose index `which` picks, in the order they
   * were accepted) go silent: bytes are dropped, nothing is closed, no FIN
   * either way, as when a NAT forgets them.
   */
  blackhole(which?: (index: number) => boolean): void;
  /** Refuses, closes what is open and waits for it. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A TCP hop on 127.0.0.1 that forwards each connection to `port`, half-closes
 * included, and counts them; `host` replaces the Host header of the first
 * request head on each connection (what DNS would do for a name Deno cannot
 * resolve or a client cannot set).
 */
export function tcpHop(port: number, options: { host?: string } = {}): Hop {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const open = new Set<Deno.Conn>();
  const holed = new Set<Deno.Conn>(); // bytes read from these are dropped
  const accepted: Deno.Conn[] = [];
  const upstreams = new Map<Deno.Conn, Deno.Conn>();
  const tasks: Promise<void>[] = [];
  const talks: Speaker[][] = [];
  const close = (c: Deno.Conn) => {
    if (open.delete(c)) closeQuietly(c);
  };
  const copy = async (from: Deno.Conn, to: Deno.TcpConn, speaker: Speaker, turns: Speaker[]) => {
    const buffer = new Uint8Array(64 * 1024);
    let head = speaker === "client" && options.host !== undefined ? "" : undefined;
    for (let n; (n = await from.read(buffer)) !== null;) {
      if (holed.has(from)) continue;
      let bytes: Uint8Array = buffer.subarray(0, n);
      if (head !== undefined) {
        head += latin1Text(bytes);
        if (!head.includes("\r\n\r\n")) continue;
        bytes = latin1Bytes(head.replace(/^host:.*$/im, `host: ${options.host}`));
        head = undefined;
      }
      await writeAllTo(to, bytes);
      if (turns.at(-1) !== speaker) turns.push(speaker);
    }
    if (!holed.has(from)) await to.closeWrite();
  };
  const serve = async (conn: Deno.TcpConn, turns: Speaker[]) => {
    let upstream: Deno.TcpConn;
    try {
      upstream = await connect(port);
    } catch {
      return close(conn);
    }
    open.add(upstream);
    upstreams.set(conn, upstream);
    const both = () => {
      close(conn);
      close(upstream);
    };
    await Promise.all([
      copy(conn, upstream, "client", turns).catch(both),
      copy(upstream, conn, "server", turns).catch(both),
    ]);
    both();
  };
  let accepting = true;
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        conn.setNoDelay(true);
        open.add(conn);
        accepted.push(conn);
        const turns: Speaker[] = [];
        talks.push(turns);
        tasks.push(serve(conn, turns));
      }
    } catch { /* closed */ }
  })();
  const refuse = () => {
    if (accepting) listener.close();
    accepting = false;
  };
  return {
    port: listener.addr.port,
    get connections() {
      return talks.length;
    },
    turns: (index) => [...talks[index] ?? []],
    cut() {
      for (const c of [...open]) close(c);
    },
    refuse,
    blackhole(which = () => true) {
      accepted.forEach((c, i) => {
        if (!which(i) || !open.has(c)) return;
        holed.add(c);
        const upstream = upstreams.get(c);
        if (upstream) holed.add(upstream);
      });
    },
    async [Symbol.asyncDispose]() {
      refuse();
      await loop;
      for (const c of [...open]) close(c);
      await Promise.all(tasks);
    },
  };
}

/** A hand-written TCP app: its port, and how many connections it has accepted. */
export interface RawApp {
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Stops listening, aborts the handlers' signal, closes what is open, waits for the handlers. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A TCP app on 127.0.0.1 (over TLS with `tls`) written by hand: `handle`
 * serves each connection (`index` counts them from 0; `closing` aborts when
 * the app is disposed), which is closed when it returns. A disconnect in a
 * handler ends that connection only; a bug in one (a TypeError, a failed
 * assertion) is thrown when the app is disposed.
 */
export function rawApp(
  handle: (conn: Deno.Conn, index: number, closing: AbortSignal) => unknown,
  tls?: { cert: string; key: string },
): RawApp {
  const listener = tls
    ? Deno.listenTls({ hostname: HOST, port: 0, ...tls })
    : Deno.listen({ hostname: HOST, port: 0 });
  const open = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  const closing = new AbortController();
  const bugs: unknown[] = [];
  let accepted = 0;
  const serve = async (conn: Deno.Conn, index: number) => {
    try {
      await handle(conn, index, closing.signal);
    } catch (e) {
      if (isBug(e)) bugs.push(e);
    } finally {
      open.delete(conn);
      closeQuietly(conn);
    }
  };
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        open.add(conn);
        tasks.push(serve(conn, accepted++));
      }
    } catch { /* closed */ }
  })();
  return {
    port: listener.addr.port,
    get accepted() {
      return accepted;
    },
    async [Symbol.asyncDispose]() {
      closeQuietly(listener);
      closing.abort();
      await loop;
      for (const c of open) closeQuietly(c);
      await Promise.all(tasks);
      if (bugs.length > 0) throw bugs[0];
    },
  };
}

/**
 * A raw app that answers any request with a head and then streams bytes, up
 * to `limit`, until its writes fail; `state` says how much it wrote and when
 * a write failed (0: none did).
 */
export function streamingApp(limit = Infinity): RawApp & {
  state: { written: number; failedAt: number };
} {
  const state = { written: 0, failedAt: 0 };
  const chunk = new Uint8Array(64 * 1024);
  const app = rawApp(async (conn) => {
    await conn.read(new Uint8Array(4096));
    try {
      await writeAllTo(conn, encode("HTTP/1.1 200 OK\r\n\r\n"));
      while (state.written < limit) {
        await writeAllTo(conn, chunk);
        state.written += chunk.length;
      }
    } catch {
      state.failedAt = Date.now();
    }
  });
  return Object.assign(app, { state });
}

/** An app that answers the first bytes it reads with `pong:` and them; over TLS with `tls`. */
export const pongApp = (tls?: { cert: string; key: string }): RawApp =>
  rawApp(async (conn) => {
    const buffer = new Uint8Array(64);
    const n = await conn.read(buffer);
    await writeAllTo(conn, encode(`pong:${decode(buffer.subarray(0, n ?? 0))}`));
  }, tls);

/** TLS to `hostname` over `tcp`, trusting only `caCerts`: sends `ping`, returns the answer. */
export async function pingOverTls(
  tcp: Deno.TcpConn,
  hostname: string,
  caCerts: string[],
): Promise<string> {
  const tls = await Deno.startTls(tcp, { hostname, caCerts });
  try {
    await writeAllTo(tls, encode("ping"));
    return decode(await readAll(tls));
  } finally {
    tls.close();
  }
}

/** One line a {@linkcode logRecorder} was told. */
export interface LogLine {
  level: "debug" | "info" | "warn" | "error";
  message: string;
  fields: LogFields | undefined;
}

/** A logger that keeps every line, for tests that wait on what a server or client said. */
export function logRecorder(): Logger & {
  readonly lines: LogLine[];
  /** How many lines said `message`. */
  count(message: string): number;
} {
  const lines: LogLine[] = [];
  const at = (level: LogLine["level"]) => (message: string, fields?: LogFields) =>
    void lines.push({ level, message, fields });
  return {
    lines,
    count: (message) => lines.filter((l) => l.message === message).length,
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
  };
}

/**
 * A client made by hand: sends the upgrade request and `frame` in one write,
 * reads the `101` (if the server sends one) and returns a reader for the
 * frames that follow.
 */
export async function rawClient(
  port: number,
  frame: Uint8Array,
): Promise<{ conn: Deno.TcpConn; reader: ByteReader; upgraded: boolean }> {
  const conn = await connect(port);
  await writeAllTo(conn, concatBytes(encodeUpgradeRequest("localhost"), frame));
  const reader = new ByteReader(conn, FRAME_READER_CAPACITY);
  while (reader.buffered.length < UPGRADE_RESPONSE.length) {
    if (!await reader.fill()) return { conn, reader, upgraded: false };
  }
  reader.consume(UPGRADE_RESPONSE.length);
  return { conn, reader, upgraded: true };
}

/**
 * The first frames of a client made by hand: a hello (with `token`) and a claim
 * of one HTTP tunnel (`subdomain`, or any other claim fields given).
 */
export function helloFrames(
  claim: { subdomain?: string; kind?: "http" | "tcp"; port?: number; host?: string } = {},
  token?: string,
): Uint8Array {
  const one = { ref: "t", kind: "http", ...claim } as TunnelClaim;
  return concatBytes(
    encodeFrame({ type: "hello", version: PROTOCOL_VERSION, ...(token ? { token } : {}) }),
    encodeFrame({ type: "claim", tunnels: [one] }),
  );
}

/**
 * What a server made by hand answers a hello and claim with: a welcome, and a
 * grant of `name` to the first tunnel of a client (`tunnel1`).
 */
export function welcomeFrames(name: string, url = `http://${name}.localhost`): Uint8Array {
  return concatBytes(
    encodeFrame({ type: "welcome", version: PROTOCOL_VERSION, session: "t", secret: "s" }),
    encodeFrame({
      type: "claimed",
      tunnels: [{ ref: "tunnel1", ok: true, id: 1, name, url, lease: `v1.${name}.n.1.mac` }],
    }),
  );
}

/** The next frame from the server that is not a ping; null at end of stream. */
export async function nextFrame(reader: ByteReader): Promise<ServerMessage | null> {
  for (;;) {
    const frame = await reader.readFrame(decodeServerFrame);
    if (frame?.type !== "ping") return frame;
  }
}

/**
 * For a test that drives a program (chromium, pebble, redis-server, sshd):
 * `ignore` when it is missing on a developer machine, with the reason printed
 * once; in CI (GOTUNNEL_CI set) a missing program is never ignored, so the
 * test fails. Use as `Deno.test({ ...needs("chromium"), ... })`.
 */
export function needs(...commands: string[]): { ignore: boolean } {
  const missing = commands.filter((command) => !onPath(command));
  if (missing.length === 0 || Deno.env.get("GOTUNNEL_CI")) return { ignore: false };
  const key = missing.join(", ");
  if (!reported.has(key)) {
    reported.add(key);
    // deno-lint-ignore no-console -- the visible reason for an ignored test
    console.error(`Ignoring tests that need ${key}: not installed (apt-get install -y ...)`);
  }
  return { ignore: true };
}
const reported = new Set<string>();

/** Whether `command` is a file on PATH (or an absolute path that exists). */
export function onPath(command: string): boolean {
  const dirs = command.startsWith("/") ? [""] : (Deno.env.get("PATH") ?? "").split(":");
  return dirs.some((dir) => {
    try {
      return Deno.statSync(dir ? `${dir}/${command}` : command).isFile;
    } catch {
      return false;
    }
  });
}
