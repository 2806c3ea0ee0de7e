// A tiny but real model repository for serving tests: ONNX classifiers built with GraphBuilder
// (embedding Gather -> k residual tanh layers -> masked mean pooling -> linear -> logits), a
// Hugging Face WordLevel tokenizer.json that transformers.js loads from disk, and manifests that
// follow the spec. Variant kN has the first N layers of the same stack, so k1 and k2 differ the
// way slimmed depths do.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../../src/pipeline/graph.js';

export const FIXTURE_WORDS = [
  'the',
  'a',
  'movie',
  'film',
  'plot',
  'actor',
  'scene',
  'story',
  'music',
  'ending',
  'good',
  'great',
  'fine',
  'superb',
  'lovely',
  'bad',
  'awful',
  'boring',
  'weak',
  'dull',
  'very',
  'not',
  'quite',
  'so',
  'really',
  'is',
  'was',
  'and',
  'but',
  'with',
  'free',
  'money',
  'win',
  'offer',
  'click',
  'now',
  'meeting',
  'report',
  'lunch',
  'call',
  'today',
  'tomorrow',
  'team',
  'project',
  'price',
  'deal',
  'prize',
  'urgent',
];
const SPECIAL = ['[PAD]', '[UNK]', '[CLS]'] as const;
export const VOCAB = [...SPECIAL, ...FIXTURE_WORDS];

export interface FixtureModelSpec {
  name: string;
  /** Variant names; depth from the name (default k1, k2). */
  variants?: string[];
  labels?: string[];
  /** Tokens incl. [CLS] (default 32). */
  maxLength?: number;
  /** Hidden width (default 16); wider makes inference slow enough to saturate a CPU. */
  hidden?: number;
  /** Written as models/<name>/routing.json when given. */
  routing?: unknown;
  seed?: number;
}

export interface FixtureRepository {
  dir: string;
  models: Required<Omit<FixtureModelSpec, 'routing'>>[];
  cleanup(): void;
}

/** Deterministic pseudo-random numbers (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomMatrix(next: () => number, n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale);
}

interface FixtureWeights {
  embeddings: Float32Array;
  layers: { w: Float32Array; b: Float32Array }[];
  headW: Float32Array;
  headB: Float32Array;
}

/** The weights of a stack seeded by `seed`. Every variant draws the whole stack in the same order, so kN's layers are k(N+1)'s first N. */
function fixtureWeights(hidden: number, numLabels: number, seed: number): FixtureWeights {
  const d = hidden;
  const next = rng(seed);
  const embeddings = randomMatrix(next, VOCAB.length * d, 1);
  const maxLayers = 8;
  const layers = Array.from({ length: maxLayers }, () => ({
    w: randomMatrix(next, d * d, 1 / Math.sqrt(d)),
    b: randomMatrix(next, d, 0.1),
  }));
  const headW = randomMatrix(next, d * numLabels, 2 / Math.sqrt(d));
  const headB = randomMatrix(next, numLabels, 0.1);
  return { embeddings, layers, headW, headB };
}

/**
 * Independent reference for the fixture classifier: its logits for one text, in plain float64
 * loops over the same weights (the tokenizer's rules: lowercase, split on whitespace, [CLS]
 * first, unknown words [UNK]). For texts within maxLength.
 */
export function fixtureLogits(text: string, opts: { depth: number; hidden: number; numLabels: number; seed: number }): number[] {
  const { depth, hidden: d, numLabels, seed } = opts;
  const { embeddings, layers, headW, headB } = fixtureWeights(d, numLabels, seed);
  const ids = [
    VOCAB.indexOf('[CLS]'),
    ...text
      .toLowerCase()
      .split(/\s+/)
      .filter(Boolean)
      .map((w) => (VOCAB.includes(w) ? VOCAB.indexOf(w) : VOCAB.indexOf('[UNK]'))),
  ];
  const pooled = new Array<number>(d).fill(0);
  for (const id of ids) {
    let h = Array.from({ length: d }, (_, j) => embeddings[id * d + j]!);
    for (let l = 0; l < depth; l++) {
      const { w, b } = layers[l]!;
      h = h.map((x, j) => {
        let z = b[j]!;
        for (let i = 0; i < d; i++) z += h[i]! * w[i * d + j]!;
        return x + Math.tanh(z);
      });
    }
    for (let j = 0; j < d; j++) pooled[j]! += h[j]! / ids.length;
  }
  return Array.from({ length: numLabels }, (_, c) => {
    let z = headB[c]!;
    for (let j = 0; j < d; j++) z += pooled[j]! * headW[j * numLabels + c]!;
    return z;
  });
}

