// The live routing table of every served model: loaded with the model (its routing.json),
// validated (table.ts), replaced by PUT /routing (and persisted as routing.json where the model
// directory is writable), re-read when routing.json changes on disk (a poll), and re-checked
// against a model's new variant set when the model store reloads it. A table is immutable;
// replacing it swaps one reference, so a request sees the old table or the new one.
import { readFile } from 'node:fs/promises';
import { routingFilePath } from '../model-repository.js';
import { writeFileAtomic } from '../../atomic-write.js';
import type { ServedModel } from '../catalogue.js';
import { CoreError, publicFsError } from '../errors.js';
import { SerialQueue } from './serial.js';
import { parseRoutingTable, RoutingTableError, tableToJson, type RoutingTable } from './table.js';

export const ROUTING_FILE = 'routing.json';

export interface RoutingLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export type TableSource = 'default' | 'file' | 'api';

/** What GET /routing reports about the table in force (besides the table itself). */
export interface TableState {
  model: ServedModel;
  /** null: no routing.json (everything to the model's default variant). */
  table: RoutingTable | null;
  source: TableSource;
  version: number;
  updatedAt: string;
  lastReloadError: string | null;
}

interface Entry extends TableState {
  /** Text of routing.json last read (null: absent), to notice changes. */
  fileText: string | null;
  /** A PUT is writing routing.json: polls leave this model alone until it is done. */
  writing: boolean;
  /** The previous poll found no routing.json (a removal counts only when two polls agree). */
  missing: boolean;
}

/** What prepare() decided for a model's new variant set. */
export interface RebindPlan {
  table: RoutingTable | null;
  /** Normalised routing.json text the table came from (null: none). */
  fileText: string | null;
  /** true: the table is new (from routing.json); false: the live table stays. */
  fromFile: boolean;
}

const textOf = (raw: unknown): string | null => (raw === null || raw === undefined ? null : JSON.stringify(raw));

export class RoutingTables {
  private readonly entries = new Map<string, Entry>();
  private timer: NodeJS.Timeout | null = null;
  private polling = false;
  /** PUTs of one model, one at a time (src/serve/routing/serial.ts). */
  private readonly puts = new SerialQueue();

  /** routingDir: --routing-dir, where routing files are <routingDir>/<model>/routing.json (null: in the model directory). */
  constructor(
    private readonly log: RoutingLogger,
    private readonly routingDir: string | null = null,
  ) {}

  /** The table state of a served model (MODEL_NOT_FOUND when it is not bound). */
  state(model: string): TableState {
    const e = this.entries.get(model);
    if (!e) throw new CoreError('MODEL_NOT_FOUND', `no model named ${model}`);
    return e;
  }

  /** The table in force (null: the model's default variant answers everything). */
  table(model: string): RoutingTable | null {
    return this.entries.get(model)?.table ?? null;
  }

  /** The routing document GET /models shows (null: none). */
  document(model: string): Record<string, unknown> | null {
    const t = this.table(model);
    return t ? tableToJson(t) : null;
  }

  /**
   * The table a model would run with over a new variant set. The live table stays when it is
   * still valid there; otherwise a routing.json that changed on disk and is valid over the new
   * set is taken. Throws RoutingTableError when neither is: the store then keeps the variants
   * the table needs (or, at the start, fails).
   */
  prepare(model: ServedModel, routingFile: unknown): RebindPlan {
    const e = this.entries.get(model.name);
    if (!e) return { table: parseRoutingTable(model.name, routingFile, model.variants, model.defaultVariant), fileText: textOf(routingFile), fromFile: true };
    try {
      return {
        table: parseRoutingTable(model.name, e.table ? tableToJson(e.table) : null, model.variants, model.defaultVariant),
        fileText: e.fileText,
        fromFile: false,
      };
    } catch (err) {
      const text = textOf(routingFile);
      if (text === e.fileText || e.writing) throw err;
      return { table: parseRoutingTable(model.name, routingFile, model.variants, model.defaultVariant), fileText: text, fromFile: true };
    }
  }

