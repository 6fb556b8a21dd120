// Micro-benchmarks: sniffing captured first bytes, and control frame coding.

import { sniff } from "../lib/sniff.ts";
import { decodeServerFrame, encodeFrame } from "../lib/protocol.ts";

const fixture = (name: string): Uint8Array =>
  Deno.readFileSync(new URL(`../tests/fixtures/${name}`, import.meta.url));

const chromiumGet = fixture("chromium-http-get.bin");
const curlGet = fixture("curl-http-get.bin");
const chromiumHello = fixture("chromium-clienthello.bin");
const opensslHello = fixture("openssl-clienthello.bin");

Deno.bench("sniff Chromium GET (650 B)", { group: "sniff", baseline: true }, () => {
  sniff(chromiumGet);
});
Deno.bench("sniff curl GET (93 B)", { group: "sniff" }, () => {
  sniff(curlGet);
});
Deno.bench("sniff Chromium ClientHello (1986 B)", { group: "sniff" }, () => {
  sniff(chromiumHello);
});
Deno.bench("sniff openssl ClientHello (320 B)", { group: "sniff" }, () => {
  sniff(opensslHello);
});

const open = encodeFrame({ type: "open", tunnel: 1, peer: "203.0.113.7:54321", proto: "http" });
Deno.bench("encode open frame", { group: "frame" }, () => {
  encodeFrame({ type: "open", tunnel: 1, peer: "203.0.113.7:54321", proto: "http" });
});
Deno.bench("decode open frame", { group: "frame" }, () => {
  decodeServerFrame(open);
});
