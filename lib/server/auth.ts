// Who may open tunnels: tokens, each allowed any subdomain and TCP port, or a list of
// subdomains, TCP port ranges (`tcp:20000-20010`) and custom hostnames (`host:a.example`,
// `host:*.example.com`).

import { isSubdomain, normalizeHost } from "../names.ts";

/**
 * What a token may claim: any subdomain and any TCP port (`"*"`; never a
 * custom hostname), or exactly these: subdomains (`demo`), TCP ports or port
 * ranges (`tcp:20022`, `tcp:20000-20010`), custom hostnames (`host:app.example.com`)
 * or every name under a domain (`host:*.example.com`).
 */
export type TokenScope = "*" | readonly string[];

/** What a client claims, as a scope judges it. */
export type ClaimTarget =
  /** A subdomain; undefined: a random one. */
  | { kind: "subdomain"; name: string | undefined }
  /** A custom hostname (normalised). */
  | { kind: "host"; host: string }
  /** A TCP port; undefined: any free one. */
  | { kind: "port"; port: number | undefined };

/** A scope read once: its subdomains, port ranges and host patterns. */
interface Scope {
  any: boolean;
  names: readonly string[];
  ports: readonly (readonly [number, number])[];
  hosts: readonly string[];
}

/** Reads one scope entry: a subdomain, `tcp:N`, `tcp:A-B`, `host:NAME` or `host:*.DOMAIN`; or why not. */
export function parseScopeEntry(
  entry: string,
): { kind: "name" | "host"; value: string } | { kind: "ports"; range: [number, number] } | string {
  const lower = entry.toLowerCase();
  if (lower.startsWith("tcp:")) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(lower.slice(4));
    const from = Number(m?.[1]);
    const to = Number(m?.[2] ?? m?.[1]);
    if (!m || from < 1 || to > 65535 || from > to) return `invalid port range in "${entry}"`;
    return { kind: "ports", range: [from, to] };
  }
  if (lower.startsWith("host:")) {
    const pattern = lower.slice(5);
    const wildcard = pattern.startsWith("*.");
    const host = normalizeHost(wildcard ? pattern.slice(2) : pattern);
    if (typeof host === "string" || host.ip || !host.host.includes(".") || pattern.endsWith(".")) {
      return `invalid hostname in "${entry}"`;
    }
    return { kind: "host", value: wildcard ? `*.${host.host}` : host.host };
  }
  if (!isSubdomain(lower)) return `invalid subdomain in "${entry}"`;
  return { kind: "name", value: lower };
}

function readScope(scope: TokenScope): Scope {
  if (scope === "*") return { any: true, names: [], ports: [], hosts: [] };
  const names: string[] = [];
  const ports: [number, number][] = [];
  const hosts: string[] = [];
  for (const entry of scope) {
    const parsed = parseScopeEntry(entry);
    if (typeof parsed === "string") throw new TypeError(`Invalid token scope: ${parsed}`);
    if (parsed.kind === "ports") ports.push(parsed.range);
    else if (parsed.kind === "host") hosts.push(parsed.value);
    else names.push(parsed.value);
  }
  return { any: false, names, ports, hosts };
}

/** Whether host pattern `pattern` (`a.example` or `*.example`) covers `host`. */
export function hostPatternCovers(pattern: string, host: string): boolean {
  if (!pattern.startsWith("*.")) return pattern === host;
  return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
}

/** Whether a port is within one of `ranges`. */
function inRanges(port: number, ranges: readonly (readonly [number, number])[]): boolean {
  return ranges.some(([from, to]) => port >= from && port <= to);
}

/** Tokens and what each may claim. */
export type TokenRules = ReadonlyMap<string, TokenScope>;

