// llama2.c checkpoints (karpathy/llama2.c run.c, legacy "version 0" export): a header of 7 int32
// {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len}, a negative vocab_size
// meaning an untied classifier, then float32 arrays in this order:
//   token_embedding [V, dim], rms_att [L, dim], wq [L, dim(out), dim(in)], wk [L, kvDim, dim],
//   wv [L, kvDim, dim], wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim] (gate),
//   w2 [L, dim, hidden] (down), w3 [L, hidden, dim] (up), rms_final [dim],
//   freq_cis_real/imag [seq_len, head_size/2] each (unused), then wcls [V, dim] if untied.
// run.c rotates interleaved pairs (2j, 2j+1) of each head; our graph rotates halves (HF
// rotate_half), so q and k rows are permuted per head on load (as HF's conversion script does);
// attention scores are unchanged by a permutation applied to both q and k.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import type { FloatTensorValue, TransformerCheckpoint, TransformerConfig } from '../architectures/transformer.js';
import { transpose2d } from './hf.js';

export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  sharedClassifier: boolean;
}

export function isLlama2cFile(path: string): boolean {
  return path.endsWith('.bin');
}

export class Llama2cCheckpoint implements TransformerCheckpoint {
  readonly id: string;
  readonly source: string;
  readonly header: Llama2cHeader;
  readonly config: TransformerConfig;
  private readonly fd: number;
  /** name -> [byte offset, float count] of each stored array. */
  private readonly offsets = new Map<string, [number, number]>();
  bytesRead = 0;

