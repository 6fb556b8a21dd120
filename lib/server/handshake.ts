// A client's upgraded connection: `hello` registers a tunnel, `attach` adds a proxy connection.

import { ProxyChannel } from "../channel.ts";
import { ByteReader, closeQuietly, deadline, FRAME_READER_CAPACITY, writeAll } from "../io.ts";
import { checkSubdomain, randomSubdomain, randomToken, timingSafeEqual } from "../names.ts";
import {
  type ClientMessage,
  concatBytes,
  decodeClientFrame,
  encodeFrame,
  type ErrorCode,
  PROTOCOL_VERSION,
  SECRET_BYTES,
  UPGRADE_RESPONSE,
} from "../protocol.ts";
import { ipOf, type Outcome, peerOf, type ServerContext } from "./context.ts";
import { Session } from "./session.ts";

/** Reads the first frame of an upgraded connection and serves it as a control or proxy connection. */
export async function handleClient(
  ctx: ServerContext,
  conn: Deno.Conn,
  bytes: ByteReader,
  id: number,
): Promise<Outcome> {
  const reader = new ByteReader(conn, FRAME_READER_CAPACITY, bytes.buffered);
  const timer = deadline(ctx.limits.handshakeTimeoutMs, () => closeQuietly(conn));
  let first;
  try {
    first = await reader.readFrame((bytes) => decodeClientFrame(bytes, ctx.limits.maxFrameBytes));
  } catch (e) {
    if (timer.expired) return ctx.log.debug("Handshake timed out", { conn: id });
    if (!(e instanceof SyntaxError)) throw e;
    return await refuse(ctx, conn, "bad-request", `Cannot read first frame: ${e.message}`);
  } finally {
    timer.clear();
  }
  if (first === null) return;
  if (first.type !== "hello" && first.type !== "attach") {
    return await refuse(ctx, conn, "bad-request", `Expected hello or attach, got ${first.type}`);
  }
  if (first.version !== PROTOCOL_VERSION) {
    return await refuse(
      ctx,
      conn,
      "version",
      `Protocol version ${first.version} is not supported; this server speaks ${PROTOCOL_VERSION}`,
    );
  }
  if (first.type === "attach") return await attach(ctx, conn, reader, first);
  return await hello(ctx, conn, reader, first, id);
}

async function attach(
  ctx: ServerContext,
  conn: Deno.Conn,
  reader: ByteReader,
  message: Extract<ClientMessage, { type: "attach" }>,
): Promise<Outcome> {
  const session = ctx.registry.byId(message.tunnel);
  if (!session || !timingSafeEqual(message.secret, session.secret)) {
    return await refuse(ctx, conn, "unauthorized", "Cannot attach: unknown tunnel or wrong secret");
  }
  if (reader.buffered.length > 0) {
    return await refuse(ctx, conn, "bad-request", "Unexpected bytes after attach");
  }
  await writeAll(conn, UPGRADE_RESPONSE);
  if (!session.addProxy(new ProxyChannel(conn))) {
    return await refuse(ctx, conn, "pool-full", "Too many idle proxy connections", false);
  }
  return "kept"; // the session owns it now, then each stream that takes it
}

async function hello(
  ctx: ServerContext,
  conn: Deno.Conn,
  reader: ByteReader,
  message: Extract<ClientMessage, { type: "hello" }>,
  id: number,
): Promise<Outcome> {
  const ip = ipOf(conn);
  const overLimit = ctx.admission.checkNewTunnel(ip);
  if (overLimit) return await refuse(ctx, conn, "limit", overLimit);
  let requested: string | undefined;
  if (message.subdomain !== undefined) {
    const checked = checkSubdomain(message.subdomain);
    if (!checked.ok) return await refuse(ctx, conn, "invalid-subdomain", checked.reason);
    requested = checked.name;
  }
  const denied = await ctx.auth.check(message.token, requested);
  if (denied) return await refuse(ctx, conn, "unauthorized", `Cannot open tunnel: ${denied}`);
  // Everything asynchronous happens before the name is checked: from the check to
  // the registration below there is no await, so two claims cannot both win.
  const leaseNonce = requested === undefined
    ? undefined
    : await ctx.leases.verify(message.lease, requested);
  let name: string;
  if (requested !== undefined) {
    name = requested;
    const holder = ctx.registry.get(name);
    if (holder && leaseNonce !== undefined && leaseNonce === holder.leaseNonce) {
      // Its own client is back on a new connection before the old one was found dead.
      ctx.log.info("Tunnel replaced by its client", { subdomain: name });
      ctx.registry.remove(holder);
      holder.replace();
    } else if (holder) {
      return await refuse(
        ctx,
        conn,
        "subdomain-taken",
        `Cannot register subdomain "${name}": already in use`,
      );
    } else {
      const hold = ctx.leases.heldFor(name);
      if (
        hold &&
        (leaseNonce === undefined || (hold.nonce !== undefined && hold.nonce !== leaseNonce))
      ) {
        const seconds = Math.ceil(hold.leftMs / 1000);
        return await refuse(
          ctx,
          conn,
          "subdomain-reserved",
          `Cannot register subdomain "${name}": reserved for its previous client for another ${seconds} s`,
          true,
          hold.leftMs,
        );
      }
      ctx.leases.release(name);
    }
  } else {
    do name = randomSubdomain(); while (ctx.registry.get(name) || ctx.leases.heldFor(name));
  }
  const session = new Session(
    {
      id: randomToken(16),
      secret: randomToken(SECRET_BYTES),
      subdomain: name,
      log: ctx.log,
      limits: ctx.limits,
    },
    conn,
    reader,
  );
  ctx.registry.add(session);
  ctx.admission.addTunnel(ip);
  ctx.controlConns.add(conn);
  let reason = "welcome not delivered";
  try {
    const { lease, nonce } = await ctx.leases.issue(name);
    session.leaseNonce = nonce;
    ctx.log.info("Tunnel registered", { conn: id, subdomain: name, peer: peerOf(conn) });
    await writeAll(
      conn,
      concatBytes(
        UPGRADE_RESPONSE,
        encodeFrame({
          type: "welcome",
          version: PROTOCOL_VERSION,
          tunnel: session.id,
          secret: session.secret,
          subdomain: name,
          url: ctx.url.replace("//", `//${name}.`),
          lease,
        }),
      ),
    );
    reason = await session.run();
  } finally {
    session.close();
    ctx.controlConns.delete(conn);
    ctx.registry.remove(session);
    ctx.admission.removeTunnel(ip);
    // A client that went away without saying bye may come back: hold its name.
    const holds = !session.saidBye && !session.replaced && session.leaseNonce !== undefined &&
      !ctx.closing;
    if (holds && !ctx.registry.get(name)) ctx.leases.hold(name, session.leaseNonce!);
    ctx.log.info("Tunnel closed", { conn: id, subdomain: name, reason, held: holds });
  }
}

/** Answers a client with an error frame (after the 101, unless already sent). */
async function refuse(
  ctx: ServerContext,
  conn: Deno.Conn,
  code: ErrorCode,
  message: string,
  upgrade = true,
  retryAfterMs?: number,
): Promise<void> {
  ctx.log.debug("Refused client", { code, message });
  const short = message.length > 200 ? message.slice(0, 200) + "…" : message;
  const frame = encodeFrame(
    retryAfterMs === undefined
      ? { type: "error", code, message: short }
      : { type: "error", code, message: short, retryAfterMs },
  );
  await writeAll(conn, upgrade ? concatBytes(UPGRADE_RESPONSE, frame) : frame);
}
