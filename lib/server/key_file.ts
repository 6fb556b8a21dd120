// Secret keys kept in files: read, or created with fresh random bytes (owner-only).

/** Bytes in a key file Gotunnel creates (and the least it accepts). */
export const KEY_FILE_BYTES = 32;

/** Reads the key in `path`, or creates the file with KEY_FILE_BYTES random bytes. */
export async function readOrCreateKey(
  path: string,
): Promise<{ key: Uint8Array; created: boolean }> {
  try {
    const key = await Deno.readFile(path);
    if (key.length < KEY_FILE_BYTES) {
      throw new RangeError(`${path} holds ${key.length} bytes, fewer than ${KEY_FILE_BYTES}`);
    }
    return { key, created: false };
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    const key = crypto.getRandomValues(new Uint8Array(KEY_FILE_BYTES));
    await Deno.writeFile(path, key, { mode: 0o600, createNew: true });
    return { key, created: true };
  }
}
