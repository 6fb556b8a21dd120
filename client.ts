/**
 * The Gotunnel client: exposes a local port through a Gotunnel server.
 *
 * ```sh
 * deno run -A jsr:@gotunnel/gotunnel/client 3000 --server http://tunnel.example
 * ```
 *
 * @module
 */

import { openTunnel } from "./lib/client/tunnel.ts";
import { intFlag, logLevelFlag, parseFlags, UsageError } from "./lib/cli.ts";
import { TunnelError } from "./lib/errors.ts";
import { createLogger } from "./lib/log.ts";
import { checkSubdomain, hostWithPort } from "./lib/names.ts";
import { type RecordStyle, recordStyle, requestPrinter } from "./lib/client/request_log.ts";
import { parseServerUrl } from "./lib/client/dial.ts";
import { DEFAULT_POOL_SIZE, GOTUNNEL_VERSION, MAX_IDLE_PROXIES } from "./lib/protocol.ts";

/** The client's `--help` text. */
export const CLIENT_USAGE =
  `Gotunnel client ${GOTUNNEL_VERSION}: exposes a local port at a public URL

Usage: gotunnel-client <port> [options]

Options:
  --server URL        Gotunnel server, http:// or https:// (default $GOTUNNEL_SERVER, else
                      http://localhost:8080)
  --subdomain NAME    subdomain to ask for: a-z, 0-9, "-", 1-63 chars (default: a random one)
  --token TOKEN       token for a server that requires one (default $GOTUNNEL_TOKEN)
  --ca FILE           trust this CA (PEM) for an https:// server (and a --local-https app)
  --wait              if the subdomain is held for its previous client, wait until it is free
  --local-host HOST   host of the local app (default localhost); when given, also the Host header
                      the app sees (the public one goes in X-Forwarded-Host)
  --local-https       the local app speaks TLS (its certificate is checked against HOST)
  --allow-invalid-cert with --local-https: accept a self-signed or otherwise invalid certificate
  --raw               relay bytes only: no request parsing, no X-Forwarded-*, no request log
  --quiet             no request log (one stderr line per request: GET /path → 200  12.3 ms  1.2 KB)
  --pool N            idle connections kept ready for visitors, 1-${MAX_IDLE_PROXIES} (default ${DEFAULT_POOL_SIZE})
  --log-level LEVEL   debug, info, warn, error or silent (default info)
  -h, --help          show this help
  -V, --version       show the version

Prints the public URL alone on a stdout line each time the tunnel is up (again after a
reconnect); everything else goes to stderr: the request log (coloured on a terminal unless
NO_COLOR is set) and the log. Exits 1 if the server refuses the tunnel.
Leases that let a restarted client reclaim its subdomain are kept in
$XDG_CACHE_HOME/gotunnel/leases.json (else ~/.cache/gotunnel/leases.json).

Examples:
  gotunnel-client 3000 --subdomain demo                 # http://demo.localhost:8080
  gotunnel-client 3000 --server http://tunnel.example   # a self-hosted server
  gotunnel-client 5173 --local-host localhost           # Vite checks Host: it sees localhost:5173
  gotunnel-client 8443 --local-https --allow-invalid-cert  # an app with a self-signed certificate
`;

const FLAGS = {
  server: { type: "string" },
  subdomain: { type: "string" },
  token: { type: "string" },
  ca: { type: "string" },
  wait: { type: "boolean" },
  raw: { type: "boolean" },
  quiet: { type: "boolean" },
  "local-https": { type: "boolean" },
  "allow-invalid-cert": { type: "boolean" },
  "local-host": { type: "string" },
  pool: { type: "string" },
  "log-level": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

const print = (text: string): void => {
  Deno.stdout.writeSync(new TextEncoder().encode(text.endsWith("\n") ? text : text + "\n"));
};
const printError = (text: string): void => {
  Deno.stderr.writeSync(new TextEncoder().encode(`gotunnel-client: ${text}\n`));
};

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no env permission: use the default
  }
}

