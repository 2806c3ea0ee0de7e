// What the build pipeline (pipeline.ts) needs from a pretrained base, whatever it is: how texts
// become token ids, which parameters a depth-k body has, how a depth-k classifier trains and
// exports, and what the manifest and report say about the base. builtin:use-lite (use-lite.ts)
// and the transformer families (transformer.ts: Hugging Face directories, llama2.c files)
// implement it; a new family is an architecture file under architectures/, not a new base.
import type { ModelProto } from '../onnx-proto.js';
import type { ParamSpec } from '../architectures/param-spec.js';
import type { HeadKind } from '../../manifest.js';
import type { EncodedExample, TrainOptions, TrainResult } from '../training/loop.js';

/** A base that cannot be used as given (unsupported model_type, missing tensor, too few layers): one line, exit code 2. */
export class BaseError extends Error {
  override readonly name = 'BaseError';
}

/** The manifest's and the report's description of the base. */
export interface BaseInfo {
  id: string;
  arch: string;
  layers: number;
  source: string;
}

/** The trainer's options less the depth and what the base decides itself (sequence length, pad id). */
export type BaseTrainOptions = Omit<TrainOptions, 'depth' | 'maxLength' | 'padId'>;

export interface BuildBase {
  readonly info: BaseInfo;
  readonly head: HeadKind;
  /** One line for the build log: the base, its shape, the head. */
  readonly description: string;
  /** tokenizer.json and tokenizer_config.json of every variant (text as written). */
  readonly tokenizerFiles: { tokenizer: string; tokenizerConfig: string };
  readonly padId: number;
  /** Manifest fields only some heads have (label-words: template, labelWords). */
  readonly manifestFields: { template?: string; labelWords?: string[] };
  /** Token ids of the text as the server feeds the exported model (cut to --max-length). */
  textIds(text: string): number[];
  /** Token ids the training graphs see: textIds plus whatever the exported graph adds itself (a prompt template). */
  trainingIds(text: string): number[];
  /** The parameters of a depth-k body (for trainers and tools that pick parameters by kind or block). */
  paramSpecs(depth: number): ParamSpec[];
  /** Fine-tune a depth-k classifier; examples are trainingIds. */
  train(depth: number, train: readonly EncodedExample[], val: readonly EncodedExample[], opts: BaseTrainOptions): Promise<TrainResult>;
  /** The self-contained depth-k classifier with the trained values, and its parameter count. */
  exportModel(depth: number, trained: TrainResult): { model: ModelProto; params: number };
  /**
   * The depth-k variant is written: let go of what train and exportModel kept for it (the body
   * read from the checkpoint), so that the steps after the write (latency: an onnxruntime session
   * over the written file) do not run beside it. A later depth reads its own body.
   */
  releaseDepth(depth: number): void;
  close(): void;
}
