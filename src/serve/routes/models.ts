// GET /models and GET /models/{model}: what is served, on which device, with the build's
// evaluation figures and the live queue depth.
import type { FastifyInstance } from 'fastify';
import type { ServedModel, ServedVariant } from '../catalogue.js';
import type { ServeCore } from '../core.js';
import { reloadStatus } from './reload.js';
import { precisionOf } from '../../manifest.js';
import { errorResponses, ok, type ModelInfoBody, type ModelListBody, type VariantInfoBody } from './schemas.js';

export function variantInfo(core: ServeCore, v: ServedVariant): VariantInfoBody {
  const m = v.manifest;
  const reloadError = core.store?.failureOf(v.model, v.name);
  return {
    name: v.name,
    depth: v.depth,
    precision: precisionOf(m),
    device: v.device,
    requestedDevice: v.requestedDevice,
    ...(v.fallbackReason !== undefined ? { fallbackReason: v.fallbackReason } : {}),
    ...(v.int8Weights !== undefined ? { int8Weights: { ...v.int8Weights } } : {}),
    ready: core.ready,
    queueDepth: core.queueDepth(v.model, v.name),
    running: core.runningInputs(v.model, v.name),
    labels: [...v.labels],
    maxLength: v.maxLength,
    head: m.head,
    params: m.params,
    base: m.base,
    train: m.train,
    eval: m.eval,
    onnxSha256: m.onnxSha256,
    createdAt: m.createdAt,
    version: m.version,
    loadMs: Math.round(v.loadMs),
    warmupMs: Math.round(v.warmupMs),
    ...(reloadError !== undefined ? { lastReloadError: reloadError } : {}),
  };
}

/** The variant a request without variant or key goes to first (random draw 0; a cascade's first stage). */
function defaultVariant(core: ServeCore, model: ServedModel): string {
  return core.decide(model, {}, () => 0).stages[0]!;
}

export function modelInfo(core: ServeCore, model: ServedModel): ModelInfoBody {
  return {
    name: model.name,
    labels: [...model.variants[0]!.labels],
    defaultVariant: defaultVariant(core, model),
    routing: core.tables.document(model.name),
    variants: model.variants.map((v) => variantInfo(core, v)),
  };
}

export function modelRoutes(app: FastifyInstance, core: ServeCore): void {
  app.get(
    '/models',
    {
      schema: {
        tags: ['models'],
        summary: 'Every served model and variant',
        description: 'Empty until the repository is loaded; `ready` says whether every variant is loaded and warmed up.',
        response: { 200: ok('ModelList', 'Served models') },
      },
    },
    async (): Promise<ModelListBody> => {
      const reload = reloadStatus(core);
      return { ready: core.ready, models: core.catalogue.models.map((m) => modelInfo(core, m)), ...(reload ? { reload } : {}) };
    },
  );

  app.get<{ Params: { model: string } }>(
    '/models/:model',
    {
      schema: {
        tags: ['models'],
        summary: 'One model and its variants',
        params: { type: 'object', required: ['model'], properties: { model: { type: 'string' } } },
        response: { 200: ok('ModelInfo', 'The model'), ...errorResponses([404, 503]) },
      },
    },
    async (request): Promise<ModelInfoBody> => modelInfo(core, core.model(request.params.model)),
  );
}
