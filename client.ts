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
import { checkSubdomain } from "./lib/names.ts";
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
  --ca FILE           trust this CA (PEM) for an https:// server, e.g. a private CA
  --wait              if the subdomain is held for its previous client, wait until it is free
  --local-host HOST   host of the local app (default localhost); when given, also the Host header
                      the app sees (the public one goes in X-Forwarded-Host)
  --raw               relay bytes only: no request parsing, no X-Forwarded-* headers
  --pool N            idle connections kept ready for visitors, 1-${MAX_IDLE_PROXIES} (default ${DEFAULT_POOL_SIZE})
  --log-level LEVEL   debug, info, warn, error or silent (default info)
  -h, --help          show this help
  -V, --version       show the version

Prints the public URL alone on a stdout line each time the tunnel is up (again after a
reconnect); everything else goes to stderr. Exits 1 if the server refuses the tunnel.
Leases that let a restarted client reclaim its subdomain are kept in
$XDG_CACHE_HOME/gotunnel/leases.json (else ~/.cache/gotunnel/leases.json).

Examples:
  gotunnel-client 3000 --subdomain demo                 # http://demo.localhost:8080
  gotunnel-client 3000 --server http://tunnel.example   # a self-hosted server
`;

const FLAGS = {
  server: { type: "string" },
  subdomain: { type: "string" },
  token: { type: "string" },
  ca: { type: "string" },
  wait: { type: "boolean" },
  raw: { type: "boolean" },
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
  try {
    const { values, positionals } = parseFlags(args, FLAGS);
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
        ? { hostHeader: `${values["local-host"]}:${positionals[0]}` }
        : {}),
      raw: values.raw === true,
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
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
