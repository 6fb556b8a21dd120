// A node connection accepted from another node of the cluster: its hello checked
// (a node without the cluster key is refused), then, for each `forward` that
// comes, the visitor it carries handed to the local tunnel, if that very session
// still holds it (the split-brain check), as if the visitor had come here: its
// stream (frames on the node connection) is read and written through a
// ChannelStream. After a stream that ended cleanly both ways, the connection
// waits for the next `forward`.

import { ProxyChannel } from "../../channel.ts";
import { ChannelStream } from "../../channel_stream.ts";
import { describeError } from "../../log.ts";
import {
  answerAndLinger,
  ByteReader,
  closeQuietly,
  type Conn,
  deadline,
  FRAME_READER_CAPACITY,
  writeAll,
} from "../../io.ts";
import { NODE_CONNECT_TIMEOUT_MS, NODE_IDLE_MS } from "./timings.ts";
import { encodeJsonFrame } from "../../protocol.ts";
import { httpError } from "../../http/response.ts";
import { concatBytes } from "../../bytes.ts";
import type { Outcome, ServerContext } from "../context.ts";
import { forward } from "../forward.ts";
import type { ServerTunnel } from "../tunnel.ts";
import { createNodeWelcome } from "./node_auth.ts";
import {
  decodeForward,
  decodeObject,
  NODE_UPGRADE_RESPONSE,
  type NodeAnswer,
  type NodeForward,
} from "./node_wire.ts";
import { itemOf } from "./records.ts";

/**
 * Serves a node connection whose upgrade was read: checks the hello within
 * NODE_CONNECT_TIMEOUT_MS (calling `authenticated` once it passed, until when
 * the connection counts as one being routed), welcomes, then waits up to
 * NODE_IDLE_MS for a `forward` and relays the visitor it carries, again and
 * again while streams end cleanly. Returns when the connection is to be closed.
 */
export async function serveNode(
  ctx: ServerContext,
  conn: Conn,
  bytes: ByteReader,
  id: number,
  authenticated: () => void,
): Promise<Outcome> {
  const cluster = ctx.cluster;
  const reader = new ByteReader(conn, FRAME_READER_CAPACITY, bytes.buffered);
  if (!cluster) {
    ctx.log.debug("Node connection to a server not in a cluster", { conn: id });
    return await answerAndLinger(conn, httpError(404, "This server is not a node of a cluster"));
  }
  const timer = deadline(NODE_CONNECT_TIMEOUT_MS, () => closeQuietly(conn));
  let hello;
  try {
    const first = await reader.readFrame(decodeObject);
    const checked = await cluster.verifier.verify(first);
    if (!checked.ok) {
      cluster.count("refused");
      ctx.log.warn("Node connection refused", { conn: id, reason: checked.reason });
      return;
    }
    hello = checked.message;
  } catch (e) {
    cluster.count("refused");
    return ctx.log.debug("Node hello not read", { conn: id, error: `${e}` });
  } finally {
    timer.clear();
  }
  authenticated();
  const welcome = await createNodeWelcome(cluster.key, hello);
  await writeAll(conn, concatBytes(NODE_UPGRADE_RESPONSE, encodeJsonFrame(welcome)));
  const channel = new ProxyChannel(conn, reader.buffered.slice());
  for (;;) {
    const request = await nextForward(ctx, channel, id);
    if (request === null) return;
    const tunnel = ownTunnel(ctx, request);
    if (typeof tunnel === "string") {
      cluster.count("stale");
      ctx.log.info("Forwarded visitor refused", {
        from: hello.from,
        item: itemOf(request),
        reason: tunnel,
      });
      // The visitor's first bytes may follow: the connection ends here, not in step.
      const answer: NodeAnswer = { type: "refused", status: 502, reason: tunnel };
      return await writeAll(conn, encodeJsonFrame(answer));
    }
    cluster.count("in");
    await writeAll(conn, encodeJsonFrame({ type: "forwarded" } satisfies NodeAnswer));
    const stream = new ChannelStream(channel, conn.remoteAddr);
    try {
      await forward(
        ctx,
        stream,
        new ByteReader(stream, ctx.limits.maxSniffBytes),
        tunnel,
        request.carried,
        id,
        {
          peer: request.peer,
          ...(request.dest === undefined ? {} : { dest: request.dest }),
        },
      );
    } finally {
      closeQuietly(stream); // after a clean stream, leaves the connection for the next
    }
    if (!stream.clean || ctx.closing) return;
  }
}

/**
 * Waits up to NODE_IDLE_MS (and a little more: the dialling node closes first)
 * for the next `forward` on an idle node connection, which meanwhile is the
 * node's (`idleInbound`), not a busy connection of the server; null when the
 * connection ended or failed instead.
 */
async function nextForward(
  ctx: ServerContext,
  channel: ProxyChannel,
  id: number,
): Promise<NodeForward | null> {
  const cluster = ctx.cluster!;
  const conn = channel.conn;
  ctx.conns.delete(conn);
  cluster.idleInbound.add(conn);
  const idle = deadline(NODE_IDLE_MS + NODE_CONNECT_TIMEOUT_MS, () => closeQuietly(conn));
  try {
    return await channel.readMessage(decodeForward);
  } catch (e) {
    ctx.log.debug("Node connection ended idle", { conn: id, error: describeError(e) });
    return null;
  } finally {
    idle.clear();
    cluster.idleInbound.delete(conn);
    ctx.conns.add(conn);
  }
}

/** The local tunnel `request` names, if the session the directory gave still holds it; else why not. */
function ownTunnel(ctx: ServerContext, request: NodeForward): ServerTunnel | string {
  const name = request.kind === "port" ? `tcp:${request.value}` : request.value;
  const tunnel = ctx.registry.get(name);
  if (!tunnel || tunnel.ended || tunnel.revoked) return `no tunnel holds ${itemOf(request)} here`;
  if (tunnel.uid !== request.session) {
    return `${itemOf(request)} is held here by another session than the directory said`;
  }
  return tunnel;
}
