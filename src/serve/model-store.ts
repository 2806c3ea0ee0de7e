// The model store: owns the catalogue (one immutable snapshot of what is served) and is the only
// code that changes it. Startup and hot reload are one operation, "scan, load, swap":
//
//   1. scan: list the variant directories on disk with a fingerprint of their files;
//   2. load: read and check every new or rebuilt one (manifest, checksum, tokenizer), open and
//      warm its session in every worker;
//   3. check: the routing of every touched model must fit its new variant set;
//   4. swap: one synchronous step puts the new snapshot, the batcher's queues and the routing in
//      force together, so a request sees the old variant set or the new one;
//   5. drain: a replaced or removed variant's accepted requests are answered, then its sessions go.
//
// Startup is a reload from the empty catalogue in strict mode: any directory that cannot be
// served fails the start, naming the file. A hot reload (POST /admin/reload, or the poll every
// modelReloadMs) leaves what was serving in place instead and lists the failure. A rebuilt
// variant gets a new session key (model/variant#n): requests accepted before the swap finish on
// the old session, new ones use the new one.
import type { ReloadFailure, ReloadReport } from './routes/reload-schemas.js';
import { existsSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';
import { precisionOf } from '../manifest.js';
import type { BatchTarget } from './batcher.js';
import { EMPTY_CATALOGUE, freezeModel, pickDefaultVariant, type Catalogue, type ServedModel, type ServedVariant } from './catalogue.js';
import type { Device, ServeConfig } from './config.js';
import {
  readRecommendedVariant,
  readRoutingFile,
  readVariant,
  RepositoryError,
  subdirectories,
  VARIANT_NAME,
  variantFingerprint,
  type VariantEntry,
} from './model-repository.js';
import type { LoadedSession, SessionSpec } from './worker-protocol.js';

export interface StoreLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export type { ReloadChange, ReloadFailure, ReloadReport } from './routes/reload-schemas.js';

/** What started a reload. */
export type ReloadTrigger = ReloadReport['trigger'];

/** The worker pool, as the store uses it: sessions opened and warmed in every worker, or dropped. */
export interface SessionHost {
  addSessions(specs: SessionSpec[]): Promise<LoadedSession[]>;
  dropSessions(keys: string[]): void;
}

/** The batcher, as the store uses it: one queue per served session key. */
export interface QueueRegistry {
  register(target: BatchTarget): void;
  /** false while inputs of the key still wait or run. */
  unregister(key: string): boolean;
}

/** The routing tables, as the store uses it (src/serve/routing/table-store.ts). */
export interface RoutingBinder<Plan> {
  /** The routing a model would run with over a new variant set; throws when none fits. */
  prepare(model: ServedModel, routingFile: unknown): Plan;
  /** Part of the swap: the model's new variant set and the routing prepare() chose. */
  bind(model: ServedModel, plan: Plan): void;
  /** Part of the swap: the model is no longer served. */
  forget(model: string): void;
}

interface Prepared {
  kind: 'add' | 'update';
  id: string;
  variant: ServedVariant;
  fingerprint: string | null;
}

interface DiskVariant {
  model: string;
  modelDir: string;
  variant: string;
  fingerprint: string | null;
}

const DRAIN_POLL_MS = 10;

export class ModelStore<Plan> {
  private snapshot: Catalogue = EMPTY_CATALOGUE;
  /** "<model>/<variant>" -> fingerprint of the directory that is serving. */
  private readonly served = new Map<string, string | null>();
  /** "<model>/<variant>" -> a directory that failed to load, until it changes, loads or goes. */
  private readonly failures = new Map<string, { fingerprint: string | null; failure: ReloadFailure }>();
  /** Session key -> requests holding it (see hold()). */
  private readonly holds = new Map<string, number>();
  private generation = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private busy = false;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Variant outcomes over every hot reload, for slim_reload_total{result}. */
  readonly counts = { added: 0, updated: 0, removed: 0, failed: 0 };
  /** The last hot reload (null until one ran; the start is not one). */
  last: ReloadReport | null = null;

  constructor(
    private readonly config: ServeConfig,
    private readonly log: StoreLogger,
    private readonly sessions: SessionHost,
    private readonly queues: QueueRegistry,
    private readonly routing: RoutingBinder<Plan>,
  ) {}

  /** The snapshot in force now. Read it once per request. */
  get catalogue(): Catalogue {
    return this.snapshot;
  }

  /** Startup: a reload from the empty catalogue in which any failure fails the start. */
  async load(): Promise<void> {
    await this.enqueue('start');
  }

  /** Hot reload; one at a time (a second waits for the first and then rescans). */
  reload(trigger: ReloadTrigger): Promise<ReloadReport> {
    return this.enqueue(trigger);
  }

  /** Poll the repository every `ms` (0: never). Polling, not fs.watch: works on every mount and in containers. */
  startPolling(ms: number): void {
    if (!(ms > 0) || this.timer) return;
    this.timer = setInterval(() => {
      if (this.busy || this.stopped) return;
      this.reload('poll').catch((err: unknown) => this.log.warn({ err }, 'model repository poll failed'));
    }, ms);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Variants whose directory currently fails to load (what GET /models reports). */
  currentFailures(): ReloadFailure[] {
    return [...this.failures.values()].map((f) => f.failure);
  }

  failureOf(model: string, variant: string): ReloadFailure | undefined {
    return this.failures.get(`${model}/${variant}`)?.failure;
  }

  /**
   * Count a request as holding these variants' sessions until `release` runs: a variant that a
   * reload replaces or removes is released only when nothing holds it.
   */
  hold(variants: readonly ServedVariant[]): () => void {
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

  private enqueue(trigger: ReloadTrigger | 'start'): Promise<ReloadReport> {
    const run = this.chain.then(() => this.run(trigger));
    this.chain = run.catch(() => {});
    return run;
  }

  private relative(text: string): string {
    const root = this.config.models.endsWith(sep) ? this.config.models : this.config.models + sep;
    return text.split(root).join('');
  }

  /** A variant that cannot be served: fails the start; on a hot reload, is reported and skipped. */
  private fail(report: ReloadReport, strict: boolean, d: { model: string; variant: string; fingerprint: string | null }, err: unknown): void {
    if (strict) throw err;
    const raw = err instanceof Error ? err.message : String(err);
    const error = this.relative(raw);
    const file = /([^\s:'"]+\/(?:model\.onnx|manifest\.json|tokenizer\.json|tokenizer_config\.json|routing\.json))/.exec(error)?.[1];
    const failure: ReloadFailure = { model: d.model, variant: d.variant, ...(file !== undefined ? { file } : {}), error, at: report.startedAt };
    const id = `${d.model}/${d.variant}`;
    const before = this.failures.get(id);
    // The poll meets a broken directory again and again: one log line per distinct failure.
    if (!before || before.failure.error !== error || report.trigger === 'api') {
      this.log.error({ model: d.model, variant: d.variant, err: raw }, `hot reload: ${id} refused (${raw}); what served before keeps serving`);
      this.counts.failed++;
    }
    this.failures.set(id, { fingerprint: d.fingerprint, failure });
    report.failed.push(failure);
  }

  /**
   * The variant directories on disk. A build writes a variant by renaming a complete directory,
   * so on a hot reload one without a manifest is someone else's folder or a copy in progress; at
   * the start it is an error (strict), like any other incomplete variant.
   */
  private scanDisk(strict: boolean): Map<string, DiskVariant> {
    const root = this.config.models;
    if (strict && !(existsSync(root) && statSync(root).isDirectory())) throw new RepositoryError(`model repository ${root} is not a directory`);
    const disk = new Map<string, DiskVariant>();
    for (const model of subdirectories(root)) {
      const modelDir = join(root, model);
      for (const variant of subdirectories(modelDir)) {
        if (!VARIANT_NAME.test(variant)) {
          if (strict)
            this.log.debug({ path: join(modelDir, variant), why: 'not a variant name (k<depth>[-suffix])' }, 'skipped a directory of the model repository');
          continue;
        }
        if (!strict && !existsSync(join(modelDir, variant, 'manifest.json'))) continue;
        disk.set(`${model}/${variant}`, { model, modelDir, variant, fingerprint: variantFingerprint(join(modelDir, variant)) });
      }
    }
    if (strict) {
      if (disk.size === 0) throw new RepositoryError(`model repository ${root} holds no models (expected <model>/<variant>/manifest.json)`);
      const names = [...new Set([...disk.values()].map((d) => d.model))];
      for (const model of Object.keys(this.config.devices)) {
        if (!names.includes(model)) throw new Error(`devices.${model}: no model named ${model} in ${root} (models: ${names.join(', ')})`);
      }
    }
    return disk;
  }

  /** Read, check, load and warm one variant directory: the served variant, immutable. */
  private async loadVariant(d: DiskVariant, key: string): Promise<ServedVariant> {
    const entry: VariantEntry = await readVariant(d.modelDir, d.model, d.variant);
    const requestedDevice: Device = this.config.devices[entry.model] ?? this.config.device;
    // Each worker loads the tokenizer with the session (it tokenizes its own batches); a broken
    // tokenizer.json fails the load there, naming the file.
    const spec: SessionSpec = {
      key,
      onnxPath: entry.onnxPath,
      precision: precisionOf(entry.manifest),
      device: requestedDevice,
      numLabels: entry.manifest.labels.length,
      tokenizerDir: entry.dir,
      maxLength: entry.manifest.maxLength,
      warmupShapes: this.warmupShapes(entry.manifest.maxLength),
    };
    const [loaded] = await this.sessions.addSessions([spec]);
    return {
      model: entry.model,
      name: entry.variant,
      depth: entry.depth,
      key,
      dir: entry.dir,
      onnxPath: entry.onnxPath,
      manifest: entry.manifest,
      labels: Object.freeze([...entry.manifest.labels]),
      maxLength: entry.manifest.maxLength,
      requestedDevice,
      device: loaded?.device ?? requestedDevice,
      ...(loaded?.fallbackReason !== undefined ? { fallbackReason: loaded.fallbackReason } : {}),
      ...(loaded?.int8Weights !== undefined ? { int8Weights: loaded.int8Weights } : {}),
      loadMs: loaded?.loadMs ?? 0,
      warmupMs: loaded?.warmupMs ?? 0,
    };
  }

  /** One small and one full-size batch: the shapes requests will mostly have. */
  private warmupShapes(maxLength: number): [number, number][] {
    const b = this.config.batching;
    const cols = Math.min(maxLength, b.maxBatchTokens);
    const rows = Math.max(1, Math.min(b.maxBatchSize, Math.floor(b.maxBatchTokens / cols)));
    return [
      [1, Math.min(8, maxLength)],
      [rows, cols],
    ];
  }

  private async run(trigger: ReloadTrigger | 'start'): Promise<ReloadReport> {
    const strict = trigger === 'start';
    this.busy = true;
    const t0 = performance.now();
    const report: ReloadReport = {
      trigger: trigger === 'start' ? 'api' : trigger,
      startedAt: new Date().toISOString(),
      ms: 0,
      added: [],
      updated: [],
      removed: [],
      failed: [],
      unchanged: 0,
    };
    try {
      const disk = this.scanDisk(strict);
      const current = this.snapshot.models;
      const servedById = new Map<string, ServedVariant>(current.flatMap((m) => m.variants.map((v) => [`${m.name}/${v.name}`, v] as const)));
      for (const id of [...this.failures.keys()]) if (!disk.has(id) && !servedById.has(id)) this.failures.delete(id);

      // 1. Read, check, load and warm every new or rebuilt variant, one at a time.
      const prepared: Prepared[] = [];
      for (const [id, d] of disk) {
        const serving = servedById.get(id);
        if (serving && this.served.get(id) === d.fingerprint) {
          report.unchanged++;
          continue;
        }
        const failed = this.failures.get(id);
        // The poll retries a failed directory only once it changes; POST /admin/reload always does.
        if (failed && failed.fingerprint === d.fingerprint && trigger === 'poll') continue;
        try {
          const key = strict ? id : `${id}#${++this.generation}`;
          prepared.push({ kind: serving ? 'update' : 'add', id, variant: await this.loadVariant(d, key), fingerprint: d.fingerprint });
        } catch (err) {
          this.fail(report, strict, d, err);
        }
      }
      const removals = [...servedById.values()].filter((v) => !disk.has(`${v.model}/${v.name}`));

      // 2. The new variant set of every model touched, checked against its routing.
      const affected = new Set([...prepared.map((p) => p.variant.model), ...removals.map((v) => v.model)]);
      const next = new Map(current.map((m) => [m.name, m] as const));
      const rebinds: { model: ServedModel; plan: Plan | null }[] = [];
      const applied: Prepared[] = [];
      const retired: ServedVariant[] = [];
      const removed: ServedVariant[] = [];
      const refuse = (p: Prepared, err: unknown): void => {
        this.sessions.dropSessions([p.variant.key]);
        this.fail(report, strict, { model: p.variant.model, variant: p.variant.name, fingerprint: p.fingerprint }, err);
      };
      for (const name of [...affected].sort()) {
        const old = next.get(name);
        let mine = prepared.filter((p) => p.variant.model === name);
        let gone = removals.filter((v) => v.model === name);
        for (;;) {
          const variants = (old?.variants ?? []).filter((v) => !gone.includes(v) && !mine.some((p) => p.kind === 'update' && p.variant.name === v.name));
          variants.push(...mine.map((p) => p.variant));
          variants.sort((a, b) => a.depth - b.depth || a.name.localeCompare(b.name));
          if (variants.length === 0) {
            if (next.size === 1) {
              // Never leave the server with nothing to serve: the last model stays.
              for (const v of gone)
                this.fail(
                  report,
                  strict,
                  { model: v.model, variant: v.name, fingerprint: null },
                  new Error(`${v.model}/${v.name} is the last variant served; it stays until another model is there`),
                );
              gone = [];
              continue;
            }
            next.delete(name);
            rebinds.push({ model: old!, plan: null });
            break;
          }
          const dir = old?.dir ?? join(this.config.models, name);
          // A rebuilt model may come with a new report: its recommendation is read again.
          const model = freezeModel({ name, dir, variants, defaultVariant: pickDefaultVariant(variants, readRecommendedVariant(dir)) });
          let routingFile: unknown;
          try {
            routingFile = readRoutingFile(model.dir, this.config.routingDir);
          } catch (err) {
            if (!old) {
              for (const p of mine) refuse(p, err);
              mine = [];
              break;
            }
            routingFile = undefined; // unreadable now: only the live table is an option
          }
          try {
            const plan = this.routing.prepare(model, routingFile);
            next.set(name, model);
            rebinds.push({ model, plan });
            break;
          } catch (err) {
            if (strict) throw err;
            // The routing in force (or a changed routing.json) does not fit the new set: first
            // keep the removed variants it names, then the rebuilt ones (labels changed), then
            // give up on a new model.
            const why = new Error(`${(err as Error).message}; change the routing first (PUT /routing/${name} or routing.json), then reload`);
            if (gone.length > 0) {
              for (const v of gone) this.fail(report, strict, { model: v.model, variant: v.name, fingerprint: null }, why);
              gone = [];
            } else if (mine.some((p) => p.kind === 'update')) {
              for (const p of mine.filter((x) => x.kind === 'update')) refuse(p, why);
              mine = mine.filter((p) => p.kind !== 'update');
            } else {
              for (const p of mine) refuse(p, why);
              mine = [];
              break;
            }
          }
        }
        applied.push(...mine);
        for (const p of mine) if (p.kind === 'update') retired.push(servedById.get(p.id)!);
        removed.push(...gone);
      }

      // 3. The swap: one synchronous step.
      for (const p of applied) this.queues.register(batchTarget(p.variant));
      for (const { model, plan } of rebinds) {
        if (plan !== null) this.routing.bind(model, plan);
        else this.routing.forget(model.name);
      }
      this.snapshot = Object.freeze({ models: Object.freeze([...next.values()].sort((a, b) => a.name.localeCompare(b.name))) });
      for (const p of applied) {
        this.served.set(p.id, p.fingerprint);
        this.failures.delete(p.id);
        if (!strict) this.counts[p.kind === 'add' ? 'added' : 'updated']++;
        (p.kind === 'add' ? report.added : report.updated).push({ model: p.variant.model, variant: p.variant.name, depth: p.variant.depth });
      }
      for (const v of removed) this.served.delete(`${v.model}/${v.name}`);
      this.warnFallbacks(applied.map((p) => p.variant));
      if (!strict && (applied.length > 0 || removed.length > 0)) {
        this.log.info(
          {
            added: report.added.map((c) => `${c.model}/${c.variant}`),
            updated: report.updated.map((c) => `${c.model}/${c.variant}`),
            removed: removed.map((v) => `${v.model}/${v.name}`),
          },
          'hot reload: new variant set in force',
        );
      }

      // 4. Drain: what was accepted on a replaced or removed variant is answered, then its sessions go.
      const drained = await Promise.all([...retired, ...removed].map((v) => this.drain(v)));
      removed.forEach((v, i) => {
        this.counts.removed++;
        report.removed.push({ model: v.model, variant: v.name, depth: v.depth, drainedMs: Math.round(drained[retired.length + i]!) });
      });
      return report;
    } finally {
      report.ms = Math.round(performance.now() - t0);
      if (!strict) this.last = report;
      this.busy = false;
    }
  }

  /** One warning per device that fell back to cpu, naming the variants. */
  private warnFallbacks(variants: readonly ServedVariant[]): void {
    const fallbacks = new Map<Device, { reason: string; variants: string[] }>();
    for (const v of variants) {
      if (v.fallbackReason === undefined) continue;
      const f = fallbacks.get(v.requestedDevice) ?? { reason: v.fallbackReason, variants: [] };
      f.variants.push(v.key);
      fallbacks.set(v.requestedDevice, f);
    }
    for (const [device, f] of fallbacks) {
      this.log.warn(
        { requested: device, used: 'cpu', variants: f.variants, reason: f.reason },
        `device ${device} is not available (${f.reason}); running ${f.variants.join(', ')} on cpu. ` +
          (device === 'cuda' ? 'For CUDA install with ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci (CUDA 12, cuDNN 9).' : ''),
      );
    }
  }

  /** Wait until no request holds the variant's session, then release it everywhere. */
  private async drain(v: ServedVariant): Promise<number> {
    const t0 = performance.now();
    const limitMs = this.config.requestTimeoutMs + this.config.batchTimeoutMs + 5_000;
    const active = (): number => this.holds.get(v.key) ?? 0;
    while ((active() > 0 || !this.queues.unregister(v.key)) && performance.now() - t0 < limitMs) {
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    }
    if (active() > 0) this.log.warn({ variant: v.key, active: active() }, 'hot reload: drain timed out; releasing the sessions anyway');
    this.queues.unregister(v.key);
    this.sessions.dropSessions([v.key]);
    return performance.now() - t0;
  }
}

/** A variant as the batcher sees it. */
function batchTarget(v: ServedVariant): BatchTarget {
  return { key: v.key, model: v.model, variant: v.name, device: v.device, numLabels: v.labels.length, maxLength: v.maxLength };
}
