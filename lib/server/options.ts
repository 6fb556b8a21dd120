// The server's command line, read into server options: flags, files, usage text.
// server.ts does the printing, the signals and the exit code.

import { choiceFlag, intFlag, logLevelFlag, parseFlags, UsageError } from "../cli.ts";
import {
  checkLimits,
  DEFAULT_SERVER_LIMITS,
  LEASE_MS,
  LEASE_RANGE_MS,
  LIMIT_RANGES,
  type ServerLimits,
} from "../limits.ts";
import { createLogger } from "../log.ts";
import { normalizeHost } from "../names.ts";
import { GOTUNNEL_VERSION } from "../protocol.ts";
import { parseReservedNames, parseTokensFile, type TokenScope } from "./auth.ts";
import { readOrCreateKey } from "./key_file.ts";
import { formatDuration } from "../units.ts";
import { durationFlag, LIMIT_FLAGS, limitUsage, readLimitFlags } from "./limit_flags.ts";
import { ADMIN_FLAGS, ADMIN_USAGE, readAdminFlags } from "./admin_flags.ts";
import type { ServerOptions } from "./server.ts";
import { ACME_FLAGS, ACME_USAGE, readAcmeFlags } from "./acme/flags.ts";
import { parsePortRanges } from "./tcp_ports.ts";
import { CLUSTER_FLAGS, CLUSTER_USAGE, readClusterFlags } from "./cluster/flags.ts";
import { parseCidrList } from "../ip.ts";

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
  --tokens-file FILE require a token from FILE: lines "TOKEN [SCOPE,SCOPE...|*]", # comments;
                     a scope is a subdomain, tcp:PORT or tcp:A-B, host:NAME or host:*.DOMAIN
                     (* is any subdomain and port); an empty file lets no one in; re-read on SIGHUP
  --reserved-names F more names (one per line) that only a token scoped to them may claim,
                     besides www, api, admin, mail, localhost and xn--*; re-read on SIGHUP
  --revoke-at-once   a token removed on SIGHUP cuts its tunnels' connections at once (default:
                     its tunnels close once their relayed connections end)
  --tls-cert FILE    serve HTTPS with this PEM certificate (for *.<domain> and <domain>)
  --tls-key FILE     ...and this PEM key; both re-read on SIGHUP
  --tls-port N       HTTPS port (default 8443; 443 in production)
  --redirect-http    answer plain HTTP requests for tunnels with 308 to https://
  --tcp-ports RANGES TCP tunnels: ports clients may have, e.g. 20000-20099 or 2222,20000-20010
                     (off by default); each is listened on while its tunnel lives
  --default-tunnel N connections whose Host or SNI names no tunnel go to the tunnel N (a
                     subdomain or custom hostname) instead of a 404: one app, no wildcard DNS
  --default-tunnel-apex  with --default-tunnel: the domain itself (and IP addresses) too
  --trusted-proxies CIDR,...  load balancers in front (e.g. 10.0.0.0/8,fd00::/8; repeatable):
                     their connections must start with a PROXY v1/v2 header, whose visitor
                     address is then used (limits, logs, X-Forwarded-For); off by default
  --lease TIME       how long a client that went away keeps its subdomain (default 60s, 5s-24h)
  --lease-key-file F key that signs leases, created if missing; keep it so that clients
                     reclaim their subdomains after a server restart (default: new each run)
${ADMIN_USAGE}
  -h, --help         show this help
  -V, --version      show the version

${ACME_USAGE}
${CLUSTER_USAGE}
Limits (TIME: 500ms, 10s, 10m, 1h; N = 0: no limit):
${limitUsage(DEFAULT_SERVER_LIMITS)}

Prints its URL on stdout once listening. SIGINT or SIGTERM stops it gracefully: no new
connections, clients told to reconnect later, relayed connections given 30 s to finish;
a second signal stops it at once.

Examples:
  gotunnel-server                                   # http://localhost:8080, tunnels at *.localhost
  gotunnel-server --domain tunnel.example --port 80 # production, with DNS *.tunnel.example
  gotunnel-server --admin 127.0.0.1:9090            # and a dashboard at http://127.0.0.1:9090/
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
  "reserved-names": { type: "string" },
  "revoke-at-once": { type: "boolean" },
  lease: { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-port": { type: "string" },
  "redirect-http": { type: "boolean" },
  "lease-key-file": { type: "string" },
  "tcp-ports": { type: "string" },
  "default-tunnel": { type: "string" },
  "default-tunnel-apex": { type: "boolean" },
  "trusted-proxies": { type: "string", multiple: true },
  ...ADMIN_FLAGS,
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
  ...ACME_FLAGS,
  ...CLUSTER_FLAGS,
  ...Object.fromEntries(LIMIT_FLAGS.map(({ flag }) => [flag, { type: "string" } as const])),
} as const;

/** The files SIGHUP re-reads. */
export interface ReloadFiles {
  /** The `--tls-cert` and `--tls-key` files. */
  tls: { cert: string; key: string } | undefined;
  /** The `--tokens-file`, and the `--token` values that come with it. */
  tokens: { file: string; flags: string[] } | undefined;
  /** The `--reserved-names` file. */
  reservedNames: string | undefined;
}

