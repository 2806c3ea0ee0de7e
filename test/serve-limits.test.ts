// Back-pressure and lifecycle on a real server whose worker is slowed on purpose
// (testWorkerDelayMs, the in-process form of SLIM_TEST_WORKER_DELAY_MS): 429 past maxQueued,
// 504 past the deadline with the input dropped from the queue, a client that goes away leaves
// the queue, 503 before ready and while draining, and the connection cap (maxConnections).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../src/serve/config.js';
import { buildApp, type RunningServer } from '../src/serve/server.js';
import { createFixtureRepository } from './helpers/fixture-model.js';
import { call, until as untilValue } from './helpers/http.js';
import { startTestServer, type TestServer } from './helpers/serve.js';

const classify = (url: string, inputs: string[], signal?: AbortSignal) => call('POST', `${url}/classify`, { inputs }, { signal });
const until = (what: string, cond: () => boolean, timeoutMs = 5000) => untilValue(what, cond, timeoutMs, 5);

const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
const servers: RunningServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
  repo.cleanup();
});

const serve = (overrides: Record<string, unknown>, delayMs: number): Promise<TestServer> =>
  startTestServer({ models: repo.dir, 'batching.maxQueueDelayMs': 0, ...overrides }, servers, { testWorkerDelayMs: delayMs });

test('429 with Retry-After once a variant holds maxQueued inputs; the accepted ones are answered', async () => {
  const { server } = await serve({ 'batching.maxBatchSize': 2, 'batching.maxQueued': 4, maxInputs: 4 }, 300);
  // a: one batch runs, one waits in the worker's pipeline slot; b fills the queue.
  const a = classify(server.url, ['a', 'b', 'c', 'd']);
  await until('a handed to the worker', () => server.core.inFlight === 1 && server.core.queueDepth('tiny', 'k1') === 0);
  const b = classify(server.url, ['e', 'f', 'g', 'h']);
  await until('four inputs queued', () => server.core.queueDepth('tiny', 'k1') === 4);
  const models = await (await fetch(`${server.url}/models/tiny`)).json();
  assert.equal(models.variants[0].queueDepth, 4, 'GET /models shows the queue depth');
  assert.equal(models.variants[0].running, 4);
  const c = await classify(server.url, ['i']); // 4 + 1 > 4
  assert.equal(c.status, 429);
  assert.equal(c.json.error.code, 'QUEUE_FULL');
  assert.match(c.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
  assert.equal((await a).status, 200);
  assert.equal((await b).status, 200);
  assert.equal((await classify(server.url, ['j'])).status, 200, 'taken again once the queue drained');
});

test('504 when the deadline passes; a request that expires while queued never runs', async () => {
  const { server, batches } = await serve({ 'batching.maxBatchSize': 1, requestTimeoutMs: 1000 }, 400);
  const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => classify(server.url, [`text ${i}`])));
  const ok = answers.filter((r) => r.status === 200).length;
  const late = answers.filter((r) => r.status === 504);
  assert.equal(ok + late.length, 6, JSON.stringify(answers.map((r) => r.status)));
  assert.ok(ok >= 1 && late.length >= 3, `ok ${ok}, 504 ${late.length}`);
  for (const r of late) {
    assert.equal(r.json.error.code, 'DEADLINE_EXCEEDED');
    assert.ok(r.ms < 1000 + 350, `a 504 comes at the deadline, not after the queue drained (${r.ms.toFixed(0)} ms)`);
  }
  await sleep(500); // anything still running finishes
  // One worker: at most one expired input was running at its deadline; queued ones were dropped
  // and one waiting in the worker's pipeline slot was skipped.
  assert.ok(batches.length <= ok + 1, `${batches.length} batches ran for ${ok} answers`);
  assert.ok(batches.length < 6);
  assert.equal(server.core.queueDepth('tiny', 'k1'), 0);
  assert.equal(server.core.inFlight, 0);
});

test('a client that disconnects has its inputs removed from the queue', async () => {
  const { server, batches } = await serve({ 'batching.maxBatchSize': 1 }, 300);
  // One batch runs, one waits in the worker's pipeline slot; the rest stays in the queue.
  const first = classify(server.url, ['busy']);
  const second = classify(server.url, ['next']);
  await until('the worker and its pipeline are busy', () => server.core.inFlight === 2 && server.core.queueDepth('tiny', 'k1') === 0);
  const controller = new AbortController();
  const gone = classify(server.url, ['x', 'y', 'z'], controller.signal).catch((e: Error) => e);
  await until('three inputs queued', () => server.core.queueDepth('tiny', 'k1') === 3);
  controller.abort();
  assert.ok((await gone) instanceof Error);
  await until('the queue emptied', () => server.core.queueDepth('tiny', 'k1') === 0, 2000);
  assert.equal((await first).status, 200);
  assert.equal((await second).status, 200);
  await sleep(400);
  assert.equal(batches.length, 2, 'only the first two requests ran');
  assert.equal(server.core.inFlight, 0);
});

