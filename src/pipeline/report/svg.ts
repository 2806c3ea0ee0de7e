// SVG: three stacked panels sharing the depth axis (accuracy, latency at batch 1, latency at
// batch 32), one series per training mode. Separate latency panels keep both batch sizes
// readable on linear axes (batch 32 is an order of magnitude slower than batch 1).
import { precisionOf } from '../../manifest.js';
import { ms } from './format.js';
import type { DepthReport, DepthResult } from './types.js';

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
    {
      title: 'Accuracy on held-out data (higher is better)',
      unit: 'accuracy (%)',
      value: (r) => 100 * r.accuracy,
      label: (v) => v.toFixed(1),
      zeroBased: false,
    },
    { title: 'Latency, batch 1 (lower is better)', unit: 'median ms per batch', value: (r) => r.latencyMs.batch1, label: ms, zeroBased: true },
    { title: 'Latency, batch 32 (lower is better)', unit: 'median ms per batch', value: (r) => r.latencyMs.batch32, label: ms, zeroBased: true },
  ];
  const height = headerHeight + panels.length * (panelHeight + panelGap) + 20;
  const depths = [...new Set(report.results.map((r) => r.depth))].sort((a, b) => a - b);
  // Depths sit at even spacing (a categorical axis): 1, 2, 12 would otherwise crowd the small ones.
  const xOf = (depth: number) => margin.left + (depths.length === 1 ? plotWidth / 2 : 30 + ((plotWidth - 60) * depths.indexOf(depth)) / (depths.length - 1));

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
    out.push(`<text transform="translate(${margin.left - 52} ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" fill="#333">${xml(panel.unit)}</text>`);
    // x axis: every depth gets a tick and a label.
    for (const d of depths) {
      const x = xOf(d).toFixed(1);
      out.push(`<line x1="${x}" y1="${bottom}" x2="${x}" y2="${bottom + 5}" stroke="#333"/>`);
      out.push(`<text x="${x}" y="${bottom + 18}" text-anchor="middle" fill="#333">${d}</text>`);
    }
    out.push(`<text x="${margin.left + plotWidth / 2}" y="${bottom + 34}" text-anchor="middle" fill="#333">depth (transformer layers kept)</text>`);
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
        out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')}"/>`);
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
