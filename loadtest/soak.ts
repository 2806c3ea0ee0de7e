// Soak: 30 minutes of open-loop load at 50% of the maximum sustainable rate while the routing
// changes (PUT /routing, admin token) and routing.json is rewritten on disk (hot reload), with
// an optional injected worker fault. Per window (default 1 minute) it records answers by status
// and code, latency p50/p99, the server's RSS (/proc) and its event-loop delay p99 (the
// nodejs_eventloop_lag_p99_seconds gauge of /metrics, less its sampling interval). Pass: no 5xx other than the injected
// fault's WORKER_FAILED, nothing hung, and neither RSS nor event-loop delay growing between the
// second fifth of the run and the last fifth. Not part of `npm test`.
//
// The model directory is copied to a temporary repository first, so the routing.json writes
// never touch models/.
//
//   npm run build && node dist/loadtest/soak.js [--models models] [--model spam] [--minutes 30]
//        [--seconds N (overrides minutes)] [--fraction 0.5] [--window-s 60] [--routing-every-s 120]
//        [--reload-every-s 180] [--fault crash:k2:2000] [--workers 2] [--connections 64] [--out loadtest/results]
import autocannon from 'autocannon';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { rssMB, startServerProcess } from './lib/server-process.js';
import { fmt as n, LoadClient, scrapeMetrics, tail, type Sample } from './lib/load-client.js';
import { generateTexts } from './texts.js';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'models' },
    model: { type: 'string', default: 'spam' },
    minutes: { type: 'string', default: '30' },
    seconds: { type: 'string' },
    fraction: { type: 'string', default: '0.5' },
    'probe-seconds': { type: 'string', default: '10' },
    'window-s': { type: 'string', default: '60' },
    'routing-every-s': { type: 'string', default: '120' },
    'reload-every-s': { type: 'string', default: '180' },
    fault: { type: 'string' },
    // Two workers: a crashed one is replaced while the other serves (with one, a crash is an outage
    // for as long as the replacement loads).
    workers: { type: 'string', default: '2' },
    connections: { type: 'string', default: '64' },
    out: { type: 'string', default: join('loadtest', 'results') },
  },
});
const totalS = args.seconds ? Number(args.seconds) : Number(args.minutes) * 60;
const windowS = Math.min(Number(args['window-s']), totalS);
const routingEveryS = Number(args['routing-every-s']);
const reloadEveryS = Number(args['reload-every-s']);
const model = args.model!;
const REQUEST_TIMEOUT_MS = 10_000;

// A private copy of the model: routing.json is rewritten during the run.
const repo = mkdtempSync(join(tmpdir(), 'slim-soak-'));
cpSync(join(resolve(args.models!), model), join(repo, model), { recursive: true });
const variants = readdirSync(join(repo, model))
  .filter((d) => /^k\d+/.test(d))
  .sort();
if (variants.length < 2) throw new Error(`soak: ${model} needs at least two variants (has ${variants.join(', ')})`);
const [a, b] = variants as [string, string];

// Sticky keys and varied texts; no variant named, so the routing decides every request.
const texts = generateTexts('short', 3000, 11);
const bodies = texts.map((t, i) => JSON.stringify({ inputs: t, model, key: `user-${i % 200}` }));
const token = randomBytes(24).toString('hex');

/** The tables the run cycles through: weights, sticky, shadow, cascade. */
const TABLES: unknown[] = [
  { variants: { [a]: { weight: 90 }, [b]: { weight: 10 } } },
  { variants: { [a]: { weight: 50 }, [b]: { weight: 50 } }, sticky: true },
  { variants: { [a]: { weight: 100 }, [b]: { weight: 0 } }, shadow: { variant: b, fraction: 0.1 } },
  { variants: { [a]: { weight: 100 } }, cascade: { order: [a, b], threshold: 0.9 } },
];

const server = await startServerProcess(
  ['--models', repo, '--workers', args.workers!, '--admin-token', token, '--request-timeout-ms', String(REQUEST_TIMEOUT_MS)],
  args.fault ? { SLIM_FAULT_INJECT: args.fault } : {},
);
const { url } = server;
const pid = server.child.pid!;
const client = new LoadClient(url, bodies, REQUEST_TIMEOUT_MS + 5_000);
const events: { at: number; kind: string; ok: boolean; detail: string }[] = [];
const timers: NodeJS.Timeout[] = [];
const t0 = performance.now();
const sinceStart = (): number => Math.round((performance.now() - t0) / 1000);

