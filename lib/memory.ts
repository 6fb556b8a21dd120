// Memory given back after a load: every MEMORY_TRIM_INTERVAL_MS while anything
// runs, relay buffer free lists are cut to what recent concurrency needs, and
// once V8 has freed memory the C heap's free pages go back to the system (glibc
// `malloc_trim`, through FFI when the process may use it).

import { trimFreeBuffers } from "./growing_buffer.ts";
import { MEMORY_TRIM_INTERVAL_MS } from "./limits.ts";

type MallocTrim = (pad: number | bigint) => number;

let mallocTrim: MallocTrim | null | undefined; // undefined: not looked up yet; null: none
let users = 0;
let timer: ReturnType<typeof setInterval> | undefined;
let lastV8Bytes = 0; // V8's heap and external memory at the last tick
/** V8 memory freed between two ticks that makes the C heap worth trimming. */
const TRIM_AFTER_FREED_BYTES = 1024 * 1024;

// glibc's malloc_trim, or null where there is none or FFI is not allowed (`deno run -A`
// and compiled binaries allow it; `deno test -P` and library users without --allow-ffi do not).
function findMallocTrim(): MallocTrim | null {
  if (Deno.build.os !== "linux") return null;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    const libc = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    return (pad) => libc.symbols.malloc_trim(BigInt(pad));
  } catch {
    return null; // musl, no libc.so.6, or FFI unavailable
  }
}

/**
 * Returns the C heap's free pages to the system, if glibc and FFI permit;
 * whether it could. Called by the trimmer after a load, and by benchmarks.
 *
 * @example
 * ```ts
 * import { releaseFreeMemory } from "./memory.ts";
 * releaseFreeMemory(); // false without --allow-ffi: nothing happens
 * ```
 */
export function releaseFreeMemory(): boolean {
  mallocTrim ??= findMallocTrim();
  if (!mallocTrim) return false;
  mallocTrim(0);
  return true;
}

function tick(): void {
  trimFreeBuffers();
  // Dropped buffers and the load's garbage are freed by V8's collector when it
  // chooses (its memory reducer runs seconds after a load): trim the C heap on
  // the first tick after V8 has given memory back, when there are pages to return.
  const { heapTotal, external } = Deno.memoryUsage();
  const v8Bytes = heapTotal + external;
  if (v8Bytes < lastV8Bytes - TRIM_AFTER_FREED_BYTES) releaseFreeMemory();
  lastV8Bytes = v8Bytes;
}

/**
 * Starts the process's memory trimmer (one timer, shared, never keeping the
 * process alive) for a server or tunnel; the returned function stops it once
 * its last user is gone.
 *
 * @example
 * ```ts
 * import { useMemoryTrimmer } from "./memory.ts";
 * const release = useMemoryTrimmer();
 * release(); // the last user: the timer stops
 * ```
 */
export function useMemoryTrimmer(): () => void {
  if (users++ === 0) {
    const interval = setInterval(tick, MEMORY_TRIM_INTERVAL_MS);
    Deno.unrefTimer(interval);
    timer = interval;
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--users === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}
