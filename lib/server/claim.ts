// A session's claims judged, each into a tunnel or a refusal: a subdomain, a custom
// hostname or a TCP port, checked against the token's scope, the names held by
// live tunnels and by leases, and the per-IP limit; then registered (no await
// between the last check and the registration, so two claims cannot both win).
// And a tunnel's end: unregistered, its name held for its client or freed.

import { hostWithPort, normalizeHost, randomSubdomain, randomToken } from "../names.ts";
import { LIVENESS_PROBE_MS, MAX_TUNNELS_PER_SESSION } from "../limits.ts";
import type { ErrorCode, TunnelClaim, TunnelGrant } from "../protocol.ts";
import { checkSubdomain } from "../names.ts";
import { describeError } from "../log.ts";
import type { ClaimTarget } from "./auth.ts";
import type { ServerContext } from "./context.ts";
import { REVOKED, type Session } from "./session.ts";
import { ServerTunnel } from "./tunnel.ts";
import { claimInCluster, releaseInCluster } from "./cluster/tunnel_claim.ts";

/** How many random names are drawn before giving up (each is 36^10 to one to clash). */
const RANDOM_NAME_ATTEMPTS = 100;

/** A claim's refusal. */
type Refusal = Extract<TunnelGrant, { ok: false }>;

/** What a claim asks for, checked: a name (subdomain or host) or a port, or a refusal. */
type Wanted =
  | { kind: "http"; name: string | undefined; custom: boolean; target: ClaimTarget }
  | { kind: "tcp"; port: number | undefined; target: ClaimTarget };

const REVOKED_MESSAGE = "This tunnel's token was revoked by the server's operator";

/** The lease name of a TCP port. */
export const portName = (port: number): string => `tcp:${port}`;

/**
 * Judges a batch of claims for `session`, in order; resolves with one grant
 * or refusal per claim. A live holder of the same client (same lease) is
 * probed once per batch.
 */
export async function judgeClaims(
  ctx: ServerContext,
  session: Session,
  claims: TunnelClaim[],
): Promise<TunnelGrant[]> {
  const probes = new Map<Session, Promise<boolean>>();
  const grants: TunnelGrant[] = [];
  for (const claim of claims) {
    try {
      grants.push(await judge(ctx, session, claim, probes));
    } catch (e) {
      ctx.log.error("Cannot judge a claim", { error: describeError(e) });
      grants.push(refusal(ctx, claim.ref, "bad-request", "Cannot open this tunnel now"));
    }
  }
  return grants;
}

function refusal(
  ctx: ServerContext,
  ref: string,
  code: ErrorCode,
  message: string,
  retryAfterMs?: number,
): Refusal {
  ctx.log.debug("Refused tunnel", { code, message });
  ctx.metrics.clientRefused("hello", code);
  const short = message.length > 200 ? message.slice(0, 200) + "…" : message;
  return retryAfterMs === undefined
    ? { ref, ok: false, code, message: short }
    : { ref, ok: false, code, message: short, retryAfterMs };
}

/** Checks what a claim names; a refusal when it is malformed. */
function wanted(ctx: ServerContext, claim: TunnelClaim): Wanted | Refusal {
  if (claim.kind === "tcp") {
    if (!ctx.ports) {
      return refusal(ctx, claim.ref, "invalid-port", "This server has no TCP ports (--tcp-ports)");
    }
    return { kind: "tcp", port: claim.port, target: { kind: "port", port: claim.port } };
  }
  if (claim.host !== undefined) {
    const host = normalizeHost(claim.host);
    const bad = (why: string): Refusal =>
      refusal(
        ctx,
        claim.ref,
        "invalid-host",
        `Invalid hostname ${JSON.stringify(claim.host)}: ${why}`,
      );
    if (typeof host === "string") return bad(host);
    if (host.ip || !host.host.includes(".")) return bad("use a DNS name such as app.example.com");
    if (host.host === ctx.domain || host.host.endsWith(`.${ctx.domain}`)) {
      return bad(`it is under the server's own domain: ask for a subdomain instead`);
    }
    return {
      kind: "http",
      name: host.host,
      custom: true,
      target: { kind: "host", host: host.host },
    };
  }
  if (claim.subdomain === undefined) {
    return {
      kind: "http",
      name: undefined,
      custom: false,
      target: { kind: "subdomain", name: undefined },
    };
  }
  const checked = checkSubdomain(claim.subdomain);
  if (!checked.ok) return refusal(ctx, claim.ref, "invalid-subdomain", checked.reason);
  return {
    kind: "http",
    name: checked.name,
    custom: false,
    target: { kind: "subdomain", name: checked.name },
  };
}

