// The Open Inference Protocol (KServe v2) subset, checked against the schemas of the protocol's
// own OpenAPI file (../shared/specs/open_inference_rest.yaml), parsed as YAML and compiled with
// ajv, on a real server with the fixture repository.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository, fixtureText, type FixtureRepository } from './helpers/fixture-model.js';
import { call, type JsonAnswer } from './helpers/http.js';
import { SHARED } from './helpers/paths.js';
import { startTestServer } from './helpers/serve.js';

const SPEC_FILE = resolve(SHARED, 'specs/open_inference_rest.yaml');

let repo: FixtureRepository;
let server: RunningServer;
let url: string;
let schema: (name: string) => ValidateFunction;

const get = (path: string): Promise<JsonAnswer> => call('GET', `${url}${path}`);
const post = (path: string, body: unknown): Promise<JsonAnswer> => call('POST', `${url}${path}`, body);

function assertValid(name: string, value: unknown): void {
  const validate = schema(name);
  assert.ok(validate(value), `${name}: ${JSON.stringify(validate.errors)}\n${JSON.stringify(value)}`);
}

const textInput = (data: unknown[], shape = [data.length]) => ({ inputs: [{ name: 'text', datatype: 'BYTES', shape, data }] });

before(async () => {
  const doc = parseYaml(readFileSync(SPEC_FILE, 'utf8')) as { components: { schemas: Record<string, unknown> } };
  // OpenAPI 3.0 schema objects carry title/x-examples; strict off so ajv ignores them. The whole
  // document is registered under one id so that its "#/components/schemas/..." refs resolve.
  const ajv = new Ajv({ strict: false, allErrors: true });
  ajv.addSchema({ $id: 'oip', components: doc.components }, 'oip');
  const compiled = new Map<string, ValidateFunction>();
  schema = (name) => {
    assert.ok(doc.components.schemas[name], `the protocol file has no schema ${name}`);
    if (!compiled.has(name)) compiled.set(name, ajv.compile({ $ref: `oip#/components/schemas/${name}` }));
    return compiled.get(name)!;
  };
  repo = createFixtureRepository([{ name: 'tiny' }]);
  server = (await startTestServer({ models: repo.dir })).server;
  url = server.url;
});

after(async () => {
  await server?.close();
  repo?.cleanup();
});

describe('open inference protocol: metadata and health', () => {
  test('the schemas come from the protocol file and can fail', () => {
    assert.equal(schema('inference_response')({ outputs: [] }), false, 'model_name is required');
    assert.equal(schema('metadata_model_response')({ name: 'x' }), false, 'platform is required');
  });

  test('GET /v2 and /v2/ answer server metadata listing the binary_tensor_data extension', async () => {
    for (const path of ['/v2', '/v2/']) {
      const r = await get(path);
      assert.equal(r.status, 200);
      assertValid('metadata_server_response', r.json);
      assert.equal(r.json.name, 'slimserve');
      // Triton's name for the extension (docs/protocol/extension_binary_data.md), which clients look for.
      assert.deepEqual(r.json.extensions, ['binary_tensor_data']);
    }
  });

  test('health live and ready answer 200', async () => {
    assert.equal((await get('/v2/health/live')).status, 200);
    assert.equal((await get('/v2/health/ready')).status, 200);
  });

  test('model metadata: versions are the variants; one BYTES input, label and probabilities out', async () => {
    const all = await get('/v2/models/tiny');
    assert.equal(all.status, 200);
    assertValid('metadata_model_response', all.json);
    assert.deepEqual(all.json.versions, ['k1', 'k2']);
    assert.deepEqual(all.json.inputs, [{ name: 'text', datatype: 'BYTES', shape: [-1] }]);
    assert.deepEqual(all.json.outputs, [
      { name: 'label', datatype: 'BYTES', shape: [-1] },
      { name: 'probabilities', datatype: 'FP32', shape: [-1, 3] },
    ]);
    const one = await get('/v2/models/tiny/versions/k2');
    assert.equal(one.status, 200);
    assertValid('metadata_model_response', one.json);
    assert.deepEqual(one.json.versions, ['k2']);
  });

  test('model ready, with and without a version; unknown ones are 404 with the protocol error body', async () => {
    assert.equal((await get('/v2/models/tiny/ready')).status, 200);
    assert.equal((await get('/v2/models/tiny/versions/k1/ready')).status, 200);
    for (const path of ['/v2/models/nope/ready', '/v2/models/tiny/versions/k7/ready', '/v2/models/nope', '/v2/models/tiny/versions/k7']) {
      const r = await get(path);
      assert.equal(r.status, 404, path);
      assertValid('metadata_model_error_response', r.json);
      assert.match(r.json.code, /^(MODEL|VARIANT)_NOT_FOUND$/);
    }
  });
});

