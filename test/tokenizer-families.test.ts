// The tokenizer.json kinds the supported families ship, as small fixtures with the released
// files' structure (test/helpers/tokenizer-fixtures.ts): our loader (src/tokenizer.ts, used by
// build and serve) gives the same ids as transformers.js' own AutoTokenizer reading the same
// directory, on dataset texts of every kind and on awkward strings; plus what each kind must do
// by construction (byte fallback, lower-casing, special tokens around the text, padding side),
// and the pad token chosen for tokenizers that have none.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { loadTokenizer } from '../src/tokenizer.js';
import { choosePadToken, tokenIds, tokenizerKind } from '../src/pipeline/tokenizers/hf-special.js';
import { TOKENIZER_KIND, tokenizerFixture, writeTokenizerFixture, type FixtureKind } from './helpers/tokenizer-fixtures.js';
import { sampleSentences } from './helpers/dataset-sample.js';

const work = mkdtempSync(join(tmpdir(), 'slim-tok-families-'));
after(() => rmSync(work, { recursive: true, force: true }));
const corpus = sampleSentences(40);
const texts = [
  ...sampleSentences(15).slice(0, 120),
  '',
  ' ',
  'Hello,  World!',
  'naïve café déjà vu',
  'ЁЖИК в тумане',
  '東京タワー',
  'emoji 🙂👍🏽 ok',
  'tabs\tand\nnewlines',
  "it's 2024 -- isn't it?",
  'a ☃ snowman',
  'x'.repeat(60),
];

const KINDS = Object.keys(TOKENIZER_KIND) as FixtureKind[];

for (const kind of KINDS) {
  test(`${kind} (${TOKENIZER_KIND[kind]}): our loader and transformers.js AutoTokenizer give the same ids`, async () => {
    const f = tokenizerFixture(kind, corpus);
    const dir = join(work, kind);
    writeTokenizerFixture(dir, f);
    assert.equal(tokenizerKind(f.json), TOKENIZER_KIND[kind]);
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    env.localModelPath = `${work}/`;
    const reference = await AutoTokenizer.from_pretrained(kind);
    const ours = await loadTokenizer(dir);
    let multiPiece = 0;
    for (const t of texts) {
      const want = reference.encode(t);
      assert.deepEqual(ours.encode(t), want, `${kind}: ${JSON.stringify(t)}`);
      for (const id of want) assert.ok(id >= 0 && id < f.vocabSize, `${kind}: id ${id} outside the fixture's ${f.vocabSize}`);
      if (want.length > t.split(/\s+/).length + 2) multiPiece++;
    }
    assert.ok(multiPiece > texts.length / 3, `${kind}: words split into several pieces (${multiPiece}/${texts.length})`);
  });
}

test('each kind does what its released tokenizer does: special tokens, byte fallback, lower-casing, padding side', async () => {
  const load = async (kind: FixtureKind) => {
    const f = tokenizerFixture(kind, corpus);
    const dir = join(work, `props-${kind}`);
    writeTokenizerFixture(dir, f);
    return { tok: await loadTokenizer(dir), ids: tokenIds(f.json) };
  };
  const text = 'a good film';
  const roberta = await load('roberta');
  const r = roberta.tok.encode(text);
  assert.deepEqual([r[0], r[r.length - 1]], [0, 2], 'RoBERTa: <s> ... </s>');
  const xlmr = await load('xlm-roberta');
  const x = xlmr.tok.encode(text);
  assert.deepEqual([x[0], x[x.length - 1]], [0, 2], 'XLM-R: <s> ... </s>');
  for (const kind of ['bert', 'distilbert', 'modernbert'] as const) {
    const { tok, ids } = await load(kind);
    const e = tok.encode(text);
    assert.deepEqual([e[0], e[e.length - 1]], [ids.get('[CLS]'), ids.get('[SEP]')], `${kind}: [CLS] ... [SEP]`);
  }
  const bert = await load('bert');
  assert.deepEqual(bert.tok.encode('A GOOD Film'), bert.tok.encode(text), 'BERT uncased: lower-cased');
  const llama3 = await load('llama3');
  assert.equal(llama3.tok.encode(text)[0], llama3.ids.get('<|begin_of_text|>'));
  const qwen = await load('qwen2');
  assert.ok(
    qwen.tok.encode(text).every((id) => id < qwen.ids.get('<|endoftext|>')!),
    'Qwen2: no BOS or other special token added',
  );
  for (const kind of ['llama2', 'mistral', 'gemma'] as const) {
    const { tok, ids } = await load(kind);
    const e = tok.encode('a \u2603 b'); // U+2603 is in no fixture vocabulary: UTF-8 bytes E2 98 83
    assert.equal(e[0], ids.get(kind === 'gemma' ? '<bos>' : '<s>'), `${kind}: BOS first`);
    const bytes = ['<0xE2>', '<0x98>', '<0x83>'].map((b) => ids.get(b));
    assert.ok(e.join(',').includes(bytes.join(',')), `${kind}: byte fallback for U+2603 (${e})`);
  }
  assert.equal((await load('gemma')).tok.padSide, 'left', 'tokenizer_config padding_side is read');
  assert.equal((await load('llama2')).tok.padSide, 'right');
});

test('pad token: tokenizer_config pad_token, else EOS (Llama 3, Mistral, GPT-2 have none)', () => {
  const pick = (kind: FixtureKind) => {
    const f = tokenizerFixture(kind, corpus.slice(0, 50));
    return choosePadToken(f.json, f.config);
  };
  assert.deepEqual(pick('llama3'), {
    token: '<|end_of_text|>',
    id: tokenIds(tokenizerFixture('llama3', corpus.slice(0, 50)).json).get('<|end_of_text|>'),
    from: 'eos_token',
  });
  assert.equal(pick('mistral')!.token, '</s>');
  assert.equal(pick('mistral')!.from, 'eos_token');
  assert.equal(pick('gpt2')!.token, '<|endoftext|>');
  assert.deepEqual(pick('roberta'), { token: '<pad>', id: 1, from: 'pad_token' });
  assert.equal(pick('gemma')!.token, '<pad>');
  assert.equal(pick('bert')!.token, '[PAD]');
  assert.equal(choosePadToken({ model: { vocab: { a: 0 } } }, {}), null);
});
