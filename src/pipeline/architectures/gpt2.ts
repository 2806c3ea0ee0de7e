// GPT-2 (HF model_type "gpt2"): pre-LN, learned positions, GELU (tanh approximation, HF
// gelu_new), Conv1D weights already stored [in, out], fused q/k/v in attn.c_attn, LM head tied.
import type { HfArchitecture, TransformerConfig } from './transformer.js';
import { num } from './transformer.js';

export const gpt2: HfArchitecture = {
  modelTypes: ['gpt2'],
  prefixes: ['', 'transformer.'],
  probe: 'wte.weight',
  config(hf) {
    const W = num(hf, 'n_embd'),
      heads = num(hf, 'n_head');
    const act = (hf.activation_function as string | undefined) ?? 'gelu_new';
    if (!['gelu_new', 'gelu_pytorch_tanh', 'gelu', 'relu'].includes(act)) throw new Error(`gpt2: activation_function ${act} is not supported`);
    return {
      arch: 'gpt2',
      layers: num(hf, 'n_layer'),
      hidden: W,
      heads,
      kvHeads: heads,
      headDim: W / heads,
      ffn: typeof hf.n_inner === 'number' ? hf.n_inner : 4 * W,
      vocab: num(hf, 'vocab_size'),
      maxPositions: num(hf, 'n_positions', 1024),
      positionOffset: 0,
      norm: 'layer',
      eps: num(hf, 'layer_norm_epsilon', 1e-5),
      postNorm: false,
      act: act === 'gelu' ? 'gelu' : act === 'relu' ? 'relu' : 'gelu_tanh',
      gated: false,
      positions: 'learned',
      ropeTheta: 0,
      causal: true,
      finalNorm: true,
      embedNorm: false,
      tokenTypes: false,
      tiedEmbeddings: true,
      bosId: num(hf, 'bos_token_id', 50256),
      eosId: num(hf, 'eos_token_id', 50256),
    };
  },
  source(c: TransformerConfig, name) {
    const W = c.hidden;
    if (name === 'embed.tokens') return { name: 'wte.weight' };
    if (name === 'embed.positions') return { name: 'wpe.weight' };
    if (name.startsWith('final_norm.')) return { name: `ln_f.${name.split('.')[1]}` };
    const m = /^blocks\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
    if (!m) return undefined;
    const [, i, part, kind] = m;
    const h = `h.${i}`;
    const qkv: Record<string, [number, number]> = { 'attn.q': [0, W], 'attn.k': [W, 2 * W], 'attn.v': [2 * W, 3 * W] };
    if (part! in qkv) return { name: `${h}.attn.c_attn.${kind}`, columns: qkv[part!] };
    const map: Record<string, string> = { attn_norm: 'ln_1', ffn_norm: 'ln_2', 'attn.o': 'attn.c_proj', 'ffn.up': 'mlp.c_fc', 'ffn.down': 'mlp.c_proj' };
    return map[part!] ? { name: `${h}.${map[part!]}.${kind}` } : undefined;
  },
  lmHead: () => undefined,
};
