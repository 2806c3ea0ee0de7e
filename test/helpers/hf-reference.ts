// A float64 plain-loop forward pass of the Hugging Face model families, written from the HF
// modelling code (modeling_gpt2/opt/llama/mistral/qwen2/qwen3/phi3/gemma2/gemma3/bert/roberta/
// distilbert/modernbert.py) over the HF tensor names of a checkpoint. It shares no code with the graph
// builder (src/pipeline/architectures): tests compare the exported ONNX graphs against it.
// One unpadded sequence at a time; positions 0..n-1 (RoBERTa: padding_idx + 1 + i).

export type Get = (name: string) => Float64Array;
export type Mat = Float64Array[]; // rows
type Cfg = Record<string, any>;

/** nn.Linear: weight [out, in] (rows [r0, r0 + outW) of a fused weight), optional bias. */
export function linear(x: Mat, w: Float64Array, b: Float64Array | undefined, inW: number, outW: number, r0 = 0): Mat {
  return x.map((row) => {
    const y = new Float64Array(outW);
    for (let o = 0; o < outW; o++) {
      let s = b ? b[r0 + o]! : 0;
      const base = (r0 + o) * inW;
      for (let i = 0; i < inW; i++) s += row[i]! * w[base + i]!;
      y[o] = s;
    }
    return y;
  });
}

/** GPT-2's Conv1D: weight [in, totalCols] (x @ w), columns [colOffset, colOffset + outW) of a fused weight. */
function conv1d(x: Mat, w: Float64Array, b: Float64Array, inW: number, outW: number, colOffset = 0, totalCols = outW): Mat {
  return x.map((row) => {
    const y = new Float64Array(outW);
    for (let o = 0; o < outW; o++) {
      let s = b[colOffset + o]!;
      for (let i = 0; i < inW; i++) s += row[i]! * w[i * totalCols + colOffset + o]!;
      y[o] = s;
    }
    return y;
  });
}

export function layerNorm(x: Mat, g: Float64Array, b: Float64Array | undefined, eps: number): Mat {
  return x.map((row) => {
    const n = row.length;
    let mean = 0;
    for (const v of row) mean += v / n;
    let vr = 0;
    for (const v of row) vr += (v - mean) ** 2 / n;
    return row.map((v, i) => ((v - mean) / Math.sqrt(vr + eps)) * g[i]! + (b ? b[i]! : 0));
  });
}

/** LlamaRMSNorm (x * w), GemmaRMSNorm (x * (1 + w)) when plusOne. Applied to each `width` group of a row. */
export function rmsNorm(x: Mat, g: Float64Array, eps: number, plusOne = false, width = g.length): Mat {
  return x.map((row) => {
    const y = new Float64Array(row.length);
    for (let s = 0; s < row.length; s += width) {
      let ms = 0;
      for (let i = 0; i < width; i++) ms += row[s + i]! ** 2 / width;
      for (let i = 0; i < width; i++) y[s + i] = (row[s + i]! / Math.sqrt(ms + eps)) * (plusOne ? 1 + g[i]! : g[i]!);
    }
    return y;
  });
}

export const add = (a: Mat, b: Mat): Mat => a.map((r, i) => r.map((v, j) => v + b[i]![j]!));
const mapM = (x: Mat, f: (v: number) => number): Mat => x.map((r) => r.map(f));
export const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
export const silu = (x: number) => x / (1 + Math.exp(-x));
export function erf(x: number): number {
  const t = Math.abs(x);
  if (t < 3) {
    let sum = 0,
      term = t,
      n = 0;
    while (Math.abs(term) > 1e-17 * Math.abs(sum) || n < 5) {
      sum += term / (2 * n + 1);
      n++;
      term *= (-t * t) / n;
      if (n > 200) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  return Math.sign(x) * (1 - (Math.exp(-t * t) / (t * Math.sqrt(Math.PI))) * (1 - 1 / (2 * t * t)));
}
export const geluErf = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));

