// HAR 1.2 (pure): each captured exchange as an entry, written as JSON one entry at a
// time so that an export never holds the whole archive in memory.

import { latin1Text, toBase64url } from "../../bytes.ts";
import type { MessageHead } from "../../http/head.ts";
import type { Decoded } from "./body.ts";
import type { CapturedExchange } from "./store.ts";
import { parseCaptured, requestUrl } from "./views.ts";

type NameValue = { name: string; value: string };

/** A HAR 1.2 cookie (softwareishard.com/blog/har-12-spec/#cookies). */
export interface HarCookie extends NameValue {
  path?: string;
  domain?: string;
  expires?: string;
  httpOnly?: boolean;
  secure?: boolean;
}

/** A HAR 1.2 `content` object, decoded when its coding could be undone. */
export interface HarContent {
  size: number;
  compression?: number;
  mimeType: string;
  text?: string;
  encoding?: "base64";
  comment?: string;
}

/** A HAR 1.2 entry, with Gotunnel's own fields under `_gotunnel`. */
export interface HarEntry {
  startedDateTime: string;
  time: number;
  request: {
    method: string;
    url: string;
    httpVersion: string;
    cookies: HarCookie[];
    headers: NameValue[];
    queryString: NameValue[];
    postData?: { mimeType: string; text: string; comment?: string };
    headersSize: number;
    bodySize: number;
  };
  response: {
    status: number;
    statusText: string;
    httpVersion: string;
    cookies: HarCookie[];
    headers: NameValue[];
    content: HarContent;
    redirectURL: string;
    headersSize: number;
    bodySize: number;
    _error?: string;
  };
  cache: Record<string, never>;
  timings: {
    blocked: number;
    dns: number;
    connect: number;
    send: number;
    wait: number;
    receive: number;
    ssl: number;
  };
  _gotunnel: { id: number; visitor: string; replayOf?: number; upgrade?: string };
}

const fatal = new TextDecoder("utf-8", { fatal: true });

/** `bytes` as HAR text: UTF-8 when it is, else base64. */
function harText(bytes: Uint8Array): { text: string; encoding?: "base64" } {
  try {
    return { text: fatal.decode(bytes) };
  } catch {
    const base64 = toBase64url(bytes).replaceAll("-", "+").replaceAll("_", "/");
    return {
      text: base64.padEnd(Math.ceil(base64.length / 4) * 4, "="),
      encoding: "base64",
    };
  }
}

const pairs = (head: MessageHead | undefined): NameValue[] =>
  head?.headers.map(([name, value]) => ({ name, value })) ?? [];

/** The cookies of a `Cookie` field. */
function requestCookies(head: MessageHead | undefined): HarCookie[] {
  return (head?.values("cookie") ?? []).flatMap((line) => line.split(";"))
    .map((part) => part.trim()).filter((part) => part.includes("="))
    .map((part) => ({
      name: part.slice(0, part.indexOf("=")),
      value: part.slice(part.indexOf("=") + 1),
    }));
}

/** The cookies each `Set-Cookie` field sets, with the attributes HAR has. */
function responseCookies(head: MessageHead | undefined): HarCookie[] {
  return (head?.values("set-cookie") ?? []).filter((line) => line.includes("=")).map((line) => {
    const [first = "", ...attributes] = line.split(";");
    const cookie: HarCookie = {
      name: first.slice(0, first.indexOf("=")).trim(),
      value: first.slice(first.indexOf("=") + 1).trim(),
    };
    for (const attribute of attributes) {
      const [key = "", value = ""] = attribute.split("=").map((s) => s.trim());
      const name = key.toLowerCase();
      if (name === "path") cookie.path = value;
      else if (name === "domain") cookie.domain = value;
      else if (name === "httponly") cookie.httpOnly = true;
      else if (name === "secure") cookie.secure = true;
      else if (name === "expires" && !Number.isNaN(Date.parse(value))) {
        cookie.expires = new Date(value).toISOString();
      }
    }
    return cookie;
  });
}

