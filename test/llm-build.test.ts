// `slim build` on a llama2.c checkpoint (stories260K) with the paper's label-word head on SST-2
// (subsampled: the pipeline, not the accuracy, is the point), depths 1, 2 and 5: variants,
// manifests and the depth report are written, and the exported models (prompt template inside
// the graph, plain text ids in) reproduce the accuracy measured during training when evaluated
// the way the server feeds them. Plus the label-word errors users hit first.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildCommand } from '../src/pipeline/build-command.js';
import { evaluateVariant } from '../src/pipeline/eval-command.js';
import { SHARED_MODELS } from './helpers/paths.js';
import { capture, dataSlices } from './helpers/build-run.js';
import { writeRandomHfCheckpoint } from '../src/pipeline/checkpoints/random-hf.js';
import { Llama2cTokenizer, readLlama2cTokenizer } from '../src/pipeline/tokenizers/llama2c.js';

const BASE = join(SHARED_MODELS, 'stories260K', 'stories260K.bin');
let work = '';
let trainFile = '',
  valFile = '';

before(async () => {
  ({ dir: work, trainFile, valFile } = await dataSlices('slim-llm-build-', 'sst2', { split: 'train', lines: 192 }, { split: 'dev', lines: 96 }));
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

test('slim build --base stories260K.bin --head label-words, depths 1,2,5 on SST-2: variants, report, served accuracy = training accuracy', async () => {
  const out = join(work, 'models', 'stories-sst2');
  const code = await buildCommand([
    '--base',
    BASE,
    '--data',
    trainFile,
    '--val',
    valFile,
    '--depths',
    '1,2,5',
    '--head',
    'label-words',
    '--verbalizer',
    'negative=little,positive=happy',
    '--epochs',
    '1',
    '--batch',
    '16',
    '--max-length',
    '32',
    '--lr',
    '1e-3',
    '--quiet',
    '--out',
    out,
  ]);
  assert.equal(code, 0);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
    results: { variant: string; depth: number; accuracy: number }[];
    base: { arch: string; layers: number };
  };
  assert.deepEqual(
    report.results.map((r) => r.variant),
    ['k1', 'k2', 'k5'],
  );
  assert.equal(report.base.arch, 'llama');
  assert.equal(report.base.layers, 5);
  for (const r of report.results) {
    const dir = join(out, r.variant);
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    assert.equal(manifest.head, 'label-words');
    assert.deepEqual(manifest.labelWords, ['little', 'happy']);
    assert.equal(manifest.template, 'Review: {text}\nSentiment:');
    assert.equal(manifest.depth, r.depth);
    // Served path: tokenizer.json of the variant, plain text ids, right padding; the graph adds the prompt.
    const served = await evaluateVariant(dir, valFile, { threads: 1 });
    assert.equal(served.accuracy, manifest.eval.accuracy, `${r.variant}: accuracy of the exported model = accuracy measured in training`);
    assert.equal(served.macroF1, manifest.eval.macroF1, `${r.variant}: macro-F1 of the exported model = macro-F1 measured in training`);
  }
  const md = await readFile(join(out, 'report.md'), 'utf8');
  assert.match(md, /\| k5/);
});

test('label words that are several tokens are refused, naming the word and its tokens; unknown flags combos are usage errors', async () => {
  const out = join(work, 'models', 'bad');
  const r = await capture(() =>
    buildCommand(['--base', BASE, '--data', trainFile, '--depths', '1', '--verbalizer', 'negative=terrible,positive=happy', '--quiet', '--out', out]),
  );
  assert.equal(r.value, 2);
  assert.match(r.stderr, /label word "terrible" is 5 tokens/);
  assert.match(r.stderr, /"\u2581t"=259/);
  const r2 = await capture(() => buildCommand(['--base', BASE, '--data', trainFile, '--depths', '9', '--quiet', '--out', out]));
  assert.equal(r2.value, 2);
  assert.match(r2.stderr, /has 5 layers/);
  const r3 = await capture(() => buildCommand(['--base', join(work, 'nowhere'), '--data', trainFile, '--out', out]));
  assert.equal(r3.value, 2);
  assert.match(r3.stderr, /Hugging Face checkpoint directory/);
});

test('slim build --base <Hugging Face dir> --head last (random llama with GQA, bf16, sharded): variants whose served accuracy = training accuracy', async () => {
  const dir = join(work, 'hf-llama');
  writeRandomHfCheckpoint(dir, {
    arch: 'llama',
    layers: 3,
    hidden: 32,
    heads: 4,
    kvHeads: 2,
    vocab: 512,
    maxPositions: 128,
    dtype: 'BF16',
    shards: 2,
    seed: 3,
  });
  // Any tokenizer.json of the right vocabulary size does: reuse stories260K's, converted.
  const tok = new Llama2cTokenizer(readLlama2cTokenizer(join(SHARED_MODELS, 'stories260K', 'tok512.bin'), 512));
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tok.toTokenizerJson()));
  const out = join(work, 'models', 'hf-llama');
  const code = await buildCommand([
    '--base',
    dir,
    '--data',
    trainFile,
    '--val',
    valFile,
    '--depths',
    '1,3',
    '--head',
    'last',
    '--train',
    'top:1',
    '--epochs',
    '1',
    '--batch',
    '16',
    '--max-length',
    '24',
    '--quiet',
    '--out',
    out,
  ]);
  assert.equal(code, 0);
  for (const v of ['k1-top1', 'k3-top1']) {
    const manifest = JSON.parse(await readFile(join(out, v, 'manifest.json'), 'utf8'));
    assert.equal(manifest.head, 'last');
    assert.equal(manifest.base.arch, 'llama');
    const served = await evaluateVariant(join(out, v), valFile, { threads: 1 });
    assert.equal(served.accuracy, manifest.eval.accuracy);
  }
});

