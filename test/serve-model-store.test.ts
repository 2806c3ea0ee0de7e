// The model store with fakes for the worker pool and the batcher (interfaces SessionHost and
// QueueRegistry) and the real routing table store, over a real fixture repository on disk:
// startup is a strict reload from empty; a hot reload swaps a new frozen snapshot, leaves the
// old one untouched, and releases a replaced variant's sessions only once nothing holds it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, renameSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManifestError, validateManifest } from '../src/manifest.js';
import { readManifest } from '../src/pipeline/model-writer.js';
import type { BatchTarget } from '../src/serve/batcher.js';
import { loadConfig } from '../src/serve/config.js';
import { CoreError } from '../src/serve/errors.js';
import { stateError, type RuntimeState } from '../src/serve/lifecycle.js';
import { RepositoryError } from '../src/serve/model-repository.js';
import { ModelStore } from '../src/serve/model-store.js';
import { RoutingTables, type RebindPlan } from '../src/serve/routing/table-store.js';
import { buildApp } from '../src/serve/server.js';
import type { LoadedSession, SessionSpec } from '../src/serve/worker-protocol.js';
import { createFixtureRepository } from './helpers/fixture-model.js';

const quiet = { info() {}, warn() {}, error() {}, debug() {} };

/** Records what the store asks of the pool and the batcher. */
function fakes(opts: { fallback?: string } = {}) {
  const sessions = new Set<string>();
  const queues = new Set<string>();
  const busy = new Set<string>();
  const host = {
    async addSessions(specs: SessionSpec[]): Promise<LoadedSession[]> {
      for (const s of specs) sessions.add(s.key);
      return specs.map((s) => ({
        key: s.key,
        requested: s.device,
        device: opts.fallback ? 'cpu' : s.device,
        ...(opts.fallback ? { fallbackReason: opts.fallback } : {}),
        loadMs: 5,
        warmupMs: 2,
      }));
    },
    dropSessions(keys: string[]): void {
      for (const k of keys) sessions.delete(k);
    },
  };
  const registry = {
    register(t: BatchTarget): void {
      queues.add(t.key);
    },
    unregister(key: string): boolean {
      if (busy.has(key)) return false;
      queues.delete(key);
      return true;
    },
  };
  return { sessions, queues, busy, host, registry };
}

function store(dir: string, f: ReturnType<typeof fakes>, log = quiet): { store: ModelStore<RebindPlan>; tables: RoutingTables } {
  const config = loadConfig({ env: {}, overrides: { models: dir, requestTimeoutMs: 1000, batchTimeoutMs: 1000 } });
  const tables = new RoutingTables(log);
  return { store: new ModelStore(config, log, f.host, f.registry, tables), tables };
}