describe('open inference protocol: infer', () => {
  const texts = [fixtureText(3, 1), fixtureText(12, 2), fixtureText(25, 3, true)];

  test('a versioned infer answers the protocol response, equal to /classify of that variant', async () => {
    const body = { id: 'abc', ...textInput(texts) };
    assertValid('inference_request', body);
    const r = await post('/v2/models/tiny/versions/k2/infer', body);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assertValid('inference_response', r.json);
    assert.equal(r.json.model_name, 'tiny');
    assert.equal(r.json.model_version, 'k2');
    assert.equal(r.json.id, 'abc');
    assert.equal(r.headers.get('x-slim-variant'), 'k2');
    const label = r.json.outputs.find((o: { name: string }) => o.name === 'label');
    const probs = r.json.outputs.find((o: { name: string }) => o.name === 'probabilities');
    assert.deepEqual([label.datatype, label.shape], ['BYTES', [3]]);
    assert.deepEqual([probs.datatype, probs.shape], ['FP32', [3, 3]]);
    assert.equal(probs.data.length, 9);

    const c = await post('/classify', { inputs: texts, variant: 'k2' });
    c.json.results.forEach((res: { label: string; scores: Record<string, number> }, i: number) => {
      assert.equal(label.data[i], res.label);
      Object.values(res.scores).forEach((p, j) => assert.ok(Math.abs(probs.data[i * 3 + j] - p) <= 1e-6));
    });
  });

  test('without a version the request is routed like /classify (default: shallowest)', async () => {
    const r = await post('/v2/models/tiny/infer', textInput(['good film']));
    assert.equal(r.status, 200);
    assertValid('inference_response', r.json);
    assert.equal(r.json.model_version, 'k1');
    assert.equal(typeof r.json.id, 'string');
  });

  test('requested outputs are the only ones returned; nested data is read row-major', async () => {
    const r = await post('/v2/models/tiny/versions/k1/infer', { ...textInput([['good'], ['bad']], [2]), outputs: [{ name: 'label' }] });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assertValid('inference_response', r.json);
    assert.deepEqual(
      r.json.outputs.map((o: { name: string }) => o.name),
      ['label'],
    );
  });

  test('bad requests answer 400 with the protocol error body', async () => {
    const cases: [string, unknown][] = [
      ['wrong input name', { inputs: [{ name: 'input0', datatype: 'BYTES', shape: [1], data: ['x'] }] }],
      ['wrong datatype', { inputs: [{ name: 'text', datatype: 'FP32', shape: [1], data: [1] }] }],
      ['shape and data disagree', textInput(['a', 'b'], [3])],
      ['two-dimensional shape', textInput(['a', 'b'], [1, 2])],
      ['non-string data', textInput([1, 2])],
      ['unknown output', { ...textInput(['a']), outputs: [{ name: 'logits' }] }],
      ['schema: no inputs', { id: 'x' }],
      ['schema: input without data', { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1] }] }],
      ['bad truncate parameter', { ...textInput(['a']), parameters: { truncate: 'no' } }],
    ];
    for (const [what, body] of cases) {
      const r = await post('/v2/models/tiny/versions/k1/infer', body);
      assert.equal(r.status, 400, `${what}: ${JSON.stringify(r.json)}`);
      assertValid('inference_error_response', r.json);
      assert.equal(typeof r.json.error, 'string', what);
      assert.equal(r.json.code, 'INVALID_REQUEST', what);
    }
  });

  test('unknown model or version is 404; too long with truncate false is 422', async () => {
    const m = await post('/v2/models/nope/infer', textInput(['a']));
    assert.equal(m.status, 404);
    assertValid('inference_error_response', m.json);
    const v = await post('/v2/models/tiny/versions/k5/infer', textInput(['a']));
    assert.equal(v.status, 404);
    assert.equal(v.json.code, 'VARIANT_NOT_FOUND');
    const long = await post('/v2/models/tiny/versions/k1/infer', { ...textInput([fixtureText(50, 9)]), parameters: { truncate: false } });
    assert.equal(long.status, 422);
    assertValid('inference_error_response', long.json);
    assert.equal(long.json.code, 'TEXT_TOO_LONG');
  });
});

