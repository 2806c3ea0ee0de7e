// The texts a run sends: by default generated (short ~10 words, medium ~60, long ~250, which
// USE-lite truncates), so the shipped scripts need no dataset; with --data FILE (JSONL/CSV/TSV
// with a text column, e.g. ../shared/data/sst2/dev.jsonl) the file's texts, as one set "data".
import { loadDataset } from '../../src/pipeline/datasets/index.js';
import { generateTexts, type TextLength } from '../texts.js';

export interface TextSet {
  name: string;
  description: string;
  texts: string[];
}

const GENERATED: { length: TextLength; description: string; seed: number }[] = [
  { length: 'short', description: 'generated, ~10 words', seed: 7 },
  { length: 'medium', description: 'generated, ~60 words', seed: 8 },
  { length: 'long', description: 'generated, ~250 words (truncated by the model)', seed: 9 },
];

/** The first set is the primary one (the comparisons and targets use it). */
export async function loadTextSets(data: string | undefined, count = 512): Promise<TextSet[]> {
  if (data) {
    const texts = (await loadDataset(data)).map((e) => e.text).filter((t) => t.trim() !== '');
    if (texts.length === 0) throw new Error(`${data}: no texts`);
    const words = texts.reduce((s, t) => s + t.split(/\s+/).length, 0) / texts.length;
    return [{ name: 'data', description: `${data} (${texts.length} texts, ~${words.toFixed(0)} words)`, texts }];
  }
  return GENERATED.map((g) => ({ name: g.length, description: g.description, texts: generateTexts(g.length, count, g.seed) }));
}

/** Request bodies for /classify, one input each. */
export function classifyBodies(texts: readonly string[], extra: Record<string, unknown> = {}): string[] {
  return texts.map((t) => JSON.stringify({ inputs: t, ...extra }));
}
