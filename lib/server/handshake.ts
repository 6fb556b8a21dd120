// A client's upgraded connection, up to the handshake's outcome: `hello` claims a
// name and becomes a session (lib/server/session.ts), `attach` adds a proxy
// connection to one, anything else is refused with an error frame.

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
import { checkSubdomain, randomSubdomain, timingSafeEqual } from "../names.ts";
import { LIVENESS_PROBE_MS } from "../limits.ts";
import {
  type ClientMessage,
  decodeClientFrame,
  encodeFrame,
  type ErrorCode,
  PROTOCOL_VERSION,
  UPGRADE_RESPONSE,
} from "../protocol.ts";
import type { Outcome, ServerContext } from "./context.ts";
import { serveSession } from "./session.ts";
import type { HandshakeStage } from "./server_metrics.ts";

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
    return await refuse(
      ctx,
      conn,
      "first",
      "version",
      `Cannot open tunnel: this server speaks Gotunnel protocol ${PROTOCOL_VERSION} and the ` +
        `client ${first.version}; upgrade the client`,
    );
  }
  if (first.type === "attach") return await attach(ctx, conn, reader, first, authenticated);
  const ip = ipOf(conn);
  // The tunnel slot is taken now, before any await, so parallel hellos cannot overshoot it.
  const overLimit = ctx.admission.reserveTunnel(ip);
  if (overLimit) return await refuse(ctx, conn, "hello", "limit", overLimit);
  try {
    return await claim(ctx, conn, reader, first, id, authenticated);
  } finally {
    ctx.admission.releaseTunnel(ip);
  }
}

async function attach(
  ctx: ServerContext,
  conn: Conn,
  reader: ByteReader,
  message: Extract<ClientMessage, { type: "attach" }>,
  authenticated: () => void,
): Promise<Outcome> {
  const session = ctx.registry.byId(message.tunnel);
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

/** How many random names are drawn before giving up (each is 36^10 to one to clash). */
const RANDOM_NAME_ATTEMPTS = 100;

async function claim(
  ctx: ServerContext,
  conn: Conn,
  reader: ByteReader,
  message: Extract<ClientMessage, { type: "hello" }>,
  id: number,
  authenticated: () => void,
): Promise<Outcome> {
  let requested: string | undefined;
  if (message.subdomain !== undefined) {
    const checked = checkSubdomain(message.subdomain);
    if (!checked.ok) return await refuse(ctx, conn, "hello", "invalid-subdomain", checked.reason);
    requested = checked.name;
  }
  const auth = await ctx.auth.check(message.token, requested);
  if (!auth.ok) {
    if (auth.badToken && !ctx.admission.countAuthFailure(ipOf(conn))) {
      const ip = ipOf(conn);
      return await refuse(
        ctx,
        conn,
        "hello",
        "limit",
        `Too many failed tokens from ${ip}: wait a minute`,
      );
    }
    return await refuse(ctx, conn, "hello", "unauthorized", `Cannot open tunnel: ${auth.reason}`);
  }
  const rate = ctx.admission.countNewTunnel(ipOf(conn));
  if (rate) return await refuse(ctx, conn, "hello", "limit", rate);
  authenticated();
  // Everything asynchronous happens before the name is checked: from the check to
  // the registration below there is no await, so two claims cannot both win.
  const lease = requested === undefined
    ? undefined
    : await ctx.leases.verify(message.lease, requested);
  let name: string | undefined;
  if (requested !== undefined) {
    name = requested;
    // The check and the registration that follows have no await between them, so
    // two claims cannot both win; a probe of a live holder waits, then checks again.
    for (let probed = false;;) {
      const holder = ctx.registry.get(name);
      if (holder && lease !== undefined && lease.nonce === holder.leaseNonce) {
        // The same client (its lease) while its session is registered: a second
        // copy of it, or the same one back before the old connection was found dead.
        if (!message.replace && !probed) {
          probed = true;
          if (await holder.probe(LIVENESS_PROBE_MS)) {
            return await refuse(
              ctx,
              conn,
              "hello",
              "subdomain-taken",
              `Cannot register subdomain "${name}": already online from this machine ` +
                `(use --replace to take it over)`,
            );
          }
          continue; // it did not answer: check again, it may have gone meanwhile
        }
        ctx.log.info("Tunnel replaced by its client", { subdomain: name });
        ctx.registry.remove(holder);
        holder.replace();
      } else if (holder) {
        return await refuse(
          ctx,
          conn,
          "hello",
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
            "hello",
            "subdomain-reserved",
            `Cannot register subdomain "${name}": reserved for its previous client for another ${seconds} s`,
            true,
            hold.leftMs,
          );
        }
        if (hold) ctx.metrics.leaseReclaimed();
        ctx.leases.release(name);
      }
      break;
    }
  } else {
    // Random names skip real holds only: a restart's grace holds every name, and no
    // previous client can hold a fresh random one.
    for (let i = 0; i < RANDOM_NAME_ATTEMPTS && name === undefined; i++) {
      const candidate = randomSubdomain();
      if (!ctx.registry.get(candidate) && !ctx.leases.isHeld(candidate)) name = candidate;
    }
    if (name === undefined) {
      return await refuse(ctx, conn, "hello", "bad-request", "Cannot pick a free random subdomain");
    }
  }
  return await serveSession(
    ctx,
    conn,
    reader,
    { name, nonce: lease?.nonce, tokenKey: auth.key },
    id,
  );
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
): Promise<void> {
  ctx.log.debug("Refused client", { code, message });
  ctx.metrics.clientRefused(stage, code);
  const short = message.length > 200 ? message.slice(0, 200) + "…" : message;
  const frame = encodeFrame(
    retryAfterMs === undefined
      ? { type: "error", code, message: short }
      : { type: "error", code, message: short, retryAfterMs },
  );
  await writeAll(conn, upgrade ? concatBytes(UPGRADE_RESPONSE, frame) : frame);
}
