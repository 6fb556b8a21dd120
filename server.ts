/**
 * The Gotunnel server: run it on a public host with a wildcard DNS record.
 *
 * ```sh
 * deno run -A jsr:@gotunnel/server --domain tunnel.example --port 80
 * ```
 *
 * @module
 */

import { UsageError } from "./lib/cli.ts";
import {
  readPemFile,
  readReservedNames,
  readServerCommand,
  readTokens,
  type ReloadFiles,
  SERVER_USAGE,
} from "./lib/server/options.ts";
import { startServer, type TunnelServer } from "./lib/server/server.ts";
import { GOTUNNEL_VERSION } from "./lib/protocol.ts";

const encoder = new TextEncoder();
const print = (text: string): void => {
  Deno.stdout.writeSync(encoder.encode(text + "\n"));
};
const printError = (text: string): void => {
  Deno.stderr.writeSync(encoder.encode(`gotunnel-server: ${text}\n`));
};

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no env permission: no admin token from the environment
  }
}

/**
 * Runs the server CLI with `args` until SIGINT or SIGTERM; returns the exit status.
 *
 * @param args Command-line arguments, without the program name.
 * @returns 0 after a clean stop, 1 when the server cannot start, 2 on a bad flag.
 *
 * @example Print the version
 * ```ts
 * import { main } from "@gotunnel/gotunnel/server";
 * await main(["--version"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let command;
  try {
    command = await readServerCommand(args, env);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    printError(`${e.message} (see --help)`);
    return 2;
  }
  if (command.kind === "help") return print(SERVER_USAGE.trimEnd()), 0;
  if (command.kind === "version") return print(`gotunnel-server ${GOTUNNEL_VERSION}`), 0;
  const { options, files } = command;
  const log = options.logger;
  const stop = new AbortController();
  let server;
  try {
    server = await startServer({ ...options, signal: stop.signal });
  } catch (e) {
    printError((e as Error).message);
    return 1;
  }
  // The first signal drains (up to 30 s), the second stops at once.
  let signalled = false;
  const onSignal = (): void => {
    if (signalled) return stop.abort();
    signalled = true;
    log.info("Draining; a second signal stops at once", {});
    void server.shutdown();
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  // SIGHUP re-reads the certificate, tokens and reserved-names files; a bad one keeps the old.
  const onHangup = (): void => {
    reload(server, files).catch((e) => log.error("Reload failed", { error: (e as Error).message }));
  };
  const hangup = Deno.build.os !== "windows";
  if (hangup) Deno.addSignalListener("SIGHUP", onHangup);
  print(server.url);
  await server.finished;
  for (const s of signals) Deno.removeSignalListener(s, onSignal);
  if (hangup) Deno.removeSignalListener("SIGHUP", onHangup);
  return 0;
}

/** What SIGHUP does: re-reads each file given and swaps what it holds in. */
async function reload(server: TunnelServer, files: ReloadFiles): Promise<void> {
  if (files.tls) {
    await server.reloadTls(
      await readPemFile("tls-cert", files.tls.cert),
      await readPemFile("tls-key", files.tls.key),
    );
  }
  if (files.tokens || files.reservedNames !== undefined) {
    const tokens = files.tokens
      ? await readTokens(files.tokens.flags, files.tokens.file)
      : undefined;
    await server.reloadAuth(tokens ?? undefined, await readReservedNames(files.reservedNames));
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
