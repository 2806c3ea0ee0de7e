// The serving runtime: the repository loaded into worker sessions, one batcher, and the state
// the health endpoints report. HTTP routes are thin over this; so is anything else that wants
// to classify in-process.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Batcher } from './batcher.js';
import type { ServedModel, ServedVariant } from './catalog.js';
import type { Device, ServeConfig } from './config.js';
import { SlimError } from './errors.js';
import { scanRepository } from './model-repository.js';
import { ObserverSet } from './observer.js';
import { chooseVariant, validateRouting, type RoutingDecision, type RoutingRequest } from './routing.js';
import { encodeBounded, loadTextTokenizer } from './tokenize.js';
import { WorkerPool } from './worker-pool.js';
import type { SessionSpec } from './worker-protocol.js';

/** loading -> ready -> draining -> stopped; failed when loading did not finish. */
export type RuntimeState = 'loading' | 'ready' | 'draining' | 'stopped' | 'failed';

/** The logger subset the runtime uses (fastify's pino logger fits). */
export interface RuntimeLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface RuntimeOptions {
  /** Test-only: every batch takes at least this long (default: SLIM_TEST_WORKER_DELAY_MS). */
  testWorkerDelayMs?: number;
}

export interface ClassifyInput extends RoutingRequest {
  model?: string;
  inputs: string[];
  truncate: boolean;
}

export interface ClassifyOptions {
  requestId: string;
  /** epochMs() time; past it the request fails with DEADLINE_EXCEEDED. */
  deadline: number;
  signal?: AbortSignal;
}

export interface ClassifyOutcome {
  model: ServedModel;
  variant: ServedVariant;
  routing: RoutingDecision['reason'];
  /** Per input, numLabels probabilities in manifest label order. */
  probabilities: Float32Array[];
  /** Slowest input's queue time and the inference time of its batch, ms. */
  queueMs: number;
  inferenceMs: number;
  /** How many inputs were cut to maxLength. */
  truncated: number;
}

/** How long tokenization may hold the event loop before it yields to other requests. */
const TOKENIZE_SLICE_MS = 4;

export class ServeRuntime {
  readonly observers = new ObserverSet();
  state: RuntimeState = 'loading';
  models: ServedModel[] = [];
  private pool: WorkerPool | null = null;
  private batcher: Batcher | null = null;

  constructor(
    readonly config: ServeConfig,
    private readonly log: RuntimeLogger,
    private readonly options: RuntimeOptions = {},
  ) {}

  get ready(): boolean {
    return this.state === 'ready';
  }

