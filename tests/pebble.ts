// A real ACME CA for tests: Debian's pebble, with pebble-challtestsrv as its DNS
// (every name is 127.0.0.1; TXT records set through its management API, which
// the DNS hook calls). Ports are all picked by the kernel (port 0) and read back
// from /proc. In front of pebble: a TCP hop that can go down (the CA
// unreachable) and an HTTP proxy that can answer 429; pebble's HTTP-01
// validations go through a hop whose target is the Gotunnel server's plain port.

import { closeQuietly } from "../lib/io.ts";
import { connect, HOST, readFixtureText, waitFor, writeAllTo } from "./helpers.ts";

/** The fixture pair pebble serves its directory with, and the CA that signed it. */
const LISTEN_CERT = "localhost.pem";
const LISTEN_KEY = "localhost.key";
/** Where the directory's CA is, for `--acme-ca`. */
export const PEBBLE_CA_FILE = new URL("./fixtures/ca.pem", import.meta.url).pathname;
/** How long pebble and its DNS have to listen after they start. */
const START_TIMEOUT_MS = 10_000;
/** How long a probe of a port waits for an HTTP answer. */
const PROBE_TIMEOUT_MS = 500;

/** A started pebble. */
export interface Pebble {
  /** The directory URL (through the hop and the proxy). */
  readonly directoryUrl: string;
  /** The CA of the directory's TLS certificate (a test fixture), as PEM. */
  readonly caCerts: string[];
  /** A DNS hook (`hook set|unset RECORD VALUE`) that sets TXT records in pebble's DNS. */
  readonly dnsHook: string;
  /** Pebble's root, which issued certificates chain to. */
  root(): Promise<string>;
  /** Where pebble's HTTP-01 validations go: the Gotunnel server's plain port. */
  httpTarget: number;
  /** The CA as clients see it: unreachable while true (connections closed at once). */
  down: boolean;
  /** The next `count` new orders are answered 429 with `Retry-After: retryAfterS`. */
  rateLimit(count: number, retryAfterS: number): void;
  /** When each new-order request reached the proxy (ms since the epoch), and its status. */
  readonly orders: { at: number; status: number }[];
  /** Stops everything. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The TCP and UDP ports `pid` listens on, read from /proc (by a shell: Deno
 * asks for all permissions to read another process's /proc entries).
 */
async function listeningPorts(pid: number): Promise<{ tcp: number[]; udp: number[] }> {
  const script = `for f in /proc/${pid}/fd/*; do readlink "$f"; done; echo ---; ` +
    "cat /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6";
  const { stdout } = await new Deno.Command("bash", { args: ["-c", script], stderr: "null" })
    .output();
  const [links = "", table = ""] = new TextDecoder().decode(stdout).split("---\n");
  const inodes = new Set([...links.matchAll(/socket:\[(\d+)\]/g)].map((m) => m[1]!));
  const found = { tcp: [] as number[], udp: [] as number[] };
  for (const line of table.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !inodes.has(f[9]!)) continue;
    const port = parseInt(f[1]!.split(":")[1]!, 16);
    if (f[3] === "0A") found.tcp.push(port); // TCP LISTEN
    else if (f[3] === "07" && f[2]!.endsWith(":0000")) found.udp.push(port); // unconnected UDP
  }
  return found;
}

