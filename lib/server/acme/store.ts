// The certificate directory (--cert-dir): the ACME account key and the
// certificates, owner-only, each written atomically, the whole directory locked
// against a second server. Anything in it that Gotunnel did not write, or that
// does not parse, is an error at start: nothing is overwritten.

import { createPrivateKey, X509Certificate } from "node:crypto";

/** A certificate with its key, as stored and served. */
export interface StoredCertificate {
  /** PEM chain, leaf first. */
  cert: string;
  /** PEM private key. */
  key: string;
  /** DNS names the leaf covers (`*.` for a wildcard). */
  names: string[];
  /** Start of its validity (ms since the epoch). */
  notBefore: number;
  /** End of its validity (ms since the epoch). */
  notAfter: number;
}

/** The ACME account kept for one CA directory. */
export interface StoredAccount {
  /** PEM private key of the account. */
  key: string;
  /** The account's URL at the CA, once registered. */
  url: string | undefined;
}

/** Marks a directory as Gotunnel's; its `format` is checked. */
const MARKER = "gotunnel-certs.json";
const FORMAT = 1;
const LOCK = "lock";
const ACCOUNT_KEY = "account.key";
const ACCOUNT_JSON = "account.json";
const CERTS = "certs";
const TEMP = /\.tmp$/;
/** A certificate file: its id (`example.com`, `_wildcard.example.com`) and `.pem`. */
const CERT_FILE = /^(_wildcard\.)?[a-z0-9.-]+\.pem$/;

/** Why the cert dir cannot be used; the server refuses to start with it. */
export class CertDirError extends Error {
  override name = "CertDirError";
}

/** The default `--cert-dir`: `$XDG_DATA_HOME/gotunnel/certs`, else `~/.local/share/gotunnel/certs`. */
export function defaultCertDir(env: (name: string) => string | undefined): string {
  const data = env("XDG_DATA_HOME");
  if (data) return `${data}/gotunnel/certs`;
  const home = env("HOME");
  if (!home) {
    throw new CertDirError("Cannot find a cert dir: set HOME, XDG_DATA_HOME or --cert-dir");
  }
  return `${home}/.local/share/gotunnel/certs`;
}

/** The file name of a certificate id: `*.example.com` is `_wildcard.example.com.pem`. */
export function certFileName(id: string): string {
  return `${id.replace(/^\*\./, "_wildcard.")}.pem`;
}

/** Parses a stored certificate file (key and chain in one PEM file); throws why not. */
export function parseCertificateFile(text: string): StoredCertificate {
  const key = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----\n?/
    .exec(text)?.[0];
  const certs = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g);
  if (!key || !certs) throw new SyntaxError("expected a PEM private key and certificate chain");
  const leaf = new X509Certificate(certs[0]!);
  if (!leaf.checkPrivateKey(createPrivateKey(key))) {
    throw new SyntaxError("the private key does not match the certificate");
  }
  return {
    cert: certs.join(""),
    key,
    names: (leaf.subjectAltName ?? "").split(", ")
      .filter((n) => n.startsWith("DNS:")).map((n) => n.slice(4).toLowerCase()),
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
  };
}

/** Writes `text` to `path` owner-only and atomically: a temporary file, then a rename. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const temp = `${path}.tmp`;
  await Deno.writeTextFile(temp, text, { mode: 0o600 });
  await Deno.chmod(temp, 0o600);
  await Deno.rename(temp, path);
}

async function entries(dir: string): Promise<Deno.DirEntry[]> {
  const list: Deno.DirEntry[] = [];
  for await (const entry of Deno.readDir(dir)) list.push(entry);
  return list.sort((a, b) => a.name.localeCompare(b.name));
}

/** The folder of one CA directory URL inside the cert dir: its host, `:` as `_`. */
export function caFolderName(directoryUrl: string): string {
  return new URL(directoryUrl).host.toLowerCase().replace(/[^a-z0-9.-]/g, "_");
}

/** An open, locked cert dir, for one CA directory. */
export class CertStore {
  /** The cert dir. */
  readonly dir: string;
  #ca: string;
  #lock: Deno.FsFile;
  #certificates: Map<string, StoredCertificate>;
  #account: StoredAccount | undefined;

  private constructor(
    dir: string,
    ca: string,
    lock: Deno.FsFile,
    certificates: Map<string, StoredCertificate>,
    account: StoredAccount | undefined,
  ) {
    this.dir = dir;
    this.#ca = ca;
    this.#lock = lock;
    this.#certificates = certificates;
    this.#account = account;
  }

