// Where the server's main thread spends its time, from a V8 CPU profile of the measured window
// (taken in the server child with node:inspector, so start-up and warm-up are left out): self
// time grouped by what the code is (tokenization, fastify, node's HTTP internals, our serving
// code, GC), plus the functions that cost the most. This is the "profile" part of a report.
import { basename } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  /** Wall time profiled, ms. */
  wallMs: number;
  /** Sampled time not idle, ms. */
  busyMs: number;
  /** Busy time per category, ms, largest first. */
  categories: { category: string; ms: number; share: number }[];
  /** The functions with the most self time. */
  top: { fn: string; where: string; category: string; ms: number; share: number }[];
}

const CATEGORIES: [RegExp, string][] = [
  [/@huggingface[\\/]transformers|tokeniz/i, 'tokenization (transformers.js)'],
  [
    /[\\/]node_modules[\\/](fastify|@fastify|find-my-way|avvio|ajv|fast-json-stringify|secure-json-parse|fast-uri|light-my-request|pino|abstract-logging)/,
    'fastify (routing, validation, JSON)',
  ],
  [/[\\/]node_modules[\\/]prom-client/, 'metrics (prom-client)'],
  [/[\\/]src[\\/]serve[\\/]/, 'slimserve serving code'],
  [/^node:/, 'node internals (HTTP, sockets, streams, worker messages)'],
];

function categoryOf(node: ProfileNode): string | null {
  const { functionName, url } = node.callFrame;
  if (functionName === '(idle)') return null;
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (functionName === '(program)' || functionName === '(root)') return 'V8 and libuv outside JavaScript (program)';
  for (const [re, name] of CATEGORIES) if (re.test(url)) return name;
  // Native bindings called from JavaScript: socket writes (writev), worker postMessage, crypto.
  if (url === '') return 'native bindings (socket writes, postMessage)';
  return 'other JavaScript';
}

export function summarizeProfile(profile: CpuProfile, topN = 10): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // Each sample's time is the delta to the NEXT sample (V8 records the delta before each one).
  for (let i = 0; i < samples.length; i++) {
    const dt = deltas[i + 1] ?? 0;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + Math.max(0, dt));
  }
  const categories = new Map<string, number>();
  const fns = new Map<string, { fn: string; where: string; category: string; us: number }>();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const category = categoryOf(node);
    if (category === null) continue;
    busy += us;
    categories.set(category, (categories.get(category) ?? 0) + us);
    const where = node.callFrame.url ? `${basename(node.callFrame.url)}:${node.callFrame.lineNumber + 1}` : '';
    const key = `${node.callFrame.functionName}@${where}`;
    const entry = fns.get(key) ?? { fn: node.callFrame.functionName || '(anonymous)', where, category, us: 0 };
    entry.us += us;
    fns.set(key, entry);
  }
  const share = (us: number) => (busy > 0 ? us / busy : 0);
  return {
    wallMs: (profile.endTime - profile.startTime) / 1000,
    busyMs: busy / 1000,
    categories: [...categories].sort((a, b) => b[1] - a[1]).map(([category, us]) => ({ category, ms: us / 1000, share: share(us) })),
    top: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((f) => ({ fn: f.fn, where: f.where, category: f.category, ms: f.us / 1000, share: share(f.us) })),
  };
}

/** One line: the categories with their share of busy main-thread time. */
export function describeProfile(p: ProfileSummary): string {
  return (
    `main thread busy ${p.busyMs.toFixed(0)} of ${p.wallMs.toFixed(0)} ms profiled: ` +
    p.categories.map((c) => `${c.category} ${(c.share * 100).toFixed(1)}%`).join(', ')
  );
}
