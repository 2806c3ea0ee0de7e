// Faults, injected for real (SLIM_FAULT_INJECT, read only by the worker thread): a worker that
// crashes, throws or hangs is terminated and replaced; the inputs of its batch get 503
// WORKER_FAILED at once (never a hang); the other worker keeps serving every variant; the log says
// what happened. A truncated model file stops `slim serve` with an error naming the file.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository } from './helpers/fixture-model.js';
import { post, until as untilValue, type JsonAnswer } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';
import { SERVE_MAIN } from './helpers/serve-process.js';

const classify = (url: string, body: unknown) => post(`${url}/classify`, body);
const until = (what: string, cond: () => boolean, timeoutMs = 15_000) => untilValue(what, cond, timeoutMs);

const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1', 'k2'] }]);
after(() => repo.cleanup());

/** A server on loopback whose worker 0 carries the fault `spec`; log lines are collected. */
async function faultyServer(spec: string, overrides: Record<string, unknown> = {}): Promise<{ server: RunningServer; log: any[] }> {
  const log: any[] = [];
  const settings = { models: repo.dir, workers: 2, 'threads.intraOp': 1, logLevel: 'info', 'batching.maxQueueDelayMs': 0, ...overrides };
  // Workers copy the environment when they are spawned: set it for the start only.
  process.env.SLIM_FAULT_INJECT = spec;
  let server: RunningServer;
  try {
    ({ server } = await startTestServer(settings, [], { logStream: { write: (l: string) => void log.push(JSON.parse(l)) } }));
  } finally {
    delete process.env.SLIM_FAULT_INJECT;
  }
  return { server, log };
}

function assertWorkerFailed(a: JsonAnswer): void {
  assert.equal(a.status, 503, JSON.stringify(a.json));
  assert.equal(a.json.error.code, 'WORKER_FAILED');
  assert.equal(a.headers.get('retry-after'), '1');
  assert.doesNotMatch(a.json.error.message, /(^|\s)\/\w|\.(js|ts|onnx)\b|:\d+:\d+/, 'no file path or stack in the message');
}

describe('a worker that fails is replaced; its batch gets 503, nothing hangs', () => {
  for (const kind of ['crash', 'throw'] as const) {
    test(`${kind}: 503 WORKER_FAILED at once, k2 keeps serving, the worker comes back`, async () => {
      const { server, log } = await faultyServer(`${kind}:k1:2`);
      try {
        // Sequential requests go to worker 0 (the first idle one): its 2nd k1 batch fails.
        assert.equal((await classify(server.url, { inputs: 'good movie', variant: 'k1' })).status, 200);
        const failed = await classify(server.url, { inputs: ['bad plot', 'dull'], variant: 'k1' });
        assertWorkerFailed(failed);
        assert.ok(failed.ms < 2000, `the failure is answered at once (${failed.ms.toFixed(0)} ms), not at the deadline`);
        // Worker 1 serves every variant while worker 0 is replaced.
        const during = await Promise.all(Array.from({ length: 6 }, (_, i) => classify(server.url, { inputs: `story ${i}`, variant: i % 2 ? 'k1' : 'k2' })));
        assert.deepEqual(
          during.map((a) => a.status),
          [200, 200, 200, 200, 200, 200],
        );
        await until('the replacement is ready', () => log.some((l) => l.msg === 'inference worker replaced'));
        const died = log.find((l) => l.msg === 'inference worker failed');
        assert.equal(died.kind, 'died');
        assert.equal(died.workerIndex, 0);
        assert.equal(died.lostBatches, 1);
        assert.match(died.message, kind === 'crash' ? /exited with code 70/ : /injected fault/);
        // Back to two workers, and the replacement (generation 1) does not carry the fault.
        const after = await Promise.all(Array.from({ length: 8 }, (_, i) => classify(server.url, { inputs: `the film ${i}`, variant: 'k1' })));
        assert.ok(after.every((a) => a.status === 200));
        assert.equal(server.core.inFlight, 0);
        assert.equal(server.core.queueDepth('tiny', 'k1'), 0);
      } finally {
        await server.close();
      }
    });
  }

  test('hang: terminated after batchTimeoutMs, 503 (not 504), other variant served meanwhile, replaced', async () => {
    const { server, log } = await faultyServer('hang:k1:1', { batchTimeoutMs: 800, requestTimeoutMs: 8000 });
    try {
      const hung = classify(server.url, { inputs: 'the plot', variant: 'k1' });
      await until('the batch is on worker 0', () => server.core.runningInputs('tiny', 'k1') === 1, 2000);
      const k2 = await classify(server.url, { inputs: ['great ending', 'awful'], variant: 'k2' });
      assert.equal(k2.status, 200, 'worker 1 serves while worker 0 hangs');
      const failed = await hung;
      assertWorkerFailed(failed);
      assert.ok(failed.ms >= 750 && failed.ms < 3000, `answered at batchTimeoutMs, ${failed.ms.toFixed(0)} ms`);
      const event = log.find((l) => l.msg === 'inference worker failed');
      assert.equal(event.kind, 'hung');
      assert.match(event.message, /batchTimeoutMs \(800 ms\)/);
      await until('the replacement is ready', () => log.some((l) => l.msg === 'inference worker replaced'));
      const again = await Promise.all([1, 2, 3, 4].map((i) => classify(server.url, { inputs: `film ${i}`, variant: 'k1' })));
      assert.ok(again.every((a) => a.status === 200));
    } finally {
      await server.close();
    }
  });

  test('a malformed SLIM_FAULT_INJECT stops the start naming the variable', async () => {
    await assert.rejects(faultyServer('explode:k1'), /SLIM_FAULT_INJECT: expected/);
  });
});

describe('a truncated model file stops the start, naming the file', () => {
  function serveOnce(models: string): { status: number | null; stderr: string } {
    const r = spawnSync(process.execPath, [SERVE_MAIN, '--models', models, '--port', '0', '--workers', '1', '--log-level', 'silent'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, SLIM_FAULT_INJECT: '' },
    });
    return { status: r.status, stderr: r.stderr };
  }

  test('truncated on disk (checksum no longer matches): exit 1, the file named', () => {
    const broken = createFixtureRepository([{ name: 'tiny', variants: ['k1', 'k2'] }]);
    try {
      const onnx = join(broken.dir, 'tiny/k2/model.onnx');
      truncateSync(onnx, Math.floor(readFileSync(onnx).length / 2));
      const r = serveOnce(broken.dir);
      assert.equal(r.status, 1, r.stderr);
      assert.ok(r.stderr.includes(onnx), r.stderr);
    } finally {
      broken.cleanup();
    }
  });

  test('truncated with a matching checksum (onnxruntime refuses it): exit 1, the file named', () => {
    const broken = createFixtureRepository([{ name: 'tiny', variants: ['k1', 'k2'] }]);
    try {
      const onnx = join(broken.dir, 'tiny/k2/model.onnx');
      truncateSync(onnx, Math.floor(readFileSync(onnx).length / 2));
      const manifestFile = join(broken.dir, 'tiny/k2/manifest.json');
      const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
      manifest.onnxSha256 = createHash('sha256').update(readFileSync(onnx)).digest('hex');
      writeFileSync(manifestFile, JSON.stringify(manifest));
      const r = serveOnce(broken.dir);
      assert.equal(r.status, 1, r.stderr);
      assert.ok(r.stderr.includes(onnx), r.stderr);
      assert.match(r.stderr, /could not load the models/);
    } finally {
      broken.cleanup();
    }
  });
});
