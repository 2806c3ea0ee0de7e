// What the server serves once loaded: models and their variants, with the device each variant
// actually runs on. Routes, routing and metrics read these; only the runtime builds them.
import type { Device } from './config.js';
import type { Manifest } from './model-repository.js';
import type { TextTokenizer } from './tokenize.js';

export interface ServedVariant {
  model: string;
  name: string;
  depth: number;
  /** "<model>/<variant>": the batcher's and the workers' key. */
  key: string;
  dir: string;
  onnxPath: string;
  manifest: Manifest;
  labels: string[];
  maxLength: number;
  tokenizer: TextTokenizer;
  /** Device asked for in the configuration. */
  requestedDevice: Device;
  /** Device the sessions run on (cpu after a fallback). */
  device: Device;
  /** Why the requested device is not used, when it is not. */
  fallbackReason?: string;
  loadMs: number;
  warmupMs: number;
}

export interface ServedModel {
  name: string;
  dir: string;
  /** Sorted by depth, then name. */
  variants: ServedVariant[];
  /** models/<model>/routing.json as read (null when absent). */
  routing: unknown;
  /**
   * The variant that answers when neither the request nor the routing chooses: the one the
   * build report (report.json "recommended") names when it is served, else the shallowest.
   */
  defaultVariant: string;
}

/** ServedModel.defaultVariant from the report's recommendation and the variants served. */
export function pickDefaultVariant(variants: readonly { name: string }[], recommended: string | null): string {
  return recommended !== null && variants.some((v) => v.name === recommended) ? recommended : variants[0]!.name;
}

export function findVariant(model: ServedModel, name: string): ServedVariant | undefined {
  return model.variants.find((v) => v.name === name);
}
