// The fast Unigram segmentation of src/tokenizer.ts (installFastUnigram) against two independent
// references: transformers.js' own lattice (the "first" tie rule it implements), on every kind of
// text, and a plain enumeration of every segmentation (both tie rules) on a small vocabulary with
// ties, duplicate pieces, null scores and characters it does not cover. And the server loads
// exactly this tokenizer (ties broken as USE-lite's reference breaks them), not transformers.js' own.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { PreTrainedTokenizer } from '@huggingface/transformers';
import { Tokenizer as ReferenceTokenizer } from '@tensorflow-models/universal-sentence-encoder';
import { defaultUseLiteVocabPath, writeUseLiteTokenizer } from '../src/pipeline/tokenizers/use-lite.js';
import { loadTextTokenizer } from '../src/serve/tokenize.js';
import { UNIGRAM_TIE_BREAK_KEY, loadTokenizer } from '../src/tokenizer.js';
import { sampleSentences } from './helpers/dataset-sample.js';

const work = mkdtempSync(join(tmpdir(), 'slim-unigram-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** transformers.js' tokenizer built from the same files, untouched: its lattice, its `>` rule. */
function stockTokenizer(dir: string): PreTrainedTokenizer {
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object;
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as object;
  return new PreTrainedTokenizer(json, config);
}

test('USE-lite vocabulary, "first" rule: identical ids to transformers.js on dataset texts and random Unicode', async () => {
  const dir = join(work, 'use-lite-first');
  await writeUseLiteTokenizer(dir);
  // The same files with our tie key removed: both sides then promise transformers.js' rule.
  const configPath = join(dir, 'tokenizer_config.json');
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  assert.equal(config[UNIGRAM_TIE_BREAK_KEY], 'last', 'the USE-lite tokenizer carries the tie key');
  delete config[UNIGRAM_TIE_BREAK_KEY];
  writeFileSync(configPath, JSON.stringify(config));
  const stock = stockTokenizer(dir);
  const fast = await loadTokenizer(dir);
  const texts = sampleSentences(150);
  assert.ok(texts.length > 2000, `dataset sample: ${texts.length}`);
  let differ = 0;
  let example = '';
  for (const t of texts) {
    if (JSON.stringify(fast.encode(t)) !== JSON.stringify(stock.encode(t))) {
      differ++;
      example ||= t;
    }
  }
  assert.equal(differ, 0, `${differ} of ${texts.length} dataset texts differ, e.g. ${JSON.stringify(example)}`);
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ maxLength: 40 })), (t) => {
      assert.deepEqual(fast.encode(t), stock.encode(t), JSON.stringify(t));
    }),
    { numRuns: 3000, seed: 7 },
  );
});

// A vocabulary built for ties: "ab" = "a" + "b" (-1 + -1 = -2), "abc" = "ab" + "c" = "a" + "bc",
// a duplicated piece (the later id wins, as in transformers.js' Map), a null score (counts 0),
// an astral-plane piece; "x" is covered by no piece (unknown). Scores are multiples of 1/4, so
// every sum is exact and a tie is a tie whatever the order of additions.
const TINY_VOCAB: Array<[string, number | null]> = [
  ['<unk>', 0],
  ['a', -1],
  ['b', -1],
  ['c', -1.5],
  ['ab', -2],
  ['bc', -2.5],
  ['abc', -4],
  ['ca', -2.25],
  ['b', -0.75],
  ['cab', null],
  ['😀', -1],
  ['😀a', -2],
  ['a😀', -2.25],
  ['aa', -2],
  ['aaa', -3],
];
const ALPHABET = ['a', 'b', 'c', '😀', 'x'];

function writeTiny(dir: string, tieBreak: 'first' | 'last'): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'tokenizer.json'),
    JSON.stringify({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      model: { type: 'Unigram', unk_id: 0, vocab: TINY_VOCAB },
    }),
  );
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({
      tokenizer_class: 'PreTrainedTokenizer',
      unk_token: '<unk>',
      ...(tieBreak === 'last' ? { [UNIGRAM_TIE_BREAK_KEY]: 'last' } : {}),
    }),
  );
}

/**
 * Every segmentation of `text` into vocabulary pieces (and one-character unknowns where no
 * one-character piece starts), scored as the lattice scores it; the best total wins, and among
 * equal totals the one whose boundaries, read from the end, start later ("last") or earlier
 * ("first"). The ids then go through the same unknown fusion transformers.js applies.
 */
