// Node connections this node dials to the others, to hand them visitors: each
// one connected, upgraded and authenticated (hello, welcome) within one
// deadline, kept ready in a small pool per node, and given back to it after a
// visitor whose stream ended cleanly, for the next one.

import { concatBytes } from "../../bytes.ts";
import { headEnd } from "../../http/head.ts";
import { ProxyChannel } from "../../channel.ts";
import { ByteReader, closeQuietly, deadline, FRAME_READER_CAPACITY, writeAll } from "../../io.ts";
import { MAX_SNIFF_BYTES } from "../../limits.ts";
import {
  NODE_CONNECT_TIMEOUT_MS,
  NODE_IDLE_MS,
  NODE_POOL_DIAL_AHEAD,
  NODE_POOL_IDLE,
} from "./timings.ts";
import { describeError, type Logger } from "../../log.ts";
import { encodeJsonFrame } from "../../protocol.ts";
import type { ClusterKey } from "./key.ts";
import { createNodeHello, verifyNodeWelcome } from "./node_auth.ts";
import { parseNodeAddr } from "./node_id.ts";
import { decodeObject, encodeNodeUpgrade } from "./node_wire.ts";

/** An authenticated node connection, framed as a proxy connection is. */
export interface NodeLink {
  /** The connection to the other node. */
  conn: Deno.TcpConn;
  /** Its frames (it holds whatever followed the welcome). */
  channel: ProxyChannel;
  /** When it became idle (ms since the epoch). */
  idleSince: number;
}

/** Why a node connection could not be had: the other node is down, or not of this cluster. */
export class NodeDialError extends Error {
  /** `unreachable` (connect, upgrade, time) or `refused` (its key is not ours, or it is no node). */
  readonly code: "unreachable" | "refused";

  /** An error of `code`. */
  constructor(code: "unreachable" | "refused", message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NodeDialError";
    this.code = code;
  }
}

/**
 * Dials other nodes for this one (`self`) with the cluster `key`, and keeps up
 * to NODE_POOL_IDLE authenticated idle connections to each node it forwarded
 * to: given back after a stream, or dialled ahead (NODE_POOL_DIAL_AHEAD) when
 * a visitor found none.
 *
 * @example
 * ```ts ignore
 * const dialer = new NodeDialer(key, "a:8080", log);
 * const link = await dialer.take("b:8080", "10.0.0.2:8080");
 * // send a forward on link.channel, relay the stream; if it ended cleanly:
 * dialer.give("b:8080", link);
 * dialer.close();
 * ```
 */
export class NodeDialer {
  #key: ClusterKey;
  #self: string;
  #log: Logger;
  #idle = new Map<string, NodeLink[]>();
  #filling = new Set<string>();
  #closed = new AbortController();
  #sweeper: ReturnType<typeof setInterval>;

  /** A dialer for node `self`. */
  constructor(key: ClusterKey, self: string, log: Logger) {
    this.#key = key;
    this.#self = self;
    this.#log = log;
    this.#sweeper = setInterval(() => this.#sweep(), NODE_IDLE_MS / 2);
  }

