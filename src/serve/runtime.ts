// The serving runtime: the repository loaded into worker sessions, one batcher, and the state
// the health endpoints report. HTTP routes are thin over this; so is anything else that wants
// to classify in-process.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Batcher, type BatchTarget } from './batcher.js';
import type { ServedModel, ServedVariant } from './catalog.js';
import type { Device, ServeConfig } from './config.js';
import { SlimError } from './errors.js';
import { scanRepository, type VariantEntry } from './model-repository.js';
import { ModelReloader, type ReloadReport } from './hot-reload.js';
import { ObserverSet } from './observer.js';
import { findVariant, pickDefaultVariant } from './catalog.js';
import { epochMs } from './clock.js';
import { escalations, runCascade } from './routing/cascade.js';
import { RoutingService } from './routing/service.js';
import { runShadow, shadowJob, type ShadowDeps } from './routing/shadow.js';
import type { RoutingReason, RoutingRequest } from './routing/sticky.js';
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
  routing: RoutingReason;
  /** Per input: the variant that decided it (differs from `variant` only in a cascade). */
  decidedBy: ServedVariant[];
  /** The request_id to answer with (signed when feedbackSecret is set); POST /feedback takes it. */
  requestId: string;
  /** Per input, numLabels probabilities in manifest label order. */
  probabilities: Float32Array[];
  /** Slowest input's queue time and the inference time of its batch, ms. */
  queueMs: number;
  inferenceMs: number;
  /** Indices of the inputs cut to maxLength (the answer says so per result and in x-slim-truncated-inputs). */
  truncated: number[];
}

/** How long tokenization may hold the event loop before it yields to other requests. */
const TOKENIZE_SLICE_MS = 4;

export class ServeRuntime {
  readonly observers = new ObserverSet();
  state: RuntimeState = 'loading';
  models: ServedModel[] = [];
  private pool: WorkerPool | null = null;
  private batcher: Batcher | null = null;
  private reloader: ModelReloader | null = null;
  /** Session key -> requests holding it (see hold()). */
  private readonly holds = new Map<string, number>();
  /** Live routing tables, feedback and routing statistics (src/serve/routing/). */
  readonly routing: RoutingService;

