// Configuration: every key in its three forms, the precedence file < flags < environment, and
// refusals that name the key. Plus what a broken repository or a missing device does at start.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, OPTIONS } from '../src/serve/config.js';
import { ERROR_CODES } from '../src/serve/errors.js';
import { createFixtureRepository } from './helpers/fixture-model.js';
import { post } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';
import { SERVE_MAIN } from './helpers/serve-process.js';

const dir = mkdtempSync(join(tmpdir(), 'slim-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(obj: unknown): string {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(obj));
  return file;
}

function get(config: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], config);
}

function refused(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    for (const p of patterns) assert.match(err.message, p);
    return true;
  });
}

/** A valid value for each key, as JSON and as a string, different from the default. */
const SAMPLES: Record<string, [unknown, string]> = {
  port: [9123, '9123'],
  host: ['0.0.0.0', '0.0.0.0'],
  models: ['/srv/models', '/srv/models'],
  device: ['cuda', 'cuda'],
  devices: [{ spam: 'webgpu' }, 'spam=webgpu'],
  'threads.intraOp': [3, '3'],
  'threads.interOp': [2, '2'],
  'threads.spinning': ['always', 'always'],
  graphOptimization: ['basic', 'basic'],
  int8Weights: ['uint8', 'uint8'],
  processes: [3, '3'],
  workers: [5, '5'],
  'batching.maxBatchSize': [7, '7'],
  'batching.maxBatchTokens': [999, '999'],
  'batching.maxQueueDelayMs': [11, '11'],
  'batching.maxQueued': [77, '77'],
  requestTimeoutMs: [1234, '1234'],
  maxInputs: [5, '5'],
  bodyLimit: [4096, '4096'],
  maxConnections: [64, '64'],
  maxConnectionsPerClient: [16, '16'],
  receiveTimeoutMs: [5000, '5000'],
  adminToken: ['s3cret-token', 's3cret-token'],
  feedbackSecret: ['feedback-secret', 'feedback-secret'],
  feedbackToken: ['feedback-token', 'feedback-token'],
  'feedback.rateLimit': [30, '30'],
  'feedback.ttlMs': [60000, '60000'],
  'feedback.capacity': [500, '500'],
  'feedback.window': [200, '200'],
  routingReloadMs: [250, '250'],
  modelReloadMs: [3000, '3000'],
  logLevel: ['debug', 'debug'],
  logFormat: ['pretty', 'pretty'],
  accessLog: [true, 'true'],
  routingDir: ['/srv/routing', '/srv/routing'],
  shutdownTimeoutMs: [2500, '2500'],
  batchTimeoutMs: [4321, '4321'],
  'rateLimit.max': [50, '50'],
  'rateLimit.windowMs': [1500, '1500'],
  'rateLimit.routes': [{ '/classify': 10, 'PUT /routing/:model': 0 }, '/classify=10,PUT /routing/:model=0'],
};

function fileObject(key: string, value: unknown): Record<string, unknown> {
  const parts = key.split('.');
  return parts.length === 1 ? { [key]: value } : { [parts[0]!]: { [parts[1]!]: value } };
}

describe('config: forms and precedence', () => {
  test("the spec's keys are all there", () => {
    const keys = OPTIONS.map((o) => o.key);
    for (const k of [
      'port',
      'host',
      'models',
      'device',
      'threads.intraOp',
      'threads.interOp',
      'workers',
      'batching.maxBatchSize',
      'batching.maxBatchTokens',
      'batching.maxQueueDelayMs',
      'batching.maxQueued',
      'requestTimeoutMs',
      'maxInputs',
      'bodyLimit',
      'adminToken',
    ]) {
      assert.ok(keys.includes(k), k);
    }
    const spec = OPTIONS.find((o) => o.key === 'batching.maxBatchSize')!;
    assert.equal(spec.flag, '--max-batch-size');
    assert.equal(spec.env, 'SLIM_MAX_BATCH_SIZE');
  });

  for (const opt of OPTIONS) {
    test(`${opt.key}: file, ${opt.flag} and ${opt.env} each set it`, () => {
      const [json, text] = SAMPLES[opt.key]!;
      const want = opt.key === 'models' ? '/srv/models' : json;
      const fromFile = loadConfig({ env: {}, argv: ['--config', writeConfig(fileObject(opt.key, json))] });
      assert.deepEqual(get(fromFile, opt.key), want, 'file');
      assert.deepEqual(get(loadConfig({ env: {}, argv: [opt.flag, text] }), opt.key), want, 'flag');
      assert.deepEqual(get(loadConfig({ env: {}, argv: [`${opt.flag}=${text}`] }), opt.key), want, 'flag=value');
      assert.deepEqual(get(loadConfig({ env: { [opt.env]: text } }), opt.key), want, 'environment');
    });
  }

  test('environment beats flags, flags beat the file, the file beats defaults', () => {
    const file = writeConfig({ port: 1111, batching: { maxBatchSize: 3, maxQueued: 500 } });
    const c = loadConfig({ argv: ['--config', file, '--port', '2222', '--max-batch-size', '4'], env: { SLIM_PORT: '3333' } });
    assert.equal(c.port, 3333);
    assert.equal(c.batching.maxBatchSize, 4);
    assert.equal(c.batching.maxQueued, 500);
    assert.equal(c.batching.maxBatchTokens, 8192);
    assert.equal(loadConfig({ argv: [], env: { SLIM_CONFIG: file } }).port, 1111);
  });

  test('docs/serving.md lists every key in its three forms, and every error code', () => {
    const docs = readFileSync('docs/serving.md', 'utf8');
    for (const o of OPTIONS) {
      assert.ok(docs.includes(`| \`${o.key}\` | \`${o.flag}\` | \`${o.env}\` |`), `docs/serving.md: no table row for ${o.key}`);
    }
    for (const code of ERROR_CODES) assert.ok(docs.includes(`\`${code}\``), `docs/serving.md: error code ${code} is not documented`);
  });

  test('threads follow workers unless set', () => {
    const c = loadConfig({ env: {}, argv: ['--workers', '1'] });
    assert.ok(c.threads.intraOp >= 1);
    assert.equal(loadConfig({ env: {}, argv: ['--workers', '1', '--intra-op-threads', '1'] }).threads.intraOp, 1);
  });
});