try {
  // The maximum sustainable rate, closed loop.
  await client.closedLoop(16, 2000, () => {});
  let i = 0;
  const probe = await autocannon({
    url: `${url}/classify`,
    connections: Number(args.connections),
    duration: Number(args['probe-seconds']),
    requests: [{ method: 'POST', headers: { 'content-type': 'application/json' }, setupRequest: (req) => ({ ...req, body: bodies[i++ % bodies.length] }) }],
  });
  const maxRate = probe['2xx'] / Number(args['probe-seconds']);
  const rate = maxRate * Number(args.fraction);
  console.log(`max ${maxRate.toFixed(0)} req/s; soaking at ${rate.toFixed(0)} req/s for ${totalS} s`);
  await sleep(1000);

  let tableAt = 0;
  const putRouting = async (): Promise<void> => {
    const table = TABLES[tableAt++ % TABLES.length];
    const res = await fetch(`${url}/routing/${model}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(table),
    });
    events.push({ at: sinceStart(), kind: 'PUT /routing', ok: res.status === 200, detail: `${res.status} ${JSON.stringify(table)}` });
  };
  const reloadFile = async (): Promise<void> => {
    const table = TABLES[tableAt++ % TABLES.length];
    const before = (await (await fetch(`${url}/routing/${model}`)).json()) as { version?: unknown };
    const file = join(repo, model, 'routing.json');
    writeFileSync(`${file}.tmp`, JSON.stringify(table));
    renameSync(`${file}.tmp`, file); // atomic, as a ConfigMap update is
    let seen = false;
    for (let k = 0; k < 50 && !seen; k++) {
      await sleep(100);
      const now = (await (await fetch(`${url}/routing/${model}`)).json()) as { version?: unknown; source?: unknown };
      seen = now.version !== before.version;
    }
    events.push({ at: sinceStart(), kind: 'routing.json reload', ok: seen, detail: JSON.stringify(table) });
  };
  if (routingEveryS > 0)
    timers.push(
      setInterval(
        () => void putRouting().catch((e: Error) => events.push({ at: sinceStart(), kind: 'PUT /routing', ok: false, detail: e.message })),
        routingEveryS * 1000,
      ),
    );
  if (reloadEveryS > 0)
    timers.push(
      setInterval(
        () => void reloadFile().catch((e: Error) => events.push({ at: sinceStart(), kind: 'routing.json reload', ok: false, detail: e.message })),
        reloadEveryS * 1000,
      ),
    );

  // Per window: what was answered in it, and the server's RSS and event-loop delay at its end.
  const samples: Sample[] = [];
  const windows: { endS: number; requests: number; byStatus: Record<string, number>; p50Ms: number; p99Ms: number; rssMB: number; loopP99Ms: number }[] = [];
  let cursor = 0;
  const loadStart = performance.now();
  const closeWindow = async (): Promise<void> => {
    const end = (performance.now() - loadStart) / 1000;
    const slice = samples.slice(cursor);
    cursor = samples.length;
    const byStatus: Record<string, number> = {};
    for (const s of slice) {
      const key = s.status === -1 ? 'hung' : s.status === 0 ? 'error' : s.code ? `${s.status} ${s.code}` : String(s.status);
      byStatus[key] = (byStatus[key] ?? 0) + 1;
    }
    const ok = tail(slice.filter((s) => s.status === 200).map((s) => s.done - s.at));
    const loop = await scrapeMetrics(url, ['nodejs_eventloop_lag_p99_seconds', 'nodejs_eventloop_lag_min_seconds']);
    const row = {
      endS: Math.round(end),
      requests: slice.length,
      byStatus,
      p50Ms: ok.p50,
      p99Ms: ok.p99,
      rssMB: rssMB(pid),
      // prom-client samples the delay with a 100 ms timer and its figures include that interval
      // (idle p99 ~106 ms): the delay beyond it is p99 minus the window's minimum.
      loopP99Ms: (loop.nodejs_eventloop_lag_p99_seconds! - loop.nodejs_eventloop_lag_min_seconds!) * 1000,
    };
    windows.push(row);
    console.log(
      `${row.endS} s: ${row.requests} answers ${JSON.stringify(byStatus)}, p99 ${n(row.p99Ms)} ms, rss ${n(row.rssMB)} MB, event-loop p99 ${n(row.loopP99Ms, 1)} ms`,
    );
  };
  const windowTimer = setInterval(() => void closeWindow(), windowS * 1000);
  timers.push(windowTimer);
  await client.openLoop(rate, totalS * 1000, (s) => samples.push(s));
  for (const t of timers) clearInterval(t);
  if (samples.length - cursor > rate) await closeWindow(); // a last partial window, if it holds a second's worth

  // Verdicts.
  const injected = (key: string): boolean => args.fault !== undefined && key === '503 WORKER_FAILED';
  const totals: Record<string, number> = {};
  for (const w of windows) for (const [k, v] of Object.entries(w.byStatus)) totals[k] = (totals[k] ?? 0) + v;
  const unexpected5xx = Object.entries(totals)
    .filter(([k]) => /^5\d\d/.test(k) && !injected(k))
    .reduce((s, [, v]) => s + v, 0);
  const fifth = Math.max(1, Math.floor(windows.length / 5));
  const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
  const early = windows.slice(fifth, 2 * fifth);
  const late = windows.slice(-fifth);
  const rssGrowth = mean(late.map((w) => w.rssMB)) / mean(early.map((w) => w.rssMB)) - 1;
  const loopEarly = mean(early.map((w) => w.loopP99Ms));
  const loopLate = mean(late.map((w) => w.loopP99Ms));
  const verdict = {
    unexpected5xx,
    hung: totals.hung ?? 0,
    transportErrors: totals.error ?? 0,
    rssGrowthPct: rssGrowth * 100,
    eventLoopP99Ms: { early: loopEarly, late: loopLate },
    routingChanges: events.filter((e) => e.kind === 'PUT /routing').length,
    routingChangesFailed: events.filter((e) => e.kind === 'PUT /routing' && !e.ok).length,
    reloads: events.filter((e) => e.kind === 'routing.json reload').length,
    reloadsFailed: events.filter((e) => e.kind === 'routing.json reload' && !e.ok).length,
  };
  const pass =
    verdict.unexpected5xx === 0 &&
    verdict.hung === 0 &&
    verdict.transportErrors === 0 &&
    verdict.rssGrowthPct < 10 &&
    verdict.eventLoopP99Ms.late <= Math.max(2 * verdict.eventLoopP99Ms.early, verdict.eventLoopP99Ms.early + 10) &&
    verdict.routingChangesFailed === 0 &&
    verdict.reloadsFailed === 0;
  const date = new Date().toISOString();
  const result = {
    date,
    command: `node dist/loadtest/soak.js ${process.argv.slice(2).join(' ')}`.trim(),
    machine: { cpus: availableParallelism(), cpu: cpus()[0]?.model, node: process.version },
    config: {
      model,
      variants,
      seconds: totalS,
      fraction: Number(args.fraction),
      maxRatePerSec: maxRate,
      ratePerSec: rate,
      workers: Number(args.workers),
      fault: args.fault ?? null,
      windowS,
      routingEveryS,
      reloadEveryS,
    },
    pass,
    verdict,
    totals,
    windows,
    events,
  };
  const md = [
    `# Soak (${date.slice(0, 10)}): ${pass ? 'PASS' : 'FAIL'}`,
    '',
    `\`${result.command}\` on ${result.machine.cpus} CPUs (${result.machine.cpu}); ${model} (${variants.join(', ')}), ${args.workers} worker(s); ${n(rate)} req/s open loop = ${args.fraction} x the ${n(maxRate)} req/s maximum, for ${totalS} s; ` +
      `PUT /routing every ${routingEveryS} s, routing.json rewritten every ${reloadEveryS} s${args.fault ? `; fault injected: ${args.fault}` : ''}.`,
    '',
    `Totals: ${Object.entries(totals)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ')}. Unexpected 5xx: ${verdict.unexpected5xx}; hung: ${verdict.hung}; transport errors: ${verdict.transportErrors}. ` +
      `RSS growth (last fifth vs second fifth): ${n(verdict.rssGrowthPct, 1)} %; event-loop p99 ${n(loopEarly, 1)} -> ${n(loopLate, 1)} ms. ` +
      `Routing changes ${verdict.routingChanges} (${verdict.routingChangesFailed} failed), hot reloads ${verdict.reloads} (${verdict.reloadsFailed} not applied within 5 s).`,
    '',
    '| window end (s) | answers | by status | p50 ms | p99 ms | RSS MB | event-loop p99 ms |',
    '|---|---|---|---|---|---|---|',
    ...windows.map(
      (w) =>
        `| ${w.endS} | ${w.requests} | ${Object.entries(w.byStatus)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ')} | ${n(w.p50Ms)} | ${n(w.p99Ms)} | ${n(w.rssMB)} | ${n(w.loopP99Ms, 1)} |`,
    ),
    '',
  ].join('\n');
  console.log(md);
  mkdirSync(args.out!, { recursive: true });
  const base = join(args.out!, `${date.slice(0, 10)}-soak`);
  writeFileSync(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
  writeFileSync(`${base}.md`, md);
  console.log(`wrote ${base}.json and ${base}.md`);
  process.exitCode = pass ? 0 : 1;
} finally {
  for (const t of timers) clearInterval(t);
  client.close();
  await server.stop();
  rmSync(repo, { recursive: true, force: true });
}
