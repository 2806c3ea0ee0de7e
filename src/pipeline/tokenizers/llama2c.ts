// The llama2.c tokenizer file (tokenizer.bin / tok512.bin): int32 max_token_length, then per id
// float32 score, int32 byte length, raw UTF-8 bytes. `encode` is run.c's encode() (BOS, dummy
// " " prefix, one piece per code point with byte fallback <0xNN> = byte + 3, then repeatedly merge
// the adjacent pair whose concatenation is the best-scoring piece). `toTokenizerJson` writes the
// same tokenizer as a Hugging Face tokenizer.json (BPE with byte fallback, merges ranked by the
// merged piece's score) so that variants carry the one tokenizer format the server reads.
import { readFileSync } from 'node:fs';

export const METASPACE = '\u2581';

export interface Llama2cVocab {
  pieces: string[];
  scores: number[];
  maxTokenLength: number;
}

export function readLlama2cTokenizer(file: string, vocabSize: number): Llama2cVocab {
  const b = readFileSync(file);
  let off = 4;
  const maxTokenLength = b.readInt32LE(0);
  const pieces: string[] = [],
    scores: number[] = [];
  for (let i = 0; i < vocabSize; i++) {
    if (off + 8 > b.length) throw new Error(`${file}: ends after ${i} of ${vocabSize} pieces`);
    scores.push(b.readFloatLE(off));
    const n = b.readInt32LE(off + 4);
    pieces.push(b.subarray(off + 8, off + 8 + n).toString('utf8'));
    off += 8 + n;
  }
  return { pieces, scores, maxTokenLength };
}

export class Llama2cTokenizer {
  private readonly lookup = new Map<string, number>();
  constructor(readonly vocab: Llama2cVocab) {
    vocab.pieces.forEach((p, i) => {
      if (!this.lookup.has(p)) this.lookup.set(p, i);
    });
  }

  /** run.c encode(text, bos, eos). */
  encode(text: string, bos = true, eos = false): number[] {
    const tokens: number[] = [];
    if (bos) tokens.push(1);
    if (text !== '') {
      const dummy = this.lookup.get(' ');
      if (dummy === undefined) throw new Error('tokenizer has no " " piece');
      tokens.push(dummy);
    }
    for (const ch of text) {
      const id = this.lookup.get(ch);
      if (id !== undefined) tokens.push(id);
      else for (const byte of Buffer.from(ch, 'utf8')) tokens.push(byte + 3);
    }
    for (;;) {
      let best = -1e10,
        bestId = -1,
        bestIdx = -1;
      for (let i = 0; i + 1 < tokens.length; i++) {
        const id = this.lookup.get(this.vocab.pieces[tokens[i]!]! + this.vocab.pieces[tokens[i + 1]!]!);
        if (id !== undefined && this.vocab.scores[id]! > best) {
          best = this.vocab.scores[id]!;
          bestId = id;
          bestIdx = i;
        }
      }
      if (bestIdx < 0) break;
      tokens.splice(bestIdx, 2, bestId);
    }
    if (eos) tokens.push(2);
    return tokens;
  }

  /** run.c decode of one piece after `prev` (strips the leading space after BOS; <0xNN> -> byte). */
  decodePiece(prev: number, id: number): Buffer {
    let piece = this.vocab.pieces[id]!;
    if (prev === 1 && piece.startsWith(' ')) piece = piece.slice(1);
    const m = /^<0x([0-9A-F]{2})>$/.exec(piece);
    return m ? Buffer.from([parseInt(m[1]!, 16)]) : Buffer.from(piece, 'utf8');
  }

  /**
   * A Hugging Face tokenizer.json equivalent to encode(text, false, false): Metaspace-style
   * normaliser (prepend "▁", spaces -> "▁"), BPE with byte fallback, no special tokens added
   * (a classifier's prompt template carries BOS).
   */
  toTokenizerJson(): Record<string, unknown> {
    const { pieces, scores } = this.vocab;
    const meta = (p: string) => p.replace(/ /g, METASPACE);
    const vocab: Record<string, number> = {};
    pieces.forEach((p, i) => {
      const key = i <= 2 ? ['<unk>', '<s>', '</s>'][i]! : meta(p);
      if (!(key in vocab)) vocab[key] = i;
    });
    // Every split of a merged piece into two pieces of the vocabulary is a merge, ranked by the
    // merged piece's score (best first), as HF's LlamaConverter does for SentencePiece BPE.
    const merges: [number, string, string][] = [];
    pieces.forEach((p, id) => {
      if (id < 3 || /^<0x[0-9A-F]{2}>$/.test(p)) return;
      const chars = [...p];
      for (let k = 1; k < chars.length; k++) {
        const a = chars.slice(0, k).join(''),
          b = chars.slice(k).join('');
        const ia = this.lookup.get(a),
          ib = this.lookup.get(b);
        if (ia !== undefined && ib !== undefined && ia > 2 && ib > 2) merges.push([id, meta(a), meta(b)]);
      }
    });
    merges.sort((x, y) => scores[y[0]]! - scores[x[0]]! || x[0] - y[0]);
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [
        { id: 0, content: '<unk>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
        { id: 1, content: '<s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
        { id: 2, content: '</s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      ],
      normalizer: {
        type: 'Sequence',
        normalizers: [
          { type: 'Prepend', prepend: METASPACE },
          { type: 'Replace', pattern: { String: ' ' }, content: METASPACE },
        ],
      },
      pre_tokenizer: null,
      post_processor: null,
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: METASPACE }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          { type: 'Strip', content: ' ', start: 1, stop: 0 },
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
        merges: merges.map(([, a, b]) => [a, b]),
      },
    };
  }

  tokenizerConfigJson(maxLength: number): Record<string, unknown> {
    return {
      tokenizer_class: 'LlamaTokenizer',
      bos_token: '<s>',
      eos_token: '</s>',
      unk_token: '<unk>',
      pad_token: '<unk>',
      add_bos_token: false,
      add_eos_token: false,
      padding_side: 'right',
      model_max_length: maxLength,
      legacy: false,
    };
  }
}