  constructor(file: string) {
    this.source = resolve(file);
    this.id = `llama2c:${this.source}`;
    this.fd = openSync(this.source, 'r');
    const size = fstatSync(this.fd).size;
    const hb = Buffer.alloc(28);
    if (readSync(this.fd, hb, 0, 28, 0) !== 28) throw new Error(`${file}: too short for a llama2.c header`);
    const h = Array.from({ length: 7 }, (_, i) => hb.readInt32LE(i * 4));
    const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen] = h as [number, number, number, number, number, number, number];
    this.header = { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: Math.abs(vocab), seqLen, sharedClassifier: vocab > 0 };
    if (h.some((v, i) => (i === 5 ? v === 0 : v <= 0)) || dim % nHeads !== 0 || nHeads % nKvHeads !== 0) {
      throw new Error(`${file}: not a llama2.c checkpoint (header ${h.join(', ')})`);
    }
    const V = this.header.vocabSize,
      L = nLayers,
      hs = dim / nHeads,
      kvDim = nKvHeads * hs;
    let off = 28;
    const seg = (name: string, count: number) => {
      this.offsets.set(name, [off, count]);
      off += count * 4;
    };
    seg('tok', V * dim);
    seg('rms_att', L * dim);
    seg('wq', L * dim * dim);
    seg('wk', L * kvDim * dim);
    seg('wv', L * kvDim * dim);
    seg('wo', L * dim * dim);
    seg('rms_ffn', L * dim);
    seg('w1', L * hiddenDim * dim);
    seg('w2', L * dim * hiddenDim);
    seg('w3', L * hiddenDim * dim);
    seg('rms_final', dim);
    seg('freq_cis', seqLen * hs); // real and imag halves, unused
    if (!this.header.sharedClassifier) seg('wcls', V * dim);
    if (off !== size) throw new Error(`${file}: ${size} bytes, but the header (${h.join(', ')}) implies ${off}`);
    this.config = {
      arch: 'llama',
      layers: L,
      hidden: dim,
      heads: nHeads,
      kvHeads: nKvHeads,
      headDim: hs,
      ffn: hiddenDim,
      vocab: V,
      maxPositions: seqLen,
      positionOffset: 0,
      norm: 'rms',
      eps: 1e-5,
      postNorm: false,
      act: 'silu',
      gated: true,
      positions: 'rope',
      ropeTheta: 10000,
      causal: true,
      finalNorm: true,
      embedNorm: false,
      tokenTypes: false,
      tiedEmbeddings: this.header.sharedClassifier,
      bosId: 1,
      eosId: 2,
      padId: 0,
    };
  }

  /** `count` floats of array `name` starting at float `start` (positioned read). */
  private read(name: string, start: number, count: number): Float32Array {
    const [off, total] = this.offsets.get(name)!;
    if (start + count > total) throw new Error(`${this.source}: read past ${name}`);
    const buf = Buffer.allocUnsafe(count * 4);
    readSync(this.fd, buf, 0, count * 4, off + start * 4);
    this.bytesRead += count * 4;
    return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + count * 4));
  }

  /** Layer i's slice of a per-layer matrix stored [out, in]: returned [in, out]. */
  private layerMatrix(name: string, i: number, out: number, inW: number, ropeHeads?: number): FloatTensorValue {
    let w = this.read(name, i * out * inW, out * inW);
    if (ropeHeads) w = interleavedToHalves(w, ropeHeads, this.config.headDim, inW);
    return { dims: [inW, out], data: transpose2d(w, out, inW) };
  }

  tensor(name: string): FloatTensorValue | undefined {
    const c = this.config,
      D = c.hidden,
      F = c.ffn,
      kvDim = c.kvHeads * c.headDim;
    if (name === 'embed.tokens') return { dims: [c.vocab, D], data: this.read('tok', 0, c.vocab * D) };
    if (name === 'final_norm.weight') return { dims: [D], data: this.read('rms_final', 0, D) };
    const m = /^blocks\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
    if (!m || m[3] === 'bias') return undefined;
    const i = Number(m[1]);
    switch (m[2]) {
      case 'attn_norm':
        return { dims: [D], data: this.read('rms_att', i * D, D) };
      case 'ffn_norm':
        return { dims: [D], data: this.read('rms_ffn', i * D, D) };
      case 'attn.q':
        return this.layerMatrix('wq', i, D, D, c.heads);
      case 'attn.k':
        return this.layerMatrix('wk', i, kvDim, D, c.kvHeads);
      case 'attn.v':
        return this.layerMatrix('wv', i, kvDim, D);
      case 'attn.o':
        return this.layerMatrix('wo', i, D, D);
      case 'ffn.gate':
        return this.layerMatrix('w1', i, F, D);
      case 'ffn.down':
        return this.layerMatrix('w2', i, D, F);
      case 'ffn.up':
        return this.layerMatrix('w3', i, F, D);
      default:
        return undefined;
    }
  }

  lmHeadColumns(ids: readonly number[]): FloatTensorValue {
    const D = this.config.hidden;
    const name = this.header.sharedClassifier ? 'tok' : 'wcls';
    const out = new Float32Array(D * ids.length);
    const all = ids.length > 256 ? this.read(name, 0, this.config.vocab * D) : undefined;
    ids.forEach((id, j) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocab) throw new Error(`token id ${id} is outside the vocabulary (0..${this.config.vocab - 1})`);
      const row = all ? all.subarray(id * D, (id + 1) * D) : this.read(name, id * D, D);
      for (let k = 0; k < D; k++) out[k * ids.length + j] = row[k]!;
    });
    return { dims: [D, ids.length], data: out };
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Rows of w [heads*hd, inW] reordered per head: new j < hd/2 <- old 2j, new j + hd/2 <- old 2j + 1. */
export function interleavedToHalves(w: Float32Array, heads: number, hd: number, inW: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < hd / 2; j++) {
      out.set(w.subarray((h * hd + 2 * j) * inW, (h * hd + 2 * j + 1) * inW), (h * hd + j) * inW);
      out.set(w.subarray((h * hd + 2 * j + 1) * inW, (h * hd + 2 * j + 2) * inW), (h * hd + j + hd / 2) * inW);
    }
  }
  return out;
}
