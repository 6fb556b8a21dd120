// The client's command line, read into tunnel options: flags, the local target,
// usage text. client.ts does the printing, the signals and the exit code.

import { type FlagValue, intFlag, logLevelFlag, parseFlags, UsageError } from "../cli.ts";
import type { TunnelError } from "../errors.ts";
import {
  DEFAULT_CLIENT_MAX_STREAMS,
  DEFAULT_POOL_SIZE,
  INSPECTOR_LIMIT,
  MAX_CLIENT_PROXIES,
  MAX_IDLE_PROXIES,
} from "../limits.ts";
import { createLogger } from "../log.ts";
import { checkSubdomain, hostWithPort, HTTP_PORT, HTTPS_PORT } from "../names.ts";
import { GOTUNNEL_VERSION } from "../protocol.ts";
import { parseServerUrl } from "./dial.ts";
import type { InspectOptions } from "./inspector/inspector.ts";
import type { TunnelOptions } from "./tunnel.ts";

/** Most exchanges `--inspect-limit` lets the inspector keep. */
const MAX_INSPECTOR_LIMIT = 100_000;

/** The client's `--help` text. */
export const CLIENT_USAGE =
  `Gotunnel client ${GOTUNNEL_VERSION}: exposes a local app at a public URL

Usage: gotunnel-client <target> [options]

<target> is the local app: 3000, localhost:3000, http://127.0.0.1:3000, or
https://localhost:8443 for an app that speaks TLS itself. Start the app first.

Options:
  --server URL         Gotunnel server, http:// or https:// (default $GOTUNNEL_SERVER, else
                       http://localhost:8080)
  --subdomain NAME     subdomain to ask for: a-z, 0-9, "-", 1-63 chars (default: a random one)
  --token TOKEN        token for a server that requires one (default $GOTUNNEL_TOKEN)
  --ca FILE            trust this CA (PEM) for an https:// server (and a --local-https app)
  --wait               if the subdomain is held for its previous client, wait until it is free
  --replace            take the subdomain over from this machine's client that holds it now
  --local-host HOST    host of the local app (default localhost); when given (here or in
                       <target>), also the Host header the app sees (the public one goes in
                       X-Forwarded-Host)
  --local-https        the local app speaks TLS (its certificate is checked against HOST)
  --allow-invalid-cert with --local-https: accept a self-signed or otherwise invalid certificate
  --raw                relay bytes only: no request parsing, no X-Forwarded-*, no request log
  --isolate-cookies    drop Set-Cookie Domain attributes naming the server's domain (or above),
                       so other tunnels on the server never get this app's cookies
  --quiet              no request log (one stderr line per request: GET /path → 200  12.3 ms  1.2 KB)
  --inspect ADDR       the inspector's address: PORT, HOST:PORT or [V6]:PORT (default
                       $GOTUNNEL_INSPECT, else 127.0.0.1:4040, or the next free port up to 4050);
                       an address other than loopback is warned about
  --no-inspect         no inspector
  --inspect-limit N    exchanges the inspector keeps, 1-${MAX_INSPECTOR_LIMIT} (default ${INSPECTOR_LIMIT})
  --pool N             idle connections kept ready for visitors, 1-${MAX_IDLE_PROXIES} (default ${DEFAULT_POOL_SIZE})
  --max-streams N      visitors served at once, each a connection to the app; more get 503
                       (default ${DEFAULT_CLIENT_MAX_STREAMS}; 0: no limit)
  --log-level LEVEL    debug, info, warn, error or silent (default info); the request log is
                       separate: --quiet turns it off, --log-level silent does not
  -h, --help           show this help
  -V, --version        show the version

Prints the public URL alone on a stdout line each time the tunnel is up (again after a
reconnect); everything else goes to stderr: a "Forwarding URL → app" line, the inspector's
URL ("Inspector http://127.0.0.1:4040": requests live, replay, HAR export), the request log
(coloured on a terminal unless NO_COLOR is set) and the log. Exits 1 if the server refuses
the tunnel, 2 on a bad flag.
Leases that let a restarted client reclaim its subdomain are kept in
$XDG_CACHE_HOME/gotunnel/leases.json (else ~/.cache/gotunnel/leases.json).

Examples:
  gotunnel-client 3000 --subdomain demo                 # http://demo.localhost:8080
  gotunnel-client 3000 --server https://tunnel.example  # a self-hosted server
  gotunnel-client localhost:5173                        # Vite checks Host: it sees localhost:5173
  gotunnel-client https://localhost:8443 --allow-invalid-cert  # an app with a self-signed certificate
`;

