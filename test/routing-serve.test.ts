// Depth routing end to end: a real server on loopback with a real ONNX fixture repository
// (variants k1, k2, k4 of one stack). Sticky keys match the pure hash, PUT /routing is guarded
// and validated, routing.json is re-read (a broken one keeps the old table), shadow results
// never reach clients while their agreement is counted, a cascade answers what
// `slim eval --cascade` computes, and feedback moves online accuracy, across replicas when ids
// are signed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { evalCommand, evaluateCascade } from '../src/pipeline/eval-command.js';
import { rendezvous } from '../src/serve/routing/decide.js';
import type { RunningServer } from '../src/serve/server.js';
import { createFixtureRepository, fixtureText, type FixtureRepository } from './helpers/fixture-model.js';
import { call as callWith, post, until } from './helpers/http.js';
import { startTestServer } from './helpers/serve.js';

const call = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) => callWith(method, url, body, { headers });

const ADMIN = 'admin-token-123';
const SECRET = 'replica-secret-1';

interface Result {
  label: string;
  score: number;
  scores: Record<string, number>;
  variant: string;
  depth: number;
}

/** Value of one Prometheus sample whose labels include `labels`; 0 when absent. */
async function metric(url: string, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

let repo: FixtureRepository;
let modelDir: string;
const servers: RunningServer[] = [];
let url: string;

async function serve(overrides: Record<string, unknown>): Promise<RunningServer> {
  return (await startTestServer({ models: repo.dir, 'batching.maxQueueDelayMs': 0, ...overrides }, servers)).server;
}

const TEXTS = Array.from({ length: 60 }, (_, i) => fixtureText(2 + ((i * 5) % 20), 500 + i));

/** Answers of one variant for TEXTS, asked explicitly, in lists of 30. */
async function explicit(variant: string): Promise<Result[]> {
  const out: Result[] = [];
  for (let i = 0; i < TEXTS.length; i += 30) {
    const r = await post(`${url}/classify`, { inputs: TEXTS.slice(i, i + 30), variant });
    assert.equal(r.status, 200);
    out.push(...r.json.results);
  }
  return out;
}

before(async () => {
  repo = createFixtureRepository([{ name: 'tiny', variants: ['k1', 'k2', 'k4'], routing: { variants: { k1: { weight: 90 }, k2: { weight: 10 } } } }]);
  modelDir = join(repo.dir, 'tiny');
  // `slim eval` reads manifests with the build's strict checks; the fixture's untrained ones say 0 examples.
  for (const v of ['k1', 'k2', 'k4']) {
    const file = join(modelDir, v, 'manifest.json');
    const manifest = JSON.parse(readFileSync(file, 'utf8'));
    manifest.train.examples = 1;
    writeFileSync(file, JSON.stringify(manifest, null, 2));
  }
  url = (await serve({ adminToken: ADMIN, routingReloadMs: 100 })).url;
});
after(async () => {
  for (const s of servers) await s.close();
  repo.cleanup();
});

const KEYS = Array.from({ length: 200 }, (_, i) => `customer-${i}`);
const byKey = new Map<string, string>();

describe('routing over HTTP', () => {
  test('sticky: a key (body or x-slim-key) goes where the pure hash says, every time', async () => {
    for (const [i, key] of KEYS.entries()) {
      const r =
        i % 2 === 0
          ? await post(`${url}/classify`, { inputs: 'good film', key })
          : await post(`${url}/classify`, { inputs: 'good film' }, { 'x-slim-key': key });
      assert.equal(r.status, 200);
      assert.equal(r.json.routing, 'sticky');
      assert.equal(
        r.json.variant,
        rendezvous(key, [
          ['k1', 90],
          ['k2', 10],
        ]),
        key,
      );
      assert.equal(r.headers.get('x-slim-variant'), r.json.variant);
      assert.equal(r.json.results[0].variant, r.json.variant);
      byKey.set(key, r.json.variant);
    }
    for (const key of KEYS.slice(0, 20)) assert.equal((await post(`${url}/classify`, { inputs: 'dull plot', key })).json.variant, byKey.get(key));
    const k2 = [...byKey.values()].filter((v) => v === 'k2').length;
    assert.ok(k2 > 5 && k2 < 40, `${k2} of 200 keys on k2 at 10%`);
  });

  test('PUT without a token is 401, with a wrong one 403, with a bad table 400; nothing changes', async () => {
    const good = { variants: { k1: { weight: 80 }, k2: { weight: 20 } } };
    const before = (await call('GET', `${url}/routing/tiny`)).json;
    const none = await call('PUT', `${url}/routing/tiny`, good);
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'UNAUTHORIZED');
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.equal((await call('PUT', `${url}/routing/tiny`, good, { authorization: 'Basic YWRtaW4=' })).status, 401);
    const wrong = await call('PUT', `${url}/routing/tiny`, good, { authorization: 'Bearer admin-token-124' });
    assert.equal(wrong.status, 403);
    assert.equal(wrong.json.error.code, 'FORBIDDEN');
    const auth = { authorization: `Bearer ${ADMIN}` };
    for (const [table, message] of [
      [{ variants: { k3: { weight: 1 } } }, /"k3", which is not a variant of tiny/],
      [{ variants: { k1: { weight: -5 }, k2: { weight: 10 } } }, /weight must be a number >= 0/],
      [{ variants: { k1: { weight: 0 }, k2: { weight: 0 } } }, /add up to 0/],
      [{ cascade: { order: ['k1', 'k8'], threshold: 0.9 } }, /cascade\.order\[1\] names "k8"/],
      [{ shadow: { variant: 'k2', fraction: 2 } }, /fraction must be a number in \[0, 1\]/],
      [{ cascade: { order: ['k1', 'k2'], threshold: 0 } }, /threshold must be a number in \(0, 1\]/],
      ['not a table', /expected a JSON object/],
    ] as [unknown, RegExp][]) {
      const r = await call('PUT', `${url}/routing/tiny`, table, auth);
      assert.equal(r.status, 400, JSON.stringify(r.json));
      assert.equal(r.json.error.code, 'INVALID_ROUTING');
      assert.match(r.json.error.message, message);
    }
    assert.equal((await call('PUT', `${url}/routing/nope`, good, auth)).status, 404);
    const afterwards = (await call('GET', `${url}/routing/tiny`)).json;
    assert.equal(afterwards.version, before.version);
    assert.deepEqual(afterwards.routing, before.routing);
  });

  test('PUT 90/10 -> 80/20 applies at once, persists, and moves only k1 keys to k2', async () => {
    const r = await call('PUT', `${url}/routing/tiny`, { variants: { k1: { weight: 80 }, k2: { weight: 20 } } }, { authorization: `Bearer ${ADMIN}` });
    assert.equal(r.status, 200);
    assert.equal(r.json.source, 'api');
    assert.equal(r.json.persisted, true);
    assert.deepEqual(JSON.parse(readFileSync(join(modelDir, 'routing.json'), 'utf8')).variants, { k1: { weight: 80 }, k2: { weight: 20 } });
    assert.equal(await metric(url, 'slim_routing_weight', { model: 'tiny', variant: 'k2' }), 0.2);
    let moved = 0;
    for (const key of KEYS) {
      const v = (await post(`${url}/classify`, { inputs: 'good film', key })).json.variant;
      assert.equal(
        v,
        rendezvous(key, [
          ['k1', 80],
          ['k2', 20],
        ]),
      );
      if (v !== byKey.get(key)) {
        moved++;
        assert.equal(byKey.get(key), 'k1', `${key} moved from k2 to k1`);
      }
    }
    assert.ok(moved > 5 && moved < 40, `${moved} of 200 keys moved`);
  });

  test('routing.json is re-read: a broken file keeps the old table; a valid change applies', async () => {
    const file = join(modelDir, 'routing.json');
    const version = (await call('GET', `${url}/routing/tiny`)).json.version;
    writeFileSync(file, '{"variants": {"k1": {"weight": 1}');
    let s = await until('the reload error', async () => {
      const g = (await call('GET', `${url}/routing/tiny`)).json;
      return g.lastReloadError ? g : undefined;
    });
    assert.match(s.lastReloadError, /routing\.json/);
    writeFileSync(file, JSON.stringify({ variants: { k9: { weight: 1 } } }));
    s = await until('the refusal', async () => {
      const g = (await call('GET', `${url}/routing/tiny`)).json;
      return /k9/.test(g.lastReloadError ?? '') ? g : undefined;
    });
    assert.equal(s.version, version);
    assert.deepEqual(s.routing.variants, { k1: { weight: 80 }, k2: { weight: 20 } });
    // One validator (the schema of the PUT body, then the variant checks): the file and PUT refuse
    // the same document with the same message.
    const bad = { variants: { k1: { weight: 1 } }, shadow: { variant: 'k2' } };
    writeFileSync(file, JSON.stringify(bad));
    s = await until('the schema refusal', async () => {
      const g = (await call('GET', `${url}/routing/tiny`)).json;
      return /shadow/.test(g.lastReloadError ?? '') ? g : undefined;
    });
    assert.equal(s.lastReloadError, 'routing of tiny: shadow.fraction is required');
    const put = await call('PUT', `${url}/routing/tiny`, bad, { authorization: `Bearer ${ADMIN}` });
    assert.equal(put.status, 400);
    assert.equal(put.json.error.message, s.lastReloadError);
    assert.equal((await post(`${url}/classify`, { inputs: 'good', key: KEYS[0] })).status, 200);
    writeFileSync(file, JSON.stringify({ variants: { k1: { weight: 0 }, k2: { weight: 1 } } }));
    s = await until('the new table', async () => {
      const g = (await call('GET', `${url}/routing/tiny`)).json;
      return g.version > version ? g : undefined;
    });
    assert.equal(s.source, 'file');
    assert.equal(s.lastReloadError, undefined);
    assert.equal((await post(`${url}/classify`, { inputs: 'good' })).json.variant, 'k2');
    // A removed routing.json means no table: the shallowest variant again.
    rmSync(file);
    s = await until('the default table', async () => {
      const g = (await call('GET', `${url}/routing/tiny`)).json;
      return g.source === 'default' ? g : undefined;
    });
    assert.equal(s.routing, null);
    assert.deepEqual(s.effective.variants, { k1: { weight: 1 } });
    assert.equal((await post(`${url}/classify`, { inputs: 'good', key: 'any' })).json.variant, 'k1');
  });

  test('shadow: results never reach the client; agreement is counted per variant', async () => {
    const k1 = await explicit('k1');
    const k4 = await explicit('k4');
    const put = await call(
      'PUT',
      `${url}/routing/tiny`,
      { variants: { k1: { weight: 1 } }, sticky: false, shadow: { variant: 'k4', fraction: 1 } },
      { authorization: `Bearer ${ADMIN}` },
    );
    assert.equal(put.status, 200);
    for (const [i, text] of TEXTS.entries()) {
      const r = await post(`${url}/classify`, { inputs: text });
      assert.equal(r.json.variant, 'k1');
      assert.equal(r.headers.get('x-slim-variant'), 'k1');
      assert.deepEqual(Object.keys(r.json.results[0]).sort(), ['depth', 'label', 'score', 'scores', 'truncated', 'variant']);
      assert.equal(r.json.results[0].variant, 'k1');
      assert.equal(r.json.results[0].label, k1[i]!.label);
      for (const [label, p] of Object.entries(k1[i]!.scores)) assert.ok(Math.abs(r.json.results[0].scores[label] - p) < 1e-5);
    }
    const agree = k1.filter((r, i) => r.label === k4[i]!.label).length;
    assert.ok(agree > 0 && agree < TEXTS.length, `fixture: k1 and k4 agree on ${agree} of ${TEXTS.length}`);
    const row = await until('shadow counts', async () => {
      const a = (await call('GET', `${url}/routing/tiny`)).json.shadow.agreement.find((x: any) => x.served === 'k1' && x.shadow === 'k4');
      return a && a.agree + a.disagree + a.dropped >= TEXTS.length ? a : undefined;
    });
    assert.deepEqual({ agree: row.agree, disagree: row.disagree, dropped: row.dropped }, { agree, disagree: TEXTS.length - agree, dropped: 0 });
    assert.equal(await metric(url, 'slim_shadow_total', { model: 'tiny', variant: 'k4', agreement: 'agree' }), agree);
    assert.equal(await metric(url, 'slim_shadow_total', { model: 'tiny', variant: 'k4', agreement: 'disagree' }), TEXTS.length - agree);
  });

  test('cascade k1 -> k2: per-input depth, accuracy and cost between the depths, equal to slim eval --cascade', async () => {
    const k1 = await explicit('k1');
    const k2 = await explicit('k2');
    const truth = (await explicit('k4')).map((r) => r.label); // the deeper model as the labeller
    const dataFile = join(repo.dir, 'labelled.jsonl');
    writeFileSync(dataFile, TEXTS.map((text, i) => JSON.stringify({ text, label: truth[i] })).join('\n'));
    // A threshold half way between two neighbouring k1 confidences near the median: no input sits on it.
    const tops = k1.map((r) => r.score).sort((a, b) => a - b);
    const threshold = (tops[29]! + tops[30]!) / 2;
    const put = await call(
      'PUT',
      `${url}/routing/tiny`,
      { variants: { k1: { weight: 1 } }, cascade: { order: ['k1', 'k2'], threshold } },
      { authorization: `Bearer ${ADMIN}` },
    );
    assert.equal(put.status, 200);
    const escalatedBefore = await metric(url, 'slim_cascade_escalations_total', { model: 'tiny', from: 'k1', to: 'k2' });
    const results: Result[] = [];
    for (let i = 0; i < TEXTS.length; i += 30) {
      const r = await post(`${url}/classify`, { inputs: TEXTS.slice(i, i + 30) });
      assert.equal(r.status, 200);
      assert.equal(r.json.routing, 'cascade');
      results.push(...r.json.results);
    }
    results.forEach((r, i) => {
      const confident = k1[i]!.score >= threshold;
      assert.equal(r.variant, confident ? 'k1' : 'k2', `input ${i}`);
      assert.equal(r.depth, confident ? 1 : 2);
      assert.equal(r.label, (confident ? k1 : k2)[i]!.label);
    });
    const escalated = results.filter((r) => r.variant === 'k2').length;
    assert.equal(escalated, 30);
    assert.equal((await metric(url, 'slim_cascade_escalations_total', { model: 'tiny', from: 'k1', to: 'k2' })) - escalatedBefore, escalated);

    const acc = (labels: string[]): number => labels.filter((l, i) => l === truth[i]).length / TEXTS.length;
    const served = { accuracy: acc(results.map((r) => r.label)), meanCost: results.reduce((a, r) => a + (r.variant === 'k1' ? 1 : 3), 0) / TEXTS.length };
    const a1 = acc(k1.map((r) => r.label));
    const a2 = acc(k2.map((r) => r.label));
    assert.ok(served.accuracy >= Math.min(a1, a2) && served.accuracy <= Math.max(a1, a2), `cascade ${served.accuracy} vs k1 ${a1}, k2 ${a2}`);
    assert.ok(served.meanCost > 1 && served.meanCost < 3, `cost ${served.meanCost}`);

    const report = await evaluateCascade(modelDir, ['k1', 'k2'], [threshold, 0.99], dataFile, { threads: 1 });
    assert.deepEqual(
      report.variants.map((v) => [v.variant, v.accuracy, v.meanCost]),
      [
        ['k1', a1, 1],
        ['k2', a2, 2],
      ],
    );
    assert.equal(report.cascades[0]!.accuracy, served.accuracy);
    assert.equal(report.cascades[0]!.meanCost, served.meanCost);
    assert.equal(report.cascades[0]!.escalated, 0.5);
    assert.ok(report.cascades[1]!.meanCost > report.cascades[0]!.meanCost, 'a higher threshold escalates more');

    // The CLI prints the same report.
    const lines: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => lines.push(String(chunk)) > 0) as typeof process.stdout.write;
    let code: number;
    try {
      code = await evalCommand(['--model', modelDir, '--cascade', 'k1,k2', '--threshold', String(threshold), '--data', dataFile, '--threads', '1']);
    } finally {
      process.stdout.write = write;
    }
    assert.equal(code, 0);
    const cli = JSON.parse(lines.join(''));
    assert.equal(cli.cascades[0].accuracy, served.accuracy);
    assert.equal(cli.cascades[0].meanCost, served.meanCost);
  });

  test('feedback joins true labels with served predictions and moves online accuracy', async () => {
    await call('PUT', `${url}/routing/tiny`, { variants: { k1: { weight: 1 } } }, { authorization: `Bearer ${ADMIN}` });
    const one = await post(`${url}/classify`, { inputs: 'a great movie' }, { 'x-request-id': 'fb-1' });
    // The feedback id is the server's own, never the client's x-request-id (that one is echoed only).
    assert.equal(one.headers.get('x-request-id'), 'fb-1');
    assert.match(one.json.request_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const fb1 = one.json.request_id as string;
    const predicted = one.json.results[0].label as string;
    const wrongLabel = ['negative', 'neutral', 'positive'].find((l) => l !== predicted)!;
    const first = await post(`${url}/feedback`, { request_id: fb1, label: predicted });
    assert.equal(first.status, 202, JSON.stringify(first.json));
    assert.deepEqual([first.json.counted, first.json.results[0].correct, first.json.results[0].variant], [1, true, 'k1']);
    let k1 = (await call('GET', `${url}/routing/tiny`)).json.variants.find((v: any) => v.name === 'k1');
    assert.deepEqual([k1.online.n, k1.online.accuracy, k1.feedback.total], [1, 1, 1]);

    const two = await post(`${url}/classify`, { inputs: ['dull plot', 'superb ending', 'boring'] });
    const ok = await post(`${url}/feedback`, {
      request_id: two.json.request_id,
      labels: [wrongLabel === two.json.results[0].label ? predicted : wrongLabel, null, two.json.results[2].label],
    });
    assert.equal(ok.status, 202);
    assert.equal(ok.json.counted, 2);
    k1 = (await call('GET', `${url}/routing/tiny`)).json.variants.find((v: any) => v.name === 'k1');
    assert.equal(k1.online.n, 3);
    assert.ok(Math.abs(k1.online.accuracy - 2 / 3) < 1e-12);
    assert.ok(k1.online.ci95.low < 2 / 3 && k1.online.ci95.high > 2 / 3);
    assert.equal(await metric(url, 'slim_feedback_total', { model: 'tiny', variant: 'k1', outcome: 'correct' }), 2);
    assert.equal(await metric(url, 'slim_feedback_total', { model: 'tiny', variant: 'k1', outcome: 'incorrect' }), 1);
    assert.ok(Math.abs((await metric(url, 'slim_variant_accuracy', { model: 'tiny', variant: 'k1', source: 'online' })) - 2 / 3) < 1e-9);

    const again = await post(`${url}/feedback`, { request_id: fb1, label: predicted });
    assert.deepEqual([again.status, again.json.counted, again.json.duplicates], [202, 0, 1]);
    const code = async (body: unknown) => {
      const r = await post(`${url}/feedback`, body);
      return [r.status, r.json.error?.code];
    };
    assert.deepEqual(await code({ request_id: 'never-served', label: predicted }), [404, 'REQUEST_ID_NOT_FOUND']);
    assert.deepEqual(await code({ request_id: fb1, label: 'spam' }), [422, 'UNKNOWN_LABEL']);
    assert.deepEqual(await code({ request_id: two.json.request_id, label: predicted }), [400, 'INVALID_REQUEST']);
    assert.deepEqual(await code({ request_id: fb1 }), [400, 'INVALID_REQUEST']);
    assert.deepEqual(await code({ request_id: fb1, label: predicted, labels: [predicted] }), [400, 'INVALID_REQUEST']);
  });
});

