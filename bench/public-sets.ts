// Accuracy per depth on the public labelled sets in ../shared/data (not shipped with the product):
// for each dataset, `slim build` with full fine-tuning and with head-only training at k = 1 and
// k = 2, then `slim eval` of every variant on the held-out split. Writes
// models/REPORT-public-sets.{md,json} with the exact commands, seeds and times.
//
//   npm run build && node dist/bench/public-sets.js [--data ../shared/data] [--only sst2,trec]
//        [--modes full,head] [--work .tmp/public-sets] [--epochs-small 3]
//
// Each build runs as its own child process (same entry as `npx slim`), so memory and threads
// are released between runs and the times are those a user sees.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { evaluateVariant } from '../src/pipeline/eval-command.js';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string', default: '../shared/data' },
    only: { type: 'string' },
    modes: { type: 'string', default: 'full,head' },
    work: { type: 'string', default: '.tmp/public-sets' },
    seed: { type: 'string', default: '42' },
    out: { type: 'string', default: 'models/REPORT-public-sets' },
  },
});

interface DatasetPlan {
  name: string;
  title: string;
  train: string;
  /** Validation for early stopping: a file, or a split of train. */
  val: { file: string } | { split: number };
  /** Held-out split that the table reports. */
  test: string;
  epochs: number;
}

// SST-2 and TREC carry the targets (reference: up to 5 epochs, patience 2); the others get 3.
const PLANS: DatasetPlan[] = [
  { name: 'sst2', title: 'SST-2 (train -> dev)', train: 'train.jsonl', val: { file: 'dev.jsonl' }, test: 'dev.jsonl', epochs: 5 },
  { name: 'trec', title: 'TREC (train -> test)', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 5 },
  { name: 'subj', title: 'SUBJ', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 3 },
  { name: 'mr', title: 'MR', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 3 },
  { name: 'cr', title: 'CR', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 3 },
  { name: 'mpqa', title: 'MPQA', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 3 },
  { name: 'sms_spam', title: 'SMS spam', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 3 },
  { name: 'tweeteval_emotion', title: 'TweetEval emotion (train -> test)', train: 'train.jsonl', val: { file: 'dev.jsonl' }, test: 'test.jsonl', epochs: 3 },
];

interface Row {
  dataset: string;
  mode: string;
  depth: number;
  variant: string;
  testAccuracy: number;
  testMacroF1: number;
  valAccuracy: number;
  testExamples: number;
  bestEpoch?: number;
  examplesPerSecond?: number;
  stepsPerSecond?: number;
  buildSeconds: number;
  command: string;
}

const cli = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const dataRoot = resolve(args.data);
const only = args.only?.split(',');
const modes = args.modes.split(',');
const rows: Row[] = [];
const started = new Date();
const reportPath = resolve(args.out);
const previous: Row[] = existsSync(`${reportPath}.json`) ? (JSON.parse(readFileSync(`${reportPath}.json`, 'utf8')) as { rows: Row[] }).rows : [];

for (const plan of PLANS) {
  if (only && !only.includes(plan.name)) continue;
  for (const mode of modes) {
    const out = join(args.work, `${plan.name}-${mode}`);
    const dir = join(dataRoot, plan.name);
    const flags = [
      'build', '--base', 'builtin:use-lite', '--data', join(dir, plan.train), '--depths', '1,2', '--train', mode,
      ...('file' in plan.val ? ['--val', join(dir, plan.val.file)] : ['--val-split', String(plan.val.split)]),
      '--epochs', String(plan.epochs), '--seed', args.seed, '--out', out, '--quiet',
    ];
    const command = `npx slim ${flags.join(' ').replaceAll(dataRoot, '../shared/data')}`;
    console.log(`\n== ${plan.title}, ${mode}: ${command}`);
    const t0 = performance.now();
    const entry = `import { main } from ${JSON.stringify(pathToFileURL(cli).href)}; process.exitCode = await main(process.argv.slice(1));`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', entry, ...flags], { stdio: ['ignore', 'inherit', 'inherit'] });
    const buildSeconds = (performance.now() - t0) / 1000;
    if (run.status !== 0) throw new Error(`${command} failed with exit code ${run.status}`);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as {
      results: { variant: string; depth: number; accuracy: number; train?: { examplesPerSecond?: number; stepsPerSecond?: number; bestEpoch?: number } }[];
    };
    for (const r of report.results) {
      const ev = await evaluateVariant(join(out, r.variant), join(dir, plan.test), { threads: 2 });
      const row: Row = {
        dataset: plan.title, mode, depth: r.depth, variant: r.variant,
        testAccuracy: ev.accuracy, testMacroF1: ev.macroF1, valAccuracy: r.accuracy, testExamples: ev.examples,
        ...(r.train?.bestEpoch !== undefined ? { bestEpoch: r.train.bestEpoch } : {}),
        ...(r.train?.examplesPerSecond !== undefined ? { examplesPerSecond: r.train.examplesPerSecond } : {}),
        ...(r.train?.stepsPerSecond !== undefined ? { stepsPerSecond: r.train.stepsPerSecond } : {}),
        buildSeconds, command,
      };
      rows.push(row);
      console.log(`   k${r.depth} ${mode}: held-out accuracy ${ev.accuracy.toFixed(4)} (macro-F1 ${ev.macroF1.toFixed(4)}, ${ev.examples} examples)`);
    }
    writeReport();
  }
}

function writeReport(): void {
  // Rows of datasets not rerun this time are kept from the previous report.
  const rerun = new Set(rows.map((r) => `${r.dataset}|${r.mode}`));
  const all = [...previous.filter((r) => !rerun.has(`${r.dataset}|${r.mode}`)), ...rows];
  const order = (r: Row) => PLANS.findIndex((p) => p.title === r.dataset) * 100 + (r.mode === 'full' ? 0 : 50) + r.depth;
  all.sort((a, b) => order(a) - order(b));
  mkdirSync(resolve(reportPath, '..'), { recursive: true });
  writeFileSync(`${reportPath}.json`, JSON.stringify({ startedAt: started.toISOString(), seed: Number(args.seed), rows: all }, null, 2) + '\n');
  const pct = (x: number) => (x * 100).toFixed(1);
  const lines = [
    '# Accuracy per depth on public sets',
    '',
    `USE-lite (builtin:use-lite) cut to k = 1 and k = 2, fine-tuned with \`slim build\` on this machine (2 cores), seed ${args.seed},`,
    'batch 32, at most 64 tokens, AdamW (lr 1e-4 full / 1e-3 head, weight decay 0.01 off biases and norms, 10% warmup, linear decay),',
    'early stopping on the validation accuracy (patience 2). Held-out accuracy from `slim eval` on the split named in the first column.',
    'Generated by `npm run build && node dist/bench/public-sets.js`; data from `../shared/data` (see its README for the splits).',
    '',
    '| dataset | mode | depth | held-out acc | macro-F1 | val acc | best epoch | train ex/s | steps/s | build s (both depths) |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...all.map((r) => `| ${r.dataset} | ${r.mode} | k${r.depth} | ${pct(r.testAccuracy)} | ${pct(r.testMacroF1)} | ${pct(r.valAccuracy)} | ${r.bestEpoch ?? ''} | ${r.examplesPerSecond?.toFixed(0) ?? ''} | ${r.stepsPerSecond?.toFixed(2) ?? ''} | ${r.buildSeconds.toFixed(0)} |`),
    '',
    '## Commands',
    '',
    ...[...new Set(all.map((r) => r.command))].map((c) => `- \`${c}\``),
    '',
  ];
  writeFileSync(`${reportPath}.md`, lines.join('\n'));
}