/** The client's flags, as `node:util` `parseArgs` takes them. */
export const CLIENT_FLAGS = {
  server: { type: "string" },
  subdomain: { type: "string" },
  token: { type: "string" },
  ca: { type: "string" },
  wait: { type: "boolean" },
  replace: { type: "boolean" },
  raw: { type: "boolean" },
  "isolate-cookies": { type: "boolean" },
  quiet: { type: "boolean" },
  inspect: { type: "string" },
  "no-inspect": { type: "boolean" },
  "inspect-limit": { type: "string" },
  "local-https": { type: "boolean" },
  "allow-invalid-cert": { type: "boolean" },
  "local-host": { type: "string" },
  pool: { type: "string" },
  "max-streams": { type: "string" },
  "log-level": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

/** Flags people bring from other tunnels, and what to do instead. */
const FOREIGN_FLAGS = {
  port: "the local port is positional: gotunnel-client 3000",
  host: "use --local-host HOST, or give it in the target: gotunnel-client HOST:3000",
} as const;

/** The local app, from a positional target. */
export interface LocalTarget {
  /** Host name or IP of the app (IPv6 without brackets). */
  host: string;
  /** Its port. */
  port: number;
  /** Whether the target named a host (then it is also the Host header the app sees). */
  hostGiven: boolean;
  /** Whether the app speaks TLS (`https://`). */
  https: boolean;
}

const HOST_NAME = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+)$/;

/** Reads `3000`, `host:3000`, `[::1]:3000`, `http://host[:port]` or `https://host[:port]`. */
export function parseTarget(text: string): LocalTarget {
  const bad = (why: string): never => {
    throw new UsageError(`Invalid target ${JSON.stringify(text)}: ${why}`);
  };
  if (/^\d+$/.test(text)) {
    return {
      host: "localhost",
      port: intFlag("port", text, 0, 1, 65535),
      hostGiven: false,
      https: false,
    };
  }
  if (/^https?:\/\//i.test(text)) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return bad("not a URL");
    }
    if (url.pathname !== "/" || url.search || url.hash || url.username) {
      bad("use only scheme, host and port");
    }
    const https = url.protocol === "https:";
    const port = url.port === "" ? (https ? HTTPS_PORT : HTTP_PORT) : Number(url.port);
    return { host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port, hostGiven: true, https };
  }
  const match = /^(.+):(\d+)$/.exec(text);
  if (!match || !HOST_NAME.test(match[1]!)) return bad("use a port, HOST:PORT or a URL");
  const port = Number(match[2]);
  if (port < 1 || port > 65535) bad("the port must be 1-65535");
  return { host: match[1]!.replace(/^\[(.*)\]$/, "$1"), port, hostGiven: true, https: false };
}

/** Reads an inspector address: `PORT`, `HOST`, `HOST:PORT` or `[V6]:PORT`. */
export function parseInspectAddress(text: string, flag = "--inspect"): InspectOptions {
  const bad = (): never => {
    throw new UsageError(
      `Invalid ${flag} ${JSON.stringify(text)}: use PORT, HOST:PORT or [V6]:PORT`,
    );
  };
  const port = (digits: string | undefined): { port?: number } => {
    if (digits === undefined) return {};
    const n = Number(digits);
    if (!/^\d{1,5}$/.test(digits) || n > 65535) bad();
    return { port: n };
  };
  if (/^\d+$/.test(text)) return port(text);
  const match = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(text) ??
    /^([A-Za-z0-9.-]+)(?::(\d+))?$/.exec(text);
  if (!match) return bad();
  return { hostname: match[1]!, ...port(match[2]) };
}

