// Accuracy per depth on the public labelled sets in ../shared/data (not shipped with the product):
// for each dataset, `slim build` with full fine-tuning and with head-only training at k = 1 and
// k = 2, then `slim eval` of every variant on the held-out split. Optionally a k = 1 student
// distilled from the full build's k = 2 (--distill), a TF-IDF + logistic-regression baseline on
// the same splits (--baseline) and several seeds (--seeds). Writes
// models/REPORT-public-sets.{md,json} with the exact commands, seeds and times.
//
//   npm run build && node dist/bench/public-sets.js [--data ../shared/data] [--only sst2,trec]
//        [--modes full,head|none] [--work .tmp/public-sets] [--seeds 42,43,44] [--distill] [--baseline]
//        [--reuse] [--threads N] [--out models/REPORT-public-sets]
//
// Each build runs as its own child process (same entry as `npx slim`), so memory and threads
// are released between runs and the times are those a user sees. --reuse skips a build whose
// output directory already holds the report of the same command (bench-run.json), so long
// runs can be made in pieces (and in parallel, each with its own --out) and tabled together.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { evaluateVariant } from '../src/pipeline/eval-command.js';
import { loadDataset, splitDataset } from '../src/pipeline/datasets/index.js';
import { tfidfLogisticBaseline } from './tfidf-logreg.js';
import { augmentSentences } from './transfer-text.js';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string', default: '../shared/data' },
    only: { type: 'string' },
    modes: { type: 'string', default: 'full,head' },
    work: { type: 'string', default: '.tmp/public-sets' },
    seeds: { type: 'string', default: '42' },
    distill: { type: 'boolean', default: false },
    baseline: { type: 'boolean', default: false },
    reuse: { type: 'boolean', default: false },
    /** --threads of every build (1 fares better than 2 on a machine loaded by other jobs). */
    threads: { type: 'string' },
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
  /** --epochs; none: the build defaults (SST-2 and TREC carry the targets the defaults must reach). */
  epochs?: number;
  /** Distillation: copies of the training sentences, augmented, added as unlabelled transfer text. */
  transferCopies: number;
}

