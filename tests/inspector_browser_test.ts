/// <reference lib="dom" />
// The inspector page in a real browser (Debian's chromium, driven by puppeteer-core):
// the live list, the detail with headers and a pretty JSON body, replay with an edited
// header, the HAR download, a gzip body decoded, filters, 360 px and dark mode.
// With GOTUNNEL_SCREENSHOTS=1 the list and detail screenshots are written to docs/.

import assert from "node:assert/strict";
import type { Page } from "npm:puppeteer-core@25.16.0";
import { CHROMIUM, launchChromium } from "./browser.ts";
import { needs, T, waitFor } from "./helpers.ts";
import { checkHar } from "./har_check.ts";
import { inspected } from "./inspector_stack.ts";

const browserTest = { ...needs(CHROMIUM), ...T };

/** The texts of the list's visible rows' cells of class `cell`. */
function visible(page: Page, cell: string): Promise<string[]> {
  return page.$$eval(
    `#rows tr:not([hidden]) td.${cell}`,
    (tds) => tds.map((td) => td.textContent ?? ""),
  );
}

/** Where screenshots go: docs/ when asked for, else a folder that is removed. */
async function screenshotDir(): Promise<{ dir: string; keep: boolean }> {
  if (Deno.env.get("GOTUNNEL_SCREENSHOTS")) {
    return { dir: new URL("../docs/", import.meta.url).pathname, keep: true };
  }
  return { dir: await Deno.makeTempDir({ prefix: "gotunnel-shots-" }), keep: false };
}

Deno.test({
  name: "browser: a request appears in the list within 1 s; its detail shows headers and JSON",
  ...browserTest,
  async fn() {
    await using t = await inspected();
    await using browser = await launchChromium();
    const page = await browser.newPage();
    page.setDefaultTimeout(5000);
    await page.setViewport({ width: 1280, height: 720 });
    await page.goto(t.tunnel.inspector!.url);
    await page.waitForSelector("#empty:not([hidden])");
    // Some traffic of each kind, as a developer would have it.
    await (await t.visit("/")).body?.cancel();
    await (await t.visit("/gzip")).body?.cancel();
    await (await t.visit("/missing", { method: "DELETE" })).body?.cancel();
    const ws = await browser.newPage();
    await ws.evaluate((url) =>
      new Promise<void>((resolve) => {
        const socket = new WebSocket(url);
        socket.onopen = () => ["one", "two", "three"].forEach((m) => socket.send(m));
        let echoes = 0;
        socket.onmessage = () => {
          if (++echoes === 3) resolve();
        };
      }), `ws://insp.localhost:${t.serverPort}/ws`);
    await ws.close();
    await page.bringToFront(); // a page in the background gets no animation frames
    const sent = performance.now();
    await (await t.visit("/api/orders?limit=2", {
      method: "POST",
      headers: { "content-type": "application/json", "x-flavour": "vanilla" },
      body: JSON.stringify({ item: "book", quantity: 2, tags: ["gift", "paper"] }),
    })).body?.cancel();
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll("#rows td.c-path")].some((td) =>
          td.textContent === "/api/orders?limit=2"
        ),
      { timeout: 1000 },
    );
    assert.ok(performance.now() - sent < 1000, "listed within a second, without a reload");
    await page.waitForFunction(() =>
      document.querySelector("#rows td.c-size")?.textContent !== "" &&
      [...document.querySelectorAll("#rows td.c-status")].some((td) => td.textContent === "101 ⇄")
    );
    assert.deepEqual(await visible(page, "c-method"), ["POST", "GET", "DELETE", "GET", "GET"]);
    const wsSize = await page.$$eval(
      "#rows tr td.c-size",
      (tds) => tds.map((td) => td.textContent),
    );
    assert.ok(wsSize.includes("↑3 ↓3 msg"), `WebSocket message counts: ${wsSize}`);
    const shots = await screenshotDir();
    try {
      await page.screenshot({ path: `${shots.dir}/inspector-list.png` });
      await page.click("#rows tr:first-child");
      await page.waitForSelector("#res-body .views");
      const head = await page.$eval("#req-head", (e) => e.textContent ?? "");
      assert.match(head, /^POST \/api\/orders\?limit=2 HTTP\/1\.1\r\n/);
      assert.match(head, /\r\nx-flavour: vanilla\r\n/i);
      await page.waitForSelector("#req-body pre.view-json");
      const json = await page.$eval("#req-body pre.view-json", (e) => e.textContent);
      assert.equal(
        json,
        JSON.stringify({ item: "book", quantity: 2, tags: ["gift", "paper"] }, null, 2),
      );
      await page.screenshot({ path: `${shots.dir}/inspector-detail.png` });
    } finally {
      if (!shots.keep) await Deno.remove(shots.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "browser: replay with an edited header is a new entry with the app's new response",
  ...browserTest,
  async fn() {
    await using t = await inspected();
    await (await t.visit("/flavour", { headers: { "x-flavour": "vanilla" } })).body?.cancel();
    await using browser = await launchChromium();
    const page = await browser.newPage();
    page.setDefaultTimeout(5000);
    await page.goto(t.tunnel.inspector!.url);
    await page.waitForSelector("#rows tr");
    await page.click("#rows tr");
    await page.waitForSelector("#res-body pre");
    await page.click("#edit");
    await page.waitForSelector("#editor:not([hidden])");
    await page.$eval("#e-headers", (area) => {
      const box = area as HTMLTextAreaElement;
      box.value = box.value.replace(/^x-flavour: vanilla$/im, "x-flavour: chocolate");
    });
    await page.click("#e-send");
    await page.waitForFunction(() =>
      document.querySelector("#d-original")?.textContent === "Replay of #1"
    );
    await page.waitForFunction(() =>
      document.querySelector("#res-body pre.view-json")?.textContent?.includes('"chocolate"')
    );
    assert.match(await page.$eval("#d-title", (e) => e.textContent ?? ""), /^#2 GET /);
    await page.waitForFunction(() => document.querySelectorAll("#rows tr").length === 2);
    assert.equal(
      await page.$eval("#rows tr:first-child td.c-path", (e) => e.textContent),
      "↻ /flavour",
    );
  },
});

Deno.test({
  name: "browser: the HAR export downloads and parses; a gzip body is shown decoded; filters",
  ...browserTest,
  async fn() {
    await using t = await inspected();
    await (await t.visit("/gzip")).body?.cancel();
    await (await t.visit("/form", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "name=Ada&lang=en",
    })).body?.cancel();
    await (await t.visit("/nothing-here", { method: "PUT", body: "x" })).body?.cancel();
    await using browser = await launchChromium();
    const page = await browser.newPage();
    page.setDefaultTimeout(5000);
    await page.setViewport({ width: 1280, height: 720 }); // list and detail side by side
    await page.goto(t.tunnel.inspector!.url);
    await page.waitForFunction(() => document.querySelectorAll("#rows tr").length === 3);

    const downloads = await Deno.makeTempDir({ prefix: "gotunnel-har-" });
    try {
      const cdp = await page.createCDPSession();
      await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: downloads });
      await page.$eval("#har", (link) => (link as HTMLAnchorElement).click());
      const file = `${downloads}/gotunnel.har`;
      await waitFor(() => Deno.stat(file).then(() => true, () => false), 5000, "the download");
      const har = JSON.parse(await Deno.readTextFile(file));
      checkHar(har);
      assert.deepEqual(
        har.log.entries.map((e: { request: { url: string } }) => new URL(e.request.url).pathname),
        [
          "/gzip",
          "/form",
          "/nothing-here",
        ],
      );
    } finally {
      await Deno.remove(downloads, { recursive: true });
    }

    await page.click("#rows tr:last-child"); // the oldest: /gzip
    await page.waitForSelector("#res-body pre.view-json");
    assert.equal(
      await page.$eval("#res-body pre.view-json", (e) => e.textContent),
      JSON.stringify({ zipped: true }, null, 2),
    );
    assert.match(
      await page.$eval("#res-body .facts", (e) => e.textContent ?? ""),
      /gzip: \d+ B encoded, 15 B decoded/,
    );

    await page.click("#rows tr:nth-child(2)"); // /form: its fields
    await page.waitForSelector("#req-body .views");
    await page.click('#req-body button[data-view="form"]');
    assert.deepEqual(
      await page.$$eval("#req-body .form-fields td", (tds) => tds.map((td) => td.textContent)),
      ["name", "Ada", "lang", "en"],
    );

    await page.type("#q", "gzip");
    assert.deepEqual(await visible(page, "c-path"), ["/gzip"]);
    await page.$eval("#q", (e) => (e as HTMLInputElement).value = "");
    await page.select("#method", "PUT");
    assert.deepEqual(await visible(page, "c-path"), ["/nothing-here"]);
    await page.select("#method", "");
    await page.select("#status", "2");
    assert.deepEqual((await visible(page, "c-path")).length, 3, "the echo app answers 200 to all");
    await page.select("#status", "4");
    assert.deepEqual(await visible(page, "c-path"), []);
    assert.match(await page.$eval("#count", (e) => e.textContent ?? ""), /^0 of 3 requests$/);
  },
});

