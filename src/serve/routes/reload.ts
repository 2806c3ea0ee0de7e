// POST /admin/reload: rescan the model repository and apply what changed (hot reload, see
// src/serve/model-store.ts). Admin bearer token like PUT /routing. The answer says what was
// added, updated, removed and what failed (the old variant keeps serving), after the removed
// and replaced variants' accepted requests have been answered.
import type { FastifyInstance } from 'fastify';
import type { ServeCore } from '../core.js';
import { requireAdmin } from './admin-auth.js';
import type { ReloadReport, ReloadStatus } from './reload-schemas.js';
import { errorResponses, ok } from './schemas.js';

export { reloadSchemas } from './reload-schemas.js';

export function reloadRoutes(app: FastifyInstance, core: ServeCore): void {
  app.post(
    '/admin/reload',
    {
      schema: {
        tags: ['admin'],
        summary: 'Hot reload: pick up new, rebuilt and removed variant directories (admin)',
        description:
          'Needs Authorization: Bearer <adminToken>. Rescans the model repository: a new or rebuilt variant is loaded and warmed up in every worker before it replaces ' +
          'the old one (a request sees the old or the new); one that fails to load (bad manifest, checksum, truncated model.onnx) leaves the old one serving and is listed ' +
          'in "failed"; a removed one stops taking requests, its accepted ones are answered, then its sessions are released. A removal the routing table still needs is refused.',
        response: { 200: ok('ReloadReport', 'What changed'), ...errorResponses([401, 403, 503]) },
      },
    },
    async (request): Promise<ReloadReport> => {
      requireAdmin(request, core.config.adminToken);
      return core.reload('api');
    },
  );
}

/** The "reload" member of GET /models (absent until the repository is loaded). */
export function reloadStatus(core: ServeCore): ReloadStatus | undefined {
  // Absent until the repository is loaded (the start is not a hot reload).
  const r = core.store;
  if (!r || core.state === 'loading' || core.state === 'failed') return undefined;
  return { pollMs: core.config.modelReloadMs, ...(r.last ? { last: r.last } : {}), failures: r.currentFailures() };
}