describe('routing across replicas (signed request ids, no admin token)', () => {
  let b: string;
  let c: string;
  before(async () => {
    writeFileSync(join(modelDir, 'routing.json'), JSON.stringify({ variants: { k1: { weight: 50 }, k2: { weight: 50 } } }));
    b = (await serve({ feedbackSecret: SECRET })).url;
    c = (await serve({ feedbackSecret: SECRET })).url;
  });

  test('without a configured admin token PUT is off (403 ADMIN_DISABLED); GET still answers', async () => {
    const r = await call('PUT', `${b}/routing/tiny`, { variants: { k1: { weight: 1 } } }, { authorization: `Bearer ${ADMIN}` });
    assert.deepEqual([r.status, r.json.error.code], [403, 'ADMIN_DISABLED']);
    assert.equal((await call('GET', `${b}/routing/tiny`)).status, 200);
  });

  test('the same key gets the same variant on every replica', async () => {
    for (const key of KEYS.slice(0, 50)) {
      const [vb, vc] = await Promise.all([post(`${b}/classify`, { inputs: 'film', key }), post(`${c}/classify`, { inputs: 'film', key })]);
      assert.equal(vb.json.variant, vc.json.variant);
      assert.equal(
        vb.json.variant,
        rendezvous(key, [
          ['k1', 50],
          ['k2', 50],
        ]),
      );
    }
  });

  test('feedback for an id answered by one replica counts on another; altered ids are 400', async () => {
    const r = await post(`${b}/classify`, { inputs: 'win a free prize now', variant: 'k2' }, { 'x-request-id': 'trace-7' });
    const id = r.json.request_id as string;
    assert.match(id, /^v1\./);
    assert.equal(r.headers.get('x-request-id'), 'trace-7');
    const fb = await post(`${c}/feedback`, { request_id: id, label: r.json.results[0].label });
    assert.equal(fb.status, 202, JSON.stringify(fb.json));
    assert.deepEqual([fb.json.counted, fb.json.results[0].variant, fb.json.results[0].correct], [1, 'k2', true]);
    const onC = (await call('GET', `${c}/routing/tiny`)).json.variants.find((v: any) => v.name === 'k2');
    assert.equal(onC.feedback.total, 1);
    assert.equal(await metric(c, 'slim_feedback_total', { model: 'tiny', variant: 'k2', outcome: 'correct' }), 1);

    const [p, body, mac] = id.split('.');
    const payload = JSON.parse(Buffer.from(body!, 'base64url').toString());
    payload.v = 'k1';
    const altered = `${p}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${mac}`;
    const bad = await post(`${c}/feedback`, { request_id: altered, label: r.json.results[0].label });
    assert.deepEqual([bad.status, bad.json.error.code], [400, 'INVALID_REQUEST_ID']);
    const forged = await post(`${c}/feedback`, { request_id: 'trace-7', label: r.json.results[0].label });
    assert.deepEqual([forged.status, forged.json.error.code], [400, 'INVALID_REQUEST_ID']);
    // A replica without the secret does not know the id.
    assert.equal((await post(`${url}/feedback`, { request_id: id, label: r.json.results[0].label })).status, 404);
  });
});
