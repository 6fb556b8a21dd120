// The server's metrics: what its handlers report (outcomes, waits, bytes,
// refusals, leases), rendered for Prometheus and summed up for the dashboard.
// Handlers only report; nothing here decides how a connection goes.

import { PROXY_WAIT_BUCKETS_S, SNIFF_BUCKETS_S } from "../limits.ts";
import type { ErrorCode } from "../protocol.ts";
import { GOTUNNEL_VERSION } from "../protocol.ts";
import type { StreamResult } from "../relay.ts";
import { Collected, Counter, Gauge, Histogram, type Labels, MetricsRegistry } from "./metrics.ts";
import { MinuteRate, type TunnelStats } from "./tunnel_stats.ts";
import type { TunnelInfo } from "./tunnel.ts";
import {
  ATTACH_RESULTS,
  CONNECTION_OUTCOMES,
  type ConnectionOutcome,
  HANDSHAKE_FAILURES,
  type HandshakeFailure,
  type HandshakeStage,
  REGISTRATION_RESULTS,
  TCP_OUTCOMES,
  type TcpOutcome,
} from "./outcomes.ts";

/** What the metrics read from a tunnel when they are rendered (a `TunnelInfo` is one). */
export type TunnelSnapshot = Pick<
  TunnelInfo,
  | "subdomain"
  | "peer"
  | "since"
  | "streams"
  | "idleProxies"
  | "bytesIn"
  | "bytesOut"
  | "streamsTotal"
  | "streamsPerSecond"
>;

/** What the metrics read from the server when they are rendered. */
export interface ServerView {
  /** The tunnels registered now. */
  tunnels(): TunnelSnapshot[];
  /** Names held now for clients that went away. */
  heldNames(): number;
  /** Idle proxy connections now, of all control connections. */
  idleProxies(): number;
  /** TCP ports with a listener now (in use, or held for a client that went away). */
  tcpPorts(): number;
}

/** A counter's values by one label, in the order they were first counted. */
export type CountsBy = readonly { label: string; count: number }[];

/** The counters `/api/tunnels` sums up. */
export interface MetricCounts {
  /** When the server started (ms since the epoch). */
  startedAt: number;
  /** Public connections by outcome. */
  connections: CountsBy;
  /** Handshake failures by reason. */
  handshakeFailures: CountsBy;
  /** Registrations by result. */
  registrations: CountsBy;
  /** Attaches by result. */
  attaches: CountsBy;
  /** Bytes from visitors to tunnels. */
  bytesIn: number;
  /** Bytes from tunnels to visitors. */
  bytesOut: number;
  /** Connections being relayed now. */
  relaying: number;
  /** Streams started a second over the last minute, all tunnels. */
  streamsPerSecond: number;
}

/** The server's metrics: one per server, shared by its handlers through the context. */
export class ServerMetrics {
  readonly #registry = new MetricsRegistry();
  readonly #view: ServerView;
  readonly #startedAt = Date.now();
  readonly #rate = new MinuteRate();

