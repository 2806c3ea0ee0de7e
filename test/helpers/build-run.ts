// Running `slim build` / `slim eval` inside a test: a temporary directory holding the first lines
// of two splits of a shared data set (small enough to train in seconds), and the command's
// console output captured so a test can check its one-line errors and progress.
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SHARED_DATA } from './paths.js';

/** The first `n` non-empty lines of a JSONL file, written to `dest`. */
export async function sliceJsonl(src: string, dest: string, n: number): Promise<void> {
  const lines = (await readFile(src, 'utf8')).split('\n').filter((l) => l.trim() !== '');
  await writeFile(dest, `${lines.slice(0, n).join('\n')}\n`);
}

export interface DataSlices {
  /** The temporary directory (the caller removes it). */
  dir: string;
  trainFile: string;
  valFile: string;
}

/** A fresh temporary directory with train.jsonl and val.jsonl cut from ../shared/data/<dataset>/<split>.jsonl. */
export async function dataSlices(
  prefix: string,
  dataset: string,
  train: { split: string; lines: number },
  val: { split: string; lines: number },
): Promise<DataSlices> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const trainFile = join(dir, 'train.jsonl');
  const valFile = join(dir, 'val.jsonl');
  await sliceJsonl(join(SHARED_DATA, dataset, `${train.split}.jsonl`), trainFile, train.lines);
  await sliceJsonl(join(SHARED_DATA, dataset, `${val.split}.jsonl`), valFile, val.lines);
  return { dir, trainFile, valFile };
}

/**
 * Run `fn` with process.stderr and console.error captured (and process.stdout, only when
 * asked: the test runner reports through stdout); everything is restored afterwards.
 */
export async function capture<T>(fn: () => Promise<T>, withStdout = false): Promise<{ value: T; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const origWrite = process.stdout.write.bind(process.stdout);
  const origErrWrite = process.stderr.write.bind(process.stderr);
  const origError = console.error;
  if (withStdout) process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  console.error = (...args: unknown[]) => void (stderr += `${args.map(String).join(' ')}\n`);
  try {
    return { value: await fn(), stdout, stderr };
  } finally {
    process.stdout.write = origWrite;
    process.stderr.write = origErrWrite;
    console.error = origError;
  }
}
