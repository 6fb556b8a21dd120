// The client's config file (YAML): the server, the token and a map of named tunnels,
// read from a YAML document and checked key by key, each error with its line and
// column. Pure: the YAML library is handed in (lib/client/config_file.ts loads it).

import { MAX_TUNNEL_NAME_LENGTH, MAX_TUNNELS_PER_SESSION } from "../limits.ts";
import { checkSubdomain, normalizeHost } from "../names.ts";
import { parseServerUrl } from "./dial.ts";
import { splitServerList } from "./server_list.ts";

/** The part of npm:yaml (2.x) the config reader uses, typed by hand (it is loaded on demand). */
export interface YamlLib {
  /** Parses one document, noting line starts in `lineCounter`. */
  parseDocument(
    text: string,
    options: { lineCounter: YamlLineCounter; uniqueKeys: boolean; prettyErrors: boolean },
  ): YamlDocument;
  /** Counts lines, to turn offsets into line and column. */
  LineCounter: new () => YamlLineCounter;
  /** Whether a node is a mapping. */
  isMap(node: unknown): node is YamlMap;
  /** Whether a node is a scalar. */
  isScalar(node: unknown): node is YamlScalar;
  /** Whether a node is a sequence (a list). */
  isSeq(node: unknown): node is YamlSeq;
}

/** Offsets to lines and columns (1-based). */
export interface YamlLineCounter {
  linePos(offset: number): { line: number; col: number };
}

/** A parsed YAML document. */
export interface YamlDocument {
  /** Syntax errors, with their positions. */
  errors: { message: string; linePos?: [{ line: number; col: number }, ...unknown[]] }[];
  /** The root node. */
  contents: unknown;
}

/** A node with its place in the text: `range[0]` is its first character's offset. */
export interface YamlNode {
  range?: [number, number, number] | null;
}

/** A mapping node. */
export interface YamlMap extends YamlNode {
  items: { key: unknown; value: unknown }[];
}

/** A sequence node. */
export interface YamlSeq extends YamlNode {
  items: unknown[];
}

/** A scalar node. */
export interface YamlScalar extends YamlNode {
  value: unknown;
}

