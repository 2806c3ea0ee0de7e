// CSV and TSV datasets (RFC 4180 quoting), with a header row naming the text and label columns.
import { DatasetError, type Example } from './example.js';

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

export function parseDelimited(text: string, delimiter: string, source: string): Example[] {
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
