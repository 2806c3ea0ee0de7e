// USE-lite's tokenizer as a Hugging Face tokenizer.json, checked against the reference Tokenizer
// of @tensorflow-models/universal-sentence-encoder on real sentences and edge cases; and the
// shared runtime tokenizer (src/tokenizer.ts): padding, masks, truncation, errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { Tokenizer as ReferenceTokenizer } from '@tensorflow-models/universal-sentence-encoder';
import { USE_LITE_MAX_LENGTH, USE_LITE_PAD_ID, defaultUseLiteVocabPath, writeUseLiteTokenizer } from '../src/pipeline/tokenizers/use-lite.js';
import { TextTooLongError, loadTokenizer, padEncodings, type TextTokenizer } from '../src/tokenizer.js';
import { sampleSentences } from './helpers/dataset-sample.js';
import { SHARED_DATA } from './helpers/paths.js';

const work = mkdtempSync(join(tmpdir(), 'slim-use-lite-tokenizer-'));
const tokDir = join(work, 'k2');
/** The package's vocab exactly as the reference gets it (null scores included). */
let rawVocab: Array<[string, number | null]>;
let reference: ReferenceTokenizer;
let hf: PreTrainedTokenizer;
let runtime: TextTokenizer;

before(async () => {
  await writeUseLiteTokenizer(tokDir);
  rawVocab = JSON.parse(readFileSync(defaultUseLiteVocabPath(), 'utf8')) as Array<[string, number | null]>;
  reference = new ReferenceTokenizer(rawVocab as Array<[string, number]>);
  // From disk only: remote models off, local files only.
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  hf = await AutoTokenizer.from_pretrained(tokDir, { local_files_only: true });
  runtime = await loadTokenizer(tokDir);
});
after(() => rmSync(work, { recursive: true, force: true }));

const HANDCRAFTED: string[] = [
  '',
  ' ',
  '   ',
  '\t',
  '\n',
  'a  b   c',
  '  two leading spaces',
  'trailing spaces   ',
  'x',
  'the',
  '.',
  '?!',
  ':)',
  ':) at the start',
  ' :) after a space',
  ':',
  '::',
  ':-) :( :/',
  '12:30 and 10:00:00',
  'http://example.com/a?b=1&c=2',
  'Hello, World!',
  'HELLO world MiXeD CaSe iPhone',
  "don't stop — won't stop…",
  '"quotes" (parens) [brackets] {braces} <angles>',
  '3.14159, 1,000,000 and 007; -42 +7 1e10 50%',
  'Café naïve résumé Ångström façade',
  'a\u0301 combining acute vs \u00e1',
  'ﬁ ligature, ＡＢＣ fullwidth, ：） fullwidth smiley, ² superscript',
  '\u00a0no-break space first',
  'zero\u200bwidth',
  '日本語のテキストです',
  '中文文本',
  '한국어 텍스트',
  'Привет, мир',
  'مرحبا بالعالم',
  'नमस्ते',
  'Ελληνικά θ',
  '😀',
  '😀😀 ok 😀',
  '👍🏽 family 👨\u200d👩\u200d👧',
  '\ufffd replacement character \ufffd\ufffd',
  'lone surrogate \ud800 here',
  '<s> </s> extra_token_id_1 extra_token_id_3 <pad>',
  'tab\tand\nnewline\r\nend',
  '#hashtag @mention email@example.com',
  'hahaha lol!!',
  '..........',
  'word '.repeat(400).trim(),
  'x'.repeat(2000),
  `${'long sentence with many words, '.repeat(60)}end.`,
];

/** The reference's path score: left-to-right sum, null and unknown counting 0. */
function referenceScore(ids: number[]): number {
  let s = 0;
  for (const id of ids) s += id === 0 ? 0 : (rawVocab[id]![1] ?? 0);
  return s;
}

/**
 * Where the ids differ, is it only the tie-breaking of two equally scored segmentations of the
 * same text (see src/pipeline/tokenizers/use-lite.ts, quirk b)? Same pieces end to end, bit-equal
 * score under the reference's own arithmetic.
 */
function isExactTie(ref: number[], got: number[]): boolean {
  const text = (ids: number[]) => ids.map((id) => (id === 0 ? '\u0000unk' : rawVocab[id]![0])).join('');
  return text(ref) === text(got) && referenceScore(ref) === referenceScore(got);
}

