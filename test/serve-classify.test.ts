// POST /classify against a real server on loopback with a real ONNX fixture repository:
// batching must not change a probability, split lists come back in order, inputs of different
// lengths are batched apart, and every error status happens where the spec says.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { similarLength } from '../src/serve/batcher.js';
import { formatOpenApi, OPENAPI_FILE } from '../src/serve/openapi.js';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository, fixtureText, type FixtureRepository } from './helpers/fixture-model.js';
import { call } from './helpers/http.js';
import { startTestServer, type TestServer } from './helpers/serve.js';

/** A string body is sent as it is (malformed JSON tests). */
const post = (url: string, body: unknown, headers: Record<string, string> = {}) => call('POST', url, body, { headers, raw: typeof body === 'string' });

interface ClassifyBody {
  model: string;
  variant: string;
  depth: number;
  request_id: string;
  results: { label: string; score: number; scores: Record<string, number> }[];
}
interface ErrorBody {
  error: { code: string; message: string };
}

let repo: FixtureRepository;
const servers: RunningServer[] = [];

const serve = (overrides: Record<string, unknown>, models = repo.dir): Promise<TestServer> => startTestServer({ models, ...overrides }, servers);

/** Texts of 1..30 words: lengths 2..31 tokens with [CLS]. */
const TEXTS = Array.from({ length: 24 }, (_, i) => fixtureText(1 + ((i * 7) % 30), 100 + i, i % 3 === 0));

function assertClose(got: Record<string, number>, want: Record<string, number>, what: string): void {
  assert.deepEqual(Object.keys(got), Object.keys(want), what);
  for (const k of Object.keys(want)) assert.ok(Math.abs(got[k]! - want[k]!) <= 1e-5, `${what}: ${k} ${got[k]} vs ${want[k]}`);
}

before(() => {
  repo = createFixtureRepository([{ name: 'tiny' }]);
});
after(async () => {
  for (const s of servers) await s.close();
  repo.cleanup();
});

