// Hot reload end to end: a real server on loopback with a real ONNX fixture repository, changed
// on disk while it serves. A variant directory added at run time serves after POST
// /admin/reload; a rebuilt one answers with its new weights; a truncated model.onnx (caught by
// the checksum, or by onnxruntime when the manifest was rewritten to match) leaves the old
// variant serving with the same answers and is reported naming the file; a removed variant
// answers everything it accepted before new requests for it get 404; a removal the routing
// table still needs is refused; the modelReloadMs poll picks up a new model by itself.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository, fixtureText, type FixtureRepository } from './helpers/fixture-model.js';
import { call as callWith, until } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';

const call = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) => callWith(method, url, body, { headers });

const ADMIN = 'reload-admin-token';
const AUTH = { authorization: `Bearer ${ADMIN}` };
/** Every batch takes at least this long, so queues are observable. */
const DELAY_MS = 25;

async function metricText(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

const TEXTS = Array.from({ length: 12 }, (_, i) => fixtureText(3 + ((i * 7) % 15), 900 + i));

let repo: FixtureRepository;
let staging: string;
let trash: string;
let server: RunningServer;
let url: string;
const logs: string[] = [];

/** Build a variant in a staging directory and rename it into the repository, as `slim build` does. */
function installVariant(model: string, variant: string, seed: number): void {
  const dir = mkdtempSync(join(staging, 'v-'));
  createFixtureRepository([{ name: model, variants: [variant], seed }], dir);
  const target = join(repo.dir, model, variant);
  try {
    renameSync(target, join(trash, `${model}-${variant}-${Date.now()}`));
  } catch {
    // a new variant: nothing to move away
  }
  renameSync(join(dir, model, variant), target);
}

/** Scores of every text on one variant, asked explicitly. */
async function scores(variant: string, model = 'tiny'): Promise<number[][]> {
  const r = await call('POST', `${url}/classify`, { model, inputs: TEXTS, variant });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  for (const res of r.json.results) assert.equal(res.variant, variant);
  return r.json.results.map((x: { scores: Record<string, number> }) => Object.values(x.scores));
}

const reload = () => call('POST', `${url}/admin/reload`, undefined, AUTH);

before(async () => {
  repo = createFixtureRepository([{ name: 'tiny', variants: ['k1', 'k2'] }]);
  staging = mkdtempSync(join(tmpdir(), 'slim-reload-staging-'));
  trash = mkdtempSync(join(tmpdir(), 'slim-reload-trash-'));
  ({ server } = await startTestServer(
    { logLevel: 'info', models: repo.dir, workers: 2, adminToken: ADMIN, 'batching.maxBatchSize': 4, 'batching.maxQueueDelayMs': 0 },
    [],
    { testWorkerDelayMs: DELAY_MS, logStream: { write: (line: string) => void logs.push(line) } },
  ));
  url = server.url;
});
after(async () => {
  await server?.close();
  repo.cleanup();
  rmSync(staging, { recursive: true, force: true });
  rmSync(trash, { recursive: true, force: true });
});

describe('hot reload over HTTP', () => {
  test('POST /admin/reload needs the admin token: none 401, wrong 403', async () => {
    const none = await call('POST', `${url}/admin/reload`);
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'UNAUTHORIZED');
    const wrong = await call('POST', `${url}/admin/reload`, undefined, { authorization: 'Bearer not-the-token' });
    assert.equal(wrong.status, 403);
    assert.equal(wrong.json.error.code, 'FORBIDDEN');
    const same = await reload();
    assert.equal(same.status, 200);
    assert.deepEqual([same.json.added, same.json.updated, same.json.removed, same.json.failed], [[], [], [], []]);
    assert.equal(same.json.unchanged, 2);
  });

  test('a variant directory added at run time serves after a reload', async () => {
    const missing = await call('POST', `${url}/classify`, { inputs: 'good film', variant: 'k4' });
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.code, 'VARIANT_NOT_FOUND');
    installVariant('tiny', 'k4', 1234);
    const r = await reload();
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.deepEqual(r.json.added, [{ model: 'tiny', variant: 'k4', depth: 4 }]);
    assert.deepEqual(r.json.failed, []);
    const k4 = await scores('k4');
    const k2 = await scores('k2');
    assert.notDeepEqual(k4, k2, 'k4 answers with its own weights');
    const models = await call('GET', `${url}/models`);
    assert.deepEqual(
      models.json.models[0].variants.map((v: { name: string }) => v.name),
      ['k1', 'k2', 'k4'],
    );
    const text = await metricText(url);
    assert.match(text, /slim_variant_info\{model="tiny",variant="k4",depth="4"/);
    assert.match(text, /slim_reload_total\{result="added"\} 1/);
  });

  test('a rebuilt variant answers with its new weights', async () => {
    const before = await scores('k2');
    installVariant('tiny', 'k2', 777);
    const r = await reload();
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.updated, [{ model: 'tiny', variant: 'k2', depth: 2 }]);
    const afterScores = await scores('k2');
    assert.notDeepEqual(afterScores, before, 'new weights, new answers');
    const manifest = JSON.parse(readFileSync(join(repo.dir, 'tiny', 'k2', 'manifest.json'), 'utf8'));
    const info = (await call('GET', `${url}/models/tiny`)).json.variants.find((v: { name: string }) => v.name === 'k2');
    assert.equal(info.onnxSha256, manifest.onnxSha256);
  });

  test('a truncated model.onnx leaves the old variant serving, reported naming the file', async () => {
    const before = await scores('k1');
    const onnxFile = join(repo.dir, 'tiny', 'k1', 'model.onnx');
    const manifestFile = join(repo.dir, 'tiny', 'k1', 'manifest.json');
    const original = readFileSync(onnxFile);
    const originalManifest = readFileSync(manifestFile, 'utf8');
    const truncated = original.subarray(0, Math.floor(original.length / 3));
    writeFileSync(onnxFile, truncated);

    // 1. Caught by the manifest's checksum.
    const r1 = await reload();
    assert.equal(r1.status, 200);
    assert.equal(r1.json.failed.length, 1);
    assert.equal(r1.json.failed[0].variant, 'k1');
    assert.equal(r1.json.failed[0].file, 'tiny/k1/model.onnx');
    assert.match(r1.json.failed[0].error, /tiny\/k1\/model\.onnx: sha256/);
    assert.ok(!r1.json.failed[0].error.includes(repo.dir), 'no absolute path in the answer');
    assert.deepEqual(await scores('k1'), before, 'the old k1 answers as before');

    // 2. A manifest rewritten to match: onnxruntime itself refuses the file in the workers.
    const manifest = JSON.parse(originalManifest);
    manifest.onnxSha256 = createHash('sha256').update(truncated).digest('hex');
    writeFileSync(manifestFile, JSON.stringify(manifest));
    const r2 = await reload();
    assert.equal(r2.json.failed.length, 1);
    assert.equal(r2.json.failed[0].file, 'tiny/k1/model.onnx');
    assert.match(r2.json.failed[0].error, /tiny\/k1\/model\.onnx/);
    assert.doesNotMatch(r2.json.failed[0].error, /sha256/);
    assert.deepEqual(r2.json.updated, []);
    assert.deepEqual(await scores('k1'), before, 'the old k1 still answers as before');
    const models = (await call('GET', `${url}/models`)).json;
    assert.equal(models.reload.failures.length, 1);
    assert.equal(models.reload.failures[0].file, 'tiny/k1/model.onnx');
    const k1 = models.models[0].variants.find((v: { name: string }) => v.name === 'k1');
    assert.equal(k1.lastReloadError.file, 'tiny/k1/model.onnx');
    assert.ok(
      logs.some((l) => l.includes('"level":50') && l.includes(join('tiny', 'k1', 'model.onnx')) && l.includes('keeps serving')),
      'logged with the file named',
    );
    assert.match(await metricText(url), /slim_reload_total\{result="failed"\} 2/);

    // 3. Fixed on disk: the next reload takes it and the failure is gone.
    writeFileSync(onnxFile, original);
    writeFileSync(manifestFile, originalManifest);
    const r3 = await reload();
    assert.deepEqual(r3.json.failed, []);
    assert.deepEqual(r3.json.updated, [{ model: 'tiny', variant: 'k1', depth: 1 }]);
    assert.deepEqual(await scores('k1'), before);
    assert.deepEqual((await call('GET', `${url}/models`)).json.reload.failures, []);
  });

  test('a removal the routing table needs is refused until the routing changes', async () => {
    const put = await call('PUT', `${url}/routing/tiny`, { variants: { k1: { weight: 1 }, k4: { weight: 1 } } }, AUTH);
    assert.equal(put.status, 200, JSON.stringify(put.json));
    renameSync(join(repo.dir, 'tiny', 'k4'), join(trash, 'k4-removed'));
    const r1 = await reload();
    assert.deepEqual(r1.json.removed, []);
    assert.equal(r1.json.failed.length, 1);
    assert.equal(r1.json.failed[0].variant, 'k4');
    assert.match(r1.json.failed[0].error, /k4.*change the routing first/);
    assert.equal((await scores('k4')).length, TEXTS.length, 'k4 still serves');
    assert.equal((await call('PUT', `${url}/routing/tiny`, { variants: { k1: { weight: 1 } } }, AUTH)).status, 200);
    const r2 = await reload();
    assert.deepEqual(
      r2.json.removed.map((x: { variant: string }) => x.variant),
      ['k4'],
    );
    assert.equal((await call('POST', `${url}/classify`, { inputs: 'good film', variant: 'k4' })).status, 404);
  });

  test('removing a variant answers every request it accepted, then new ones get 404', async () => {
    // 100 single-input requests at 4 per batch and >= DELAY_MS per batch: they queue.
    const inflight = Array.from({ length: 100 }, (_, i) => call('POST', `${url}/classify`, { inputs: TEXTS[i % TEXTS.length], variant: 'k2' }));
    // Accepted before the removal: at least the inputs waiting or running when it starts.
    const accepted = await until('k2 inputs queued', async () => {
      const v = (await call('GET', `${url}/models/tiny`)).json.variants.find((x: { name: string }) => x.name === 'k2');
      return v.queueDepth >= 8 ? v.queueDepth + v.running : undefined;
    });
    renameSync(join(repo.dir, 'tiny', 'k2'), join(trash, 'k2-removed'));
    const reloading = reload();
    // Routing stops choosing k2 at once, while its queue drains.
    const late = await until('k2 gone from the catalogue', async () => {
      const r = await call('POST', `${url}/classify`, { inputs: 'good film', variant: 'k2' });
      return r.status === 404 ? r : undefined;
    });
    assert.equal(late.json.error.code, 'VARIANT_NOT_FOUND');
    // Requests that reached the server after the swap were never accepted: 404, nothing else.
    const answers = await Promise.all(inflight);
    const served = answers.filter((a) => a.status === 200);
    for (const a of served) assert.equal(a.json.results[0].variant, 'k2');
    for (const a of answers.filter((x) => x.status !== 200)) assert.equal(a.json.error.code, 'VARIANT_NOT_FOUND', JSON.stringify(a.json));
    assert.ok(served.length >= accepted, `${served.length} answered, ${accepted} were queued or running at the removal`);
    const r = await reloading;
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.json.removed.map((x: { variant: string }) => x.variant),
      ['k2'],
    );
    assert.ok(r.json.removed[0].drainedMs > 0, 'the reload waited for the queue');
    const after = await call('POST', `${url}/classify`, { inputs: 'good film', variant: 'k2' });
    assert.equal(after.status, 404);
    assert.equal(after.json.error.code, 'VARIANT_NOT_FOUND');
    const text = await metricText(url);
    assert.doesNotMatch(text, /slim_variant_info\{[^}]*variant="k2"/, 'no stale info series');
    assert.doesNotMatch(text, /slim_queue_depth\{[^}]*variant="k2"/);
    assert.deepEqual(
      (await call('GET', `${url}/models`)).json.models[0].variants.map((v: { name: string }) => v.name),
      ['k1'],
    );
    // Still serving what is left.
    assert.equal((await scores('k1')).length, TEXTS.length);
  });
});

