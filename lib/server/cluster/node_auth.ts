// Node-to-node authentication with the cluster key (pure but for the clock and the
// HMAC): the dialling node sends a hello, the dialled node checks it and answers a
// welcome that proves it holds the key too. Phase 2 carries both as the first frames
// of a node connection after the one-port upgrade.

import { toBase64url } from "../../bytes.ts";
import { CLUSTER_HELLO_MAX_NONCES, CLUSTER_HELLO_WINDOW_MS } from "./timings.ts";
import { randomToken, timingSafeEqual } from "../../names.ts";
import type { ClusterKey } from "./key.ts";
import { checkNodeId } from "./node_id.ts";

/**
 * Version of the node hello and welcome; a node refuses any other.
 *
 * @example
 * ```ts
 * import { NODE_AUTH_VERSION } from "./node_auth.ts";
 * console.log(NODE_AUTH_VERSION); // 1
 * ```
 */
export const NODE_AUTH_VERSION = 1;

/**
 * What a dialling node sends first: who it is, whom it means, a fresh nonce
 * and its clock, signed. `to` keeps a hello seen by one node from being played
 * to another; `time` and the receiver's memory of nonces keep it from being
 * played twice.
 *
 * @example
 * ```ts
 * import { importClusterKey } from "./key.ts";
 * import { createNodeHello, type NodeHello } from "./node_auth.ts";
 * const hello: NodeHello = await createNodeHello(await importClusterKey(new Uint8Array(32)), "a:1", "b:1");
 * console.log(JSON.stringify(hello).length < 300); // true: one small frame
 * ```
 */
export interface NodeHello {
  /** Always `node-hello`. */
  type: "node-hello";
  /** NODE_AUTH_VERSION. */
  version: number;
  /** The dialling node's id. */
  from: string;
  /** The dialled node's id. */
  to: string;
  /** 16 random bytes, base64url: the challenge the welcome must sign. */
  nonce: string;
  /** The dialling node's clock, ms since the epoch. */
  time: number;
  /** base64url(HMAC-SHA256(cluster key, the fields above)). */
  mac: string;
}

/**
 * The dialled node's answer: it holds the key, and answers this very hello.
 *
 * @example
 * ```ts
 * import { importClusterKey } from "./key.ts";
 * import { createNodeHello, createNodeWelcome, type NodeWelcome } from "./node_auth.ts";
 * const key = await importClusterKey(new Uint8Array(32));
 * const welcome: NodeWelcome = await createNodeWelcome(key, await createNodeHello(key, "a:1", "b:1"));
 * console.log(welcome.from, welcome.to); // b:1 a:1
 * ```
 */
export interface NodeWelcome {
  /** Always `node-welcome`. */
  type: "node-welcome";
  /** NODE_AUTH_VERSION. */
  version: number;
  /** The dialled node's id (the hello's `to`). */
  from: string;
  /** The dialling node's id (the hello's `from`). */
  to: string;
  /** base64url(HMAC-SHA256(cluster key, the ids and the hello's nonce)). */
  mac: string;
}

/**
 * A check's answer: the message, or why it is refused (for the log; the peer gets no detail).
 *
 * @example
 * ```ts
 * import type { NodeAuthResult, NodeHello } from "./node_auth.ts";
 * const result: NodeAuthResult<NodeHello> = { ok: false, reason: "replayed hello" };
 * if (!result.ok) console.log(`node connection refused: ${result.reason}`);
 * ```
 */
export type NodeAuthResult<M> = { ok: true; message: M } | { ok: false; reason: string };

const encoder = new TextEncoder();
const NONCE = /^[A-Za-z0-9_-]{22}$/;
const MAC = /^[A-Za-z0-9_-]{43}$/;
const NONCE_BYTES = 16;

async function mac(key: ClusterKey, ...fields: (string | number)[]): Promise<string> {
  // Node ids, nonces and numbers hold no "\n", so the joined text reads back one way only.
  const bytes = await crypto.subtle.sign("HMAC", key.hmac, encoder.encode(fields.join("\n")));
  return toBase64url(new Uint8Array(bytes));
}

