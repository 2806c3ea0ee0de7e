// Hugging Face checkpoint directories: config.json (model_type picks the architecture),
// model.safetensors or a sharded model.safetensors.index.json, tokenizer.json. Tensors are
// read on demand by canonical name (architectures/transformer.ts), each by a positioned read,
// so a depth-k build touches only the embeddings, the first k blocks, the final norm and the
// head rows it needs.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SafetensorsStore, type FloatTensor } from './safetensors.js';
import type { FloatTensorValue, HfArchitecture, TensorSource, TransformerCheckpoint, TransformerConfig } from '../architectures/transformer.js';
import { gpt2 } from '../architectures/gpt2.js';
import { opt } from '../architectures/opt.js';
import { llama } from '../architectures/llama.js';
import { bert } from '../architectures/bert.js';
import { qwen2 } from '../architectures/qwen2.js';
import { qwen3 } from '../architectures/qwen3.js';
import { gemma2, gemma3, gemma3Multimodal } from '../architectures/gemma.js';
import { phi3 } from '../architectures/phi3.js';
import { roberta } from '../architectures/roberta.js';
import { distilbert } from '../architectures/distilbert.js';
import { modernbert } from '../architectures/modernbert.js';

export const HF_ARCHITECTURES: readonly HfArchitecture[] = [
  gpt2,
  opt,
  llama,
  bert,
  qwen2,
  qwen3,
  gemma2,
  gemma3,
  gemma3Multimodal,
  phi3,
  roberta,
  distilbert,
  modernbert,
];

export function isHfCheckpointDir(dir: string): boolean {
  return existsSync(join(dir, 'config.json')) && (existsSync(join(dir, 'model.safetensors')) || existsSync(join(dir, 'model.safetensors.index.json')));
}

/** [rows, cols] -> [cols, rows]. */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[base + c]!;
  }
  return out;
}

export class HfCheckpoint implements TransformerCheckpoint {
  readonly id: string;
  readonly source: string;
  readonly config: TransformerConfig;
  readonly hfConfig: Record<string, unknown>;
  readonly arch: HfArchitecture;
  readonly store: SafetensorsStore;
  readonly prefix: string;
  readonly tokenizerPath: string | undefined;

  constructor(readonly dir: string) {
    const abs = resolve(dir);
    const cfgPath = join(abs, 'config.json');
    if (!existsSync(cfgPath)) throw new Error(`${dir}: no config.json (not a Hugging Face checkpoint directory)`);
    this.hfConfig = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    const type = String((this.hfConfig.model_type as string | undefined) ?? '');
    const arch = HF_ARCHITECTURES.find((a) => a.modelTypes.includes(type));
    if (!arch)
      throw new Error(`${dir}: model_type ${JSON.stringify(type)} is not supported (supported: ${HF_ARCHITECTURES.flatMap((a) => a.modelTypes).join(', ')})`);
    this.arch = arch;
    const config = arch.config(this.hfConfig);
    const pooling = arch.defaultPooling?.(config, this.hfConfig);
    this.config = pooling ? { ...config, pooling } : config;
    if (this.config.heads % this.config.kvHeads !== 0)
      throw new Error(`${dir}: num_attention_heads ${this.config.heads} is not a multiple of num_key_value_heads ${this.config.kvHeads}`);
    this.store = SafetensorsStore.open(abs);
    const prefix = arch.prefixes.find((p) => this.store.has(p + arch.probe));
    if (prefix === undefined)
      throw new Error(`${dir}: no ${arch.probe} tensor under any of the prefixes ${arch.prefixes.map((p) => JSON.stringify(p)).join(', ')}`);
    this.prefix = prefix;
    this.id = `hf:${abs}`;
    this.source = abs;
    this.tokenizerPath = existsSync(join(abs, 'tokenizer.json')) ? join(abs, 'tokenizer.json') : undefined;
  }

  private fullName(name: string): string {
    // lm_head lives outside the base-model prefix in *ForCausalLM checkpoints.
    return this.store.has(this.prefix + name) ? this.prefix + name : name;
  }

  private readSource(s: TensorSource): FloatTensor {
    const full = this.fullName(s.name);
    let t: FloatTensor =
      s.row !== undefined ? this.store.readRows(full, s.row, s.row + 1) : s.rows ? this.store.readRows(full, s.rows[0], s.rows[1]) : this.store.read(full);
    if (s.row !== undefined) t = { ...t, dims: t.dims.slice(1) };
    if (s.plus !== undefined) t = { ...t, data: t.data.map((v) => v + s.plus!) };
    if (s.columns) {
      const [b, e] = s.columns;
      const cols = t.dims[t.dims.length - 1]!;
      const rows = t.data.length / cols;
      const out = new Float32Array(rows * (e - b));
      for (let r = 0; r < rows; r++) out.set(t.data.subarray(r * cols + b, r * cols + e), r * (e - b));
      t = { ...t, dims: [...t.dims.slice(0, -1), e - b], data: out };
    }
    if (s.transpose) {
      if (t.dims.length !== 2) throw new Error(`${full}: expected a matrix, got [${t.dims}]`);
      t = { ...t, dims: [t.dims[1]!, t.dims[0]!], data: transpose2d(t.data, t.dims[0]!, t.dims[1]!) };
    }
    return t;
  }

  tensor(name: string): FloatTensorValue | undefined {
    const s = this.arch.source(this.config, name);
    if (!s || !this.store.has(this.fullName(s.name))) return undefined;
    const t = this.readSource(s);
    return { dims: t.dims, data: t.data };
  }

  lmHeadColumns(ids: readonly number[]): FloatTensorValue {
    const W = this.config.hidden;
    const head = this.arch.lmHead(this.config);
    const name = head ? this.fullName(head) : this.fullName(this.arch.source(this.config, 'embed.tokens')!.name);
    const out = new Float32Array(W * ids.length);
    // A few label words: one positioned read per row. Many ids (a full LM head): one read.
    const all = ids.length > 256 ? this.store.read(name).data : undefined;
    ids.forEach((id, j) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocab) throw new Error(`token id ${id} is outside the vocabulary (0..${this.config.vocab - 1})`);
      const row = all ? all.subarray(id * W, (id + 1) * W) : this.store.readRows(name, id, id + 1).data;
      for (let k = 0; k < W; k++) out[k * ids.length + j] = row[k]!;
    });
    return { dims: [W, ids.length], data: out };
  }

  close(): void {
    this.store.close();
  }
}
