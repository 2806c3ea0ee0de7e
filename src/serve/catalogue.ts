// What the server serves: an immutable snapshot of models and their variants, with the device
// each variant actually runs on. Only the model store (model-store.ts) builds snapshots, and it
// replaces the whole snapshot at once; everything else reads one snapshot per request, so a
// request sees the models before a hot reload or after it, never a mix.
import type { Device } from './config.js';
import { CoreError } from './errors.js';
import type { Manifest } from './model-repository.js';

export interface ServedVariant {
  readonly model: string;
  readonly name: string;
  readonly depth: number;
  /** The batcher's and the workers' session key: "<model>/<variant>", with "#<n>" after a hot reload replaced it. */
  readonly key: string;
  readonly dir: string;
  readonly onnxPath: string;
  readonly manifest: Manifest;
  readonly labels: readonly string[];
  readonly maxLength: number;
  /** Device asked for in the configuration. */
  readonly requestedDevice: Device;
  /** Device the sessions run on (cpu after a fallback). */
  readonly device: Device;
  /** Why the requested device is not used, when it is not. */
  readonly fallbackReason?: string;
  /** int8 variants: the weight storage of the file and the one the sessions run (rewritten to suit this CPU). */
  readonly int8Weights?: { readonly file: 'int8' | 'uint8'; readonly run: 'int8' | 'uint8' };
  readonly loadMs: number;
  readonly warmupMs: number;
}

export interface ServedModel {
  readonly name: string;
  readonly dir: string;
  /** Sorted by depth, then name. */
  readonly variants: readonly ServedVariant[];
  /**
   * The variant that answers when neither the request nor the routing chooses: the one the
   * build report (report.json "recommended") names when it is served, else the shallowest.
   */
  readonly defaultVariant: string;
}

/** One snapshot of everything served. Frozen: replaced, never changed. */
export interface Catalogue {
  /** Sorted by name. */
  readonly models: readonly ServedModel[];
}

export const EMPTY_CATALOGUE: Catalogue = Object.freeze({ models: Object.freeze([]) });

/** Freeze a model and its variants (a snapshot is shared by every request in flight). */
export function freezeModel(model: ServedModel): ServedModel {
  for (const v of model.variants) Object.freeze(v);
  return Object.freeze({ ...model, variants: Object.freeze([...model.variants]) });
}

/** ServedModel.defaultVariant from the report's recommendation and the variants served. */
export function pickDefaultVariant(variants: readonly { name: string }[], recommended: string | null): string {
  return recommended !== null && variants.some((v) => v.name === recommended) ? recommended : variants[0]!.name;
}

export function findVariant(model: ServedModel, name: string): ServedVariant | undefined {
  return model.variants.find((v) => v.name === name);
}

/** The model a request names, or the only one served; MODEL_REQUIRED / MODEL_NOT_FOUND otherwise. */
export function resolveModel(catalogue: Catalogue, name: string | undefined): ServedModel {
  const models = catalogue.models;
  if (name === undefined) {
    if (models.length === 1) return models[0]!;
    throw new CoreError('MODEL_REQUIRED', `several models are served (${models.map((m) => m.name).join(', ')}): name one in "model"`);
  }
  const model = models.find((m) => m.name === name);
  if (!model) throw new CoreError('MODEL_NOT_FOUND', `no model named ${name} (models: ${models.map((m) => m.name).join(', ')})`);
  return model;
}
