// The client's flags: the table, the usage text, the local target and the inspector's
// address; lib/client/command.ts reads a command line with them.

import { type FlagValue, intFlag, UsageError } from "../cli.ts";
import type { TunnelError } from "../errors.ts";
import {
  DEFAULT_CLIENT_MAX_STREAMS,
  DEFAULT_POOL_SIZE,
  INSPECTOR_LIMIT,
  MAX_IDLE_PROXIES,
} from "../limits.ts";
import { HTTP_PORT, HTTPS_PORT } from "../names.ts";
import { GOTUNNEL_VERSION } from "../protocol.ts";
import type { InspectOptions } from "./inspector/inspector.ts";

/** Most exchanges `--inspect-limit` lets the inspector keep. */
const MAX_INSPECTOR_LIMIT = 100_000;

/** The client's `--help` text. */
export const CLIENT_USAGE =
  `Gotunnel client ${GOTUNNEL_VERSION}: exposes a local app at a public URL

Usage: gotunnel-client <target> [options]
       gotunnel-client --config FILE [NAME...] [options]

<target> is the local app: 3000, localhost:3000, http://127.0.0.1:3000, or
https://localhost:8443 for an app that speaks TLS itself. Start the app first.
With --config, the tunnels come from a YAML file (all of them, or the NAMEs given),
over one connection to the server; see the README for its keys.

Options:
  --server URL         Gotunnel server, http:// or https:// (default $GOTUNNEL_SERVER, else
                       http://localhost:8080); several nodes of one cluster: repeat it or
                       separate URLs with commas (also in $GOTUNNEL_SERVER); tried in turn
  --subdomain NAME     subdomain to ask for: a-z, 0-9, "-", 1-63 chars (default: a random one)
  --token TOKEN        token for a server that requires one (default $GOTUNNEL_TOKEN)
  --ca FILE            trust this CA (PEM) for an https:// server (and a --local-https app)
  --config FILE        tunnels from a YAML file: server, token and named tunnels (see README)
  --tcp                a TCP tunnel: the server gives a port (tcp://HOST:PORT), bytes as they are
  --remote-port N      with --tcp: the server port to ask for (one of its --tcp-ports)
  --proxy-protocol     with --tcp or --raw: a PROXY protocol v2 header to the app per visitor
  --custom-domain HOST a hostname of yours (CNAME to the server) instead of a subdomain; needs a
                       token whose scope names it
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
  gotunnel-client 3000 --server https://a.tunnel.example,https://b.tunnel.example  # either node
  gotunnel-client localhost:5173                        # Vite checks Host: it sees localhost:5173
  gotunnel-client https://localhost:8443 --allow-invalid-cert  # an app with a self-signed certificate
  gotunnel-client 22 --tcp --server http://tunnel.example  # SSH: tcp://tunnel.example:20022
  gotunnel-client --config gotunnel.yaml web api        # two tunnels of the file
`;

/** The client's flags, as `node:util` `parseArgs` takes them. */
export const CLIENT_FLAGS = {
  server: { type: "string", multiple: true },
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
  tcp: { type: "boolean" },
  "remote-port": { type: "string" },
  "proxy-protocol": { type: "boolean" },
  "custom-domain": { type: "string" },
  config: { type: "string" },
  pool: { type: "string" },
  "max-streams": { type: "string" },
  "log-level": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

/** Flags people bring from other tunnels, and what to do instead. */
export const FOREIGN_FLAGS = {
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

export const HOST_NAME = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+)$/;

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
export function inspectFlags(
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

/** A hint the CLI adds to a refusal, naming the flag that helps. */
export function refusalHint(error: TunnelError): string {
  if (error.code === "subdomain-reserved" || error.code === "port-reserved") {
    return " (--wait waits until it is free)";
  }
  if (error.code === "inspect") return " (--inspect another address, or --no-inspect)";
  if (error.code === "unauthorized" && /hostname/.test(error.message)) {
    return " (the server's operator adds host:NAME to your token's scope)";
  }
  return "";
}
