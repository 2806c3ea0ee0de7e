// A fixed set of inference worker threads. Every worker holds a session for every variant, so
// any idle worker can take any batch; the batcher decides what runs, the pool only says who is
// free and carries texts there and probabilities (with the token counts the worker found) back.
import { Worker } from 'node:worker_threads';
import type { AddSessionsRequest, LoadedSession, MainToWorker, RunRequest, RunResult, SessionSpec, WorkerInit, WorkerToMain } from './worker-protocol.js';
import type { GraphOptimizationLevel, Int8WeightsMode, SpinningMode } from './config.js';

export interface PoolOptions {
  size: number;
  sessions: SessionSpec[];
  intraOpThreads: number;
  interOpThreads: number;
  /** When intra-op threads busy-wait (config threads.spinning). */
  spinning: SpinningMode;
  graphOptimization: GraphOptimizationLevel;
  /** int8 variants' weight storage (config int8Weights). */
  int8Weights: Int8WeightsMode;
  /** Test-only slowdown per batch (SLIM_TEST_WORKER_DELAY_MS). */
  testDelayMs?: number;
  /**
   * A batch unanswered this long after it started (reached the head of its worker) means the
   * worker hangs: it is terminated and replaced, its batches fail with WorkerFailedError.
   */
  batchTimeoutMs?: number;
  /** Told when a worker dies (crash or hang) and when its replacement is ready. */
  onWorkerEvent?: (event: WorkerEvent) => void;
}

export interface WorkerEvent {
  kind: 'died' | 'hung' | 'replaced' | 'replace-failed';
  workerIndex: number;
  message: string;
  /** Batches that were on the worker when it died (failed with WorkerFailedError). */
  lostBatches?: number;
}

/** A batch as the pool carries it: texts, which the worker tokenizes with the variant's tokenizer. */
export interface BatchTexts {
  key: string;
  /** One per row, bounded by boundText (tokenize.ts). */
  texts: string[];
  /** epochMs() after which the worker skips the batch instead of running it. */
  expiresAt: number;
}

/** The worker skipped a batch because every request in it was past its deadline. */
export class BatchExpiredError extends Error {
  constructor() {
    super('the batch expired before a worker started it');
    this.name = 'BatchExpiredError';
  }
}

/** The worker running (or holding) the batch crashed or hung; it is being replaced. */
export class WorkerFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkerFailedError';
  }
}

/** A batch's answer as the pool hands it on: the worker's result, and which worker ran it. */
export type BatchOutput = Omit<RunResult, 'type' | 'jobId'> & { workerIndex: number };

interface Job {
  resolve: (out: BatchOutput) => void;
  reject: (err: Error) => void;
}

interface PoolWorker {
  index: number;
  thread: Worker;
  /** Batches sent and not answered, in the order the worker runs them. */
  jobs: Map<number, Job>;
  generation: number;
  /** Fires when the batch at the head of jobs has run longer than batchTimeoutMs. */
  watchdog: NodeJS.Timeout | null;
}

const WORKER_SCRIPT = new URL('./worker.js', import.meta.url);
/**
 * Batches a worker may hold: the one it runs and one waiting behind it. The second starts the
 * moment the first ends, without a round trip through a busy event loop; the batcher only sends
 * it when a full batch is waiting anyway.
 */
export const PIPELINE_DEPTH = 2;
const RESPAWN_DELAY_MS = 1_000;

export class WorkerPool {
  private readonly workers: PoolWorker[] = [];
  private nextJobId = 1;
  private closing = false;
  /**
   * The sessions every worker holds now: the start's, plus what hot reload added, less what it
   * dropped. A replacement worker loads this list (never mutated in place: a snapshot names
   * what a worker was spawned with).
   */
  private specs: readonly SessionSpec[];
  /** Called whenever a worker becomes free, so the batcher can hand it the next batch. */
  onIdle: () => void = () => {};

  private constructor(
    private readonly opts: PoolOptions,
    /** What each variant runs on, as the workers reported it. */
    readonly sessions: LoadedSession[],
  ) {
    this.specs = [...opts.sessions];
  }

