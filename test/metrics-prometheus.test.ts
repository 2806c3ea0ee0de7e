// GET /metrics against a real Prometheus: a server with the fixture repository on loopback, a
// real `prometheus` scraping it every second, a known number of requests to k1 and k2, then
// PromQL through Prometheus' HTTP API. `promtool` checks the exposition text and the alert
// rules. Needs `prometheus` and `promtool` on PATH (Debian package "prometheus"); without them
// the test skips locally and fails in CI (CI=true).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository, fixtureText, type FixtureRepository } from './helpers/fixture-model.js';
import { REPO_ROOT, which } from './helpers/paths.js';
import { post } from './helpers/http.js';
import { prometheusQueries, startPrometheus, type PrometheusProcess, type Sample } from './helpers/prometheus.js';
import { stopProcess } from './helpers/serve-process.js';
import { startTestServer } from './helpers/serve.js';

const ALERTS = resolve(REPO_ROOT, 'deploy/prometheus/alerts.yml');
const DASHBOARD = resolve(REPO_ROOT, 'deploy/grafana/slimserve.json');

const missing = ['prometheus', 'promtool'].filter((b) => which(b) === null);
const inCi = process.env.CI === 'true';
const skip =
  missing.length > 0 && !inCi
    ? `${missing.join(' and ')} not on PATH: install them with "apt-get install -y --no-install-recommends prometheus" (in CI this test fails instead)`
    : false;

/** Sends these counts, in two phases a few scrapes apart (rate() needs an increase to see). */
const SENT = { k1: 14, k2: 9 } as const;