  /** Part of the model store's swap: the model's new variant set and the table prepare() chose. */
  bind(model: ServedModel, plan: RebindPlan): void {
    const e = this.entries.get(model.name);
    if (!e) {
      this.entries.set(model.name, {
        model,
        table: plan.table,
        source: plan.table ? 'file' : 'default',
        version: 1,
        updatedAt: new Date().toISOString(),
        lastReloadError: null,
        fileText: plan.fileText,
        writing: false,
        missing: false,
      });
      return;
    }
    e.model = model;
    if (plan.fromFile) {
      e.fileText = plan.fileText;
      e.lastReloadError = null;
      this.swap(e, plan.table, plan.table ? 'file' : 'default');
    }
  }

  /** Part of the model store's swap: the model is no longer served. */
  forget(model: string): void {
    this.entries.delete(model);
  }

  /** Re-read every routing.json every `ms` (0: never). */
  startPolling(ms: number): void {
    if (!(ms > 0) || this.timer) return;
    // Polling, not fs.watch: a Kubernetes ConfigMap update swaps a symlink, which inotify
    // watches on the file miss; one small read per model per second is cheap.
    this.timer = setInterval(() => void this.pollAll(), ms);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private swap(e: Entry, table: RoutingTable | null, source: TableSource): void {
    e.table = table;
    e.source = source;
    e.version++;
    e.updatedAt = new Date().toISOString();
    this.log.info({ model: e.model.name, source, version: e.version, routing: table ? tableToJson(table) : null }, 'routing table replaced');
  }

  /**
   * PUT /routing: validate (INVALID_ROUTING naming the problem), apply atomically, then try to
   * persist it as routing.json so a restart keeps it. Where the model directory is read-only (a
   * mounted ConfigMap) the table still applies to this replica only.
   */
  async replace(model: string, raw: unknown): Promise<{ persisted: boolean; persistError?: string }> {
    const e = this.entries.get(model);
    if (!e) throw new CoreError('MODEL_NOT_FOUND', `no model named ${model}`);
    let table: RoutingTable | null;
    try {
      table = parseRoutingTable(model, raw, e.model.variants, e.model.defaultVariant);
    } catch (err) {
      if (err instanceof RoutingTableError) throw new CoreError('INVALID_ROUTING', err.message);
      throw err;
    }
    if (!table) throw new CoreError('INVALID_ROUTING', `routing of ${model}: expected a JSON object`);
    return this.puts.run(model, () => this.swapAndPersist(e, model, table));
  }

  private async swapAndPersist(e: Entry, model: string, table: RoutingTable): Promise<{ persisted: boolean; persistError?: string }> {
    // Until the new file is in place a poll would read the old one and undo this PUT.
    e.writing = true;
    this.swap(e, table, 'api');
    const text = `${JSON.stringify(tableToJson(table), null, 2)}\n`;
    const file = routingFilePath(e.model.dir, this.routingDir);
    // Claim the new content first, so a poll that reads the renamed file does not apply it again.
    const previous = e.fileText;
    e.fileText = JSON.stringify(JSON.parse(text));
    try {
      await writeFileAtomic(file, text);
      return { persisted: true };
    } catch (err) {
      e.fileText = previous;
      this.log.warn({ model, file, err: (err as Error).message }, 'routing table applied in memory only: routing.json could not be written');
      // The answer names the failure, not the server's paths (the log has them).
      return { persisted: false, persistError: publicFsError(err, `could not write ${ROUTING_FILE} in the model directory`) };
    } finally {
      e.writing = false;
    }
  }

  /** Re-read every routing.json; a changed valid one replaces the table, a bad one is logged and ignored. */
  async pollAll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      for (const e of this.entries.values()) await this.poll(e);
    } finally {
      this.polling = false;
    }
  }

  /** Re-read one model's routing.json now (another server process was told of a PUT: cluster-peer.ts). */
  async reread(model: string): Promise<void> {
    const e = this.entries.get(model);
    if (e) await this.poll(e);
  }

  private async poll(e: Entry): Promise<void> {
    if (e.writing) return;
    const file = routingFilePath(e.model.dir, this.routingDir);
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
}
