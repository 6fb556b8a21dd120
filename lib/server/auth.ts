// Who may open tunnels: tokens, each allowed any subdomain or a list of them.

import { isSubdomain } from "../names.ts";

/** Subdomains a token may claim: any (`"*"`) or these. */
export type TokenScope = "*" | readonly string[];

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
  #rules: Map<string, TokenScope> | undefined;
  #reserved: ReadonlySet<string>;

  private constructor(rules: Map<string, TokenScope> | undefined, reserved: ReadonlySet<string>) {
    this.#rules = rules;
    this.#reserved = reserved;
  }

  /**
   * An authenticator for `rules` (undefined: an open server, where anyone may
   * open tunnels; an empty map: no one may); `reserved` adds to the default names.
   */
  static async create(rules?: TokenRules, reserved: Iterable<string> = []): Promise<Auth> {
    let digested: Map<string, TokenScope> | undefined;
    if (rules) {
      digested = new Map();
      for (const [token, scope] of rules) digested.set(await digest(token), scope);
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
      if (Array.isArray(scope) && scope.includes(name)) return true;
    }
    return false;
  }

  /** Whether `token` may claim `subdomain` (undefined: a random one), and who it is. */
  async check(token: string | undefined, subdomain: string | undefined): Promise<AuthResult> {
    const key = this.#rules && token !== undefined ? await digest(token) : undefined;
    if (this.#rules) {
      if (token === undefined) {
        return {
          ok: false,
          reason: "This server requires a token (--token or GOTUNNEL_TOKEN)",
          badToken: true,
        };
      }
      if (!this.#rules.has(key!)) return { ok: false, reason: "Invalid token", badToken: true };
    }
    const why = this.#scopeRefusal(key, subdomain);
    return why === undefined ? { ok: true, key } : { ok: false, reason: why, badToken: false };
  }

  /** Whether the token with `key` (from an earlier check) may still hold `subdomain`. */
  allows(key: string | undefined, subdomain: string): boolean {
    if (this.#rules && (key === undefined || !this.#rules.has(key))) return false;
    return this.#scopeRefusal(key, subdomain) === undefined;
  }

  #scopeRefusal(key: string | undefined, subdomain: string | undefined): string | undefined {
    const scope = key === undefined ? undefined : this.#rules?.get(key);
    if (subdomain !== undefined && this.isReserved(subdomain)) {
      if (Array.isArray(scope) && scope.includes(subdomain)) return undefined;
      return `"${subdomain}" is a reserved name: only a token scoped to it may claim it`;
    }
    if (scope === undefined || scope === "*") return undefined;
    if (subdomain !== undefined && scope.includes(subdomain)) return undefined;
    return `This token may only claim ${scope.map((s) => `"${s}"`).join(", ")}` +
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
 * Parses a tokens file: one token per line, then optionally the subdomains it
 * may claim, comma-separated, or `*` for any (the default). `#` starts a comment.
 * Throws SyntaxError naming the line of a malformed entry.
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
    if (list.some((n) => !isSubdomain(n))) {
      throw new SyntaxError(`Line ${i + 1}: invalid subdomain in "${names}"`);
    }
    rules.set(token, list);
  });
  return rules;
}
