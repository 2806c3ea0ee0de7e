// gpt2, opt, llama (GQA) and bert exports against the plain-loop reference implementation of
// test/helpers/hf-reference.ts, written from the Hugging Face modelling code's definitions
// (float64 loops over the HF-named tensors; it shares no code with the graph builder). Checkpoints are random, written by the
// test in HF layout (safetensors: fp32, fp16, bf16, sharded), exported at depths 1, 2 and full,
// and run by onnxruntime-node on right-padded batches.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { writeRandomHfCheckpoint, type RandomCheckpointOptions } from '../src/pipeline/checkpoints/random-hf.js';
import { HfCheckpoint } from '../src/pipeline/checkpoints/hf.js';
import { SafetensorsStore, floatToBf16, floatToHalf, halfToFloat, writeSafetensors } from '../src/pipeline/checkpoints/safetensors.js';
import { exportTransformer, exportRandomGpt2Classifier } from '../src/pipeline/export-transformer.js';
import { mulberry32 } from '../src/pipeline/random.js';
import { referenceHidden, type Get } from './helpers/hf-reference.js';

const work = mkdtempSync(join(tmpdir(), 'slim-llm-arch-'));
after(() => rmSync(work, { recursive: true, force: true }));

function randomIds(n: number, vocab: number, seed: number): number[] {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, () => Math.floor(rng() * vocab));
}

function padBatch(seqs: number[][], padId = 0): { ids: ort.Tensor; mask: ort.Tensor; S: number } {
  const S = Math.max(...seqs.map((s) => s.length));
  const ids = new BigInt64Array(seqs.length * S).fill(BigInt(padId));
  const mask = new BigInt64Array(seqs.length * S);
  seqs.forEach((s, b) => s.forEach((t, i) => ((ids[b * S + i] = BigInt(t)), (mask[b * S + i] = 1n))));
  return { ids: new ort.Tensor('int64', ids, [seqs.length, S]), mask: new ort.Tensor('int64', mask, [seqs.length, S]), S };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

interface Case {
  label: string;
  opts: RandomCheckpointOptions;
}

const CASES: Case[] = [
  { label: 'gpt2 fp32', opts: { arch: 'gpt2', layers: 3, hidden: 32, heads: 4, vocab: 61, maxPositions: 24, seed: 1 } },
  { label: 'opt fp32', opts: { arch: 'opt', layers: 3, hidden: 32, heads: 4, vocab: 61, maxPositions: 24, seed: 2 } },
  {
    label: 'opt post-LN (do_layer_norm_before=false) fp16',
    opts: { arch: 'opt', layers: 3, hidden: 32, heads: 2, vocab: 61, maxPositions: 24, seed: 3, dtype: 'F16', extraConfig: { do_layer_norm_before: false } },
  },
  {
    label: 'llama GQA bf16 sharded',
    opts: { arch: 'llama', layers: 3, hidden: 32, heads: 4, kvHeads: 2, ffn: 40, vocab: 61, maxPositions: 24, seed: 4, dtype: 'BF16', shards: 3 },
  },
  {
    label: 'llama GQA fp32 tied',
    opts: { arch: 'llama', layers: 3, hidden: 48, heads: 6, kvHeads: 3, vocab: 61, maxPositions: 24, seed: 5, untiedHead: false },
  },
  { label: 'bert fp16', opts: { arch: 'bert', layers: 3, hidden: 32, heads: 4, vocab: 61, maxPositions: 24, seed: 6, dtype: 'F16' } },
];

const SESSION: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 };

for (const c of CASES) {
  test(`${c.label}: hidden states equal the plain-loop reference at depths 1, 2 and full, on a right-padded batch`, async () => {
    const dir = join(work, c.label.replace(/[^a-z0-9]+/gi, '-'));
    const written = writeRandomHfCheckpoint(dir, c.opts);
    const ckpt = new HfCheckpoint(dir);
    const store = SafetensorsStore.open(dir);
    const cache = new Map<string, Float64Array>();
    const get: Get = (n) => {
      let v = cache.get(n);
      if (!v) cache.set(n, (v = Float64Array.from(store.read(n).data)));
      return v;
    };
    const W = c.opts.hidden;
    const seqs = [randomIds(9, c.opts.vocab, 11), randomIds(4, c.opts.vocab, 12), randomIds(1, c.opts.vocab, 13), randomIds(7, c.opts.vocab, 14)];
    const { ids, mask, S } = padBatch(seqs);
    for (const depth of [1, 2, c.opts.layers]) {
      const file = join(dir, `k${depth}.onnx`);
      exportTransformer(ckpt, { depth, head: { kind: 'hidden' }, outFile: file, tableLength: 24 });
      const session = await ort.InferenceSession.create(file, SESSION);
      const out = (await session.run({ input_ids: ids, attention_mask: mask })).hidden!;
      assert.deepEqual(out.dims, [seqs.length, S, W]);
      const data = out.data as Float32Array;
      let worst = 0;
      seqs.forEach((s, b) => {
        const ref = referenceHidden(written.config as Record<string, any>, get, s, depth);
        ref.forEach((row, i) => (worst = Math.max(worst, maxAbsDiff(row, data.subarray((b * S + i) * W, (b * S + i + 1) * W)))));
      });
      assert.ok(worst < 1e-4, `${c.label} depth ${depth}: max |onnx - reference| = ${worst}`);
      await session.release();
    }
    store.close();
    ckpt.close();
  });
}