  /**
   * Hot reload: open and warm up sessions in every worker while they serve. Resolves with what
   * the first worker reported; when any worker cannot load them, none keeps them and the
   * error (naming the file) is thrown. A worker that dies meanwhile does not fail the load: its
   * replacement loads the current list.
   */
  async addSessions(specs: SessionSpec[]): Promise<LoadedSession[]> {
    if (this.closing) throw new Error('the worker pool is closing');
    this.specs = [...this.specs, ...specs];
    const results = await Promise.allSettled(this.workers.map((w) => addSessionsOn(w.thread, specs)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof WorkerFailedError));
    const loaded = results.find((r): r is PromiseFulfilledResult<LoadedSession[]> => r.status === 'fulfilled');
    if (failed || !loaded) {
      this.dropSessions(specs.map((x) => x.key));
      throw (failed?.reason as Error | undefined) ?? new WorkerFailedError('every inference worker failed while loading the new sessions');
    }
    return loaded.value;
  }

  /** Hot reload: release sessions in every worker (after their variant's queue has drained). */
  dropSessions(keys: string[]): void {
    const drop = new Set(keys);
    this.specs = this.specs.filter((x) => !drop.has(x.key));
    for (const w of this.workers) {
      try {
        w.thread.postMessage({ type: 'drop-sessions', keys } satisfies MainToWorker);
      } catch {
        // the worker is gone; its replacement loads only the current list
      }
    }
  }