/** Scaled dot-product attention with GQA (head h reads KV head floor(h / (H / KV))), an optional
 * soft-cap on the scores and a `sees(i, j)` mask. */
function attention(q: Mat, k: Mat, v: Mat, H: number, KV: number, d: number, scale: number, sees: (i: number, j: number) => boolean, softcap?: number): Mat {
  const S = q.length;
  const out: Mat = q.map(() => new Float64Array(H * d));
  for (let h = 0; h < H; h++) {
    const kvh = Math.floor(h / (H / KV));
    for (let i = 0; i < S; i++) {
      const js: number[] = [],
        scores: number[] = [];
      for (let j = 0; j < S; j++) {
        if (!sees(i, j)) continue;
        let s = 0;
        for (let t = 0; t < d; t++) s += q[i]![h * d + t]! * k[j]![kvh * d + t]!;
        s *= scale;
        if (softcap !== undefined) s = softcap * Math.tanh(s / softcap);
        js.push(j);
        scores.push(s);
      }
      const m = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - m));
      const z = e.reduce((a, b) => a + b, 0);
      js.forEach((j, n) => {
        for (let t = 0; t < d; t++) out[i]![h * d + t] += (e[n]! / z) * v[j]![kvh * d + t]!;
      });
    }
  }
  return out;
}

/** HF rotate_half RoPE with inv_freq[j] (cos/sin times `scale`, Phi-3 longrope's attention factor). */
function rope(x: Mat, heads: number, d: number, invFreq: number[], scale = 1): Mat {
  return x.map((row, p) => {
    const y = new Float64Array(row.length);
    for (let h = 0; h < heads; h++) {
      for (let j = 0; j < d / 2; j++) {
        const a = p * invFreq[j]!;
        const c = Math.cos(a) * scale,
          s = Math.sin(a) * scale;
        const x1 = row[h * d + j]!,
          x2 = row[h * d + j + d / 2]!;
        y[h * d + j] = x1 * c - x2 * s;
        y[h * d + j + d / 2] = x2 * c + x1 * s;
      }
    }
    return y;
  });
}

/** modeling_rope_utils: default, linear, dynamic (unchanged up to max_position_embeddings), llama3, longrope (short factors). */
export function invFreq(cfg: Cfg, d: number, theta: number, scaling: Cfg | null | undefined): { inv: number[]; scale: number } {
  const base = Array.from({ length: d / 2 }, (_, j) => 1 / theta ** ((2 * j) / d));
  const type = scaling ? (scaling.rope_type ?? scaling.type) : 'default';
  if (!scaling || type === 'default' || type === 'dynamic') return { inv: base, scale: 1 };
  if (type === 'linear') return { inv: base.map((f) => f / scaling.factor), scale: 1 };
  if (type === 'llama3') {
    const { factor, low_freq_factor: lo, high_freq_factor: hi, original_max_position_embeddings: old } = scaling;
    return {
      inv: base.map((f) => {
        const wl = (2 * Math.PI) / f;
        if (wl < old / hi) return f;
        if (wl > old / lo) return f / factor;
        const s = (old / wl - lo) / (hi - lo);
        return (1 - s) * (f / factor) + s * f;
      }),
      scale: 1,
    };
  }
  if (type === 'longrope') {
    const orig = scaling.original_max_position_embeddings ?? cfg.original_max_position_embeddings;
    const factor = cfg.max_position_embeddings / orig;
    const scale = scaling.attention_factor ?? (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(orig)));
    return { inv: base.map((_, j) => 1 / (scaling.short_factor[j] * theta ** ((2 * j) / d))), scale };
  }
  throw new Error(`reference: rope_scaling ${type}`);
}

function rows(get: Get, name: string, W: number, idx: number[]): Mat {
  const t = get(name);
  return idx.map((i) => t.slice(i * W, (i + 1) * W));
}