/** GPT-2's byte-to-unicode table: a byte-level BPE with no merges (one token per byte). */
function byteLevelTokenizerJson(): Record<string, unknown> {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (bs.includes(b)) continue;
    bs.push(b);
    cs.push(256 + n++);
  }
  const vocab: Record<string, number> = {};
  bs.forEach((b, i) => (vocab[String.fromCharCode(cs[i]!)] = b));
  vocab['<|endoftext|>'] = 256;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: 256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: [],
    },
  };
}

/** A character-level WordPiece vocabulary with BERT's specials. */
function wordPieceTokenizerJson(): { json: Record<string, unknown>; size: number } {
  const pieces = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  const chars = "abcdefghijklmnopqrstuvwxyz0123456789.,'!?-:;()&/";
  for (const ch of chars) pieces.push(ch);
  for (const ch of chars) pieces.push(`##${ch}`);
  const vocab = Object.fromEntries(pieces.map((p, i) => [p, i]));
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    size: pieces.length,
    json: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [special(0, '[PAD]'), special(1, '[UNK]'), special(2, '[CLS]'), special(3, '[SEP]'), special(4, '[MASK]')],
      normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
      pre_tokenizer: { type: 'BertPreTokenizer' },
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
        pair: [],
        special_tokens: { '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] } },
      },
      decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
      model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
    },
  };
}

test('slim build --head last on gpt2 (byte-level BPE) and bert (WordPiece, [CLS] ... [SEP] added by the graph) checkpoints', async () => {
  const wp = wordPieceTokenizerJson();
  const cases = [
    {
      name: 'gpt2',
      opts: { arch: 'gpt2' as const, layers: 2, hidden: 32, heads: 4, vocab: 257, maxPositions: 256, seed: 8 },
      tok: byteLevelTokenizerJson(),
      cfg: { tokenizer_class: 'GPT2Tokenizer', eos_token: '<|endoftext|>' },
    },
    {
      name: 'bert',
      opts: { arch: 'bert' as const, layers: 2, hidden: 32, heads: 4, vocab: wp.size, maxPositions: 128, seed: 9, dtype: 'F16' as const },
      tok: wp.json,
      cfg: { tokenizer_class: 'BertTokenizer', pad_token: '[PAD]', cls_token: '[CLS]', sep_token: '[SEP]', unk_token: '[UNK]' },
    },
  ];
  for (const c of cases) {
    const dir = join(work, `hf-${c.name}`);
    writeRandomHfCheckpoint(dir, c.opts);
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(c.tok));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(c.cfg));
    const out = join(work, 'models', `hf-${c.name}`);
    const code = await buildCommand([
      '--base',
      dir,
      '--data',
      trainFile,
      '--val',
      valFile,
      '--depths',
      '1',
      '--head',
      'last',
      '--train',
      'head',
      '--epochs',
      '2',
      '--batch',
      '16',
      '--max-length',
      '40',
      '--quiet',
      '--out',
      out,
    ]);
    assert.equal(code, 0, c.name);
    const variant = join(out, 'k1-head');
    const manifest = JSON.parse(await readFile(join(variant, 'manifest.json'), 'utf8'));
    assert.equal(manifest.base.arch, c.name);
    const served = await evaluateVariant(variant, valFile, { threads: 1 });
    assert.equal(served.accuracy, manifest.eval.accuracy, `${c.name}: served accuracy = training accuracy`);
    const tj = JSON.parse(await readFile(join(variant, 'tokenizer.json'), 'utf8'));
    assert.equal(tj.post_processor, null, 'the graph adds the special tokens, the tokenizer does not');
    if (c.name === 'gpt2') assert.equal(tj.pre_tokenizer.add_prefix_space, true);
  }
});
