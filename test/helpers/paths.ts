// Paths that tests share. Tests run from the repository root (npm test); the read-only
// test data lies beside the checkout in ../shared (never copied into the repository).
import { resolve } from 'node:path';

export const REPO_ROOT = process.cwd();
export const SHARED = process.env.SLIM_SHARED ?? resolve(REPO_ROOT, '../shared');
export const SHARED_DATA = resolve(SHARED, 'data');
export const SHARED_MODELS = resolve(SHARED, 'models');