describe('hot reload by polling (modelReloadMs)', () => {
  test('a new model directory is picked up without a request', async () => {
    const own = createFixtureRepository([{ name: 'alpha', variants: ['k1'] }]);
    const { server: s } = await startTestServer({ models: own.dir, modelReloadMs: 100 });
    try {
      const dir = mkdtempSync(join(staging, 'm-'));
      createFixtureRepository([{ name: 'beta', variants: ['k1', 'k2'], labels: ['ham', 'spam'] }], dir);
      renameSync(join(dir, 'beta'), join(own.dir, 'beta'));
      const listed = await until('beta served', async () => {
        const m = (await call('GET', `${s.url}/models`)).json;
        return m.models.some((x: { name: string }) => x.name === 'beta') ? m : undefined;
      });
      assert.deepEqual(
        listed.models.map((x: { name: string }) => x.name),
        ['alpha', 'beta'],
      );
      assert.equal(listed.reload.last.trigger, 'poll');
      const r = await call('POST', `${s.url}/classify`, { model: 'beta', inputs: ['free money now', 'team meeting'], variant: 'k2' });
      assert.equal(r.status, 200);
      assert.ok(['ham', 'spam'].includes(r.json.results[0].label));
      // Without a token the admin route is off.
      const off = await call('POST', `${s.url}/admin/reload`, undefined, AUTH);
      assert.equal(off.status, 403);
      assert.equal(off.json.error.code, 'ADMIN_DISABLED');
    } finally {
      await s.close();
      own.cleanup();
    }
  });
});

