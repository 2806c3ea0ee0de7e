// Prometheus metrics of `slim serve` (spec: "Metrics"). One Registry per server instance, fed
// only by the core's observer facts (batches, answered requests) and read-at-scrape gauges
// (queue depth, build accuracy, routing weights, variant info). Every label value is bounded:
// endpoints are route patterns and a model or variant the core does not serve becomes
// "_unknown" (absent: "_none"), so no client input ever becomes a series.
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BatchFact, RequestFact, ServeObserver } from './observer.js';
import type { ServeCore } from './core.js';
import { precisionOf } from '../manifest.js';

export const UNKNOWN = '_unknown';
export const NONE = '_none';

/** 0.5 ms doubling up to ~33 s (17 buckets): inference and request latencies in seconds. */
export const LATENCY_BUCKETS = Array.from({ length: 17 }, (_, i) => 0.0005 * 2 ** i);
/** 1, 2, 4, ... 1024 inputs per batch. */
export const BATCH_SIZE_BUCKETS = Array.from({ length: 11 }, (_, i) => 2 ** i);
/** 8, 16, ... 131072 padded tokens per batch. */
export const BATCH_TOKEN_BUCKETS = Array.from({ length: 15 }, (_, i) => 8 * 2 ** i);

const MAX_ENDPOINT_LENGTH = 128;

