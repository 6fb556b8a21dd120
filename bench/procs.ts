// Benchmark plumbing: child processes with a URL line, RSS and CPU from /proc, tools on PATH.

/** A child process whose stdout lines are collected and stderr goes to a log. */
export interface Child {
  /** The process id. */
  pid: number;
  /** Milliseconds from spawn to the first stdout line. */
  readyMs: number;
  /** The first stdout line (a URL for our CLIs). */
  line: string;
  /** SIGTERM, then SIGKILL after 5 s; resolves when it has exited. */
  stop(): Promise<void>;
}

const ROOT = new URL("..", import.meta.url);

/** Runs `deno run -A <script> ...args` from the project root; resolves at its first stdout line. */
export async function spawnDeno(
  script: string,
  args: string[],
  log: string,
  denoFlags: readonly string[] = [],
): Promise<Child> {
  return await spawnCommand(
    Deno.execPath(),
    ["run", "-A", ...denoFlags, script, ...args],
    log,
    true,
  );
}

/** Runs any command; when `waitLine`, resolves at its first stdout line. */
export async function spawnCommand(
  cmd: string,
  args: string[],
  log: string,
  waitLine: boolean,
): Promise<Child> {
  const started = performance.now();
  const logFile = await Deno.open(log, { create: true, append: true });
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  // Each chunk is written as it comes (pipeTo into a file holds it back until the end).
  (async () => {
    for await (const chunk of child.stderr) {
      for (let at = 0; at < chunk.length;) at += await logFile.write(chunk.subarray(at));
    }
  })().catch(() => {}).finally(() => logFile.close());
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const readLine = async (): Promise<string> => {
    while (!text.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error(`${cmd} ${args.join(" ")} exited; see ${log}`);
      text += value;
    }
    return text.slice(0, text.indexOf("\n"));
  };
  const line = waitLine ? await readLine() : "";
  const readyMs = performance.now() - started;
  // Keep draining stdout so the child never blocks on a full pipe.
  const draining = (async () => {
    try {
      while (!(await lines.read()).done);
    } catch { /* cancelled */ }
  })();
  return {
    pid: child.pid,
    readyMs,
    line,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5_000);
      await child.status;
      clearTimeout(timer);
      await draining;
    },
  };
}

/** Resident memory of a process in KiB (VmRSS). */
export function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** The most resident memory a process had in KiB (VmHWM), since its start or `resetPeakRss`. */
export function peakRssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** Starts a process's peak RSS (VmHWM) again from its RSS now (Linux `clear_refs` 5). */
export function resetPeakRss(pid: number): void {
  Deno.writeTextFileSync(`/proc/${pid}/clear_refs`, "5");
}

/** User + system CPU time of a process in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks
}

/** Open file descriptors of a process. */
export function fdCount(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/** Whether `name` is on PATH. */
export function have(name: string): boolean {
  const dirs = (Deno.env.get("PATH") ?? "").split(":");
  return dirs.some((dir) => {
    try {
      return Deno.statSync(`${dir}/${name}`).isFile;
    } catch {
      return false;
    }
  });
}

/** Runs a command to completion and returns its stdout (throws on a non-zero exit). */
export async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return stdout;
}

/** A free TCP port on 127.0.0.1 for a program that cannot listen on port 0 itself (nginx). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The median of some numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Waits until 127.0.0.1:port accepts a connection. */
export async function waitTcp(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (e) {
      if (Date.now() > end) throw e;
      await sleep(50);
    }
  }
}

/**
 * A server on a free port of 127.0.0.1 that logs warnings only. All load comes
 * from 127.0.0.1, so the per-IP limit on connections being routed is lifted.
 */
export const LOCAL_SERVER_ARGS: readonly string[] = [
  "--port=0",
  "--hostname=127.0.0.1",
  "--log-level=warn",
  "--max-sniffing-per-ip=0",
];
