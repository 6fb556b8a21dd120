// The server's command line, read into server options: flags, files, usage text.
// server.ts does the printing, the signals and the exit code.

import { choiceFlag, intFlag, logLevelFlag, parseFlags, UsageError } from "../cli.ts";
import { DEFAULT_SERVER_LIMITS, LEASE_MS } from "../limits.ts";
import { createLogger } from "../log.ts";
import { normalizeHost } from "../names.ts";
import { GOTUNNEL_VERSION } from "../protocol.ts";
import { parseDuration } from "../units.ts";
import { parseTokensFile, type TokenScope } from "./auth.ts";
import { readOrCreateKey } from "./key_file.ts";
import { LIMIT_FLAGS, limitUsage, readLimitFlags } from "./limit_flags.ts";
import type { ServerOptions } from "./server.ts";

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
  --token TOKEN      require this token (16+ characters) to open tunnels, any subdomain (repeatable)
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

/** The server's flags, as `node:util` `parseArgs` takes them. */
export const SERVER_FLAGS = {
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

/** Where the TLS pair was read from, for SIGHUP. */
export interface TlsFiles {
  /** The `--tls-cert` file. */
  cert: string;
  /** The `--tls-key` file. */
  key: string;
}

/** What the command line asks for: a server, or a help or version text. */
export type ServerCommand =
  | {
    kind: "serve";
    options: ServerOptions & { logger: NonNullable<ServerOptions["logger"]> };
    tlsFiles: TlsFiles | undefined;
  }
  | { kind: "help" }
  | { kind: "version" };

/**
 * Reads a PEM file given as `--flag`: an unreadable file, or one that holds
 * the other half of the pair (swapped flags), is a UsageError naming the flag.
 */
export async function readPemFile(flag: "tls-cert" | "tls-key", path: string): Promise<string> {
  let text;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UsageError(`Cannot read --${flag} ${path}: ${(e as Error).message}`);
  }
  const hasCert = text.includes("-----BEGIN CERTIFICATE-----");
  const hasKey = /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text);
  if (flag === "tls-cert" && !hasCert) {
    throw new UsageError(
      `--tls-cert ${path} holds no PEM certificate` +
        (hasKey ? " but a private key: are --tls-cert and --tls-key swapped?" : ""),
    );
  }
  if (flag === "tls-key" && !hasKey) {
    throw new UsageError(
      `--tls-key ${path} holds no PEM private key` +
        (hasCert ? " but a certificate: are --tls-cert and --tls-key swapped?" : ""),
    );
  }
  return text;
}

/** Reads the tokens from `--token` and `--tokens-file`. */
async function readTokens(
  flagTokens: string[],
  file: string | undefined,
): Promise<Map<string, TokenScope>> {
  const tokens = new Map<string, TokenScope>();
  for (const token of flagTokens) {
    if (token.length < 16) throw new UsageError("Invalid --token: use 16 or more characters");
    tokens.set(token, "*");
  }
  if (file === undefined) return tokens;
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
  return tokens;
}

/** Builds the server's options from the command line; throws UsageError on a bad one. */
export async function readServerCommand(args: string[]): Promise<ServerCommand> {
  const { values, positionals } = parseFlags(args, SERVER_FLAGS);
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };
  if (positionals.length > 0) throw new UsageError(`Unexpected argument "${positionals[0]}"`);
  const string = (name: string): string | undefined =>
    typeof values[name] === "string" ? values[name] as string : undefined;
  const domain = string("domain") ?? "localhost";
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
  const tokens = await readTokens(
    (values.token as string[] | undefined) ?? [],
    string("tokens-file"),
  );
  let leaseMs = LEASE_MS;
  const lease = string("lease");
  if (lease !== undefined) {
    const ms = parseDuration(lease);
    if (ms === undefined) {
      throw new UsageError(`Invalid --lease ${JSON.stringify(lease)}: use e.g. 60s`);
    }
    leaseMs = ms;
  }
  let leaseKey: { key: Uint8Array; created: boolean } | undefined;
  const keyFile = string("lease-key-file");
  if (keyFile !== undefined) {
    try {
      leaseKey = await readOrCreateKey(keyFile);
    } catch (e) {
      throw new UsageError(`Cannot use --lease-key-file: ${(e as Error).message}`);
    }
  }
  const certFile = string("tls-cert");
  const keyPemFile = string("tls-key");
  if ((certFile === undefined) !== (keyPemFile === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  let tls: { cert: string; key: string; port: number } | undefined;
  if (certFile !== undefined && keyPemFile !== undefined) {
    tls = {
      cert: await readPemFile("tls-cert", certFile),
      key: await readPemFile("tls-key", keyPemFile),
      port: intFlag("tls-port", values["tls-port"], 8443, 0, 65535),
    };
  } else if (values["tls-port"] !== undefined || values["redirect-http"]) {
    throw new UsageError("--tls-port and --redirect-http need --tls-cert and --tls-key");
  }
  return {
    kind: "serve",
    tlsFiles: certFile !== undefined && keyPemFile !== undefined
      ? { cert: certFile, key: keyPemFile }
      : undefined,
    options: {
      limits,
      ...(tls ? { tls, redirectHttp: values["redirect-http"] === true } : {}),
      leaseMs,
      // A key that was there already means this may be a restart: hold names for a lease time.
      ...(leaseKey ? { leaseKey: leaseKey.key, leaseGrace: !leaseKey.created } : {}),
      ...(tokens.size > 0 ? { tokens } : {}),
      port: intFlag("port", values.port, 8080, 0, 65535),
      hostname: string("hostname") ?? "0.0.0.0",
      domain: host.host,
      logger: createLogger({
        level: logLevelFlag(values["log-level"]),
        format: choiceFlag("log-format", values["log-format"], "text", ["text", "json"] as const),
      }),
    },
  };
}
