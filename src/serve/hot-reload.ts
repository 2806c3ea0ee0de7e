// Hot reload of the model repository (POST /admin/reload, or a poll every modelReloadMs): new
// variant directories are loaded, rebuilt ones replaced, removed ones drained and released, and
// a variant that cannot be loaded leaves what was serving in place.
//
// Order of a reload, per new or rebuilt variant: read and check its files (manifest, checksum),
// open and warm its session in every worker, and only then swap the catalogue. The swap is one
// synchronous step (routing table and model list together), so a request sees the old variant
// set or the new one. A rebuilt variant gets a new session key (model/variant#n): requests
// accepted before the swap finish on the old session, new ones use the new one. Old sessions are
// released once every request holding them is answered (the drain).
import { existsSync } from 'node:fs';
import { join, sep } from 'node:path';
import { pickDefaultVariant, type ServedModel, type ServedVariant } from './catalog.js';
import type { ServeConfig } from './config.js';
import { readRecommendedVariant, readRoutingFile, readVariant, subdirectories, VARIANT_NAME, variantFingerprint, type VariantEntry } from './model-repository.js';
import type { RebindPlan, RoutingService } from './routing/service.js';
import type { LoadedSession, SessionSpec } from './worker-protocol.js';

export interface ReloadLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface ReloadChange {
  model: string;
  variant: string;
  depth: number;
}

export interface ReloadFailure {
  model: string;
  variant: string;
  /** The file at fault, relative to the model repository, when the error names one. */
  file?: string;
  /** Why; paths in it are relative to the model repository. */
  error: string;
  /** ISO time of the reload that found it. */
  at: string;
}

export interface ReloadReport {
  trigger: 'api' | 'poll';
  startedAt: string;
  ms: number;
  added: ReloadChange[];
  updated: ReloadChange[];
  /** drainedMs: how long its accepted requests took to be answered before its sessions went. */
  removed: (ReloadChange & { drainedMs: number })[];
  /** Variants this reload could not load (or remove); what served before still serves. */
  failed: ReloadFailure[];
  /** Variants found on disk as they were. */
  unchanged: number;
}

/** What the reloader needs of the runtime. */
export interface ReloadHost {
  readonly config: ServeConfig;
  readonly log: ReloadLogger;
  readonly routing: RoutingService;
  models(): ServedModel[];
  /** Put a new model list in force (the caller has rebound routing in the same step). */
  swap(models: ServedModel[]): void;
  /** A ServedVariant (tokenizer loaded) for a checked directory, under a session key. */
  buildVariant(entry: VariantEntry, key: string): Promise<ServedVariant>;
  sessionSpec(v: ServedVariant): SessionSpec;
  addSessions(specs: SessionSpec[]): Promise<LoadedSession[]>;
  dropSessions(keys: string[]): void;
  register(v: ServedVariant): void;
  /** false while inputs of the key still wait or run. */
  unregister(key: string): boolean;
  /** Requests holding the variant's session key now (tokenizing, queued or running). */
  active(key: string): number;
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

export class ModelReloader {
  /** "<model>/<variant>" -> fingerprint of the directory that is serving. */
  private readonly served = new Map<string, string | null>();
  /** "<model>/<variant>" -> a directory that failed to load, until it changes, loads or goes. */
  private readonly failures = new Map<string, { fingerprint: string | null; failure: ReloadFailure }>();
  private generation = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private busy = false;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Variant outcomes over every reload, for slim_reload_total{result}. */
  readonly counts = { added: 0, updated: 0, removed: 0, failed: 0 };
  last: ReloadReport | null = null;

  constructor(private readonly host: ReloadHost) {
    for (const m of host.models()) for (const v of m.variants) this.served.set(`${m.name}/${v.name}`, variantFingerprint(v.dir));
  }

