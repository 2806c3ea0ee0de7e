// Loading a dataset by its spec: `builtin:spam`, or a JSONL / CSV / TSV file whose format is
// told by its extension or, failing that, by its first line.
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseDelimited } from './delimited.js';
import { DatasetError, type Example } from './example.js';
import { parseJsonl } from './jsonl.js';
import { loadSpamAssassin } from './spam-assassin.js';
import { decodeUtf8 } from './utf8.js';

export type DatasetFormat = 'jsonl' | 'csv' | 'tsv';

export const BUILTIN_DATASETS = ['builtin:spam'] as const;

/**
 * Load a dataset: `builtin:spam`, or a JSONL / CSV / TSV file (chosen by extension, else by
 * looking at the first line). Only the file's own well-formedness is checked here; whether
 * it is fit for training (two classes at least) or validation (no unseen labels) depends on
 * its role, so those checks are `checkTrainingSet` and `checkLabelsKnown`.
 */
export async function loadDataset(spec: string): Promise<Example[]> {
  if (spec.startsWith('builtin:')) {
    if (spec === 'builtin:spam') return loadSpamAssassin();
    throw new DatasetError(spec, `unknown built-in dataset; known: ${BUILTIN_DATASETS.join(', ')}`);
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(spec);
  } catch (err) {
    throw new DatasetError(spec, describeReadError(err));
  }
  let text = decodeUtf8(bytes, spec);
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a BOM is not part of the header
  if (text.trim() === '') throw new DatasetError(spec, 'the file is empty');
  const format = datasetFormat(spec, text);
  return format === 'jsonl' ? parseJsonl(text, spec) : parseDelimited(text, format === 'csv' ? ',' : '\t', spec);
}

function describeReadError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EISDIR') return 'is a directory, not a dataset file';
  if (code === 'EACCES') return 'permission denied';
  return `cannot read: ${(err as Error).message}`;
}

/** The format from the extension; for other names, JSONL if the file starts with `{`, TSV if its first line has a tab. */
export function datasetFormat(file: string, text: string): DatasetFormat {
  const ext = extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson' || ext === '.json') return 'jsonl';
  if (ext === '.csv') return 'csv';
  if (ext === '.tsv' || ext === '.tab') return 'tsv';
  if (text.trimStart().startsWith('{')) return 'jsonl';
  const newline = text.indexOf('\n');
  const firstLine = newline < 0 ? text : text.slice(0, newline);
  return firstLine.includes('\t') ? 'tsv' : 'csv';
}
