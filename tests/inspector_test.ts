// The client inspector over real sockets: its JSON API on exchanges through a tunnel,
// replay, HAR, the event stream, its Host and Origin checks, its port and its close.

import assert from "node:assert/strict";
import { inspectorPorts, serveOnFirstFree } from "../lib/client/inspector/inspector.ts";
import { CONTENT_SECURITY_POLICY } from "../lib/client/inspector/server.ts";
import { silentLogger } from "../lib/log.ts";
import { decode, HOST, T, waitFor } from "./helpers.ts";
import { inspected } from "./inspector_stack.ts";
import { checkHar } from "./har_check.ts";

async function list(api: (path: string) => Promise<Response>) {
  const res = await api("/api/requests");
  assert.equal(res.status, 200);
  return (await res.json()).requests as { id: number; method: string; target: string }[];
}

Deno.test({
  name: "inspector: a request through the tunnel is listed and detailed by the JSON API",
  ...T,
  async fn() {
    await using t = await inspected();
    assert.match(t.tunnel.inspector!.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const sent = await t.visit("/hello?x=1", {
      method: "POST",
      headers: { "content-type": "application/json", "x-flavour": "plain" },
      body: JSON.stringify({ a: 1 }),
    });
    assert.equal(sent.status, 200);
    await sent.body?.cancel();
    await waitFor(() => t.exchanges.length === 1, 5000, "the exchange");
    const [summary] = await list(t.api);
    assert.deepEqual([summary!.method, summary!.target], ["POST", "/hello?x=1"]);
    const res = await t.api(`/api/requests/${summary!.id}`);
    assert.equal(res.headers.get("content-security-policy"), CONTENT_SECURITY_POLICY);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    const detail = await res.json();
    assert.equal(detail.status, 200);
    assert.match(detail.url, /^http:\/\/insp\.localhost:\d+\/hello\?x=1$/);
    assert.match(detail.request.head.raw, /^POST \/hello\?x=1 HTTP\/1\.1\r\n/);
    assert.ok(
      detail.request.head.headers.some(([n, v]: string[]) => n === "x-flavour" && v === "plain"),
    );
    assert.equal(detail.response.body.contentType, "application/json");
    assert.match(detail.curl, /^curl 'http:\/\/insp\.localhost:\d+\/hello\?x=1' /);
    const body = await t.api(detail.request.body.url);
    assert.equal(body.headers.get("content-type"), "application/octet-stream");
    assert.equal(body.headers.get("x-content-type-options"), "nosniff");
    assert.match(body.headers.get("content-disposition") ?? "", /^attachment/);
    assert.equal(await body.text(), '{"a":1}');
    const answer = JSON.parse(await (await t.api(detail.response.body.url)).text());
    assert.equal(answer.flavour, "plain");
    assert.equal(t.exchanges[0]!.id, summary!.id, "onExchange saw the same exchange");
    const page = await t.api("/");
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    await page.body?.cancel();
  },
});

Deno.test({
  name: "inspector: a Host that is not its own gets 403 (DNS rebinding); its own names pass",
  ...T,
  async fn() {
    await using t = await inspected();
    const port = Number(t.inspector.port);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) {
      const res = await t.api("/api/requests", { headers: { host } });
      assert.equal(res.status, 200, host);
      await res.body?.cancel();
    }
    for (
      const host of [
        `evil.example:${port}`,
        `127.0.0.1:${port + 1}`,
        "localhost",
        `x.localhost:${port}`,
      ]
    ) {
      const res = await t.api("/api/requests", { headers: { host } });
      assert.equal(res.status, 403, host);
      assert.match((await res.json()).error, /DNS rebinding/);
    }
  },
});

