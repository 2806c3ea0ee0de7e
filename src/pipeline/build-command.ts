// `slim build`: parse the flags (build-options.ts), run the pipeline (pipeline.ts), and map its
// errors to exit codes: 2 for what the user can fix (a flag, the data, the base), 1 otherwise.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DatasetError } from './datasets.js';
import { BaseError } from './bases/base.js';
import { BUILD_FLAGS, UsageError, validateBuildFlags, type BuildOptions } from './build-options.js';
import { runBuild } from './pipeline.js';

export function parseBuildArgs(argv: string[]): BuildOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(BUILD_FLAGS.map((f) => [f.name, { type: f.value ? ('string' as const) : ('boolean' as const) }])),
    }));
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!);
  }
  return validateBuildFlags(values);
}

/** `slim build ...`: 0 on success, 2 on a usage, dataset or base error (one line, no stack), 1 otherwise. */
export async function buildCommand(argv: string[]): Promise<number> {
  let options: BuildOptions;
  try {
    options = parseBuildArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`slim build: ${err.message}`);
      return 2;
    }
    throw err;
  }
  try {
    const summary = await runBuild(options);
    if (!options.quiet) {
      process.stderr.write(`slim build: done in ${summary.seconds.toFixed(1)} s; recommended variant ${summary.recommended ?? '(none)'}; report in ${join(summary.modelDir, 'report.md')}\n`);
    }
    return 0;
  } catch (err) {
    if (err instanceof DatasetError || err instanceof UsageError || err instanceof BaseError) {
      console.error(`slim build: ${err.message.split('\n')[0]}`);
      return 2;
    }
    console.error(`slim build: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}