/** Decoder families: llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3_text. Returns hidden states after `depth` blocks and model.norm. */
function decoder(cfg: Cfg, get: Get, ids: number[], depth: number): Mat {
  const type = cfg.model_type as string;
  const gemma = type === 'gemma2' || type === 'gemma3_text';
  const W = cfg.hidden_size,
    H = cfg.num_attention_heads,
    KV = cfg.num_key_value_heads ?? H,
    F = cfg.intermediate_size,
    eps = cfg.rms_norm_eps;
  const hd = cfg.head_dim ?? W / H;
  const norm = (x: Mat, name: string, width?: number) => rmsNorm(x, get(name), eps, gemma, width);
  let x = rows(get, 'model.embed_tokens.weight', W, ids);
  if (gemma) x = mapM(x, (v) => v * Math.sqrt(W));
  const isSliding = (l: number): boolean => {
    if (Array.isArray(cfg.layer_types)) return cfg.layer_types[l] === 'sliding_attention';
    if (type === 'gemma2') return l % 2 === 0;
    if (type === 'gemma3_text') return (l + 1) % (cfg.sliding_window_pattern ?? 6) !== 0;
    return (type === 'mistral' || type === 'phi3') && typeof cfg.sliding_window === 'number';
  };
  const globalRope = invFreq(cfg, hd, cfg.rope_theta ?? 10000, cfg.rope_scaling);
  const localRope = type === 'gemma3_text' ? invFreq(cfg, hd, cfg.rope_local_base_freq, null) : globalRope;
  const scale = gemma ? cfg.query_pre_attn_scalar ** -0.5 : 1 / Math.sqrt(hd);
  const act = gemma ? geluTanh : silu;
  for (let l = 0; l < depth; l++) {
    const n = (s: string) => `model.layers.${l}.${s}`;
    const p = (s: string) => get(n(s));
    const has = (s: string) => {
      try {
        get(n(s));
        return true;
      } catch {
        return false;
      }
    };
    const bias = (s: string) => (has(s) ? p(s) : undefined);
    const a = norm(x, n('input_layernorm.weight'));
    let q: Mat, k: Mat, v: Mat;
    if (type === 'phi3') {
      q = linear(a, p('self_attn.qkv_proj.weight'), undefined, W, H * hd, 0);
      k = linear(a, p('self_attn.qkv_proj.weight'), undefined, W, KV * hd, H * hd);
      v = linear(a, p('self_attn.qkv_proj.weight'), undefined, W, KV * hd, H * hd + KV * hd);
    } else {
      q = linear(a, p('self_attn.q_proj.weight'), bias('self_attn.q_proj.bias'), W, H * hd);
      k = linear(a, p('self_attn.k_proj.weight'), bias('self_attn.k_proj.bias'), W, KV * hd);
      v = linear(a, p('self_attn.v_proj.weight'), bias('self_attn.v_proj.bias'), W, KV * hd);
    }
    if (type === 'qwen3' || type === 'gemma3_text') {
      q = norm(q, n('self_attn.q_norm.weight'), hd);
      k = norm(k, n('self_attn.k_norm.weight'), hd);
    }
    const sliding = isSliding(l);
    const r = sliding ? localRope : globalRope;
    q = rope(q, H, hd, r.inv, r.scale);
    k = rope(k, KV, hd, r.inv, r.scale);
    const win = cfg.sliding_window as number;
    const sees = (i: number, j: number) => j <= i && (!sliding || i - j < win);
    let o = linear(
      attention(q, k, v, H, KV, hd, scale, sees, type === 'gemma2' ? (cfg.attn_logit_softcapping ?? undefined) : undefined),
      p('self_attn.o_proj.weight'),
      undefined,
      H * hd,
      W,
    );
    if (gemma) o = norm(o, n('post_attention_layernorm.weight'));
    x = add(x, o);
    const m = norm(x, n(gemma ? 'pre_feedforward_layernorm.weight' : 'post_attention_layernorm.weight'));
    let gate: Mat, up: Mat;
    if (type === 'phi3') {
      gate = linear(m, p('mlp.gate_up_proj.weight'), undefined, W, F, 0);
      up = linear(m, p('mlp.gate_up_proj.weight'), undefined, W, F, F);
    } else {
      gate = linear(m, p('mlp.gate_proj.weight'), undefined, W, F);
      up = linear(m, p('mlp.up_proj.weight'), undefined, W, F);
    }
    let f = linear(
      gate.map((row, i) => row.map((g, j) => act(g) * up[i]![j]!)),
      p('mlp.down_proj.weight'),
      undefined,
      F,
      W,
    );
    if (gemma) f = norm(f, n('post_feedforward_layernorm.weight'));
    x = add(x, f);
  }
  return norm(x, 'model.norm.weight');
}