describe('classify: answers', () => {
  let url: string;
  let singles: Record<string, number>[];
  before(async () => {
    const { server } = await serve({ 'batching.maxQueueDelayMs': 0 });
    url = server.url;
    // Batch of one, one at a time: the reference every batched answer must match.
    singles = [];
    for (const text of TEXTS) {
      const r = await post(`${url}/classify`, { inputs: text, variant: 'k1' });
      assert.equal(r.status, 200);
      singles.push((r.json as ClassifyBody).results[0]!.scores);
    }
  });

  test('one text: body and headers follow the spec; probabilities sum to 1', async () => {
    const r = await post(`${url}/classify`, { inputs: 'a good movie' }, { 'x-request-id': 'req-123' });
    assert.equal(r.status, 200);
    const body = r.json as ClassifyBody;
    assert.equal(body.model, 'tiny');
    assert.equal(body.variant, 'k1', 'no routing.json: the shallowest variant');
    assert.equal(body.depth, 1);
    assert.match(
      body.request_id,
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      "the feedback id is issued by the server, not the client's x-request-id",
    );
    assert.equal(r.headers.get('x-request-id'), 'req-123');
    assert.equal(r.headers.get('x-slim-variant'), 'k1');
    for (const h of ['x-slim-queue-ms', 'x-slim-inference-ms', 'x-slim-total-ms']) {
      assert.match(r.headers.get(h) ?? '', /^\d+\.\d{3}$/, h);
    }
    assert.ok(Number(r.headers.get('x-slim-total-ms')) >= Number(r.headers.get('x-slim-inference-ms')));
    assert.equal(body.results.length, 1);
    const res = body.results[0]!;
    assert.deepEqual(Object.keys(res.scores), ['negative', 'neutral', 'positive']);
    const sum = Object.values(res.scores).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - 1) < 1e-5, `sum ${sum}`);
    const best = Object.entries(res.scores).sort((a, b) => b[1] - a[1])[0]!;
    assert.equal(res.label, best[0]);
    assert.equal(res.score, best[1]);
  });

  test('an unusable x-request-id is replaced by a generated one', async () => {
    const r = await post(`${url}/classify`, { inputs: 'film' }, { 'x-request-id': 'bad id with spaces' });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    assert.match(r.json.request_id, /^[0-9a-f-]{36}$/, "the feedback id: the server's own");
  });

  test('batching returns for every input the probabilities of a batch of one (within 1e-5)', async () => {
    // Concurrent requests, each a permuted slice, so inputs share batches across requests.
    const order = TEXTS.map((_, i) => (i * 5) % TEXTS.length);
    const chunks = [0, 1, 2, 3, 4, 5].map((c) => order.slice(c * 4, c * 4 + 4));
    const answers = await Promise.all(chunks.map((idx) => post(`${url}/classify`, { inputs: idx.map((i) => TEXTS[i]), variant: 'k1' })));
    answers.forEach((r, c) => {
      assert.equal(r.status, 200);
      (r.json as ClassifyBody).results.forEach((res, j) => assertClose(res.scores, singles[chunks[c]![j]!]!, `text ${chunks[c]![j]}`));
    });
  });

  test('an explicit variant is served and differs from the shallower one', async () => {
    const r = await post(`${url}/classify`, { inputs: TEXTS.slice(0, 4), variant: 'k2' });
    assert.equal(r.status, 200);
    assert.equal(r.json.variant, 'k2');
    assert.equal(r.json.depth, 2);
    assert.equal(r.headers.get('x-slim-variant'), 'k2');
    const differs = (r.json as ClassifyBody).results.some((res, i) => Math.abs(res.scores.negative! - singles[i]!.negative!) > 1e-3);
    assert.ok(differs, 'k2 has one more layer than k1');
  });

  test('truncate (default true) cuts a long text to maxLength tokens: same answer as the cut text', async () => {
    const long = fixtureText(60, 7); // 61 tokens with [CLS]; maxLength 32
    const cut = long.split(' ').slice(0, 31).join(' ');
    const a = await post(`${url}/classify`, { inputs: long });
    const b = await post(`${url}/classify`, { inputs: cut });
    assert.equal(a.status, 200);
    assertClose(a.json.results[0].scores, b.json.results[0].scores, 'truncated');
  });

  test('a huge text is cut before tokenizing: the answer of its first maxLength tokens', async () => {
    const huge = fixtureText(140_000, 8); // about 800 KB, under the 1 MiB bodyLimit
    const cut = huge.split(' ', 31).join(' ');
    const a = await post(`${url}/classify`, { inputs: huge });
    const b = await post(`${url}/classify`, { inputs: cut });
    assert.equal(a.status, 200);
    assertClose(a.json.results[0].scores, b.json.results[0].scores, 'huge');
    // "more than 32": the server never encoded the whole text (a full encoding would give its
    // exact count), so it did not hold the event loop for it. Timing is a benchmark's job.
    const tooLong = await post(`${url}/classify`, { inputs: huge, truncate: false });
    assert.equal(tooLong.status, 422);
    assert.match(tooLong.json.error.message, /has more than 32 tokens/);
  });
});