async function digest(token: string): Promise<string> {
  const bytes = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Names that only a token scoped to them may claim, whatever else a server reserves. */
export const DEFAULT_RESERVED_NAMES: readonly string[] = [
  "www",
  "api",
  "admin",
  "mail",
  "localhost",
];

/** What {@linkcode Auth.check} says: who the client is, or why it may not claim the name. */
export type AuthResult =
  /** Allowed; `key` identifies the token (its digest), undefined on an open server. */
  | { ok: true; key: string | undefined }
  /** Refused; `badToken` when the token was missing or unknown (counted against failures). */
  | { ok: false; reason: string; badToken: boolean };

/**
 * Checks tokens and reserved names. Tokens are kept as SHA-256 digests and
 * looked up by digest, so neither the stored tokens nor the lookup time give
 * away a token's bytes. A reserved name (the defaults, `xn--` labels, and the
 * server's own list) needs a token whose scope names it: `*` does not.
 */
export class Auth {
  #rules: Map<string, Scope> | undefined;
  #reserved: ReadonlySet<string>;

  private constructor(rules: Map<string, Scope> | undefined, reserved: ReadonlySet<string>) {
    this.#rules = rules;
    this.#reserved = reserved;
  }

  /**
   * An authenticator for `rules` (undefined: an open server, where anyone may
   * open tunnels; an empty map: no one may); `reserved` adds to the default names.
   */
  static async create(rules?: TokenRules, reserved: Iterable<string> = []): Promise<Auth> {
    let digested: Map<string, Scope> | undefined;
    if (rules) {
      digested = new Map();
      for (const [token, scope] of rules) digested.set(await digest(token), readScope(scope));
    }
    return new Auth(digested, new Set([...DEFAULT_RESERVED_NAMES, ...reserved]));
  }

  /** Whether tokens are required. */
  get required(): boolean {
    return this.#rules !== undefined;
  }

  /** How many tokens there are (0 on an open server, and on one no one may use). */
  get tokenCount(): number {
    return this.#rules?.size ?? 0;
  }

  /** Whether `name` needs a token scoped to it. */
  isReserved(name: string): boolean {
    return this.#reserved.has(name) || name.startsWith("xn--");
  }

  /** Whether a token's scope lists `name` (so it is known ahead, e.g. to get its own certificate). */
  isScoped(name: string): boolean {
    for (const scope of this.#rules?.values() ?? []) {
      if (scope.names.includes(name)) return true;
    }
    return false;
  }

  /** Who `token` is (its digest; undefined on an open server), or why it may not open tunnels. */
  async identify(
    token: string | undefined,
  ): Promise<{ ok: true; key: string | undefined } | { ok: false; reason: string }> {
    if (!this.#rules) return { ok: true, key: undefined };
    if (token === undefined) {
      return { ok: false, reason: "This server requires a token (--token or GOTUNNEL_TOKEN)" };
    }
    const key = await digest(token);
    return this.#rules.has(key) ? { ok: true, key } : { ok: false, reason: "Invalid token" };
  }

  /** Whether `token` may claim the subdomain `subdomain` (undefined: a random one), and who it is. */
  async check(token: string | undefined, subdomain: string | undefined): Promise<AuthResult> {
    const who = await this.identify(token);
    if (!who.ok) return { ok: false, reason: who.reason, badToken: true };
    const why = this.refusal(who.key, { kind: "subdomain", name: subdomain });
    return why === undefined
      ? { ok: true, key: who.key }
      : { ok: false, reason: why, badToken: false };
  }

  /** Whether the token with `key` (from `identify`) may still hold `target`. */
  allows(key: string | undefined, target: ClaimTarget): boolean {
    if (this.#rules && (key === undefined || !this.#rules.has(key))) return false;
    return this.refusal(key, target) === undefined;
  }

  /** The TCP port ranges the token with `key` may claim (undefined: any port). */
  portRanges(key: string | undefined): readonly (readonly [number, number])[] | undefined {
    const scope = key === undefined ? undefined : this.#rules?.get(key);
    return scope === undefined || scope.any ? undefined : scope.ports;
  }

  /** Why the token with `key` may not claim `target`, or undefined if it may. */
  refusal(key: string | undefined, target: ClaimTarget): string | undefined {
    const scope = key === undefined ? undefined : this.#rules?.get(key);
    if (target.kind === "host") {
      // A hostname outside the domain is someone's: only a token scoped to it may claim it.
      if (scope?.hosts.some((p) => hostPatternCovers(p, target.host))) return undefined;
      return `Cannot claim hostname "${target.host}": only a token whose scope names it ` +
        `(host:${target.host}) may claim it`;
    }
    if (target.kind === "port") {
      if (scope === undefined || scope.any) return undefined;
      if (target.port === undefined ? scope.ports.length > 0 : inRanges(target.port, scope.ports)) {
        return undefined;
      }
      return `This token may not open TCP port ${target.port ?? "tunnels"}` +
        (scope.ports.length > 0
          ? `: only ${scope.ports.map(([a, b]) => a === b ? a : `${a}-${b}`).join(", ")}`
          : "");
    }
    const subdomain = target.name;
    if (subdomain !== undefined && this.isReserved(subdomain)) {
      if (scope?.names.includes(subdomain)) return undefined;
      return `"${subdomain}" is a reserved name: only a token scoped to it may claim it`;
    }
    if (scope === undefined || scope.any) return undefined;
    if (subdomain !== undefined && scope.names.includes(subdomain)) return undefined;
    if (scope.names.length === 0) return "This token may not claim subdomains";
    return `This token may only claim ${scope.names.map((s) => `"${s}"`).join(", ")}` +
      (subdomain === undefined ? ": ask for one with --subdomain" : `, not "${subdomain}"`);
  }
}

/**
 * Parses a reserved-names file: one subdomain label per line, `#` comments.
 * Throws SyntaxError naming the line of a malformed one.
 */
export function parseReservedNames(text: string): string[] {
  const names: string[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*/, "").trim().toLowerCase();
    if (line === "") return;
    if (!isSubdomain(line)) {
      throw new SyntaxError(`Line ${i + 1}: "${line}" is not a subdomain label`);
    }
    names.push(line);
  });
  return names;
}

/**
 * Parses a tokens file: one token per line, then optionally what it may claim,
 * comma-separated (subdomains, `tcp:N` or `tcp:A-B`, `host:NAME` or
 * `host:*.DOMAIN`), or `*` for any subdomain and port (the default). `#` starts
 * a comment. Throws SyntaxError naming the line of a malformed entry.
 */
export function parseTokensFile(text: string): Map<string, TokenScope> {
  const rules = new Map<string, TokenScope>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") return;
    const [token, names, ...rest] = line.split(/\s+/);
    if (rest.length > 0 || token === undefined || token.length < 16) {
      throw new SyntaxError(
        `Line ${i + 1}: expected "TOKEN [SUBDOMAIN,...|*]" with a token of 16+ characters`,
      );
    }
    if (names === undefined || names === "*") {
      rules.set(token, "*");
      return;
    }
    const list = names.split(",").map((n) => n.toLowerCase());
    for (const entry of list) {
      const parsed = parseScopeEntry(entry);
      if (typeof parsed === "string") throw new SyntaxError(`Line ${i + 1}: ${parsed}`);
    }
    rules.set(token, list);
  });
  return rules;
}
