// The dashboard in a real browser (headless Chromium through puppeteer-core):
// tunnels, totals and refusals shown, live updates, the token form, no CSP
// violation; the screenshot in docs/ comes from here (UPDATE_SCREENSHOTS=1).

import assert from "node:assert/strict";
import type { Browser, Page } from "npm:puppeteer-core@25.16.0";
import { launchChromium } from "./browser.ts";
import { DASHBOARD_JS } from "../lib/server/dashboard.ts";
import type { TunnelServer } from "../lib/server/server.ts";
import {
  connect,
  encode,
  HOST,
  needs,
  openTestTunnel,
  rawRequest,
  startApp,
  startTestServer,
  T,
  waitFor,
  writeAllTo,
} from "./helpers.ts";

const BROWSER_T = { ...T, timeout: 60_000 };
const SCREENSHOT = new URL("../docs/dashboard.png", import.meta.url);

/** A page whose console errors, page errors and failed requests are kept. */
async function watchedPage(browser: Browser): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage();
  await page.setViewport({ width: 1180, height: 600, deviceScaleFactor: 1 });
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warn") problems.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e}`));
  return { page, problems };
}

/** The text of every row of table `id`, cells joined with " | ". */
function rows(page: Page, id: string): Promise<string[]> {
  return page.$$eval(
    `#${id} tbody tr`,
    (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent).join(" | ")),
  );
}

const dashboardUrl = (server: TunnelServer) => `http://${HOST}:${server.adminAddr!.port}/dashboard`;

Deno.test("the dashboard's script writes text, never HTML", () => {
  assert.doesNotMatch(
    DASHBOARD_JS,
    /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/,
  );
});

Deno.test({
  name: "the dashboard shows tunnels, totals and refusals, and follows changes live (screenshot)",
  ...needs("chromium"),
  ...BROWSER_T,
  async fn() {
    await using app = startApp();
    await using server = await startTestServer({ admin: { port: 0 } });
    const port = server.addr.port;
    const tunnels = [];
    for (const subdomain of ["demo", "shop"]) {
      tunnels.push(await openTestTunnel(server, app.addr.port, { subdomain }));
    }
    const get = (host: string) =>
      rawRequest(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    for (let i = 0; i < 12; i++) assert.match(await get("demo.localhost"), / 200 /);
    for (let i = 0; i < 5; i++) assert.match(await get("shop.localhost"), / 200 /);
    for (let i = 0; i < 3; i++) assert.match(await get("nobody.localhost"), / 404 /);
    assert.match(await rawRequest(port, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), / 400 /);
    await waitFor(() => server.tunnels().every((t) => t.streams === 0), 5_000, "streams to end");

    await using browser = await launchChromium();
    const { page, problems } = await watchedPage(browser);
    await page.goto(dashboardUrl(server));
    await page.waitForFunction("Number(document.body.dataset.updates) >= 1", {
      timeout: 10_000,
    });
    const shown = await rows(page, "tunnels");
    assert.equal(shown.length, 2);
    assert.match(shown[0]!, /^demo \| 127\.0\.0\.1:\d+ \| \d\d:\d\d:\d\d · \d+ s ago \| 0 \| /);
    assert.match(shown[0]!, / \| 0\.20$/); // 12 streams over the last minute
    assert.match(shown[1]!, /^shop \| /);
    const refused = await rows(page, "refusals");
    assert.ok(refused.includes("connection | 404 | no such tunnel or host | 3"), `${refused}`);
    assert.ok(refused.includes("connection | 400 | malformed request head | 1"), `${refused}`);
    assert.equal(await page.$eval("#t-tunnels", (e) => e.textContent), "2");
    assert.equal(await page.$eval("#t-streams", (e) => e.textContent), "17");

    // Live: a tunnel that comes and one that goes show up at the next poll.
    await using blog = await openTestTunnel(server, app.addr.port, { subdomain: "blog" });
    await tunnels.shift()!.close();
    await page.waitForFunction(
      `[...document.querySelectorAll("#tunnels td.name")].map((td) => td.textContent).join()
        === "shop,blog"`,
      { timeout: 10_000 },
    );
    await get("blog.localhost");
    const download =
      `GET /bytes/1500000 HTTP/1.1\r\nHost: shop.localhost\r\nConnection: close\r\n\r\n`;
    assert.match(await rawRequest(port, download), / 200 /);
    // An upload still under way: an open stream until it is closed.
    using upload = await connect(port);
    await writeAllTo(
      upload,
      encode("POST /sha256 HTTP/1.1\r\nHost: blog.localhost\r\nContent-Length: 9000\r\n\r\nabc"),
    );
    await page.waitForFunction(
      `document.querySelector("#t-streams").textContent === "20" &&
        document.querySelector("#t-open").textContent === "1"`,
      { timeout: 10_000 },
    );
    assert.match((await rows(page, "tunnels"))[1]!, /^blog \| .* \| 1 \| 59 B \| \d+ B \| 0\.03$/);
    const path = Deno.env.get("UPDATE_SCREENSHOTS")
      ? SCREENSHOT.pathname
      : await Deno.makeTempFile({ suffix: ".png" });
    await page.screenshot({ path: path as `${string}.png`, fullPage: true });
    const png = await Deno.readFile(path);
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
    if (path !== SCREENSHOT.pathname) await Deno.remove(path);
    assert.deepEqual(problems, []); // nothing broke the CSP, no script error
    await blog.close();
    for (const tunnel of tunnels) await tunnel.close();
  },
});

Deno.test({
  name: "with an admin token the dashboard asks for it, refuses a wrong one, then shows the data",
  ...needs("chromium"),
  ...BROWSER_T,
  async fn() {
    const token = "dashboard-token-0123456789";
    await using server = await startTestServer({ admin: { port: 0, token } });
    await using browser = await launchChromium();
    const { page, problems } = await watchedPage(browser);
    await page.goto(dashboardUrl(server));
    await page.waitForSelector("#login:not([hidden])", { timeout: 10_000 });
    assert.equal(await page.$eval("#main", (e) => e.hasAttribute("hidden")), true);
    await page.type("#token", "wrong-token-0123456789");
    await page.click("#login button");
    await page.waitForSelector("#login-error:not([hidden])", { timeout: 10_000 });
    await page.type("#token", token);
    await page.click("#login button");
    await page.waitForFunction("Number(document.body.dataset.updates) >= 1", {
      timeout: 10_000,
    });
    assert.equal(await page.$eval("#login", (e) => e.hasAttribute("hidden")), true);
    assert.equal(await page.$eval("#no-tunnels", (e) => e.textContent), "No tunnels right now.");
    // The two 401s are the browser's own console lines; nothing else.
    assert.deepEqual(problems.filter((p) => !/401 \(Unauthorized\)/.test(p)), []);
  },
});
