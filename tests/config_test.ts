// The client's config file reader (pure): a full file, environment variables, and
// every kind of mistake named with its line and column.

import assert from "node:assert/strict";
import * as yaml from "npm:yaml@2.9.1";
import { type ClientConfig, ConfigError, parseConfig, type YamlLib } from "../lib/client/config.ts";
import { YAML_VERSION } from "../lib/client/config_file.ts";

const lib = yaml as unknown as YamlLib;
const env = (vars: Record<string, string>) => (name: string) => vars[name];
const read = (text: string, vars: Record<string, string> = {}): ClientConfig =>
  parseConfig(text, lib, env(vars), "gotunnel.yaml");

/** The config file example of the README, whole (the first YAML block that starts with its name). */
const EXAMPLE = (() => {
  const readme = Deno.readTextFileSync(new URL("../README.md", import.meta.url));
  const block = /```yaml\n(# gotunnel\.yaml\n[^]*?)```/.exec(readme);
  if (!block) throw new Error("README has no gotunnel.yaml example");
  return block[1]!;
})();

Deno.test("parseConfig() reads the README's example, in order, with ${GOTUNNEL_TOKEN} expanded", () => {
  assert.equal(YAML_VERSION, "2.9.1");
  const config = read(EXAMPLE, { GOTUNNEL_TOKEN: "a-long-secret-token" });
  assert.deepEqual(config.server, ["https://tunnel.example"]);
  assert.equal(config.token, "a-long-secret-token");
  assert.deepEqual(config.tunnels, [
    { name: "web", port: 3000, subdomain: "web" },
    { name: "vite", port: 5173, localHost: "localhost", subdomain: "app" },
    { name: "admin", port: 8443, localHost: "localhost", localHttps: true, allowInvalidCert: true },
    { name: "blog", port: 4000, customDomain: "blog.example.com" },
    { name: "ssh", port: 22, tcp: true, remotePort: 20022 },
    { name: "db", port: 5432, localHost: "127.0.0.1", tcp: true, proxyProtocol: true },
  ]);
});

Deno.test("parseConfig() names the line and column of every mistake", () => {
  const cases: [string, RegExp][] = [
    ["tunnels:\n  web:\n    port: [3000\n", /^gotunnel\.yaml:4:1: /], // bad YAML: unclosed
    [
      "tunnels:\n  web: {port: 1}\n  web: {port: 2}\n",
      /^gotunnel\.yaml:3:3: Map keys must be unique/,
    ],
    ["servr: http://x\ntunnels: {a: {port: 1}}\n", /^gotunnel\.yaml:1:1: unknown key "servr"/],
    [
      "tunnels:\n  web:\n    port: 3000\n    subdomian: web\n",
      /^gotunnel\.yaml:4:5: web: unknown key "subdomian"/,
    ],
    [
      "tunnels:\n  web:\n    port: 70000\n",
      /^gotunnel\.yaml:3:11: web\.port: expected a whole number 1-65535/,
    ],
    [
      "tunnels:\n  web:\n    port: three\n",
      /^gotunnel\.yaml:3:11: web\.port: expected a whole number/,
    ],
    ["tunnels:\n  web:\n    subdomain: web\n", /^gotunnel\.yaml:2:3: web: needs a port/],
    [
      "tunnels:\n  web:\n    port: 1\n    subdomain: -no-\n",
      /^gotunnel\.yaml:4:16: web\.subdomain: Invalid subdomain/,
    ],
    [
      "tunnels:\n  ssh:\n    port: 22\n    tcp: true\n    subdomain: x\n",
      /^gotunnel\.yaml:5:16: ssh: a tcp tunnel has no subdomain/,
    ],
    [
      "tunnels:\n  ssh:\n    port: 22\n    remote-port: 20022\n",
      /^gotunnel\.yaml:4:18: ssh: remote-port needs tcp: true/,
    ],
    [
      "tunnels:\n  web:\n    port: 1\n    tcp: yes\n",
      /^gotunnel\.yaml:4:10: web\.tcp: expected true or false/,
    ],
    [
      "token: ${NOPE}\ntunnels: {a: {port: 1}}\n",
      /^gotunnel\.yaml:1:8: environment variable NOPE is not set/,
    ],
    ["server: x\n", /^gotunnel\.yaml:1:1: no tunnels/],
    [
      "server: ftp://a\ntunnels: {a: {port: 1}}\n",
      /^gotunnel\.yaml:1:9: server: Unsupported scheme "ftp:" in server URL "ftp:\/\/a"/,
    ],
    [
      "server:\n  - http://a\n  - http://b/x\ntunnels: {a: {port: 1}}\n",
      /^gotunnel\.yaml:3:5: server\[1\]: Server URL "http:\/\/b\/x" must be only scheme/,
    ],
    [
      "server: http://a,,http://b\ntunnels: {a: {port: 1}}\n",
      /^gotunnel\.yaml:1:9: server: Empty item in the server list/,
    ],
    [
      "server: []\ntunnels: {a: {port: 1}}\n",
      /^gotunnel\.yaml:1:9: server: expected a URL or a list/,
    ],
    [
      "server:\n  - {url: http://a}\ntunnels: {a: {port: 1}}\n",
      /^gotunnel\.yaml:2:5: server\[0\]: expected a single value/,
    ],
    ["- a\n- b\n", /^gotunnel\.yaml:1:1: expected a mapping/],
    ['tunnels:\n  "a b": {port: 1}\n', /^gotunnel\.yaml:2:3: tunnel name "a b"/],
    [
      "tunnels:\n  web:\n    port: 1\n    url: http://x\n",
      /^gotunnel\.yaml:4:10: web: port or url, not both/,
    ],
    [
      "tunnels:\n  web:\n    url: ftp://x\n",
      /^gotunnel\.yaml:3:10: web\.url: use http:\/\/ or https:\/\//,
    ],
    [
      "tunnels:\n  w:\n    port: 1\n    proxy-protocol: true\n",
      /^gotunnel\.yaml:4:21: w: proxy-protocol needs tcp or raw/,
    ],
    [
      "tunnels:\n  w:\n    port: 1\n    custom-domain: 10.0.0.1\n",
      /^gotunnel\.yaml:4:20: w\.custom-domain: expected a hostname/,
    ],
  ];
  for (const [text, pattern] of cases) {
    assert.throws(
      () => read(text),
      (e) => e instanceof ConfigError && pattern.test(e.message),
      text,
    );
  }
});

Deno.test("parseConfig() reads server as one URL, URLs separated by commas, or a list", () => {
  const tunnels = "tunnels: {a: {port: 1}}\n";
  assert.deepEqual(read(`server: https://a.example\n${tunnels}`).server, ["https://a.example"]);
  assert.deepEqual(read(`server: http://a, http://b:8080\n${tunnels}`).server, [
    "http://a",
    "http://b:8080",
  ]);
  assert.deepEqual(
    read(`server:\n  - https://a.example\n  - \${NODE_B}\n${tunnels}`, {
      NODE_B: "https://b.example",
    }).server,
    ["https://a.example", "https://b.example"],
  );
});

Deno.test("parseConfig() takes customDomain as custom-domain, and numbers given as strings", () => {
  const config = read(
    "pool: '4'\ntunnels:\n  a:\n    port: '8080'\n    customDomain: App.Example.com\n",
  );
  assert.equal(config.pool, 4);
  assert.deepEqual(config.tunnels, [{ name: "a", port: 8080, customDomain: "app.example.com" }]);
});
