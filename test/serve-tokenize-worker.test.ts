// Tokenization runs in the inference workers, not on the server's event loop (issue 17):
// - a real server answers, truncates and refuses too-long texts while its main thread has never
//   loaded a tokenizer, and its probabilities are those of session.run on the tokenizer's own ids;
// - the worker's packing (encodeBatch) gives the tokenizer's ids, cut and padded on the variant's
//   side, checked against a plain loop;
// - the token estimate the batcher budgets by is an upper bound of every tokenizer family's
//   count, and batches keep maxBatchTokens with it (and group inputs of similar size).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadTokenizer, tokenizersLoadedInThisThread } from '../src/tokenizer.js';
import { Batcher, type BatchRunner, type BatchTarget } from '../src/serve/batcher.js';
import { CoreError } from '../src/serve/errors.js';
import type { RunningServer } from '../src/serve/server.js';
import { encodeBatch, estimateTokens, textSize } from '../src/serve/tokenize.js';
import type { BatchOutput, BatchTexts } from '../src/serve/worker-pool.js';
import { createFixtureRepository, fixtureText, type FixtureRepository } from './helpers/fixture-model.js';
import { sampleSentences } from './helpers/dataset-sample.js';
import { call } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';
import { TOKENIZER_KIND, tokenizerFixture, writeTokenizerFixture, type FixtureKind } from './helpers/tokenizer-fixtures.js';

const MAX_LENGTH = 16;
let repo: FixtureRepository;
const work = mkdtempSync(join(tmpdir(), 'slim-tok-worker-'));
before(() => {
  repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'], maxLength: MAX_LENGTH }]);
});
after(() => {
  repo.cleanup();
  rmSync(work, { recursive: true, force: true });
});

interface Answer {
  results: { label: string; scores: Record<string, number>; truncated?: boolean }[];
}

describe('a served variant is tokenized in the workers', () => {
  let server: RunningServer;
  before(async () => {
    ({ server } = await startTestServer({ models: repo.dir }));
  });
  after(() => server.close());

  test("answers, truncation and TEXT_TOO_LONG with no tokenizer on the main thread; the ids session.run gets are the tokenizer's", async () => {
    // Fixture texts are n words + [CLS]: 30 words is 31 tokens, past maxLength 16.
    const texts = [fixtureText(3, 1), fixtureText(9, 2, true), fixtureText(15, 3), '', fixtureText(30, 4)];
    const answers: Answer[] = [];
    for (const text of texts) {
      const r = await call('POST', `${server.url}/classify`, { model: 'tiny', inputs: [text] });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      answers.push(r.json as Answer);
    }
    assert.equal(answers[4]!.results[0]!.truncated, true, 'the 31-token text is cut (and says so)');
    assert.ok(
      answers.slice(0, 4).every((a) => !a.results[0]!.truncated),
      'texts within maxLength are not',
    );
    const refused = await call('POST', `${server.url}/classify`, { model: 'tiny', inputs: [texts[0], texts[4]], truncate: false });
    assert.equal(refused.status, 422);
    assert.match(JSON.stringify(refused.json), /TEXT_TOO_LONG.*inputs\[1\] has 31 tokens; tiny\/k1 takes at most 16/);
    assert.equal(tokenizersLoadedInThisThread(), 0, "the main thread (this test's, which runs the server) loaded a tokenizer");

    // Reference: the variant's tokenizer here, its ids cut to maxLength, one row each, through session.run.
    const dir = join(repo.dir, 'tiny', 'k1');
    const tokenizer = await loadTokenizer(dir);
    const session = await ort.InferenceSession.create(join(dir, 'model.onnx'));
    const labels = repo.models[0]!.labels;
    for (const [i, text] of texts.entries()) {
      let ids = tokenizer.encode(text).slice(0, MAX_LENGTH);
      if (ids.length === 0) ids = [tokenizer.padId]; // an empty text runs as one pad token
      const shape = [1, ids.length];
      const out = await session.run({
        input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), shape),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), shape),
      });
      const logits = Array.from(out.logits!.data as Float32Array);
      const top = Math.max(...logits);
      const z = logits.reduce((a, x) => a + Math.exp(x - top), 0);
      const got = answers[i]!.results[0]!.scores;
      labels.forEach((label, k) => {
        const want = Math.exp(logits[k]! - top) / z;
        assert.ok(Math.abs(got[label]! - want) <= 1e-6, `text ${i} ${label}: served ${got[label]}, tokenizer ids ${want}`);
      });
    }
    await session.release();
  });
});

/** One of each model type: byte-level BPE, SentencePiece BPE with byte fallback, Unigram, WordPiece. */
const KINDS: FixtureKind[] = ['gpt2', 'llama2', 'xlm-roberta', 'bert'];
const corpus = sampleSentences(30);
const odd = [
  '',
  ' ',
  'naïve café déjà vu',
  'ЁЖИК в тумане',
  '東京タワー',
  'emoji 🙂👍🏽 ok',
  'tabs\tand\nnewlines',
  'a ☃ snowman',
  'x'.repeat(60),
  '\u{1F600}'.repeat(40),
  'ǆ ﬁ ẞ İ',
];