Deno.test({
  name: "inspector: replay and clear refuse a foreign Origin (CSRF); no Origin or its own pass",
  ...T,
  async fn() {
    await using t = await inspected();
    await (await t.visit("/a")).body?.cancel();
    await waitFor(() => t.exchanges.length === 1, 5000, "the exchange");
    const id = t.exchanges[0]!.id;
    for (
      const origin of [
        "http://evil.example",
        "null",
        `http://localhost:${Number(t.inspector.port) + 1}`,
      ]
    ) {
      const replay = await t.api(`/api/requests/${id}/replay`, {
        method: "POST",
        headers: { origin },
      });
      assert.equal(replay.status, 403, origin);
      assert.match((await replay.json()).error, /another site/);
      const clear = await t.api("/api/requests", { method: "DELETE", headers: { origin } });
      assert.equal(clear.status, 403, origin);
      await clear.body?.cancel();
    }
    const crossSiteRead = await t.api("/api/requests", {
      headers: { "sec-fetch-site": "cross-site" },
    });
    assert.equal(crossSiteRead.status, 403);
    await crossSiteRead.body?.cancel();
    assert.equal((await list(t.api)).length, 1, "nothing was replayed or cleared");
    const own = await t.api(`/api/requests/${id}/replay`, {
      method: "POST",
      headers: { origin: t.inspector.origin },
    });
    assert.equal(own.status, 201);
    await own.body?.cancel();
    const script = await t.api(`/api/requests/${id}/replay`, { method: "POST" }); // curl: no Origin
    assert.equal(script.status, 201);
    await script.body?.cancel();
    const get = await t.api(`/api/requests/${id}/replay`);
    assert.equal(get.status, 405, "a GET changes nothing");
    await get.body?.cancel();
    const cleared = await t.api("/api/requests", { method: "DELETE" });
    assert.equal(cleared.status, 204);
    assert.deepEqual(await list(t.api), []);
  },
});

Deno.test({
  name: "inspector: replay as it was and edited reaches the app again and is a new linked entry",
  ...T,
  async fn() {
    await using t = await inspected();
    const sent = await t.visit("/form", {
      method: "POST",
      headers: { "x-flavour": "vanilla", "content-type": "application/x-www-form-urlencoded" },
      body: "a=1&b=2",
    });
    await sent.body?.cancel();
    await waitFor(() => t.exchanges.length === 1, 5000, "the exchange");
    const id = t.exchanges[0]!.id;
    const again = await t.api(`/api/requests/${id}/replay`, { method: "POST" });
    assert.equal(again.status, 201);
    const first = await again.json();
    assert.equal(first.error, undefined);
    const replayed = await (await t.api(`/api/requests/${first.id}`)).json();
    assert.equal(replayed.replayOf, id);
    assert.equal(replayed.status, 200);
    const answer = JSON.parse(await (await t.api(replayed.response.body.url)).text());
    assert.deepEqual([answer.method, answer.target, answer.flavour, answer.body], [
      "POST",
      "/form",
      "vanilla",
      "a=1&b=2",
    ]);
    assert.equal(
      answer.xff,
      "127.0.0.1",
      "the app sees the original visitor, as through the tunnel",
    );

    const original = await (await t.api(`/api/requests/${id}`)).json();
    const headers = original.request.head.headers.map(([n, v]: [string, string]) =>
      n.toLowerCase() === "x-flavour" ? [n, "chocolate"] : [n, v]
    );
    const edited = await t.api(`/api/requests/${id}/replay`, {
      method: "POST",
      body: JSON.stringify({ method: "PUT", target: "/form?v=2", headers, body: "c=3" }),
    });
    const second = await edited.json();
    const answer2 = JSON.parse(
      await (await t.api(`/api/requests/${second.id}/response/body`)).text(),
    );
    assert.deepEqual([answer2.method, answer2.target, answer2.flavour, answer2.body], [
      "PUT",
      "/form?v=2",
      "chocolate",
      "c=3",
    ]);
    const bad = await t.api(`/api/requests/${id}/replay`, {
      method: "POST",
      body: JSON.stringify({ headers: [["bad name", "x"]] }),
    });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error, /invalid header name/);
    const missing = await t.api("/api/requests/999/replay", { method: "POST" });
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  },
});

