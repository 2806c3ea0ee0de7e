// `slim build --distill-from`: a k1 student trained on a k2 teacher's soft labels (same build,
// and a built variant directory), with transfer text; the report's distillation record; alpha 1
// (true labels only) reproducing plain training; clean one-line errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildCommand } from '../src/pipeline/build-command.js';
import { DistillError, findPlainSibling, loadVariantTeacher, logSoftmaxAtTemperature, readTransferTexts } from '../src/pipeline/training/distill.js';
import { capture, dataSlices } from './helpers/build-run.js';

let dir = '',
  trainFile = '',
  valFile = '',
  transferFile = '';
const common = () => [
  '--data',
  trainFile,
  '--val',
  valFile,
  '--train',
  'full',
  '--epochs',
  '1',
  '--lr',
  '5e-4',
  '--max-length',
  '16',
  '--seed',
  '5',
  '--precision',
  'fp32',
  '--quiet',
];

async function report(out: string) {
  return JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
    results: {
      variant: string;
      depth: number;
      accuracy: number;
      distillation?: Record<string, unknown> & { withoutDistillation: { accuracy: number; source: string } };
    }[];
  };
}

async function logits(variantDir: string): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(join(variantDir, 'model.onnx'));
  try {
    const ids = BigInt64Array.from([10, 20, 30, 40, 50, 60, 11, 12, 13, 2, 2, 2].map(BigInt));
    const mask = BigInt64Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0].map(BigInt));
    const out = await s.run({ input_ids: new ort.Tensor('int64', ids, [2, 6]), attention_mask: new ort.Tensor('int64', mask, [2, 6]) });
    return Float32Array.from(out.logits!.data as Float32Array);
  } finally {
    await s.release();
  }
}

