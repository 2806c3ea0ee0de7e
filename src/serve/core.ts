// The serving core: what every HTTP route (and anything else that classifies in-process) calls.
// It owns the lifecycle (lifecycle.ts), the model store (the catalogue of what is served), the
// routing tables and statistics, the batcher and the worker pool. Errors are CoreErrors, with
// no HTTP in them; src/serve/routes/ maps them to answers.
//
// One request, one way through (docs/architecture.md):
//   decide  (routing/decide.ts: explicit > cascade > sticky > weighted; every decision is a
//            cascade, a single variant is a one-stage one)
//   execute (../cascade-rule.ts over the stages; each stage: batch, then tokenize and run in a worker)
//   record  (routing/statistics.ts: served counts, escalations, the feedback request_id; then,
//            after the answer, a shadow run when the table asks for one)
import { escalations, runCascade } from '../cascade-rule.js';
import { argmax } from '../probabilities.js';
import { Batcher, type ClientGone } from './batcher.js';
import { findVariant, resolveModel, type Catalogue, type ServedModel, type ServedVariant } from './catalogue.js';
import type { ServeConfig } from './config.js';
import { CoreError } from './errors.js';
import { stateError, type RuntimeState } from './lifecycle.js';
import { ModelStore, type ReloadReport, type ReloadTrigger } from './model-store.js';
import { ObserverSet } from './observer.js';
import { epochMs } from './clock.js';
import { decide, type Decision, type RoutingReason } from './routing/decide.js';
import { routingCounters, routingShares, routingStatus, type RoutingCounters, type RoutingStatus } from './routing/render.js';
import { shadowFits, shadowJob, shadowOutcomes, type ShadowJob } from './routing/shadow.js';
import { RoutingStatistics, type FeedbackResult } from './routing/statistics.js';
import { clusterView, type ModelSnapshot } from './routing/cluster-stats.js';
import type { FeedbackCounts } from './routing/feedback-ledger.js';
import type { ClusterPeer } from './cluster-peer.js';
import { RoutingTables, type RebindPlan } from './routing/table-store.js';
import { boundText } from './tokenize.js';
import { WorkerPool } from './worker-pool.js';

export type { RuntimeState } from './lifecycle.js';

/** The logger subset the core uses (fastify's pino logger fits). */
export interface CoreLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface CoreOptions {
  /** Test-only: every batch takes at least this long (default: SLIM_TEST_WORKER_DELAY_MS). */
  testWorkerDelayMs?: number;
  /** One of several server processes (--processes): routing statistics and feedback go through the primary. */
  peer?: ClusterPeer | null;
}

/** One classification request, as every protocol route hands it to the core. */
export interface ClassifyRequest {
  /** Model name; may be left out when one model is served. */
  model?: string;
  /** Explicit variant (body "variant", or the /v2 version in the URL). */
  variant?: string;
  /** Client key for sticky routing. */
  key?: string;
  inputs: string[];
  /** Cut inputs longer than maxLength (else TEXT_TOO_LONG). */
  truncate: boolean;
  /** The request's own id (x-request-id), for logs and the feedback record. */
  requestId: string;
  /** epochMs() time; past it the request fails with DEADLINE_EXCEEDED. */
  deadline: number;
  /** Fires when the client goes away: its queued inputs leave the queue (CLIENT_CLOSED). */
  signal?: ClientGone;
}

export interface ClassifyResult {
  model: ServedModel;
  /** The deepest variant the request needed (the only one unless a cascade escalated). */
  variant: ServedVariant;
  routing: RoutingReason;
  /** Per input: the variant that decided it. */
  decidedBy: ServedVariant[];
  /** The request_id to answer with (signed when feedbackSecret is set); POST /feedback takes it. */
  requestId: string;
  /** Per input, numLabels probabilities in manifest label order. */
  probabilities: Float32Array[];
  /** Per input, the logits of the variant that decided it (probabilities are their softmax). */
  logits: Float32Array[];
  /** Per input, the winning label (of the variant that decided it). */
  labels: string[];
  /** Slowest input's queue time and the inference time of its batch, ms (summed over stages). */
  queueMs: number;
  inferenceMs: number;
  /** Indices of the inputs cut to maxLength (the answer says so per result and in x-slim-truncated-inputs). */
  truncated: number[];
}

interface StageRun {
  probabilities: Float32Array[];
  logits: Float32Array[];
  queueMs: number;
  inferenceMs: number;
  /** Indices (into this stage's texts) of the texts cut to maxLength. */
  truncated: number[];
}

