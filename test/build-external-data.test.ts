// Variants whose weights live outside model.onnx (ONNX external data, what a variant past
// protobuf's 2 GB needs), made small here by a low --external-data-threshold: slim build writes
// model.onnx + model.onnx.data and lists the data file, hashed, in the manifest; slim eval, the
// server and hot reload load it and answer as the model does; a data file that is missing or
// differs from its hash is refused naming the file.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildCommand } from '../src/pipeline/build-command.js';
import { evaluateVariant } from '../src/pipeline/eval-command.js';
import { readManifest } from '../src/pipeline/model-writer.js';
import { readVariant } from '../src/serve/model-repository.js';
import { loadTokenizer } from '../src/tokenizer.js';
import { capture, dataSlices } from './helpers/build-run.js';
import { post } from './helpers/http.js';
import { SHARED_MODELS } from './helpers/paths.js';
import { startTestServer } from './helpers/serve.js';

const ADMIN = 'external-data-admin';
const TEXTS = ['a gorgeous , witty , seductive movie .', 'the plot is nothing but boilerplate clichés', 'it is a film'];
let work = '',
  trainFile = '',
  valFile = '',
  repo = '',
  staging = '';

async function build(out: string): Promise<void> {
  const r = await capture(() =>
    buildCommand([
      '--base',
      join(SHARED_MODELS, 'stories260K'),
      '--data',
      trainFile,
      '--val',
      valFile,
      '--depths',
      '1',
      '--epochs',
      '1',
      '--batch',
      '16',
      '--max-length',
      '24',
      '--verbalizer',
      'negative=little,positive=happy',
      '--external-data-threshold',
      '1000',
      '--quiet',
      '--out',
      out,
    ]),
  );
  assert.equal(r.value, 0, r.stderr);
}

before(async () => {
  ({ dir: work, trainFile, valFile } = await dataSlices('slim-external-', 'sst2', { split: 'train', lines: 64 }, { split: 'dev', lines: 48 }));
  repo = join(work, 'models');
  staging = mkdtempSync(join(tmpdir(), 'slim-external-staging-'));
  await build(join(repo, 'ext'));
  await build(join(staging, 'ext2'));
});
after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
  if (staging) rmSync(staging, { recursive: true, force: true });
});

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

test('slim build past --external-data-threshold writes model.onnx.data beside model.onnx, listed and hashed in the manifest; slim eval reproduces the training accuracy', async () => {
  const dir = join(repo, 'ext', 'k1');
  const manifest = await readManifest(dir, { verifyOnnx: true });
  assert.equal(manifest.externalData?.length, 1);
  const data = manifest.externalData![0]!;
  assert.equal(data.file, 'model.onnx.data');
  assert.equal(data.bytes, statSync(join(dir, data.file)).size);
  assert.equal(data.sha256, sha256(join(dir, data.file)));
  // The weights (embedding 512 x 64 fp32 = 128 KiB alone) are in the data file, not in model.onnx.
  assert.ok(data.bytes > 128 * 1024, `${data.bytes} bytes of external data`);
  assert.ok(statSync(join(dir, 'model.onnx')).size < 64 * 1024, 'model.onnx holds the graph only');
  const report = JSON.parse(readFileSync(join(repo, 'ext', 'report.json'), 'utf8')) as { results: { fileBytes: number }[] };
  assert.equal(report.results[0]!.fileBytes, statSync(join(dir, 'model.onnx')).size + data.bytes, 'the report counts both files');
  const served = await evaluateVariant(dir, valFile, { threads: 1 });
  assert.equal(served.accuracy, manifest.eval.accuracy);
  assert.equal(served.macroF1, manifest.eval.macroF1);
});

test("slim serve and hot reload load variants with external data; their scores are the model's", async () => {
  const { server } = await startTestServer({ models: repo, adminToken: ADMIN });
  try {
    const classify = async (model: string) => {
      const res = await post(`${server.url}/classify`, { model, inputs: TEXTS });
      assert.equal(res.status, 200);
      return (res.json as { results: { scores: Record<string, number> }[] }).results;
    };
    // Reference: onnxruntime in this process, the model loaded from its path, one text at a time.
    const dir = join(repo, 'ext', 'k1');
    const tokenizer = await loadTokenizer(dir);
    const session = await ort.InferenceSession.create(join(dir, 'model.onnx'));
    const results = await classify('ext');
    for (const [i, text] of TEXTS.entries()) {
      const ids = tokenizer.encode(text).slice(0, 24);
      const dims = [1, ids.length];
      const out = await session.run({
        input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), dims),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), dims),
      });
      const logits = Array.from(out.logits!.data as Float32Array);
      const max = Math.max(...logits);
      const e = logits.map((x) => Math.exp(x - max));
      const probs = e.map((x) => x / e.reduce((a, b) => a + b, 0));
      const served = [results[i]!.scores.negative!, results[i]!.scores.positive!];
      for (let c = 0; c < 2; c++) assert.ok(Math.abs(served[c]! - probs[c]!) < 1e-5, `${text}: served ${served} vs ${probs}`);
    }
    await session.release();
    // Hot reload: a new model with external data, renamed into the repository as a build does.
    renameSync(join(staging, 'ext2'), join(repo, 'ext2'));
    const reload = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(reload.status, 200, await reload.text());
    assert.equal((await classify('ext2')).length, TEXTS.length);
  } finally {
    await server.close();
  }
});

test('a variant whose external data is missing or differs from its hash is refused, naming the file', async () => {
  const copyRoot = mkdtempSync(join(tmpdir(), 'slim-external-bad-'));
  try {
    cpSync(join(repo, 'ext'), join(copyRoot, 'ext'), { recursive: true });
    const dataFile = join(copyRoot, 'ext', 'k1', 'model.onnx.data');
    const bytes = readFileSync(dataFile);
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(dataFile, bytes);
    await assert.rejects(
      readVariant(join(copyRoot, 'ext'), 'ext', 'k1'),
      /model\.onnx\.data: sha256 [0-9a-f]{64} differs from the manifest's externalData sha256/,
    );
    await assert.rejects(readManifest(join(copyRoot, 'ext', 'k1'), { verifyOnnx: true }), /externalData model\.onnx\.data: sha256 .* does not match the file/);
    rmSync(dataFile);
    await assert.rejects(readVariant(join(copyRoot, 'ext'), 'ext', 'k1'), /model\.onnx\.data \(external data of model\.onnx\) is missing/);
  } finally {
    rmSync(copyRoot, { recursive: true, force: true });
  }
});
