// A variant directory on disk, as the build writes it (pipeline/model-writer.ts) and the server
// reads it (serve/model-repository.ts): the file names, the variant-name pattern and the manifest
// shape (docs/spec.md), defined once so the two sides cannot drift apart.

export const MANIFEST_FILE = 'manifest.json';
export const ONNX_FILE = 'model.onnx';
/** model.onnx's external data (the weights of a variant past protobuf's 2 GB), beside it. */
export const ONNX_DATA_FILE = 'model.onnx.data';
export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** k<depth>, optionally with training-mode and precision suffixes: k1, k12, k2-head, k2-top1, k2-int8, k1-head-fp16. */
export const VARIANT_NAME = /^k([1-9][0-9]*)(?:-([a-z0-9][a-z0-9-]*))?$/;

export interface ExternalDataFile {
  /** File name in the variant directory (as model.onnx's tensors name their location). */
  file: string;
  bytes: number;
  sha256: string;
}

/** Numeric precision of a variant's weights and arithmetic (src/pipeline/precision/). */
export type Precision = 'fp32' | 'int8' | 'fp16';
export const PRECISIONS: readonly Precision[] = ['fp32', 'int8', 'fp16'];

/** The precision a manifest declares; manifests written before precisions existed are fp32. */
export function precisionOf(manifest: { precision?: unknown }): Precision {
  return PRECISIONS.includes(manifest.precision as Precision) ? (manifest.precision as Precision) : 'fp32';
}

export type HeadKind = 'pool' | 'last' | 'label-words';
export const HEAD_KINDS: readonly HeadKind[] = ['pool', 'last', 'label-words'];

export interface Manifest {
  model: string;
  variant: string;
  depth: number;
  base: { id: string; arch: string; layers: number; source: string };
  /** Output order of the logits. */
  labels: string[];
  head: HeadKind;
  /** head "label-words": the prompt, with {text} where the input goes (the exported graph adds it around the tokens; recorded here, not read by the server). */
  template?: string;
  /** head "label-words": the word read for each label, in `labels` order. */
  labelWords?: string[];
  maxLength: number;
  /** fp32 when absent. An int8 or fp16 variant's name ends in -int8 / -fp16. */
  precision?: Precision;
  /** int8 / fp16 variants: the float32 variant they were converted from. */
  convertedFrom?: { variant: string; onnxSha256: string };
  train: { mode: string; epochs: number; lr: number; seed: number; examples: number; dataSha256: string; seconds: number };
  eval: { split: string; examples: number; accuracy: number; macroF1: number };
  /** Parameters in the exported graph. */
  params: number;
  onnxSha256: string;
  /** The files holding model.onnx's external data, when its weights are kept outside it (large variants). */
  externalData?: ExternalDataFile[];
  /** ISO 8601 time of the build. */
  createdAt: string;
  /** Version of the build tool that wrote the variant. */
  version: string;
}

/**
 * A manifest as the server checks it (serve/model-repository.ts validateManifest): the same
 * fields, but `head` and `train` are not interpreted there (any string, any object), and fields
 * it does not know, `template` and `labelWords` among them, pass through unchecked.
 */
export type ServedManifest = Omit<Manifest, 'head' | 'train' | 'template' | 'labelWords'> & {
  head: string;
  train: Record<string, unknown>;
  [extra: string]: unknown;
};