Deno.test({
  name: "browser: usable at 360 px wide and in dark mode; captured text is never HTML",
  ...browserTest,
  async fn() {
    await using t = await inspected();
    await (await t.visit("/<img src=x onerror=alert(1)>?q=<b>bold</b>", {
      method: "POST",
      headers: { "content-type": "text/html" },
      body: "<script>document.title='pwned'</script>",
    })).body?.cancel();
    await using browser = await launchChromium();
    const page = await browser.newPage();
    page.setDefaultTimeout(5000);
    await page.setViewport({ width: 360, height: 740 });
    await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "dark" }]);
    await page.goto(t.tunnel.inspector!.url);
    await page.waitForSelector("#rows tr");
    const layout = await page.evaluate(() => ({
      width: document.documentElement.scrollWidth,
      background: getComputedStyle(document.body).backgroundColor,
    }));
    assert.ok(layout.width <= 360, `no sideways scrolling at 360 px (${layout.width})`);
    assert.equal(layout.background, "rgb(13, 17, 23)", "dark background");
    await page.click("#rows tr");
    await page.waitForSelector("#req-body pre");
    const detail = await page.evaluate(() => ({
      listShown: getComputedStyle(document.querySelector("#list-pane")!).display !== "none",
      backShown: getComputedStyle(document.querySelector("#back")!).display !== "none",
      width: document.documentElement.scrollWidth,
      injected:
        document.querySelectorAll("#detail img, #detail b, #detail script, #rows img").length,
      title: document.title,
    }));
    assert.deepEqual(detail, {
      listShown: false,
      backShown: true,
      width: detail.width,
      injected: 0,
      title: "Gotunnel inspector",
    });
    assert.ok(detail.width <= 360, `the detail fits too (${detail.width})`);
    await page.click("#back");
    await page.waitForSelector("#list-pane", { visible: true });
  },
});
