// Random checkpoints in Hugging Face layout (config.json + safetensors, optionally sharded), for
// tests, memory measurements and load tests that need a model of a real architecture's shape
// without downloading one. Tensors are generated and written one at a time, so writing a
// multi-GB checkpoint needs memory for one tensor.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32, randomNormal } from '../random.js';
import { writeSafetensors } from './safetensors.js';

export type RandomArch =
  | 'gpt2'
  | 'opt'
  | 'llama'
  | 'bert'
  | 'qwen2'
  | 'qwen3'
  | 'mistral'
  | 'gemma2'
  | 'gemma3_text'
  | 'gemma3'
  | 'phi3'
  | 'roberta'
  | 'xlm-roberta'
  | 'distilbert'
  | 'modernbert';

export interface RandomCheckpointOptions {
  arch: RandomArch;
  layers: number;
  hidden: number;
  heads: number;
  /** llama: num_key_value_heads (GQA); default heads. */
  kvHeads?: number;
  /** Decoders with an explicit head_dim (qwen3, gemma); default hidden / heads. */
  headDim?: number;
  ffn?: number;
  vocab: number;
  maxPositions?: number;
  dtype?: 'F32' | 'F16' | 'BF16';
  seed?: number;
  /** Standard deviation of weights (norm weights are 1 + std * noise, biases std * noise). */
  std?: number;
  /** Split into this many shards with a model.safetensors.index.json. */
  shards?: number;
  /** llama: untied lm_head (default true); opt: always tied. */
  untiedHead?: boolean;
  /** Extra config.json fields (e.g. do_layer_norm_before: false). */
  extraConfig?: Record<string, unknown>;
  /** 'normal' (default): seeded Gaussian; 'fast': a cheap hash pattern of the same scale, for multi-GB files. */
  fill?: 'normal' | 'fast';
}

export interface WrittenCheckpoint {
  dir: string;
  config: Record<string, unknown>;
  tensors: { name: string; dims: number[] }[];
  bytes: number;
}