/** BERT-like post-LN encoders: bert, roberta, xlm-roberta, distilbert. */
function postLnEncoder(cfg: Cfg, get: Get, ids: number[], depth: number): Mat {
  const type = cfg.model_type as string;
  if (type === 'distilbert') {
    const W = cfg.dim,
      H = cfg.n_heads,
      F = cfg.hidden_dim,
      eps = 1e-12,
      e = 'distilbert.embeddings';
    let x = add(
      rows(get, `${e}.word_embeddings.weight`, W, ids),
      rows(
        get,
        `${e}.position_embeddings.weight`,
        W,
        ids.map((_, i) => i),
      ),
    );
    x = layerNorm(x, get(`${e}.LayerNorm.weight`), get(`${e}.LayerNorm.bias`), eps);
    for (let l = 0; l < depth; l++) {
      const p = (s: string) => get(`distilbert.transformer.layer.${l}.${s}`);
      const lin = (z: Mat, s: string, i: number, o: number) => linear(z, p(`${s}.weight`), p(`${s}.bias`), i, o);
      const ctx = attention(
        lin(x, 'attention.q_lin', W, W),
        lin(x, 'attention.k_lin', W, W),
        lin(x, 'attention.v_lin', W, W),
        H,
        H,
        W / H,
        1 / Math.sqrt(W / H),
        () => true,
      );
      x = layerNorm(add(x, lin(ctx, 'attention.out_lin', W, W)), p('sa_layer_norm.weight'), p('sa_layer_norm.bias'), eps);
      x = layerNorm(add(x, lin(mapM(lin(x, 'ffn.lin1', W, F), geluErf), 'ffn.lin2', F, W)), p('output_layer_norm.weight'), p('output_layer_norm.bias'), eps);
    }
    return x;
  }
  const pre = type === 'bert' ? 'bert' : 'roberta';
  const W = cfg.hidden_size,
    H = cfg.num_attention_heads,
    F = cfg.intermediate_size,
    eps = cfg.layer_norm_eps;
  const e = `${pre}.embeddings`;
  // RoBERTa: create_position_ids_from_input_ids -> padding_idx + 1 + i for real tokens.
  const first = pre === 'roberta' ? cfg.pad_token_id + 1 : 0;
  let x = add(
    rows(get, `${e}.word_embeddings.weight`, W, ids),
    rows(
      get,
      `${e}.position_embeddings.weight`,
      W,
      ids.map((_, i) => first + i),
    ),
  );
  x = add(
    x,
    rows(
      get,
      `${e}.token_type_embeddings.weight`,
      W,
      ids.map(() => 0),
    ),
  );
  x = layerNorm(x, get(`${e}.LayerNorm.weight`), get(`${e}.LayerNorm.bias`), eps);
  for (let l = 0; l < depth; l++) {
    const p = (s: string) => get(`${pre}.encoder.layer.${l}.${s}`);
    const lin = (z: Mat, s: string, i: number, o: number) => linear(z, p(`${s}.weight`), p(`${s}.bias`), i, o);
    const ctx = attention(
      lin(x, 'attention.self.query', W, W),
      lin(x, 'attention.self.key', W, W),
      lin(x, 'attention.self.value', W, W),
      H,
      H,
      W / H,
      1 / Math.sqrt(W / H),
      () => true,
    );
    x = layerNorm(add(x, lin(ctx, 'attention.output.dense', W, W)), p('attention.output.LayerNorm.weight'), p('attention.output.LayerNorm.bias'), eps);
    x = layerNorm(
      add(x, lin(mapM(lin(x, 'intermediate.dense', W, F), geluErf), 'output.dense', F, W)),
      p('output.LayerNorm.weight'),
      p('output.LayerNorm.bias'),
      eps,
    );
  }
  return x;
}

