// The server's thin view of a variant's tokenizer: text in, token ids out. It is kept this small
// on purpose so that the project-wide src/tokenizer.ts can replace the implementation without
// touching the batcher or the routes.
import { AutoTokenizer, env } from '@huggingface/transformers';
import { resolve } from 'node:path';

export interface TextTokenizer {
  /** Id written into padded positions (masked out by attention_mask either way). */
  readonly padId: number;
  /** Which end padding goes on, as the tokenizer was trained. */
  readonly padSide: 'left' | 'right';
  /** Token ids of one text, special tokens included, not truncated. */
  encode(text: string): number[];
}

let configured = false;

/** Load tokenizer.json (+ tokenizer_config.json) from a variant directory, never from the network. */
export async function loadTextTokenizer(dir: string): Promise<TextTokenizer> {
  if (!configured) {
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    configured = true;
  }
  // An absolute path is not a valid hub id, so transformers.js reads it as a plain directory.
  const tokenizer = await AutoTokenizer.from_pretrained(resolve(dir));
  const padId = typeof tokenizer.pad_token_id === 'number' ? tokenizer.pad_token_id : 0;
  const padSide = tokenizer.padding_side === 'left' ? 'left' : 'right';
  return {
    padId,
    padSide,
    encode: (text) => tokenizer.encode(text),
  };
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
 * Encode a text for a model that reads at most maxLength tokens. Tokenizing costs time in
 * proportion to the text (about 20 ms per 100 KB), on the event loop, yet only the first
 * maxLength tokens count: a long text is first cut at a whitespace far beyond them, and encoded
 * in full only when that prefix turns out too short to decide.
 */
export function encodeBounded(tokenizer: TextTokenizer, text: string, maxLength: number): BoundedEncoding {
  const cap = maxLength * CHARS_PER_TOKEN_BOUND;
  if (text.length > cap) {
    const cut = text.lastIndexOf(' ', cap);
    if (cut > cap / 2) {
      const prefix = tokenizer.encode(text.slice(0, cut));
      if (prefix.length >= maxLength + PREFIX_MARGIN) return { ids: prefix.slice(0, maxLength), tooLong: true };
    }
  }
  const ids = tokenizer.encode(text);
  return { ids: truncateIds(ids, maxLength), tooLong: ids.length > maxLength, count: ids.length };
}
