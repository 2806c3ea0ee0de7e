// What an operator meets first, on real servers: a wrong --models stops before the port is bound
// (exit 2, one line); --log-format pretty and --access-log on the real entry point; routing.json
// read from and written to --routing-dir; and the OpenAPI document that Swagger UI at /docs
// renders (bearer scheme on admin routes, operationIds, examples that work when sent,
// placeholders in code spans so Markdown does not eat them).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_OPERATIONS } from '../src/serve/openapi.js';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository, type FixtureRepository } from './helpers/fixture-model.js';
import { call, post, until } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';
import { SERVE_MAIN, spawnServe } from './helpers/serve-process.js';

const TOKEN = 'operator-token-1';

let repo: FixtureRepository;
let routingDir = '';
let server: RunningServer;

before(async () => {
  repo = createFixtureRepository([{ name: 'spam', labels: ['ham', 'spam'], routing: { variants: { k1: { weight: 1 } } } }]);
  routingDir = mkdtempSync(join(tmpdir(), 'slim-routing-dir-'));
  mkdirSync(join(routingDir, 'spam'));
  // The routing directory says k2; the model directory's own routing.json (k1) must be ignored.
  writeFileSync(join(routingDir, 'spam', 'routing.json'), JSON.stringify({ variants: { k2: { weight: 1 } } }));
  server = (await startTestServer({ models: repo.dir, routingDir, adminToken: TOKEN })).server;
});
after(async () => {
  await server?.close();
  repo?.cleanup();
  if (routingDir) rmSync(routingDir, { recursive: true, force: true });
});

const send = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => call(method, `${server.url}${path}`, body, { headers });

