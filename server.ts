/**
 * The Gotunnel server: run it on a public host with a wildcard DNS record.
 *
 * ```sh
 * deno run -A jsr:@gotunnel/gotunnel/server --domain tunnel.example --port 80
 * ```
 *
 * @module
 */

import { choiceFlag, intFlag, logLevelFlag, parseFlags, UsageError } from "./lib/cli.ts";
import { createLogger } from "./lib/log.ts";
import { normalizeHost } from "./lib/names.ts";
import { DEFAULT_SERVER_LIMITS, GOTUNNEL_VERSION, LEASE_MS } from "./lib/protocol.ts";
import { parseTokensFile, type TokenScope } from "./lib/server/auth.ts";
import { LIMIT_FLAGS, limitUsage, parseDuration, readLimitFlags } from "./lib/server/limits.ts";
import { startServer } from "./lib/server/server.ts";

/** The server's `--help` text. */
export const SERVER_USAGE =
  `Gotunnel server ${GOTUNNEL_VERSION}: exposes clients' local apps at <name>.<domain>

Usage: gotunnel-server [options]

Options:
  --port N           TCP port for browsers and clients; 0 picks a free one (default 8080)
  --hostname ADDR    address to listen on (default 0.0.0.0)
  --domain NAME      tunnels are <name>.NAME; NAME itself shows the landing page (default localhost)
  --log-level LEVEL  debug, info, warn, error or silent (default info)
  --log-format FMT   text or json (default text)
  --token TOKEN      require this token to open tunnels, any subdomain (repeatable)
  --tokens-file FILE require a token from FILE: lines "TOKEN [SUB,SUB...|*]", # comments
  --tls-cert FILE    serve HTTPS with this PEM certificate (for *.<domain> and <domain>)
  --tls-key FILE     ...and this PEM key; both re-read on SIGHUP
  --tls-port N       HTTPS port (default 8443; 443 in production)
  --redirect-http    answer plain HTTP requests for tunnels with 308 to https://
  --lease TIME       how long a client that went away keeps its subdomain (default 60s)
  --lease-key-file F key that signs leases, created if missing; keep it so that clients
                     reclaim their subdomains after a server restart (default: new each run)
  -h, --help         show this help
  -V, --version      show the version

Limits (TIME: 500ms, 10s, 10m, 1h; N = 0: no limit):
${limitUsage(DEFAULT_SERVER_LIMITS)}

Prints its URL on stdout once listening. SIGINT or SIGTERM stops it gracefully: no new
connections, clients told to reconnect later, relayed connections given 30 s to finish;
a second signal stops it at once.

Examples:
  gotunnel-server                                   # http://localhost:8080, tunnels at *.localhost
  gotunnel-server --domain tunnel.example --port 80 # production, with DNS *.tunnel.example
`;

