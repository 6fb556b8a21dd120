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
  // The tunnel slot is taken now, before any await, so parallel hellos cannot overshoot it.
  ctx.admission.addTunnel(ip);
  try {
    return await claim(ctx, conn, reader, message, id);
  } finally {
    ctx.admission.removeTunnel(ip);
  }
}

/** How many random names are drawn before giving up (each is 36^10 to one to clash). */
const RANDOM_NAME_ATTEMPTS = 100;

async function claim(
  ctx: ServerContext,
  conn: Deno.Conn,
  reader: ByteReader,
  message: Extract<ClientMessage, { type: "hello" }>,
  id: number,
): Promise<Outcome> {
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
  const lease = requested === undefined
    ? undefined
    : await ctx.leases.verify(message.lease, requested);
  let name: string | undefined;
  if (requested !== undefined) {
    name = requested;
    const holder = ctx.registry.get(name);
    if (holder && lease !== undefined && lease.nonce === holder.leaseNonce) {
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
      if (hold && !ctx.leases.mayClaim(hold, lease)) {
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
    // Random names skip real holds only: a restart's grace holds every name, and no
    // previous client can hold a fresh random one.
    for (let i = 0; i < RANDOM_NAME_ATTEMPTS && name === undefined; i++) {
      const candidate = randomSubdomain();
      if (!ctx.registry.get(candidate) && !ctx.leases.isHeld(candidate)) name = candidate;
    }
    if (name === undefined) {
      return await refuse(ctx, conn, "bad-request", "Cannot pick a free random subdomain");
    }
  }
  return await serve(ctx, conn, reader, name, lease?.nonce, id);
}

/** Registers the session, welcomes the client, and serves the tunnel until it ends. */
async function serve(
  ctx: ServerContext,
  conn: Deno.Conn,
  reader: ByteReader,
  name: string,
  claimedNonce: string | undefined,
  id: number,
): Promise<void> {
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
  ctx.controlConns.add(conn);
  let reason = "welcome not delivered";
  let renewing: ReturnType<typeof setInterval> | undefined;
  try {
    // A client that comes back with its lease keeps its nonce, so the lease it
    // holds stays good whatever happens to this welcome.
    const issued = await ctx.leases.issue(name, claimedNonce);
    session.leaseNonce = issued.nonce;
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
          lease: issued.lease,
        }),
      ),
    );
    // Fresh leases as the session lives: after a restart, a recent one proves its holder.
    renewing = setInterval(() => {
      ctx.leases.issue(name, issued.nonce).then(
        ({ lease }) => session.send({ type: "lease", lease }),
        () => {},
      );
    }, ctx.leases.durationMs / 2);
    reason = await session.run();
  } finally {
    clearInterval(renewing);
    session.close();
    ctx.controlConns.delete(conn);
    ctx.registry.remove(session);
    // Hold the name for a client that went away without bye and may come back; only
    // if it ever answered after the welcome (so it has its lease).
    const holds = session.heardFrom && !session.saidBye && !session.replaced &&
      session.leaseNonce !== undefined && !ctx.closing && !ctx.registry.get(name);
    if (holds) ctx.leases.hold(name, session.leaseNonce!);
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