  /** Poll the repository every `ms` (0: never). Polling, not fs.watch: works on every mount and in containers. */
  start(ms: number): void {
    if (!(ms > 0) || this.timer) return;
    this.timer = setInterval(() => {
      if (this.busy || this.stopped) return;
      this.reload('poll').catch((err: unknown) => this.host.log.warn({ err }, 'model repository poll failed'));
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

  /** One reload at a time; a second waits for the first and then rescans. */
  reload(trigger: 'api' | 'poll'): Promise<ReloadReport> {
    const run = this.chain.then(() => this.run(trigger));
    this.chain = run.catch(() => {});
    return run;
  }

  private relative(text: string): string {
    const root = this.host.config.models.endsWith(sep) ? this.host.config.models : this.host.config.models + sep;
    return text.split(root).join('');
  }

  private fail(report: ReloadReport, d: { model: string; variant: string; fingerprint: string | null }, err: unknown): void {
    const raw = err instanceof Error ? err.message : String(err);
    const error = this.relative(raw);
    const file = /([^\s:'"]+\/(?:model\.onnx|manifest\.json|tokenizer\.json|tokenizer_config\.json|routing\.json))/.exec(error)?.[1];
    const failure: ReloadFailure = { model: d.model, variant: d.variant, ...(file !== undefined ? { file } : {}), error, at: report.startedAt };
    const id = `${d.model}/${d.variant}`;
    const before = this.failures.get(id);
    // The poll meets a broken directory again and again: one log line per distinct failure.
    if (!before || before.failure.error !== error || report.trigger === 'api') {
      this.host.log.error({ model: d.model, variant: d.variant, err: raw }, `hot reload: ${id} refused (${raw}); what served before keeps serving`);
      this.counts.failed++;
    }
    this.failures.set(id, { fingerprint: d.fingerprint, failure });
    report.failed.push(failure);
  }

  private scanDisk(): Map<string, DiskVariant> {
    const root = this.host.config.models;
    const disk = new Map<string, DiskVariant>();
    for (const model of subdirectories(root)) {
      const modelDir = join(root, model);
      for (const variant of subdirectories(modelDir)) {
        // A build writes a variant by renaming a complete directory; one without a manifest is
        // someone else's folder or a copy in progress.
        if (!VARIANT_NAME.test(variant) || !existsSync(join(modelDir, variant, 'manifest.json'))) continue;
        disk.set(`${model}/${variant}`, { model, modelDir, variant, fingerprint: variantFingerprint(join(modelDir, variant)) });
      }
    }
    return disk;
  }

  private async run(trigger: 'api' | 'poll'): Promise<ReloadReport> {
    this.busy = true;
    const t0 = performance.now();
    const report: ReloadReport = { trigger, startedAt: new Date().toISOString(), ms: 0, added: [], updated: [], removed: [], failed: [], unchanged: 0 };
    try {
      const disk = this.scanDisk();
      const current = this.host.models();
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
          const entry = await readVariant(d.modelDir, d.model, d.variant);
          const v = await this.host.buildVariant(entry, `${d.model}/${d.variant}#${++this.generation}`);
          const [loaded] = await this.host.addSessions([this.host.sessionSpec(v)]);
          if (loaded) {
            v.device = loaded.device;
            v.loadMs = loaded.loadMs;
            v.warmupMs = loaded.warmupMs;
            if (loaded.fallbackReason !== undefined) v.fallbackReason = loaded.fallbackReason;
          }
          prepared.push({ kind: serving ? 'update' : 'add', id, variant: v, fingerprint: d.fingerprint });
        } catch (err) {
          this.fail(report, d, err);
        }
      }
      const removals = [...servedById.values()].filter((v) => !disk.has(`${v.model}/${v.name}`));

      // 2. The new variant set of every model touched, checked against its routing.
      const affected = new Set([...prepared.map((p) => p.variant.model), ...removals.map((v) => v.model)]);
      const next = new Map(current.map((m) => [m.name, m] as const));
      const rebinds: { model: ServedModel; plan: RebindPlan | null }[] = [];
      const applied: Prepared[] = [];
      const retired: ServedVariant[] = [];
      const removed: ServedVariant[] = [];
      const refuse = (p: Prepared, err: unknown): void => {
        this.host.dropSessions([p.variant.key]);
        this.fail(report, { model: p.variant.model, variant: p.variant.name, fingerprint: p.fingerprint }, err);
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
              for (const v of gone) this.fail(report, { model: v.model, variant: v.name, fingerprint: null }, new Error(`${v.model}/${v.name} is the last variant served; it stays until another model is there`));
              gone = [];
              continue;
            }
            next.delete(name);
            rebinds.push({ model: old!, plan: null });
            break;
          }
          const dir = old?.dir ?? join(this.host.config.models, name);
          // A rebuilt model may come with a new report: its recommendation is read again.
          const model: ServedModel = { name, dir, variants, routing: old?.routing ?? null, defaultVariant: pickDefaultVariant(variants, readRecommendedVariant(dir)) };
          let fileRaw: unknown;
          try {
            fileRaw = readRoutingFile(model.dir, this.host.config.routingDir);
          } catch (err) {
            if (!old) {
              for (const p of mine) refuse(p, err);
              mine = [];
              break;
            }
            fileRaw = undefined; // unreadable now: only the live table is an option
          }
          try {
            const plan = this.host.routing.prepareRebind(model, fileRaw);
            next.set(name, model);
            rebinds.push({ model, plan });
            break;
          } catch (err) {
            // The routing in force (or a changed routing.json) does not fit the new set: first
            // keep the removed variants it names, then the rebuilt ones (labels changed), then
            // give up on a new model.
            const why = new Error(`${(err as Error).message}; change the routing first (PUT /routing/${name} or routing.json), then reload`);
            if (gone.length > 0) {
              for (const v of gone) this.fail(report, { model: v.model, variant: v.name, fingerprint: null }, why);
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
      for (const p of applied) this.host.register(p.variant);
      for (const { model, plan } of rebinds) {
        if (plan) this.host.routing.rebind(model, plan);
        else this.host.routing.forget(model.name);
      }
      this.host.swap([...next.values()].sort((a, b) => a.name.localeCompare(b.name)));
      for (const p of applied) {
        this.served.set(p.id, p.fingerprint);
        this.failures.delete(p.id);
        this.counts[p.kind === 'add' ? 'added' : 'updated']++;
        (p.kind === 'add' ? report.added : report.updated).push({ model: p.variant.model, variant: p.variant.name, depth: p.variant.depth });
      }
      for (const v of removed) this.served.delete(`${v.model}/${v.name}`);
      if (applied.length > 0 || removed.length > 0) {
        this.host.log.info(
          { added: report.added.map((c) => `${c.model}/${c.variant}`), updated: report.updated.map((c) => `${c.model}/${c.variant}`), removed: removed.map((v) => `${v.model}/${v.name}`) },
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
      this.last = report;
      this.busy = false;
    }
  }

  /** Wait until no request holds the variant's session, then release it everywhere. */
  private async drain(v: ServedVariant): Promise<number> {
    const t0 = performance.now();
    const limitMs = this.host.config.requestTimeoutMs + this.host.config.batchTimeoutMs + 5_000;
    while ((this.host.active(v.key) > 0 || !this.host.unregister(v.key)) && performance.now() - t0 < limitMs) {
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    }
    if (this.host.active(v.key) > 0) this.host.log.warn({ variant: v.key, active: this.host.active(v.key) }, 'hot reload: drain timed out; releasing the sessions anyway');
    this.host.unregister(v.key);
    this.host.dropSessions([v.key]);
    return performance.now() - t0;
  }
}
