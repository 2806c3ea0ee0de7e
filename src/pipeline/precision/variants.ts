// Precision variants: from a built float32 variant directory (k2), write its int8 or fp16
// sibling (k2-int8, k2-fp16) through the atomic variant writer: the same tokenizer and labels,
// the converted model.onnx, and a manifest that records the precision, what it was converted
// from, and its own accuracy on the build's evaluation data.
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { evaluate } from '../evaluation.js';
import {
  MANIFEST_FILE,
  ONNX_FILE,
  TOKENIZER_CONFIG_FILE,
  TOKENIZER_FILE,
  readManifest,
  writeVariant,
  type Manifest,
  type ManifestDraft,
} from '../model-writer.js';
import { PRECISIONS, type Precision } from '../../manifest.js';
import { decodeModel, encodeModel } from './onnx-edit.js';
import { EXTERNAL_DATA_THRESHOLD, initializerBytes, readModelInline } from '../onnx-external.js';
import type { ModelProto } from '../onnx-proto.js';
import { quantizeInt8, type QuantizeInt8Options } from './quantize-int8.js';
import { cpuInt8Weights } from './int8-weights.js';
import { convertFp16 } from './convert-fp16.js';

export { PRECISIONS, type Precision };

/** `--precision` default on a CPU build: fp32 and its int8 sibling. */
export const DEFAULT_PRECISIONS: readonly Precision[] = ['fp32', 'int8'];

/** Parse `--precision fp32,int8[,fp16]`; throws a one-line message for a bad list. */
export function parsePrecisions(text: string | undefined): Precision[] {
  if (text === undefined) return [...DEFAULT_PRECISIONS];
  const list = text.split(',').map((p) => p.trim());
  for (const p of list) {
    if (!PRECISIONS.includes(p as Precision))
      throw new Error(`--precision: unknown precision ${JSON.stringify(p)} (use a comma-separated list of ${PRECISIONS.join(', ')})`);
  }
  if (new Set(list).size !== list.length) throw new Error(`--precision has a repeated precision (${text})`);
  if (!list.includes('fp32')) throw new Error('--precision must include fp32: the int8 and fp16 variants are converted from it and measured against it');
  return list as Precision[];
}

/** k2 + int8 -> k2-int8; fp32 keeps the name. */
export function precisionVariantName(variant: string, precision: Precision): string {
  return precision === 'fp32' ? variant : `${variant}-${precision}`;
}

/**
 * Convert float32 ONNX bytes to the given precision. int8 weights are stored the way this
 * machine's CPU runs them fastest and exactly (int8-weights.ts) unless `int8.weightType` says.
 */
export function convertOnnx(bytes: Uint8Array, precision: Precision, int8?: QuantizeInt8Options): Uint8Array {
  if (precision === 'fp32') return bytes;
  const model = decodeModel(bytes);
  convertModel(model, precision, int8);
  return encodeModel(model);
}

/** Convert a decoded float32 model (every weight inline) in place. */
export function convertModel(model: ModelProto, precision: Exclude<Precision, 'fp32'>, int8?: QuantizeInt8Options): void {
  if (precision === 'int8') quantizeInt8(model, { weightType: cpuInt8Weights().weights ?? 'int8', ...int8 });
  else convertFp16(model);
}

/** Token ids of one evaluation example and its label's index. */
export interface LabelledIds {
  ids: readonly number[];
  label: number;
}

/**
 * Accuracy and macro-F1 of ONNX bytes on tokenized examples (batches of 64, right-padded to the
 * longest row): the numbers a variant's manifest carries in `eval`.
 */