export class ServeCore {
  readonly observers = new ObserverSet();
  state: RuntimeState = 'loading';
  readonly tables: RoutingTables;
  readonly statistics: RoutingStatistics;
  /** null until load() has started the workers. */
  store: ModelStore<RebindPlan> | null = null;
  private pool: WorkerPool | null = null;
  private batcher: Batcher | null = null;

  constructor(
    readonly config: ServeConfig,
    private readonly log: CoreLogger,
    private readonly options: CoreOptions = {},
  ) {
    this.tables = new RoutingTables(log, config.routingDir);
    this.statistics = new RoutingStatistics({
      feedbackSecret: config.feedbackSecret,
      feedbackTtlMs: config.feedback.ttlMs,
      feedbackCapacity: config.feedback.capacity,
      feedbackWindow: config.feedback.window,
    });
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  /** Why the core takes no new request now (lifecycle.ts), or null when ready. */
  unavailable(): CoreError | null {
    return stateError(this.state);
  }

  /** The snapshot of what is served now (empty before the start and after close). */
  get catalogue(): Catalogue {
    return this.store?.catalogue ?? { models: [] };
  }

  /** Start the workers, then load and warm every variant (a reload from empty); then ready. */
  async load(): Promise<void> {
    const started = performance.now();
    try {
      const pool = await WorkerPool.start({
        size: this.config.workers,
        sessions: [],
        intraOpThreads: this.config.threads.intraOp,
        interOpThreads: this.config.threads.interOp,
        spinning: this.config.threads.spinning,
        graphOptimization: this.config.graphOptimization,
        int8Weights: this.config.int8Weights,
        testDelayMs: this.options.testWorkerDelayMs ?? Number(process.env.SLIM_TEST_WORKER_DELAY_MS ?? 0),
        batchTimeoutMs: this.config.batchTimeoutMs,
        onWorkerEvent: (e) => (e.kind === 'replaced' ? this.log.info(e, 'inference worker replaced') : this.log.error(e, 'inference worker failed')),
      });
      if (this.state !== 'loading') {
        // Shut down while loading: nothing was accepted, so nothing to drain.
        await pool.close();
        return;
      }
      this.pool = pool;
      this.batcher = new Batcher(pool, this.config.batching, (fact) => this.observers.onBatch(fact));
      const tables = this.tables;
      const statistics = this.statistics;
      this.store = new ModelStore(this.config, this.log, pool, this.batcher, {
        prepare: (model, routingFile) => tables.prepare(model, routingFile),
        bind: (model, plan) => {
          tables.bind(model, plan);
          statistics.bind(model);
        },
        forget: (name) => {
          tables.forget(name);
          statistics.forget(name);
        },
      });
      await this.store.load();
      if (this.state !== 'loading') return; // closed meanwhile: close() released the pool
      this.store.startPolling(this.config.modelReloadMs);
      this.tables.startPolling(this.config.routingReloadMs);
      this.state = 'ready';
      this.log.info(
        {
          ms: Math.round(performance.now() - started),
          workers: pool.size,
          variants: this.catalogue.models.flatMap((m) =>
            m.variants.map((v) => ({ variant: v.key, device: v.device, loadMs: Math.round(v.loadMs), warmupMs: Math.round(v.warmupMs) })),
          ),
        },
        'all variants loaded and warmed up: ready',
      );
    } catch (err) {
      // Shut down while loading: close() released the workers under the load; not a failure.
      if (this.state !== 'loading') return;
      this.state = 'failed';
      throw err;
    }
  }

  /** Hot reload (POST /admin/reload, or the modelReloadMs poll): see model-store.ts. Only while ready. */
  reload(trigger: ReloadTrigger = 'api'): Promise<ReloadReport> {
    const refused = this.unavailable();
    if (refused || !this.store) return Promise.reject(refused ?? stateError('loading')!);
    const report = this.store.reload(trigger);
    // The other server processes reload too (their result is in their own logs).
    const peer = this.options.peer;
    if (peer && trigger === 'api')
      void report.then(
        () => peer.ask('reloaded').catch(() => {}),
        () => {},
      );
    return report;
  }

  /** The model a request names (or the only one); the lifecycle error while nothing is loaded. */
  model(name: string | undefined): ServedModel {
    const catalogue = this.catalogue;
    if (catalogue.models.length === 0) throw stateError(this.state) ?? new CoreError('SHUTTING_DOWN');
    return resolveModel(catalogue, name);
  }

  /** The routing decision of a request without running it (GET /models' default variant). */
  decide(model: ServedModel, request: { variant?: string; key?: string }, random: () => number = Math.random): Decision {
    return decide(this.tables.table(model.name), model.defaultVariant, request, random);
  }

  /** Classify a list of texts: decide -> execute -> record. Throws CoreError. */
  async classify(request: ClassifyRequest): Promise<ClassifyResult> {
    // Checked against the batcher, not the state: a request accepted before a drain began is
    // still answered (the routes refuse new ones while not ready).
    const batcher = this.batcher;
    const store = this.store;
    if (!batcher || !store) throw stateError(this.state) ?? new CoreError('SHUTTING_DOWN');
    const { inputs } = request;
    if (inputs.length === 0) throw new CoreError('INVALID_REQUEST', 'no inputs');
    if (inputs.length > this.config.maxInputs) {
      throw new CoreError('TOO_MANY_INPUTS', `${inputs.length} inputs; at most ${this.config.maxInputs} per request (maxInputs)`);
    }

    // Decide.
    const model = this.model(request.model);
    const decision = this.decide(model, request);
    const stages = decision.stages.map((name) => {
      const v = findVariant(model, name);
      if (!v)
        throw new CoreError('VARIANT_NOT_FOUND', `model ${model.name} has no variant ${name} (variants: ${model.variants.map((x) => x.name).join(', ')})`);
      return v;
    });

    // Execute. Every stage is held from the start: a later stage must not be released under the request.
    const release = store.hold(stages);
    let queueMs = 0;
    let inferenceMs = 0;
    let truncated: number[] = [];
    // An input runs stages 0..d and stage d decides it, so the last logits written are the decider's.
    const logits = new Array<Float32Array>(inputs.length);
    const cascade = await runCascade(stages, decision.threshold, inputs.length, async (_stage, s, indices) => {
      const r = await this.runStage(batcher, stages[s]!, s === 0 ? inputs : indices.map((i) => inputs[i]!), request.truncate, request);
      queueMs += r.queueMs;
      inferenceMs += r.inferenceMs;
      if (s === 0) truncated = r.truncated;
      indices.forEach((input, j) => (logits[input] = r.logits[j]!));
      return r.probabilities;
    }).finally(release);
    const probabilities = cascade.probabilities as Float32Array[];
    const decidedBy = cascade.decidedBy.map((s) => stages[s]!);
    const labels = probabilities.map((p, i) => decidedBy[i]!.labels[argmax(p)]!);
    // The deepest variant the request needed: what x-slim-variant and "variant" report.
    const variant = stages[Math.max(...cascade.decidedBy)]!;

    // Record.
    const variants = decidedBy.map((v) => v.name);
    for (const [from, to, n] of escalations(stages, cascade)) this.statistics.recordEscalation(model.name, from, to, n);
    this.statistics.recordServed(model.name, variant.name, variants);
    const requestId = this.statistics.issueId({ trace: request.requestId, model: model.name, variants, labels, time: Date.now() });
    const job = shadowJob(this.tables.table(model.name), model.name, inputs, variants, labels, request.truncate);
    // Shadow work starts after this request's answer is written (setImmediate runs after the
    // route's reply, which is sent from the promise jobs of this call's continuation).
    if (job) setImmediate(() => void this.runShadow(job));

    return { model, variant, routing: decision.reason, decidedBy, requestId, probabilities, logits, labels, queueMs, inferenceMs, truncated };
  }

  /** A shadow run: never fails anything but itself; dropped when it would crowd real traffic. */
  private async runShadow(job: ShadowJob): Promise<void> {
    const record = (labels: readonly string[] | null): void => {
      for (const [served, outcome, n] of shadowOutcomes(job, labels)) this.statistics.recordShadow(job.model, served, job.shadow, outcome, n);
    };
    const batcher = this.batcher;
    const store = this.store;
    const variant = this.catalogue.models.find((m) => m.name === job.model)?.variants.find((v) => v.name === job.shadow);
    // Shadow work never runs while draining.
    if (
      !batcher ||
      !store ||
      !variant ||
      this.state !== 'ready' ||
      !shadowFits(batcher.queueDepth(variant.key), job.texts.length, this.config.batching.maxQueued)
    ) {
      record(null);
      return;
    }
    const release = store.hold([variant]);
    try {
      const r = await this.runStage(batcher, variant, job.texts, job.truncate, { requestId: 'shadow', deadline: epochMs() + this.config.requestTimeoutMs });
      record(r.probabilities.map((p) => variant.labels[argmax(p)]!));
    } catch (err) {
      record(null);
      if (!(err instanceof CoreError && (err.code === 'QUEUE_FULL' || err.code === 'SHUTTING_DOWN'))) this.log.warn({ err }, 'shadow run failed (dropped)');
    } finally {
      release();
    }
  }

  /** One stage on one variant: bound the texts, batch, run (the worker tokenizes). */
  private async runStage(
    batcher: Batcher,
    variant: ServedVariant,
    texts: readonly string[],
    truncate: boolean,
    opts: { requestId: string; deadline: number; signal?: ClientGone },
  ): Promise<StageRun> {
    batcher.checkCapacity(variant.key, texts.length); // shed first: a 429 must stay cheap under overload
    const bounded = new Array<string>(texts.length);
    for (let i = 0; i < texts.length; i++) {
      const b = boundText(texts[i]!, variant.maxLength);
      // Too long whatever it tokenizes to: refused here, without a trip to a worker.
      if (b.surelyTooLong && !truncate) {
        throw new CoreError(
          'TEXT_TOO_LONG',
          `inputs[${i}] has more than ${variant.maxLength} tokens; ${variant.key} takes at most ${variant.maxLength} (send "truncate": true to cut it)`,
        );
      }
      bounded[i] = b.text;
    }
    const outcome = await batcher.submit(variant.key, bounded, { deadline: opts.deadline, signal: opts.signal, truncate });
    return {
      probabilities: outcome.probabilities,
      logits: outcome.logits,
      queueMs: Math.max(...outcome.queueMs),
      inferenceMs: Math.max(...outcome.inferenceMs),
      truncated: outcome.truncated,
    };
  }

  /** POST /feedback; `client` (its address key) counts toward the distinct clients of the online accuracy. */
  async feedback(requestId: string, labels: readonly (string | null)[], client = ''): Promise<FeedbackResult> {
    const peer = this.options.peer;
    if (!peer) return this.statistics.recordFeedback(requestId, labels, client);
    // Checked here (this process has the models), counted once in the primary.
    return peer.ask<FeedbackResult>('feedback', { claim: this.statistics.checkFeedback(requestId, labels), client });
  }

  /** GET /routing/{model}; with several processes, their counts summed and the primary's feedback tally. */
  async routingStatus(name: string): Promise<RoutingStatus> {
    const model = this.model(name);
    const peer = this.options.peer;
    if (!peer) return routingStatus(this.tables.state(model.name), this.statistics.of(model.name)!, this.statistics);
    const whole = await peer.ask<{ counters: ModelSnapshot; feedback: FeedbackCounts }>('routing-stats', { model: model.name });
    return routingStatus(this.tables.state(model.name), clusterView(model, whole.counters, whole.feedback), this.statistics);
  }

  /** PUT /routing/{model}: the new table in force, persisted where possible. */
  async replaceRouting(name: string, raw: unknown): Promise<RoutingStatus & { persisted: boolean; persistError?: string }> {
    const model = this.model(name);
    const persisted = await this.tables.replace(model.name, raw);
    // Every other server process re-reads routing.json before this PUT is answered.
    if (this.options.peer && persisted.persisted) await this.options.peer.ask('routing-changed', { model: model.name });
    return { ...(await this.routingStatus(model.name)), ...persisted };
  }

  /** Normalised routing weights of a model (slim_routing_weight). */
  routingShares(model: ServedModel): [string, number][] {
    return routingShares({ model, table: this.tables.table(model.name) });
  }

  /** What Prometheus reads from routing at scrape time. */
  routingCounters(): RoutingCounters {
    return routingCounters(this.statistics);
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

  private current(model: string, variant: string): ServedVariant | undefined {
    const m = this.catalogue.models.find((x) => x.name === model);
    return m ? findVariant(m, variant) : undefined;
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
    this.tables.stop();
    this.store?.stop();
    this.state = 'stopped';
    const pool = this.pool;
    this.batcher?.abortAll(new CoreError('SHUTTING_DOWN', 'the server stopped before this request was answered'));
    this.pool = null;
    this.batcher = null;
    await pool?.close();
  }
}