test('slim serve --models /nonexistent: exit 2 with one line, before the port is bound', async () => {
  // Hold a port: a server that tried to bind it would fail differently (exit 1, "could not listen").
  const holder = createServer();
  holder.listen(0, '127.0.0.1');
  await once(holder, 'listening');
  const port = (holder.address() as { port: number }).port;
  try {
    const child = spawn(process.execPath, [SERVE_MAIN, '--models', '/nonexistent/models', '--port', String(port), '--host', '127.0.0.1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '',
      stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 2, stderr);
    assert.equal(stdout, '', 'nothing logged: the server never started');
    assert.equal(stderr, 'slim serve: model repository /nonexistent/models does not exist (set by --models or SLIM_MODELS)\n');
  } finally {
    holder.close();
  }
});

test('--log-format pretty --access-log: readable lines, one per request, on the real entry point', async () => {
  const server = await spawnServe(['--models', repo.dir, '--port', '0', '--host', '127.0.0.1', '--workers', '1', '--log-format', 'pretty', '--access-log']);
  const { url, lines } = server;
  try {
    assert.equal((await post(`${url}/classify`, { inputs: ['free money now', 'team meeting'] })).status, 200);
    assert.equal((await fetch(`${url}/models/nope`)).status, 404);
    await until('the access line of GET /models/nope', () => lines.some((l) => l.includes('/models/nope')), 2000);
    for (const line of lines) assert.throws(() => JSON.parse(line), `not a JSON line: ${line}`);
    const access = lines.filter((l) => /(POST|GET) \//.test(l));
    assert.equal(access.length, 2, lines.join('\n'));
    assert.match(access[0]!, /INFO.*POST \/classify 200 [\d.]+ ms/);
    assert.match(access[0]!, /"?variant"?: ?"k\d"/);
    assert.match(access[1]!, /GET \/models\/nope 404 [\d.]+ ms.*"?errorCode"?: ?"MODEL_NOT_FOUND"/);
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
  }
});

test('--routing-dir: routing.json is read from <dir>/<model>/ and PUT /routing writes it there', async () => {
  const first = await send('POST', '/classify', { inputs: ['free money'] });
  assert.equal(first.status, 200);
  assert.equal(first.json.variant, 'k2', "the routing directory's table, not models/spam/routing.json");
  const put = await send('PUT', '/routing/spam', { variants: { k1: { weight: 2 } } }, { authorization: `Bearer ${TOKEN}` });
  assert.equal(put.status, 200, JSON.stringify(put.json));
  assert.deepEqual(JSON.parse(readFileSync(join(routingDir, 'spam', 'routing.json'), 'utf8')).variants, { k1: { weight: 2 } });
  assert.deepEqual(
    JSON.parse(readFileSync(join(repo.dir, 'spam', 'routing.json'), 'utf8')).variants,
    { k1: { weight: 1 } },
    'the model directory is not written',
  );
  assert.equal((await send('POST', '/classify', { inputs: ['free money'] })).json.variant, 'k1');
  // Another edit of the file in the routing directory is picked up by the poll.
  writeFileSync(join(routingDir, 'spam', 'routing.json'), JSON.stringify({ variants: { k2: { weight: 1 } } }));
  let variant = '';
  for (let i = 0; i < 60 && variant !== 'k2'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    variant = (await send('POST', '/classify', { inputs: ['free money'] })).json.variant;
  }
  assert.equal(variant, 'k2');
});

test('OpenAPI for Swagger UI: bearer scheme on exactly the admin routes, unique operationIds, working examples, no bare <placeholders>', async () => {
  const doc = (await send('GET', '/openapi.json')).json;
  assert.deepEqual(doc.components.securitySchemes.adminToken, {
    type: 'http',
    scheme: 'bearer',
    description: "The server's adminToken (--admin-token or SLIM_ADMIN_TOKEN)",
  });
  const ids = new Set<string>();
  for (const [path, ops] of Object.entries<any>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(ops)) {
      const id = `${method.toUpperCase()} ${path}`;
      assert.match(op.operationId, /^[a-z][A-Za-z0-9]+$/, id);
      assert.ok(!ids.has(op.operationId), `duplicate operationId ${op.operationId}`);
      ids.add(op.operationId);
      assert.equal(op.security !== undefined, ADMIN_OPERATIONS.includes(id), `${id}: security`);
      // Without a token every admin route answers 401; with it, not.
      if (op.security) {
        const url = path.replace('{model}', 'spam');
        const body = op.requestBody?.content['application/json'].example;
        assert.equal((await send(method.toUpperCase(), url, body)).status, 401, `${id} without a token`);
        const withToken = await send(method.toUpperCase(), url, body, { authorization: `Bearer ${TOKEN}` });
        assert.equal(withToken.status, 200, `${id} with the token and its example: ${JSON.stringify(withToken.json)}`);
      }
    }
  }
  // The examples Swagger UI fills in, sent as they are (path parameters from their examples).
  for (const id of ['POST /classify', 'POST /v2/models/{model}/infer', 'POST /v2/models/{model}/versions/{version}/infer']) {
    const [method, path] = id.split(' ') as [string, string];
    const op = doc.paths[path][method.toLowerCase()];
    const url = path.replace(/\{(\w+)\}/g, (_: string, name: string) => op.parameters.find((p: any) => p.name === name).example);
    const res = await send(method, url, op.requestBody.content['application/json'].example);
    assert.equal(res.status, 200, `${id}: ${JSON.stringify(res.json)}`);
  }
  // Markdown drops <word> as an unknown HTML tag: every one is inside a code span.
  const texts: string[] = [];
  const walk = (v: unknown, key = ''): void => {
    if (typeof v === 'string' && (key === 'description' || key === 'summary')) texts.push(v);
    else if (v && typeof v === 'object') for (const [k, c] of Object.entries(v)) walk(c, k);
  };
  walk(doc);
  assert.ok(texts.some((t) => t.includes('`<adminToken>`')));
  for (const t of texts) {
    const outside = t
      .split('`')
      .filter((_, i) => i % 2 === 0)
      .join(' ');
    assert.doesNotMatch(outside, /<[^<>\s]+>/, t);
  }
  // The committed document is the served one (also checked in serve-classify).
  assert.deepEqual(JSON.parse(readFileSync('openapi/openapi.json', 'utf8')), doc);
});
