// `slim eval --model models/<model>/<variant> --data FILE`: run the exported ONNX (onnxruntime-node)
// with the variant's own tokenizer over a labelled dataset and print the metrics as JSON.
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { DatasetError, checkLabelsKnown, loadDataset } from './datasets/index.js';
import { evaluate, type EvalReport } from './evaluation.js';
import { ManifestError, ONNX_FILE, readManifest } from './model-writer.js';
import { loadTokenizer } from '../tokenizer.js';
import { runCascade, type CascadeStage } from '../cascade-rule.js';
import { argmax, softmaxRows } from '../probabilities.js';
import { readdirSync, statSync } from 'node:fs';
import { runCommand, type CommandSpec, type FlagValues } from '../command-line.js';

export async function evaluateVariant(variantDir: string, data: string, options: { threads?: number; batch?: number } = {}): Promise<EvalReport> {
  const examples = await loadDataset(data);
  const run = await variantProbabilities(variantDir, examples, data, options);
  const predicted = run.probabilities.map((p) => run.labels[argmax(p)]!);
  return evaluate(
    examples.map((e) => e.label),
    predicted,
    run.labels,
  );
}

/** Probabilities of one variant for every example (in order), and the session time per input. */
async function variantProbabilities(
  variantDir: string,
  examples: { text: string; label: string }[],
  data: string,
  options: { threads?: number; batch?: number },
): Promise<{ name: string; depth: number; labels: string[]; probabilities: Float32Array[]; msPerInput: number }> {
  const dir = resolve(variantDir);
  const manifest = await readManifest(dir);
  checkLabelsKnown(examples, manifest.labels, data, `the model's labels`);
  const tokenizer = await loadTokenizer(dir);
  const session = await ort.InferenceSession.create(join(dir, ONNX_FILE), {
    intraOpNumThreads: options.threads ?? 2,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
  try {
    const encoded = examples.map((e) => tokenizer.encode(e.text).slice(0, manifest.maxLength));
    const order = encoded.map((_, i) => i).sort((a, b) => encoded[a]!.length - encoded[b]!.length || a - b);
    const probabilities = new Array<Float32Array>(examples.length);
    const size = options.batch ?? 64;
    const n = manifest.labels.length;
    let ms = 0;
    for (let k = 0; k < order.length; k += size) {
      const rows = order.slice(k, k + size);
      const batch = tokenizer.pad(
        rows.map((r) => encoded[r]!),
        { maxLength: manifest.maxLength },
      );
      const dims = [batch.batchSize, batch.seqLength];
      const started = performance.now();
      const out = await session.run({
        input_ids: new ort.Tensor('int64', batch.inputIds, dims),
        attention_mask: new ort.Tensor('int64', batch.attentionMask, dims),
      });
      ms += performance.now() - started;
      const logits = out.logits!.data as Float32Array;
      const probs = softmaxRows(logits, rows.length, n);
      rows.forEach((r, i) => {
        probabilities[r] = probs.slice(i * n, (i + 1) * n);
      });
    }
    return {
      name: manifest.variant,
      depth: manifest.depth,
      labels: manifest.labels,
      probabilities,
      msPerInput: examples.length > 0 ? ms / examples.length : 0,
    };
  } finally {
    await session.release();
  }
}

export interface CascadeEvalRow {
  accuracy: number;
  macroF1: number;
  /** Mean over inputs of the sum of the depths each input ran on (layers per input). */
  meanCost: number;
  /** Session milliseconds per input: measured for a single depth; for a cascade, each depth's measured time weighted by the share of inputs that ran on it. */
  msPerInput: number;
}

export interface CascadeEvalReport {
  data: string;
  examples: number;
  cost: string;
  variants: (CascadeEvalRow & { variant: string; depth: number })[];
  cascades: (CascadeEvalRow & { order: string[]; threshold: number; decidedBy: Record<string, number>; escalated: number })[];
}

/**
 * `slim eval --cascade k1,k2 --threshold 0.9`: accuracy and mean cost per input of every depth
 * alone and of the cascade at each threshold, on a labelled set. Each depth runs once over every
 * example; the cascade is then replayed per threshold by the serving cascade itself
 * (src/cascade-rule.ts) over those probabilities, so server and eval cannot disagree.
 */
export async function evaluateCascade(
  modelDir: string,
  order: string[],
  thresholds: number[],
  data: string,
  options: { threads?: number; batch?: number } = {},
): Promise<CascadeEvalReport> {
  const examples = await loadDataset(data);
  const truth = examples.map((e) => e.label);
  const runs: Awaited<ReturnType<typeof variantProbabilities>>[] = [];
  for (const v of order) runs.push(await variantProbabilities(join(resolve(modelDir), v), examples, data, options));
  const labels = runs[0]!.labels;
  for (const r of runs) {
    if (r.labels.join('\u0000') !== labels.join('\u0000')) throw new Error(`cascade variants ${runs[0]!.name} and ${r.name} have different labels`);
  }
  const stages: CascadeStage[] = runs.map((r) => ({ name: r.name, depth: r.depth }));
  const variants = runs.map((r) => {
    const report = evaluate(
      truth,
      r.probabilities.map((p) => labels[argmax(p)]!),
      labels,
    );
    return { variant: r.name, depth: r.depth, accuracy: report.accuracy, macroF1: report.macroF1, meanCost: r.depth, msPerInput: r.msPerInput };
  });
  const cascades: CascadeEvalReport['cascades'] = [];
  for (const threshold of thresholds) {
    const result = await runCascade(stages, threshold, examples.length, async (_stage, s, inputs) => inputs.map((i) => runs[s]!.probabilities[i]!));
    const report = evaluate(
      truth,
      result.probabilities.map((p) => labels[argmax(p)]!),
      labels,
    );
    const n = Math.max(1, examples.length);
    cascades.push({
      order: [...order],
      threshold,
      accuracy: report.accuracy,
      macroF1: report.macroF1,
      meanCost: result.cost.reduce((a, b) => a + b, 0) / n,
      msPerInput: result.ran.reduce((a, ran, s) => a + ran * runs[s]!.msPerInput, 0) / n,
      decidedBy: Object.fromEntries(stages.map((st, s) => [st.name, result.decidedBy.filter((d) => d === s).length / n])),
      escalated: (result.ran[1] ?? 0) / n,
    });
  }
  return { data, examples: examples.length, cost: 'layers run per input: the sum of the depths of the variants an input ran on', variants, cascades };
}

/** The flags of `slim eval`, for its parser and --help. */
export const EVAL_COMMAND: CommandSpec = {
  name: 'eval',
  summary: 'evaluate an exported variant (or a confidence cascade of variants) on a labelled file: JSON report on stdout (accuracy, macroF1, confusion)',
  flags: [
    { name: 'model', value: 'DIR', help: 'the variant directory, models/<model>/<variant>; with --cascade, the model directory models/<model> (required)' },
    { name: 'data', value: 'FILE', help: 'labelled examples: .jsonl ({"text","label"}), .csv/.tsv or builtin:spam (required)' },
    { name: 'threads', value: 'N', default: '2', help: 'onnxruntime intra-op threads' },
    {
      name: 'cascade',
      value: 'K1,K2,..',
      help: 'evaluate a confidence cascade over these variants of --model: every input runs on the first, the unsure ones go on to the next',
    },
    {
      name: 'threshold',
      value: 'X[,Y,..]',
      default: '0.9',
      help: 'with --cascade: top probability under which an input goes on to the next variant; several, comma-separated, are each evaluated (a sweep)',
    },
  ],
  examples: [
    'slim eval --model models/spam/k1 --data ../shared/data/sms_spam/test.jsonl',
    'slim eval --model models/spam --cascade k1,k2 --threshold 0.9 --data test.jsonl',
  ],
  run: (values) => runEval(values),
};

/** `slim eval ...`: prints the JSON report on stdout; 2 on usage, dataset or manifest errors. */
export function evalCommand(argv: string[]): Promise<number> {
  return runCommand(EVAL_COMMAND, argv);
}

async function runEval(values: FlagValues): Promise<number> {
  const [model, data, threads, cascade, threshold] = (['model', 'data', 'threads', 'cascade', 'threshold'] as const).map(
    (k) => values[k] as string | undefined,
  );
  if (!model || !data) {
    console.error('slim eval: --model and --data are required (see slim eval --help)');
    return 2;
  }
  if (threads !== undefined && !/^[1-9][0-9]*$/.test(threads)) {
    console.error(`slim eval: --threads must be a positive integer (got ${JSON.stringify(threads)})`);
    return 2;
  }
  let thresholds: number[] = [];
  if (cascade !== undefined) {
    thresholds = (threshold ?? '0.9').split(',').map(Number);
    if (cascade.split(',').length < 2 || thresholds.some((t) => !(t > 0 && t <= 1))) {
      console.error('slim eval: --cascade needs at least two variants (k1,k2) and --threshold numbers in (0, 1]');
      return 2;
    }
    if (!statSync(model, { throwIfNoEntry: false })?.isDirectory() || readdirSync(model).includes(ONNX_FILE)) {
      console.error(`slim eval: with --cascade, --model is the model directory (models/<model>), not a variant`);
      return 2;
    }
  } else if (threshold !== undefined) {
    console.error('slim eval: --threshold needs --cascade');
    return 2;
  }
  try {
    const opts = { threads: threads ? Number(threads) : undefined };
    const report = cascade !== undefined ? await evaluateCascade(model, cascade.split(','), thresholds, data, opts) : await evaluateVariant(model, data, opts);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return 0;
  } catch (err) {
    const e = err as Error;
    console.error(`slim eval: ${(e.message ?? String(e)).split('\n')[0]}`);
    return err instanceof DatasetError || err instanceof ManifestError || (e as NodeJS.ErrnoException).code === 'ENOENT' ? 2 : 1;
  }
}