describe('model store: startup is a strict reload from empty', () => {
  test('a bad variant stops the start naming file and field', async () => {
    const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
    try {
      const file = join(repo.dir, 'tiny/k1/manifest.json');
      const good = JSON.parse(readFileSync(file, 'utf8'));
      const start = () => store(repo.dir, fakes()).store.load();
      writeFileSync(file, JSON.stringify({ ...good, labels: undefined }));
      await assert.rejects(start(), (e: Error) => e instanceof RepositoryError && /k1\/manifest\.json: labels must be an array/.test(e.message));
      writeFileSync(file, JSON.stringify({ ...good, variant: 'k2', eval: { ...good.eval, accuracy: 'high' } }));
      await assert.rejects(start(), /eval\.accuracy must be a number from 0 to 1 \(got "high"\)/);
      writeFileSync(file, JSON.stringify({ ...good, depth: 3 }));
      await assert.rejects(start(), /depth 3 does not match variant "k1"/);
      writeFileSync(file, JSON.stringify({ ...good, onnxSha256: 'a'.repeat(64) }));
      await assert.rejects(start(), /differs from the manifest's onnxSha256/);
      writeFileSync(join(repo.dir, 'tiny/routing.json'), JSON.stringify({ variants: { k9: { weight: 1 } } }));
      writeFileSync(file, JSON.stringify(good));
      await assert.rejects(start(), /routing of tiny: variants\.k9 names "k9"/);
      await assert.rejects(store(join(repo.dir, 'nowhere'), fakes()).store.load(), /model repository .*nowhere is not a directory/);
    } finally {
      repo.cleanup();
    }
  });

  test('build, eval and serve refuse a bad manifest with the same validator and the same problems', async () => {
    const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
    try {
      const vdir = join(repo.dir, 'tiny/k1');
      const file = join(vdir, 'manifest.json');
      const good = JSON.parse(readFileSync(file, 'utf8'));
      await readManifest(vdir, { verifyOnnx: true }); // the fixture itself passes both paths
      await store(repo.dir, fakes()).store.load();
      const problems = [
        'head must be one of "pool", "last", "label-words" (got "mean")',
        'train.examples must be a positive integer (got 0)',
        'onnxSha256 must be a SHA-256 as 64 lower-case hex digits (got "sha256:x")',
        'variant "k1-int8" is named int8 but precision is fp32',
      ];
      writeFileSync(file, JSON.stringify({ ...good, head: 'mean', train: { ...good.train, examples: 0 }, onnxSha256: 'sha256:x', variant: 'k1-int8' }));
      // The variant name check comes after the field checks, so rename the directory to match.
      const renamed = join(repo.dir, 'tiny/k1-int8');
      renameSync(vdir, renamed);
      await assert.rejects(readManifest(renamed), (e: unknown) => e instanceof ManifestError && e.problems.join('|') === problems.join('|'));
      assert.throws(() => validateManifest(JSON.parse(readFileSync(join(renamed, 'manifest.json'), 'utf8')), 'x'), ManifestError);
      await assert.rejects(
        store(repo.dir, fakes()).store.load(),
        (e: Error) => e instanceof RepositoryError && e.message === `${join(renamed, 'manifest.json')}: ${problems.join('; ')}`,
      );
    } finally {
      repo.cleanup();
    }
  });

  test("a build's temporary directory beside the variants is skipped; the snapshot is frozen", async () => {
    const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
    try {
      createFixtureRepository([{ name: '.k2.tmp-1' }], join(repo.dir, 'tiny'));
      const f = fakes({ fallback: 'no GPU here' });
      const { store: s } = store(repo.dir, f);
      await s.load();
      const models = s.catalogue.models;
      assert.deepEqual(
        models.map((m) => [m.name, m.variants.map((v) => v.name)]),
        [['tiny', ['k1']]],
      );
      assert.deepEqual([...f.sessions], ['tiny/k1']);
      assert.deepEqual([...f.queues], ['tiny/k1']);
      // What the workers reported is in the variant as built, not patched in later.
      assert.equal(models[0]!.variants[0]!.device, 'cpu');
      assert.equal(models[0]!.variants[0]!.fallbackReason, 'no GPU here');
      assert.ok(Object.isFrozen(s.catalogue) && Object.isFrozen(models) && Object.isFrozen(models[0]) && Object.isFrozen(models[0]!.variants[0]));
      assert.equal(s.last, null, 'the start is not a hot reload');
      assert.deepEqual(s.counts, { added: 0, updated: 0, removed: 0, failed: 0 });
    } finally {
      repo.cleanup();
    }
  });
});

describe('model store: hot reload', () => {
  test('a rebuilt variant is a new snapshot; the old session goes once nothing holds it', async () => {
    const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
    try {
      const f = fakes();
      const { store: s } = store(repo.dir, f);
      await s.load();
      const before = s.catalogue;
      const old = before.models[0]!.variants[0]!;
      const release = s.hold([old]);
      // A rebuild replaces the files (new mtime: a new fingerprint).
      const onnx = join(repo.dir, 'tiny/k1/model.onnx');
      utimesSync(onnx, new Date(), new Date(Date.now() + 5_000));
      const reloading = s.reload('api');
      // The swap happens before the drain: the new variant serves while the old one is held.
      while (s.catalogue === before) await new Promise((r) => setTimeout(r, 5));
      assert.equal(s.catalogue.models[0]!.variants[0]!.key, 'tiny/k1#1');
      assert.equal(before.models[0]!.variants[0], old, 'the old snapshot is unchanged');
      assert.ok(f.sessions.has('tiny/k1') && f.sessions.has('tiny/k1#1'), 'both sessions while the old one is held');
      release();
      const report = await reloading;
      assert.deepEqual(
        report.updated.map((c) => c.variant),
        ['k1'],
      );
      assert.deepEqual([...f.sessions], ['tiny/k1#1']);
      assert.deepEqual([...f.queues], ['tiny/k1#1']);
      assert.equal(s.counts.updated, 1);
    } finally {
      repo.cleanup();
    }
  });

  test('a broken new variant is listed and skipped; what served keeps serving', async () => {
    const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
    try {
      const f = fakes();
      const { store: s } = store(repo.dir, f);
      await s.load();
      createFixtureRepository([{ name: 'tiny', variants: ['k2'] }], repo.dir);
      const file = join(repo.dir, 'tiny/k2/manifest.json');
      writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), depth: 5 }));
      const report = await s.reload('api');
      assert.deepEqual(
        report.failed.map((x) => [x.variant, x.file]),
        [['k2', 'tiny/k2/manifest.json']],
      );
      assert.deepEqual(
        s.catalogue.models[0]!.variants.map((v) => v.name),
        ['k1'],
      );
      assert.equal(s.failureOf('tiny', 'k2')?.error.includes('depth 5 does not match variant "k2"'), true);
    } finally {
      repo.cleanup();
    }
  });
});

