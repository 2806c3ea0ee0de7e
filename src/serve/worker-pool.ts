// A fixed set of inference worker threads. Every worker holds a session for every variant, so
// any idle worker can take any batch; the batcher decides what runs, the pool only says who is
// free and carries tensors there and probabilities back.
import { Worker } from 'node:worker_threads';
import type { LoadedSession, MainToWorker, RunRequest, SessionSpec, WorkerInit, WorkerToMain } from './worker-protocol.js';
import type { GraphOptimizationLevel } from './config.js';

export interface PoolOptions {
  size: number;
  sessions: SessionSpec[];
  intraOpThreads: number;
  interOpThreads: number;
  graphOptimization: GraphOptimizationLevel;
  /** Test-only slowdown per batch (SLIM_TEST_WORKER_DELAY_MS). */
  testDelayMs?: number;
  /** Told when a worker dies and when its replacement is ready. */
  onWorkerEvent?: (event: { kind: 'died' | 'replaced' | 'replace-failed'; workerIndex: number; message: string }) => void;
}

export interface BatchTensors {
  key: string;
  rows: number;
  cols: number;
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
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

export interface BatchOutput {
  /** rows x numLabels, row-major. */
  probabilities: Float32Array;
  numLabels: number;
  inferenceMs: number;
  /** epochMs() when the worker started the batch (it may have waited behind another). */
  startedAt: number;
  workerIndex: number;
}

interface Job {
  resolve: (out: BatchOutput) => void;
  reject: (err: Error) => void;
}

interface PoolWorker {
  index: number;
  thread: Worker;
  /** Batches sent and not answered, in the order the worker runs them. */
  jobs: Map<number, Job>;
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
  /** Called whenever a worker becomes free, so the batcher can hand it the next batch. */
  onIdle: () => void = () => {};

  private constructor(
    private readonly opts: PoolOptions,
    /** What each variant runs on, as the workers reported it. */
    readonly sessions: LoadedSession[],
  ) {}

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
    spawned.forEach((s, i) => pool.adopt(i, s.thread));
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
  run(batch: BatchTensors): Promise<BatchOutput> {
    const worker = this.workers.find((w) => w.jobs.size === 0) ?? this.workers.find((w) => w.jobs.size < PIPELINE_DEPTH);
    if (!worker) return Promise.reject(new Error('worker pool: no free worker'));
    const id = this.nextJobId++;
    return new Promise<BatchOutput>((resolve, reject) => {
      worker.jobs.set(id, { resolve, reject });
      const msg: RunRequest = { type: 'run', jobId: id, ...batch };
      worker.thread.postMessage(msg, [batch.inputIds.buffer as ArrayBuffer, batch.attentionMask.buffer as ArrayBuffer]);
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
    for (const w of this.workers) for (const job of w.jobs.values()) job.reject(new Error('the worker pool is closing'));
    this.workers.length = 0;
    await Promise.all(threads.map((t) => stopWorker(t)));
  }

  private adopt(index: number, thread: Worker): void {
    const worker: PoolWorker = { index, thread, jobs: new Map() };
    this.workers.push(worker);
    thread.on('message', (msg: WorkerToMain) => {
      if (msg.type !== 'result' && msg.type !== 'run-failed' && msg.type !== 'run-expired') return;
      const job = worker.jobs.get(msg.jobId);
      if (!job) return;
      worker.jobs.delete(msg.jobId);
      if (msg.type === 'result') {
        job.resolve({ probabilities: msg.probabilities, numLabels: msg.numLabels, inferenceMs: msg.inferenceMs, startedAt: msg.startedAt, workerIndex: index });
      } else if (msg.type === 'run-expired') {
        job.reject(new BatchExpiredError());
      } else {
        job.reject(new Error(msg.message));
      }
      this.onIdle();
    });
    const died = (message: string): void => {
      const at = this.workers.indexOf(worker);
      if (at < 0) return; // already handled (error is followed by exit)
      this.workers.splice(at, 1);
      for (const job of worker.jobs.values()) job.reject(new Error(`inference worker ${index} died: ${message}`));
      worker.jobs.clear();
      if (this.closing) return;
      this.opts.onWorkerEvent?.({ kind: 'died', workerIndex: index, message });
      setTimeout(() => this.replace(index), RESPAWN_DELAY_MS).unref();
    };
    thread.on('error', (err) => died(err.message));
    thread.on('exit', (code) => died(`exited with code ${code}`));
  }

  /** Bring a dead worker's slot back: load every variant again, then take batches. */
  private replace(index: number): void {
    if (this.closing) return;
    const s = spawnWorker(this.opts, index);
    s.loaded.then(
      () => {
        if (this.closing) {
          void stopWorker(s.thread);
          return;
        }
        this.adopt(index, s.thread);
        this.opts.onWorkerEvent?.({ kind: 'replaced', workerIndex: index, message: 'ready' });
        this.onIdle();
      },
      (err: Error) => {
        this.opts.onWorkerEvent?.({ kind: 'replace-failed', workerIndex: index, message: err.message });
        setTimeout(() => this.replace(index), RESPAWN_DELAY_MS).unref();
      },
    );
  }
}

const STOP_TIMEOUT_MS = 30_000;

async function stopWorker(thread: Worker): Promise<void> {
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

function spawnWorker(opts: PoolOptions, index: number): { thread: Worker; loaded: Promise<LoadedSession[]> } {
  const init: WorkerInit = {
    workerIndex: index,
    sessions: opts.sessions,
    intraOpThreads: opts.intraOpThreads,
    interOpThreads: opts.interOpThreads,
    graphOptimization: opts.graphOptimization,
    testDelayMs: opts.testDelayMs ?? 0,
  };
  const thread = new Worker(WORKER_SCRIPT, { workerData: init, name: `slim-infer-${index}` });
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