/** Whether an HTTP request to `port` is answered within the probe time (a DNS port is not). */
async function answersHttp(port: number): Promise<boolean> {
  const conn = await connect(port);
  const timer = setTimeout(() => closeQuietly(conn), PROBE_TIMEOUT_MS);
  try {
    await writeAllTo(conn, new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
    const buffer = new Uint8Array(5);
    const n = await conn.read(buffer);
    return n !== null && new TextDecoder().decode(buffer.subarray(0, n)).startsWith("HTTP");
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

/** A child process whose output is kept for when something fails. */
function spawn(command: string, args: string[], env: Record<string, string>, cwd: string) {
  const child = new Deno.Command(command, {
    args,
    env,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const decoder = new TextDecoder();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  const collecting = Promise.all([collect(child.stdout), collect(child.stderr)]);
  return {
    pid: child.pid,
    output: () => output,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // exited already
      }
      await child.status;
      await collecting;
    },
  };
}

/** A TCP hop to a port that can change, and that can close what it accepts (`down`). */
function hop(target: () => number, isDown: () => boolean) {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const open = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (let n; (n = await from.read(buffer)) !== null;) {
        await writeAllTo(to, buffer.subarray(0, n));
      }
      await (to as Deno.TcpConn).closeWrite();
    } catch {
      closeQuietly(from);
      closeQuietly(to);
    }
  };
  const serve = async (conn: Deno.Conn) => {
    open.add(conn);
    let upstream: Deno.Conn | undefined;
    try {
      if (isDown()) return;
      upstream = await Deno.connect({ hostname: HOST, port: target() });
      open.add(upstream);
      await Promise.all([pipe(conn, upstream), pipe(upstream, conn)]);
    } catch {
      // the far end refused
    } finally {
      for (const c of [conn, upstream]) {
        if (c && open.delete(c)) closeQuietly(c);
      }
    }
  };
  const loop = (async () => {
    try {
      for await (const conn of listener) {
        const task = serve(conn).finally(() => tasks.delete(task));
        tasks.add(task);
      }
    } catch {
      // closed
    }
  })();
  return {
    port: listener.addr.port,
    async close() {
      closeQuietly(listener);
      await loop;
      for (const c of open) closeQuietly(c);
      await Promise.all([...tasks]);
    },
  };
}

/**
 * Starts pebble-challtestsrv and pebble (certificates valid `validitySeconds`),
 * with the hop and proxy in front. Pebble never sleeps before validating and
 * never rejects a good nonce.
 */
export async function startPebble(options: { validitySeconds?: number } = {}): Promise<Pebble> {
  const dir = await Deno.makeTempDir({ prefix: "gotunnel-pebble-" });
  const ca = readFixtureText("ca.pem");
  const cleanups: (() => Promise<void>)[] = [];
  const dispose = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  };
  try {
    const dns = spawn(
      "pebble-challtestsrv",
      [
        "-defaultIPv6",
        "",
        "-dns01",
        `${HOST}:0`,
        "-http01",
        "",
        "-https01",
        "",
        "-tlsalpn01",
        "",
        "-management",
        `${HOST}:0`,
      ],
      {},
      dir,
    );
    cleanups.push(dns.stop);
    let dnsPorts = { tcp: [] as number[], udp: [] as number[] };
    await waitFor(
      async () => {
        dnsPorts = await listeningPorts(dns.pid);
        return dnsPorts.tcp.length === 2 && dnsPorts.udp.length === 1;
      },
      START_TIMEOUT_MS,
      `pebble-challtestsrv to listen: ${dns.output()}`,
    );
    let management: number | undefined;
    for (const port of dnsPorts.tcp) if (await answersHttp(port)) management = port;
    if (management === undefined) {
      throw new Error("Cannot find pebble-challtestsrv's management port");
    }
    const dnsHook = `${dir}/hook.sh`;
    await Deno.writeTextFile(
      dnsHook,
      `#!/bin/bash
# A Gotunnel DNS hook for pebble-challtestsrv: $1 set|unset, $2 record, $3 value.
set -eu
if [ "$1" = set ]; then path=set-txt; body="{\\"host\\":\\"$2.\\",\\"value\\":\\"$3\\"}"
else path=clear-txt; body="{\\"host\\":\\"$2.\\"}"; fi
exec 3<>/dev/tcp/127.0.0.1/${management}
printf 'POST /%s HTTP/1.0\\r\\nContent-Length: %d\\r\\n\\r\\n%s' "$path" "\${#body}" "$body" >&3
read -r status <&3
case "$status" in *" 200 "*) exit 0 ;; *) echo "challtestsrv said: $status" >&2; exit 1 ;; esac
`,
      { mode: 0o755 },
    );
    const state = { httpTarget: 0, down: false, limited: 0, retryAfterS: 0 };
    const validation = hop(() => state.httpTarget, () => false);
    cleanups.push(validation.close);
    await Deno.writeTextFile(`${dir}/cert.pem`, readFixtureText(LISTEN_CERT));
    await Deno.writeTextFile(`${dir}/key.pem`, readFixtureText(LISTEN_KEY));
    await Deno.writeTextFile(
      `${dir}/pebble.json`,
      JSON.stringify({
        pebble: {
          listenAddress: `${HOST}:0`,
          managementListenAddress: `${HOST}:0`,
          certificate: "cert.pem",
          privateKey: "key.pem",
          httpPort: validation.port,
          tlsPort: 5001,
          ocspResponderURL: "",
          externalAccountBindingRequired: false,
          ...(options.validitySeconds
            ? { certificateValidityPeriod: options.validitySeconds }
            : {}),
        },
      }),
    );
    const pebble = spawn(
      "pebble",
      ["-config", "pebble.json", "-dnsserver", `${HOST}:${dnsPorts.udp[0]}`, "-strict=false"],
      { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0" },
      dir,
    );
    cleanups.push(pebble.stop);
    let pebblePorts: number[] = [];
    await waitFor(
      async () => {
        pebblePorts = (await listeningPorts(pebble.pid)).tcp;
        return pebblePorts.length === 2;
      },
      START_TIMEOUT_MS,
      `pebble to listen: ${pebble.output()}`,
    );
    const upstream = Deno.createHttpClient({ caCerts: [ca], allowHost: true, http2: false });
    cleanups.push(() => Promise.resolve(upstream.close()));
    const isAcme = async (port: number) => {
      const res = await fetch(`https://${HOST}:${port}/dir`, { client: upstream });
      const text = await res.text();
      return res.ok && text.includes("newNonce");
    };
    const acmePort = await isAcme(pebblePorts[0]!) ? pebblePorts[0]! : pebblePorts[1]!;
    const managementPort = pebblePorts.find((p) => p !== acmePort)!;
    const orders: { at: number; status: number }[] = [];
    // The proxy keeps the Host the client sent, so pebble's URLs name the hop.
    const proxy = Deno.serve({
      hostname: HOST,
      port: 0,
      cert: readFixtureText(LISTEN_CERT),
      key: readFixtureText(LISTEN_KEY),
      onListen() {},
    }, async (req) => {
      const url = new URL(req.url);
      const newOrder = url.pathname.startsWith("/order-plz");
      if (newOrder && state.limited > 0) {
        state.limited--;
        orders.push({ at: Date.now(), status: 429 });
        await req.body?.cancel();
        return Response.json({
          type: "urn:ietf:params:acme:error:rateLimited",
          detail: "Too many new orders (the test's proxy)",
          status: 429,
        }, {
          status: 429,
          headers: {
            "retry-after": `${state.retryAfterS}`,
            "content-type": "application/problem+json",
          },
        });
      }
      const headers = new Headers(req.headers);
      headers.set("host", url.host); // HTTP/2 clients send it as :authority
      const res = await fetch(`https://${HOST}:${acmePort}${url.pathname}${url.search}`, {
        method: req.method,
        headers,
        client: upstream,
        ...(req.body ? { body: await req.arrayBuffer() } : {}),
      });
      if (newOrder) orders.push({ at: Date.now(), status: res.status });
      const answer = new Headers(res.headers);
      answer.delete("content-encoding");
      answer.delete("content-length");
      return new Response(req.method === "HEAD" ? null : await res.arrayBuffer(), {
        status: res.status,
        headers: answer,
      });
    });
    cleanups.push(() => proxy.shutdown());
    const front = hop(() => proxy.addr.port, () => state.down);
    cleanups.push(front.close);
    return {
      directoryUrl: `https://${HOST}:${front.port}/dir`,
      caCerts: [ca],
      dnsHook,
      async root() {
        const res = await fetch(`https://${HOST}:${managementPort}/roots/0`, { client: upstream });
        return await res.text();
      },
      get httpTarget() {
        return state.httpTarget;
      },
      set httpTarget(port: number) {
        state.httpTarget = port;
      },
      get down() {
        return state.down;
      },
      set down(value: boolean) {
        state.down = value;
      },
      rateLimit(count, retryAfterS) {
        state.limited = count;
        state.retryAfterS = retryAfterS;
      },
      orders,
      [Symbol.asyncDispose]: dispose,
    };
  } catch (e) {
    await dispose();
    throw e;
  }
}
