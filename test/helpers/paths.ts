// Paths that tests share. Tests run from the repository root (npm test); the read-only
// test data lies beside the checkout in ../shared (never copied into the repository); and where
// a program the integration tests run (nginx, prometheus, kubectl) is installed.
import { accessSync, constants } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

export const REPO_ROOT = process.cwd();
export const SHARED = process.env.SLIM_SHARED ?? resolve(REPO_ROOT, '../shared');
export const SHARED_DATA = resolve(SHARED, 'data');
export const SHARED_MODELS = resolve(SHARED, 'models');

/** The path of an executable `bin` on PATH (then in `extraDirs`), or null when there is none. */
export function which(bin: string, extraDirs: readonly string[] = []): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...extraDirs]) {
    if (!dir) continue;
    try {
      accessSync(join(dir, bin), constants.X_OK);
      return join(dir, bin);
    } catch {
      // not here
    }
  }
  return null;
}
