// The messages of the wire protocol, one discriminated union per direction, as
// types: lib/protocol.ts encodes and decodes them (and re-exports these).

/** Why a server refused a client or one of its tunnels; the client branches on it. */
export type ErrorCode =
  | "version" // protocol version not supported
  | "invalid-subdomain" // malformed subdomain
  | "invalid-host" // malformed custom hostname, or one under the server's own domain
  | "invalid-port" // TCP port outside the server's range, or TCP tunnels off
  | "subdomain-taken" // another client holds it (a subdomain or a custom hostname)
  | "subdomain-reserved" // held for a client that went away, until its lease ends
  | "port-taken" // another tunnel holds the TCP port, or the server's host uses it
  | "port-reserved" // the TCP port is held for a client that went away, until its lease ends
  | "replaced" // this session's (or tunnel's) client came back on a new connection
  | "bad-request" // malformed or unexpected frame
  | "unauthorized" // unknown tunnel or wrong secret, or a token that does not allow it
  | "pool-full" // too many idle proxy connections
  | "limit" // a per-IP limit: too many tunnels, or too many new ones a minute
  | "unavailable" // the cluster's registry (Redis) cannot be reached now: retry
  | "shutdown"; // server is going away

/** One tunnel a client asks for in a `claim`: a name (HTTP and TLS by SNI) or a TCP port. */
export type TunnelClaim =
  | {
    /** The client's key for it, repeated in the answer. */
    ref: string;
    kind: "http";
    /** The subdomain it wants (none: a random one). */
    subdomain?: string;
    /** A full hostname outside the server's domain, instead of a subdomain. */
    host?: string;
    /** The lease it holds for that name. */
    lease?: string;
    /** Take the name over from a live tunnel of the same client (same lease). */
    replace?: boolean;
  }
  | {
    ref: string;
    kind: "tcp";
    /** The port it wants (none: a free one of the server's range). */
    port?: number;
    lease?: string;
    replace?: boolean;
  };

/** The server's answer to one {@linkcode TunnelClaim}. */
export type TunnelGrant =
  | {
    ref: string;
    ok: true;
    /** The tunnel's id on this control connection, named in each `open`. */
    id: number;
    /** What it holds: a subdomain, a hostname, or `tcp:<port>`. */
    name: string;
    /** Its public URL (`http://…`, `https://…` or `tcp://host:port`). */
    url: string;
    /** Lets this client reclaim the name after a disconnect. */
    lease: string;
  }
  | { ref: string; ok: false; code: ErrorCode; message: string; retryAfterMs?: number };

/**
 * Frames a client sends. `hello` opens a control connection, `claim` asks for
 * tunnels on it, `attach` opens a proxy connection.
 */
export type ClientMessage =
  | { type: "hello"; version: number; token?: string }
  | { type: "claim"; tunnels: TunnelClaim[] }
  | { type: "attach"; version: number; session: string; secret: string }
  | { type: "ping" }
  | { type: "bye" };

/** Frames a server sends. `open` announces a public connection on a proxy connection. */
export type ServerMessage =
  | {
    type: "welcome";
    version: number;
    /** The control connection's id, named by `attach`. */
    session: string;
    secret: string;
    /**
     * How often the server pings each idle proxy connection: one that hears
     * nothing for three times this long is dead (a NAT dropped it) and is replaced.
     */
    proxyPingMs?: number;
  }
  | { type: "claimed"; tunnels: TunnelGrant[] }
  | {
    type: "error";
    code: ErrorCode;
    message: string;
    retryAfterMs?: number;
    /** With code `version`: the protocol version the server speaks. */
    version?: number;
  }
  | {
    type: "open";
    /** Which of the connection's tunnels the visitor came to. */
    tunnel: number;
    peer: string;
    /** HTTP, TLS routed by SNI, or a TCP port's bytes. */
    proto: "http" | "tls" | "tcp";
    scheme?: "http" | "https";
    /** The address the visitor connected to, `ip:port` (TCP tunnels, for PROXY headers). */
    dest?: string;
    /**
     * The connection was quiet for a while (a NAT may have dropped it): the
     * client answers ACCEPT first, before anything else of the stream.
     */
    accept?: true;
  }
  | { type: "demand"; count: number }
  | { type: "lease"; tunnel: number; lease: string }
  /**
   * A tunnel's public URL changed after it was granted: its `https://` URL is
   * ready (the server obtained its certificate).
   */
  | { type: "url"; tunnel: number; url: string }
  /** A tunnel ended by the server (replaced, token revoked); the others go on. */
  | { type: "closed"; tunnel: number; code: ErrorCode; message: string }
  /** A heartbeat; with `echo`, the client answers with a ping at once (a liveness probe). */
  | { type: "ping"; echo?: true };
