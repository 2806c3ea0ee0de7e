// builtin:use-lite exported to ONNX against the ORIGINAL TF.js graph model, run by @tensorflow/tfjs
// (pure-JS cpu backend) from the package's files on disk, fed exactly as the reference package's
// embed() feeds it (sparse indices + values from its Tokenizer).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs';
import { Tokenizer } from '@tensorflow-models/universal-sentence-encoder';
import { loadUseLiteCheckpoint, resolveUseLiteDir, type UseLiteCheckpoint } from '../src/pipeline/checkpoints/use-lite.js';
import { buildUseLiteEncoderGraph, useLiteParamSpecs, useLiteParamValues } from '../src/pipeline/architectures/use-lite.js';
import { exportUseLiteEncoder, type ExportEncoderResult } from '../src/pipeline/export-encoder.js';
import { SHARED_DATA } from './helpers/paths.js';

const PKG_DIR = resolveUseLiteDir();
const TF_HIDDEN_1 = 'module_apply_default/Encoder_en/KonaTransformer/Encode/TransformerStack/Layer_0/TransformerLayer/FFN/layer_postprocess/add';
const TF_HIDDEN_2 = 'module_apply_default/Encoder_en/KonaTransformer/Encode/TransformerStack/Layer_1/TransformerLayer/FFN/layer_postprocess/add';
const TF_FEATURES = 'module_apply_default/Encoder_en/hidden_layers/tanh_layer_0/Tanh';
const TF_BATCH = 16;

interface Fixture {
  ckpt: UseLiteCheckpoint;
  tokenizer: Tokenizer;
  k1: ort.InferenceSession;
  k2: ort.InferenceSession;
  exports: ExportEncoderResult[];
  workDir: string;
}

let fixturePromise: Promise<Fixture> | undefined;
function fixture(): Promise<Fixture> {
  fixturePromise ??= (async () => {
    const workDir = mkdtempSync(join(tmpdir(), 'slim-uselite-'));
    const ckpt = loadUseLiteCheckpoint();
    const exports = [1, 2].map((k) => exportUseLiteEncoder(k, join(workDir, `k${k}.onnx`), { checkpoint: ckpt, intermediates: true }));
    const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2, interOpNumThreads: 1 };
    const [k1, k2] = await Promise.all(exports.map((e) => ort.InferenceSession.create(e.file, opts)));
    return { ckpt, tokenizer: new Tokenizer(ckpt.vocabulary as Array<[string, number]>), k1: k1!, k2: k2!, exports, workDir };
  })();
  return fixturePromise;
}

// ---------------------------------------------------------------- the original model (TF.js)

async function loadTfjsModel(): Promise<tf.GraphModel> {
  await tf.setBackend('cpu');
  tf.enableProdMode();
  const modelJson = JSON.parse(readFileSync(join(PKG_DIR, 'model.json'), 'utf8'));
  const groups = modelJson.weightsManifest as Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
  const bytes = Buffer.concat(groups.flatMap((g) => g.paths.map((p) => readFileSync(join(PKG_DIR, p)))));
  return tf.loadGraphModel(
    tf.io.fromMemory({
      modelTopology: modelJson.modelTopology,
      weightSpecs: groups.flatMap((g) => g.weights),
      weightData: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    }),
  );
}

interface TfOutputs {
  embedding: Float32Array; // [b, 512]
  features: Float32Array; // [b, 512]
  hidden1: Float32Array; // [b, denseSeq, 512]
  hidden2: Float32Array;
  denseSeq: number;
}

