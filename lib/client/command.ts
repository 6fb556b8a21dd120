// The client's command line read into the options of its tunnels: one tunnel from
// a target and flags, or several from a config file (`--config FILE [NAME...]`).
// client.ts does the printing, the signals and the exit code.

import { type FlagValue, intFlag, logLevelFlag, parseFlags, UsageError } from "../cli.ts";
import {
  DEFAULT_CLIENT_MAX_STREAMS,
  DEFAULT_POOL_SIZE,
  MAX_CLIENT_PROXIES,
  MAX_IDLE_PROXIES,
} from "../limits.ts";
import { createLogger } from "../log.ts";
import { checkSubdomain, hostWithPort, normalizeHost } from "../names.ts";
import { ConfigError } from "./config.ts";
import { readConfigFile } from "./config_file.ts";
import { parseServerUrl } from "./dial.ts";
import { splitServerList } from "./server_list.ts";
import { CLIENT_FLAGS, FOREIGN_FLAGS, HOST_NAME, inspectFlags, parseTarget } from "./options.ts";
import type { TunnelsOptions, TunnelSpec } from "./tunnel_types.ts";

/** What the command line asks for: tunnels, or a help or version text. */
export type ClientCommand =
  | {
    kind: "tunnels";
    options: TunnelsOptions & { logger: NonNullable<TunnelsOptions["logger"]> };
    quiet: boolean;
    /** Where each tunnel's visitors go, by its name, for the `Forwarding` lines. */
    locals: Map<string, string>;
  }
  | { kind: "help" }
  | { kind: "version" };

/** Flags that describe one tunnel: with --config, the file says them. */
const TUNNEL_FLAGS = [
  "subdomain",
  "local-host",
  "local-https",
  "allow-invalid-cert",
  "raw",
  "isolate-cookies",
  "tcp",
  "remote-port",
  "proxy-protocol",
  "custom-domain",
] as const;

const string = (v: FlagValue): string | undefined => typeof v === "string" ? v : undefined;

/** Where a tunnel's visitors go, as the `Forwarding` line shows it. */
export function describeLocal(spec: TunnelSpec): string {
  const where = hostWithPort(spec.localHost ?? "localhost", spec.port, -1);
  if (spec.tcp) return where;
  return `${spec.localHttps ? "https" : "http"}://${where}`;
}

/**
 * Builds the tunnels' options from the command line (and `env`, for
 * GOTUNNEL_SERVER, GOTUNNEL_TOKEN, GOTUNNEL_INSPECT and a config file's
 * `${NAME}`s); throws UsageError on a bad flag or config file.
 */
export async function readClientCommand(
  args: string[],
  env: (name: string) => string | undefined,
): Promise<ClientCommand> {
  const { values, positionals } = parseFlags(args, CLIENT_FLAGS, FOREIGN_FLAGS);
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };
  const configFile = string(values.config);
  let specs: TunnelSpec[];
  let fromFile: { server?: string[]; token?: string; ca?: string; pool?: number } = {};
  if (configFile !== undefined) {
    const given = TUNNEL_FLAGS.find((flag) => values[flag] !== undefined);
    if (given) {
      throw new UsageError(`--${given} describes one tunnel: with --config, say it in the file`);
    }
    let config;
    try {
      config = await readConfigFile(configFile, env);
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message);
      throw e;
    }
    const names = config.tunnels.map((t) => t.name);
    const unknown = positionals.find((name) => !names.includes(name));
    if (unknown !== undefined) {
      throw new UsageError(
        `No tunnel "${unknown}" in ${configFile} (it has ${names.join(", ")})`,
      );
    }
    const chosen = positionals.length === 0
      ? config.tunnels
      : config.tunnels.filter((t) => positionals.includes(t.name));
    specs = chosen.map(({ localHost, ...t }) => ({
      ...t,
      ...(localHost === undefined ? {} : {
        localHost,
        // An explicit host is also the Host the app sees (dev servers check it).
        ...(t.tcp || t.raw ? {} : { hostHeader: hostWithPort(localHost, t.port, -1) }),
      }),
    }));
    fromFile = config;
  } else {
    specs = [await oneTunnel(values, positionals)];
  }
  const servers = readServers(values.server, fromFile.server, env);
  const token = string(values.token) ?? fromFile.token ?? env("GOTUNNEL_TOKEN");
  let ca: string[] | undefined;
  const caFile = string(values.ca) ?? fromFile.ca;
  if (caFile !== undefined) {
    try {
      ca = [await Deno.readTextFile(caFile)];
    } catch (e) {
      throw new UsageError(`Cannot read --ca ${caFile}: ${(e as Error).message}`);
    }
  }
  const http = specs.some((s) => !s.raw && !s.tcp);
  const pool = values.pool !== undefined
    ? intFlag("pool", values.pool, DEFAULT_POOL_SIZE, 1, MAX_IDLE_PROXIES)
    : fromFile.pool;
  return {
    kind: "tunnels",
    quiet: values.quiet === true || !http,
    locals: new Map(specs.map((s, i) => [s.name ?? `tunnel${i + 1}`, describeLocal(s)])),
    options: {
      tunnels: specs,
      server: servers.length === 1 ? servers[0]! : servers,
      ...(token === undefined ? {} : { token }),
      ...(ca === undefined ? {} : { ca }),
      wait: values.wait === true,
      replace: values.replace === true,
      inspect: inspectFlags(values, !http, env),
      ...(pool === undefined ? {} : { pool: Math.min(pool, MAX_IDLE_PROXIES) }),
      maxStreams: intFlag(
        "max-streams",
        values["max-streams"],
        DEFAULT_CLIENT_MAX_STREAMS,
        0,
        MAX_CLIENT_PROXIES,
      ),
      logger: createLogger({ level: logLevelFlag(values["log-level"]) }),
    },
  };
}

