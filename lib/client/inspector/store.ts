// The inspector's memory: a ring of the last exchanges and a budget for their bodies
// (pure, synchronous). Every operation is O(1) except freeing old bodies, which each
// body pays for once.

import { concatBytes } from "../../bytes.ts";
import { ByteArena } from "../../arena.ts";
import { INSPECTOR_BODY_SLAB_BYTES } from "../../limits.ts";
import { BodySlabs, type Piece } from "./body_slabs.ts";
import { dechunk } from "./body.ts";
import type { WsCounts, WsFrameCounter } from "./ws_frames.ts";

/** A request or response body as the inspector captured it. */
export interface CapturedBody {
  /** Bytes that passed, framing included (chunk sizes of a chunked body). */
  readonly size: number;
  /** How many of them are kept. */
  readonly kept: number;
  /** Whether some bytes were not kept (over the per-body cap, the budget, or dropped for newer ones). */
  readonly truncated: boolean;
  /** Whether the body had chunked framing (`content` takes it off). */
  readonly chunked: boolean;
  /** The kept bytes as they passed. */
  readonly wire: Uint8Array;
  /** The kept bytes without chunked framing; content codings (gzip...) are still on. */
  readonly content: Uint8Array;
}

/** The WebSocket messages of an upgraded exchange, each way. */
export interface WebSocketActivity {
  /** Frames the visitor sent. */
  readonly fromVisitor: Readonly<WsCounts>;
  /** Frames the app sent. */
  readonly fromApp: Readonly<WsCounts>;
}

/** One request and its response as the inspector keeps them. */
export interface CapturedExchange {
  /** Its number: 1 for the first exchange of the tunnel, one more for each after. */
  readonly id: number;
  /** When its request head arrived (ms since the epoch). */
  readonly startedAt: number;
  /** The visitor's address, `ip:port`. */
  readonly visitor: string;
  /** The name of the tunnel it came through, when the client has several. */
  readonly tunnel: string | undefined;
  /** How the visitor reached the server. */
  readonly scheme: "http" | "https";
  /** Request method (`-` for a request the client refused before it could be read). */
  readonly method: string;
  /** Request target, as sent. */
  readonly target: string;
  /** The request head exactly as the visitor sent it; undefined for one that could not be read. */
  readonly requestHead: Uint8Array | undefined;
  /** The request body. */
  readonly request: CapturedBody;
  /** Final response status; undefined while waiting or when none came. */
  readonly status: number | undefined;
  /** The final response head exactly as the app sent it (or the client's own refusal: none). */
  readonly responseHead: Uint8Array | undefined;
  /** The response body. */
  readonly response: CapturedBody;
  /** From the request head to the end of the response (to the 101 for an upgrade). */
  readonly durationMs: number | undefined;
  /** `pending` until the response is complete; `open` while an upgraded stream lasts. */
  readonly state: "pending" | "open" | "complete";
  /** The protocol switched to (`websocket`), when the request upgraded the stream. */
  readonly upgrade: string | undefined;
  /** Message counts of a WebSocket. */
  readonly websocket: WebSocketActivity | undefined;
  /** Why the exchange is incomplete: `no response`, `cut short`, `bad response`, a refusal. */
  readonly problem: string | undefined;
  /** The exchange this one replayed. */
  readonly replayOf: number | undefined;
}

/** A body being captured: copies of what passed, up to what the store allows. */
export class BodyCapture implements CapturedBody {
  size = 0;
  kept = 0;
  chunked = false;
  /** Freed for newer bodies, or its exchange left the store: nothing more is kept. */
  dropped = false;
  #pieces: Piece[] = [];
  #slabs: BodySlabs;

  /** A body whose kept bytes go into `slabs`. */
  constructor(slabs: BodySlabs) {
    this.#slabs = slabs;
  }

  get truncated(): boolean {
    return this.kept < this.size;
  }

