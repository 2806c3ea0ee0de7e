// The baseline a Node user would write today: fastify, one route, and @huggingface/transformers'
// pipeline('text-classification') called once per request. No batching, no worker threads; the
// same model.onnx and the same onnxruntime thread count as our server. It runs in a child process
// (server-child.ts) exactly as ours does.
import Fastify from 'fastify';
import { env, pipeline } from '@huggingface/transformers';
import { performance } from 'node:perf_hooks';

export interface TransformersServerSpec {
  modelDir: string;
  intraOp: number;
  interOp: number;
}

export async function startTransformersServer(
  spec: TransformersServerSpec,
  onHandled: (handlerMs: number) => void,
): Promise<{ url: string; close(): Promise<void> }> {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  const slash = spec.modelDir.lastIndexOf('/');
  env.localModelPath = spec.modelDir.slice(0, slash + 1);
  const classify = await pipeline('text-classification', spec.modelDir.slice(slash + 1), {
    dtype: 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: spec.intraOp, interOpNumThreads: spec.interOp, graphOptimizationLevel: 'all', executionMode: 'sequential' },
  });
  await classify('warm up');
  const app = Fastify({ logger: false });
  app.post<{ Body: { inputs: string | string[] } }>('/classify', async (request) => {
    const started = performance.now();
    const out = await classify(request.body.inputs as string);
    onHandled(performance.now() - started);
    return { results: out };
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
}
