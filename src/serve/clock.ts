// One clock for the main thread and the workers. performance.now() counts from each thread's own
// start, so timestamps that cross threads (enqueued on the main thread, started in a worker) use
// timeOrigin + now(): milliseconds since the epoch with sub-millisecond resolution.
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}
