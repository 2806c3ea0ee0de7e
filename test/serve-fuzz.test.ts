// Property-based fuzzing of POST /classify and the /v2 infer route (fast-check, 13,000 cases) against a real loaded
// model, through fastify's inject (the full request pipeline: content-type parsing, schema
// validation, routing, tokenization, batching, the worker's onnxruntime session, serialization;
// only the socket is skipped, for speed). Bodies are generated three ways: shaped like requests
// (every field drawn from valid and invalid values), any JSON value, and raw bytes. Whatever
// comes in, the answer is a JSON body that is either a valid result for every input or an error
// whose code is in the catalogue with the catalogue's status; never a 500; and for request-shaped
// bodies an oracle says which of 200 / 400 / 404 / 413 / 422 it must be.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../src/serve/config.js';
import { ERRORS, type ErrorCode } from '../src/serve/errors.js';
import { buildApp } from '../src/serve/server.js';
import type { ServeCore } from '../src/serve/core.js';
import { createFixtureRepository, FIXTURE_WORDS } from './helpers/fixture-model.js';

const MAX_INPUTS = 8;
const MAX_LENGTH = 16;
const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1', 'k2'], labels: ['ham', 'spam'], maxLength: MAX_LENGTH }]);
let app: FastifyInstance;
let core: ServeCore;

before(async () => {
  const config = loadConfig({
    env: {},
    overrides: {
      port: 0,
      models: repo.dir,
      workers: 1,
      'threads.intraOp': 1,
      logLevel: 'silent',
      maxInputs: MAX_INPUTS,
      bodyLimit: 300_000,
      'batching.maxQueueDelayMs': 0,
    },
  });
  ({ app, core } = await buildApp(config, { logger: false }));
  await app.ready();
  await core.load();
});
after(async () => {
  await app?.close();
  await core?.close();
  repo.cleanup();
});

const ABSENT = Symbol('absent');
type Maybe<T> = T | typeof ABSENT;

const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }), // any code point, lone surrogates included
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.array(fc.constantFrom(...FIXTURE_WORDS, 'UNKNOWN', '!', '\u0000', '🎬'), { maxLength: 30 }).map((w) => w.join(' ')),
  fc.constantFrom('', ' ', '\t\n', '\ud800', '\udfff\ud800', '__proto__', 'constructor'),
);
const notAString = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
);

const inputsArb = fc.oneof(
  { weight: 4, arbitrary: anyText },
  { weight: 6, arbitrary: fc.array(anyText, { minLength: 1, maxLength: MAX_INPUTS }) },
  { weight: 1, arbitrary: fc.array(anyText, { minLength: MAX_INPUTS + 1, maxLength: MAX_INPUTS + 20 }) },
  { weight: 1, arbitrary: fc.constant([]) },
  { weight: 1, arbitrary: fc.array(fc.oneof(anyText, notAString), { minLength: 1, maxLength: 5 }) },
  { weight: 1, arbitrary: notAString },
  { weight: 1, arbitrary: fc.constant(ABSENT) },
);
const nameArb = (valid: string[]): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.constant(ABSENT) },
    { weight: 5, arbitrary: fc.constantFrom(...valid) },
    { weight: 2, arbitrary: fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.constantFrom('', 'k9', '__proto__', 'constructor', '../k1', 'K1')) },
    { weight: 1, arbitrary: notAString },
  );

const requestArb = fc.record({
  inputs: inputsArb,
  model: nameArb(['tiny']),
  variant: nameArb(['k1', 'k2']),
  key: fc.oneof(fc.constant(ABSENT), fc.string({ unit: 'binary', maxLength: 64 }), notAString),
  truncate: fc.oneof(fc.constant(ABSENT), fc.boolean(), notAString),
  extra: fc.oneof({ weight: 8, arbitrary: fc.constant(ABSENT) }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) }),
  header: fc.oneof(fc.constant(ABSENT), fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 })),
});

interface Shaped {
  inputs: Maybe<unknown>;
  model: Maybe<unknown>;
  variant: Maybe<unknown>;
  key: Maybe<unknown>;
  truncate: Maybe<unknown>;
  extra: Maybe<unknown>;
  header: Maybe<string>;
}

function bodyOf(r: Shaped): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const k of ['inputs', 'model', 'variant', 'key', 'truncate'] as const) if (r[k] !== ABSENT) body[k] = r[k];
  if (r.extra !== ABSENT) body.unexpected = r.extra;
  return body;
}

const isString = (v: unknown): v is string => typeof v === 'string';

