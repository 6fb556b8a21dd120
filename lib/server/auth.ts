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

/**
 * Checks tokens. They are kept as SHA-256 digests and looked up by digest, so
 * neither the stored tokens nor the lookup time give away a token's bytes.
 */
export class Auth {
  #rules: Map<string, TokenScope>;

  private constructor(rules: Map<string, TokenScope>) {
    this.#rules = rules;
  }

  /** An authenticator for `rules`; with none, everyone may open tunnels. */
  static async create(rules: TokenRules = new Map()): Promise<Auth> {
    const digested = new Map<string, TokenScope>();
    for (const [token, scope] of rules) digested.set(await digest(token), scope);
    return new Auth(digested);
  }

  /** Whether tokens are required. */
  get required(): boolean {
    return this.#rules.size > 0;
  }

  /** Undefined when `token` may claim `subdomain` (undefined: a random one), else why not. */
  async check(
    token: string | undefined,
    subdomain: string | undefined,
  ): Promise<string | undefined> {
    if (!this.required) return undefined;
    if (token === undefined) return "This server requires a token (--token or GOTUNNEL_TOKEN)";
    const scope = this.#rules.get(await digest(token));
    if (scope === undefined) return "Invalid token";
    if (scope === "*") return undefined;
    if (subdomain !== undefined && scope.includes(subdomain)) return undefined;
    return `This token may only claim ${scope.map((s) => `"${s}"`).join(", ")}` +
      (subdomain === undefined ? ": ask for one with --subdomain" : `, not "${subdomain}"`);
  }
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
