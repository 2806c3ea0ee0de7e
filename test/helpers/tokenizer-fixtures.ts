// Small tokenizer.json / tokenizer_config.json pairs with the structure of the released ones
// (same model type, normalizer, pre-tokenizer, post-processor, decoder and special tokens as the
// named checkpoint), their vocabularies learnt here from a few hundred dataset sentences so that
// real words split into several pieces: byte-level BPE (GPT-2 / RoBERTa / Llama 3 / Qwen2 /
// ModernBERT), SentencePiece BPE with byte fallback (Llama 2 / Mistral / Gemma), Unigram
// (XLM-R; without its Precompiled charsmap, a binary blob we cannot make small), WordPiece
// (BERT / DistilBERT).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type FixtureKind =
  | 'gpt2'
  | 'roberta'
  | 'llama3'
  | 'qwen2'
  | 'modernbert' // byte-level BPE
  | 'llama2'
  | 'mistral'
  | 'gemma' // SentencePiece BPE, byte fallback
  | 'xlm-roberta' // Unigram
  | 'bert'
  | 'distilbert'; // WordPiece

export const TOKENIZER_KIND: Record<FixtureKind, string> = {
  gpt2: 'byte-level BPE',
  roberta: 'byte-level BPE',
  llama3: 'byte-level BPE',
  qwen2: 'byte-level BPE',
  modernbert: 'byte-level BPE',
  llama2: 'SentencePiece BPE, byte fallback',
  mistral: 'SentencePiece BPE, byte fallback',
  gemma: 'SentencePiece BPE, byte fallback',
  'xlm-roberta': 'Unigram',
  bert: 'WordPiece',
  distilbert: 'WordPiece',
};

export interface TokenizerFixture {
  json: Record<string, any>;
  config: Record<string, any>;
  /** Size of the id space (vocab and added tokens). */
  vocabSize: number;
}

/** GPT-2's bytes_to_unicode. */
function byteChars(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (bs.includes(b)) continue;
    bs.push(b);
    cs.push(256 + n++);
  }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i]!)));
  return out;
}

/** Learn `n` BPE merges over words given as symbol arrays (weighted by count). */
function learnMerges(words: Map<string, number>, split: (w: string) => string[], n: number): string[][] {
  const seqs = [...words].map(([w, c]) => ({ s: split(w), c }));
  const merges: string[][] = [];
  for (let m = 0; m < n; m++) {
    const counts = new Map<string, number>();
    for (const { s, c } of seqs)
      for (let i = 0; i + 1 < s.length; i++) {
        const k = `${s[i]}\u0000${s[i + 1]}`;
        counts.set(k, (counts.get(k) ?? 0) + c);
      }
    let best = '',
      bc = 1;
    for (const [k, c] of counts) if (c > bc || (c === bc && best !== '' && k < best)) [best, bc] = [k, c];
    if (!best) break;
    const [a, b] = best.split('\u0000') as [string, string];
    merges.push([a, b]);
    for (const q of seqs) {
      const s: string[] = [];
      for (let i = 0; i < q.s.length; i++) {
        if (i + 1 < q.s.length && q.s[i] === a && q.s[i + 1] === b) {
          s.push(a + b);
          i++;
        } else s.push(q.s[i]!);
      }
      q.s = s;
    }
  }
  return merges;
}

function countWords(texts: string[], re: RegExp, map: (w: string) => string): Map<string, number> {
  const words = new Map<string, number>();
  for (const t of texts)
    for (const w of t.match(re) ?? []) {
      const k = map(w);
      words.set(k, (words.get(k) ?? 0) + 1);
    }
  return words;
}

