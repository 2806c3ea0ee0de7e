// `slim build`: the command line (flags from build-options.ts through command-line.ts), the
// pipeline (pipeline.ts), and its errors as exit codes: 2 for what the user can fix (a flag,
// the data, the base), 1 otherwise.
import { join } from 'node:path';
import { runCommand, type CommandSpec, type FlagValues } from '../command-line.js';
import { DatasetError } from './datasets/index.js';
import { BaseError } from './bases/base.js';
import { DistillError } from './training/distill.js';
import { BASE_KINDS } from './bases/locate.js';
import { HF_ARCHITECTURES } from './checkpoints/hf.js';
import { BUILD_FLAGS, UsageError, validateBuildFlags } from './build-options.js';
import { runBuild } from './pipeline.js';

/** The "Bases" section of --help: every kind of --base, and the model_types a Hugging Face directory may have. */
function basesHelp(): string {
  const width = Math.max(...BASE_KINDS.map((k) => k.form.length));
  const types = [...new Set(HF_ARCHITECTURES.flatMap((a) => a.modelTypes))].sort();
  return [
    'Bases (--base):',
    ...BASE_KINDS.map((k) => `  ${k.form.padEnd(width)}  ${k.what}`),
    `  Hugging Face model_type values built: ${types.join(', ')}.`,
    '  Files are read locally: download a Hub model first (hf download <id> --local-dir DIR).',
  ].join('\n');
}

export const BUILD_COMMAND: CommandSpec = {
  name: 'build',
  summary: 'cut a pretrained model to its first k layers, fine-tune a classifier at each depth, export ONNX variants and a depth report',
  flags: BUILD_FLAGS,
  notes: basesHelp(),
  examples: [
    'slim build --base builtin:use-lite --data train.jsonl --depths 1,2 --out models/reviews',
    'slim build --base ./Qwen2.5-0.5B --data train.jsonl --depths 2,4 --head label-words --verbalizer negative=bad,positive=good --out models/reviews-qwen',
  ],
  run: (values) => runBuildFlags(values),
};

/** `slim build ...`: 0 on success, 2 on a usage, dataset or base error (one line, no stack), 1 otherwise. */
export function buildCommand(argv: string[]): Promise<number> {
  return runCommand(BUILD_COMMAND, argv);
}

async function runBuildFlags(values: FlagValues): Promise<number> {
  try {
    const options = validateBuildFlags(values);
    const summary = await runBuild(options);
    if (!options.quiet) {
      process.stderr.write(
        `slim build: done in ${summary.seconds.toFixed(1)} s; recommended variant ${summary.recommended ?? '(none)'}; report in ${join(summary.modelDir, 'report.md')}\n`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof DatasetError || err instanceof UsageError || err instanceof BaseError || err instanceof DistillError) {
      console.error(`slim build: ${err.message.split('\n')[0]}`);
      return 2;
    }
    console.error(`slim build: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}
