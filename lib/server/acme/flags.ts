// The server's ACME flags, read into `ServerAcme`; their part of `--help`.

import { type FlagValue, intFlag, UsageError } from "../../cli.ts";
import { ACME_PER_NAME_ORDERS_PER_HOUR } from "./timings.ts";
import { isSubdomain } from "../../names.ts";
import {
  DEFAULT_ACME_TLS_PORT,
  LETS_ENCRYPT_DIRECTORY,
  LETS_ENCRYPT_STAGING_DIRECTORY,
} from "./defaults.ts";
import type { ServerAcme } from "./service.ts";

/** The ACME flags, as `node:util` `parseArgs` takes them. */
export const ACME_FLAGS = {
  "acme-email": { type: "string" },
  "acme-agree-tos": { type: "boolean" },
  "acme-directory": { type: "string" },
  "acme-staging": { type: "boolean" },
  "acme-ca": { type: "string" },
  "acme-eab-kid": { type: "string" },
  "acme-eab-hmac": { type: "string" },
  "acme-dns-hook": { type: "string" },
  "acme-names": { type: "string", multiple: true },
  "acme-per-name": { type: "boolean" },
  "acme-orders-per-hour": { type: "string" },
  "cert-dir": { type: "string" },
} as const;

/** The ACME part of `--help`. */
export const ACME_USAGE =
  `Automatic HTTPS (ACME; the TLS port is --tls-port, default ${DEFAULT_ACME_TLS_PORT}):
  --acme-email EMAIL     turn ACME on, with this contact address for the CA account
  --acme-agree-tos       accept the CA's terms of service (required with --acme-email)
  --acme-directory URL   the CA's directory (default Let's Encrypt production)
  --acme-staging         Let's Encrypt's staging directory instead (untrusted certificates)
  --acme-ca FILE         trust this CA (PEM) for the directory: a private ACME server's
  --acme-eab-kid KID     external account binding key id, for CAs that need one
  --acme-eab-hmac KEY    ...and its base64url HMAC key
  --acme-dns-hook CMD    wildcard mode (DNS-01): runs "CMD set _acme-challenge.<domain> VALUE"
                         and "CMD unset ..."; it exits 0 once the TXT record is published
  --acme-names A,B       without a DNS hook (HTTP-01): these names get their own certificate
                         when registered, as do names in token scopes (repeatable)
  --acme-per-name        ...and so does any other name, capped by --acme-orders-per-hour
  --acme-orders-per-hour N  new per-name certificates an hour (default ${ACME_PER_NAME_ORDERS_PER_HOUR})
  --cert-dir DIR         account key and certificates (default $XDG_DATA_HOME/gotunnel/certs,
                         else ~/.local/share/gotunnel/certs); locked while the server runs
`;

/**
 * Reads the ACME flags into options (undefined without `--acme-email`);
 * throws UsageError for a flag that needs another or a bad value.
 */
export async function readAcmeFlags(
  values: Record<string, FlagValue>,
  tlsPort: FlagValue,
): Promise<ServerAcme | undefined> {
  const string = (name: string): string | undefined =>
    typeof values[name] === "string" ? values[name] as string : undefined;
  const email = string("acme-email");
  if (email === undefined) {
    const stray = Object.keys(ACME_FLAGS).find((flag) => values[flag] !== undefined);
    if (stray) throw new UsageError(`--${stray} needs --acme-email`);
    return undefined;
  }
  if (!/^[^\s@]+@[^\s@]+$/.test(email)) throw new UsageError(`Invalid --acme-email ${email}`);
  if (values["acme-agree-tos"] !== true) {
    throw new UsageError(
      "--acme-email needs --acme-agree-tos: read the CA's terms of service first " +
        "(Let's Encrypt: https://letsencrypt.org/repository/)",
    );
  }
  if (values["acme-staging"] && string("acme-directory") !== undefined) {
    throw new UsageError("--acme-staging and --acme-directory exclude each other");
  }
  const directoryUrl = values["acme-staging"]
    ? LETS_ENCRYPT_STAGING_DIRECTORY
    : string("acme-directory") ?? LETS_ENCRYPT_DIRECTORY;
  try {
    if (new URL(directoryUrl).protocol !== "https:") throw new TypeError("not https");
  } catch {
    throw new UsageError(`Invalid --acme-directory ${directoryUrl}: use an https:// URL`);
  }
  const kid = string("acme-eab-kid");
  const hmacKey = string("acme-eab-hmac");
  if ((kid === undefined) !== (hmacKey === undefined)) {
    throw new UsageError("--acme-eab-kid and --acme-eab-hmac go together");
  }
  const caFile = string("acme-ca");
  let caCerts: string[] | undefined;
  if (caFile !== undefined) {
    let text;
    try {
      text = await Deno.readTextFile(caFile);
    } catch (e) {
      throw new UsageError(`Cannot read --acme-ca ${caFile}: ${(e as Error).message}`);
    }
    if (!text.includes("-----BEGIN CERTIFICATE-----")) {
      throw new UsageError(`--acme-ca ${caFile} holds no PEM certificate`);
    }
    caCerts = [text];
  }
  const names = ((values["acme-names"] as string[] | undefined) ?? [])
    .flatMap((list) => list.split(",")).map((n) => n.trim().toLowerCase()).filter((n) => n !== "");
  const bad = names.find((n) => !isSubdomain(n));
  if (bad !== undefined) {
    throw new UsageError(`Invalid --acme-names "${bad}": use subdomain labels`);
  }
  const dnsHook = string("acme-dns-hook");
  const perName = values["acme-per-name"] === true;
  if (dnsHook !== undefined && (names.length > 0 || perName)) {
    throw new UsageError(
      "--acme-names and --acme-per-name are for HTTP-01: the DNS hook's wildcard covers every name",
    );
  }
  if (values["acme-orders-per-hour"] !== undefined && !perName) {
    throw new UsageError("--acme-orders-per-hour needs --acme-per-name");
  }
  const certDir = string("cert-dir");
  return {
    email,
    agreeToTerms: true,
    directoryUrl,
    ...(caCerts ? { caCerts } : {}),
    ...(kid !== undefined && hmacKey !== undefined ? { eab: { kid, hmacKey } } : {}),
    ...(dnsHook !== undefined ? { dnsHook } : {}),
    ...(names.length > 0 ? { names } : {}),
    perName,
    ordersPerHour: intFlag(
      "acme-orders-per-hour",
      values["acme-orders-per-hour"],
      ACME_PER_NAME_ORDERS_PER_HOUR,
      1,
      10_000,
    ),
    ...(certDir !== undefined ? { certDir } : {}),
    port: intFlag("tls-port", tlsPort, DEFAULT_ACME_TLS_PORT, 0, 65535),
  };
}
