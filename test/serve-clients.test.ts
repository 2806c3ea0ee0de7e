// Clients that already exist, unchanged, against a real server on loopback with a real ONNX
// fixture: @huggingface/inference's textClassification (the real npm client), and TEI's
// /predict, /info, /health shapes with plain fetch. Every probability is checked against
// /classify's answer for the same text (the same core, the same variant); logits (HF
// function_to_apply none and sigmoid, TEI raw_scores) against a plain float64 forward pass of
// the fixture's weights (fixtureLogits).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InferenceClient } from '@huggingface/inference';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository, fixtureLogits, fixtureText, type FixtureRepository } from './helpers/fixture-model.js';
import { call, post } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';

const LABELS = ['negative', 'neutral', 'positive'];
let repo: FixtureRepository;
let server: RunningServer;

before(async () => {
  repo = createFixtureRepository([{ name: 'tiny', variants: ['k2'], labels: LABELS }]);
  ({ server } = await startTestServer({ models: repo.dir }));
});
after(async () => {
  await server?.close();
  repo?.cleanup();
});

const TEXTS = [fixtureText(5, 1), fixtureText(12, 2), fixtureText(3, 3, true)];

/** /classify's probabilities of one text, label -> score. */
async function reference(text: string): Promise<Record<string, number>> {
  const r = await post(`${server.url}/classify`, { inputs: text });
  assert.equal(r.status, 200);
  return r.json.results[0].scores;
}

