// A session's life on the server: registered under its id, welcomed, its control
// channel served (claims judged, leases renewed), and at its end each of its
// tunnels ended, their names held for a client that went away without `bye`.

import type { ByteReader, Conn } from "../io.ts";
import type { ServerContext } from "./context.ts";
import { endRevoked, endTunnel, judgeClaims } from "./claim.ts";
import { Session } from "./session.ts";

/**
 * Registers a session on `conn` (whose hello was accepted), welcomes the
 * client, serves it until it ends, then ends its tunnels: each name is held
 * for its client if it went away without `bye` after it got the name's lease.
 */
export async function serveSession(
  ctx: ServerContext,
  conn: Conn,
  reader: ByteReader,
  tokenKey: string | undefined,
  id: number,
): Promise<void> {
  const session = new Session(conn, reader, {
    log: ctx.log,
    limits: ctx.limits,
    tokenKey,
    events: {
      claim: (s, claims) => judgeClaims(ctx, s, claims),
      tunnelIdle: (_, tunnel) => endRevoked(ctx, tunnel),
    },
  });
  ctx.registry.addSession(session);
  ctx.controlConns.add(conn);
  let reason = "welcome not delivered";
  let renewing: ReturnType<typeof setInterval> | undefined;
  try {
    await session.welcome(conn, ctx.limits.proxyPingIntervalMs);
    ctx.log.info("Client connected", { conn: id, peer: session.peer });
    // Fresh leases as the tunnels live: after a restart, a recent one proves its holder.
    renewing = setInterval(() => {
      for (const tunnel of session.tunnels.values()) {
        ctx.leases.issue(tunnel.name, tunnel.leaseNonce).then(
          ({ lease }) => session.send({ type: "lease", tunnel: tunnel.id, lease }),
          (e) => ctx.log.error("Cannot renew lease", { tunnel: tunnel.name, error: `${e}` }),
        );
      }
    }, ctx.leases.durationMs / 2);
    reason = await session.run();
  } finally {
    clearInterval(renewing);
    session.close();
    ctx.controlConns.delete(conn);
    ctx.registry.removeSession(session);
    for (const tunnel of [...session.tunnels.values()]) {
      const hold = tunnel.answered && !session.saidBye && !session.replaced &&
        !tunnel.revoked && !ctx.closing;
      endTunnel(ctx, tunnel, { hold });
    }
    ctx.log.info("Client disconnected", { conn: id, peer: session.peer, reason });
  }
}
