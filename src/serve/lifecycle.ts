// The serving core's lifecycle and the one rule that maps it to readiness and to the error a
// request meets. Everything that asks "can this be served now?" (readiness, the inference
// routes' hook, /v2 model readiness, classify, reload, GET /routing) asks stateError().
import { CoreError } from './errors.js';

/**
 * loading -> ready -> draining -> stopped. failed: loading did not finish; the server is then
 * closed (startServer), so it is on its way out, like draining.
 */
export type RuntimeState = 'loading' | 'ready' | 'draining' | 'stopped' | 'failed';

/**
 * Why a server in `state` takes no request, or null when it is ready.
 * - loading: NOT_READY (503; it will become ready, a retry later may succeed);
 * - failed, draining, stopped: SHUTTING_DOWN (503; this process will not serve again; a load
 *   balancer sends the retry elsewhere). `failed` is not NOT_READY: NOT_READY promises that
 *   loading is still in progress, and a failed load closes the server.
 */
export function stateError(state: RuntimeState): CoreError | null {
  switch (state) {
    case 'ready':
      return null;
    case 'loading':
      return new CoreError('NOT_READY', 'the models are still loading and warming up');
    case 'failed':
      return new CoreError('SHUTTING_DOWN', 'loading the models failed; the server is stopping');
    case 'draining':
    case 'stopped':
      return new CoreError('SHUTTING_DOWN', 'the server is shutting down');
  }
}