test("encodeBatch: the tokenizer's ids, cut to maxLength, padded on the variant's side (checked against a plain loop)", async () => {
  for (const kind of ['llama2', 'gemma'] as const) {
    const dir = join(work, `pack-${kind}`);
    writeTokenizerFixture(dir, tokenizerFixture(kind, corpus));
    const tok = await loadTokenizer(dir);
    assert.equal(tok.padSide, kind === 'gemma' ? 'left' : 'right');
    const texts = [corpus[0]!, '', corpus[5]!.slice(0, 10), odd[5]!, corpus.find((t) => tok.encode(t).length > 40)!];
    const maxLength = 24;
    const got = encodeBatch(tok, texts, maxLength);
    const rows = texts.map((t) => {
      const ids = tok.encode(t);
      return ids.length === 0 ? [tok.padId] : ids.slice(0, maxLength);
    });
    const width = Math.max(...rows.map((r) => r.length));
    assert.equal(got.paddedLength, width, `${kind}: padded to the longest row`);
    rows.forEach((ids, r) => {
      assert.equal(got.tokenCounts[r], tok.encode(texts[r]!).length, `${kind} row ${r}: token count`);
      for (let j = 0; j < width; j++) {
        const k = tok.padSide === 'left' ? j - (width - ids.length) : j;
        const real = k >= 0 && k < ids.length;
        assert.equal(got.inputIds[r * width + j], BigInt(real ? ids[k]! : tok.padId), `${kind} row ${r} col ${j}: id`);
        assert.equal(got.attentionMask[r * width + j], real ? 1n : 0n, `${kind} row ${r} col ${j}: mask`);
      }
    });
  }
});

test(`estimateTokens is an upper bound of the token count of every tokenizer model type (${KINDS.map((k) => TOKENIZER_KIND[k]).join(', ')}), capped at maxLength`, async () => {
  const texts = [...corpus, ...odd];
  for (const kind of KINDS) {
    const dir = join(work, `bound-${kind}`);
    writeTokenizerFixture(dir, tokenizerFixture(kind, corpus));
    const tok = await loadTokenizer(dir);
    for (const maxLength of [8, 512]) {
      for (const t of texts) {
        const est = estimateTokens(t, maxLength);
        assert.ok(est >= 1 && est <= maxLength, `${kind}: estimate ${est} outside 1..${maxLength}`);
        assert.ok(
          est >= Math.min(maxLength, tok.encode(t).length),
          `${kind} ${JSON.stringify(t.slice(0, 40))}: estimate ${est} < ${tok.encode(t).length} tokens`,
        );
      }
    }
  }
});

test('batches keep maxBatchTokens with the estimate (and with the real counts), grouping and TEXT_TOO_LONG after the worker counted', async () => {
  const dir = join(repo.dir, 'tiny', 'k1');
  const tok = await loadTokenizer(dir);
  const limits = { maxBatchSize: 32, maxBatchTokens: 96, maxQueueDelayMs: 0, maxQueued: 10_000 };
  const batches: string[][] = [];
  // A runner that records each batch and answers it the way a worker does, with the real tokenizer's counts.
  const runner: BatchRunner = {
    idleCount: 1,
    pipelineSlots: 0,
    size: 1,
    onIdle: () => {},
    run(batch: BatchTexts): Promise<BatchOutput> {
      batches.push(batch.texts);
      const enc = encodeBatch(tok, batch.texts, MAX_LENGTH);
      return Promise.resolve({
        probabilities: new Float32Array(batch.texts.length * 3).fill(1 / 3),
        logits: new Float32Array(batch.texts.length * 3),
        numLabels: 3,
        tokenCounts: enc.tokenCounts,
        paddedLength: enc.paddedLength,
        tokenizeMs: 0,
        inferenceMs: 1,
        startedAt: Date.now(),
        workerIndex: 0,
      });
    },
  };
  const batcher = new Batcher(runner, limits);
  const target: BatchTarget = { key: 'tiny/k1', model: 'tiny', variant: 'k1', device: 'cpu', numLabels: 3, maxLength: MAX_LENGTH };
  batcher.register(target);
  // 1..30 words in a shuffled order: sizes from about 8 to 200 bytes, estimates from 8 to 16 (the cap).
  const texts = Array.from({ length: 120 }, (_, i) => fixtureText(1 + ((i * 7) % 30), i));
  const outcome = await batcher.submit(target.key, texts, { deadline: Date.now() + 60_000, truncate: true });
  assert.equal(outcome.probabilities.length, texts.length);
  assert.deepEqual(
    outcome.truncated,
    texts.flatMap((t, i) => (tok.encode(t).length > MAX_LENGTH ? [i] : [])),
    "the worker's counts mark the cut ones",
  );
  assert.ok(batches.length >= texts.length / 6, `batches of at most 96 / 16 = 6 long inputs or 96 / 6 = 16 short ones (${batches.length} batches)`);
  for (const b of batches) {
    const est = Math.max(...b.map((t) => estimateTokens(t, MAX_LENGTH)));
    assert.ok(b.length === 1 || b.length * est <= limits.maxBatchTokens, `estimated ${b.length} x ${est} > ${limits.maxBatchTokens}`);
    const real = Math.max(...b.map((t) => Math.min(MAX_LENGTH, tok.encode(t).length)));
    assert.ok(b.length === 1 || b.length * real <= limits.maxBatchTokens, `real ${b.length} x ${real} > ${limits.maxBatchTokens}`);
    const sizes = b.map((t) => textSize(t, MAX_LENGTH));
    assert.ok(Math.max(...sizes) <= Math.max(2 * Math.min(...sizes), Math.min(...sizes) + 8), `sizes ${sizes} share a batch`);
  }
  await assert.rejects(
    batcher.submit(target.key, [texts[0]!, fixtureText(30, 9)], { deadline: Date.now() + 60_000, truncate: false }),
    (e: unknown) => e instanceof CoreError && e.code === 'TEXT_TOO_LONG' && /inputs\[1\] has 31 tokens/.test(e.message),
  );
});
