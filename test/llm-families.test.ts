// The issue-15 families (qwen2, qwen3, llama with rope_scaling, mistral with its sliding window,
// phi3, gemma2, gemma3_text, roberta, xlm-roberta, distilbert, modernbert) against the float64
// plain-loop reference of test/helpers/hf-reference.ts (written from the HF modelling code; no
// code shared with the graph builder). Random checkpoints carry a released model's config.json
// keys at small dimensions (random-hf.ts names the model each copies) in the real tensor layout,
// fp32 / fp16 / bf16, some sharded; windows are shrunk below the test's sequence lengths so that
// local attention masks something. Exports run in onnxruntime-node on right-padded batches.
// `FAMILY_TABLE=1` prints the family table of docs/checkpoints.md (max errors per depth).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { writeRandomHfCheckpoint, type RandomCheckpointOptions } from '../src/pipeline/checkpoints/random-hf.js';
import { HfCheckpoint } from '../src/pipeline/checkpoints/hf.js';
import { SafetensorsStore } from '../src/pipeline/checkpoints/safetensors.js';
import { exportTransformer } from '../src/pipeline/export-transformer.js';
import { mulberry32 } from '../src/pipeline/random.js';
import { lmLogits, pool, referenceHidden, type Get } from './helpers/hf-reference.js';

const work = mkdtempSync(join(tmpdir(), 'slim-families-'));
after(() => rmSync(work, { recursive: true, force: true }));
const SESSION: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 };
const TABLE = 24;

interface Case {
  label: string;
  opts: RandomCheckpointOptions;
  pooling: 'last' | 'cls' | 'mean';
  /** The LM head tensor label words read, for families that have one. */
  lmHead?: string;
  /** Multimodal checkpoints: the text config the reference reads (HF defaults filled in) and where its tensors live. */
  ref?: { config: (written: Record<string, any>) => Record<string, any>; tensor: (name: string) => string };
}