/** The reference package's embed(): indices [i, position], values = ids, in row-major order. */
async function runTfjs(model: tf.GraphModel, encodings: number[][]): Promise<TfOutputs> {
  const indices = encodings.flatMap((ids, i) => ids.map((_, j) => [i, j]));
  const inputs = {
    indices: tf.tensor2d(indices, [indices.length, 2], 'int32'),
    values: tf.tensor1d(encodings.flat(), 'int32'),
  };
  const outNames = [model.outputNodes[0]!, TF_FEATURES, TF_HIDDEN_1, TF_HIDDEN_2];
  const outs = (await model.executeAsync(inputs, outNames)) as tf.Tensor[];
  const data = await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
  assert.equal(outs[0]!.shape[0], encodings.length, 'TF.js returned one embedding per text');
  const denseSeq = outs[2]!.shape[1]!;
  tf.dispose([...outs, inputs.indices, inputs.values]);
  return { embedding: data[0]!, features: data[1]!, hidden1: data[2]!, hidden2: data[3]!, denseSeq };
}

// ---------------------------------------------------------------- our ONNX encoders

interface OrtOutputs {
  embedding: Float32Array;
  features: Float32Array;
  hidden: Float32Array[]; // [b, clippedSeq, 512] per block
  clippedSeq: number;
}

/** Right-padded dense batch; `padTo` pads further than the longest text. */
function denseBatch(encodings: number[][], padTo = 0): Record<string, ort.Tensor> {
  const seq = Math.max(1, padTo, ...encodings.map((e) => e.length));
  const ids = new BigInt64Array(encodings.length * seq);
  const mask = new BigInt64Array(encodings.length * seq);
  encodings.forEach((e, i) =>
    e.forEach((id, j) => {
      ids[i * seq + j] = BigInt(id);
      mask[i * seq + j] = 1n;
    }),
  );
  return {
    input_ids: new ort.Tensor('int64', ids, [encodings.length, seq]),
    attention_mask: new ort.Tensor('int64', mask, [encodings.length, seq]),
  };
}

async function runOrt(session: ort.InferenceSession, encodings: number[][], padTo = 0): Promise<OrtOutputs> {
  const out = await session.run(denseBatch(encodings, padTo));
  const hidden = session.outputNames
    .filter((n) => n.startsWith('hidden_'))
    .sort()
    .map((n) => out[n]!.data as Float32Array);
  return {
    embedding: out.embedding!.data as Float32Array,
    features: out.features!.data as Float32Array,
    hidden,
    clippedSeq: out.hidden_1!.dims[1]!,
  };
}

// ---------------------------------------------------------------- comparisons

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'compared arrays have the same length');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Max |a - b| over the real (unpadded, unclipped) token positions of each text. */
function maskedHiddenDiff(
  a: Float32Array,
  seqA: number,
  b: Float32Array,
  seqB: number,
  lengths: number[],
  width: number,
  maxLength: number,
): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  lengths.forEach((len, i) => {
    for (let j = 0; j < Math.min(len, maxLength); j++) {
      for (let c = 0; c < width; c++) {
        const x = a[(i * seqA + j) * width + c]!;
        const y = b[(i * seqB + j) * width + c]!;
        diff = Math.max(diff, Math.abs(x - y));
        scale = Math.max(scale, Math.abs(y));
      }
    }
  });
  return { diff, scale };
}

/** An independent (float64, plain loops) pooling + tanh + L2 head over a hidden state. */
function headInJs(ckpt: UseLiteCheckpoint, hidden: Float32Array, seq: number, lengths: number[]): { features: Float64Array; embedding: Float64Array } {
  const { weight, bias } = ckpt.pooler;
  const [inW, outW] = weight.dims as [number, number];
  const features = new Float64Array(lengths.length * outW);
  const embedding = new Float64Array(lengths.length * outW);
  lengths.forEach((len, i) => {
    const n = Math.min(len, ckpt.config.maxLength);
    const pooled = new Float64Array(inW);
    for (let j = 0; j < n; j++) for (let c = 0; c < inW; c++) pooled[c]! += hidden[(i * seq + j) * inW + c]!;
    for (let c = 0; c < inW; c++) pooled[c]! /= Math.max(n, 1);
    let norm2 = 0;
    for (let o = 0; o < outW; o++) {
      let s = bias.data[o]!;
      for (let c = 0; c < inW; c++) s += pooled[c]! * weight.data[c * outW + o]!;
      features[i * outW + o] = Math.tanh(s);
      norm2 += Math.tanh(s) ** 2;
    }
    for (let o = 0; o < outW; o++) embedding[i * outW + o] = features[i * outW + o]! / Math.sqrt(Math.max(norm2, ckpt.config.l2Eps));
  });
  return { features, embedding };
}

