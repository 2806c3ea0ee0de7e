// The one tokenizer every part uses (training, evaluation, serving): a variant directory's
// tokenizer.json (+ tokenizer_config.json) run by transformers.js, never fetched from the network,
// plus the padding into the int64 input_ids / attention_mask pair of the ONNX contract.
// Training and serving must see identical ids, so neither may tokenize any other way.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as transformers from '@huggingface/transformers';
import { PreTrainedTokenizer } from '@huggingface/transformers';

export interface PadOptions {
  /** The longest sequence the model takes. */
  maxLength: number;
  /**
   * true (default): keep the first maxLength ids of a longer text, as USE and transformers.js do.
   * false: refuse longer texts with a TextTooLongError (HTTP 422 for the server).
   */
  truncate?: boolean;
  /** Pad every row to this length (a fixed-shape bucket) instead of to the longest text. */
  padTo?: number;
}

export interface EncodedBatch {
  /** [batchSize, seqLength], row-major. */
  inputIds: BigInt64Array;
  /** 1 on real tokens, 0 on padding; same shape. */
  attentionMask: BigInt64Array;
  batchSize: number;
  seqLength: number;
  /** Each text's token count before truncation (compare with maxLength to see what was cut). */
  lengths: number[];
}

/** Texts longer than maxLength with truncation off; `tooLong` names them by batch index. */
export class TextTooLongError extends Error {
  constructor(readonly maxLength: number, readonly tooLong: ReadonlyArray<{ index: number; length: number }>) {
    const first = tooLong[0]!;
    super(`${tooLong.length} input${tooLong.length === 1 ? ' is' : 's are'} longer than the model's ${maxLength} tokens `
      + `(input ${first.index} has ${first.length}) and truncation is off`);
    this.name = 'TextTooLongError';
  }
}

export interface TextTokenizer {
  /** The variant directory it was loaded from. */
  readonly dir: string;
  /** Id written into padded positions; the attention mask hides it from the encoder. */
  readonly padId: number;
  /** Which end padding goes on (tokenizer_config.json padding_side; right unless it says left). */
  readonly padSide: 'left' | 'right';
  /** tokenizer_config.json model_max_length, or null where it gives none. */
  readonly modelMaxLength: number | null;
  /** Token ids of one text, the tokenizer's special tokens included, not truncated. */
  encode(text: string): number[];
  /** How many ids encode(text) gives (the batcher groups and budgets texts by it). */
  countTokens(text: string): number;
  /** Pad (and truncate) already encoded texts into one batch. */
  pad(encodings: ReadonlyArray<ReadonlyArray<number>>, options: PadOptions): EncodedBatch;
  /** encode + pad. */
  encodeBatch(texts: ReadonlyArray<string>, options: PadOptions): EncodedBatch;
}

type TokenizerClass = new (tokenizerJSON: object, tokenizerConfig: object) => PreTrainedTokenizer;

/**
 * Load the tokenizer of a variant directory. The files are read and parsed here (so a broken
 * file is named in the error) and handed to the class AutoTokenizer would pick from
 * tokenizer_config.json's tokenizer_class; nothing goes through transformers.js' hub loader, so
 * there is no network, no cache directory and no memoised file lookup.
 */
export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const absDir = resolve(dir);
  const tokenizerJSON = await readJsonObject(join(absDir, 'tokenizer.json'), true);
  const config = (await readJsonObject(join(absDir, 'tokenizer_config.json'), false)) ?? {};
  const cls = tokenizerClass(config);
  let tokenizer: PreTrainedTokenizer;
  try {
    tokenizer = new cls(tokenizerJSON!, config);
  } catch (err) {
    throw new Error(`${join(absDir, 'tokenizer.json')}: transformers.js cannot build a tokenizer from it (${(err as Error).message})`);
  }
  if (config[UNIGRAM_TIE_BREAK_KEY] === 'last') preferLastOnTies(tokenizer, join(absDir, 'tokenizer.json'));
  return new HfTextTokenizer(absDir, tokenizer, config);
}

/**
 * tokenizer_config.json key of ours: "last" makes the Unigram Viterbi keep the last of equally
 * scored candidates (SentencePiece-style `>=`, the shortest last piece) where transformers.js
 * keeps the first. The USE-lite reference tokenizer breaks exact ties that way, and no
 * tokenizer.json setting can express it (see src/build/tokenizers/use-lite.ts, quirk b).
 */
export const UNIGRAM_TIE_BREAK_KEY = 'slim_unigram_tie_break';

interface LatticeNode { pos: number; length: number; score: number; tokenId: number; prev: LatticeNode | null; total: number }
interface UnigramModel {
  populate_nodes(lattice: { chars: string[]; insert(pos: number, length: number, score: number, tokenId: number): void }): void;
  vocab: string[];
  tokenize(text: string): string[];
}