/** What the API documentation says a request-shaped body must get (two answers when the token count decides). */
function oracle(r: Shaped): number[] {
  const { inputs, model, variant, key, truncate, extra } = r;
  const schemaOk =
    extra === ABSENT &&
    (isString(inputs) || (Array.isArray(inputs) && inputs.length >= 1 && inputs.every(isString))) &&
    (model === ABSENT || (isString(model) && model.length > 0)) &&
    (variant === ABSENT || (isString(variant) && variant.length > 0)) &&
    (key === ABSENT || isString(key)) &&
    (truncate === ABSENT || typeof truncate === 'boolean');
  if (!schemaOk) return [400];
  const list = isString(inputs) ? [inputs] : (inputs as string[]);
  if (list.length > MAX_INPUTS) return [413];
  if (model !== ABSENT && model !== 'tiny') return [404];
  if (variant !== ABSENT && variant !== 'k1' && variant !== 'k2') return [404];
  // The fixture tokenizer splits on whitespace and adds [CLS]: a text of MAX_LENGTH words or
  // more is too long; near the edge, unicode whitespace may count either way.
  if (truncate === false && list.some((t) => t.split(/\s+/).filter(Boolean).length >= MAX_LENGTH - 4)) return [200, 422];
  return [200];
}

const seen = new Map<string, number>();

/** The invariant every answer keeps, whatever the body was. */
function checkAnswer(res: { statusCode: number; headers: Record<string, unknown>; body: string }, inputCount: number | null): void {
  assert.notEqual(res.statusCode, 500, res.body);
  assert.match(String(res.headers['content-type']), /^application\/json/, res.body);
  const json = JSON.parse(res.body);
  if (res.statusCode === 200) {
    assert.ok(Array.isArray(json.results), res.body);
    if (inputCount !== null) assert.equal(json.results.length, inputCount);
    assert.ok(json.variant === 'k1' || json.variant === 'k2');
    for (const r of json.results) {
      assert.ok(r.label === 'ham' || r.label === 'spam');
      assert.ok(Math.abs(r.scores.ham + r.scores.spam - 1) < 1e-5 && r.score === Math.max(r.scores.ham, r.scores.spam), res.body);
    }
    seen.set('200', (seen.get('200') ?? 0) + 1);
    return;
  }
  const code = json?.error?.code as ErrorCode;
  assert.ok(code in ERRORS, `not a catalogue code: ${res.body}`);
  assert.equal(ERRORS[code].status, res.statusCode, res.body);
  assert.equal(typeof json.error.message, 'string');
  assert.doesNotMatch(res.body, /\n\s+at |node_modules|\.js:\d/);
  seen.set(`${res.statusCode} ${code}`, (seen.get(`${res.statusCode} ${code}`) ?? 0) + 1);
}

test('fuzz: request-shaped bodies (6,000 cases) get exactly the documented answer', async () => {
  await fc.assert(
    fc.asyncProperty(requestArb as unknown as fc.Arbitrary<Shaped>, async (r) => {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (r.header !== ABSENT) headers['x-slim-key'] = r.header;
      const res = await app.inject({ method: 'POST', url: '/classify', headers, payload: JSON.stringify(bodyOf(r)) });
      const expected = oracle(r);
      const count = expected.includes(200) ? (isString(r.inputs) ? 1 : (r.inputs as unknown[]).length) : null;
      checkAnswer(res, count);
      assert.ok(expected.includes(res.statusCode), `expected ${expected.join(' or ')}, got ${res.statusCode} ${res.body} for ${JSON.stringify(bodyOf(r))}`);
    }),
    { numRuns: 6000 },
  );
});

test('fuzz: any JSON value (2,500 cases) and raw bytes (2,500 cases) never get a 500', async () => {
  await fc.assert(
    fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), async (v) => {
      const res = await app.inject({ method: 'POST', url: '/classify', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(v) ?? 'null' });
      checkAnswer(res, null);
    }),
    { numRuns: 2500 },
  );
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        // Near-valid JSON: a valid body with a few bytes overwritten.
        fc
          .tuple(
            fc.array(fc.constantFrom(...FIXTURE_WORDS), { minLength: 1, maxLength: 5 }),
            fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
          )
          .map(([words, edits]) => {
            const b = Buffer.from(JSON.stringify({ inputs: words, truncate: true }));
            for (const [at, byte] of edits) b[at % b.length] = byte;
            return new Uint8Array(b);
          }),
      ),
      fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/octet-stream'),
      async (bytes, contentType) => {
        const res = await app.inject({ method: 'POST', url: '/classify', headers: { 'content-type': contentType }, payload: Buffer.from(bytes) });
        checkAnswer(res, null);
      },
    ),
    { numRuns: 2500 },
  );
  assert.equal(core.inFlight, 0);
  assert.equal(core.queueDepth('tiny', 'k1') + core.queueDepth('tiny', 'k2'), 0);
});