test('LM logits and the label-word head at the last real token match the reference (llama untied, gpt2 tied)', async () => {
  for (const c of [CASES[3]!, CASES[0]!]) {
    const dir = join(work, `lm-${c.opts.arch}`);
    const written = writeRandomHfCheckpoint(dir, c.opts);
    const ckpt = new HfCheckpoint(dir);
    const store = SafetensorsStore.open(dir);
    const get: Get = (n) => Float64Array.from(store.read(n).data);
    const W = c.opts.hidden,
      V = c.opts.vocab;
    const headName = c.opts.arch === 'llama' ? 'lm_head.weight' : 'transformer.wte.weight';
    const head = get(headName);
    const seqs = [randomIds(6, V, 21), randomIds(3, V, 22)];
    const { ids, mask, S } = padBatch(seqs);
    const depth = 2;
    const lmFile = join(dir, 'lm.onnx');
    exportTransformer(ckpt, { depth, head: { kind: 'lm' }, outFile: lmFile, tableLength: 24 });
    const words = [5, 17, 42];
    const lwFile = join(dir, 'lw.onnx');
    exportTransformer(ckpt, { depth, head: { kind: 'label-words', ids: words }, outFile: lwFile, tableLength: 24 });
    const lm = await ort.InferenceSession.create(lmFile, SESSION);
    const lw = await ort.InferenceSession.create(lwFile, SESSION);
    const logits = (await lm.run({ input_ids: ids, attention_mask: mask })).logits!;
    const cls = (await lw.run({ input_ids: ids, attention_mask: mask })).logits!;
    assert.deepEqual(logits.dims, [2, S, V]);
    assert.deepEqual(cls.dims, [2, words.length]);
    seqs.forEach((s, b) => {
      const h = referenceHidden(written.config as Record<string, any>, get, s, depth);
      h.forEach((row, i) => {
        const want = Array.from({ length: V }, (_, v) => row.reduce((acc, x, k) => acc + x * head[v * W + k]!, 0));
        const got = (logits.data as Float32Array).subarray((b * S + i) * V, (b * S + i + 1) * V);
        const d = maxAbsDiff(want, got);
        assert.ok(d < 1e-4, `${c.label} lm logits row ${b} pos ${i}: ${d}`);
        if (i === s.length - 1) {
          const d2 = maxAbsDiff(
            words.map((w) => want[w]!),
            (cls.data as Float32Array).subarray(b * words.length, (b + 1) * words.length),
          );
          assert.ok(d2 < 1e-4, `${c.label} label-word logits row ${b}: ${d2}`);
        }
      });
    });
    await lm.release();
    await lw.release();
    store.close();
    ckpt.close();
  }
});

test('safetensors: fp16/bf16 conversion round trips, header-only open, row reads, sharded index', () => {
  for (const v of [0, 1, -2.5, 0.1, 65504, 6.1e-5, 3e-7]) {
    assert.ok(Math.abs(halfToFloat(floatToHalf(v)) - v) <= Math.abs(v) * 1e-3 + 6e-8, `fp16 ${v}`);
    const bf = new Float32Array(new Uint32Array([floatToBf16(v) << 16]).buffer)[0]!;
    assert.ok(Math.abs(bf - v) <= Math.abs(v) * 8e-3, `bf16 ${v}`);
  }
  const file = join(work, 'rows.safetensors');
  const a = Float32Array.from({ length: 12 }, (_, i) => i * 0.5);
  writeSafetensors(
    file,
    [
      { name: 'a', dims: [4, 3] },
      { name: 'b', dims: [2], dtype: 'F16' },
    ],
    (n) => (n === 'a' ? a : Float32Array.of(1.5, -2)),
  );
  const s = SafetensorsStore.open(file);
  assert.equal(s.bytesRead, 0);
  assert.deepEqual(Array.from(s.readRows('a', 1, 3).data), [1.5, 2, 2.5, 3, 3.5, 4]);
  assert.deepEqual(Array.from(s.read('b').data), [1.5, -2]);
  assert.equal(s.bytesRead, 6 * 4 + 4);
  s.close();
  assert.throws(() => new HfCheckpoint(work), /config\.json/);
});

