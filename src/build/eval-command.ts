// `slim eval --model models/<model>/<variant> --data FILE`: run the exported ONNX (onnxruntime-node)
// with the variant's own tokenizer over a labelled dataset and print the metrics as JSON.
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { DatasetError, checkLabelsKnown, loadDataset } from './datasets.js';
import { evaluate, type EvalReport } from './evaluation.js';
import { ManifestError, ONNX_FILE, readManifest } from './model-writer.js';
import { loadTokenizer } from '../tokenizer.js';

export async function evaluateVariant(variantDir: string, data: string, options: { threads?: number; batch?: number } = {}): Promise<EvalReport> {
  const dir = resolve(variantDir);
  const manifest = await readManifest(dir);
  const examples = await loadDataset(data);
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
    const predicted = new Array<string>(examples.length);
    const size = options.batch ?? 64;
    const n = manifest.labels.length;
    for (let k = 0; k < order.length; k += size) {
      const rows = order.slice(k, k + size);
      const batch = tokenizer.pad(rows.map((r) => encoded[r]!), { maxLength: manifest.maxLength });
      const dims = [batch.batchSize, batch.seqLength];
      const out = await session.run({
        input_ids: new ort.Tensor('int64', batch.inputIds, dims),
        attention_mask: new ort.Tensor('int64', batch.attentionMask, dims),
      });
      const logits = out.logits!.data as Float32Array;
      rows.forEach((r, i) => {
        let best = 0;
        for (let c = 1; c < n; c++) if (logits[i * n + c]! > logits[i * n + best]!) best = c;
        predicted[r] = manifest.labels[best]!;
      });
    }
    return evaluate(examples.map((e) => e.label), predicted, manifest.labels);
  } finally {
    await session.release();
  }
}

/** `slim eval ...`: prints the JSON report on stdout; 2 on usage, dataset or manifest errors. */
export async function evalCommand(argv: string[]): Promise<number> {
  let model: string | undefined, data: string | undefined, threads: string | undefined;
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { model: { type: 'string' }, data: { type: 'string' }, threads: { type: 'string' } },
    });
    ({ model, data, threads } = values);
  } catch (err) {
    console.error(`slim eval: ${(err as Error).message.split('\n')[0]}`);
    return 2;
  }
  if (!model || !data) {
    console.error('slim eval: usage: slim eval --model models/<model>/<variant> --data FILE');
    return 2;
  }
  if (threads !== undefined && !/^[1-9][0-9]*$/.test(threads)) {
    console.error(`slim eval: --threads must be a positive integer (got ${JSON.stringify(threads)})`);
    return 2;
  }
  try {
    const report = await evaluateVariant(model, data, { threads: threads ? Number(threads) : undefined });
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return 0;
  } catch (err) {
    const e = err as Error;
    console.error(`slim eval: ${(e.message ?? String(e)).split('\n')[0]}`);
    return err instanceof DatasetError || err instanceof ManifestError || (e as NodeJS.ErrnoException).code === 'ENOENT' ? 2 : 1;
  }
}
