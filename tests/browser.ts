// Test helper for the browser tests (dashboard, inspector): Debian's headless
// Chromium driven by puppeteer-core over a pipe (no port), with a throw-away profile.

import puppeteer, { type Browser } from "npm:puppeteer-core@25.16.0";

/** Where Debian installs Chromium (`apt-get install chromium`). */
export const CHROMIUM = "/usr/bin/chromium";

/** Headless Chromium with a profile of its own that goes away with it. */
export async function launchChromium(): Promise<Browser & AsyncDisposable> {
  const profile = await Deno.makeTempDir({ prefix: "gotunnel-chromium-" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    pipe: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
    ],
  });
  return Object.assign(browser, {
    async [Symbol.asyncDispose]() {
      await browser.close();
      await Deno.remove(profile, { recursive: true });
    },
  });
}