/** HF tensor names and shapes of a checkpoint of this shape. */
export function hfTensorPlan(o: RandomCheckpointOptions): { config: Record<string, unknown>; tensors: { name: string; dims: number[] }[] } {
  const W = o.hidden,
    H = o.heads,
    L = o.layers,
    V = o.vocab;
  const P = o.maxPositions ?? 128;
  const t: { name: string; dims: number[] }[] = [];
  const add = (name: string, ...dims: number[]) => t.push({ name, dims });
  if (o.arch === 'gpt2') {
    const F = o.ffn ?? 4 * W;
    const config = {
      model_type: 'gpt2',
      architectures: ['GPT2LMHeadModel'],
      n_embd: W,
      n_head: H,
      n_layer: L,
      n_positions: P,
      n_inner: F,
      vocab_size: V,
      layer_norm_epsilon: 1e-5,
      activation_function: 'gelu_new',
      bos_token_id: V - 1,
      eos_token_id: V - 1,
      ...o.extraConfig,
    };
    add('transformer.wte.weight', V, W);
    add('transformer.wpe.weight', P, W);
    for (let i = 0; i < L; i++) {
      const h = `transformer.h.${i}`;
      add(`${h}.ln_1.weight`, W);
      add(`${h}.ln_1.bias`, W);
      add(`${h}.attn.c_attn.weight`, W, 3 * W);
      add(`${h}.attn.c_attn.bias`, 3 * W);
      add(`${h}.attn.c_proj.weight`, W, W);
      add(`${h}.attn.c_proj.bias`, W);
      add(`${h}.ln_2.weight`, W);
      add(`${h}.ln_2.bias`, W);
      add(`${h}.mlp.c_fc.weight`, W, F);
      add(`${h}.mlp.c_fc.bias`, F);
      add(`${h}.mlp.c_proj.weight`, F, W);
      add(`${h}.mlp.c_proj.bias`, W);
    }
    add('transformer.ln_f.weight', W);
    add('transformer.ln_f.bias', W);
    return { config, tensors: t };
  }
  if (o.arch === 'opt') {
    const F = o.ffn ?? 4 * W;
    const config = {
      model_type: 'opt',
      architectures: ['OPTForCausalLM'],
      hidden_size: W,
      word_embed_proj_dim: W,
      num_attention_heads: H,
      num_hidden_layers: L,
      ffn_dim: F,
      max_position_embeddings: P,
      vocab_size: V,
      do_layer_norm_before: true,
      activation_function: 'relu',
      pad_token_id: 1,
      bos_token_id: 2,
      eos_token_id: 2,
      ...o.extraConfig,
    };
    const d = 'model.decoder';
    add(`${d}.embed_tokens.weight`, V, W);
    add(`${d}.embed_positions.weight`, P + 2, W);
    for (let i = 0; i < L; i++) {
      const l = `${d}.layers.${i}`;
      for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
        add(`${l}.self_attn.${p}.weight`, W, W);
        add(`${l}.self_attn.${p}.bias`, W);
      }
      add(`${l}.self_attn_layer_norm.weight`, W);
      add(`${l}.self_attn_layer_norm.bias`, W);
      add(`${l}.fc1.weight`, F, W);
      add(`${l}.fc1.bias`, F);
      add(`${l}.fc2.weight`, W, F);
      add(`${l}.fc2.bias`, W);
      add(`${l}.final_layer_norm.weight`, W);
      add(`${l}.final_layer_norm.bias`, W);
    }
    if ((config as Record<string, unknown>).do_layer_norm_before !== false) {
      add(`${d}.final_layer_norm.weight`, W);
      add(`${d}.final_layer_norm.bias`, W);
    }
    return { config, tensors: t };
  }
  if (o.arch === 'llama') {
    const F = o.ffn ?? Math.round((8 * W) / 3);
    const KV = o.kvHeads ?? H,
      hd = W / H;
    const untied = o.untiedHead ?? true;
    const config = {
      model_type: 'llama',
      architectures: ['LlamaForCausalLM'],
      hidden_size: W,
      num_attention_heads: H,
      num_key_value_heads: KV,
      num_hidden_layers: L,
      intermediate_size: F,
      max_position_embeddings: P,
      vocab_size: V,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      hidden_act: 'silu',
      tie_word_embeddings: !untied,
      bos_token_id: 1,
      eos_token_id: 2,
      ...o.extraConfig,
    };
    add('model.embed_tokens.weight', V, W);
    for (let i = 0; i < L; i++) {
      const l = `model.layers.${i}`;
      add(`${l}.input_layernorm.weight`, W);
      add(`${l}.self_attn.q_proj.weight`, H * hd, W);
      add(`${l}.self_attn.k_proj.weight`, KV * hd, W);
      add(`${l}.self_attn.v_proj.weight`, KV * hd, W);
      add(`${l}.self_attn.o_proj.weight`, W, H * hd);
      add(`${l}.post_attention_layernorm.weight`, W);
      add(`${l}.mlp.gate_proj.weight`, F, W);
      add(`${l}.mlp.up_proj.weight`, F, W);
      add(`${l}.mlp.down_proj.weight`, W, F);
    }
    add('model.norm.weight', W);
    if (untied) add('lm_head.weight', V, W);
    return { config, tensors: t };
  }
  const newer = newerFamilyPlan(o, add, t);
  if (newer) return { config: newer, tensors: t };
  const F = o.ffn ?? 4 * W;
  const config = {
    model_type: 'bert',
    architectures: ['BertModel'],
    hidden_size: W,
    num_attention_heads: H,
    num_hidden_layers: L,
    intermediate_size: F,
    max_position_embeddings: P,
    vocab_size: V,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    hidden_act: 'gelu',
    pad_token_id: 0,
    ...o.extraConfig,
  };
  add('bert.embeddings.word_embeddings.weight', V, W);
  add('bert.embeddings.position_embeddings.weight', P, W);
  add('bert.embeddings.token_type_embeddings.weight', 2, W);
  add('bert.embeddings.LayerNorm.weight', W);
  add('bert.embeddings.LayerNorm.bias', W);
  for (let i = 0; i < L; i++) {
    const l = `bert.encoder.layer.${i}`;
    for (const p of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense']) {
      add(`${l}.${p}.weight`, W, W);
      add(`${l}.${p}.bias`, W);
    }
    add(`${l}.attention.output.LayerNorm.weight`, W);
    add(`${l}.attention.output.LayerNorm.bias`, W);
    add(`${l}.intermediate.dense.weight`, F, W);
    add(`${l}.intermediate.dense.bias`, F);
    add(`${l}.output.dense.weight`, W, F);
    add(`${l}.output.dense.bias`, W);
    add(`${l}.output.LayerNorm.weight`, W);
    add(`${l}.output.LayerNorm.bias`, W);
  }
  return { config, tensors: t };
}

