// While a worker runs a batch, the event loop that answers HTTP must stay free: session.run and
// tokenization happen on worker threads. Checked by order, not by a millisecond bound: health
// probes sent after a batch started must be answered before that batch finishes. Were session.run
// on the event loop, no socket could be read until it returned, so not one probe could be.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createFixtureRepository, fixtureText } from './helpers/fixture-model.js';
import { call, post, until } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';

const BATCH = 16;

test('health probes are answered while a worker runs a long batch', async (t) => {
  // Wide and long enough that one batch of 16 takes tens of ms even on an idle machine.
  const repo = createFixtureRepository([{ name: 'wide', variants: ['k2'], hidden: 1024, maxLength: 64 }]);
  const { server, batches } = await startTestServer({
    models: repo.dir,
    'threads.intraOp': 1,
    'batching.maxBatchSize': BATCH,
    requestTimeoutMs: 60_000,
  });
  try {
    const before = batches.length; // warm-up batches, if any
    const inputs = Array.from({ length: BATCH }, (_, i) => fixtureText(60, i));
    const classify = post(`${server.url}/classify`, { model: 'wide', variant: 'k2', inputs });

    // The one batch is on the worker once its inputs count as running.
    await until('the batch to start on the worker', () => server.core.runningInputs('wide', 'k2') === BATCH, 30_000, 1);
    assert.equal(batches.length, before, 'the batch finished before a probe could be sent: it is too short for this test');

    let answeredDuringBatch = 0;
    while (batches.length === before) {
      const probe = await call('GET', `${server.url}/health/live`);
      assert.equal(probe.status, 200);
      if (batches.length === before) answeredDuringBatch++;
    }

    t.diagnostic(`${answeredDuringBatch} probes answered while the batch ran`);
    const answer = await classify;
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    assert.equal(answer.json.results.length, BATCH);
    assert.equal(batches.length, before + 1, 'the inputs ran as one batch');
    assert.ok(answeredDuringBatch >= 1, 'no probe was answered while the batch ran: the event loop was blocked');
  } finally {
    await server.close();
    repo.cleanup();
  }
});