/** ModernBERT: pre-LN without biases, global/local RoPE and windows, GeGLU from Wi's halves. */
function modernbert(cfg: Cfg, get: Get, ids: number[], depth: number): Mat {
  const W = cfg.hidden_size,
    H = cfg.num_attention_heads,
    F = cfg.intermediate_size,
    eps = cfg.norm_eps,
    hd = W / H;
  const ln = (x: Mat, name: string) => layerNorm(x, get(name), undefined, eps);
  let x = ln(rows(get, 'model.embeddings.tok_embeddings.weight', W, ids), 'model.embeddings.norm.weight');
  const act = cfg.hidden_activation === 'gelu' ? geluErf : geluTanh;
  for (let l = 0; l < depth; l++) {
    const n = (s: string) => `model.layers.${l}.${s}`;
    const global = l % cfg.global_attn_every_n_layers === 0;
    const a = l === 0 ? x : ln(x, n('attn_norm.weight'));
    const wqkv = get(n('attn.Wqkv.weight'));
    const r = invFreq(cfg, hd, global ? cfg.global_rope_theta : (cfg.local_rope_theta ?? cfg.global_rope_theta), null);
    const q = rope(linear(a, wqkv, undefined, W, W, 0), H, hd, r.inv);
    const k = rope(linear(a, wqkv, undefined, W, W, W), H, hd, r.inv);
    const v = linear(a, wqkv, undefined, W, W, 2 * W);
    const half = Math.floor(cfg.local_attention / 2);
    const sees = (i: number, j: number) => global || Math.abs(i - j) <= half;
    x = add(x, linear(attention(q, k, v, H, H, hd, 1 / Math.sqrt(hd), sees), get(n('attn.Wo.weight')), undefined, W, W));
    const m = ln(x, n('mlp_norm.weight'));
    const wi = get(n('mlp.Wi.weight'));
    const input = linear(m, wi, undefined, W, F, 0),
      gate = linear(m, wi, undefined, W, F, F);
    x = add(
      x,
      linear(
        input.map((row, i) => row.map((u, j) => act(u) * gate[i]![j]!)),
        get(n('mlp.Wo.weight')),
        undefined,
        F,
        W,
      ),
    );
  }
  return ln(x, 'model.final_norm.weight');
}

/** GPT-2: pre-LN, learned positions, fused c_attn, Conv1D weights, GELU (tanh), final ln_f. */
function gpt2(cfg: Cfg, get: Get, ids: number[], depth: number): Mat {
  const W = cfg.n_embd,
    H = cfg.n_head,
    F = cfg.n_inner ?? 4 * W,
    eps = cfg.layer_norm_epsilon;
  let x = add(
    rows(get, 'transformer.wte.weight', W, ids),
    rows(
      get,
      'transformer.wpe.weight',
      W,
      ids.map((_, i) => i),
    ),
  );
  const causal = (i: number, j: number) => j <= i;
  for (let l = 0; l < depth; l++) {
    const p = (s: string) => get(`transformer.h.${l}.${s}`);
    const a = layerNorm(x, p('ln_1.weight'), p('ln_1.bias'), eps);
    const qkv = (o: number) => conv1d(a, p('attn.c_attn.weight'), p('attn.c_attn.bias'), W, W, o * W, 3 * W);
    x = add(x, conv1d(attention(qkv(0), qkv(1), qkv(2), H, H, W / H, 1 / Math.sqrt(W / H), causal), p('attn.c_proj.weight'), p('attn.c_proj.bias'), W, W));
    const m = layerNorm(x, p('ln_2.weight'), p('ln_2.bias'), eps);
    x = add(x, conv1d(mapM(conv1d(m, p('mlp.c_fc.weight'), p('mlp.c_fc.bias'), W, F), geluTanh), p('mlp.c_proj.weight'), p('mlp.c_proj.bias'), F, W));
  }
  return layerNorm(x, get('transformer.ln_f.weight'), get('transformer.ln_f.bias'), eps);
}