describe('hot reload and worker replacement', () => {
  test('a worker that replaces a crashed one loads the variants added by reload', async () => {
    const own = createFixtureRepository([{ name: 'gamma', variants: ['k1'] }]);
    // Worker 0 as started exits on its 2nd k1 batch; workers copy the environment when spawned.
    process.env.SLIM_FAULT_INJECT = 'crash:k1:2';
    let s: RunningServer | undefined;
    try {
      ({ server: s } = await startTestServer({ models: own.dir, adminToken: ADMIN, 'batching.maxQueueDelayMs': 0 }));
    } finally {
      delete process.env.SLIM_FAULT_INJECT;
    }
    try {
      const dir = mkdtempSync(join(staging, 'g-'));
      createFixtureRepository([{ name: 'gamma', variants: ['k2'] }], dir);
      renameSync(join(dir, 'gamma', 'k2'), join(own.dir, 'gamma', 'k2'));
      const r = await call('POST', `${s.url}/admin/reload`, undefined, AUTH);
      assert.deepEqual(r.json.added, [{ model: 'gamma', variant: 'k2', depth: 2 }]);
      // One input per request: one batch each, so the fault's batch count is the request count.
      const ask = (variant: string) => call('POST', `${s!.url}/classify`, { inputs: TEXTS[0], variant });
      const k2Before = await ask('k2');
      assert.equal(k2Before.status, 200);
      assert.equal((await ask('k1')).status, 200);
      assert.equal((await ask('k1')).status, 503, 'the injected crash');
      // The replacement is spawned from the pool's current list, which includes k2.
      const k2After = await until('the replacement worker serves k2', async () => {
        const a = await ask('k2');
        return a.status === 200 ? a : undefined;
      });
      assert.deepEqual(k2After.json.results, k2Before.json.results);
      assert.equal((await ask('k1')).status, 200);
    } finally {
      await s.close();
      own.cleanup();
    }
  });
});
