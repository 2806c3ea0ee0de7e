// The live routing of every served model: the current table (from routing.json, re-read when
// the file changes, or from PUT /routing), and what routing needs to report: inputs served per
// variant, feedback and online accuracy, shadow agreement and cascade escalations. Counters only
// grow (Prometheus reads them at scrape time); a new table never resets them.
import { randomBytes } from 'node:crypto';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServedModel } from '../catalog.js';
import { publicFsError, SlimError } from '../errors.js';
import { FeedbackIds, type ServedRecord } from './feedback.js';
import { SerialQueue } from './serial.js';
import { difference, OutcomeWindow, type AccuracyEstimate, type Difference } from './online-accuracy.js';
import type { ShadowOutcome } from './shadow.js';
import { plan, type Plan } from './sticky.js';
import { defaultTable, parseRoutingTable, RoutingTableError, shares, tableToJson, type RoutingTable } from './table.js';

export const ROUTING_FILE = 'routing.json';

export interface RoutingLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface RoutingServiceOptions {
  feedbackSecret: string | null;
  feedbackTtlMs: number;
  feedbackCapacity: number;
  /** Feedback outcomes per variant in the online-accuracy window. */
  feedbackWindow: number;
  /** How often routing.json is re-read (0: never). */
  reloadMs: number;
}

interface VariantStats {
  /** Requests whose top-level variant this was. */
  requests: number;
  /** Inputs this variant decided. */
  inputs: number;
  correct: number;
  incorrect: number;
  window: OutcomeWindow;
}

interface ModelRouting {
  model: ServedModel;
  /** null: no routing.json (everything to the model's default variant). */
  table: RoutingTable | null;
  source: 'default' | 'file' | 'api';
  version: number;
  updatedAt: string;
  /** Text of routing.json last read (null: absent), to notice changes. */
  fileText: string | null;
  lastReloadError: string | null;
  /** A PUT is writing routing.json: reloads leave this model alone until it is done. */
  writing: boolean;
  /** The previous poll found no routing.json (a removal counts only when two polls agree). */
  missing: boolean;
  stats: Map<string, VariantStats>;
  /** "<served>\u0000<shadow>" -> outcome -> inputs. */
  shadow: Map<string, Record<ShadowOutcome, number>>;
  /** "<from>\u0000<to>" -> inputs. */
  escalations: Map<string, number>;
}

export class RoutingService {
  readonly feedback: FeedbackIds;
  private readonly models = new Map<string, ModelRouting>();
  private timer: NodeJS.Timeout | null = null;
  private reloading = false;
  /** PUTs of one model, one at a time (src/serve/routing/serial.ts). */
  private readonly puts = new SerialQueue();

  constructor(
    readonly options: RoutingServiceOptions,
    private readonly log: RoutingLogger,
  ) {
    this.feedback = new FeedbackIds({ secret: options.feedbackSecret, ttlMs: options.feedbackTtlMs, capacity: options.feedbackCapacity });
  }

  /** Check every model's routing.json as scanned; throws (the start fails) on a bad one. */
  static check(model: string, raw: unknown, variants: { name: string; labels: readonly string[] }[], defaultVariant: string): void {
    parseRoutingTable(model, raw, variants, defaultVariant);
  }

