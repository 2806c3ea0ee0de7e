// Feedback decides A/B comparisons, so a hostile client must not be able to bend it: a signed
// request_id has exactly one accepted spelling (and counts once), a client's own x-request-id
// cannot re-target another client's prediction, POST /feedback can require a token and is rate
// limited per client by default, and the online accuracy says how many distinct clients fed it.
// Real servers on loopback; a second client is a second loopback source address (127.0.0.2).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { loadConfig } from '../src/serve/config.js';
import { FeedbackIds } from '../src/serve/routing/feedback.js';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository } from './helpers/fixture-model.js';
import { startTestServer } from './helpers/serve.js';

const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
const servers: RunningServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
  repo.cleanup();
});

async function serve(overrides: Record<string, unknown>): Promise<string> {
  return (await startTestServer({ models: repo.dir, ...overrides }, servers)).server.url;
}

/** POST JSON from a chosen loopback source address. */
function post(
  url: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
  localAddress = '127.0.0.1',
): Promise<{ status: number; json: any }> {
  const u = new URL(url);
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: 'POST',
        localAddress,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': payload.length, ...headers },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, json: text ? JSON.parse(text) : null }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const online = async (url: string): Promise<{ n: number; clients: number }> =>
  ((await (await fetch(`${url}/routing/tiny`)).json()) as any).variants.find((v: any) => v.name === 'k1').online;

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

describe('signed request ids (feedbackSecret)', () => {
  test('one accepted spelling: respellings of the same MAC are refused and never count again', async () => {
    const url = await serve({ feedbackSecret: 'a-feedback-secret' });
    const c = await post(url, '/classify', { inputs: 'a great movie' });
    const id = c.json.request_id as string;
    const label = c.json.results[0].label as string;
    const mac = id.split('.')[2]!;
    assert.equal(mac.length, 43, 'a SHA-256 MAC in unpadded base64url');
    // The last character of 43 carries 4 bits and 2 unused ones: flipping an unused bit spells the same bytes.
    const sameBytes = id.slice(0, -1) + ALPHABET[ALPHABET.indexOf(id.at(-1)!) ^ 1]!;
    assert.deepEqual(Buffer.from(sameBytes.split('.')[2]!, 'base64url'), Buffer.from(mac, 'base64url'));
    for (const spelling of [sameBytes, `${id}=`, `${id}${'='.repeat(60_000)}`, `${id}!!`]) {
      const r = await post(url, '/feedback', { request_id: spelling, label });
      assert.deepEqual(
        [r.status, r.json.error?.code],
        [400, 'INVALID_REQUEST_ID'],
        `spelling of length ${spelling.length} answered ${JSON.stringify(r.json).slice(0, 200)}`,
      );
    }
    const first = await post(url, '/feedback', { request_id: id, label });
    assert.deepEqual([first.status, first.json.counted], [202, 1]);
    const again = await post(url, '/feedback', { request_id: id, label });
    assert.deepEqual([again.status, again.json.counted, again.json.duplicates], [202, 0, 1]);
    assert.equal((await online(url)).n, 1, 'counted once in all');
  });

  test('the "already answered" memory is keyed by the fixed-length canonical MAC, whatever the id', () => {
    const ids = new FeedbackIds({ secret: 'a-feedback-secret', ttlMs: 60_000, capacity: 10 });
    const id = ids.issue({ trace: 't'.repeat(128), model: 'tiny', variants: Array(64).fill('k1'), labels: Array(64).fill('positive'), time: Date.now() });
    const resolved = ids.resolve(id);
    assert.equal(resolved.key, id.split('.')[2]);
    assert.equal(resolved.key.length, 43);
  });
});

describe('in-memory request ids (no feedbackSecret)', () => {
  test("a client reusing another client's x-request-id gets its own request_id and cannot re-target the first prediction", async () => {
    const url = await serve({});
    const a = await post(url, '/classify', { inputs: 'a great movie' }, { 'x-request-id': 'shared-id' }, '127.0.0.1');
    const b = await post(url, '/classify', { inputs: ['dull plot', 'boring', 'superb'] }, { 'x-request-id': 'shared-id' }, '127.0.0.2');
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.notEqual(a.json.request_id, 'shared-id', 'the feedback id is issued by the server');
    assert.notEqual(a.json.request_id, b.json.request_id);
    // A's feedback still joins A's one-input prediction, not B's three inputs.
    const fb = await post(url, '/feedback', { request_id: a.json.request_id, label: a.json.results[0].label });
    assert.equal(fb.status, 202, JSON.stringify(fb.json));
    assert.deepEqual([fb.json.counted, fb.json.results[0].predicted], [1, a.json.results[0].label]);
    // The client-chosen id names no prediction at all.
    const byTrace = await post(url, '/feedback', { request_id: 'shared-id', label: a.json.results[0].label });
    assert.deepEqual([byTrace.status, byTrace.json.error?.code], [404, 'REQUEST_ID_NOT_FOUND']);
  });
});

describe('guarding POST /feedback', () => {
  test('with feedbackToken: 401 without a bearer token, 403 with a wrong one, 202 with it', async () => {
    const url = await serve({ feedbackToken: 'feedback-token-1' });
    const c = await post(url, '/classify', { inputs: 'a great movie' });
    const body = { request_id: c.json.request_id, label: c.json.results[0].label };
    const none = await post(url, '/feedback', body);
    assert.deepEqual([none.status, none.json.error?.code], [401, 'UNAUTHORIZED']);
    const wrong = await post(url, '/feedback', body, { authorization: 'Bearer not-the-token' });
    assert.deepEqual([wrong.status, wrong.json.error?.code], [403, 'FORBIDDEN']);
    const right = await post(url, '/feedback', body, { authorization: 'Bearer feedback-token-1' });
    assert.deepEqual([right.status, right.json.counted], [202, 1]);
  });

  test('rate limited per client by default; the online accuracy counts distinct clients', async () => {
    assert.ok(loadConfig({ env: {} }).feedback.rateLimit > 0, 'on by default');
    const url = await serve({ 'feedback.rateLimit': 3 });
    const answered = await Promise.all(Array.from({ length: 5 }, () => post(url, '/classify', { inputs: 'a great movie' })));
    const fb = (i: number, from: string) =>
      post(url, '/feedback', { request_id: answered[i]!.json.request_id, label: answered[i]!.json.results[0].label }, {}, from);
    for (let i = 0; i < 3; i++) assert.equal((await fb(i, '127.0.0.1')).status, 202);
    const limited = await fb(3, '127.0.0.1');
    assert.deepEqual([limited.status, limited.json.error?.code], [429, 'RATE_LIMITED']);
    // Another client has its own budget, and /classify is not limited.
    assert.equal((await fb(4, '127.0.0.2')).status, 202);
    assert.equal((await post(url, '/classify', { inputs: 'still served' })).status, 200);
    assert.deepEqual(await online(url).then((o) => [o.n, o.clients]), [4, 2]);
  });
});