const FLAGS = {
  port: { type: "string" },
  hostname: { type: "string" },
  domain: { type: "string" },
  "log-level": { type: "string" },
  "log-format": { type: "string" },
  token: { type: "string", multiple: true },
  "tokens-file": { type: "string" },
  lease: { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-port": { type: "string" },
  "redirect-http": { type: "boolean" },
  "lease-key-file": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
  ...Object.fromEntries(LIMIT_FLAGS.map(({ flag }) => [flag, { type: "string" } as const])),
} as const;

const print = (text: string): void => {
  Deno.stdout.writeSync(new TextEncoder().encode(text.endsWith("\n") ? text : text + "\n"));
};
const printError = (text: string): void => {
  Deno.stderr.writeSync(new TextEncoder().encode(`gotunnel-server: ${text}\n`));
};

const LEASE_KEY_BYTES = 32;

/** Reads a lease key file, or creates one with fresh random bytes (readable by the owner only). */
async function readOrCreateKey(path: string): Promise<{ key: Uint8Array; created: boolean }> {
  try {
    const key = await Deno.readFile(path);
    if (key.length < LEASE_KEY_BYTES) {
      throw new Error(`${path} holds fewer than ${LEASE_KEY_BYTES} bytes`);
    }
    return { key, created: false };
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    const key = crypto.getRandomValues(new Uint8Array(LEASE_KEY_BYTES));
    await Deno.writeFile(path, key, { mode: 0o600, createNew: true });
    return { key, created: true };
  }
}

/**
 * Runs the server CLI with `args` until SIGINT or SIGTERM; returns the exit status.
 *
 * @param args Command-line arguments, without the program name.
 * @returns 0 after a clean stop, 1 when the server cannot start, 2 on a bad flag.
 *
 * @example Print the version
 * ```ts
 * import { main } from "@gotunnel/gotunnel/server";
 * await main(["--version"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let options;
  let tlsFiles: { cert: string; key: string } | undefined;
  try {
    const { values, positionals } = parseFlags(args, FLAGS);
    if (values.help) return print(SERVER_USAGE), 0;
    if (values.version) return print(`gotunnel-server ${GOTUNNEL_VERSION}`), 0;
    if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
    const domain = typeof values.domain === "string" ? values.domain : "localhost";
    const host = normalizeHost(domain);
    if (typeof host === "string" || host.ip || domain.includes(":")) {
      throw new UsageError(`Invalid --domain ${JSON.stringify(domain)}: use a DNS name`);
    }
    let limits;
    try {
      limits = readLimitFlags(values);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    const tokens = new Map<string, TokenScope>();
    for (const token of (values.token as string[] | undefined) ?? []) {
      if (token.length < 16) throw new UsageError("Invalid --token: use 16 or more characters");
      tokens.set(token, "*");
    }
    if (typeof values["tokens-file"] === "string") {
      const file = values["tokens-file"];
      let text;
      try {
        text = await Deno.readTextFile(file);
      } catch (e) {
        throw new UsageError(`Cannot read --tokens-file ${file}: ${(e as Error).message}`);
      }
      try {
        for (const [token, scope] of parseTokensFile(text)) tokens.set(token, scope);
      } catch (e) {
        throw new UsageError(`Invalid --tokens-file ${file}: ${(e as Error).message}`);
      }
    }
    let leaseMs = LEASE_MS;
    if (typeof values.lease === "string") {
      const ms = parseDuration(values.lease);
      if (ms === undefined) {
        throw new UsageError(`Invalid --lease ${JSON.stringify(values.lease)}: use e.g. 60s`);
      }
      leaseMs = ms;
    }
    let leaseKey: { key: Uint8Array; created: boolean } | undefined;
    if (typeof values["lease-key-file"] === "string") {
      try {
        leaseKey = await readOrCreateKey(values["lease-key-file"]);
      } catch (e) {
        throw new UsageError(`Cannot use --lease-key-file: ${(e as Error).message}`);
      }
    }
    const certFile = values["tls-cert"];
    const keyFile = values["tls-key"];
    if ((typeof certFile === "string") !== (typeof keyFile === "string")) {
      throw new UsageError("--tls-cert and --tls-key go together");
    }
    let tls: { cert: string; key: string; port: number } | undefined;
    if (typeof certFile === "string" && typeof keyFile === "string") {
      try {
        tls = {
          cert: await Deno.readTextFile(certFile),
          key: await Deno.readTextFile(keyFile),
          port: intFlag("tls-port", values["tls-port"], 8443, 0, 65535),
        };
      } catch (e) {
        if (e instanceof UsageError) throw e;
        throw new UsageError(`Cannot read the TLS certificate or key: ${(e as Error).message}`);
      }
    } else if (values["tls-port"] !== undefined || values["redirect-http"]) {
      throw new UsageError("--tls-port and --redirect-http need --tls-cert and --tls-key");
    }
    tlsFiles = typeof certFile === "string" && typeof keyFile === "string"
      ? { cert: certFile, key: keyFile }
      : undefined;
    options = {
      limits,
      ...(tls ? { tls, redirectHttp: values["redirect-http"] === true } : {}),
      leaseMs,
      // A key that was there already means this may be a restart: hold names for a lease time.
      ...(leaseKey ? { leaseKey: leaseKey.key, leaseGrace: !leaseKey.created } : {}),
      ...(tokens.size > 0 ? { tokens } : {}),
      port: intFlag("port", values.port, 8080, 0, 65535),
      hostname: typeof values.hostname === "string" ? values.hostname : "0.0.0.0",
      domain: host.host,
      logger: createLogger({
        level: logLevelFlag(values["log-level"]),
        format: choiceFlag("log-format", values["log-format"], "text", ["text", "json"] as const),
      }),
    };
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    printError(`${e.message} (see --help)`);
    return 2;
  }
  const stop = new AbortController();
  let server;
  try {
    server = await startServer({ ...options, signal: stop.signal });
  } catch (e) {
    printError(`Cannot listen on ${options.hostname}:${options.port}: ${(e as Error).message}`);
    return 1;
  }
  // The first signal drains (up to 30 s), the second stops at once.
  let signalled = false;
  const onSignal = (): void => {
    if (signalled) return stop.abort();
    signalled = true;
    options.logger.info("Draining; a second signal stops at once", {});
    void server.shutdown();
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  // SIGHUP re-reads the certificate files; a bad pair keeps the old one.
  const onHangup = (): void => {
    if (!tlsFiles) return;
    const files = tlsFiles;
    (async () => {
      await server.reloadTls(
        await Deno.readTextFile(files.cert),
        await Deno.readTextFile(files.key),
      );
    })().catch((e) => options.logger.error("Cannot reload TLS certificate", { error: `${e}` }));
  };
  const hangup = Deno.build.os !== "windows";
  if (hangup) Deno.addSignalListener("SIGHUP", onHangup);
  print(server.url);
  await server.finished;
  for (const s of signals) Deno.removeSignalListener(s, onSignal);
  if (hangup) Deno.removeSignalListener("SIGHUP", onHangup);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
