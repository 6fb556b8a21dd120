// ACME defaults, apart from the service so that reading flags loads no certificate code.

/** Let's Encrypt's production directory, the default CA. */
export const LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory";
/** Let's Encrypt's staging directory (untrusted certificates, generous rate limits). */
export const LETS_ENCRYPT_STAGING_DIRECTORY =
  "https://acme-staging-v02.api.letsencrypt.org/directory";
/** The HTTPS port when none is given. */
export const DEFAULT_ACME_TLS_PORT = 8443;
