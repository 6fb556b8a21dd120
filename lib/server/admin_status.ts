// What `/api/tunnels` answers (and the dashboard shows): the server's counters
// summed up, and every tunnel with its numbers.

import { GOTUNNEL_VERSION } from "../protocol.ts";
import type { MetricCounts, TunnelSnapshot } from "./server_metrics.ts";
import type { ClusterStatus } from "./cluster/node.ts";
import { SERVED_OUTCOMES } from "./outcomes.ts";

/** Outcomes of public connections that are not refusals; the others are listed as refused. */
const SERVED: ReadonlySet<string> = new Set(SERVED_OUTCOMES);

/** One refusal count. */
export interface RefusalCount {
  /** `connection` (a public connection's outcome), `handshake`, `registration` or `attach`. */
  kind: "connection" | "handshake" | "registration" | "attach";
  /** The outcome, failure reason or error code. */
  reason: string;
  /** How many so far. */
  count: number;
}

/** One tunnel as `/api/tunnels` lists it. */
export interface TunnelStatus {
  /** Its subdomain. */
  name: string;
  /** Its client's address, `ip:port`. */
  client: string;
  /** When it was registered (ISO 8601). */
  since: string;
  /** Public connections waiting for or relaying a stream now. */
  openStreams: number;
  /** Idle proxy connections now. */
  idleProxies: number;
  /** Bytes from visitors, counted when each relayed connection ends. */
  bytesIn: number;
  /** Bytes to visitors, counted when each relayed connection ends. */
  bytesOut: number;
  /** Streams relayed so far. */
  streams: number;
  /** Streams started a second over the last minute. */
  streamsPerSecond: number;
}

/** What `/api/tunnels` answers. */
export interface AdminStatus {
  /** The server's version. */
  version: string;
  /** When this was taken (ISO 8601). */
  now: string;
  /** When the server started (ISO 8601). */
  startedAt: string;
  /** Now (tunnels, open and relayed streams) and since the start (bytes, streams). */
  totals: {
    tunnels: number;
    openStreams: number;
    relayedStreams: number;
    bytesIn: number;
    bytesOut: number;
    streams: number;
    streamsPerSecond: number;
  };
  /** Public connections by outcome. */
  connections: Record<string, number>;
  /** Refusals of every kind, by reason (zeros included). */
  refusals: RefusalCount[];
  /** The tunnels registered now, oldest first. */
  tunnels: TunnelStatus[];
  /** In a cluster: this node, Redis, the live nodes, and visitors handed between nodes. */
  cluster?: ClusterStatus;
}

/** Sums up `counts` and lists `tunnels` (oldest first) as of `now`. */
export function adminStatus(
  counts: MetricCounts,
  tunnels: readonly TunnelSnapshot[],
  cluster?: ClusterStatus,
  now: number = Date.now(),
): AdminStatus {
  const connections: Record<string, number> = {};
  for (const { label, count } of counts.connections) connections[label] = count;
  const refusals: RefusalCount[] = [
    ...counts.connections.filter(({ label }) => !SERVED.has(label))
      .map(({ label, count }) => ({ kind: "connection" as const, reason: label, count })),
    ...counts.handshakeFailures
      .map(({ label, count }) => ({ kind: "handshake" as const, reason: label, count })),
    ...counts.registrations.filter(({ label }) => label !== "registered")
      .map(({ label, count }) => ({ kind: "registration" as const, reason: label, count })),
    ...counts.attaches.filter(({ label }) => label !== "attached")
      .map(({ label, count }) => ({ kind: "attach" as const, reason: label, count })),
  ];
  const oldestFirst = [...tunnels].sort((a, b) => a.since - b.since);
  return {
    version: GOTUNNEL_VERSION,
    now: new Date(now).toISOString(),
    startedAt: new Date(counts.startedAt).toISOString(),
    totals: {
      tunnels: tunnels.length,
      openStreams: tunnels.reduce((sum, t) => sum + t.streams, 0),
      relayedStreams: counts.relaying,
      bytesIn: counts.bytesIn,
      bytesOut: counts.bytesOut,
      streams: connections.routed ?? 0,
      streamsPerSecond: counts.streamsPerSecond,
    },
    connections,
    refusals,
    tunnels: oldestFirst.map((t) => ({
      name: t.subdomain,
      client: t.peer,
      since: new Date(t.since).toISOString(),
      openStreams: t.streams,
      idleProxies: t.idleProxies,
      bytesIn: t.bytesIn,
      bytesOut: t.bytesOut,
      streams: t.streamsTotal,
      streamsPerSecond: t.streamsPerSecond,
    })),
    ...(cluster ? { cluster } : {}),
  };
}