/**
 * Runs the client CLI with `args` until Ctrl-C; returns the exit status.
 *
 * @param args Command-line arguments, without the program name.
 * @returns 0 after Ctrl-C, 1 when the server is unreachable or refuses, 2 on a bad flag.
 *
 * @example Print the version
 * ```ts
 * import { main } from "@gotunnel/gotunnel/client";
 * await main(["--version"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let options;
  const printer = requestPrinter((text) => writeAllSync(Deno.stderr, text), requestLogStyle());
  try {
    const { values, positionals } = parseFlags(args, FLAGS);
    if (values["allow-invalid-cert"] && !values["local-https"]) {
      throw new UsageError("--allow-invalid-cert needs --local-https");
    }
    if (values.help) return print(CLIENT_USAGE), 0;
    if (values.version) return print(`gotunnel-client ${GOTUNNEL_VERSION}`), 0;
    if (positionals.length !== 1) {
      throw new UsageError(positionals.length === 0 ? "Missing <port>" : "Too many arguments");
    }
    const server = typeof values.server === "string" ? values.server : env("GOTUNNEL_SERVER") ??
      "http://localhost:8080";
    try {
      parseServerUrl(server);
    } catch (e) {
      throw new UsageError(`Invalid --server: ${(e as Error).message}`);
    }
    const subdomain = typeof values.subdomain === "string" ? values.subdomain : undefined;
    if (subdomain !== undefined) {
      const checked = checkSubdomain(subdomain);
      if (!checked.ok) throw new UsageError(checked.reason);
    }
    const localHost = values["local-host"];
    if (
      typeof localHost === "string" &&
      !/^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+)$/.test(localHost)
    ) {
      throw new UsageError(`Invalid --local-host: ${JSON.stringify(localHost)}`);
    }
    const token = typeof values.token === "string" ? values.token : env("GOTUNNEL_TOKEN");
    let ca: string[] | undefined;
    if (typeof values.ca === "string") {
      try {
        ca = [await Deno.readTextFile(values.ca)];
      } catch (e) {
        throw new UsageError(`Cannot read --ca ${values.ca}: ${(e as Error).message}`);
      }
    }
    options = {
      port: intFlag("port", positionals[0], 0, 1, 65535),
      server,
      ...(subdomain === undefined ? {} : { subdomain }),
      ...(token === undefined ? {} : { token }),
      ...(ca === undefined ? {} : { ca }),
      wait: values.wait === true,
      localHost: typeof values["local-host"] === "string" ? values["local-host"] : "localhost",
      // An explicit --local-host is also the Host the app sees (dev servers check it).
      ...(typeof values["local-host"] === "string"
        ? { hostHeader: hostWithPort(values["local-host"], Number(positionals[0]), -1) }
        : {}),
      raw: values.raw === true,
      localHttps: values["local-https"] === true,
      allowInvalidCert: values["allow-invalid-cert"] === true,
      ...(values.quiet === true || values.raw === true ? {} : { onRequest: printer.log }),
      pool: intFlag("pool", values.pool, DEFAULT_POOL_SIZE, 1, MAX_IDLE_PROXIES),
      logger: createLogger({ level: logLevelFlag(values["log-level"]) }),
    };
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    printError(`${e.message} (see --help)`);
    return 2;
  }
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    const tunnel = await openTunnel({ ...options, signal: stop.signal, onReady: print });
    await tunnel.finished;
    return 0;
  } catch (e) {
    printError(e instanceof TunnelError ? e.message : `Unexpected error: ${e}`);
    return 1;
  } finally {
    printer.flush();
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}

/** Aligned and coloured on a terminal (colour off with NO_COLOR), plain otherwise. */
function requestLogStyle(): RecordStyle {
  return recordStyle(Deno.stderr.isTerminal(), env("NO_COLOR"));
}

function writeAllSync(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  while (at < bytes.length) at += file.writeSync(bytes.subarray(at));
}

if (import.meta.main) Deno.exit(await main(Deno.args));
