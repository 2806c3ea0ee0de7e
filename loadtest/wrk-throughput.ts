// Server throughput against session.run's ceiling, with wrk as the load (issue 17, "Measured"):
// wrk is a C generator, so on a small machine it takes far less of the shared CPU than a Node one.
//
//   1. the ceiling: session.run in a tight loop, batch 32 of the same short texts, one session with
//      intra-op threads on all cores (on 2 cores the server's default: 1 worker x 2 threads);
//   2. `slim serve` as a child process, as a user starts it: default options, plus whatever follows
//      `--` on this command line (e.g. `-- --processes 2`);
//   3. wrk (loadtest/wrk/classify.lua) against POST /classify for each variant, single-text and
//      32-text requests, a short warm-up then a fixed duration;
//   4. server inputs/s / ceiling, printed and written to loadtest/results/<date>-wrk-throughput.{md,json}.
// --mixed adds single-text requests that name the variants in turn (A/B or cascade traffic: a
// worker's batches alternate between sessions; its ceiling is the harmonic mean of theirs).
// --compare-spinning runs steps 2-3 three times, `--intra-op-spinning run`, `always`, `off`, side by side.
//
//   npm run build && node dist/loadtest/wrk-throughput.js [--models models] [--model spam]
//        [--variants k1,k2] [--duration 15] [--connections 32] [--wrk-threads 1] [--mixed]
//        [--compare-spinning] [--out DIR] [--name wrk-throughput] [-- <slim serve flags>]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { measureCeiling, type CeilingResult } from './lib/ceiling.js';
import { freePort } from './lib/free-port.js';
import { commandLine, machine, mdTable, n, today, writeResult } from './lib/report.js';
import { generateTexts } from './texts.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LUA = join(ROOT, 'loadtest', 'wrk', 'classify.lua');
const SLIM = join(ROOT, 'bin', 'slim.js');

