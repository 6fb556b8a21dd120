/**
 * The Gotunnel client as a command: exposes a local app through a Gotunnel server.
 *
 * ```sh
 * deno run -A jsr:@gotunnel/client 3000 --server https://tunnel.example
 * ```
 *
 * Flags and exit codes are those of `@gotunnel/gotunnel/client`, which this
 * package runs; `--help` lists them.
 *
 * @module
 */

import { main as runClient } from "@gotunnel/gotunnel/client";

/**
 * Runs the client CLI with `args` until Ctrl-C; returns the exit status.
 *
 * @param args Command-line arguments, without the program name.
 * @returns 0 after Ctrl-C, 1 when the server is unreachable or refuses, 2 on a bad flag.
 *
 * @example Print the version
 * ```ts
 * import { main } from "@gotunnel/client";
 * await main(["--version"]);
 * ```
 */
export function main(args: string[]): Promise<number> {
  return runClient(args);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
