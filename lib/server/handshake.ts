// A client's upgraded connection, up to the handshake's outcome: `hello` opens a
// session (lib/server/session_life.ts) once its token passed, `attach` adds a
// proxy connection to one, anything else (an older version) is refused with an
// error frame.

import { concatBytes } from "../bytes.ts";
import { ProxyChannel } from "../channel.ts";
import {
  ByteReader,
  closeQuietly,
  type Conn,
  deadline,
  FRAME_READER_CAPACITY,
  ipOf,
  writeAll,
} from "../io.ts";
import { timingSafeEqual } from "../names.ts";
import {
  type ClientMessage,
  decodeClientFrame,
  encodeFrame,
  type ErrorCode,
  PROTOCOL_VERSION,
  UPGRADE_RESPONSE,
} from "../protocol.ts";
import type { Outcome, ServerContext } from "./context.ts";
import { serveSession } from "./session_life.ts";
import type { HandshakeStage } from "./outcomes.ts";

/**
 * Reads the first frame of an upgraded connection and serves it as a control or
 * proxy connection; calls `authenticated` once the client proved who it is (a
 * token, or a tunnel's secret), so that until then it counts as a connection
 * being routed.
 */
export async function handleClient(
  ctx: ServerContext,
  conn: Conn,
  bytes: ByteReader,
  id: number,
  authenticated: () => void,
): Promise<Outcome> {
  const reader = new ByteReader(conn, FRAME_READER_CAPACITY, bytes.buffered);
  const timer = deadline(ctx.limits.handshakeTimeoutMs, () => closeQuietly(conn));
  let first;
  try {
    first = await reader.readFrame((bytes) => decodeClientFrame(bytes, ctx.limits.maxFrameBytes));
  } catch (e) {
    if (timer.expired) ctx.metrics.handshakeFailed("timeout");
    if (timer.expired) return ctx.log.debug("Handshake timed out", { conn: id });
    if (!(e instanceof SyntaxError)) throw e;
    return await refuse(ctx, conn, "first", "bad-request", `Cannot read first frame: ${e.message}`);
  } finally {
    timer.clear();
  }
  if (first === null) return ctx.metrics.handshakeFailed("closed");
  if (first.type !== "hello" && first.type !== "attach") {
    return await refuse(
      ctx,
      conn,
      "first",
      "bad-request",
      `Expected hello or attach, got ${first.type}`,
    );
  }
  if (first.version !== PROTOCOL_VERSION) {
    const older = first.version < PROTOCOL_VERSION;
    return await refuse(
      ctx,
      conn,
      "first",
      "version",
      `Cannot open tunnel: this server speaks Gotunnel protocol ${PROTOCOL_VERSION} and the ` +
        `client ${first.version}; upgrade the ${older ? "client" : "server"}`,
      true,
      undefined,
      PROTOCOL_VERSION,
    );
  }
  if (first.type === "attach") return await attach(ctx, conn, reader, first, authenticated);
  return await hello(ctx, conn, reader, first, id, authenticated);
}

async function attach(
  ctx: ServerContext,
  conn: Conn,
  reader: ByteReader,
  message: Extract<ClientMessage, { type: "attach" }>,
  authenticated: () => void,
): Promise<Outcome> {
  const session = ctx.registry.byId(message.session);
  if (!session || !timingSafeEqual(message.secret, session.secret)) {
    return await refuse(
      ctx,
      conn,
      "attach",
      "unauthorized",
      "Cannot attach: unknown tunnel or wrong secret",
    );
  }
  authenticated();
  if (reader.buffered.length > 0) {
    return await refuse(ctx, conn, "attach", "bad-request", "Unexpected bytes after attach");
  }
  await writeAll(conn, UPGRADE_RESPONSE);
  if (!session.addProxy(new ProxyChannel(conn))) {
    return await refuse(ctx, conn, "attach", "pool-full", "Too many idle proxy connections", false);
  }
  ctx.metrics.attached();
  return "kept"; // the session owns it now, then each stream that takes it
}

/** A hello: the token checked and the rate of new sessions counted, then a session served. */
async function hello(
  ctx: ServerContext,
  conn: Conn,
  reader: ByteReader,
  message: Extract<ClientMessage, { type: "hello" }>,
  id: number,
  authenticated: () => void,
): Promise<Outcome> {
  const ip = ipOf(conn);
  const who = await ctx.auth.identify(message.token);
  if (!who.ok) {
    if (!ctx.admission.countAuthFailure(ip)) {
      return await refuse(
        ctx,
        conn,
        "hello",
        "limit",
        `Too many failed tokens from ${ip}: wait a minute`,
      );
    }
    return await refuse(ctx, conn, "hello", "unauthorized", `Cannot open tunnel: ${who.reason}`);
  }
  // An IP at its tunnel limit is told so before its session counts against the rate.
  const full = ctx.admission.tunnelsFull(ip);
  if (full) return await refuse(ctx, conn, "hello", "limit", full);
  const rate = ctx.admission.countNewTunnel(ip);
  if (rate) return await refuse(ctx, conn, "hello", "limit", rate);
  authenticated();
  return await serveSession(ctx, conn, reader, who.key, id);
}

/** Answers a client with an error frame (after the 101, unless already sent), and counts it. */
async function refuse(
  ctx: ServerContext,
  conn: Conn,
  stage: HandshakeStage,
  code: ErrorCode,
  message: string,
  upgrade = true,
  retryAfterMs?: number,
  version?: number,
): Promise<void> {
  ctx.log.debug("Refused client", { code, message });
  ctx.metrics.clientRefused(stage, code);
  const short = message.length > 200 ? message.slice(0, 200) + "…" : message;
  const frame = encodeFrame({
    type: "error",
    code,
    message: short,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    ...(version === undefined ? {} : { version }),
  });
  await writeAll(conn, upgrade ? concatBytes(UPGRADE_RESPONSE, frame) : frame);
}