  /** Scan the repository, start the workers, load and warm every variant; then ready. */
  async load(): Promise<void> {
    const started = performance.now();
    try {
      const entries = await scanRepository(this.config.models, {
        onSkip: (path, why) => this.log.debug({ path, why }, 'skipped a directory of the model repository'),
      });
      const names = entries.map((m) => m.name);
      for (const model of Object.keys(this.config.devices)) {
        if (!names.includes(model)) throw new Error(`devices.${model}: no model named ${model} in ${this.config.models} (models: ${names.join(', ')})`);
      }
      const models: ServedModel[] = [];
      for (const entry of entries) {
        validateRouting(entry.name, entry.routing, entry.variants.map((v) => v.variant));
        const variants = await Promise.all(
          entry.variants.map(async (v): Promise<ServedVariant> => {
            const device: Device = this.config.devices[entry.name] ?? this.config.device;
            return {
              model: entry.name,
              name: v.variant,
              depth: v.depth,
              key: `${entry.name}/${v.variant}`,
              dir: v.dir,
              onnxPath: v.onnxPath,
              manifest: v.manifest,
              labels: v.manifest.labels,
              maxLength: v.manifest.maxLength,
              tokenizer: await loadTextTokenizer(v.dir),
              requestedDevice: device,
              device,
              loadMs: 0,
              warmupMs: 0,
            };
          }),
        );
        models.push({ name: entry.name, dir: entry.dir, variants, routing: entry.routing });
      }
      const sessions: SessionSpec[] = models.flatMap((m) =>
        m.variants.map((v) => ({
          key: v.key,
          onnxPath: v.onnxPath,
          device: v.requestedDevice,
          numLabels: v.labels.length,
          warmupShapes: this.warmupShapes(v.maxLength),
        })),
      );
      const pool = await WorkerPool.start({
        size: this.config.workers,
        sessions,
        intraOpThreads: this.config.threads.intraOp,
        interOpThreads: this.config.threads.interOp,
        graphOptimization: this.config.graphOptimization,
        testDelayMs: this.options.testWorkerDelayMs ?? Number(process.env.SLIM_TEST_WORKER_DELAY_MS ?? 0),
        onWorkerEvent: (e) => (e.kind === 'replaced' ? this.log.info(e, 'inference worker replaced') : this.log.error(e, 'inference worker failed')),
      });
      if (this.state !== 'loading') {
        // Shut down while loading: nothing was accepted, so nothing to drain.
        await pool.close();
        return;
      }
      this.reportDevices(models, pool);
      const batcher = new Batcher(pool, this.config.batching, (fact) => this.observers.onBatch(fact));
      for (const m of models) {
        for (const v of m.variants) {
          batcher.register({ key: v.key, model: m.name, variant: v.name, device: v.device, numLabels: v.labels.length, padId: v.tokenizer.padId, padSide: v.tokenizer.padSide });
        }
      }
      this.models = models;
      this.pool = pool;
      this.batcher = batcher;
      this.state = 'ready';
      this.log.info(
        {
          ms: Math.round(performance.now() - started),
          workers: pool.size,
          variants: models.flatMap((m) => m.variants.map((v) => ({ variant: v.key, device: v.device, loadMs: Math.round(v.loadMs), warmupMs: Math.round(v.warmupMs) }))),
        },
        'all variants loaded and warmed up: ready',
      );
    } catch (err) {
      this.state = 'failed';
      throw err;
    }
  }

  /** One small and one full-size batch: the shapes requests will mostly have. */
  private warmupShapes(maxLength: number): [number, number][] {
    const b = this.config.batching;
    const cols = Math.min(maxLength, b.maxBatchTokens);
    const rows = Math.max(1, Math.min(b.maxBatchSize, Math.floor(b.maxBatchTokens / cols)));
    return [[1, Math.min(8, maxLength)], [rows, cols]];
  }

  /** Copy what the workers report into the catalogue; one warning per device that fell back. */
  private reportDevices(models: ServedModel[], pool: WorkerPool): void {
    const byKey = new Map(pool.sessions.map((s) => [s.key, s]));
    const fallbacks = new Map<Device, { reason: string; variants: string[] }>();
    for (const v of models.flatMap((m) => m.variants)) {
      const s = byKey.get(v.key)!;
      v.device = s.device;
      v.loadMs = s.loadMs;
      v.warmupMs = s.warmupMs;
      if (s.fallbackReason !== undefined) {
        v.fallbackReason = s.fallbackReason;
        const f = fallbacks.get(s.requested) ?? { reason: s.fallbackReason, variants: [] };
        f.variants.push(v.key);
        fallbacks.set(s.requested, f);
      }
    }
    for (const [device, f] of fallbacks) {
      this.log.warn(
        { requested: device, used: 'cpu', variants: f.variants, reason: f.reason },
        `device ${device} is not available (${f.reason}); running ${f.variants.join(', ')} on cpu. ` +
          (device === 'cuda' ? 'For CUDA install with ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci (CUDA 12, cuDNN 9).' : ''),
      );
    }
  }

