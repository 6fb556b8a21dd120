// A claim on the cluster directory, and what claiming and releasing come to.

import type { DirectoryEntry, DirectoryKind } from "./records.ts";

/**
 * A claim this node holds: what, for which session, and who may reclaim it.
 *
 * @example
 * ```ts
 * import type { Claim } from "./claim.ts";
 * const claim: Claim = { kind: "port", value: "5432", session: "tunnel-id", holder: "lease-nonce" };
 * console.log(`${claim.kind}:${claim.value}`); // port:5432
 * ```
 */
export interface Claim {
  /** What it names. */
  readonly kind: DirectoryKind;
  /** The name, port (decimal) or hostname. */
  readonly value: string;
  /** The holding session's id (unique in the cluster: a random token). */
  readonly session: string;
  /** Who may reclaim it through another node (the lease nonce), or "". */
  readonly holder: string;
}

/**
 * Whether a claim may replace another session's with the same holder:
 * `never`; `if-owner-gone` (the default) when that session ended (held) or its
 * node's record lapsed; `always` (the holder's client asked to replace, or a
 * probe of the old session went unanswered).
 *
 * @example
 * ```ts
 * import type { Takeover } from "./claim.ts";
 * const replace = true; // the client's hello asked to replace its live session
 * const takeover: Takeover = replace ? "always" : "if-owner-gone";
 * console.log(takeover); // always
 * ```
 */
export type Takeover = "never" | "if-owner-gone" | "always";

/**
 * What a claim came to.
 *
 * @example What a hello is answered
 * ```ts
 * import type { ClaimResult } from "./claim.ts";
 * const answer = (result: ClaimResult): string =>
 *   result.ok ? "welcome" : result.entry.session ? "subdomain-taken" : "subdomain-reserved";
 * console.log(answer({
 *   ok: false,
 *   entry: { node: "b", session: "", holder: "h", expiresAt: 0, revision: 1 },
 * })); // subdomain-reserved
 * ```
 */
export type ClaimResult =
  /** This node holds it; `replaced` is the entry it took over, if any. */
  | { ok: true; claim: Claim; entry: DirectoryEntry; replaced: DirectoryEntry | undefined }
  /**
   * Another session holds it (`entry.session` set: taken), or it is held for
   * another holder until `entry.expiresAt` (`entry.session` empty: reserved).
   */
  | { ok: false; entry: DirectoryEntry };

/**
 * What a release came to: `released`, `held` (for its holder), `gone` (lapsed), `not-owner`.
 *
 * @example
 * ```ts
 * import type { ReleaseResult } from "./claim.ts";
 * const result: ReleaseResult = "not-owner";
 * if (result === "not-owner") console.log("another session holds it now");
 * ```
 */
export type ReleaseResult = "released" | "held" | "gone" | "not-owner";
