// Checks of the load-test machinery itself (node:test), so a benchmark number can be trusted:
//   - the open-loop driver charges a server stall to every request that was DUE during it
//     (coordinated-omission correction), where a closed loop records one slow sample per client;
//   - /metrics histogram parsing sums the right series;
//   - the transformers.js baseline runs the very same model: same labels and probabilities as
//     our server for the same texts (skipped when models/spam/k1 is not built).
//
//   npm run build && node --test dist/loadtest/selftest.js
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { test } from 'node:test';
import { closedLoop } from './lib/closed-loop.js';
import { openLoop } from './lib/open-loop.js';
import { parseHistograms } from './lib/prom.js';
import { ServerProcess } from './lib/server-process.js';
import { makeTransformersModelDir } from './lib/transformers-model-dir.js';

/**
 * A toy HTTP server in its own process (so its stall does not stall the generator): answers at
 * once, except that the first request after `stallAfterMs` blocks its event loop for `stallMs`.
 */
async function stallingServer(stallAfterMs: number, stallMs: number): Promise<{ url: string; child: ChildProcess }> {
  const code = `
    const http = require('node:http');
    let t0 = 0, stalled = false;
    const srv = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (t0 === 0) t0 = Date.now();
        if (!stalled && Date.now() - t0 > ${stallAfterMs}) { stalled = true; const s = Date.now(); while (Date.now() - s < ${stallMs}); }
        res.end('{}');
      });
    });
    srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  return { url: `http://127.0.0.1:${chunk.toString().trim()}`, child };
}

test('open loop: a 400 ms stall is charged to every request due during it', async () => {
  const { url, child } = await stallingServer(1000, 400);
  try {
    const rate = 200;
    // Two sockets: during the stall the due requests wait in the agent, unsent. Timed from their
    // actual send they would look fast; timed from their intended send they carry the stall.
    const r = await openLoop({ url, bodies: ['{}'], rate, seconds: 3, warmupSeconds: 0, maxSockets: 2 });
    assert.equal(r.ok, 600);
    // About rate x 0.4 s = 80 requests were due during the stall; they wait from 400 ms down to 0,
    // so about 40 of them more than 200 ms. Their share of 600 is ~7%: p95 must see it.
    assert.ok(r.latency.p95Ms > 100, `p95 ${r.latency.p95Ms} ms should include the stall`);
    assert.ok(r.latency.maxMs >= 350, `max ${r.latency.maxMs} ms should be about the stall`);
    assert.ok(r.latency.p50Ms < 50, `p50 ${r.latency.p50Ms} ms should stay small`);
  } finally {
    child.kill();
  }
});

test('closed loop against the same stall records far fewer slow answers (why the open loop exists)', async () => {
  const { url, child } = await stallingServer(1000, 400);
  try {
    const r = await closedLoop({ url, bodies: ['{}'], connections: 2, seconds: 3, warmupSeconds: 0 });
    // Only the requests in flight when the stall began (one per connection) see it.
    assert.ok(r.ok > 100);
    assert.ok(r.latency.p95Ms < 50, `closed-loop p95 ${r.latency.p95Ms} ms hides the stall`);
    assert.ok(r.latency.maxMs >= 350);
  } finally {
    child.kill();
  }
});

test('parseHistograms sums sum/count over the series that match the labels', () => {
  const text = [
    '# TYPE slim_batch_size histogram',
    'slim_batch_size_bucket{le="1",model="spam",variant="k1"} 3',
    'slim_batch_size_sum{model="spam",variant="k1"} 40',
    'slim_batch_size_count{model="spam",variant="k1"} 5',
    'slim_batch_size_sum{model="spam",variant="k2"} 7',
    'slim_batch_size_count{model="spam",variant="k2"} 7',
    'slim_queue_duration_seconds_sum{model="spam",variant="k1"} 0.5',
    'slim_queue_duration_seconds_count{model="spam",variant="k1"} 10',
  ].join('\n');
  const k1 = parseHistograms(text, { variant: 'k1' });
  assert.deepEqual(k1.get('slim_batch_size'), { sum: 40, count: 5 });
  assert.deepEqual(k1.get('slim_queue_duration_seconds'), { sum: 0.5, count: 10 });
  assert.deepEqual(parseHistograms(text).get('slim_batch_size'), { sum: 47, count: 12 });
});

const K1 = resolve('models/spam/k1');
test(
  'the transformers.js baseline runs the same model: same labels and probabilities',
  { skip: !existsSync(join(K1, 'model.onnx')) && 'models/spam/k1 not built' },
  async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'slim-selftest-tjs-'));
    const texts = [
      'WIN a FREE cruise, click now!!!',
      'Minutes of Tuesday meeting attached',
      'cheap loan offer limited time order now',
      'kernel patch release notes for the build server',
    ];
    const dir = makeTransformersModelDir(K1, tmp);
    const ours = await ServerProcess.start({
      kind: 'slim',
      models: resolve('models'),
      workers: 1,
      intraOp: 1,
      interOp: 1,
      maxBatchSize: 8,
      maxBatchTokens: 8192,
      maxQueueDelayMs: 2,
      maxQueued: 1024,
      metrics: true,
    });
    const theirs = await ServerProcess.start({ kind: 'transformers', modelDir: join(dir.root, dir.name), intraOp: 1, interOp: 1 });
    try {
      for (const text of texts) {
        const post = (url: string, body: object) =>
          fetch(`${url}/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.json());
        const a = (await post(ours.url, { inputs: text, model: 'spam', variant: 'k1' })) as { results: { label: string; score: number }[] };
        const b = (await post(theirs.url, { inputs: text })) as { results: { label: string; score: number }[] };
        assert.equal(b.results[0]!.label, a.results[0]!.label, text);
        assert.ok(Math.abs(b.results[0]!.score - a.results[0]!.score) < 1e-4, `${text}: ${b.results[0]!.score} vs ${a.results[0]!.score}`);
      }
    } finally {
      await ours.close();
      await theirs.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  },
);