describe('lifecycle: one rule from state to answer', () => {
  test('loading is NOT_READY; failed, draining and stopped are SHUTTING_DOWN; ready serves', () => {
    const codes = Object.fromEntries((['loading', 'ready', 'draining', 'stopped', 'failed'] as RuntimeState[]).map((s) => [s, stateError(s)?.code ?? null]));
    assert.deepEqual(codes, { loading: 'NOT_READY', ready: null, draining: 'SHUTTING_DOWN', stopped: 'SHUTTING_DOWN', failed: 'SHUTTING_DOWN' });
  });

  test('after a failed load, readiness, inference, /v2 readiness and reload all answer SHUTTING_DOWN', async () => {
    const repo = createFixtureRepository([{ name: 'tiny', variants: ['k1'] }]);
    try {
      writeFileSync(join(repo.dir, 'tiny/k1/manifest.json'), '{}');
      const config = loadConfig({ env: {}, overrides: { port: 0, models: repo.dir, workers: 1, adminToken: 'secret-token' } });
      const { app, core } = await buildApp(config, { logger: false });
      try {
        await assert.rejects(core.load(), /manifest\.json/);
        assert.equal(core.state, 'failed');
        const answers = await Promise.all([
          app.inject({ method: 'GET', url: '/health/ready' }),
          app.inject({ method: 'POST', url: '/classify', payload: { inputs: 'good' } }),
          app.inject({ method: 'GET', url: '/v2/health/ready' }),
          app.inject({ method: 'POST', url: '/admin/reload', headers: { authorization: 'Bearer secret-token' } }),
        ]);
        for (const a of answers) {
          assert.equal(a.statusCode, 503, a.body);
          assert.match(a.body, /"(code":"|error":\{"code":")?SHUTTING_DOWN/);
        }
        assert.ok(core.unavailable() instanceof CoreError);
      } finally {
        await core.close();
        await app.close();
      }
    } finally {
      repo.cleanup();
    }
  });
});