/**
 * The families added for issue 15, each with the config.json keys of a released checkpoint
 * (named beside each) at the given small dimensions, and its HF tensor names and layouts.
 */
function newerFamilyPlan(
  o: RandomCheckpointOptions,
  add: (name: string, ...dims: number[]) => void,
  t: { name: string; dims: number[] }[],
): Record<string, unknown> | undefined {
  const W = o.hidden,
    H = o.heads,
    L = o.layers,
    V = o.vocab,
    P = o.maxPositions ?? 128;
  const KV = o.kvHeads ?? H,
    hd = o.headDim ?? W / H;
  const llamaLayers = (opts: { qkvBias?: boolean; qkNorm?: boolean; sandwich?: boolean; fused?: boolean }, F: number) => {
    for (let i = 0; i < L; i++) {
      const l = `model.layers.${i}`;
      add(`${l}.input_layernorm.weight`, W);
      if (opts.fused) {
        add(`${l}.self_attn.qkv_proj.weight`, (H + 2 * KV) * hd, W);
      } else {
        add(`${l}.self_attn.q_proj.weight`, H * hd, W);
        if (opts.qkvBias) add(`${l}.self_attn.q_proj.bias`, H * hd);
        add(`${l}.self_attn.k_proj.weight`, KV * hd, W);
        if (opts.qkvBias) add(`${l}.self_attn.k_proj.bias`, KV * hd);
        add(`${l}.self_attn.v_proj.weight`, KV * hd, W);
        if (opts.qkvBias) add(`${l}.self_attn.v_proj.bias`, KV * hd);
      }
      add(`${l}.self_attn.o_proj.weight`, W, H * hd);
      if (opts.qkNorm) {
        add(`${l}.self_attn.q_norm.weight`, hd);
        add(`${l}.self_attn.k_norm.weight`, hd);
      }
      add(`${l}.post_attention_layernorm.weight`, W);
      if (opts.sandwich) {
        add(`${l}.pre_feedforward_layernorm.weight`, W);
        add(`${l}.post_feedforward_layernorm.weight`, W);
      }
      if (opts.fused) {
        add(`${l}.mlp.gate_up_proj.weight`, 2 * F, W);
      } else {
        add(`${l}.mlp.gate_proj.weight`, F, W);
        add(`${l}.mlp.up_proj.weight`, F, W);
      }
      add(`${l}.mlp.down_proj.weight`, W, F);
    }
    add('model.norm.weight', W);
  };
  const F = o.ffn ?? 2 * W;
  switch (o.arch) {
    case 'qwen2': {
      // Qwen/Qwen2.5-0.5B
      const config = {
        architectures: ['Qwen2ForCausalLM'],
        attention_dropout: 0,
        bos_token_id: 151643,
        eos_token_id: 151643,
        hidden_act: 'silu',
        hidden_size: W,
        initializer_range: 0.02,
        intermediate_size: F,
        max_position_embeddings: P,
        max_window_layers: L,
        model_type: 'qwen2',
        num_attention_heads: H,
        num_hidden_layers: L,
        num_key_value_heads: KV,
        rms_norm_eps: 1e-6,
        rope_theta: 1000000,
        sliding_window: P,
        tie_word_embeddings: o.untiedHead !== true,
        torch_dtype: 'bfloat16',
        use_cache: true,
        use_sliding_window: false,
        vocab_size: V,
        ...o.extraConfig,
      };
      add('model.embed_tokens.weight', V, W);
      llamaLayers({ qkvBias: true }, F);
      if (o.untiedHead === true) add('lm_head.weight', V, W);
      return config;
    }
    case 'qwen3': {
      // Qwen/Qwen3-0.6B
      const config = {
        architectures: ['Qwen3ForCausalLM'],
        attention_bias: false,
        attention_dropout: 0,
        bos_token_id: 151643,
        eos_token_id: 151645,
        head_dim: hd,
        hidden_act: 'silu',
        hidden_size: W,
        initializer_range: 0.02,
        intermediate_size: F,
        max_position_embeddings: P,
        max_window_layers: L,
        model_type: 'qwen3',
        num_attention_heads: H,
        num_hidden_layers: L,
        num_key_value_heads: KV,
        rms_norm_eps: 1e-6,
        rope_scaling: null,
        rope_theta: 1000000,
        sliding_window: null,
        tie_word_embeddings: o.untiedHead !== true,
        torch_dtype: 'bfloat16',
        use_cache: true,
        use_sliding_window: false,
        vocab_size: V,
        ...o.extraConfig,
      };
      add('model.embed_tokens.weight', V, W);
      llamaLayers({ qkNorm: true }, F);
      if (o.untiedHead === true) add('lm_head.weight', V, W);
      return config;
    }
    case 'mistral': {
      // mistralai/Mistral-7B-v0.1
      const config = {
        architectures: ['MistralForCausalLM'],
        bos_token_id: 1,
        eos_token_id: 2,
        hidden_act: 'silu',
        hidden_size: W,
        initializer_range: 0.02,
        intermediate_size: F,
        max_position_embeddings: P,
        model_type: 'mistral',
        num_attention_heads: H,
        num_hidden_layers: L,
        num_key_value_heads: KV,
        rms_norm_eps: 1e-5,
        rope_theta: 10000,
        sliding_window: 4096,
        tie_word_embeddings: false,
        torch_dtype: 'bfloat16',
        use_cache: true,
        vocab_size: V,
        ...o.extraConfig,
      };
      add('model.embed_tokens.weight', V, W);
      llamaLayers({}, F);
      add('lm_head.weight', V, W);
      return config;
    }
    case 'phi3': {
      // microsoft/Phi-3-mini-4k-instruct
      const config = {
        architectures: ['Phi3ForCausalLM'],
        attention_bias: false,
        attention_dropout: 0,
        bos_token_id: 1,
        embd_pdrop: 0,
        eos_token_id: 32000,
        hidden_act: 'silu',
        hidden_size: W,
        initializer_range: 0.02,
        intermediate_size: F,
        max_position_embeddings: P,
        model_type: 'phi3',
        num_attention_heads: H,
        num_hidden_layers: L,
        num_key_value_heads: KV,
        original_max_position_embeddings: P,
        pad_token_id: 32000,
        resid_pdrop: 0,
        rms_norm_eps: 1e-5,
        rope_scaling: null,
        rope_theta: 10000,
        sliding_window: 2047,
        tie_word_embeddings: false,
        torch_dtype: 'bfloat16',
        use_cache: true,
        vocab_size: V,
        ...o.extraConfig,
      };
      add('model.embed_tokens.weight', V, W);
      llamaLayers({ fused: true }, F);
      add('lm_head.weight', V, W);
      return config;
    }
    case 'gemma2': {
      // google/gemma-2-2b
      const config = {
        architectures: ['Gemma2ForCausalLM'],
        attention_bias: false,
        attention_dropout: 0,
        attn_logit_softcapping: 50,
        bos_token_id: 2,
        cache_implementation: 'hybrid',
        eos_token_id: 1,
        final_logit_softcapping: 30,
        head_dim: hd,
        hidden_act: 'gelu_pytorch_tanh',
        hidden_activation: 'gelu_pytorch_tanh',
        hidden_size: W,
        initializer_range: 0.02,
        intermediate_size: F,
        max_position_embeddings: P,
        model_type: 'gemma2',
        num_attention_heads: H,
        num_hidden_layers: L,
        num_key_value_heads: KV,
        pad_token_id: 0,
        query_pre_attn_scalar: hd,
        rms_norm_eps: 1e-6,
        rope_theta: 10000,
        sliding_window: 4096,
        torch_dtype: 'float32',
        use_cache: true,
        vocab_size: V,
        ...o.extraConfig,
      };
      add('model.embed_tokens.weight', V, W);
      llamaLayers({ sandwich: true }, F);
      return config;
    }
    case 'gemma3_text': {
      // google/gemma-3-1b-pt
      const config = {
        architectures: ['Gemma3ForCausalLM'],
        attention_bias: false,
        attention_dropout: 0,
        attn_logit_softcapping: null,
        bos_token_id: 2,
        cache_implementation: 'hybrid',
        eos_token_id: 1,
        final_logit_softcapping: null,
        head_dim: hd,
        hidden_activation: 'gelu_pytorch_tanh',
        hidden_size: W,
        initializer_range: 0.02,
        intermediate_size: F,
        max_position_embeddings: P,
        model_type: 'gemma3_text',
        num_attention_heads: H,
        num_hidden_layers: L,
        num_key_value_heads: KV,
        pad_token_id: 0,
        query_pre_attn_scalar: hd,
        rms_norm_eps: 1e-6,
        rope_local_base_freq: 10000,
        rope_scaling: null,
        rope_theta: 1000000,
        sliding_window: 512,
        sliding_window_pattern: 6,
        torch_dtype: 'bfloat16',
        use_cache: true,
        vocab_size: V,
        ...o.extraConfig,
      };
      add('model.embed_tokens.weight', V, W);
      llamaLayers({ sandwich: true, qkNorm: true }, F);
      return config;
    }
    case 'gemma3': {
      // google/gemma-3-4b-it: a sparse text_config, the language model under language_model.model.
      const text = {
        hidden_size: W,
        intermediate_size: F,
        model_type: 'gemma3_text',
        num_hidden_layers: L,
        num_attention_heads: H,
        num_key_value_heads: KV,
        head_dim: hd,
        query_pre_attn_scalar: hd,
        vocab_size: V,
        max_position_embeddings: P,
        rope_scaling: { factor: 8.0, rope_type: 'linear' },
        sliding_window: 1024,
        ...o.extraConfig,
      };
      const config = {
        architectures: ['Gemma3ForConditionalGeneration'],
        boi_token_index: 255999,
        eoi_token_index: 256000,
        eos_token_id: [1, 106],
        image_token_index: 262144,
        initializer_range: 0.02,
        mm_tokens_per_image: 256,
        model_type: 'gemma3',
        text_config: text,
        torch_dtype: 'bfloat16',
        vision_config: {
          hidden_size: 8,
          image_size: 16,
          intermediate_size: 16,
          model_type: 'siglip_vision_model',
          num_attention_heads: 2,
          num_hidden_layers: 1,
          patch_size: 8,
          vision_use_head: false,
        },
      };
      const before = t.length;
      add('model.embed_tokens.weight', V, W);
      llamaLayers({ sandwich: true, qkNorm: true }, F);
      for (const x of t.slice(before)) x.name = `language_model.${x.name}`;
      add('multi_modal_projector.mm_input_projection_weight', 8, W);
      add('multi_modal_projector.mm_soft_emb_norm.weight', 8);
      add('vision_tower.vision_model.embeddings.patch_embedding.weight', 8, 3, 8, 8);
      return config;
    }
    case 'roberta':
    case 'xlm-roberta': {
      // FacebookAI/roberta-base, FacebookAI/xlm-roberta-base
      const Fe = o.ffn ?? 4 * W;
      const config = {
        architectures: [o.arch === 'roberta' ? 'RobertaForMaskedLM' : 'XLMRobertaForMaskedLM'],
        attention_probs_dropout_prob: 0.1,
        bos_token_id: 0,
        eos_token_id: 2,
        hidden_act: 'gelu',
        hidden_dropout_prob: 0.1,
        hidden_size: W,
        initializer_range: 0.02,
        intermediate_size: Fe,
        layer_norm_eps: 1e-5,
        max_position_embeddings: P + 2,
        model_type: o.arch,
        num_attention_heads: H,
        num_hidden_layers: L,
        output_past: true,
        pad_token_id: 1,
        position_embedding_type: 'absolute',
        type_vocab_size: 1,
        vocab_size: V,
        ...o.extraConfig,
      };
      const e = 'roberta.embeddings';
      add(`${e}.word_embeddings.weight`, V, W);
      add(`${e}.position_embeddings.weight`, P + 2, W);
      add(`${e}.token_type_embeddings.weight`, 1, W);
      add(`${e}.LayerNorm.weight`, W);
      add(`${e}.LayerNorm.bias`, W);
      for (let i = 0; i < L; i++) {
        const l = `roberta.encoder.layer.${i}`;
        for (const p of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense']) {
          add(`${l}.${p}.weight`, W, W);
          add(`${l}.${p}.bias`, W);
        }
        add(`${l}.attention.output.LayerNorm.weight`, W);
        add(`${l}.attention.output.LayerNorm.bias`, W);
        add(`${l}.intermediate.dense.weight`, Fe, W);
        add(`${l}.intermediate.dense.bias`, Fe);
        add(`${l}.output.dense.weight`, W, Fe);
        add(`${l}.output.dense.bias`, W);
        add(`${l}.output.LayerNorm.weight`, W);
        add(`${l}.output.LayerNorm.bias`, W);
      }
      add('lm_head.dense.weight', W, W);
      add('lm_head.dense.bias', W);
      add('lm_head.layer_norm.weight', W);
      add('lm_head.layer_norm.bias', W);
      add('lm_head.bias', V);
      return config;
    }
    case 'distilbert': {
      // distilbert/distilbert-base-uncased
      const Fe = o.ffn ?? 4 * W;
      const config = {
        activation: 'gelu',
        architectures: ['DistilBertForMaskedLM'],
        attention_dropout: 0.1,
        dim: W,
        dropout: 0.1,
        hidden_dim: Fe,
        initializer_range: 0.02,
        max_position_embeddings: P,
        model_type: 'distilbert',
        n_heads: H,
        n_layers: L,
        pad_token_id: 0,
        qa_dropout: 0.1,
        seq_classif_dropout: 0.2,
        sinusoidal_pos_embds: false,
        tie_weights_: true,
        vocab_size: V,
        ...o.extraConfig,
      };
      const e = 'distilbert.embeddings';
      add(`${e}.word_embeddings.weight`, V, W);
      add(`${e}.position_embeddings.weight`, P, W);
      add(`${e}.LayerNorm.weight`, W);
      add(`${e}.LayerNorm.bias`, W);
      for (let i = 0; i < L; i++) {
        const l = `distilbert.transformer.layer.${i}`;
        for (const p of ['q_lin', 'k_lin', 'v_lin', 'out_lin']) {
          add(`${l}.attention.${p}.weight`, W, W);
          add(`${l}.attention.${p}.bias`, W);
        }
        add(`${l}.sa_layer_norm.weight`, W);
        add(`${l}.sa_layer_norm.bias`, W);
        add(`${l}.ffn.lin1.weight`, Fe, W);
        add(`${l}.ffn.lin1.bias`, Fe);
        add(`${l}.ffn.lin2.weight`, W, Fe);
        add(`${l}.ffn.lin2.bias`, W);
        add(`${l}.output_layer_norm.weight`, W);
        add(`${l}.output_layer_norm.bias`, W);
      }
      add('vocab_transform.weight', W, W);
      add('vocab_transform.bias', W);
      add('vocab_layer_norm.weight', W);
      add('vocab_layer_norm.bias', W);
      add('vocab_projector.bias', V);
      return config;
    }
    case 'modernbert': {
      // answerdotai/ModernBERT-base
      const Fm = o.ffn ?? Math.round(1.5 * W);
      const config = {
        architectures: ['ModernBertForMaskedLM'],
        attention_bias: false,
        attention_dropout: 0,
        bos_token_id: 50281,
        classifier_activation: 'gelu',
        classifier_bias: false,
        classifier_dropout: 0,
        classifier_pooling: 'mean',
        cls_token_id: 50281,
        decoder_bias: true,
        deterministic_flash_attn: false,
        embedding_dropout: 0,
        eos_token_id: 50282,
        global_attn_every_n_layers: 3,
        global_rope_theta: 160000,
        gradient_checkpointing: false,
        hidden_activation: 'gelu',
        hidden_size: W,
        initializer_cutoff_factor: 2,
        initializer_range: 0.02,
        intermediate_size: Fm,
        layer_norm_eps: 1e-5,
        local_attention: 128,
        local_rope_theta: 10000,
        max_position_embeddings: P,
        mlp_bias: false,
        mlp_dropout: 0,
        model_type: 'modernbert',
        norm_bias: false,
        norm_eps: 1e-5,
        num_attention_heads: H,
        num_hidden_layers: L,
        pad_token_id: 50283,
        position_embedding_type: 'absolute',
        sep_token_id: 50282,
        tie_word_embeddings: true,
        torch_dtype: 'float32',
        vocab_size: V,
        ...o.extraConfig,
      };
      add('model.embeddings.tok_embeddings.weight', V, W);
      add('model.embeddings.norm.weight', W);
      for (let i = 0; i < L; i++) {
        const l = `model.layers.${i}`;
        if (i > 0) add(`${l}.attn_norm.weight`, W);
        add(`${l}.attn.Wqkv.weight`, 3 * W, W);
        add(`${l}.attn.Wo.weight`, W, W);
        add(`${l}.mlp_norm.weight`, W);
        add(`${l}.mlp.Wi.weight`, 2 * Fm, W);
        add(`${l}.mlp.Wo.weight`, W, Fm);
      }
      add('model.final_norm.weight', W);
      add('head.dense.weight', W, W);
      add('head.norm.weight', W);
      add('decoder.bias', V);
      return config;
    }
    default:
      return undefined;
  }
}

