// The depth report, models/<model>/report.{md,json,svg}: what each depth, training mode and
// precision costs and buys (accuracy, macro-F1, size, latency, training speed), and which
// variant to serve. Also the latency measurement the build runs for it.
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { PRECISIONS, type Precision } from '../manifest.js';

export interface DepthResult {
  variant: string;
  depth: number;
  /** Training mode: head, top:N, full. */
  mode: string;
  /** fp32 when absent (reports written before precision variants). */
  precision?: Precision;
  accuracy: number;
  macroF1: number;
  params: number;
  /** Size of model.onnx in bytes. */
  fileBytes: number;
  /** Median milliseconds per run (not per example). */
  latencyMs: { batch1: number; batch32: number };
  train: { stepsPerSecond: number; examplesPerSecond: number; seconds?: number; epochsRun?: number; bestEpoch?: number };
  /** A student trained with --distill-from: its teacher, recipe, and the same depth without distillation. */
  distillation?: DistillationRecord;
}

export interface DistillationRecord {
  /** The teacher variant's directory and depth. */
  teacher: string;
  teacherDepth: number;
  temperature: number;
  /** Weight of the true labels (1 - alpha on the teacher's soft labels). */
  alpha: number;
  /** --transfer-data file (unlabelled texts), or null. */
  transferData: string | null;
  transferExamples: number;
  /** Time to compute the teacher's logits over training and transfer texts. */
  teacherSeconds: number;
  /** Training seconds per epoch (validation included) with distillation... */
  secondsPerEpoch: number;
  /** ...and the same depth and settings trained on the true labels alone. */
  withoutDistillation: { accuracy: number; macroF1: number; secondsPerEpoch: number; source: string };
}

export interface DepthReport {
  model: string;
  base: { id: string; arch: string; layers: number };
  /** The dataset and the held-out data the accuracies were measured on. */
  data: { train: string; eval: string; evalExamples: number };
  /** How latency was measured. */
  latency: { threads: number; seqLength: number; runs: number };
  createdAt: string;
  version: string;
  results: DepthResult[];
  recommended: { variant: string; depth: number; mode: string; precision?: Precision; rule: string } | null;
}

/** One accuracy point: accuracies are fractions, so 0.01. */
export const RECOMMENDATION_TOLERANCE = 0.01;
const RULE = 'the cheapest variant (lowest batch-32 latency on this machine) whose accuracy is within 1 point of the best (fp16 variants, for GPUs, are not recommended from CPU measurements)';

const precisionOf = (r: DepthResult): Precision => r.precision ?? 'fp32';

/**
 * The cheapest variant within `tolerance` of the best accuracy: the lowest measured batch-32
 * latency (the cost of serving under load, where depth and precision both count), then the
 * smaller file, then the more accurate. The margin is compared with a small epsilon, so an
 * accuracy exactly 1 point below the best still qualifies despite rounding.
 */
export function recommendVariant(results: readonly DepthResult[], tolerance = RECOMMENDATION_TOLERANCE): DepthResult | undefined {
  if (results.length === 0) return undefined;
  // fp16 variants are for GPU execution providers; the build measures on CPU, where fp16 is not
  // the fast path, so they are listed but not recommended (unless nothing else was built).
  const candidates = results.some((r) => precisionOf(r) !== 'fp16') ? results.filter((r) => precisionOf(r) !== 'fp16') : results;
  const best = Math.max(...candidates.map((r) => r.accuracy));
  const eligible = candidates.filter((r) => r.accuracy >= best - tolerance - 1e-9);
  return [...eligible].sort(
    (a, b) =>
      a.latencyMs.batch32 - b.latencyMs.batch32 || a.fileBytes - b.fileBytes || b.accuracy - a.accuracy || (a.variant < b.variant ? -1 : 1),
  )[0];
}

/** Complete a report with its recommendation; results are ordered by depth, then mode, then precision. */
export function buildReport(input: Omit<DepthReport, 'recommended'>): DepthReport {
  const results = [...input.results].sort(
    (a, b) =>
      a.depth - b.depth ||
      (a.mode < b.mode ? -1 : a.mode > b.mode ? 1 : 0) ||
      PRECISIONS.indexOf(precisionOf(a)) - PRECISIONS.indexOf(precisionOf(b)),
  );
  const pick = recommendVariant(results);
  return {
    ...input,
    results,
    recommended: pick ? { variant: pick.variant, depth: pick.depth, mode: pick.mode, precision: precisionOf(pick), rule: RULE } : null,
  };
}

