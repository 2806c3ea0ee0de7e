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
  /**
   * true: an empty encoding runs as one pad token with its mask set (the server: a fully masked
   * row would pool over nothing). false (default): it stays a fully masked row.
   */
  emptyAsPadToken?: boolean;
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
  constructor(
    readonly maxLength: number,
    readonly tooLong: ReadonlyArray<{ index: number; length: number }>,
  ) {
    const first = tooLong[0]!;
    super(
      `${tooLong.length} input${tooLong.length === 1 ? ' is' : 's are'} longer than the model's ${maxLength} tokens ` +
        `(input ${first.index} has ${first.length}) and truncation is off`,
    );
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

let loadsInThisThread = 0;

/**
 * How many tokenizers this thread (module instance) has loaded. The server's main thread must stay
 * at 0: its inference workers tokenize (test/serve-tokenize-worker.test.ts holds it to that).
 */
export function tokenizersLoadedInThisThread(): number {
  return loadsInThisThread;
}

type TokenizerClass = new (tokenizerJSON: object, tokenizerConfig: object) => PreTrainedTokenizer;

/**
 * Load the tokenizer of a variant directory. The files are read and parsed here (so a broken
 * file is named in the error) and handed to the class AutoTokenizer would pick from
 * tokenizer_config.json's tokenizer_class; nothing goes through transformers.js' hub loader, so
 * there is no network, no cache directory and no memoised file lookup.
 */
export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  loadsInThisThread++;
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
  const tieBreak = config[UNIGRAM_TIE_BREAK_KEY] === 'last' ? 'last' : 'first';
  const unigram = unigramModelOf(tokenizer);
  if (unigram) installFastUnigram(unigram, tieBreak);
  else if (tieBreak === 'last')
    throw new Error(`${join(absDir, 'tokenizer.json')}: ${UNIGRAM_TIE_BREAK_KEY} needs a Unigram model that this transformers.js exposes`);
  return new HfTextTokenizer(absDir, tokenizer, config);
}

/**
 * tokenizer_config.json key of ours: "last" makes the Unigram Viterbi keep the last of equally
 * scored candidates (SentencePiece-style `>=`, the shortest last piece) where transformers.js
 * keeps the first. The USE-lite reference tokenizer breaks exact ties that way, and no
 * tokenizer.json setting can express it (see src/pipeline/tokenizers/use-lite.ts, quirk b).
 */
export const UNIGRAM_TIE_BREAK_KEY = 'slim_unigram_tie_break';

interface UnigramModel {
  vocab: string[];
  scores: (number | null)[];
  tokens_to_ids: Map<string, number>;
  unk_token_id: number;
  unk_score: number;
  tokenize(text: string): string[];
}

/** The transformers.js Unigram model inside a tokenizer, or null when it has another model. */
function unigramModelOf(tokenizer: PreTrainedTokenizer): UnigramModel | null {
  const model = (tokenizer as unknown as { _tokenizer?: { model?: Partial<UnigramModel> & { constructor?: { name?: string } } } })._tokenizer?.model;
  if (!model || typeof model.tokenize !== 'function' || !Array.isArray(model.vocab) || !Array.isArray(model.scores)) return null;
  if (!(model.tokens_to_ids instanceof Map) || typeof model.unk_score !== 'number' || typeof model.unk_token_id !== 'number') return null;
  return model as UnigramModel;
}

/**
 * Replace a Unigram model's segmentation with the same Viterbi done without a lattice.
 *
 * Why: transformers.js builds a lattice of node objects, searches its trie through a generator
 * that concatenates strings, and clones nodes while it walks back; for a ten-word text that was
 * about a third of the server's main-thread time. This keeps one number per position (the best
 * score of a segmentation ending there, and where its last piece starts) and walks a code-point
 * trie of integer-keyed maps: the same answer, several times faster.
 *
 * What must stay identical (test/tokenizer-unigram.test.ts compares it with transformers.js'
 * own lattice on every dataset text and on random Unicode): positions are code points; a piece
 * scores what `scores[tokens_to_ids.get(piece)]` says (the last id of a duplicated piece, the
 * unknown piece at unk_score); a position that no one-character piece covers gets an unknown
 * node of one code point; totals add in the same order; and among equal totals for the segment
 * ending at a position, "first" keeps the earliest start (transformers.js' `>`), "last" the latest
 * (SentencePiece's `>=`). The pieces returned are substrings of the text, as before, so
 * transformers.js' fuse_unk and id lookup that follow are untouched.
 */
