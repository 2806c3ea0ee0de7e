// JSONL datasets: one {"text": ..., "label": ...} object per line, and the column of a JSON
// syntax error (also used for manifest.json, model-writer.ts).
import { DatasetError, type Example } from './example.js';

export function parseJsonl(text: string, source: string): Example[] {
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
