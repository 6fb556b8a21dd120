// The cluster key (`--cluster-key-file`): the secret every node holds, with which
// nodes authenticate each other (lib/server/cluster/node_auth.ts).

import { toBase64url } from "../../bytes.ts";
import { KEY_FILE_BYTES, readOrCreateKey } from "../key_file.ts";

/**
 * The cluster key, ready for HMAC-SHA256, and a fingerprint that names it without giving it away.
 *
 * @example
 * ```ts
 * import { importClusterKey } from "./key.ts";
 * const key = await importClusterKey(new Uint8Array(32));
 * console.log(key.hmac.algorithm.name); // HMAC
 * ```
 */
export interface ClusterKey {
  /** The HMAC-SHA256 key (not extractable). */
  readonly hmac: CryptoKey;
  /**
   * The first 12 characters of base64url(HMAC(key, "gotunnel cluster key
   * fingerprint")): nodes publish it in their records so a node holding a
   * different file is spotted at once.
   */
  readonly fingerprint: string;
}

const encoder = new TextEncoder();

/**
 * Imports key bytes (at least KEY_FILE_BYTES, 32) as a cluster key. Throws a
 * RangeError for fewer bytes.
 *
 * @example
 * ```ts
 * import { importClusterKey } from "./key.ts";
 * const key = await importClusterKey(new Uint8Array(32).fill(7));
 * console.log(key.fingerprint.length); // 12
 * ```
 */
export async function importClusterKey(bytes: Uint8Array): Promise<ClusterKey> {
  if (bytes.length < KEY_FILE_BYTES) {
    throw new RangeError(
      `Cannot use a cluster key of ${bytes.length} bytes: ${KEY_FILE_BYTES}+ needed`,
    );
  }
  const hmac = await crypto.subtle.importKey(
    "raw",
    bytes as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mark = await crypto.subtle.sign(
    "HMAC",
    hmac,
    encoder.encode("gotunnel cluster key fingerprint"),
  );
  return { hmac, fingerprint: toBase64url(new Uint8Array(mark)).slice(0, 12) };
}

/**
 * Reads `--cluster-key-file`, or creates it with 32 random bytes, owner-only
 * (0600), as `--lease-key-file` does. Every node must hold the same file: a
 * node that created its own (`created: true`) should say so loudly, since it
 * cannot talk to the others until the file is copied to them.
 *
 * @example
 * ```ts
 * import { readOrCreateClusterKey } from "./key.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.remove(path);
 * const first = await readOrCreateClusterKey(path);
 * const again = await readOrCreateClusterKey(path);
 * console.log(first.created, again.created, first.key.fingerprint === again.key.fingerprint);
 * // true false true
 * await Deno.remove(path);
 * ```
 */
export async function readOrCreateClusterKey(
  path: string,
): Promise<{ key: ClusterKey; created: boolean }> {
  const { key, created } = await readOrCreateKey(path);
  return { key: await importClusterKey(key), created };
}
