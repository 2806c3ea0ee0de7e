// Overload: does the server shed load with 429 (never hang), keep the p99 of what it admits
// bounded, keep its RSS bounded, and come back to full throughput quickly once the flood stops?
//
//   1. probe: closed-loop autocannon at --connections, 2x and 4x that many (--probe-seconds
//      each) finds the maximum sustainable rate R (answered requests/s; a closed loop with too
//      few clients measures their concurrency, not the server);
//   2. flood: open-loop at --factor x R (default 3x) for --seconds (default 60): requests are
//      sent on a fixed schedule whatever the answers do, and each latency is counted from its
//      scheduled time (no coordinated omission);
//   3. recovery: the flood's clients leave (sockets closed, unanswered requests counted as
//      abandoned) and a new closed-loop client starts at once; the recovery time is from the end
//      of the flood to the first 500 ms window whose answered rate is >= 90% of R.
// The server is a child process (`node dist/src/serve/main.js`), so its RSS is its own
// (/proc/<pid>/status, sampled every 250 ms). Writes <out>/<date>-overload.{json,md}.
//
//   npm run build && node dist/loadtest/overload.js [--models models] [--model spam] [--variant k1]
//        [--seconds 60] [--factor 3] [--probe-seconds 10] [--recovery-seconds 15] [--connections 32]
//        [--workers 1] [--intra-op-threads N] [--max-queued 1024] [--request-timeout-ms 10000] [--out loadtest/results]
// The load generator shares the machine: on a small one give it a core (fewer intra-op threads)
// and read its "lateness" line; when that is large the client, not the server, set the pace.
import autocannon from 'autocannon';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { rssMB, startServerProcess } from './lib/server-process.js';
import { fmt as n, LoadClient, summarizeSamples, type Sample } from './lib/load-client.js';
import { generateTexts } from './texts.js';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'models' },
    model: { type: 'string', default: 'spam' },
    variant: { type: 'string', default: 'k1' },
    seconds: { type: 'string', default: '60' },
    factor: { type: 'string', default: '3' },
    'probe-seconds': { type: 'string', default: '10' },
    'recovery-seconds': { type: 'string', default: '15' },
    connections: { type: 'string', default: '32' },
    workers: { type: 'string', default: '1' },
    'max-queued': { type: 'string', default: '1024' },
    'request-timeout-ms': { type: 'string', default: '10000' },
    'intra-op-threads': { type: 'string' },
    out: { type: 'string', default: join('loadtest', 'results') },
  },
});
const seconds = Number(args.seconds);
const factor = Number(args.factor);
const probeSeconds = Number(args['probe-seconds']);
const recoverySeconds = Number(args['recovery-seconds']);
const connections = Number(args.connections);
const requestTimeoutMs = Number(args['request-timeout-ms']);
/** A request unanswered this long counts as hung (the server promises 504 at requestTimeoutMs). */
const HUNG_MS = requestTimeoutMs + 5_000;
const texts = generateTexts('short', 2000, 7);
const bodies = texts.map((t) => JSON.stringify({ inputs: t, model: args.model, variant: args.variant }));