const PLANS: DatasetPlan[] = [
  { name: 'sst2', title: 'SST-2 (train -> dev)', train: 'train.jsonl', val: { file: 'dev.jsonl' }, test: 'dev.jsonl', transferCopies: 1 },
  { name: 'trec', title: 'TREC (train -> test)', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', transferCopies: 1 },
  { name: 'subj', title: 'SUBJ', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 3, transferCopies: 1 },
  { name: 'mr', title: 'MR', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 3, transferCopies: 1 },
  { name: 'cr', title: 'CR', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 3, transferCopies: 1 },
  { name: 'mpqa', title: 'MPQA', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 3, transferCopies: 1 },
  { name: 'sms_spam', title: 'SMS spam', train: 'train.jsonl', val: { split: 0.1 }, test: 'test.jsonl', epochs: 3, transferCopies: 0 },
  {
    name: 'tweeteval_emotion',
    title: 'TweetEval emotion (train -> test)',
    train: 'train.jsonl',
    val: { file: 'dev.jsonl' },
    test: 'test.jsonl',
    epochs: 3,
    transferCopies: 0,
  },
];

/** Mode column: full, head, distilled (k1 student of the full build's k2), tfidf+lr. */
interface Row {
  dataset: string;
  mode: string;
  depth: number;
  variant: string;
  seed?: number;
  testAccuracy: number;
  testMacroF1: number;
  valAccuracy: number;
  testExamples: number;
  bestEpoch?: number;
  epochsRun?: number;
  /** Training seconds of this variant / epochs run (validation pass included). */
  secondsPerEpoch?: number;
  examplesPerSecond?: number;
  stepsPerSecond?: number;
  buildSeconds: number;
  teacher?: string;
  transferExamples?: number;
  command: string;
}

interface VariantReport {
  variant: string;
  depth: number;
  accuracy: number;
  train?: { examplesPerSecond?: number; stepsPerSecond?: number; bestEpoch?: number; epochsRun?: number; seconds?: number };
  distillation?: { teacher: string; transferExamples: number };
}

const cli = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const dataRoot = resolve(args.data);
const only = args.only?.split(',');
const modes = args.modes === 'none' ? [] : args.modes.split(',');
const seeds = args.seeds.split(',').map(Number);
const rows: Row[] = [];
const started = new Date();
const reportPath = resolve(args.out);
const previous: Row[] = existsSync(`${reportPath}.json`) ? (JSON.parse(readFileSync(`${reportPath}.json`, 'utf8')) as { rows: Row[] }).rows : [];
/** Hand-written notes below this line of the report survive regeneration. */
const NOTES_MARKER = '<!-- notes below are hand-written; the bench keeps them -->';

const threadFlags = args.threads !== undefined ? ['--threads', args.threads] : [];
// Commands are shown relative to the checkout (and the data root as ../shared/data), as a reader reruns them.
const shown = (s: string) => s.replaceAll(dataRoot, '../shared/data').replaceAll(`${process.cwd()}/`, '');

/** Run `slim <flags>` (or reuse its earlier output); returns the build's report and wall seconds. */
function build(flags: string[], out: string): { results: VariantReport[]; buildSeconds: number; command: string } {
  const command = `npx slim ${shown(flags.join(' '))}`;
  const marker = join(out, 'bench-run.json');
  if (args.reuse && existsSync(marker) && existsSync(join(out, 'report.json'))) {
    const done = JSON.parse(readFileSync(marker, 'utf8')) as { command: string; buildSeconds: number };
    if (done.command === command) {
      console.log(`\n== reusing ${out}: ${command}`);
      return { results: readResults(out), buildSeconds: done.buildSeconds, command };
    }
  }
  console.log(`\n== ${command}`);
  const t0 = performance.now();
  const entry = `import { main } from ${JSON.stringify(pathToFileURL(cli).href)}; process.exitCode = await main(process.argv.slice(1));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', entry, ...flags], { stdio: ['ignore', 'inherit', 'inherit'] });
  const buildSeconds = (performance.now() - t0) / 1000;
  if (run.status !== 0) throw new Error(`${command} failed with exit code ${run.status}`);
  writeFileSync(marker, JSON.stringify({ command, buildSeconds }) + '\n');
  return { results: readResults(out), buildSeconds, command };
}

function readResults(out: string): VariantReport[] {
  return (JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { results: VariantReport[] }).results;
}

async function addRows(plan: DatasetPlan, mode: string, seed: number, out: string, b: ReturnType<typeof build>): Promise<VariantReport[]> {
  const dir = join(dataRoot, plan.name);
  for (const r of b.results) {
    const ev = await evaluateVariant(join(out, r.variant), join(dir, plan.test), { threads: 2 });
    const t = r.train;
    rows.push({
      dataset: plan.title,
      mode,
      depth: r.depth,
      variant: r.variant,
      seed,
      testAccuracy: ev.accuracy,
      testMacroF1: ev.macroF1,
      valAccuracy: r.accuracy,
      testExamples: ev.examples,
      ...(t?.bestEpoch !== undefined ? { bestEpoch: t.bestEpoch } : {}),
      ...(t?.epochsRun ? { epochsRun: t.epochsRun } : {}),
      ...(t?.seconds !== undefined && t.epochsRun ? { secondsPerEpoch: t.seconds / t.epochsRun } : {}),
      ...(t?.examplesPerSecond !== undefined ? { examplesPerSecond: t.examplesPerSecond } : {}),
      ...(t?.stepsPerSecond !== undefined ? { stepsPerSecond: t.stepsPerSecond } : {}),
      ...(r.distillation ? { teacher: r.distillation.teacher, transferExamples: r.distillation.transferExamples } : {}),
      buildSeconds: b.buildSeconds,
      command: b.command,
    });
    console.log(
      `   k${r.depth} ${mode} seed ${seed}: held-out accuracy ${ev.accuracy.toFixed(4)} (macro-F1 ${ev.macroF1.toFixed(4)}, ${ev.examples} examples)`,
    );
  }
  return b.results;
}

for (const plan of PLANS) {
  if (only && !only.includes(plan.name)) continue;
  const dir = join(dataRoot, plan.name);
  const valFlags = 'file' in plan.val ? ['--val', join(dir, plan.val.file)] : ['--val-split', String(plan.val.split)];
  const epochFlags = plan.epochs !== undefined ? ['--epochs', String(plan.epochs)] : [];
  for (const seed of seeds) {
    const suffix = seed === 42 ? '' : `-s${seed}`;
    for (const mode of modes) {
      const out = join(args.work, `${plan.name}-${mode}${suffix}`);
      const flags = [
        'build',
        '--base',
        'builtin:use-lite',
        '--data',
        join(dir, plan.train),
        '--depths',
        '1,2',
        '--train',
        mode,
        ...valFlags,
        ...epochFlags,
        '--seed',
        String(seed),
        ...threadFlags,
        '--out',
        out,
        '--quiet',
      ];
      const results = await addRows(plan, mode, seed, out, build(flags, out));
      writeReport();
      if (!args.distill || mode !== 'full') continue;
      // The k1 student of this build's k2, on the training set's own sentences (and augmentations).
      const teacher = results.find((r) => r.depth === 2)!;
      const transferFlags: string[] = [];
      if (plan.transferCopies > 0) {
        const file = resolve(args.work, `${plan.name}-transfer.jsonl`);
        const train = await loadDataset(join(dir, plan.train));
        // With a validation split, transfer text only comes from the training part of it.
        const texts = ('split' in plan.val ? splitDataset(train, plan.val.split, seed).train : train).map((e) => e.text);
        writeFileSync(
          file,
          augmentSentences(texts, plan.transferCopies, 7)
            .map((text) => JSON.stringify({ text }))
            .join('\n') + '\n',
        );
        transferFlags.push('--transfer-data', file);
      }
      const sout = join(args.work, `${plan.name}-distill${suffix}`);
      const sflags = [
        'build',
        '--base',
        'builtin:use-lite',
        '--data',
        join(dir, plan.train),
        '--depths',
        '1',
        '--train',
        'full',
        ...valFlags,
        ...epochFlags,
        '--distill-from',
        join(out, teacher.variant),
        ...transferFlags,
        '--seed',
        String(seed),
        ...threadFlags,
        '--out',
        sout,
        '--quiet',
      ];
      await addRows(plan, 'distilled', seed, sout, build(sflags, sout));
      writeReport();
    }
  }
  if (args.baseline) {
    const train = await loadDataset(join(dir, plan.train));
    const split = 'file' in plan.val ? { train, val: await loadDataset(join(dir, plan.val.file)) } : splitDataset(train, plan.val.split, 42);
    const test = await loadDataset(join(dir, plan.test));
    const t0 = performance.now();
    const r = tfidfLogisticBaseline(split.train, split.val, test);
    const buildSeconds = (performance.now() - t0) / 1000;
    rows.push({
      dataset: plan.title,
      mode: 'tfidf+lr',
      depth: 0,
      variant: `tfidf+lr (l2 ${r.l2}, ${r.epochs} epochs, ${r.features} features)`,
      testAccuracy: r.accuracy,
      testMacroF1: NaN,
      valAccuracy: r.valAccuracy,
      testExamples: test.length,
      buildSeconds,
      command: `node dist/bench/public-sets.js --only ${plan.name} --modes none --baseline`,
    });
    console.log(`   tfidf+lr: held-out accuracy ${r.accuracy.toFixed(4)} (val ${r.valAccuracy.toFixed(4)}, l2 ${r.l2}, ${r.epochs} epochs)`);
    writeReport();
  }
}

writeReport();

function writeReport(): void {
  // Rows of (dataset, mode, seed) not rerun this time are kept from the previous report.
  const key = (r: Row) => `${r.dataset}|${r.mode}|${r.seed ?? 42}`;
  const rerun = new Set(rows.map(key));
  const all = [...previous.filter((r) => !rerun.has(key(r))), ...rows];
  const modeOrder = ['full', 'distilled', 'head', 'tfidf+lr'];
  const order = (r: Row) =>
    PLANS.findIndex((p) => p.title === r.dataset) * 10000 + (r.seed ?? 42) * 10 + modeOrder.indexOf(r.mode) * 3 + r.depth + (precisionOf(r) ? 0.5 : 0);
  all.sort((a, b) => order(a) - order(b));
  mkdirSync(resolve(reportPath, '..'), { recursive: true });
  writeFileSync(`${reportPath}.json`, JSON.stringify({ startedAt: started.toISOString(), rows: all }, null, 2) + '\n');
  const pct = (x: number) => (Number.isFinite(x) ? (x * 100).toFixed(1) : '');
  const lines = [
    '# Accuracy per depth on public sets',
    '',
    'USE-lite (builtin:use-lite) cut to k = 1 and k = 2, fine-tuned with `slim build` on this machine (2 cores, shared with other jobs),',
    'batch 32, at most 64 tokens, AdamW (lr 1e-4 full / 1e-3 head, weight decay 0.01 off biases and norms, 10% warmup, linear decay),',
    'early stopping on the validation accuracy (patience 2). Held-out accuracy from `slim eval` on the split named in the first column.',
    'Generated by `npm run build && node dist/bench/public-sets.js`; data from `../shared/data` (see its README for the splits).',
    '"distilled": the k1 student of the same seed\'s full k2 (`--distill-from`, T = 2, alpha = 0.5, transfer text = the set\'s own',
    'training sentences, augmented). "tfidf+lr": TF-IDF uni+bigrams + logistic regression (bench/tfidf-logreg.ts), L2 picked on the same validation split.',
    '',
    '| dataset | mode | depth | seed | held-out acc | macro-F1 | val acc | best / run epochs | s/epoch | train ex/s | build s |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...all.map(
      (r) =>
        `| ${r.dataset} | ${r.mode} | ${depthCell(r)} | ${r.seed ?? 42} | ${pct(r.testAccuracy)} | ${pct(r.testMacroF1)} | ${pct(r.valAccuracy)} | ${r.bestEpoch ?? ''}${r.epochsRun ? ` / ${r.epochsRun}` : ''} | ${r.secondsPerEpoch?.toFixed(0) ?? ''} | ${r.examplesPerSecond?.toFixed(0) ?? ''} | ${r.buildSeconds.toFixed(0)} |`,
    ),
    '',
    ...seedSpread(all),
    '## Commands',
    '',
    ...[...new Set(all.map((r) => r.command))].map((c) => `- \`${c}\``),
    '',
  ];
  const old = existsSync(`${reportPath}.md`) ? readFileSync(`${reportPath}.md`, 'utf8') : '';
  const notes = old.includes(NOTES_MARKER) ? old.slice(old.indexOf(NOTES_MARKER)) : `${NOTES_MARKER}\n`;
  writeFileSync(`${reportPath}.md`, `${lines.join('\n')}\n${notes}`);
}

