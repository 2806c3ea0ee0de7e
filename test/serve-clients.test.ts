// Clients that already exist, unchanged, against a real server on loopback with a real ONNX
// fixture: @huggingface/inference's textClassification (the real npm client), and TEI's
// /predict, /info, /health shapes with plain fetch. Every score is checked against /classify's
// answer for the same text (the same core, the same variant).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InferenceClient } from '@huggingface/inference';
import { loadConfig } from '../src/serve/config.js';
import { startServer, type RunningServer } from '../src/serve/server.js';
import { createFixtureRepository, fixtureText, type FixtureRepository } from './helpers/fixture-model.js';
import { call, post } from './helpers/http.js';

const LABELS = ['negative', 'neutral', 'positive'];
let repo: FixtureRepository;
let server: RunningServer;

before(async () => {
  repo = createFixtureRepository([{ name: 'tiny', variants: ['k2'], labels: LABELS }]);
  const config = loadConfig({ env: {}, overrides: { port: 0, host: '127.0.0.1', logLevel: 'silent', models: repo.dir, workers: 1 } });
  server = await startServer(config, { logger: false });
  await server.ready;
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

function assertSortedLabels(got: { label: string; score: number }[], want: Record<string, number>, what: string): void {
  assert.equal(got.length, LABELS.length, what);
  assert.deepEqual([...got.map((g) => g.label)].sort(), [...LABELS].sort(), `${what}: every label once`);
  for (let i = 1; i < got.length; i++) assert.ok(got[i - 1]!.score >= got[i]!.score, `${what}: sorted by score`);
  for (const g of got) assert.ok(Math.abs(g.score - want[g.label]!) <= 1e-6, `${what}: ${g.label} ${g.score} vs ${want[g.label]}`);
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
    assert.deepEqual(top.map((t) => t.label), [best[0]]);
    const many = await post(`${server.url}/models/tiny`, { inputs: TEXTS, parameters: { function_to_apply: 'softmax' } });
    assert.equal(many.status, 200);
    assert.equal(many.json.length, TEXTS.length);
    for (let i = 0; i < TEXTS.length; i++) assertSortedLabels(many.json[i], await reference(TEXTS[i]!), `input ${i}`);
  });

  test('hf: function_to_apply other than softmax, an unknown model and a bad body are clear errors', async () => {
    const sig = await post(`${server.url}/hf`, { inputs: 'the movie', parameters: { function_to_apply: 'sigmoid' } });
    assert.equal(sig.status, 400);
    assert.match(sig.json.error.message, /function_to_apply "sigmoid" is not served/);
    const client = new InferenceClient().endpoint(`${server.url}/models/nope`);
    // The client surfaces our status and error body (its message only reads a string `error`).
    await assert.rejects(client.textClassification({ inputs: 'the movie' }), (err: any) => {
      assert.equal(err.httpResponse.status, 404);
      assert.equal(err.httpResponse.body.error.code, 'MODEL_NOT_FOUND');
      return true;
    });
    const bad = await post(`${server.url}/hf`, { inputs: 7 });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'INVALID_REQUEST');
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

  test('tei: pairs, raw_scores: true and a too-long text without truncate are refused with a clear error', async () => {
    const pair = await post(`${server.url}/predict`, { inputs: ['the movie', 'the film'] });
    assert.equal(pair.status, 400);
    assert.match(pair.json.error.message, /pairs \["a", "b"\] are not served/);
    const pairs = await post(`${server.url}/predict`, { inputs: [['the movie'], ['c', 'd']] });
    assert.equal(pairs.status, 400);
    assert.match(pairs.json.error.message, /pairs/);
    const flat = await post(`${server.url}/predict`, { inputs: ['a', 'b', 'c'] });
    assert.equal(flat.status, 400, 'three flat strings are neither a text, a pair nor a batch in TEI');
    const raw = await post(`${server.url}/predict`, { inputs: 'the movie', raw_scores: true });
    assert.equal(raw.status, 400);
    assert.match(raw.json.error.message, /raw_scores/);
    const long = fixtureText(200, 9);
    const refused = await post(`${server.url}/predict`, { inputs: long });
    assert.equal(refused.status, 422);
    assert.equal(refused.json.error.code, 'TEXT_TOO_LONG');
    const cut = await post(`${server.url}/predict`, { inputs: long, truncate: true });
    assert.equal(cut.status, 200);
  });

  test('tei: GET /info has TEI\'s fields and the classifier labels; GET /health is 200', async () => {
    const info = await call('GET', `${server.url}/info`);
    assert.equal(info.status, 200);
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