  /** Spawn the workers, load and warm every variant in each; resolves when all are ready. */
  static async start(opts: PoolOptions): Promise<WorkerPool> {
    const spawned = Array.from({ length: opts.size }, (_, i) => spawnWorker(opts, i));
    const results = await Promise.allSettled(spawned.map((s) => s.loaded));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(spawned.map((s) => stopWorker(s.thread)));
      throw failed.reason as Error;
    }
    const first = (results[0] as PromiseFulfilledResult<LoadedSession[]>).value;
    const pool = new WorkerPool(opts, first);
    spawned.forEach((s, i) => pool.adopt(i, s.thread, 0));
    return pool;
  }

  get size(): number {
    return this.workers.length;
  }

  /** Workers with nothing to do. */
  get idleCount(): number {
    let n = 0;
    for (const w of this.workers) if (w.jobs.size === 0) n++;
    return n;
  }

  /** Busy workers that can queue one more batch behind the running one. */
  get pipelineSlots(): number {
    let n = 0;
    for (const w of this.workers) if (w.jobs.size > 0 && w.jobs.size < PIPELINE_DEPTH) n++;
    return n;
  }

  /** Run one batch: on an idle worker if there is one, else behind a running batch. */
  run(batch: BatchTexts): Promise<BatchOutput> {
    const worker = this.workers.find((w) => w.jobs.size === 0) ?? this.workers.find((w) => w.jobs.size < PIPELINE_DEPTH);
    if (!worker) return Promise.reject(new Error('worker pool: no free worker'));
    const id = this.nextJobId++;
    return new Promise<BatchOutput>((resolve, reject) => {
      worker.jobs.set(id, { resolve, reject });
      if (worker.jobs.size === 1) this.arm(worker); // it starts now
      const msg: RunRequest = { type: 'run', jobId: id, ...batch };
      worker.thread.postMessage(msg);
    });
  }

  /**
   * Stop every worker. Unanswered batches are rejected at once; each worker still finishes the
   * batch it is running and releases its sessions before it exits, because terminating a thread
   * inside onnxruntime's native run aborts the whole process.
   */
  async close(): Promise<void> {
    this.closing = true;
    const threads = this.workers.map((w) => w.thread);
    for (const w of this.workers) this.disarm(w);
    for (const w of this.workers) for (const job of w.jobs.values()) job.reject(new Error('the worker pool is closing'));
    this.workers.length = 0;
    await Promise.all(threads.map((t) => stopWorker(t)));
  }

  /** Watch the batch that starts now at the head of the worker's jobs. */
  private arm(worker: PoolWorker): void {
    this.disarm(worker);
    const ms = this.opts.batchTimeoutMs;
    if (!ms || worker.jobs.size === 0) return;
    worker.watchdog = setTimeout(() => {
      worker.watchdog = null;
      this.hung(worker, ms);
    }, ms);
    worker.watchdog.unref();
  }

  private disarm(worker: PoolWorker): void {
    if (worker.watchdog) clearTimeout(worker.watchdog);
    worker.watchdog = null;
  }

  /**
   * A worker that does not answer is terminated and replaced. terminate() interrupts JavaScript
   * (and Atomics.wait); a thread stuck inside a native call is only stopped once that returns,
   * so the pool does not wait for it: the slot is refilled at once.
   */
  private hung(worker: PoolWorker, ms: number): void {
    const lost = this.remove(worker, `no answer within batchTimeoutMs (${ms} ms): terminated`);
    if (lost < 0) return;
    void worker.thread.terminate().catch(() => {});
    this.opts.onWorkerEvent?.({ kind: 'hung', workerIndex: worker.index, message: `no answer within batchTimeoutMs (${ms} ms)`, lostBatches: lost });
    setTimeout(() => this.replace(worker.index, worker.generation + 1), RESPAWN_DELAY_MS).unref();
  }

  /** Take a dead worker out of the pool and fail its batches; -1 when it was out already. */
  private remove(worker: PoolWorker, why: string): number {
    const at = this.workers.indexOf(worker);
    if (at < 0) return -1;
    this.workers.splice(at, 1);
    this.disarm(worker);
    const lost = worker.jobs.size;
    for (const job of worker.jobs.values()) job.reject(new WorkerFailedError(`inference worker ${worker.index} ${why}`));
    worker.jobs.clear();
    return lost;
  }

  private adopt(index: number, thread: Worker, generation: number): void {
    const worker: PoolWorker = { index, thread, jobs: new Map(), generation, watchdog: null };
    this.workers.push(worker);
    thread.on('message', (msg: WorkerToMain) => {
      if (msg.type !== 'result' && msg.type !== 'run-failed' && msg.type !== 'run-expired') return;
      const job = worker.jobs.get(msg.jobId);
      if (!job) return;
      worker.jobs.delete(msg.jobId);
      this.arm(worker); // the next batch, if any, starts now
      if (msg.type === 'result') {
        const { type: _type, jobId: _jobId, ...output } = msg;
        job.resolve({ ...output, workerIndex: index });
      } else if (msg.type === 'run-expired') {
        job.reject(new BatchExpiredError());
      } else {
        job.reject(new Error(msg.message));
      }
      this.onIdle();
    });
    const died = (message: string): void => {
      if (this.closing) return;
      const lost = this.remove(worker, `died: ${message}`);
      if (lost < 0) return; // already handled (error is followed by exit; a hung one was terminated)
      this.opts.onWorkerEvent?.({ kind: 'died', workerIndex: index, message, lostBatches: lost });
      setTimeout(() => this.replace(index, generation + 1), RESPAWN_DELAY_MS).unref();
    };
    thread.on('error', (err) => died(err.message));
    thread.on('exit', (code) => died(`exited with code ${code}`));
  }

  /** Bring a dead worker's slot back: load every variant again, then take batches. */
  private replace(index: number, generation: number): void {
    if (this.closing) return;
    const spawnedWith = this.specs;
    const s = spawnWorker({ ...this.opts, sessions: [...spawnedWith] }, index, generation);
    s.loaded
      .then(() => this.catchUp(s.thread, spawnedWith))
      .then(
        () => {
          if (this.closing) {
            void stopWorker(s.thread);
            return;
          }
          this.adopt(index, s.thread, generation);
          this.opts.onWorkerEvent?.({ kind: 'replaced', workerIndex: index, message: 'ready' });
          this.onIdle();
        },
        (err: Error) => {
          void stopWorker(s.thread);
          this.opts.onWorkerEvent?.({ kind: 'replace-failed', workerIndex: index, message: err.message });
          setTimeout(() => this.replace(index, generation), RESPAWN_DELAY_MS).unref();
        },
      );
  }

  /** A replacement spawned before a hot reload changed the sessions: bring it to the current list. */
  private async catchUp(thread: Worker, had: readonly SessionSpec[]): Promise<void> {
    for (let round = 0; round < 5 && had !== this.specs; round++) {
      const now = this.specs;
      const hadKeys = new Set(had.map((x) => x.key));
      const nowKeys = new Set(now.map((x) => x.key));
      const extra = [...hadKeys].filter((k) => !nowKeys.has(k));
      if (extra.length > 0) thread.postMessage({ type: 'drop-sessions', keys: extra } satisfies MainToWorker);
      const missing = now.filter((x) => !hadKeys.has(x.key));
      if (missing.length > 0) await addSessionsOn(thread, missing);
      had = now;
    }
  }
}

