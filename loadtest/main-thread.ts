// Main-thread CPU per request, this build against another build of slimserve, side by side in one
// run (issue 17): the same model repository, the same load (32 closed-loop clients, one short
// text per request, the event loop saturated), each server in its own child process
// (lib/server-child.ts of its own build). Reported per build and round: the server main thread's
// CPU ms per request (its utime + stime from /proc/<pid>/task/<pid>/stat over the measured run /
// answered requests: CPU time, not wall time, so it depends far less on the other load of a
// shared machine than throughput or event-loop utilisation x wall time do; both are reported
// too), the whole process' CPU ms per request, event-loop delay p99, requests/s, and one
// profiled run's busy time by category.
//
//   node dist/loadtest/main-thread.js --models DIR [--base /path/to/other/checkout] [--model spam]
//        [--variant k1] [--seconds 8] [--warmup 2] [--rounds 2] [--connections 32] [--intra-op 1] [--rate N] [--floor] [--out loadtest/results]
//
// --base is a checkout whose dist/ is built (e.g. main's, copied to a temporary directory);
// without it only this build is measured. --floor adds two servers under the same load with no
// model and no serving code (lib/floor-server.ts): a bare node:http server and a one-route
// fastify app, both answering a real /classify answer captured from this build, with its
// headers: what Node's HTTP stack and fastify alone cost per request on this CPU, once as fast as
// they answer and once capped at the requests/s this build reached. --rate N caps every server's
// load at N requests/s instead: per-request CPU falls as the rate rises (more requests share a
// loop turn), so builds that reach different rates on a shared machine compare best at one rate.
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { closedLoop } from './lib/closed-loop.js';
import { describeProfile, type ProfileSummary } from './lib/cpu-profile.js';
import { commandLine, machine, mdTable, n, today, writeResult } from './lib/report.js';
import { ServerProcess, type ChildSpec } from './lib/server-process.js';
import { median } from './lib/stats.js';
import { classifyBodies, loadTextSets } from './lib/text-sources.js';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string' },
    base: { type: 'string' },
    model: { type: 'string', default: 'spam' },
    variant: { type: 'string', default: 'k1' },
    seconds: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
    'intra-op': { type: 'string', default: '1' },
    rate: { type: 'string' },
    floor: { type: 'boolean', default: false },
    out: { type: 'string' },
    name: { type: 'string', default: 'main-thread' },
  },
});
if (!args.models) throw new Error('--models DIR is required (a model repository)');
const models = resolve(args.models);
const seconds = Number(args.seconds);
const warmupSeconds = Number(args.warmup);
const rounds = Number(args.rounds);
const connections = Number(args.connections);
/** --rate N: every server's load capped at N requests/s, so that builds compare at the same rate. */
const rateCap = args.rate !== undefined ? Number(args.rate) : undefined;
const log = (msg: string): void => console.log(`[main-thread ${new Date().toISOString().slice(11, 19)}] ${msg}`);

const TICK_MS = 10; // USER_HZ = 100 on Linux

/** utime + stime of one thread, ms (fields 14 and 15 of /proc/<pid>/task/<tid>/stat). */
function threadCpuMs(pid: number, tid: number): number {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 on
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/** The pid of this process' only child: the server under test (ServerProcess does not expose it). */
function serverPid(): number {
  const mine = readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid;
      } catch {
        return false;
      }
    });
  if (mine.length !== 1) throw new Error(`expected one child process (the server), found ${mine.length}`);
  return Number(mine[0]);
}

const spec: ChildSpec = {
  kind: 'slim',
  models,
  workers: 1,
  intraOp: Number(args['intra-op']),
  interOp: 1,
  maxBatchSize: 32,
  maxBatchTokens: 8192,
  maxQueueDelayMs: 2,
  maxQueued: 1024,
  metrics: true,
};
const short = (await loadTextSets(undefined))[0]!;
const bodies = classifyBodies(short.texts, { model: args.model, variant: args.variant });

