// `slim build --weights-dtype fp16`: a random bf16 checkpoint built twice with the same seed,
// once as float32 (the reference) and once with fp16 weights. The fp16 variant is named and
// declared fp16, every float initializer in its model.onnx is float16, its probabilities are
// within 1e-3 of the float32 variant's (training runs in float32 either way, so the two differ
// only by the export's rounding), `slim eval` and `slim serve` load it, and the flag's misuses
// are one-line usage errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildCommand } from '../src/pipeline/build-command.js';
import { evaluateVariant } from '../src/pipeline/eval-command.js';
import { validateBuildFlags, UsageError } from '../src/pipeline/build-options.js';
import { writeRandomHfCheckpoint } from '../src/pipeline/checkpoints/random-hf.js';
import { onnx, DataType } from '../src/pipeline/onnx-proto.js';
import { dataSlices } from './helpers/build-run.js';
import { tokenizerFixture, writeTokenizerFixture } from './helpers/tokenizer-fixtures.js';
import { sampleSentences } from './helpers/dataset-sample.js';
import { post } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';

let work = '',
  trainFile = '',
  valFile = '',
  base = '',
  vocab = 0;
before(async () => {
  ({ dir: work, trainFile, valFile } = await dataSlices('slim-weights-fp16-', 'sst2', { split: 'train', lines: 64 }, { split: 'dev', lines: 32 }));
  const tok = tokenizerFixture('llama3', sampleSentences(20));
  base = join(work, 'base');
  vocab = tok.vocabSize;
  writeRandomHfCheckpoint(base, { arch: 'llama', layers: 2, hidden: 64, heads: 4, kvHeads: 2, ffn: 96, vocab, maxPositions: 64, seed: 3, dtype: 'BF16' });
  writeTokenizerFixture(base, tok);
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const build = (out: string, extra: string[]) =>
  buildCommand([
    '--base',
    base,
    '--data',
    trainFile,
    '--val',
    valFile,
    '--depths',
    '1',
    '--train',
    'head',
    '--head',
    'last',
    '--epochs',
    '1',
    '--max-length',
    '20',
    '--seed',
    '7',
    '--quiet',
    '--out',
    out,
    ...extra,
  ]);

/** Softmax rows of a variant's logits on a right-padded batch (rows of 9, 4, 1 and 7 tokens). */
async function probabilities(variantDir: string): Promise<Float64Array> {
  const lengths = [9, 4, 1, 7],
    S = 9;
  const ids = new BigInt64Array(4 * S),
    mask = new BigInt64Array(4 * S);
  lengths.forEach((n, b) => {
    for (let s = 0; s < n; s++) {
      ids[b * S + s] = BigInt((b * 37 + s * 11 + 3) % vocab);
      mask[b * S + s] = 1n;
    }
  });
  const session = await ort.InferenceSession.create(join(variantDir, 'model.onnx'), { logSeverityLevel: 3 });
  try {
    const out = await session.run({ input_ids: new ort.Tensor('int64', ids, [4, S]), attention_mask: new ort.Tensor('int64', mask, [4, S]) });
    const logits = out.logits!.data as Float32Array,
      L = logits.length / 4;
    const p = new Float64Array(logits.length);
    for (let b = 0; b < 4; b++) {
      const row = Array.from(logits.subarray(b * L, (b + 1) * L));
      const m = Math.max(...row),
        e = row.map((x) => Math.exp(x - m)),
        z = e.reduce((a, c) => a + c, 0);
      e.forEach((x, j) => (p[b * L + j] = x / z));
    }
    return p;
  } finally {
    await session.release();
  }
}

test('--weights-dtype fp16: fp16 initializers, probabilities within 1e-3 of the fp32 build, loaded by slim eval and slim serve', async () => {
  const models = join(work, 'models');
  assert.equal(await build(join(models, 'ref'), []), 0);
  assert.equal(await build(join(models, 'half'), ['--weights-dtype', 'fp16']), 0);
  const refDir = join(models, 'ref', 'k1-head'),
    halfDir = join(models, 'half', 'k1-head-fp16');
  const manifest = JSON.parse(await readFile(join(halfDir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.precision, 'fp16');
  assert.equal(manifest.variant, 'k1-head-fp16');

  const model = onnx.ModelProto.decode(await readFile(join(halfDir, 'model.onnx')));
  const types = new Map<number, number>();
  for (const t of model.graph!.initializer!) types.set(t.dataType!, (types.get(t.dataType!) ?? 0) + (t.rawData?.length ?? 0));
  assert.equal(types.get(DataType.float32) ?? 0, 0, 'no float32 initializer is left');
  const refBytes = (await readFile(join(refDir, 'model.onnx'))).length;
  assert.ok(types.get(DataType.float16)! > 0.45 * refBytes, `fp16 weights: ${types.get(DataType.float16)} bytes, the fp32 model is ${refBytes}`);
  assert.ok((await readFile(join(halfDir, 'model.onnx'))).length < 0.55 * refBytes, 'about half the fp32 file');

  const [p32, p16] = [await probabilities(refDir), await probabilities(halfDir)];
  let worst = 0;
  p32.forEach((p, i) => (worst = Math.max(worst, Math.abs(p - p16[i]!))));
  console.log(`# max |p_fp16 - p_fp32| = ${worst.toExponential(2)}`);
  assert.ok(worst > 0, 'the fp16 variant is not the fp32 one');
  assert.ok(worst <= 1e-3, `max |p_fp16 - p_fp32| = ${worst}`);

  const evaluated = await evaluateVariant(halfDir, valFile, { threads: 1 });
  assert.equal(evaluated.accuracy, manifest.eval.accuracy, 'slim eval gives the accuracy the build measured');

  const { server } = await startTestServer({ models });
  try {
    const classify = async (model: string) => {
      const res = await post(`${server.url}/classify`, { model, inputs: ['a gripping, funny film', 'dull and far too long'] });
      assert.equal(res.status, 200);
      return res.json as { variant: string; results: { label: string; score: number }[] };
    };
    const [ref, half] = [await classify('ref'), await classify('half')];
    assert.equal(half.variant, 'k1-head-fp16');
    assert.deepEqual(
      half.results.map((r) => r.label),
      ref.results.map((r) => r.label),
    );
    half.results.forEach((r, i) => assert.ok(Math.abs(r.score - ref.results[i]!.score) <= 1e-3, `served score ${r.score} vs fp32 ${ref.results[i]!.score}`));
  } finally {
    await server.close();
  }
});

test('--weights-dtype: a bad value, builtin:use-lite and --precision siblings are one-line usage errors', () => {
  const flags = (extra: Record<string, string>) => ({ data: trainFile, out: join(work, 'x'), base, ...extra });
  assert.throws(
    () => validateBuildFlags(flags({ 'weights-dtype': 'bf16' })),
    (e: Error) => e instanceof UsageError && /--weights-dtype must be fp32 or fp16/.test(e.message),
  );
  assert.throws(
    () => validateBuildFlags(flags({ 'weights-dtype': 'fp16', base: 'builtin:use-lite' })),
    (e: Error) => e instanceof UsageError && /needs a transformer base.*--precision fp32,fp16/.test(e.message),
  );
  assert.throws(
    () => validateBuildFlags(flags({ 'weights-dtype': 'fp16', precision: 'fp32,int8' })),
    (e: Error) => e instanceof UsageError && /cannot be combined with --precision fp32,int8/.test(e.message),
  );
  assert.equal(validateBuildFlags(flags({ 'weights-dtype': 'fp16' })).weightsDtype, 'fp16');
  assert.equal(validateBuildFlags(flags({})).weightsDtype, 'fp32');
});