  /**
   * Opens `dir` for the CA at `directoryUrl`: creates it (owner-only) if
   * missing, takes its lock, and reads and checks everything in it. Throws
   * {@linkcode CertDirError} naming the file when another server holds the lock,
   * or a file is not Gotunnel's or does not parse; nothing is written then.
   */
  static async open(dir: string, directoryUrl: string): Promise<CertStore> {
    const fail = (why: string, cause?: unknown): never => {
      throw new CertDirError(`Cannot use cert dir ${dir}: ${why}`, { cause });
    };
    let existing: Deno.DirEntry[] = [];
    try {
      existing = await entries(dir);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) fail((e as Error).message, e);
      try {
        await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      } catch (e) {
        fail((e as Error).message, e);
      }
    }
    if (existing.length > 0 && !existing.some((e) => e.name === MARKER)) {
      fail(
        `it holds files that Gotunnel did not write (${
          existing.slice(0, 3).map((e) => e.name).join(", ")
        }); use an empty or new directory`,
      );
    }
    if (existing.length > 0) await checkMarker(`${dir}/${MARKER}`, fail);
    const lock = await Deno.open(`${dir}/${LOCK}`, { create: true, write: true, mode: 0o600 });
    let locked = false;
    try {
      locked = await lock.tryLock(true);
    } catch (e) {
      lock.close();
      fail(`cannot lock it: ${(e as Error).message}`, e);
    }
    if (!locked) {
      lock.close();
      fail("another Gotunnel server is using it (its lock is held)");
    }
    try {
      const ca = caFolderName(directoryUrl);
      for (const entry of existing) {
        if (entry.name === MARKER || entry.name === LOCK) continue;
        if (!entry.isDirectory) fail(`${entry.name} is not Gotunnel's; move it away`);
        await checkCaFolder(`${dir}/${entry.name}`, fail);
      }
      const folder = `${dir}/${ca}`;
      const account = await readAccount(folder, fail);
      const certificates = await readCertificates(`${folder}/${CERTS}`, fail);
      if (existing.length === 0) {
        await writeAtomically(`${dir}/${MARKER}`, JSON.stringify({ format: FORMAT }) + "\n");
      }
      return new CertStore(dir, ca, lock, certificates, account);
    } catch (e) {
      lock.close();
      throw e;
    }
  }

  /** The account for this CA, if one was stored. */
  get account(): StoredAccount | undefined {
    return this.#account;
  }

  /** The stored certificates, by id (`example.com`, `*.example.com`). */
  get certificates(): ReadonlyMap<string, StoredCertificate> {
    return this.#certificates;
  }

  /** Stores the account key (before the account is registered) and, once known, its URL. */
  async saveAccount(account: StoredAccount): Promise<void> {
    const folder = `${this.dir}/${this.#ca}`;
    await Deno.mkdir(folder, { recursive: true, mode: 0o700 });
    if (this.#account?.key !== account.key) {
      await writeAtomically(`${folder}/${ACCOUNT_KEY}`, account.key);
    }
    if (account.url !== undefined) {
      await writeAtomically(
        `${folder}/${ACCOUNT_JSON}`,
        JSON.stringify({ url: account.url }) + "\n",
      );
    }
    this.#account = account;
  }

  /** Stores a certificate under `id`, replacing the one before it. */
  async saveCertificate(id: string, certificate: StoredCertificate): Promise<void> {
    const folder = `${this.dir}/${this.#ca}/${CERTS}`;
    await Deno.mkdir(folder, { recursive: true, mode: 0o700 });
    await writeAtomically(`${folder}/${certFileName(id)}`, certificate.key + certificate.cert);
    this.#certificates.set(id, certificate);
  }

  /** Releases the lock. */
  close(): void {
    try {
      this.#lock.close();
    } catch {
      // closed already
    }
  }
}

async function checkMarker(path: string, fail: (why: string, cause?: unknown) => never) {
  let format: unknown;
  try {
    format = JSON.parse(await Deno.readTextFile(path)).format;
  } catch (e) {
    fail(`${MARKER} does not parse: ${(e as Error).message}`, e);
  }
  if (format !== FORMAT) fail(`${MARKER} says format ${format}, this server reads ${FORMAT}`);
}

/** Checks that a CA folder holds only what Gotunnel writes there. */
async function checkCaFolder(folder: string, fail: (why: string) => never): Promise<void> {
  const name = folder.slice(folder.lastIndexOf("/") + 1);
  for (const entry of await entries(folder)) {
    const known = entry.isFile && [ACCOUNT_KEY, ACCOUNT_JSON].includes(entry.name) ||
      entry.isDirectory && entry.name === CERTS || entry.isFile && TEMP.test(entry.name);
    if (!known) fail(`${name}/${entry.name} is not Gotunnel's; move it away`);
  }
  for (const entry of await entries(`${folder}/${CERTS}`).catch(() => [])) {
    if (!(entry.isFile && (CERT_FILE.test(entry.name) || TEMP.test(entry.name)))) {
      fail(`${name}/${CERTS}/${entry.name} is not Gotunnel's; move it away`);
    }
  }
}

async function readAccount(
  folder: string,
  fail: (why: string, cause?: unknown) => never,
): Promise<StoredAccount | undefined> {
  let key: string;
  try {
    key = await Deno.readTextFile(`${folder}/${ACCOUNT_KEY}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    return fail((e as Error).message, e);
  }
  try {
    createPrivateKey(key);
  } catch (e) {
    fail(`${ACCOUNT_KEY} is not a PEM private key (${(e as Error).message})`, e);
  }
  let url: string | undefined;
  try {
    const json = JSON.parse(await Deno.readTextFile(`${folder}/${ACCOUNT_JSON}`));
    if (typeof json?.url !== "string") throw new SyntaxError("no url");
    url = json.url;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      fail(`${ACCOUNT_JSON} does not parse: ${(e as Error).message}`, e);
    }
  }
  return { key, url };
}

async function readCertificates(
  folder: string,
  fail: (why: string, cause?: unknown) => never,
): Promise<Map<string, StoredCertificate>> {
  const certificates = new Map<string, StoredCertificate>();
  let list: Deno.DirEntry[] = [];
  try {
    list = await entries(folder);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) fail((e as Error).message, e);
  }
  for (const entry of list) {
    if (TEMP.test(entry.name)) continue; // a write cut short; the next one replaces it
    let certificate: StoredCertificate;
    try {
      certificate = parseCertificateFile(await Deno.readTextFile(`${folder}/${entry.name}`));
    } catch (e) {
      fail(`${CERTS}/${entry.name} is not a usable certificate: ${(e as Error).message}`, e);
    }
    const id = entry.name.slice(0, -".pem".length).replace(/^_wildcard\./, "*.");
    certificates.set(id, certificate!);
  }
  return certificates;
}
