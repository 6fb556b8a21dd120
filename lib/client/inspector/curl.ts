// "Copy as curl" (pure): a captured request as a shell command that sends it again to
// its public URL, quoted so that any header or body survives the shell.

import { toBase64url } from "../../bytes.ts";

/** What {@linkcode curlCommand} needs of a request. */
export interface CurlRequest {
  method: string;
  /** The absolute URL to send it to. */
  url: string;
  /** Fields in order; `Host`, `Content-Length`, `Transfer-Encoding` and `Connection` are left to curl. */
  headers: [string, string][];
  /** The body's content (chunked framing off), or empty. */
  body: Uint8Array;
  /** Whether the body was kept only in part. */
  truncated: boolean;
}

/** Fields curl writes itself from its URL and body. */
const LEFT_TO_CURL = new Set(["host", "content-length", "transfer-encoding", "connection"]);
const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;
const fatal = new TextDecoder("utf-8", { fatal: true });

/**
 * `text` as one shell word: bare when it is safe, in single quotes when it is
 * printable, else in `$'...'` with escapes (bash, zsh, ksh).
 */
export function shellQuote(text: string): string {
  if (text !== "" && SAFE.test(text)) return text;
  // deno-lint-ignore no-control-regex -- control characters are what needs escaping
  if (!/[\x00-\x1f\x7f]/.test(text)) return `'${text.replaceAll("'", `'\\''`)}'`;
  let out = "$'";
  for (const c of text) {
    const code = c.charCodeAt(0);
    if (c === "\\" || c === "'") out += "\\" + c;
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += c;
  }
  return out + "'";
}

/**
 * A curl command that sends `request` again. A body that is UTF-8 text without
 * NUL is given inline; any other body goes through `base64 -d` into curl.
 */
export function curlCommand(request: CurlRequest): string {
  const parts = ["curl"];
  // curl sends GET, or POST with a body; HEAD is -I (with -X HEAD it waits for a body).
  if (request.method === "HEAD") parts.push("-I");
  else if (request.method !== (request.body.length > 0 ? "POST" : "GET")) {
    parts.push("-X", shellQuote(request.method));
  }
  parts.push(shellQuote(request.url));
  for (const [name, value] of request.headers) {
    if (LEFT_TO_CURL.has(name.toLowerCase())) continue;
    parts.push("-H", shellQuote(`${name}: ${value}`));
  }
  let prefix = "";
  if (request.body.length > 0) {
    let text: string | undefined;
    try {
      text = fatal.decode(request.body);
    } catch {
      text = undefined;
    }
    if (text !== undefined && !text.includes("\0")) parts.push("--data-raw", shellQuote(text));
    else {
      const base64 = toBase64url(request.body).replaceAll("-", "+").replaceAll("_", "/");
      prefix = `printf %s ${shellQuote(base64.padEnd(Math.ceil(base64.length / 4) * 4, "="))}` +
        " | base64 -d | ";
      parts.push("--data-binary", "@-");
    }
  }
  const note = request.truncated ? "  # the inspector kept only part of this body" : "";
  return prefix + parts.join(" ") + note;
}