describe('classify: batching', () => {
  test('a list split across batches (maxBatchSize 4) comes back in order', async () => {
    const { server, batches } = await serve({ 'batching.maxBatchSize': 4, 'batching.maxQueueDelayMs': 0 });
    const singles: Record<string, number>[] = [];
    for (const text of TEXTS.slice(0, 19)) singles.push((await post(`${server.url}/classify`, { inputs: text })).json.results[0].scores);
    batches.length = 0;
    const r = await post(`${server.url}/classify`, { inputs: TEXTS.slice(0, 19) });
    assert.equal(r.status, 200);
    assert.ok(batches.length >= 5, `19 inputs in batches of at most 4: ${batches.length} batches`);
    assert.ok(batches.every((b) => b.size <= 4));
    assert.equal(
      batches.reduce((a, b) => a + b.size, 0),
      19,
    );
    (r.json as ClassifyBody).results.forEach((res, i) => assertClose(res.scores, singles[i]!, `input ${i}`));
  });

  test('inputs of very different lengths go to different batches; the token budget holds', async () => {
    const { server, batches } = await serve({ 'batching.maxBatchSize': 16, 'batching.maxBatchTokens': 256, 'batching.maxQueueDelayMs': 20 });
    const short = Array.from({ length: 8 }, (_, i) => fixtureText(2, 300 + i)); // 3 tokens
    const long = Array.from({ length: 8 }, (_, i) => fixtureText(28, 400 + i)); // 29 tokens
    const mixed = short.flatMap((s, i) => [s, long[i]!]);
    batches.length = 0;
    const r = await post(`${server.url}/classify`, { inputs: mixed });
    assert.equal(r.status, 200);
    assert.equal(
      batches.reduce((a, b) => a + b.size, 0),
      16,
    );
    for (const b of batches) {
      assert.ok(similarLength(b.minLength, b.paddedLength), `a batch mixed lengths ${b.minLength} and ${b.paddedLength}`);
      assert.ok(b.size === 1 || b.tokens <= 256, `batch of ${b.size} x ${b.paddedLength} over the token budget`);
    }
    const shortBatch = batches.find((b) => b.paddedLength === 3);
    assert.ok(shortBatch && shortBatch.size === 8, 'the 8 short inputs ran together, unpadded');
    assert.ok(batches.filter((b) => b.paddedLength === 29).every((b) => b.size <= Math.floor(256 / 29)));
    // Results still in input order: short ones at even positions match a short-only request.
    const alone = await post(`${server.url}/classify`, { inputs: short });
    (alone.json as ClassifyBody).results.forEach((res, i) => assertClose((r.json as ClassifyBody).results[2 * i]!.scores, res.scores, `short ${i}`));
  });

  test('routing.json weights choose the default variant', async () => {
    const routed = createFixtureRepository([{ name: 'routed', routing: { variants: { k1: { weight: 0 }, k2: { weight: 100 } } } }]);
    try {
      const { server } = await serve({}, routed.dir);
      const r = await post(`${server.url}/classify`, { inputs: 'good' });
      assert.equal(r.status, 200);
      assert.equal(r.json.variant, 'k2');
      const m = await (await fetch(`${server.url}/models/routed`)).json();
      assert.equal(m.defaultVariant, 'k2');
    } finally {
      routed.cleanup();
    }
  });

  test("without routing.json the build report's recommended variant answers; an unknown recommendation falls back to the shallowest", async () => {
    const repo = createFixtureRepository([{ name: 'advised', variants: ['k1', 'k2', 'k4'] }, { name: 'misadvised' }]);
    try {
      writeFileSync(join(repo.dir, 'advised', 'report.json'), JSON.stringify({ recommended: { variant: 'k2', depth: 2, mode: 'full', rule: 'test' } }));
      writeFileSync(join(repo.dir, 'misadvised', 'report.json'), JSON.stringify({ recommended: { variant: 'k9', depth: 9, mode: 'full', rule: 'test' } }));
      const { server } = await serve({}, repo.dir);
      const advised = await post(`${server.url}/classify`, { inputs: 'good', model: 'advised' });
      assert.equal(advised.status, 200);
      assert.equal(advised.json.variant, 'k2');
      assert.equal((await (await fetch(`${server.url}/models/advised`)).json()).defaultVariant, 'k2');
      const routing = await (await fetch(`${server.url}/routing/advised`)).json();
      assert.deepEqual(
        routing.variants.map((v: { name: string; share: number }) => [v.name, v.share]),
        [
          ['k1', 0],
          ['k2', 1],
          ['k4', 0],
        ],
      );
      const misadvised = await post(`${server.url}/classify`, { inputs: 'good', model: 'misadvised' });
      assert.equal(misadvised.json.variant, 'k1');
      // An explicit variant still wins over the recommendation.
      assert.equal((await post(`${server.url}/classify`, { inputs: 'good', model: 'advised', variant: 'k4' })).json.variant, 'k4');
    } finally {
      repo.cleanup();
    }
  });
});

