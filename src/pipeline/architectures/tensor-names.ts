// The tensor-name mapping most Hugging Face checkpoints fit: a few tensors outside the blocks by
// exact name, and in each block a table of norms (kept as they are) and of nn.Linear layers
// (weights stored [out, in], so transposed). A family with fused or sliced tensors (gpt2's
// c_attn, phi3's qkv_proj, modernbert's Wqkv) maps those itself and may fall back to this.
// Each family's file (bert.ts, llama.ts, ...) holds its own table: the place to add a family.
import type { TensorSource, TransformerConfig } from './transformer.js';

export interface TensorNames {
  /** Our names outside the blocks (embed.tokens, final_norm.weight, ...) -> the checkpoint's. */
  outside: Record<string, TensorSource>;
  /** The checkpoint's name of block i, e.g. `encoder.layer.${i}`. */
  block: (i: string) => string;
  /** Our norms in a block (attn_norm, ffn_norm, ...) -> the checkpoint's. */
  norms: Record<string, string>;
  /** Our linear layers in a block (attn.q, ..., ffn.down) -> the checkpoint's nn.Linear. */
  linears: Record<string, string>;
  /** RMSNorm has no bias: a norm's `.bias` maps to nothing (default: LayerNorm, weight and bias). */
  normWeightOnly?: boolean;
}

const BLOCK_TENSOR = /^blocks\.(\d+)\.(.+)\.(weight|bias)$/;

/** Where our parameter `name` lives in the checkpoint, or undefined when the table has no such tensor. */
export function mapTensorName(names: TensorNames, name: string): TensorSource | undefined {
  if (Object.hasOwn(names.outside, name)) return names.outside[name];
  const m = BLOCK_TENSOR.exec(name);
  if (!m) return undefined;
  const [, i, part, kind] = m as unknown as [string, string, string, 'weight' | 'bias'];
  if (Object.hasOwn(names.norms, part)) {
    return kind === 'weight' || !names.normWeightOnly ? { name: `${names.block(i)}.${names.norms[part]}.${kind}` } : undefined;
  }
  if (Object.hasOwn(names.linears, part)) return { name: `${names.block(i)}.${names.linears[part]}.${kind}`, transpose: kind === 'weight' };
  return undefined;
}

/** The decoders' LM head: lm_head.weight unless tie_word_embeddings reuses the token embeddings. */
export const lmHeadUnlessTied = (c: TransformerConfig): string | undefined => (c.tiedEmbeddings ? undefined : 'lm_head.weight');