/**
 * The servers to try, in order: every --server (each may hold URLs separated
 * by commas), else the config file's (checked there), else $GOTUNNEL_SERVER (a
 * comma list too), else http://localhost:8080. A bad URL is named.
 */
function readServers(
  flag: FlagValue,
  fromFile: string[] | undefined,
  env: (name: string) => string | undefined,
): string[] {
  const fromEnv = env("GOTUNNEL_SERVER");
  if (flag === undefined && fromFile) return fromFile;
  const [source, texts] = flag !== undefined
    ? ["--server", Array.isArray(flag) ? flag : [String(flag)]]
    : ["$GOTUNNEL_SERVER", [fromEnv ?? "http://localhost:8080"]];
  try {
    const urls = texts.flatMap(splitServerList);
    for (const url of urls) parseServerUrl(url);
    return urls;
  } catch (e) {
    throw new UsageError(`Invalid ${source}: ${(e as Error).message}`);
  }
}

/** The one tunnel of a command line without --config: its target and flags. */
async function oneTunnel(
  values: Record<string, FlagValue>,
  positionals: string[],
): Promise<TunnelSpec> {
  await Promise.resolve();
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? "Missing <target> (e.g. 3000)" : "Too many arguments",
    );
  }
  const target = parseTarget(positionals[0]!);
  const tcp = values.tcp === true;
  const raw = values.raw === true;
  const localHttps = values["local-https"] === true || target.https;
  if (values["allow-invalid-cert"] && !localHttps) {
    throw new UsageError("--allow-invalid-cert needs --local-https (or an https:// target)");
  }
  const subdomain = string(values.subdomain);
  if (subdomain !== undefined) {
    const checked = checkSubdomain(subdomain);
    if (!checked.ok) throw new UsageError(checked.reason);
  }
  const customDomain = string(values["custom-domain"]);
  if (customDomain !== undefined) {
    const host = normalizeHost(customDomain);
    if (typeof host === "string" || host.ip || !host.host.includes(".")) {
      throw new UsageError(
        `Invalid --custom-domain ${JSON.stringify(customDomain)}: use a hostname such as ` +
          "app.example.com",
      );
    }
    if (subdomain !== undefined) {
      throw new UsageError("--subdomain and --custom-domain exclude each other");
    }
  }
  const remote = values["remote-port"];
  if (remote !== undefined && !tcp) throw new UsageError("--remote-port needs --tcp");
  if (tcp) {
    for (const flag of ["subdomain", "custom-domain", "local-https", "raw", "isolate-cookies"]) {
      if (values[flag] !== undefined || (flag === "local-https" && target.https)) {
        throw new UsageError(`--tcp relays bytes to a port: it takes no --${flag}`);
      }
    }
  }
  if (values["proxy-protocol"] && !tcp && !raw) {
    throw new UsageError("--proxy-protocol needs --tcp or --raw: HTTP visitors share connections");
  }
  const flagHost = string(values["local-host"]);
  if (flagHost !== undefined && !HOST_NAME.test(flagHost)) {
    throw new UsageError(`Invalid --local-host: ${JSON.stringify(flagHost)}`);
  }
  if (flagHost !== undefined && target.hostGiven && flagHost !== target.host) {
    throw new UsageError(`--local-host ${flagHost} contradicts the target ${positionals[0]}`);
  }
  const localHost = flagHost ?? target.host;
  const explicitHost = flagHost !== undefined || target.hostGiven;
  if (raw && values["isolate-cookies"]) {
    throw new UsageError("--isolate-cookies needs the HTTP-aware path: drop --raw");
  }
  return {
    port: target.port,
    ...(subdomain === undefined ? {} : { subdomain }),
    ...(customDomain === undefined ? {} : { customDomain }),
    localHost,
    // An explicit host is also the Host the app sees (dev servers check it).
    ...(explicitHost && !tcp ? { hostHeader: hostWithPort(localHost, target.port, -1) } : {}),
    raw,
    isolateCookies: values["isolate-cookies"] === true,
    localHttps,
    allowInvalidCert: values["allow-invalid-cert"] === true,
    ...(tcp ? { tcp } : {}),
    ...(remote === undefined ? {} : { remotePort: intFlag("remote-port", remote, 0, 1, 65535) }),
    ...(values["proxy-protocol"] ? { proxyProtocol: true } : {}),
  };
}
