// Rolling restart under full load: does a restart lose anything that reached the socket?
//
// What a rolling restart behind a load balancer looks like, on one machine: this script is the
// balancer -- a node cluster primary that owns the listening socket and hands each accepted
// connection to one of its server processes (round robin), the way a proxy spreads connections
// over replicas. Two `slim serve` processes (dist/src/serve/main.js, unchanged) run behind it.
// One restart: start a new process, wait until it says ready, then SIGTERM the oldest. The old
// process drains (src/serve/drain.ts): readiness off, the listener leaves the balancer (which
// gives a connection it had already handed over back to another process if the old one no longer
// takes it), queued and kept-alive connections are answered -- served, or 503 SHUTTING_DOWN,
// which is safe to retry because no work was done -- and it exits. Since the listening socket
// lives on in the balancer, no connection is refused or reset by a restart.
//
// Load: --connections closed-loop clients on kept-alive connections (node:http Agent), each
// sending its next /classify as soon as the previous answer came, for the whole run. A 503
// SHUTTING_DOWN is retried once (and counted); anything else is counted as it came: statuses,
// resets (ECONNRESET, EPIPE, "socket hang up"), refusals, timeouts. Target: 0 resets, 0
// refusals, 0 failed requests.
//
//   npm run build && node dist/loadtest/rolling-restart.js [--restarts 3] [--connections 32]
//        [--settle-s 3] [--models DIR (default: the test fixture model)] [--model tiny] [--out loadtest/results]
import cluster, { type Worker } from 'node:cluster';
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createFixtureRepository } from '../test/helpers/fixture-model.js';
import { freePort } from './lib/free-port.js';
import { commandLine, machine, mdTable, n, writeResult } from './lib/report.js';

const MAIN = fileURLToPath(new URL('../src/serve/main.js', import.meta.url));

const { values: args } = parseArgs({
  options: {
    restarts: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    'settle-s': { type: 'string', default: '3' },
    models: { type: 'string' },
    model: { type: 'string', default: 'tiny' },
    out: { type: 'string', default: 'loadtest/results' },
  },
});
const restarts = Number(args.restarts);
const connections = Number(args.connections);
const settleMs = Number(args['settle-s']) * 1000;

const fixture = args.models ? null : createFixtureRepository([{ name: 'tiny', variants: ['k1'], hidden: 64 }]);
const modelsDir = args.models ? resolve(args.models) : fixture!.dir;
const port = await freePort();

cluster.setupPrimary({
  exec: MAIN,
  args: ['--models', modelsDir, '--port', String(port), '--host', '127.0.0.1', '--workers', '1', '--log-level', 'info', '--shutdown-timeout-ms', '15000'],
  silent: true,
});

interface Generation {
  worker: Worker;
  startedAt: number;
  readyAt?: number;
  signalledAt?: number;
  exitedAt?: number;
  exitCode?: number | null;
}

/** A new server process; resolves once it logged "ready on". */
function startGeneration(): Promise<Generation> {
  const worker = cluster.fork();
  const gen: Generation = { worker, startedAt: performance.now() };
  return new Promise((resolveReady, reject) => {
    worker.process.stderr?.pipe(process.stderr);
    createInterface({ input: worker.process.stdout! }).on('line', (line) => {
      let msg = '';
      try {
        msg = (JSON.parse(line) as { msg?: string }).msg ?? '';
      } catch {
        return;
      }
      if (msg.startsWith('ready on')) {
        gen.readyAt = performance.now();
        resolveReady(gen);
      }
    });
    worker.once('exit', (code) => {
      gen.exitedAt = performance.now();
      gen.exitCode = code;
      if (gen.readyAt === undefined) reject(new Error(`a server process exited with ${code} before ready`));
    });
  });
}

async function stopGeneration(gen: Generation): Promise<void> {
  const exited = new Promise((r) => gen.worker.once('exit', r));
  gen.signalledAt = performance.now();
  gen.worker.process.kill('SIGTERM');
  await exited;
}

// ---- load ----
const agent = new Agent({ keepAlive: true, maxSockets: connections });
const body = Buffer.from(JSON.stringify({ model: args.model, inputs: 'the film was really good but the ending was weak' }));
const counts = {
  requests: 0,
  ok: 0,
  shuttingDown503: 0,
  retried: 0,
  resets: 0,
  refused: 0,
  timeouts: 0,
  otherErrors: 0,
  byStatus: {} as Record<string, number>,
};
const failures: { at: number; what: string }[] = [];
let stopped = false;
const t0 = performance.now();