  /** Take the loaded models (their routing.json already read by the repository scan); start watching. */
  attach(models: ServedModel[]): void {
    for (const model of models) {
      const table = parseRoutingTable(model.name, model.routing, model.variants, model.defaultVariant);
      this.models.set(model.name, {
        model,
        table,
        source: table ? 'file' : 'default',
        version: 1,
        updatedAt: new Date().toISOString(),
        fileText: model.routing === null || model.routing === undefined ? null : JSON.stringify(model.routing),
        lastReloadError: null,
        writing: false,
        missing: false,
        stats: new Map(model.variants.map((v) => [v.name, { requests: 0, inputs: 0, correct: 0, incorrect: 0, window: new OutcomeWindow(this.options.feedbackWindow) }])),
        shadow: new Map(),
        escalations: new Map(),
      });
    }
    if (this.options.reloadMs > 0 && !this.timer) {
      // Polling, not fs.watch: a Kubernetes ConfigMap update swaps a symlink, which inotify
      // watches on the file miss; one small read per model per second is cheap.
      this.timer = setInterval(() => void this.reloadAll(), this.options.reloadMs);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private entry(model: string): ModelRouting {
    const e = this.models.get(model);
    if (!e) throw new SlimError('MODEL_NOT_FOUND', `no model named ${model}`);
    return e;
  }

  table(model: string): RoutingTable | null {
    return this.entry(model).table;
  }

  /** The routing decision of a request (explicit > cascade > sticky > weighted). */
  plan(model: ServedModel, request: { variant?: string; key?: string }, random: () => number = Math.random): Plan {
    const e = this.models.get(model.name);
    return plan(e ? e.table : null, model.defaultVariant, request, random);
  }

  /** Normalised weights per variant of the live table. */
  shares(model: ServedModel): [string, number][] {
    const e = this.models.get(model.name);
    const names = model.variants.map((v) => v.name);
    return shares(e?.table ?? defaultTable(model.defaultVariant), names);
  }

  /** Swap in a new table (already parsed). */
  private swap(e: ModelRouting, table: RoutingTable | null, source: ModelRouting['source']): void {
    e.table = table;
    e.source = source;
    e.version++;
    e.updatedAt = new Date().toISOString();
    // GET /models shows the live document too.
    e.model.routing = table ? tableToJson(table) : null;
    this.log.info({ model: e.model.name, source, version: e.version, routing: e.model.routing }, 'routing table replaced');
  }

  /**
   * PUT /routing: validate (400 naming the problem), apply atomically, then try to persist it as
   * routing.json (write a temporary file and rename) so a restart keeps it. Where the model
   * directory is read-only (a mounted ConfigMap) the table still applies to this replica only.
   */
  async replace(model: string, raw: unknown): Promise<{ persisted: boolean; persistError?: string }> {
    const e = this.entry(model);
    let table: RoutingTable | null;
    try {
      table = parseRoutingTable(model, raw, e.model.variants, e.model.defaultVariant);
    } catch (err) {
      if (err instanceof RoutingTableError) throw new SlimError('INVALID_ROUTING', err.message);
      throw err;
    }
    if (!table) throw new SlimError('INVALID_ROUTING', `routing of ${model}: expected a JSON object`);
    return this.puts.run(model, () => this.swapAndPersist(e, model, table));
  }

  private async swapAndPersist(e: ModelRouting, model: string, table: RoutingTable): Promise<{ persisted: boolean; persistError?: string }> {
    // Until the new file is in place a reload would read the old one and undo this PUT.
    e.writing = true;
    this.swap(e, table, 'api');
    const text = `${JSON.stringify(tableToJson(table), null, 2)}\n`;
    const file = join(e.model.dir, ROUTING_FILE);
    const tmp = join(e.model.dir, `.${ROUTING_FILE}.${randomBytes(6).toString('hex')}.tmp`);
    // Claim the new content first, so a reload that reads the renamed file does not apply it again.
    const previous = e.fileText;
    e.fileText = JSON.stringify(JSON.parse(text));
    try {
      await writeFile(tmp, text);
      await rename(tmp, file);
      return { persisted: true };
    } catch (err) {
      e.fileText = previous;
      await unlink(tmp).catch(() => {});
      this.log.warn({ model, file, err: (err as Error).message }, 'routing table applied in memory only: routing.json could not be written');
      // The answer names the failure, not the server's paths (the log has them).
      return { persisted: false, persistError: publicFsError(err, `could not write ${ROUTING_FILE} in the model directory`) };
    } finally {
      e.writing = false;
    }
  }

  /**
   * Hot reload (src/serve/hot-reload.ts): the table a model would run with over a new variant
   * set. The live table stays when it is still valid there; otherwise a routing.json that changed
   * on disk and is valid over the new set is taken. Throws RoutingTableError when neither is:
   * the reload then keeps the variants the table needs.
   */
  prepareRebind(model: ServedModel, fileRaw: unknown): RebindPlan {
    const e = this.models.get(model.name);
    if (!e) return { table: parseRoutingTable(model.name, fileRaw, model.variants, model.defaultVariant), fileText: fileRaw === null || fileRaw === undefined ? null : JSON.stringify(fileRaw), fromFile: true };
    try {
      return { table: parseRoutingTable(model.name, e.table ? tableToJson(e.table) : null, model.variants, model.defaultVariant), fileText: e.fileText, fromFile: false };
    } catch (err) {
      const text = fileRaw === null || fileRaw === undefined ? null : JSON.stringify(fileRaw);
      if (text === e.fileText || e.writing) throw err;
      return { table: parseRoutingTable(model.name, fileRaw, model.variants, model.defaultVariant), fileText: text, fromFile: true };
    }
  }

  /**
   * Hot reload: the model's new variant set (and the table prepareRebind chose) in force at once.
   * Statistics of variants that stay are kept; those of removed variants go, so no series of a
   * variant that is no longer served stays in /metrics.
   */
  rebind(model: ServedModel, plan: RebindPlan): void {
    const e = this.models.get(model.name);
    if (!e) {
      model.routing = plan.table ? tableToJson(plan.table) : null;
      this.attach([model]);
      return;
    }
    e.model = model;
    for (const name of [...e.stats.keys()]) if (!model.variants.some((v) => v.name === name)) e.stats.delete(name);
    for (const v of model.variants) {
      if (!e.stats.has(v.name)) e.stats.set(v.name, { requests: 0, inputs: 0, correct: 0, incorrect: 0, window: new OutcomeWindow(this.options.feedbackWindow) });
    }
    if (plan.fromFile) {
      e.fileText = plan.fileText;
      e.lastReloadError = null;
      this.swap(e, plan.table, plan.table ? 'file' : 'default');
    } else {
      model.routing = e.table ? tableToJson(e.table) : null;
    }
  }

  /** Hot reload removed every variant of a model (its directory is gone). */
  forget(model: string): void {
    this.models.delete(model);
  }

  /** Re-read every routing.json; a changed valid one replaces the table, a bad one is logged and ignored. */
  async reloadAll(): Promise<void> {
    if (this.reloading) return;
    this.reloading = true;
    try {
      for (const e of this.models.values()) await this.reload(e);
    } finally {
      this.reloading = false;
    }
  }

  private async reload(e: ModelRouting): Promise<void> {
    if (e.writing) return;
    const file = join(e.model.dir, ROUTING_FILE);
    const version = e.version;
    let text: string | null;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return; // unreadable for now: try again next tick
      // A file swapped by rename or a ConfigMap symlink flip may be absent for an instant;
      // only a file still missing at the next poll means the table was removed.
      const confirmed = e.missing;
      e.missing = true;
      if (!confirmed) return;
      text = null;
    }
    if (text !== null) e.missing = false;
    // A PUT replaced the table while the file was read: what was read may be older than it.
    if (e.writing || e.version !== version) return;
    let normalised: string | null = null;
    let parsed: unknown = null;
    if (text !== null) {
      try {
        parsed = JSON.parse(text);
        normalised = JSON.stringify(parsed);
      } catch (err) {
        // A half-written file reads as bad JSON; it is reported once per distinct content.
        const why = `${ROUTING_FILE}: ${(err as Error).message}`;
        if (e.lastReloadError !== why) this.log.warn({ model: e.model.name, file, err: why }, 'routing.json is not valid JSON: keeping the current table');
        e.lastReloadError = why;
        return;
      }
    }
    if (normalised === e.fileText) {
      e.lastReloadError = null; // back to the content in force
      return;
    }
    try {
      const table = parseRoutingTable(e.model.name, parsed, e.model.variants, e.model.defaultVariant);
      e.fileText = normalised;
      e.lastReloadError = null;
      this.swap(e, table, table ? 'file' : 'default');
    } catch (err) {
      const why = (err as Error).message;
      if (e.lastReloadError !== why) this.log.warn({ model: e.model.name, file, err: why }, 'routing.json refused: keeping the current table');
      e.lastReloadError = why;
    }
  }

  // ---- bookkeeping --------------------------------------------------------------------

  private stats(model: string, variant: string): VariantStats | undefined {
    return this.models.get(model)?.stats.get(variant);
  }

  /** An answered request: its top-level variant and the variant that decided each input. */
  recordServed(model: string, variant: string, decidedBy: string[]): void {
    const s = this.stats(model, variant);
    if (s) s.requests++;
    for (const v of decidedBy) {
      const d = this.stats(model, v);
      if (d) d.inputs++;
    }
  }

  recordEscalation(model: string, from: string, to: string, count: number): void {
    const e = this.models.get(model);
    if (!e) return;
    const k = `${from}\u0000${to}`;
    e.escalations.set(k, (e.escalations.get(k) ?? 0) + count);
  }

  recordShadow(model: string, served: string, shadow: string, outcome: ShadowOutcome, count: number): void {
    const e = this.models.get(model);
    if (!e) return;
    const k = `${served}\u0000${shadow}`;
    const c = e.shadow.get(k) ?? { agree: 0, disagree: 0, dropped: 0 };
    c[outcome] += count;
    e.shadow.set(k, c);
  }

  /** The request_id of an answered request (signed, or stored in memory). */
  issueId(record: ServedRecord): string {
    return this.feedback.issue(record);
  }

  /**
   * POST /feedback: join true labels (per input; null skips one) with the predictions behind a
   * request_id. Returns what was counted; inputs that already had feedback are not counted again.
   */
  recordFeedback(requestId: string, labels: (string | null)[], client = ''): FeedbackResult {
    const { record, key } = this.feedback.resolve(requestId);
    const e = this.models.get(record.model);
    if (!e) throw new SlimError('REQUEST_ID_NOT_FOUND', `request_id names model ${record.model}, which this server does not serve`);
    if (labels.length !== record.labels.length) {
      throw new SlimError(
        'INVALID_REQUEST',
        record.labels.length === 1
          ? `the request had 1 input: send "label" (or "labels" with one entry), got ${labels.length}`
          : `the request had ${record.labels.length} inputs: send "labels" with one entry per input (null to skip one), got ${labels.length}`,
      );
    }
    const known = e.model.variants.find((v) => v.name === record.variants[0])?.labels ?? e.model.variants[0]!.labels;
    labels.forEach((l, i) => {
      if (l !== null && !known.includes(l)) throw new SlimError('UNKNOWN_LABEL', `labels[${i}]: "${l}" is not a label of ${record.model} (labels: ${known.join(', ')})`);
    });
    const out: FeedbackResult = { model: record.model, counted: 0, duplicates: 0, results: [] };
    labels.forEach((label, i) => {
      if (label === null) return;
      const variant = record.variants[i]!;
      const correct = label === record.labels[i];
      const fresh = this.feedback.markAnswered(key, i);
      out.results.push({ index: i, variant, predicted: record.labels[i]!, label, correct, counted: fresh });
      if (!fresh) {
        out.duplicates++;
        return;
      }
      out.counted++;
      const s = this.stats(record.model, variant);
      if (!s) return;
      if (correct) s.correct++;
      else s.incorrect++;
      s.window.add(correct, client);
    });
    return out;
  }

  // ---- reports ------------------------------------------------------------------------

  /** What Prometheus reads at scrape time. */
  counters(): {
    feedback: { model: string; variant: string; outcome: 'correct' | 'incorrect'; value: number }[];
    online: { model: string; variant: string; value: number }[];
    shadow: { model: string; variant: string; agreement: ShadowOutcome; value: number }[];
    escalations: { model: string; from: string; to: string; value: number }[];
  } {
    const out: ReturnType<RoutingService['counters']> = { feedback: [], online: [], shadow: [], escalations: [] };
    for (const [model, e] of this.models) {
      for (const [variant, s] of e.stats) {
        if (s.correct + s.incorrect > 0) {
          out.feedback.push({ model, variant, outcome: 'correct', value: s.correct }, { model, variant, outcome: 'incorrect', value: s.incorrect });
          const est = s.window.estimate();
          if (est.accuracy !== null) out.online.push({ model, variant, value: est.accuracy });
        }
      }
      // slim_shadow_total is per shadow variant: summed over the variants it was compared with.
      const byShadow = new Map<string, Record<ShadowOutcome, number>>();
      for (const [k, c] of e.shadow) {
        const shadow = k.split('\u0000')[1]!;
        const t = byShadow.get(shadow) ?? { agree: 0, disagree: 0, dropped: 0 };
        for (const o of ['agree', 'disagree', 'dropped'] as const) t[o] += c[o];
        byShadow.set(shadow, t);
      }
      for (const [variant, t] of byShadow) for (const o of ['agree', 'disagree', 'dropped'] as const) out.shadow.push({ model, variant, agreement: o, value: t[o] });
      for (const [k, value] of e.escalations) {
        const [from, to] = k.split('\u0000') as [string, string];
        out.escalations.push({ model, from, to, value });
      }
    }
    return out;
  }

  /** GET /routing/{model}. */
  status(model: string): RoutingStatus {
    const e = this.entry(model);
    const names = e.model.variants.map((v) => v.name);
    const table = e.table ?? defaultTable(e.model.defaultVariant);
    const shareOf = new Map(shares(table, names));
    const estimates = new Map<string, AccuracyEstimate>();
    const variants = e.model.variants.map((v) => {
      const s = e.stats.get(v.name)!;
      const est = s.window.estimate();
      estimates.set(v.name, est);
      return {
        name: v.name,
        depth: v.depth,
        weight: table.variants[v.name]?.weight ?? 0,
        share: shareOf.get(v.name) ?? 0,
        requests: s.requests,
        served: s.inputs,
        feedback: { correct: s.correct, incorrect: s.incorrect, total: s.correct + s.incorrect },
        buildAccuracy: v.manifest.eval.accuracy,
        online: est,
      };
    });
    const differences: Difference[] = [];
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        const d = difference(names[i]!, estimates.get(names[i]!)!, names[j]!, estimates.get(names[j]!)!);
        if (d) differences.push(d);
      }
    }
    const agreement = [...e.shadow].map(([k, c]) => {
      const [served, shadow] = k.split('\u0000') as [string, string];
      const compared = c.agree + c.disagree;
      return { served, shadow, ...c, rate: compared > 0 ? c.agree / compared : null };
    });
    return {
      model,
      source: e.source,
      version: e.version,
      updatedAt: e.updatedAt,
      ...(e.lastReloadError !== null ? { lastReloadError: e.lastReloadError } : {}),
      routing: e.table ? tableToJson(e.table) : null,
      effective: tableToJson(table),
      variants,
      differences,
      shadow: { ...(table.shadow ? { variant: table.shadow.variant, fraction: table.shadow.fraction } : {}), agreement },
      cascade: {
        ...(table.cascade ? { order: [...table.cascade.order], threshold: table.cascade.threshold } : {}),
        escalations: [...e.escalations].map(([k, count]) => {
          const [from, to] = k.split('\u0000') as [string, string];
          return { from, to, count };
        }),
      },
      feedback: { signedIds: this.feedback.signed, windowSize: this.options.feedbackWindow, ttlMs: this.options.feedbackTtlMs },
    };
  }
}