function isNormWeight(name: string): boolean {
  return /(ln_\d|ln_f|layer_norm|layernorm|LayerNorm|norm)\.weight$/.test(name);
}

/** Write a random checkpoint into `dir` (created). Values depend only on (seed, tensor name order). */
export function writeRandomHfCheckpoint(dir: string, o: RandomCheckpointOptions): WrittenCheckpoint {
  mkdirSync(dir, { recursive: true });
  const { config, tensors } = hfTensorPlan(o);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const std = o.std ?? 0.1;
  const seeds = new Map(tensors.map((t, i) => [t.name, (o.seed ?? 1) * 1000003 + i]));
  const produce = (name: string) => {
    const dims = tensors.find((t) => t.name === name)!.dims;
    const n = dims.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    const norm = isNormWeight(name);
    if (o.fill === 'fast') {
      const s0 = seeds.get(name)!;
      for (let i = 0; i < n; i++) out[i] = (norm ? 1 : 0) + std * 3.4 * ((Math.imul(i ^ s0, 2654435761) >>> 0) / 4294967296 - 0.5);
      return out;
    }
    const rng = mulberry32(seeds.get(name)!);
    for (let i = 0; i < n; i++) out[i] = (norm ? 1 : 0) + std * randomNormal(rng);
    return out;
  };
  const dtype = o.dtype ?? 'F32';
  const width = dtype === 'F32' ? 4 : 2;
  let bytes = 0;
  const shards = Math.max(1, o.shards ?? 1);
  if (shards === 1) {
    writeSafetensors(
      join(dir, 'model.safetensors'),
      tensors.map((t) => ({ ...t, dtype })),
      produce,
    );
  } else {
    const per = Math.ceil(tensors.length / shards);
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const part = tensors.slice(s * per, (s + 1) * per);
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      writeSafetensors(
        join(dir, file),
        part.map((t) => ({ ...t, dtype })),
        produce,
      );
      for (const t of part) weightMap[t.name] = file;
    }
    for (const t of tensors) bytes += t.dims.reduce((a, b) => a * b, 1) * width;
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: bytes }, weight_map: weightMap }, null, 2));
  }
  bytes = tensors.reduce((s, t) => s + t.dims.reduce((a, b) => a * b, 1) * width, 0);
  return { dir, config, tensors, bytes };
}
