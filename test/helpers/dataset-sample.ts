// Texts from every {train,dev,test}.jsonl of every dataset in ../shared/data, for tokenizer
// checks that should see every kind of text the project meets.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SHARED_DATA } from './paths.js';

/** `perFile` lines evenly spaced through every {train,dev,test}.jsonl of every dataset. */
export function sampleSentences(perFile: number): string[] {
  const texts: string[] = [];
  for (const dataset of readdirSync(SHARED_DATA).sort()) {
    for (const split of ['train', 'dev', 'test']) {
      const file = join(SHARED_DATA, dataset, `${split}.jsonl`);
      if (!existsSync(file)) continue;
      const lines = readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.length > 0);
      const step = Math.max(1, Math.floor(lines.length / perFile));
      for (let i = 0; i < lines.length && i / step < perFile; i += step) texts.push((JSON.parse(lines[i]!) as { text: string }).text);
    }
  }
  return texts;
}
