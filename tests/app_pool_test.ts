// Keep-alive connections to the local app, reused across visitors: fewer connects,
// the visitor's close kept, and a request sent again only when that is safe.

import assert from "node:assert/strict";
import {
  connect,
  encode,
  openTestTunnel,
  rawApp,
  rawRequest,
  readUntil,
  startTestServer,
  T,
  writeAllTo,
} from "./helpers.ts";

/** Reads one request head (and a Content-Length body) from `conn`; null at its end. */
async function nextRequest(
  conn: Deno.Conn,
  seen = "",
): Promise<{ head: string; rest: string } | null> {
  let text = seen;
  try {
    text = await readUntil(conn, /\r\n\r\n/, seen);
  } catch {
    return null;
  }
  const end = text.indexOf("\r\n\r\n") + 4;
  const head = text.slice(0, end);
  const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
  let rest = text.slice(end);
  if (rest.length < length) rest = await readUntil(conn, (t) => t.length >= length, rest);
  return { head: head + rest.slice(0, length), rest: rest.slice(length) };
}

/**
 * An app that answers every request on a connection and records them, as a
 * real HTTP/1.1 server does: it keeps the connection unless the request is
 * HTTP/1.0 or asks to close, and answers an upgrade with 101 and then only
 * waits for the connection to end.
 */
function keepAliveApp(answer = (_head: string) => "hello") {
  const requests: string[] = [];
  const app = rawApp(async (conn) => {
    for (let left = "";;) {
      const request = await nextRequest(conn, left);
      if (!request) return;
      requests.push(request.head);
      left = request.rest;
      if (/^upgrade: /im.test(request.head)) {
        await writeAllTo(
          conn,
          encode(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n",
          ),
        );
        await conn.read(new Uint8Array(1024)).catch(() => null);
        return;
      }
      const closing = /^[^\r]* HTTP\/1\.0\r\n/.test(request.head) ||
        /^connection: close\r$/im.test(request.head);
      const body = answer(request.head);
      await writeAllTo(
        conn,
        encode(
          `HTTP/1.1 200 OK\r\nConnection: ${closing ? "close" : "keep-alive"}\r\n` +
            `Content-Length: ${body.length}\r\n\r\n${body}`,
        ),
      );
      if (closing) return;
    }
  });
  return { app, requests };
}

const closeRequest = (name: string, path = "/", extra = "") =>
  `GET ${path} HTTP/1.1\r\nHost: ${name}.localhost\r\nConnection: close\r\n${extra}\r\n`;

Deno.test({
  name:
    "visitors that ask to close share one kept-alive connection to the app, and are told it closes",
  ...T,
  async fn() {
    const { app, requests } = keepAliveApp();
    await using _app = app;
    await using server = await startTestServer();
    await using _tunnel = await openTestTunnel(server, app.port, { subdomain: "pool" });
    for (let i = 0; i < 20; i++) {
      const answer = await rawRequest(server.addr.port, closeRequest("pool", `/${i}`));
      assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(
        answer,
        /\r\nConnection: close\r\n/i,
        "the visitor is told its connection closes",
      );
      assert.doesNotMatch(answer, /keep-alive/i);
      assert.ok(answer.endsWith("\r\n\r\nhello"));
    }
    assert.equal(requests.length, 20);
    assert.equal(app.accepted, 1, "one connection to the app for 20 visitors");
    for (const head of requests) {
      assert.doesNotMatch(head, /^Connection: close/im, "the app never saw close");
    }
  },
});

Deno.test({
  name: "a reused connection the app closed: a GET goes out again on a new one, a POST never twice",
  ...T,
  async fn() {
    // An app that answers the first request of each connection and closes the
    // connection on the second without a word (as when its idle timeout races us).
    const seen: string[] = [];
    await using app = rawApp(async (conn) => {
      const first = await nextRequest(conn);
      if (!first) return;
      seen.push(first.head.split("\r\n")[0]!);
      await writeAllTo(conn, encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
      const second = await nextRequest(conn, first.rest);
      if (second) seen.push(`dropped ${second.head.split("\r\n")[0]}`);
    });
    await using server = await startTestServer();
    await using _tunnel = await openTestTunnel(server, app.port, { subdomain: "race" });
    assert.match(
      await rawRequest(server.addr.port, closeRequest("race", "/a")),
      /^HTTP\/1\.1 200 [^]*ok$/,
    );
    // The pooled connection is reused and dropped: the GET is sent again on a fresh one.
    assert.match(
      await rawRequest(server.addr.port, closeRequest("race", "/b")),
      /^HTTP\/1\.1 200 [^]*ok$/,
    );
    assert.deepEqual(seen, ["GET /a HTTP/1.1", "dropped GET /b HTTP/1.1", "GET /b HTTP/1.1"]);
    // A POST is not safe to send twice: the visitor is told, the app saw it once.
    await rawRequest(server.addr.port, closeRequest("race", "/c")); // pools a connection again
    seen.length = 0;
    const post = await rawRequest(
      server.addr.port,
      "POST /pay HTTP/1.1\r\nHost: race.localhost\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert.match(post, /^HTTP\/1\.1 502 [^]*closed the connection without answering/);
    assert.deepEqual(seen, ["dropped POST /pay HTTP/1.1"]);
  },
});

Deno.test({
  name:
    "connections the app closes, upgrades and HTTP/1.0 are never pooled; keep-alive visitors keep theirs",
  ...T,
  async fn() {
    const { app, requests } = keepAliveApp((head) => head.split(" ")[1]!);
    await using _app = app;
    await using server = await startTestServer();
    await using _tunnel = await openTestTunnel(server, app.port, { subdomain: "rules" });
    // An HTTP/1.0 visitor: the app closes after the answer (no keep-alive asked).
    await rawRequest(
      server.addr.port,
      "GET /old HTTP/1.0\r\nHost: rules.localhost\r\nConnection: close\r\n\r\n",
    );
    const accepted = app.accepted;
    await rawRequest(server.addr.port, closeRequest("rules", "/next"));
    assert.equal(app.accepted, accepted + 1, "the HTTP/1.0 connection was not reused");
    // A keep-alive visitor sends several requests on its one connection, and gets each answer.
    using visitor = await connect(server.addr.port);
    let seen = "";
    for (const path of ["/1", "/2", "/3"]) {
      await writeAllTo(visitor, encode(`GET ${path} HTTP/1.1\r\nHost: rules.localhost\r\n\r\n`));
      seen = await readUntil(visitor, (t) => t.endsWith(`\r\n\r\n${path}`), seen);
      assert.doesNotMatch(seen, /Connection: close/i);
    }
    assert.ok(requests.some((r) => r.startsWith("GET /3 ")));
    // An upgrade: the app switches, the visitor leaves, and that connection is never pooled.
    const before = app.accepted;
    {
      using upgrading = await connect(server.addr.port);
      await writeAllTo(
        upgrading,
        encode(
          "GET /ws HTTP/1.1\r\nHost: rules.localhost\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n",
        ),
      );
      await readUntil(upgrading, /^HTTP\/1\.1 101 [^]*\r\n\r\n/);
    }
    assert.match(
      await rawRequest(server.addr.port, closeRequest("rules", "/after")),
      /\r\n\r\n\/after$/,
    );
    assert.equal(app.accepted, before + 2, "the upgraded connection was not reused");
  },
});
