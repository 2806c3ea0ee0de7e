// Distillation's teacher side: the soft labels a built variant (model.onnx + tokenizer +
// manifest, as `slim build` writes it) gives the student's training and transfer texts, run
// through onnxruntime-node with the teacher's own tokenizer and length limit; the transfer
// text file; and the names of the extra inputs a distilling training graph takes.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { decodeUtf8 } from '../datasets/index.js';
import { ONNX_FILE, readManifest } from '../model-writer.js';
import { loadTokenizer } from '../../tokenizer.js';

/** Extra inputs of a distilling training graph (per batch row): see losses.ts distillationLoss. */
export const TEACHER_INPUTS = {
  /** float32 [batch, labels]: log softmax(teacher logits / T). */
  logProbs: 'teacher_log_probs',
  /** float32 [batch]: weight of the true-label cross-entropy (alpha, or 0 for transfer text). */
  hardWeight: 'hard_weight',
  /** float32 [batch]: weight of the T^2 KL term (1 - alpha, or 1 for transfer text). */
  softWeight: 'soft_weight',
} as const;

/** What the training loop needs to distil (TrainOptions.distill). */
export interface DistillTargets {
  temperature: number;
  /** Weight of the true labels; 1 - alpha goes to the teacher's soft labels. */
  alpha: number;
  /** Teacher logits [examples, labels] in the student's label order: training examples, then transfer. */
  teacherLogits: Float32Array;
  /** Unlabelled transfer examples (label -1), already tokenized for the student. */
  transfer: readonly { ids: number[]; label: number }[];
}

/** A bad teacher or transfer file: one line, exit code 2 in `slim build`. */
export class DistillError extends Error {
  override readonly name = 'DistillError';
}

/** Row-wise log softmax(logits / T) in float64, stored as float32. */
export function logSoftmaxAtTemperature(logits: Float32Array, classes: number, temperature: number): Float32Array {
  const out = new Float32Array(logits.length);
  for (let r = 0; r < logits.length / classes; r++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[r * classes + c]! / temperature);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[r * classes + c]! / temperature - max);
    const lse = max + Math.log(sum);
    for (let c = 0; c < classes; c++) out[r * classes + c] = logits[r * classes + c]! / temperature - lse;
  }
  return out;
}

/**
 * Transfer text: JSONL with a string "text" per line (any "label" is ignored), or plain text
 * with one example per non-empty line. At most 1,000,000 lines.
 */
