// Bearer-token checks: admin endpoints (PUT /routing) and, when feedbackToken is set, POST
// /feedback. Without a configured admin token (adminToken / SLIM_ADMIN_TOKEN) admin endpoints
// are off: 403 ADMIN_DISABLED, whatever the request sends.
// A missing or non-Bearer Authorization header is 401 with WWW-Authenticate; a wrong token 403.
// Tokens are compared as SHA-256 digests with timingSafeEqual: equal lengths, constant time, so
// the answer time says nothing about how much of a guess was right.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { CoreError } from '../errors.js';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export function requireAdmin(request: FastifyRequest, adminToken: string | null): void {
  if (adminToken === null) throw new CoreError('ADMIN_DISABLED', 'admin endpoints are off: no adminToken (SLIM_ADMIN_TOKEN) is configured');
  requireBearer(request, adminToken, 'admin');
}

/** 401 without `Authorization: Bearer <token>`, 403 with another token. */
export function requireBearer(request: FastifyRequest, token: string, what: 'admin' | 'feedback'): void {
  const header = request.headers.authorization;
  const m = typeof header === 'string' ? /^Bearer +(\S+) *$/i.exec(header) : null;
  if (!m) {
    throw new CoreError('UNAUTHORIZED', `send Authorization: Bearer <${what} token>`);
  }
  if (!timingSafeEqual(digest(m[1]!), digest(token))) {
    throw new CoreError('FORBIDDEN', `the ${what} token is wrong`);
  }
}
