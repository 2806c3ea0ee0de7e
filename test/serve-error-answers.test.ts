// Every non-2xx answer carries the catalogue body -- also those decided before our routes run
// (node's parser and its own refusals, fastify's router) -- in the Open Inference Protocol's
// shape under /v2; an error's log line keeps its root cause; answers carry no server path; an
// input cut to maxLength is flagged in its result and in a header. Real server on loopback.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { ERROR_CODES } from '../src/serve/errors.js';
import { loadConfig } from '../src/serve/config.js';
import { buildApp, type RunningServer } from '../src/serve/server.js';
import { createFixtureRepository, FIXTURE_WORDS } from './helpers/fixture-model.js';
import { post } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';

const ADMIN = 'admin-token-for-tests';
const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
let server: RunningServer;
let port: number;
before(async () => {
  ({ server, port } = await startTestServer({ models: repo.dir, adminToken: ADMIN }));
});
after(async () => {
  await server.close();
  repo.cleanup();
});

/** One raw request on its own connection: status line, content type and parsed body. */
async function raw(text: string): Promise<{ status: number; contentType: string; body: any }> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  let t = '';
  s.on('data', (d: Buffer) => (t += d.toString('latin1')));
  s.write(text);
  await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, 3000))]);
  s.destroy();
  const head = t.slice(0, t.indexOf('\r\n\r\n'));
  const body = t.slice(t.indexOf('\r\n\r\n') + 4);
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]),
    contentType: /\r\ncontent-type: ([^\r]*)/i.exec(head)?.[1] ?? '',
    body: body ? JSON.parse(body) : null,
  };
}

const catalogue = (r: { body: any }): string => {
  assert.equal(typeof r.body?.error, 'object', `not the catalogue body: ${JSON.stringify(r.body)}`);
  assert.deepEqual(Object.keys(r.body.error).sort(), ['code', 'message']);
  assert.ok(ERROR_CODES.includes(r.body.error.code), r.body.error.code);
  return r.body.error.code;
};
const v2Shape = (r: { body: any }): string => {
  assert.equal(typeof r.body?.error, 'string', `not the protocol's shape: ${JSON.stringify(r.body)}`);
  assert.ok(ERROR_CODES.includes(r.body.code), r.body.code);
  return r.body.code;
};

describe('answers decided before our routes run', () => {
  const cases: { name: string; request: string; status: number; code: string; v2?: boolean }[] = [
    {
      name: 'a path parameter over maxParamLength',
      request: `GET /models/${'a'.repeat(200)} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`,
      status: 414,
      code: 'URI_TOO_LONG',
    },
    { name: 'an undecodable URL', request: 'GET /models/%zz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', status: 400, code: 'INVALID_REQUEST' },
    {
      name: 'an undecodable /v2 URL',
      request: 'GET /v2/models/%zz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
      status: 400,
      code: 'INVALID_REQUEST',
      v2: true,
    },
    { name: 'an HTTP/1.1 request without Host', request: 'GET /models HTTP/1.1\r\nconnection: close\r\n\r\n', status: 400, code: 'INVALID_REQUEST' },
    {
      name: 'an unknown Expect',
      request: 'POST /classify HTTP/1.1\r\nhost: x\r\nexpect: 200-ok\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}',
      status: 417,
      code: 'EXPECTATION_FAILED',
    },
    {
      name: 'an unknown Expect on /v2',
      request: 'POST /v2/models/tiny/infer HTTP/1.1\r\nhost: x\r\nexpect: 200-ok\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}',
      status: 417,
      code: 'EXPECTATION_FAILED',
      v2: true,
    },
    {
      name: 'a header the parser refuses, on /v2',
      request: 'GET /v2/health/ready HTTP/1.1\r\nhost: x\r\nx-bad: a\u0000b\r\n\r\n',
      status: 400,
      code: 'INVALID_REQUEST',
      v2: true,
    },
    {
      name: 'headers over the limit',
      request: `GET /models HTTP/1.1\r\nhost: x\r\nx-big: ${'b'.repeat(20_000)}\r\n\r\n`,
      status: 431,
      code: 'HEADERS_TOO_LARGE',
    },
  ];
  for (const c of cases) {
    test(`${c.name}: ${c.status} ${c.code}${c.v2 ? " in the protocol's shape" : ''}`, async () => {
      const r = await raw(c.request);
      assert.equal(r.status, c.status, JSON.stringify(r.body));
      assert.match(r.contentType, /^application\/json/);
      assert.equal(c.v2 ? v2Shape(r) : catalogue(r), c.code);
    });
  }
});

test('an unexpected exception: 500 INTERNAL without detail; the log line has the code and the root cause with its stack', async () => {
  const lines: any[] = [];
  const config = loadConfig({ env: {}, overrides: { port: 0, host: '127.0.0.1', logLevel: 'info', models: repo.dir, workers: 1 } });
  const { app, core } = await buildApp(config, { logStream: { write: (l: string) => void lines.push(JSON.parse(l)) } });
  // Test scaffolding: a route that fails the way a bug would; the error handler under test is the real one.
  app.get('/test-only/fail', async () => {
    throw new TypeError('cannot read properties of undefined (reading "x") in /srv/secret/module.js');
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    const res = await fetch(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/test-only/fail`);
    const body = await res.json();
    assert.equal(res.status, 500);
    assert.deepEqual(body, { error: { code: 'INTERNAL', message: 'an unexpected server error' } });
    const line = lines.find((l) => l.level === 50);
    assert.ok(line, 'an error line was logged');
    assert.equal(line.code, 'INTERNAL');
    assert.equal(line.cause.type, 'TypeError');
    assert.match(line.cause.message, /reading "x"/);
    assert.match(line.cause.stack, /TypeError: cannot read properties[\s\S]*\n\s+at /, 'the stack of the original exception');
  } finally {
    await app.close();
    await core.close();
  }
});

test("a routing table that cannot be persisted: the answer names the failure, not the server's paths", async () => {
  // routing.json turned into a directory: the rename onto it fails.
  const file = join(repo.dir, 'tiny', 'routing.json');
  rmSync(file, { force: true });
  mkdirSync(join(file, 'blocker'), { recursive: true });
  try {
    const res = await fetch(`${server.url}/routing/tiny`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      body: JSON.stringify({ variants: { k1: { weight: 1 } } }),
    });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const body = JSON.parse(text);
    assert.equal(body.persisted, false);
    assert.match(body.persistError, /^E[A-Z]+: could not write routing\.json/);
    assert.ok(!text.includes(repo.dir), `the answer shows the repository path: ${body.persistError}`);
  } finally {
    rmSync(file, { recursive: true, force: true });
  }
});

test('an input over maxLength is cut and the answer says so: results[].truncated and x-slim-truncated-inputs', async () => {
  const long = Array.from({ length: 80 }, (_, i) => FIXTURE_WORDS[i % FIXTURE_WORDS.length]).join(' '); // 80 tokens > maxLength 32
  const res = await post(`${server.url}/classify`, { inputs: ['good film', long] });
  const body = res.json;
  assert.equal(res.status, 200);
  assert.deepEqual(
    body.results.map((r: any) => r.truncated),
    [false, true],
  );
  assert.equal(res.headers.get('x-slim-truncated-inputs'), '1');
  const strict = await post(`${server.url}/classify`, { inputs: long, truncate: false });
  assert.equal(strict.status, 422);
  assert.equal(strict.json.error.code, 'TEXT_TOO_LONG');
});
