// Test helpers for the cluster: a real redis-server on a free loopback port (no
// persistence), killed and restarted at will, asked with redis-cli; and a gate, a
// TCP hop to it that a test opens and shuts to cut one node off Redis.

import { closeQuietly } from "../lib/io.ts";
import { HOST, readFixtureText } from "./helpers.ts";

/** How long redis-server has to answer PING after it is started. */
const READY_TIMEOUT_MS = 5_000;

/** A redis-server started by a test. */
export interface TestRedis {
  /** Its port on 127.0.0.1. */
  readonly port: number;
  /** `redis://` (or `rediss://`) URL, with the password if there is one. */
  readonly url: string;
  /** Its CA certificate (PEM), when it speaks TLS. */
  readonly caCerts: string[] | undefined;
  /** Runs redis-cli with `args`; resolves with its output, trimmed. */
  cli(...args: string[]): Promise<string>;
  /** Names of the connected clients, the asking redis-cli left out ("" for unnamed ones). */
  clients(): Promise<string[]>;
  /** SIGKILL, waited for. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty: no persistence), once it answers PING. */
  restart(): Promise<void>;
  /** Kills it if it runs. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts redis-server on a free port of 127.0.0.1 (probed: redis cannot be
 * given port 0), with `--save "" --appendonly no`, and waits until it answers
 * PING. With `password`, clients must AUTH; with `tls`, it speaks TLS only,
 * with the localhost certificate of tests/fixtures.
 */
export async function startRedis(
  options: { password?: string; tls?: boolean } = {},
): Promise<TestRedis> {
  const dir = new URL("./fixtures/", import.meta.url).pathname;
  const caCerts = options.tls ? [readFixtureText("ca.pem")] : undefined;
  const authArgs = options.password ? ["-a", options.password, "--no-auth-warning"] : [];
  const tlsCli = options.tls ? ["--tls", "--cacert", `${dir}ca.pem`] : [];
  let port = 0;
  let child: Deno.ChildProcess | undefined;

  const cli = async (...args: string[]): Promise<string> => {
    const out = await new Deno.Command("redis-cli", {
      args: ["-h", HOST, "-p", String(port), ...tlsCli, ...authArgs, ...args],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  };

  const spawn = async (): Promise<boolean> => {
    const portArgs = options.tls
      ? [
        ...["--port", "0", "--tls-port", String(port)],
        ...["--tls-cert-file", `${dir}localhost.pem`, "--tls-key-file", `${dir}localhost.key`],
        ...["--tls-ca-cert-file", `${dir}ca.pem`, "--tls-auth-clients", "no"],
      ]
      : ["--port", String(port)];
    child = new Deno.Command("redis-server", {
      args: [
        ...["--save", "", "--appendonly", "no", "--bind", HOST, "--loglevel", "warning"],
        ...portArgs,
        ...(options.password ? ["--requirepass", options.password] : []),
      ],
      stdout: "null",
      stderr: "null",
      stdin: "null",
    }).spawn();
    let exited = false;
    child.status.then(() => exited = true);
    const end = performance.now() + READY_TIMEOUT_MS;
    while (performance.now() < end && !exited) {
      if (await cli("PING") === "PONG") return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    if (!exited) child.kill("SIGKILL");
    await child.status;
    child = undefined;
    return false;
  };

  const kill = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (!running) return;
    running.kill("SIGKILL");
    await running.status;
  };

  for (let attempt = 0; attempt < 3 && !child; attempt++) {
    const probe = Deno.listen({ hostname: HOST, port: 0 });
    port = probe.addr.port;
    probe.close();
    await spawn();
  }
  if (!child) throw new Error("Cannot start redis-server on a free port");
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : "";
  return {
    port,
    url: `${options.tls ? "rediss" : "redis"}://${auth}${HOST}:${port}`,
    caCerts,
    cli,
    async clients() {
      const lines = (await cli("CLIENT", "LIST")).split("\n").filter((l) => l.includes("id="));
      return lines.filter((l) => !/ cmd=client\|list /.test(l))
        .map((l) => / name=(\S*)/.exec(l)?.[1] ?? "");
    },
    kill,
    async restart() {
      await kill();
      if (!await spawn()) throw new Error(`Cannot restart redis-server on port ${port}`);
    },
    [Symbol.asyncDispose]: kill,
  };
}

/** A TCP hop to a port that a test opens and shuts. */
export interface Gate {
  /** The port to dial instead. */
  readonly port: number;
  /** Shut: open connections are cut, new ones are closed at once. */
  shut(): void;
  /** Open: new connections are forwarded again. */
  open(): void;
  /** Stops listening and cuts everything. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** A gate on 127.0.0.1 in front of `port`, open at first. */
export function gate(port: number): Gate {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let isOpen = true;
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(16 * 1024);
    try {
      for (let n; (n = await from.read(buffer)) !== null;) {
        for (let at = 0; at < n;) at += await to.write(buffer.subarray(at, n));
      }
    } catch { /* cut */ }
    for (const c of [from, to]) if (conns.delete(c)) closeQuietly(c);
  };
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    if (!isOpen) return void (conns.delete(conn), closeQuietly(conn));
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect({ hostname: HOST, port });
    } catch {
      return void (conns.delete(conn), closeQuietly(conn));
    }
    conns.add(upstream);
    await Promise.all([pipe(conn, upstream), pipe(upstream, conn)]);
  };
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        const task = serve(conn).finally(() => tasks.delete(task));
        tasks.add(task);
      }
    } catch { /* closed */ }
  })();
  const cut = () => {
    for (const c of [...conns]) {
      conns.delete(c);
      closeQuietly(c);
    }
  };
  return {
    port: listener.addr.port,
    shut() {
      isOpen = false;
      cut();
    },
    open() {
      isOpen = true;
    },
    async [Symbol.asyncDispose]() {
      isOpen = false;
      closeQuietly(listener);
      await loop;
      cut();
      await Promise.all(tasks);
    },
  };
}