async function judge(
  ctx: ServerContext,
  session: Session,
  claim: TunnelClaim,
  probes: Map<Session, Promise<boolean>>,
): Promise<TunnelGrant> {
  const { ref } = claim;
  if (session.tunnels.size >= MAX_TUNNELS_PER_SESSION) {
    return refusal(ctx, ref, "limit", `At most ${MAX_TUNNELS_PER_SESSION} tunnels a connection`);
  }
  const want = wanted(ctx, claim);
  if ("ok" in want) return want;
  if (!ctx.auth.allows(session.tokenKey, want.target)) {
    const why = ctx.auth.refusal(session.tokenKey, want.target) ??
      "This session's token was revoked";
    return refusal(ctx, ref, "unauthorized", `Cannot open tunnel: ${why}`);
  }
  // The tunnel slot is taken now, before any await, so parallel claims cannot overshoot it.
  const overLimit = ctx.admission.reserveTunnel(session.ip);
  if (overLimit) return refusal(ctx, ref, "limit", overLimit);
  let granted = false;
  try {
    const name = want.kind === "tcp"
      ? (want.port === undefined ? undefined : portName(want.port))
      : want.name;
    // Everything asynchronous happens before the name is checked.
    const lease = name === undefined ? undefined : await ctx.leases.verify(claim.lease, name);
    const taken: ErrorCode = want.kind === "tcp" ? "port-taken" : "subdomain-taken";
    const reserved: ErrorCode = want.kind === "tcp" ? "port-reserved" : "subdomain-reserved";
    const what = want.kind === "tcp" ? `TCP port ${want.port}` : `subdomain "${name}"`;
    let adoptPort = false;
    let replacedHere = false; // a tunnel of this node replaced: its claim may not be released yet
    if (name !== undefined) {
      // The check and the registration that follows have no await between them; a
      // probe of a live holder waits, then checks again.
      for (let probed = false;;) {
        if (session.closed) return refusal(ctx, ref, "shutdown", "The session has ended");
        const holder = ctx.registry.get(name);
        if (holder?.session === session) {
          return refusal(
            ctx,
            ref,
            taken,
            `Cannot register ${what}: another tunnel of yours has it`,
          );
        }
        if (holder && lease !== undefined && lease.nonce === holder.leaseNonce) {
          // The same client (its lease) while its tunnel is registered: a second copy
          // of it, or the same one back before the old connection was found dead.
          const holderSession = holder.session as Session;
          if (!claim.replace && !probed) {
            probed = true;
            let probe = probes.get(holderSession);
            if (!probe) probes.set(holderSession, probe = holderSession.probe(LIVENESS_PROBE_MS));
            if (await probe) {
              return refusal(
                ctx,
                ref,
                taken,
                `Cannot register ${what}: already online from this machine ` +
                  `(use --replace to take it over)`,
              );
            }
            continue; // it did not answer: check again, it may have gone meanwhile
          }
          ctx.log.info("Tunnel replaced by its client", { tunnel: name });
          endTunnel(ctx, holder, {
            hold: false,
            keepPort: true,
            tell: {
              code: "replaced",
              message: "This tunnel was taken over by a new connection of its client",
            },
          });
          adoptPort = want.kind === "tcp";
          replacedHere = true;
        } else if (holder) {
          return refusal(ctx, ref, taken, `Cannot register ${what}: already in use`);
        } else {
          const hold = ctx.leases.heldFor(name);
          if (hold && !ctx.leases.mayClaim(hold, lease)) {
            const seconds = Math.ceil(hold.leftMs / 1000);
            return refusal(
              ctx,
              ref,
              reserved,
              `Cannot register ${what}: reserved for its previous client for another ${seconds} s`,
              hold.leftMs,
            );
          }
          if (hold) ctx.metrics.leaseReclaimed();
          ctx.leases.release(name);
          adoptPort = want.kind === "tcp" && ctx.ports!.isBound(want.port!);
        }
        break;
      }
    }
    let tunnelName: string;
    let port: number | undefined;
    if (want.kind === "tcp") {
      const ports = ctx.ports!;
      if (adoptPort) {
        port = want.port!;
        ports.adopt(port);
      } else {
        const opened = ports.open(
          want.port,
          ctx.auth.portRanges(session.tokenKey),
          (p) => ctx.registry.get(portName(p)) !== undefined || ctx.leases.isHeld(portName(p)),
        );
        if (typeof opened !== "number") return refusal(ctx, ref, opened.code, opened.message);
        port = opened;
      }
      tunnelName = portName(port);
    } else if (name !== undefined) {
      tunnelName = name;
    } else {
      // Random names skip real holds only: a restart's grace holds every name, and no
      // previous client can hold a fresh random one.
      let picked: string | undefined;
      for (let i = 0; i < RANDOM_NAME_ATTEMPTS && picked === undefined; i++) {
        const candidate = randomSubdomain();
        if (!ctx.registry.get(candidate) && !ctx.leases.isHeld(candidate)) picked = candidate;
      }
      if (picked === undefined) {
        return refusal(ctx, ref, "bad-request", "Cannot pick a free random subdomain");
      }
      tunnelName = picked;
    }
    const nonce = lease?.nonce ?? randomToken(16);
    const custom = want.kind === "http" && want.custom;
    const tunnel = new ServerTunnel(session, {
      id: session.nextTunnelId(),
      name: tunnelName,
      kind: want.kind,
      url: tunnelUrl(ctx, tunnelName, port, custom),
      port,
      custom,
      leaseNonce: nonce,
      maxStreams: ctx.limits.maxStreamsPerTunnel,
    });
    if (ctx.cluster) {
      const what = want.kind === "tcp" ? `TCP port ${port}` : `subdomain "${tunnelName}"`;
      const takeover = claim.replace || replacedHere ? "always" : "if-owner-gone";
      const refused = await claimInCluster(ctx.cluster, tunnel, what, takeover);
      // The directory answered after an await: this node may have changed meanwhile.
      const lateRefusal = refused ??
        (session.closed
          ? { code: "shutdown" as const, message: "The session has ended" }
          : ctx.registry.get(tunnelName)
          ? { code: taken, message: `Cannot register ${what}: already in use` }
          : undefined);
      if (lateRefusal) {
        if (!refused) releaseInCluster(ctx.cluster, tunnel, 0, ctx.log);
        if (port !== undefined && !ctx.registry.get(tunnelName)) ctx.ports?.release(port);
        const { code, message } = lateRefusal;
        return refusal(ctx, ref, code, message, refused?.retryAfterMs);
      }
    }
    session.tunnels.set(tunnel.id, tunnel);
    ctx.registry.add(tunnel);
    ctx.metrics.registered();
    granted = true;
    const issued = await ctx.leases.issue(tunnelName, nonce);
    ctx.log.info("Tunnel registered", { tunnel: tunnelName, peer: session.peer, url: tunnel.url });
    // Its https:// URL follows as a `url` frame once a certificate covers it.
    if (!tunnel.url.startsWith("https:") && want.kind === "http") {
      tunnel.unwatch = ctx.certificates?.watch(tunnelName, custom, (https) => {
        tunnel.url = https;
        session.send({ type: "url", tunnel: tunnel.id, url: https });
      });
    }
    return { ref, ok: true, id: tunnel.id, name: tunnelName, url: tunnel.url, lease: issued.lease };
  } finally {
    if (!granted) ctx.admission.releaseTunnel(session.ip);
  }
}