const llama3Scaling = { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192, rope_type: 'llama3' };
const CASES: Case[] = [
  {
    label: 'qwen2 (Qwen2.5) bf16 sharded',
    opts: { arch: 'qwen2', layers: 3, hidden: 32, heads: 4, kvHeads: 2, ffn: 48, vocab: 61, maxPositions: 64, seed: 21, dtype: 'BF16', shards: 2 },
    pooling: 'last',
    lmHead: 'model.embed_tokens.weight',
  },
  {
    label: 'qwen3 fp16 untied',
    opts: {
      arch: 'qwen3',
      layers: 3,
      hidden: 32,
      heads: 4,
      kvHeads: 2,
      headDim: 16,
      ffn: 48,
      vocab: 61,
      maxPositions: 64,
      seed: 22,
      dtype: 'F16',
      untiedHead: true,
    },
    pooling: 'last',
    lmHead: 'lm_head.weight',
  },
  {
    label: 'llama 3.2 rope_scaling llama3 bf16',
    opts: {
      arch: 'llama',
      layers: 3,
      hidden: 32,
      heads: 4,
      kvHeads: 1,
      ffn: 48,
      vocab: 61,
      maxPositions: 64,
      seed: 23,
      dtype: 'BF16',
      untiedHead: false,
      extraConfig: { rope_theta: 500000, rope_scaling: llama3Scaling, bos_token_id: 60, eos_token_id: [59, 58] },
    },
    pooling: 'last',
    lmHead: 'model.embed_tokens.weight',
  },
  {
    label: 'llama rope_scaling linear fp32',
    opts: {
      arch: 'llama',
      layers: 2,
      hidden: 32,
      heads: 4,
      vocab: 61,
      maxPositions: 64,
      seed: 24,
      extraConfig: { rope_scaling: { type: 'linear', factor: 4 } },
    },
    pooling: 'last',
    lmHead: 'lm_head.weight',
  },
  {
    label: 'llama rope_scaling dynamic fp32',
    opts: {
      arch: 'llama',
      layers: 2,
      hidden: 32,
      heads: 4,
      vocab: 61,
      maxPositions: 64,
      seed: 25,
      extraConfig: { rope_scaling: { type: 'dynamic', factor: 2 } },
    },
    pooling: 'last',
    lmHead: 'lm_head.weight',
  },
  {
    label: 'mistral sliding_window 4 bf16',
    opts: {
      arch: 'mistral',
      layers: 3,
      hidden: 32,
      heads: 4,
      kvHeads: 2,
      ffn: 48,
      vocab: 61,
      maxPositions: 64,
      seed: 26,
      dtype: 'BF16',
      extraConfig: { sliding_window: 4 },
    },
    pooling: 'last',
    lmHead: 'lm_head.weight',
  },
  {
    label: 'phi3 fused qkv/gate_up sliding_window 5 fp16',
    opts: {
      arch: 'phi3',
      layers: 3,
      hidden: 32,
      heads: 4,
      kvHeads: 2,
      ffn: 48,
      vocab: 61,
      maxPositions: 64,
      seed: 27,
      dtype: 'F16',
      extraConfig: { sliding_window: 5 },
    },
    pooling: 'last',
    lmHead: 'lm_head.weight',
  },
  {
    label: 'phi3 longrope (Phi-3.5) fp32',
    opts: {
      arch: 'phi3',
      layers: 2,
      hidden: 32,
      heads: 4,
      ffn: 48,
      vocab: 61,
      maxPositions: 128,
      seed: 28,
      extraConfig: { original_max_position_embeddings: 32, rope_scaling: { type: 'longrope', short_factor: [1, 1.2, 1.7, 3.1], long_factor: [2, 4, 8, 16] } },
    },
    pooling: 'last',
    lmHead: 'lm_head.weight',
  },
  {
    label: 'gemma2 softcaps, alternating window 4, fp32',
    opts: {
      arch: 'gemma2',
      layers: 3,
      hidden: 32,
      heads: 4,
      kvHeads: 2,
      headDim: 16,
      ffn: 48,
      vocab: 61,
      maxPositions: 64,
      seed: 29,
      extraConfig: { sliding_window: 4, query_pre_attn_scalar: 24, attn_logit_softcapping: 5, final_logit_softcapping: 3 },
    },
    pooling: 'last',
    lmHead: 'model.embed_tokens.weight',
  },
  {
    label: 'gemma3_text q/k norm, local rope, global linear rope_scaling, pattern 2 window 4, bf16 sharded',
    opts: {
      arch: 'gemma3_text',
      layers: 3,
      hidden: 32,
      heads: 4,
      kvHeads: 1,
      headDim: 16,
      ffn: 48,
      vocab: 61,
      maxPositions: 64,
      seed: 30,
      dtype: 'BF16',
      shards: 3,
      extraConfig: { sliding_window: 4, sliding_window_pattern: 2, rope_scaling: { rope_type: 'linear', factor: 8 } },
    },
    pooling: 'last',
    lmHead: 'model.embed_tokens.weight',
  },
  {
    label: 'gemma3 multimodal (gemma-3-4b layout: sparse text_config, language_model.model.*), pattern 6, bf16 sharded',
    opts: {
      arch: 'gemma3',
      layers: 7,
      hidden: 32,
      heads: 4,
      kvHeads: 2,
      headDim: 8,
      ffn: 48,
      vocab: 61,
      maxPositions: 64,
      seed: 35,
      dtype: 'BF16',
      shards: 2,
      extraConfig: { sliding_window: 4 },
    },
    pooling: 'last',
    lmHead: 'model.embed_tokens.weight',
    // Gemma3TextConfig defaults for what gemma-3-4b's text_config leaves out.
    ref: {
      config: (w) => ({ rms_norm_eps: 1e-6, rope_theta: 1e6, rope_local_base_freq: 10000, sliding_window_pattern: 6, ...w.text_config }),
      tensor: (n) => (n.startsWith('model.') ? `language_model.${n}` : n),
    },
  },
  { label: 'roberta fp32', opts: { arch: 'roberta', layers: 3, hidden: 32, heads: 4, vocab: 61, maxPositions: 24, seed: 31 }, pooling: 'cls' },
  {
    label: 'xlm-roberta bf16 sharded',
    opts: { arch: 'xlm-roberta', layers: 3, hidden: 32, heads: 4, vocab: 61, maxPositions: 24, seed: 32, dtype: 'BF16', shards: 2 },
    pooling: 'cls',
  },
  {
    label: 'distilbert fp16',
    opts: { arch: 'distilbert', layers: 3, hidden: 32, heads: 4, vocab: 61, maxPositions: 24, seed: 33, dtype: 'F16' },
    pooling: 'cls',
  },
  {
    label: 'modernbert global/local window 3 fp32 sharded',
    opts: {
      arch: 'modernbert',
      layers: 4,
      hidden: 32,
      heads: 4,
      ffn: 48,
      vocab: 61,
      maxPositions: 64,
      seed: 34,
      shards: 2,
      extraConfig: { local_attention: 6 },
    },
    pooling: 'mean',
  },
];

function randomIds(n: number, vocab: number, seed: number): number[] {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, () => Math.floor(rng() * vocab));
}