/** Mean and min/max of the held-out accuracy over seeds, where a (dataset, mode, depth) has several. */
function seedSpread(all: readonly Row[]): string[] {
  const groups = new Map<string, Row[]>();
  for (const r of all) {
    const k = `${r.dataset} | ${r.mode} | ${depthCell(r)}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const multi = [...groups].filter(([, rs]) => new Set(rs.map((r) => r.seed ?? 42)).size > 1);
  if (multi.length === 0) return [];
  const pct = (x: number) => (x * 100).toFixed(1);
  return [
    '## Spread over seeds',
    '',
    '| dataset | mode | depth | seeds | mean | min | max |',
    '|---|---|---|---|---|---|---|',
    ...multi.map(([k, rs]) => {
      const a = rs.map((r) => r.testAccuracy);
      return `| ${k} | ${rs.map((r) => r.seed ?? 42).join(', ')} | ${pct(a.reduce((x, y) => x + y, 0) / a.length)} | ${pct(Math.min(...a))} | ${pct(Math.max(...a))} |`;
    }),
    '',
  ];
}

/** The precision of a row's variant when it is not float32 (k1-int8 -> int8), else undefined. */
function precisionOf(r: Row): string | undefined {
  return /-(int8|fp16)$/.exec(r.variant)?.[1];
}

/** Depth column: k1, or k1-int8 for a build's int8 sibling (the builds write both). */
function depthCell(r: Row): string {
  if (!r.depth) return '';
  const p = precisionOf(r);
  return p ? `k${r.depth}-${p}` : `k${r.depth}`;
}