/** atThisBuildsRate: the load capped at the requests/s this build reached in the same round. */
const builds: { name: string; start: () => Promise<ServerProcess>; atThisBuildsRate?: boolean }[] = [];
if (args.base) {
  const other = (await import(pathToFileURL(join(resolve(args.base), 'dist/loadtest/lib/server-process.js')).href)) as { ServerProcess: typeof ServerProcess };
  builds.push({ name: `base (${args.base})`, start: () => other.ServerProcess.start(spec) });
}
builds.push({ name: 'this build', start: () => ServerProcess.start(spec) });
type FloorAnswer = { answer: string; headers: Record<string, string> };
let floorAnswer: FloorAnswer | undefined;
if (args.floor) {
  // One real answer of this build, body and x-* headers, for the floor servers to send.
  const server = await ServerProcess.start(spec);
  let captured: FloorAnswer;
  try {
    const res = await fetch(`${server.url}/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bodies[0] });
    if (res.status !== 200) throw new Error(`capturing an answer: HTTP ${res.status}`);
    const headers = Object.fromEntries([...res.headers].filter(([k]) => k.startsWith('x-')));
    captured = { answer: await res.text(), headers };
  } finally {
    await server.close();
  }
  floorAnswer = captured;
  log(`floor answer: ${captured.answer.length} bytes, headers ${Object.keys(captured.headers).join(', ')}`);
  builds.push({ name: 'floor: node:http', start: () => ServerProcess.start({ kind: 'floor', server: 'http', ...captured }) });
  builds.push({ name: 'floor: fastify', start: () => ServerProcess.start({ kind: 'floor', server: 'fastify', ...captured }) });
  // At a few thousand requests/s the floors read several requests per loop turn; capped at this
  // build's rate they pay each turn per request, as this build does. (With --rate every row is capped.)
}
if (args.floor && rateCap === undefined) {
  const captured = floorAnswer!;
  builds.push({
    name: "floor: node:http, at this build's rate",
    start: () => ServerProcess.start({ kind: 'floor', server: 'http', ...captured }),
    atThisBuildsRate: true,
  });
  builds.push({
    name: "floor: fastify, at this build's rate",
    start: () => ServerProcess.start({ kind: 'floor', server: 'fastify', ...captured }),
    atThisBuildsRate: true,
  });
}

interface Row {
  build: string;
  round: number;
  requestsPerSec: number;
  ok: number;
  mainThreadCpuMsPerRequest: number;
  /** The main thread's CPU ms per second with no load (after the warm-up): timers, the harness's event-loop-delay monitor. */
  idleMainThreadCpuMsPerSecond: number;
  /** mainThreadCpuMsPerRequest less the idle rate over the measured seconds: what the requests themselves cost. */
  netMainThreadCpuMsPerRequest: number;
  /** Event-loop utilisation x wall time / requests: counts time the thread waited for a core. */
  mainThreadBusyMsPerRequest: number;
  processCpuMsPerRequest: number;
  eventLoopUtilization: number;
  eventLoopDelayP99Ms: number;
  meanBatchSize: number;
  loadAverage1m: number;
}
const rows: Row[] = [];
const profiles: { build: string; summary: ProfileSummary; requests: number }[] = [];
const IDLE_SECONDS = 3;
const loadBefore = loadavg()[0]!;

for (let round = 1; round <= rounds; round++) {
  for (const build of builds) {
    log(`round ${round}: ${build.name}`);
    const server = await build.start();
    try {
      const pid = serverPid();
      let cpuBefore = 0;
      let idleMsPerSecond = 0;
      const rate = rateCap ?? (build.atThisBuildsRate ? rows.filter((r) => r.build === 'this build' && r.round === round).at(-1)?.requestsPerSec : undefined);
      const run = await closedLoop({
        ...(rate !== undefined ? { overallRate: Math.round(rate) } : {}),
        url: server.url,
        path: '/classify',
        bodies,
        connections,
        seconds,
        warmupSeconds,
        beforeMeasure: async () => {
          // The idle cost first: every row pays it per second, whatever its rate (with the
          // harness's 1 ms event-loop-delay monitor, about 1000 wake-ups a second).
          const idleStart = threadCpuMs(pid, pid);
          await sleep(IDLE_SECONDS * 1000);
          idleMsPerSecond = (threadCpuMs(pid, pid) - idleStart) / IDLE_SECONDS;
          await server.reset();
          cpuBefore = threadCpuMs(pid, pid);
        },
      });
      const mainCpuMs = threadCpuMs(pid, pid) - cpuBefore;
      const s = await server.stats();
      rows.push({
        build: build.name,
        round,
        requestsPerSec: run.requestsPerSec,
        ok: run.ok,
        mainThreadCpuMsPerRequest: mainCpuMs / run.ok,
        idleMainThreadCpuMsPerSecond: idleMsPerSecond,
        netMainThreadCpuMsPerRequest: (mainCpuMs - idleMsPerSecond * run.seconds) / run.ok,
        mainThreadBusyMsPerRequest: (s.eventLoopUtilization * s.wallMs) / run.ok,
        processCpuMsPerRequest: s.cpuMs / run.ok,
        eventLoopUtilization: s.eventLoopUtilization,
        eventLoopDelayP99Ms: s.eventLoopDelayMs.p99,
        meanBatchSize: s.batches > 0 ? s.batchInputs / s.batches : 0,
        loadAverage1m: loadavg()[0]!,
      });
      log(
        `  ${n(rows.at(-1)!.mainThreadCpuMsPerRequest)} main-thread CPU ms/request (${n(rows.at(-1)!.netMainThreadCpuMsPerRequest)} net of idle), ${n(run.requestsPerSec)} requests/s`,
      );
      if (round === rounds) {
        // One more short run under the sampling profiler (it slows the thread; not in the figures above).
        await server.profileStart();
        const rate = rateCap ?? (build.atThisBuildsRate ? rows.at(-1)!.requestsPerSec : undefined);
        const profiled = await closedLoop({
          url: server.url,
          path: '/classify',
          bodies,
          connections,
          seconds: Math.min(seconds, 5),
          warmupSeconds: 0,
          ...(rate !== undefined ? { overallRate: Math.round(rate) } : {}),
        });
        profiles.push({ build: build.name, summary: await server.profileStop(), requests: profiled.ok });
      }
    } finally {
      await server.close();
    }
  }
}

const summary = builds.map((b) => {
  const mine = rows.filter((r) => r.build === b.name);
  return {
    build: b.name,
    mainThreadCpuMsPerRequest: median(mine.map((r) => r.mainThreadCpuMsPerRequest)),
    netMainThreadCpuMsPerRequest: median(mine.map((r) => r.netMainThreadCpuMsPerRequest)),
    idleMainThreadCpuMsPerSecond: median(mine.map((r) => r.idleMainThreadCpuMsPerSecond)),
    mainThreadBusyMsPerRequest: median(mine.map((r) => r.mainThreadBusyMsPerRequest)),
    processCpuMsPerRequest: median(mine.map((r) => r.processCpuMsPerRequest)),
    eventLoopDelayP99Ms: median(mine.map((r) => r.eventLoopDelayP99Ms)),
    requestsPerSec: median(mine.map((r) => r.requestsPerSec)),
  };
});
const loadAfter = loadavg()[0]!;
const md = [
  `# Main-thread CPU per request (${today()})`,
  '',
  `\`${commandLine('dist/loadtest/main-thread.js')}\``,
  '',
  `${args.model}/${args.variant}, one short text per request (${short.description}), ${connections} closed-loop clients (autocannon, in the parent process),`,
  `${seconds} s measured after ${warmupSeconds} s warm-up, one worker, ${args['intra-op']} intra-op thread(s), maxBatchSize 32, maxQueueDelayMs 2; builds alternate, ${rounds} rounds.`,
  ...(rateCap !== undefined ? [`Every server's load capped at ${rateCap} requests/s (autocannon overallRate over the ${connections} clients).`] : []),
  ...(args.floor
    ? [
        'Floor rows: no model, no workers, no slimserve code: a bare node:http server (reads the body, JSON.parse, writes the answer) and a one-route fastify app',
        '(body schema, response schema), both answering a real /classify answer of this build with its x-* headers (loadtest/lib/floor-server.ts);',
        '"at this build\'s rate": the same clients capped (autocannon overallRate) at the requests/s this build reached in the same round.',
      ]
    : []),
  `Net of idle: the main thread's CPU over ${IDLE_SECONDS} s with no load (after the warm-up; timers and the harness's 1 ms event-loop-delay monitor) is charged per second of the run and taken off.`,
  `Machine: ${JSON.stringify(machine())}; load average (1 min) ${loadBefore.toFixed(1)} at the start, ${loadAfter.toFixed(1)} at the end`,
  '(a shared machine: other engineers load it; compare the builds within this run only).',
  '',
  '## Median over rounds',
  '',
  mdTable(
    [
      'build',
      'main-thread CPU ms / request',
      'net of idle',
      'idle main-thread CPU ms / s',
      'main-thread busy (ELU x wall) ms / request',
      'process CPU ms / request',
      'event-loop delay p99 ms',
      'requests/s',
    ],
    summary.map((s) => [
      s.build,
      n(s.mainThreadCpuMsPerRequest),
      n(s.netMainThreadCpuMsPerRequest),
      n(s.idleMainThreadCpuMsPerSecond),
      n(s.mainThreadBusyMsPerRequest),
      n(s.processCpuMsPerRequest),
      n(s.eventLoopDelayP99Ms),
      n(s.requestsPerSec),
    ]),
  ),
  '',
  '## Every run',
  '',
  mdTable(
    [
      'build',
      'round',
      'main-thread CPU ms / request',
      'net of idle',
      'idle ms / s',
      'busy ms / request',
      'process CPU ms / request',
      'event-loop utilisation',
      'loop delay p99 ms',
      'requests/s',
      'mean batch',
      'load avg 1m',
    ],
    rows.map((r) => [
      r.build,
      r.round,
      n(r.mainThreadCpuMsPerRequest),
      n(r.netMainThreadCpuMsPerRequest),
      n(r.idleMainThreadCpuMsPerSecond),
      n(r.mainThreadBusyMsPerRequest),
      n(r.processCpuMsPerRequest),
      n(r.eventLoopUtilization),
      n(r.eventLoopDelayP99Ms),
      n(r.requestsPerSec),
      n(r.meanBatchSize),
      r.loadAverage1m.toFixed(1),
    ]),
  ),
  '',
  '## Main-thread profile (one extra run per build, under the sampling profiler)',
  '',
  ...profiles.flatMap((p) => [
    `### ${p.build}`,
    '',
    `${describeProfile(p.summary)}; ${p.requests} requests answered, ${n(p.summary.busyMs / p.requests)} ms busy per request`,
    '',
  ]),
].join('\n');
const outDir = args.out ?? join('.tmp', 'loadtest-results');
const files = writeResult(
  outDir,
  `${today()}-${args.name}`,
  { command: commandLine('dist/loadtest/main-thread.js'), machine: machine(), loadBefore, loadAfter, spec, rows, summary, profiles },
  md,
);
console.log(md);
log(`written ${files.md}, ${files.json}`);
