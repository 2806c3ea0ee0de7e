// Scale-out, end to end on loopback: three server replicas (child processes of the real entry
// point, one shared SLIM_FEEDBACK_SECRET, one shared model repository), a real nginx load
// balancing across them and a real Prometheus scraping all three every second. Shows:
//  - a key gets the same variant whichever replica answers (sticky routing is a function of
//    key + table, no shared state);
//  - feedback for 200 requests, each posted twice through the load balancer (a client retry),
//    is counted exactly once each, summed over replicas in Prometheus: any replica verifies the
//    signed request_id, and nginx hashes /feedback by request_id so a repeat meets the replica
//    that already counted it;
//  - a routing.json change, made the way the kubelet updates a ConfigMap volume (a new
//    directory, then an atomic swap of the ..data symlink), reaches all replicas within 5 s;
//  - SIGTERM to one replica under load loses no accepted request: nginx retries what the
//    draining replica refuses (connection refused, 503 SHUTTING_DOWN), and nothing hangs.
// Needs nginx (Debian nginx-light) and prometheus (Debian prometheus); without them the test
// skips locally and fails in CI (CI=true).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createFixtureRepository, fixtureText, type FixtureRepository } from './helpers/fixture-model.js';
import { untilAnswers } from './helpers/http.js';
import { which } from './helpers/paths.js';
import { freePort, prometheusQueries, startPrometheus, type PrometheusProcess } from './helpers/prometheus.js';
import { SERVE_MAIN, stopProcess } from './helpers/serve-process.js';

const SECRET = 'replicas-test-secret-0123456789abcdef';
const MODEL = 'tiny';

const NGINX = which('nginx', ['/usr/sbin']);
const PROMETHEUS = which('prometheus');
const missing = [NGINX ? null : 'nginx', PROMETHEUS ? null : 'prometheus'].filter((x): x is string => x !== null);
const inCi = process.env.CI === 'true';
const skip =
  missing.length > 0 && !inCi
    ? `${missing.join(' and ')} not found: apt-get install -y --no-install-recommends nginx-light prometheus (in CI this test fails instead)`
    : false;

