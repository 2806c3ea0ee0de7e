// The token side of a transformer base: the tokenizer files its variants ship (tokenizer.json
// with nothing added: the graph itself adds BOS/[CLS], the prompt template and [SEP]), the
// template's ids around the text, and the one token per label word of a label-words head.
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HfCheckpoint } from '../checkpoints/hf.js';
import { Llama2cCheckpoint } from '../checkpoints/llama2c.js';
import { Llama2cTokenizer, readLlama2cTokenizer } from '../tokenizers/llama2c.js';
import type { PromptTemplateIds, TransformerCheckpoint } from '../architectures/transformer.js';
import { loadTokenizer, type TextTokenizer } from '../../tokenizer.js';
import { BaseError } from './base.js';
import { choosePadToken } from '../tokenizers/hf-special.js';

export interface VariantTokenizer {
  /** tokenizer.json and tokenizer_config.json of the variants (no special tokens added: the template carries BOS). */
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

export function llama2cVariantTokenizer(ckpt: Llama2cCheckpoint, tokenizerFile: string, maxLength: number): VariantTokenizer {
  const tok = new Llama2cTokenizer(readLlama2cTokenizer(tokenizerFile, ckpt.config.vocab));
  return { tokenizerJson: tok.toTokenizerJson(), tokenizerConfig: tok.tokenizerConfigJson(maxLength) };
}

export function hfVariantTokenizer(ckpt: HfCheckpoint, maxLength: number): VariantTokenizer {
  if (!ckpt.tokenizerPath)
    throw new BaseError(
      `--base ${ckpt.dir}: no tokenizer.json; copy the tokenizer.json (and tokenizer_config.json) of the model's repository into the directory`,
    );
  const tokenizerJson = JSON.parse(readFileSync(ckpt.tokenizerPath, 'utf8')) as Record<string, unknown>;
  // The graph adds BOS and the template around the text: the tokenizer adds nothing.
  tokenizerJson.post_processor = null;
  tokenizerJson.truncation = null;
  tokenizerJson.padding = null;
  const pre = tokenizerJson.pre_tokenizer as Record<string, unknown> | null;
  // Byte-level BPE (gpt2, opt): the text follows the template's words, so it starts with a space.
  if (pre && pre.type === 'ByteLevel') pre.add_prefix_space = true;
  const cfgPath = join(ckpt.source, 'tokenizer_config.json');
  const tokenizerConfig = existsSync(cfgPath) ? (JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>) : {};
  for (const k of Object.keys(tokenizerConfig)) if (k.startsWith('auto_map') || k === 'chat_template') delete tokenizerConfig[k];
  Object.assign(tokenizerConfig, { padding_side: 'right', model_max_length: maxLength, add_bos_token: false, add_eos_token: false });
  // No pad token (Llama, Mistral, GPT-2): choose one and write it into the variant's tokenizer_config.json.
  const pad = choosePadToken(tokenizerJson, tokenizerConfig);
  if (pad && tokenizerConfig.pad_token !== pad.token) tokenizerConfig.pad_token = pad.token;
  return { tokenizerJson, tokenizerConfig };
}

/** The tokenizer the server will load from these files (loaded through a temporary directory, as the server does). */
export async function tokenizerFromFiles(tokenizerText: string, tokenizerConfigText: string): Promise<TextTokenizer> {
  const dir = await mkdtemp(join(tmpdir(), 'slim-tok-'));
  try {
    await writeFile(join(dir, 'tokenizer.json'), tokenizerText);
    await writeFile(join(dir, 'tokenizer_config.json'), tokenizerConfigText);
    return await loadTokenizer(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The checkpoint's id in the manifest: where it came from. */
export function checkpointSource(ckpt: TransformerCheckpoint): string {
  return ckpt instanceof Llama2cCheckpoint ? `llama2c:${resolve(ckpt.source)}` : ckpt.source;
}

/** Token ids of a piece of template or a label word, without special tokens. */
function pieceIds(tokenizer: TextTokenizer, text: string, special: Set<number>): number[] {
  return tokenizer.encode(text).filter((id) => !special.has(id));
}

/** "Review: {text}\nSentiment:" -> its text before and after {text}; a UsageError-worthy message otherwise. */
export function splitTemplate(template: string): { head: string; tail: string } | string {
  const at = template.indexOf('{text}');
  if (at < 0 || template.indexOf('{text}', at + 1) >= 0) return `--template must contain {text} exactly once (got ${JSON.stringify(template)})`;
  return { head: template.slice(0, at).trimEnd(), tail: template.slice(at + '{text}'.length) };
}

/** The prompt's ids around {text}: BOS (decoders that have one) + head, and the tail. */
export function templateIds(
  tokenizer: TextTokenizer,
  ckpt: TransformerCheckpoint,
  template: string | undefined,
  piece: (id: number) => string = () => '',
  /** bert: [CLS] first and [SEP] last, as its tokenizer's post-processor would add them. */
  encoderMarks?: { cls: number; sep: number },
): PromptTemplateIds {
  const c = ckpt.config;
  const special = new Set([c.bosId, c.eosId, encoderMarks?.cls, encoderMarks?.sep].filter((x): x is number => x !== undefined));
  const bos = encoderMarks ? [encoderMarks.cls] : (c.prependBos ?? (c.arch === 'llama' || c.arch === 'opt')) && c.bosId !== undefined ? [c.bosId] : [];
  const eos = encoderMarks ? [encoderMarks.sep] : [];
  if (template === undefined) return { prefix: bos, suffix: eos, padId: tokenizer.padId };
  const parts = splitTemplate(template);
  if (typeof parts === 'string') throw new BaseError(parts);
  const { head, tail } = parts;
  let suffix = tail ? pieceIds(tokenizer, tail, special) : [];
  // SentencePiece-style ("▁" prepended) and byte-level with add_prefix_space ("Ġ") tokenizers
  // start every encoding with a space; the tail continues the text, so drop a lone leading one.
  if (suffix.length > 1 && !/^\s/.test(tail) && ['\u2581', '\u0120', ' '].includes(piece(suffix[0]!))) suffix = suffix.slice(1);
  return { prefix: [...bos, ...(head ? pieceIds(tokenizer, head, special) : [])], suffix: [...suffix, ...eos], padId: tokenizer.padId };
}

/** One token id per label word; a word that is several tokens is an error naming its pieces. */
export function labelWordIds(tokenizer: TextTokenizer, ckpt: TransformerCheckpoint, words: readonly string[], decode: (id: number) => string): number[] {
  const c = ckpt.config;
  const special = new Set([c.bosId, c.eosId].filter((x): x is number => x !== undefined));
  return words.map((w) => {
    const ids = pieceIds(tokenizer, w, special);
    if (ids.length !== 1) {
      throw new BaseError(
        `label word ${JSON.stringify(w)} is ${ids.length} tokens (${ids.map((id) => `${JSON.stringify(decode(id))}=${id}`).join(', ')}); the label-words head needs one token per word: choose another word with --verbalizer`,
      );
    }
    return ids[0]!;
  });
}

function vocabOf(json: Record<string, unknown>): Record<string, number> | [string, number][] {
  return ((json.model as Record<string, unknown> | undefined)?.vocab ?? {}) as Record<string, number> | [string, number][];
}

/** Token id -> its piece in tokenizer.json's vocabulary ("#id" when absent). */
export function tokenString(json: Record<string, unknown>): (id: number) => string {
  const vocab = vocabOf(json);
  const byId = new Map<number, string>();
  if (Array.isArray(vocab)) vocab.forEach(([p], i) => byId.set(i, p));
  else for (const [p, id] of Object.entries(vocab)) byId.set(id, p);
  return (id) => byId.get(id) ?? `#${id}`;
}

/** Piece (or added token) -> its id in tokenizer.json. */
export function tokenId(json: Record<string, unknown>): (piece: string) => number | undefined {
  const vocab = vocabOf(json);
  const map = new Map<string, number>(Array.isArray(vocab) ? vocab.map(([p], i) => [p, i] as [string, number]) : Object.entries(vocab));
  for (const t of (json.added_tokens ?? []) as { id: number; content: string }[]) map.set(t.content, t.id);
  return (piece) => map.get(piece);
}
