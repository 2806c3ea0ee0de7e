// `slim build` end to end on each issue-15 family: a random checkpoint in the family's layout
// with a tokenizer of the kind it ships (test/helpers/tokenizer-fixtures.ts), one epoch of
// fine-tuning the top block through our autodiff, export, and the exported variant evaluated the
// way the server feeds it gives the accuracy measured in training. Encoders get their own
// CLS/SEP marks in the graph and the family's pooling; tokenizers without a pad token get one
// written into the variant's tokenizer_config.json.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildCommand } from '../src/pipeline/build-command.js';
import { evaluateVariant } from '../src/pipeline/eval-command.js';
import { writeRandomHfCheckpoint, type RandomArch } from '../src/pipeline/checkpoints/random-hf.js';
import { HfCheckpoint } from '../src/pipeline/checkpoints/hf.js';
import { dataSlices } from './helpers/build-run.js';
import { tokenizerFixture, writeTokenizerFixture, type FixtureKind } from './helpers/tokenizer-fixtures.js';
import { sampleSentences } from './helpers/dataset-sample.js';
import { tokenIds } from '../src/pipeline/tokenizers/hf-special.js';

let work = '',
  trainFile = '',
  valFile = '';
before(async () => {
  ({ dir: work, trainFile, valFile } = await dataSlices('slim-build-families-', 'sst2', { split: 'train', lines: 64 }, { split: 'dev', lines: 32 }));
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const FAMILIES: { arch: RandomArch; tok: FixtureKind; extra?: Record<string, unknown>; pad: string; first?: string; last?: string }[] = [
  { arch: 'qwen2', tok: 'qwen2', pad: '<|endoftext|>' },
  { arch: 'qwen3', tok: 'qwen2', pad: '<|endoftext|>' },
  {
    arch: 'llama',
    tok: 'llama3',
    pad: '<|end_of_text|>',
    first: '<|begin_of_text|>',
    extra: {
      rope_theta: 500000,
      rope_scaling: { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    },
  },
  { arch: 'mistral', tok: 'mistral', pad: '</s>', first: '<s>', extra: { sliding_window: 8 } },
  { arch: 'phi3', tok: 'llama2', pad: '</s>', extra: { sliding_window: 8 } },
  { arch: 'gemma2', tok: 'gemma', pad: '<pad>', first: '<bos>', extra: { sliding_window: 8 } },
  { arch: 'gemma3_text', tok: 'gemma', pad: '<pad>', first: '<bos>', extra: { sliding_window: 8, sliding_window_pattern: 2 } },
  { arch: 'roberta', tok: 'roberta', pad: '<pad>', first: '<s>', last: '</s>' },
  { arch: 'xlm-roberta', tok: 'xlm-roberta', pad: '<pad>', first: '<s>', last: '</s>' },
  { arch: 'distilbert', tok: 'distilbert', pad: '[PAD]', first: '[CLS]', last: '[SEP]' },
  { arch: 'modernbert', tok: 'modernbert', pad: '[PAD]', first: '[CLS]', last: '[SEP]', extra: { local_attention: 8 } },
];

for (const f of FAMILIES) {
  test(`slim build on a ${f.arch} checkpoint with a ${f.tok} tokenizer: 1 epoch, served accuracy = training accuracy`, async () => {
    const tok = tokenizerFixture(f.tok, sampleSentences(20));
    const dir = join(work, `base-${f.arch}`);
    const ids = tokenIds(tok.json);
    // config.json's bos_token_id names the tokenizer's BOS, as in the released pairs.
    const bos = f.first && ids.has(f.first) && !f.last ? { bos_token_id: ids.get(f.first) } : {};
    writeRandomHfCheckpoint(dir, {
      arch: f.arch,
      layers: 2,
      hidden: 32,
      heads: 4,
      kvHeads: 2,
      ffn: 48,
      vocab: tok.vocabSize,
      maxPositions: 64,
      seed: 5,
      dtype: 'BF16',
      extraConfig: { ...f.extra, ...bos },
    });
    writeTokenizerFixture(dir, tok);
    const ckpt = new HfCheckpoint(dir);
    const c = ckpt.config;
    const pooling = c.pooling ?? 'last';
    ckpt.close();
    // What the graph's template puts around the text: BOS for the decoders whose tokenizer adds
    // one, the family's marks for encoders (found in the tokenizer), nothing for Qwen and Phi-3.
    if (c.causal) assert.equal(c.prependBos === true || c.arch === 'llama' ? ids.get(f.first!) : undefined, f.first ? c.bosId : undefined);
    else
      assert.deepEqual([ids.has(c.encoderMarks!.cls), ids.has(c.encoderMarks!.sep), c.encoderMarks!.cls, c.encoderMarks!.sep], [true, true, f.first, f.last]);
    const out = join(work, `models-${f.arch}`);
    const code = await buildCommand([
      '--base',
      dir,
      '--data',
      trainFile,
      '--val',
      valFile,
      '--depths',
      '2',
      '--head',
      'last',
      '--train',
      'top:1',
      '--epochs',
      '1',
      '--batch',
      '16',
      '--max-length',
      '20',
      '--quiet',
      '--out',
      out,
    ]);
    assert.equal(code, 0);
    const v = join(out, 'k2-top1');
    const manifest = JSON.parse(await readFile(join(v, 'manifest.json'), 'utf8'));
    assert.equal(manifest.depth, 2);
    const tokConfig = JSON.parse(await readFile(join(v, 'tokenizer_config.json'), 'utf8'));
    assert.equal(tokConfig.pad_token, f.pad, 'pad token chosen and written into the variant');
    assert.equal(tokConfig.padding_side, 'right');
    const served = await evaluateVariant(v, valFile, { threads: 1 });
    assert.equal(served.accuracy, manifest.eval.accuracy, `${f.arch} (${pooling} pooling): accuracy of the exported model = accuracy measured in training`);
  });
}

test('label words on an encoder are refused with the family named', async () => {
  const tok = tokenizerFixture('roberta', sampleSentences(5));
  const dir = join(work, 'base-roberta-lw');
  writeRandomHfCheckpoint(dir, { arch: 'roberta', layers: 1, hidden: 16, heads: 2, vocab: tok.vocabSize, maxPositions: 64 });
  writeTokenizerFixture(dir, tok);
  const { capture } = await import('./helpers/build-run.js');
  const r = await capture(() =>
    buildCommand(['--base', dir, '--data', trainFile, '--depths', '1', '--head', 'label-words', '--quiet', '--out', join(work, 'lw')]),
  );
  assert.equal(r.value, 2);
  assert.match(r.stderr, /--head label-words needs a decoder LM head; roberta is an encoder: use --head last/);
});