/** Write report.md, report.json and report.svg into the model directory, each replaced atomically. */
export async function writeReport(modelDir: string, report: DepthReport): Promise<{ md: string; json: string; svg: string }> {
  const paths = { md: join(modelDir, 'report.md'), json: join(modelDir, 'report.json'), svg: join(modelDir, 'report.svg') };
  await writeFileAtomic(paths.json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(paths.svg, renderReportSvg(report));
  await writeFileAtomic(paths.md, renderReportMarkdown(report));
  return paths;
}

async function writeFileAtomic(path: string, text: string): Promise<void> {
  const temp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  const handle = await open(temp, 'wx');
  try {
    await handle.writeFile(text);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  await rename(temp, path);
}

// ---------------------------------------------------------------------------------------------
// Markdown

const percent = (x: number) => (100 * x).toFixed(1);
const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

export function renderReportMarkdown(report: DepthReport): string {
  const lines: string[] = [];
  lines.push(`# Depth report: ${report.model}`, '');
  lines.push(`Base: \`${report.base.id}\` (${report.base.arch}, ${report.base.layers} layers). `);
  lines.push(`Trained on \`${report.data.train}\`; accuracy on ${report.data.eval} (${report.data.evalExamples} examples). `);
  lines.push(
    `Latency: median of ${report.latency.runs} runs per batch at ${report.latency.seqLength} tokens, ` +
      `${report.latency.threads} intra-op thread(s), onnxruntime-node CPU.`,
  );
  lines.push('');
  if (report.recommended) {
    const rec = report.recommended;
    lines.push(`**Recommended: \`${rec.variant}\`** (depth ${rec.depth}, ${rec.mode}, ${rec.precision ?? 'fp32'}): ${rec.rule}.`, '');
  }
  lines.push('| variant | depth | training | precision | accuracy % | macro-F1 % | params | model.onnx | batch 1 ms | batch 32 ms | train steps/s | train examples/s |');
  lines.push('|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of report.results) {
    const mark = report.recommended?.variant === r.variant ? ' (recommended)' : '';
    lines.push(
      `| ${r.variant}${mark} | ${r.depth} | ${r.mode} | ${precisionOf(r)} | ${percent(r.accuracy)} | ${percent(r.macroF1)} | ${formatCount(r.params)} | ` +
        `${formatBytes(r.fileBytes)} | ${ms(r.latencyMs.batch1)} | ${ms(r.latencyMs.batch32)} | ` +
        `${r.train.stepsPerSecond.toFixed(2)} | ${r.train.examplesPerSecond.toFixed(1)} |`,
    );
  }
  if (report.results.some((r) => precisionOf(r) !== 'fp32')) {
    lines.push(
      '',
      'Precisions: int8 = 8-bit weights with one scale per output column and activations quantized at run time ' +
        '(onnxruntime DynamicQuantizeMatMul), token embeddings int8 per row; its accuracy is measured on the same held-out data. ' +
        'fp16 is for GPU execution providers: on the CPU onnxruntime computes most of its ops in float32 behind inserted casts, ' +
        'so its latency here is not the fast path, only its size is halved.',
    );
  }
  lines.push(...distillationLines(report.results));
  lines.push('', '![accuracy and latency by depth](report.svg)', '');
  lines.push(`Built ${report.createdAt} by slimserve ${report.version}.`, '');
  return lines.join('\n');
}

/** The distilled students, each against the same depth trained on the true labels alone. */
function distillationLines(results: readonly DepthResult[]): string[] {
  const students = results.filter((r) => r.distillation);
  if (students.length === 0) return [];
  const lines = ['', '## Distillation', '', '| variant | teacher | T | alpha | transfer texts | accuracy % | without distillation % | s/epoch | s/epoch without |', '|---|---|---:|---:|---|---:|---:|---:|---:|'];
  for (const r of students) {
    const d = r.distillation!;
    const transfer = d.transferData === null ? 'none' : `${d.transferExamples} (\`${d.transferData}\`)`;
    lines.push(
      `| ${r.variant} | \`${d.teacher}\` (k${d.teacherDepth}) | ${d.temperature} | ${d.alpha} | ${transfer} | ${percent(r.accuracy)} | ` +
        `${percent(d.withoutDistillation.accuracy)} | ${d.secondsPerEpoch.toFixed(1)} | ${d.withoutDistillation.secondsPerEpoch.toFixed(1)} |`,
    );
  }
  lines.push('', `"Without distillation": ${[...new Set(students.map((r) => r.distillation!.withoutDistillation.source))].join('; ')}.`);
  return lines;
}

// ---------------------------------------------------------------------------------------------
// SVG: three stacked panels sharing the depth axis (accuracy, latency at batch 1, latency at
// batch 32), one series per training mode. Separate latency panels keep both batch sizes
// readable on linear axes (batch 32 is an order of magnitude slower than batch 1).

/** Okabe-Ito colours (distinguishable with colour blindness); markers differ too, for grey print. */
const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000'];
const MARKERS = ['circle', 'square', 'triangle', 'diamond'] as const;
/** Vertical distance between stacked value labels, in px (12 px font). */
const LABEL_SPACING = 13;

interface Panel {
  title: string;
  unit: string;
  value: (r: DepthResult) => number;
  label: (v: number) => string;
  zeroBased: boolean;
}

export function renderReportSvg(report: DepthReport): string {
  const width = 760;
  const margin = { left: 78, right: 40 };
  // One series per training mode and precision ("full" for fp32, "full, int8" for its int8 sibling).
  const seriesOf = (r: DepthResult) => (precisionOf(r) === 'fp32' ? r.mode : `${r.mode}, ${precisionOf(r)}`);
  const modes = [...new Set(report.results.map(seriesOf))].sort();
  // The legend wraps onto more rows when the series do not fit one (a depth x precision grid).
  const legendItems = [...modes.map((m) => `training: ${m}`), ...(report.recommended ? [`recommended: ${report.recommended.variant}`] : [])];
  const legendRows: { text: string; x: number; index: number }[][] = [[]];
  let cursor = margin.left;
  legendItems.forEach((text, index) => {
    const w = 40 + 8 * text.length;
    if (cursor + w > width - margin.right + 40 && legendRows.at(-1)!.length > 0) {
      legendRows.push([]);
      cursor = margin.left;
    }
    legendRows.at(-1)!.push({ text, x: cursor, index });
    cursor += w;
  });
  const headerHeight = 92 + 18 * (legendRows.length - 1);
  const panelHeight = 200;
  const panelGap = 66;
  const plotWidth = width - margin.left - margin.right;
  const panels: Panel[] = [
    { title: 'Accuracy on held-out data (higher is better)', unit: 'accuracy (%)', value: (r) => 100 * r.accuracy, label: (v) => v.toFixed(1), zeroBased: false },
    { title: 'Latency, batch 1 (lower is better)', unit: 'median ms per batch', value: (r) => r.latencyMs.batch1, label: ms, zeroBased: true },
    { title: 'Latency, batch 32 (lower is better)', unit: 'median ms per batch', value: (r) => r.latencyMs.batch32, label: ms, zeroBased: true },
  ];
  const height = headerHeight + panels.length * (panelHeight + panelGap) + 20;
  const depths = [...new Set(report.results.map((r) => r.depth))].sort((a, b) => a - b);
  // Depths sit at even spacing (a categorical axis): 1, 2, 12 would otherwise crowd the small ones.
  const xOf = (depth: number) =>
    margin.left + (depths.length === 1 ? plotWidth / 2 : 30 + ((plotWidth - 60) * depths.indexOf(depth)) / (depths.length - 1));

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${margin.left}" y="26" font-size="17" font-weight="bold">${xml(`${report.model}: accuracy and latency by depth`)}</text>`);
  out.push(
    `<text x="${margin.left}" y="46" fill="#444">${xml(
      `base ${report.base.id} (${report.base.arch}, ${report.base.layers} layers); ` +
        `latency: ${report.latency.seqLength} tokens, ${report.latency.threads} thread(s)`,
    )}</text>`,
  );
  // Legend.
  legendRows.forEach((row, r) => {
    const y = 68 + 18 * r;
    for (const { text, x, index: i } of row) {
      if (i < modes.length) {
        out.push(marker(MARKERS[i % MARKERS.length]!, x + 6, y, COLOURS[i % COLOURS.length]!));
        out.push(`<line x1="${x - 4}" y1="${y}" x2="${x + 16}" y2="${y}" stroke="${COLOURS[i % COLOURS.length]}" stroke-width="2"/>`);
        out.push(`<text x="${x + 22}" y="${y + 4}">${xml(text)}</text>`);
      } else {
        out.push(`<line x1="${x}" y1="${y}" x2="${x + 20}" y2="${y}" stroke="#777" stroke-width="1.5" stroke-dasharray="5 4"/>`);
        out.push(`<text x="${x + 26}" y="${y + 4}">${xml(text)}</text>`);
      }
    }
  });

  panels.forEach((panel, p) => {
    const top = headerHeight + p * (panelHeight + panelGap) + 20;
    const bottom = top + panelHeight;
    const values = report.results.map(panel.value);
    const { min, max, ticks } = axisTicks(values, panel.zeroBased);
    const yOf = (v: number) => bottom - ((v - min) / (max - min)) * panelHeight;
    out.push(`<text x="${margin.left}" y="${top - 8}" font-size="13" font-weight="bold">${xml(panel.title)}</text>`);
    // Grid and y axis.
    for (const t of ticks) {
      const y = yOf(t).toFixed(1);
      out.push(`<line x1="${margin.left}" y1="${y}" x2="${width - margin.right}" y2="${y}" stroke="#e4e4e4"/>`);
      out.push(`<text x="${margin.left - 6}" y="${(yOf(t) + 4).toFixed(1)}" text-anchor="end" fill="#333">${xml(formatTick(t))}</text>`);
    }
    out.push(`<line x1="${margin.left}" y1="${top}" x2="${margin.left}" y2="${bottom}" stroke="#333"/>`);
    out.push(`<line x1="${margin.left}" y1="${bottom}" x2="${width - margin.right}" y2="${bottom}" stroke="#333"/>`);
    out.push(
      `<text transform="translate(${margin.left - 52} ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" fill="#333">${xml(panel.unit)}</text>`,
    );
    // x axis: every depth gets a tick and a label.
    for (const d of depths) {
      const x = xOf(d).toFixed(1);
      out.push(`<line x1="${x}" y1="${bottom}" x2="${x}" y2="${bottom + 5}" stroke="#333"/>`);
      out.push(`<text x="${x}" y="${bottom + 18}" text-anchor="middle" fill="#333">${d}</text>`);
    }
    out.push(
      `<text x="${margin.left + plotWidth / 2}" y="${bottom + 34}" text-anchor="middle" fill="#333">depth (transformer layers kept)</text>`,
    );
    if (report.recommended) {
      const x = xOf(report.recommended.depth).toFixed(1);
      out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${bottom}" stroke="#777" stroke-width="1.5" stroke-dasharray="5 4"/>`);
    }
    // Series: lines and markers first, then every point's value to its right. Labels at one
    // depth are stacked at least a line apart so close series do not print over each other,
    // and a white halo keeps them legible where they cross a line.
    const labels: { x: number; y: number; text: string; colour: string }[] = [];
    modes.forEach((mode, i) => {
      const colour = COLOURS[i % COLOURS.length]!;
      const rows = report.results.filter((r) => seriesOf(r) === mode).sort((a, b) => a.depth - b.depth);
      const points = rows.map((r) => [xOf(r.depth), yOf(panel.value(r))] as const);
      if (points.length > 1) {
        out.push(
          `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')}"/>`,
        );
      }
      rows.forEach((r, k) => {
        const [x, y] = points[k]!;
        out.push(marker(MARKERS[i % MARKERS.length]!, x, y, colour));
        labels.push({ x: x + 8, y: y + 4, text: panel.label(panel.value(r)), colour });
      });
    });
    for (const d of depths) {
      const column = labels.filter((l) => l.x === xOf(d) + 8).sort((a, b) => a.y - b.y);
      for (let k = 1; k < column.length; k++) column[k]!.y = Math.max(column[k]!.y, column[k - 1]!.y + LABEL_SPACING);
      const overflow = column.length ? column.at(-1)!.y - (bottom - 3) : 0;
      if (overflow > 0) for (const l of column) l.y -= overflow;
    }
    for (const l of labels) {
      out.push(
        `<text x="${l.x.toFixed(1)}" y="${l.y.toFixed(1)}" fill="${l.colour}" font-weight="bold" ` +
          `stroke="#ffffff" stroke-width="3" paint-order="stroke">${xml(l.text)}</text>`,
      );
    }
  });
  out.push('</svg>', '');
  return out.join('\n');
}

function marker(shape: (typeof MARKERS)[number], x: number, y: number, colour: string): string {
  const X = x.toFixed(1);
  const Y = y.toFixed(1);
  switch (shape) {
    case 'circle':
      return `<circle cx="${X}" cy="${Y}" r="4.5" fill="${colour}" stroke="#fff"/>`;
    case 'square':
      return `<rect x="${(x - 4).toFixed(1)}" y="${(y - 4).toFixed(1)}" width="8" height="8" fill="${colour}" stroke="#fff"/>`;
    case 'triangle':
      return `<polygon points="${X},${(y - 5).toFixed(1)} ${(x + 5).toFixed(1)},${(y + 4).toFixed(1)} ${(x - 5).toFixed(1)},${(y + 4).toFixed(1)}" fill="${colour}" stroke="#fff"/>`;
    case 'diamond':
      return `<polygon points="${X},${(y - 5).toFixed(1)} ${(x + 5).toFixed(1)},${Y} ${X},${(y + 5).toFixed(1)} ${(x - 5).toFixed(1)},${Y}" fill="${colour}" stroke="#fff"/>`;
  }
}

/** A y range padded around the data, with 1-2-5 steps; from 0 for quantities like time. */
export function axisTicks(values: readonly number[], zeroBased: boolean): { min: number; max: number; ticks: number[] } {
  const finite = values.filter(Number.isFinite);
  let lo = finite.length ? Math.min(...finite) : 0;
  let hi = finite.length ? Math.max(...finite) : 1;
  if (zeroBased) lo = Math.min(0, lo);
  if (hi - lo < 1e-9) {
    const pad = Math.abs(hi) > 0 ? Math.abs(hi) * 0.1 : 1;
    hi += pad;
    lo = zeroBased ? lo : lo - pad;
  }
  const span = hi - lo;
  if (!zeroBased) lo -= span * 0.15; // room below the lowest point for its label
  hi += span * 0.15; // room above the highest point for its label
  const rough = (hi - lo) / 5;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough)!;
  const min = Math.floor(lo / step) * step;
  const max = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let t = min; t <= max + step / 2; t += step) ticks.push(Number(t.toPrecision(12)));
  return { min, max, ticks };
}

