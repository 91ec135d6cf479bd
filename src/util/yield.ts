/** Lets timers, signals and I/O run between steps of a long loop (Ctrl-C, progress, pipes). */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