test('exportRandomGpt2Classifier: spec I/O, logits at the last real token independent of right padding', async () => {
  const file = join(work, 'rand-gpt2', 'model.onnx');
  const r = exportRandomGpt2Classifier({ layers: 2, width: 64, heads: 4, vocab: 100, numLabels: 3, outPath: file });
  assert.ok(statSync(file).size === r.bytes);
  const s = await ort.InferenceSession.create(file, SESSION);
  assert.deepEqual(s.inputNames, ['input_ids', 'attention_mask']);
  assert.deepEqual(s.outputNames, ['logits']);
  const one = padBatch([[5, 6, 7]]);
  const padded = padBatch([
    [5, 6, 7],
    [1, 2, 3, 4, 5, 6],
  ]);
  const a = (await s.run({ input_ids: one.ids, attention_mask: one.mask })).logits!.data as Float32Array;
  const b = (await s.run({ input_ids: padded.ids, attention_mask: padded.mask })).logits!.data as Float32Array;
  assert.ok(maxAbsDiff(a, b.subarray(0, 3)) < 1e-5);
  assert.ok(maxAbsDiff(b.subarray(0, 3), b.subarray(3, 6)) > 1e-4, 'different texts give different logits');
  await s.release();
});

test('external data: an export over the threshold keeps weights in <file>.data and still runs', async () => {
  const dir = join(work, 'ext');
  writeRandomHfCheckpoint(dir, CASES[0]!.opts);
  const ckpt = new HfCheckpoint(dir);
  const inline = exportTransformer(ckpt, { depth: 2, head: { kind: 'hidden' }, outFile: join(dir, 'in.onnx'), tableLength: 24 });
  const ext = exportTransformer(ckpt, { depth: 2, head: { kind: 'hidden' }, outFile: join(dir, 'ext.onnx'), tableLength: 24, externalDataThreshold: 1000 });
  assert.ok(ext.dataFile && statSync(ext.dataFile).size > statSync(ext.file).size);
  const { ids, mask } = padBatch([[1, 2, 3]]);
  const a = await ort.InferenceSession.create(inline.file, SESSION);
  const b = await ort.InferenceSession.create(ext.file, SESSION);
  const ha = (await a.run({ input_ids: ids, attention_mask: mask })).hidden!.data as Float32Array;
  const hb = (await b.run({ input_ids: ids, attention_mask: mask })).hidden!.data as Float32Array;
  assert.equal(maxAbsDiff(ha, hb), 0);
  ckpt.close();
});

test('prompt template inside the graph: plain ids in give the logits of the template-wrapped ids, per row, with right padding', async () => {
  const dir = join(work, 'template');
  writeRandomHfCheckpoint(dir, CASES[3]!.opts);
  const ckpt = new HfCheckpoint(dir);
  const template = { prefix: [1, 7, 8], suffix: [9, 10], padId: 0 };
  const weight = { dims: [32, 2], data: Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)) };
  const bias = { dims: [2], data: Float32Array.of(0.1, -0.2) };
  const withT = exportTransformer(ckpt, { depth: 2, head: { kind: 'last', weight, bias }, outFile: join(dir, 't.onnx'), tableLength: 24, template });
  const plain = exportTransformer(ckpt, { depth: 2, head: { kind: 'last', weight, bias }, outFile: join(dir, 'p.onnx'), tableLength: 24 });
  const texts = [[4, 5, 6, 11, 12], [20], [30, 31, 32]];
  const a = await ort.InferenceSession.create(withT.file, SESSION);
  const b = await ort.InferenceSession.create(plain.file, SESSION);
  const raw = padBatch(texts);
  const wrapped = padBatch(texts.map((t) => [...template.prefix, ...t, ...template.suffix]));
  const la = (await a.run({ input_ids: raw.ids, attention_mask: raw.mask })).logits!.data as Float32Array;
  const lb = (await b.run({ input_ids: wrapped.ids, attention_mask: wrapped.mask })).logits!.data as Float32Array;
  assert.equal(la.length, 6);
  assert.ok(maxAbsDiff(la, lb) < 1e-5, `template in graph vs wrapped ids: ${maxAbsDiff(la, lb)}`);
  // Without the template the logits differ: the test can fail.
  const lc = (await b.run({ input_ids: raw.ids, attention_mask: raw.mask })).logits!.data as Float32Array;
  assert.ok(maxAbsDiff(la, lc) > 1e-3);
  ckpt.close();
});