// ---------------------------------------------------------------- the parity sentences

function readTexts(file: string, count: number, stride = 1): string[] {
  const lines = readFileSync(resolve(SHARED_DATA, file), 'utf8')
    .split('\n')
    .filter((l) => l.trim());
  const out: string[] = [];
  for (let i = 0; i < lines.length && out.length < count; i += stride) out.push((JSON.parse(lines[i]!) as { text: string }).text);
  return out;
}

/**
 * About 210 texts. TF.js pure JS costs ~16 ms per token, so the set mixes many short texts with a
 * few over the 128-token limit rather than many long ones (~4,700 tokens, ~75 s).
 */
function paritySentences(tokenizer: Tokenizer): string[] {
  const agnews = readTexts('agnews/test.jsonl', 18, 97); // 10 for over-long concatenations, 8 alone
  const repeated = (n: number) => Array.from({ length: n }, (_, i) => ['cat', 'dog', 'sun'][i % 3]).join(' ');
  const handmade = [
    '',
    'x',
    'a',
    '?',
    '.',
    '!!!',
    '...',
    '   ',
    'Hello, world!',
    'hello world',
    'HELLO WORLD',
    "it's (really) 100% great -- isn't it?!",
    'naïve café, résumé and crème brûlée',
    'Grüße aus Köln',
    '東京は日本の首都です',
    'Привет, мир',
    'Ελληνικά γράμματα',
    'I love it 😀😀 👍🏻',
    'ﬁne ligatures ½ ＦＵＬＬＷＩＤＴＨ',
    'see http://example.com :) or :( maybe :-)',
    'tab\tand\nnewline',
    'word',
    'The',
    'unbelievably',
    // At and past the 128-token limit: the graph keeps the first 128 tokens.
    agnews.slice(0, 10).join(' '),
    repeated(128),
    repeated(129),
  ];
  const texts = [
    ...handmade,
    ...readTexts('sst2/dev.jsonl', 65, 13),
    ...readTexts('tweeteval_emotion/test.jsonl', 30, 47),
    ...readTexts('trec/test.jsonl', 75, 6),
    ...agnews.slice(10),
  ];
  const lengths = texts.map((t) => tokenizer.encode(t).length);
  assert.ok(lengths.filter((l) => l > 128).length >= 2, 'texts exceed 128 tokens');
  assert.ok(
    lengths.includes(128) && lengths.includes(129) && lengths.includes(1) && lengths.includes(0),
    `edge lengths present: ${[...new Set(lengths)].sort((a, b) => a - b)}`,
  );
  assert.ok(
    texts.some((t) => tokenizer.encode(t).includes(0)),
    'some text has an unknown piece (id 0)',
  );
  return texts;
}

// ---------------------------------------------------------------- tests

