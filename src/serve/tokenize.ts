// The server's view of a variant's tokenizer: text in, token ids out, with the bounds that keep
// a hostile text from costing the event loop more than the model could ever read. The tokenizer
// itself is src/tokenizer.ts, the one training and evaluation use: the server must produce the
// very ids the model was trained on (tie-breaking rule included), so it never loads one another way.
import { loadTokenizer, type TextTokenizer as ProjectTokenizer } from '../tokenizer.js';

/** What the server needs of a tokenizer. */
export type TextTokenizer = Pick<ProjectTokenizer, 'padId' | 'padSide' | 'encode'>;

/** Load tokenizer.json (+ tokenizer_config.json) from a variant directory, never from the network. */
export function loadTextTokenizer(dir: string): Promise<TextTokenizer> {
  return loadTokenizer(dir);
}

/**
 * Cut ids to maxLength the way transformers.js truncation does (keep the first maxLength,
 * special tokens included), so the server sees what training and evaluation saw.
 */
export function truncateIds(ids: number[], maxLength: number): number[] {
  return ids.length > maxLength ? ids.slice(0, maxLength) : ids;
}

export interface BoundedEncoding {
  /** At most maxLength ids: the text's first maxLength tokens when it is longer. */
  ids: number[];
  /** The text has more than maxLength tokens. */
  tooLong: boolean;
  /** Exact token count, when the whole text was encoded. */
  count?: number;
}

/** Characters per token beyond which a prefix surely holds more than maxLength tokens. */
const CHARS_PER_TOKEN_BOUND = 64;
/** Tokens beyond maxLength a prefix must reach, so the cut cannot touch the kept tokens. */
const PREFIX_MARGIN = 16;
/**
 * Longest run of non-space characters handed to the tokenizer in one piece. transformers.js
 * segments a run its vocabulary does not cover (CJK or emoji in an English vocabulary, 'xxxx...')
 * in time that grows with the square of the run: 8,192 such characters took ~0.5 s of the event
 * loop, 1 MB overflowed the stack. Longer runs get a space every MAX_RUN characters: words that
 * long are not language, and their first tokens stay as they were.
 */
const MAX_RUN = 200;
const LONG_RUN = new RegExp(`\\S{${MAX_RUN}}(?=\\S)`, 'gu');

function splitLongRuns(text: string): string {
  return text.length > MAX_RUN ? text.replace(LONG_RUN, '$& ') : text;
}

/** The first `cap` characters, cut at a whitespace when there is one in the second half. */
function prefixOf(text: string, cap: number): string {
  let cut = text.lastIndexOf(' ', cap);
  if (cut <= cap / 2) {
    cut = cap;
    const c = text.charCodeAt(cut - 1);
    if (c >= 0xd800 && c <= 0xdbff) cut--; // do not split a surrogate pair
  }
  return text.slice(0, cut);
}

/**
 * Encode a text for a model that reads at most maxLength tokens. Tokenizing costs time in
 * proportion to the text (about 20 ms per 100 KB), on the event loop, yet only the first
 * maxLength tokens count: a long text is first cut far beyond them, and encoded in full only
 * when that prefix turns out too short to decide. A text of more than twice that prefix
 * (128 characters per token) is never encoded in full: it counts as longer than maxLength.
 */
export function encodeBounded(tokenizer: TextTokenizer, text: string, maxLength: number): BoundedEncoding {
  const cap = maxLength * CHARS_PER_TOKEN_BOUND;
  if (text.length > cap) {
    const prefix = tokenizer.encode(splitLongRuns(prefixOf(text, cap)));
    if (prefix.length >= maxLength + PREFIX_MARGIN || text.length > 2 * cap) return { ids: prefix.slice(0, maxLength), tooLong: true };
  }
  const ids = tokenizer.encode(splitLongRuns(text));
  return { ids: truncateIds(ids, maxLength), tooLong: ids.length > maxLength, count: ids.length };
}
