// The client's side of opening a tunnel: hello on a fresh control connection,
// then the server's welcome (or its refusal as a TunnelError).

import { TunnelError } from "../errors.ts";
import { type ByteReader, closeQuietly, deadline, writeAll } from "../io.ts";
import { HANDSHAKE_TIMEOUT_MS, MAX_FRAME_BYTES } from "../limits.ts";
import { describeError, type Logger } from "../log.ts";
import {
  type ClientMessage,
  decodeServerFrame,
  encodeFrame,
  FRAME_HEADER_BYTES,
  type ServerMessage,
} from "../protocol.ts";
import { dialServer, type ServerTarget } from "./dial.ts";

/** The server's welcome: the tunnel's name, URL, id, secret and lease. */
export type Welcome = Extract<ServerMessage, { type: "welcome" }>;

/** A control connection the server welcomed. */
export interface Established {
  /** The connection. */
  conn: Deno.Conn;
  /** Its reader, holding whatever followed the welcome. */
  reader: ByteReader;
  /** The welcome. */
  welcome: Welcome;
}

/**
 * Dials the server with `hello` and reads its answer, within
 * HANDSHAKE_TIMEOUT_MS; `signal` ends it at once. Throws a TunnelError with the
 * server's code when it refuses.
 */
export async function openControl(
  target: ServerTarget,
  hello: ClientMessage,
  signal: AbortSignal,
  log: Logger,
): Promise<Established> {
  const { conn, reader } = await dialServer(
    target,
    hello,
    FRAME_HEADER_BYTES + MAX_FRAME_BYTES,
    signal,
  );
  let reply: ServerMessage | null;
  const stop = (): void => closeQuietly(conn);
  const timer = deadline(HANDSHAKE_TIMEOUT_MS, stop);
  signal.addEventListener("abort", stop);
  if (signal.aborted) stop();
  try {
    reply = await reader.readFrame(decodeServerFrame);
  } catch (e) {
    closeQuietly(conn);
    const why = timer.expired ? `no welcome in ${HANDSHAKE_TIMEOUT_MS} ms` : describeError(e);
    throw new TunnelError("protocol", `Cannot open tunnel: ${why}`, { cause: e });
  } finally {
    timer.clear();
    signal.removeEventListener("abort", stop);
  }
  if (reply?.type === "welcome") {
    // Tell the server at once that the welcome (and its lease) arrived: only then
    // does it hold the name for us if we vanish. A failed write shows up as a lost
    // control connection right after.
    await writeAll(conn, encodeFrame({ type: "ping" })).catch((e) =>
      log.debug("Cannot answer the welcome", { error: describeError(e) })
    );
    return { conn, reader, welcome: reply };
  }
  closeQuietly(conn);
  if (reply?.type === "error") {
    throw new TunnelError(reply.code, reply.message, { retryAfterMs: reply.retryAfterMs });
  }
  throw new TunnelError("protocol", "Cannot open tunnel: server closed without a welcome");
}