function padBatch(seqs: number[][], padId: number): { ids: ort.Tensor; mask: ort.Tensor; S: number } {
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

const table: string[] = [];

for (const c of CASES) {
  test(`${c.label}: hidden states at depths 1, 2, full, the default (${c.pooling}) pooled head${c.lmHead ? ' and label words' : ''} equal the reference on a right-padded batch`, async () => {
    const dir = join(work, c.label.replace(/[^a-z0-9]+/gi, '-'));
    const written = writeRandomHfCheckpoint(dir, c.opts);
    const cfg = c.ref ? c.ref.config(written.config) : (written.config as Record<string, any>);
    const ckpt = new HfCheckpoint(dir);
    assert.equal(ckpt.config.pooling ?? 'last', c.pooling, 'default pooling of the family');
    const store = SafetensorsStore.open(dir);
    const cache = new Map<string, Float64Array>();
    const get: Get = (n) => {
      let v = cache.get(n);
      if (!v) cache.set(n, (v = Float64Array.from(store.read(c.ref ? c.ref.tensor(n) : n).data)));
      return v;
    };
    const W = c.opts.hidden;
    const seqs = [randomIds(9, c.opts.vocab, 11), randomIds(4, c.opts.vocab, 12), randomIds(1, c.opts.vocab, 13), randomIds(7, c.opts.vocab, 14)];
    const pad = typeof cfg.pad_token_id === 'number' ? cfg.pad_token_id % c.opts.vocab : 0;
    const { ids, mask, S } = padBatch(seqs, pad);
    const errors: string[] = [];
    for (const depth of [1, 2, c.opts.layers]) {
      const file = join(dir, `k${depth}.onnx`);
      exportTransformer(ckpt, { depth, head: { kind: 'hidden' }, outFile: file, tableLength: TABLE });
      const session = await ort.InferenceSession.create(file, SESSION);
      const out = (await session.run({ input_ids: ids, attention_mask: mask })).hidden!;
      assert.deepEqual(out.dims, [seqs.length, S, W]);
      const data = out.data as Float32Array;
      let worst = 0;
      seqs.forEach((s, b) => {
        referenceHidden(cfg, get, s, depth).forEach(
          (row, i) => (worst = Math.max(worst, maxAbsDiff(row, data.subarray((b * S + i) * W, (b * S + i + 1) * W)))),
        );
      });
      errors.push(worst.toExponential(1));
      assert.ok(worst < 1e-4, `${c.label} depth ${depth}: max |onnx - reference| = ${worst}`);
      await session.release();
    }
    // A linear head on the family's default pooling, at depth 2.
    const L = 3;
    const weight = { dims: [W, L], data: Float32Array.from({ length: W * L }, (_, i) => Math.sin(i + 1) * 0.3) };
    const bias = { dims: [L], data: Float32Array.of(0.1, -0.2, 0.05) };
    const headFile = join(dir, 'head.onnx');
    exportTransformer(ckpt, { depth: 2, head: { kind: 'last', weight, bias }, outFile: headFile, tableLength: TABLE });
    const hs = await ort.InferenceSession.create(headFile, SESSION);
    const logits = (await hs.run({ input_ids: ids, attention_mask: mask })).logits!;
    assert.deepEqual(logits.dims, [seqs.length, L]);
    const cap = cfg.final_logit_softcapping as number | null | undefined;
    let headErr = 0;
    seqs.forEach((s, b) => {
      const v = pool(referenceHidden(cfg, get, s, 2), c.pooling);
      for (let l = 0; l < L; l++) {
        let z = 0;
        for (let k = 0; k < W; k++) z += v[k]! * weight.data[k * L + l]!;
        if (typeof cap === 'number') z = cap * Math.tanh(z / cap);
        headErr = Math.max(headErr, Math.abs(z + bias.data[l]! - (logits.data as Float32Array)[b * L + l]!));
      }
    });
    assert.ok(headErr < 1e-4, `${c.label} ${c.pooling}-pooled head: ${headErr}`);
    await hs.release();
    let lwErr = 'n/a';
    if (c.lmHead) {
      const words = [5, 17, 42];
      const lwFile = join(dir, 'lw.onnx');
      exportTransformer(ckpt, { depth: 2, head: { kind: 'label-words', ids: words }, outFile: lwFile, tableLength: TABLE });
      const lw = await ort.InferenceSession.create(lwFile, SESSION);
      const got = (await lw.run({ input_ids: ids, attention_mask: mask })).logits!.data as Float32Array;
      let worst = 0;
      seqs.forEach((s, b) => {
        const h = referenceHidden(cfg, get, s, 2);
        worst = Math.max(worst, maxAbsDiff(lmLogits(cfg, get(c.lmHead!), h[h.length - 1]!, words), got.subarray(b * 3, b * 3 + 3)));
      });
      assert.ok(worst < 1e-4, `${c.label} label-word logits: ${worst}`);
      lwErr = worst.toExponential(1);
      await lw.release();
    }
    table.push(`| ${c.label} | ${errors.join(' / ')} | ${c.pooling} ${headErr.toExponential(1)} | ${lwErr} |`);
    store.close();
    ckpt.close();
  });
}

test("pooling is overridable: cls, mean and last on one checkpoint give the reference's vectors", async () => {
  const c = CASES.find((x) => x.opts.arch === 'modernbert')!;
  const dir = join(work, 'pool-override');
  const written = writeRandomHfCheckpoint(dir, { ...c.opts, extraConfig: { ...c.opts.extraConfig, classifier_pooling: 'cls' } });
  const ckpt = new HfCheckpoint(dir);
  assert.equal(ckpt.config.pooling, 'cls', 'classifier_pooling "cls" in config.json');
  const store = SafetensorsStore.open(dir);
  const get: Get = (n) => Float64Array.from(store.read(n).data);
  const W = c.opts.hidden;
  const seqs = [randomIds(6, 61, 41), randomIds(2, 61, 42)];
  const { ids, mask } = padBatch(seqs, 0);
  const weight = { dims: [W, 1], data: Float32Array.from({ length: W }, (_, i) => Math.cos(i)) };
  const bias = { dims: [1], data: Float32Array.of(0) };
  const outs: number[][] = [];
  for (const pooling of ['cls', 'mean', 'last'] as const) {
    const file = join(dir, `${pooling}.onnx`);
    exportTransformer(ckpt, { depth: 1, head: { kind: 'last', weight, bias }, outFile: file, tableLength: TABLE, pooling });
    const s = await ort.InferenceSession.create(file, SESSION);
    const got = Array.from((await s.run({ input_ids: ids, attention_mask: mask })).logits!.data as Float32Array);
    seqs.forEach((q, b) => {
      const v = pool(referenceHidden(written.config as Record<string, any>, get, q, 1), pooling);
      const want = v.reduce((acc, x, k) => acc + x * weight.data[k]!, 0);
      assert.ok(Math.abs(want - got[b]!) < 1e-4, `${pooling} row ${b}: ${want} vs ${got[b]}`);
    });
    outs.push(got);
    await s.release();
  }
  assert.ok(maxAbsDiff(outs[0]!, outs[1]!) > 1e-3 && maxAbsDiff(outs[1]!, outs[2]!) > 1e-3, 'the three poolings differ');
  store.close();
  ckpt.close();
});

test('rope_scaling types that cannot be honoured, and unsupported switches, are refused by name', () => {
  const cases: [RandomCheckpointOptions, RegExp][] = [
    [
      { arch: 'llama', layers: 1, hidden: 16, heads: 2, vocab: 11, extraConfig: { rope_scaling: { rope_type: 'yarn', factor: 4 } } },
      /llama: rope_scaling type "yarn" is not supported \(supported: linear, dynamic, llama3\)/,
    ],
    [{ arch: 'qwen2', layers: 1, hidden: 16, heads: 2, vocab: 11, extraConfig: { use_sliding_window: true } }, /qwen2: use_sliding_window is not supported/],
    [
      { arch: 'phi3', layers: 1, hidden: 16, heads: 2, vocab: 11, extraConfig: { partial_rotary_factor: 0.75 } },
      /phi3: partial_rotary_factor 0.75 is not supported/,
    ],
    [
      { arch: 'gemma2', layers: 1, hidden: 16, heads: 2, vocab: 11, extraConfig: { hidden_activation: 'relu', hidden_act: 'relu' } },
      /gemma2: hidden_activation relu is not supported/,
    ],
  ];
  cases.forEach(([opts, re], i) => {
    const dir = join(work, `refuse-${i}`);
    writeRandomHfCheckpoint(dir, opts);
    assert.throws(() => new HfCheckpoint(dir), re);
  });
});

test('a sliding window no sequence can exceed adds no mask table; one that can, does', () => {
  const dir = join(work, 'mistral-window-30');
  writeRandomHfCheckpoint(dir, { arch: 'mistral', layers: 1, hidden: 16, heads: 2, vocab: 11, seed: 3, extraConfig: { sliding_window: 30 } });
  const ckpt = new HfCheckpoint(dir);
  assert.equal(ckpt.config.window, 30);
  const has = (tableLength: number) => {
    const file = join(dir, `t${tableLength}.onnx`);
    exportTransformer(ckpt, { depth: 1, head: { kind: 'hidden' }, outFile: file, tableLength });
    return readFileSync(file).includes('tables.local_bias');
  };
  assert.equal(has(30), false);
  assert.equal(has(31), true);
  ckpt.close();
});

after(() => {
  if (process.env.FAMILY_TABLE)
    process.stdout.write(`\n| case | hidden max error, depth 1 / 2 / full | pooled head | label words |\n|---|---|---|---|\n${table.join('\n')}\n`);
});