/** `stock`: transformers.js' AutoTokenizer as it is; otherwise our runtime loader (ties fixed). */
function compare(texts: string[], stock = false): { equal: number; ties: string[]; wrong: string[] } {
  const result = { equal: 0, ties: [] as string[], wrong: [] as string[] };
  for (const t of texts) {
    const want = reference.encode(t);
    const got = stock ? hf.encode(t, { add_special_tokens: false }) : runtime.encode(t);
    if (want.length === got.length && want.every((id, i) => id === got[i])) result.equal++;
    else if (isExactTie(want, got)) result.ties.push(t);
    else result.wrong.push(`${JSON.stringify(t).slice(0, 120)}\n  reference ${want.join(',')}\n  tokenizer.json ${got.join(',')}`);
  }
  return result;
}

test('use-lite tokenizer.json: handcrafted edge cases give exactly the reference ids', () => {
  const r = compare(HANDCRAFTED);
  assert.deepEqual(r.wrong, []);
  assert.deepEqual(r.ties, []);
  assert.equal(r.equal, HANDCRAFTED.length);
  // A few facts of the reference that the configuration must keep.
  assert.deepEqual(hf.encode('', { add_special_tokens: false }), []);
  assert.equal(hf.encode('   ', { add_special_tokens: false }).length, 4, 'every space is its own ▁ after the leading one');
  assert.ok(hf.encode('HELLO', { add_special_tokens: false }).length > 0);
  assert.ok(!hf.encode('<s> </s> extra_token_id_1', { add_special_tokens: false }).some((id) => id >= 1 && id <= 5), 'reserved ids are never matched in text');
  assert.deepEqual(hf.encode('😀😀', { add_special_tokens: false }), reference.encode('😀😀'));
  assert.equal(hf.encode('😀😀', { add_special_tokens: false }).filter((id) => id === 0).length, 1, 'consecutive unknowns merge into one id 0');
});

test('use-lite tokenizer: 1,800 dataset sentences give exactly the reference ids (runtime loader)', (t) => {
  const texts = sampleSentences(100);
  assert.ok(texts.length >= 1000, `only ${texts.length} sentences sampled from ${SHARED_DATA}`);
  const r = compare(texts);
  t.diagnostic(`${texts.length} sentences: ${r.equal} identical, ${r.ties.length} exact ties, ${r.wrong.length} wrong`);
  assert.deepEqual(r.wrong, []);
  assert.deepEqual(r.ties, []);
  assert.equal(r.equal, texts.length);
  // Stock AutoTokenizer on the same tokenizer.json differs only on exact ties (quirk b).
  const stock = compare(texts, true);
  t.diagnostic(`stock AutoTokenizer: ${stock.equal} identical, ${stock.ties.length} exact-score ties broken the other way, ${stock.wrong.length} wrong`);
  assert.deepEqual(stock.wrong, [], 'every difference of the stock tokenizer must be an exact tie');
  assert.ok(stock.ties.length > 0 && stock.ties.length <= texts.length * 0.005, `${stock.ties.length} ties under stock AutoTokenizer`);
});

test('use-lite tokenizer.json: stock transformers.js breaks exact ties the other way; the runtime loader as the reference', () => {
  // The reference keeps the shorter last piece on a tie (`>=`), transformers.js the longer (`>`).
  for (const text of ['Mmmm', 'sooooo', 'Ffffffffff', 'Y?WHERE U AT DOGBREATH? ITS JUST SOUNDING LIKE JAN C THATS AL!!!!!!!!!']) {
    const want = reference.encode(text);
    const got = hf.encode(text, { add_special_tokens: false });
    assert.ok(isExactTie(want, got), `${text}: ${want} vs ${got} is no tie`);
    assert.deepEqual([...got].sort(), [...want].sort(), `${text}: the same pieces in another order`);
    assert.deepEqual(runtime.encode(text), want, `${text}: runtime loader`);
  }
});