function formatTick(t: number): string {
  return Number.isInteger(t) ? String(t) : String(Number(t.toPrecision(6)));
}

function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

// ---------------------------------------------------------------------------------------------
// Latency

/** Token ids and attention mask, row-major [batchSize, seqLength], as the ONNX contract takes them. */
export interface TokenizedBatch {
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  batchSize: number;
  seqLength: number;
}

export interface LatencyMeasurement {
  batchSize: number;
  seqLength: number;
  medianMs: number;
  minMs: number;
  p90Ms: number;
  runs: number;
}

/**
 * A batch of `batchSize` rows from tokenized texts (cycled when there are fewer), each cut
 * or padded to `seqLength`.
 */
export function makeBatch(sequences: readonly (readonly number[])[], batchSize: number, seqLength: number, padId = 0): TokenizedBatch {
  if (sequences.length === 0) throw new RangeError('makeBatch needs at least one tokenized text');
  const inputIds = new BigInt64Array(batchSize * seqLength).fill(BigInt(padId));
  const attentionMask = new BigInt64Array(batchSize * seqLength);
  for (let b = 0; b < batchSize; b++) {
    const ids = sequences[b % sequences.length]!;
    for (let s = 0; s < Math.min(seqLength, ids.length); s++) {
      inputIds[b * seqLength + s] = BigInt(ids[s]!);
      attentionMask[b * seqLength + s] = 1n;
    }
  }
  return { inputIds, attentionMask, batchSize, seqLength };
}