export function installFastUnigram(model: UnigramModel, tieBreak: 'first' | 'last'): void {
  // Trie over code points: node 0 is the root; children in one Map per node.
  const children: Map<number, number>[] = [new Map<number, number>()];
  const pieceScore: number[] = [NaN];
  const isPiece: boolean[] = [false];
  for (const piece of new Set(model.vocab)) {
    if (typeof piece !== 'string' || piece.length === 0) continue;
    let node = 0;
    for (const ch of piece) {
      const cp = ch.codePointAt(0)!;
      let child = children[node]!.get(cp);
      if (child === undefined) {
        child = children.length;
        children.push(new Map());
        pieceScore.push(NaN);
        isPiece.push(false);
        children[node]!.set(cp, child);
      }
      node = child;
    }
    const id = model.tokens_to_ids.get(piece)!;
    isPiece[node] = true;
    // null scores add as 0 in the lattice (null + x === x); keep that.
    pieceScore[node] = Number(model.scores[id] ?? 0);
  }
  const unkScore = model.unk_score;
  const last = tieBreak === 'last';

  model.tokenize = (text: string): string[] => {
    // Code points and where each starts in the string (UTF-16 offsets), plus the end.
    const cps: number[] = [];
    const offsets: number[] = [];
    for (let u = 0; u < text.length;) {
      const cp = text.codePointAt(u)!;
      cps.push(cp);
      offsets.push(u);
      u += cp > 0xffff ? 2 : 1;
    }
    const n = cps.length;
    offsets.push(text.length);
    if (n === 0) return [];
    const best = new Float64Array(n + 1).fill(-Infinity);
    const from = new Int32Array(n + 1).fill(-1);
    best[0] = 0;
    const offer = (start: number, end: number, score: number): void => {
      const total = best[start]! + score;
      if (from[end] === -1 || total > best[end]! || (last && total === best[end])) {
        best[end] = total;
        from[end] = start;
      }
    };
    for (let i = 0; i < n; i++) {
      let node = 0;
      let single = false;
      for (let k = i; k < n; k++) {
        const next = children[node]!.get(cps[k]!);
        if (next === undefined) break;
        node = next;
        if (isPiece[node]) {
          offer(i, k + 1, pieceScore[node]!);
          if (k === i) single = true;
        }
      }
      if (!single) offer(i, i + 1, unkScore);
    }
    const pieces: string[] = [];
    for (let end = n; end > 0; end = from[end]!) pieces.push(text.slice(offsets[from[end]!]!, offsets[end]!));
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
    throw new Error(`${path}: cannot read the tokenizer (${code === 'ENOENT' ? 'no such file' : (code ?? String(err))})`);
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

  constructor(
    readonly dir: string,
    private readonly tokenizer: PreTrainedTokenizer,
    config: Record<string, unknown>,
  ) {
    // transformers.js falls back from pad_token to eos_token (GPT-2 and Llama have no pad);
    // with neither, 0 is as good as any id since the mask hides padding.
    this.padId = Number.isInteger(tokenizer.pad_token_id) ? tokenizer.pad_token_id : 0;
    // tokenizer_config.json's padding_side first: transformers.js' LlamaTokenizer sets "left" in a
    // class field, which runs after the constructor has read the config and so overrides it
    // (a variant of a Llama/Mistral checkpoint saying "right" would otherwise be served left-padded).
    const side = typeof config.padding_side === 'string' ? config.padding_side : tokenizer.padding_side;
    this.padSide = side === 'left' ? 'left' : 'right';
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
    return this.pad(
      texts.map((t) => this.tokenizer.encode(t)),
      options,
    );
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
  const kept = lengths.map((n) => (n === 0 && options.emptyAsPadToken ? 1 : Math.min(n, maxLength)));
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
    const ids = encodings[row]!.length > 0 ? encodings[row]! : [padId];
    const n = kept[row]!;
    const start = row * seqLength + (padSide === 'left' ? seqLength - n : 0);
    for (let j = 0; j < n; j++) {
      inputIds[start + j] = BigInt(ids[j]!);
      attentionMask[start + j] = 1n;
    }
  }
  return { inputIds, attentionMask, batchSize, seqLength, lengths };
}