describe('metrics: real Prometheus scrapes /metrics', { skip }, () => {
  let repo: FixtureRepository;
  let server: RunningServer;
  let dir: string;
  let prom: PrometheusProcess | undefined;

  const { query, waitFor } = prometheusQueries(
    () => prom!.url,
    () => prom?.log() ?? '',
    15_000,
  );

  const byVariant = (r: Sample[]): Record<string, number> => Object.fromEntries(r.map((s) => [s.metric.variant ?? '', Number(s.value[1])]));

  async function classify(variant: 'k1' | 'k2', i: number): Promise<void> {
    const res = await post(`${server.url}/classify`, { inputs: fixtureText(3 + (i % 9), 500 + i), variant });
    assert.equal(res.status, 200);
  }

  async function send(k1: number, k2: number, offset: number): Promise<void> {
    await Promise.all([
      ...Array.from({ length: k1 }, (_, i) => classify('k1', offset + i)),
      ...Array.from({ length: k2 }, (_, i) => classify('k2', offset + 100 + i)),
    ]);
  }

  before(async () => {
    assert.deepEqual(missing, [], `CI=true and ${missing.join(', ')} not on PATH: apt-get install -y --no-install-recommends prometheus`);
    repo = createFixtureRepository([{ name: 'tiny' }]);
    server = (await startTestServer({ models: repo.dir })).server;

    dir = mkdtempSync(join(tmpdir(), 'slim-prometheus-'));
    const target = new URL(server.url).host;
    prom = await startPrometheus(
      'prometheus',
      dir,
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'rule_files:',
        `  - ${JSON.stringify(ALERTS)}`,
        'scrape_configs:',
        '  - job_name: slimserve',
        '    metrics_path: /metrics',
        '    static_configs:',
        `      - targets: [${JSON.stringify(target)}]`,
        '',
      ].join('\n'),
    );
    await waitFor('up{job="slimserve"}', (r) => r.length === 1 && r[0]!.value[1] === '1');
  });

  after(async () => {
    await stopProcess(prom?.child, 'SIGTERM', 5000);
    await server?.close();
    repo?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const countQuery = 'sum by (variant) (slim_requests_total{endpoint="/classify",code="200"})';

  test('request counts and p99 per variant, queried from Prometheus', async () => {
    const half = { k1: Math.floor(SENT.k1 / 2), k2: Math.floor(SENT.k2 / 2) };
    await send(half.k1, half.k2, 0);
    // Prometheus has scraped phase one before phase two starts.
    await waitFor(countQuery, (r) => byVariant(r).k1 === half.k1 && byVariant(r).k2 === half.k2);
    await sleep(1200);
    await send(SENT.k1 - half.k1, SENT.k2 - half.k2, 1000);
    const counts = await waitFor(countQuery, (r) => byVariant(r).k1 === SENT.k1 && byVariant(r).k2 === SENT.k2);
    assert.deepEqual(byVariant(counts), { k1: SENT.k1, k2: SENT.k2 });

    const p99 = byVariant(await query('histogram_quantile(0.99, sum by (le, variant) (rate(slim_request_duration_seconds_bucket[30s])))'));
    for (const v of ['k1', 'k2']) {
      assert.ok(Number.isFinite(p99[v]) && p99[v]! > 0 && p99[v]! < 30, `p99 of ${v}: ${p99[v]} (${JSON.stringify(p99)})`);
    }

    const inputs = byVariant(await query('sum by (variant) (slim_inputs_total)'));
    assert.deepEqual(inputs, { k1: SENT.k1, k2: SENT.k2 });
    const accuracy = await query('slim_variant_accuracy{source="build"}');
    assert.deepEqual(byVariant(accuracy), { k1: 0.5, k2: 0.5 });
    const info = await query('slim_variant_info');
    assert.deepEqual(info.map((s) => `${s.metric.model}/${s.metric.variant} depth=${s.metric.depth} base=${s.metric.base} device=${s.metric.device}`).sort(), [
      'tiny/k1 depth=1 base=fixture:tiny device=cpu',
      'tiny/k2 depth=2 base=fixture:tiny device=cpu',
    ]);
    assert.deepEqual(byVariant(await query('slim_routing_weight')), { k1: 1, k2: 0 });
    assert.deepEqual(byVariant(await query('slim_queue_depth')), { k1: 0, k2: 0 });
  });

  test('GET /metrics: content type, and promtool check metrics passes', async () => {
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const name of [
      'slim_request_duration_seconds_bucket',
      'slim_queue_duration_seconds_bucket',
      'slim_inference_duration_seconds_bucket',
      'slim_batch_size_bucket',
      'slim_batch_tokens_bucket',
      'slim_requests_total',
      'slim_inputs_total',
      'slim_variant_accuracy',
      'slim_queue_depth',
      'slim_routing_weight',
      'slim_variant_info',
      'process_cpu_seconds_total',
    ]) {
      assert.match(text, new RegExp(`^${name}\\{?`, 'm'), name);
    }
    for (const name of ['slim_feedback_total', 'slim_shadow_total', 'slim_cascade_escalations_total']) {
      assert.match(text, new RegExp(`^# TYPE ${name} counter$`, 'm'), name);
    }
    assert.doesNotMatch(text, /summary/, 'histograms, never summaries');
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`);
  });

  test('promtool check rules deploy/prometheus/alerts.yml passes', () => {
    const check = spawnSync('promtool', ['check', 'rules', ALERTS], { encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check rules:\n${check.stdout}${check.stderr}`);
    assert.match(check.stdout, /SUCCESS: 3 rules found/);
  });
  test('every query of deploy/grafana/slimserve.json runs in Prometheus', async () => {
    const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; panels: { title: string; targets: { expr: string }[] }[] };
    assert.equal(dash.uid, 'slimserve');
    const exprs = dash.panels.flatMap((p) => p.targets.map((t) => ({ title: p.title, expr: t.expr })));
    assert.ok(exprs.length >= 7);
    for (const { title, expr } of exprs) {
      const q = expr.replaceAll('$__rate_interval', '30s').replaceAll('$model', '.*').replaceAll('$variant', '.*');
      const r = await query(q);
      assert.ok(r.length > 0, `${title}: ${q} returned nothing`);
    }
  });
});