export async function readTransferTexts(file: string): Promise<string[]> {
  let text: string;
  try {
    text = decodeUtf8(await readFile(file), file);
  } catch (err) {
    throw new DistillError(`--transfer-data ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  const jsonl = /\.jsonl$/i.test(file);
  const texts: string[] = [];
  lines.forEach((line, i) => {
    if (line === '') return;
    if (!jsonl) return void texts.push(line);
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw new DistillError(`--transfer-data ${file}:${i + 1}: not a JSON object`);
    }
    const t = (row as { text?: unknown } | null)?.text;
    if (typeof t !== 'string' || t.trim() === '') throw new DistillError(`--transfer-data ${file}:${i + 1}: no non-empty string "text"`);
    texts.push(t);
  });
  if (texts.length === 0) throw new DistillError(`--transfer-data ${file}: no texts`);
  if (texts.length > 1_000_000) throw new DistillError(`--transfer-data ${file}: ${texts.length} texts, more than 1,000,000`);
  return texts;
}

export interface VariantTeacher {
  dir: string;
  depth: number;
  labels: string[];
  /** Logits [texts, studentLabels] in `studentLabels` order. */
  logits(texts: readonly string[], studentLabels: readonly string[]): Promise<Float32Array>;
}

/** A built variant as a teacher; its labels must be the student's (in any order). */
export async function loadVariantTeacher(variantDir: string, threads = 2): Promise<VariantTeacher> {
  const dir = resolve(variantDir);
  let manifest;
  try {
    manifest = await readManifest(dir);
  } catch (err) {
    throw new DistillError(`--distill-from ${variantDir}: not a built variant (${(err as Error).message.split('\n')[0]})`);
  }
  if (manifest.template !== undefined)
    throw new DistillError(`--distill-from ${variantDir}: a prompt-template (label-words) teacher is not supported; use a pool or last-token variant`);
  const tokenizer = await loadTokenizer(dir);
  return {
    dir,
    depth: manifest.depth,
    labels: manifest.labels,
    async logits(texts, studentLabels) {
      const teacherLabels = manifest.labels;
      if (teacherLabels.length !== studentLabels.length || studentLabels.some((l) => !teacherLabels.includes(l))) {
        throw new DistillError(
          `--distill-from ${variantDir}: the teacher's labels (${teacherLabels.join(', ')}) are not the training data's (${studentLabels.join(', ')})`,
        );
      }
      const column = studentLabels.map((l) => teacherLabels.indexOf(l));
      const C = studentLabels.length;
      const session = await ort.InferenceSession.create(join(dir, ONNX_FILE), {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
      });
      try {
        const encoded = texts.map((t) => tokenizer.encode(t).slice(0, manifest.maxLength));
        const order = encoded.map((_, i) => i).sort((a, b) => encoded[a]!.length - encoded[b]!.length || a - b);
        const out = new Float32Array(texts.length * C);
        for (let k = 0; k < order.length; k += 64) {
          const rows = order.slice(k, k + 64);
          const batch = tokenizer.pad(
            rows.map((r) => encoded[r]!),
            { maxLength: manifest.maxLength },
          );
          const dims = [batch.batchSize, batch.seqLength];
          const res = await session.run({
            input_ids: new ort.Tensor('int64', batch.inputIds, dims),
            attention_mask: new ort.Tensor('int64', batch.attentionMask, dims),
          });
          const logits = (res.logits ?? Object.values(res)[0]!).data as Float32Array;
          rows.forEach((r, i) => column.forEach((tc, c) => (out[r * C + c] = logits[i * C + tc]!)));
        }
        return out;
      } finally {
        await session.release();
      }
    },
  };
}

/**
 * The plain (undistilled) variant of the student's depth next to the teacher, when it was
 * trained on the same data with the same seed and learning rate, validated on the same split,
 * and its model's report.json lists it without a distillation record: its accuracy is the
 * "without distillation" figure, so the build need not train it again.
 */
export async function findPlainSibling(
  teacherDir: string,
  variant: string,
  want: { dataSha256: string; evalSplit: string; seed: number; lr: number },
): Promise<{ eval: { accuracy: number; macroF1: number }; secondsPerEpoch: number; source: string } | undefined> {
  const dir = join(resolve(teacherDir), '..', variant);
  let m;
  try {
    m = await readManifest(dir);
  } catch {
    return undefined;
  }
  if (m.train.dataSha256 !== want.dataSha256 || m.eval.split !== want.evalSplit || m.train.seed !== want.seed || m.train.lr !== want.lr) return undefined;
  let entry: { distillation?: unknown; train?: { seconds?: number; epochsRun?: number } } | undefined;
  try {
    const report = JSON.parse(await readFile(join(dir, '..', 'report.json'), 'utf8')) as { results?: (NonNullable<typeof entry> & { variant: string })[] };
    entry = report.results?.find((x) => x.variant === variant);
  } catch {
    return undefined;
  }
  if (!entry || entry.distillation !== undefined) return undefined;
  const t = entry.train;
  const secondsPerEpoch = t?.seconds && t.epochsRun ? t.seconds / t.epochsRun : m.train.epochs > 0 ? m.train.seconds / m.train.epochs : 0;
  return { eval: { accuracy: m.eval.accuracy, macroF1: m.eval.macroF1 }, secondsPerEpoch, source: `variant ${dir} (same data, split and seed)` };
}
