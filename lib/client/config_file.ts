// The client's config file from disk: its text read, npm:yaml loaded on demand (only
// for --config), and the pure reader (lib/client/config.ts) applied.

import { type ClientConfig, ConfigError, parseConfig, type YamlLib } from "./config.ts";

/** The yaml release the config reader is written and tested against. */
export const YAML_VERSION = "2.9.1";

/**
 * The module, named through a variable: with a literal specifier `deno run`
 * would download it (dynamic imports with a literal are in the module graph)
 * for every client, config file or not. `deno compile` leaves it out too, so
 * the compile task adds it with `--include npm:yaml@2.9.1`.
 */
const YAML_MODULE = `npm:yaml@${YAML_VERSION}`;

/** Loads npm:yaml (downloaded on first use); fails loudly if its shape is not the one used here. */
export async function loadYaml(): Promise<YamlLib> {
  const module = await import(YAML_MODULE);
  const lib = (module.default ?? module) as unknown as YamlLib;
  if (typeof lib.parseDocument !== "function" || typeof lib.LineCounter !== "function") {
    throw new Error(`Cannot use npm:yaml: not the ${YAML_VERSION} API`);
  }
  return lib;
}

/** Reads and checks the config file at `path`; throws ConfigError naming the line and column. */
export async function readConfigFile(
  path: string,
  env: (name: string) => string | undefined,
): Promise<ClientConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(`Cannot read --config ${path}: ${(e as Error).message}`);
  }
  let yaml: YamlLib;
  try {
    yaml = await loadYaml();
  } catch (e) {
    throw new ConfigError(`Cannot load the YAML reader (npm:yaml@${YAML_VERSION}): ${e}`);
  }
  return parseConfig(text, yaml, env, path);
}
