// What the server's connection handlers share: configuration, the registry, live sockets.

import type { Conn } from "../io.ts";
import type { Logger } from "../log.ts";
import type { ServerLimits } from "../limits.ts";
import type { Auth } from "./auth.ts";
import type { Leases } from "./lease.ts";
import type { Admission } from "./admission.ts";
import type { Registry } from "./registry.ts";
import type { Session, SessionHost } from "./session.ts";

/** State shared by the accept loop and the handlers of one server. */
export interface ServerContext extends SessionHost {
  /** Tunnels are `<name>.<domain>`. */
  readonly domain: string;
  /** The server's own URL (`http://<domain>[:port]`). */
  readonly url: string;
  /** Limits and timeouts in force. */
  readonly limits: ServerLimits;
  /** Where logs go. */
  readonly log: Logger;
  /** Registered tunnels. */
  readonly registry: Registry<Session>;
  /** Per-IP counts against the limits. */
  readonly admission: Admission;
  /** Who may open tunnels. */
  readonly auth: Auth;
  /** Reconnect leases and the names held for clients that went away. */
  readonly leases: Leases;
  /** Every live connection, closed by `close()`. */
  readonly conns: Set<Conn>;
  /** Control connections: their sessions close them after a last frame. */
  readonly controlConns: Set<Conn>;
  /** With `--redirect-http`: the HTTPS port plain requests for tunnels are sent to. */
  readonly redirectPort: number | undefined;
  /** Whether the server is shutting down. */
  readonly closing: boolean;
  /** With automatic HTTPS (ACME): HTTP-01 answers, and which hosts have a certificate. */
  readonly acme?: AcmeRouting | undefined;
}

/** What routing asks a server with automatic HTTPS. */
export interface AcmeRouting {
  /** The answer to an HTTP-01 request for a token being validated now (any Host); else undefined. */
  answer(method: string, target: string): Uint8Array | undefined;
  /** Whether a certificate covers `host` now (plain requests are redirected only then). */
  covers(host: string): boolean;
}

/** What a connection handler did with its connection: `kept` handed it to a session. */
export type Outcome = void | "kept";