/** A config file that cannot be used: the message names the file, line and column. */
export class ConfigError extends Error {
  /** Creates an error whose message starts with `file:line:col`. */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** One tunnel of a config file. */
export interface ConfigTunnel {
  /** Its key in `tunnels`. */
  name: string;
  /** Port of the local app. */
  port: number;
  /** Host of the local app, when given (also the Host header the app sees). */
  localHost?: string;
  /** The app speaks TLS. */
  localHttps?: boolean;
  /** With `localHttps`: accept any certificate. */
  allowInvalidCert?: boolean;
  /** Bytes only, no HTTP parsing. */
  raw?: boolean;
  /** Subdomain to ask for. */
  subdomain?: string;
  /** A hostname outside the server's domain. */
  customDomain?: string;
  /** A TCP tunnel. */
  tcp?: boolean;
  /** With `tcp`: the port to ask for. */
  remotePort?: number;
  /** With `tcp` or `raw`: a PROXY protocol v2 header to the app. */
  proxyProtocol?: boolean;
  /** Drop Set-Cookie Domain attributes naming the server's domain. */
  isolateCookies?: boolean;
}

/** A config file, read and checked. */
export interface ClientConfig {
  /** The servers' URLs (one, or several nodes of one cluster, tried in turn). */
  server?: string[];
  /** The token. */
  token?: string;
  /** A CA file (PEM) to trust. */
  ca?: string;
  /** Idle proxy connections. */
  pool?: number;
  /** The tunnels, in the file's order. */
  tunnels: ConfigTunnel[];
}

type Kind = "string" | "boolean" | "port" | "count";
const TOP_KEYS: Record<string, Kind | "tunnels" | "servers"> = {
  server: "servers",
  token: "string",
  ca: "string",
  pool: "count",
  tunnels: "tunnels",
};
const TUNNEL_KEYS: Record<string, Kind> = {
  port: "port",
  url: "string",
  "local-host": "string",
  "local-https": "boolean",
  "allow-invalid-cert": "boolean",
  raw: "boolean",
  subdomain: "string",
  "custom-domain": "string",
  customDomain: "string", // the spelling of the issue that asked for it
  tcp: "boolean",
  "remote-port": "port",
  "proxy-protocol": "boolean",
  "isolate-cookies": "boolean",
};
/** What a tunnel's name may be: it is also its key in leases and the inspector. */
const TUNNEL_NAME = new RegExp(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,${MAX_TUNNEL_NAME_LENGTH - 1}}$`);

/**
 * Reads a config file's text with `yaml`: every key known, every value of its
 * type, `${NAME}` in strings replaced by the environment variable (one that is
 * not set is an error), at least one tunnel. Throws {@linkcode ConfigError}
 * naming `file`, the line and the column.
 */
export function parseConfig(
  text: string,
  yaml: YamlLib,
  env: (name: string) => string | undefined,
  file = "config",
): ClientConfig {
  const lines = new yaml.LineCounter();
  const doc = yaml.parseDocument(text, {
    lineCounter: lines,
    uniqueKeys: true,
    prettyErrors: true,
  });
  const fail = (node: unknown, message: string): never => {
    const offset = (node as YamlNode | undefined)?.range?.[0] ?? 0;
    const { line, col } = lines.linePos(offset);
    throw new ConfigError(`${file}:${line}:${col}: ${message}`);
  };
  const syntax = doc.errors[0];
  if (syntax) {
    const where = syntax.linePos?.[0];
    const first = syntax.message.split("\n")[0];
    throw new ConfigError(`${file}:${where?.line ?? 1}:${where?.col ?? 1}: ${first}`);
  }
  if (!yaml.isMap(doc.contents)) {
    return fail(doc.contents, "expected a mapping with server, token and tunnels");
  }
  const expand = (node: unknown, value: string): string =>
    value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const got = env(name);
      if (got === undefined) return fail(node, `environment variable ${name} is not set`);
      return got;
    });
  const read = (node: unknown, kind: Kind, key: string): string | number | boolean => {
    if (!yaml.isScalar(node)) return fail(node, `${key}: expected a single value`);
    const value = node.value;
    switch (kind) {
      case "string":
        if (typeof value === "number") return String(value);
        if (typeof value !== "string" || value === "") {
          return fail(node, `${key}: expected a string`);
        }
        return expand(node, value);
      case "boolean":
        if (typeof value !== "boolean") return fail(node, `${key}: expected true or false`);
        return value;
      case "port":
      case "count": {
        const n = typeof value === "string" ? Number(expand(node, value)) : value;
        const [min, max] = kind === "port" ? [1, 65535] : [1, 1024];
        if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
          return fail(node, `${key}: expected a whole number ${min}-${max}`);
        }
        return n;
      }
    }
  };
  const config: ClientConfig = { tunnels: [] };
  let tunnelsNode: YamlMap | undefined;
  for (const { key, value } of doc.contents.items) {
    const name = yaml.isScalar(key) ? String(key.value) : undefined;
    const kind = name === undefined ? undefined : TOP_KEYS[name];
    if (name === undefined || kind === undefined) {
      return fail(
        key,
        `unknown key ${JSON.stringify(name)} (expected ${Object.keys(TOP_KEYS).join(", ")})`,
      );
    }
    if (kind === "tunnels") {
      if (!yaml.isMap(value)) {
        return fail(value ?? key, "tunnels: expected a mapping of named tunnels");
      }
      tunnelsNode = value;
      continue;
    }
    if (kind === "servers") {
      config.server = readServers(value ?? key, yaml, read, fail);
      continue;
    }
    const got = read(value ?? key, kind, name);
    if (name === "pool") config.pool = got as number;
    else if (name === "token" || name === "ca") config[name] = got as string;
  }
  if (!tunnelsNode || tunnelsNode.items.length === 0) {
    return fail(tunnelsNode ?? doc.contents, "no tunnels: add a tunnels mapping with one or more");
  }
  if (tunnelsNode.items.length > MAX_TUNNELS_PER_SESSION) {
    return fail(
      tunnelsNode,
      `${tunnelsNode.items.length} tunnels: at most ${MAX_TUNNELS_PER_SESSION}`,
    );
  }
  for (const { key, value } of tunnelsNode.items) {
    const name = yaml.isScalar(key) ? String(key.value) : "";
    if (!TUNNEL_NAME.test(name)) {
      return fail(key, `tunnel name ${JSON.stringify(name)}: use letters, digits, "-", "_", "."`);
    }
    if (!yaml.isMap(value)) {
      return fail(value ?? key, `${name}: expected a mapping (port, subdomain, ...)`);
    }
    config.tunnels.push(readTunnel(name, value, yaml, read, fail, key));
  }
  return config;
}

/** `server:` as one URL, URLs separated by commas, or a list of URLs; each one checked. */
function readServers(
  node: unknown,
  yaml: YamlLib,
  read: (node: unknown, kind: Kind, key: string) => string | number | boolean,
  fail: (node: unknown, message: string) => never,
): string[] {
  const check = (at: unknown, key: string, url: string): string => {
    try {
      parseServerUrl(url);
    } catch (e) {
      return fail(at, `${key}: ${(e as Error).message}`);
    }
    return url;
  };
  if (yaml.isSeq(node)) {
    if (node.items.length === 0) return fail(node, "server: expected a URL or a list of URLs");
    return node.items.map((item, i) =>
      check(item, `server[${i}]`, read(item, "string", `server[${i}]`) as string)
    );
  }
  const text = read(node, "string", "server") as string;
  let urls: string[];
  try {
    urls = splitServerList(text);
  } catch (e) {
    return fail(node, `server: ${(e as Error).message}`);
  }
  return urls.map((url) => check(node, "server", url));
}

function readTunnel(
  name: string,
  node: YamlMap,
  yaml: YamlLib,
  read: (node: unknown, kind: Kind, key: string) => string | number | boolean,
  fail: (node: unknown, message: string) => never,
  at: unknown,
): ConfigTunnel {
  const tunnel: ConfigTunnel = { name, port: 0 };
  const seen = new Map<string, unknown>();
  for (const { key, value } of node.items) {
    const field = yaml.isScalar(key) ? String(key.value) : "";
    const kind = TUNNEL_KEYS[field];
    if (kind === undefined) {
      return fail(
        key,
        `${name}: unknown key ${JSON.stringify(field)} (expected port or url, subdomain, ` +
          "custom-domain, tcp, remote-port, local-host, local-https, allow-invalid-cert, raw, " +
          "proxy-protocol, isolate-cookies)",
      );
    }
    const canonical = field === "customDomain" ? "custom-domain" : field;
    if (seen.has(canonical)) return fail(key, `${name}: ${field} given twice`);
    seen.set(canonical, value ?? key);
    const got = read(value ?? key, kind, `${name}.${field}`);
    switch (canonical) {
      case "port":
        tunnel.port = got as number;
        break;
      case "url": {
        const target = parseUrlTarget(got as string);
        if (typeof target === "string") return fail(value, `${name}.url: ${target}`);
        tunnel.port = target.port;
        tunnel.localHost = target.host;
        if (target.https) tunnel.localHttps = true;
        break;
      }
      case "local-host":
        tunnel.localHost = got as string;
        break;
      case "local-https":
        tunnel.localHttps = got as boolean;
        break;
      case "allow-invalid-cert":
        tunnel.allowInvalidCert = got as boolean;
        break;
      case "raw":
        tunnel.raw = got as boolean;
        break;
      case "subdomain": {
        const checked = checkSubdomain(got as string);
        if (!checked.ok) return fail(value, `${name}.subdomain: ${checked.reason}`);
        tunnel.subdomain = checked.name;
        break;
      }
      case "custom-domain": {
        const host = normalizeHost(got as string);
        if (typeof host === "string" || host.ip || !host.host.includes(".")) {
          return fail(value, `${name}.${field}: expected a hostname such as app.example.com`);
        }
        tunnel.customDomain = host.host;
        break;
      }
      case "tcp":
        tunnel.tcp = got as boolean;
        break;
      case "remote-port":
        tunnel.remotePort = got as number;
        break;
      case "proxy-protocol":
        tunnel.proxyProtocol = got as boolean;
        break;
      case "isolate-cookies":
        tunnel.isolateCookies = got as boolean;
        break;
    }
  }
  const where = (key: string): unknown => seen.get(key) ?? at;
  if (seen.has("port") && seen.has("url")) {
    return fail(where("url"), `${name}: port or url, not both`);
  }
  if (tunnel.port === 0) return fail(at, `${name}: needs a port (or a url)`);
  if (tunnel.tcp) {
    for (const key of ["subdomain", "custom-domain", "local-https", "raw"]) {
      if (seen.has(key)) return fail(where(key), `${name}: a tcp tunnel has no ${key}`);
    }
  } else if (seen.has("remote-port")) {
    return fail(where("remote-port"), `${name}: remote-port needs tcp: true`);
  }
  if (seen.has("subdomain") && seen.has("custom-domain")) {
    return fail(where("custom-domain"), `${name}: subdomain or custom-domain, not both`);
  }
  if (tunnel.proxyProtocol && !tunnel.tcp && !tunnel.raw) {
    return fail(where("proxy-protocol"), `${name}: proxy-protocol needs tcp or raw`);
  }
  if (tunnel.allowInvalidCert && !tunnel.localHttps) {
    return fail(where("allow-invalid-cert"), `${name}: allow-invalid-cert needs local-https`);
  }
  return tunnel;
}

/** Reads `http://host[:port]` or `https://host[:port]`; a reason string when it is not one. */
function parseUrlTarget(text: string): { host: string; port: number; https: boolean } | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "not a URL";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "use http:// or https://";
  if (url.pathname !== "/" || url.search || url.hash || url.username) {
    return "use only scheme, host and port";
  }
  const https = url.protocol === "https:";
  const port = url.port === "" ? (https ? 443 : 80) : Number(url.port);
  return { host: url.hostname.replace(/^\[(.*)\]$/, "$1"), port, https };
}
