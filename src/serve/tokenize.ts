// The server's view of a variant's tokenizer: text in, token ids out, with the bounds that keep
// a hostile text from costing more than the model could ever read. The tokenizer itself is
// src/tokenizer.ts, the one training and evaluation use: the server must produce the very ids the
// model was trained on (tie-breaking rule included), so it never loads one another way.
//
// Where each part runs: the inference workers tokenize and pad the texts of their own batch
// (encodeBatch); the main thread never loads a tokenizer. It only bounds a text's size (boundText)
// and estimates its token count (estimateTokens) from its characters, which is what the batcher
// groups and budgets by.
import { padEncodings, loadTokenizer, type TextTokenizer as ProjectTokenizer } from '../tokenizer.js';

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

/**
 * Special tokens a tokenizer may add around a text (BOS, EOS, CLS, SEP, a Metaspace prefix):
 * the slack estimateTokens adds to the text's bytes.
 */
const ESTIMATE_SPECIALS = 4;

/** textSize saturates here: a text of 16 bytes per token and more is far past maxLength anyway. */
const SIZE_CAP_PER_TOKEN = 16;

/**
 * A text's size as the batcher groups by it: its UTF-8 bytes plus the specials, saturating at
 * 16 x maxLength. Within a language bytes per token is near constant, so texts of similar size
 * have similar token counts (grouping by size keeps padding low), and the size bounds the count
 * from above (see estimateTokens). Texts past the cap are all cut to maxLength: one group.
 */
export function textSize(text: string, maxLength: number): number {
  const cap = SIZE_CAP_PER_TOKEN * maxLength;
  // At least as many bytes as UTF-16 units: a text of cap units is past the cap without counting.
  if (text.length >= cap) return cap;
  return Math.min(cap, Buffer.byteLength(text, 'utf8') + ESTIMATE_SPECIALS);
}

/**
 * An upper bound on a text's token count, capped at maxLength, from its size alone: every piece
 * of a BPE, WordPiece, Unigram or word-level vocabulary covers at least one UTF-8 byte of the
 * (normalised) text, byte fallback exactly one, so a text has at most its UTF-8 byte count plus the
 * specials. The batcher keeps maxBatchTokens with it before any text is tokenized; it errs high
 * (English runs about 4 bytes per token), which only matters where maxBatchTokens <
 * maxBatchSize x maxLength (not at the defaults: 8192 >= 32 x 256).
 */
export function estimateTokens(text: string, maxLength: number): number {
  return Math.max(1, Math.min(maxLength, textSize(text, maxLength)));
}

export interface BoundedText {
  /** What the worker encodes: the text, or a prefix that encodes to the very same ids. */
  text: string;
  /** Longer than maxLength whatever the tokenizer (encodeBounded never counts it in full). */
  surelyTooLong: boolean;
}

/**
 * Bound a text on the main thread before it is queued, without tokenizing: a text of more than
 * 2 x maxLength x 64 characters is cut to 2 x that + 1 characters. encodeBounded only reads the
 * first maxLength x 64 of such a text, so the ids are the same, and a hostile megabyte is not
 * copied to a worker.
 */
export function boundText(text: string, maxLength: number): BoundedText {
  const limit = 2 * maxLength * CHARS_PER_TOKEN_BOUND;
  return text.length > limit ? { text: text.slice(0, limit + 1), surelyTooLong: true } : { text, surelyTooLong: false };
}

export interface EncodedRows {
  /** [rows, paddedLength], row-major, padded on the tokenizer's side. */
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  paddedLength: number;
  /** Per row: the exact token count, or -1 where the text is too long to count (more than maxLength). */
  tokenCounts: Int32Array;
}

/**
 * The worker's step: encode each text (bounded, cut to maxLength) and pad the batch to its
 * longest row, an empty text as one pad token (a fully masked row would pool over nothing).
 */
export function encodeBatch(tokenizer: TextTokenizer, texts: readonly string[], maxLength: number): EncodedRows {
  const ids: number[][] = [];
  const tokenCounts = new Int32Array(texts.length);
  texts.forEach((text, row) => {
    const e = encodeBounded(tokenizer, text, maxLength);
    ids.push(e.ids);
    tokenCounts[row] = e.count ?? -1;
  });
  const { inputIds, attentionMask, seqLength } = padEncodings(ids, { maxLength, emptyAsPadToken: true }, tokenizer.padId, tokenizer.padSide);
  return { inputIds, attentionMask, paddedLength: seqLength, tokenCounts };
}
