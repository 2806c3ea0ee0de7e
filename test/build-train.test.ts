// `slim build` end to end on a small slice of SMS spam: training, export (ONNX contract,
// manifest), the depth report, determinism under a fixed seed, `slim eval`, clean errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildCommand } from '../src/pipeline/build-command.js';
import { evalCommand } from '../src/pipeline/eval-command.js';
import { capture, dataSlices } from './helpers/build-run.js';

let dir = '';
let trainFile = '';
let valFile = '';

async function logitsOf(onnxFile: string): Promise<{ inputs: readonly string[]; outputs: readonly string[]; dims: readonly number[]; data: Float32Array }> {
  const session = await ort.InferenceSession.create(onnxFile);
  try {
    // Dynamic axes: a batch of 3 x 7 tokens, never a training shape.
    const ids = BigInt64Array.from([10, 20, 30, 40, 50, 60, 70, 11, 12, 13, 2, 2, 2, 2, 99, 98, 2, 2, 2, 2, 2].map(BigInt));
    const mask = BigInt64Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0].map(BigInt));
    const out = await session.run({ input_ids: new ort.Tensor('int64', ids, [3, 7]), attention_mask: new ort.Tensor('int64', mask, [3, 7]) });
    const logits = out.logits!;
    return { inputs: session.inputNames, outputs: session.outputNames, dims: logits.dims, data: Float32Array.from(logits.data as Float32Array) };
  } finally {
    await session.release();
  }
}