function send(): Promise<{ status: number; code?: string } | { error: string }> {
  return new Promise((done) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/classify',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let code: string | undefined;
          if (res.statusCode !== 200) {
            try {
              code = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code?: string } }).error?.code;
            } catch {
              code = 'unparsable';
            }
          }
          done({ status: res.statusCode ?? 0, ...(code !== undefined ? { code } : {}) });
        });
        res.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
    req.end(body);
  });
}

async function clientLoop(): Promise<void> {
  while (!stopped) {
    counts.requests++;
    let r = await send();
    if ('status' in r && r.status === 503 && r.code === 'SHUTTING_DOWN') {
      counts.shuttingDown503++;
      counts.retried++;
      r = await send();
    }
    if ('error' in r) {
      const at = Math.round(performance.now() - t0);
      if (r.error === 'ECONNRESET' || r.error === 'EPIPE') counts.resets++;
      else if (r.error === 'ECONNREFUSED') counts.refused++;
      else if (r.error === 'TIMEOUT') counts.timeouts++;
      else counts.otherErrors++;
      failures.push({ at, what: r.error });
      continue;
    }
    const key = r.code ? `${r.status} ${r.code}` : String(r.status);
    counts.byStatus[key] = (counts.byStatus[key] ?? 0) + 1;
    if (r.status === 200) counts.ok++;
    else failures.push({ at: Math.round(performance.now() - t0), what: key });
  }
}

// ---- run ----
const generations: Generation[] = [];
generations.push(await startGeneration(), await startGeneration());
const loops = Array.from({ length: connections }, () => clientLoop());
const loadStartedAt = performance.now();
await sleep(settleMs);
const restartLog: { restart: number; newReadyMs: number; drainMs: number; exitCode: number | null | undefined }[] = [];
for (let i = 1; i <= restarts; i++) {
  const fresh = await startGeneration();
  generations.push(fresh);
  const old = generations.find((g) => g.signalledAt === undefined && g !== fresh)!;
  await stopGeneration(old);
  restartLog.push({
    restart: i,
    newReadyMs: Math.round(fresh.readyAt! - fresh.startedAt),
    drainMs: Math.round(old.exitedAt! - old.signalledAt!),
    exitCode: old.exitCode,
  });
  console.log(
    `restart ${i}: new process ready in ${restartLog.at(-1)!.newReadyMs} ms; old one drained and exited ${old.exitCode} in ${restartLog.at(-1)!.drainMs} ms`,
  );
  await sleep(settleMs);
}
stopped = true;
await Promise.all(loops);
const seconds = (performance.now() - loadStartedAt) / 1000;
agent.destroy();
for (const g of generations) if (g.exitedAt === undefined) await stopGeneration(g);
fixture?.cleanup();

// ---- report ----
const date = new Date().toISOString().slice(0, 10);
const pass = counts.resets === 0 && counts.refused === 0 && counts.requests === counts.ok;
const result = {
  date,
  command: commandLine('dist/loadtest/rolling-restart.js'),
  machine: machine(),
  restarts,
  connections,
  seconds,
  counts,
  pass,
  restartLog,
  failures: failures.slice(0, 50),
};
const md = [
  `# Rolling restart under load (${date})`,
  '',
  `\`${result.command}\`: ${connections} closed-loop clients on kept-alive connections send POST /classify for ${n(seconds)} s to one port; behind it a node cluster primary (the balancer) hands connections round robin to two \`slim serve\` processes, and ${restarts} times a new process is started and, once ready, the oldest gets SIGTERM. A 503 \`SHUTTING_DOWN\` (sent before any work) is retried once. The machine is shared (2 cores, other engineers' jobs running; load average ${n(result.machine.loadAverage1m as number)} at the end), so the rate is not a throughput figure.`,
  '',
  mdTable(
    ['requests', '200', '503 SHUTTING_DOWN (retried)', 'resets', 'refused', 'timeouts', 'other errors', 'failed in the end', 'result'],
    [
      [
        counts.requests,
        counts.ok,
        counts.shuttingDown503,
        counts.resets,
        counts.refused,
        counts.timeouts,
        counts.otherErrors,
        counts.requests - counts.ok,
        pass ? 'PASS' : 'FAIL',
      ],
    ],
  ),
  '',
  mdTable(
    ['restart', 'new process ready (ms)', 'old process drain to exit (ms)', 'exit code'],
    restartLog.map((r) => [r.restart, r.newReadyMs, r.drainMs, String(r.exitCode)]),
  ),
  '',
  failures.length > 0
    ? `First failures (ms from start): ${failures
        .slice(0, 10)
        .map((f) => `${f.at} ${f.what}`)
        .join('; ')}`
    : 'No failures.',
  '',
].join('\n');
const files = writeResult(args.out!, `${date}-rolling-restart`, result, md);
console.log(md);
console.log(`wrote ${files.md}`);
process.exit(pass ? 0 : 1);