test(
  'use-lite tokenizer.json: every sentence of ../shared/data (set SLIM_TOKENIZER_FULL_PARITY=1)',
  { skip: process.env.SLIM_TOKENIZER_FULL_PARITY !== '1' },
  (t) => {
    const texts = sampleSentences(Number.MAX_SAFE_INTEGER);
    const r = compare(texts);
    t.diagnostic(`${texts.length} sentences: ${r.equal} identical, ${r.ties.length} exact ties, ${r.wrong.length} wrong`);
    assert.deepEqual(r.wrong, []);
    assert.deepEqual(r.ties, []);
  },
);

test('use-lite tokenizer files: config records max length 128 and the pad token; runtime loader agrees with AutoTokenizer', () => {
  const config = JSON.parse(readFileSync(join(tokDir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(config.model_max_length, 128);
  assert.equal(hf.model_max_length, USE_LITE_MAX_LENGTH);
  assert.equal(hf.pad_token_id, USE_LITE_PAD_ID);
  assert.equal(runtime.padId, USE_LITE_PAD_ID);
  assert.equal(runtime.padSide, 'right');
  assert.equal(runtime.modelMaxLength, 128);
  for (const text of [...HANDCRAFTED, ...sampleSentences(10)]) {
    assert.deepEqual(runtime.encode(text), hf.encode(text), JSON.stringify(text).slice(0, 80));
    assert.equal(runtime.countTokens(text), runtime.encode(text).length);
  }
  // The reference never emits the pad id, so padding can never pass for a real token.
  for (const text of sampleSentences(20)) assert.ok(!reference.encode(text).includes(USE_LITE_PAD_ID));
});

test('runtime tokenizer: a batch is right-padded to its longest text with the pad id and a 0/1 mask', () => {
  const texts = ['a short one', '', 'and a slightly longer sentence here, with a comma'];
  const ids = texts.map((t) => runtime.encode(t));
  const b = runtime.encodeBatch(texts, { maxLength: 128 });
  assert.equal(b.batchSize, 3);
  assert.equal(b.seqLength, Math.max(...ids.map((e) => e.length)));
  assert.deepEqual(
    b.lengths,
    ids.map((e) => e.length),
  );
  assert.equal(b.inputIds.length, 3 * b.seqLength);
  assert.equal(b.attentionMask.length, 3 * b.seqLength);
  for (let row = 0; row < 3; row++) {
    for (let j = 0; j < b.seqLength; j++) {
      const real = j < ids[row]!.length;
      assert.equal(b.attentionMask[row * b.seqLength + j], real ? 1n : 0n, `mask row ${row} col ${j}`);
      assert.equal(b.inputIds[row * b.seqLength + j], BigInt(real ? ids[row]![j]! : USE_LITE_PAD_ID), `ids row ${row} col ${j}`);
    }
  }
  // To a fixed bucket length instead.
  const bucket = runtime.encodeBatch(texts, { maxLength: 128, padTo: 32 });
  assert.equal(bucket.seqLength, 32);
  assert.equal(
    bucket.attentionMask.reduce((s, v) => s + v, 0n),
    BigInt(ids.reduce((s, e) => s + e.length, 0)),
  );
  assert.throws(() => runtime.encodeBatch(texts, { maxLength: 128, padTo: 2 }), /padTo 2 is shorter/);
  // Only empty texts: one fully masked column rather than a zero-width tensor.
  const empty = runtime.encodeBatch(['', ''], { maxLength: 128 });
  assert.equal(empty.seqLength, 1);
  assert.deepEqual([...empty.attentionMask], [0n, 0n]);
  assert.deepEqual(empty.lengths, [0, 0]);
});

test('runtime tokenizer: truncation keeps the first maxLength ids and reports lengths before it', () => {
  const long = 'the quick brown fox jumps over the lazy dog '.repeat(40);
  const full = runtime.encode(long);
  assert.ok(full.length > USE_LITE_MAX_LENGTH);
  const b = runtime.encodeBatch([long, 'tiny'], { maxLength: USE_LITE_MAX_LENGTH });
  assert.equal(b.seqLength, USE_LITE_MAX_LENGTH);
  assert.deepEqual(b.lengths, [full.length, runtime.countTokens('tiny')]);
  assert.deepEqual([...b.inputIds.subarray(0, USE_LITE_MAX_LENGTH)].map(Number), full.slice(0, USE_LITE_MAX_LENGTH));
  assert.ok(b.attentionMask.subarray(0, USE_LITE_MAX_LENGTH).every((v) => v === 1n));
  // The same as USE itself: its graph keeps the first 128 of the reference ids.
  assert.deepEqual(full.slice(0, USE_LITE_MAX_LENGTH), reference.encode(long).slice(0, USE_LITE_MAX_LENGTH));
});

test('runtime tokenizer: truncate=false refuses over-long texts with their index and length; left padding', () => {
  const texts = ['fits', 'one two three four five six seven eight nine ten eleven twelve', 'also fits'];
  const n = runtime.countTokens(texts[1]!);
  assert.throws(
    () => runtime.encodeBatch(texts, { maxLength: 8, truncate: false }),
    (err: unknown) => {
      assert.ok(err instanceof TextTooLongError);
      assert.equal(err.maxLength, 8);
      assert.deepEqual(err.tooLong, [{ index: 1, length: n }]);
      assert.match(err.message, /longer than the model's 8 tokens/);
      return true;
    },
  );
  const ok = runtime.encodeBatch(texts, { maxLength: n, truncate: false });
  assert.equal(ok.seqLength, n);
  const left = padEncodings([[7, 8], [9]], { maxLength: 4 }, 2, 'left');
  assert.deepEqual([...left.inputIds], [7n, 8n, 2n, 9n]);
  assert.deepEqual([...left.attentionMask], [1n, 1n, 0n, 1n]);
  assert.throws(() => padEncodings([[1]], { maxLength: 0 }, 0), /maxLength must be a positive integer/);
});

test('use-lite tokenizer build: a bad vocab file is an error naming the file', async () => {
  const cases: Array<[string, string, RegExp]> = [
    ['broken.json', '[["a", -1.0], ', /not valid JSON/],
    ['object.json', '{"a": 1}', /expected a JSON array/],
    ['short.json', '[["\ufffd", 0], ["<s>", 0]]', /2 entries/],
    [
      'entry.json',
      JSON.stringify([
        ['\ufffd', 0],
        ['<s>', 0],
        ['</s>', 0],
        ['e1', 0],
        ['e2', 0],
        ['e3', 0],
        ['\u2581', -1],
        ['a', 'high'],
      ]),
      /entry 7 is/,
    ],
    [
      'coverage.json',
      JSON.stringify([
        ['\ufffd', 0],
        ['<s>', 0],
        ['</s>', 0],
        ['e1', 0],
        ['e2', 0],
        ['e3', 0],
        ['\u2581', -1],
        ['\u2581ab', -2],
        ['a', -3],
      ]),
      /contains "b", which is no piece by itself/,
    ],
  ];
  for (const [name, content, message] of cases) {
    const path = join(work, name);
    writeFileSync(path, content);
    await assert.rejects(writeUseLiteTokenizer(join(work, `out-${name}`), { vocabPath: path }), (err: Error) => {
      assert.ok(err.message.includes(path), `${name}: "${err.message}" does not name the file`);
      assert.match(err.message, message);
      return true;
    });
  }
  const missing = join(work, 'missing.json');
  await assert.rejects(
    writeUseLiteTokenizer(join(work, 'out-missing'), { vocabPath: missing }),
    (err: Error) => err.message.includes(missing) && /ENOENT/.test(err.message),
  );
});

test('runtime tokenizer: a missing or broken tokenizer.json is an error naming the file', async () => {
  const empty = join(work, 'no-tokenizer');
  mkdirSync(empty, { recursive: true });
  await assert.rejects(loadTokenizer(empty), (err: Error) => err.message.includes(join(empty, 'tokenizer.json')) && /no such file/.test(err.message));
  const broken = join(work, 'broken-tokenizer');
  mkdirSync(broken, { recursive: true });
  writeFileSync(join(broken, 'tokenizer.json'), '{"model": ');
  await assert.rejects(loadTokenizer(broken), (err: Error) => err.message.includes(join(broken, 'tokenizer.json')) && /not valid JSON/.test(err.message));
  writeFileSync(join(broken, 'tokenizer.json'), '{"model": {"type": "NoSuchModel"}}');
  await assert.rejects(loadTokenizer(broken), (err: Error) => err.message.includes(join(broken, 'tokenizer.json')));
});