before(async () => {
  ({ dir, trainFile, valFile } = await dataSlices('slim-build-train-', 'sms_spam', { split: 'train', lines: 400 }, { split: 'test', lines: 200 }));
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('slim build (full, k1) trains, exports the ONNX contract, writes manifest and report; slim eval agrees', async () => {
  const out = join(dir, 'models', 'spam');
  const { value: rc, stderr } = await capture(() =>
    buildCommand([
      '--base',
      'builtin:use-lite',
      '--data',
      trainFile,
      '--val',
      valFile,
      '--depths',
      '1',
      '--train',
      'full',
      '--epochs',
      '3',
      '--lr',
      '5e-4',
      '--max-length',
      '32',
      '--seed',
      '7',
      '--out',
      out,
    ]),
  );
  assert.equal(rc, 0, stderr);
  assert.match(stderr, /k1 full step \d+\/\d+/); // progress lines

  const variantDir = join(out, 'k1');
  const manifest = JSON.parse(await readFile(join(variantDir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.model, 'spam');
  assert.equal(manifest.variant, 'k1');
  assert.equal(manifest.depth, 1);
  assert.deepEqual(manifest.base.id, 'builtin:use-lite');
  assert.equal(manifest.base.arch, 'use-lite');
  assert.equal(manifest.base.layers, 2);
  assert.ok(manifest.base.source);
  assert.deepEqual(manifest.labels, ['ham', 'spam']);
  assert.equal(manifest.head, 'pool');
  assert.equal(manifest.maxLength, 32);
  assert.equal(manifest.train.mode, 'full');
  assert.equal(manifest.train.seed, 7);
  assert.equal(manifest.train.lr, 5e-4);
  assert.equal(manifest.train.examples, 400);
  assert.match(manifest.train.dataSha256, /^[0-9a-f]{64}$/);
  assert.ok(manifest.train.epochs >= 1 && manifest.train.epochs <= 3);
  assert.ok(manifest.train.seconds > 0);
  assert.equal(manifest.eval.examples, 200);
  assert.equal(manifest.eval.split, `file:${valFile}`);
  assert.ok(manifest.eval.accuracy > 0.9, `accuracy ${manifest.eval.accuracy}`);
  assert.ok(manifest.eval.macroF1 > 0.7, `macro-F1 ${manifest.eval.macroF1}`);
  assert.ok(manifest.params > 1_000_000);
  assert.match(manifest.onnxSha256, /^[0-9a-f]{64}$/);
  assert.ok(!Number.isNaN(Date.parse(manifest.createdAt)));
  assert.ok(manifest.version);
  await stat(join(variantDir, 'tokenizer.json'));
  await stat(join(variantDir, 'tokenizer_config.json'));

  const onnx = await logitsOf(join(variantDir, 'model.onnx'));
  assert.deepEqual([...onnx.inputs].sort(), ['attention_mask', 'input_ids']);
  assert.deepEqual([...onnx.outputs], ['logits']);
  assert.deepEqual([...onnx.dims], [3, 2]);
  assert.ok(onnx.data.every(Number.isFinite));

  for (const f of ['report.md', 'report.json', 'report.svg']) await stat(join(out, f));
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  // The default --precision fp32,int8 adds k1-int8; the cheaper of the two within a point wins.
  assert.ok(['k1', 'k1-int8'].includes(report.recommended.variant), report.recommended.variant);
  assert.deepEqual(
    report.results.map((r: { variant: string; precision: string }) => `${r.variant}:${r.precision}`),
    ['k1:fp32', 'k1-int8:int8'],
  );
  assert.ok(report.results[0].latencyMs.batch1 > 0 && report.results[0].latencyMs.batch32 > 0);
  assert.match(await readFile(join(out, 'report.md'), 'utf8'), /k1/);

  const evalRun = await capture(() => evalCommand(['--model', variantDir, '--data', valFile]), true);
  assert.equal(evalRun.value, 0, evalRun.stderr);
  const metrics = JSON.parse(evalRun.stdout);
  assert.equal(metrics.examples, 200);
  assert.deepEqual(metrics.labels, ['ham', 'spam']);
  assert.equal(metrics.accuracy, manifest.eval.accuracy);
  assert.equal(metrics.macroF1, manifest.eval.macroF1);
  assert.equal(
    metrics.confusion.flat().reduce((a: number, b: number) => a + b, 0),
    200,
  );
});

test('the same seed gives identical weights and logits (head mode, twice)', async () => {
  const run = async (name: string) => {
    const out = join(dir, 'models', name);
    const { value: rc, stderr } = await capture(() =>
      buildCommand([
        '--data',
        trainFile,
        '--val',
        valFile,
        '--depths',
        '1',
        '--train',
        'head',
        '--epochs',
        '1',
        '--max-length',
        '32',
        '--seed',
        '3',
        '--out',
        out,
      ]),
    );
    assert.equal(rc, 0, stderr);
    const manifest = JSON.parse(await readFile(join(out, 'k1-head', 'manifest.json'), 'utf8'));
    assert.equal(manifest.train.mode, 'head');
    assert.equal(manifest.variant, 'k1-head');
    return { manifest, logits: await logitsOf(join(out, 'k1-head', 'model.onnx')) };
  };
  const a = await run('det-a');
  const b = await run('det-b');
  assert.equal(a.manifest.onnxSha256, b.manifest.onnxSha256);
  assert.deepEqual(a.logits.data, b.logits.data);
  assert.equal(a.manifest.eval.accuracy, b.manifest.eval.accuracy);
});

test('bad flags and missing data files are one-line errors with exit code 2', async () => {
  const missing = await capture(() => buildCommand(['--data', join(dir, 'nope.jsonl'), '--depths', '1', '--out', join(dir, 'models', 'x')]));
  assert.equal(missing.value, 2);
  assert.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
  assert.match(missing.stderr, /nope\.jsonl/);
  assert.doesNotMatch(missing.stderr, /\n\s+at /);

  for (const args of [
    ['--data', trainFile, '--out', join(dir, 'models', 'x'), '--train', 'half'],
    ['--data', trainFile, '--out', join(dir, 'models', 'x'), '--depths', '3'],
    ['--data', trainFile, '--out', join(dir, 'models', 'x'), '--bogus'],
    ['--out', join(dir, 'models', 'x')],
  ]) {
    const r = await capture(() => buildCommand(args));
    assert.equal(r.value, 2, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  const evalMissing = await capture(() => evalCommand(['--model', join(dir, 'models', 'none', 'k1'), '--data', valFile]));
  assert.equal(evalMissing.value, 2, evalMissing.stderr);
});