const helloMac = (key: ClusterKey, h: Omit<NodeHello, "mac" | "type" | "version">) =>
  mac(key, "gotunnel-node-hello", NODE_AUTH_VERSION, h.from, h.to, h.nonce, h.time);
const welcomeMac = (key: ClusterKey, from: string, to: string, nonce: string) =>
  mac(key, "gotunnel-node-welcome", NODE_AUTH_VERSION, from, to, nonce);

/**
 * A signed hello from node `from` to node `to`.
 *
 * @example
 * ```ts
 * import { importClusterKey } from "./key.ts";
 * import { createNodeHello } from "./node_auth.ts";
 * const key = await importClusterKey(new Uint8Array(32).fill(1));
 * const hello = await createNodeHello(key, "a:8080", "b:8080");
 * console.log(hello.type, hello.to); // node-hello b:8080
 * ```
 */
export async function createNodeHello(
  key: ClusterKey,
  from: string,
  to: string,
  now: number = Date.now(),
): Promise<NodeHello> {
  const fields = { from, to, nonce: randomToken(NONCE_BYTES), time: now };
  return {
    type: "node-hello",
    version: NODE_AUTH_VERSION,
    ...fields,
    mac: await helloMac(key, fields),
  };
}

/**
 * Checks hellos sent to node `self`: shape, version, addressee, clock within
 * the window, MAC (compared in constant time), and a nonce not seen before.
 * Nonces are remembered for as long as their hello's time is within the window,
 * at most `maxNonces` of them: past that, hellos are refused until some expire.
 *
 * @example A hello is accepted once
 * ```ts
 * import { importClusterKey } from "./key.ts";
 * import { createNodeHello, HelloVerifier } from "./node_auth.ts";
 * const key = await importClusterKey(new Uint8Array(32).fill(1));
 * const verifier = new HelloVerifier(key, "b:8080");
 * const hello = await createNodeHello(key, "a:8080", "b:8080");
 * console.log((await verifier.verify(hello)).ok); // true
 * console.log(await verifier.verify(hello)); // { ok: false, reason: "replayed hello" }
 * ```
 */
export class HelloVerifier {
  #key: ClusterKey;
  #self: string;
  #windowMs: number;
  #maxNonces: number;
  /** Nonce to the time after which its hello is stale anyway, in arrival order. */
  #seen = new Map<string, number>();

  /** A verifier for hellos to `self`, with the window and nonce bound of lib/limits.ts by default. */
  constructor(
    key: ClusterKey,
    self: string,
    options: { windowMs?: number; maxNonces?: number } = {},
  ) {
    this.#key = key;
    this.#self = self;
    this.#windowMs = options.windowMs ?? CLUSTER_HELLO_WINDOW_MS;
    this.#maxNonces = options.maxNonces ?? CLUSTER_HELLO_MAX_NONCES;
  }

  /** Nonces remembered now. */
  get remembered(): number {
    return this.#seen.size;
  }

