// A HAR 1.2 checker for tests: every required field of the spec
// (softwareishard.com/blog/har-12-spec) with its type, and what Chromium's DevTools
// importer reads (dates that parse, numbers that are numbers, `log.entries` a list).

import assert from "node:assert/strict";

type Json = Record<string, unknown>;

function object(value: unknown, where: string): Json {
  assert.ok(
    value !== null && typeof value === "object" && !Array.isArray(value),
    `${where}: object`,
  );
  return value as Json;
}

function list(value: unknown, where: string): unknown[] {
  assert.ok(Array.isArray(value), `${where}: array`);
  return value;
}

const string = (o: Json, key: string, where: string): string => {
  assert.equal(typeof o[key], "string", `${where}.${key}: string`);
  return o[key] as string;
};
const number = (o: Json, key: string, where: string): number => {
  assert.ok(typeof o[key] === "number" && Number.isFinite(o[key]), `${where}.${key}: number`);
  return o[key] as number;
};
const optional = (o: Json, key: string, type: string, where: string): void => {
  if (o[key] !== undefined) assert.equal(typeof o[key], type, `${where}.${key}: ${type}`);
};

function pairs(value: unknown, where: string): void {
  list(value, where).forEach((p, i) => {
    const o = object(p, `${where}[${i}]`);
    string(o, "name", `${where}[${i}]`);
    string(o, "value", `${where}[${i}]`);
  });
}

function cookies(value: unknown, where: string): void {
  pairs(value, where);
  for (const c of value as Json[]) {
    for (const key of ["path", "domain", "expires", "comment"]) optional(c, key, "string", where);
    for (const key of ["httpOnly", "secure"]) optional(c, key, "boolean", where);
    if (c.expires !== undefined) assert.ok(!Number.isNaN(Date.parse(c.expires as string)));
  }
}

const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Throws an AssertionError naming the first field of `har` that HAR 1.2 does not allow. */
export function checkHar(har: unknown): void {
  const log = object(object(har, "har").log, "log");
  assert.equal(log.version, "1.2");
  const creator = object(log.creator, "log.creator");
  string(creator, "name", "log.creator");
  string(creator, "version", "log.creator");
  if (log.pages !== undefined) list(log.pages, "log.pages");
  list(log.entries, "log.entries").forEach((e, i) => {
    const where = `log.entries[${i}]`;
    const entry = object(e, where);
    assert.match(string(entry, "startedDateTime", where), ISO_8601);
    const time = number(entry, "time", where);
    const request = object(entry.request, `${where}.request`);
    for (const key of ["method", "url", "httpVersion"]) string(request, key, `${where}.request`);
    assert.ok(URL.canParse(request.url as string), `${where}.request.url: absolute URL`);
    cookies(request.cookies, `${where}.request.cookies`);
    pairs(request.headers, `${where}.request.headers`);
    pairs(request.queryString, `${where}.request.queryString`);
    number(request, "headersSize", `${where}.request`);
    number(request, "bodySize", `${where}.request`);
    if (request.postData !== undefined) {
      const post = object(request.postData, `${where}.request.postData`);
      string(post, "mimeType", `${where}.request.postData`);
      string(post, "text", `${where}.request.postData`);
      assert.ok(post.params === undefined, "postData: text and params are mutually exclusive");
    }
    const response = object(entry.response, `${where}.response`);
    number(response, "status", `${where}.response`);
    for (const key of ["statusText", "httpVersion", "redirectURL"]) {
      string(response, key, `${where}.response`);
    }
    cookies(response.cookies, `${where}.response.cookies`);
    pairs(response.headers, `${where}.response.headers`);
    number(response, "headersSize", `${where}.response`);
    number(response, "bodySize", `${where}.response`);
    const content = object(response.content, `${where}.response.content`);
    number(content, "size", `${where}.response.content`);
    string(content, "mimeType", `${where}.response.content`);
    optional(content, "text", "string", `${where}.response.content`);
    optional(content, "compression", "number", `${where}.response.content`);
    if (content.encoding !== undefined) assert.equal(content.encoding, "base64");
    object(entry.cache, `${where}.cache`);
    const timings = object(entry.timings, `${where}.timings`);
    let sum = 0;
    for (const key of ["send", "wait", "receive"]) sum += number(timings, key, `${where}.timings`);
    for (const key of ["blocked", "dns", "connect", "ssl"]) {
      if (timings[key] === undefined) continue;
      const value = number(timings, key, `${where}.timings`);
      assert.ok(value >= -1, `${where}.timings.${key}: -1 or a time`);
      if (value > 0 && key !== "ssl") sum += value; // ssl is part of connect
    }
    assert.ok(Math.abs(time - sum) < 1e-6, `${where}.time is the sum of its timings`);
    for (const key of Object.keys(entry)) {
      const known = [
        "pageref",
        "startedDateTime",
        "time",
        "request",
        "response",
        "cache",
        "timings",
        "serverIPAddress",
        "connection",
        "comment",
      ];
      assert.ok(
        known.includes(key) || key.startsWith("_"),
        `${where}.${key}: custom fields start with _`,
      );
    }
  });
}