test('use-lite: k=2 ONNX matches the original TF.js model on 200+ sentences; k=1 matches block 1 + the head', async (t) => {
  const fx = await fixture();
  for (const e of fx.exports) {
    t.diagnostic(`export k=${e.depth}: ${(e.bytes / 1e6).toFixed(2)} MB, ${e.parameters} parameters, ${e.nodes} nodes, ${(e.seconds * 1000).toFixed(0)} ms`);
  }
  const texts = paritySentences(fx.tokenizer);
  const encodings = texts.map((s) => fx.tokenizer.encode(s));
  const model = await loadTfjsModel();
  const { maxLength } = fx.ckpt.config;
  // Sort by length so batches pad little (TF.js pure JS costs ~0.1 s per short text).
  const order = encodings.map((_, i) => i).sort((a, b) => encodings[a]!.length - encodings[b]!.length);
  const worst = { embedding: 0, features: 0, hidden1: 0, hidden2: 0, hiddenScale: 0, k1Hidden: 0, k1VsTfHead: 0, k1VsOrtHead: 0 };
  let worstText = '';
  const tfStart = performance.now();
  let tfSeconds = 0;
  for (let s = 0; s < order.length; s += TF_BATCH) {
    const idx = order.slice(s, s + TF_BATCH);
    const batch = idx.map((i) => encodings[i]!);
    const lengths = batch.map((e) => e.length);
    const t0 = performance.now();
    const ref = await runTfjs(model, batch);
    tfSeconds += (performance.now() - t0) / 1000;
    const k2 = await runOrt(fx.k2, batch);
    const k1 = await runOrt(fx.k1, batch);
    assert.equal(ref.denseSeq, k2.clippedSeq, 'same clipped sequence length as the original');

    for (let r = 0; r < batch.length; r++) {
      const d = maxAbsDiff(k2.embedding.subarray(r * 512, (r + 1) * 512), ref.embedding.subarray(r * 512, (r + 1) * 512));
      if (d > worst.embedding) [worst.embedding, worstText] = [d, texts[idx[r]!]!];
    }
    worst.features = Math.max(worst.features, maxAbsDiff(k2.features, ref.features));
    const h1 = maskedHiddenDiff(k2.hidden[0]!, k2.clippedSeq, ref.hidden1, ref.denseSeq, lengths, 512, maxLength);
    const h2 = maskedHiddenDiff(k2.hidden[1]!, k2.clippedSeq, ref.hidden2, ref.denseSeq, lengths, 512, maxLength);
    worst.hidden1 = Math.max(worst.hidden1, h1.diff);
    worst.hidden2 = Math.max(worst.hidden2, h2.diff);
    worst.hiddenScale = Math.max(worst.hiddenScale, h1.scale, h2.scale);

    // Depth 1: the same block-1 state, and the original's head applied to block 1's output.
    worst.k1Hidden = Math.max(worst.k1Hidden, maskedHiddenDiff(k1.hidden[0]!, k1.clippedSeq, k2.hidden[0]!, k2.clippedSeq, lengths, 512, maxLength).diff);
    const fromTf = headInJs(fx.ckpt, ref.hidden1, ref.denseSeq, lengths);
    const fromOrt = headInJs(fx.ckpt, k2.hidden[0]!, k2.clippedSeq, lengths);
    worst.k1VsTfHead = Math.max(worst.k1VsTfHead, maxAbsDiff(k1.embedding, fromTf.embedding), maxAbsDiff(k1.features, fromTf.features));
    worst.k1VsOrtHead = Math.max(worst.k1VsOrtHead, maxAbsDiff(k1.embedding, fromOrt.embedding), maxAbsDiff(k1.features, fromOrt.features));
  }
  model.dispose();
  t.diagnostic(
    `parity on ${texts.length} texts (${encodings.filter((e) => e.length > maxLength).length} over ${maxLength} tokens), TF.js ${tfSeconds.toFixed(1)} s of ${((performance.now() - tfStart) / 1000).toFixed(1)} s`,
  );
  t.diagnostic(
    `max |k2 - tfjs|: embedding ${worst.embedding.toExponential(2)} (worst: ${JSON.stringify(worstText.slice(0, 40))}), features ${worst.features.toExponential(2)}, hidden_1 ${worst.hidden1.toExponential(2)}, hidden_2 ${worst.hidden2.toExponential(2)} (|hidden| up to ${worst.hiddenScale.toFixed(1)})`,
  );
  t.diagnostic(
    `depth 1: max |k1 hidden_1 - k2 hidden_1| ${worst.k1Hidden.toExponential(2)}, |k1 - head(tfjs hidden_1)| ${worst.k1VsTfHead.toExponential(2)}, |k1 - head(k2 hidden_1)| ${worst.k1VsOrtHead.toExponential(2)}`,
  );

  assert.ok(texts.length >= 200, `${texts.length} texts`);
  assert.ok(worst.embedding <= 1e-4, `k=2 embedding differs from TF.js by ${worst.embedding} on ${JSON.stringify(worstText)}`);
  assert.ok(worst.features <= 1e-4, `k=2 features differ from TF.js tanh output by ${worst.features}`);
  // Hidden states reach tens in magnitude; float32 reordering gives relative, not absolute, error.
  assert.ok(worst.hidden1 <= 1e-5 * Math.max(1, worst.hiddenScale) * 10, `hidden_1 differs from TF.js by ${worst.hidden1}`);
  assert.ok(worst.hidden2 <= 1e-5 * Math.max(1, worst.hiddenScale) * 10, `hidden_2 differs from TF.js by ${worst.hidden2}`);
  assert.ok(worst.k1Hidden <= 1e-5, `k=1 hidden_1 differs from the k=2 graph's hidden_1 by ${worst.k1Hidden}`);
  assert.ok(worst.k1VsOrtHead <= 1e-5, `k=1 embedding differs from pooling+tanh+L2 of k=2's hidden_1 by ${worst.k1VsOrtHead}`);
  assert.ok(worst.k1VsTfHead <= 1e-4, `k=1 embedding differs from pooling+tanh+L2 of TF.js's block-1 output by ${worst.k1VsTfHead}`);
});