/** The classifier's ONNX bytes for `depth` layers of a stack seeded by `seed`. */
export function buildFixtureOnnx(opts: { depth: number; hidden: number; numLabels: number; seed: number }): Uint8Array {
  const { depth, hidden: d, numLabels, seed } = opts;
  const { embeddings, layers, headW, headB } = fixtureWeights(d, numLabels, seed);
  const g = new GraphBuilder('fixture_classifier');
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const emb = g.initializer('embeddings', embeddings, [VOCAB.length, d]);

  // Named constants: GraphBuilder.constF/constI64 claim their fresh() name twice and throw.
  const axis1 = g.initializer('axis1', BigInt64Array.from([1n]), [1]);
  const axis2 = g.initializer('axis2', BigInt64Array.from([2n]), [1]);
  const one = g.initializer('one', Float32Array.from([1]), []);
  let h = g.op('Gather', [emb, ids], { axis: 0 }); // [batch, seq, d]
  for (let l = 0; l < depth; l++) {
    const w = g.initializer(`layer${l}_w`, layers[l]!.w, [d, d]);
    const b = g.initializer(`layer${l}_b`, layers[l]!.b, [d]);
    h = g.op('Add', [h, g.op('Tanh', [g.op('Add', [g.op('MatMul', [h, w]), b])])]);
  }
  const m = g.op('Unsqueeze', [g.op('Cast', [mask], { to: 1 }), axis2]); // [batch, seq, 1] float
  const summed = g.op('ReduceSum', [g.op('Mul', [h, m]), axis1], { keepdims: 0 }); // [batch, d]
  const count = g.op('Max', [g.op('ReduceSum', [m, axis1], { keepdims: 0 }), one]); // [batch, 1]
  const pooled = g.op('Div', [summed, count]);
  const logits = g.op('Add', [g.op('MatMul', [pooled, g.initializer('head_w', headW, [d, numLabels])]), g.initializer('head_b', headB, [numLabels])]);
  g.output(g.identity(logits, 'logits'), 'float32', ['batch', numLabels]);
  return g.toBytes();
}

/** A tokenizer.json in the Hugging Face tokenizers format: lowercase, whitespace split, WordLevel, [CLS] first. */
export function fixtureTokenizerJson(): unknown {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'WhitespaceSplit' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] } },
    },
    decoder: null,
    model: { type: 'WordLevel', vocab: Object.fromEntries(VOCAB.map((w, i) => [w, i])), unk_token: '[UNK]' },
  };
}

/** Write a repository under `dir` (a fresh temp dir by default). */
export function createFixtureRepository(specs: FixtureModelSpec[] = [{ name: 'tiny' }], dir?: string): FixtureRepository {
  const root = dir ?? mkdtempSync(join(tmpdir(), 'slim-fixture-'));
  const models: FixtureRepository['models'] = [];
  specs.forEach((spec, si) => {
    const full = {
      name: spec.name,
      variants: spec.variants ?? ['k1', 'k2'],
      labels: spec.labels ?? ['negative', 'neutral', 'positive'],
      maxLength: spec.maxLength ?? 32,
      hidden: spec.hidden ?? 16,
      seed: spec.seed ?? 1234 + si,
    };
    models.push(full);
    const modelDir = join(root, full.name);
    mkdirSync(modelDir, { recursive: true });
    if (spec.routing !== undefined) writeFileSync(join(modelDir, 'routing.json'), JSON.stringify(spec.routing, null, 2));
    for (const variant of full.variants) {
      const depth = Number(/^k(\d+)/.exec(variant)![1]);
      const vdir = join(modelDir, variant);
      mkdirSync(vdir, { recursive: true });
      const onnx = buildFixtureOnnx({ depth, hidden: full.hidden, numLabels: full.labels.length, seed: full.seed });
      writeFileSync(join(vdir, 'model.onnx'), onnx);
      writeFileSync(join(vdir, 'tokenizer.json'), JSON.stringify(fixtureTokenizerJson()));
      writeFileSync(
        join(vdir, 'tokenizer_config.json'),
        JSON.stringify({
          tokenizer_class: 'PreTrainedTokenizerFast',
          pad_token: '[PAD]',
          unk_token: '[UNK]',
          cls_token: '[CLS]',
          model_max_length: full.maxLength,
        }),
      );
      const d = full.hidden;
      const manifest = {
        model: full.name,
        variant,
        depth,
        base: { id: 'fixture:tiny', arch: 'fixture', layers: 8, source: 'test/helpers/fixture-model.ts' },
        labels: full.labels,
        head: 'pool',
        maxLength: full.maxLength,
        // Never trained, but the manifest validator (src/manifest.ts) wants a positive example count.
        train: { mode: 'head', epochs: 0, lr: 0, seed: full.seed, examples: 1, dataSha256: '0'.repeat(64), seconds: 0 },
        eval: { split: 'none', examples: 0, accuracy: 0.5, macroF1: 0.5 },
        params: VOCAB.length * d + depth * (d * d + d) + d * full.labels.length + full.labels.length,
        onnxSha256: createHash('sha256').update(onnx).digest('hex'),
        createdAt: '2024-01-01T00:00:00.000Z',
        version: '0.1.0',
      };
      writeFileSync(join(vdir, 'manifest.json'), JSON.stringify(manifest, null, 2));
    }
  });
  return { dir: root, models, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** A deterministic text of `words` vocabulary words (some unknown words when `unknown`). */
export function fixtureText(words: number, seed: number, unknown = false): string {
  const next = rng(seed);
  return Array.from({ length: words }, (_, i) => (unknown && i % 5 === 4 ? `zz${i}` : FIXTURE_WORDS[Math.floor(next() * FIXTURE_WORDS.length)]!)).join(' ');
}