const dash = process.argv.indexOf('--');
const serveArgs = dash < 0 ? [] : process.argv.slice(dash + 1);
const { values: args } = parseArgs({
  args: dash < 0 ? process.argv.slice(2) : process.argv.slice(2, dash),
  options: {
    models: { type: 'string', default: 'models' },
    model: { type: 'string', default: 'spam' },
    variants: { type: 'string', default: 'k1,k2' },
    duration: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    'wrk-threads': { type: 'string', default: '1' },
    'ceiling-seconds': { type: 'string', default: '3' },
    mixed: { type: 'boolean', default: false },
    name: { type: 'string', default: 'wrk-throughput' },
    'compare-spinning': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const models = resolve(args.models!);
const variants = args
  .variants!.split(',')
  .map((v) => v.trim())
  .filter(Boolean);
const duration = Number(args.duration);
const cores = availableParallelism();
const texts = generateTexts('short', 512, 7);
const REQUEST_SIZES = [1, 32] as const;

for (const variant of variants) {
  if (!existsSync(join(models, args.model!, variant, 'manifest.json'))) {
    process.stderr.write(
      `wrk-throughput: ${join(models, args.model!, variant)} has no manifest.json (npm start builds the default model into models/; or pass --models, --model, --variants)\n`,
    );
    process.exit(1);
  }
}
if (spawnSync('wrk', ['--version']).error) {
  process.stderr.write('wrk-throughput: wrk is not installed (apt-get install -y wrk)\n');
  process.exit(1);
}

interface WrkResult {
  requests: number;
  durationUs: number;
  bytes: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyUs: { mean: number; stdev: number; max: number; p50: number; p90: number; p99: number; p999: number };
}

/** Run wrk with the Lua script; its `done` prints WRK_JSON {...}. */
function runWrk(url: string, bodiesFile: string, seconds: number): Promise<WrkResult> {
  const argv = ['-t', args['wrk-threads']!, '-c', args.connections!, '-d', `${seconds}s`, '--timeout', '30s', '-s', LUA, url, '--', bodiesFile];
  return new Promise((resolveRun, reject) => {
    const child = spawn('wrk', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || !line) reject(new Error(`wrk exited ${code} without a result:\n${out}`));
      else resolveRun(JSON.parse(line.slice('WRK_JSON '.length)) as WrkResult);
    });
  });
}

/** `slim serve` as a user starts it, on a free port; resolves once /health/ready answers 200. */
async function startServe(extraArgs: string[]): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const port = await freePort();
  const argv = [SLIM, 'serve', '--models', models, '--port', String(port), '--host', '127.0.0.1', ...serveArgs, ...extraArgs];
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 300_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`slim serve ${serveArgs.join(' ')} exited with ${child.exitCode} before it was ready`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('slim serve was not ready in 300 s');
    }
    const ready = await fetch(`${url}/health/ready`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    url,
    child,
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

interface Scenario {
  /** The flags this run added to the server's (--compare-spinning), or ''. */
  serverFlags: string;
  variant: string;
  inputsPerRequest: number;
  wrk: WrkResult;
  okRequestsPerSec: number;
  inputsPerSec: number;
  ceilingInputsPerSec: number;
  ratio: number;
  loadAverage1m: number;
}

const work = mkdtempSync(join(tmpdir(), 'wrk-throughput-'));
const ceilings: Record<string, CeilingResult> = {};
const scenarios: Scenario[] = [];
try {
  // 1. The ceilings first, with no server running: all cores to session.run.
  for (const variant of variants) {
    const variantDir = join(models, args.model!, variant);
    const maxLength = (JSON.parse(readFileSync(join(variantDir, 'manifest.json'), 'utf8')) as { maxLength: number }).maxLength;
    ceilings[variant] = await measureCeiling({
      variantDir,
      maxLength,
      texts,
      batchSizes: [32],
      secondsPerSize: Number(args['ceiling-seconds']),
      threads: { intraOp: cores, interOp: 1 },
    });
    process.stderr.write(
      `wrk-throughput: ceiling ${variant} (session.run, batch 32, ${cores} threads): ${n(ceilings[variant].best.inferenceInputsPerSec)} inputs/s\n`,
    );
  }
  // 2-3. One server for every scenario, as a user runs it (three with --compare-spinning).
  const serverRuns = args['compare-spinning']
    ? [
        ['--intra-op-spinning', 'run'],
        ['--intra-op-spinning', 'always'],
        ['--intra-op-spinning', 'off'],
      ]
    : [[]];
  const cases: { variant: string; size: number; bodyVariant: (j: number) => string; ceiling: number }[] = [];
  for (const variant of variants) {
    for (const size of REQUEST_SIZES) cases.push({ variant, size, bodyVariant: () => variant, ceiling: ceilings[variant]!.best.inferenceInputsPerSec });
  }
  if (args.mixed && variants.length > 1) {
    const harmonic = variants.length / variants.reduce((a, v) => a + 1 / ceilings[v]!.best.inferenceInputsPerSec, 0);
    cases.push({ variant: variants.join('+'), size: 1, bodyVariant: (j) => variants[j % variants.length]!, ceiling: harmonic });
  }
  for (const extra of serverRuns) {
    const server = await startServe(extra);
    try {
      for (const { variant, size, bodyVariant, ceiling } of cases) {
        const bodies = Array.from({ length: Math.max(64, Math.ceil(texts.length / size)) }, (_, j) => {
          const slice = Array.from({ length: size }, (_, i) => texts[(j * size + i) % texts.length]!);
          return JSON.stringify({ inputs: size === 1 ? slice[0] : slice, model: args.model, variant: bodyVariant(j) });
        });
        const file = join(work, `${variant}-${size}.jsonl`);
        writeFileSync(file, bodies.join('\n') + '\n');
        await runWrk(server.url, file, Number(args.warmup));
        const r = await runWrk(server.url, file, duration);
        const seconds = r.durationUs / 1e6;
        const ok = r.requests - r.errors.status;
        const s: Scenario = {
          serverFlags: extra.join(' '),
          variant,
          inputsPerRequest: size,
          wrk: r,
          okRequestsPerSec: ok / seconds,
          inputsPerSec: (ok * size) / seconds,
          ceilingInputsPerSec: ceiling,
          ratio: (ok * size) / seconds / ceiling,
          loadAverage1m: Number(loadavg()[0]!.toFixed(2)),
        };
        scenarios.push(s);
        process.stderr.write(
          `wrk-throughput: ${s.serverFlags ? `[${s.serverFlags}] ` : ''}${variant} ${size}-text requests: ${n(s.inputsPerSec)} inputs/s, server/ceiling ${s.ratio.toFixed(2)}, p99 ${n(r.latencyUs.p99 / 1000)} ms, load ${s.loadAverage1m}\n`,
        );
      }
    } finally {
      await server.stop();
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const date = today();
const command = commandLine('dist/loadtest/wrk-throughput.js');
const table = mdTable(
  [
    ...(args['compare-spinning'] ? ['server flags'] : []),
    'variant',
    'texts/request',
    'requests/s',
    'inputs/s',
    'session.run b32 inputs/s',
    'server / ceiling',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'errors (status/timeout/other)',
    'load avg 1m',
  ],
  scenarios.map((s) => [
    ...(args['compare-spinning'] ? [s.serverFlags] : []),
    s.variant,
    s.inputsPerRequest,
    n(s.okRequestsPerSec),
    n(s.inputsPerSec),
    n(s.ceilingInputsPerSec),
    s.ratio.toFixed(2),
    n(s.wrk.latencyUs.p50 / 1000),
    n(s.wrk.latencyUs.p90 / 1000),
    n(s.wrk.latencyUs.p99 / 1000),
    `${s.wrk.errors.status}/${s.wrk.errors.timeout}/${s.wrk.errors.connect + s.wrk.errors.read + s.wrk.errors.write}`,
    s.loadAverage1m,
  ]),
);
const md = [
  `# Server throughput / session.run ceiling, wrk load (${date})`,
  '',
  `\`${command}\`: \`slim serve\` with default options${serveArgs.length ? ` plus \`${serveArgs.join(' ')}\`` : ''}; wrk ${args['wrk-threads']} thread(s), ${args.connections} connections, ` +
    `${args.warmup} s warm-up then ${duration} s, POST /classify rotating ${texts.length} generated short texts (~10 words); the ceiling is session.run at batch 32 of the same texts, ` +
    `one session with ${cores} intra-op threads, measured before the server starts. ${cores} cores shared with the generator and with other work (load average in the table).`,
  '',
  table,
].join('\n');
console.log(md);
const files = writeResult(
  args.out ?? join('loadtest', 'results'),
  `${date}-${args.name}`,
  { date, command, serveArgs, machine: machine(), ceilings, scenarios },
  md,
);
process.stderr.write(`wrk-throughput: wrote ${files.md} and ${files.json}\n`);