  constructor(
    readonly config: ServeConfig,
    private readonly log: RuntimeLogger,
    private readonly options: RuntimeOptions = {},
  ) {
    this.routing = new RoutingService(
      {
        feedbackSecret: config.feedbackSecret,
        feedbackTtlMs: config.feedback.ttlMs,
        feedbackCapacity: config.feedback.capacity,
        feedbackWindow: config.feedback.window,
        reloadMs: config.routingReloadMs,
      },
      log,
    );
  }

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
        const defaultVariant = pickDefaultVariant(entry.variants.map((v) => ({ name: v.variant })), entry.recommended);
        RoutingService.check(entry.name, entry.routing, entry.variants.map((v) => ({ name: v.variant, labels: v.manifest.labels })), defaultVariant);
        const variants = await Promise.all(entry.variants.map((v) => this.servedVariant(v, `${entry.name}/${v.variant}`)));
        models.push({ name: entry.name, dir: entry.dir, variants, routing: entry.routing, defaultVariant });
      }
      const sessions: SessionSpec[] = models.flatMap((m) => m.variants.map((v) => this.sessionSpec(v)));
      const pool = await WorkerPool.start({
        size: this.config.workers,
        sessions,
        intraOpThreads: this.config.threads.intraOp,
        interOpThreads: this.config.threads.interOp,
        graphOptimization: this.config.graphOptimization,
        testDelayMs: this.options.testWorkerDelayMs ?? Number(process.env.SLIM_TEST_WORKER_DELAY_MS ?? 0),
        batchTimeoutMs: this.config.batchTimeoutMs,
        onWorkerEvent: (e) => (e.kind === 'replaced' ? this.log.info(e, 'inference worker replaced') : this.log.error(e, 'inference worker failed')),
      });
      if (this.state !== 'loading') {
        // Shut down while loading: nothing was accepted, so nothing to drain.
        await pool.close();
        return;
      }
      this.reportDevices(models, pool);
      const batcher = new Batcher(pool, this.config.batching, (fact) => this.observers.onBatch(fact));
      for (const m of models) for (const v of m.variants) batcher.register(batchTarget(v));
      this.models = models;
      this.routing.attach(models);
      this.pool = pool;
      this.batcher = batcher;
      this.reloader = this.createReloader(pool, batcher);
      this.reloader.start(this.config.modelReloadMs);
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

  /** A checked variant directory as served: its tokenizer loaded, its device as configured. */
  private async servedVariant(v: VariantEntry, key: string): Promise<ServedVariant> {
    const device: Device = this.config.devices[v.model] ?? this.config.device;
    return {
      model: v.model,
      name: v.variant,
      depth: v.depth,
      key,
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
  }

  private sessionSpec(v: ServedVariant): SessionSpec {
    return { key: v.key, onnxPath: v.onnxPath, device: v.requestedDevice, numLabels: v.labels.length, warmupShapes: this.warmupShapes(v.maxLength) };
  }

  private createReloader(pool: WorkerPool, batcher: Batcher): ModelReloader {
    return new ModelReloader({
      config: this.config,
      log: this.log,
      routing: this.routing,
      models: () => this.models,
      swap: (models) => {
        this.models = models;
      },
      buildVariant: (entry, key) => this.servedVariant(entry, key),
      sessionSpec: (v) => this.sessionSpec(v),
      addSessions: (specs) => pool.addSessions(specs),
      dropSessions: (keys) => pool.dropSessions(keys),
      register: (v) => batcher.register(batchTarget(v)),
      unregister: (key) => batcher.unregister(key),
      active: (key) => this.holds.get(key) ?? 0,
    });
  }

  /**
   * Hot reload (POST /admin/reload, or the modelReloadMs poll): see src/serve/hot-reload.ts.
   * Only while ready; one at a time.
   */
  reload(trigger: 'api' | 'poll' = 'api'): Promise<ReloadReport> {
    if (!this.reloader || this.state !== 'ready') {
      return Promise.reject(new SlimError(this.state === 'loading' ? 'NOT_READY' : 'SHUTTING_DOWN', 'the model repository is not loaded'));
    }
    return this.reloader.reload(trigger);
  }

  /** Hot-reload state for GET /models and /metrics (null before the first load). */
  get reloadState(): ModelReloader | null {
    return this.reloader;
  }

  /**
   * Count a request as holding these variants' sessions until `release` runs: a variant that
   * hot reload replaces or removes is released only when nothing holds it.
   */
  private hold(variants: readonly ServedVariant[]): () => void {
    for (const v of variants) this.holds.set(v.key, (this.holds.get(v.key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const v of variants) {
        const n = (this.holds.get(v.key) ?? 1) - 1;
        if (n <= 0) this.holds.delete(v.key);
        else this.holds.set(v.key, n);
      }
    };
  }

  /** The variant serving under this name now (after any hot reload). */
  private current(model: string, variant: string): ServedVariant | undefined {
    const m = this.models.find((x) => x.name === model);
    return m ? findVariant(m, variant) : undefined;
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

  /** Route (explicit > cascade > sticky > weighted), tokenize, batch and run a list of texts. */
  async classify(input: ClassifyInput, opts: ClassifyOptions): Promise<ClassifyOutcome> {
    const batcher = this.batcher;
    if (!batcher) throw new SlimError(this.state === 'loading' ? 'NOT_READY' : 'SHUTTING_DOWN');
    if (input.inputs.length > this.config.maxInputs) {
      throw new SlimError('TOO_MANY_INPUTS', `${input.inputs.length} inputs; at most ${this.config.maxInputs} per request (maxInputs)`);
    }
    const model = this.resolveModel(input.model);
    const table = this.routing.table(model.name);
    const plan = this.routing.plan(model, input);
    let result: Omit<ClassifyOutcome, 'requestId'>;
    if (plan.reason === 'cascade') {
      const stages = plan.order.map((name) => findVariant(model, name)!);
      // Every stage is held from the start: a later stage must not be released under the request.
      const release = this.hold(stages);
      let queueMs = 0;
      let inferenceMs = 0;
      let truncated: number[] = [];
      const cascade = await runCascade(stages, plan.threshold, input.inputs.length, async (_stage, s, indices) => {
        const r = await this.runOn(batcher, stages[s]!, indices.map((i) => input.inputs[i]!), input.truncate, opts);
        queueMs += r.queueMs;
        inferenceMs += r.inferenceMs;
        if (s === 0) truncated = r.truncated;
        return r.probabilities;
      }).finally(release);
      for (const [from, to, n] of escalations(stages, cascade)) this.routing.recordEscalation(model.name, from, to, n);
      result = {
        model,
        // The deepest variant the request needed: what x-slim-variant and "variant" report.
        variant: stages[Math.max(...cascade.decidedBy)]!,
        routing: 'cascade',
        probabilities: cascade.probabilities as Float32Array[],
        decidedBy: cascade.decidedBy.map((s) => stages[s]!),
        queueMs,
        inferenceMs,
        truncated,
      };
    } else {
      const variant = findVariant(model, plan.variant);
      if (!variant) {
        throw new SlimError('VARIANT_NOT_FOUND', `model ${model.name} has no variant ${plan.variant} (variants: ${model.variants.map((x) => x.name).join(', ')})`);
      }
      const r = await this.runOn(batcher, variant, input.inputs, input.truncate, opts);
      result = { model, variant, routing: plan.reason, ...r, decidedBy: r.probabilities.map(() => variant) };
    }

    const labels = result.probabilities.map((p, i) => result.decidedBy[i]!.labels[argmax(p)]!);
    const variants = result.decidedBy.map((v) => v.name);
    for (const v of new Set(result.decidedBy)) {
      const idx = variants.flatMap((name, i) => (name === v.name ? [i] : []));
      this.observers.onResult({
        requestId: opts.requestId,
        model: model.name,
        variant: v.name,
        labels: idx.map((i) => labels[i]!),
        scores: idx.map((i) => result.probabilities[i]![argmax(result.probabilities[i]!)]!),
      });
    }
    this.routing.recordServed(model.name, result.variant.name, variants);
    const requestId = this.routing.issueId({ trace: opts.requestId, model: model.name, variants, labels, time: Date.now() });
    // Shadow work starts after this request's answer is written (setImmediate runs after the
    // route's reply, which is sent from the promise jobs of this call's continuation).
    const job = shadowJob(table, model.name, input.inputs, variants, labels, input.truncate);
    if (job) setImmediate(() => void runShadow(job, this.shadowDeps));
    return { ...result, requestId };
  }

  /** What shadow runs need from the runtime; shadow work never runs while draining. */
  private readonly shadowDeps: ShadowDeps = {
    queued: (model, variant) => this.queueDepth(model, variant),
    maxQueued: () => this.config.batching.maxQueued,
    classify: async (modelName, variantName, texts, truncate) => {
      const batcher = this.batcher;
      if (!batcher || this.state !== 'ready') throw new SlimError('SHUTTING_DOWN');
      const variant = findVariant(this.resolveModel(modelName), variantName);
      if (!variant) throw new SlimError('VARIANT_NOT_FOUND', `${modelName}/${variantName} was removed by a hot reload`);
      const r = await this.runOn(batcher, variant, texts, truncate, { requestId: 'shadow', deadline: epochMs() + this.config.requestTimeoutMs });
      return r.probabilities.map((p) => variant.labels[argmax(p)]!);
    },
    record: (model, served, shadow, outcome, count) => this.routing.recordShadow(model, served, shadow, outcome, count),
    onError: (err) => {
      if (!(err instanceof SlimError && (err.code === 'QUEUE_FULL' || err.code === 'SHUTTING_DOWN'))) this.log.warn({ err }, 'shadow run failed (dropped)');
    },
  };

  /** Tokenize, batch and run texts on one variant. */
  private async runOn(
    batcher: Batcher,
    variant: ServedVariant,
    texts: string[],
    truncate: boolean,
    opts: ClassifyOptions,
  ): Promise<{ probabilities: Float32Array[]; queueMs: number; inferenceMs: number; truncated: number[] }> {
    // Held before the first await: hot reload releases a replaced session only when nothing holds it.
    const release = this.hold([variant]);
    try {
      batcher.checkCapacity(variant.key, texts.length); // shed before tokenizing: a 429 must stay cheap under overload
      const ids: number[][] = [];
      const truncated: number[] = [];
      let sliceStart = performance.now();
      for (let i = 0; i < texts.length; i++) {
        const encoded = encodeBounded(variant.tokenizer, texts[i]!, variant.maxLength);
        if (encoded.tooLong) {
          if (!truncate) {
            const count = encoded.count !== undefined ? `${encoded.count}` : `more than ${variant.maxLength}`;
            throw new SlimError(
              'TEXT_TOO_LONG',
              `inputs[${i}] has ${count} tokens; ${variant.key} takes at most ${variant.maxLength} (send "truncate": true to cut it)`,
            );
          }
          truncated.push(i);
        }
        ids.push(encoded.ids);
        if (performance.now() - sliceStart > TOKENIZE_SLICE_MS) {
          await yieldToEventLoop();
          sliceStart = performance.now();
        }
      }
      const outcome = await batcher.submit(variant.key, ids, { deadline: opts.deadline, signal: opts.signal });
      return {
        probabilities: outcome.probabilities,
        queueMs: Math.max(...outcome.queueMs),
        inferenceMs: Math.max(...outcome.inferenceMs),
        truncated,
      };
    } finally {
      release();
    }
  }

  /** Inputs waiting (not yet running) for a variant. */
  queueDepth(model: string, variant: string): number {
    const v = this.current(model, variant);
    return v ? (this.batcher?.queueDepth(v.key) ?? 0) : 0;
  }

  /** Inputs of a variant in batches running now. */
  runningInputs(model: string, variant: string): number {
    const v = this.current(model, variant);
    return v ? (this.batcher?.runningInputs(v.key) ?? 0) : 0;
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
    this.routing.stop();
    this.reloader?.stop();
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

/** A variant as the batcher sees it. */
function batchTarget(v: ServedVariant): BatchTarget {
  return { key: v.key, model: v.model, variant: v.name, device: v.device, numLabels: v.labels.length, padId: v.tokenizer.padId, padSide: v.tokenizer.padSide };
}