/** What prepareRebind decided for a model's new variant set. */
export interface RebindPlan {
  table: RoutingTable | null;
  /** Normalised routing.json text the table came from (null: none). */
  fileText: string | null;
  /** true: the table is new (from routing.json); false: the live table stays. */
  fromFile: boolean;
}

export interface FeedbackResult {
  model: string;
  counted: number;
  duplicates: number;
  results: { index: number; variant: string; predicted: string; label: string; correct: boolean; counted: boolean }[];
}

export interface RoutingStatus {
  model: string;
  source: 'default' | 'file' | 'api';
  version: number;
  updatedAt: string;
  lastReloadError?: string;
  routing: Record<string, unknown> | null;
  effective: Record<string, unknown>;
  variants: {
    name: string;
    depth: number;
    weight: number;
    share: number;
    requests: number;
    served: number;
    feedback: { correct: number; incorrect: number; total: number };
    buildAccuracy: number;
    online: AccuracyEstimate;
  }[];
  differences: Difference[];
  shadow: { variant?: string; fraction?: number; agreement: { served: string; shadow: string; agree: number; disagree: number; dropped: number; rate: number | null }[] };
  cascade: { order?: string[]; threshold?: number; escalations: { from: string; to: string; count: number }[] };
  feedback: { signedIds: boolean; windowSize: number; ttlMs: number };
}