  // Read from the server when rendered; `#now` is the snapshot one render reads.
  #now: { tunnels: TunnelSnapshot[]; memory: Deno.MemoryUsage } | undefined;
  readonly #registrations = new Counter(
    "gotunnel_tunnel_registrations_total",
    "Hellos judged, by result: registered, or the error code the client was refused with.",
    ["result"],
  );
  readonly #attaches = new Counter(
    "gotunnel_proxy_attaches_total",
    "Proxy connections offered by clients, by result: attached, or the error code.",
    ["result"],
  );
  readonly #handshakeFailures = new Counter(
    "gotunnel_handshake_failures_total",
    "Client connections that failed before a hello or attach could be judged " +
      "(timeout, closed, bad-request, version).",
    ["reason"],
  );
  readonly #connections = new Counter(
    "gotunnel_public_connections_total",
    "Public connections by what the server did with them: routed, client, page, redirect, " +
      "the status it answered, limit, abandoned, closed, tls_error, proxy_refused, proxy_invalid.",
    ["outcome"],
  );
  readonly #tcp = new Counter(
    "gotunnel_tcp_connections_total",
    "Visitors of TCP tunnels' ports by what the server did with them: routed, limit, busy, " +
      "timeout, abandoned, closed.",
    ["outcome"],
  );
  readonly #bytes = new Counter(
    "gotunnel_relayed_bytes_total",
    "Bytes relayed, counted when each relayed connection ends: in (visitors to tunnels), " +
      "out (tunnels to visitors).",
    ["direction"],
  );
  readonly #relaying = new Gauge(
    "gotunnel_relayed_connections",
    "Public connections being relayed now.",
  );
  readonly #proxyWait = new Histogram(
    "gotunnel_proxy_wait_seconds",
    "How long a routed visitor waited for a proxy connection that accepted its stream.",
    PROXY_WAIT_BUCKETS_S,
  );
  readonly #sniff = new Histogram(
    "gotunnel_sniff_duration_seconds",
    "Time from accept to a routing decision on a public connection's first bytes.",
    SNIFF_BUCKETS_S,
  );
  readonly #leaseHolds = new Counter(
    "gotunnel_lease_holds_total",
    "Names held for a client that went away without saying bye.",
  );
  readonly #leaseReclaims = new Counter(
    "gotunnel_lease_reclaims_total",
    "Held names taken back by their client with its lease.",
  );

  /** Metrics over `view`; with `perTunnel`, series labelled with tunnel names too. */
  constructor(view: ServerView, perTunnel = false) {
    this.#view = view;
    for (const outcome of CONNECTION_OUTCOMES) this.#connections.inc({ outcome }, 0);
    for (const reason of HANDSHAKE_FAILURES) this.#handshakeFailures.inc({ reason }, 0);
    for (const result of REGISTRATION_RESULTS) this.#registrations.inc({ result }, 0);
    for (const result of ATTACH_RESULTS) this.#attaches.inc({ result }, 0);
    for (const outcome of TCP_OUTCOMES) this.#tcp.inc({ outcome }, 0);
    for (const direction of ["in", "out"]) this.#bytes.inc({ direction }, 0);
    this.#relaying.set({}, 0);
    const now = (): { tunnels: TunnelSnapshot[]; memory: Deno.MemoryUsage } =>
      this.#now ??= { tunnels: view.tunnels(), memory: Deno.memoryUsage() };
    const one = (value: number): { labels: Labels; value: number }[] => [{ labels: {}, value }];
    const gauge = (name: string, help: string, read: () => number): Collected =>
      new Collected(name, help, "gauge", () => one(read()));
    const r = this.#registry;
    r.add(gauge("gotunnel_tunnels", "Tunnels registered now.", () => now().tunnels.length));
    r.add(this.#registrations);
    r.add(this.#attaches);
    r.add(this.#handshakeFailures);
    r.add(this.#connections);
    r.add(this.#tcp);
    r.add(gauge(
      "gotunnel_tcp_ports",
      "TCP ports with a listener now: in use by a tunnel, or held for a client that went away.",
      () => view.tcpPorts(),
    ));
    r.add(this.#bytes);
    r.add(this.#relaying);
    r.add(gauge(
      "gotunnel_idle_proxy_connections",
      "Idle proxy connections of all tunnels now.",
      () => view.idleProxies(),
    ));
    r.add(this.#proxyWait);
    r.add(this.#sniff);
    r.add(this.#leaseHolds);
    r.add(this.#leaseReclaims);
    r.add(gauge(
      "gotunnel_leases_held",
      "Names held now for clients that went away.",
      () => view.heldNames(),
    ));
    r.add(gauge(
      "gotunnel_process_resident_memory_bytes",
      "Resident set size of the server process.",
      () => now().memory.rss,
    ));
    r.add(
      gauge("gotunnel_process_heap_used_bytes", "V8 heap in use.", () => now().memory.heapUsed),
    );
    r.add(
      gauge("gotunnel_process_heap_total_bytes", "V8 heap reserved.", () => now().memory.heapTotal),
    );
    r.add(gauge(
      "gotunnel_start_time_seconds",
      "When the server started, in seconds since the epoch.",
      () => Math.floor(this.#startedAt / 1000),
    ));
    r.add(
      new Collected("gotunnel_build_info", "Always 1; its label is the version.", "gauge", () => [
        { labels: { version: GOTUNNEL_VERSION }, value: 1 },
      ]),
    );
    if (!perTunnel) return;
    // One series per live tunnel: a tunnel that goes away takes its series along, and one that
    // comes back starts from 0 (a counter reset, which rate() takes in its stride).
    const perTunnelFamily = (
      name: string,
      help: string,
      type: "counter" | "gauge",
      read: (t: TunnelSnapshot) => { labels: Labels; value: number }[],
    ): Collected => new Collected(name, help, type, () => now().tunnels.flatMap(read));
    r.add(perTunnelFamily(
      "gotunnel_tunnel_relayed_bytes_total",
      "Bytes relayed by a live tunnel, counted when each relayed connection ends, by direction.",
      "counter",
      (t) => [
        { labels: { tunnel: t.subdomain, direction: "in" }, value: t.bytesIn },
        { labels: { tunnel: t.subdomain, direction: "out" }, value: t.bytesOut },
      ],
    ));
    r.add(perTunnelFamily(
      "gotunnel_tunnel_streams_total",
      "Streams a live tunnel relayed.",
      "counter",
      (t) => [{ labels: { tunnel: t.subdomain }, value: t.streamsTotal }],
    ));
    r.add(perTunnelFamily(
      "gotunnel_tunnel_open_streams",
      "Public connections of a live tunnel waiting for or relaying a stream now.",
      "gauge",
      (t) => [{ labels: { tunnel: t.subdomain }, value: t.streams }],
    ));
  }

  /** A public connection's outcome (an HTTP status the server answered with, as a number too). */
  connection(outcome: ConnectionOutcome | 400 | 404 | 408 | 431 | 502 | 503 | 504): void {
    this.#connections.inc({ outcome: String(outcome) });
  }

  /** A TCP visitor's outcome (but `routed`, which `relayed` counts). */
  tcpConnection(outcome: TcpOutcome): void {
    this.#tcp.inc({ outcome });
  }

  /** How long a public connection's first bytes took to route (ms). */
  sniffed(ms: number): void {
    this.#sniff.observe(ms / 1000);
  }

  /** How long a routed visitor waited for a proxy connection (ms). */
  proxyWaited(ms: number): void {
    this.#proxyWait.observe(ms / 1000);
  }

  /**
   * Counts a stream that starts relaying (`routed`, among TCP visitors with
   * `tcp`), and when `relay` settles, its bytes: `prefix` (sent with `open`)
   * and the stream's own, each way.
   */
  async relayed(
    stats: TunnelStats,
    prefix: number,
    relay: Promise<StreamResult>,
    tcp = false,
  ): Promise<StreamResult> {
    const now = Date.now();
    (tcp ? this.#tcp : this.#connections).inc({ outcome: "routed" });
    this.#relaying.add({}, 1);
    this.#rate.add(now);
    stats.started(now);
    let bytesIn = prefix;
    let bytesOut = 0;
    try {
      const result = await relay;
      bytesIn += result.sent;
      bytesOut = result.received;
      return result;
    } finally {
      this.#relaying.add({}, -1);
      this.#bytes.inc({ direction: "in" }, bytesIn);
      this.#bytes.inc({ direction: "out" }, bytesOut);
      stats.ended(bytesIn, bytesOut);
    }
  }

  /** A client's handshake refused at `stage` with `code`, or failed before a frame (`reason`). */
  clientRefused(stage: HandshakeStage, code: ErrorCode): void {
    if (stage === "hello") this.#registrations.inc({ result: code });
    else if (stage === "attach") this.#attaches.inc({ result: code });
    else this.#handshakeFailures.inc({ reason: code });
  }

  /** A client connection that timed out or closed before its first frame. */
  handshakeFailed(reason: HandshakeFailure): void {
    this.#handshakeFailures.inc({ reason });
  }

  /** A tunnel registered. */
  registered(): void {
    this.#registrations.inc({ result: "registered" });
  }

  /** A proxy connection attached to its tunnel. */
  attached(): void {
    this.#attaches.inc({ result: "attached" });
  }

  /** A name held for a client that went away. */
  leaseHeld(): void {
    this.#leaseHolds.inc();
  }

  /** A held name taken back with its lease. */
  leaseReclaimed(): void {
    this.#leaseReclaims.inc();
  }

  /** Adds metric families of another part of the server (the cluster's). */
  extend(...families: Collected[]): void {
    for (const family of families) this.#registry.add(family);
  }

  /** Every metric in the text exposition format 0.0.4. */
  render(): string {
    try {
      return this.#registry.render();
    } finally {
      this.#now = undefined;
    }
  }

  /** The tunnels as the server sees them now. */
  tunnels(): TunnelSnapshot[] {
    return this.#view.tunnels();
  }

  /** The counters the dashboard sums up, as they are at `now`. */
  counts(now: number = Date.now()): MetricCounts {
    const by = (counter: Counter, label: string): CountsBy =>
      counter.values().map(({ labels, value }) => ({ label: labels[label]!, count: value }));
    return {
      startedAt: this.#startedAt,
      connections: by(this.#connections, "outcome"),
      handshakeFailures: by(this.#handshakeFailures, "reason"),
      registrations: by(this.#registrations, "result"),
      attaches: by(this.#attaches, "result"),
      bytesIn: this.#bytes.get({ direction: "in" }),
      bytesOut: this.#bytes.get({ direction: "out" }),
      relaying: this.#relaying.get(),
      streamsPerSecond: this.#rate.perSecond(now),
    };
  }
}