const LINT_FAILING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requestDuration: Histogram<'model' | 'variant' | 'endpoint'>;
  readonly queueDuration: Histogram<'model' | 'variant'>;
  readonly inferenceDuration: Histogram<'model' | 'variant' | 'device'>;
  readonly batchSize: Histogram<'model' | 'variant'>;
  readonly batchTokens: Histogram<'model' | 'variant'>;
  readonly requests: Counter<'model' | 'variant' | 'endpoint' | 'code'>;
  readonly inputs: Counter<'model' | 'variant'>;
  readonly feedback: Counter<'model' | 'variant' | 'outcome'>;
  readonly accuracy: Gauge<'model' | 'variant' | 'source'>;
  readonly shadow: Counter<'model' | 'variant' | 'agreement'>;
  readonly cascadeEscalations: Counter<'model' | 'from' | 'to'>;
  readonly queueDepth: Gauge<'model' | 'variant'>;
  readonly routingWeight: Gauge<'model' | 'variant'>;
  readonly variantInfo: Gauge<'model' | 'variant' | 'depth' | 'base' | 'device' | 'precision'>;
  readonly reloads: Counter<'result'>;
  readonly connectionsRefused: Counter;
  /** Subscribe this to core.observers. */
  readonly observer: ServeObserver;

  constructor(private readonly core: ServeCore) {
    const registers = [this.registry];
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- prom-client calls collect() with `this` bound to the metric
    const self = this;
    this.requestDuration = new Histogram({
      name: 'slim_request_duration_seconds',
      help: 'Time from request arrival to the answer, per route pattern.',
      labelNames: ['model', 'variant', 'endpoint'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.queueDuration = new Histogram({
      name: 'slim_queue_duration_seconds',
      help: 'Per input: time from enqueue to the start of its batch.',
      labelNames: ['model', 'variant'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inferenceDuration = new Histogram({
      name: 'slim_inference_duration_seconds',
      help: 'Per batch: session.run wall time inside the worker.',
      labelNames: ['model', 'variant', 'device'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.batchSize = new Histogram({
      name: 'slim_batch_size',
      help: 'Inputs per batch run.',
      labelNames: ['model', 'variant'],
      buckets: BATCH_SIZE_BUCKETS,
      registers,
    });
    this.batchTokens = new Histogram({
      name: 'slim_batch_tokens',
      help: 'Padded tokens (padded length x inputs) per batch run.',
      labelNames: ['model', 'variant'],
      buckets: BATCH_TOKEN_BUCKETS,
      registers,
    });
    this.requests = new Counter({
      name: 'slim_requests_total',
      help: 'Answered HTTP requests by route pattern and status code.',
      labelNames: ['model', 'variant', 'endpoint', 'code'],
      registers,
    });
    this.inputs = new Counter({
      name: 'slim_inputs_total',
      help: 'Inputs classified (in batches that succeeded).',
      labelNames: ['model', 'variant'],
      registers,
    });
    this.feedback = new Counter({
      name: 'slim_feedback_total',
      help: 'Feedback received on answers, by outcome (correct|incorrect).',
      labelNames: ['model', 'variant', 'outcome'],
      registers,
      // Read from the routing module's counters (they only grow) at scrape time.
      collect() {
        this.reset();
        for (const c of self.core.routingCounters().feedback) this.inc({ model: c.model, variant: c.variant, outcome: c.outcome }, c.value);
      },
    });
    this.accuracy = new Gauge({
      name: 'slim_variant_accuracy',
      help: 'Accuracy of a variant: source="build" from its manifest eval, source="online" from feedback.',
      labelNames: ['model', 'variant', 'source'],
      registers,
      // With several processes (--processes) every one reports the same value: merged, it is taken once.
      aggregator: 'first',
      collect() {
        this.reset();
        for (const m of self.core.catalogue.models) {
          for (const v of m.variants) {
            this.set({ model: m.name, variant: v.name, source: 'build' }, v.manifest.eval.accuracy);
          }
        }
        for (const o of self.core.routingCounters().online) this.set({ model: o.model, variant: o.variant, source: 'online' }, o.value);
      },
    });
    this.shadow = new Counter({
      name: 'slim_shadow_total',
      help: 'Shadow comparisons of a variant against the answering one, by agreement.',
      labelNames: ['model', 'variant', 'agreement'],
      registers,
      collect() {
        this.reset();
        for (const c of self.core.routingCounters().shadow) this.inc({ model: c.model, variant: c.variant, agreement: c.agreement }, c.value);
      },
    });
    this.cascadeEscalations = new Counter({
      name: 'slim_cascade_escalations_total',
      help: 'Inputs a cascade passed on from a shallower variant to a deeper one.',
      labelNames: ['model', 'from', 'to'],
      registers,
      collect() {
        this.reset();
        for (const c of self.core.routingCounters().escalations) this.inc({ model: c.model, from: c.from, to: c.to }, c.value);
      },
    });
    this.queueDepth = new Gauge({
      name: 'slim_queue_depth',
      help: 'Inputs waiting (not yet in a running batch) per variant, at scrape time.',
      labelNames: ['model', 'variant'],
      registers,
      collect() {
        this.reset();
        for (const m of self.core.catalogue.models) {
          for (const v of m.variants) this.set({ model: m.name, variant: v.name }, self.core.queueDepth(m.name, v.name));
        }
      },
    });
    this.routingWeight = new Gauge({
      name: 'slim_routing_weight',
      help: 'Share (0..1) of requests without an explicit variant that routing sends to a variant.',
      labelNames: ['model', 'variant'],
      registers,
      // With several processes (--processes) every one reports the same value: merged, it is taken once.
      aggregator: 'first',
      collect() {
        this.reset();
        for (const m of self.core.catalogue.models) {
          for (const [variant, share] of self.core.routingShares(m)) {
            this.set({ model: m.name, variant }, share);
          }
        }
      },
    });
    this.variantInfo = new Gauge({
      name: 'slim_variant_info',
      help: 'Always 1: what a served variant is (depth, base model id, device it runs on, precision fp32/int8/fp16).',
      labelNames: ['model', 'variant', 'depth', 'base', 'device', 'precision'],
      registers,
      // With several processes (--processes) every one reports the same value: merged, it is taken once.
      aggregator: 'first',
      collect() {
        this.reset();
        for (const m of self.core.catalogue.models) {
          for (const v of m.variants) {
            this.set(
              { model: m.name, variant: v.name, depth: String(v.depth), base: v.manifest.base.id, device: v.device, precision: precisionOf(v.manifest) },
              1,
            );
          }
        }
      },
    });
    this.reloads = new Counter({
      name: 'slim_reload_total',
      help: 'Variant changes by hot reload: result="added|updated|removed" applied, "failed" refused (the old variant kept serving).',
      labelNames: ['result'],
      registers,
      collect() {
        this.reset();
        const counts = self.core.store?.counts;
        for (const result of ['added', 'updated', 'removed', 'failed'] as const) this.inc({ result }, counts?.[result] ?? 0);
      },
    });
    this.connectionsRefused = new Counter({
      name: 'slim_connections_refused_total',
      help: 'Connections answered 429 TOO_MANY_CONNECTIONS and closed unread because the server held maxConnections.',
      registers,
    });
    // A coarse event-loop monitor: the default 10 ms sampling measurably adds event-loop delay under load.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    // Gauges named *_total break the exposition rules (promtool check metrics); their per-type
    // siblings nodejs_active_{handles,requests,resources}{type} stay, and sum() gives the totals.
    for (const name of LINT_FAILING_DEFAULTS) this.registry.removeSingleMetric(name);

    this.observer = {
      onBatch: (fact) => this.onBatch(fact),
      onRequest: (fact) => this.onRequest(fact),
    };
  }

  /**
   * With several server processes (--processes): the exposition text of the whole server, which
   * the primary merges from every process's registry (cluster-peer.ts). null: this registry.
   */
  wholeServerText: (() => Promise<string>) | null = null;

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text of every metric of this server. */
  text(): Promise<string> {
    return this.wholeServerText ? this.wholeServerText() : this.registry.metrics();
  }

  /** Bounded model and variant label values: only what the core serves. */
  labels(model: string | undefined, variant: string | undefined): { model: string; variant: string } {
    if (model === undefined) return { model: NONE, variant: variant === undefined ? NONE : UNKNOWN };
    const served = this.core.catalogue.models.find((m) => m.name === model);
    if (!served) return { model: UNKNOWN, variant: variant === undefined ? NONE : UNKNOWN };
    if (variant === undefined) return { model, variant: NONE };
    return { model, variant: served.variants.some((v) => v.name === variant) ? variant : UNKNOWN };
  }

  private onBatch(fact: BatchFact): void {
    const labels = this.labels(fact.model, fact.variant);
    for (const q of fact.queueMs) this.queueDuration.observe(labels, q / 1000);
    this.inferenceDuration.observe({ ...labels, device: fact.device }, fact.inferenceMs / 1000);
    this.batchSize.observe(labels, fact.size);
    this.batchTokens.observe(labels, fact.tokens);
    if (fact.ok) this.inputs.inc(labels, fact.size);
  }

  private onRequest(fact: RequestFact): void {
    const labels = this.labels(fact.model, fact.variant);
    const endpoint = fact.endpoint.length <= MAX_ENDPOINT_LENGTH ? fact.endpoint : UNKNOWN;
    this.requestDuration.observe({ ...labels, endpoint }, fact.durationMs / 1000);
    this.requests.inc({ ...labels, endpoint, code: String(fact.code) });
  }
}

/** GET /metrics: the Prometheus text exposition format; answers while loading and draining. */
export function metricsRoutes(app: FastifyInstance, metrics: ServeMetrics): void {
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    const body = await metrics.text();
    return reply.header('content-type', metrics.contentType).send(body);
  });
}