test('use-lite: a text alone and inside a padded batch of mixed lengths embeds the same (k=1 and k=2)', async () => {
  const fx = await fixture();
  const texts = ['x', 'a fine, if overlong, film .', '東京 and 😀', '', Array.from({ length: 200 }, (_, i) => `w${i % 10}`).join(' '), 'hello world'];
  const encodings = texts.map((s) => fx.tokenizer.encode(s));
  for (const session of [fx.k1, fx.k2]) {
    // Padded past the longest text (and past the 128-token clip) to exercise both.
    for (const padTo of [0, 300]) {
      const batch = await runOrt(session, encodings, padTo);
      for (let i = 0; i < texts.length; i++) {
        const alone = await runOrt(session, [encodings[i]!]);
        const d = Math.max(
          maxAbsDiff(alone.embedding, batch.embedding.subarray(i * 512, (i + 1) * 512)),
          maxAbsDiff(alone.features, batch.features.subarray(i * 512, (i + 1) * 512)),
        );
        assert.ok(d <= 1e-5, `text ${i} (${encodings[i]!.length} tokens), padTo ${padTo}: alone vs batch differ by ${d}`);
      }
    }
  }
});

test('use-lite: parameters declared as graph inputs give the same encoder as initializers', async () => {
  const fx = await fixture();
  const { graph, params } = buildUseLiteEncoderGraph(fx.ckpt, { depth: 1, asInputs: true });
  assert.deepEqual(
    params.map((p) => p.name),
    useLiteParamSpecs(fx.ckpt.config, 1).map((p) => p.name),
  );
  assert.deepEqual(
    graph.inputs.map((i) => i.name),
    ['input_ids', 'attention_mask', ...params.map((p) => p.name)],
  );
  assert.ok(
    params.every((p) => /^(embeddings\.token|blocks\.0\.|pooler\.)/.test(p.name)),
    'depth 1 has only block 0 parameters',
  );
  assert.equal(params.find((p) => p.name === 'blocks.0.attn.q.weight')?.kind, 'matrix');
  assert.equal(params.find((p) => p.name === 'blocks.0.ffn_norm.bias')?.kind, 'norm');
  const session = await ort.InferenceSession.create(graph.toBytes());
  const values = useLiteParamValues(fx.ckpt, 1);
  const encodings = ['a short one', 'and a slightly longer sentence here'].map((s) => fx.tokenizer.encode(s));
  const feeds: Record<string, ort.Tensor> = denseBatch(encodings);
  for (const p of params) feeds[p.name] = new ort.Tensor('float32', values.get(p.name)!.data, p.dims);
  const got = (await session.run(feeds)).embedding!.data as Float32Array;
  const want = (await runOrt(fx.k1, encodings)).embedding;
  assert.ok(maxAbsDiff(got, want) <= 1e-6);
  assert.throws(
    () => exportUseLiteEncoder(3, join(fx.workDir, 'k3.onnx'), { checkpoint: fx.ckpt }),
    /use-lite has 2 transformer blocks; depth 3 is not available/,
  );
});

