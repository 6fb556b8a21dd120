// `deno task publish:dry`: `deno publish --dry-run --allow-dirty` for every package of the
// workspace, on the files git tracks, then a check of each file list.
//
// Why not the bare command: at this root, whose deno.json is itself a package
// (@gotunnel/gotunnel), Deno 2.9.6 simulates that one package and skips the members in
// packages/, which need a run each from their own folder. And with --allow-dirty it lists
// untracked files too (a scratch file at the root would be in the list), so the runs
// happen on a copy of the tracked files, as they are in the working tree.
//
// The check: no file from a folder that is never published, and no published module
// that imports a local file its package does not publish (deno publish itself only
// follows the modules the exports reach; the others are uploaded unchecked, so they
// are listed here too).

// deno-lint-ignore-file no-console -- a developer tool reports to the person who ran it

import { dirname, join, relative } from "node:path";
import { fileURLToPath as fromFileUrl, pathToFileURL as toFileUrl } from "node:url";

const NEVER_PUBLISHED = ["tools/", "bench/", "tests/", "examples/", ".ci/", "dist/"];
const MODULE = /\.(ts|tsx|js|jsx|mts|mjs)$/;

interface Package {
  dir: string; // relative to the root: "" or "packages/client"
  name: string;
  exports: string[]; // relative to the root
  files: string[]; // relative to the root, as deno publish listed them
  listed: boolean; // false when the dry run failed
}

const root = fromFileUrl(new URL("..", import.meta.url));
const decoder = new TextDecoder();

async function run(
  args: string[],
  cwd: string,
  cmd = Deno.execPath(),
): Promise<{ ok: boolean; out: string }> {
  const out = await new Deno.Command(cmd, { args, cwd, env: { NO_COLOR: "1" } }).output();
  return { ok: out.success, out: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

/** Copies what `git ls-files` names (staged new files included, untracked ones not). */
async function copyTrackedFiles(to: string): Promise<void> {
  const listed = await run(["ls-files", "-z"], root, "git");
  if (!listed.ok) throw new Error(`Cannot list tracked files: ${listed.out.trim()}`);
  for (const path of listed.out.split("\0").filter(Boolean)) {
    try {
      await Deno.mkdir(join(to, dirname(path)), { recursive: true });
      await Deno.copyFile(join(root, path), join(to, path));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e; // deleted, not yet committed
    }
  }
}

function readPackage(copy: string, dir: string): Omit<Package, "files" | "listed"> {
  const config = JSON.parse(Deno.readTextFileSync(join(copy, dir, "deno.json")));
  const exports: string[] = typeof config.exports === "string"
    ? [config.exports]
    : Object.values(config.exports as Record<string, string>);
  return { dir, name: config.name, exports: exports.map((e) => join(dir, e)) };
}

/** The local files (relative to `copy`) that the modules `paths` import, themselves included. */
async function localGraph(copy: string, paths: string[]): Promise<Set<string>> {
  const entry = join(copy, ".publish_dry_graph.ts");
  await Deno.writeTextFile(
    entry,
    paths.map((p) => `import ${JSON.stringify(toFileUrl(join(copy, p)).href)};\n`).join(""),
  );
  try {
    const info = await run(["info", "--json", entry], copy);
    if (!info.ok) throw new Error(`Cannot read the module graph: ${info.out.trim()}`);
    const modules: { specifier: string }[] = JSON.parse(info.out).modules;
    return new Set(
      modules.filter((m) => m.specifier.startsWith("file:"))
        .map((m) => relative(copy, fromFileUrl(m.specifier)))
        .filter((p) => p !== ".publish_dry_graph.ts"),
    );
  } finally {
    await Deno.remove(entry);
  }
}

const copy = await Deno.makeTempDir({ prefix: "gotunnel-publish-dry-" });
let failed = false;
try {
  await copyTrackedFiles(copy);
  const workspace: string[] = JSON.parse(Deno.readTextFileSync(join(copy, "deno.json"))).workspace;
  const packages: Package[] = [];
  for (const dir of ["", ...workspace.map((w) => relative(".", w))]) {
    const pkg = readPackage(copy, dir);
    console.log(`\n== ${pkg.name} (${dir || "."}): deno publish --dry-run --allow-dirty`);
    const dry = await run(["publish", "--dry-run", "--allow-dirty"], join(copy, dir));
    console.log(
      dry.out.replaceAll(toFileUrl(copy).href + "/", "./").replaceAll(copy + "/", "./").trimEnd(),
    );
    if (!dry.ok) failed = true;
    const files = [...dry.out.matchAll(/^\s+(file:\/\/\S+) \(/gm)]
      .map((m) => relative(copy, fromFileUrl(m[1]!)));
    packages.push({ ...pkg, files, listed: dry.ok });
  }

  const owner = (path: string): Package =>
    packages.filter((p) => p.dir === "" || path.startsWith(p.dir + "/"))
      .sort((a, b) => b.dir.length - a.dir.length)[0]!;
  console.log("\n== checks");
  for (const pkg of packages) {
    if (!pkg.listed) {
      console.log(`${pkg.name}: FAILED (the dry run above printed no file list)`);
      continue;
    }
    const problems: string[] = [];
    for (const file of pkg.files) {
      if (NEVER_PUBLISHED.some((dir) => file.startsWith(dir))) problems.push(`publishes ${file}`);
    }
    const modules = pkg.files.filter((f) => MODULE.test(f));
    const reached = await localGraph(copy, pkg.exports);
    for (const file of await localGraph(copy, modules)) {
      // Another package's files are that package's check (a member reaches the root's).
      if (owner(file) === pkg && !pkg.files.includes(file)) {
        problems.push(`a published module imports ${file}, which is not published`);
      }
    }
    const unreached = modules.filter((m) => !reached.has(m));
    const state = problems.length ? "FAILED" : "ok";
    console.log(`${pkg.name}: ${pkg.files.length} files, ${modules.length} modules: ${state}`);
    for (const p of problems) console.log(`  ${p}`);
    for (const m of unreached) console.log(`  note: ${m} is published but no export imports it`);
    if (problems.length) failed = true;
  }
} finally {
  await Deno.remove(copy, { recursive: true });
}
Deno.exit(failed ? 1 : 0);