const added = (id: number, content: string, special = true) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
const template = (single: string[], tokens: Record<string, number>) => ({
  type: 'TemplateProcessing',
  single: single.map((s) => (s === '$A' ? { Sequence: { id: 'A', type_id: 0 } } : { SpecialToken: { id: s, type_id: 0 } })),
  pair: [...single, ...single.filter((s) => s !== single[0])].map((s) =>
    s === '$A' ? { Sequence: { id: 'A', type_id: 0 } } : { SpecialToken: { id: s, type_id: 0 } },
  ),
  special_tokens: Object.fromEntries(Object.entries(tokens).map(([t, id]) => [t, { id: t, ids: [id], tokens: [t] }])),
});
const BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
const QWEN_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function byteLevel(kind: 'gpt2' | 'roberta' | 'llama3' | 'qwen2' | 'modernbert', texts: string[], merges: number): TokenizerFixture {
  const bc = byteChars();
  const enc = (w: string) => Array.from(new TextEncoder().encode(w), (b) => bc[b]!).join('');
  const words = countWords(texts, / ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+/gu, enc);
  const learnt = learnMerges(words, (w) => Array.from(w), merges);
  const specialsBefore = kind === 'roberta' ? ['<s>', '<pad>', '</s>', '<unk>'] : [];
  const vocab: Record<string, number> = {};
  for (const s of specialsBefore) vocab[s] = Object.keys(vocab).length;
  for (const ch of bc) vocab[ch] = Object.keys(vocab).length;
  for (const [a, b] of learnt) if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
  let next = Object.keys(vocab).length;
  const specials: Record<string, string[]> = {
    gpt2: ['<|endoftext|>'],
    roberta: ['<mask>'],
    llama3: ['<|begin_of_text|>', '<|end_of_text|>'],
    qwen2: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'],
    modernbert: ['|||IP_ADDRESS|||', '<|padding|>', '[UNK]', '[CLS]', '[SEP]', '[PAD]', '[MASK]'],
  };
  const addedTokens = specials[kind].map((t) => added(next++, t, t !== '|||IP_ADDRESS|||'));
  for (const s of specialsBefore) addedTokens.unshift(added(vocab[s]!, s));
  const id = (t: string) => addedTokens.find((a) => a.content === t)!.id;
  const json: Record<string, any> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens.sort((a, b) => a.id - b.id),
    normalizer: null,
    pre_tokenizer: BYTE_LEVEL,
    post_processor: { ...BYTE_LEVEL, trim_offsets: false },
    decoder: BYTE_LEVEL,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: kind === 'llama3' || kind === 'qwen2',
      vocab,
      merges: learnt.map(([a, b]) => `${a} ${b}`),
    },
  };
  let config: Record<string, any>;
  switch (kind) {
    case 'gpt2': // openai-community/gpt2
      config = {
        add_prefix_space: false,
        bos_token: '<|endoftext|>',
        eos_token: '<|endoftext|>',
        unk_token: '<|endoftext|>',
        model_max_length: 1024,
        tokenizer_class: 'GPT2Tokenizer',
      };
      break;
    case 'roberta': // FacebookAI/roberta-base
      json.post_processor = { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0], trim_offsets: true, add_prefix_space: false };
      config = {
        bos_token: '<s>',
        eos_token: '</s>',
        sep_token: '</s>',
        cls_token: '<s>',
        unk_token: '<unk>',
        pad_token: '<pad>',
        mask_token: '<mask>',
        model_max_length: 512,
        tokenizer_class: 'RobertaTokenizer',
      };
      break;
    case 'llama3': // meta-llama/Llama-3.2-1B: no pad token
      json.normalizer = null;
      json.pre_tokenizer = {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false },
          { ...BYTE_LEVEL, use_regex: false, trim_offsets: false },
        ],
      };
      json.post_processor = {
        type: 'Sequence',
        processors: [
          { ...BYTE_LEVEL, use_regex: false, trim_offsets: false },
          template(['<|begin_of_text|>', '$A'], { '<|begin_of_text|>': id('<|begin_of_text|>') }),
        ],
      };
      config = {
        bos_token: '<|begin_of_text|>',
        eos_token: '<|end_of_text|>',
        clean_up_tokenization_spaces: true,
        model_input_names: ['input_ids', 'attention_mask'],
        model_max_length: 131072,
        tokenizer_class: 'PreTrainedTokenizerFast',
      };
      break;
    case 'qwen2': // Qwen/Qwen2.5-0.5B
      json.normalizer = { type: 'NFC' };
      json.pre_tokenizer = {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: QWEN_SPLIT }, behavior: 'Isolated', invert: false },
          { ...BYTE_LEVEL, use_regex: false, trim_offsets: false },
        ],
      };
      json.post_processor = { ...BYTE_LEVEL, use_regex: false, trim_offsets: false };
      config = {
        bos_token: null,
        eos_token: '<|endoftext|>',
        pad_token: '<|endoftext|>',
        unk_token: null,
        errors: 'replace',
        split_special_tokens: false,
        model_max_length: 131072,
        tokenizer_class: 'Qwen2Tokenizer',
      };
      break;
    case 'modernbert': // answerdotai/ModernBERT-base
      json.post_processor = template(['[CLS]', '$A', '[SEP]'], { '[CLS]': id('[CLS]'), '[SEP]': id('[SEP]') });
      config = {
        clean_up_tokenization_spaces: true,
        cls_token: '[CLS]',
        mask_token: '[MASK]',
        model_input_names: ['input_ids', 'attention_mask'],
        model_max_length: 8192,
        pad_token: '[PAD]',
        sep_token: '[SEP]',
        unk_token: '[UNK]',
        tokenizer_class: 'PreTrainedTokenizerFast',
      };
      break;
  }
  return { json, config, vocabSize: next };
}

