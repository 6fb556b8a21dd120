/**
 * The Gotunnel client: exposes a local app through a Gotunnel server.
 *
 * ```sh
 * deno run -A jsr:@gotunnel/client 3000 --server https://tunnel.example
 * ```
 *
 * @module
 */

import { closeQuietly } from "./lib/io.ts";
import { UsageError } from "./lib/cli.ts";
import { TunnelError } from "./lib/errors.ts";
import { LocalDialer } from "./lib/client/local_dialer.ts";
import { CLIENT_USAGE, readClientCommand, refusalHint } from "./lib/client/options.ts";
import { recordStyle, requestPrinter } from "./lib/client/request_log.ts";
import { openTunnel, type TunnelOptions } from "./lib/client/tunnel.ts";
import type { Logger } from "./lib/log.ts";
import { hostWithPort } from "./lib/names.ts";
import { GOTUNNEL_VERSION } from "./lib/protocol.ts";

const encoder = new TextEncoder();
function writeAllSync(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  let at = 0;
  while (at < bytes.length) at += file.writeSync(bytes.subarray(at));
}
const print = (text: string): void => writeAllSync(Deno.stdout, text + "\n");
const printError = (text: string): void => writeAllSync(Deno.stderr, `gotunnel-client: ${text}\n`);

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no env permission: use the default
  }
}

/**
 * Runs the client CLI with `args` until Ctrl-C; returns the exit status.
 *
 * @param args Command-line arguments, without the program name.
 * @returns 0 after Ctrl-C, 1 when the server is unreachable or refuses, 2 on a bad flag.
 *
 * @example Print the version
 * ```ts
 * import { main } from "@gotunnel/gotunnel/client";
 * await main(["--version"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let command;
  try {
    command = await readClientCommand(args, env);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    printError(`${e.message} (see --help)`);
    return 2;
  }
  if (command.kind === "help") return print(CLIENT_USAGE.trimEnd()), 0;
  if (command.kind === "version") return print(`gotunnel-client ${GOTUNNEL_VERSION}`), 0;
  const { options, quiet } = command;
  const printer = requestPrinter(
    (text) => writeAllSync(Deno.stderr, text),
    recordStyle(Deno.stderr.isTerminal(), env("NO_COLOR")),
  );
  const local = `${options.localHttps ? "https" : "http"}://` +
    hostWithPort(options.localHost ?? "localhost", options.port, -1);
  await warnIfNothingListens(options, local, options.logger!);
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    const tunnel = await openTunnel({
      ...options,
      signal: stop.signal,
      ...(quiet ? {} : { onRequest: printer.log }),
      onReady: (url) => {
        print(url); // stdout: the URL alone, for scripts
        writeAllSync(Deno.stderr, `Forwarding ${url} → ${local}\n`);
      },
    });
    if (tunnel.inspector) writeAllSync(Deno.stderr, `Inspector ${tunnel.inspector.url}\n`);
    await tunnel.finished;
    return 0;
  } catch (e) {
    printError(e instanceof TunnelError ? e.message + refusalHint(e) : `Unexpected error: ${e}`);
    return 1;
  } finally {
    printer.flush();
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}

/** Says so at start when nothing answers at the local app yet; the tunnel comes up anyway. */
async function warnIfNothingListens(
  options: TunnelOptions,
  local: string,
  log: Logger,
): Promise<void> {
  try {
    closeQuietly(await new LocalDialer(options.localHost ?? "localhost", options.port).dial(true));
  } catch (e) {
    if (!(e instanceof Deno.errors.ConnectionRefused)) return;
    log.warn(`Nothing is listening on ${local} yet: start your app; visitors get 502 until then`);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