describe('v2: what tritonclient sends (issue 19)', () => {
  const texts = ['the movie was good', 'awful boring plot', 'click now free prize'];
  const inferUrl = () => `${url}/v2/models/tiny/versions/k1/infer`;

  /** BYTES elements as the binary extension writes them: 4-byte little-endian length + bytes. */
  const bytesTensor = (items: string[]) =>
    Buffer.concat(
      items.flatMap((s) => {
        const b = Buffer.from(s);
        const n = Buffer.alloc(4);
        n.writeUInt32LE(b.length);
        return [n, b];
      }),
    );

  test('[N, 1] input shapes answer like [N]; the answer validates against the protocol file', async () => {
    const flat = await post('/v2/models/tiny/versions/k1/infer', textInput(texts));
    const column = await post(
      '/v2/models/tiny/versions/k1/infer',
      textInput(
        texts.map((t) => [t]),
        [3, 1],
      ),
    );
    assert.equal(column.status, 200, JSON.stringify(column.json));
    assertValid('inference_response', column.json);
    assert.deepEqual(column.json.outputs, flat.json.outputs);
  });

  test('a JSON body without a content type (as tritonclient sends it) is read as JSON', async () => {
    // A Buffer body makes fetch send no content-type header.
    const res = await fetch(inferUrl(), { method: 'POST', body: new Uint8Array(Buffer.from(JSON.stringify(textInput(texts)))) });
    const json = await res.json();
    assert.equal(res.status, 200, JSON.stringify(json));
    assertValid('inference_response', json);
    assert.equal(json.outputs[0].data.length, 3);
  });

  test('binary tensor extension: BYTES input and binary outputs on request decode to the JSON answer', async () => {
    const reference = await post('/v2/models/tiny/versions/k1/infer', textInput(texts));
    const data = bytesTensor(texts);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'text', datatype: 'BYTES', shape: [3, 1], parameters: { binary_data_size: data.length } }],
        outputs: [
          { name: 'label', parameters: { binary_data: true } },
          { name: 'probabilities', parameters: { binary_data: true } },
        ],
      }),
    );
    const res = await fetch(inferUrl(), {
      method: 'POST',
      headers: { 'Inference-Header-Content-Length': String(header.length) },
      body: new Uint8Array(Buffer.concat([header, data])),
    });
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200, body.toString());
    const headerLength = Number(res.headers.get('inference-header-content-length'));
    assert.ok(headerLength > 0 && headerLength < body.length);
    const json = JSON.parse(body.subarray(0, headerLength).toString());
    const [label, probs] = json.outputs;
    assert.equal(label.name, 'label');
    assert.equal(label.data, undefined);
    let at = headerLength;
    const labelBytes = body.subarray(at, (at += label.parameters.binary_data_size));
    const probBytes = body.subarray(at, (at += probs.parameters.binary_data_size));
    assert.equal(at, body.length, 'nothing after the last output');
    assert.deepEqual(labelBytes, bytesTensor(reference.json.outputs[0].data));
    const floats = Array.from({ length: probBytes.length / 4 }, (_, i) => probBytes.readFloatLE(i * 4));
    assert.deepEqual(floats, reference.json.outputs[1].data);
    assert.deepEqual(probs.shape, [3, 3]);
    // Without binary_data_output the answer of a binary request is plain JSON, valid per the protocol.
    const jsonHeader = Buffer.from(
      JSON.stringify({ inputs: [{ name: 'text', datatype: 'BYTES', shape: [3], parameters: { binary_data_size: data.length } }] }),
    );
    const plain = await fetch(inferUrl(), {
      method: 'POST',
      headers: { 'Inference-Header-Content-Length': String(jsonHeader.length) },
      body: new Uint8Array(Buffer.concat([jsonHeader, data])),
    });
    const plainJson = await plain.json();
    assert.equal(plain.status, 200);
    assertValid('inference_response', plainJson);
    assert.deepEqual(plainJson.outputs, reference.json.outputs);
    // binary_data_output in the request's parameters (tritonclient's way when it names no outputs)
    // makes every output binary, unless an output's own binary_data says false.
    const mixedHeader = Buffer.from(
      JSON.stringify({
        parameters: { binary_data_output: true },
        inputs: [{ name: 'text', datatype: 'BYTES', shape: [3], parameters: { binary_data_size: data.length } }],
        outputs: [{ name: 'label', parameters: { binary_data: false } }, { name: 'probabilities' }],
      }),
    );
    const mixed = await fetch(inferUrl(), {
      method: 'POST',
      headers: { 'Inference-Header-Content-Length': String(mixedHeader.length) },
      body: new Uint8Array(Buffer.concat([mixedHeader, data])),
    });
    const mixedBody = Buffer.from(await mixed.arrayBuffer());
    assert.equal(mixed.status, 200, mixedBody.toString());
    const mixedLength = Number(mixed.headers.get('inference-header-content-length'));
    const mixedJson = JSON.parse(mixedBody.subarray(0, mixedLength).toString());
    assert.deepEqual(mixedJson.outputs[0].data, reference.json.outputs[0].data, 'label stays JSON');
    assert.equal(mixedJson.outputs[1].data, undefined, 'probabilities go binary');
    assert.equal(mixedJson.outputs[1].parameters.binary_data_size, mixedBody.length - mixedLength);
  });

  test('binary bodies that do not add up are 400 with the protocol error body', async () => {
    const data = bytesTensor(['a movie']);
    const header = Buffer.from(
      JSON.stringify({ inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: data.length + 5 } }] }),
    );
    const cases: [string, string, Buffer][] = [
      ['size past the end', String(header.length), Buffer.concat([header, data])],
      ['header length past the end', '99999', Buffer.concat([header, data])],
      ['header length not a number', 'x', Buffer.concat([header, data])],
      ['element length past the end', String(header.length), Buffer.concat([header, Buffer.from([200, 0, 0, 0, 65, 66, 67, 68, 69, 70, 71, 72])])],
    ];
    for (const [what, length, body] of cases) {
      const res = await fetch(inferUrl(), { method: 'POST', headers: { 'Inference-Header-Content-Length': length }, body: new Uint8Array(body) });
      const json = await res.json();
      assert.equal(res.status, 400, `${what}: ${JSON.stringify(json)}`);
      assertValid('inference_error_response', json);
    }
  });
});
