// Captured bodies made readable: chunked framing taken off (pure), content codings
// (gzip, br, deflate) decoded with a bound on the output.

import { concatBytes } from "../../bytes.ts";

/**
 * The content of a chunked body (RFC 9112 section 7.1) from its bytes as they
 * passed: chunk data joined, sizes, extensions and trailers left out. A body cut
 * short (not all kept) gives the data it has; bytes that are not chunked
 * framing end it there.
 */
export function dechunk(wire: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = wire.indexOf(0x0a, at);
    if (lineEnd < 0) break;
    let size = 0;
    let digits = 0;
    for (let i = at; i < lineEnd; i++) {
      const b = wire[i]!;
      const d = b >= 0x30 && b <= 0x39
        ? b - 0x30
        : (b | 0x20) >= 0x61 && (b | 0x20) <= 0x66
        ? (b | 0x20) - 0x57
        : -1;
      if (d < 0) break; // `;` (an extension), CR or whitespace end the size
      size = size * 16 + d;
      digits++;
    }
    if (digits === 0 || digits > 12 || size === 0) break;
    const start = lineEnd + 1;
    parts.push(wire.subarray(start, Math.min(start + size, wire.length)));
    at = start + size;
    if (at >= wire.length) break;
    if (wire[at] === 0x0d) at++;
    if (wire[at] === 0x0a) at++;
  }
  return parts.length === 1 ? parts[0]! : concatBytes(...parts);
}

/** Whether a `Transfer-Encoding` value ends in `chunked` (the body then has chunked framing). */
export function isChunked(transferEncoding: string | undefined): boolean {
  return transferEncoding !== undefined && /(?:^|,)\s*chunked\s*$/i.test(transferEncoding);
}

/** The formats of `DecompressionStream` for each content coding it can decode. */
const FORMATS: Readonly<Record<string, CompressionFormat[]>> = {
  gzip: ["gzip"],
  "x-gzip": ["gzip"],
  // RFC 9110 says zlib, but some servers send raw deflate: both are tried.
  deflate: ["deflate", "deflate-raw"],
  br: ["brotli" as CompressionFormat],
};

/** A body after its content codings were undone, or why they were not. */
export interface Decoded {
  /** The decoded bytes (the input itself when nothing needed decoding). */
  bytes: Uint8Array;
  /** The codings undone, in the order they were applied (`Content-Encoding`'s order). */
  codings: string[];
  /** Why decoding stopped early: an unknown coding, bad data, output over the limit. */
  error: string | undefined;
}

/**
 * Undoes the codings of a `Content-Encoding` value (`gzip`, `br`, `deflate`,
 * `identity`; several in order) on `bytes`, writing at most `limit` bytes. A
 * body cut short decodes as far as its bytes go (`error` says so).
 */
export async function decodeContent(
  bytes: Uint8Array,
  contentEncoding: string | undefined,
  limit: number,
): Promise<Decoded> {
  const codings = (contentEncoding ?? "").split(",").map((c) => c.trim().toLowerCase())
    .filter((c) => c !== "" && c !== "identity");
  let out = bytes;
  for (const coding of codings.toReversed()) {
    const formats = FORMATS[coding];
    if (!formats) return { bytes: out, codings: [], error: `unknown coding ${coding}` };
    let result: { bytes: Uint8Array; error: string | undefined } | undefined;
    for (const format of formats) {
      result = await decompress(out, format, limit);
      if (result.error === undefined || result.bytes.length > 0) break;
    }
    if (result!.error !== undefined) return { bytes: result!.bytes, codings, error: result!.error };
    out = result!.bytes;
  }
  return { bytes: out, codings, error: undefined };
}

// One format undone, output bounded; what came out before an error is kept.
async function decompress(
  input: Uint8Array,
  format: CompressionFormat,
  limit: number,
): Promise<{ bytes: Uint8Array; error: string | undefined }> {
  const parts: Uint8Array[] = [];
  let size = 0;
  let error: string | undefined;
  let stream: DecompressionStream;
  try {
    stream = new DecompressionStream(format);
  } catch {
    return { bytes: input, error: `cannot decode ${format} here` };
  }
  const writer = stream.writable.getWriter();
  // The write settles as the reader takes output: not awaited, its failure is the reader's.
  writer.write(input as Uint8Array<ArrayBuffer>).then(() => writer.close()).catch(() => {});
  const reader = stream.readable.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > limit) {
        parts.push(value.subarray(0, value.length - (size - limit)));
        error = `decoded body over ${limit} bytes: cut there`;
        await reader.cancel().catch(() => {});
        break;
      }
      parts.push(value);
    }
  } catch (e) {
    error = `${format} data ends early or is damaged (${e instanceof Error ? e.message : e})`;
  }
  return { bytes: concatBytes(...parts), error };
}