describe('classify: errors', () => {
  let url: string;
  let twoModelsUrl: string;
  const two = createFixtureRepository([{ name: 'alpha' }, { name: 'beta', variants: ['k1'] }]);
  before(async () => {
    url = (await serve({ maxInputs: 8, bodyLimit: 4096 })).server.url;
    twoModelsUrl = (await serve({}, two.dir)).server.url;
  });
  after(() => two.cleanup());

  const expectError = (r: { status: number; json: unknown }, status: number, code: string): void => {
    assert.equal(r.status, status, JSON.stringify(r.json));
    const e = (r.json as ErrorBody).error;
    assert.equal(e.code, code);
    assert.equal(typeof e.message, 'string');
    assert.ok(e.message.length > 0);
  };

  test('400: body not matching the schema, bad JSON, an unknown field, an empty list', async () => {
    expectError(await post(`${url}/classify`, { inputs: 3 }), 400, 'INVALID_REQUEST');
    expectError(await post(`${url}/classify`, {}), 400, 'INVALID_REQUEST');
    expectError(await post(`${url}/classify`, { inputs: [] }), 400, 'INVALID_REQUEST');
    expectError(await post(`${url}/classify`, { inputs: 'x', varient: 'k1' }), 400, 'INVALID_REQUEST');
    expectError(await post(`${url}/classify`, { inputs: 'x', truncate: 'yes' }), 400, 'INVALID_REQUEST');
    expectError(await post(`${url}/classify`, '{"inputs": '), 400, 'INVALID_JSON');
  });

  test('400: several models served and none named', async () => {
    expectError(await post(`${twoModelsUrl}/classify`, { inputs: 'x' }), 400, 'MODEL_REQUIRED');
    const r = await post(`${twoModelsUrl}/classify`, { inputs: 'x', model: 'beta' });
    assert.equal(r.status, 200);
    assert.equal(r.json.model, 'beta');
  });

  test('404: unknown model, unknown variant, unknown route', async () => {
    expectError(await post(`${url}/classify`, { inputs: 'x', model: 'nope' }), 404, 'MODEL_NOT_FOUND');
    expectError(await post(`${url}/classify`, { inputs: 'x', variant: 'k9' }), 404, 'VARIANT_NOT_FOUND');
    expectError(await post(`${url}/nowhere`, {}), 404, 'ROUTE_NOT_FOUND');
    const m = await fetch(`${url}/models/nope`);
    expectError({ status: m.status, json: await m.json() }, 404, 'MODEL_NOT_FOUND');
  });

  test('413: more inputs than maxInputs; a body over bodyLimit', async () => {
    expectError(await post(`${url}/classify`, { inputs: Array(9).fill('x') }), 413, 'TOO_MANY_INPUTS');
    const r8 = await post(`${url}/classify`, { inputs: Array(8).fill('x') });
    assert.equal(r8.status, 200);
    expectError(await post(`${url}/classify`, { inputs: 'word '.repeat(1000) }), 413, 'PAYLOAD_TOO_LARGE');
  });

  test('422: a text over maxLength with truncate false', async () => {
    const r = await post(`${url}/classify`, { inputs: ['good', fixtureText(40, 3)], truncate: false });
    expectError(r, 422, 'TEXT_TOO_LONG');
    assert.match(r.json.error.message, /inputs\[1\] has 41 tokens/);
    const ok = await post(`${url}/classify`, { inputs: fixtureText(31, 3), truncate: false }); // exactly 32 tokens
    assert.equal(ok.status, 200);
  });

  test('415: a body that is not JSON', async () => {
    const res = await fetch(`${url}/classify`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
    expectError({ status: res.status, json: await res.json() }, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('models, docs, OpenAPI', () => {
  let url: string;
  before(async () => {
    url = (await serve({})).server.url;
  });

  test('GET /models and /models/{model} list variants with the device used', async () => {
    const list = await (await fetch(`${url}/models`)).json();
    assert.equal(list.ready, true);
    assert.equal(list.models.length, 1);
    const m = list.models[0];
    assert.equal(m.name, 'tiny');
    assert.equal(m.defaultVariant, 'k1');
    assert.deepEqual(
      m.variants.map((v: { name: string }) => v.name),
      ['k1', 'k2'],
    );
    const k2 = m.variants[1];
    assert.equal(k2.depth, 2);
    assert.equal(k2.device, 'cpu');
    assert.equal(k2.requestedDevice, 'cpu');
    assert.equal(k2.maxLength, 32);
    assert.deepEqual(k2.labels, ['negative', 'neutral', 'positive']);
    assert.equal(k2.eval.accuracy, 0.5);
    assert.equal(k2.queueDepth, 0);
    assert.match(k2.onnxSha256, /^[0-9a-f]{64}$/);
    const one = await (await fetch(`${url}/models/tiny`)).json();
    assert.deepEqual(one, m);
  });

  test('GET /docs serves Swagger UI', async () => {
    const res = await fetch(`${url}/docs`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /swagger/i);
  });

  test('the committed openapi/openapi.json is what the server serves at /openapi.json', async () => {
    const served = formatOpenApi(await (await fetch(`${url}/openapi.json`)).json());
    const committed = readFileSync(resolve(OPENAPI_FILE), 'utf8');
    assert.equal(committed, served, 'openapi/openapi.json drifted: regenerate it with `node dist/src/serve/write-openapi.js`');
    const doc = JSON.parse(served);
    for (const path of ['/classify', '/models', '/models/{model}', '/health/live', '/health/ready', '/v2/models/{model}/versions/{version}/infer']) {
      assert.ok(doc.paths[path], `${path} documented`);
    }
    assert.deepEqual(Object.keys(doc.paths['/classify'].post.responses).sort(), ['200', '400', '404', '413', '415', '422', '429', '500', '503', '504']);
  });
});
