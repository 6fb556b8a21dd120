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
import { CLIENT_USAGE, refusalHint } from "./lib/client/options.ts";
import { describeLocal, readClientCommand } from "./lib/client/command.ts";
import { recordStyle, requestPrinter } from "./lib/client/request_log.ts";
import { openTunnels } from "./lib/client/tunnel.ts";
import type { TunnelSpec } from "./lib/client/tunnel_types.ts";
import type { Logger } from "./lib/log.ts";
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
 * @returns 0 after Ctrl-C, 1 when the server is unreachable or refuses every tunnel, 2 on a
 * bad flag or config file.
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
  const { options, quiet, locals } = command;
  const printer = requestPrinter(
    (text) => writeAllSync(Deno.stderr, text),
    recordStyle(Deno.stderr.isTerminal(), env("NO_COLOR")),
  );
  await Promise.all(options.tunnels.map((spec) => warnIfNothingListens(spec, options.logger)));
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const several = options.tunnels.length > 1;
  const reported = new Set<unknown>(); // refusals said as they came
  try {
    const group = await openTunnels({
      ...options,
      signal: stop.signal,
      ...(quiet ? {} : { onRequest: printer.log }),
      onReady: (url, tunnel) => {
        print(url); // stdout: the URL alone, for scripts
        writeAllSync(Deno.stderr, `Forwarding ${url} → ${locals.get(tunnel.name)}\n`);
      },
      onFailed: (error, tunnel) => {
        reported.add(error);
        const hint = refusalHint(error);
        printError(several ? `${tunnel.name}: ${error.message}${hint}` : error.message + hint);
      },
    });
    if (group.inspector) writeAllSync(Deno.stderr, `Inspector ${group.inspector.url}\n`);
    await group.finished;
    return 0;
  } catch (e) {
    // Each refused tunnel was reported as it failed; anything else is said here.
    if (!reported.has(e)) {
      printError(e instanceof TunnelError ? e.message + refusalHint(e) : `Unexpected error: ${e}`);
    }
    return 1;
  } finally {
    printer.flush();
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}

/** Says so at start when nothing answers at a local app yet; the tunnel comes up anyway. */
async function warnIfNothingListens(spec: TunnelSpec, log: Logger): Promise<void> {
  try {
    closeQuietly(await new LocalDialer(spec.localHost ?? "localhost", spec.port).dial(true));
  } catch (e) {
    if (!(e instanceof Deno.errors.ConnectionRefused)) return;
    const where = describeLocal(spec);
    const who = spec.name === undefined ? "" : ` (${spec.name})`;
    log.warn(
      `Nothing is listening on ${where}${who} yet: start your app; ` +
        (spec.tcp ? "visitors are closed until then" : "visitors get 502 until then"),
    );
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
