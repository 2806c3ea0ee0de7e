// A server process's side of `slim serve --processes N` (the primary's side: supervisor.ts).
// Every process serves HTTP on the shared port with its own inference workers; what must agree
// across processes goes through the primary over the cluster IPC channel:
//   - /metrics: the primary collects every process's registry and merges them;
//   - GET /routing and POST /feedback: served counts are summed in the primary, feedback is
//     counted there once (routing/feedback-ledger.ts);
//   - PUT /routing and POST /admin/reload: the primary has every other process re-read
//     routing.json (or reload the repository) before the PUT is answered.
// The process asks; the primary answers (`ask`). The primary asks every process (`handle`).
import cluster from 'node:cluster';
import { CoreError } from './errors.js';
import type { ServeMetrics } from './metrics.js';
import { snapshotOf } from './routing/cluster-stats.js';
import type { RoutingStatistics } from './routing/statistics.js';

/** The feedback HMAC key the primary generates for its processes when none is configured. */
export const CLUSTER_SECRET_ENV = 'SLIM_CLUSTER_FEEDBACK_SECRET';

/** What a process asks the primary. */
export type PrimaryQuestion = 'metrics' | 'routing-stats' | 'feedback' | 'routing-changed' | 'reloaded';
/** What the primary asks every process. */
export type PeerRequest = 'collect' | 'poll-routing' | 'reload';

export type ToPrimary =
  | { slim: 'attached' }
  | { slim: 'ready'; url: string }
  | { slim: 'ask'; id: number; what: PrimaryQuestion; body: unknown }
  | { slim: 'reply'; id: number; body?: unknown; error?: string };

export type ToPeer =
  | { slim: 'answer'; id: number; body?: unknown; error?: { code: string; message: string } }
  | { slim: 'request'; id: number; what: PeerRequest; body?: unknown }
  | { slim: 'stop' };

/** How long a process waits for the primary before answering 500 INTERNAL. */
const ASK_TIMEOUT_MS = 5_000;

export class ClusterPeer {
  private static instance: ClusterPeer | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  private readonly handlers = new Map<PeerRequest, (body: unknown) => Promise<unknown>>();
  private stopHandler: (() => void) | null = null;
  private stopAsked = false;

  /** This process's peer when it is a server process of a cluster; null otherwise. */
  static current(): ClusterPeer | null {
    if (!cluster.isWorker) return null;
    return (ClusterPeer.instance ??= new ClusterPeer());
  }

  private constructor() {
    process.on('message', (m: ToPeer) => this.onMessage(m));
  }

  /** Ask the primary; rejects with CoreError INTERNAL when it does not answer in time. */
  ask<T>(what: PrimaryQuestion, body: unknown = null): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CoreError('INTERNAL', `the primary process did not answer "${what}" within ${ASK_TIMEOUT_MS} ms`));
      }, ASK_TIMEOUT_MS);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.send({ slim: 'ask', id, what, body });
    });
  }

  /** Answer the primary's `what` requests with `fn`. */
  handle(what: PeerRequest, fn: (body: unknown) => Promise<unknown>): void {
    this.handlers.set(what, fn);
  }

  /** The primary wants this process to drain and exit (SIGTERM or SIGINT to the primary). */
  onStop(fn: () => void): void {
    this.stopHandler = fn;
    if (this.stopAsked) fn();
  }

  /** The handlers are in place: the primary may include this process when it collects. */
  attached(): void {
    this.send({ slim: 'attached' });
  }

  /** Every variant is loaded and warm; `url` is where the server listens. */
  ready(url: string): void {
    this.send({ slim: 'ready', url });
  }

  private send(m: ToPrimary): void {
    if (process.connected) process.send!(m);
  }

  private onMessage(m: ToPeer): void {
    if (!m || typeof m !== 'object' || !('slim' in m)) return; // not ours (prom-client, node internals)
    if (m.slim === 'answer') {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.error) p.reject(new CoreError(m.error.code as never, m.error.message));
      else p.resolve(m.body);
    } else if (m.slim === 'request') {
      const fn = this.handlers.get(m.what);
      const done = fn ? fn(m.body) : Promise.reject(new Error(`no handler for ${m.what}`));
      done.then(
        (body) => this.send({ slim: 'reply', id: m.id, body }),
        (err: unknown) => this.send({ slim: 'reply', id: m.id, error: err instanceof Error ? err.message : String(err) }),
      );
    } else if (m.slim === 'stop') {
      if (this.stopAsked) return;
      this.stopAsked = true;
      this.stopHandler?.();
    }
  }
}

/** What connectPeer needs of the serving core (core.ts, which imports this module's types). */
export interface PeerCore {
  readonly ready: boolean;
  readonly statistics: RoutingStatistics;
  readonly tables: { reread(model: string): Promise<void> };
  readonly store: { reload(trigger: 'poll'): Promise<unknown> } | null;
}

/** Wire a server process to its primary: answer its collects and re-reads, take /metrics from it. */
export function connectPeer(peer: ClusterPeer, core: PeerCore, metrics: ServeMetrics | null): void {
  peer.handle('collect', async (body) => {
    const want = body as { metrics: boolean; stats: boolean };
    return {
      ...(want.metrics && metrics ? { metrics: [await metrics.registry.getMetricsAsJSON()] } : {}),
      ...(want.stats ? { stats: snapshotOf(core.statistics) } : {}),
    };
  });
  peer.handle('poll-routing', async (body) => core.tables.reread((body as { model: string }).model));
  peer.handle('reload', async () => {
    if (core.ready) await core.store?.reload('poll');
  });
  if (metrics) metrics.wholeServerText = () => peer.ask<string>('metrics');
  peer.attached();
}