test('503 NOT_READY until every variant is loaded; liveness answers meanwhile', async () => {
  const config = loadConfig({ env: {}, overrides: { port: 0, host: '127.0.0.1', logLevel: 'silent', models: repo.dir, workers: 1 } });
  const { app, core } = await buildApp(config, { logger: false });
  await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    const addr = app.server.address() as { port: number };
    const url = `http://127.0.0.1:${addr.port}`;
    const c = await classify(url, ['x']);
    assert.equal(c.status, 503);
    assert.equal(c.json.error.code, 'NOT_READY');
    const ready = await fetch(`${url}/health/ready`);
    assert.equal(ready.status, 503);
    assert.equal((await ready.json()).error.code, 'NOT_READY');
    assert.equal((await fetch(`${url}/v2/health/ready`)).status, 503);
    const v2 = await call('POST', `${url}/v2/models/tiny/infer`, {});
    assert.equal(v2.status, 503, 'readiness is checked before the body');
    assert.equal((await fetch(`${url}/health/live`)).status, 200);
    assert.deepEqual(await (await fetch(`${url}/models`)).json(), { ready: false, models: [] });
    await core.load();
    assert.equal((await fetch(`${url}/health/ready`)).status, 200);
    assert.equal((await classify(url, ['x'])).status, 200);
  } finally {
    await app.close();
    await core.close();
  }
});

test('503 SHUTTING_DOWN once draining: readiness false first, accepted requests still answered', async () => {
  const { server } = await serve({}, 300);
  const accepted = classify(server.url, ['accepted before the drain']);
  await until('accepted', () => server.core.inFlight === 1);
  server.core.beginDrain();
  const ready = await fetch(`${server.url}/health/ready`);
  assert.equal(ready.status, 503);
  assert.equal((await ready.json()).error.code, 'SHUTTING_DOWN');
  const late = await classify(server.url, ['too late']);
  assert.equal(late.status, 503);
  assert.equal(late.json.error.code, 'SHUTTING_DOWN');
  assert.equal((await fetch(`${server.url}/health/live`)).status, 200);
  assert.equal((await accepted).status, 200);
});

/** Send one HTTP/1.1 request on a raw socket and read until `done(text)` says the answer is complete or the socket closes. */
function exchange(socket: Socket, request: string, done: (text: string) => boolean): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    let text = '';
    const finish = (closed: boolean): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve({ text, closed });
    };
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (done(text)) finish(false);
    };
    const onClose = (): void => finish(true);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(request);
  });
}

test('past maxConnections a new connection gets 429 TOO_MANY_CONNECTIONS (a liveness probe 200) and is closed; the held ones keep working; the refusals are counted', async () => {
  const { server } = await serve({ maxConnections: 2 }, 0);
  const { port } = new URL(server.url);
  const body = JSON.stringify({ inputs: 'hello' });
  const request = `POST /classify HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
  const complete = (t: string): boolean => {
    const head = t.indexOf('\r\n\r\n');
    const m = /content-length: (\d+)/i.exec(t);
    return head >= 0 && m !== null && t.length >= head + 4 + Number(m[1]);
  };
  const open = async (): Promise<Socket> => {
    const s = connect(Number(port), '127.0.0.1');
    await once(s, 'connect');
    return s;
  };
  const held = [await open(), await open()];
  for (const s of held) {
    const r = await exchange(s, request, complete);
    assert.match(r.text, /^HTTP\/1\.1 200 /, 'a connection within the cap is served');
  }
  const third = await open();
  const refused = await exchange(third, request, () => false);
  assert.equal(refused.closed, true, 'the refused connection is closed by the server');
  assert.match(refused.text, /^HTTP\/1\.1 429 /);
  assert.match(refused.text, /\r\nretry-after: 1\r\n/i);
  const json = JSON.parse(refused.text.slice(refused.text.indexOf('\r\n\r\n') + 4));
  assert.equal(json.error.code, 'TOO_MANY_CONNECTIONS');
  // A liveness probe past the cap is answered: a busy server must not be restarted for it.
  const probe = await open();
  const live = await exchange(probe, 'GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n', () => false);
  assert.equal(live.closed, true);
  assert.match(live.text, /^HTTP\/1\.1 200 /);
  assert.deepEqual(JSON.parse(live.text.slice(live.text.indexOf('\r\n\r\n') + 4)), { status: 'live' });
  // The held connections still answer (keep-alive), and a freed slot takes a new connection.
  assert.match((await exchange(held[0]!, request, complete)).text, /^HTTP\/1\.1 200 /);
  held[1]!.destroy();
  await sleep(100); // the server sees the close
  const next = await open();
  assert.match((await exchange(next, request, complete)).text, /^HTTP\/1\.1 200 /, 'a freed slot serves again');
  // /metrics needs a connection too: free one first.
  next.destroy();
  held[0]!.destroy();
  await sleep(100);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  assert.match(metrics, /^slim_connections_refused_total 1$/m);
});