/** The fixture's logits of one text by label, from the float64 reference (variant k2). */
function referenceLogits(text: string): Record<string, number> {
  const m = repo.models[0]!;
  const z = fixtureLogits(text, { depth: 2, hidden: m.hidden, numLabels: m.labels.length, seed: m.seed });
  return Object.fromEntries(LABELS.map((l, i) => [l, z[i]!]));
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

/** Every label once, sorted by score, each within `tolerance` of `want`. */
function assertSortedLabels(got: { label: string; score: number }[], want: Record<string, number>, what: string, tolerance = 1e-6): void {
  assert.equal(got.length, LABELS.length, what);
  assert.deepEqual([...got.map((g) => g.label)].sort(), [...LABELS].sort(), `${what}: every label once`);
  for (let i = 1; i < got.length; i++) assert.ok(got[i - 1]!.score >= got[i]!.score, `${what}: sorted by score`);
  for (const g of got) assert.ok(Math.abs(g.score - want[g.label]!) <= tolerance, `${what}: ${g.label} ${g.score} vs ${want[g.label]}`);
}

describe('Hugging Face @huggingface/inference', () => {
  test('hf: InferenceClient().endpoint(URL/models/tiny).textClassification({inputs}) returns the labels', async () => {
    const want = await reference(TEXTS[0]!);
    const client = new InferenceClient().endpoint(`${server.url}/models/tiny`);
    const got = await client.textClassification({ inputs: TEXTS[0]! });
    assertSortedLabels(got, want, 'endpoint /models/tiny');
    const root = new InferenceClient().endpoint(`${server.url}/hf`);
    assertSortedLabels(await root.textClassification({ inputs: TEXTS[0]! }), want, 'endpoint /hf');
  });

  test('hf: top_k cuts the list; a list of inputs answers one list per input, in order', async () => {
    const client = new InferenceClient().endpoint(`${server.url}/models/tiny`);
    const top = await client.textClassification({ inputs: TEXTS[1]!, parameters: { top_k: 1 } });
    const want = await reference(TEXTS[1]!);
    const best = Object.entries(want).sort((a, b) => b[1] - a[1])[0]!;
    assert.deepEqual(
      top.map((t) => t.label),
      [best[0]],
    );
    const many = await post(`${server.url}/models/tiny`, { inputs: TEXTS, parameters: { function_to_apply: 'softmax' } });
    assert.equal(many.status, 200);
    assert.equal(many.json.length, TEXTS.length);
    for (let i = 0; i < TEXTS.length; i++) assertSortedLabels(many.json[i], await reference(TEXTS[i]!), `input ${i}`);
  });

  test('hf: function_to_apply none answers the logits, sigmoid their sigmoid, softmax the probabilities (float64 reference)', async () => {
    const client = new InferenceClient().endpoint(`${server.url}/models/tiny`);
    for (const text of TEXTS.slice(0, 2)) {
      const z = referenceLogits(text);
      const none = await client.textClassification({ inputs: text, parameters: { function_to_apply: 'none' } });
      assertSortedLabels(none, z, `none: ${text}`, 1e-4);
      const sig = await client.textClassification({ inputs: text, parameters: { function_to_apply: 'sigmoid' } });
      assertSortedLabels(sig, Object.fromEntries(Object.entries(z).map(([l, v]) => [l, sigmoid(v)])), `sigmoid: ${text}`, 1e-5);
      const max = Math.max(...Object.values(z));
      const sum = Object.values(z).reduce((s, v) => s + Math.exp(v - max), 0);
      const soft = await client.textClassification({ inputs: text, parameters: { function_to_apply: 'softmax' } });
      assertSortedLabels(soft, Object.fromEntries(Object.entries(z).map(([l, v]) => [l, Math.exp(v - max) / sum])), `softmax: ${text}`, 1e-5);
    }
    // The three differ (a test that cannot tell them apart proves nothing): logits are not in [0, 1] here.
    const none = await post(`${server.url}/hf`, { inputs: TEXTS[0], parameters: { function_to_apply: 'none' } });
    assert.ok(
      none.json[0].some((s: { score: number }) => s.score < 0 || s.score > 1),
      JSON.stringify(none.json),
    );
  });

  test('hf: errors answer {"error": "<message>"}, so InferenceClient shows our message (unknown model, bad body)', async () => {
    const client = new InferenceClient().endpoint(`${server.url}/models/nope`);
    await assert.rejects(client.textClassification({ inputs: 'the movie' }), (err: any) => {
      assert.match(err.message, /^Failed to perform inference: no model named nope/, err.message);
      assert.equal(err.httpResponse.status, 404);
      assert.equal(err.httpResponse.body.code, 'MODEL_NOT_FOUND');
      return true;
    });
    const bad = await post(`${server.url}/hf`, { inputs: 7 });
    assert.equal(bad.status, 400);
    assert.equal(typeof bad.json.error, 'string');
    assert.equal(bad.json.code, 'INVALID_REQUEST');
    const badFn = new InferenceClient().endpoint(`${server.url}/hf`);
    await assert.rejects(badFn.textClassification({ inputs: 'the movie', parameters: { function_to_apply: 'tanh' as never } }), (err: any) => {
      assert.match(err.message, /function_to_apply/, err.message);
      assert.equal(err.httpResponse.status, 400);
      return true;
    });
    // /classify keeps its own shape.
    const c = await post(`${server.url}/classify`, { inputs: 'the movie' });
    assert.equal(c.json.model, 'tiny');
  });
});

describe('TEI /predict, /info, /health', () => {
  test('tei: POST /predict {inputs: text} answers [{score, label}] sorted; a batch answers one list per input', async () => {
    const one = await post(`${server.url}/predict`, { inputs: TEXTS[0] });
    assert.equal(one.status, 200);
    assertSortedLabels(one.json, await reference(TEXTS[0]!), 'single');
    for (const p of one.json) assert.deepEqual(Object.keys(p).sort(), ['label', 'score']);
    const batch = await post(`${server.url}/predict`, { inputs: TEXTS.map((t) => [t]), truncate: true, raw_scores: false });
    assert.equal(batch.status, 200);
    for (let i = 0; i < TEXTS.length; i++) assertSortedLabels(batch.json[i], await reference(TEXTS[i]!), `batch ${i}`);
    // As TEI reads them: ["text"] is one text, [["text"]] a batch of one.
    const single = await post(`${server.url}/predict`, { inputs: [TEXTS[2]] });
    assertSortedLabels(single.json, await reference(TEXTS[2]!), '["text"]');
    const batchOfOne = await post(`${server.url}/predict`, { inputs: [[TEXTS[2]]] });
    assert.equal(batchOfOne.json.length, 1);
    assertSortedLabels(batchOfOne.json[0], await reference(TEXTS[2]!), '[["text"]]');
  });

  test('tei: raw_scores: true answers the logits (float64 reference), sorted; a batch too', async () => {
    const raw = await post(`${server.url}/predict`, { inputs: TEXTS[0], raw_scores: true });
    assert.equal(raw.status, 200, JSON.stringify(raw.json));
    assertSortedLabels(raw.json, referenceLogits(TEXTS[0]!), 'raw_scores', 1e-4);
    const batch = await post(`${server.url}/predict`, { inputs: TEXTS.slice(0, 2).map((t) => [t]), raw_scores: true });
    for (let i = 0; i < 2; i++) assertSortedLabels(batch.json[i], referenceLogits(TEXTS[i]!), `raw batch ${i}`, 1e-4);
  });

  test("tei: pairs, left truncation and a too-long text without truncate are refused in TEI's {error, error_type}", async () => {
    const assertTeiError = (r: { status: number; json: any }, status: number, errorType: string, message: RegExp): void => {
      assert.equal(r.status, status, JSON.stringify(r.json));
      assert.deepEqual(Object.keys(r.json).sort(), ['code', 'error', 'error_type']);
      assert.equal(r.json.error_type, errorType);
      assert.match(r.json.error, message);
    };
    assertTeiError(await post(`${server.url}/predict`, { inputs: ['the movie', 'the film'] }), 400, 'Validation', /pairs \["a", "b"\] are not served/);
    assertTeiError(await post(`${server.url}/predict`, { inputs: [['the movie'], ['c', 'd']] }), 400, 'Validation', /pairs/);
    // Three flat strings are neither a text, a pair nor a batch in TEI.
    assertTeiError(await post(`${server.url}/predict`, { inputs: ['a', 'b', 'c'] }), 400, 'Validation', /inputs/);
    const long = fixtureText(200, 9);
    assertTeiError(
      await post(`${server.url}/predict`, { inputs: long, truncate: true, truncation_direction: 'Left' }),
      400,
      'Validation',
      /truncation_direction "Left" is not served/,
    );
    const refused = await post(`${server.url}/predict`, { inputs: long });
    assertTeiError(refused, 422, 'Validation', /tokens/);
    assert.equal(refused.json.code, 'TEXT_TOO_LONG');
    const cut = await post(`${server.url}/predict`, { inputs: long, truncate: true, truncation_direction: 'Right' });
    assert.equal(cut.status, 200);
    // Left is harmless without truncation: nothing is cut.
    assert.equal((await post(`${server.url}/predict`, { inputs: TEXTS[0], truncation_direction: 'Left' })).status, 200);
  });

  test("tei: GET /info has exactly TEI's Info fields and types and the classifier labels; GET /health is 200", async () => {
    const info = await call('GET', `${server.url}/info`);
    assert.equal(info.status, 200);
    // TEI's router/src/lib.rs Info: every field, with its Rust type (Option<_> as null or a value).
    const types: Record<string, string[]> = {
      model_id: ['string'],
      model_sha: ['string', 'null'],
      model_dtype: ['string'],
      model_type: ['object'],
      max_concurrent_requests: ['integer'],
      max_input_length: ['integer'],
      max_batch_tokens: ['integer'],
      max_batch_requests: ['integer', 'null'],
      max_client_batch_size: ['integer'],
      auto_truncate: ['boolean'],
      tokenization_workers: ['integer'],
      version: ['string'],
      sha: ['string', 'null'],
      docker_label: ['string', 'null'],
    };
    assert.deepEqual(Object.keys(info.json).sort(), Object.keys(types).sort());
    const typeOf = (v: unknown): string => (v === null ? 'null' : Number.isInteger(v) ? 'integer' : typeof v);
    for (const [k, allowed] of Object.entries(types)) assert.ok(allowed.includes(typeOf(info.json[k])), `${k}: ${JSON.stringify(info.json[k])}`);
    assert.equal(info.json.model_dtype, 'float32');
    assert.equal(info.json.model_id, 'tiny');
    assert.deepEqual(info.json.model_type, {
      classifier: { id2label: { 0: 'negative', 1: 'neutral', 2: 'positive' }, label2id: { negative: 0, neutral: 1, positive: 2 } },
    });
    for (const k of ['model_dtype', 'version']) assert.equal(typeof info.json[k], 'string', k);
    for (const k of ['max_concurrent_requests', 'max_input_length', 'max_batch_tokens', 'max_client_batch_size', 'tokenization_workers']) {
      assert.ok(Number.isInteger(info.json[k]) && info.json[k] > 0, k);
    }
    assert.equal(info.json.max_input_length, 32);
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);
  });
});