before(async () => {
  ({ dir, trainFile, valFile } = await dataSlices('slim-build-distill-', 'sst2', { split: 'train', lines: 160 }, { split: 'dev', lines: 64 }));
  transferFile = join(dir, 'transfer.jsonl');
  const texts = (await readFile(trainFile, 'utf8'))
    .trim()
    .split('\n')
    .slice(0, 40)
    .map((l) => (JSON.parse(l) as { text: string }).text.split(' ').slice(0, 6).join(' '));
  await writeFile(transferFile, texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('slim build --distill-from 2: k2 first, then a k1 student on its soft labels and transfer text, recorded in the report', async () => {
  const out = join(dir, 'models', 'same-build');
  const { value: rc, stderr } = await capture(() =>
    buildCommand([
      ...common(),
      '--depths',
      '1,2',
      '--distill-from',
      '2',
      '--transfer-data',
      transferFile,
      '--temperature',
      '3',
      '--alpha',
      '0.25',
      '--out',
      out,
    ]),
  );
  assert.equal(rc, 0, stderr);
  const r = await report(out);
  assert.deepEqual(
    r.results.map((x) => x.variant),
    ['k1', 'k2'],
  );
  const k1 = r.results[0]!,
    k2 = r.results[1]!;
  assert.equal(k2.distillation, undefined);
  const d = k1.distillation!;
  assert.equal(d.teacher, join(out, 'k2'));
  assert.equal(d.teacherDepth, 2);
  assert.equal(d.temperature, 3);
  assert.equal(d.alpha, 0.25);
  assert.equal(d.transferData, transferFile);
  assert.equal(d.transferExamples, 40);
  assert.equal(d.withoutDistillation.source, 'trained in this build');
  assert.ok((d.secondsPerEpoch as number) > 0);
  const md = await readFile(join(out, 'report.md'), 'utf8');
  assert.match(md, /## Distillation/);
  assert.match(md, /\| k1 \| `.*k2` \(k2\) \| 3 \| 0\.25 \| 40 /);
  // The student is a normal k1 variant, and its weights differ from the plain k1's (trained
  // in the same run with the same seed): the teacher's targets changed the training.
  const student = await logits(join(out, 'k1'));
  assert.equal(student.length, 4);
  assert.ok(student.every(Number.isFinite));

  // A built variant directory as the teacher: the k1 trained plain beside it is reused when it
  // had the same data, split and seed (no second plain run).
  const out2 = join(dir, 'models', 'from-dir');
  const plainOut = join(dir, 'models', 'plain');
  assert.equal((await capture(() => buildCommand([...common(), '--depths', '1,2', '--out', plainOut]))).value, 0);
  const { value: rc2, stderr: err2 } = await capture(() =>
    buildCommand([...common(), '--depths', '1', '--distill-from', join(plainOut, 'k2'), '--alpha', '1', '--out', out2]),
  );
  assert.equal(rc2, 0, err2);
  const d2 = (await report(out2)).results[0]!.distillation!;
  assert.match(d2.withoutDistillation.source, /plain[/\\]k1 \(same data, split and seed\)/);
  assert.equal(d2.transferData, null);
  const plainK1 = (await report(plainOut)).results.find((x) => x.depth === 1)!;
  assert.equal(d2.withoutDistillation.accuracy, plainK1.accuracy);
  // alpha 1 puts all weight on the true labels: the same training as the plain k1, step for step.
  const a = await logits(join(out2, 'k1')),
    b = await logits(join(plainOut, 'k1'));
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) < 1e-4, `alpha 1 student logit ${v} vs plain ${b[i]}`));
  assert.equal((await report(out2)).results[0]!.accuracy, plainK1.accuracy);

  // A distilled k1 beside the teacher is never taken for the plain one; another seed neither.
  const m = JSON.parse(await readFile(join(plainOut, 'k1', 'manifest.json'), 'utf8')) as {
    train: { dataSha256: string; seed: number; lr: number };
    eval: { split: string };
  };
  const want = { dataSha256: m.train.dataSha256, evalSplit: m.eval.split, seed: m.train.seed, lr: m.train.lr };
  assert.ok(await findPlainSibling(join(plainOut, 'k2'), 'k1', want));
  assert.equal(await findPlainSibling(join(out, 'k2'), 'k1', want), undefined);
  assert.equal(await findPlainSibling(join(plainOut, 'k2'), 'k1', { ...want, seed: 6 }), undefined);

  // The teacher refuses another label set, naming both.
  const teacher = await loadVariantTeacher(join(plainOut, 'k2'));
  await assert.rejects(
    teacher.logits(['a text'], ['x', 'y']),
    (e: Error) => e instanceof DistillError && /labels \(negative, positive\) are not the training data's \(x, y\)/.test(e.message),
  );
  const l = await teacher.logits(['a fine film', 'a dull film'], ['positive', 'negative']);
  const l2 = await teacher.logits(['a fine film', 'a dull film'], ['negative', 'positive']);
  assert.deepEqual([l[0], l[1], l[2], l[3]], [l2[1], l2[0], l2[3], l2[2]], "columns follow the student's label order");
});

test('distillation flags: one-line errors with exit code 2', async () => {
  const out = join(dir, 'models', 'bad');
  const cases: [string[], RegExp][] = [
    [['--transfer-data', transferFile], /--transfer-data needs --distill-from/],
    [['--alpha', '0.5'], /--alpha needs --distill-from/],
    [['--distill-from', '2', '--alpha', '1.5'], /--alpha must be a number from 0 to 1/],
    [['--distill-from', '2', '--temperature', '0'], /--temperature must be a number above 0/],
    [['--distill-from', '2', '--depths', '1'], /depth 2 is not in --depths \(1\)/],
    [['--distill-from', '2', '--depths', '2'], /needs a student depth besides the teacher's/],
    [['--distill-from', '2', '--train', 'head'], /--distill-from needs --train full or top:N/],
    [['--distill-from', join(dir, 'nowhere'), '--depths', '1'], /--distill-from .*nowhere: not a built variant/],
    [['--distill-from', '2', '--transfer-data', join(dir, 'missing.jsonl')], /--transfer-data .*missing\.jsonl/],
  ];
  for (const [flags, want] of cases) {
    const { value: rc, stderr } = await capture(() => buildCommand(['--data', trainFile, '--val', valFile, '--epochs', '1', '--out', out, ...flags]));
    assert.equal(rc, 2, `${flags.join(' ')}: ${stderr}`);
    assert.match(stderr, want);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
  }
});

test('transfer text files and tempered log-probabilities', async () => {
  const plain = join(dir, 'plain.txt');
  await writeFile(plain, 'one text\n\n  two text  \n');
  assert.deepEqual(await readTransferTexts(plain), ['one text', 'two text']);
  const bad = join(dir, 'bad.jsonl');
  await writeFile(bad, '{"text": "ok"}\n{"label": "x"}\n');
  await assert.rejects(readTransferTexts(bad), /bad\.jsonl:2: no non-empty string "text"/);
  // log softmax(z / T) against the formula, per row.
  const z = Float32Array.from([2, 0, -2, 1]);
  const got = logSoftmaxAtTemperature(z, 2, 2);
  const row = (a: number, b: number) => [a / 2 - Math.log(Math.exp(a / 2) + Math.exp(b / 2)), b / 2 - Math.log(Math.exp(a / 2) + Math.exp(b / 2))];
  [...row(2, 0), ...row(-2, 1)].forEach((w, i) => assert.ok(Math.abs(got[i]! - w) < 1e-6));
});