function sentencePieceBpe(kind: 'llama2' | 'mistral' | 'gemma', texts: string[], merges: number): TokenizerFixture {
  const specials = kind === 'gemma' ? ['<pad>', '<eos>', '<bos>', '<unk>'] : ['<unk>', '<s>', '</s>'];
  const vocab: Record<string, number> = {};
  for (const s of specials) vocab[s] = Object.keys(vocab).length;
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = Object.keys(vocab).length;
  const prepend = kind !== 'gemma';
  const words = countWords(
    texts.map((t) => (prepend ? ' ' : '') + t),
    / ?[^ ]+/gu,
    (w) => w.replace(/ /g, '\u2581'),
  );
  // Characters seen at least 3 times get a piece; rarer ones fall back to bytes.
  const chars = new Map<string, number>();
  for (const [w, c] of words) for (const ch of w) chars.set(ch, (chars.get(ch) ?? 0) + c);
  for (const [ch, c] of [...chars].sort((a, b) => b[1] - a[1])) if (c >= 3 && !(ch in vocab)) vocab[ch] = Object.keys(vocab).length;
  const learnt = learnMerges(words, (w) => Array.from(w), merges).filter(([a, b]) => a! in vocab && b! in vocab);
  for (const [a, b] of learnt) if (!(a! + b! in vocab)) vocab[a! + b!] = Object.keys(vocab).length;
  const size = Object.keys(vocab).length;
  const bos = kind === 'gemma' ? '<bos>' : '<s>';
  const json: Record<string, any> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((s) => added(vocab[s]!, s)),
    normalizer: prepend
      ? {
          type: 'Sequence',
          normalizers: [
            { type: 'Prepend', prepend: '\u2581' },
            { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
          ],
        }
      : { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
    pre_tokenizer: null,
    post_processor: template([bos, '$A'], { [bos]: vocab[bos]! }),
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(prepend ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: learnt.map(([a, b]) => `${a} ${b}`),
    },
  };
  const config: Record<string, any> =
    kind === 'gemma'
      ? {
          add_bos_token: true,
          add_eos_token: false,
          bos_token: '<bos>',
          eos_token: '<eos>',
          pad_token: '<pad>',
          unk_token: '<unk>',
          padding_side: 'left',
          model_max_length: 1000000000000000019884624838656,
          spaces_between_special_tokens: false,
          tokenizer_class: 'GemmaTokenizer',
        }
      : {
          add_bos_token: true,
          add_eos_token: false,
          bos_token: '<s>',
          eos_token: '</s>',
          unk_token: '<unk>',
          pad_token: null,
          legacy: false,
          model_max_length: kind === 'mistral' ? 1000000000000000019884624838656 : 4096,
          padding_side: kind === 'llama2' ? 'right' : 'left',
          tokenizer_class: 'LlamaTokenizer',
        };
  return { json, config, vocabSize: size };
}

function unigram(texts: string[], pieces: number): TokenizerFixture {
  const words = countWords(texts, /[^ ]+/gu, (w) => `\u2581${w}`);
  const subs = new Map<string, number>();
  for (const [w, c] of words) {
    const cps = Array.from(w);
    for (let i = 0; i < cps.length; i++)
      for (let j = i + 1; j <= Math.min(cps.length, i + 8); j++) {
        const s = cps.slice(i, j).join('');
        subs.set(s, (subs.get(s) ?? 0) + c);
      }
  }
  const singles = [...subs].filter(([s]) => Array.from(s).length === 1);
  const multi = [...subs]
    .filter(([s, c]) => Array.from(s).length > 1 && c >= 4)
    .sort((a, b) => b[1] * Array.from(b[0]).length - a[1] * Array.from(a[0]).length)
    .slice(0, pieces);
  const total = [...subs.values()].reduce((a, b) => a + b, 0);
  const vocab: [string, number][] = [
    ['<s>', 0],
    ['<pad>', 0],
    ['</s>', 0],
    ['<unk>', 0],
  ];
  for (const [s, c] of [...singles, ...multi]) vocab.push([s, Math.log(c / total)]);
  vocab.push(['<mask>', 0]);
  const json: Record<string, any> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [added(0, '<s>'), added(1, '<pad>'), added(2, '</s>'), added(3, '<unk>'), added(vocab.length - 1, '<mask>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }] },
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
    post_processor: template(['<s>', '$A', '</s>'], { '<s>': 0, '</s>': 2 }),
    decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
    model: { type: 'Unigram', unk_id: 3, vocab, byte_fallback: false },
  };
  const config = {
    bos_token: '<s>',
    eos_token: '</s>',
    sep_token: '</s>',
    cls_token: '<s>',
    unk_token: '<unk>',
    pad_token: '<pad>',
    mask_token: '<mask>',
    model_max_length: 512,
    tokenizer_class: 'XLMRobertaTokenizer',
  };
  return { json, config, vocabSize: vocab.length };
}

function wordPiece(kind: 'bert' | 'distilbert', texts: string[], wordsN: number): TokenizerFixture {
  const words = countWords(
    texts.map((t) =>
      t
        .toLowerCase()
        .normalize('NFD')
        .replace(/\p{Mn}/gu, ''),
    ),
    /\p{L}+|\p{N}+|[^\s\p{L}\p{N}]/gu,
    (w) => w,
  );
  const vocab: Record<string, number> = {};
  for (const s of ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']) vocab[s] = Object.keys(vocab).length;
  const chars = new Set<string>();
  for (const w of words.keys()) for (const ch of w) chars.add(ch);
  for (const ch of [...chars].sort()) {
    vocab[ch] = Object.keys(vocab).length;
    vocab[`##${ch}`] = Object.keys(vocab).length;
  }
  const top = [...words].filter(([w]) => Array.from(w).length > 1).sort((a, b) => b[1] - a[1]);
  for (const [w] of top.slice(0, wordsN)) vocab[w] = Object.keys(vocab).length;
  // Frequent endings as continuation pieces, so that unseen words split into word + ##suffix.
  const ends = new Map<string, number>();
  for (const [w, c] of words) for (const n of [2, 3, 4]) if (w.length > n + 1) ends.set(w.slice(-n), (ends.get(w.slice(-n)) ?? 0) + c);
  for (const [e] of [...ends].sort((a, b) => b[1] - a[1]).slice(0, 40)) if (!(`##${e}` in vocab)) vocab[`##${e}`] = Object.keys(vocab).length;
  const json: Record<string, any> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((s) => added(vocab[s]!, s)),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: template(['[CLS]', '$A', '[SEP]'], { '[CLS]': 2, '[SEP]': 3 }),
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
  const config = {
    cls_token: '[CLS]',
    do_lower_case: true,
    mask_token: '[MASK]',
    model_max_length: 512,
    pad_token: '[PAD]',
    sep_token: '[SEP]',
    strip_accents: null,
    tokenize_chinese_chars: true,
    unk_token: '[UNK]',
    tokenizer_class: kind === 'bert' ? 'BertTokenizer' : 'DistilBertTokenizer',
  };
  return { json, config, vocabSize: Object.keys(vocab).length };
}

/** A fixture of this kind learnt from `texts`. */
export function tokenizerFixture(kind: FixtureKind, texts: string[]): TokenizerFixture {
  switch (kind) {
    case 'gpt2':
    case 'roberta':
    case 'llama3':
    case 'qwen2':
    case 'modernbert':
      return byteLevel(kind, texts, 200);
    case 'llama2':
    case 'mistral':
    case 'gemma':
      return sentencePieceBpe(kind, texts, 200);
    case 'xlm-roberta':
      return unigram(texts, 200);
    case 'bert':
    case 'distilbert':
      return wordPiece(kind, texts, 150);
  }
}

export function writeTokenizerFixture(dir: string, f: TokenizerFixture): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(f.json));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(f.config));
}