/** What the command line asks for: a server, or a help or version text. */
export type ServerCommand =
  | {
    kind: "serve";
    options: ServerOptions & { logger: NonNullable<ServerOptions["logger"]> };
    files: ReloadFiles;
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

/**
 * Reads the tokens from `--token` and `--tokens-file`: undefined when neither
 * is given (an open server); a map, maybe empty, when the file is.
 */
export async function readTokens(
  flagTokens: string[],
  file: string | undefined,
): Promise<Map<string, TokenScope> | undefined> {
  const tokens = new Map<string, TokenScope>();
  for (const token of flagTokens) {
    if (token.length < 16) throw new UsageError("Invalid --token: use 16 or more characters");
    tokens.set(token, "*");
  }
  if (file === undefined) return tokens.size > 0 ? tokens : undefined;
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

/** Reads `--reserved-names`. */
export async function readReservedNames(file: string | undefined): Promise<string[]> {
  if (file === undefined) return [];
  let text;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new UsageError(`Cannot read --reserved-names ${file}: ${(e as Error).message}`);
  }
  try {
    return parseReservedNames(text);
  } catch (e) {
    throw new UsageError(`Invalid --reserved-names ${file}: ${(e as Error).message}`);
  }
}

/** The flags' limits over the defaults, checked together (the heartbeat against the peer timeout). */
function checkFlagLimits(flags: Partial<ServerLimits>): void {
  const limits = { ...DEFAULT_SERVER_LIMITS, ...flags };
  if (limits.heartbeatIntervalMs * 2 > limits.peerTimeoutMs) {
    throw new RangeError(
      `Invalid --peer-timeout ${formatDuration(limits.peerTimeoutMs)}: use at least twice ` +
        `--heartbeat (${formatDuration(limits.heartbeatIntervalMs)})`,
    );
  }
  const why = checkLimits(limits, LIMIT_RANGES);
  if (why) throw new RangeError(`Invalid limits: ${why}`);
}

/**
 * Builds the server's options from the command line (and `env`, for
 * `GOTUNNEL_ADMIN_TOKEN`); throws UsageError on a bad one.
 */
export async function readServerCommand(
  args: string[],
  env: (name: string) => string | undefined = () => undefined,
): Promise<ServerCommand> {
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
  const flagTokens = (values.token as string[] | undefined) ?? [];
  const tokensFile = string("tokens-file");
  const tokens = await readTokens(flagTokens, tokensFile);
  const reservedFile = string("reserved-names");
  const reservedNames = await readReservedNames(reservedFile);
  const lease = string("lease");
  let leaseMs = LEASE_MS;
  try {
    if (lease !== undefined) leaseMs = durationFlag("lease", lease, LEASE_RANGE_MS);
    checkFlagLimits(limits);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const admin = readAdminFlags(values, env);
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
  }
  const tcpFlag = string("tcp-ports");
  const tcpPorts = tcpFlag === undefined ? undefined : parsePortRanges(tcpFlag);
  if (typeof tcpPorts === "string") throw new UsageError(`Invalid --tcp-ports: ${tcpPorts}`);
  const defaultTunnel = string("default-tunnel")?.toLowerCase();
  if (defaultTunnel !== undefined) {
    const host = normalizeHost(defaultTunnel);
    if (typeof host === "string" || host.ip || defaultTunnel.includes(":")) {
      throw new UsageError(
        `Invalid --default-tunnel ${JSON.stringify(defaultTunnel)}: use a subdomain or hostname`,
      );
    }
  }
  const trusted = (values["trusted-proxies"] as string[] | undefined) ?? [];
  const trustedRanges = parseCidrList(trusted);
  if (trusted.length > 0 && typeof trustedRanges === "string") {
    throw new UsageError(`Invalid --trusted-proxies: ${trustedRanges}`);
  }
  if (values["default-tunnel-apex"] && defaultTunnel === undefined) {
    throw new UsageError("--default-tunnel-apex needs --default-tunnel");
  }
  const cluster = await readClusterFlags(values);
  const acme = await readAcmeFlags(values, values["tls-port"]);
  if (acme && tls) throw new UsageError("--acme-email and --tls-cert exclude each other");
  if (!tls && !acme && (values["tls-port"] !== undefined || values["redirect-http"])) {
    throw new UsageError(
      "--tls-port and --redirect-http need --tls-cert and --tls-key, or --acme-email",
    );
  }
  const logger = createLogger({
    level: logLevelFlag(values["log-level"]),
    format: choiceFlag("log-format", values["log-format"], "text", ["text", "json"] as const),
  });
  if (cluster?.keyCreated) {
    logger.warn("Created a new cluster key: copy this file to every other node", {
      file: string("cluster-key-file"),
    });
  }
  return {
    kind: "serve",
    files: {
      tls: certFile !== undefined && keyPemFile !== undefined
        ? { cert: certFile, key: keyPemFile }
        : undefined,
      tokens: tokensFile === undefined ? undefined : { file: tokensFile, flags: flagTokens },
      reservedNames: reservedFile,
    },
    options: {
      limits,
      ...(tls ? { tls, redirectHttp: values["redirect-http"] === true } : {}),
      ...(acme ? { acme, redirectHttp: values["redirect-http"] === true } : {}),
      leaseMs,
      // A key that was there already means this may be a restart: hold names for a lease time.
      ...(leaseKey ? { leaseKey: leaseKey.key, leaseGrace: !leaseKey.created } : {}),
      ...(tokens ? { tokens } : {}),
      ...(reservedNames.length > 0 ? { reservedNames } : {}),
      revokeAtOnce: values["revoke-at-once"] === true,
      ...(tcpPorts ? { tcpPorts } : {}),
      ...(defaultTunnel === undefined ? {} : {
        defaultTunnel,
        defaultTunnelApex: values["default-tunnel-apex"] === true,
      }),
      ...(admin ? { admin } : {}),
      ...(trusted.length > 0 ? { trustedProxies: trusted } : {}),
      port: intFlag("port", values.port, 8080, 0, 65535),
      hostname: string("hostname") ?? "0.0.0.0",
      domain: host.host,
      ...(cluster ? { cluster: cluster.options } : {}),
      logger,
    },
  };
}