  /** Idle connections ready now, over all nodes. */
  get idleCount(): number {
    let count = 0;
    for (const links of this.#idle.values()) count += links.length;
    return count;
  }

  /**
   * An authenticated connection to node `node` at `addr`: the idle one used
   * last, else a new one, and then the pool is topped up in the background
   * (links come back after their streams, so a hit needs no new one). Throws
   * NodeDialError.
   */
  async take(node: string, addr: string): Promise<NodeLink> {
    const idle = this.#idle.get(node) ?? [];
    const now = Date.now();
    let link: NodeLink | undefined;
    while ((link = idle.pop()) && now - link.idleSince >= NODE_IDLE_MS) closeQuietly(link.conn);
    if (link) return link;
    this.#fill(node, addr);
    return await this.dial(node, addr);
  }

  /**
   * Gives back a link to `node` whose stream ended cleanly both ways: idle
   * for the next visitor, or closed when the pool is full or the dialer closed.
   */
  give(node: string, link: NodeLink): void {
    const idle = this.#idle.get(node) ?? [];
    if (this.#closed.signal.aborted || idle.length >= NODE_POOL_IDLE) {
      return closeQuietly(link.conn);
    }
    link.idleSince = Date.now();
    idle.push(link);
    this.#idle.set(node, idle);
  }

  /** Forgets the idle connections to `node` (it answered no more, or left). */
  drop(node: string): void {
    for (const link of this.#idle.get(node) ?? []) closeQuietly(link.conn);
    this.#idle.delete(node);
  }

  /** Dials `node` at `addr` once: connect, upgrade, hello, welcome, within NODE_CONNECT_TIMEOUT_MS. */
  async dial(node: string, addr: string): Promise<NodeLink> {
    const where = parseNodeAddr(addr);
    const stopped = new AbortController();
    let conn: Deno.TcpConn | undefined;
    const stop = (): void => {
      stopped.abort();
      if (conn) closeQuietly(conn);
    };
    const timer = deadline(NODE_CONNECT_TIMEOUT_MS, stop);
    const closed = this.#closed.signal;
    closed.addEventListener("abort", stop);
    try {
      try {
        conn = await Deno.connect({
          hostname: where.hostname,
          port: where.port,
          signal: stopped.signal,
        });
      } catch (e) {
        throw new NodeDialError(
          "unreachable",
          `Cannot reach node ${node} at ${addr}: ${describeError(e)}`,
          {
            cause: e,
          },
        );
      }
      conn.setNoDelay(true);
      if (stopped.signal.aborted) throw new Deno.errors.TimedOut("deadline");
      const hello = await createNodeHello(this.#key, this.#self, node);
      await writeAll(conn, concatBytes(encodeNodeUpgrade(addr), encodeJsonFrame(hello)));
      const reader = new ByteReader(conn, FRAME_READER_CAPACITY);
      let end = -1;
      while ((end = headEnd(reader.buffered, 0)) < 0) {
        if (reader.buffered.length >= MAX_SNIFF_BYTES || !await reader.fill()) {
          throw new NodeDialError("refused", `Node ${node} at ${addr} did not upgrade`);
        }
      }
      const status = new TextDecoder().decode(reader.buffered.subarray(0, 12));
      if (status !== "HTTP/1.1 101") {
        throw new NodeDialError(
          "refused",
          `Node ${node} at ${addr} answered "${status}…", not 101`,
        );
      }
      reader.consume(end);
      const welcome = await reader.readFrame(decodeObject);
      const checked = await verifyNodeWelcome(this.#key, welcome, hello);
      if (!checked.ok) {
        throw new NodeDialError(
          "refused",
          `Node ${node} at ${addr} refused this node or is not of its cluster ` +
            `(${welcome === null ? "it closed: another cluster key?" : checked.reason})`,
        );
      }
      return {
        conn,
        channel: new ProxyChannel(conn, reader.buffered.slice()),
        idleSince: Date.now(),
      };
    } catch (e) {
      if (conn) closeQuietly(conn);
      if (e instanceof NodeDialError) throw e;
      const why = timer.expired ? `no answer in ${NODE_CONNECT_TIMEOUT_MS} ms` : describeError(e);
      throw new NodeDialError(
        "unreachable",
        `Cannot open a node connection to ${node} at ${addr}: ${why}`,
        {
          cause: e,
        },
      );
    } finally {
      timer.clear();
      closed.removeEventListener("abort", stop);
    }
  }

  /**
   * Adds NODE_POOL_DIAL_AHEAD connections to the pool of `node` (not past
   * NODE_POOL_IDLE), one dial after another, in the background.
   */
  #fill(node: string, addr: string): void {
    if (this.#filling.has(node) || this.#closed.signal.aborted) return;
    this.#filling.add(node);
    (async () => {
      for (let n = 0; n < NODE_POOL_DIAL_AHEAD && !this.#closed.signal.aborted; n++) {
        const link = await this.dial(node, addr);
        const idle = this.#idle.get(node) ?? [];
        if (this.#closed.signal.aborted || idle.length >= NODE_POOL_IDLE) {
          return closeQuietly(link.conn);
        }
        idle.push(link);
        this.#idle.set(node, idle);
      }
    })().catch((e) =>
      this.#log.debug("Cannot fill the node pool", { node, error: describeError(e) })
    )
      .finally(() => this.#filling.delete(node));
  }

  /** Closes connections idle for NODE_IDLE_MS (the other node closes them a little later). */
  #sweep(): void {
    const now = Date.now();
    for (const [node, links] of this.#idle) {
      const keep = links.filter((link) => now - link.idleSince < NODE_IDLE_MS);
      for (const link of links) if (!keep.includes(link)) closeQuietly(link.conn);
      if (keep.length > 0) this.#idle.set(node, keep);
      else this.#idle.delete(node);
    }
  }

  /** Closes every idle connection and stops dialling. */
  close(): void {
    this.#closed.abort();
    clearInterval(this.#sweeper);
    for (const node of [...this.#idle.keys()]) this.drop(node);
  }
}
