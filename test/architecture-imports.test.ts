// The import rules of the layout (docs/architecture.md): the offline pipeline never imports the
// online server, and the serving core has no import cycles. Read from the TypeScript sources
// (value imports only: `import type` is erased and creates no load-order dependency).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './helpers/paths.js';

const SRC = resolve(REPO_ROOT, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** Relative value imports of every source file, as paths of .ts files under src/. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, 'utf8');
    const deps: string[] = [];
    for (const m of text.matchAll(/^(import|export)\s+(type\s)?(?:[^;']*?from\s+)?'(\.[^']+)'/gms)) {
      if (m[2]) continue;
      deps.push(resolve(dirname(file), m[3]!).replace(/\.js$/, '.ts'));
    }
    graph.set(file, deps);
  }
  return graph;
}

const rel = (p: string) => relative(SRC, p);

test('src/pipeline never imports src/serve', () => {
  const graph = importGraph();
  const crossings = [...graph].flatMap(([file, deps]) =>
    rel(file).startsWith('pipeline/') ? deps.filter((d) => rel(d).startsWith('serve/')).map((d) => `${rel(file)} -> ${rel(d)}`) : [],
  );
  assert.ok(graph.size > 50, `read ${graph.size} source files`);
  assert.deepEqual(crossings, []);
});

test('src/serve has no import cycles', () => {
  const graph = importGraph();
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    stack.push(file);
    for (const dep of graph.get(file) ?? []) {
      if (!graph.has(dep) || !rel(dep).startsWith('serve/')) continue;
      if (state.get(dep) === 'open') cycles.push([...stack.slice(stack.indexOf(dep)), dep].map(rel).join(' -> '));
      else if (!state.has(dep)) visit(dep);
    }
    stack.pop();
    state.set(file, 'done');
  };
  const serveFiles = [...graph.keys()].filter((f) => rel(f).startsWith('serve/'));
  assert.ok(serveFiles.length > 20, `read ${serveFiles.length} files of src/serve`);
  for (const file of serveFiles) if (!state.has(file)) visit(file);
  assert.deepEqual(cycles, []);
});