Deno.test({
  name: "inspector: a replay to an app that is gone is an entry that says why",
  ...T,
  async fn() {
    await using t = await inspected();
    await (await t.visit("/x")).body?.cancel();
    await waitFor(() => t.exchanges.length === 1, 5000, "the exchange");
    await t.app.shutdown();
    const res = await t.api(`/api/requests/${t.exchanges[0]!.id}/replay`, { method: "POST" });
    assert.equal(res.status, 201);
    const { id, error } = await res.json();
    assert.match(error, /cannot reach the local app at 127\.0\.0\.1:\d+: connection refused/);
    const entry = await (await t.api(`/api/requests/${id}`)).json();
    assert.deepEqual([entry.status, entry.problem, entry.replayOf], [null, error, 1]);
  },
});

Deno.test({
  name: "inspector: the HAR export is HAR 1.2, with the gzip body decoded",
  ...T,
  async fn() {
    await using t = await inspected();
    await (await t.visit("/gzip")).body?.cancel();
    await (await t.visit("/plain?q=1", { method: "POST", body: "hi", headers: { cookie: "a=b" } }))
      .body?.cancel();
    await waitFor(() => t.exchanges.length === 2, 5000, "two exchanges");
    const res = await t.api("/api/requests.har");
    assert.match(
      res.headers.get("content-disposition") ?? "",
      /attachment; filename="gotunnel\.har"/,
    );
    const har = await res.json();
    checkHar(har);
    const [zipped, plain] = har.log.entries;
    assert.equal(zipped.response.content.text, '{"zipped":true}');
    assert.ok(zipped.response.content.compression < 0, "gzip grew this tiny body");
    assert.equal(plain.request.postData.text, "hi");
    assert.deepEqual(plain.request.queryString, [{ name: "q", value: "1" }]);
    assert.deepEqual(plain.request.cookies, [{ name: "a", value: "b" }]);
    assert.equal(plain.response.cookies[0].httpOnly, true);
  },
});

Deno.test({
  name: "inspector: the event stream starts with a snapshot and sends each new exchange",
  ...T,
  async fn() {
    await using t = await inspected();
    const res = await t.api("/api/events");
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = "";
    const until = async (pattern: RegExp) => {
      while (!pattern.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${pattern}: ${text}`);
        text += decode(value);
      }
    };
    await until(/event: reset\ndata: \{"limit":500,"requests":\[\]\}\n\n/);
    const sent = performance.now();
    await (await t.visit("/live")).body?.cancel();
    await until(/event: exchange\ndata: \{[^\n]*"target":"\/live"[^\n]*"state":"complete"/);
    assert.ok(performance.now() - sent < 1000, "within a second");
    await reader.cancel();
  },
});

Deno.test({
  name: "inspector: closes with the tunnel; the port range starts at 4040 and moves on when taken",
  ...T,
  async fn() {
    const t = await inspected();
    const port = Number(t.inspector.port);
    await t[Symbol.asyncDispose]();
    await assert.rejects(Deno.connect({ hostname: HOST, port }), Deno.errors.ConnectionRefused);

    assert.deepEqual(inspectorPorts(undefined), [
      4040,
      4041,
      4042,
      4043,
      4044,
      4045,
      4046,
      4047,
      4048,
      4049,
      4050,
      0,
    ]);
    assert.deepEqual(inspectorPorts(5000), [5000]);
    using a = Deno.listen({ hostname: HOST, port: 0 });
    using b = Deno.listen({ hostname: HOST, port: 0 });
    const stop = new AbortController();
    const server = serveOnFirstFree(
      HOST,
      [a.addr.port, b.addr.port, 0],
      () => Promise.resolve(new Response("ok")),
      stop.signal,
      silentLogger,
    );
    assert.ok(![a.addr.port, b.addr.port].includes(server.addr.port));
    await server.shutdown();
    assert.throws(
      () =>
        serveOnFirstFree(
          HOST,
          [a.addr.port],
          () => Promise.resolve(new Response()),
          stop.signal,
          silentLogger,
        ),
      /Cannot start the inspector on 127\.0\.0\.1:\d+/,
    );
  },
});