/** The inspector the flags ask for (false: none). */
function inspectFlags(
  values: Record<string, FlagValue>,
  raw: boolean,
  env: (name: string) => string | undefined,
): false | InspectOptions {
  const flag = typeof values.inspect === "string" ? values.inspect : undefined;
  if (flag !== undefined && values["no-inspect"]) {
    throw new UsageError("--inspect and --no-inspect contradict each other");
  }
  if (flag !== undefined && raw) {
    throw new UsageError("--inspect needs the HTTP-aware path: drop --raw");
  }
  const fromEnv = env("GOTUNNEL_INSPECT");
  if (values["no-inspect"] || raw || (flag === undefined && fromEnv === "off")) return false;
  const address = flag !== undefined
    ? parseInspectAddress(flag)
    : fromEnv !== undefined
    ? parseInspectAddress(fromEnv, "$GOTUNNEL_INSPECT")
    : {};
  const limit = intFlag(
    "inspect-limit",
    values["inspect-limit"],
    INSPECTOR_LIMIT,
    1,
    MAX_INSPECTOR_LIMIT,
  );
  return { ...address, limit };
}

/** What the command line asks for: a tunnel, or a help or version text. */
export type ClientCommand =
  | { kind: "tunnel"; options: TunnelOptions; quiet: boolean }
  | { kind: "help" }
  | { kind: "version" };

/** Builds the tunnel's options from the command line; throws UsageError on a bad one. */
export async function readClientCommand(
  args: string[],
  env: (name: string) => string | undefined,
): Promise<ClientCommand> {
  const { values, positionals } = parseFlags(args, CLIENT_FLAGS, FOREIGN_FLAGS);
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? "Missing <target> (e.g. 3000)" : "Too many arguments",
    );
  }
  const target = parseTarget(positionals[0]!);
  const string = (v: FlagValue): string | undefined => typeof v === "string" ? v : undefined;
  const localHttps = values["local-https"] === true || target.https;
  if (values["allow-invalid-cert"] && !localHttps) {
    throw new UsageError("--allow-invalid-cert needs --local-https (or an https:// target)");
  }
  const server = string(values.server) ?? env("GOTUNNEL_SERVER") ?? "http://localhost:8080";
  try {
    parseServerUrl(server);
  } catch (e) {
    throw new UsageError(`Invalid --server: ${(e as Error).message}`);
  }
  const subdomain = string(values.subdomain);
  if (subdomain !== undefined) {
    const checked = checkSubdomain(subdomain);
    if (!checked.ok) throw new UsageError(checked.reason);
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
  const token = string(values.token) ?? env("GOTUNNEL_TOKEN");
  let ca: string[] | undefined;
  const caFile = string(values.ca);
  if (caFile !== undefined) {
    try {
      ca = [await Deno.readTextFile(caFile)];
    } catch (e) {
      throw new UsageError(`Cannot read --ca ${caFile}: ${(e as Error).message}`);
    }
  }
  const raw = values.raw === true;
  if (raw && values["isolate-cookies"]) {
    throw new UsageError("--isolate-cookies needs the HTTP-aware path: drop --raw");
  }
  return {
    kind: "tunnel",
    quiet: values.quiet === true || raw,
    options: {
      port: target.port,
      server,
      ...(subdomain === undefined ? {} : { subdomain }),
      ...(token === undefined ? {} : { token }),
      ...(ca === undefined ? {} : { ca }),
      wait: values.wait === true,
      replace: values.replace === true,
      localHost,
      // An explicit host is also the Host the app sees (dev servers check it).
      ...(explicitHost ? { hostHeader: hostWithPort(localHost, target.port, -1) } : {}),
      raw,
      isolateCookies: values["isolate-cookies"] === true,
      inspect: inspectFlags(values, raw, env),
      localHttps,
      allowInvalidCert: values["allow-invalid-cert"] === true,
      pool: intFlag("pool", values.pool, DEFAULT_POOL_SIZE, 1, MAX_IDLE_PROXIES),
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

/** A hint the CLI adds to a refusal, naming the flag that helps. */
export function refusalHint(error: TunnelError): string {
  if (error.code === "subdomain-reserved") return " (--wait waits until it is free)";
  if (error.code === "inspect") return " (--inspect another address, or --no-inspect)";
  if (error.code === "version") {
    return " (this client and the server run different Gotunnel versions: upgrade the older one)";
  }
  return "";
}
