// SSH through a TCP tunnel: server.ts --tcp-ports and client.ts --tcp in front of a
// private sshd (Debian's openssh-server) on a loopback port, its own host key and
// authorized key in a temporary folder, no system configuration read.

import assert from "node:assert/strict";
import { HOST, needs, onPath, spawnCli, waitFor } from "./helpers.ts";
import { freePortRange } from "./tcp_helpers.ts";

/** sshd is in /usr/sbin, which a user's PATH may not hold. */
const SSHD = onPath("sshd") ? "sshd" : "/usr/sbin/sshd";

/** Runs `command` with `args`; its stdout, or a throw with its stderr. */
async function run(command: string, args: string[], timeoutMs = 15_000): Promise<string> {
  const output = await new Deno.Command(command, {
    args,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  if (!output.success) throw new Error(`${command} failed: ${text(output.stderr)}`);
  return text(output.stdout);
}

/** A private sshd on a free loopback port, as the current user, keys in `dir`. */
async function startSshd(dir: string): Promise<{ port: number; stop(): Promise<void> }> {
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/host_key`]);
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/user_key`]);
  await Deno.copyFile(`${dir}/user_key.pub`, `${dir}/authorized_keys`);
  // As root, sshd wants its privilege separation folder (its systemd unit makes it).
  if (Deno.uid() === 0) await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  // sshd takes no port 0: a free one is probed, and another tried if it was taken meanwhile.
  for (let attempt = 0;; attempt++) {
    const [port] = freePortRange(1);
    await Deno.writeTextFile(
      `${dir}/sshd_config`,
      [
        `Port ${port}`,
        `ListenAddress ${HOST}`,
        `HostKey ${dir}/host_key`,
        `AuthorizedKeysFile ${dir}/authorized_keys`,
        `PidFile ${dir}/sshd.pid`,
        "UsePAM no",
        "StrictModes no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "",
      ].join("\n"),
    );
    const child = new Deno.Command(SSHD, {
      args: ["-D", "-e", "-f", `${dir}/sshd_config`],
      stdout: "null",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    let log = "";
    const reading = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) log += chunk;
    })();
    const stop = async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone already */ }
      await child.status;
      await reading;
    };
    try {
      await waitFor(() => /Server listening/.test(log) || /Bind to port|error/i.test(log), 5_000);
    } catch (e) {
      await stop();
      throw e;
    }
    if (/Server listening/.test(log)) return { port, stop };
    await stop();
    if (attempt >= 3) throw new Error(`sshd did not start: ${log}`);
  }
}

Deno.test({
  name: "ssh through client.ts --tcp to a private sshd runs a command (server.ts --tcp-ports)",
  ...needs(SSHD, "ssh", "ssh-keygen"),
  timeout: 60_000,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gotunnel-sshd-" });
    const sshd = await startSshd(dir);
    const [from, to] = freePortRange(10);
    const server = spawnCli("server.ts", [
      ...["--port", "0", "--hostname", HOST, "--tcp-ports", `${from}-${to}`],
    ]);
    let client: ReturnType<typeof spawnCli> | undefined;
    try {
      const serverPort = new URL(await server.firstLine()).port;
      client = spawnCli("client.ts", [
        String(sshd.port),
        ...["--tcp", "--remote-port", String(from + 2), "--server", `http://${HOST}:${serverPort}`],
      ]);
      assert.equal(await client.firstLine(), `tcp://localhost:${from + 2}`);
      const output = await run("ssh", [
        ...["-p", String(from + 2), "-i", `${dir}/user_key`, "-o", "BatchMode=yes"],
        ...["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"],
        ...["-o", "ConnectTimeout=10", HOST, "echo ok through the tunnel; uname -s"],
      ]);
      assert.equal(output, "ok through the tunnel\nLinux\n");
      assert.match(client.output().stderr, /Forwarding tcp:\/\/localhost:\d+ → localhost:\d+/);
    } finally {
      await client?.stop();
      await server.stop();
      await sshd.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