interface Replica {
  name: string;
  port: number;
  url: string;
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

interface Answer {
  status: number;
  /** Which replica answered, as nginx reports it ($upstream_addr; "a, b" after a retry). */
  upstream: string;
  body: Record<string, unknown>;
}

/** Run `fn` over `items` with at most `limit` at a time. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

/** Write the ConfigMap-style directory: <dir>/..<version>/<file>, ..data -> it, <file> -> ..data/<file>. */
function writeConfigMapVersion(dir: string, version: string, file: string, content: unknown): void {
  mkdirSync(join(dir, `..${version}`), { recursive: true });
  writeFileSync(join(dir, `..${version}`, file), JSON.stringify(content, null, 2));
  // The kubelet's atomic writer: a new symlink under a temporary name, renamed over ..data.
  symlinkSync(`..${version}`, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
}

describe('replicas behind nginx, scraped by Prometheus', { skip }, () => {
  let repo: FixtureRepository;
  let dir: string;
  let cmDir: string;
  const replicas: Replica[] = [];
  let nginx: ChildProcess | null = null;
  let nginxLog = '';
  let lb = '';
  let prom: PrometheusProcess | undefined;
  /** key -> variant, from the sticky test (used to pick keys that must move). */
  const keyVariant = new Map<string, string>();

  async function post(base: string, path: string, body: unknown, timeoutMs = 20_000): Promise<Answer> {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { raw: text };
    }
    return { status: res.status, upstream: res.headers.get('x-upstream') ?? '', body: parsed };
  }

  const classify = (base: string, key: string, i: number): Promise<Answer> => post(base, '/classify', { inputs: fixtureText(4 + (i % 6), 900 + i), key });

  const { query, waitFor } = prometheusQueries(
    () => prom!.url,
    () => prom?.log() ?? '',
    20_000,
  );

  async function startReplica(name: string): Promise<Replica> {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [SERVE_MAIN, '--models', repo.dir, '--port', String(port), '--host', '127.0.0.1', '--workers', '1', '--intra-op-threads', '1', '--log-level', 'warn'],
      {
        // Every batch takes >= 15 ms, so requests are in flight when a replica is stopped.
        // routing.json is re-read at the default interval (routingReloadMs 1000).
        env: { ...process.env, SLIM_FEEDBACK_SECRET: SECRET, SLIM_TEST_WORKER_DELAY_MS: '15' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const r: Replica = { name, port, url: `http://127.0.0.1:${port}`, child, log: '', exited: once(child, 'exit').then(([code]) => code as number | null) };
    child.stdout!.on('data', (d: Buffer) => (r.log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (r.log += d.toString()));
    return r;
  }

  const waitReady = (r: Replica): Promise<void> => untilAnswers(r.name, `${r.url}/health/ready`, r.child, () => r.log, 60_000);

  before(async () => {
    assert.deepEqual(missing, [], `CI=true and ${missing.join(', ')} missing: apt-get install -y --no-install-recommends nginx-light prometheus`);
    dir = mkdtempSync(join(tmpdir(), 'slim-replicas-'));
    repo = createFixtureRepository([{ name: MODEL }]);
    // models/tiny/routing.json -> <configmap>/tiny.json -> ..data/tiny.json, as in deploy/k8s.
    cmDir = join(dir, 'configmap');
    mkdirSync(cmDir);
    writeConfigMapVersion(cmDir, 'v1', `${MODEL}.json`, { variants: { k1: { weight: 1 }, k2: { weight: 1 } }, sticky: true });
    symlinkSync(`..data/${MODEL}.json`, join(cmDir, `${MODEL}.json`));
    symlinkSync(join(cmDir, `${MODEL}.json`), join(repo.dir, MODEL, 'routing.json'));

    for (const name of ['r0', 'r1', 'r2']) replicas.push(await startReplica(name));
    await Promise.all(replicas.map(waitReady));

    const lbPort = await freePort();
    lb = `http://127.0.0.1:${lbPort}`;
    for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub));
    const servers = replicas.map((r) => `    server 127.0.0.1:${r.port} max_fails=1 fail_timeout=10s;`).join('\n');
    const conf = `
# One process as the current user: no master, no "user" switch, everything under ${dir}.
daemon off;
master_process off;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 1024; }
http {
  log_format lb '$request_uri $status upstream=$upstream_addr upstream_status=$upstream_status';
  access_log ${join(dir, 'access.log')} lb;
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  # /feedback is hashed by its request_id (read from the JSON body), so a repeat of the same
  # feedback meets the replica that already counted it.
  client_body_buffer_size 64k;
  client_body_in_single_buffer on;
  map $request_body $feedback_id {
    "~\\"request_id\\"\\s*:\\s*\\"(?<id>[^\\"]+)\\"" $id;
    default $request_body;
  }
  upstream slim {
${servers}
  }
  upstream slim_feedback {
    hash $feedback_id consistent;
${servers}
  }
  server {
    listen 127.0.0.1:${lbPort};
    proxy_connect_timeout 2s;
    proxy_read_timeout 30s;
    proxy_next_upstream_tries 3;
    add_header X-Upstream $upstream_addr always;
    # GETs: idempotent, retried on connection errors, timeouts and 503.
    location / {
      proxy_pass http://slim;
      proxy_next_upstream error timeout http_503;
    }
    # Inference has no side effects: a POST that met a draining replica (503 SHUTTING_DOWN, or
    # a connection it closed) is safe to send to another one.
    location = /classify {
      proxy_pass http://slim;
      proxy_next_upstream error timeout http_503 non_idempotent;
    }
    location /v2/ {
      proxy_pass http://slim;
      proxy_next_upstream error timeout http_503 non_idempotent;
    }
    # Feedback counts: retried only when it never reached a replica ("error" without
    # non_idempotent: nginx does not resend a POST it has already sent).
    location = /feedback {
      proxy_pass http://slim_feedback;
      proxy_next_upstream error;
    }
  }
}
`;
    writeFileSync(join(dir, 'nginx.conf'), conf);
    nginx = spawn(NGINX!, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'pipe', 'pipe'] });
    nginx.stdout!.on('data', (d: Buffer) => (nginxLog += d.toString()));
    nginx.stderr!.on('data', (d: Buffer) => (nginxLog += d.toString()));
    const errorLog = join(dir, 'error.log');
    await untilAnswers('nginx', `${lb}/health/ready`, nginx, () => `${nginxLog}\n${existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : ''}`, 10_000, 100);

    prom = await startPrometheus(
      PROMETHEUS!,
      dir,
      [
        'global:',
        '  scrape_interval: 1s',
        'scrape_configs:',
        '  - job_name: slimserve',
        '    static_configs:',
        `      - targets: [${replicas.map((r) => JSON.stringify(`127.0.0.1:${r.port}`)).join(', ')}]`,
        '',
      ].join('\n'),
    );
    await waitFor('sum(up{job="slimserve"})', (r) => r.length === 1 && r[0]!.value[1] === '3');
  });

  after(async () => {
    await stopProcess(prom?.child, 'SIGTERM');
    await stopProcess(nginx, 'SIGQUIT');
    await Promise.all(replicas.map((r) => stopProcess(r.child, 'SIGTERM')));
    repo?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the same key gets the same variant whichever replica answers', async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `user-${i}`);
    // Each key three times in a row: round robin sends the three to three replicas.
    const answers = await pool(
      keys.flatMap((k) => [k, k, k]),
      1,
      (key, i) => classify(lb, key, i),
    );
    const seen = new Map<string, { variants: Set<string>; upstreams: Set<string> }>();
    answers.forEach((a, i) => {
      assert.equal(a.status, 200, JSON.stringify(a));
      const key = keys[Math.floor(i / 3)]!;
      const s = seen.get(key) ?? { variants: new Set(), upstreams: new Set() };
      s.variants.add(a.body.variant as string);
      s.upstreams.add(a.upstream);
      seen.set(key, s);
    });
    for (const [key, s] of seen) {
      assert.equal(s.variants.size, 1, `${key} got ${[...s.variants]} from ${[...s.upstreams]}`);
      assert.equal(s.upstreams.size, 3, `${key} was answered by ${[...s.upstreams]}, expected all three replicas`);
      keyVariant.set(key, [...s.variants][0]!);
    }
    // Both variants take keys (weights 1:1), so "the same variant" is not trivially true.
    const counts = [...keyVariant.values()].reduce<Record<string, number>>((m, v) => ({ ...m, [v]: (m[v] ?? 0) + 1 }), {});
    assert.ok((counts.k1 ?? 0) >= 5 && (counts.k2 ?? 0) >= 5, `keys per variant: ${JSON.stringify(counts)}`);
    // And straight to each replica, not through nginx: the same answer.
    for (const key of keys.slice(0, 5)) {
      for (const r of replicas) assert.equal((await classify(r.url, key, 0)).body.variant, keyVariant.get(key), `${key} on ${r.name}`);
    }
  });

  test('feedback for 200 requests, each posted twice through nginx, counts exactly once each (Prometheus, summed over replicas)', async () => {
    const N = 200;
    const answered = await pool(
      Array.from({ length: N }, (_, i) => i),
      16,
      (i) => classify(lb, `fb-${i}`, i),
    );
    for (const a of answered) assert.equal(a.status, 200, JSON.stringify(a));
    const ids = answered.map((a) => a.body.request_id as string);
    assert.equal(new Set(ids).size, N, 'request ids are unique');

    const post1 = await pool(ids, 16, (id) => post(lb, '/feedback', { request_id: id, label: 'positive' }));
    const post2 = await pool(ids, 16, (id) => post(lb, '/feedback', { request_id: id, label: 'positive' }));
    const perReplica: Record<string, number> = {};
    let crossReplica = 0;
    for (let i = 0; i < N; i++) {
      assert.equal(post1[i]!.status, 202, JSON.stringify(post1[i]));
      assert.equal(post2[i]!.status, 202, JSON.stringify(post2[i]));
      assert.equal(post2[i]!.upstream, post1[i]!.upstream, 'a repeat goes to the replica that counted the first');
      perReplica[post1[i]!.upstream] = (perReplica[post1[i]!.upstream] ?? 0) + 1;
      if (post1[i]!.upstream !== answered[i]!.upstream) crossReplica++;
    }
    assert.equal(Object.keys(perReplica).length, 3, `feedback spread over ${JSON.stringify(perReplica)}`);
    assert.ok(crossReplica >= N / 3, `only ${crossReplica} of ${N} feedbacks landed on another replica than the answer`);

    // A forged or altered id is refused by whichever replica gets it.
    const id0 = ids[0]!;
    const altered = id0.slice(0, -2) + (id0.endsWith('AA') ? 'BB' : 'AA');
    for (const forged of [altered, 'not-a-signed-id']) {
      const a = await post(lb, '/feedback', { request_id: forged, label: 'positive' });
      assert.equal(a.status, 400, JSON.stringify(a));
      assert.equal((a.body.error as { code: string }).code, 'INVALID_REQUEST_ID');
    }

    const total = await waitFor('sum(slim_feedback_total)', (r) => r.length === 1 && Number(r[0]!.value[1]) >= N);
    // Give a second scrape the chance to show any late double count.
    await sleep(2500);
    assert.equal(Number((await query('sum(slim_feedback_total)'))[0]!.value[1]), N, `total ${JSON.stringify(total)}`);
    const byInstance = await query('sum by (instance) (slim_feedback_total)');
    const promPer = Object.fromEntries(byInstance.map((s) => [s.metric.instance!, Number(s.value[1])]));
    assert.deepEqual(promPer, perReplica, 'each replica counted exactly the feedback nginx sent it');
  });

  test('a routing.json change (ConfigMap-style symlink swap) reaches all replicas within 5 s', async () => {
    const moving = [...keyVariant]
      .filter(([, v]) => v === 'k1')
      .map(([k]) => k)
      .slice(0, 3);
    assert.ok(moving.length > 0);
    for (const r of replicas) for (const k of moving) assert.equal((await classify(r.url, k, 1)).body.variant, 'k1');
    const changedAt = Date.now();
    writeConfigMapVersion(cmDir, 'v2', `${MODEL}.json`, { variants: { k2: { weight: 1 } }, sticky: true });
    rmSync(join(cmDir, '..v1'), { recursive: true });
    const reachedAfter = await Promise.all(
      replicas.map(async (r) => {
        for (;;) {
          const variants = await Promise.all(moving.map((k, i) => classify(r.url, k, i).then((a) => a.body.variant)));
          if (variants.every((v) => v === 'k2')) return Date.now() - changedAt;
          assert.ok(Date.now() - changedAt < 5000, `${r.name} still routes ${moving} to ${variants.join(',')} after 5 s:\n${r.log.slice(-1500)}`);
          await sleep(100);
        }
      }),
    );
    assert.ok(Math.max(...reachedAfter) < 5000, `reached after ${reachedAfter} ms`);
    // And through nginx, any key now lands on k2.
    for (let i = 0; i < 6; i++) assert.equal((await classify(lb, `after-${i}`, i)).body.variant, 'k2');
    console.log(`routing change reached the replicas after ${reachedAfter.join(', ')} ms`);
  });

  test('SIGTERM to one replica under load: every request answered, by retry or a clean 503, none hangs', async () => {
    const victim = replicas[1]!;
    const victimAddr = `127.0.0.1:${victim.port}`;
    const results: { status: number; upstream: string; code?: string; error?: string; at: number }[] = [];
    let stop = false;
    let i = 0;
    const clients = Array.from({ length: 12 }, async () => {
      while (!stop) {
        const n = i++;
        const at = Date.now();
        try {
          const a = await classify(lb, `load-${n}`, n);
          const err = a.body.error as { code?: string } | undefined;
          results.push({ status: a.status, upstream: a.upstream, ...(err?.code ? { code: err.code } : {}), at });
        } catch (e) {
          results.push({ status: 0, upstream: '', error: (e as Error).message, at });
        }
      }
    });
    await sleep(1500);
    const killedAt = Date.now();
    victim.child.kill('SIGTERM');
    const code = await Promise.race([victim.exited, sleep(20_000).then(() => 'hung' as const)]);
    const exitedAt = Date.now();
    await sleep(1500);
    stop = true;
    await Promise.all(clients);

    assert.equal(code, 0, `the stopped replica exited ${code}:\n${victim.log.slice(-2000)}`);
    const failures = results.filter((r) => r.status !== 200 && !(r.status === 503 && r.code === 'SHUTTING_DOWN'));
    assert.deepEqual(failures, [], `requests lost or hung: ${JSON.stringify(failures.slice(0, 5))}`);
    const before = results.filter((r) => r.at < killedAt);
    const during = results.filter((r) => r.at >= killedAt && r.at <= exitedAt);
    const afterExit = results.filter((r) => r.at > exitedAt);
    assert.ok(
      before.some((r) => r.upstream.startsWith(victimAddr)),
      'the stopped replica took load before SIGTERM',
    );
    assert.ok(afterExit.length > 0 && afterExit.every((r) => r.status === 200), 'the other replicas answer after it is gone');
    const retried = results.filter((r) => r.upstream.includes(','));
    const clean503 = results.filter((r) => r.status === 503);
    console.log(
      `SIGTERM under load: ${results.length} requests (${before.length} before, ${during.length} while draining ${exitedAt - killedAt} ms, ${afterExit.length} after), ` +
        `${retried.length} retried by nginx, ${clean503.length} clean 503, 0 lost`,
    );
  });
});
