// Running the real `slim` command (bin/slim.js over dist/) in a child process, as a user does:
// exit code, stdout and stderr, from any working directory.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './paths.js';

export const SLIM_BIN = join(REPO_ROOT, 'bin', 'slim.js');

export interface SlimRun {
  code: number;
  stdout: string;
  stderr: string;
}

export function runSlim(args: readonly string[], opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<SlimRun> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [SLIM_BIN, ...args],
      { cwd: opts.cwd ?? REPO_ROOT, timeout: opts.timeoutMs ?? 120_000, env: opts.env ?? process.env, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err as Error);
        resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}