let nextControlId = 1;

/** Send add-sessions to one worker; resolves or rejects with its answer (WorkerFailedError when it dies first). */
function addSessionsOn(thread: Worker, sessions: SessionSpec[]): Promise<LoadedSession[]> {
  const requestId = nextControlId++;
  return new Promise<LoadedSession[]>((resolve, reject) => {
    const onMessage = (msg: WorkerToMain): void => {
      if (msg.type === 'sessions-loaded' && msg.requestId === requestId) {
        cleanup();
        resolve(msg.sessions);
      } else if (msg.type === 'sessions-failed' && msg.requestId === requestId) {
        cleanup();
        reject(new Error(msg.message));
      }
    };
    const onExit = (): void => {
      cleanup();
      reject(new WorkerFailedError('the inference worker exited while loading sessions'));
    };
    const cleanup = (): void => {
      thread.off('message', onMessage);
      thread.off('exit', onExit);
    };
    thread.on('message', onMessage);
    thread.on('exit', onExit);
    try {
      thread.postMessage({ type: 'add-sessions', requestId, sessions } satisfies AddSessionsRequest);
    } catch (err) {
      cleanup();
      reject(new WorkerFailedError((err as Error).message));
    }
  });
}

const STOP_TIMEOUT_MS = 30_000;
/** Threads that have exited: stopping one must not wait STOP_TIMEOUT_MS for an exit that was. */
const exitedThreads = new WeakSet<Worker>();

async function stopWorker(thread: Worker): Promise<void> {
  if (exitedThreads.has(thread)) return;
  const exited = new Promise<void>((resolve) => thread.once('exit', () => resolve()));
  try {
    thread.postMessage({ type: 'close' } satisfies MainToWorker);
  } catch {
    return; // already gone
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), STOP_TIMEOUT_MS)));
  if ((await Promise.race([exited, late])) === 'late') await thread.terminate();
  clearTimeout(timer);
}

function spawnWorker(opts: PoolOptions, index: number, generation = 0): { thread: Worker; loaded: Promise<LoadedSession[]> } {
  const init: WorkerInit = {
    workerIndex: index,
    sessions: opts.sessions,
    intraOpThreads: opts.intraOpThreads,
    interOpThreads: opts.interOpThreads,
    spinning: opts.spinning,
    graphOptimization: opts.graphOptimization,
    int8Weights: opts.int8Weights,
    testDelayMs: opts.testDelayMs ?? 0,
    generation,
  };
  const thread = new Worker(WORKER_SCRIPT, { workerData: init, name: `slim-infer-${index}` });
  thread.once('exit', () => exitedThreads.add(thread));
  const loaded = new Promise<LoadedSession[]>((resolve, reject) => {
    const onMessage = (msg: WorkerToMain): void => {
      if (msg.type === 'loaded') {
        cleanup();
        resolve(msg.sessions);
      } else if (msg.type === 'load-failed') {
        cleanup();
        void stopWorker(thread);
        reject(new Error(`inference worker ${index}: ${msg.message}`));
      }
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new Error(`inference worker ${index}: ${err.message}`));
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new Error(`inference worker ${index} exited with code ${code} while loading`));
    };
    const cleanup = (): void => {
      thread.off('message', onMessage);
      thread.off('error', onError);
      thread.off('exit', onExit);
    };
    thread.on('message', onMessage);
    thread.on('error', onError);
    thread.on('exit', onExit);
  });
  return { thread, loaded };
}
