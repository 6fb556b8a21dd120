// A visitor for a tunnel another node holds: the directory (from this node's
// cache) says which node and session, a pooled node connection to it carries a
// `forward` with the bytes read so far, and once the owner accepts, the visitor's
// stream is relayed over it in stream frames, as over a proxy connection; a
// stream that ended cleanly both ways gives the connection back to the pool. No
// answer is given the visitor here but the outcome; the caller turns it into a
// status or a close.

import { type ByteReader, closeQuietly, type Conn, deadline, peerOf } from "../../io.ts";
import { NODE_ANSWER_TIMEOUT_MS } from "./timings.ts";
import { describeError } from "../../log.ts";
import { logStream, relayStream } from "../../relay.ts";
import type { ServerContext } from "../context.ts";
import { DirectoryError } from "./errors.ts";
import { itemOf } from "./records.ts";
import { NodeDialError, type NodeLink } from "./node_dial.ts";
import {
  decodeAnswer,
  encodeForward,
  type NodeAnswer,
  type NodeCarried,
  type NodeForward,
} from "./node_wire.ts";
import type { DirectoryEntry, DirectoryKind } from "./records.ts";

/**
 * What became of a visitor for an item this node does not hold: `forwarded`
 * (relayed through its owner, and done), `absent` (nobody holds it), `held`
 * (held for a client that is reconnecting, or its owner cannot take it now:
 * a 502), `unavailable` (the directory cannot be asked and nothing is cached: a 503).
 */
export type RemoteOutcome = "forwarded" | "absent" | "held" | "unavailable";

/**
 * Looks `kind:value` up and, when another node's session holds it, forwards
 * the visitor on `conn` (the bytes in `reader` first) to that node and relays
 * its stream until both directions end.
 */
export async function forwardRemote(
  ctx: ServerContext,
  conn: Conn,
  reader: ByteReader,
  item: { kind: DirectoryKind; value: string },
  carried: NodeCarried,
  id: number,
  dest?: string,
): Promise<RemoteOutcome> {
  const cluster = ctx.cluster!;
  let entry: DirectoryEntry | undefined;
  try {
    entry = await cluster.lookup(item.kind, item.value);
  } catch (e) {
    if (!(e instanceof DirectoryError)) throw e;
    ctx.log.warn("Cannot look a visitor's tunnel up", { item: itemOf(item), error: e.message });
    return "unavailable";
  }
  if (!entry) return "absent";
  if (entry.session === "" || entry.node === cluster.id) return "held";
  const record = await cluster.nodeRecord(entry.node).catch(() => undefined);
  if (!record) return "held"; // its node is gone: its client is coming back through another
  const request: NodeForward = {
    type: "forward",
    kind: item.kind,
    value: item.value,
    session: entry.session,
    peer: peerOf(conn),
    carried,
    ...(dest === undefined ? {} : { dest }),
  };
  const prefix = reader.buffered.slice();
  const where = { conn: id, item: itemOf(item), node: entry.node };
  // An idle pooled connection may have been closed by the other node: one more, fresh, then.
  let link: NodeLink | undefined;
  for (let attempt = 0; attempt < 2 && !link; attempt++) {
    let candidate: NodeLink;
    try {
      candidate = attempt === 0
        ? await cluster.dialer.take(entry.node, record.addr)
        : await cluster.dialer.dial(entry.node, record.addr);
    } catch (e) {
      cluster.count("failed");
      if (e instanceof NodeDialError && e.code === "refused") ctx.log.error(e.message, where);
      else ctx.log.info("Owner node unreachable", { ...where, error: describeError(e) });
      cluster.dialer.drop(entry.node);
      return "held";
    }
    ctx.conns.add(candidate.conn);
    const answer = await ask(candidate, request, prefix).catch((e) => {
      ctx.log.debug("Node connection failed before its answer", {
        ...where,
        error: describeError(e),
      });
      return undefined;
    });
    if (answer?.type === "forwarded") {
      link = candidate;
      break;
    }
    ctx.conns.delete(candidate.conn);
    closeQuietly(candidate.conn);
    if (answer?.type === "refused") {
      cluster.count("stale");
      ctx.log.info("Owner node refused the visitor", { ...where, reason: answer.reason });
      return "held";
    }
  }
  if (!link) {
    cluster.count("failed");
    return "held";
  }
  cluster.count("out");
  ctx.metrics.connection("forwarded");
  reader.consume(reader.buffered.length);
  let reused = false;
  try {
    const result = await relayStream(conn, link.channel, {
      idleTimeoutMs: ctx.limits.streamIdleTimeoutMs,
    });
    logStream(ctx.log, result, where);
    // Only a stream that ended with END both ways leaves both nodes sure of where it ended.
    if (result.reusable && !result.aborted && !ctx.closing) {
      ctx.conns.delete(link.conn);
      cluster.dialer.give(entry.node, link);
      reused = true;
    }
  } finally {
    if (!reused) {
      ctx.conns.delete(link.conn);
      closeQuietly(link.conn);
    }
  }
  return "forwarded";
}

/** Sends `request` and the visitor's first bytes on `link`; resolves with the owner's answer. */
async function ask(
  link: NodeLink,
  request: NodeForward,
  prefix: Uint8Array,
): Promise<NodeAnswer | null> {
  const timer = deadline(NODE_ANSWER_TIMEOUT_MS, () => closeQuietly(link.conn));
  try {
    await link.channel.sendStart(encodeForward(request, prefix));
    return await link.channel.readMessage(decodeAnswer);
  } finally {
    timer.clear();
  }
}
