// Text and bytes one for one (ISO-8859-1), as HTTP heads and TLS names are on the wire.

/** The text of `bytes`, one character per byte. */
export function latin1Text(bytes: Uint8Array): string {
  let text = "";
  for (let at = 0; at < bytes.length; at += 8192) {
    text += String.fromCharCode.apply(null, bytes.subarray(at, at + 8192) as unknown as number[]);
  }
  return text;
}

/**
 * The bytes of `text`, one per character (characters are taken as below 256).
 * A loop beats TextEncoder's call overhead on strings as short as heads.
 */
export function latin1Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}