test('use-lite: a damaged package gives an error naming the file', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'slim-uselite-bad-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  /** A copy of the package dir (symlinks) with one file replaced (string/bytes) or removed (null). */
  const damaged = (name: string, file: string, content: string | Uint8Array | null): string => {
    const dir = join(base, name);
    mkdirSync(dir);
    for (const f of readdirSync(PKG_DIR)) if (f !== file) symlinkSync(join(PKG_DIR, f), join(dir, f));
    if (content !== null) writeFileSync(join(dir, file), content);
    return dir;
  };
  const shard3 = readFileSync(join(PKG_DIR, 'group1-shard3of7'));
  const cases: Array<[string, string, string | Uint8Array | null, RegExp]> = [
    ['missing-shard', 'group1-shard3of7', null, /^use-lite: weight shard \S*missing-shard\/group1-shard3of7 is missing/],
    [
      'truncated-shard',
      'group1-shard3of7',
      shard3.subarray(0, 1000),
      /^use-lite: weight shard \S*truncated-shard\/group1-shard3of7 is 1000 bytes, expected 4194304/,
    ],
    [
      'truncated-last',
      'group1-shard7of7',
      readFileSync(join(PKG_DIR, 'group1-shard7of7')).subarray(0, 4096),
      /^use-lite: weight shard \S*truncated-last\/group1-shard7of7 is 4096 bytes, expected 2737832/,
    ],
    ['nan-shard', 'group1-shard3of7', Buffer.alloc(shard3.length, 0xff), /^use-lite: weight shard \S*nan-shard\/group1-shard3of7 holds a non-finite value/],
    ['bad-model-json', 'model.json', '{"modelTopology": {"node": [', /^use-lite: model file \S*bad-model-json\/model\.json is not valid JSON/],
    ['no-model-json', 'model.json', null, /^use-lite: cannot read model file \S*no-model-json\/model\.json: ENOENT/],
    ['bad-vocab-json', 'vocab.json', '[["a", -1.0], ["b"', /^use-lite: vocabulary \S*bad-vocab-json\/vocab\.json is not valid JSON/],
    ['wrong-vocab-json', 'vocab.json', '{"a": 1}', /^use-lite: vocabulary \S*wrong-vocab-json\/vocab\.json is not a non-empty JSON array/],
  ];
  for (const [name, file, content, message] of cases) {
    const dir = damaged(name, file, content);
    assert.throws(
      () => loadUseLiteCheckpoint(dir),
      (e: unknown) => {
        assert.ok(e instanceof Error);
        assert.match(e.message, message);
        return true;
      },
      name,
    );
  }
  // The intact copy loads: the damage, not the copying, causes the errors above.
  const intact = join(base, 'intact');
  mkdirSync(intact);
  for (const f of readdirSync(PKG_DIR)) copyFileSync(join(PKG_DIR, f), join(intact, f));
  assert.equal(loadUseLiteCheckpoint(intact).config.blocks.length, 2);
});

after(async () => {
  if (fixturePromise) rmSync((await fixturePromise).workDir, { recursive: true, force: true });
});
