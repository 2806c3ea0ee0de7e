// fp32 vs int8 (and fp16) side by side in one run, for built float32 variants: held-out
// accuracy through `slim eval`'s own code, model size (whole file and the transformer layers'
// weights), and onnxruntime session.run inputs/s at batch 1 and 32 on the same texts, the
// sessions timed in alternating blocks so that this shared machine's drift hits every precision
// alike. (Blocks, not single runs: each session has its own intra-op pool whose threads spin
// after a run, and a session run right after another one shared the cores with those spinning
// threads: single-run alternation measured fp32 k2 at batch 1 4x slower than alone.)
// The int8 forms are compared too: weights stored as int8 or uint8 (int8-weights.ts: which
// kernel MLAS runs), DynamicQuantizeMatMul vs MatMulInteger.
//
//   npm run build && node dist/bench/precision.js --variant models/sst2/k1 --variant models/sst2/k2
//        --data ../shared/data/sst2/dev.jsonl [--rounds 5] [--threads 2] [--out loadtest/results/NAME]
//
// Writes the int8 sibling beside each variant (k2 -> k2-int8, evaluated on --data) and
// prints a markdown table; with --out also NAME.{md,json}.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { loadDataset } from '../src/pipeline/datasets/index.js';
import { evaluateVariant } from '../src/pipeline/eval-command.js';
import { readManifest } from '../src/pipeline/model-writer.js';
import { convertOnnx, writePrecisionVariant } from '../src/pipeline/precision/variants.js';
import { decodeModel } from '../src/pipeline/precision/onnx-edit.js';
import { initializerBytes } from '../src/pipeline/onnx-external.js';
import { cpuInt8Weights, int8WeightsOf } from '../src/pipeline/precision/int8-weights.js';
import { loadTokenizer } from '../src/tokenizer.js';
import { median } from '../loadtest/lib/stats.js';

const { values: args } = parseArgs({
  options: {
    variant: { type: 'string', multiple: true },
    data: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string' },
  },
});
if (!args.variant?.length || !args.data) {
  console.error('usage: node dist/bench/precision.js --variant models/<model>/k2 [--variant ...] --data FILE [--rounds 5] [--threads 2] [--out PATH]');
  process.exit(2);
}
const rounds = Number(args.rounds);
const threads = Number(args.threads);
const data = args.data;

interface SpeedRow {
  form: string;
  batch: number;
  inputsPerSec: number;
  medianMs: number;
}
interface VariantRow {
  variant: string;
  int8Variant: string;
  examples: number;
  accuracy: { fp32: number; int8: number };
  macroF1: { fp32: number; int8: number };
  bytes: { fp32: number; int8: number; fp16: number; layersFp32: number; layersInt8: number };
  speed: SpeedRow[];
}

const examples = await loadDataset(data);
const rows: VariantRow[] = [];
for (const dir of args.variant.map((v) => resolve(v))) {
  const manifest = await readManifest(dir);
  const tokenizer = await loadTokenizer(dir);
  const labelIndex = new Map(manifest.labels.map((l, i) => [l, i]));
  const encoded = examples.map((e) => tokenizer.encode(e.text).slice(0, manifest.maxLength));
  console.error(`${manifest.variant}: writing the int8 sibling and evaluating it on ${examples.length} examples`);
  const int8 = await writePrecisionVariant(dir, 'int8', {
    examples: encoded.map((ids, i) => ({ ids, label: labelIndex.get(examples[i]!.label)! })),
    padId: tokenizer.padId,
    threads,
  });
  const fp32Eval = await evaluateVariant(dir, data, { threads });
  const int8Eval = await evaluateVariant(int8.dir, data, { threads });
  const fp32Bytes = new Uint8Array(readFileSync(join(dir, 'model.onnx')));
  const fp16Bytes = convertOnnx(fp32Bytes, 'fp16');
  const layers = (name: string) => name.startsWith('blocks.');
  const forms: { form: string; bytes: Uint8Array }[] = [
    { form: 'fp32', bytes: fp32Bytes },
    { form: `int8 as built (${int8WeightsOf(decodeModel(int8.onnx))} weights)`, bytes: int8.onnx },
    { form: 'int8 (DynamicQuantizeMatMul, int8 weights)', bytes: convertOnnx(fp32Bytes, 'int8', { weightType: 'int8' }) },
    { form: 'int8 (DynamicQuantizeMatMul, uint8 weights)', bytes: convertOnnx(fp32Bytes, 'int8', { weightType: 'uint8' }) },
    { form: 'int8 (MatMulInteger, int8 weights)', bytes: convertOnnx(fp32Bytes, 'int8', { weightType: 'int8', kernel: 'matmul-integer' }) },
    { form: 'fp16 (CPU: casts inserted)', bytes: fp16Bytes },
  ];
  const sessions = await Promise.all(
    forms.map((f) =>
      ort.InferenceSession.create(f.bytes, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
      }),
    ),
  );
  // The same texts for every form: the first 32 of the data, right-padded to the longest.
  const speed: SpeedRow[] = [];
  for (const batch of [1, 32]) {
    const rowsIds = encoded.slice(0, batch);
    const seq = Math.max(...rowsIds.map((r) => r.length));
    const ids = new BigInt64Array(batch * seq).fill(BigInt(tokenizer.padId));
    const mask = new BigInt64Array(batch * seq);
    rowsIds.forEach((r, b) => r.forEach((id, s) => ((ids[b * seq + s] = BigInt(id)), (mask[b * seq + s] = 1n))));
    const feeds = { input_ids: new ort.Tensor('int64', ids, [batch, seq]), attention_mask: new ort.Tensor('int64', mask, [batch, seq]) };
    for (const s of sessions) for (let w = 0; w < 2; w++) await s.run(feeds);
    const times: number[][] = forms.map(() => []);
    const block = batch === 1 ? 6 : 2;
    for (let r = 0; r < rounds; r++) {
      for (let f = 0; f < forms.length; f++) {
        await sessions[f]!.run(feeds); // untimed: the other sessions' threads stop spinning meanwhile
        for (let i = 0; i < block; i++) {
          const t0 = performance.now();
          await sessions[f]!.run(feeds);
          times[f]!.push(performance.now() - t0);
        }
      }
    }
    forms.forEach((f, i) => {
      const med = median(times[i]!);
      speed.push({ form: f.form, batch, medianMs: med, inputsPerSec: (1000 * batch) / med });
    });
  }
  for (const s of sessions) await s.release();
  const fp32Model = decodeModel(fp32Bytes);
  const int8Model = decodeModel(int8.onnx);
  rows.push({
    variant: manifest.variant,
    int8Variant: int8.manifest.variant,
    examples: examples.length,
    accuracy: { fp32: fp32Eval.accuracy, int8: int8Eval.accuracy },
    macroF1: { fp32: fp32Eval.macroF1, int8: int8Eval.macroF1 },
    bytes: {
      fp32: fp32Bytes.length,
      int8: int8.onnx.length,
      fp16: fp16Bytes.length,
      layersFp32: initializerBytes(fp32Model, layers),
      layersInt8: initializerBytes(int8Model, layers),
    },
    speed,
  });
}