const server = await startServerProcess([
  '--models',
  resolve(args.models!),
  '--workers',
  args.workers!,
  '--max-queued',
  args['max-queued']!,
  '--request-timeout-ms',
  String(requestTimeoutMs),
  // The flood stands for many clients but comes from one address: only the global cap applies.
  '--max-connections-per-client',
  '0',
  ...(args['intra-op-threads'] ? ['--intra-op-threads', args['intra-op-threads']] : []),
]);
const { url } = server;
const pid = server.child.pid!;
const client = new LoadClient(url, bodies, HUNG_MS);
const rss: { at: number; mb: number }[] = [];
const tStart = performance.now();
const sampler = setInterval(() => rss.push({ at: Math.round(performance.now() - tStart), mb: rssMB(pid) }), 250);
const phaseAt: Record<string, number> = {};
try {
  // 1. The maximum sustainable rate, closed loop (after a short warm-up).
  await client.closedLoop(connections, 2000, () => {});
  phaseAt.probe = performance.now() - tStart;
  let i = 0;
  const probes: { connections: number; ratePerSec: number; p50Ms: number; p99Ms: number; non2xx: number; errors: number }[] = [];
  for (const c of [connections, 2 * connections, 4 * connections]) {
    const r = await autocannon({
      url: `${url}/classify`,
      connections: c,
      duration: probeSeconds,
      requests: [{ method: 'POST', headers: { 'content-type': 'application/json' }, setupRequest: (req) => ({ ...req, body: bodies[i++ % bodies.length] }) }],
    });
    probes.push({ connections: c, ratePerSec: r['2xx'] / probeSeconds, p50Ms: r.latency.p50, p99Ms: r.latency.p99, non2xx: r.non2xx, errors: r.errors });
    console.log(`closed loop, ${c} connections: ${(r['2xx'] / probeSeconds).toFixed(0)} req/s answered, p99 ${r.latency.p99} ms, non-2xx ${r.non2xx}`);
  }
  // Sustainable: answered without shedding (no non-2xx); the best such rate.
  const best = probes.filter((p) => p.non2xx === 0 && p.errors === 0).sort((a, b) => b.ratePerSec - a.ratePerSec)[0] ?? probes[0]!;
  const maxRate = best.ratePerSec;
  console.log(`max sustainable rate ${maxRate.toFixed(0)} req/s (closed loop, ${best.connections} connections, p99 ${best.p99Ms} ms)`);
  await sleep(1000); // let the last probe's queue drain
  const rssBeforeFlood = rssMB(pid);

  // 2. The flood. Recovery starts the moment the flood stops sending, while its backlog drains.
  const rate = maxRate * factor;
  console.log(`open loop at ${rate.toFixed(0)} req/s (${factor}x) for ${seconds} s ...`);
  const flood: Sample[] = [];
  const recovery: Sample[] = [];
  phaseAt.flood = performance.now() - tStart;
  // When the flood stops, its clients leave (their sockets close, unanswered requests abandoned).
  await client.openLoop(rate, seconds * 1000, (s) => flood.push(s), { abandonAtEnd: true });
  phaseAt.recovery = performance.now() - tStart;
  // Recovery is measured by a client of its own, as a newcomer sees the server.
  const newcomer = new LoadClient(url, bodies, HUNG_MS, best.connections);
  await newcomer.closedLoop(best.connections, recoverySeconds * 1000, (s) => recovery.push(s));
  newcomer.close();
  const floodSummary = summarizeSamples(flood, seconds * 1000);

  // 3. Recovery: 500 ms windows of answered closed-loop requests.
  const windows: number[] = [];
  for (let w = 0; w < recoverySeconds * 2; w++)
    windows.push(recovery.filter((s) => s.status === 200 && s.done >= w * 500 && s.done < (w + 1) * 500).length * 2);
  const firstFull = windows.findIndex((r) => r >= 0.9 * maxRate);
  const recoveryMs = firstFull < 0 ? null : (firstFull + 1) * 500;
  const floodRss = rss.filter((r) => r.at >= phaseAt.flood! && r.at <= phaseAt.recovery!).map((r) => r.mb);
  const result = {
    date: new Date().toISOString(),
    command: `node dist/loadtest/overload.js ${process.argv.slice(2).join(' ')}`.trim(),
    machine: { cpus: availableParallelism(), cpu: cpus()[0]?.model, memGB: Math.round(totalmem() / 2 ** 30), node: process.version },
    config: {
      model: args.model,
      variant: args.variant,
      connections,
      factor,
      seconds,
      probeSeconds,
      recoverySeconds,
      workers: Number(args.workers),
      maxQueued: Number(args['max-queued']),
      requestTimeoutMs,
    },
    probe: { maxRatePerSec: maxRate, runs: probes },
    flood: { ratePerSec: rate, ...floodSummary },
    rssMB: { beforeFlood: rssBeforeFlood, maxDuringFlood: Math.max(...floodRss), afterRecovery: rssMB(pid) },
    recovery: { windowsPerSec: windows, recoveryMs, threshold: 0.9 * maxRate, ...summarizeSamples(recovery, recoverySeconds * 1000) },
  };
  const md = [
    `# Overload (${result.date.slice(0, 10)})`,
    '',
    `\`${result.command}\` on ${result.machine.cpus} CPUs (${result.machine.cpu}), node ${result.machine.node}; model ${args.model}/${args.variant}, ${args.workers} worker(s), maxQueued ${args['max-queued']}, requestTimeoutMs ${requestTimeoutMs}; one short text per request.`,
    '',
    '| phase | figure |',
    '|---|---|',
    `| probe (closed loop, ${probeSeconds} s each) | ${probes.map((p) => `${p.connections} conn: ${n(p.ratePerSec)} req/s, p99 ${n(p.p99Ms)} ms`).join('; ')}; max sustainable ${n(maxRate)} req/s |`,
    `| flood (open loop, ${factor}x = ${n(rate)} req/s, ${seconds} s) | ${floodSummary.requests} requests: ${Object.entries(floodSummary.byStatus)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ')} |`,
    `| 429 share | ${n(floodSummary.share429 * 100, 1)} % |`,
    `| admitted (200) | ${n(floodSummary.admittedPerSec)} req/s over the flood; from the scheduled send p50 ${n(floodSummary.admittedLatencyMs.p50)} ms, p99 ${n(floodSummary.admittedLatencyMs.p99)} ms, max ${n(floodSummary.admittedLatencyMs.max)} ms; from the write to a socket p50 ${n(floodSummary.admittedFromWriteMs.p50)} ms, p99 ${n(floodSummary.admittedFromWriteMs.p99)} ms, max ${n(floodSummary.admittedFromWriteMs.max)} ms |`,
    `| hung (no answer in ${HUNG_MS} ms) | ${floodSummary.hung}, of which ${floodSummary.hungUnsent} never got a socket (queued in the generator) |`,
    `| load generator lateness | p50 ${n(floodSummary.clientLagMs.p50, 1)} ms, p99 ${n(floodSummary.clientLagMs.p99, 1)} ms (large: the client, not the server, limited the rate) |`,
    `| server RSS | ${n(result.rssMB.beforeFlood)} MB before, max ${n(result.rssMB.maxDuringFlood)} MB during, ${n(result.rssMB.afterRecovery)} MB after |`,
    `| recovery to >= 90% of max | ${recoveryMs === null ? `not within ${recoverySeconds} s` : `${recoveryMs} ms`} (per-500-ms rates: ${windows
      .slice(0, 12)
      .map((w) => n(w))
      .join(', ')}) |`,
    '',
  ].join('\n');
  console.log(md);
  mkdirSync(args.out!, { recursive: true });
  const base = join(args.out!, `${result.date.slice(0, 10)}-overload`);
  writeFileSync(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
  writeFileSync(`${base}.md`, md);
  console.log(`wrote ${base}.json and ${base}.md`);
} finally {
  clearInterval(sampler);
  client.close();
  await server.stop();
}
