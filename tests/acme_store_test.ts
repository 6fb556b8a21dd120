// The ACME cert dir, SNI choice and retry policy, without a CA: foreign or
// corrupt files and a second server are refused with nothing overwritten.

import assert from "node:assert/strict";
import { CertBook, nameCovers } from "../lib/server/acme/book.ts";
import { AcmeError, parseRetryAfter } from "../lib/server/acme/errors.ts";
import { retryDelay } from "../lib/server/acme/scheduler.ts";
import { CertDirError, CertStore, parseCertificateFile } from "../lib/server/acme/store.ts";
import { DEFAULT_ACME_TIMINGS } from "../lib/server/acme/timings.ts";
import { readFixtureText, startTestServer } from "./helpers.ts";

const DIRECTORY = "https://ca.test:14000/dir";
const pair = readFixtureText("localhost.key") + readFixtureText("localhost.pem");

/** Every file under `dir` with its bytes and modification time. */
function snapshot(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (path: string) => {
    for (const entry of Deno.readDirSync(path)) {
      const full = `${path}/${entry.name}`;
      if (entry.isDirectory) walk(full);
      else {files.set(
          full,
          `${Deno.readTextFileSync(full)}@${Deno.statSync(full).mtime?.getTime()}`,
        );}
    }
  };
  walk(dir);
  return files;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gotunnel-certdir-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("cert dir: created owner-only, written atomically, read back, locked against a second server", () =>
  withDir(async (base) => {
    const dir = `${base}/certs`;
    const store = await CertStore.open(dir, DIRECTORY);
    await store.saveCertificate("*.gotunnel.test", parseCertificateFile(pair));
    await store.saveAccount({
      key: readFixtureText("localhost.key"),
      url: "https://ca.test/acct/1",
    });
    assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
    const saved = `${dir}/ca.test_14000/certs/_wildcard.gotunnel.test.pem`;
    assert.equal(Deno.statSync(saved).mode! & 0o777, 0o600);
    assert.ok(
      ![...Deno.readDirSync(`${dir}/ca.test_14000/certs`)].some((e) => e.name.endsWith(".tmp")),
    );
    await assert.rejects(CertStore.open(dir, DIRECTORY), /another Gotunnel server is using it/);
    store.close();
    const again = await CertStore.open(dir, DIRECTORY);
    try {
      assert.deepEqual([...again.certificates.keys()], ["*.gotunnel.test"]);
      assert.equal(again.account?.url, "https://ca.test/acct/1");
      assert.ok(again.certificates.get("*.gotunnel.test")!.names.includes("*.gotunnel.test"));
    } finally {
      again.close();
    }
  }));

Deno.test("cert dir: a directory Gotunnel did not write is refused, and nothing in it is touched", () =>
  withDir(async (dir) => {
    Deno.writeTextFileSync(`${dir}/notes.txt`, "mine");
    Deno.mkdirSync(`${dir}/ssl`);
    const before = snapshot(dir);
    await assert.rejects(
      CertStore.open(dir, DIRECTORY),
      (e) =>
        e instanceof CertDirError &&
        /holds files that Gotunnel did not write \(notes\.txt, ssl\)/.test(e.message),
    );
    assert.deepEqual(snapshot(dir), before);
    assert.ok(!Deno.readDirSync(dir).some((e) => e.name === "lock"));
  }));

Deno.test("cert dir: a corrupt certificate, key or a foreign file inside is a clear error at start", () =>
  withDir(async (dir) => {
    const store = await CertStore.open(dir, DIRECTORY);
    await store.saveCertificate("gotunnel.test", parseCertificateFile(pair));
    await store.saveAccount({
      key: readFixtureText("localhost.key"),
      url: "https://ca.test/acct/1",
    });
    store.close();
    const certs = `${dir}/ca.test_14000/certs`;
    const cases: [string, () => void, RegExp][] = [
      [
        "a truncated certificate",
        () => Deno.writeTextFileSync(`${certs}/gotunnel.test.pem`, pair.slice(0, pair.length / 2)),
        /certs\/gotunnel\.test\.pem is not a usable certificate/,
      ],
      [
        "a key of another certificate",
        () =>
          Deno.writeTextFileSync(
            `${certs}/gotunnel.test.pem`,
            readFixtureText("localhost-next.key") + readFixtureText("localhost.pem"),
          ),
        /does not match the certificate/,
      ],
      [
        "a corrupt account key",
        () => Deno.writeTextFileSync(`${dir}/ca.test_14000/account.key`, "not a key"),
        /account\.key is not a PEM private key/,
      ],
      [
        "a foreign file",
        () => Deno.writeTextFileSync(`${certs}/README`, "hello"),
        /certs\/README is not Gotunnel's/,
      ],
    ];
    for (const [what, spoil, reason] of cases) {
      spoil();
      const before = snapshot(dir);
      await assert.rejects(
        startTestServer({
          domain: "gotunnel.test",
          acme: {
            email: "ops@example.com",
            agreeToTerms: true,
            directoryUrl: DIRECTORY,
            certDir: dir,
          },
        }),
        (e) => e instanceof CertDirError && reason.test(e.message),
        what,
      );
      assert.deepEqual(snapshot(dir), before, `${what}: nothing overwritten`);
      // Put it right for the next case.
      Deno.writeTextFileSync(`${certs}/gotunnel.test.pem`, pair);
      Deno.writeTextFileSync(`${dir}/ca.test_14000/account.key`, readFixtureText("localhost.key"));
    }
  }));

Deno.test("ACME options: terms must be accepted, names must be labels", async () => {
  const base = { email: "ops@example.com", directoryUrl: DIRECTORY, certDir: "/nonexistent/never" };
  await assert.rejects(
    startTestServer({ acme: { ...base, agreeToTerms: false } }),
    /agreeToTerms/,
  );
  await assert.rejects(
    startTestServer({ acme: { ...base, agreeToTerms: true, names: ["a.b"] } }),
    /Invalid ACME name "a.b"/,
  );
});

Deno.test("SNI: a name's own certificate first, then a wildcard; expired and uncovered ones never", () => {
  const now = Date.parse("2030-01-01T00:00:00Z");
  const book = new CertBook(() => now);
  const base = parseCertificateFile(pair);
  const cert = (names: string[], notAfter: number) => ({ ...base, names, notBefore: 0, notAfter });
  book.set("*.t.test", cert(["t.test", "*.t.test"], now + 1000));
  book.set("a.t.test", cert(["a.t.test"], now + 1000));
  book.set("old.t.test", cert(["old.t.test"], now - 1));
  assert.ok(book.covers("a.t.test") && book.covers("b.t.test") && book.covers("t.test"));
  assert.ok(book.covers("old.t.test"), "the wildcard covers a name whose own certificate expired");
  assert.ok(!book.covers("x.y.t.test") && !book.covers("other.test"));
  assert.ok(nameCovers("*.t.test", "b.t.test") && !nameCovers("*.t.test", "t.test"));
  const lone = new CertBook(() => now);
  lone.set("old.t.test", cert(["old.t.test"], now - 1));
  assert.equal(lone.contextFor("old.t.test"), undefined);
});

Deno.test("retry delays: unreachable soon, refused slowly, a 429's Retry-After honoured", () => {
  const t = DEFAULT_ACME_TIMINGS;
  const unreachable = new AcmeError("unreachable", "down");
  assert.deepEqual([1, 2, 3, 10].map((n) => retryDelay(unreachable, n, t)), [
    1000,
    2000,
    4000,
    30000,
  ]);
  const refused = new AcmeError("refused", "no");
  assert.equal(retryDelay(refused, 1, t), 60_000);
  assert.equal(retryDelay(refused, 20, t), 3_600_000);
  const limited = new AcmeError("rate-limited", "slow down", { retryAfterMs: 7_200_000 });
  assert.equal(retryDelay(limited, 1, t), 7_200_000);
  const forever = new AcmeError("rate-limited", "slow down", { retryAfterMs: 1e12 });
  assert.equal(retryDelay(forever, 1, t), t.retryAfterMaxMs);
  assert.equal(parseRetryAfter("120"), 120_000);
  assert.equal(
    parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", Date.parse("2015-10-21T07:27:00Z")),
    60_000,
  );
  assert.equal(parseRetryAfter("soon"), undefined);
});