function queryString(url: string): NameValue[] {
  try {
    return [...new URL(url).searchParams].map(([name, value]) => ({ name, value }));
  } catch {
    return [];
  }
}

/** The reason phrase of a status line. */
function statusText(head: MessageHead | undefined): string {
  if (!head) return "";
  const line = latin1Text(head.bytes.subarray(0, head.bytes.indexOf(0x0a)));
  return line.replace(/\r$/, "").split(" ").slice(2).join(" ");
}

/**
 * The HAR entry of `e`. `response` is its response body with content codings
 * undone (see `decodeContent`); without it, the body goes as it was sent.
 */
export function harEntry(e: CapturedExchange, response?: Decoded): HarEntry {
  const request = parseCaptured(e.requestHead, "request");
  const answer = parseCaptured(e.responseHead, "response");
  const url = requestUrl(e, request);
  const wait = Math.max(0, e.durationMs ?? 0);
  const requestBody = e.request.content;
  const sent = response?.bytes ?? e.response.content;
  const decoded = response !== undefined && response.error === undefined &&
    response.codings.length > 0;
  const content: HarContent = {
    size: decoded ? sent.length : e.response.content.length,
    mimeType: answer?.get("content-type") ?? "x-unknown",
    ...(sent.length > 0 ? harText(decoded ? sent : e.response.content) : {}),
  };
  if (decoded) content.compression = sent.length - e.response.content.length;
  const notes = [
    e.response.truncated ? `kept ${e.response.kept} of ${e.response.size} bytes` : "",
    response?.error ?? "",
  ].filter(Boolean);
  if (notes.length > 0) content.comment = notes.join("; ");
  const entry: HarEntry = {
    startedDateTime: new Date(e.startedAt).toISOString(),
    time: wait,
    request: {
      method: e.method,
      url,
      httpVersion: request?.version ?? "HTTP/1.1",
      cookies: requestCookies(request),
      headers: pairs(request),
      queryString: queryString(url),
      headersSize: e.requestHead?.length ?? -1,
      bodySize: e.request.chunked && !e.request.truncated ? requestBody.length : e.request.size,
    },
    response: {
      status: e.status ?? 0,
      statusText: statusText(answer),
      httpVersion: answer?.version ?? "HTTP/1.1",
      cookies: responseCookies(answer),
      headers: pairs(answer),
      content,
      redirectURL: answer?.get("location") ?? "",
      headersSize: e.responseHead?.length ?? -1,
      bodySize: e.responseHead === undefined
        ? -1
        : e.response.chunked && !e.response.truncated
        ? e.response.content.length
        : e.response.size,
    },
    cache: {},
    timings: { blocked: -1, dns: -1, connect: -1, send: 0, wait, receive: 0, ssl: -1 },
    _gotunnel: {
      id: e.id,
      visitor: e.visitor,
      ...(e.replayOf === undefined ? {} : { replayOf: e.replayOf }),
      ...(e.upgrade === undefined ? {} : { upgrade: e.upgrade }),
    },
  };
  if (e.problem !== undefined) entry.response._error = e.problem;
  if (e.request.size > 0) {
    const { text, encoding } = harText(requestBody);
    entry.request.postData = {
      mimeType: request?.get("content-type") ?? "",
      text,
      ...(encoding || e.request.truncated
        ? {
          comment: [
            encoding ? "base64" : "",
            e.request.truncated ? `kept ${e.request.kept} of ${e.request.size} bytes` : "",
          ].filter(Boolean).join("; "),
        }
        : {}),
    };
  }
  return entry;
}

/** The HAR document's text up to its first entry. */
export function harStart(creator: { name: string; version: string }): string {
  return `{"log":{"version":"1.2","creator":${JSON.stringify(creator)},"pages":[],"entries":[`;
}

/** The HAR document's text after its last entry. */
export const HAR_END = "]}}\n";
