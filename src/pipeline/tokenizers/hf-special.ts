// What a Hugging Face tokenizer.json / tokenizer_config.json pair says about special tokens,
// read without running it: which kind of model it is (for reports and errors), and which token
// pads. Llama 2/3, Mistral and GPT-2 ship no pad token; the mask hides padding so any id would
// do, but the choice must be the same in build and serve, so the build writes it into the
// variant's tokenizer_config.json (pad_token) and both load it from there.

export type TokenizerKind = 'byte-level BPE' | 'SentencePiece BPE, byte fallback' | 'BPE' | 'Unigram' | 'WordPiece' | 'WordLevel';

/** The tokenizer.json model kind as the docs name it. */
export function tokenizerKind(json: Record<string, unknown>): TokenizerKind {
  const model = (json.model ?? {}) as Record<string, unknown>;
  const type = String((model.type as string | undefined) ?? (Array.isArray(model.vocab) ? 'Unigram' : model.merges ? 'BPE' : 'WordPiece'));
  if (type === 'Unigram' || type === 'WordPiece' || type === 'WordLevel') return type;
  if (JSON.stringify(json.pre_tokenizer ?? null).includes('"ByteLevel"')) return 'byte-level BPE';
  return model.byte_fallback === true ? 'SentencePiece BPE, byte fallback' : 'BPE';
}

/** A token string of tokenizer_config.json (a string, or an AddedToken object {content}). */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** Token string -> id over the vocabulary and the added tokens. */
export function tokenIds(json: Record<string, unknown>): Map<string, number> {
  const model = (json.model ?? {}) as Record<string, unknown>;
  const vocab = (model.vocab ?? {}) as Record<string, number> | [string, number][];
  const map = new Map<string, number>(Array.isArray(vocab) ? vocab.map(([p], i) => [p, i] as [string, number]) : Object.entries(vocab));
  for (const t of (json.added_tokens ?? []) as { id: number; content: string }[]) map.set(t.content, t.id);
  return map;
}

export interface PadChoice {
  token: string;
  id: number;
  /** Which tokenizer_config.json entry supplied it. */
  from: 'pad_token' | 'eos_token' | 'unk_token' | 'bos_token';
}

/**
 * The pad token: tokenizer_config.json's pad_token, else (as transformers does when told
 * `tokenizer.pad_token = tokenizer.eos_token`, the usual recipe for Llama / Mistral / GPT-2) the
 * EOS token, else UNK, else BOS. Null when the tokenizer names none of them.
 */
export function choosePadToken(json: Record<string, unknown>, config: Record<string, unknown>): PadChoice | null {
  const ids = tokenIds(json);
  for (const from of ['pad_token', 'eos_token', 'unk_token', 'bos_token'] as const) {
    const token = tokenString(config[from]);
    if (token !== undefined && ids.has(token)) return { token, id: ids.get(token)!, from };
  }
  return null;
}
