// The client's side of opening a control connection: hello and the first claim on a
// fresh connection, then the server's welcome and its answer to the claim (or its
// refusal as a TunnelError).

import { TunnelError } from "../errors.ts";
import { concatBytes } from "../bytes.ts";
import { type ByteReader, closeQuietly, deadline, writeAll } from "../io.ts";
import {
  CLAIM_TIMEOUT_MS,
  HANDSHAKE_TIMEOUT_MS,
  LIMIT_RANGES,
  MAX_FRAME_BYTES,
} from "../limits.ts";
import { describeError, type Logger } from "../log.ts";
import {
  type ClientMessage,
  decodeServerFrame,
  encodeFrame,
  FRAME_HEADER_BYTES,
  frameBatches,
  PROTOCOL_VERSION,
  type ServerMessage,
  type TunnelClaim,
  type TunnelGrant,
} from "../protocol.ts";
import { dialServer, type ServerTarget } from "./dial.ts";

/** The server's welcome: the session's id and secret. */
export type Welcome = Extract<ServerMessage, { type: "welcome" }>;

/** A control connection the server welcomed. */
export interface Established {
  /** The connection. */
  conn: Deno.Conn;
  /** Its reader, holding whatever followed the answer to the claim. */
  reader: ByteReader;
  /** The welcome. */
  welcome: Welcome;
  /** The answer to each claim sent with the hello, in order. */
  grants: TunnelGrant[];
}

/** The TunnelError a server's `error` frame means; a `version` one says which side to upgrade. */
export function refusalError(reply: Extract<ServerMessage, { type: "error" }>): TunnelError {
  if (reply.code !== "version") {
    return new TunnelError(reply.code, reply.message, { retryAfterMs: reply.retryAfterMs });
  }
  // Servers before protocol 3 do not say their version: they are older.
  const theirs = reply.version;
  const older = theirs === undefined || theirs < PROTOCOL_VERSION;
  return new TunnelError(
    "version",
    `Cannot open tunnel: the server speaks Gotunnel protocol ${theirs ?? "2 or older"} and this ` +
      `client ${PROTOCOL_VERSION}: upgrade the ${older ? "server" : "client"}`,
  );
}

/**
 * Dials the server with `hello` and `claims`, and reads its welcome within
 * HANDSHAKE_TIMEOUT_MS and its answer to the claims within CLAIM_TIMEOUT_MS;
 * `signal` ends it at once. Throws a TunnelError with the server's code when
 * it refuses the hello.
 */
export async function openControl(
  target: ServerTarget,
  hello: ClientMessage,
  claims: TunnelClaim[],
  signal: AbortSignal,
  log: Logger,
): Promise<Established> {
  const { conn, reader } = await dialServer(
    target,
    hello,
    FRAME_HEADER_BYTES + MAX_FRAME_BYTES,
    signal,
    concatBytes(
      // Within the smallest frame any server takes (--max-frame-bytes).
      ...frameBatches(claims, LIMIT_RANGES.maxFrameBytes[0]).map((tunnels) =>
        encodeFrame({ type: "claim", tunnels })
      ),
    ),
  );
  let reply: ServerMessage | null;
  const stop = (): void => closeQuietly(conn);
  let timer = deadline(HANDSHAKE_TIMEOUT_MS, stop);
  signal.addEventListener("abort", stop);
  if (signal.aborted) stop();
  let grants: ServerMessage | null = null;
  const granted: TunnelGrant[] = [];
  try {
    reply = await reader.readFrame(decodeServerFrame);
    if (reply?.type === "welcome") {
      timer.clear();
      timer = deadline(CLAIM_TIMEOUT_MS, stop);
      // One answer per claim, maybe in several frames.
      while (granted.length < claims.length) {
        do grants = await reader.readFrame(decodeServerFrame); while (grants?.type === "ping");
        if (grants?.type !== "claimed") break;
        granted.push(...grants.tunnels);
      }
    }
  } catch (e) {
    closeQuietly(conn);
    const why = timer.expired ? `no answer in ${HANDSHAKE_TIMEOUT_MS} ms` : describeError(e);
    throw new TunnelError("protocol", `Cannot open tunnel: ${why}`, { cause: e });
  } finally {
    timer.clear();
    signal.removeEventListener("abort", stop);
  }
  if (reply?.type === "welcome" && granted.length === claims.length) {
    // Tell the server at once that the grants (and their leases) arrived: only then
    // does it hold the names for us if we vanish. A failed write shows up as a lost
    // control connection right after.
    await writeAll(conn, encodeFrame({ type: "ping" })).catch((e) =>
      log.debug("Cannot answer the welcome", { error: describeError(e) })
    );
    return { conn, reader, welcome: reply, grants: granted };
  }
  closeQuietly(conn);
  const refusal = reply?.type === "error" ? reply : grants?.type === "error" ? grants : undefined;
  if (refusal) throw refusalError(refusal);
  throw new TunnelError("protocol", "Cannot open tunnel: server closed without a welcome");
}
