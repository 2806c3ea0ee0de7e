// Progress of long work (training, latency measurement). On a terminal: one line redrawn in
// place. Elsewhere (CI logs, files, pipes): a plain line every 10% of the work or every 10 s,
// whichever comes first, because carriage-return redraws turn a log into one huge line.

/** The part of a writable stream the reporter uses; tests pass a fake one. */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** Steps in the whole run. */
  total: number;
  /** Shown at the start of every line, e.g. "k2 full". */
  label?: string;
  /** Defaults to process.stderr, so stdout stays clean for JSON output. */
  stream?: ProgressStream;
  /** Overrides the stream's isTTY. */
  tty?: boolean;
  /** Milliseconds clock; tests inject a fake one. */
  now?: () => number;
  /** Plain mode: longest silence between lines (default 10 s). */
  logIntervalMs?: number;
  /** Plain mode: a line every this fraction of the total (default 0.1). */
  logEveryFraction?: number;
  /** TTY mode: least time between redraws (default 100 ms). */
  redrawIntervalMs?: number;
}

export interface ProgressUpdate {
  /** Steps done so far (not an increment). */
  step: number;
  epoch?: number;
  epochs?: number;
  loss?: number;
  /** Examples processed so far (not an increment). */
  examples?: number;
}

export class ProgressReporter {
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly now: () => number;
  private readonly startedAt: number;
  private readonly logIntervalMs: number;
  private readonly logEverySteps: number;
  private readonly redrawIntervalMs: number;
  private last: ProgressUpdate = { step: 0 };
  private lastOutputAt: number;
  private nextLogStep: number;
  private lastLoggedStep = -1;
  private lineShown = false;
  private finished = false;

  constructor(private readonly options: ProgressOptions) {
    this.stream = options.stream ?? process.stderr;
    this.tty = options.tty ?? this.stream.isTTY === true;
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.lastOutputAt = this.startedAt;
    this.logIntervalMs = options.logIntervalMs ?? 10_000;
    this.logEverySteps = Math.max(1, Math.ceil(options.total * (options.logEveryFraction ?? 0.1)));
    this.nextLogStep = this.logEverySteps;
    this.redrawIntervalMs = options.redrawIntervalMs ?? 100;
  }

  update(update: ProgressUpdate): void {
    if (this.finished) return;
    this.last = { ...this.last, ...update };
    const now = this.now();
    const complete = update.step >= this.options.total;
    if (this.tty) {
      if (complete || now - this.lastOutputAt >= this.redrawIntervalMs || !this.lineShown) this.redraw(now);
      return;
    }
    if (complete || update.step >= this.nextLogStep || now - this.lastOutputAt >= this.logIntervalMs) {
      this.writeLine(now);
      while (this.nextLogStep <= update.step) this.nextLogStep += this.logEverySteps;
    }
  }

  /** A message of its own, without breaking the redrawn line. */
  log(message: string): void {
    if (this.tty && this.lineShown) {
      this.stream.write(`\r\x1b[K${message}\n`);
      this.redraw(this.now());
    } else {
      this.stream.write(`${message}\n`);
    }
  }

  /** End the progress display, optionally with a closing summary line. */
  finish(summary?: string): void {
    if (this.finished) return;
    const now = this.now();
    if (this.tty) {
      if (this.lineShown) {
        this.redraw(now);
        this.stream.write('\n');
      }
    } else if (this.lastLoggedStep !== this.last.step && this.last.step > 0) {
      this.writeLine(now);
    }
    this.finished = true;
    if (summary !== undefined) this.stream.write(`${summary}\n`);
  }

  /** The status line for the current state, as it would be shown now. */
  line(now = this.now()): string {
    const { total, label } = this.options;
    const u = this.last;
    const seconds = (now - this.startedAt) / 1000;
    const parts: string[] = [];
    const percent = total > 0 ? Math.floor((100 * u.step) / total) : 100;
    parts.push(`${label ? `${label} ` : ''}step ${u.step}/${total} (${percent}%)`);
    if (u.epoch !== undefined) parts.push(`epoch ${u.epoch}${u.epochs !== undefined ? `/${u.epochs}` : ''}`);
    if (u.loss !== undefined) parts.push(`loss ${formatLoss(u.loss)}`);
    if (u.examples !== undefined && seconds > 0) parts.push(`${(u.examples / seconds).toFixed(1)} ex/s`);
    if (u.step >= total) parts.push(`done in ${formatDuration(seconds)}`);
    else if (u.step > 0 && seconds > 0) parts.push(`ETA ${formatDuration((seconds / u.step) * (total - u.step))}`);
    return parts.join(' | ');
  }

  private redraw(now: number): void {
    let text = this.line(now);
    // A line wider than the terminal wraps, and \r then only rewinds its last row.
    const columns = this.stream.columns;
    if (columns && text.length >= columns) text = text.slice(0, columns - 1);
    this.stream.write(`\r${text}\x1b[K`);
    this.lineShown = true;
    this.lastOutputAt = now;
  }

  private writeLine(now: number): void {
    this.stream.write(`${this.line(now)}\n`);
    this.lastOutputAt = now;
    this.lastLoggedStep = this.last.step;
  }
}

function formatLoss(loss: number): string {
  return Math.abs(loss) >= 0.001 || loss === 0 ? loss.toFixed(4) : loss.toExponential(2);
}

/** 7s, 1m 05s, 2h 03m. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
