// Test helpers: a sample app, a server+tunnel stack, deterministic bytes, raw HTTP.

import { openTunnel, type Tunnel, type TunnelOptions } from "../lib/client/tunnel.ts";
import { ByteReader, FRAME_READER_CAPACITY } from "../lib/io.ts";
import { concatBytes } from "../lib/bytes.ts";
import {
  decodeServerFrame,
  encodeUpgradeRequest,
  type ServerMessage,
  UPGRADE_RESPONSE,
} from "../lib/protocol.ts";
import type { ServerLimits } from "../lib/limits.ts";
import { startServer, type TunnelServer } from "../lib/server/server.ts";

export const HOST = "127.0.0.1";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

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

/** A sample app: `/bytes/N`, `POST /sha256`, `/chunked`, `/ws` echo, `/whoami`, `/name`. */
export function startApp(name = "app"): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ port: 0, hostname: HOST, onListen() {} }, async (req, info) => {
    const url = new URL(req.url);
    const [, route, arg] = url.pathname.split("/");
    switch (route) {
      case "bytes":
        return new Response(patternBytes(Number(arg)));
      case "sha256": {
        const body = new Uint8Array(await req.arrayBuffer());
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

/** A tunnel from `server` to a local port on 127.0.0.1. */
export function openTestTunnel(
  server: TunnelServer,
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

/** Writes all bytes. */
export async function writeAllTo(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** Resolves when `check` returns true, polling; rejects after `ms`. */
export async function waitFor(check: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
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
}

/** A cache folder for CLI clients' lease files, shared by the CLIs this test process starts. */
let cacheHome: string | undefined;

/**
 * Starts `deno run -A <script> ...args` from the project root. Clients keep
 * their leases under XDG_CACHE_HOME: a temporary folder, unless `env` says.
 */
export function spawnCli(script: string, args: string[], env: Record<string, string> = {}): Cli {
  cacheHome ??= Deno.makeTempDirSync({ prefix: "gotunnel-test-cache-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    env: { NO_COLOR: "1", XDG_CACHE_HOME: cacheHome, ...env },
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
  };
}

/** A plain TCP hop on 127.0.0.1 that forwards to `port` and counts the connections it sees. */
export function countingHop(port: number): {
  port: number;
  readonly connections: number;
  [Symbol.asyncDispose](): Promise<void>;
} {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  let connections = 0;
  const close = (c: Deno.Conn) => {
    if (conns.delete(c)) c.close();
  };
  const copy = async (from: Deno.Conn, to: Deno.TcpConn) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (let n; (n = await from.read(buffer)) !== null;) {
        await writeAllTo(to, buffer.subarray(0, n));
      }
      await to.closeWrite();
    } catch {
      close(from);
      close(to);
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        connections++;
        conn.setNoDelay(true);
        const upstream = await connect(port);
        conns.add(conn).add(upstream);
        tasks.push(
          Promise.all([copy(conn, upstream), copy(upstream, conn)]).then(() => {
            close(conn);
            close(upstream);
          }),
        );
      }
    } catch { /* closed */ }
  })();
  return {
    port: listener.addr.port,
    get connections() {
      return connections;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      for (const c of [...conns]) close(c);
      await Promise.all(tasks);
    },
  };
}

/**
 * A TCP hop on 127.0.0.1 to `port` whose connections can all be cut at once
 * (`cut()`), and which can stop accepting (`refuse()`): a network failure
 * between a client and its server, as both ends see it.
 */
export function cuttableHop(port: number): {
  port: number;
  cut(): void;
  refuse(): void;
  blackhole(): void;
  [Symbol.asyncDispose](): Promise<void>;
} {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const conns = new Set<Deno.Conn>();
  const holed = new Set<Deno.Conn>(); // bytes read from these are dropped, nothing is closed
  const tasks: Promise<unknown>[] = [];
  const close = (c: Deno.Conn) => {
    if (conns.delete(c)) c.close();
  };
  const copy = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (let n; (n = await from.read(buffer)) !== null;) {
        if (!holed.has(from)) await writeAllTo(to, buffer.subarray(0, n));
      }
    } catch { /* cut */ }
    close(from);
    close(to);
  };
  let accepting = true;
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        conn.setNoDelay(true);
        const upstream = await connect(port);
        conns.add(conn).add(upstream);
        tasks.push(Promise.all([copy(conn, upstream), copy(upstream, conn)]));
      }
    } catch { /* closed */ }
  })();
  const refuse = () => {
    if (accepting) listener.close();
    accepting = false;
  };
  return {
    port: listener.addr.port,
    cut() {
      for (const c of [...conns]) close(c);
    },
    refuse,
    blackhole() {
      for (const c of conns) holed.add(c);
    },
    async [Symbol.asyncDispose]() {
      refuse();
      await loop;
      for (const c of [...conns]) close(c);
      await Promise.all(tasks);
    },
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

/** The next frame from the server that is not a ping; null at end of stream. */
export async function nextFrame(reader: ByteReader): Promise<ServerMessage | null> {
  for (;;) {
    const frame = await reader.readFrame(decodeServerFrame);
    if (frame?.type !== "ping") return frame;
  }
}
