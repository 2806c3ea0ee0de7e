// `slim serve --processes N` against a single process, side by side in one run: the same model
// repository, single short texts per request to one variant, load from `wrk` (a C generator:
// it takes far less of the shared CPU than a Node one) with a Lua script, runs interleaved
// (1, N, 1, N, ...) so a change of the machine's load hits both. Each server runs with its
// defaults for that process count (workers and intra-op threads follow --processes). Prints a
// table and writes loadtest/results/<date>-processes.{json,md}.
//
//   npm run build && node dist/loadtest/bench-processes.js [--models DIR --model M --variant k1]
//        [--processes 2] [--seconds 10] [--connections 32] [--rounds 2]
// Without --models it serves a generated fixture model (test/helpers/fixture-model.ts, hidden 64).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createFixtureRepository } from '../test/helpers/fixture-model.js';
import { commandLine, machine, mdTable, n, today, writeResult } from './lib/report.js';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string' },
    model: { type: 'string', default: 'tiny' },
    variant: { type: 'string', default: 'k1' },
    processes: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '2' },
    out: { type: 'string' },
  },
});
const MAIN = fileURLToPath(new URL('../src/serve/main.js', import.meta.url));
const many = Number(args.processes);
const seconds = Number(args.seconds);
const connections = Number(args.connections);
const rounds = Number(args.rounds);

const fixture = args.models ? null : createFixtureRepository([{ name: 'tiny', variants: ['k1', 'k2'], hidden: 64 }]);
const models = args.models ? resolve(args.models) : fixture!.dir;
const work = mkdtempSync(join(tmpdir(), 'slim-bench-processes-'));
const TEXTS = ['the movie was good', 'free money now click', 'really boring plot', 'team meeting tomorrow', 'superb music and a lovely ending', 'not so great'];
const lua = join(work, 'post.lua');
writeFileSync(
  lua,
  `local bodies = {${TEXTS.map((t) => `'${JSON.stringify({ inputs: t, model: args.model, variant: args.variant })}'`).join(', ')}}
local i = 0
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])
end
`,
);

interface Row {
  processes: number;
  round: number;
  requestsPerS: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

async function startServer(processes: number): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    [MAIN, '--models', models, '--port', '0', '--host', '127.0.0.1', '--processes', String(processes), '--log-level', 'info'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const url = await new Promise<string>((resolveUrl, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const l = JSON.parse(line) as { msg: string; url?: string; role?: string };
      // One process: its own ready line; several: the primary's, once every process is ready.
      if (l.msg.startsWith('ready on') && (processes === 1 || l.role === 'primary')) resolveUrl(l.url!);
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code} before ready`)));
  });
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** wrk's latency line value ("1.23ms", "812.00us", "1.02s") in ms. */
function ms(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v);
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
}

function runWrk(url: string, duration: number): Omit<Row, 'processes' | 'round'> {
  const r = spawnSync('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, '--latency', '-s', lua, `${url}/classify`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  const out = r.stdout;
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? 0);
  return {
    requestsPerS: num(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: ms(/\n\s+50%\s+(\S+)/.exec(out)?.[1] ?? ''),
    p99Ms: ms(/\n\s+99%\s+(\S+)/.exec(out)?.[1] ?? ''),
    non2xx: num(/Non-2xx or 3xx responses:\s+(\d+)/),
    errors: [...out.matchAll(/(?:connect|read|write|timeout) (\d+)/g)].reduce((s, m) => s + Number(m[1]), 0),
  };
}

const rows: Row[] = [];
try {
  for (let round = 1; round <= rounds; round++) {
    for (const processes of [1, many]) {
      const server = await startServer(processes);
      try {
        runWrk(server.url, 2); // warm-up: connections, JIT, onnxruntime arenas
        const row = { processes, round, ...runWrk(server.url, seconds) };
        rows.push(row);
        console.log(JSON.stringify(row));
      } finally {
        await server.stop();
      }
    }
  }
} finally {
  fixture?.cleanup();
  rmSync(work, { recursive: true, force: true });
}

const mean = (p: number): number => {
  const r = rows.filter((x) => x.processes === p);
  return r.reduce((s, x) => s + x.requestsPerS, 0) / r.length;
};
const ratio = mean(many) / mean(1);
const m = machine();
const markdown = [
  `# ${many} server processes vs 1 (${today()})`,
  '',
  `\`${commandLine('dist/loadtest/bench-processes.js')}\`: wrk -t1 -c${connections}, ${seconds} s per run after a 2 s warm-up, single short texts per request to ${args.model}/${args.variant}` +
    `${fixture ? ' (generated fixture model, hidden 64)' : ''}, every server with the defaults of its process count. Machine: ${m.cores} cores (${m.cpu}), load average ${m.loadAverage1m} at the end: ` +
    "shared with other engineers' builds and tests, so absolute figures move; the runs are interleaved.",
  '',
  mdTable(
    ['processes', 'round', 'requests/s', 'p50 ms', 'p99 ms', 'non-2xx', 'socket errors'],
    rows.map((r) => [r.processes, r.round, n(r.requestsPerS), n(r.p50Ms), n(r.p99Ms), r.non2xx, r.errors]),
  ),
  '',
  `${many} processes / 1 process (means of ${rounds} rounds): ${ratio.toFixed(2)}x (${n(mean(many))} vs ${n(mean(1))} requests/s)`,
].join('\n');
console.log(markdown);
const files = writeResult(
  resolve(args.out ?? 'loadtest/results'),
  `${today()}-processes`,
  { command: commandLine('dist/loadtest/bench-processes.js'), machine: m, rows, ratio },
  markdown,
);
console.log(`wrote ${files.md}`);
