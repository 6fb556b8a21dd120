// The client's entry points: `openTunnels`, several tunnels over one control
// connection (lib/client/tunnels.ts keeps them up), and `openTunnel`, the common
// case of one, with the handle of a single tunnel.

import { TunnelClient } from "./tunnels.ts";
import type {
  Tunnel,
  TunnelGroup,
  TunnelOptions,
  TunnelsOptions,
  TunnelSpec,
} from "./tunnel_types.ts";

export type { Tunnel, TunnelOptions } from "./tunnel_types.ts";

/**
 * Opens several tunnels over one control connection to a Gotunnel server.
 * Resolves once each is up or refused (a name held for its previous client is
 * waited for with `wait`); rejects with the first tunnel's
 * {@linkcode TunnelError} when none could be opened, or when the server cannot
 * be reached. After that, lost connections are re-established with backoff,
 * each tunnel claimed again with its lease.
 *
 * @example An HTTP app and SSH through one client
 * ```ts ignore
 * import { openTunnels } from "@gotunnel/gotunnel";
 * await using group = await openTunnels({
 *   server: "https://tunnel.example",
 *   token: Deno.env.get("GOTUNNEL_TOKEN"),
 *   tunnels: [
 *     { name: "web", port: 3000, subdomain: "web" },
 *     { name: "ssh", port: 22, tcp: true, remotePort: 20022 },
 *   ],
 * });
 * for (const t of group.tunnels) console.log(t.name, t.url || t.error?.message);
 * ```
 */
export async function openTunnels(options: TunnelsOptions): Promise<TunnelGroup> {
  const client = new TunnelClient(options);
  await client.start();
  return client;
}

/**
 * Opens a tunnel from a Gotunnel server to a local port. Resolves when the
 * server has registered it; rejects with a {@linkcode TunnelError} when the
 * server cannot be reached or refuses (subdomain taken or invalid). After
 * that, lost connections are re-established with backoff.
 *
 * @example Expose the app on port 3000 through a server
 * ```ts
 * import { openTunnel, startServer } from "@gotunnel/gotunnel";
 * await using server = await startServer({ port: 0, hostname: "127.0.0.1" });
 * await using tunnel = await openTunnel({
 *   port: 3000,
 *   localHost: "127.0.0.1",
 *   server: `http://127.0.0.1:${server.addr.port}`,
 * });
 * console.log(tunnel.url); // http://<random>.localhost:<port>
 * ```
 *
 * @example Several servers of one cluster, tried in turn
 * ```ts
 * import { openTunnel, startServer } from "@gotunnel/gotunnel";
 * const leaseKey = crypto.getRandomValues(new Uint8Array(32)); // the cluster's
 * await using b = await startServer({ port: 0, hostname: "127.0.0.1", leaseKey });
 * await using tunnel = await openTunnel({
 *   port: 3000,
 *   localHost: "127.0.0.1",
 *   server: ["http://127.0.0.1:9", `http://127.0.0.1:${b.addr.port}`], // nothing on port 9
 *   leaseFile: false,
 * });
 * console.log(tunnel.url); // on the second server: http://<random>.localhost:<its port>
 * ```
 */
export async function openTunnel(options: TunnelOptions): Promise<Tunnel> {
  const {
    port,
    localHost,
    subdomain,
    raw,
    isolateCookies,
    hostHeader,
    localHttps,
    allowInvalidCert,
    customDomain,
    tcp,
    remotePort,
    proxyProtocol,
    onReady,
    name,
    ...session
  } = options;
  const spec: TunnelSpec = {
    port,
    ...(name === undefined ? {} : { name }),
    ...(localHost === undefined ? {} : { localHost }),
    ...(subdomain === undefined ? {} : { subdomain }),
    ...(raw === undefined ? {} : { raw }),
    ...(isolateCookies === undefined ? {} : { isolateCookies }),
    ...(hostHeader === undefined ? {} : { hostHeader }),
    ...(localHttps === undefined ? {} : { localHttps }),
    ...(allowInvalidCert === undefined ? {} : { allowInvalidCert }),
    ...(customDomain === undefined ? {} : { customDomain }),
    ...(tcp === undefined ? {} : { tcp }),
    ...(remotePort === undefined ? {} : { remotePort }),
    ...(proxyProtocol === undefined ? {} : { proxyProtocol }),
    ...(onReady === undefined ? {} : { onReady }),
  };
  const client = new TunnelClient({ ...session, tunnels: [spec] });
  await client.start();
  const tunnel = client.tunnels[0]!;
  return {
    get url() {
      return tunnel.url;
    },
    get subdomain() {
      return tunnel.subdomain;
    },
    get remotePort() {
      return tunnel.remotePort;
    },
    addr: tunnel.addr,
    get inspector() {
      return client.inspector;
    },
    finished: client.finished,
    close: () => client.close(),
    [Symbol.asyncDispose]: () => client.close(),
  };
}