/** A tunnel's URL now: `tcp://domain:port`, or its name's `https://` or plain URL. */
function tunnelUrl(
  ctx: ServerContext,
  name: string,
  port: number | undefined,
  custom: boolean,
): string {
  if (port !== undefined) return `tcp://${hostWithPort(ctx.domain, port, -1)}`;
  const host = custom ? name : `${name}.${ctx.domain}`;
  return ctx.hostUrl(host, custom);
}

/** How a tunnel ends. */
export interface TunnelEnd {
  /** Hold its name for its client for the lease time. */
  hold: boolean;
  /** A TCP tunnel's port goes to the tunnel that replaces it: keep the listener. */
  keepPort?: boolean;
  /** Tell the client (its session goes on), with this code and sentence. */
  tell?: { code: ErrorCode; message: string };
}

/**
 * Ends a tunnel: unregistered, its per-IP slot given back, its certificate
 * watch stopped, its name held for its client (a TCP port's listener kept for
 * the hold) or freed (the listener closed). A session left with no tunnel by a
 * takeover is replaced.
 */
export function endTunnel(ctx: ServerContext, tunnel: ServerTunnel, how: TunnelEnd): void {
  if (tunnel.ended) return;
  tunnel.end();
  const session = tunnel.session as Session;
  session.tunnels.delete(tunnel.id);
  ctx.registry.remove(tunnel);
  ctx.admission.releaseTunnel(session.ip);
  tunnel.unwatch?.();
  const holds = how.hold && !ctx.registry.get(tunnel.name);
  if (ctx.cluster) {
    // The directory holds the name for its client, whichever node it comes back through.
    releaseInCluster(ctx.cluster, tunnel, holds ? ctx.leases.durationMs : 0, ctx.log);
  } else if (holds) ctx.leases.hold(tunnel.name, tunnel.leaseNonce);
  if (holds) ctx.metrics.leaseHeld();
  if (tunnel.port !== undefined && !how.keepPort) {
    if (holds) ctx.ports?.hold(tunnel.port, ctx.leases.durationMs);
    else ctx.ports?.release(tunnel.port);
  }
  if (how.tell) {
    session.send({ type: "closed", tunnel: tunnel.id, ...how.tell });
    if (how.tell.code === "replaced" && session.tunnels.size === 0) session.replace();
  }
  ctx.log.info("Tunnel closed", { tunnel: tunnel.name, held: holds });
}

/** What a tunnel holds, as a token's scope judges it. */
export function tunnelTarget(tunnel: ServerTunnel): ClaimTarget {
  if (tunnel.port !== undefined) return { kind: "port", port: tunnel.port };
  if (tunnel.custom) return { kind: "host", host: tunnel.name };
  return { kind: "subdomain", name: tunnel.name };
}

/**
 * A tunnel whose token no longer allows it: no new visitors from now on; it
 * ends (its client told) once its streams are done, or at once with `atOnce`
 * (cutting them). A session left with no tunnel closes.
 */
export function revokeTunnel(ctx: ServerContext, tunnel: ServerTunnel, atOnce: boolean): void {
  tunnel.revoke(atOnce);
  ctx.registry.remove(tunnel);
  if (atOnce || tunnel.streams === 0) endRevoked(ctx, tunnel);
}

/** A revoked tunnel's end, once its streams are done. */
export function endRevoked(ctx: ServerContext, tunnel: ServerTunnel): void {
  const session = tunnel.session as Session;
  endTunnel(ctx, tunnel, { hold: false, tell: { code: "unauthorized", message: REVOKED_MESSAGE } });
  if (session.tunnels.size === 0) session.close(REVOKED);
}
