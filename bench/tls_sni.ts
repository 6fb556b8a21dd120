// `deno run -A bench/tls_sni.ts`: node:tls throughput with a certificate chosen
// by SNICallback (what the TLS port does with ACME) against one fixed
// certificate. SIZE_MB one way from server to client over 127.0.0.1, RUNS times
// each, median MB/s. SNICallback runs once per handshake, so the two should match.

import tls from "node:tls";
import type net from "node:net";

const SIZE_MB = Number(Deno.env.get("SIZE_MB") ?? 256);
const RUNS = Number(Deno.env.get("RUNS") ?? 3);
const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`../tests/fixtures/${name}`, import.meta.url));
const cert = fixture("localhost.pem");
const key = fixture("localhost.key");
const ca = fixture("ca.pem");
const CHUNK = new Uint8Array(256 * 1024).fill(7);

async function once(sni: boolean): Promise<number> {
  const context = tls.createSecureContext({ cert, key });
  const server = tls.createServer(
    sni ? { SNICallback: (_name, cb) => cb(null, context) } : { cert, key },
    (socket: tls.TLSSocket) => {
      let left = SIZE_MB * 1024 * 1024;
      const pump = () => {
        while (left > 0) {
          left -= CHUNK.length;
          if (!socket.write(CHUNK)) return void socket.once("drain", pump);
        }
        socket.end();
      };
      pump();
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "demo.localhost", ca: [ca] });
    let received = 0;
    socket.on("data", (chunk: Uint8Array) => received += chunk.length);
    socket.on("end", () => {
      socket.destroy();
      received === SIZE_MB * 1024 * 1024 ? resolve() : reject(new Error(`got ${received}`));
    });
    socket.on("error", reject);
  });
  const seconds = (performance.now() - started) / 1000;
  await new Promise((r) => server.close(r));
  return SIZE_MB * 1.048576 / seconds;
}

const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const sni of [false, true]) {
  const runs: number[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await once(sni));
  // deno-lint-ignore no-console -- a benchmark's result
  console.log(
    `${sni ? "SNICallback " : "fixed cert  "} ${median(runs).toFixed(0)} MB/s median of ${RUNS}` +
      ` (${runs.map((r) => r.toFixed(0)).join(", ")})`,
  );
}