const pct = (x: number) => (100 * x).toFixed(1);
const lines: string[] = [];
lines.push(
  `Data: \`${data}\`; ${threads} intra-op thread(s); session.run medians over ${rounds * 6} (batch 1) / ${rounds * 2} (batch 32) runs in alternating blocks; this CPU: ${cpuInt8Weights().why}.`,
  '',
);
lines.push(
  '| variant | held-out acc fp32 | int8 | delta (points) | macro-F1 fp32 | int8 | model.onnx fp32 | int8 | ratio | transformer layers fp32 | int8 | ratio | fp16 file ratio |',
);
lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  lines.push(
    `| ${r.variant} / ${r.int8Variant} | ${pct(r.accuracy.fp32)} | ${pct(r.accuracy.int8)} | ${(100 * (r.accuracy.int8 - r.accuracy.fp32)).toFixed(1)} | ` +
      `${pct(r.macroF1.fp32)} | ${pct(r.macroF1.int8)} | ${(r.bytes.fp32 / 2 ** 20).toFixed(1)} MiB | ${(r.bytes.int8 / 2 ** 20).toFixed(1)} MiB | ${(r.bytes.int8 / r.bytes.fp32).toFixed(2)} | ` +
      `${(r.bytes.layersFp32 / 2 ** 20).toFixed(1)} MiB | ${(r.bytes.layersInt8 / 2 ** 20).toFixed(1)} MiB | ${(r.bytes.layersInt8 / r.bytes.layersFp32).toFixed(2)} | ${(r.bytes.fp16 / r.bytes.fp32).toFixed(2)} |`,
  );
}
lines.push('', '| variant | form | batch 1 inputs/s | batch 32 inputs/s | vs fp32 at batch 1 | vs fp32 at batch 32 |', '|---|---|---:|---:|---:|---:|');
for (const r of rows) {
  const at = (form: string, batch: number) => r.speed.find((s) => s.form === form && s.batch === batch)!.inputsPerSec;
  for (const form of [...new Set(r.speed.map((s) => s.form))]) {
    lines.push(
      `| ${r.variant} | ${form} | ${at(form, 1).toFixed(1)} | ${at(form, 32).toFixed(1)} | ${(at(form, 1) / at('fp32', 1)).toFixed(2)}x | ${(at(form, 32) / at('fp32', 32)).toFixed(2)}x |`,
    );
  }
}
const md = lines.join('\n');
console.log(md);
if (args.out) {
  writeFileSync(
    `${args.out}.md`,
    `# fp32 vs int8 (${new Date().toISOString()})\n\n\`node dist/bench/precision.js ${process.argv.slice(2).join(' ')}\`\n\n${md}\n`,
  );
  writeFileSync(`${args.out}.json`, `${JSON.stringify({ data, threads, rounds, rows }, null, 2)}\n`);
}