function preferLastOnTies(tokenizer: PreTrainedTokenizer, path: string): void {
  const model = (tokenizer as unknown as { _tokenizer?: { model?: Partial<UnigramModel> } })._tokenizer?.model;
  if (!model || typeof model.populate_nodes !== 'function' || typeof model.tokenize !== 'function') {
    throw new Error(`${path}: ${UNIGRAM_TIE_BREAK_KEY} needs a Unigram model that this transformers.js exposes`);
  }
  const unigram = model as UnigramModel;
  // The same lattice transformers.js builds (its populate_nodes fills it), with the other tie rule.
  unigram.tokenize = (text: string): string[] => {
    const chars = Array.from(text);
    const startsAt: LatticeNode[][] = Array.from({ length: chars.length + 1 }, () => []);
    const endsAt: LatticeNode[][] = Array.from({ length: chars.length + 1 }, () => []);
    const bos: LatticeNode = { pos: 0, length: 0, score: 0, tokenId: -1, prev: null, total: 0 };
    endsAt[0]!.push(bos);
    unigram.populate_nodes({
      chars,
      insert(pos, length, score, tokenId) {
        const node: LatticeNode = { pos, length, score, tokenId, prev: null, total: 0 };
        startsAt[pos]!.push(node);
        endsAt[pos + length]!.push(node);
      },
    });
    for (let pos = 0; pos < chars.length; pos++) {
      for (const node of startsAt[pos]!) {
        let best: LatticeNode | null = null;
        for (const prev of endsAt[pos]!) {
          // Candidates ending here come in start order; `>=` lets the later start win a tie.
          if (best === null || prev.total >= best.total) best = prev;
        }
        if (best === null) return [];
        node.prev = best;
        node.total = best.total + node.score;
      }
    }
    let last: LatticeNode | null = null;
    for (const node of endsAt[chars.length]!) if (last === null || node.total >= last.total) last = node;
    const pieces: string[] = [];
    for (let n = last; n && n !== bos; n = n.prev) pieces.push(chars.slice(n.pos, n.pos + n.length).join(''));
    return pieces.reverse();
  };
}

async function readJsonObject(path: string, required: boolean): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !required) return null;
    throw new Error(`${path}: cannot read the tokenizer (${code === 'ENOENT' ? 'no such file' : code ?? String(err)})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${path}: expected a JSON object`);
  return value as Record<string, unknown>;
}

/** AutoTokenizer's choice: tokenizer_class without "Fast", else the base class. */
function tokenizerClass(config: Record<string, unknown>): TokenizerClass {
  const name = typeof config.tokenizer_class === 'string' ? config.tokenizer_class.replace(/Fast$/, '') : 'PreTrainedTokenizer';
  const candidate = (transformers as unknown as Record<string, unknown>)[name];
  if (typeof candidate === 'function' && (candidate === PreTrainedTokenizer || candidate.prototype instanceof PreTrainedTokenizer)) {
    return candidate as TokenizerClass;
  }
  return PreTrainedTokenizer as unknown as TokenizerClass;
}

class HfTextTokenizer implements TextTokenizer {
  readonly padId: number;
  readonly padSide: 'left' | 'right';
  readonly modelMaxLength: number | null;

  constructor(readonly dir: string, private readonly tokenizer: PreTrainedTokenizer, config: Record<string, unknown>) {
    // transformers.js falls back from pad_token to eos_token (GPT-2 and Llama have no pad);
    // with neither, 0 is as good as any id since the mask hides padding.
    this.padId = Number.isInteger(tokenizer.pad_token_id) ? tokenizer.pad_token_id : 0;
    this.padSide = tokenizer.padding_side === 'left' ? 'left' : 'right';
    const max = config.model_max_length;
    // Hugging Face writes 1e30 ("VERY_LARGE_INTEGER") when a tokenizer has no limit.
    this.modelMaxLength = typeof max === 'number' && Number.isInteger(max) && max > 0 && max < 1e9 ? max : null;
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text);
  }

  countTokens(text: string): number {
    return this.tokenizer.encode(text).length;
  }

  encodeBatch(texts: ReadonlyArray<string>, options: PadOptions): EncodedBatch {
    return this.pad(texts.map((t) => this.tokenizer.encode(t)), options);
  }

  pad(encodings: ReadonlyArray<ReadonlyArray<number>>, options: PadOptions): EncodedBatch {
    return padEncodings(encodings, options, this.padId, this.padSide);
  }
}

/** Right- or left-pad id lists into the ONNX input pair, truncating or refusing long ones. */
export function padEncodings(
  encodings: ReadonlyArray<ReadonlyArray<number>>,
  options: PadOptions,
  padId: number,
  padSide: 'left' | 'right' = 'right',
): EncodedBatch {
  const { maxLength, truncate = true, padTo } = options;
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new RangeError(`maxLength must be a positive integer, got ${maxLength}`);
  const lengths = encodings.map((e) => e.length);
  if (!truncate) {
    const tooLong = lengths.flatMap((length, index) => (length > maxLength ? [{ index, length }] : []));
    if (tooLong.length > 0) throw new TextTooLongError(maxLength, tooLong);
  }
  const kept = lengths.map((n) => Math.min(n, maxLength));
  // At least one column: an all-empty batch still makes valid [batch, 1] tensors (fully masked).
  let longest = 1;
  for (const n of kept) if (n > longest) longest = n;
  if (padTo !== undefined && (!Number.isInteger(padTo) || padTo < longest)) {
    throw new RangeError(`padTo ${padTo} is shorter than the longest (truncated) text, ${longest} tokens`);
  }
  const seqLength = padTo ?? longest;
  const batchSize = encodings.length;
  const inputIds = new BigInt64Array(batchSize * seqLength).fill(BigInt(padId));
  const attentionMask = new BigInt64Array(batchSize * seqLength);
  for (let row = 0; row < batchSize; row++) {
    const ids = encodings[row]!;
    const n = kept[row]!;
    const start = row * seqLength + (padSide === 'left' ? seqLength - n : 0);
    for (let j = 0; j < n; j++) {
      inputIds[start + j] = BigInt(ids[j]!);
      attentionMask[start + j] = 1n;
    }
  }
  return { inputIds, attentionMask, batchSize, seqLength, lengths };
}