  /** Whether `message` (a decoded frame, of any shape) is a fresh hello to this node. */
  async verify(message: unknown, now: number = Date.now()): Promise<NodeAuthResult<NodeHello>> {
    const hello = readHello(message);
    if (typeof hello === "string") return { ok: false, reason: hello };
    if (hello.to !== this.#self) return { ok: false, reason: `hello meant for ${hello.to}` };
    if (Math.abs(now - hello.time) > this.#windowMs) {
      return { ok: false, reason: `hello time ${now - hello.time} ms off this node's clock` };
    }
    if (!timingSafeEqual(hello.mac, await helloMac(this.#key, hello))) {
      return { ok: false, reason: "wrong MAC (another cluster key?)" };
    }
    this.#sweep(now);
    if (this.#seen.has(hello.nonce)) return { ok: false, reason: "replayed hello" };
    if (this.#seen.size >= this.#maxNonces) return { ok: false, reason: "too many recent hellos" };
    this.#seen.set(hello.nonce, hello.time + this.#windowMs);
    return { ok: true, message: hello };
  }

  #sweep(now: number): void {
    // Arrival order is nearly expiry order: stop at the first live nonce, unless full.
    const full = this.#seen.size >= this.#maxNonces;
    for (const [nonce, until] of this.#seen) {
      if (until < now) this.#seen.delete(nonce);
      else if (!full) break;
    }
  }
}

/**
 * The welcome that `self` answers to a verified `hello`.
 *
 * @example
 * ```ts
 * import { importClusterKey } from "./key.ts";
 * import { createNodeHello, createNodeWelcome } from "./node_auth.ts";
 * const key = await importClusterKey(new Uint8Array(32).fill(1));
 * const hello = await createNodeHello(key, "a:8080", "b:8080");
 * console.log((await createNodeWelcome(key, hello)).to); // a:8080
 * ```
 */
export async function createNodeWelcome(key: ClusterKey, hello: NodeHello): Promise<NodeWelcome> {
  return {
    type: "node-welcome",
    version: NODE_AUTH_VERSION,
    from: hello.to,
    to: hello.from,
    mac: await welcomeMac(key, hello.to, hello.from, hello.nonce),
  };
}

/**
 * Whether `message` is the welcome to `hello` (which this node sent): from its
 * addressee, signed with the cluster key over this hello's nonce.
 *
 * @example
 * ```ts
 * import { importClusterKey } from "./key.ts";
 * import { createNodeHello, createNodeWelcome, verifyNodeWelcome } from "./node_auth.ts";
 * const key = await importClusterKey(new Uint8Array(32).fill(1));
 * const hello = await createNodeHello(key, "a:8080", "b:8080");
 * const welcome = await createNodeWelcome(key, hello);
 * console.log((await verifyNodeWelcome(key, welcome, hello)).ok); // true
 * ```
 */
export async function verifyNodeWelcome(
  key: ClusterKey,
  message: unknown,
  hello: NodeHello,
): Promise<NodeAuthResult<NodeWelcome>> {
  const welcome = readWelcome(message);
  if (typeof welcome === "string") return { ok: false, reason: welcome };
  if (welcome.from !== hello.to || welcome.to !== hello.from) {
    return {
      ok: false,
      reason: `welcome from ${welcome.from} to ${welcome.to}, not to this hello`,
    };
  }
  const expected = await welcomeMac(key, welcome.from, welcome.to, hello.nonce);
  if (!timingSafeEqual(welcome.mac, expected)) {
    return { ok: false, reason: "wrong MAC (another cluster key?)" };
  }
  return { ok: true, message: welcome };
}

function readCommon(v: unknown, type: string): Record<string, unknown> | string {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not an object";
  const m = v as Record<string, unknown>;
  if (m.type !== type) return `not a ${type}`;
  if (m.version !== NODE_AUTH_VERSION) return `version ${String(m.version)} not supported`;
  for (const field of ["from", "to"]) {
    const id = m[field];
    if (typeof id !== "string" || !checkNodeId(id).ok || id !== id.toLowerCase()) {
      return `bad ${field}`;
    }
  }
  if (typeof m.mac !== "string" || !MAC.test(m.mac)) return "bad mac";
  return m;
}

function readHello(v: unknown): NodeHello | string {
  const m = readCommon(v, "node-hello");
  if (typeof m === "string") return m;
  if (typeof m.nonce !== "string" || !NONCE.test(m.nonce)) return "bad nonce";
  if (!Number.isSafeInteger(m.time)) return "bad time";
  const { from, to, nonce, time, mac } = m as unknown as NodeHello;
  return { type: "node-hello", version: NODE_AUTH_VERSION, from, to, nonce, time, mac };
}

function readWelcome(v: unknown): NodeWelcome | string {
  const m = readCommon(v, "node-welcome");
  if (typeof m === "string") return m;
  const { from, to, mac } = m as unknown as NodeWelcome;
  return { type: "node-welcome", version: NODE_AUTH_VERSION, from, to, mac };
}
