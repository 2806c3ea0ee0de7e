// report.md: the results table, the recommendation and the distilled students.
import { precisionOf } from '../../manifest.js';
import { formatBytes, formatCount, ms, percent } from './format.js';
import type { DepthReport, DepthResult } from './types.js';

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
  lines.push(
    '| variant | depth | training | precision | accuracy % | macro-F1 % | params | model.onnx | batch 1 ms | batch 32 ms | train steps/s | train examples/s |',
  );
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
  const lines = [
    '',
    '## Distillation',
    '',
    '| variant | teacher | T | alpha | transfer texts | accuracy % | without distillation % | s/epoch | s/epoch without |',
    '|---|---|---:|---:|---|---:|---:|---:|---:|',
  ];
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