describe('config: refusals name the key', () => {
  test('unknown keys in the file, nested ones by their dotted name', () => {
    refused(
      () => loadConfig({ env: {}, argv: ['--config', writeConfig({ prot: 1, batching: { maxBatchSze: 2 } })] }),
      /unknown key "prot"/,
      /unknown key "batching\.maxBatchSze"/,
    );
  });

  test('unknown flags and stray arguments', () => {
    refused(() => loadConfig({ env: {}, argv: ['--max-batch', '3', 'extra'] }), /unknown flag --max-batch/, /unexpected argument "extra"/);
    refused(() => loadConfig({ env: {}, argv: ['--port'] }), /flag --port needs a value/);
  });

  test('bad values, by form', () => {
    refused(() => loadConfig({ env: {}, argv: ['--max-batch-size', '0'] }), /batching\.maxBatchSize \(flag --max-batch-size\)/);
    refused(() => loadConfig({ env: { SLIM_PORT: 'eighty' } }), /bad value for port \(environment SLIM_PORT\)/);
    refused(
      () => loadConfig({ env: {}, argv: ['--config', writeConfig({ device: 'tpu' })] }),
      /bad value for device \(in .*\): expected one of cpu, cuda, webgpu/,
    );
    refused(() => loadConfig({ env: {}, argv: ['--config', writeConfig({ threads: { intraOp: 1.5 } })] }), /threads\.intraOp/);
    refused(() => loadConfig({ env: { SLIM_DEVICES: 'spam' } }), /devices \(environment SLIM_DEVICES\)/);
    refused(() => loadConfig({ env: {}, argv: ['--max-inputs', '100', '--max-queued', '10'] }), /maxInputs: 100 is more than batching\.maxQueued/);
    refused(() => loadConfig({ env: {}, argv: ['--config', join(dir, 'missing.json')] }), /missing\.json/);
  });

  test('slim serve exits 2 and names the key on stderr', () => {
    const r = spawnSync(process.execPath, [SERVE_MAIN, '--max-queue-delay-ms', 'soon'], {
      encoding: 'utf8',
      env: { ...process.env, SLIM_PORT: '0' },
      timeout: 30_000,
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /batching\.maxQueueDelayMs \(flag --max-queue-delay-ms\)/);
  });
});

describe('repository and devices at start', () => {
  test('device cuda without CUDA: one warning, cpu used, and both reported', async (t) => {
    const repo = createFixtureRepository([{ name: 'tiny' }]);
    const lines: string[] = [];
    try {
      const { server } = await startTestServer({ models: repo.dir, workers: 2, device: 'cuda', logLevel: 'warn' }, [], {
        logStream: { write: (l: string) => void lines.push(l) },
      });
      try {
        const m = await (await fetch(`${server.url}/models/tiny`)).json();
        if (m.variants[0].device === 'cuda') return t.skip('CUDA is available on this machine: nothing falls back');
        for (const v of m.variants) {
          assert.equal(v.requestedDevice, 'cuda');
          assert.equal(v.device, 'cpu');
          assert.equal(typeof v.fallbackReason, 'string');
        }
        const r = await post(`${server.url}/classify`, { inputs: 'good' });
        assert.equal(r.status, 200);
      } finally {
        await server.close();
      }
      const warnings = lines.map((l) => JSON.parse(l)).filter((l) => l.level === 40);
      assert.equal(warnings.length, 1, `one warning for 2 workers x 2 variants: ${lines.join('')}`);
      assert.match(warnings[0].msg, /device cuda is not available .*running tiny\/k1, tiny\/k2 on cpu/);
    } finally {
      repo.cleanup();
    }
  });
});