function enumerateBest(text: string, tieBreak: 'first' | 'last'): number[] {
  const chars = Array.from(text);
  const ids = new Map<string, number>();
  TINY_VOCAB.forEach(([p], i) => ids.set(p, i));
  const score = (piece: string): number => {
    const id = ids.get(piece)!;
    return id === 0 ? Math.min(...TINY_VOCAB.map(([, s]) => s ?? 0)) - 10 : (TINY_VOCAB[id]![1] ?? 0);
  };
  const unkScore = score('<unk>');
  let best: { total: number; starts: number[]; pieces: string[] } | null = null;
  const walk = (pos: number, total: number, starts: number[], pieces: string[]): void => {
    if (pos === chars.length) {
      const better = (): boolean => {
        if (best === null || total > best.total) return true;
        if (total < best.total) return false;
        for (let i = starts.length - 1, j = best.starts.length - 1; i >= 0 && j >= 0; i--, j--) {
          if (starts[i] !== best.starts[j]) return tieBreak === 'last' ? starts[i]! > best.starts[j]! : starts[i]! < best.starts[j]!;
        }
        return false;
      };
      if (better()) best = { total, starts: [...starts], pieces: [...pieces] };
      return;
    }
    let single = false;
    for (let end = pos + 1; end <= chars.length; end++) {
      const piece = chars.slice(pos, end).join('');
      if (!ids.has(piece) || piece === '<unk>') continue;
      if (end === pos + 1) single = true;
      walk(end, total + score(piece), [...starts, pos], [...pieces, piece]);
    }
    if (!single) walk(pos + 1, total + unkScore, [...starts, pos], [...pieces, chars[pos]!]);
  };
  walk(0, 0, [], []);
  const out: number[] = [];
  for (const piece of best!.pieces) {
    const id = ids.get(piece) ?? 0;
    if (id === 0 && out[out.length - 1] === 0) continue; // fuse_unk: a run of unknowns is one
    out.push(id);
  }
  return out;
}

function allStrings(maxLength: number): string[] {
  let level = [''];
  const all: string[] = [];
  for (let l = 1; l <= maxLength; l++) {
    level = level.flatMap((s) => ALPHABET.map((c) => s + c));
    all.push(...level);
  }
  return all;
}

for (const tieBreak of ['first', 'last'] as const) {
  test(`tiny tie-laden vocabulary, "${tieBreak}" rule: equal to enumerating every segmentation, all ${ALPHABET.length}-letter strings up to 6`, async () => {
    const dir = join(work, `tiny-${tieBreak}`);
    writeTiny(dir, tieBreak);
    const fast = await loadTokenizer(dir);
    const stock = stockTokenizer(dir);
    let ties = 0;
    for (const s of allStrings(6)) {
      const expected = enumerateBest(s, tieBreak);
      assert.deepEqual(fast.encode(s), expected, JSON.stringify(s));
      if (tieBreak === 'first') assert.deepEqual(stock.encode(s), expected, `transformers.js on ${JSON.stringify(s)}`);
      else if (JSON.stringify(stock.encode(s)) !== JSON.stringify(expected)) ties++;
    }
    // The "last" rule must actually differ from transformers.js somewhere, or this proves nothing.
    if (tieBreak === 'last') assert.ok(ties > 100, `strings where the rules disagree: ${ties}`);
  });
}

test("the server's tokenizer is the build's: USE-lite ties broken as the reference tokenizer breaks them", async () => {
  const dir = join(work, 'use-lite-served');
  await writeUseLiteTokenizer(dir);
  const served = await loadTextTokenizer(dir);
  const stock = stockTokenizer(dir); // transformers.js' rule, which the server must not use
  const reference = new ReferenceTokenizer(JSON.parse(readFileSync(defaultUseLiteVocabPath(), 'utf8')) as Array<[string, number]>);
  // USE-lite's ids: the reference's piece ids (its encode has no special tokens; ours adds none either).
  const texts = sampleSentences(600);
  let ties = 0;
  for (const t of texts) {
    const expected = reference.encode(t);
    const stockIds = stock.encode(t, { add_special_tokens: false });
    if (JSON.stringify(stockIds) !== JSON.stringify(expected)) ties++;
    assert.deepEqual(served.encode(t), expected, JSON.stringify(t));
  }
  assert.ok(ties > 0, `the sample must hold texts where the tie rule matters (found ${ties} of ${texts.length})`);
});