  /** A copy of the kept bytes (slabs are written again once freed: never a view). */
  get wire(): Uint8Array {
    return concatBytes(...this.#pieces.map((piece) => piece.bytes));
  }

  get content(): Uint8Array {
    return this.chunked ? dechunk(this.wire) : this.wire;
  }

  /** Counts `bytes` and keeps a copy of the first `room` of them; returns how many were kept. */
  add(bytes: Uint8Array, room: number): number {
    this.size += bytes.length;
    const take = Math.min(room, bytes.length);
    for (let at = 0; at < take; at += INSPECTOR_BODY_SLAB_BYTES) {
      const end = Math.min(take, at + INSPECTOR_BODY_SLAB_BYTES);
      this.#pieces.push(this.#slabs.copy(bytes.subarray(at, end)));
    }
    this.kept += Math.max(0, take);
    return Math.max(0, take);
  }

  /** Lets the kept bytes go; returns how many. */
  free(): number {
    const freed = this.kept;
    for (const piece of this.#pieces) this.#slabs.release(piece);
    this.#pieces = [];
    this.kept = 0;
    this.dropped = true;
    return freed;
  }
}

/** An exchange being captured (the store's and its stream observer's view). */
export class ExchangeEntry implements CapturedExchange {
  readonly id: number;
  readonly startedAt: number;
  readonly visitor: string;
  readonly tunnel: string | undefined;
  readonly scheme: "http" | "https";
  method: string;
  target: string;
  readonly requestHead: Uint8Array | undefined;
  readonly request: BodyCapture;
  status: number | undefined = undefined;
  responseHead: Uint8Array | undefined = undefined;
  readonly response: BodyCapture;
  durationMs: number | undefined = undefined;
  state: "pending" | "open" | "complete" = "pending";
  upgrade: string | undefined = undefined;
  /** The frame counters of a WebSocket, visitor's then app's. */
  frames: [WsFrameCounter, WsFrameCounter] | undefined = undefined;
  problem: string | undefined = undefined;
  readonly replayOf: number | undefined;

  /** An exchange whose request head (a copy) arrived at `startedAt`; bodies go into `slabs`. */
  constructor(id: number, init: ExchangeInit, slabs: BodySlabs) {
    this.id = id;
    this.request = new BodyCapture(slabs);
    this.response = new BodyCapture(slabs);
    this.startedAt = init.startedAt;
    this.visitor = init.visitor;
    this.tunnel = init.tunnel;
    this.scheme = init.scheme;
    this.method = init.method;
    this.target = init.target;
    this.requestHead = init.requestHead;
    this.replayOf = init.replayOf;
  }

  get websocket(): WebSocketActivity | undefined {
    return this.frames && { fromVisitor: this.frames[0].counts, fromApp: this.frames[1].counts };
  }
}

/** What a new exchange starts with. */
export interface ExchangeInit {
  startedAt: number;
  visitor: string;
  tunnel?: string | undefined;
  scheme: "http" | "https";
  method: string;
  target: string;
  requestHead: Uint8Array | undefined;
  replayOf: number | undefined;
}

/** How much a {@linkcode CaptureStore} keeps. */
export interface StoreLimits {
  /** Exchanges kept; the oldest leaves when a new one comes. */
  limit: number;
  /** Body bytes kept in all; the oldest exchanges' bodies are dropped to make room. */
  bodyBudgetBytes: number;
  /** Bytes kept of one body. */
  maxBodyBytes: number;
}

/**
 * The last `limit` exchanges, newest last, with their bodies up to the budget.
 * Exchanges are numbered in order, so one is found by its id in O(1). Bodies
 * are copied as they pass, never more than the per-body cap and the budget
 * allow; room is made by freeing the bodies of the oldest exchanges first.
 */
export class CaptureStore {
  readonly limits: Readonly<StoreLimits>;
  /** Told about each exchange that changed (opened, answered, finished, a message). */
  onChange: ((exchange: ExchangeEntry) => void) | undefined;
  /** Told about each exchange once its response is complete (at the switch for an upgrade). */
  onComplete: ((exchange: ExchangeEntry) => void) | undefined;
  #ring: (ExchangeEntry | undefined)[];
  #start = 0; // ring index of the oldest
  #count = 0;
  #oldestId = 1;
  #nextId = 1;
  #used = 0; // body bytes kept
  #freedBelow = 1; // every exchange with a smaller id has had its bodies freed
  #arena = new ByteArena();
  #slabs = new BodySlabs();

  /** A store that keeps what `limits` allow. */
  constructor(limits: StoreLimits) {
    if (!(limits.limit >= 1)) throw new RangeError(`Invalid inspector limit ${limits.limit}`);
    this.limits = { ...limits };
    this.#ring = new Array(limits.limit);
  }

  /** A copy of `bytes` (a head, a body chunk) that stays valid after they are reused. */
  copy(bytes: Uint8Array): Uint8Array {
    return this.#arena.copy(bytes);
  }

  /** Exchanges kept. */
  get size(): number {
    return this.#count;
  }

  /** Body bytes kept. */
  get bodyBytes(): number {
    return this.#used;
  }

  /** A new exchange, the newest; the oldest leaves if the ring is full. */
  open(init: ExchangeInit): ExchangeEntry {
    if (this.#count === this.limits.limit) this.#evictOldest();
    const entry = new ExchangeEntry(this.#nextId++, init, this.#slabs);
    if (this.#count === 0) this.#oldestId = entry.id;
    this.#ring[(this.#start + this.#count) % this.limits.limit] = entry;
    this.#count++;
    this.onChange?.(entry);
    return entry;
  }

  /** Counts `bytes` into `body` of `entry`, keeping a copy of what the cap and budget allow. */
  keep(entry: ExchangeEntry, body: BodyCapture, bytes: Uint8Array): void {
    let room = body.dropped ? 0 : Math.min(this.limits.maxBodyBytes - body.kept, bytes.length);
    if (room > 0 && this.#used + room > this.limits.bodyBudgetBytes) {
      this.#makeRoom(room, entry.id);
      room = Math.min(room, this.limits.bodyBudgetBytes - this.#used);
    }
    this.#used += body.add(bytes, room);
  }

  /** `entry` changed: tells `onChange` if it is still kept. */
  changed(entry: ExchangeEntry): void {
    if (this.get(entry.id) === entry) this.onChange?.(entry);
  }

  /** `entry`'s response is complete: tells `onChange` (if still kept) and `onComplete`. */
  completed(entry: ExchangeEntry): void {
    this.changed(entry);
    this.onComplete?.(entry);
  }

  /** The exchange numbered `id`, if it is still kept. */
  get(id: number): ExchangeEntry | undefined {
    if (!Number.isInteger(id) || id < this.#oldestId || id >= this.#oldestId + this.#count) {
      return undefined;
    }
    return this.#ring[(this.#start + id - this.#oldestId) % this.limits.limit];
  }

  /** Every kept exchange, newest first. */
  list(): ExchangeEntry[] {
    const out: ExchangeEntry[] = [];
    for (let i = this.#count - 1; i >= 0; i--) {
      out.push(this.#ring[(this.#start + i) % this.limits.limit]!);
    }
    return out;
  }

  /** Forgets every exchange and body; numbering goes on. */
  clear(): void {
    for (const entry of this.list()) this.#free(entry);
    this.#ring = new Array(this.limits.limit);
    this.#start = 0;
    this.#count = 0;
    this.#oldestId = this.#freedBelow = this.#nextId;
    this.#used = 0;
  }

  #evictOldest(): void {
    const oldest = this.#ring[this.#start]!;
    this.#free(oldest);
    this.#ring[this.#start] = undefined;
    this.#start = (this.#start + 1) % this.limits.limit;
    this.#count--;
    this.#oldestId++;
  }

  // Frees the bodies of exchanges older than `below`, oldest first, until `bytes` fit.
  #makeRoom(bytes: number, below: number): void {
    this.#freedBelow = Math.max(this.#freedBelow, this.#oldestId);
    while (this.#used + bytes > this.limits.bodyBudgetBytes && this.#freedBelow < below) {
      const entry = this.get(this.#freedBelow++);
      if (entry) this.#free(entry);
    }
  }

  #free(entry: ExchangeEntry): void {
    this.#used -= entry.request.free() + entry.response.free();
  }
}
