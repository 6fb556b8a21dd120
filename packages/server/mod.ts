/**
 * The Gotunnel server as a command: run it on a public host with a wildcard DNS record.
 *
 * ```sh
 * deno run -A jsr:@gotunnel/server --domain tunnel.example --port 80
 * ```
 *
 * Flags and exit codes are those of `@gotunnel/gotunnel/server`, which this
 * package runs; `--help` lists them.
 *
 * @module
 */

import { main as runServer } from "@gotunnel/gotunnel/server";

/**
 * Runs the server CLI with `args` until SIGINT or SIGTERM; returns the exit status.
 *
 * @param args Command-line arguments, without the program name.
 * @returns 0 after a clean stop, 1 when the server cannot start, 2 on a bad flag.
 *
 * @example Print the version
 * ```ts
 * import { main } from "@gotunnel/server";
 * await main(["--version"]);
 * ```
 */
export function main(args: string[]): Promise<number> {
  return runServer(args);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
