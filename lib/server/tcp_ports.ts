// The server's TCP ports (`--tcp-ports`): the range, a listener per TCP tunnel's
// port (bound when granted, kept while the port is held for a client that went
// away, closed when it is free again), and a free port picked for a client that
// names none. Each accepted connection goes to the server's handler.

import { closeQuietly } from "../io.ts";
import { TCP_PORT_PICK_ATTEMPTS } from "../limits.ts";
import type { Logger } from "../log.ts";
import { acceptLoop } from "./accept.ts";

/** Port ranges, inclusive. */
export type PortRanges = readonly (readonly [number, number])[];

/**
 * Reads `--tcp-ports`: a range `20000-20099`, a port, or a comma-separated
 * list of them; a reason string when malformed.
 */
export function parsePortRanges(text: string): [number, number][] | string {
  const ranges: [number, number][] = [];
  for (const part of text.split(",")) {
    const m = /^\s*(\d{1,5})(?:\s*-\s*(\d{1,5}))?\s*$/.exec(part);
    const from = Number(m?.[1]);
    const to = Number(m?.[2] ?? m?.[1]);
    if (!m || from < 1 || to > 65535 || from > to) {
      return `"${part.trim()}" is not a port or a range like 20000-20099 (ports 1-65535)`;
    }
    ranges.push([from, to]);
  }
  return ranges;
}

/** Whether `port` is in one of `ranges`. */
export function inPortRanges(port: number, ranges: PortRanges): boolean {
  return ranges.some(([from, to]) => port >= from && port <= to);
}

/** Ports of `ranges` that are also in `within` (undefined: all of them), at most `max`. */
function candidates(ranges: PortRanges, within: PortRanges | undefined, max: number): number[] {
  const ports: number[] = [];
  for (const [from, to] of ranges) {
    for (let p = from; p <= to && ports.length < max; p++) {
      if (within === undefined || inPortRanges(p, within)) ports.push(p);
    }
  }
  return ports;
}

/** Why a port could not be had. */
export type PortRefusal = { code: "invalid-port" | "port-taken"; message: string };

/** What the ports need from their server. */
export interface TcpPortsOptions {
  /** Address to listen on (the public port's). */
  hostname: string;
  /** The ports clients may have. */
  ranges: PortRanges;
  /** A connection accepted on `port`. */
  onConnection(conn: Deno.Conn, port: number): void;
  /** Where logs go. */
  log: Logger;
}

interface Bound {
  listener: Deno.Listener;
  stop: AbortController;
  accepting: Promise<void>;
  hold: ReturnType<typeof setTimeout> | undefined;
}

/** The server's TCP ports and the listener of each one in use. */
export class TcpPorts {
  #options: TcpPortsOptions;
  #bound = new Map<number, Bound>();
  #closed = false;

  /** Ports within `options.ranges`; none is bound until `open()`. */
  constructor(options: TcpPortsOptions) {
    this.#options = options;
  }

  /** The ranges clients may have ports in. */
  get ranges(): PortRanges {
    return this.#options.ranges;
  }

  /** Listeners open now (ports in use or held). */
  get size(): number {
    return this.#bound.size;
  }

  /** Whether `port` has a listener now (in use or held). */
  isBound(port: number): boolean {
    return this.#bound.has(port);
  }

  /**
   * Binds `port`, or when undefined a free port of the ranges (within `allowed`,
   * a token's ranges, and skipping those `skip` says are someone's); returns
   * the port, or why it could not be had. Synchronous: nothing can claim the
   * port between the caller's checks and this bind.
   */
  open(
    port: number | undefined,
    allowed: PortRanges | undefined,
    skip: (port: number) => boolean,
  ): number | PortRefusal {
    if (this.#closed) return { code: "port-taken", message: "The server is closing" };
    const { ranges } = this.#options;
    const list = ranges.map(([a, b]) => a === b ? `${a}` : `${a}-${b}`).join(", ");
    if (port !== undefined) {
      if (!inPortRanges(port, ranges)) {
        return {
          code: "invalid-port",
          message: `Cannot open TCP port ${port}: outside this server's ports (${list})`,
        };
      }
      if (this.#bound.has(port) || skip(port)) {
        return { code: "port-taken", message: `Cannot open TCP port ${port}: already in use` };
      }
      return this.#bind(port) ? port : {
        code: "port-taken",
        message: `Cannot open TCP port ${port}: in use on the server's host`,
      };
    }
    const pool = candidates(ranges, allowed, Number.MAX_SAFE_INTEGER)
      .filter((p) => !this.#bound.has(p) && !skip(p));
    // From a random place in the list, so that clients do not all fight over the first port.
    const start = Math.floor(Math.random() * pool.length);
    for (let i = 0; i < Math.min(pool.length, TCP_PORT_PICK_ATTEMPTS); i++) {
      const candidate = pool[(start + i) % pool.length]!;
      if (this.#bind(candidate)) return candidate;
    }
    return { code: "port-taken", message: `Cannot open a TCP tunnel: no free port in ${list}` };
  }

  /** Keeps the listener of `port` (its tunnel ended) for `ms`, then closes it unless `adopt`ed. */
  hold(port: number, ms: number): void {
    const bound = this.#bound.get(port);
    if (!bound) return;
    clearTimeout(bound.hold);
    bound.hold = setTimeout(() => this.release(port), ms);
  }

  /** A held port reclaimed by its tunnel: keeps its listener; false if it has none. */
  adopt(port: number): boolean {
    const bound = this.#bound.get(port);
    if (!bound) return false;
    clearTimeout(bound.hold);
    bound.hold = undefined;
    return true;
  }

  /** Closes the listener of `port` now. */
  release(port: number): void {
    const bound = this.#bound.get(port);
    if (!bound) return;
    this.#bound.delete(port);
    clearTimeout(bound.hold);
    bound.stop.abort();
    closeQuietly(bound.listener);
    this.#options.log.debug("TCP port closed", { port });
  }

  /** Closes every listener; resolves once their accept loops have ended. */
  async close(): Promise<void> {
    this.#closed = true;
    const loops = [...this.#bound.values()].map((b) => b.accepting);
    for (const port of [...this.#bound.keys()]) this.release(port);
    await Promise.all(loops);
  }

  #bind(port: number): boolean {
    let listener: Deno.Listener;
    try {
      listener = Deno.listen({ hostname: this.#options.hostname, port });
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse) && !(e instanceof Deno.errors.PermissionDenied)) {
        this.#options.log.warn("Cannot listen on a TCP port", { port, error: String(e) });
      }
      return false;
    }
    const stop = new AbortController();
    const onConnection = this.#options.onConnection;
    const accepting = acceptLoop(
      listener,
      (conn) => onConnection(conn, port),
      this.#options.log,
      stop.signal,
    );
    this.#bound.set(port, { listener, stop, accepting, hold: undefined });
    this.#options.log.debug("TCP port open", { port });
    return true;
  }
}