const DEEP = '__data nested 100,000 deep__';

test('fuzz: Open Inference Protocol infer bodies (2,000 cases) never get a 500', async () => {
  const tensor = fc.record(
    {
      name: fc.oneof(fc.constant('text'), fc.string({ maxLength: 6 }), notAString),
      datatype: fc.oneof(fc.constant('BYTES'), fc.constantFrom('FP32', 'INT64', ''), notAString),
      shape: fc.oneof(fc.array(fc.integer({ min: -2, max: 10 }), { maxLength: 3 }), notAString),
      data: fc.oneof(
        fc.array(anyText, { minLength: 1, maxLength: 6 }),
        fc.array(fc.array(anyText, { maxLength: 3 }), { maxLength: 3 }),
        fc.jsonValue({ maxDepth: 4 }),
        fc.integer({ min: 1, max: 40 }).map((d) => JSON.parse('['.repeat(d) + '"x"' + ']'.repeat(d)) as unknown),
        // Spliced into the payload as text: JSON.stringify (and fast-check's reporting) recurse.
        fc.constant(DEEP),
      ),
      parameters: fc.oneof(
        fc.constant(undefined),
        fc.record({ truncate: fc.oneof(fc.boolean(), notAString), key: fc.oneof(fc.string(), notAString) }, { requiredKeys: [] }),
      ),
    },
    { requiredKeys: ['name', 'datatype', 'shape', 'data'] },
  );
  const body = fc.record(
    {
      id: fc.oneof(fc.string({ maxLength: 20 }), notAString),
      inputs: fc.oneof(
        {
          weight: 4,
          arbitrary: fc.array(anyText, { minLength: 1, maxLength: 6 }).map((d) => [{ name: 'text', datatype: 'BYTES', shape: [d.length], data: d }]),
        },
        { weight: 4, arbitrary: fc.array(tensor, { minLength: 1, maxLength: 2 }) },
        { weight: 1, arbitrary: fc.oneof(fc.constant([]), notAString) },
      ),
      outputs: fc.array(fc.record({ name: fc.oneof(fc.constantFrom('label', 'probabilities'), fc.string({ maxLength: 5 })) }), { maxLength: 3 }),
      parameters: fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 2 }),
    },
    { requiredKeys: [] },
  );
  const path = fc.constantFrom(
    '/v2/models/tiny/infer',
    '/v2/models/tiny/versions/k1/infer',
    '/v2/models/tiny/versions/k2/infer',
    '/v2/models/tiny/versions/k9/infer',
    '/v2/models/nope/infer',
  );
  await fc.assert(
    fc.asyncProperty(body, path, async (b, url) => {
      const payload = JSON.stringify(b).replace(`"${DEEP}"`, '['.repeat(100_000) + '"x"' + ']'.repeat(100_000));
      const res = await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload });
      assert.notEqual(res.statusCode, 500, res.body);
      const json = JSON.parse(res.body);
      if (res.statusCode === 200) {
        assert.ok(Array.isArray(json.outputs) && json.outputs.length >= 1, res.body);
        seen.set('v2 200', (seen.get('v2 200') ?? 0) + 1);
        return;
      }
      assert.equal(typeof json.error, 'string', res.body);
      assert.ok(json.code in ERRORS && ERRORS[json.code as ErrorCode].status === res.statusCode, res.body);
      seen.set(`v2 ${res.statusCode} ${json.code}`, (seen.get(`v2 ${res.statusCode} ${json.code}`) ?? 0) + 1);
    }),
    { numRuns: 2000 },
  );
});

test('fuzz coverage: the cases reached the model and every kind of refusal', (t) => {
  t.diagnostic(`answers: ${JSON.stringify(Object.fromEntries([...seen].sort()))}`);
  for (const kind of [
    '200',
    '400 INVALID_REQUEST',
    '400 INVALID_JSON',
    '404 MODEL_NOT_FOUND',
    '404 VARIANT_NOT_FOUND',
    '413 TOO_MANY_INPUTS',
    '415 UNSUPPORTED_MEDIA_TYPE',
  ]) {
    assert.ok((seen.get(kind) ?? 0) > 0, `no case got ${kind}: ${JSON.stringify([...seen])}`);
  }
  assert.ok((seen.get('200') ?? 0) >= 1000, `only ${seen.get('200')} cases reached the model`);
  assert.ok((seen.get('v2 200') ?? 0) >= 20, `only ${seen.get('v2 200')} v2 cases reached the model`);
});