export async function evaluateOnnx(
  onnxBytes: Uint8Array,
  examples: readonly LabelledIds[],
  labels: readonly string[],
  options: { padId: number; threads: number; batch?: number },
): Promise<{ accuracy: number; macroF1: number }> {
  if (examples.length === 0) return { accuracy: 0, macroF1: 0 };
  const session = await ort.InferenceSession.create(onnxBytes, {
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
  try {
    const predicted: string[] = [];
    const size = options.batch ?? 64;
    for (let k = 0; k < examples.length; k += size) {
      const rows = examples.slice(k, k + size);
      const seq = Math.max(1, ...rows.map((r) => r.ids.length));
      const ids = new BigInt64Array(rows.length * seq).fill(BigInt(options.padId));
      const mask = new BigInt64Array(rows.length * seq);
      rows.forEach((r, b) =>
        r.ids.forEach((id, s) => {
          ids[b * seq + s] = BigInt(id);
          mask[b * seq + s] = 1n;
        }),
      );
      const out = await session.run({
        input_ids: new ort.Tensor('int64', ids, [rows.length, seq]),
        attention_mask: new ort.Tensor('int64', mask, [rows.length, seq]),
      });
      const logits = out.logits!.data as Float32Array;
      const n = labels.length;
      for (let b = 0; b < rows.length; b++) {
        let best = 0;
        for (let c = 1; c < n; c++) if (logits[b * n + c]! > logits[b * n + best]!) best = c;
        predicted.push(labels[best]!);
      }
    }
    const report = evaluate(
      examples.map((e) => labels[e.label]!),
      predicted,
      labels,
    );
    return { accuracy: report.accuracy, macroF1: report.macroF1 };
  } finally {
    await session.release();
  }
}

export interface PrecisionVariantResult {
  dir: string;
  manifest: Manifest;
  /** The converted model.onnx. */
  onnx: Uint8Array;
  /** Wall seconds of converting and of evaluating (where a build's precisions step spends its time). */
  seconds: { convert: number; evaluate: number };
}

/** The float32 variant's manifest as the build just wrote it, so that its model.onnx is not hashed again. */
export interface Fp32Source {
  manifest: Manifest;
}

/**
 * Write `<model>/<variant>-<precision>/` beside the float32 variant directory `fp32Dir`. The
 * evaluation data are those the float32 variant was measured on (the build's validation
 * split), so the two manifests' `eval` blocks compare like with like.
 */
export async function writePrecisionVariant(
  fp32Dir: string,
  precision: Exclude<Precision, 'fp32'>,
  evalData: { examples: readonly LabelledIds[]; padId: number; threads: number },
  int8?: QuantizeInt8Options,
  fromBuild?: Fp32Source,
): Promise<PrecisionVariantResult> {
  const dir = resolve(fp32Dir);
  // From a directory: the manifest is checked against the file (sha256) before converting it.
  const source = fromBuild?.manifest ?? (await readManifest(dir, { verifyOnnx: true }));
  if ((source.precision ?? 'fp32') !== 'fp32')
    throw new Error(`${join(dir, MANIFEST_FILE)}: variant ${source.variant} is ${source.precision}; convert from a float32 variant`);
  // Read back from the written files, external data (a variant over 1.9 GB) included: the build
  // let go of its own copy of the weights after writing them (pipeline.ts releaseWeights).
  const [model, tokenizer, tokenizerConfig] = await Promise.all([
    readModelInline(join(dir, ONNX_FILE)),
    readFile(join(dir, TOKENIZER_FILE), 'utf8'),
    readFile(join(dir, TOKENIZER_CONFIG_FILE), 'utf8'),
  ]);
  const t0 = performance.now();
  convertModel(model, precision, int8);
  const converted = initializerBytes(model);
  if (converted > EXTERNAL_DATA_THRESHOLD)
    throw new Error(
      `${source.variant}-${precision}: ${(converted / 1e9).toFixed(2)} GB of weights after conversion, past one ONNX file's 2 GB; ` +
        (precision === 'fp16' ? 'build the variant in float16 directly (--weights-dtype fp16)' : 'not supported'),
    );
  const onnx = encodeModel(model);
  const t1 = performance.now();
  const measured = await evaluateOnnx(onnx, evalData.examples, source.labels, { padId: evalData.padId, threads: evalData.threads });
  const t2 = performance.now();
  const { onnxSha256: _sha, externalData: _external, ...rest } = source;
  const draft: ManifestDraft = {
    ...rest,
    variant: precisionVariantName(source.variant, precision),
    precision,
    convertedFrom: { variant: source.variant, onnxSha256: source.onnxSha256 },
    eval: { ...source.eval, examples: evalData.examples.length, accuracy: measured.accuracy, macroF1: measured.macroF1 },
    createdAt: new Date().toISOString(),
  };
  const written = await writeVariant(dirname(dir), draft, { onnx, tokenizer, tokenizerConfig });
  if (basename(written.dir) !== draft.variant) throw new Error(`precision variant written to ${written.dir}, expected ${draft.variant}`);
  return { dir: written.dir, manifest: written.manifest, onnx, seconds: { convert: (t1 - t0) / 1000, evaluate: (t2 - t1) / 1000 } };
}

/** One precision sibling as the depth report lists it. */
export interface PrecisionSiblingResult {
  variant: string;
  precision: Exclude<Precision, 'fp32'>;
  dir: string;
  accuracy: number;
  macroF1: number;
  fileBytes: number;
  latencyMs: { batch1: number; batch32: number };
  /** Wall seconds of each part: convert, evaluate, write (with reading the tokenizer files), time the latency. */
  seconds: { convert: number; evaluate: number; write: number; latency: number };
}

/**
 * The build's step after each depth's float32 export: write every requested int8 / fp16
 * sibling of `fp32Dir`, evaluate it on the build's evaluation data and time it on the same
 * batches as the float32 variant (`measure` is the build's latency measurement).
 */
export async function buildPrecisionSiblings(
  fp32Dir: string,
  precisions: readonly Precision[],
  evalData: { examples: readonly LabelledIds[]; padId: number; threads: number },
  measure: (onnx: Uint8Array) => Promise<{ batch1: number; batch32: number }>,
  fromBuild?: Fp32Source,
): Promise<PrecisionSiblingResult[]> {
  const results: PrecisionSiblingResult[] = [];
  for (const precision of precisions) {
    if (precision === 'fp32') continue;
    const t0 = performance.now();
    const written = await writePrecisionVariant(fp32Dir, precision, evalData, undefined, fromBuild);
    const t1 = performance.now();
    const latencyMs = await measure(written.onnx);
    const latency = (performance.now() - t1) / 1000;
    const { convert, evaluate } = written.seconds;
    results.push({
      variant: written.manifest.variant,
      precision,
      dir: written.dir,
      accuracy: written.manifest.eval.accuracy,
      macroF1: written.manifest.eval.macroF1,
      fileBytes: written.onnx.byteLength,
      latencyMs,
      seconds: { convert, evaluate, write: (t1 - t0) / 1000 - convert - evaluate, latency },
    });
  }
  return results;
}
