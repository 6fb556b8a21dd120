// deno-lint-ignore-file no-console -- a demo talks to the person who ran it
// `deno task demo`: a server, a sample app and a client on this machine, end to end.
//
// Starts the server and the client as the real CLIs (subprocesses of this same
// Deno binary), checks one request through the tunnel, prints the URL, and
// keeps running until Ctrl-C (or exits at once with --once).

const once = Deno.args.includes("--once");

const app: Deno.HttpServer<Deno.NetAddr> = Deno.serve(
  { port: 0, hostname: "127.0.0.1", onListen() {} },
  (req): Response =>
    new Response(
      `<!doctype html><meta charset="utf-8"><title>Gotunnel demo</title>
<h1>Hello through Gotunnel!</h1>
<p>This page comes from the sample app on 127.0.0.1:${app.addr.port},
reached through the tunnel as <code>${req.headers.get("x-forwarded-host")}</code>
(X-Forwarded-Host; Host is <code>${req.headers.get("host")}</code>)
by visitor <code>${req.headers.get("x-forwarded-for")}</code> (X-Forwarded-For).</p>\n`,
      { headers: { "content-type": "text/html; charset=utf-8" } },
    ),
);

function spawn(script: string, args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(`../${script}`, import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return {
    child,
    async line(): Promise<string> {
      while (!buffered.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) throw new Error(`${script} exited before printing its URL`);
        buffered += value;
      }
      const line = buffered.slice(0, buffered.indexOf("\n"));
      buffered = buffered.slice(line.length + 1);
      return line;
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await lines.cancel();
    },
  };
}

const server = spawn("server.ts", ["--port=0", "--hostname=127.0.0.1", "--log-level=warn"]);
const serverUrl = await server.line();
const port = new URL(serverUrl).port;
const client = spawn("client.ts", [
  String(app.addr.port),
  "--server",
  `http://127.0.0.1:${port}`,
  "--subdomain",
  "demo",
  "--local-host",
  "127.0.0.1",
  "--log-level",
  "warn",
]);
const url = await client.line();

// One request through the tunnel, as a browser would send it (Host: demo.localhost:<port>).
const http = Deno.createHttpClient({ allowHost: true });
const res = await fetch(`http://127.0.0.1:${port}/`, {
  client: http,
  headers: { host: new URL(url).host },
});
const body = await res.text();
http.close();

console.log(`Server:  ${serverUrl}  (status: ${serverUrl}/api/status)`);
console.log(`App:     http://127.0.0.1:${app.addr.port}`);
console.log(`Tunnel:  ${url}  ->  127.0.0.1:${app.addr.port}`);
console.log(`\nGET ${url}/ through the tunnel: ${res.status}`);
console.log(body.replace(/<[^>]+>/g, "").trim().split("\n").map((l) => `  ${l}`).join("\n"));

const code = res.status === 200 && body.includes("Hello through Gotunnel") ? 0 : 1;
if (!once && code === 0) {
  console.log(`\nOpen ${url} in a browser, or run: curl ${url}`);
  console.log("Press Ctrl-C to stop.");
  await new Promise<void>((resolve) => Deno.addSignalListener("SIGINT", resolve));
}
await client.stop();
await server.stop();
await app.shutdown();
Deno.exit(code);
