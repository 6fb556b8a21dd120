// The inspector's server-sent event streams: each page's open stream, what is sent to
// all of them, a heartbeat while any is open, and a bound on how far one may lag.

const encoder = new TextEncoder();

/** Limits of {@linkcode EventStreams}. */
export interface EventStreamLimits {
  /** Streams open at once; more are refused. */
  maxStreams: number;
  /** Unsent bytes one stream may hold before it is closed (its page reconnects). */
  backlogBytes: number;
  /** A comment goes to every stream this often. */
  heartbeatMs: number;
}

/** One server-sent event's text: `event: NAME` and its data on one line. */
export function sseEvent(name: string, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * The open event streams. `send()` never waits: text is queued on each stream,
 * and a stream whose page does not read (more than `backlogBytes` queued) is
 * ended, so a stuck page costs bounded memory and the page's EventSource
 * reconnects and starts again from a snapshot.
 */
export class EventStreams {
  #limits: EventStreamLimits;
  #streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  /** Streams within `limits`. */
  constructor(limits: EventStreamLimits) {
    this.#limits = limits;
  }

  /** Streams open. */
  get size(): number {
    return this.#streams.size;
  }

  /** A new stream that starts with `first`; undefined when too many are open or closed. */
  open(first: string): ReadableStream<Uint8Array> | undefined {
    if (this.#closed || this.#streams.size >= this.#limits.maxStreams) return undefined;
    let self: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        self = controller;
        this.#streams.add(controller);
        controller.enqueue(encoder.encode(`retry: 1000\n\n${first}`));
      },
      cancel: () => this.#drop(self),
    }, new ByteLengthQueuingStrategy({ highWaterMark: 0 }));
    this.#heartbeat ??= setInterval(() => this.send(": heartbeat\n\n"), this.#limits.heartbeatMs);
    return stream;
  }

  /** Queues `text` on every stream; a stream too far behind is ended. */
  send(text: string): void {
    if (this.#streams.size === 0) return;
    const bytes = encoder.encode(text);
    for (const controller of this.#streams) {
      if (-(controller.desiredSize ?? 0) + bytes.length > this.#limits.backlogBytes) {
        this.#drop(controller, true);
        continue;
      }
      controller.enqueue(bytes);
    }
  }

  /** Ends every stream (dropping what they have not sent) and refuses new ones. */
  close(): void {
    this.#closed = true;
    for (const controller of this.#streams) this.#drop(controller, true);
  }

  #drop(controller: ReadableStreamDefaultController<Uint8Array>, end = false): void {
    if (!this.#streams.delete(controller)) return;
    if (end) {
      try {
        controller.error(new Error("event stream ended"));
      } catch {
        // Already closed by its reader.
      }
    }
    if (this.#streams.size === 0) {
      clearInterval(this.#heartbeat);
      this.#heartbeat = undefined;
    }
  }
}