/** OPT: positions offset by 2, ReLU; pre-LN with a final norm, or post-LN without (do_layer_norm_before false). */
function opt(cfg: Cfg, get: Get, ids: number[], depth: number): Mat {
  const W = cfg.hidden_size,
    H = cfg.num_attention_heads,
    F = cfg.ffn_dim,
    eps = 1e-5,
    pre = cfg.do_layer_norm_before !== false;
  const d = 'model.decoder';
  let x = add(
    rows(get, `${d}.embed_tokens.weight`, W, ids),
    rows(
      get,
      `${d}.embed_positions.weight`,
      W,
      ids.map((_, i) => i + 2),
    ),
  );
  const causal = (i: number, j: number) => j <= i;
  for (let l = 0; l < depth; l++) {
    const p = (s: string) => get(`${d}.layers.${l}.${s}`);
    const lin = (z: Mat, s: string, i: number, o: number) => linear(z, p(`${s}.weight`), p(`${s}.bias`), i, o);
    const ln1 = (z: Mat) => layerNorm(z, p('self_attn_layer_norm.weight'), p('self_attn_layer_norm.bias'), eps);
    const ln2 = (z: Mat) => layerNorm(z, p('final_layer_norm.weight'), p('final_layer_norm.bias'), eps);
    const a = pre ? ln1(x) : x;
    const ctx = attention(
      lin(a, 'self_attn.q_proj', W, W),
      lin(a, 'self_attn.k_proj', W, W),
      lin(a, 'self_attn.v_proj', W, W),
      H,
      H,
      W / H,
      1 / Math.sqrt(W / H),
      causal,
    );
    x = add(x, lin(ctx, 'self_attn.out_proj', W, W));
    if (!pre) x = ln1(x);
    const m = pre ? ln2(x) : x;
    x = add(
      x,
      lin(
        mapM(lin(m, 'fc1', W, F), (v) => Math.max(0, v)),
        'fc2',
        F,
        W,
      ),
    );
    if (!pre) x = ln2(x);
  }
  return pre ? layerNorm(x, get(`${d}.final_layer_norm.weight`), get(`${d}.final_layer_norm.bias`), eps) : x;
}

/** Hidden states [n, W] of one unpadded sequence after `depth` blocks (decoders: and the final norm). */
export function referenceHidden(cfg: Cfg, get: Get, ids: number[], depth: number): Mat {
  const type = cfg.model_type as string;
  if (['bert', 'roberta', 'xlm-roberta', 'distilbert'].includes(type)) return postLnEncoder(cfg, get, ids, depth);
  if (type === 'modernbert') return modernbert(cfg, get, ids, depth);
  if (type === 'gpt2') return gpt2(cfg, get, ids, depth);
  if (type === 'opt') return opt(cfg, get, ids, depth);
  return decoder(cfg, get, ids, depth);
}

/** Pooled vector: the last token, the first (CLS), or the mean. */
export function pool(h: Mat, how: 'last' | 'cls' | 'mean'): Float64Array {
  if (how === 'last') return h[h.length - 1]!;
  if (how === 'cls') return h[0]!;
  const out = new Float64Array(h[0]!.length);
  for (const row of h) row.forEach((v, i) => (out[i] += v / h.length));
  return out;
}

/** LM logits of one hidden vector: head [V, W] rows, gemma2's final soft-cap. */
export function lmLogits(cfg: Cfg, head: Float64Array, x: Float64Array, ids: number[]): number[] {
  const W = x.length;
  const cap = cfg.final_logit_softcapping as number | null | undefined;
  return ids.map((id) => {
    let s = 0;
    for (let k = 0; k < W; k++) s += x[k]! * head[id * W + k]!;
    return typeof cap === 'number' ? cap * Math.tanh(s / cap) : s;
  });
}
