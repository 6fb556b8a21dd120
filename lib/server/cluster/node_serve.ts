// A node connection accepted from another node of the cluster: its hello checked
// (a node without the cluster key is refused), then, once a `forward` comes, the
// visitor it carries handed to the local tunnel, if that very session still
// holds it (the split-brain check), as if the visitor had come here.

import {
  answerAndLinger,
  ByteReader,
  closeQuietly,
  type Conn,
  deadline,
  FRAME_READER_CAPACITY,
  writeAll,
} from "../../io.ts";
import { NODE_CONNECT_TIMEOUT_MS, NODE_IDLE_MS } from "../../limits.ts";
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
 * the connection counts as one being routed), welcomes, waits up to
 * NODE_IDLE_MS for a `forward`, and relays the visitor it carries.
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
  // Idle until the other node hands it a visitor (or closes it): not a busy connection.
  ctx.conns.delete(conn);
  cluster.idleInbound.add(conn);
  const idle = deadline(NODE_IDLE_MS + NODE_CONNECT_TIMEOUT_MS, () => closeQuietly(conn));
  let request: NodeForward | null;
  try {
    request = await reader.readFrame(decodeForward);
  } catch (e) {
    return ctx.log.debug("Node connection ended idle", { conn: id, error: `${e}` });
  } finally {
    idle.clear();
    cluster.idleInbound.delete(conn);
    ctx.conns.add(conn);
  }
  if (request === null) return;
  const tunnel = ownTunnel(ctx, request);
  if (typeof tunnel === "string") {
    cluster.count("stale");
    ctx.log.info("Forwarded visitor refused", {
      from: hello.from,
      item: itemOf(request),
      reason: tunnel,
    });
    const answer: NodeAnswer = { type: "refused", status: 502, reason: tunnel };
    return await writeAll(conn, encodeJsonFrame(answer));
  }
  cluster.count("in");
  await writeAll(conn, encodeJsonFrame({ type: "forwarded" } satisfies NodeAnswer));
  await forward(ctx, conn, reader, tunnel, request.carried, id, {
    peer: request.peer,
    ...(request.dest === undefined ? {} : { dest: request.dest }),
  });
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