/**
 * Median latency of `session.run` per batch on the CPU, with a fixed number of intra-op
 * threads (latency depends on it more than on anything else) and sequential execution.
 * Warm-up runs come first: the first runs allocate memory and pick kernels.
 */
export async function measureLatency(
  onnxFile: string | Uint8Array,
  batches: readonly TokenizedBatch[],
  options: { threads: number; warmup?: number; runs?: number },
): Promise<LatencyMeasurement[]> {
  const warmup = options.warmup ?? 3;
  const runs = options.runs ?? 20;
  if (!(runs >= 1)) throw new RangeError(`runs must be at least 1, got ${runs}`);
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  };
  const session = typeof onnxFile === 'string'
    ? await ort.InferenceSession.create(onnxFile, sessionOptions)
    : await ort.InferenceSession.create(onnxFile, sessionOptions);
  try {
    const results: LatencyMeasurement[] = [];
    for (const batch of batches) {
      const dims = [batch.batchSize, batch.seqLength];
      const feeds = {
        input_ids: new ort.Tensor('int64', batch.inputIds, dims),
        attention_mask: new ort.Tensor('int64', batch.attentionMask, dims),
      };
      for (let i = 0; i < warmup; i++) await session.run(feeds);
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const start = process.hrtime.bigint();
        await session.run(feeds);
        times.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
      times.sort((a, b) => a - b);
      results.push({
        batchSize: batch.batchSize,
        seqLength: batch.seqLength,
        medianMs: median(times),
        minMs: times[0]!,
        p90Ms: times[Math.min(times.length - 1, Math.ceil(0.9 * times.length) - 1)]!,
        runs,
      });
    }
    return results;
  } finally {
    await session.release();
  }
}

function median(sorted: readonly number[]): number {
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