  /** The model a request names, or the only one served. */
  resolveModel(name: string | undefined): ServedModel {
    if (this.models.length === 0) {
      throw new SlimError(this.state === 'loading' ? 'NOT_READY' : 'SHUTTING_DOWN', 'the model repository is not loaded');
    }
    if (name === undefined) {
      if (this.models.length === 1) return this.models[0]!;
      throw new SlimError('MODEL_REQUIRED', `several models are served (${this.models.map((m) => m.name).join(', ')}): name one in "model"`);
    }
    const model = this.models.find((m) => m.name === name);
    if (!model) throw new SlimError('MODEL_NOT_FOUND', `no model named ${name} (models: ${this.models.map((m) => m.name).join(', ')})`);
    return model;
  }

  /** Route, tokenize, batch and run a list of texts. */
  async classify(input: ClassifyInput, opts: ClassifyOptions): Promise<ClassifyOutcome> {
    const batcher = this.batcher;
    if (!batcher) throw new SlimError(this.state === 'loading' ? 'NOT_READY' : 'SHUTTING_DOWN');
    if (input.inputs.length > this.config.maxInputs) {
      throw new SlimError('TOO_MANY_INPUTS', `${input.inputs.length} inputs; at most ${this.config.maxInputs} per request (maxInputs)`);
    }
    const model = this.resolveModel(input.model);
    const decision = chooseVariant(model, input);
    const variant = decision.variant;

    const ids: number[][] = [];
    let truncated = 0;
    let sliceStart = performance.now();
    for (let i = 0; i < input.inputs.length; i++) {
      const encoded = encodeBounded(variant.tokenizer, input.inputs[i]!, variant.maxLength);
      if (encoded.tooLong) {
        if (!input.truncate) {
          const count = encoded.count !== undefined ? `${encoded.count}` : `more than ${variant.maxLength}`;
          throw new SlimError(
            'TEXT_TOO_LONG',
            `inputs[${i}] has ${count} tokens; ${variant.key} takes at most ${variant.maxLength} (send "truncate": true to cut it)`,
          );
        }
        truncated++;
      }
      ids.push(encoded.ids);
      if (performance.now() - sliceStart > TOKENIZE_SLICE_MS) {
        await yieldToEventLoop();
        sliceStart = performance.now();
      }
    }

    const outcome = await batcher.submit(variant.key, ids, { deadline: opts.deadline, signal: opts.signal });
    const result: ClassifyOutcome = {
      model,
      variant,
      routing: decision.reason,
      probabilities: outcome.probabilities,
      queueMs: Math.max(...outcome.queueMs),
      inferenceMs: Math.max(...outcome.inferenceMs),
      truncated,
    };
    this.observers.onResult({
      requestId: opts.requestId,
      model: model.name,
      variant: variant.name,
      labels: outcome.probabilities.map((p) => variant.labels[argmax(p)]!),
      scores: outcome.probabilities.map((p) => p[argmax(p)]!),
    });
    return result;
  }

  /** Inputs waiting (not yet running) for a variant. */
  queueDepth(model: string, variant: string): number {
    return this.batcher?.queueDepth(`${model}/${variant}`) ?? 0;
  }

  /** Inputs of a variant in batches running now. */
  runningInputs(model: string, variant: string): number {
    return this.batcher?.runningInputs(`${model}/${variant}`) ?? 0;
  }

  /** Requests accepted and not yet answered. */
  get inFlight(): number {
    return this.batcher?.inFlight ?? 0;
  }

  /** Readiness goes false; requests already accepted are still answered. */
  beginDrain(): void {
    if (this.state === 'loading' || this.state === 'ready') this.state = 'draining';
  }

  /** Resolves when every accepted request has its answer. */
  drained(): Promise<void> {
    return this.batcher?.drained() ?? Promise.resolve();
  }

  async close(): Promise<void> {
    this.beginDrain();
    this.state = 'stopped';
    const pool = this.pool;
    this.batcher?.abortAll(new SlimError('SHUTTING_DOWN', 'the server stopped before this request was answered'));
    this.pool = null;
    this.batcher = null;
    await pool?.close();
  }
}

export function argmax(p: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i]! > p[best]!) best = i;
  return best;
}
